"""The audit export of one database: Airflow's run history joined with pgwarden's own records. Pure.

Inputs are what the engine read: Airflow REST API documents (runs, task instances, HITL details, event
log), erasure ledger entries, ``schema_history`` rows (with their gate approvals) and drill evidence.
Everything becomes one timeline of :class:`AuditEvent` rows, sorted by time, rendered as CSV, JSON or a
self-contained HTML page.

No personal data: ids, states, counts, hashes and the user names of the people who acted (approvers,
triggerers). Free text that could quote values is left out on purpose: run ``conf``, HITL ``params_input``
and ``body``, the event log's ``extra``, drill check details and error texts.
"""

from __future__ import annotations

import csv
import html
import io
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from pgwarden.core.drill import DrillEvidence
from pgwarden.core.lifecycle.ledger import LedgerEntry
from pgwarden.core.migrations.gates import answer, approver

FORMAT = "pgwarden.audit/1"
FORMATS = ("csv", "json", "html")
COLUMNS = ("when", "source", "dag_id", "run_id", "task_id", "try_number", "what", "who", "detail")


@dataclass(frozen=True)
class AuditEvent:
    """One line of the audit trail. ``source`` says where it comes from:

    ``airflow.run`` a DAG run (``what`` = its state, ``who`` = who triggered it), ``airflow.task`` a task
    instance's last try, ``airflow.gate`` an answered or open Human-in-the-loop gate (``who`` = the approver),
    ``airflow.event`` an event log entry (``who`` = the acting user), ``ledger`` an erasure ledger entry,
    ``migration`` a ``schema_history`` phase or approval, ``drill`` a restore drill's verdict.
    """

    when: str
    source: str
    what: str
    dag_id: str = ""
    run_id: str = ""
    task_id: str = ""
    try_number: int | None = None
    who: str = ""
    detail: str = ""

    def row(self) -> list[str]:
        return ["" if v is None else str(v) for v in (self.when, self.source, self.dag_id, self.run_id,
                                                      self.task_id, self.try_number, self.what, self.who,
                                                      self.detail)]


@dataclass
class AuditReport:
    database: str
    since: datetime
    generated_at: datetime
    airflow_url: str
    events: list[AuditEvent] = field(default_factory=list)
    ledger_head: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return dict(sorted(Counter(e.source for e in self.events).items()))

    def approvers(self) -> list[str]:
        return sorted({e.who for e in self.events if e.source in ("airflow.gate", "migration") and e.who})

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "database": self.database, "since": _iso(self.since),
            "generated_at": _iso(self.generated_at), "airflow_url": self.airflow_url,
            "counts": self.counts(), "approvers": self.approvers(), "ledger_head": self.ledger_head,
            "notes": self.notes, "events": [asdict(e) for e in self.events],
        }

    def summary(self) -> str:
        counts = ", ".join(f"{n} {source}" for source, n in self.counts().items()) or "nothing"
        return f"audit of {self.database} since {_iso(self.since)}: {counts}"


def _iso(moment: datetime | str | None) -> str:
    if moment is None:
        return ""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _after(moment: datetime | str | None, since: datetime) -> bool:
    return moment is not None and _iso(moment) >= _iso(since)


def _user(value: Any) -> str:
    """A HITL user (``{"id": ..., "name": ...}``) or a plain name, named the way the gates' approvals are."""
    return approver({"by": value})


def run_events(runs: Iterable[Mapping[str, Any]]) -> list[AuditEvent]:
    return [AuditEvent(
        when=_iso(r.get("start_date") or r.get("run_after") or r.get("queued_at")), source="airflow.run",
        what=str(r.get("state")), dag_id=r["dag_id"], run_id=r["dag_run_id"],
        who=str(r.get("triggering_user_name") or ""),
        detail=f"{r.get('run_type')}; ended {_iso(r.get('end_date')) or '-'}",
    ) for r in runs]


