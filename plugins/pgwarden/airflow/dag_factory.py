"""Builds every pgwarden DAG from the config. Called by the thin files in ``dags/``.

Nothing here does I/O beyond reading the config file: connections, servers and buckets are only
touched inside running tasks.
"""

from __future__ import annotations

from collections.abc import Callable

from airflow.sdk import DAG

from pgwarden.airflow.pipelines import backup, healthcheck, restore
from pgwarden.core.config import DatabaseConfig, Defaults, PgwardenConfig
from pgwarden.engine.config_file import load_config

Builder = Callable[[str, DatabaseConfig, Defaults], list[DAG]]

# Every concern that is built. A concern appears here only once its pipeline really exists.
PIPELINES: tuple[Builder, ...] = (healthcheck.build, backup.build, restore.build)


def build_dags(config: PgwardenConfig | None = None) -> dict[str, DAG]:
    """All DAGs of every well-formed database entry, keyed by dag_id."""
    config = config or load_config()
    dags: dict[str, DAG] = {}
    for database, db_config in config.databases.items():
        for build in PIPELINES:
            for dag in build(database, db_config, config.defaults):
                dags[dag.dag_id] = dag
    return dags


class BrokenDatabaseConfig(ValueError):
    """Shown by Airflow as an import error naming each broken database entry."""


def raise_for_broken_databases(config: PgwardenConfig | None = None) -> None:
    """Raise one error listing every broken database entry (their DAGs are not built)."""
    config = config or load_config()
    if not config.broken:
        return
    lines = [f"{len(config.broken)} database entr{'y is' if len(config.broken) == 1 else 'ies are'} "
             f"invalid and have no DAGs until fixed (the other databases are not affected):"]
    for database, issues in config.broken.items():
        lines.append(f"- database {database!r}:")
        lines.extend(f"    {issue}" for issue in issues)
    lines.append("Run `pgwarden config validate` to check the file after editing it.")
    raise BrokenDatabaseConfig("\n".join(lines))
