"""Schedules in the config: cron expressions or Airflow's presets, checked without Airflow."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from functools import cache

from croniter import croniter

PRESETS = {
    "@hourly": "0 * * * *",
    "@daily": "0 0 * * *",
    "@weekly": "0 0 * * 0",
    "@monthly": "0 0 1 * *",
    "@quarterly": "0 0 1 */3 *",
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
}


@cache
def validate_cron(expression: str, *, min_interval: timedelta | None = None) -> str:
    """Return ``expression`` if it is a valid 5-field cron or preset; say what is wrong otherwise."""
    text = str(expression).strip()
    cron = PRESETS.get(text, text)
    if len(cron.split()) != 5 or not croniter.is_valid(cron):
        raise ValueError(
            f"expected a 5-field cron expression like '0 2 * * *' or a preset "
            f"({', '.join(sorted(PRESETS))}), got {expression!r}"
        )
    if min_interval is not None:
        start = datetime(2026, 1, 1, tzinfo=timezone.utc)
        it = croniter(cron, start)
        times = [it.get_next(datetime) for _ in range(50)]
        shortest = min(b - a for a, b in zip(times, times[1:], strict=False))
        if shortest < min_interval:
            raise ValueError(
                f"schedule {expression!r} runs every {shortest}; the shortest allowed interval is {min_interval}"
            )
    return text


@cache  # configs repeat the same few schedules; this runs at DAG-parse time
def longest_interval(expression: str, samples: int = 120) -> timedelta:
    """The longest gap between two runs of a schedule (how stale its output can get)."""
    cron = PRESETS.get(expression.strip(), expression.strip())
    it = croniter(cron, datetime(2026, 1, 1, tzinfo=timezone.utc))
    times = [it.get_next(datetime) for _ in range(samples)]
    return max(b - a for a, b in zip(times, times[1:], strict=False))


def shortest_interval(expression: str) -> timedelta:
    """The shortest gap between two runs of a schedule (when the next run is due at the earliest)."""
    return _shortest_interval(_at_zero(PRESETS.get(expression.strip(), expression.strip())))


def _at_zero(cron: str) -> str:
    """The same schedule moved to minute 0 (and hour 0) when it fires at one fixed minute (hour): every run
    moves by the same offset, so the gaps are the same, and a fleet whose DAGs are staggered by minute
    (``7 * * * *``, ``23 * * * *``...) shares one cached answer instead of a croniter walk per database."""
    fields = cron.split()
    for index in (0, 1):
        if fields[index].isdigit():
            fields[index] = "0"
    return " ".join(fields)


@cache  # DAG-parse time: one walk per distinct schedule shape
def _shortest_interval(cron: str, samples: int = 60) -> timedelta:
    it = croniter(cron, datetime(2026, 1, 1, tzinfo=timezone.utc))
    times = [it.get_next(datetime) for _ in range(samples)]
    return min(b - a for a, b in zip(times, times[1:], strict=False))
