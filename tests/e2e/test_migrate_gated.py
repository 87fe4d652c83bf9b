"""The gated expand/contract DAG end to end: one `airflow standalone` (the demo stack, with pg_stat_statements),
two application versions writing the table all along, the gates answered through the REST API and, once, by a
person clicking Approve in Airflow's Required actions page (a real chromium).

`appdb.migrate.002_rename_users_email` renames `public.users.email` to `email_address`. Two release owners may
answer its gates (`migrations.gates.approvers`); the admin may use the DAG but is not one of them.

* First `appdb.backup_full` (the rehearsal restores it) and `appdb.migrate` (001 before 002: versions apply
  in order).
* Run 1, rehearsed (`{"rehearse": true}`): the switch gate's body carries the rehearsal's figures; the admin's
  answer is refused (403) and the gate keeps waiting; the owner approves; the old application stops; at the
  contract gate the new application is rolled back first, then the gate is answered Roll back: the table's
  schema (pg_dump: columns, types, defaults, indexes, constraints, triggers) is as before, every write is in
  `email`, the history says rolled back.
* Run 2, the same DAG again: the old application keeps writing after the switch gate until the readiness
  sensor has seen it (pg_stat_statements) and waited, then stops (the new version is rolled out); readiness
  passes once the statements stop; the second owner approves the contract in the browser; the new application
  writes on through contract. Every write of both runs is in `email_address`, `email` is gone, and
  `schema_history` names both approvers with times.

Airflow 3.3 races when a gate is answered within seconds of deferring (apache/airflow#71580, see
test_pitr_approval): every answer waits 20 s after the gate starts waiting, as a person would.
Screenshots: tests/artifacts/migrate-gate-*.png (ignored by git).
"""

from __future__ import annotations

import json
import re
import threading
import time
import urllib.parse
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import sql

from pgwarden.core.identifiers import QualifiedName
from pgwarden.engine.cluster import free_port
from pgwarden.engine.migrations.rehearsal import schema_dump
from pgwarden.engine.postgres import connect
from tests.e2e.test_demo import ROOT, demo, demo_base  # noqa: F401 (fixture)
from tests.e2e.test_pgwarden_page import ARTIFACTS, CHROMIUM
from tests.e2e.test_pitr_approval import _wait_for_state

DAG_ID = "appdb.migrate.002_rename_users_email"
LABEL = "002_rename_users_email"
USERS = 1500
# Two release owners (simple auth manager role `user`: may answer required actions of DAGs).
SWITCH_OWNER = ("alice", "alice-release-pw")
CONTRACT_OWNER = ("carol", "carol-release-pw")
WAITING = {"deferred", "awaiting_input"}
RACE_WAIT = 20.0  # apache/airflow#71580


def _config(base: Path) -> Path:
    config = yaml.safe_load((ROOT / "include" / "pgwarden.yaml").read_text())
    appdb = config["databases"]["appdb"]
    appdb["migrations"] = {
        **(appdb.get("migrations") or {}),
        # Relative migration paths are read from the config file's folder: keep the repository's.
        "path": str(ROOT / "include" / "sql" / "migrations" / "appdb"),
        # min_soak is the fallback without pg_stat_statements: an hour, so only the statement counts can pass.
        "gates": {"approvers": [SWITCH_OWNER[0], CONTRACT_OWNER[0]], "quiet_for": "1s", "min_soak": "1h",
                  "poke_interval": "5s"},
    }
    path = base / "pgwarden.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


