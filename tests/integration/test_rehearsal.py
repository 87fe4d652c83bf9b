"""Rehearsal of expand/contract migrations on a restored copy of a real backup (file:// repository).

One source server, one full backup and one WAL collection shared by the module. Every test checks that
the source is untouched (schema dump and rows) and that no scratch server is left running.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pgwarden.core.config import BackupConfig, RepositoryConfig
from pgwarden.core.migrations.rehearsal import rehearsal_markdown
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.migrations.rehearsal import SCRATCH_PREFIX, rehearse
from pgwarden.engine.pgtools import tool
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository import open_repository
from pgwarden.engine.restore import remove_restore
from pgwarden.engine.wal import collect_wal
from tests.harness.postgres import postgres_server, scratch_base

pytestmark = pytest.mark.integration

ROWS_IN_BACKUP, ROWS_AFTER = 300, 40
SCHEMA = """
CREATE TABLE people (id bigint PRIMARY KEY, email text NOT NULL, code text);
CREATE INDEX people_email ON people (email);
INSERT INTO people SELECT g, 'u' || g || '@example.org', g::text FROM generate_series(1, %s) g;
"""
RENAME = "operations:\n  - rename_column: {table: public.people, from: email, to: email_address}\n"
# One row's code is not a number: the cast breaks on real data only, not when the server type-checks it.
RETYPE = ("operations:\n  - change_column_type: {table: public.people, column: code, type: bigint, "
          "up: 'code::bigint', down: 'code::text'}\n")


@pytest.fixture(scope="module")
def world():
    """A source with ``people`` backed up, 40 more rows (one with a non-numeric code) in collected WAL."""
    base = scratch_base()
    with postgres_server(base=base / "src") as source:
        (base / "repo").mkdir()
        config = RepositoryConfig(url=f"file://{base / 'repo'}")
        repo = open_repository(config)
        with connect(source.target()) as conn:
            conn.execute(SCHEMA % ROWS_IN_BACKUP)
        take_full_backup(source.target(), repo, "db", BackupConfig(), config, workdir=base / "w0")
        with connect(source.target()) as conn:
            conn.execute("INSERT INTO people SELECT g, 'u' || g || '@example.org', g::text "
                         "FROM generate_series(%s::bigint, %s::bigint) g", (ROWS_IN_BACKUP + 1, ROWS_IN_BACKUP + ROWS_AFTER))
            conn.execute("UPDATE people SET code = 'not-a-number' WHERE id = %s", (ROWS_IN_BACKUP + 7,))
        collect_wal(source.target(), repo, "db", slot=BackupConfig().slot_for("db"), workdir=base / "w1",
                    compression="zstd", restore_point="after_more_rows", warn_bytes=2**30)
        yield source, repo, config, base
    for pid_file in list(base.glob("**/postmaster.pid")):  # a server a failed test left running
        remove_restore(pid_file.parent)
    shutil.rmtree(base, ignore_errors=True)


def source_state(source) -> tuple[str, str]:
    """The source's schema dump of ``people`` and a digest of its rows."""
    dump = subprocess.run([tool("pg_dump"), "--schema-only", "-t", "public.people"], env={**os.environ,
                          **source.target().tool_env()}, capture_output=True, text=True, check=True).stdout
    dump = "\n".join(line for line in dump.splitlines() if not line.startswith(("--", "\\restrict", "\\unrestrict")))
    with connect(source.target()) as conn:
        rows = conn.execute("SELECT string_agg(id || ':' || email || ':' || coalesce(code, ''), ',' ORDER BY id) "
                            "FROM people").fetchone()[0]
    return dump, hashlib.sha256(rows.encode()).hexdigest()


def migration(base: Path, name: str, body: str) -> Path:
    folder = base / "migrations"
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text(body)
    return path


def running_servers(parent: Path) -> list[Path]:
    return [p for p in parent.glob(f"{SCRATCH_PREFIX}-*/**/postmaster.pid")]


