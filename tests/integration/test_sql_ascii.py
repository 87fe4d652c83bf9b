"""The backup suite on a SQL_ASCII cluster (``initdb --locale=C`` without an encoding, old servers).

psycopg hands back ``bytes`` for text when the session encoding is SQL_ASCII; pgwarden reads
catalog text (slot types, settings, restore points) and must get ``str`` whatever the database's
encoding is.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pgwarden.core.config import BackupConfig, RepositoryConfig
from pgwarden.core.recovery import RecoveryTarget
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.catalog import read_catalog
from pgwarden.engine.cluster import LocalCluster
from pgwarden.engine.postgres import connect
from pgwarden.engine.repository import open_repository
from pgwarden.engine.restore import remove_restore, restore, restored_server
from pgwarden.engine.wal import collect_wal
from tests.harness.postgres import postgres_server, scratch_base
from tests.harness.workload import add_items, count_items, create_items


@pytest.fixture
def sql_ascii_pg():
    with postgres_server(encoding="SQL_ASCII") as server:
        yield server


@pytest.mark.integration
def test_two_full_backups_wal_and_restore_on_sql_ascii(sql_ascii_pg: LocalCluster, tmp_path: Path) -> None:
    with connect(sql_ascii_pg.target()) as conn:
        assert conn.info.parameter_status("server_encoding") == "SQL_ASCII"
    config = RepositoryConfig(url=f"file://{tmp_path / 'repo'}")
    (tmp_path / "repo").mkdir()
    repo = open_repository(config)
    backup = BackupConfig(count_rows=["public.items"])

    create_items(sql_ascii_pg, 500)
    first = take_full_backup(sql_ascii_pg.target(), repo, "oddb", backup, config, workdir=tmp_path / "f1")
    add_items(sql_ascii_pg, 100)
    collect_wal(sql_ascii_pg.target(), repo, "oddb", slot="pgwarden_oddb", workdir=tmp_path / "w1",
                compression="zstd", restore_point="rp_600", warn_bytes=2**30)
    second = take_full_backup(sql_ascii_pg.target(), repo, "oddb", backup, config, workdir=tmp_path / "f2")
    add_items(sql_ascii_pg, 50)
    collect_wal(sql_ascii_pg.target(), repo, "oddb", slot="pgwarden_oddb", workdir=tmp_path / "w2",
                compression="zstd", restore_point="rp_650", warn_bytes=2**30)

    assert [b.id for b in read_catalog(repo, "oddb").backups] == [first.backup_id, second.backup_id]
    assert second.row_counts is not None and second.row_counts.counts == {"public.items": 600}

    base = scratch_base()
    try:
        result = restore(repo, "oddb", base / "r", RecoveryTarget("name", name="rp_650"), start=True)
        assert result.backup_id == second.backup_id
        assert count_items(restored_server(Path(result.datadir), result.port)) == 650
    finally:
        remove_restore(base / "r")
        import shutil

        shutil.rmtree(base, ignore_errors=True)
