"""The optional nightly logical dump: taken with the full backup, uploaded the same way, restorable."""

from __future__ import annotations

import pytest

from pgwarden.core.config import BackupConfig, LogicalDumpConfig, RepositoryConfig
from pgwarden.engine import pgtools
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.catalog import read_catalog
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository import open_repository
from tests.harness.workload import create_items


@pytest.mark.integration
def test_logical_dump_is_uploaded_with_the_backup_and_restores(pg, file_repo, tmp_path) -> None:
    config = RepositoryConfig(url=file_repo)
    repo = open_repository(config)
    create_items(pg, 700)
    backup = BackupConfig(logical_dump=LogicalDumpConfig(enabled=True, jobs=2))
    manifest = take_full_backup(pg.target(), repo, "db", backup, config, workdir=tmp_path / "w")

    dump_files = [f for f in manifest.files if f.role == "dump"]
    assert any(f.name == "dump/toc.dat" for f in dump_files) and len(dump_files) >= 2
    assert read_catalog(repo, "db").backup(manifest.backup_id).valid  # every dump file checked too

    local = tmp_path / "dump"
    for stored in dump_files:
        repo.get_file(f"db/base/{manifest.backup_id}/{stored.name}", local / stored.name.removeprefix("dump/"),
                      expected_sha256=stored.sha256)
    with connect(pg.target()) as conn:
        conn.execute("CREATE DATABASE from_dump")
    pgtools.run([pgtools.tool("pg_restore"), "-d", "from_dump", "-j", "2", str(local)],
                env=pg.target().tool_env())
    with connect(pg.target("from_dump")) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone()[0] == 700
