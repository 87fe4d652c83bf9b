"""Restore and point-in-time recovery from the repository into a directory, with or without Airflow.

Steps (each timed): pick the base backup for the target; check the WAL chain to the target; fetch
and verify the base backup (SHA-256 against pgwarden.json) and unpack it; fetch, verify and
decompress the WAL segments recovery will ask for into ``<dest>.wal/`` beside the data directory;
write recovery settings whose ``restore_command`` only copies from there (no credentials, no
network during replay, and nothing is ever archived); optionally start the server and wait for it
to reach the target.

A server pgwarden starts on a restored data directory (``restored_server``) keeps pgwarden's files in
``<datadir>/pgwarden/`` (log, Unix socket, a private ``hba_file`` given on the command line), so
pgwarden reaches it through its own socket whatever authentication the source's ``pg_hba.conf``
demands; that file itself is left as it was restored.
"""

from __future__ import annotations

import os
import shutil
import tarfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import timezone
from pathlib import Path

from pgwarden.core import layout
from pgwarden.core.lsn import Lsn
from pgwarden.core.recovery import Action, RecoveryTarget, RestorePoint, recovery_settings, render_auto_conf
from pgwarden.core.walchain import describe_reachable
from pgwarden.core.walnames import segments_on_timeline
from pgwarden.engine import compress, pgtools
from pgwarden.engine.catalog import BackupEntry, Catalog, read_catalog, read_restore_points
from pgwarden.engine.cluster import LocalCluster, port_in_use
from pgwarden.engine.errors import PermanentError, PgwardenError
from pgwarden.engine.postgres import connect

Log = Callable[[str], None]

WAL_FETCH_WORKERS = 3


@dataclass
class RestoreResult:
    """What was restored and reached; positions and durations only."""

    database: str
    backup_id: str
    target: str
    datadir: str
    port: int | None = None
    started: bool = False
    reached_lsn: str | None = None
    reached_time: str | None = None
    timeline: int | None = None
    in_recovery: bool | None = None
    wal_segments: int = 0
    steps: dict[str, float] = field(default_factory=dict)

    def to_json_dict(self) -> dict[str, object]:
        return asdict(self)


def list_restore_points(repo, database: str) -> list[RestorePoint]:
    """Every restore point record of ``database``, oldest first by LSN (unreadable records left out)."""
    return read_restore_points(repo, database)[0]


def choose_backup(catalog: Catalog, target: RecoveryTarget, points: list[RestorePoint],
                  backup_id: str | None = None) -> tuple[BackupEntry, Lsn | None]:
    """The newest valid backup that ends before the target; also the target's LSN when known."""
    valid = catalog.valid_backups
    if not valid:
        raise PermanentError(f"{catalog.database} has no valid backup in {catalog.url}; "
                             f"run {catalog.database}.backup_full first")
    target_lsn: Lsn | None = None
    if target.kind == "name":
        matches = [p for p in points if p.name == target.name]
        if not matches:
            recent = ", ".join(p.name for p in points[-5:]) or "(none)"
            raise PermanentError(f"no restore point named {target.name!r} in {catalog.url}; recent ones: {recent}")
        target_lsn = matches[0].lsn
    elif target.kind == "lsn":
        target_lsn = target.lsn

    if backup_id is not None:
        try:
            chosen = catalog.backup(backup_id)
        except KeyError as exc:
            raise PermanentError(str(exc.args[0])) from exc
        if not chosen.valid:
            raise PermanentError(f"backup {backup_id} is not valid: {'; '.join(chosen.problems)}")
        return chosen, target_lsn

    oldest = valid[0]
    if target_lsn is not None:
        candidates = [b for b in valid if b.stop_lsn <= target_lsn]
        if not candidates:
            raise PermanentError(
                f"target {target.describe()} ({target_lsn}) is before the oldest backup "
                f"{oldest.id}, consistent from {oldest.stop_lsn}; choose a later target")
        return candidates[-1], target_lsn
    if target.kind == "time" and target.time is not None:
        candidates = [b for b in valid if b.manifest.finished_at <= target.time]
        if not candidates:
            raise PermanentError(
                f"target {target.describe()} is before the oldest backup {oldest.id}, which finished at "
                f"{oldest.manifest.finished_at.isoformat()}; choose a later target")
        return candidates[-1], None
    return valid[-1], None


