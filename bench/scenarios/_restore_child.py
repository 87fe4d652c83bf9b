"""Child process of the restore scenario: one pgwarden PITR restore, its first query, then removal.

Usage: ``python _restore_child.py REQUEST.json REPORT.json``. REQUEST names the repository, the
database, the restore point and an empty destination; REPORT gets the ``RestoreResult`` (with the
engine's own step seconds), the seconds from this process's start and from the ``restore()`` call
to the first successful query, finer step timings from thin wrappers around engine functions (the
same ``Phases`` as ``_backup_child.py``: they add up ``perf_counter`` deltas and change nothing),
the restored server's recovery log lines with their offsets, and row counts for the scenario to
check that the right point was reached. Stopping and removing the server (``remove_restore``)
happens after the timed part and is timed separately.
"""

import json
import re
import sys
import time
from datetime import datetime
from pathlib import Path

STARTED = time.perf_counter()

# The server log lines that say where a restored server's start-up time goes.
RECOVERY_LOG = re.compile(
    r"starting PostgreSQL|redo starts at|consistent recovery state|ready to accept read-only|"
    r"recovery stopping|redo done at|selected new timeline|archive recovery complete|"
    r"checkpoint starting|checkpoint complete|ready to accept connections"
)
LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)")
REDO_DONE = re.compile(r"redo done at \S+ system usage: .*elapsed: ([\d.]+) s")


def recovery_log(logfile: Path) -> dict:
    """The restored server's recovery milestones, seconds after its first log line."""
    try:
        text = logfile.read_text(errors="replace")
    except FileNotFoundError:
        return {"lines": [], "redo_elapsed_s": None}
    lines, first, redo_elapsed = [], None, None
    for line in text.splitlines():
        stamp = LOG_TIME.match(line)
        if stamp is None or not RECOVERY_LOG.search(line):
            continue
        when = datetime.strptime(stamp.group(1), "%Y-%m-%d %H:%M:%S.%f")
        first = first or when
        message = line.split("LOG:", 1)[-1].strip()
        lines.append([round((when - first).total_seconds(), 3), message[:240]])
        done = REDO_DONE.search(line)
        if done:
            redo_elapsed = float(done.group(1))
    return {"lines": lines, "redo_elapsed_s": redo_elapsed}


def main() -> int:
    request_path, report_path = sys.argv[1], sys.argv[2]
    with open(request_path) as fh:
        request = json.load(fh)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from psycopg import sql

    from bench.scenarios._backup_child import Phases, open_repo
    from pgwarden.core.recovery import RecoveryTarget
    from pgwarden.engine import pgtools
    from pgwarden.engine import restore as restore_engine
    from pgwarden.engine.cluster import LocalCluster
    from pgwarden.engine.postgres import PgTarget, connect
    from pgwarden.engine.restore import fetch as restore_fetch
    from pgwarden.engine.restore import run as restore_run

    imported = time.perf_counter()
    phases = Phases()
    _, repo = open_repo(request)
    # The base backup streams from the repository through zstd into tar (one pass, no local copy)
    # while WAL is fetched beside it: the reads say how much of each is spent fetching and checking
    # the SHA-256 of objects, the rest of the base's unpack step is decompressing and writing files.
    phases.wrap_reads(repo, "open_verified",
                      lambda key: "fetch_wal_read_from_repository" if "/wal/" in key
                      else "fetch_and_unpack_read_from_repository")
    phases.expect("fetch_and_unpack_read_from_repository", "fetch_wal_read_from_repository")
    phases.wrap(restore_fetch, "unpack_object", "fetch_and_unpack_base_backup")
    phases.wrap(restore_run, "fetch_wal", "fetch_wal_in_background")
    phases.wrap(repo, "get_bytes", "repository_get_bytes")
    phases.wrap(pgtools, "give_to_server_user", "chown_to_server_user")
    phases.wrap(LocalCluster, "start", "pg_ctl_start_until_accepting_connections")
    phases.wrap(restore_run, "wait_for_target", "wait_until_promoted")
    lines: list[tuple[float, str]] = []

    def log(message: str) -> None:
        lines.append((round(time.perf_counter() - STARTED, 3), message))

    dest = Path(request["dest"])
    called = phases.origin = time.perf_counter()
    try:
        result = restore_engine.restore(repo, request["database"], dest,
                                        RecoveryTarget("name", name=request["restore_point"]), start=True, log=log)
        returned = time.perf_counter()
        target = PgTarget(host="127.0.0.1", port=int(result.port), user="postgres", dbname=request["dbname"])
        with connect(target) as conn:
            first_row = conn.execute("SELECT max(id) FROM orders").fetchone()[0]
        queried = time.perf_counter()
        # Untimed: what was restored, for the scenario to compare with the source at the restore point.
        with connect(target) as conn:
            counts = {table: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(table))).fetchone()[0]) for table in request["count_tables"]}
            in_recovery = bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])
        server_log = recovery_log(restore_engine.restored_server(dest, int(result.port)).logfile)
        datadir_bytes = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    finally:
        removing = time.perf_counter()
        restore_engine.remove_restore(dest)
        removed = time.perf_counter()
    report = {
        "result": result.to_json_dict(),
        "import_s": round(imported - STARTED, 4),
        "process_to_first_query_s": round(queried - STARTED, 4),
        "call_to_first_query_s": round(queried - called, 4),
        "call_to_return_s": round(returned - called, 4),
        "first_query_s": round(queried - returned, 4),
        "remove_s": round(removed - removing, 4),
        "first_query_value": first_row,
        "row_counts": counts,
        "in_recovery_after": in_recovery,
        "restored_datadir_bytes": datadir_bytes,
        "server_log": server_log,
        "phases": phases.report(),
        "log": lines,
    }
    with open(report_path, "w") as fh:
        json.dump(report, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
