"""dag.test() of a gated migration on a server with pg_stat_statements, approved at both gates, safety net
``full_backup``, metrics sent to a local StatsD listener.

The readiness sensor does not pass while an old application version keeps writing the old column (``email``),
passes once it stopped for ``quiet_for`` while a new version keeps writing ``email_address`` (a statement on
the new column only is not one on the old), and reports the counts it saw. The safety net's restore point is
in the history and its XCom, with a full backup and the WAL up to it in the repository; run again after
contract it makes nothing new. The phases send durations, lock retries and the backfill's rows; the gates their
outcome, never who answered.
"""

from __future__ import annotations

import threading
import time

import pytest

from pgwarden.engine.postgres import connect
from tests.dags.test_migrate_gated_dag import OWNER, dump, gated_database
from tests.harness.hitl import answer_in_background
from tests.harness.receivers import send_airflow_metrics_to, statsd_listener, wait_for

pytestmark = pytest.mark.integration

DAG = "sdb.migrate.001_rename_email"


@pytest.fixture
def stats_server(pg_factory, pgwarden_config, monkeypatch, file_repo, tmp_path):
    pg = pg_factory(settings={"shared_preload_libraries": "pg_stat_statements"})
    with connect(pg.target()) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    folder = gated_database(pg, pgwarden_config, monkeypatch, file_repo, tmp_path, "sdb",
                            "{approvers: [release_owner], quiet_for: 2s, min_soak: 1h, safety_net: full_backup}")
    return pg, file_repo, folder / "001_rename_email.yaml"


class Writer(threading.Thread):
    """An application version writing one column of accounts, one statement at a time, until stopped."""

    def __init__(self, pg, column: str) -> None:
        super().__init__(daemon=True)
        self.pg, self.column, self.stop, self.writes = pg, column, threading.Event(), 0

    def run(self) -> None:
        from psycopg import sql

        with connect(self.pg.target()) as conn:
            statement = sql.SQL("UPDATE accounts SET {c} = {c} WHERE id = %s").format(c=sql.Identifier(self.column))
            while not self.stop.is_set():
                conn.execute(statement, (self.writes % 500 + 1,))
                self.writes += 1
                time.sleep(0.02)


def reschedules(task_id: str) -> int:
    from airflow.models.taskinstance import TaskInstance as TI
    from airflow.models.taskreschedule import TaskReschedule
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    with create_session() as session:
        return session.scalar(select(func.count()).select_from(TaskReschedule).join(TI, TI.id == TaskReschedule.ti_id)
                              .where(TI.dag_id == DAG, TI.task_id == task_id))


