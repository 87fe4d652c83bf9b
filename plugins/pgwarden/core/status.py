"""What the pgwarden page and its JSON endpoint show for one database. Pure: facts in, a status out.

``engine/status.py`` gathers the facts (the repository catalog, drill evidence, archive listing, the
``pgwarden`` tables of the database) with a time bound per source; any source can come back as
:class:`Unreachable`, and only its part of the status says so. ``database_status`` turns the facts into
a JSON-ready dict (ids, times, sizes and counts only: no row values), ``rto_chart_svg`` draws the drills'
RTO over time as an inline SVG (no script, nothing fetched from elsewhere).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any, Literal
from xml.sax.saxutils import escape

from pgwarden.core.catalog import Catalog
from pgwarden.core.drill import DrillEvidence
from pgwarden.core.migrations.gates import answer, approver, gate_asked
from pgwarden.core.retention import DAILY, MONTHLY, NEWEST, PENDING, WINDOW_START, YEARLY
from pgwarden.core.units import format_duration, format_size
from pgwarden.core.walnames import is_history_name

Colour = Literal["green", "amber", "red", "grey"]
# RPO exposure: green within the target, amber up to twice it (one missed WAL collection), red beyond.
AMBER_FACTOR = 2.0
DRILLS_LISTED = 5
DRILLS_CHARTED = 24
PURGE_DAYS = 14
GFS_ORDER = (DAILY, MONTHLY, YEARLY, NEWEST, WINDOW_START, PENDING)


@dataclass(frozen=True)
class Unreachable:
    """A source that did not answer in time or refused: the page says ``unreachable: <reason>``."""

    reason: str

    def to_json_dict(self) -> dict[str, Any]:
        return {"unreachable": self.reason}


@dataclass(frozen=True)
class PurgeDay:
    day: date
    policy: str
    rows: int


@dataclass(frozen=True)
class ErasureFacts:
    erased: int
    last_erased_at: datetime | None
    in_grace: int | None
    held: int | None
    db_head_seq: int
    db_head_hash: str | None
    exported_head_seq: int | None = None
    exported_head_hash: str | None = None
    exported_at: datetime | None = None
    """when the export last checked the chain up to its head and wrote it (``<db>/ledger/head.json``)"""


@dataclass(frozen=True)
class MigrationRow:
    version: int
    name: str
    kind: str
    phase: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    phases: list[dict[str, Any]] = field(default_factory=list)
    approvals: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class StatusFacts:
    """Everything gathered for one database; ``None`` means the concern is not configured."""

    database: str
    now: datetime
    rpo_target: timedelta
    rto_target: timedelta
    catalog: Catalog | Unreachable
    drills: list[DrillEvidence] | Unreachable
    archived_bytes: int | Unreachable | None = None
    purges: list[PurgeDay] | Unreachable | None = None
    erasure: ErasureFacts | Unreachable | None = None
    migrations: list[MigrationRow] | Unreachable | None = None


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _age(now: datetime, moment: datetime | None) -> dict[str, Any]:
    if moment is None:
        return {"age_seconds": None, "age": None}
    seconds = max((now - moment).total_seconds(), 0.0)
    return {"age_seconds": round(seconds), "age": format_duration(seconds)}


def exposure_colour(exposure: timedelta | None, target: timedelta) -> Colour:
    """Green within the target, amber up to twice it, red beyond it or with no WAL at all."""
    if exposure is None:
        return "red"
    if exposure <= target:
        return "green"
    return "amber" if exposure <= target * AMBER_FACTOR else "red"


def _backups(facts: StatusFacts, catalog: Catalog) -> dict[str, Any]:
    newest = catalog.newest_valid
    full = None
    if newest is not None:
        full = {"backup_id": newest.id, "started_at": _iso(newest.started_at),
                "finished_at": _iso(newest.manifest.finished_at), "stored_bytes": newest.stored_bytes,
                "size": format_size(newest.stored_bytes), "duration_seconds": newest.manifest.duration_seconds,
                **_age(facts.now, newest.manifest.finished_at)}
    # The incremental task ships WAL: its last result is the newest WAL object (segment or .partial).
    wal = [w for w in catalog.wal if w.modified is not None and not is_history_name(w.name)]
    latest = max(wal, key=lambda w: (w.modified, w.name)) if wal else None
    incremental = None
    if latest is not None:
        incremental = {"wal_file": latest.name, "stored_at": _iso(latest.modified), "stored_bytes": latest.size,
                       "size": format_size(latest.size), **_age(facts.now, latest.modified)}
    exposure = facts.now - latest.modified if latest is not None and latest.modified else None
    classes: Counter[str] = Counter()
    kept = 0
    for reasons in catalog.gfs_classes.values():
        kept += bool(reasons)
        classes.update(reasons)
    return {
        "repository": catalog.url,
        "last_full": full,
        "last_incremental": incremental,
        "rpo": {"exposure_seconds": round(exposure.total_seconds()) if exposure is not None else None,
                "exposure": format_duration(exposure) if exposure is not None else "no WAL in the repository",
                "target_seconds": round(facts.rpo_target.total_seconds()),
                "target": format_duration(facts.rpo_target),
                "colour": exposure_colour(exposure, facts.rpo_target)},
        "kept": {"total": kept, "valid": len(catalog.valid_backups), "backups": len(catalog.backups),
                 "by_class": {name: classes[name] for name in GFS_ORDER if classes[name]}},
        "problems": len(catalog.problems) + len(catalog.unreadable) + sum(not b.valid for b in catalog.backups),
    }


def _drills(facts: StatusFacts, drills: list[DrillEvidence]) -> dict[str, Any]:
    ordered = sorted(drills, key=lambda d: d.started_at)
    listed = []
    for drill in reversed(ordered[-DRILLS_LISTED:]):
        listed.append({
            "drill_id": drill.drill_id, "kind": drill.kind, "started_at": _iso(drill.started_at),
            "passed": drill.passed, "backup_id": drill.backup_id,
            "rto_seconds": drill.rto_seconds, "rto_target_seconds": drill.rto_target_seconds,
            "rto_ok": drill.rto_seconds is not None and drill.rto_seconds <= drill.rto_target_seconds,
            "rpo_seconds": drill.rpo_seconds, "rpo_target_seconds": drill.rpo_target_seconds,
            "rpo_ok": drill.rpo_seconds is not None and drill.rpo_seconds <= drill.rpo_target_seconds,
        })
    points = [(d.started_at, d.rto_seconds) for d in ordered[-DRILLS_CHARTED:] if d.rto_seconds is not None]
    return {"count": len(ordered), "last": listed,
            "rto_target_seconds": round(facts.rto_target.total_seconds()),
            "rto_chart": [{"at": _iso(at), "rto_seconds": rto} for at, rto in points]}


def _lifecycle(facts: StatusFacts) -> dict[str, Any] | None:
    if facts.purges is None and facts.archived_bytes is None:
        return None
    out: dict[str, Any] = {}
    if isinstance(facts.purges, Unreachable):
        out["purged"] = facts.purges.to_json_dict()
    elif facts.purges is not None:
        first = facts.now.date() - timedelta(days=PURGE_DAYS - 1)
        per_day: Counter[date] = Counter()
        for purge in facts.purges:
            if purge.day >= first:
                per_day[purge.day] += purge.rows
        out["purged"] = {"days": PURGE_DAYS, "total": sum(per_day.values()),
                         "per_day": [{"day": d.isoformat(), "rows": per_day[d]} for d in sorted(per_day)]}
    if isinstance(facts.archived_bytes, Unreachable):
        out["archived"] = facts.archived_bytes.to_json_dict()
    elif facts.archived_bytes is not None:
        out["archived"] = {"bytes": facts.archived_bytes, "size": format_size(facts.archived_bytes)}
    return out


def _erasure(erasure: ErasureFacts) -> dict[str, Any]:
    exported = erasure.exported_head_seq
    return {
        "erased": erasure.erased, "last_erased_at": _iso(erasure.last_erased_at),
        "in_grace": erasure.in_grace, "on_legal_hold": erasure.held,
        "chain_head": {"seq": erasure.db_head_seq, "hash": erasure.db_head_hash},
        "exported_head": {"seq": exported, "hash": erasure.exported_head_hash} if exported is not None else None,
        "verified_at": _iso(erasure.exported_at),
        "export_behind": erasure.db_head_seq - (exported or 0),
    }


def _approval_text(approval: Any) -> str:
    """One ``approvals`` entry as the gates write it (core.migrations.gates.approval_entry)."""
    if not isinstance(approval, dict):
        return str(approval)
    who = approver(approval)
    return f"{approval.get('gate') or 'gate'}: {answer(approval)}" + (f" by {who}" if who else "") + \
        (f" at {approval['at']}" if approval.get("at") else "")


def _moment(value: Any) -> datetime | None:
    try:
        moment = datetime.fromisoformat(str(value)) if value else None
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc) if moment and moment.tzinfo is None else moment


def _answered(asked: dict[str, Any], approvals: list[Any]) -> bool:
    """An approval of the asking gate, in its run, given after it started asking (a cleared gate asks anew)."""
    since = _moment(asked.get("started_at") or asked.get("at"))
    for a in approvals:
        if isinstance(a, dict) and a.get("gate") == asked.get("phase") and a.get("run_id") == asked.get("run_id"):
            at = _moment(a.get("at"))
            if since is None or at is None or at >= since:
                return True
    return False


def migration_state(row: MigrationRow) -> dict[str, Any]:
    """Where a migration stands. An expand/contract migration stays ``running`` between its phases; a gate
    writes a ``waiting`` event when it starts asking, so the page shows that gate waiting since the gate
    task's start (in Airflow) until an approval of it is recorded."""
    last = row.phases[-1] if row.phases else {}
    waiting = None
    if row.kind == "expand_contract" and row.status == "running" and gate_asked(last) \
            and not _answered(last, row.approvals):
        waiting = {"gate": last["phase"], "after_phase": row.phase, "since": last.get("started_at") or last.get("at")}
    return {
        "version": row.version, "name": row.name, "kind": row.kind, "phase": row.phase, "status": row.status,
        "started_at": _iso(row.started_at), "finished_at": _iso(row.finished_at),
        "gate_waiting": waiting, "approvals": [_approval_text(a) for a in row.approvals],
    }


