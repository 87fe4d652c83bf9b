"""Restore-drill evidence: what was checked, what was measured, and the verdict. Pure."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from pgwarden.core.units import format_duration

FORMAT = "pgwarden.drill/1"


def old_backup_due(run_date: datetime, every: int) -> bool:
    """Does the scheduled drill dated ``run_date`` also restore the oldest monthly/yearly backup?

    In the months ``every`` divides (3: March, June, September, December; 0: never), judged by the run's
    own date in UTC, never by the clock: a cleared, retried or backfilled drill decides as its first try did.
    """
    return every > 0 and run_date.astimezone(timezone.utc).month % every == 0


class DrillCheck(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    ok: bool
    detail: str


class DrillEvidence(BaseModel):
    """Written to ``<database>/drills/<drill_id>.json`` whether the drill passed or not."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["pgwarden.drill/1"] = FORMAT
    database: str
    drill_id: str
    kind: Literal["newest", "old"] = "newest"
    started_at: datetime
    finished_at: datetime | None = None
    backup_id: str | None = None
    backup_started_at: datetime | None = None
    target: str | None = None
    reached_lsn: str | None = None
    reached_time: datetime | None = None
    timeline: int | None = None
    rto_seconds: float | None = None
    rpo_seconds: float | None = None
    rto_target_seconds: float
    rpo_target_seconds: float
    steps: dict[str, float] = {}
    checks: list[DrillCheck] = []
    error: str | None = None
    pgwarden_version: str

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> None:
        self.checks.append(DrillCheck(name=name, ok=ok, detail=detail))

    def judge_targets(self) -> None:
        if self.rto_seconds is not None:
            self.add("rto", self.rto_seconds <= self.rto_target_seconds,
                     f"restore to first query took {timedelta(seconds=round(self.rto_seconds))} "
                     f"(target {timedelta(seconds=self.rto_target_seconds)})")
        if self.rpo_seconds is not None:
            self.add("rpo", self.rpo_seconds <= self.rpo_target_seconds,
                     f"newest restorable point was {timedelta(seconds=round(self.rpo_seconds))} before the drill "
                     f"started (target {timedelta(seconds=self.rpo_target_seconds)})")

    def failures(self) -> list[str]:
        failed = [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]
        return ([f"error: {self.error}"] if self.error else []) + failed

    def summary(self) -> str:
        """The drill's one log line: verdict, what failed with its values, measured RTO/RPO against targets."""
        measured = (f"RTO {_measured(self.rto_seconds, self.rto_target_seconds)}, "
                    f"RPO {_measured(self.rpo_seconds, self.rpo_target_seconds)}")
        if self.passed:
            return f"drill {self.drill_id} PASSED: {measured}; checks ok: {', '.join(c.name for c in self.checks)}"
        failed = [failure.splitlines()[0] for failure in self.failures()]  # an error may carry a log tail
        return f"drill {self.drill_id} FAILED: {'; '.join(failed) or 'no check ran'}; {measured}"

    def to_json_dict(self) -> dict[str, Any]:
        """What the task returns; the full evidence is the JSON file in the repository."""
        return {
            "drill_id": self.drill_id, "kind": self.kind, "passed": self.passed, "backup_id": self.backup_id,
            "rto_seconds": self.rto_seconds, "rpo_seconds": self.rpo_seconds, "reached_lsn": self.reached_lsn,
            "checks": {c.name: c.ok for c in self.checks},
        }


def _measured(seconds: float | None, target: float) -> str:
    if seconds is None:
        return f"not measured (target {format_duration(target)})"
    return f"{format_duration(seconds)} (target {format_duration(target)}, {'met' if seconds <= target else 'MISSED'})"