def test_rename_column_rehearses_every_phase_and_rollback_and_leaves_the_source_alone(world) -> None:
    source, repo, _, base = world
    before = source_state(source)
    parent = base / "scratch-ok"
    lines: list[str] = []
    report = rehearse(repo, "db", migration(base, "002_rename_email.yaml", RENAME), dbname="postgres",
                      scratch_parent=parent, log=lines.append)
    assert report.passed, report.failures()
    assert set(report.phases) == {"restore", "expand", "backfill", "consistency", "contract"}
    # The copy holds the rows of the collected WAL too: the restore replayed to the newest point.
    assert report.backfill_rows == ROWS_IN_BACKUP + ROWS_AFTER
    assert report.backfill_rows_per_second and report.backfill_rows_per_second > 0
    assert report.restore_target == "the newest WAL in the repository"
    assert [(c.name, c.ok) for c in report.rollback_checks] == [("after expand", True), ("after backfill", True)]
    assert report.inconsistent_rows == 0 and report.error is None
    assert source_state(source) == before
    assert report.scratch_removed and not list(parent.glob(f"{SCRATCH_PREFIX}-*"))
    document = report.to_json_dict()
    assert document["passed"] and "u1@example.org" not in str(document)
    body = rehearsal_markdown(document)
    assert "| backfill |" in body and "Rollback after backfill:** ok" in body


def test_a_cast_that_breaks_on_one_real_row_fails_the_rehearsal_and_rolls_the_copy_back(world) -> None:
    source, repo, _, base = world
    before = source_state(source)
    parent = base / "scratch-bad"
    report = rehearse(repo, "db", migration(base, "003_code_to_bigint.yaml", RETYPE), dbname="postgres",
                      scratch_parent=parent, log=lambda _: None)
    assert not report.passed
    assert report.failed_phase == "backfill"
    assert report.error.startswith("InvalidTextRepresentation (SQLSTATE 22P02): invalid input syntax for type bigint")
    assert "not-a-number" not in str(report.to_json_dict())  # the row's value never leaves the copy
    assert "contract" not in report.phases
    # Pass A passed; the failed backfill's rollback left the copy's schema as before.
    assert [(c.name, c.ok) for c in report.rollback_checks] == [("after expand", True),
                                                                ("after failed backfill", True)]
    assert "FAILED" in report.summary() and "backfill" in report.summary()
    assert source_state(source) == before
    assert report.scratch_removed and not list(parent.glob(f"{SCRATCH_PREFIX}-*"))


def test_a_killed_rehearsal_leaves_a_server_the_next_try_removes_before_it_succeeds(world) -> None:
    source, repo, config, base = world
    before = source_state(source)
    parent = base / "scratch-kill"
    path = migration(base, "004_rename_email.yaml", RENAME)
    env = {**os.environ, "PGWARDEN_CHILD_REPO_URL": config.url, "PGWARDEN_CHILD_DATABASE": "db",
           "PGWARDEN_CHILD_MIGRATION": str(path), "PGWARDEN_CHILD_SCRATCH": str(parent),
           "PGWARDEN_CHILD_DBNAME": "postgres"}
    child = subprocess.Popen([sys.executable, "-m", "tests.harness.rehearsal_child"], env=env,
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        for line in child.stdout:  # kill once the copy is up and the migration has started on it
            if "step 1/" in line and "expand" in line:
                break
        else:
            pytest.fail(f"the child ended before expand started (exit {child.wait()})")
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    leftovers = running_servers(parent)
    assert leftovers, "the killed rehearsal should have left its scratch server running"
    report = rehearse(repo, "db", path, dbname="postgres", scratch_parent=parent, log=lambda _: None)
    assert report.passed, report.failures()
    assert not any(p.exists() for p in leftovers) and not list(parent.glob(f"{SCRATCH_PREFIX}-*"))
    assert source_state(source) == before


def test_without_a_backup_the_rehearsal_fails_saying_what_runs_first(tmp_path) -> None:
    (tmp_path / "repo").mkdir()
    repo = open_repository(RepositoryConfig(url=f"file://{tmp_path / 'repo'}"))
    parent = tmp_path / "scratch"
    report = rehearse(repo, "db", migration(tmp_path, "002_rename_email.yaml", RENAME), dbname="postgres",
                      scratch_parent=parent, log=lambda _: None)
    assert not report.passed and report.failed_phase == "restore"
    assert "run db.backup_full first" in report.error
    assert report.scratch_removed and not list(parent.glob(f"{SCRATCH_PREFIX}-*"))
