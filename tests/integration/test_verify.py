"""Verification of tar-format base backups against PostgreSQL's own backup_manifest.

Which check runs depends on the worker's ``pg_verifybackup``: from PostgreSQL 18 on it reads tar
backups itself, before that pgwarden's own checker does. Each test says which path it covers and is
skipped, with the reason, where that path does not run. Until a PostgreSQL 18 test lane exists
(a separate issue), the pg_verifybackup path is skipped on a worker with older tools.
"""

from __future__ import annotations

import pytest

from pgwarden.engine import pgtools
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.postgres import connect
from pgwarden.engine.verify import verify_tar_backup
from tests.harness.workload import create_items


def verifybackup_major() -> int:
    return pgtools.tool_major(pgtools.tool("pg_verifybackup"))


pgwarden_checker = pytest.mark.skipif(
    verifybackup_major() >= 18,
    reason="this worker's pg_verifybackup reads tar backups (PostgreSQL 18+): pgwarden's own checker does not run")


def basebackup(pg, dest, compress: str) -> None:
    pgtools.run([pgtools.tool("pg_basebackup"), "-D", str(dest), "-Ft", "-X", "fetch", "-c", "fast",
                 f"--compress={compress}", "--manifest-checksums=SHA256", "--no-sync"], env=pg.target().tool_env())


@pytest.mark.integration
@pgwarden_checker
@pytest.mark.parametrize("compress", ["none", "client-gzip:1", "client-zstd:1"])
def test_good_backup_verifies(pg, tmp_path, compress) -> None:
    create_items(pg, 2000)
    basebackup(pg, tmp_path / "b", compress)
    result = verify_tar_backup(tmp_path / "b")
    assert result.method == "manifest-checksums"
    assert result.ok and result.files_checked > 900


@pytest.mark.integration
@pytest.mark.skipif(verifybackup_major() < 18,
                    reason=f"needs pg_verifybackup 18+ (this worker has {verifybackup_major()}); the PostgreSQL 18 "
                           f"test lane is a separate issue")
def test_good_backup_verifies_with_pg_verifybackup(pg, tmp_path) -> None:
    create_items(pg, 2000)
    basebackup(pg, tmp_path / "b", "client-zstd:1")
    result = verify_tar_backup(tmp_path / "b")
    assert result.method == "pg_verifybackup"
    assert result.ok and result.files_checked > 900


@pytest.mark.integration
@pgwarden_checker
def test_flipped_byte_inside_a_file_is_named(pg, tmp_path) -> None:
    create_items(pg, 2000)
    with connect(pg.target()) as conn:
        relpath = conn.execute("SELECT pg_relation_filepath('items')").fetchone()[0]
    basebackup(pg, tmp_path / "b", "none")
    tar = tmp_path / "b" / "base.tar"
    data = bytearray(tar.read_bytes())
    name = relpath.encode()
    header = data.find(name + b"\0")
    assert header >= 0 and header % 512 == 0
    data[header + 512 + 100] ^= 0xFF  # a byte of the table's first page
    tar.write_bytes(bytes(data))
    with pytest.raises(PermanentError, match=f"base.tar: {relpath} does not match backup_manifest"):
        verify_tar_backup(tmp_path / "b")


@pytest.mark.integration
@pgwarden_checker
def test_truncated_archive_is_reported(pg, tmp_path) -> None:
    basebackup(pg, tmp_path / "b", "none")
    tar = tmp_path / "b" / "base.tar"
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    with pytest.raises(PermanentError, match="truncated"):
        verify_tar_backup(tmp_path / "b")
