"""The demo's smoke queries (include/sql/verify/appdb/*.sql, the folder verify_restore reads for
`appdb`) run in a real restore drill of the demo schema and pass, and each can fail."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from pgwarden.core.config import BackupConfig, DatabaseConfig, RepositoryConfig
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.drill import run_drill
from pgwarden.engine.repository import open_repository
from tests.harness.postgres import scratch_base

ROOT = Path(__file__).resolve().parents[2]
DEMO_SQL = ROOT / "include" / "sql" / "demo"
VERIFY_SQL = ROOT / "include" / "sql" / "verify" / "appdb"


def load_demo_database(server, users: int) -> None:
    """What scripts/demo.py does, with a small seed: schema, data, indexes into database appdb."""
    with psycopg.connect(**server.target("postgres").conninfo_params(), autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier("appdb")))
    with psycopg.connect(**server.target("appdb").conninfo_params(), autocommit=True) as conn:
        conn.execute("SELECT set_config('pgwarden.demo_users', %s, false)", [str(users)])
        conn.execute("SELECT set_config('pgwarden.demo_sessions_per_user', '3', false)")
        for name in ("schema.sql", "seed.sql", "indexes.sql"):
            conn.execute((DEMO_SQL / name).read_text())


def smoke(server, name: str) -> object:
    with psycopg.connect(**server.target("appdb").conninfo_params()) as conn:
        return conn.execute((VERIFY_SQL / name).read_text()).fetchone()[0]


@pytest.mark.integration
def test_the_demo_smoke_queries_pass_in_a_drill_and_catch_broken_data(pg, tmp_path) -> None:
    files = sorted(VERIFY_SQL.glob("*.sql"))
    assert len(files) >= 3, f"the demo ships its smoke queries in {VERIFY_SQL}"
    load_demo_database(pg, users=300)

    root = tmp_path / "repo"
    root.mkdir()
    repo_config = RepositoryConfig(url=f"file://{root}")
    repo = open_repository(repo_config)
    take_full_backup(pg.target("appdb"), repo, "appdb", BackupConfig(count_rows=["public.users"]), repo_config,
                     workdir=tmp_path / "w")
    config = DatabaseConfig.model_validate({
        "conn_id": "unused", "repository": {"url": f"file://{root}"},
        "backup": {"count_rows": ["public.users"], "incremental_schedule": "*/5 * * * *"},
        "verify": {"rpo_target": "1h"},
    })
    base = scratch_base()
    try:
        evidence = run_drill(repo, "appdb", config, scratch=base, dbname="appdb", smoke_dir=VERIFY_SQL)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    checks = {c.name: c for c in evidence.checks if c.name.startswith("smoke:")}
    assert sorted(checks) == [f"smoke:{f.stem}" for f in files]
    assert [c.detail for c in checks.values() if not c.ok] == []

    # Each query can say false: break what it checks on the live server.
    assert smoke(pg, "01_every_table_has_rows.sql") is True
    with psycopg.connect(**pg.target("appdb").conninfo_params(), autocommit=True) as conn:
        conn.execute("ALTER TABLE sessions DROP CONSTRAINT sessions_user_id_fkey")
        conn.execute("INSERT INTO sessions (user_id, token, expires_at) VALUES (-1, 'orphan', now() + interval '1 day')")
        conn.execute("ALTER TABLE sessions DROP CONSTRAINT sessions_expire_after_creation")
        conn.execute("INSERT INTO sessions (user_id, token, created_at, expires_at) "
                     "SELECT min(id), 'backwards', now(), now() - interval '1 day' FROM users")
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = 'sessions_token_key'::regclass")
    assert smoke(pg, "02_no_orphaned_rows.sql") is False
    assert smoke(pg, "03_indexes_are_valid.sql") is False
    assert smoke(pg, "04_data_keeps_its_rules.sql") is False
    with psycopg.connect(**pg.target("appdb").conninfo_params(), autocommit=True) as conn:
        conn.execute("TRUNCATE orders")
    assert smoke(pg, "01_every_table_has_rows.sql") is False
