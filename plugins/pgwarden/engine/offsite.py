"""The off-site copy: a second repository (another bucket, region or provider) with every backup and WAL file.

``copy_offsite(src, dst, database, workdir=...)`` copies what ``dst`` lacks, one object at a time
through a temp file in ``workdir`` (so memory stays bounded and local disk needs room for the largest
single object, a ``base.tar.*``), then prunes ``dst`` with the same retention policy.

What is copied
    every valid backup of the source that the source's retention plan keeps (a backup about to be
    pruned, or an invalid one, is not worth shipping), and every WAL and ``.history`` file retention
    would not delete. Orphans and unreadable folders stay where they are.
When an object is copied
    when ``dst`` has no object at its key, or one whose size or recorded SHA-256 differs. Backup files
    are compared with the checksums in the backup's ``pgwarden.json``; WAL files with the source's
    recorded checksum (``head()``).
How
    ``src.get_file`` verifies the bytes against the expected checksum while downloading; after
    ``dst.put_file`` the checksum ``dst`` recorded must equal it. A backup's ``pgwarden.json`` is
    written to ``dst`` LAST, after all its files are there and verified, so ``dst`` never shows a
    backup it does not fully hold.
Failures
    the source is only ever read. A failing object is recorded and the copy goes on with the next
    backup (one corrupt old backup must not stop newer ones and the WAL from reaching safety); at the
    end the error names every object that failed, with the class (transient or permanent) of the
    first failure, so Airflow retries only what is worth retrying. A backup with a failed file gets no
    ``pgwarden.json`` on ``dst``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from pgwarden.core.catalog import BackupEntry, deletable_wal, unreachable_restore_points
from pgwarden.core.layout import (
    MANIFEST_NAME,
    backup_prefix,
    manifest_key,
    restore_point_key,
    restore_points_prefix,
)
from pgwarden.core.retention import RetentionPolicy
from pgwarden.core.units import format_size
from pgwarden.engine.catalog import head_many, read_catalog
from pgwarden.engine.errors import PermanentError, PgwardenError
from pgwarden.engine.prune import DEFAULT_ORPHAN_AGE, PruneResult, prune
from pgwarden.engine.repository.contract import ObjectInfo, Repository

logger = logging.getLogger(__name__)

MAX_NAMED_FAILURES = 5


@dataclass
class CopyResult:
    database: str
    source: str
    destination: str
    backups_copied: list[str] = field(default_factory=list)
    """backups whose ``pgwarden.json`` this run wrote to the destination"""
    backups_present: int = 0
    """backups the destination already held complete"""
    backups_skipped: list[str] = field(default_factory=list)
    """invalid source backups, not copied"""
    objects_copied: int = 0
    bytes_copied: int = 0
    wal_copied: int = 0
    wal_bytes: int = 0
    failures: list[str] = field(default_factory=list)
    prune: PruneResult | None = None

    def summary(self) -> str:
        text = (
            f"{self.database}: {self.source} -> {self.destination}: copied {len(self.backups_copied)} backup(s) "
            f"and {self.wal_copied} WAL file(s), {self.objects_copied} objects, {format_size(self.bytes_copied)}; "
            f"{self.backups_present} backup(s) were already there"
        )
        if self.backups_skipped:
            text += f"; {len(self.backups_skipped)} invalid source backup(s) not copied"
        if self.failures:
            text += f"; {len(self.failures)} object(s) FAILED"
        return text

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "source": self.source,
            "destination": self.destination,
            "backups_copied": list(self.backups_copied),
            "backups_present": self.backups_present,
            "backups_skipped": list(self.backups_skipped),
            "objects_copied": self.objects_copied,
            "bytes_copied": self.bytes_copied,
            "wal_copied": self.wal_copied,
            "wal_bytes": self.wal_bytes,
            "failures": list(self.failures),
            "prune": self.prune.to_json_dict() if self.prune else None,
        }


def _same(dst_head: ObjectInfo | None, size: int, sha256: str | None) -> bool:
    return (
        dst_head is not None and sha256 is not None and dst_head.size == size
        and dst_head.sha256 is not None and dst_head.sha256 == sha256.lower()
    )


class _Copier:
    """Copies one object at a time through a temp file; never writes to the source."""

    def __init__(self, src: Repository, dst: Repository, workdir: Path) -> None:
        self.src = src
        self.dst = dst
        self.workdir = workdir

    def copy(self, key: str, sha256: str) -> int:
        """Copy ``key``, verified against ``sha256`` on both ends; returns its size."""
        tmp = self.workdir / f"offsite-{os.getpid()}-{secrets.token_hex(6)}.tmp"
        try:
            got = self.src.get_file(key, tmp, expected_sha256=sha256)
            put = self.dst.put_file(key, tmp)
            recorded = self.dst.head(key)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        for what, value in (("computed while uploading", put.sha256), ("recorded", recorded and recorded.sha256)):
            if value != got.sha256:
                raise PermanentError(
                    f"{self.dst.uri(key)}: sha256 {what} by the destination is {value}, the source's is {got.sha256}; "
                    f"the upload was altered on the way or the destination is misbehaving: check it and run again"
                )
        return got.size


def _failure(key: str, src: Repository, exc: BaseException) -> str:
    return f"{src.uri(key)}: {exc}"


def copy_offsite(
    src: Repository,
    dst: Repository,
    database: str,
    *,
    workdir: Path,
    policy: RetentionPolicy | None = None,
    now: datetime | None = None,
    orphan_age: timedelta = DEFAULT_ORPHAN_AGE,
    log: Callable[[str], None] | None = None,
) -> CopyResult:
    """Copy ``database``'s backups and WAL from ``src`` to ``dst``, then prune ``dst``; see the module docstring."""
    say = log or logger.info
    if src.url == dst.url:
        raise PermanentError(f"the off-site repository is the primary one ({src.url}): configure another URL")
    workdir = Path(workdir)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PermanentError(f"cannot create the off-site copy's work folder {workdir}: {exc}") from exc
    copier = _Copier(src, dst, workdir)
    catalog = read_catalog(src, database, policy)
    result = CopyResult(database, src.url, dst.url)
    first_error: PgwardenError | None = None

    for backup in catalog.backups:
        if not backup.valid:
            result.backups_skipped.append(backup.id)
            say(f"backup {database}/{backup.id} is invalid in the source ({backup.problems[0]}): not copied")
            continue
        if not catalog.plan.classes(backup.id):
            continue  # retention deletes it: not worth shipping
        try:
            _copy_backup(copier, backup, database, result, say)
        except PgwardenError as exc:
            first_error = first_error or exc
            result.failures.append(str(exc))
            say(f"backup {database}/{backup.id} NOT copied: {exc}")

    doomed = {w.key for w in deletable_wal(catalog)}
    wanted = [w for w in catalog.wal if w.key not in doomed]
    dst_heads = head_many(dst, [w.key for w in wanted])
    # Only where sizes agree does the checksum decide; one HEAD on the source for those.
    same_size = [w.key for w in wanted if dst_heads[w.key] is not None and dst_heads[w.key].size == w.size]
    src_heads = head_many(src, same_size)
    for wal in wanted:
        source = src_heads.get(wal.key)
        if source is not None and _same(dst_heads[wal.key], source.size, source.sha256):
            continue
        try:
            source = source or src.head(wal.key)
            if source is None:
                continue  # pruned from the source since the listing
            if source.sha256 is None:
                raise PermanentError(f"{src.uri(wal.key)} has no recorded sha256, so its copy cannot be verified; "
                                     f"upload it again through pgwarden")
            size = copier.copy(wal.key, source.sha256)
        except PgwardenError as exc:
            first_error = first_error or exc
            result.failures.append(_failure(wal.key, src, exc))
            say(f"WAL file {wal.name} NOT copied: {exc}")
            continue
        result.wal_copied += 1
        result.wal_bytes += size
        result.objects_copied += 1
        result.bytes_copied += size
    if result.wal_copied:
        say(f"copied {result.wal_copied} WAL file(s) ({format_size(result.wal_bytes)}) to {dst.url}")

    # Restore-point records let a restore from the off-site copy resolve names and times too; not
    # those retention is about to delete (their WAL is not copied either).
    points_prefix = restore_points_prefix(database)
    present = {info.key for info in dst.list(points_prefix)}
    present |= {restore_point_key(database, p.name) for p in unreachable_restore_points(catalog)}
    for info in src.list(points_prefix):
        if info.key not in present:
            dst.put_bytes(info.key, src.get_bytes(info.key))
            result.objects_copied += 1

    result.prune = prune(dst, database, policy, now=now, orphan_age=orphan_age, log=say)
    say(result.summary())
    if first_error is not None:
        named = "; ".join(result.failures[:MAX_NAMED_FAILURES])
        more = len(result.failures) - MAX_NAMED_FAILURES
        message = (
            f"off-site copy of {database} to {dst.url} failed for {len(result.failures)} object(s)"
            f"{f' ({more} more not shown)' if more > 0 else ''}: {named}. The source was not changed; "
            f"the destination has no pgwarden.json for a backup it does not fully hold"
        )
        raise type(first_error)(message) from first_error
    return result


