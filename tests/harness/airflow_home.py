"""A temporary AIRFLOW_HOME with a migrated metadata DB, prepared before Airflow is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def prepare_airflow_home() -> Path:
    """Point Airflow at a fresh home and project folders; migrate its DB once per test session.

    Must run before anything imports ``airflow``: Airflow reads its settings at import time.
    """
    home = Path(tempfile.mkdtemp(prefix="pgwarden-airflow-"))
    os.environ.update({
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",  # tests read what tasks log at INFO (drill figures)
        "PGWARDEN_CONFIG": os.environ.get("PGWARDEN_CONFIG", str(ROOT / "include" / "pgwarden.yaml")),
    })
    subprocess.run(
        [str(Path(sys.executable).with_name("airflow")), "db", "migrate"],
        check=True, capture_output=True, env=os.environ.copy(), timeout=600,
    )
    return home
