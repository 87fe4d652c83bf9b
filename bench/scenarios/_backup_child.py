"""Child process of the backup scenarios: one pgwarden full backup or WAL collection, as a task runs it.

Usage: ``python _backup_child.py REQUEST.json REPORT.json``. REQUEST says what to run
(``{"mode": "full" | "wal", "port": ..., "repo_url": ..., ...}``); REPORT gets what the engine
returned plus how long each step took.

The step timings come from thin wrappers put around the engine's own functions (pg_basebackup,
manifest verification, compression, repository writes, ...) before the run: they only add up
``perf_counter`` deltas and change nothing the engine does, so the timed run is the real code path.
"""

import json
import sys
import time
from contextlib import contextmanager

STARTED = time.perf_counter()


class Phases:
    """Seconds and calls per named step, from wrappers around engine functions.

    A wrapper around a name the engine no longer has, or around a function the run never called,
    is an error (``wrap`` raises; ``report`` raises): a breakdown of functions the code stopped
    using would silently report nothing. Pass ``optional=True`` only for a step that depends on the
    request (e.g. row counts asked for or not).
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.wrapped: dict[str, str] = {}
        """phase -> the wrapped function, for phases that must be called"""
        # First start and last end of each step, in seconds from ``origin``: steps the engine runs
        # concurrently (verification beside upload) overlap here instead of adding up.
        self.windows: dict[str, list[float]] = {}
        self.origin = time.perf_counter()

    def _original(self, owner, name: str, phase: str, optional: bool):
        original = getattr(owner, name, None)
        where = f"{getattr(owner, '__name__', type(owner).__name__)}.{name}"
        if original is None:
            raise AttributeError(f"cannot time {phase!r}: {where} does not exist (any more); wrap what the "
                                 f"engine calls now")
        if not optional:
            self.wrapped.setdefault(phase, where)
        return original

    def add(self, phase: str, begin: float, end: float, *, call: bool = True) -> None:
        self.seconds[phase] = self.seconds.get(phase, 0.0) + end - begin
        window = self.windows.setdefault(phase, [begin - self.origin, end - self.origin])
        window[0], window[1] = min(window[0], begin - self.origin), max(window[1], end - self.origin)
        if call:
            self.calls[phase] = self.calls.get(phase, 0) + 1

    def wrap(self, owner, name: str, phase: str, *, optional: bool = False) -> None:
        """Time each call of ``owner.name`` as ``phase``."""
        original = self._original(owner, name, phase, optional)

        def timed(*args, **kwargs):
            begin = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(phase, begin, time.perf_counter())

        setattr(owner, name, timed)

    def wrap_reads(self, owner, name: str, phase_of) -> None:
        """``owner.name`` is a context manager yielding a stream: time the stream's reads.

        ``phase_of(first argument)`` names the phase (e.g. by object key), so one wrapper can tell
        base-backup reads from WAL reads; every phase it names must see a call.
        """
        original = self._original(owner, name, name, optional=True)
        phases = self

        class TimedReader:
            def __init__(self, stream, phase: str) -> None:
                self._stream, self._phase = stream, phase

            def read(self, *args):
                begin = time.perf_counter()
                try:
                    return self._stream.read(*args)
                finally:
                    phases.add(self._phase, begin, time.perf_counter(), call=False)

            def readinto(self, buffer):
                begin = time.perf_counter()
                try:
                    return self._stream.readinto(buffer)
                finally:
                    phases.add(self._phase, begin, time.perf_counter(), call=False)

            def __getattr__(self, attribute):
                return getattr(self._stream, attribute)

        @contextmanager
        def timed(first, *args, **kwargs):
            phase = phase_of(first)
            self.calls[phase] = self.calls.get(phase, 0) + 1
            with original(first, *args, **kwargs) as stream:
                yield TimedReader(stream, phase)

        setattr(owner, name, timed)

    def expect(self, *phases: str) -> None:
        """Phases (of ``wrap_reads``) that the run must go through."""
        for phase in phases:
            self.wrapped.setdefault(phase, phase)

    def report(self) -> dict:
        never = [f"{phase} ({where})" for phase, where in self.wrapped.items() if not self.calls.get(phase)]
        if never:
            raise RuntimeError(f"timed steps the run never went through: {', '.join(never)}; the engine no "
                               f"longer calls them, wrap what it calls now")
        return {"seconds": {k: round(v, 4) for k, v in self.seconds.items()}, "calls": self.calls,
                "windows": {k: [round(a, 3), round(b, 3)] for k, (a, b) in self.windows.items()}}


def open_repo(request: dict):
    from pgwarden.core.config import RepositoryConfig
    from pgwarden.engine.repository import open_repository
    from pgwarden.engine.s3.settings import S3Settings

    config = RepositoryConfig(url=request["repo_url"], conn_id="bench" if request.get("s3") else None,
                              sse="none")
    settings = S3Settings(**request["s3"]) if request.get("s3") else None
    return config, open_repository(config, settings)


def main() -> int:
    request_path, report_path = sys.argv[1], sys.argv[2]
    with open(request_path) as fh:
        request = json.load(fh)
    from pathlib import Path

    from pgwarden.core.config import BackupConfig
    from pgwarden.engine import backup_full, compress, wal
    from pgwarden.engine.postgres import PgTarget

    imported = time.perf_counter()
    phases = Phases()
    target = PgTarget(host="127.0.0.1", port=int(request["port"]), user="postgres", dbname=request["dbname"])
    repo_config, repo = open_repo(request)
    phases.wrap(repo, "put_file", "repository_put_file")
    phases.wrap(repo, "put_bytes", "repository_put_bytes")
    # Per WAL segment, and for a full backup only when pg_basebackup left pg_wal.tar uncompressed (< 16).
    phases.wrap(repo, "head", "repository_head", optional=True)
    phases.wrap(compress, "compress_file", "compress_file", optional=True)
    lines: list[tuple[float, str]] = []

    def log(message: str) -> None:
        lines.append((round(time.perf_counter() - STARTED, 3), message))

    begin = phases.origin = time.perf_counter()
    if request["mode"] == "full":
        for name, phase in (("_server_facts", "server_facts"), ("identify_system", "identify_system"),
                            ("ensure_slot", "ensure_slot"), ("run_basebackup", "pg_basebackup"),
                            ("verify_tar_backup", "verify"), ("read_backup_manifest", "read_manifest"),
                            ("snapshot_row_counts", "row_counts_and_restore_point")):
            phases.wrap(backup_full, name, phase)
        # A plain restore point only when no row counts are asked for (they come with their own).
        phases.wrap(backup_full, "create_restore_point", "restore_point", optional=True)
        backup = BackupConfig(compression=request.get("compression", "auto"),
                              count_rows=request.get("count_rows", []))
        manifest = backup_full.take_full_backup(target, repo, request["database"], backup, repo_config,
                                                workdir=Path(request["workdir"]), log=log)
        outcome = {
            "backup_id": manifest.backup_id,
            "compression": manifest.compression,
            "stored_bytes": manifest.stored_bytes,
            "database_size_bytes": manifest.database_size_bytes,
            "files": {f.name: f.size for f in manifest.files},
            "verification": {"method": manifest.verification.method,
                             "files_checked": manifest.verification.files_checked},
            "start_lsn": manifest.start_lsn,
            "stop_lsn": manifest.stop_lsn,
            "duration_seconds": manifest.duration_seconds,
        }
    elif request["mode"] == "wal":
        for name, phase in (("ensure_slot", "ensure_slot"), ("identify_system", "identify_system"),
                            ("create_restore_point", "restore_point"), ("_switch_and_mark_end", "switch_wal"),
                            ("_receive", "pg_receivewal"), ("advance_slot", "advance_slot")):
            phases.wrap(wal, name, phase)
        method = compress.resolve(request.get("compression", "auto"))
        collection = wal.collect_wal(target, repo, request["database"], slot=request["slot"],
                                     workdir=Path(request["workdir"]), compression=method,
                                     restore_point=request["restore_point"], warn_bytes=2**40, log=log)
        outcome = {"compression": method, **collection.to_json_dict()}
        outcome.pop("segments_uploaded", None)
        outcome["segments_uploaded"] = len(collection.segments_uploaded)
    else:
        print(f"unknown mode {request['mode']!r}", file=sys.stderr)
        return 2
    finished = time.perf_counter()
    report = {
        "outcome": outcome,
        "import_s": round(imported - STARTED, 4),
        "engine_s": round(finished - begin, 4),
        "phases": phases.report(),
        "log": lines,
    }
    with open(report_path, "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
