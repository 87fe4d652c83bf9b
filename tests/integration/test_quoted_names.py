"""Tables whose names need quotes, counted in a backup and checked in a drill on real servers."""

from __future__ import annotations

import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgwarden.core.config import DatabaseConfig, RepositoryConfig
from pgwarden.core.identifiers import QualifiedName
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.drill import run_drill
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository import open_repository
from pgwarden.engine.wal import collect_wal
from tests.harness.postgres import scratch_base

TABLE = '"User Data"."e-mail list"'


@pytest.mark.integration
def test_quoted_table_counted_in_the_backup_and_checked_in_the_drill(pg, tmp_path) -> None:
    with connect(pg.target()) as conn:
        conn.execute('CREATE SCHEMA "User Data"')
        conn.execute('CREATE TABLE "User Data"."e-mail list" (id int PRIMARY KEY, address text NOT NULL)')
        conn.execute("""INSERT INTO "User Data"."e-mail list" SELECT g, 'x' || g FROM generate_series(1, 123) g""")
        # A look-alike the name must not be confused with: same letters, folded case, in public.
        conn.execute('CREATE TABLE public."user data.e-mail list" (id int)')
    (tmp_path / "repo").mkdir()
    repo_config = RepositoryConfig(url=f"file://{tmp_path / 'repo'}")
    repo = open_repository(repo_config)
    db_config = DatabaseConfig.model_validate({
        "conn_id": "unused", "repository": {"url": repo_config.url},
        "backup": {"count_rows": [TABLE], "incremental_schedule": "*/5 * * * *"},
        "verify": {"rpo_target": "1h"},
    })
    manifest = take_full_backup(pg.target(), repo, "db", db_config.backup, repo_config, workdir=tmp_path / "w")
    assert manifest.row_counts is not None and manifest.row_counts.counts == {TABLE: 123}
    with connect(pg.target()) as conn:
        conn.execute("""INSERT INTO "User Data"."e-mail list" VALUES (124, 'after the backup')""")
    collect_wal(pg.target(), repo, "db", slot="pgwarden_db", workdir=tmp_path / "wal", compression="zstd",
                restore_point="rp_after", warn_bytes=2**30)

    base = scratch_base()
    try:
        scratch = base / "drill"
        scratch.mkdir()
        evidence = run_drill(repo, "db", db_config, scratch=scratch, dbname="postgres")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    checks = {c.name: c for c in evidence.checks}
    assert checks["row_counts"].ok, checks["row_counts"].detail
    assert checks["row_counts"].detail == "1 table(s) match the backup's snapshot"
    assert checks["amcheck"].ok, checks["amcheck"].detail
    assert checks["amcheck"].detail == "heap and all indexes of 1 table(s) are consistent"


names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20)


@pytest.mark.integration
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(schema=names, name=names)
def test_postgres_reads_our_sql_form_as_the_same_name(pg, schema: str, name: str) -> None:
    """PostgreSQL's own parser (parse_ident) agrees with the form pgwarden writes and shows."""
    table = QualifiedName(schema, name)
    with connect(pg.target()) as conn:
        assert conn.execute("SELECT parse_ident(%s)", (str(table),)).fetchone()[0] == [schema, name]
