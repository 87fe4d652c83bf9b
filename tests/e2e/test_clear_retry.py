"""Clear and retry, end to end, for every pgwarden DAG of the demo config, in one `airflow standalone`.

Each DAG's run is made to fail for real, then its failed tasks are cleared through the REST API
(`POST /api/v2/dags/{dag_id}/clearTaskInstances`) and the run must converge: success, and the database
and the repository in the state one clean run leaves (no duplicate backup, ledger entry or migration).

* the application server stopped: healthcheck, backup_full, backup_incremental, ttl_purge, gdpr_erasure
  and migrate all fail at their first database task; the server is started again and they are cleared;
* verify_restore: its scratch server is killed with kill -9 once it is seen running; cleared;
* pitr_restore: a stray file in the destination makes the approved restore fail; removed, cleared.

Then `pgwarden audit export`, as a read-only user, must name the gate's approver, every erasure ledger
entry, the second tries of the cleared tasks and the clears (tests/e2e/test_audit_export.py).

The DAG list comes from the API: a pgwarden DAG without a case here fails the test. The config is the
demo's with `retries: 0`, so a failure is final at once instead of waiting for a retry.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psutil
import pytest
import yaml

from pgwarden.core import layout
from pgwarden.engine.cluster import free_port
from pgwarden.engine.postgres import connect
from pgwarden.engine.restore import remove_restore, restored_server
from tests.e2e.test_audit_export import AuditedStack, check_audit_export, personal_values
from tests.e2e.test_demo import ROOT, demo, demo_base  # noqa: F401 (fixture)
from tests.e2e.test_pitr_approval import _wait_for_state

SERVER_DOWN = ("healthcheck", "backup_full", "backup_incremental", "ttl_purge", "gdpr_erasure", "migrate")
CASES = (*SERVER_DOWN, "verify_restore", "pitr_restore")


def _config_without_retries(base: Path) -> Path:
    config = yaml.safe_load((ROOT / "include" / "pgwarden.yaml").read_text())
    config["defaults"]["retries"] = 0
    appdb = config["databases"]["appdb"]
    # Relative migration paths are read from the config file's folder: keep the repository's.
    appdb["migrations"] = {**(appdb.get("migrations") or {}),
                           "path": str(ROOT / "include" / "sql" / "migrations" / "appdb")}
    path = base / "pgwarden.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _states(api, dag_id: str, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["state"] for ti in api.task_instances(dag_id, run_id)}


def _clear_failed(api, dag_id: str, run_id: str) -> list[str]:
    answer = api.request("POST", f"/api/v2/dags/{_q(dag_id)}/clearTaskInstances", {
        "dry_run": False, "dag_run_id": run_id, "only_failed": True, "include_downstream": True,
        "reset_dag_runs": True})
    return sorted(ti["task_id"] for ti in answer["task_instances"])


def _scratch_postmasters(work_dir: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(work_dir) in cmdline and "-D" in cmdline and "postgres" in cmdline:
            found.append(proc)
    return found


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(900)
def test_every_dag_converges_after_a_real_failure_and_a_clear(demo_base: Path) -> None:  # noqa: F811
    config = demo.DemoConfig(base=demo_base, users=1000, sessions_per_user=2, api_port=free_port(),
                             config_file=_config_without_retries(demo_base))
    stack = AuditedStack(config, progress=print)
    since = datetime.now(timezone.utc) - timedelta(minutes=1)
    destination = demo_base / "pitr" / "data"
    try:
        stack.start()
        api = stack.api
        expected = {f"appdb.{case}" for case in CASES}
        deadline = time.monotonic() + 90
        while not expected <= {d["dag_id"] for d in api.dags()} and time.monotonic() < deadline:
            time.sleep(3)
        listed = {d["dag_id"] for d in api.dags()}
        # The gated expand/contract DAGs (one per YAML migration) have no case here yet (still to come): their
        # phases, gates and rollbacks run under dag.test() with real gates (tests/dags/test_migrate_gated_dag.py).
        gated = {dag_id for dag_id in listed if re.fullmatch(r"appdb\.migrate\.\d{3}_\w+", dag_id)}
        assert gated == {"appdb.migrate.002_rename_users_email", "appdb.migrate.003_index_orders_status"}, gated
        assert listed - gated == expected, f"pgwarden DAGs without a clear/retry case: {sorted(listed - expected)}"
        target = stack.cluster.target(demo.DATABASE)
        with connect(target) as conn:
            due = conn.execute("SELECT count(*) FROM users WHERE deleted_at < now() - interval '30 days' "
                               "AND NOT legal_hold").fetchone()[0]
        assert due > 0
        personal = personal_values(target)

        # 1. The application server is down: every DAG touching it fails at its first database task.
        stack.cluster.stop(mode="fast")
        runs = {case: api.trigger(f"appdb.{case}")["dag_run_id"] for case in SERVER_DOWN}
        for case, run_id in runs.items():
            final = api.wait_for_run(f"appdb.{case}", run_id, timeout=240)
            assert final["state"] == "failed", f"{case} with the server down: {_states(api, f'appdb.{case}', run_id)}"
        stack.cluster.start()
        # backup_full first: backup_incremental collects WAL only once a full backup exists.
        assert _clear_failed(api, "appdb.backup_full", runs["backup_full"])
        api.wait_for_run("appdb.backup_full", runs["backup_full"], timeout=300)
        for case, run_id in runs.items():
            if case != "backup_full":
                assert _clear_failed(api, f"appdb.{case}", run_id), case
        for case, run_id in runs.items():
            final = api.wait_for_run(f"appdb.{case}", run_id, timeout=300)
            states = _states(api, f"appdb.{case}", run_id)
            assert final["state"] == "success", f"{case} after the clear: {states}\n{stack.log_tail()}"
            assert "failed" not in states.values(), (case, states)
        assert _states(api, "appdb.backup_incremental", runs["backup_incremental"])["collect_wal"] == "success"

        s3 = stack.s3_client()
        keys = [o["Key"] for page in s3.get_paginator("list_objects_v2").paginate(Bucket=demo.BUCKET, Prefix="appdb/")
                for o in page.get("Contents", [])]
        assert len([k for k in keys if k.startswith("appdb/base/") and k.endswith("/" + layout.MANIFEST_NAME)]) == 1, keys
        assert any(k.startswith("appdb/wal/") for k in keys)
        with connect(target) as conn:
            assert conn.execute("SELECT count(*) FROM sessions WHERE expires_at < now() - interval '10 minutes'"
                                ).fetchone()[0] == 0
            entries, subjects = conn.execute("SELECT count(*), count(DISTINCT subject_ref) FROM "
                                             "pgwarden.erasure_ledger WHERE kind = 'erasure'").fetchone()
            assert entries == subjects >= due  # a user may pass the 30-day grace meanwhile
            history = conn.execute("SELECT version, status FROM pgwarden.schema_history ORDER BY version").fetchall()
            assert history == [(1, "applied")]
            assert conn.execute("SELECT to_regclass('public.user_preferences') IS NOT NULL").fetchone()[0]
        head = json.loads(s3.get_object(Bucket=demo.BUCKET, Key="appdb/ledger/head.json")["Body"].read())
        assert head["seq"] == entries

        # 2. verify_restore's scratch server killed mid-way; pitr_restore's destination obstructed.
        drill_run = api.trigger("appdb.verify_restore")["dag_run_id"]
        destination.mkdir(parents=True)
        destination.parent.chmod(0o755)
        (destination / "stray").write_text("not a data directory")
        pitr_run = api.trigger("appdb.pitr_restore", {"target_kind": "latest", "destination": str(destination),
                                                      "port": None, "action": "promote"})["dag_run_id"]
        killed = 0
        deadline = time.monotonic() + 240
        while not killed and time.monotonic() < deadline:
            for proc in _scratch_postmasters(stack.work_dir):
                with contextlib.suppress(psutil.Error):
                    proc.kill()
                    killed += 1
            if api.dag_run("appdb.verify_restore", drill_run)["state"] in ("success", "failed"):
                break
            time.sleep(0.2)
        assert killed, "no scratch server of the drill was seen running"
        final = api.wait_for_run("appdb.verify_restore", drill_run, timeout=240)
        assert final["state"] == "failed", _states(api, "appdb.verify_restore", drill_run)

        state = _wait_for_state(api, "appdb.pitr_restore", pitr_run, "approve", {"deferred", "awaiting_input"})
        assert state in ("deferred", "awaiting_input"), state
        time.sleep(20)  # apache/airflow#71580 (see test_pitr_approval)
        api.request("PATCH", f"/api/v2/dags/appdb.pitr_restore/dagRuns/{_q(pitr_run)}/taskInstances/approve/-1"
                             "/hitlDetails", {"chosen_options": ["Approve"]})
        final = api.wait_for_run("appdb.pitr_restore", pitr_run, timeout=240)
        assert final["state"] == "failed" and _states(api, "appdb.pitr_restore", pitr_run)["restore"] == "failed"
        (destination / "stray").unlink()

        assert _clear_failed(api, "appdb.verify_restore", drill_run)
        assert _clear_failed(api, "appdb.pitr_restore", pitr_run) == ["restore"]  # the approval stands
        for dag_id, run_id in (("appdb.verify_restore", drill_run), ("appdb.pitr_restore", pitr_run)):
            final = api.wait_for_run(dag_id, run_id, timeout=300)
            assert final["state"] == "success", f"{dag_id}: {_states(api, dag_id, run_id)}\n{stack.log_tail()}"
        drills = [json.loads(s3.get_object(Bucket=demo.BUCKET, Key=o["Key"])["Body"].read())
                  for o in s3.list_objects_v2(Bucket=demo.BUCKET, Prefix="appdb/drills/").get("Contents", [])]
        assert any(d["error"] is None and all(c["ok"] for c in d["checks"]) for d in drills), drills
        assert _scratch_postmasters(stack.work_dir) == []
        port = int((destination / "postmaster.pid").read_text().splitlines()[3])
        with connect(restored_server(destination, port).target("appdb")) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1000

        # 3. The audit trail of all this, exported by a read-only user (README "Audit export").
        report = check_audit_export(stack, since, pitr_run, "Approve", runs["gdpr_erasure"], personal)
        tries = {(e["dag_id"], e["task_id"]): e["try_number"] for e in report["events"] if e["source"] == "airflow.task"}
        assert tries[("appdb.gdpr_erasure", "plan")] == 2 and tries[("appdb.pitr_restore", "restore")] == 2, tries
        assert any(e["source"] == "airflow.event" and "clear" in e["what"] for e in report["events"])
    finally:
        remove_restore(destination)
        stack.stop()