class Writer(threading.Thread):
    """One application version: INSERTs and UPDATEs of `users` through one column, each with a value of its own,
    remembering the value of every write that committed (row id -> last value)."""

    def __init__(self, target, column: str, tag: str, update_ids: list[int]) -> None:
        super().__init__(daemon=True, name=f"writer-{tag}")
        self.target, self.column, self.tag, self.update_ids = target, column, tag, update_ids
        self.expected: dict[int, str] = {}
        self.inserted = self.updated = 0
        self.errors: list[str] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        column = sql.Identifier(self.column)
        insert = sql.SQL("INSERT INTO users ({}, full_name, country) VALUES (%s, %s, 'DE') RETURNING id").format(column)
        update = sql.SQL("UPDATE users SET {} = %s, updated_at = now() WHERE id = %s").format(column)
        n = 0
        try:
            with psycopg.connect(**self.target.conninfo_params(), autocommit=True) as conn:
                while not self._stop_event.is_set():
                    n += 1
                    value = f"{self.tag}-{n}@writers.example"
                    if n % 2:
                        row_id = conn.execute(insert, (value, f"writer {self.tag}")).fetchone()[0]
                        self.inserted += 1
                    else:
                        row_id = self.update_ids[(n // 2) % len(self.update_ids)]
                        conn.execute(update, (value, row_id))
                        self.updated += 1
                    self.expected[row_id] = value
                    time.sleep(0.02)
        except Exception as exc:  # the test fails on any; the message carries no row value
            self.errors.append(f"write {n} through {self.column}: {type(exc).__name__}: {exc}")

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)
        assert not self.is_alive(), f"writer {self.tag} did not stop"
        assert self.errors == [], self.errors
        assert self.inserted > 0 and self.updated > 0, (self.tag, self.inserted, self.updated)


def _q(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _hitl(run_id: str, task_id: str) -> str:
    return f"/api/v2/dags/{DAG_ID}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/-1/hitlDetails"


def _states(api, run_id: str) -> dict[str, str]:
    return {ti["task_id"]: ti["state"] for ti in api.task_instances(DAG_ID, run_id)}


def _xcom(api, run_id: str, task_id: str, key: str):
    path = f"/api/v2/dags/{DAG_ID}/dagRuns/{_q(run_id)}/taskInstances/{task_id}/xcomEntries/{_q(key)}"
    value = api.request("GET", path)["value"]
    return json.loads(value) if isinstance(value, str) and value.startswith('"') else value


def _reached(api, run_id: str, task_id: str, states: set[str], timeout: float) -> float:
    """Wait for ``task_id`` to reach one of ``states``; returns the monotonic time it was seen there."""
    state = _wait_for_state(api, DAG_ID, run_id, task_id, states, timeout=timeout)
    assert state in states, f"{task_id} is {state}: {_states(api, run_id)}"
    return time.monotonic()


def _answer(api, run_id: str, task_id: str, option: str, waiting_since: float) -> dict:
    time.sleep(max(0.0, waiting_since + RACE_WAIT - time.monotonic()))
    return api.request("PATCH", _hitl(run_id, task_id), {"chosen_options": [option]})


def _expected(*writers: Writer) -> dict[int, str]:
    merged: dict[int, str] = {}
    for writer in writers:  # in the order they wrote: a later writer's value of the same row wins
        merged.update(writer.expected)
    return merged


def _wrong_rows(target, column: str, expected: dict[int, str]) -> int:
    """Rows of ``expected`` whose ``column`` does not hold the value their last committed write set."""
    with connect(target) as conn:
        found = dict(conn.execute(sql.SQL("SELECT id, {} FROM users WHERE id = ANY(%s)").format(sql.Identifier(column)),
                                  (list(expected),)).fetchall())
    return sum(1 for row_id, value in expected.items() if found.get(row_id) != value)


def _scalar(target, query: str):
    with connect(target) as conn:
        return conn.execute(query).fetchone()[0]


def _approvals(target, run_id: str) -> list[tuple[str, list[str], str, str]]:
    with connect(target) as conn:
        approvals = conn.execute("SELECT approvals FROM pgwarden.schema_history WHERE version = 2").fetchone()[0]
    return [(a["gate"], a["chosen"], (a["by"] or {}).get("name"), a["at"]) for a in approvals if a["run_id"] == run_id]


def _run_to_the_switch_gate(api, target, tag: str, conf: dict, writers: list[Writer]):
    """Trigger a run with the old application writing; the new one starts writing once expand added its column.
    Returns the run id, both writers and when the switch gate was seen waiting."""
    old = Writer(target, "email", f"old{tag}", list(range(1, 400, 2)))  # each version updates rows of its own
    old.start()
    writers.append(old)
    run_id = api.trigger(DAG_ID, conf)["dag_run_id"]
    _reached(api, run_id, "expand", {"success"}, timeout=420)
    new = Writer(target, "email_address", f"new{tag}", list(range(2, 400, 2)))
    new.start()
    writers.append(new)
    return run_id, old, new, _reached(api, run_id, "gate_switch_reads", WAITING, timeout=240)


def _approve_in_browser(url: str, user: tuple[str, str], run_id: str) -> None:
    """Log in as ``user``, open Required actions, open this run's contract gate and click Approve."""
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: .ci/run installs it with apt (or set PGWARDEN_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    subject = f"{LABEL}: contract (drop the old column for good)?"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url + "/required_actions")
            page.wait_for_selector('input[name="username"]', timeout=60_000)
            page.fill('input[name="username"]', user[0])
            page.fill('input[name="password"]', user[1])
            page.click('button[type="submit"]')
            page.wait_for_url(re.compile(r"^(?!.*login).*$"), timeout=60_000)
            # Browse > Required Actions, pending ones only.
            page.goto(url + "/required_actions?response_received=false")
            page.get_by_text(subject).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "migrate-gate-1-required-actions.png"), full_page=True)
            page.get_by_text(subject).first.click()
            # The gate's options as buttons (HITL form); their test ids are Airflow's.
            approve = page.locator('[data-testid="hitl-option-Approve"]')
            approve.wait_for(timeout=60_000)
            page.get_by_text("readiness").first.wait_for(timeout=10_000)  # the gate's body, as rendered
            page.screenshot(path=str(ARTIFACTS / "migrate-gate-2-before-approve.png"), full_page=True)
            approve.click()
            page.get_by_text(re.compile("response (successful|received)", re.I)).first.wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "migrate-gate-3-after-approve.png"), full_page=True)
        except Exception:
            page.screenshot(path=str(ARTIFACTS / "migrate-gate-failed.png"), full_page=True)
            (ARTIFACTS / "migrate-gate-failed.html").write_text(page.content())
            raise
        finally:
            browser.close()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(1200)
