"""Continuous WAL collection through a physical replication slot that only pgwarden advances.

Why this shape: ``pg_receivewal`` confirms WAL to the server as soon as it is on the worker's
local disk. If it streamed through pgwarden's slot, a task killed between receiving and uploading
would let the server recycle WAL that never reached the repository: a silent hole in the chain.
So the slot is a *guard*: ``pg_receivewal`` streams without a slot, starting where the guard
stands, and the guard is advanced (``pg_replication_slot_advance``) only after every segment up
to the new position is in the repository. A kill at any moment just re-streams from the guard.

Each run: create a named restore point (a clean PITR target), switch WAL so that segment is
complete, stream up to the segment boundary, upload finished segments and ``.history`` files,
then advance the guard.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from pgwarden.core import layout
from pgwarden.core.lsn import Lsn
from pgwarden.core.restore_point import RestorePoint
from pgwarden.core.walnames import is_history_name, is_segment_name, segment_name
from pgwarden.engine import compress, pgtools
from pgwarden.engine.errors import NoBackupYet, PermanentError, TransientError
from pgwarden.engine.postgres import (
    PgTarget,
    classify,
    connect,
    replication_probe,
    server_version_num,
    session_advisory_lock,
    wal_segment_size,
)

Log = Callable[[str], None]

WAL_UPLOAD_WORKERS = 3
WAL_LOCK_KEY = "pgwarden.wal"


@dataclass(frozen=True)
class SlotState:
    name: str
    restart_lsn: Lsn
    wal_status: str | None
    retained_bytes: int
    created: bool = False


@dataclass
class WalCollection:
    """What one run collected: positions, counts and sizes only (safe for XCom)."""

    timeline: int
    start_lsn: str
    end_lsn: str
    restore_point: str
    restore_point_lsn: str
    segments_uploaded: list[str] = field(default_factory=list)
    segments_skipped: int = 0
    history_uploaded: list[str] = field(default_factory=list)
    bytes_received: int = 0
    bytes_uploaded: int = 0
    slot_retained_bytes: int = 0
    slot_warning: str | None = None
    seconds: float = 0.0

    def to_json_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["segments_uploaded"] = len(self.segments_uploaded)
        data["first_segment"] = self.segments_uploaded[0] if self.segments_uploaded else None
        data["last_segment"] = self.segments_uploaded[-1] if self.segments_uploaded else None
        return data

    def summary(self) -> str:
        return (f"collected WAL {self.start_lsn} -> {self.end_lsn} on timeline {self.timeline}: "
                f"{len(self.segments_uploaded)} segment(s) uploaded, {self.segments_skipped} already there, "
                f"{self.bytes_uploaded} bytes stored; restore point {self.restore_point} at {self.restore_point_lsn}")


_SLOT_SQL = """
SELECT restart_lsn::text, wal_status, slot_type,
       pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint
  FROM pg_replication_slots WHERE slot_name = %s
"""


def slot_lost_error(slot: str, database: str) -> PermanentError:
    return PermanentError(
        f"replication slot {slot!r} was invalidated (wal_status = lost): the server removed WAL that was "
        f"never collected, so point-in-time recovery has a gap. Drop it "
        f"(SELECT pg_drop_replication_slot('{slot}')) and trigger {database}.backup_full, which recreates "
        f"the slot and starts a new unbroken chain. To stop this happening, run {database}.backup_incremental "
        f"more often or raise max_slot_wal_keep_size."
    )


def has_any_backup(repo, database: str) -> bool:
    """Whether any backup (valid or not) or orphan was ever written for ``database``."""
    if repo is None:
        return True
    return next(iter(repo.list(layout.base_prefix(database))), None) is not None


def ensure_slot(target: PgTarget, slot: str, database: str, *, create: bool, repo=None) -> SlotState:
    """Return the guard slot's state; create it (reserving WAL now) when ``create`` and missing."""
    with connect(target, statement_timeout="30s") as conn:
        row = conn.execute(_SLOT_SQL, (slot,)).fetchone()
        created = False
        if row is None:
            if not create and not has_any_backup(repo, database):
                raise NoBackupYet(f"{database} has no full backup yet, so there is no WAL chain to extend: "
                                  f"the first run of {database}.backup_full creates the replication slot "
                                  f"{slot!r} and starts it")
            if not create:
                raise PermanentError(
                    f"replication slot {slot!r} does not exist, so WAL since the last backup may be gone. "
                    f"Trigger {database}.backup_full: it creates the slot and starts a new chain."
                )
            try:
                conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
            except psycopg.errors.DuplicateObject:
                pass  # created concurrently: fine, it is the same guard
            created = True
            row = conn.execute(_SLOT_SQL, (slot,)).fetchone()
    restart, wal_status, slot_type, retained = row
    if slot_type != "physical":
        raise PermanentError(f"slot {slot!r} exists but is a {slot_type} slot; pgwarden needs a physical "
                             f"slot. Rename backup.slot_name or drop that slot.")
    if wal_status == "lost" or restart is None:
        raise slot_lost_error(slot, database)
    return SlotState(slot, Lsn.parse(restart), wal_status, int(retained or 0), created)


