"""The healthcheck against real servers: each requirement met, and each one missing."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest

from pgwarden.core.config import RepositoryConfig
from pgwarden.core.health import Requirements
from pgwarden.core.identifiers import QualifiedName
from pgwarden.engine.healthcheck import gather_standby_facts, run_healthcheck
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository import open_repository
from tests.harness.standby import hot_standby

REQ = Requirements(backups=True, slot_name="pgwarden_t1", slot_warn_bytes=2**30, max_pg_wal_bytes=2**30)


def check(server, file_repo, requirements=REQ, standbys=None, target=None):
    repo = open_repository(RepositoryConfig(url=file_repo))
    report = run_healthcheck(target or server.target(), requirements, repository_url=file_repo,
                             repository_probe=repo.probe, standbys=standbys)
    return report, {f.check: f for f in report.findings}


@pytest.mark.integration
def test_ready_server_passes(pg, file_repo) -> None:
    report, by_name = check(pg, file_repo)
    assert report.ok, report.render()
    for name in ("server_version", "wal_level", "max_wal_senders", "replication_slots", "replication_role",
                 "replication_connection", "repository", "pg_wal_size", "data_checksums"):
        assert by_name[name].status == "ok", report.render()


@pytest.mark.integration
def test_wal_level_minimal_fails_with_the_fix(pg_factory, file_repo) -> None:
    server = pg_factory({"wal_level": "minimal", "max_wal_senders": "0"})
    report, by_name = check(server, file_repo)
    assert not report.ok
    assert by_name["wal_level"].status == "fail"
    assert "ALTER SYSTEM SET wal_level = 'replica'" in by_name["wal_level"].fix
    assert by_name["max_wal_senders"].status == "fail"
    # Without backups enabled, wal_level does not matter.
    report, _ = check(server, file_repo, Requirements(False, "pgwarden_t1", 2**30, 2**30))
    assert report.ok, report.render()


@pytest.mark.integration
def test_role_without_replication(pg, file_repo) -> None:
    with connect(pg.target()) as conn:
        conn.execute("CREATE ROLE app LOGIN NOSUPERUSER NOREPLICATION")
    report, by_name = check(pg, file_repo, target=pg.target(user="app"))
    assert by_name["replication_role"].status == "fail"
    assert by_name["replication_role"].fix == "ALTER ROLE <role> WITH REPLICATION;"
    assert by_name["replication_connection"].status == "fail"
    assert by_name["pg_wal_size"].status == "warn"  # pg_ls_waldir needs pg_monitor


@pytest.mark.integration
def test_backup_functions_and_count_tables_need_grants(pg, file_repo) -> None:
    with connect(pg.target()) as conn:
        conn.execute("CREATE TABLE public.users (id int)")
        conn.execute('CREATE SCHEMA "User Data"')
        conn.execute('CREATE TABLE "User Data"."e-mail list" (id int)')
        conn.execute("CREATE ROLE backup LOGIN REPLICATION")
    tables = ("public.users", "public.nope", '"User Data"."e-mail list"', '"user data"."e-mail list"')
    requirements = Requirements(True, "pgwarden_t1", 2**30, 2**30, tuple(map(QualifiedName.parse, tables)))
    report, by_name = check(pg, file_repo, requirements, target=pg.target(user="backup"))
    assert by_name["backup_functions"].status == "fail"
    assert by_name["backup_functions"].fix.startswith("GRANT EXECUTE ON FUNCTION pg_create_restore_point(text)")
    assert by_name["count_rows:public.users"].fix == "GRANT SELECT ON public.users TO <role>;"
    assert by_name["count_rows:public.nope"].detail == "table named in backup.count_rows does not exist"
    # SELECT on a table is no use without USAGE on its schema: that grant is named first.
    assert by_name['count_rows:"User Data"."e-mail list"'].fix == 'GRANT USAGE ON SCHEMA "User Data" TO <role>;'
    # Quoted names are case-sensitive: the lower-case schema is another, missing, table.
    assert by_name['count_rows:"user data"."e-mail list"'].detail.endswith("does not exist")

    with connect(pg.target()) as conn:
        conn.execute("GRANT EXECUTE ON FUNCTION pg_create_restore_point(text), pg_switch_wal(), "
                     "pg_logical_emit_message(boolean, text, text) TO backup")
        conn.execute("GRANT SELECT ON public.users TO backup")
        conn.execute('GRANT USAGE ON SCHEMA "User Data" TO backup')
    _, by_name = check(pg, file_repo, requirements, target=pg.target(user="backup"))
    assert by_name['count_rows:"User Data"."e-mail list"'].fix == \
        'GRANT SELECT ON "User Data"."e-mail list" TO <role>;'
    with connect(pg.target()) as conn:
        conn.execute('GRANT SELECT ON "User Data"."e-mail list" TO backup')
    _, by_name = check(pg, file_repo, requirements, target=pg.target(user="backup"))
    assert by_name["backup_functions"].status == "ok" and "count_rows:public.users" not in by_name
    assert 'count_rows:"User Data"."e-mail list"' not in by_name


@pytest.mark.integration
def test_missing_pg_hba_replication_line(pg_factory, file_repo) -> None:
    server = pg_factory(hba=("local all all trust", "host all all 127.0.0.1/32 trust"))
    report, by_name = check(server, file_repo)
    finding = by_name["replication_connection"]
    assert finding.status == "fail"
    assert "pg_hba.conf" in finding.detail  # the server's own words
    assert "host replication" in finding.fix
    assert by_name["replication_role"].status == "ok"


@pytest.mark.integration
def test_slots_inactive_and_full(pg_factory, file_repo) -> None:
    server = pg_factory({"max_replication_slots": "1"})
    with connect(server.target()) as conn:
        conn.execute("SELECT pg_create_physical_replication_slot('forgotten', true)")
    report, by_name = check(server, file_repo)
    assert by_name["slot:forgotten"].status == "warn"
    assert "pg_drop_replication_slot('forgotten')" in by_name["slot:forgotten"].fix
    assert by_name["replication_slots"].status == "fail"  # no room for pgwarden's own slot


@pytest.mark.integration
def test_unreachable_repository(pg, tmp_path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    url = f"file://{blocker}/repo"
    report, by_name = check(pg, url)
    assert by_name["repository"].status == "fail"
    assert url in by_name["repository"].detail


@pytest.mark.integration
def test_server_down_is_a_finding_not_a_traceback(pg_factory, file_repo) -> None:
    server = pg_factory()
    server.stop()
    report, by_name = check(server, file_repo)
    assert by_name["connection"].status == "fail"
    assert "Airflow connection" in by_name["connection"].fix


@pytest.mark.integration
def test_standby_lag(pg, file_repo) -> None:
    with hot_standby(pg) as standby:
        facts = gather_standby_facts("standby1", standby.target(), timedelta(minutes=5))
        report, by_name = check(pg, file_repo, standbys=[facts])
        assert by_name["standby:standby1"].status == "ok", report.render()

        # Pause replay, commit on the primary: the standby falls behind the threshold.
        with connect(standby.target()) as conn:
            conn.execute("SELECT pg_wal_replay_pause()")
        with connect(pg.target()) as conn:
            conn.execute("CREATE TABLE t AS SELECT 1 AS x")
        time.sleep(1.5)
        facts = gather_standby_facts("standby1", standby.target(), timedelta(seconds=1))
        finding = check(pg, file_repo, standbys=[facts])[1]["standby:standby1"]
        assert finding.status == "fail" and "exceeds" in finding.detail

        standby.stop()
        facts = gather_standby_facts("standby1", standby.target(), timedelta(minutes=5))
        assert check(pg, file_repo, standbys=[facts])[1]["standby:standby1"].detail.startswith("unreachable")


@pytest.mark.integration
def test_cli_healthcheck_uses_the_same_checks(pg_factory, file_repo, tmp_path, monkeypatch, capsys) -> None:
    from pgwarden.cli import main
    from tests.harness.airflow_conns import set_postgres_conn

    server = pg_factory({"wal_level": "minimal", "max_wal_senders": "0"})
    set_postgres_conn(monkeypatch, "pg_cli", server)
    config = tmp_path / "pgwarden.yaml"
    config.write_text(f"databases:\n  cli:\n    conn_id: pg_cli\n    repository: {{url: '{file_repo}'}}\n")
    assert main(["--config", str(config), "healthcheck", "cli"]) == 1
    out = capsys.readouterr().out
    assert "[FAIL] wal_level" in out and "[OK  ] repository" in out
