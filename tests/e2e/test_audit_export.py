"""`pgwarden audit export` against a real `airflow standalone` (the demo stack), as a read-only user.

Used by tests/e2e/test_clear_retry.py, whose one stack already runs every DAG, answers pitr_restore's
approval gate and erases users: after its clears, the export, made by a `viewer` user whose password
comes from the environment, must name the gate's approver and the ledger entries of the erasures, show
the retried tries, and hold none of the erased users' personal data.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

from pgwarden.engine.postgres import connect
from tests.e2e.test_demo import demo

AUDITOR = "auditor"


class AuditedStack(demo.DemoStack):
    """The demo stack with a second, read-only Airflow user (the simple auth manager's viewer role)."""

    def airflow_env(self) -> dict[str, str]:
        env = super().airflow_env()
        env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] += f",{AUDITOR}:viewer"
        return env

    def auditor_password(self) -> str:
        # The simple auth manager generates passwords for users missing from its file and writes them there.
        path = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        return json.loads(path.read_text())[AUDITOR]


def _export(stack: AuditedStack, fmt: str, since: datetime, out: Path) -> subprocess.CompletedProcess:
    pgwarden = Path(sys.executable).with_name("pgwarden")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "PGWARDEN_", "AIRFLOW__"))}
    env = {**clean, "PGWARDEN_AIRFLOW_USER": AUDITOR, "PGWARDEN_AIRFLOW_PASSWORD": stack.auditor_password(),
           "PGWARDEN_AIRFLOW_URL": stack.api_url}
    command = f"{stack.source_line} && {pgwarden} audit export {demo.DATABASE} --since {since.isoformat()} " \
              f"--format {fmt} --out {out}"
    return subprocess.run(["bash", "-c", command], env=env, cwd=stack.base, capture_output=True, text=True,
                          timeout=180)


def personal_values(target) -> list[str]:
    """E-mail addresses and names of the users the demo's erasure will erase: none may reach the export."""
    with connect(target) as conn:
        return [v for row in conn.execute(
            "SELECT email, full_name FROM users WHERE deleted_at < now() - interval '30 days' "
            "AND NOT legal_hold") for v in row if v]


def check_audit_export(stack: AuditedStack, since: datetime, gate_run: str, answer: str, erasure_run: str,
                       personal: list[str]) -> dict:
    """Export as the viewer in all three formats; the export names the gate's approver and every erasure
    ledger entry, and holds none of ``personal``. Returns the JSON export."""
    with connect(stack.cluster.target(demo.DATABASE)) as conn:
        ledger = conn.execute("SELECT seq, entry_hash, subject_ref FROM pgwarden.erasure_ledger "
                              "WHERE kind = 'erasure' ORDER BY seq").fetchall()
    assert ledger
    out = stack.base / "audit.json"
    done = _export(stack, "json", since, out)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text())
    events = report["events"]
    gates = [e for e in events if e["source"] == "airflow.gate" and e["run_id"] == gate_run]
    assert [(g["who"], g["what"]) for g in gates] == [(demo.ADMIN_USER, f"answered: {answer}")], gates
    assert demo.ADMIN_USER in report["approvers"]
    entries = [e for e in events if e["source"] == "ledger"]
    assert len(entries) == len(ledger)
    for entry, (seq, entry_hash, subject_ref) in zip(entries, ledger, strict=True):
        assert entry["run_id"] == erasure_run and entry["what"] == "erasure"
        assert f"entry {seq} hash {entry_hash}" in entry["detail"] and subject_ref in entry["detail"]
    assert report["ledger_head"]["seq"] == ledger[-1][0]
    runs = {(e["dag_id"], e["what"]) for e in events if e["source"] == "airflow.run"}
    assert {("appdb.backup_full", "success"), ("appdb.gdpr_erasure", "success")} <= runs
    assert any(e["source"] == "airflow.task" and e["run_id"] == erasure_run and e["task_id"] == "erase"
               for e in events)
    assert any(e["source"] == "airflow.event" for e in events)
    texts = [out.read_text()]
    for fmt in ("csv", "html"):
        target = stack.base / f"audit.{fmt}"
        done = _export(stack, fmt, since, target)
        assert done.returncode == 0, done.stderr
        texts.append(target.read_text())
        assert ledger[0][1] in texts[-1] and demo.ADMIN_USER in texts[-1]
    leaked = [v for v in personal if any(v in text for text in texts)]
    assert leaked == [], f"{len(leaked)} personal values in the export"
    rows = list(csv.DictReader(io.StringIO(texts[1])))
    assert any(r["source"] == "airflow.gate" and r["who"] == demo.ADMIN_USER for r in rows)
    return report