def test_readiness_waits_for_the_old_column_to_go_quiet_then_contracts_with_a_full_backup(
        stats_server, monkeypatch) -> None:
    from pgwarden.airflow.dag_factory import build_dags
    from pgwarden.engine.migrations import gated

    pg, repo_url, path = stats_server
    old, new = Writer(pg, "email"), Writer(pg, "email_address")
    seen: dict[str, int] = {}

    def at_gate(task_id: str) -> None:
        if task_id == "gate_switch_reads":  # the snapshot is taken when the gate is answered: the old app runs on
            old.start()
            new.start()
        else:
            counted = gated.old_column_calls(pg.target(), path)
            with connect(pg.target()) as conn:
                for key in range(1, 21):
                    conn.execute("UPDATE accounts SET email_address = email_address WHERE id = %s", (key,))
                    conn.execute("SELECT email_address FROM public.accounts WHERE id = %s", (key,))
            seen["new_column_only"] = (counted, gated.old_column_calls(pg.target(), path))

    def stop_old_writer() -> None:
        # Observed, not timed: the sensor went on waiting (rescheduled) three times while the old app wrote.
        while reschedules("readiness") < 3 and not done.is_set():
            time.sleep(0.1)
        seen["reschedules_while_writing"] = reschedules("readiness")
        old.stop.set()

    done = threading.Event()
    with statsd_listener() as statsd:
        send_airflow_metrics_to(statsd, monkeypatch)
        dag = build_dags()[DAG]
        dag.get_task("readiness").poke_interval = 1  # 30 s in production
        monitor = threading.Thread(target=stop_old_writer, daemon=True)
        monitor.start()
        thread = answer_in_background(DAG, {"gate_switch_reads": "Approve", "gate_contract": "Approve"}, OWNER,
                                      at_gate)
        try:
            result = dag.test()
        finally:
            done.set()
            old.stop.set()
            new.stop.set()
        thread.join(timeout=5)
        assert not thread.errors, thread.errors
        states = {ti.task_id: ti.state for ti in result.get_task_instances()}
        assert states["record"] == "success" and states["rollback_at_contract"] == "skipped", states

        # Readiness: waited while the old column was written, passed after it stopped; the new column's writer
        # ran throughout (it wrote while the sensor went quiet and passed).
        assert seen["reschedules_while_writing"] >= 3 and old.writes > 0
        assert new.writes > old.writes or new.writes > 50
        tis = {ti.task_id: ti for ti in result.get_task_instances()}
        saw = tis["readiness"].xcom_pull(task_ids="readiness", key="readiness")
        calls = int(saw.split("{'public.accounts.email': ")[1].split("}")[0])
        assert calls >= 3, saw  # what it saw: the old version's statements since the switch gate
        assert "needs 0:00:02" in saw
        # The matcher (checked at the contract gate, while both columns exist): statements naming only
        # email_address (and the table) are not counted as statements on email.
        before, after = seen["new_column_only"]
        assert before == after and before["public.accounts.email"] >= 3
        assert "email_address" in dump(pg)

        # Safety net: restore point in the history and the XCom, a full backup and WAL up to it.
        net = tis["safety_net"].xcom_pull(task_ids="safety_net")
        assert net["mode"] == "full_backup" and net["backup_id"] and not net["backup_reused"]
        with connect(pg.target()) as conn:
            events = conn.execute("SELECT phases FROM pgwarden.schema_history").fetchone()[0]
        done_events = [e for e in events if e["phase"] == "safety_net" and e["status"] == "done"]
        assert [(e["restore_point"], e["lsn"], e["backup_id"]) for e in done_events] == [
            (net["restore_point"], net["lsn"], net["backup_id"])]
        from pgwarden.core.config import RepositoryConfig
        from pgwarden.engine.catalog import read_catalog
        from pgwarden.engine.repository import open_repository

        repo = open_repository(RepositoryConfig(url=repo_url))
        catalog = read_catalog(repo, "sdb")
        assert [b.id for b in catalog.backups] == [net["backup_id"]]
        report = catalog.check_chain()
        assert report.ok and report.reachable_point.name == net["restore_point"]

        # The contract task's timeline names it too.
        timeline = tis["contract"].xcom_pull(task_ids="contract")["timeline"]["phases"]
        assert [e["restore_point"] for e in timeline if e["phase"] == "safety_net" and e["status"] == "done"] == [
            net["restore_point"]]

        # Cleared after contract: nothing new, the same target.
        from pgwarden.engine.config_file import load_config
        from pgwarden.engine.migrations.history import RunInfo

        again = gated.execute(pg.target(), lambda: repo, "sdb", load_config().databases["sdb"], "001_rename_email",
                              "safety_net", RunInfo(dag_id=DAG, run_id=result.run_id, try_number=2),
                              log=lambda _: None)
        assert again["already"] and again["restore_point"] == net["restore_point"]
        assert [b.id for b in read_catalog(repo, "sdb").backups] == [net["backup_id"]]

        # Metrics: durations, lock retries, backfill rows; gate outcomes without a person.
        for phase in ("restore_point", "expand", "backfill", "safety_net", "contract", "record"):
            name = f"airflow.pgwarden.migrate_gated.{phase}.duration_seconds.sdb"
            assert wait_for(lambda name=name: statsd.values(name), name)[0][1] == "g"
        for name, value in (("backfill.rows_updated", 500.0), ("backfill.rows_walked", 500.0),
                            ("expand.lock_retries", 0.0), ("contract.lock_retries", 0.0),
                            ("gate_switch_reads.approved", 1.0), ("gate_contract.approved", 1.0)):
            full = f"airflow.pgwarden.migrate_gated.{name}.sdb"
            assert wait_for(lambda full=full: statsd.values(full), full) == [(value, "c")], full
        assert not [line for line in statsd.lines if "release_owner" in line]
