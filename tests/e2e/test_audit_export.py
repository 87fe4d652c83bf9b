"""`pgwarden audit export` against a real `airflow standalone` (the demo stack), as a read-only user.

The stack runs `appdb.backup_full`, then `appdb.pitr_restore` whose approval gate the admin answers
(Reject: nothing is restored, the gate is still answered by a named person), then `appdb.gdpr_erasure`.
The export, made by a `viewer` user whose password comes from the environment, must name the gate's
approver and the ledger entries of the erasures, and hold none of the erased users' personal data.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from pgwarden.engine.cluster import free_port
from pgwarden.engine.postgres import connect
from tests.e2e.test_demo import demo, demo_base  # noqa: F401 (fixture)
from tests.e2e.test_pitr_approval import _run, _wait_for_state

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


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(900)
def test_audit_export_names_the_gate_approver_and_the_erasure_ledger(demo_base: Path) -> None:  # noqa: F811
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    config = demo.DemoConfig(base=demo_base, users=2000, sessions_per_user=2, api_port=free_port())
    stack = AuditedStack(config, progress=print)
    try:
        stack.start()
        api = stack.api
        deadline = time.monotonic() + 90
        while "appdb.gdpr_erasure" not in {d["dag_id"] for d in api.dags()} and time.monotonic() < deadline:
            time.sleep(3)
        with connect(stack.cluster.target(demo.DATABASE)) as conn:
            personal = [v for row in conn.execute(
                "SELECT email, full_name FROM users WHERE deleted_at < now() - interval '30 days' "
                "AND NOT legal_hold") for v in row if v]
        assert personal, "the demo seed has users due for erasure"

        final, tasks = _run(api, "appdb.backup_full")
        assert final["state"] == "success", f"backup_full: {tasks}\n{stack.log_tail()}"

        run = api.trigger("appdb.pitr_restore", {"target_kind": "latest",
                                                 "destination": str(demo_base / "never-restored"),
                                                 "port": None, "action": "promote"})
        run_id = run["dag_run_id"]
        state = _wait_for_state(api, "appdb.pitr_restore", run_id, "approve", {"deferred", "awaiting_input"})
        assert state in ("deferred", "awaiting_input"), f"approve is {state}"
        time.sleep(20)  # apache/airflow#71580: never answer within seconds of the deferral (see test_pitr_approval)
        path = (f"/api/v2/dags/appdb.pitr_restore/dagRuns/{urllib.parse.quote(run_id, safe='')}"
                f"/taskInstances/approve/-1/hitlDetails")
        api.request("PATCH", path, {"chosen_options": ["Reject"]})
        api.wait_for_run("appdb.pitr_restore", run_id, timeout=180)

        final, tasks = _run(api, "appdb.gdpr_erasure")
        assert final["state"] == "success", f"gdpr_erasure: {tasks}\n{stack.log_tail()}"
        erasure_run = final["dag_run_id"]
        with connect(stack.cluster.target(demo.DATABASE)) as conn:
            ledger = conn.execute("SELECT seq, entry_hash, subject_ref FROM pgwarden.erasure_ledger "
                                  "WHERE kind = 'erasure' ORDER BY seq").fetchall()
        assert ledger

        out = demo_base / "audit.json"
        done = _export(stack, "json", since, out)
        assert done.returncode == 0, done.stderr
        report = json.loads(out.read_text())
        events = report["events"]
        gates = [e for e in events if e["source"] == "airflow.gate" and e["run_id"] == run_id]
        assert [(g["who"], g["what"]) for g in gates] == [(demo.ADMIN_USER, "answered: Reject")], gates
        assert demo.ADMIN_USER in report["approvers"]
        entries = [e for e in events if e["source"] == "ledger"]
        assert len(entries) == len(ledger)
        for entry, (seq, entry_hash, subject_ref) in zip(entries, ledger, strict=True):
            assert entry["run_id"] == erasure_run and entry["what"] == "erasure"
            assert f"entry {seq} hash {entry_hash}" in entry["detail"] and subject_ref in entry["detail"]
        assert report["ledger_head"]["seq"] == ledger[-1][0]
        runs = {(e["dag_id"], e["what"]) for e in events if e["source"] == "airflow.run"}
        assert {("appdb.backup_full", "success"), ("appdb.gdpr_erasure", "success")} <= runs
        assert any(e["source"] == "airflow.task" and e["task_id"] == "erase" and e["try_number"] == 1
                   for e in events)
        assert any(e["source"] == "airflow.event" for e in events)

        for fmt in ("csv", "html"):
            target = demo_base / f"audit.{fmt}"
            done = _export(stack, fmt, since, target)
            assert done.returncode == 0, done.stderr
            text = target.read_text()
            assert ledger[0][1] in text and demo.ADMIN_USER in text
            leaked = [v for v in personal if v in text or v in out.read_text()]
            assert leaked == [], f"{len(leaked)} personal values in the {fmt} export"
        rows = list(csv.DictReader(io.StringIO((demo_base / "audit.csv").read_text())))
        assert any(r["source"] == "airflow.gate" and r["who"] == demo.ADMIN_USER for r in rows)
    finally:
        stack.stop()