def _check_reachable(catalog: Catalog, backup: BackupEntry, target: RecoveryTarget, target_lsn: Lsn | None,
                     points: list[RestorePoint]) -> None:
    """Fail before downloading anything when the WAL cannot reach the target.

    The error names the newest point a restore from ``backup`` does reach: the last position before
    the first gap in the WAL after it, and the newest restore point before that, never one beyond it.
    """
    if target.kind == "immediate":
        return
    end = catalog.wal_end
    chain = catalog.check_chain(start=backup) if end is not None else None
    if chain is not None:
        reachable = describe_reachable(chain.replayable_to, chain.end_timeline, chain.reachable_point)
        replayable = chain.replayable_to
    else:
        reachable = f"there is no WAL in the repository after the backup, which ends at {backup.stop_lsn}"
        replayable = backup.stop_lsn
    needed = target_lsn
    if target.kind == "time" and target.time is not None and points:
        # Recovery to a time stops at the first commit after it; a restore point made after that
        # time follows such a commit (create_restore_point), so the WAL up to it is enough.
        later = [p.lsn for p in points if p.created_at >= target.time]
        if not later:
            raise PermanentError(f"target {target.describe()} is beyond the newest WAL in {catalog.url}: {reachable}")
        needed = min(later)
    if needed is None:
        if chain is not None and not chain.ok:
            raise PermanentError(chain.message)
        return
    if needed < replayable:
        return
    if chain is not None and not chain.ok:
        raise PermanentError(chain.message)
    raise PermanentError(f"target {target.describe()} ({needed}) is beyond the newest WAL in {catalog.url}: "
                         f"{reachable}")


def _unpack_object(repo, key: str, sha256: str | None, dest: Path) -> None:
    """Unpack a (compressed) tar straight from the repository, verifying its SHA-256 on the way.

    No local copy of the compressed object: a restore needs disk for the data directory only. If the
    checksum fails at the end, the restore fails and removes what was unpacked.
    """
    name = key.rsplit("/", 1)[-1]
    dest.mkdir(parents=True, exist_ok=True)
    with (repo.open_verified(key, expected_sha256=sha256) as raw,
          compress.decompressed_from(raw, Path(name).suffix, name) as stream,
          tarfile.open(fileobj=stream, mode="r|") as archive):
        # "tar" filter: keeps modes and symlinks a data directory needs, refuses absolute/escaping paths.
        archive.extractall(dest, filter="tar")


def _remap_tablespaces(datadir: Path, tablespace_root: Path) -> None:
    """Tablespaces land beside the data directory; tablespace_map is rewritten to point there."""
    mapping = datadir / "tablespace_map"
    if not mapping.exists() or not mapping.read_text().strip():
        return
    lines = []
    for line in mapping.read_text().splitlines():
        oid, _, _old = line.partition(" ")
        lines.append(f"{oid} {tablespace_root / oid}")
    mapping.write_text("\n".join(lines) + "\n")


def fetch_wal(repo, catalog: Catalog, backup: BackupEntry, end_lsn: Lsn | None, dest: Path, log: Log) -> int:
    """Download, verify and decompress the segments and history files recovery will need."""
    dest.mkdir(parents=True, exist_ok=True)
    by_name = {w.name: w for w in catalog.wal}
    end = catalog.wal_end
    if end is None:
        return 0
    end_timeline = end.timeline
    history = catalog.history.get(end_timeline, [])
    stop = end_lsn if end_lsn is not None else end.lsn
    wanted = segments_on_timeline(end_timeline, history, backup.start_lsn, max(stop, backup.start_lsn),
                                  catalog.segment_size) if stop > backup.start_lsn else []
    names = [n for n in by_name if n.endswith(".history")] + [n for n in wanted if n in by_name]
    def fetch(name: str) -> None:
        key = by_name[name].key
        with (repo.open_verified(key) as raw,
              compress.decompressed_from(raw, Path(key).suffix if key.endswith((".zst", ".gz")) else "", name)
              as stream, open(dest / name, "wb") as out):
            shutil.copyfileobj(stream, out, 1 << 20)

    with ThreadPoolExecutor(max_workers=WAL_FETCH_WORKERS, thread_name_prefix="pgwarden-walfetch") as pool:
        list(pool.map(fetch, names))  # list(): re-raise the first failure
    log(f"fetched {len(names)} WAL file(s) into {dest}")
    return len(names)


