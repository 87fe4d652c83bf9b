"""``restore``: pgwarden's point-in-time restore to a queryable server vs the brief's ``pg_restore``.

On the server and database of ``bench/datagen.py`` (~1 GB of shop data, shared with the backup
scenarios in one run), once, untimed:

1. a pgwarden full backup into a ``file://`` repository on the same disk, exactly as
   ``backup_full`` takes it (``bench.scenarios.backup_full``'s child run);
2. a few hundred MB of WAL from ``backup_incremental``'s shop write load (new orders and events,
   order status changes, user logins), collected with ``collect_wal``, which ends it with the
   named restore point that every pgwarden run restores to;
3. the brief's artifact at that same point: ``pg_dump -Fc`` of the database (nothing writes to it
   after the restore point: row counts are checked on both sides after every run).

Then ``min(repeats, 3)`` rounds, in rotating order, each contestant in a fresh process:

- **pgwarden**: ``restore(repo, db, dest, RecoveryTarget("name", ...), start=True)`` into a fresh
  directory (``_restore_child.py``): plan, download and SHA-256 check of the base backup, unpack,
  fetch + verify + decompress the WAL, start the server, replay to the restore point, promote; then
  one ``SELECT``. Value: seconds from the child process's start (Python imports included) to that
  query's answer. The server is then stopped and removed (``remove_restore``), untimed.
- **the brief's path**: ``createdb NEW; pg_restore -d NEW DUMP`` (default options, as the brief would
  run it) into a running scratch server with the benchmark server's settings; wall time of the
  script = the database is queryable with every index built. Also ``pg_restore -j 2`` (extra).
  Favouring the brief: its dump is read from local disk, not downloaded and gunzipped first, and
  the data ``pg_restore`` writes is not fsynced before it returns (pgwarden's end-of-recovery
  checkpoint syncs the restored server's data before it accepts writes).

``restore.wall_vs_brief``: median pgwarden seconds / median brief seconds, target ≤ 0.5×.
``restore.wal_replay_rate``: MB (10^6 bytes) of WAL between the backup's stop LSN and the restore
point / the engine's ``replay`` step (configure, start, replay, promote); informational, no target.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from bench.backups import MIB, flush_dirty_pages, tool, tool_env, tree_bytes
from bench.datagen import SERVER_SETTINGS, TABLES, Dataset, shared_dataset
from bench.harness import BenchmarkError, Context, Result, median
from bench.report import load_average
from bench.scenarios.backup_full import _pgwarden as take_full_backup
from bench.scenarios.backup_incremental import _collect as collect_wal
from bench.scenarios.backup_incremental import write_load

CHILD = Path(__file__).with_name("_restore_child.py")
ROUNDS = 3
WAL_TO_REPLAY = 400 * MIB
TARGET_VS_BRIEF = 0.5
RESTORE_POINT = "bench_restore_target"
STEPS = ("plan", "fetch_and_unpack", "fetch_wal", "replay")


def _sql(target: Any, statement: str, *params: Any) -> Any:
    from pgwarden.engine.postgres import connect

    with connect(target) as conn:
        return conn.execute(statement, params).fetchone()


def _row_counts(target: Any) -> dict[str, int]:
    from psycopg import sql

    from pgwarden.engine.postgres import connect

    with connect(target) as conn:
        return {t: int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0])
                for t in TABLES}


def _pgwarden_restore(ctx: Context, repo_root: Path, data: Dataset, base: Path, round_no: int) -> dict[str, Any]:
    folder = ctx.tempdir("restore-child")
    request_path, report_path = folder / "request.json", folder / "report.json"
    request_path.write_text(json.dumps({
        "repo_url": f"file://{repo_root}", "database": data.database, "dbname": data.database,
        "restore_point": RESTORE_POINT, "dest": str(base / f"restore-{round_no}" / "data"),
        "count_tables": list(TABLES),
    }))
    measurement = ctx.measure([ctx.python, str(CHILD), str(request_path), str(report_path)],
                              env=ctx.clean_env(), cwd=ctx.scratch, timeout=3600).check()
    report = json.loads(report_path.read_text())
    return {"wall_s": report["process_to_first_query_s"], "process_wall_s": measurement.wall_s,
            "cpu_s": measurement.cpu_s, "counts": report["row_counts"], "report": report}


def _brief_restore(ctx: Context, scratch: Any, dump: Path, round_no: int, jobs: int | None) -> dict[str, Any]:
    from pgwarden.engine.postgres import connect

    dbname = f"restored_{round_no}_{jobs or 1}"
    env = tool_env(ctx, scratch.port)
    env["PATH"] = f"{Path(tool('pg_restore')).parent}:{env.get('PATH', '')}"
    parallel = f"-j {jobs} " if jobs else ""
    script = f'set -e; createdb {dbname}; pg_restore {parallel}-d {dbname} "{dump}"'
    measurement = ctx.measure(["bash", "-c", script], env=env, timeout=3600).check()
    counts = _row_counts(scratch.target(dbname))
    with connect(scratch.target("postgres")) as conn:
        conn.execute(f"DROP DATABASE {dbname}")  # a name built here from integers, not input
        # Leave no dirty buffers behind for the next contestant's run to pay for.
        conn.execute("CHECKPOINT")
    return {"wall_s": measurement.wall_s, "cpu_s": measurement.cpu_s, "counts": counts}


def _steps(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {s: round(median([r["report"]["result"]["steps"].get(s, 0.0) for r in runs]), 3) for s in STEPS}


def _phases(runs: list[dict[str, Any]]) -> dict[str, float]:
    names = sorted({n for r in runs for n in r["report"]["phases"]["seconds"]})
    return {n: round(median([r["report"]["phases"]["seconds"].get(n, 0.0) for r in runs]), 3) for n in names}


def run(ctx: Context) -> list[Result]:
    from tests.harness.postgres import scratch_base

    data = shared_dataset(ctx)
    source = data.target()
    repo_root = ctx.tempdir("repository")

    ctx.log("setup: pgwarden full backup (as backup_full takes it)")
    backup = take_full_backup(ctx, data.cluster.port, repo_root, data.database)
    backup_outcome = backup["report"]["outcome"]
    database_bytes_at_backup = int(_sql(source, "SELECT pg_database_size(current_database())")[0])
    ctx.log(f"  {backup['wall_s']:.1f} s, {backup_outcome['stored_bytes'] / MIB:.0f} MiB stored, "
            f"LSN {backup_outcome['start_lsn']} -> {backup_outcome['stop_lsn']}")

    ctx.log(f"setup: shop write load, {WAL_TO_REPLAY / MIB:.0f} MiB of WAL (as backup_incremental writes it)")
    load = write_load(ctx, data, WAL_TO_REPLAY, 10)  # its own seed, not a backup_incremental round's
    flush_dirty_pages()
    ctx.log(f"setup: collect_wal up to the restore point {RESTORE_POINT}")
    _, collected = collect_wal(ctx, data, repo_root, f"pgwarden_{data.database}", RESTORE_POINT)
    wal = collected["outcome"]
    target_lsn, stop_lsn, start_lsn = wal["restore_point_lsn"], backup_outcome["stop_lsn"], backup_outcome["start_lsn"]
    replay_bytes = int(_sql(source, "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", target_lsn, stop_lsn)[0])
    redo_bytes = int(_sql(source, "SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)", target_lsn, start_lsn)[0])
    expected = _row_counts(source)
    max_order = int(_sql(source, "SELECT max(id) FROM orders")[0])
    database_bytes_at_target = int(_sql(source, "SELECT pg_database_size(current_database())")[0])
    ctx.log(f"  restore point at {target_lsn}: {replay_bytes / MIB:.0f} MiB of WAL after the backup's end; "
            f"{wal['segments_uploaded']} segments, {wal['bytes_uploaded'] / MIB:.0f} MiB stored")

    ctx.log("setup: the brief's pg_dump -Fc at the same point")
    dump = ctx.tempdir("brief-dump") / f"{data.database}.dump"
    dumped = ctx.measure([tool("pg_dump"), "-d", data.database, "-Fc", "-f", str(dump)],
                         env=tool_env(ctx, data.cluster.port), timeout=3600).check()
    if _row_counts(source) != expected:
        raise BenchmarkError("the database changed between the restore point and pg_dump")
    ctx.log(f"  {dumped.wall_s:.1f} s, {dump.stat().st_size / MIB:.0f} MiB")
    flush_dirty_pages()

    rounds = max(1, min(ctx.repeats, ROUNDS))
    contestants = ["pgwarden", "brief", "brief_j2"]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contestants}
    loads: list[float | None] = []
    base = scratch_base()  # traversable by the unprivileged server user, unlike ctx.scratch
    try:
        with ctx.postgres(SERVER_SETTINGS) as scratch:
            ctx.log(f"scratch server for pg_restore on port {scratch.port}")
            for i in range(rounds):
                order = contestants[i % 3:] + contestants[:i % 3]
                for name in order:
                    loads.append(load_average())
                    if name == "pgwarden":
                        outcome = _pgwarden_restore(ctx, repo_root, data, base, i)
                    else:
                        outcome = _brief_restore(ctx, scratch, dump, i, 2 if name == "brief_j2" else None)
                    flush_dirty_pages()
                    if outcome["counts"] != expected:
                        raise BenchmarkError(f"{name} restored {outcome['counts']}, the source had {expected} "
                                             f"at the restore point")
                    runs[name].append(outcome)
                    ctx.log(f"round {i + 1}/{rounds} {name}: {outcome['wall_s']:.2f} s")
    finally:
        shutil.rmtree(base, ignore_errors=True)

    ours, brief, brief_j2 = runs["pgwarden"], runs["brief"], runs["brief_j2"]
    for run_ in ours:
        if int(run_["report"]["first_query_value"]) != max_order or run_["report"]["in_recovery_after"]:
            raise BenchmarkError(f"pgwarden's restore did not reach the restore point: {run_['report']['result']}")
    wall, brief_wall, brief_j2_wall = (median([r["wall_s"] for r in rs]) for rs in (ours, brief, brief_j2))
    steps, phases = _steps(ours), _phases(ours)
    rates = [replay_bytes / 1e6 / r["report"]["result"]["steps"]["replay"] for r in ours]
    redo_elapsed = [r["report"]["server_log"]["redo_elapsed_s"] for r in ours]
    redo_rates = [redo_bytes / 1e6 / s for s in redo_elapsed if s]
    first_query = median([r["report"]["first_query_s"] for r in ours])
    path = {"python_start_up": median([r["report"]["import_s"] for r in ours]), **steps,
            "first_query": first_query}
    sizes = {
        "database_bytes_at_generation": data.database_bytes,
        "database_bytes_at_backup": database_bytes_at_backup,
        "database_bytes_at_restore_point": database_bytes_at_target,
        "backup_stored_bytes": backup_outcome["stored_bytes"],
        "backup_files": backup_outcome["files"],
        "wal_bytes_backup_stop_to_target": replay_bytes,
        "wal_bytes_backup_start_to_target": redo_bytes,
        "wal_bytes_collected_raw": wal["bytes_received"],
        "wal_bytes_collected_stored": wal["bytes_uploaded"],
        "wal_segments_stored": wal["segments_uploaded"],
        "wal_segments_fetched_by_restore": ours[-1]["report"]["result"]["wal_segments"],
        "repository_bytes": tree_bytes(repo_root),
        "brief_dump_bytes": dump.stat().st_size,
        "restored_datadir_bytes": ours[-1]["report"]["restored_datadir_bytes"],
    }
    common = {
        "dataset": data.summary(),
        "rounds": rounds,
        "order": "rotating per round: pgwarden, brief, brief -j 2",
        "pgwarden_wall_runs_s": [r["wall_s"] for r in ours],
        "pgwarden_call_to_first_query_runs_s": [r["report"]["call_to_first_query_s"] for r in ours],
        "pgwarden_process_wall_with_removal_runs_s": [r["process_wall_s"] for r in ours],
        "pgwarden_remove_s_median": median([r["report"]["remove_s"] for r in ours]),
        "pgwarden_cpu_s_median": median([r["cpu_s"] for r in ours]),
        "brief_wall_runs_s": [r["wall_s"] for r in brief],
        "brief_cpu_s_median": median([r["cpu_s"] for r in brief]),
        "brief_j2_wall_median_s": brief_j2_wall,
        "brief_j2_wall_runs_s": [r["wall_s"] for r in brief_j2],
        "ratio_vs_brief_j2": round(wall / brief_j2_wall, 3),
        "pgwarden_critical_path_s_median": path,
        "pgwarden_steps_s_median": steps,
        "pgwarden_inner_phases_s_median": phases,
        "restored_server_recovery_log_last_run": ours[-1]["report"]["server_log"]["lines"],
        "pgwarden_log_last_run": ours[-1]["report"]["log"],
        "sizes": sizes,
        "setup": {
            "full_backup_wall_s": round(backup["wall_s"], 2),
            "write_load": load,
            "collect_wal_seconds": wal.get("seconds"),
            "pg_dump_wall_s": round(dumped.wall_s, 2),
            "backup_lsn": [start_lsn, stop_lsn],
            "restore_point": RESTORE_POINT,
            "restore_point_lsn": target_lsn,
            "row_counts_at_restore_point": expected,
        },
        "load_avg_1m_before_each_run": loads,
        "scratch_server_settings": SERVER_SETTINGS,
        "restored_server_settings": "the backup's own postgresql.conf (initdb defaults: shared_buffers 128MB, "
                                    "max_wal_size 1GB) plus pgwarden's recovery settings",
        "repository": "file:// directory on the same device as both servers' data directories",
    }
    rate = median(rates)
    described_path = ", ".join(f"{k.replace('_', ' ')} {v:.2f}" for k, v in path.items())
    # fetch_and_unpack streams: reads from the repository and decompress + untar overlap in time.
    described_split = (
        f"Inside fetch and unpack (median s): unpacking the base backup "
        f"{phases['fetch_and_unpack_base_backup']:.2f}, of which reading it from the repository with its "
        f"SHA-256 {phases['fetch_and_unpack_read_from_repository']:.2f} (the rest is zstd and tar writing "
        f"files, overlapping the reads); WAL fetched beside it {phases['fetch_wal_in_background']:.2f}, "
        f"of which reading {phases['fetch_wal_read_from_repository']:.2f}."
    )
    return [
        Result(
            name="restore.wall_vs_brief", value=wall, unit="s",
            baseline_name="brief's createdb + pg_restore of the pg_dump -Fc file", baseline_value=brief_wall,
            target=TARGET_VS_BRIEF, target_kind="ratio_max",
            description=(
                f"PITR of the {database_bytes_at_target / 2**30:.2f} GiB shop database (full backup + "
                f"{replay_bytes / MIB:.0f} MiB of WAL from a shop write load) to a named restore point, from a "
                f"file:// repository, start of the process to the first answered query, vs the brief's "
                f"`createdb; pg_restore -d` of a `pg_dump -Fc` taken at the same point (default options; "
                f"`-j 2`: {brief_j2_wall:.1f} s); median of {rounds}. pgwarden's time (median s): "
                f"{described_path}. {described_split}"
            ),
            extra=common,
        ),
        Result(
            name="restore.wal_replay_rate", value=rate, unit="MB/s",
            description=(
                f"Informational (no target: higher is better, the harness bounds only from above). "
                f"{replay_bytes / 1e6:.0f} MB of WAL from the backup's end to the restore point / the restore's "
                f"`replay` step (write settings, chown, pg_ctl start, replay, promote with end-of-recovery "
                f"checkpoint, {steps['replay']:.2f} s median of {rounds}). The server's own redo loop alone "
                f"('redo done ... elapsed' in its log): "
                + (f"{median(redo_rates):.0f} MB/s." if redo_rates else "not logged.")
            ),
            extra={
                "rate_runs_mb_s": [round(r, 1) for r in rates],
                "server_redo_elapsed_runs_s": redo_elapsed,
                "server_redo_rate_mb_s_median": round(median(redo_rates), 1) if redo_rates else None,
                "server_redo_basis": "WAL bytes from the backup's start LSN (redo start) to the restore point / "
                                     "'redo done ... elapsed' from the restored server's log",
                "wal_bytes_backup_stop_to_target": replay_bytes,
                "pgwarden_inner_phases_s_median": phases,
                "see": "restore.wall_vs_brief extra",
            },
        ),
    ]
