"""`pgwarden migrate status|plan|lint` from a shell, no scheduler: plan changes nothing, lint needs no database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgwarden.core.config import RepositoryConfig
from pgwarden.core.migrations.config import MigrationsConfig
from pgwarden.engine.migrations.apply import apply_pending
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository.file import FileRepository
from tests.harness.airflow_conns import conn_var, postgres_conn

pytestmark = pytest.mark.integration


def migrate(cfg: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    pgwarden = str(Path(sys.executable).with_name("pgwarden"))
    return subprocess.run([pgwarden, "--config", str(cfg), "migrate", *args], env=env,
                          capture_output=True, text=True, timeout=120)


def test_migrate_cli_lint_plan_status(pg, tmp_path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_accounts.sql").write_text(
        "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL);\n"
        "ALTER TABLE accounts ADD COLUMN nickname text;\n")
    (folder / "001_accounts.down.sql").write_text("-- squawk-ignore ban-drop-table\nDROP TABLE accounts;\n")
    (folder / "002_rename.yaml").write_text(
        "operations:\n  - rename_column: {table: public.accounts, from: email, to: email_address}\n")
    cfg = tmp_path / "pgwarden.yaml"
    cfg.write_text("databases:\n  clidb:\n    conn_id: pg_clidb\n"
                   f"    repository: {{url: 'file://{tmp_path}/repo'}}\n    migrations: {{path: migrations}}\n")
    no_conn = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW_CONN_")}

    linted = migrate(cfg, no_conn, "lint", "clidb")  # no connection at all: lint needs no database
    assert linted.returncode == 0, linted.stdout + linted.stderr
    assert "1 plain migration(s) linted, 0 finding(s)" in linted.stdout

    env = {**no_conn, conn_var("pg_clidb"): postgres_conn(pg)}
    planned = migrate(cfg, env, "plan", "clidb")
    assert planned.returncode == 1, planned.stdout + planned.stderr
    assert "2 pending migration(s)" in planned.stdout
    assert "line 2: ACCESS EXCLUSIVE on table; blocks reads and writes" in planned.stdout
    assert "ALTER TABLE accounts ADD COLUMN nickname text" in planned.stdout
    assert "operations[0]: rename_column on public.accounts" in planned.stdout
    # the expand/contract migration's phases come from its operations' planner, against the live catalog:
    # accounts does not exist yet (001 is pending), so it cannot be planned and the plan says so
    assert "002_rename.yaml: cannot be planned against the database as it is now" in planned.stdout
    with connect(pg.target()) as conn:  # the plan changed nothing, not even the pgwarden schema
        assert conn.execute("SELECT to_regnamespace('pgwarden') IS NULL AND to_regclass('accounts') IS NULL"
                            ).fetchone()[0]

    (tmp_path / "repo").mkdir()
    apply_pending(pg.target(), FileRepository(RepositoryConfig(url=f"file://{tmp_path}/repo")), "clidb",
                  MigrationsConfig(path=str(folder)), log=lambda _: None)
    status = migrate(cfg, env, "status", "clidb", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    listed = {m["version"]: m for m in json.loads(status.stdout)["migrations"]}
    assert listed[1]["status"] == "applied" and listed[1]["restore_point"].startswith("pgwarden_migrate_001_")
    assert listed[2]["status"] == "pending" and listed[2]["kind"] == "expand_contract"
    planned = migrate(cfg, env, "plan", "clidb")  # now the table exists: the rename's phases are shown
    assert planned.returncode == 0, planned.stdout + planned.stderr
    assert "-- == expand ==" in planned.stdout and "-- == contract ==" in planned.stdout
    assert "email_address" in planned.stdout
    with connect(pg.target()) as conn:  # still nothing changed by the plan
        assert conn.execute("SELECT count(*) FROM information_schema.columns WHERE column_name = 'email_address'"
                            ).fetchone()[0] == 0

    (folder / "003_index.sql").write_text("CREATE INDEX accounts_email ON accounts (email);\n")
    (folder / "003_index.down.sql").write_text("DROP INDEX accounts_email;\n")
    (folder / "001_accounts.sql").write_text("CREATE TABLE accounts (id bigint PRIMARY KEY);\n")
    linted = migrate(cfg, no_conn, "lint", "clidb")
    assert linted.returncode == 1
    assert "003_index.sql:1: require-concurrent-index-creation" in linted.stdout
    status = migrate(cfg, env, "status", "clidb")
    assert status.returncode == 1 and "001_accounts.sql: changed after it was applied" in status.stdout
