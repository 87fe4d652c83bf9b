"""What a migration rehearsal measured on a restored copy, and the Markdown a release owner reads. Pure.

The engine (``engine/migrations/rehearsal.py``) fills a ``RehearsalReport``; the migration DAG passes
its ``to_json_dict()`` through XCom and ``rehearsal_markdown`` renders that document into the body of
the first approval gate. Counts, durations and ids only: never a row value.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from pgwarden.core.units import format_duration

# The order phases happen in on the copy; the Markdown lists them in this order.
PHASE_ORDER = ("restore", "expand", "backfill", "consistency", "contract")


@dataclass
class RollbackCheck:
    """One rollback path tried on the copy: did the schema come back exactly as it was before?"""

    name: str  # "after expand", "after backfill", "after failed backfill"...
    ok: bool
    detail: str


@dataclass
class RehearsalReport:
    database: str
    migration: str
    backup_id: str | None = None
    restore_target: str | None = None
    phases: dict[str, float] = field(default_factory=dict)  # seconds, see PHASE_ORDER
    lock_retries: int = 0  # lock-timeout retries of every DDL statement and backfill batch run on the copy
    lock_wait_seconds: float = 0.0  # time DDL statements spent waiting for their locks (retries included)
    backfill_rows: int = 0
    backfill_rows_per_second: float | None = None
    inconsistent_rows: int | None = None  # the consistency check after the measured backfill
    rollback_checks: list[RollbackCheck] = field(default_factory=list)
    failed_phase: str | None = None
    error: str | None = None
    scratch_removed: bool = False

    @property
    def passed(self) -> bool:
        return self.error is None and "contract" in self.phases and all(c.ok for c in self.rollback_checks)

    def failures(self) -> list[str]:
        failed = [f"rollback {c.name}: {c.detail}" for c in self.rollback_checks if not c.ok]
        return ([f"{self.failed_phase or 'rehearsal'}: {self.error}"] if self.error else []) + failed

    def to_json_dict(self) -> dict[str, Any]:
        return {**asdict(self), "passed": self.passed}

    def summary(self) -> str:
        timings = ", ".join(f"{p} {format_duration(self.phases[p])}" for p in PHASE_ORDER if p in self.phases)
        if self.passed:
            return (f"rehearsal of {self.migration} on a restored copy of {self.database} PASSED: {timings}; "
                    f"{self.lock_retries} lock retries; {len(self.rollback_checks)} rollback path(s) leave the schema "
                    "as before")
        return (f"rehearsal of {self.migration} on a restored copy of {self.database} FAILED: "
                f"{'; '.join(f.splitlines()[0] for f in self.failures()) or 'contract did not run'}"
                + (f" (measured: {timings})" if timings else ""))


def should_rehearse(spec: Any, params: Any) -> bool:
    """The run Param ``rehearse`` (true/false) when given, else the migration file's ``rehearse:``."""
    wanted = (params or {}).get("rehearse")
    return bool(spec.rehearse) if wanted is None else bool(wanted)


NOT_REHEARSED = "### Rehearsal: not run\n\nThis run did not rehearse the migration on a restored copy " \
    "(`rehearse: true` in the migration file or the run Param `rehearse` turns it on)."


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f} rows/s"


def rehearsal_markdown(report: dict[str, Any]) -> str:
    """A ``RehearsalReport.to_json_dict()`` as the Markdown of the first gate's body."""
    verdict = "passed" if report["passed"] else "**FAILED**"
    lines = [f"### Rehearsal on a restored copy: {verdict}", ""]
    source = f"backup `{report['backup_id']}`" if report.get("backup_id") else "no backup"
    if report.get("restore_target"):
        source += f", replayed to {report['restore_target']}"
    lines += [f"Copy of **{report['database']}** from {source}; migration `{report['migration']}` run with gates "
              "auto-approved and the backfill unthrottled.", ""]
    phases = report.get("phases") or {}
    if phases:
        lines += ["| phase | duration |", "|---|---|"]
        lines += [f"| {p} | {format_duration(phases[p])} |" for p in PHASE_ORDER if p in phases]
        lines.append("")
    lines.append(f"- **Lock waits:** {report['lock_retries']} lock-timeout retries, "
                 f"{format_duration(report['lock_wait_seconds'])} waiting for locks (the copy has no application "
                 "traffic: production can only wait longer)")
    lines.append(f"- **Backfill:** {report['backfill_rows']:,} rows at {_rate(report.get('backfill_rows_per_second'))}")
    if report.get("inconsistent_rows") is not None:
        lines.append(f"- **Consistency:** {report['inconsistent_rows']} rows where the new column differs")
    for check in report.get("rollback_checks") or []:
        mark = "ok" if check["ok"] else "**FAILED**"
        lines.append(f"- **Rollback {check['name']}:** {mark}: {check['detail']}")
    if report.get("error"):
        lines.append(f"- **Error in {report.get('failed_phase') or 'the rehearsal'}:** {report['error']}")
    return "\n".join(lines)


__all__ = ["NOT_REHEARSED", "PHASE_ORDER", "RehearsalReport", "RollbackCheck", "rehearsal_markdown", "should_rehearse"]