def _copy_backup(copier: _Copier, backup: BackupEntry, database: str, result: CopyResult,
                 say: Callable[[str], None]) -> None:
    src, dst = copier.src, copier.dst
    prefix = backup_prefix(database, backup.id)
    files = [(prefix + f.name, f.size, f.sha256) for f in backup.manifest.files]
    mkey = manifest_key(database, backup.id)
    heads = head_many(dst, [k for k, _, _ in files] + [mkey])
    src_manifest = src.head(mkey)
    if src_manifest is None:
        return  # pruned from the source since the catalog was read
    todo = [(k, size, sha) for k, size, sha in files if not _same(heads[k], size, sha)]
    if not todo and _same(heads[mkey], src_manifest.size, src_manifest.sha256):
        result.backups_present += 1
        return
    copied_bytes = 0
    for key, _, sha256 in todo:
        try:
            copied_bytes += copier.copy(key, sha256)
        except PgwardenError as exc:
            raise type(exc)(_failure(key, src, exc)) from exc
        result.objects_copied += 1
    try:
        if src_manifest.sha256 is None:
            raise PermanentError(f"no sha256 is recorded for {MANIFEST_NAME}; its copy cannot be verified")
        copied_bytes += copier.copy(mkey, src_manifest.sha256)
    except PgwardenError as exc:
        raise type(exc)(_failure(mkey, src, exc)) from exc
    result.objects_copied += 1
    result.bytes_copied += copied_bytes
    result.backups_copied.append(backup.id)
    say(f"copied backup {database}/{backup.id} ({len(todo) + 1} objects, {format_size(copied_bytes)}) to {dst.url}")
