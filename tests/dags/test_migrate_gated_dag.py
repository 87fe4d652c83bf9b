"""dag.test() of ``<database>.migrate.<NNN_name>`` against a real server, the gates answered from a thread
the way the HITL endpoint answers them (tests/harness/hitl.py).

Roll back at either gate (answered, or the contract gate's timeout) leaves ``pg_dump --schema-only`` of the table
as before and every row; approve at both contracts with the approvers in ``schema_history``; an edited
file is refused by the next task; a second migration on the same table is refused while one is active.

A rolled-back migration runs again from the start; a migration past a pending earlier one is refused at plan.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta

import pytest

from pgwarden.engine.pgtools import tool
from pgwarden.engine.postgres import connect
from tests.harness.airflow_conns import set_postgres_conn
from tests.harness.hitl import answer_in_background

pytestmark = pytest.mark.integration

RENAME = "operations:\n  - rename_column: {table: public.accounts, from: email, to: email_address}\n"
NOT_NULL = "operations:\n  - set_not_null: {table: public.accounts, column: nickname, fill: \"'anon'\"}\n"
OWNER = {"id": "release_owner", "name": "release_owner"}


def gated_database(pg, pgwarden_config, monkeypatch, file_repo, tmp_path, database: str, gates: str):
    """``database`` on ``pg``: 500 accounts, the migration 001_rename_email, the gates as written; its folder."""
    folder = tmp_path / "sql" / "migrations" / database
    folder.mkdir(parents=True)
    (folder / "001_rename_email.yaml").write_text(RENAME)
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, nickname text)")
        conn.execute("INSERT INTO accounts SELECT g, 'u' || g || '@example.org', NULL FROM generate_series(1, 500) g")
    set_postgres_conn(monkeypatch, f"pg_{database}", pg)
    pgwarden_config(f"""
        {database}:
          conn_id: pg_{database}
          repository: {{url: "{file_repo}"}}
          migrations:
            lock_timeout: 500ms
            gates: {gates}
    """)
    return folder


@pytest.fixture
def gated(pg, pgwarden_config, monkeypatch, file_repo, tmp_path):
    return pg, gated_database(pg, pgwarden_config, monkeypatch, file_repo, tmp_path, "gdb",
                              "{approvers: [release_owner], min_soak: 0s, safety_net: restore_point, poke_interval: 7s}")


def dump(pg) -> str:
    out = subprocess.run([tool("pg_dump"), "--schema-only", "-t", "public.accounts"], env=pg.target().tool_env(),
                         capture_output=True, text=True, check=True).stdout
    return "\n".join(line for line in out.splitlines() if not line.startswith(("-- Dumped", "\\restrict", "\\unrestrict")))


def rows(pg) -> str:
    with connect(pg.target()) as conn:
        return conn.execute("SELECT md5(string_agg(a::text, ',' ORDER BY id)) FROM accounts a").fetchone()[0]


def history(pg, version: int = 1):
    with connect(pg.target()) as conn:
        return conn.execute("SELECT status, phase, approvals, (SELECT count(*) FROM pgwarden.schema_history_tables) "
                            "FROM pgwarden.schema_history WHERE version = %s", (version,)).fetchone()


def run(dag_id: str, answers: dict, before=None):
    from pgwarden.airflow.dag_factory import build_dags

    dag = build_dags()[dag_id]
    thread = answer_in_background(dag_id, answers, OWNER, before)
    result = dag.test()
    thread.join(timeout=5)
    assert not thread.errors, thread.errors
    return {ti.task_id: ti.state for ti in result.get_task_instances()}, result


DAG = "gdb.migrate.001_rename_email"


def test_dag_shape_docs_and_gate_settings(gated) -> None:
    from pgwarden.airflow.dag_factory import build_dags

    dag = build_dags()[DAG]
    assert dag.schedule is None and dag.max_active_runs == 1 and {"pgwarden", "migrate", "db:gdb"} <= set(dag.tags)
    assert "renames column `email` of `public.accounts` to `email_address`" in dag.doc_md
    assert "old and the new version side by side" in dag.doc_md
    gate = dag.get_task("gate_contract")
    assert gate.defaults == ["Roll back"] and gate.assigned_users == [OWNER]
    assert gate.options_mapping == {"Approve": "safety_net", "Roll back": "rollback_at_contract"}
    assert "undoes exactly the phases done" in dag.get_task("rollback_at_switch").doc_md
    assert {dag.get_task(t).poke_interval for t in ("consistency", "readiness")} == {7.0}  # gates.poke_interval


def test_roll_back_at_the_switch_gate_restores_the_schema(gated) -> None:
    pg, _ = gated
    before_schema, before_rows = dump(pg), rows(pg)
    seen = {}

    def at_gate(task_id: str) -> None:
        seen["columns"] = dump(pg).count("email_address")

    states, _ = run(DAG, {"gate_switch_reads": "Roll back"}, at_gate)
    assert states["rollback_at_switch"] == "success" and states["readiness"] == "skipped", states
    assert states["consistency"] == "success" and seen["columns"] > 0  # expand really ran
    assert dump(pg) == before_schema and rows(pg) == before_rows
    status, phase, approvals, claims = history(pg)
    assert (status, phase, claims) == ("rolled_back", "rollback", 0)
    assert [(a["gate"], a["chosen"], a["by"]["id"]) for a in approvals] == [
        ("gate_switch_reads", ["Roll back"], "release_owner")]


@pytest.mark.parametrize("answer", [None, "Roll back"], ids=["timeout", "answered"])
def test_contract_gate_timeout_or_roll_back_drops_nothing(gated, answer) -> None:
    pg, _ = gated
    before_schema, before_rows = dump(pg), rows(pg)
    states, _ = run(DAG, {"gate_switch_reads": "Approve", "gate_contract": answer})
    assert states["rollback_at_contract"] == "success" and states["contract"] == "skipped", states
    assert dump(pg) == before_schema and rows(pg) == before_rows
    status, _, approvals, claims = history(pg)
    assert status == "rolled_back" and claims == 0
    assert [(a["gate"], a["chosen"], a["timed_out"]) for a in approvals] == [
        ("gate_switch_reads", ["Approve"], False), ("gate_contract", ["Roll back"], answer is None)]


def test_approved_twice_contracts_and_names_both_approvers(gated) -> None:
    from pgwarden.core.status import migration_state
    from pgwarden.engine.config_file import load_config
    from pgwarden.engine.status import gather_database

    pg, _ = gated
    before_rows = rows(pg)
    page = {}

    def at_gate(task_id: str) -> None:  # what the pgwarden page reads while the gate waits
        facts = gather_database(pg.target(), load_config().databases["gdb"], datetime.now(UTC), "5s")
        page[task_id] = migration_state(facts.migrations[0])

    states, dag_run = run(DAG, {"gate_switch_reads": "Approve", "gate_contract": "Approve"}, at_gate)
    assert states["record"] == "success" and states["rollback_at_contract"] == "skipped", states
    started = {ti.task_id: ti.start_date for ti in dag_run.get_task_instances()}
    for gate in ("gate_switch_reads", "gate_contract"):
        waiting = page[gate]["gate_waiting"]
        assert (waiting["gate"], waiting["after_phase"]) == (gate, "backfill"), page
        assert abs(datetime.fromisoformat(waiting["since"]) - started[gate]) < timedelta(seconds=1), (waiting, started)
    assert page["gate_contract"]["approvals"][0].startswith("gate_switch_reads: Approve by release_owner at ")
    assert "email_address" in dump(pg) and " email " not in dump(pg)
    assert rows(pg) == before_rows  # same values, now under email_address
    status, phase, approvals, claims = history(pg)
    assert (status, phase, claims) == ("applied", "contract", 0)
    assert [(a["gate"], a["by"]["name"], a["dag_id"], a["run_id"]) for a in approvals] == [
        ("gate_switch_reads", "release_owner", DAG, dag_run.run_id), ("gate_contract", "release_owner", DAG, dag_run.run_id)]
    with connect(pg.target()) as conn:
        events = conn.execute("SELECT phases FROM pgwarden.schema_history").fetchone()[0]
    assert any(e["phase"] == "safety_net" and e["restore_point"].startswith("pgwarden_001_rename_email_precontract")
               for e in events)


def test_edited_file_and_second_migration_on_the_table_are_refused(gated) -> None:
    pg, folder = gated
    path = folder / "001_rename_email.yaml"

    def edit(task_id: str) -> None:
        path.write_text(RENAME + "# edited while running\n")

    states, _ = run(DAG, {"gate_switch_reads": "Approve"}, edit)
    assert states["gate_switch_reads"] == "failed" and states["readiness"] == "upstream_failed", states
    from pgwarden.engine.errors import PermanentError
    from pgwarden.engine.migrations import gated as engine

    with pytest.raises(PermanentError, match="001_rename_email.yaml"):
        engine.guard(pg.target(), _config(), "001_rename_email")
    assert history(pg)[0] == "running" and history(pg)[3] == 1  # still active, still claims accounts

    path.write_text(RENAME)
    (folder / "002_nickname_not_null.yaml").write_text(NOT_NULL)
    states, _ = run("gdb.migrate.002_nickname_not_null", {})
    assert states["plan"] == "success" and states["restore_point"] == "failed", states
    with pytest.raises(PermanentError, match="001_rename_email is still active"):
        from pgwarden.engine.migrations.history import RunInfo

        with engine.recorded(pg.target(), _config(), "002_nickname_not_null", "restore_point", RunInfo()):
            pass
    assert "nickname text" in dump(pg) and "NOT NULL" not in dump(pg).split("nickname")[1].split("\n")[0]


def test_a_rolled_back_migration_runs_again_from_the_start(gated) -> None:
    pg, _ = gated
    before_rows = rows(pg)
    states, _ = run(DAG, {"gate_switch_reads": "Approve", "gate_contract": "Roll back"})
    assert states["rollback_at_contract"] == "success" and history(pg)[0] == "rolled_back", states
    states, _ = run(DAG, {"gate_switch_reads": "Approve", "gate_contract": "Approve"})
    assert states["record"] == "success" and states["rollback_at_contract"] == "skipped", states
    assert "email_address" in dump(pg) and rows(pg) == before_rows
    status, phase, approvals, claims = history(pg)
    assert (status, phase, claims) == ("applied", "contract", 0)
    assert [a["chosen"] for a in approvals] == [["Approve"], ["Roll back"], ["Approve"], ["Approve"]]


def test_a_migration_past_a_pending_one_is_refused_before_it_changes_anything(gated) -> None:
    pg, folder = gated
    (folder / "002_nickname_not_null.yaml").write_text(NOT_NULL)
    before = dump(pg)
    states, _ = run("gdb.migrate.002_nickname_not_null", {})
    # Started, its restore point would record 002 as running: 001 out of order for good, 002 stuck claiming the table.
    assert states["plan"] == "failed" and states["restore_point"] == "upstream_failed", states
    from pgwarden.engine.errors import PermanentError
    from pgwarden.engine.migrations import gated as engine

    with pytest.raises(PermanentError, match="001_rename_email before it is not applied yet"):
        engine.guard(pg.target(), _config(), "002_nickname_not_null")
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT count(*) FROM pgwarden.schema_history").fetchone()[0] == 0
    assert dump(pg) == before


def _config():
    from pgwarden.engine.config_file import load_config

    return load_config().databases["gdb"].migrations
