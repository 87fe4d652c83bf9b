"""Clear and retry, end to end, for every pgwarden DAG of the demo config, in one `airflow standalone`.

Each DAG's run is made to fail for real, then its failed tasks are cleared through the REST API
(`POST /api/v2/dags/{dag_id}/clearTaskInstances`) and the run must converge: success, and the database
and the repository in the state one clean run leaves (no duplicate backup, ledger entry or migration).

* the application server stopped: healthcheck, backup_full, backup_incremental, ttl_purge, gdpr_erasure
  and migrate all fail at their first database task; the server is started again and they are cleared;
* verify_restore: its scratch server is killed with kill -9 once it is seen running; cleared;
* pitr_restore: a stray file in the destination makes the approved restore fail; removed, cleared;
* the gated expand/contract DAGs, each gate answered "Approve" through the HITL endpoint:
  - migrate.003_index_orders_status: a test transaction holds a snapshot, so expand's
    CREATE INDEX CONCURRENTLY waits in its last phase with an INVALID index already in the catalog; the
    task's process (the one owning the backend's client socket) is killed with kill -9 there, leaving
    that INVALID index; the snapshot is released, expand cleared: exactly one valid index at the end;
  - migrate.002_rename_users_email: a test transaction holds ACCESS SHARE on users while contract runs, so
    contract's DROP TRIGGER/COLUMN and RENAME COLUMN time out (lock_timeout, no lock retry in this config) and fails; the
    lock is released, contract cleared: users has email_address with every value and no email column.
  Contract really runs, so users.email, which the demo's erasure config maps, is gone afterwards: these
  cases run after the erasure parts, and nothing after them erases. While 002 waits at each gate, the
  pgwarden page's JSON must show that gate waiting since the gate task's start in Airflow, and after the
  first gate who approved it.

Then `pgwarden audit export`, as a read-only user, must name the gates' approver (pitr_restore's and the
gated migrations', from Airflow and from schema_history), every erasure ledger entry, the second tries of
the cleared tasks and the clears (tests/e2e/test_audit_export.py).

The DAG list comes from the API: a pgwarden DAG without a case here fails the test. The config is the
demo's with `retries: 0`, so a failure is final at once instead of waiting for a retry, and with
migration settings that make the gated cases quick: one 5 s lock wait per DDL statement and no lock retry,
and gates whose readiness passes at once (`min_soak`, `quiet_for` 0 s; with or without pg_stat_statements).
"""

from __future__ import annotations

import contextlib
import json
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
RENAME, INDEX = "appdb.migrate.002_rename_users_email", "appdb.migrate.003_index_orders_status"
CASES = (*SERVER_DOWN, "verify_restore", "pitr_restore", RENAME.removeprefix("appdb."), INDEX.removeprefix("appdb."))
INDEX_NAME = "orders_status_created_at_idx"  # include/sql/migrations/appdb/003_index_orders_status.yaml
SWITCH, CONTRACT = "gate_switch_reads", "gate_contract"
ASKING = {"awaiting_input", "deferred"}


def _config_without_retries(base: Path) -> Path:
    config = yaml.safe_load((ROOT / "include" / "pgwarden.yaml").read_text())
    config["defaults"]["retries"] = 0
    appdb = config["databases"]["appdb"]
    # Relative migration paths are read from the config file's folder: keep the repository's.
    migrations = appdb.get("migrations") or {}
    appdb["migrations"] = {**migrations, "path": str(ROOT / "include" / "sql" / "migrations" / "appdb"),
                           "lock_timeout": "5s", "lock_retries": 0,
                           "gates": {**(migrations.get("gates") or {}), "min_soak": "0s", "quiet_for": "0s",
                                     "poke_interval": "5s"}}
    path = base / "pgwarden.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Stack(AuditedStack):
    def airflow_env(self) -> dict[str, str]:
        env = super().airflow_env()
        env["AIRFLOW__PGWARDEN__UI_CACHE_TTL"] = "1"  # the page's status follows the runs within a poll
        return env


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _states(api, dag_id: str, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["state"] for ti in api.task_instances(dag_id, run_id)}


def _clear_failed(api, dag_id: str, run_id: str) -> list[str]:
    answer = api.request("POST", f"/api/v2/dags/{_q(dag_id)}/clearTaskInstances", {
        "dry_run": False, "dag_run_id": run_id, "only_failed": True, "include_downstream": True,
        "reset_dag_runs": True})
    return sorted(ti["task_id"] for ti in answer["task_instances"])


def _answer(api, dag_id: str, run_id: str, gate: str, asked_at: float, option: str = "Approve") -> None:
    """Answer a waiting gate through the HITL endpoint, no sooner than 20 s after it was seen asking:
    Airflow 3.3 races on faster answers (apache/airflow#71580, see test_pitr_approval)."""
    time.sleep(max(0.0, asked_at + 20 - time.monotonic()))
    api.request("PATCH", f"/api/v2/dags/{_q(dag_id)}/dagRuns/{_q(run_id)}/taskInstances/{gate}/-1/hitlDetails",
                {"chosen_options": [option]})


