"""What a database's repository holds, read from the repository alone (no Airflow, no server).

``read_catalog(repo, database)`` reads the repository into the model of ``core.catalog``; for one
database it lists:

backups
    every ``<db>/base/<id>/pgwarden.json`` that reads and parses, as a :class:`BackupEntry`. It is
    *valid* when the manifest says its verification passed, names its own database and id, and every
    file it lists exists with the recorded size and (where one is recorded) the same SHA-256: one
    ``head()`` per file, no download. ``problems`` says what is wrong with an invalid one.
unreadable
    backup folders whose ``pgwarden.json`` exists but cannot be read (checksum mismatch, not JSON,
    a format this version does not know). Never counted as backups, never deleted automatically:
    a newer pgwarden may have written them; a person decides.
orphans
    backup folders without ``pgwarden.json``: a backup that was killed, is still running, or was half
    deleted. Retention removes them once their newest object is older than a day.
WAL
    the files under ``<db>/wal/`` by PostgreSQL name (compression suffix removed), the timeline
    histories, and ``coverage``: the runs of consecutive segments per timeline. The segment size is
    the newest backup's ``wal_segment_size`` (16 MiB when there is no backup).
restore points
    every ``<db>/restore_points/<name>.json`` record, oldest first by LSN; a record that cannot be
    read is named in ``problems``.
GFS classes
    ``core.retention.plan_retention`` over every backup (invalid ones with ``valid=False``) and the
    database's retention policy: what retention keeps and why, and what it would delete.
"""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor

from pydantic import ValidationError

from pgwarden.core.catalog import (
    BackupEntry,
    Catalog,
    Orphan,
    UnreadableBackup,
    WalObject,
    segment_size_of,
    wal_coverage,
    wal_end,
)
from pgwarden.core.layout import (
    MANIFEST_NAME,
    backup_id_of,
    backup_prefix,
    base_prefix,
    manifest_key,
    restore_points_prefix,
    wal_file_name,
    wal_prefix,
)
from pgwarden.core.lsn import Lsn
from pgwarden.core.manifest import BackupManifest
from pgwarden.core.restore_point import RestorePoint
from pgwarden.core.retention import RetentionPolicy, plan_retention
from pgwarden.core.walnames import (
    HistoryEntry,
    check_segment_size,
    history_timeline,
    is_backup_history_name,
    is_history_name,
    is_partial,
    is_segment_name,
    parse_history_file,
    parse_segment_name,
)
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.repository.contract import ObjectInfo, ObjectMissing, Repository

HEAD_CONCURRENCY = 8


def head_many(repo: Repository, keys: list[str]) -> dict[str, ObjectInfo | None]:
    """``head()`` of many keys, a few at a time: one round trip each on S3, so overlap them."""
    if len(keys) <= 1:
        return {k: repo.head(k) for k in keys}
    with ThreadPoolExecutor(max_workers=HEAD_CONCURRENCY, thread_name_prefix="pgwarden-head") as pool:
        return dict(zip(keys, pool.map(repo.head, keys), strict=True))


def read_restore_points(repo: Repository, database: str) -> tuple[list[RestorePoint], list[str]]:
    """Every restore point record, oldest first by LSN, and the problems of records that cannot be read."""
    keys = [info.key for info in repo.list(restore_points_prefix(database))]

    def read(key: str) -> RestorePoint | str | None:
        try:
            return RestorePoint.from_json(repo.get_bytes(key))
        except ObjectMissing:
            return None  # deleted since the listing (a prune running beside us)
        except (PermanentError, ValueError) as exc:
            return f"restore point record {key} cannot be read: {exc}"

    if len(keys) <= 1:
        results = [read(k) for k in keys]
    else:
        with ThreadPoolExecutor(max_workers=HEAD_CONCURRENCY, thread_name_prefix="pgwarden-points") as pool:
            results = list(pool.map(read, keys))
    points = sorted((r for r in results if isinstance(r, RestorePoint)), key=lambda p: (p.lsn, p.name))
    return points, [r for r in results if isinstance(r, str)]


def _read_manifest(repo: Repository, database: str, backup_id: str) -> BackupManifest | str | None:
    """The manifest, or a problem (str) when it cannot be read, or ``None`` when it vanished."""
    key = manifest_key(database, backup_id)
    try:
        manifest = BackupManifest.from_json(repo.get_bytes(key))
    except ObjectMissing:
        return None  # deleted since the listing (a prune running beside us): not a backup any more
    except PermanentError as exc:  # ChecksumMismatch and other permanent read failures
        return f"{MANIFEST_NAME} cannot be read: {exc}"
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "(document)"
        return (f"{MANIFEST_NAME} is not a pgwarden.backup/1 manifest this version understands "
                f"({exc.error_count()} problem(s), first at {where}: {first['msg']})")
    try:
        start, stop = Lsn.parse(manifest.start_lsn), Lsn.parse(manifest.stop_lsn)
    except ValueError as exc:
        return f"{MANIFEST_NAME} has an unreadable LSN: {exc}"
    if stop < start or manifest.timeline < 1 or manifest.started_at.utcoffset() is None:
        return f"{MANIFEST_NAME} is inconsistent: stop_lsn before start_lsn, timeline < 1 or a naive started_at"
    try:
        check_segment_size(manifest.wal_segment_size)
    except ValueError as exc:
        return f"{MANIFEST_NAME} has an impossible wal_segment_size: {exc}"
    return manifest


