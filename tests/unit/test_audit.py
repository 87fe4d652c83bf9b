"""core.audit: the audit timeline from Airflow documents and pgwarden records, and its three renderings."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

from pgwarden.core.audit import build_report, render
from pgwarden.core.drill import DrillEvidence
from pgwarden.core.lifecycle.ledger import ErasureRecord, TableErasure, next_entry
from pgwarden.core.migrations.gates import approval_entry

SINCE = datetime(2026, 11, 1, tzinfo=UTC)


def _report():
    record = ErasureRecord(kind="erasure", request_id="req-1", subject_ref="ab" * 32, policy_version="cd" * 32,
                           tables=(TableErasure('"public"."users"', "redact_email:email", 1),),
                           dag_id="appdb.gdpr_erasure", run_id="manual__1", task_id="erase", try_number=1,
                           erased_at=SINCE + timedelta(days=2))
    old = ErasureRecord(**{**record.__dict__, "request_id": "req-0", "erased_at": SINCE - timedelta(days=1)})
    first = next_entry(None, old)
    entry = next_entry(first, record)
    gate = {"response_received": True, "responded_at": "2026-11-03T10:00:00Z", "created_at": "2026-11-03T09:00:00Z",
            "chosen_options": ["Approve"], "responded_by_user": {"id": "alice", "name": "alice"},
            "subject": "Restore appdb to latest?", "body": "<script>x</script> jane@example.com",
            "params_input": {"note": "jane@example.com"},
            "task_instance": {"dag_id": "appdb.pitr_restore", "dag_run_id": "manual__2", "task_id": "approve",
                              "try_number": 1}}
    run = {"dag_id": "appdb.pitr_restore", "dag_run_id": "manual__2", "state": "success", "run_type": "manual",
           "start_date": "2026-11-03T08:59:00Z", "end_date": "2026-11-03T10:05:00Z", "triggering_user_name": "bob",
           "conf": {"secret": "jane@example.com"}}
    event = {"event_log_id": 7, "when": "2026-11-03T10:00:01Z", "event": "trigger", "dag_id": "appdb.pitr_restore",
             "owner": "bob", "extra": "jane@example.com"}
    history = [{"version": 2, "name": "rename_users_email", "kind": "expand_contract", "checksum": "f" * 64,
                "phases": [{"phase": "expand", "status": "applied", "at": "2026-11-04T00:00:00Z",
                            "dag_id": "appdb.migrate_002", "run_id": "r"},
                           {"phase": "expand", "status": "running", "at": "2026-10-01T00:00:00Z"}],
                # What the gated DAG's gates write: approval_entry plus their run's stamp.
                "approvals": [{**approval_entry("gate_contract", ["Approve"], {"id": "carol", "name": "carol"},
                                                "2026-11-05T00:00:00+00:00", False),
                               "dag_id": "appdb.migrate.002_rename_users_email", "run_id": "r", "try_number": 1},
                              {**approval_entry("gate_contract", ["Roll back"], None, "2026-11-06T00:00:00+00:00",
                                                True), "dag_id": "appdb.migrate.002_rename_users_email",
                               "run_id": "r2", "try_number": 1}]}]
    drill = DrillEvidence(database="appdb", drill_id="d1", started_at=SINCE + timedelta(days=6), rto_seconds=12.5,
                          rto_target_seconds=3600, rpo_target_seconds=900, pgwarden_version="0.1.0",
                          error="value jane@example.com broke it")
    drill.add("counts", True, "users 3 rows jane@example.com")
    return build_report("appdb", SINCE, "http://airflow", runs=[run], gates=[gate], event_log=[event],
                         ledger=[first, entry], history=history, drills=[drill],
                         ledger_head={"seq": 2, "entry_hash": entry.entry_hash}), entry


def test_the_timeline_names_approvers_and_ledger_entries_in_time_order() -> None:
    report, entry = _report()
    sources = [e.source for e in report.events]
    assert sources == ["ledger", "airflow.run", "airflow.gate", "airflow.event", "migration", "migration",
                       "migration", "drill"]
    gate = report.events[2]
    assert (gate.who, gate.what, gate.when) == ("alice", "answered: Approve", "2026-11-03T10:00:00Z")
    ledger = report.events[0]
    assert ledger.run_id == "manual__1" and f"entry 2 hash {entry.entry_hash}" in ledger.detail
    assert "req-0" not in json.dumps(report.to_json_dict())  # before --since
    assert report.approvers() == ["alice", "carol"]
    approved, timed_out = [e for e in report.events if e.source == "migration" and e.what.startswith("gate")]
    assert (approved.who, approved.what, approved.task_id, approved.dag_id, approved.run_id) == (
        "carol", "gate answered: Approve", "gate_contract", "appdb.migrate.002_rename_users_email", "r")
    assert (timed_out.who, timed_out.what) == ("", "gate answered: Roll back (timed out)")
    assert report.events[-1].what == "failed" and "RTO 12.5s" in report.events[-1].detail


def test_no_free_text_that_could_hold_personal_data_is_exported() -> None:
    report, _ = _report()
    for fmt in ("csv", "json", "html"):
        text = render(report, fmt)
        assert "jane@example.com" not in text, fmt
    page = render(report, "html")
    assert "<script" not in page and "http" not in page.split("</style>")[0]


def test_csv_has_one_row_per_event_with_the_documented_columns() -> None:
    report, _ = _report()
    rows = list(csv.DictReader(io.StringIO(render(report, "csv"))))
    assert len(rows) == len(report.events)
    assert rows[2]["who"] == "alice" and rows[2]["source"] == "airflow.gate"