def _asking(api, dag_id: str, run_id: str, gate: str) -> float:
    state = _wait_for_state(api, dag_id, run_id, gate, ASKING, timeout=240)
    assert state in ASKING, f"{dag_id}.{gate} is {state}: {_states(api, dag_id, run_id)}"
    return time.monotonic()


def _page_migration(api, version: int, ready) -> dict:
    """The pgwarden page's JSON entry of migration ``version`` once ``ready(entry)`` holds (the page serves a
    cached status while it refreshes, so a few polls may be needed)."""
    deadline = time.monotonic() + 60
    while True:
        databases = {d["database"]: d for d in api.request("GET", "/pgwarden/api/status")["databases"]}
        entry = next((m for m in databases[demo.DATABASE]["migrations"] if m["version"] == version), None)
        if entry is not None and ready(entry) or time.monotonic() > deadline:
            return entry
        time.sleep(2)


def _started(api, dag_id: str, run_id: str, task_id: str) -> datetime:
    ti = next(t for t in api.task_instances(dag_id, run_id) if t["task_id"] == task_id)
    return datetime.fromisoformat(ti["start_date"])


def _check_page_at_gate(api, dag_id: str, run_id: str, version: int, gate: str) -> dict:
    """The page shows the migration after backfill with ``gate`` waiting since the gate task's start."""
    entry = _page_migration(api, version, lambda m: (m["gate_waiting"] or {}).get("gate") == gate)
    assert entry is not None and entry["status"] == "running" and entry["phase"] == "backfill", entry
    since = datetime.fromisoformat(entry["gate_waiting"]["since"])
    assert abs(since - _started(api, dag_id, run_id, gate)) < timedelta(seconds=2), entry
    return entry


_BUILD_WAITING = ("SELECT client_port FROM pg_stat_activity WHERE query ILIKE 'CREATE INDEX CONCURRENTLY%%' "
                  "AND query LIKE %s AND wait_event_type = 'Lock' AND client_port > 0")
_BUILD_RUNNING = "SELECT pid FROM pg_stat_activity WHERE query ILIKE 'CREATE INDEX CONCURRENTLY%%' AND query LIKE %s"


def _kill_index_build(target, server_port: int, timeout: float = 240) -> int:
    """kill -9 the process whose backend builds the index, once the build waits (for the test's snapshot):
    the process owning the backend's client socket is the task's. Returns its pid."""
    deadline = time.monotonic() + timeout
    with connect(target) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(_BUILD_WAITING, (f"%{INDEX_NAME}%",)).fetchone()
            if row:
                owners = [c.pid for c in psutil.net_connections(kind="tcp") if c.pid and c.laddr
                          and c.laddr.port == row[0] and c.raddr and c.raddr.port == server_port]
                assert len(set(owners)) == 1, owners
                psutil.Process(owners[0]).kill()
                return owners[0]
            time.sleep(0.2)
    raise TimeoutError("the index build was never seen waiting")


