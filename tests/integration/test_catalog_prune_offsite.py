"""Catalog, GFS prune and off-site copy against real repositories (files on disk and moto's S3 server).

Repository contents are built with the real Repository API and real BackupManifest objects; the files
are small byte objects, since these tests exercise the catalog, prune and copy logic, not pg_basebackup.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from pgwarden.cli import main
from pgwarden.core.catalog import WalPosition, WalRange
from pgwarden.core.config import RepositoryConfig
from pgwarden.core.layout import backup_id_for, backup_prefix, manifest_key, restore_point_key, wal_key
from pgwarden.core.lsn import Lsn
from pgwarden.core.manifest import BackupManifest, StoredFile, Verification
from pgwarden.core.retention import DAILY, MONTHLY, NEWEST, PENDING, WINDOW_START, YEARLY, RetentionPolicy
from pgwarden.core.walnames import segment_name, segments_between
from pgwarden.engine.catalog import read_catalog
from pgwarden.engine.offsite import copy_offsite
from pgwarden.engine.prune import prune
from pgwarden.engine.repository import ChecksumMismatch, Repository, open_repository
from pgwarden.engine.s3.settings import S3Settings
from tests.harness.s3 import ACCESS_KEY, REGION, SECRET_KEY, MotoServer

DB = "appdb"
UTC = timezone.utc
MiB = 2**20
SEG = 16 * MiB
ROLES = {"base.tar.zst": "base", "pg_wal.tar.zst": "wal", "backup_manifest": "backup_manifest"}
NOW = datetime.now(UTC)
LATER = NOW + timedelta(days=2)  # everything written by a test is older than a day by then


# -- repositories ------------------------------------------------------------------------------------


@dataclass
class Backend:
    name: str
    repo: Repository
    tamper: Callable[[str, bytes], None]  # replace an object's bytes behind the repository's back


def file_backend(path: Path) -> Backend:
    path.mkdir(parents=True, exist_ok=True)
    repo = open_repository(RepositoryConfig(url=f"file://{path}"))

    def tamper(key: str, data: bytes) -> None:
        path.joinpath(key).write_bytes(data)

    return Backend("file", repo, tamper)


def s3_backend(server: MotoServer, bucket: str) -> Backend:
    client = server.client()
    client.create_bucket(Bucket=bucket)
    settings = S3Settings(endpoint_url=server.endpoint_url, region_name=REGION,
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    repo = open_repository(RepositoryConfig(url=f"s3://{bucket}/backups"), settings)

    def tamper(key: str, data: bytes) -> None:
        old = client.head_object(Bucket=bucket, Key=f"backups/{key}")
        client.put_object(Bucket=bucket, Key=f"backups/{key}", Body=data, Metadata=old["Metadata"])

    return Backend("s3", repo, tamper)


@pytest.fixture(params=["file", "s3"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "file":
        return file_backend(tmp_path / "repo")
    return s3_backend(request.getfixturevalue("s3"), "pgw-primary")


def put_backup(repo: Repository, started_at: datetime, start: Lsn, stop: Lsn, *, timeline: int = 1,
               seg_size: int = SEG, manifest: bool = True, verified: bool = True) -> str:
    backup_id = backup_id_for(started_at)
    stored = []
    for name, role in ROLES.items():
        info = repo.put_bytes(backup_prefix(DB, backup_id) + name, f"{backup_id}/{name}\n".encode() * 16)
        stored.append(StoredFile(name=name, size=info.size, sha256=info.sha256, role=role))
    if manifest:
        document = BackupManifest(
            database=DB, backup_id=backup_id, started_at=started_at, finished_at=started_at + timedelta(minutes=4),
            duration_seconds=240.0, start_lsn=str(start), stop_lsn=str(stop), timeline=timeline,
            wal_segment_size=seg_size, system_identifier="7387016386126364455", server_version="16.4",
            server_version_num=160004, compression="zstd", checkpoint="fast", database_size_bytes=10**9,
            stored_bytes=sum(f.size for f in stored), files=stored,
            verification=Verification(method="pg_verifybackup", files_checked=len(stored), ok=verified),
            pgwarden_version="0.1.0",
        )
        repo.put_bytes(manifest_key(DB, backup_id), document.to_json())
    return backup_id


def put_wal(repo: Repository, names: list[str]) -> None:
    for name in names:
        repo.put_bytes(wal_key(DB, name), f"WAL {name}\n".encode())


def put_history(repo: Repository, timeline: int, text: str) -> None:
    repo.put_bytes(wal_key(DB, f"{timeline:08X}.history"), text.encode())


def snapshot(repo: Repository) -> dict[str, tuple[int, str | None]]:
    """Every object with its size and recorded checksum."""
    return {o.key: (o.size, repo.head(o.key).sha256) for o in repo.list("")}


def keys(repo: Repository, prefix: str = "") -> set[str]:
    return {o.key for o in repo.list(prefix)}


# -- catalog -----------------------------------------------------------------------------------------


def build_mixed(repo: Repository) -> dict[str, str]:
    """Valid, invalid, pending, orphan and unreadable backups; WAL on two timelines with a gap (1 MiB segments)."""
    seg = MiB
    day = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    ids = {
        "a": put_backup(repo, day, Lsn(0x200028), Lsn(0x280000), seg_size=seg),
        "b": put_backup(repo, day + timedelta(days=1), Lsn(0x400028), Lsn(0x480000), seg_size=seg),
        "c": put_backup(repo, day + timedelta(days=2), Lsn(0x900028), Lsn(0x980000), timeline=2, seg_size=seg),
        "d": put_backup(repo, day + timedelta(days=3), Lsn(0xA00028), Lsn(0xA80000), timeline=2, seg_size=seg),
        "orphan": put_backup(repo, day + timedelta(days=4), Lsn(0xB00028), Lsn(0xB80000), timeline=2,
                             seg_size=seg, manifest=False),
        "unreadable": backup_id_for(day - timedelta(days=40)),
    }
    repo.delete([backup_prefix(DB, ids["b"]) + "pg_wal.tar.zst"])  # b: a file is missing
    repo.put_bytes(backup_prefix(DB, ids["d"]) + "backup_manifest", b"shorter")  # d: size differs
    repo.put_bytes(backup_prefix(DB, ids["unreadable"]) + "base.tar.zst", b"x" * 10)
    repo.put_bytes(manifest_key(DB, ids["unreadable"]), b'{"format": "pgwarden.backup/9"}')
    put_wal(repo, [segment_name(1, Lsn(n * seg), seg) for n in range(2, 7)])
    put_history(repo, 2, "1\t0/680000\tno recovery target specified\n")
    put_wal(repo, [segment_name(2, Lsn(n * seg), seg) for n in (6, 7, 9, 10)])  # segment 8 of timeline 2 is lost
    return ids


def test_catalog_lists_valid_invalid_orphans_and_coverage(backend: Backend) -> None:
    repo = backend.repo
    ids = build_mixed(repo)

    catalog = read_catalog(repo, DB)

    assert [b.id for b in catalog.backups] == [ids["a"], ids["b"], ids["c"], ids["d"]]
    valid = {b.id: b.valid for b in catalog.backups}
    assert valid == {ids["a"]: True, ids["b"]: False, ids["c"]: True, ids["d"]: False}
    b, d = catalog.backup(ids["b"]), catalog.backup(ids["d"])
    assert len(b.problems) == 1 and "pg_wal.tar.zst is missing" in b.problems[0]
    assert repo.uri(backup_prefix(DB, ids["b"]) + "pg_wal.tar.zst") in b.problems[0]
    assert d.problems == [f"backup_manifest is 7 bytes, the manifest says {d.manifest.files[2].size}"]
    assert catalog.newest_valid.id == ids["c"]

    assert [o.backup_id for o in catalog.orphans] == [ids["orphan"]]
    orphan = catalog.orphans[0]
    assert len(orphan.keys) == 3 and orphan.total_bytes > 0
    assert orphan.newest_modified is not None and abs(orphan.newest_modified - datetime.now(UTC)) < timedelta(minutes=5)
    assert [u.backup_id for u in catalog.unreadable] == [ids["unreadable"]]
    assert "pgwarden.backup/1" in catalog.unreadable[0].problem

    assert catalog.gfs_classes == {
        ids["a"]: {DAILY, WINDOW_START},  # the first backup: point-in-time restores start from it
        ids["b"]: set(),  # invalid and older than the newest valid backup
        ids["c"]: {DAILY, MONTHLY, YEARLY, NEWEST},
        ids["d"]: {PENDING},  # invalid but newer: may be under investigation
    }

    assert catalog.segment_size == MiB
    assert catalog.coverage == (
        WalRange(1, Lsn(0x200000), Lsn(0x700000), 5),
        WalRange(2, Lsn(0x600000), Lsn(0x800000), 2),
        WalRange(2, Lsn(0x900000), Lsn(0xB00000), 2),
    )
    assert catalog.wal_end == WalPosition(2, Lsn(0xB00000))
    assert "00000002.history" in catalog.wal_names
    assert catalog.history[2][0].switch_lsn == Lsn(0x680000)

    chain = catalog.check_chain()
    assert not chain.ok
    assert chain.missing == ("000000020000000000000008",)
    assert "000000020000000000000008" in chain.message
    assert "take a new full backup (trigger appdb.backup_full) to start a new unbroken chain" in chain.message
    assert catalog.check_chain(start=catalog.backup(ids["c"])).ok  # c starts after the gap

    document = catalog.to_json_dict()
    json.dumps(document)
    assert [x["gfs"] for x in document["backups"]] == [["daily", "window_start"], [], ["daily", "monthly", "newest", "yearly"],
                                                        ["pending"]]
    assert document["wal"]["chain"]["missing"] == ["000000020000000000000008"]


def test_prune_deletes_old_invalid_keeps_pending_and_keeps_wal_while_a_manifest_is_unreadable(
        tmp_path: Path) -> None:
    repo = file_backend(tmp_path / "repo").repo
    ids = build_mixed(repo)
    wal_before = keys(repo, f"{DB}/wal/")

    result = prune(repo, DB, RetentionPolicy(), now=LATER)

    assert result.deleted_backups == (ids["b"],)
    assert result.deleted_orphans == (ids["orphan"],)
    assert result.unreadable == (ids["unreadable"],)
    assert set(result.kept) == {ids["a"], ids["c"], ids["d"]}
    assert result.wal_objects == 0 and any("unreadable" in s for s in result.skipped)
    assert keys(repo, f"{DB}/wal/") == wal_before
    folders = {k.split("/")[2] for k in keys(repo, f"{DB}/base/")}
    assert folders == {ids["a"], ids["c"], ids["d"], ids["unreadable"]}


# -- prune -------------------------------------------------------------------------------------------


POLICY = RetentionPolicy(daily=7, monthly=6, yearly=2)


def two_years(repo: Repository) -> tuple[list[str], list[str]]:
    """40 nightly backups over about two years (30 every 23 days, then 10 nights in a row), 4 segments apart,
    and the WAL from the first backup on. Returns (backup ids oldest first, WAL names)."""
    nights = [date(2024, 4, 1) + timedelta(days=23 * i) for i in range(30)]
    nights += [date(2026, 3, 1) + timedelta(days=i) for i in range(10)]
    ids = []
    for i, night in enumerate(nights):
        start = Lsn(i * 4 * SEG + 0x28)
        started = datetime(night.year, night.month, night.day, 2, 0, tzinfo=UTC)
        ids.append(put_backup(repo, started, start, start + SEG // 2))
    names = segments_between(1, Lsn(0), Lsn((4 * len(nights) + 2) * SEG))
    put_wal(repo, names)
    return ids, names


def test_prune_keeps_the_gfs_set_and_the_wal_it_needs(backend: Backend) -> None:
    repo = backend.repo
    ids, wal_names = two_years(repo)
    plan = read_catalog(repo, DB, POLICY).plan
    before = snapshot(repo)

    dry = prune(repo, DB, POLICY, dry_run=True, now=LATER)
    assert snapshot(repo) == before, "a dry run deletes nothing"

    result = prune(repo, DB, POLICY, now=LATER)
    assert replace(dry, dry_run=False) == result, "a dry run reports exactly what a real run does"

    kept = set(plan.keep)
    assert 7 < len(kept) <= 7 + 6 + 2
    assert ids[-1] in kept and set(ids[-7:]) <= kept  # newest and the daily window
    assert max(i for i in ids if i.startswith("2025")) in kept  # the last backup of 2025: yearly
    assert plan.keep[max(i for i in ids if i.startswith("2025"))] >= {YEARLY}
    assert set(result.deleted_backups) == set(ids) - kept
    assert {k.split("/")[2] for k in keys(repo, f"{DB}/base/")} == kept
    assert result.backup_objects == 4 * len(result.deleted_backups)

    remaining = {k.rsplit("/", 1)[1].removesuffix(".zst") for k in keys(repo, f"{DB}/wal/")}
    assert remaining == {n for n in wal_names if plan.segment_needed(n)}
    assert result.wal_objects == len(wal_names) - len(remaining) > 100
    # every kept backup still has the WAL of its own [start, stop] range, and the daily window is continuous
    catalog = read_catalog(repo, DB, POLICY)
    for backup in catalog.backups:
        assert set(segments_between(1, backup.start_lsn, backup.stop_lsn)) <= remaining
    assert catalog.check_chain().ok

    again = prune(repo, DB, POLICY, now=LATER)
    assert again.objects == 0 and again.deleted_backups == () and again.wal_objects == 0


def put_restore_point(repo: Repository, name: str, lsn: Lsn, at: datetime) -> None:
    record = {"name": name, "lsn": str(lsn), "created_at": at.isoformat()}
    repo.put_bytes(restore_point_key(DB, name), json.dumps(record).encode())


def test_prune_deletes_restore_points_whose_wal_goes_and_keeps_the_window(backend: Backend) -> None:
    repo = backend.repo
    ids, _ = two_years(repo)
    # a restore point half way between every two backups (and after the last), 2 segments after each start
    names = []
    for i, backup_id in enumerate(ids):
        names.append(f"rp_after_{backup_id}")
        put_restore_point(repo, names[-1], Lsn(i * 4 * SEG + 2 * SEG), datetime.strptime(
            backup_id, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) + timedelta(hours=6))
    # 7 days of PITR: from 00:00 of the 7th newest day, which restores start from the backup of the day before
    window = set(names[-8:])

    dry = prune(repo, DB, POLICY, dry_run=True, now=LATER)
    assert len(keys(repo, f"{DB}/restore_points/")) == len(names), "a dry run deletes nothing"
    result = prune(repo, DB, POLICY, now=LATER)
    assert replace(dry, dry_run=False) == result

    listed = {p.name for p in read_catalog(repo, DB, POLICY).restore_points}
    assert listed == window, "points between older monthly backups lose their WAL and go; the window stays"
    assert set(result.deleted_restore_points) == set(names) - window
    assert f"and {len(names) - len(window)} restore point record(s)" in result.summary()
    assert prune(repo, DB, POLICY, now=LATER).objects == 0


def test_prune_converges_after_being_killed_half_way(backend: Backend) -> None:
    repo = backend.repo
    two_years(repo)
    plan_run = prune(repo, DB, POLICY, dry_run=True, now=LATER)
    doomed = list(plan_run.deleted_backups)
    assert len(doomed) >= 3
    clean_end = {k for k in keys(repo) if k.split("/")[2] not in doomed}
    catalog = read_catalog(repo, DB, POLICY)
    doomed_wal = [w.key for w in catalog.wal if not catalog.plan.segment_needed(w.name)]
    clean_end -= set(doomed_wal)

    # what a kill -9 in the middle leaves: manifest-first deletion of the first backup went half way,
    # the second lost only its manifest, part of the WAL is gone
    first = sorted(keys(repo, backup_prefix(DB, doomed[0])))
    repo.delete([manifest_key(DB, doomed[0])])
    repo.delete([k for k in first if not k.endswith("pgwarden.json")][:2])
    repo.delete([manifest_key(DB, doomed[1])])
    repo.delete(doomed_wal[: len(doomed_wal) // 2])

    catalog = read_catalog(repo, DB, POLICY)
    assert doomed[0] not in {b.id for b in catalog.backups}, "a half-deleted backup never looks like a backup"
    assert {o.backup_id for o in catalog.orphans} == {doomed[0], doomed[1]}

    result = prune(repo, DB, POLICY, now=LATER)
    assert set(result.deleted_orphans) == {doomed[0], doomed[1]}
    assert set(result.deleted_backups) == set(doomed[2:])
    assert keys(repo) == clean_end
    assert prune(repo, DB, POLICY, now=LATER).objects == 0


def test_orphans_younger_than_the_age_are_left_alone(tmp_path: Path) -> None:
    repo = file_backend(tmp_path / "repo").repo
    put_backup(repo, datetime(2026, 3, 1, 2, tzinfo=UTC), Lsn(0x2000028), Lsn(0x2800000))
    orphan = put_backup(repo, datetime(2026, 3, 2, 2, tzinfo=UTC), Lsn(0x5000028), Lsn(0x5800000), manifest=False)
    orphan_keys = keys(repo, backup_prefix(DB, orphan))

    young = prune(repo, DB, POLICY)  # the orphan was written just now: maybe a backup in progress
    assert young.young_orphans == (orphan,) and young.deleted_orphans == ()
    assert keys(repo, backup_prefix(DB, orphan)) == orphan_keys
    assert prune(repo, DB, POLICY, now=NOW + timedelta(hours=23)).deleted_orphans == ()

    old = prune(repo, DB, POLICY, now=NOW + timedelta(hours=2), orphan_age=timedelta(hours=1))
    assert old.deleted_orphans == (orphan,) and old.orphan_objects == 3
    assert keys(repo, backup_prefix(DB, orphan)) == set()


def test_nothing_is_deleted_without_a_valid_backup(tmp_path: Path) -> None:
    repo = file_backend(tmp_path / "repo").repo
    first = put_backup(repo, datetime(2026, 3, 1, 2, tzinfo=UTC), Lsn(0x2000028), Lsn(0x2800000))
    put_backup(repo, datetime(2026, 3, 2, 2, tzinfo=UTC), Lsn(0x5000028), Lsn(0x5800000), manifest=False)
    put_wal(repo, segments_between(1, Lsn(0), Lsn(0x6000000)))
    repo.delete([backup_prefix(DB, first) + "base.tar.zst"])
    before = keys(repo)

    result = prune(repo, DB, RetentionPolicy(daily=1, monthly=0, yearly=0), now=LATER)

    assert result.objects == 0 and result.skipped and "no valid backup" in result.skipped[0]
    assert keys(repo) == before


# -- off-site copy -----------------------------------------------------------------------------------


@pytest.fixture(params=["file-to-s3", "s3-to-file"])
def pair(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Backend, Backend]]:
    server = request.getfixturevalue("s3")
    on_disk = file_backend(tmp_path / "repo")
    on_s3 = s3_backend(server, "pgw-offsite")
    yield (on_disk, on_s3) if request.param == "file-to-s3" else (on_s3, on_disk)


OFFSITE_POLICY = RetentionPolicy(daily=3, monthly=0, yearly=0)


def five_nights(repo: Repository) -> list[str]:
    ids = [put_backup(repo, datetime(2026, 3, 1 + i, 2, tzinfo=UTC), Lsn(i * 4 * SEG + 0x28),
                      Lsn(i * 4 * SEG + SEG)) for i in range(5)]
    put_wal(repo, segments_between(1, Lsn(0), Lsn(22 * SEG)))
    return ids


def test_offsite_copies_what_is_kept_then_nothing(pair: tuple[Backend, Backend], tmp_path: Path) -> None:
    src, dst = pair[0].repo, pair[1].repo
    ids = five_nights(src)
    # one restore point whose WAL retention drops (after the first night), one inside the window
    put_restore_point(src, "rp_gone", Lsn(2 * SEG), datetime(2026, 3, 1, 8, tzinfo=UTC))
    put_restore_point(src, "rp_kept", Lsn(18 * SEG), datetime(2026, 3, 5, 8, tzinfo=UTC))
    # the destination already holds a backup from long ago, which its own retention then removes
    stale = put_backup(dst, datetime(2025, 1, 1, 2, tzinfo=UTC), Lsn(0x28), Lsn(SEG))
    before = snapshot(src)
    workdir = tmp_path / "work"

    result = copy_offsite(src, dst, DB, workdir=workdir, policy=OFFSITE_POLICY, now=LATER)

    assert snapshot(src) == before, "the source is never written to"
    # ids[1]: restores to any moment of the 3-day window's first day start from it (window_start)
    assert result.backups_copied == ids[1:], "backups retention is about to delete are not shipped"
    assert result.failures == []
    assert result.prune is not None and result.prune.deleted_backups == (stale,)
    src_catalog, dst_catalog = read_catalog(src, DB, OFFSITE_POLICY), read_catalog(dst, DB, OFFSITE_POLICY)
    assert [(b.id, b.valid) for b in dst_catalog.backups] == [(i, True) for i in ids[1:]]
    for backup in dst_catalog.backups:
        for stored in backup.manifest.files:
            key = backup_prefix(DB, backup.id) + stored.name
            assert dst.head(key).sha256 == src.head(key).sha256 == stored.sha256
        assert dst.get_bytes(manifest_key(DB, backup.id)) == src.get_bytes(manifest_key(DB, backup.id))
    needed = {w.name for w in src_catalog.wal if src_catalog.plan.segment_needed(w.name)}
    assert dst_catalog.wal_names == needed and result.wal_copied == len(needed)
    assert dst_catalog.check_chain().ok
    assert [p.name for p in dst_catalog.restore_points] == ["rp_kept"], "not a record retention is dropping"
    assert list(workdir.iterdir()) == [], "temp files are removed"

    again = copy_offsite(src, dst, DB, workdir=workdir, policy=OFFSITE_POLICY, now=LATER)
    assert again.objects_copied == 0 and again.backups_copied == [] and again.wal_copied == 0
    assert again.backups_present == 4
    assert again.prune.objects == 0

    # a destination object that went missing or changed is copied again
    victim = backup_prefix(DB, ids[3]) + "base.tar.zst"
    dst.delete([victim])
    wal_victim = wal_key(DB, segment_name(1, Lsn(20 * SEG)))
    dst.put_bytes(wal_victim, b"not the same bytes\n")
    repaired = copy_offsite(src, dst, DB, workdir=workdir, policy=OFFSITE_POLICY, now=LATER)
    assert repaired.backups_copied == [ids[3]] and repaired.wal_copied == 1
    assert dst.head(victim).sha256 == src.head(victim).sha256
    assert dst.get_bytes(wal_victim) == src.get_bytes(wal_victim)
    assert snapshot(src) == before


def test_offsite_copy_of_a_corrupt_source_object_fails_naming_it(tmp_path: Path, s3: MotoServer) -> None:
    source = file_backend(tmp_path / "repo")
    src, dst = source.repo, s3_backend(s3, "pgw-offsite").repo
    ids = five_nights(src)
    corrupt = backup_prefix(DB, ids[3]) + "base.tar.zst"
    original = src.get_bytes(corrupt)
    source.tamper(corrupt, original[:-1] + b"!")  # same size, other bytes: bit rot
    before = snapshot(src)

    with pytest.raises(ChecksumMismatch) as failure:
        copy_offsite(src, dst, DB, workdir=tmp_path / "work", policy=OFFSITE_POLICY, now=LATER)

    message = str(failure.value)
    assert src.uri(corrupt) in message and "1 object(s)" in message
    assert dst.head(manifest_key(DB, ids[3])) is None, "no pgwarden.json for a backup the destination lacks"
    assert dst.head(corrupt) is None
    copied = {b.id for b in read_catalog(dst, DB, OFFSITE_POLICY).backups}
    assert copied == {ids[1], ids[2], ids[4]}, "the other backups still reach the destination"
    assert read_catalog(dst, DB, OFFSITE_POLICY).wal, "and so does the WAL"
    assert snapshot(src) == before
    assert list((tmp_path / "work").iterdir()) == []

    source.tamper(corrupt, original)  # repaired at the source: the next run completes the copy
    result = copy_offsite(src, dst, DB, workdir=tmp_path / "work", policy=OFFSITE_POLICY, now=LATER)
    assert result.backups_copied == [ids[3]] and result.objects_copied == 4  # its files and pgwarden.json
    assert hashlib.sha256(dst.get_bytes(corrupt)).hexdigest() == src.head(corrupt).sha256


# -- CLI ---------------------------------------------------------------------------------------------


def write_config(tmp_path: Path, repository: str) -> Path:
    path = tmp_path / "pgwarden.yaml"
    path.write_text(
        "databases:\n"
        f"  {DB}:\n"
        "    conn_id: appdb_pg\n"
        f"    repository: {repository}\n"
        "    backup:\n"
        "      retention: {daily: 7, monthly: 6, yearly: 2}\n"
    )
    return path


def test_cli_catalog_table_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    backend = file_backend(tmp_path / "repo")
    ids = build_mixed(backend.repo)
    config = write_config(tmp_path, f'{{url: "{backend.repo.url}"}}')

    assert main(["--config", str(config), "catalog", DB]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[2].split() == ["ID", "KIND", "GFS", "STARTED", "(UTC)", "SIZE", "LSN", "RANGE", "TLI", "VALID"]
    row_c = next(line for line in lines if line.startswith(ids["c"]))
    assert row_c.split()[:4] == [ids["c"], "full", "daily,monthly,newest,yearly", "2026-03-03"]
    assert "0/900028 -> 0/980000" in row_c and row_c.split()[-2:] == ["2", "yes"]
    row_b = next(line for line in lines if line.startswith(ids["b"]))
    assert "(delete)" in row_b and row_b.endswith("NO")
    assert f"! {ids['b']}: pg_wal.tar.zst is missing" in out
    assert "timeline 1: 0/200000 -> 0/700000 (5 segments)" in out
    assert "timeline 2: 0/900000 -> 0/B00000 (2 segments)" in out
    assert "newest WAL position: timeline 2, 0/B00000" in out
    assert "GAP" in out and "000000020000000000000008" in out
    assert ids["orphan"] in out.split("orphans")[1]
    assert f"{ids['unreadable']}: unreadable" in out

    assert main(["--config", str(config), "catalog", DB, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert [b["id"] for b in document["backups"]] == [ids["a"], ids["b"], ids["c"], ids["d"]]
    assert [b["valid"] for b in document["backups"]] == [True, False, True, False]
    assert document["retention"] == {"daily": 7, "monthly": 6, "yearly": 2}
    assert document["orphans"][0]["id"] == ids["orphan"]
    assert document["wal"]["end"] == {"timeline": 2, "lsn": "0/B00000"}


def test_cli_catalog_reads_s3_through_the_airflow_connection_in_the_environment(tmp_path: Path, s3: MotoServer) -> None:
    """In a process of its own, as people run it: stdout is the JSON document alone, although the
    environment asks Airflow for INFO logs (the Amazon provider logs where credentials came from)."""
    backend = s3_backend(s3, "pgw-cli")
    backup_id = put_backup(backend.repo, datetime(2026, 3, 1, 2, tzinfo=UTC), Lsn(0x2000028), Lsn(0x2800000))
    config = write_config(tmp_path, '{url: "s3://pgw-cli/backups", conn_id: pgw_backups}')
    env = {**os.environ, "AIRFLOW_CONN_PGW_BACKUPS": s3.airflow_conn_uri(), "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO"}

    run = subprocess.run([str(Path(sys.executable).with_name("pgwarden")), "--config", str(config), "catalog", DB,
                          "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    document = json.loads(run.stdout)
    assert [(b["id"], b["valid"], b["gfs"]) for b in document["backups"]] == [
        (backup_id, True, ["daily", "monthly", "newest", "window_start", "yearly"])]


def test_cli_catalog_unknown_database_and_missing_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, f'{{url: "file://{tmp_path}/not-mounted"}}')
    with pytest.raises(SystemExit, match="unknown database 'nosuchdb'"):
        main(["--config", str(config), "catalog", "nosuchdb"])
    assert main(["--config", str(config), "catalog", DB]) == 1
    assert "does not exist" in capsys.readouterr().err