def test_gated_migration_with_writers_a_rollback_then_api_and_browser_approvals(demo_base: Path) -> None:  # noqa: F811
    started = time.monotonic()
    marks: dict[str, float] = {}
    config = demo.DemoConfig(base=demo_base, users=USERS, sessions_per_user=2, api_port=free_port(),
                             config_file=_config(demo_base),
                             more_users={name: ("user", password) for name, password in (SWITCH_OWNER, CONTRACT_OWNER)})
    stack = demo.DemoStack(config, progress=print)
    writers: list[Writer] = []
    try:
        stack.start()
        marks["stack up"] = time.monotonic()
        api = stack.api
        owner = demo.AirflowApi(stack.api_url, username=SWITCH_OWNER[0], password=SWITCH_OWNER[1])
        target = stack.cluster.target(demo.DATABASE)
        deadline = time.monotonic() + 90
        while DAG_ID not in {d["dag_id"] for d in api.dags()} and time.monotonic() < deadline:
            time.sleep(3)
        assert _scalar(target, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'") == 1
        # Only what the test runs: a scheduled WAL collection at the top of the hour would compete with the
        # safety net's for the replication slot.
        for dag in api.dags():
            if dag["dag_id"] not in (DAG_ID, "appdb.backup_full", "appdb.migrate"):
                api.request("PATCH", f"/api/v2/dags/{_q(dag['dag_id'])}?update_mask=is_paused", {"is_paused": True})

        # A full backup for the rehearsal; 001 (plain) before 002.
        runs = {dag_id: api.trigger(dag_id)["dag_run_id"] for dag_id in ("appdb.backup_full", "appdb.migrate")}
        for dag_id, run_id in runs.items():
            final = api.wait_for_run(dag_id, run_id, timeout=300)
            assert final["state"] == "success", f"{dag_id}: {final['state']}\n{stack.log_tail()}"
        marks["backup and 001"] = time.monotonic()

        users = QualifiedName("public", "users")
        before_schema = schema_dump(target, stack.cluster, (users,))
        assert "email text NOT NULL" in before_schema and "email_address" not in before_schema

        # ---- Run 1: rehearsed, refused for the admin, approved at the switch, rolled back at the contract.
        run1, old1, new1, waiting = _run_to_the_switch_gate(api, target, "1", {"rehearse": True}, writers)
        marks["run 1 at the switch gate"] = time.monotonic()
        time.sleep(RACE_WAIT)
        details = api.request("GET", _hitl(run1, "gate_switch_reads"))
        body = details["body"]
        assert "### Rehearsal on a restored copy: passed" in body, body
        for phase in ("restore", "expand", "backfill", "consistency", "contract"):
            assert f"| {phase} |" in body, (phase, body)
        assert re.search(r"\*\*Backfill:\*\* [\d,]+ rows at [\d,]+ rows/s", body), body
        assert "mismatches (new differs from what old implies)**: 0" in body, body
        assert details["assigned_users"] == [{"id": n, "name": n} for n in (SWITCH_OWNER[0], CONTRACT_OWNER[0])]

        with pytest.raises(demo.ApiError) as refused:  # the admin may use the DAG but is no release owner
            api.request("PATCH", _hitl(run1, "gate_switch_reads"), {"chosen_options": ["Approve"]})
        assert refused.value.status == 403 and "not a respondent" in str(refused.value), refused.value
        assert _states(api, run1)["gate_switch_reads"] in WAITING
        assert api.request("GET", _hitl(run1, "gate_switch_reads"))["response_received"] is False

        answered = _answer(owner, run1, "gate_switch_reads", "Approve", waiting)
        assert answered["responded_by"]["name"] == SWITCH_OWNER[0]
        old1.stop()  # the old application version is gone once reads switched
        waiting = _reached(api, run1, "gate_contract", WAITING, timeout=240)
        marks["run 1 at the contract gate"] = time.monotonic()
        saw = _xcom(api, run1, "readiness", "readiness")
        assert "statements on the old column since the switch gate" in saw and "not installed" not in saw, saw
        assert _scalar(target, "SELECT count(*) FROM users WHERE email IS DISTINCT FROM email_address") == 0
        new1.stop()  # rolling back: the new application version goes first
        _answer(owner, run1, "gate_contract", "Roll back", waiting)
        final = api.wait_for_run(DAG_ID, run1, timeout=240)
        states = _states(api, run1)
        assert final["state"] == "success" and states["rollback_at_contract"] == "success", states
        assert states["contract"] == "skipped" and states["rollback_at_switch"] == "skipped", states
        marks["run 1 rolled back"] = time.monotonic()

        assert schema_dump(target, stack.cluster, (users,)) == before_schema
        assert _wrong_rows(target, "email", _expected(old1, new1)) == 0
        assert _scalar(target, "SELECT count(*) FROM users") == USERS + old1.inserted + new1.inserted
        assert _scalar(target, "SELECT status FROM pgwarden.schema_history WHERE version = 2") == "rolled_back"
        assert [a[:3] for a in _approvals(target, run1)] == [
            ("gate_switch_reads", ["Approve"], SWITCH_OWNER[0]), ("gate_contract", ["Roll back"], SWITCH_OWNER[0])]

        # ---- Run 2: the same DAG again; readiness waits for the old application; the contract approved by click.
        run2, old2, new2, waiting = _run_to_the_switch_gate(api, target, "2", {}, writers)
        marks["run 2 at the switch gate"] = time.monotonic()
        assert "### Rehearsal: not run" in api.request("GET", _hitl(run2, "gate_switch_reads"))["body"]
        _answer(owner, run2, "gate_switch_reads", "Approve", waiting)
        # The rollout of the new version takes a while: readiness sees the old one still writing and waits.
        state = _wait_for_state(api, DAG_ID, run2, "readiness", {"up_for_reschedule", "success"}, timeout=180)
        assert state == "up_for_reschedule", f"readiness did not wait for the old application: {state}"
        old2.stop()
        waiting = _reached(api, run2, "gate_contract", WAITING, timeout=240)
        marks["run 2 at the contract gate"] = time.monotonic()
        saw = _xcom(api, run2, "readiness", "readiness")
        calls = re.search(r"email': (\d+)", saw)
        assert calls and int(calls[1]) > 0 and "not installed" not in saw, saw
        contract_body = api.request("GET", _hitl(run2, "gate_contract"))["body"]
        assert saw in contract_body and f"switch reads approved by**: {SWITCH_OWNER[0]}" in contract_body
        assert _scalar(target, "SELECT count(*) FROM users WHERE email IS DISTINCT FROM email_address") == 0
        time.sleep(max(0.0, waiting + RACE_WAIT - time.monotonic()))
        _approve_in_browser(stack.api_url, CONTRACT_OWNER, run2)
        marks["run 2 approved in the browser"] = time.monotonic()
        final = api.wait_for_run(DAG_ID, run2, timeout=300)
        states = _states(api, run2)
        assert final["state"] == "success" and states["record"] == "success", f"{states}\n{stack.log_tail()}"
        assert states["rollback_at_contract"] == "skipped", states
        new2.stop()  # it wrote on through contract
        marks["run 2 applied"] = time.monotonic()

        assert _scalar(target, "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public' "
                               "AND table_name = 'users' AND column_name = 'email'") == 0
        assert _wrong_rows(target, "email_address", _expected(old1, new1, old2, new2)) == 0
        assert _scalar(target, "SELECT count(*) FROM users") == USERS + sum(w.inserted for w in writers)
        with connect(target) as conn:
            assert conn.execute("SELECT status, phase FROM pgwarden.schema_history WHERE version = 2").fetchone() == (
                "applied", "contract")
        approvals = _approvals(target, run2)
        assert [a[:3] for a in approvals] == [("gate_switch_reads", ["Approve"], SWITCH_OWNER[0]),
                                              ("gate_contract", ["Approve"], CONTRACT_OWNER[0])], approvals
        assert all(a[3] for a in approvals), approvals
    finally:
        for writer in writers:
            writer._stop_event.set()
        stack.stop()
        marks["stopped"] = time.monotonic()
        previous = started
        for what, at in marks.items():
            print(f"[timing] {what}: +{at - previous:.0f}s (total {at - started:.0f}s)")
            previous = at
        for writer in writers:
            print(f"[writes] {writer.tag}: {writer.inserted} inserts, {writer.updated} updates")