def recovery_tuning(database_size: int) -> dict[str, str]:
    """Command-line settings that make replay fast; they last until the restored server's next restart.

    initdb-sized buffers (128 MB) and max_wal_size (1 GB) make recovery flush and checkpoint
    constantly; measured in bench/ (scenario restore), larger ones cut start-plus-replay by a third.
    """
    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    buffers = max(128 * 2**20, min(2**30, ram // 4, database_size))
    return {"shared_buffers": f"{buffers // 2**20}MB", "max_wal_size": "8GB", "checkpoint_timeout": "1h"}


@dataclass(frozen=True)
class RestorePlan:
    """What a restore would do, decided before anything is downloaded (shown at approval gates)."""

    catalog: Catalog
    backup: BackupEntry
    target: RecoveryTarget
    target_lsn: Lsn | None
    points: list[RestorePoint]

    def summary(self) -> dict[str, object]:
        end = self.catalog.wal_end
        return {
            "database": self.catalog.database,
            "repository": self.catalog.url,
            "backup_id": self.backup.id,
            "backup_started_at": self.backup.started_at.isoformat(),
            "backup_consistent_at_lsn": self.backup.manifest.stop_lsn,
            "backup_stored_bytes": self.backup.stored_bytes,
            "database_size_bytes": self.backup.manifest.database_size_bytes,
            "target": self.target.describe(),
            "target_lsn": str(self.target_lsn) if self.target_lsn else None,
            "newest_wal_lsn": str(end.lsn) if end else None,
            "newest_restore_point": self.points[-1].name if self.points else None,
        }


def plan_restore(repo, database: str, target: RecoveryTarget, *, backup_id: str | None = None,
                 catalog: Catalog | None = None) -> RestorePlan:
    """Choose the backup and check the WAL reaches the target; raise saying why not."""
    catalog = catalog or read_catalog(repo, database)
    points = list(catalog.restore_points)
    backup, target_lsn = choose_backup(catalog, target, points, backup_id)
    _check_reachable(catalog, backup, target, target_lsn, points)
    return RestorePlan(catalog, backup, target, target_lsn, points)


def restore(
    repo,
    database: str,
    dest: Path,
    target: RecoveryTarget,
    *,
    backup_id: str | None = None,
    port: int | None = None,
    start: bool = False,
    action: Action = "promote",
    log: Log = print,
    catalog: Catalog | None = None,
) -> RestoreResult:
    dest = Path(dest).resolve()
    marker = in_progress_marker(dest)
    if marker.exists():
        # Our own unfinished restore (the task was killed): converge by starting over.
        log(f"removing an unfinished restore in {dest} left by a killed run")
        remove_restore(dest)
    if dest.exists() and any(dest.iterdir()):
        raise PermanentError(f"destination {dest} is not empty; restore into a new or empty directory")
    if start and port is not None and port_in_use(port):
        raise PermanentError(f"port {port} is busy; pass a free --port")
    steps: dict[str, float] = {}
    clock = time.monotonic()

    def lap(step: str) -> None:
        nonlocal clock
        now = time.monotonic()
        steps[step] = round(now - clock, 3)
        clock = now

    plan = plan_restore(repo, database, target, backup_id=backup_id, catalog=catalog)
    catalog, backup, target_lsn = plan.catalog, plan.backup, plan.target_lsn
    log(f"restoring {database} backup {backup.id} (LSN {backup.manifest.start_lsn} -> "
        f"{backup.manifest.stop_lsn}) to {target.describe()} into {dest}")
    lap("plan")

    # Whatever fails from here on (disk full, a corrupt object, recovery stopping short), nothing
    # half-restored is left behind: the error says what happened, the directories are removed.
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()  # removed once the restore is complete; see above
        dest.mkdir(parents=True, exist_ok=True)
        wal_dir = dest.parent / f"{dest.name}.wal"
        shutil.rmtree(wal_dir, ignore_errors=True)
        # WAL is fetched while the base backup streams in: neither waits for the other.
        background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgwarden-restore")
        wal_fetch = (background.submit(fetch_wal, repo, catalog, backup, target_lsn, wal_dir, log)
                     if target.kind != "immediate" else None)
        try:
            prefix = layout.backup_prefix(database, backup.id)
            tablespaces = dest.parent / f"{dest.name}.tablespaces"
            for stored in backup.manifest.files:
                key = prefix + stored.name
                if stored.role == "base":
                    _unpack_object(repo, key, stored.sha256, dest)
                elif stored.role == "wal":
                    _unpack_object(repo, key, stored.sha256, dest / "pg_wal")
                elif stored.role == "tablespace":
                    _unpack_object(repo, key, stored.sha256, tablespaces / stored.name.split(".")[0])
                elif stored.role == "backup_manifest":
                    (dest / "backup_manifest").write_bytes(repo.get_bytes(key, expected_sha256=stored.sha256))
                # the logical dump ("dump") is not needed for a physical restore
            _remap_tablespaces(dest, tablespaces)
            lap("fetch_and_unpack")
            segments = wal_fetch.result() if wal_fetch is not None else 0
            wal_dir.mkdir(exist_ok=True)
            lap("fetch_wal")  # only the part not hidden behind the base backup's unpacking
        finally:
            background.shutdown(wait=True)

        settings = recovery_settings(target, f"cp '{wal_dir}/%f' '%p'", action)
        with open(dest / "postgresql.auto.conf", "a") as conf:
            conf.write(render_auto_conf(settings))
        (dest / "recovery.signal").touch()
        pgtools.give_to_server_user(dest)
        pgtools.give_to_server_user(wal_dir)
        if tablespaces.exists():
            pgtools.give_to_server_user(tablespaces)
        os.chmod(dest, 0o700)

        result = RestoreResult(database=database, backup_id=backup.id, target=target.describe(), datadir=str(dest),
                               port=port, wal_segments=segments, steps=steps)
        if start:
            if port is None:
                from pgwarden.engine.cluster import free_port

                port = free_port()
                result.port = port
            cluster = restored_server(dest, port, recovery_tuning(backup.manifest.database_size_bytes))
            cluster.start(timeout=24 * 3600)  # pg_ctl -w waits through recovery until connections are accepted
            wait_for_target(cluster, action)
            lap("replay")
            result.started = True
            _describe_reached(cluster, result)
    except OSError as exc:
        remove_restore(dest)
        need = backup.manifest.database_size_bytes
        raise PermanentError(
            f"restoring into {dest} failed: {exc.strerror or exc}; the partial restore was removed. The data "
            f"directory needs about {need // 2**20} MiB plus the WAL to replay: free space or choose another "
            f"destination") from exc
    except BaseException:
        remove_restore(dest)
        raise
    marker.unlink()
    if result.started:
        log(f"restore of {database} reached LSN {result.reached_lsn} (time {result.reached_time}, timeline "
            f"{result.timeline}); step seconds: {steps}")
    else:  # nothing replayed yet: the server was not started
        log(f"restore of {database} unpacked into {dest}, not started; step seconds: {steps}")
    return result


def restored_server(datadir: Path, port: int, settings: dict[str, str] | None = None) -> LocalCluster:
    """The server pgwarden runs on a restored data directory (see the module's docstring)."""
    return LocalCluster(datadir=datadir, port=port, settings=settings or {}, home=datadir / "pgwarden",
                        private_hba=True)


# What the server answers while it cannot take connections yet; anything else is an answer to act on.
_STARTING = ("the database system is starting up", "not yet accepting connections")


def wait_for_target(cluster: LocalCluster, action: Action, timeout: float = 24 * 3600) -> None:
    """Wait until recovery reached its target: promoted (writable) or paused at it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not cluster.is_running():
            raise _stopped(cluster)
        try:
            with connect(cluster.target()) as conn:
                in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                if not in_recovery and action == "promote":
                    return
                if in_recovery and action == "pause" and conn.execute(
                        "SELECT pg_get_wal_replay_pause_state() = 'paused'").fetchone()[0]:
                    return
        except PgwardenError as exc:
            if not any(words in str(exc) for words in _STARTING):
                if not cluster.is_running():
                    raise _stopped(cluster) from exc
                raise PermanentError(f"cannot query the restored server in {cluster.datadir}: {exc}") from exc
        time.sleep(0.2)
    raise PermanentError(f"recovery did not reach its target within {timeout}s")


def next_steps(result: RestoreResult, action: Action) -> str:
    """What a person does with the restored server next, in commands that work for them as they are."""
    datadir = Path(result.datadir)
    if not result.started:
        start = LocalCluster(datadir=datadir, port=0).pg_ctl_command("start", "-o", "-p <port>")
        return (f"Start it with: {start}\n(recovery runs to the target, then "
                f"{'pauses' if action == 'pause' else 'promotes'}; WAL is read from {datadir}.wal)")
    server = restored_server(datadir, result.port or 0)
    state = ("It is promoted and writable." if action == "promote" else
             "It is paused at the target (read-only): inspect it, then promote with "
             f"`SELECT pg_wal_replay_resume()` or `{server.pg_ctl_command('promote')}`.")
    return (f"The restored server runs on 127.0.0.1:{result.port} with data in {datadir}. {state}\n"
            "Clients log in as on the source (its pg_hba.conf); pgwarden itself uses the private socket in "
            f"{server.socket_dir}. Log: {server.logfile}.\n"
            f"Stop it with: {server.pg_ctl_command('stop')}\n"
            "Started again with pg_ctl, it runs with its own settings alone; "
            f"{server.home} can then be deleted, and {datadir}.wal once it is promoted.")


def _stopped(cluster: LocalCluster) -> PermanentError:
    return PermanentError("the restored server stopped during recovery (the target was not reached?). "
                          f"Server log, last lines:\n{cluster.log_tail()}")


def _describe_reached(cluster: LocalCluster, result: RestoreResult) -> None:
    with connect(cluster.target()) as conn:
        row = conn.execute(
            "SELECT pg_is_in_recovery(),"
            " coalesce(pg_last_wal_replay_lsn(), pg_current_wal_lsn())::text,"
            " pg_last_xact_replay_timestamp(), (SELECT timeline_id FROM pg_control_checkpoint())"
        ).fetchone()
    result.in_recovery = bool(row[0])
    result.reached_lsn = row[1]
    result.reached_time = row[2].astimezone(timezone.utc).isoformat() if row[2] else None
    result.timeline = int(row[3])


def in_progress_marker(dest: Path) -> Path:
    """Beside the data directory (not in it: the server and pg_verifybackup must not see it)."""
    return dest.parent / f".{dest.name}.pgwarden-restoring"


def remove_restore(dest: Path) -> None:
    """Stop a restored server and remove its data, WAL and tablespace directories."""
    dest = Path(dest)
    pid_file = dest / "postmaster.pid"
    if pid_file.exists():
        try:
            port = int(pid_file.read_text().splitlines()[3])
        except (IndexError, ValueError):
            port = 0
        restored_server(dest, port).remove()
    for path in (dest, dest.parent / f"{dest.name}.wal", dest.parent / f"{dest.name}.tablespaces"):
        shutil.rmtree(path, ignore_errors=True)
    in_progress_marker(dest).unlink(missing_ok=True)


