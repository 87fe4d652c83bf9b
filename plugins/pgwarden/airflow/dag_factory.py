"""Builds every pgwarden DAG from the config. Called by the thin files in ``dags/``.

Nothing here does I/O beyond reading the config file: connections, servers and buckets are only
touched inside running tasks.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from airflow.sdk import DAG

from pgwarden.airflow.pipelines import (
    backup,
    config_error,
    erasure,
    healthcheck,
    lifecycle,
    migrate,
    migrate_gated,
    restore,
)
from pgwarden.core.config import DatabaseConfig, Defaults, PgwardenConfig
from pgwarden.engine.config_file import load_config

Builder = Callable[[str, DatabaseConfig, Defaults], list[DAG]]

# Every concern that is built. A concern appears here only once its pipeline really exists.
PIPELINES: tuple[Builder, ...] = (healthcheck.build, backup.build, restore.build, lifecycle.build, erasure.build,
                                  migrate.build, migrate_gated.build)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """No cyclic garbage collection while the DAGs are built, then as before.

    A fleet's parse builds ~1000 DAGs and ~7000 tasks: millions of objects that all live as long as the
    DAGs do. Each full collection meanwhile walks every object of the process and frees next to nothing;
    with 100 databases that was a quarter of the parse (bench ``dag_parse``). Nothing here is left to
    the collector: what the build drops is freed by reference counting, any cycle at the next collection.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if not gc.get_freeze_count():
            # What was built moves to the oldest generation in one step: freeze then unfreeze splices the
            # generations' lists, walking nothing. Left young, it was walked again by the first young and
            # middle collections and then by a full one (~0.1 s for a fleet's DAGs), for nothing; in the
            # oldest generation it is still collected by the next full collection. Skipped when the process
            # holds frozen objects already (a forking parent's, kept out of collections on purpose).
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


def build_dags(config: PgwardenConfig | None = None) -> dict[str, DAG]:
    """All DAGs of every well-formed database entry, and a failing stand-in for each broken one, by dag_id."""
    with _collector_paused():
        return _build_dags(config or load_config())


def _build_dags(config: PgwardenConfig) -> dict[str, DAG]:
    dags: dict[str, DAG] = {}
    for database, db_config in config.databases.items():
        for build in PIPELINES:
            for dag in build(database, db_config, config.defaults):
                dags[dag.dag_id] = dag
    for database, issues in config.broken.items():
        try:
            stand_ins = config_error.build(database, issues, config.broken_entries.get(database), config.defaults)
        except ValueError:
            continue  # a name no DAG id can carry: the import error below is its only trace
        dags.update((dag.dag_id, dag) for dag in stand_ins)
    return dags


class BrokenDatabaseConfig(ValueError):
    """Shown by Airflow as an import error naming each broken database entry."""


def raise_for_broken_databases(config: PgwardenConfig | None = None) -> None:
    """Raise one error listing every broken database entry (each gets a failing ``<db>.config_error`` DAG)."""
    with _collector_paused():  # the first read of the config in a parse: the same many objects that live on
        config = config or load_config()
    if not config.broken:
        return
    one = len(config.broken) == 1
    lines = [f"{len(config.broken)} database {'entry is' if one else 'entries are'} invalid and "
             f"{'has' if one else 'have'} no DAGs but a failing <database>.config_error until fixed "
             f"(the other databases are not affected):"]
    for database, issues in config.broken.items():
        lines.append(f"- database {database!r}:")
        lines.extend(f"    {issue}" for issue in issues)
    lines.append("Run `pgwarden config validate` to check the file after editing it.")
    raise BrokenDatabaseConfig("\n".join(lines))