def task_events(task_instances: Iterable[Mapping[str, Any]]) -> list[AuditEvent]:
    return [AuditEvent(
        when=_iso(ti.get("start_date") or ti.get("queued_when") or ti.get("run_after")), source="airflow.task",
        what=str(ti.get("state")), dag_id=ti["dag_id"], run_id=ti["dag_run_id"], task_id=ti["task_id"],
        try_number=ti.get("try_number"),
        detail=f"ended {_iso(ti.get('end_date')) or '-'}; duration {ti.get('duration') or 0:.1f}s",
    ) for ti in task_instances]


def gate_events(details: Iterable[Mapping[str, Any]]) -> list[AuditEvent]:
    """A gate answered is dated by its answer and names who answered; an open one is dated by its request."""
    events = []
    for d in details:
        ti = d.get("task_instance") or {}
        answered = bool(d.get("response_received"))
        events.append(AuditEvent(
            when=_iso(d.get("responded_at") if answered else d.get("created_at")), source="airflow.gate",
            what=("answered: " + ",".join(d.get("chosen_options") or [])) if answered else "waiting",
            dag_id=ti.get("dag_id", ""), run_id=ti.get("dag_run_id", ""), task_id=ti.get("task_id", ""),
            try_number=ti.get("try_number"), who=_user(d.get("responded_by_user")) if answered else "",
            detail=f"asked {_iso(d.get('created_at'))}: {d.get('subject', '')}",
        ))
    return events


def log_events(entries: Iterable[Mapping[str, Any]]) -> list[AuditEvent]:
    return [AuditEvent(
        when=_iso(e.get("when")), source="airflow.event", what=str(e.get("event")), dag_id=e.get("dag_id") or "",
        run_id=e.get("run_id") or "", task_id=e.get("task_id") or "", try_number=e.get("try_number"),
        who=str(e.get("owner") or ""), detail=f"event log {e.get('event_log_id')}",
    ) for e in entries]


def ledger_events(entries: Iterable[LedgerEntry]) -> list[AuditEvent]:
    events = []
    for e in entries:
        r = e.record
        tables = ", ".join(f"{t.table} {t.method} {t.rows}" for t in r.tables)
        events.append(AuditEvent(
            when=_iso(r.erased_at), source="ledger", what=r.kind, dag_id=r.dag_id or "", run_id=r.run_id or "",
            task_id=r.task_id or "", try_number=r.try_number,
            detail=(f"entry {e.seq} hash {e.entry_hash} prev {e.prev_hash[:16]}; request {r.request_id}; "
                    f"subject ref {r.subject_ref}; policy {r.policy_version[:16]}; {r.rows} rows: {tables}"),
        ))
    return events


def migration_events(rows: Iterable[Mapping[str, Any]], since: datetime) -> list[AuditEvent]:
    """``schema_history`` rows: one event per phase of the timeline and one per gate approval."""
    events = []
    for row in rows:
        name = f"{int(row['version']):03d}_{row['name']} ({row['kind']}, sha256 {str(row['checksum'])[:12]})"
        for phase in row.get("phases") or []:
            when = phase.get("at") or phase.get("finished_at") or phase.get("started_at")
            if not _after(when, since):
                continue
            events.append(AuditEvent(
                when=_iso(when), source="migration", what=f"{phase.get('phase')} {phase.get('status')}",
                dag_id=phase.get("dag_id") or "", run_id=phase.get("run_id") or "",
                try_number=phase.get("try_number"),
                detail=name + (f"; SQLSTATE {phase['sqlstate']}" if phase.get("sqlstate") else "")
                + (f"; restore point {phase['restore_point']}" if phase.get("restore_point") else ""),
            ))
        for approval in row.get("approvals") or []:
            # The keys the gates write (core.migrations.gates.approval_entry plus the run's stamp).
            when = approval.get("at")
            if not _after(when, since):
                continue
            events.append(AuditEvent(
                when=_iso(when), source="migration", what=f"gate answered: {answer(approval)}",
                dag_id=approval.get("dag_id") or "", run_id=approval.get("run_id") or "",
                task_id=approval.get("gate") or "", try_number=approval.get("try_number"), who=approver(approval),
                detail=name,
            ))
    return events


