"""Run one policy's archive-then-delete in a process of its own, so a test can ``kill -9`` it.

The environment is ``engine_child``'s (``child_env``: libpq settings, the repository URL and its AWS
connection id (``PGWARDEN_CHILD_REPO_CONN_ID``, resolved through pgwarden's hooks as in production),
the database and the workdir) plus, for this action:

    PGWARDEN_CHILD_POLICY            the policy as JSON, as it is written in the config
    PGWARDEN_CHILD_INTERVAL_END      the run's data_interval_end (ISO 8601 with time zone)
    PGWARDEN_CHILD_READ_BATCH_ROWS   rows per read

Each log line goes to stdout at once (``CHILD <message>``); the last line is ``CHILD DONE``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from tests.harness.engine_child import REPO_ROOT


def spawn(env: Mapping[str, str]) -> subprocess.Popen:
    """Start the child in its own process group."""
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "tests.harness.archive_child"], cwd=REPO_ROOT, env=dict(env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def _main() -> None:
    from pgwarden.airflow.hooks import open_repository
    from pgwarden.core.config import RepositoryConfig
    from pgwarden.core.lifecycle.config import PolicyConfig
    from pgwarden.engine.lifecycle.archive import ArchiveRequest, archive_then_delete
    from pgwarden.engine.postgres import PgTarget

    env = os.environ
    target = PgTarget(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["PGUSER"],
                      dbname=env.get("PGDATABASE", "postgres"), password=env.get("PGPASSWORD"))
    repo = open_repository(RepositoryConfig(url=env["PGWARDEN_CHILD_REPO_URL"],
                                            conn_id=env["PGWARDEN_CHILD_REPO_CONN_ID"]))

    def log(message: str) -> None:
        print(f"CHILD {message}", flush=True)

    request = ArchiveRequest(database=env["PGWARDEN_CHILD_DATABASE"],
                             policy=PolicyConfig.model_validate_json(env["PGWARDEN_CHILD_POLICY"]),
                             data_interval_end=datetime.fromisoformat(env["PGWARDEN_CHILD_INTERVAL_END"]),
                             run_id="child")
    archive_then_delete(target, repo, request, workdir=Path(env["PGWARDEN_CHILD_WORKDIR"]), log=log,
                        read_batch_rows=int(env["PGWARDEN_CHILD_READ_BATCH_ROWS"]))
    log("DONE")


if __name__ == "__main__":
    _main()