def identify_system(target: PgTarget) -> dict[str, str]:
    """``replication_probe``; a refused replication connection says what to fix, like the healthcheck."""
    try:
        return replication_probe(target)
    except psycopg.OperationalError as exc:
        server_says = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        if "must be superuser or replication role" in server_says:
            raise PermanentError(
                f"{target.describe()} refused a replication connection ({server_says}): the role may not "
                f"replicate. Run ALTER ROLE {target.user} WITH REPLICATION; then run the healthcheck DAG."
            ) from None
        if "no pg_hba.conf entry" in server_says:
            raise PermanentError(
                f"{target.describe()} refused a replication connection ({server_says}): add a line like "
                f"'host replication {target.user} <worker-ip>/32 scram-sha-256' to pg_hba.conf, then "
                f"SELECT pg_reload_conf(); then run the healthcheck DAG."
            ) from None
        raise classify(exc, f"opening a replication connection to {target.describe()}") from exc


def advance_slot(target: PgTarget, slot: str, lsn: Lsn) -> None:
    with connect(target, statement_timeout="60s") as conn:
        conn.execute("SELECT pg_replication_slot_advance(%s, %s::pg_lsn)", (slot, str(lsn)))


def create_restore_point(target: PgTarget, repo, database: str, name: str) -> Lsn:
    """A named restore point, also recorded in the repository so restores can list targets.

    Recovery to a *time* stops only at a commit record, so an idle database could make a time
    target unreachable. A tiny transactional WAL message is committed first; the recorded time is
    that transaction's start, so the commit (after it) lets recovery stop at exactly that time.
    """
    with connect(target, statement_timeout="30s") as conn:
        with conn.transaction():
            created_at = conn.execute("SELECT now()").fetchone()[0]
            conn.execute("SELECT pg_logical_emit_message(true, 'pgwarden', %s)", (f"restore point {name}",))
        lsn = Lsn.parse(str(conn.execute("SELECT pg_create_restore_point(%s)", (name,)).fetchone()[0]))
    repo.put_bytes(layout.restore_point_key(database, name), RestorePoint(name, lsn, created_at).to_json())
    return lsn


def _switch_and_mark_end(target: PgTarget) -> Lsn:
    """Complete the current segment and return the boundary to stream up to.

    A tiny non-transactional WAL record after the switch moves the stream past the boundary, so
    pg_receivewal sees its end position at once instead of waiting for the next keepalive.
    """
    with connect(target, statement_timeout="60s") as conn:
        conn.execute("SELECT pg_switch_wal()")
        end = Lsn.parse(str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]))
        conn.execute("SELECT pg_logical_emit_message(false, 'pgwarden', 'wal-collect')")
    return end


def _receive(target: PgTarget, directory: Path, endpos: Lsn, timeout: float, server_major: int) -> None:
    argv = [pgtools.tool("pg_receivewal", server_major), "-D", str(directory), "--endpos", str(endpos),
            "--no-loop", "--no-sync"]
    try:
        pgtools.run(argv, env=target.tool_env(), timeout=timeout)
    except pgtools.ToolError as exc:
        if "has already been removed" in exc.stderr:
            raise PermanentError(
                f"the server already removed WAL pgwarden had not collected ({exc.stderr.splitlines()[-1]}); "
                f"the chain has a gap. Trigger a new full backup to start a new chain."
            ) from exc
        # Connection lost, server restarting, timeout: nothing was confirmed, a retry re-streams.
        raise TransientError(f"pg_receivewal stopped before {endpos}: {exc.stderr[-500:]}") from exc