def _part(value: Any, build: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, Unreachable):
        return value.to_json_dict()
    return build(value)


def database_status(facts: StatusFacts) -> dict[str, Any]:
    """The page's data for one database; each part is its dict, ``None`` (not configured) or
    ``{"unreachable": reason}``."""
    migrations = _part(facts.migrations, lambda rows: [migration_state(r) for r in rows])
    if isinstance(migrations, list):
        migrations = [m for m in migrations if m["status"] != "applied" or m["kind"] == "expand_contract"][-10:] \
            or migrations[-3:]
    return {
        "database": facts.database,
        "generated_at": facts.now.isoformat(),
        "backups": _part(facts.catalog, lambda c: _backups(facts, c)),
        "drills": _part(facts.drills, lambda d: _drills(facts, d)),
        "lifecycle": _lifecycle(facts),
        "erasure": _part(facts.erasure, _erasure),
        "migrations": migrations,
    }


def rto_chart_svg(points: list[dict[str, Any]], target_seconds: float, width: int = 320, height: int = 90) -> str:
    """The drills' RTO over time as a small inline SVG: a line of the measured RTOs (oldest left) and a
    dashed line at the target. Numbers only go into it; titles are escaped."""
    if not points:
        return ""
    pad = 6
    top = max([p["rto_seconds"] for p in points] + [target_seconds]) * 1.1 or 1.0
    step = (width - 2 * pad) / max(len(points) - 1, 1)

    def y(seconds: float) -> float:
        return round(height - pad - (seconds / top) * (height - 2 * pad), 1)

    xy = [(round(pad + i * step, 1), y(p["rto_seconds"])) for i, p in enumerate(points)]
    line = " ".join(f"{x},{yy}" for x, yy in xy)
    dots = "".join(
        f'<circle cx="{x}" cy="{yy}" r="2.5" class="{"ok" if p["rto_seconds"] <= target_seconds else "over"}">'
        f'<title>{escape(str(p["at"]))}: RTO {escape(format_duration(p["rto_seconds"]))}</title></circle>'
        for (x, yy), p in zip(xy, points, strict=True))
    target_y = y(target_seconds)
    return (f'<svg class="rto-chart" role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>RTO of the last {len(points)} drills; target '
            f'{escape(format_duration(target_seconds))}</title>'
            f'<line x1="{pad}" x2="{width - pad}" y1="{target_y}" y2="{target_y}" class="target" '
            f'stroke-dasharray="4 3"/><polyline points="{line}" fill="none" class="rto"/>{dots}</svg>')