def drill_events(drills: Iterable[DrillEvidence]) -> list[AuditEvent]:
    return [AuditEvent(
        when=_iso(d.started_at), source="drill", what="passed" if d.passed else "failed",
        detail=(f"drill {d.drill_id} ({d.kind}) of backup {d.backup_id}; RTO {_seconds(d.rto_seconds)} "
                f"(target {d.rto_target_seconds:.0f}s), RPO {_seconds(d.rpo_seconds)} (target "
                f"{d.rpo_target_seconds:.0f}s); checks " + ", ".join(
                    f"{c.name} {'ok' if c.ok else 'FAILED'}" for c in d.checks)),
    ) for d in drills]


def _seconds(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.1f}s"


def build_report(
    database: str, since: datetime, airflow_url: str, *, runs: Sequence[Mapping[str, Any]] = (),
    task_instances: Sequence[Mapping[str, Any]] = (), gates: Sequence[Mapping[str, Any]] = (),
    event_log: Sequence[Mapping[str, Any]] = (), ledger: Sequence[LedgerEntry] = (),
    ledger_head: dict[str, Any] | None = None, history: Sequence[Mapping[str, Any]] = (),
    drills: Sequence[DrillEvidence] = (), notes: Sequence[str] = (), now: datetime | None = None,
) -> AuditReport:
    events = [
        *run_events(runs), *task_events(task_instances), *gate_events(gates), *log_events(event_log),
        *ledger_events(e for e in ledger if _after(e.record.erased_at, since)),
        *migration_events(history, since), *drill_events(d for d in drills if _after(d.started_at, since)),
    ]
    events.sort(key=lambda e: (e.when, e.source, e.dag_id, e.run_id, e.task_id))
    return AuditReport(database=database, since=since, generated_at=now or datetime.now(timezone.utc),
                       airflow_url=airflow_url, events=events, ledger_head=ledger_head, notes=list(notes))


def render(report: AuditReport, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(report.to_json_dict(), indent=2) + "\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows(e.row() for e in report.events)
        return out.getvalue()
    if fmt == "html":
        return render_html(report)
    raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")


def render_html(report: AuditReport) -> str:
    """One self-contained page (inline style, no script, nothing fetched); every value escaped."""
    esc = html.escape
    rows = "\n".join("<tr>" + "".join(f"<td>{esc(v)}</td>" for v in e.row()) + "</tr>" for e in report.events)
    counts = "".join(f"<li>{esc(s)}: {n}</li>" for s, n in report.counts().items())
    head = report.ledger_head or {}
    notes = "".join(f"<li>{esc(n)}</li>" for n in report.notes)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>pgwarden audit: {esc(report.database)}</title>
<style>body{{font:14px sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 6px;vertical-align:top;font-size:12px}}th{{background:#eee}}</style>
</head><body>
<h1>pgwarden audit export: {esc(report.database)}</h1>
<p>Since {esc(_iso(report.since))}; generated {esc(_iso(report.generated_at))} from {esc(report.airflow_url)}
and the database's pgwarden tables and repository. Format {FORMAT}.</p>
<h2>Summary</h2><ul>{counts}</ul>
<p>Approvers: {esc(", ".join(report.approvers()) or "none")}</p>
<p>Erasure ledger head: {esc(str(head.get("seq", "-")))} {esc(str(head.get("entry_hash", "")))}</p>
{f"<h2>Notes</h2><ul>{notes}</ul>" if notes else ""}
<h2>Timeline</h2>
<table><tr>{"".join(f"<th>{c}</th>" for c in COLUMNS)}</tr>
{rows}
</table></body></html>
"""