def collect_wal(
    target: PgTarget,
    repo,
    database: str,
    *,
    slot: str,
    workdir: Path,
    compression: str,
    restore_point: str,
    warn_bytes: int,
    log: Log = print,
    timeout: float = 3600,
) -> WalCollection:
    """Collect all WAL since the guard slot into the repository, then advance the guard.

    One collection per slot at a time (``backup_incremental`` and a migration's safety net may start
    together): a second one waits for the first, up to ``timeout``, then streams from where it left the
    guard. Unserialized, the run that finishes last would move the guard backwards, which the server
    refuses, or meet the slot in the other's hands.
    """
    def busy(holders: str) -> TransientError:
        return TransientError(f"another WAL collection of {database} (backend pid {holders}) still runs after "
                              f"{timedelta(seconds=timeout)}; retry once it has finished")

    with (connect(target) as lock_conn,
          session_advisory_lock(lock_conn, f"{WAL_LOCK_KEY}.{slot}", timedelta(seconds=timeout), busy)):
        return _collect_wal(target, repo, database, slot=slot, workdir=workdir, compression=compression,
                            restore_point=restore_point, warn_bytes=warn_bytes, log=log, timeout=timeout)


def _collect_wal(target: PgTarget, repo, database: str, *, slot: str, workdir: Path, compression: str,
                 restore_point: str, warn_bytes: int, log: Log, timeout: float) -> WalCollection:
    started = time.monotonic()
    state = ensure_slot(target, slot, database, create=False, repo=repo)
    warning = None
    if state.retained_bytes > warn_bytes:
        warning = (f"slot {slot} holds {state.retained_bytes} bytes of WAL on the server (warning above "
                   f"{warn_bytes}); collection is behind or was paused")
        log(f"WARNING: {warning}")
    if state.wal_status == "unreserved":
        log(f"WARNING: slot {slot} is about to lose WAL (wal_status = unreserved): collecting now")

    system = identify_system(target)
    timeline = int(system["timeline"])
    with connect(target) as conn:
        seg_size = wal_segment_size(conn)
        server_major = server_version_num(conn) // 10000

    rp_lsn = create_restore_point(target, repo, database, restore_point)
    endpos = _switch_and_mark_end(target)

    # Seed the start: a sparse, full-size ".partial" of the guard's segment makes pg_receivewal
    # (re)start exactly at that segment's beginning.
    spool = workdir / "wal"
    spool.mkdir(parents=True, exist_ok=True)
    seed = spool / f"{segment_name(timeline, state.restart_lsn, seg_size)}.partial"
    with open(seed, "wb") as handle:
        handle.truncate(seg_size)
    _receive(target, spool, endpos, timeout, server_major)

    result = WalCollection(
        timeline=timeline, start_lsn=str(state.restart_lsn), end_lsn=str(endpos), restore_point=restore_point,
        restore_point_lsn=str(rp_lsn), slot_retained_bytes=state.retained_bytes, slot_warning=warning,
    )
    def store_segment(path: Path) -> int | None:
        """Compress and upload one finished segment; None when a killed predecessor already did."""
        key = layout.wal_key(database, path.name, compression)
        if repo.head(key) is not None:
            return None  # segments never change once complete
        packed = path.with_name(path.name + layout.COMPRESSION_SUFFIX[compression])
        compress.compress_file(path, packed, compression)
        size = repo.put_file(key, packed).size
        packed.unlink()
        path.unlink()
        return size

    files = sorted(spool.iterdir())
    for path in files:
        if is_history_name(path.name):
            repo.put_file(layout.wal_key(database, path.name), path)
            result.history_uploaded.append(path.name)
    segments = [p for p in files if is_segment_name(p.name)]
    result.bytes_received = sum(p.stat().st_size for p in segments)
    # Compressing one segment while another uploads keeps both the CPU and the network busy; order
    # does not matter because the guard only moves after all of them are stored.
    with ThreadPoolExecutor(max_workers=WAL_UPLOAD_WORKERS, thread_name_prefix="pgwarden-wal") as pool:
        for path, size in zip(segments, pool.map(store_segment, segments), strict=True):
            if size is None:
                result.segments_skipped += 1
            else:
                result.bytes_uploaded += size
                result.segments_uploaded.append(path.name)

    # Everything before endpos is in the repository now: let the server recycle it.
    advance_slot(target, slot, endpos)
    result.seconds = round(time.monotonic() - started, 3)
    log(result.summary())
    return result