def _index_validity(conn) -> list[bool]:
    return [v for (v,) in conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = 'public.orders'::regclass AND c.relname = %s", (INDEX_NAME,))]


def _history_events(conn, version: int, phase: str) -> list[tuple[str, int]]:
    return [(e["status"], e.get("try_number")) for e in conn.execute(
        "SELECT phases FROM pgwarden.schema_history WHERE version = %s", (version,)).fetchone()[0]
        if e["phase"] == phase]


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
    stack = Stack(config, progress=print)
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
        assert listed == expected, f"pgwarden DAGs without a clear/retry case: {sorted(listed - expected)}"
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

        _answer(api, "appdb.pitr_restore", pitr_run, "approve", _asking(api, "appdb.pitr_restore", pitr_run, "approve"))
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

        # 3. The gated migrations: 003's index build killed mid-way, 002's contract blocked by a lock.
        users_triggers = ("SELECT count(*) FROM pg_trigger WHERE tgrelid = 'public.users'::regclass "
                          "AND NOT tgisinternal")
        with connect(target) as conn:
            emails = conn.execute("SELECT md5(string_agg(email, ',' ORDER BY id)) FROM users").fetchone()[0]
            triggers = conn.execute(users_triggers).fetchone()[0]
        with connect(target) as holder:
            holder.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            holder.execute("SELECT 1")  # a snapshot: CREATE INDEX CONCURRENTLY waits for it before it is done
            # 002 first: versions start in order, so 003's plan refuses to start until 002 is recorded in effect.
            gated = {RENAME: api.trigger(RENAME)["dag_run_id"]}
            assert _wait_for_state(api, RENAME, gated[RENAME], "restore_point", {"success"}) == "success"
            gated[INDEX] = api.trigger(INDEX)["dag_run_id"]
            killed = _kill_index_build(target, stack.cluster.port)
            final = api.wait_for_run(INDEX, gated[INDEX], timeout=240)
            assert final["state"] == "failed" and _states(api, INDEX, gated[INDEX])["expand"] == "failed", (
                killed, _states(api, INDEX, gated[INDEX]))
            with connect(target) as conn:
                deadline = time.monotonic() + 60  # the orphaned backend ends at its lock timeout
                while conn.execute(_BUILD_RUNNING, (f"%{INDEX_NAME}%",)).fetchone() and time.monotonic() < deadline:
                    time.sleep(0.5)
                assert _index_validity(conn) == [False], "kill -9 mid-build leaves an INVALID index"
        assert "expand" in _clear_failed(api, INDEX, gated[INDEX])

        asked = {dag_id: _asking(api, dag_id, run_id, SWITCH) for dag_id, run_id in gated.items()}
        _check_page_at_gate(api, RENAME, gated[RENAME], 2, SWITCH)
        for dag_id, run_id in gated.items():
            _answer(api, dag_id, run_id, SWITCH, asked[dag_id])
        asked = {dag_id: _asking(api, dag_id, run_id, CONTRACT) for dag_id, run_id in gated.items()}
        _answer(api, INDEX, gated[INDEX], CONTRACT, asked[INDEX])
        final = api.wait_for_run(INDEX, gated[INDEX], timeout=240)  # before 002's safety net: one WAL collector
        assert final["state"] == "success", _states(api, INDEX, gated[INDEX])

        entry = _check_page_at_gate(api, RENAME, gated[RENAME], 2, CONTRACT)
        assert entry["approvals"][0].startswith(f"{SWITCH}: Approve by {demo.ADMIN_USER} at "), entry
        with connect(target) as locker:
            locker.execute("BEGIN")
            locker.execute("LOCK TABLE users IN ACCESS SHARE MODE")  # contract's ALTER TABLE cannot get its lock
            _answer(api, RENAME, gated[RENAME], CONTRACT, asked[RENAME])
            final = api.wait_for_run(RENAME, gated[RENAME], timeout=240)
            assert final["state"] == "failed" and _states(api, RENAME, gated[RENAME])["contract"] == "failed", (
                _states(api, RENAME, gated[RENAME]))
        assert _clear_failed(api, RENAME, gated[RENAME]) == ["contract", "record"]
        for dag_id, run_id in gated.items():
            final = api.wait_for_run(dag_id, run_id, timeout=240)
            states = _states(api, dag_id, run_id)
            assert final["state"] == "success", f"{dag_id} after the clear: {states}\n{stack.log_tail()}"
            assert "failed" not in states.values() and states["record"] == "success", (dag_id, states)
        with connect(target) as conn:
            assert _index_validity(conn) == [True]
            columns = {c for (c,) in conn.execute("SELECT column_name FROM information_schema.columns "
                                                  "WHERE table_schema = 'public' AND table_name = 'users'")}
            assert "email_address" in columns and "email" not in columns, columns
            assert conn.execute("SELECT md5(string_agg(email_address, ',' ORDER BY id)) FROM users").fetchone()[0] \
                == emails
            assert conn.execute(users_triggers).fetchone()[0] == triggers  # the dual-write trigger is gone
            history = conn.execute("SELECT version, status FROM pgwarden.schema_history ORDER BY version").fetchall()
            assert history == [(1, "applied"), (2, "applied"), (3, "applied")]
            assert conn.execute("SELECT count(*) FROM pgwarden.schema_history_tables").fetchone()[0] == 0
            # The killed expand never recorded its end; the cleared one ran it to the end, once.
            assert _history_events(conn, 3, "expand") == [("running", 1), ("running", 2), ("running", 2)], \
                _history_events(conn, 3, "expand")
            assert [s for s, _ in _history_events(conn, 3, "contract")] == ["running", "applied"]
            assert _history_events(conn, 2, "contract") == [("running", 1), ("failed", 1), ("running", 2),
                                                            ("applied", 2)], _history_events(conn, 2, "contract")

        # 4. The audit trail of all this, exported by a read-only user (README "Audit export").
        report = check_audit_export(stack, since, pitr_run, "Approve", runs["gdpr_erasure"], personal)
        tries = {(e["dag_id"], e["task_id"]): e["try_number"] for e in report["events"] if e["source"] == "airflow.task"}
        assert tries[("appdb.gdpr_erasure", "plan")] == 2 and tries[("appdb.pitr_restore", "restore")] == 2, tries
        assert tries[(INDEX, "expand")] == 2 and tries[(RENAME, "contract")] == 2, tries
        assert any(e["source"] == "airflow.event" and "clear" in e["what"] for e in report["events"])
        for dag_id, run_id in gated.items():  # each gate's answer, from Airflow and from schema_history
            answers = sorted((e["source"], e["task_id"], e["who"], e["what"]) for e in report["events"]
                             if (e["dag_id"], e["run_id"]) == (dag_id, run_id)
                             and e["source"] in ("airflow.gate", "migration") and e["task_id"] in (SWITCH, CONTRACT))
            assert answers == sorted([
                ("airflow.gate", gate, demo.ADMIN_USER, "answered: Approve") for gate in (SWITCH, CONTRACT)] + [
                ("migration", gate, demo.ADMIN_USER, "gate answered: Approve") for gate in (SWITCH, CONTRACT)]), answers
    finally:
        remove_restore(destination)
        stack.stop()
