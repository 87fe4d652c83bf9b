"""pgwarden's metrics, sent through Airflow's own Stats client (StatsD, Datadog or OpenTelemetry, as
Airflow's ``[metrics]`` section configures), from one place: ``PgwardenOperator.execute`` emits what
the operator's ``metrics(result)`` returns after ``run()`` succeeded.

Names are ``pgwarden.<concern>.<measure>.<database>``: the database is the last part so a StatsD or
Graphite user can ask for ``pgwarden.backup_full.stored_bytes.*``; the same values also carry the tags
``database`` and ``dag_id`` for backends that keep tags (Datadog, InfluxDB-style StatsD, OpenTelemetry).
README ("Operating") lists every name.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal

log = logging.getLogger(__name__)

Kind = Literal["gauge", "timing", "incr"]


@dataclass(frozen=True)
class Metric:
    """One value: ``gauge`` (a level: bytes, seconds of exposure), ``timing`` (a duration in seconds, sent
    as milliseconds as StatsD expects) or ``incr`` (a count added to a counter)."""

    name: str  # e.g. "backup_full.stored_bytes": pgwarden. before it, the database after it
    value: float
    kind: Kind = "gauge"
    tags: dict[str, str] = field(default_factory=dict)


def metric_name(name: str, database: str) -> str:
    from airflow.sdk.observability.stats import normalize_name_for_stats

    return normalize_name_for_stats(f"pgwarden.{name}.{database}")


def emit(measure: Callable[[], Iterable[Metric]], *, database: str, dag_id: str) -> None:
    """Send what ``measure()`` returns; a metrics problem (even a bug in ``measure``) is logged and never
    fails the task that measured them: a good backup retried for a lost metric would be a second backup."""
    try:
        from airflow.sdk.observability import stats

        _ensure_initialized()
        for metric in measure():
            name = metric_name(metric.name, database)
            tags = {"database": database, "dag_id": dag_id, **metric.tags}
            if metric.kind == "timing":
                stats.timing(name, metric.value * 1000.0, tags=tags)
            elif metric.kind == "incr":
                stats.incr(name, int(metric.value), tags=tags)
            else:
                stats.gauge(name, metric.value, tags=tags)
    except Exception:  # a lost metric must not turn a good backup into a failed task
        log.warning("could not send pgwarden metrics", exc_info=True)


def _ensure_initialized() -> None:
    """Airflow's task runner sets Stats up before a task runs; ``dag.test()`` and ``airflow tasks test`` run
    tasks in their own process without it, where every metric would silently go nowhere. Set it up the
    way the task runner does, once, when nothing did (``_factory`` is the only way to tell)."""
    from airflow.sdk._shared.observability.metrics import stats as state
    from airflow.sdk.configuration import conf
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    if state._factory is None:
        stats.initialize(factory=stats_utils.get_stats_factory(),
                         export_legacy_names=conf.getboolean("metrics", "legacy_names_on", fallback=True))