def _file_problems(manifest: BackupManifest, database: str, backup_id: str,
                   heads: dict[str, ObjectInfo | None], repo: Repository) -> list[str]:
    problems = []
    if manifest.database != database or manifest.backup_id != backup_id:
        problems.append(f"{MANIFEST_NAME} describes {manifest.database}/{manifest.backup_id}, "
                        f"but lies in {backup_prefix(database, backup_id)}")
    if not manifest.verification.ok:
        problems.append(f"its verification ({manifest.verification.method}) failed when it was taken")
    for stored in manifest.files:
        key = backup_prefix(database, backup_id) + stored.name
        head = heads.get(key)
        if head is None:
            problems.append(f"{stored.name} is missing ({repo.uri(key)})")
        elif head.size != stored.size:
            problems.append(f"{stored.name} is {head.size} bytes, the manifest says {stored.size}")
        elif head.sha256 is not None and head.sha256 != stored.sha256.lower():
            problems.append(f"{stored.name} has recorded sha256 {head.sha256}, the manifest says {stored.sha256}")
    return problems


def read_catalog(repo: Repository, database: str, policy: RetentionPolicy | None = None) -> Catalog:
    """Everything ``database`` has in ``repo``; see the module docstring. Reads only."""
    policy = policy or RetentionPolicy()
    problems: list[str] = []

    folders: dict[str, list[ObjectInfo]] = defaultdict(list)
    strays = 0
    for info in repo.list(base_prefix(database)):
        backup_id = backup_id_of(info.key)
        if backup_id is None:
            strays += 1
        else:
            folders[backup_id].append(info)
    if strays:
        problems.append(f"{strays} object(s) under {base_prefix(database)} are outside any backup folder "
                        f"(<id> = YYYYMMDDTHHMMSSZ); pgwarden leaves them alone")

    manifests: dict[str, BackupManifest] = {}
    orphans: list[Orphan] = []
    unreadable: list[UnreadableBackup] = []
    for backup_id in sorted(folders):
        objects = folders[backup_id]
        has_manifest = any(o.key == manifest_key(database, backup_id) for o in objects)
        result = _read_manifest(repo, database, backup_id) if has_manifest else None
        if isinstance(result, BackupManifest):
            manifests[backup_id] = result
        elif isinstance(result, str):
            unreadable.append(UnreadableBackup(backup_id, result, tuple(o.key for o in objects)))
        else:
            times = [o.modified for o in objects if o.modified is not None]
            orphans.append(Orphan(backup_id, max(times) if times else None, sum(o.size for o in objects),
                                  tuple(o.key for o in objects)))

    keys = [backup_prefix(database, bid) + f.name for bid, m in manifests.items() for f in m.files]
    heads = head_many(repo, keys)
    backups = []
    for backup_id, manifest in manifests.items():
        found = _file_problems(manifest, database, backup_id, heads, repo)
        backups.append(BackupEntry(manifest, not found, found, tuple(folders[backup_id])))
    backups.sort(key=lambda b: (b.started_at, b.id))

    seg_size = segment_size_of((b.manifest, b.valid) for b in backups)
    wal: list[WalObject] = []
    segments: dict[int, list[int]] = defaultdict(list)
    history: dict[int, list[HistoryEntry]] = {}
    for info in repo.list(wal_prefix(database)):
        name = wal_file_name(info.key)
        wal.append(WalObject(name, info.key, info.size, info.modified))
        if is_history_name(name):
            try:
                history[history_timeline(name)] = parse_history_file(repo.get_bytes(info.key).decode())
            except (PermanentError, ValueError, UnicodeDecodeError) as exc:
                problems.append(f"timeline history {name} cannot be read: {exc}")
        elif is_segment_name(name):
            try:
                tli, first = parse_segment_name(name, seg_size)
            except ValueError as exc:
                problems.append(str(exc))
                continue
            segments[tli].append(first.value // seg_size)
        elif not (is_partial(name) or is_backup_history_name(name)):
            problems.append(f"{info.key} is not a WAL, .partial, .backup or .history file; pgwarden leaves it alone")
    wal.sort(key=lambda w: (w.name, w.key))

    points, point_problems = read_restore_points(repo, database)
    problems += point_problems
    plan = plan_retention([b.ref() for b in backups], policy)
    return Catalog(
        database=database, url=repo.url, policy=policy, backups=tuple(backups), orphans=tuple(orphans),
        unreadable=tuple(unreadable), wal=tuple(wal), segment_size=seg_size, history=history,
        coverage=tuple(wal_coverage(segments, seg_size)), wal_end=wal_end(segments, seg_size), plan=plan, problems=tuple(problems),
        restore_points=tuple(points),
    )
