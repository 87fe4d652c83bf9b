"""``backup_incremental``: seconds per GB of WAL that pgwarden collects and stores, against plain pg_receivewal.

On the server and database of ``bench/datagen.py`` (shared with ``backup_full`` in one run), each
round first writes a few hundred MB of WAL with a shop-like write load (new orders and events,
order status changes, user logins; one transaction per batch), then:

- **pgwarden**: ``collect_wal`` in a fresh Python child, exactly as the ``backup_incremental`` task
  calls it (restore point, ``pg_switch_wal``, ``pg_receivewal --endpos`` without sync into a spool,
  per segment: HEAD in the repository, zstd, store with SHA-256 sidecar and fsync, then advance
  the guard slot) into a ``file://`` repository on the same disk;
- **baseline**: plain ``pg_receivewal -D DIR --slot=HOLD --endpos=END --no-loop`` of exactly the
  range pgwarden collected (HOLD is a copy of pgwarden's slot taken before the collection, so the
  server keeps that WAL and pg_receivewal starts where pgwarden started) into a local directory:
  no compression, no repository, its default per-segment fsync.

Value: pgwarden's process wall time / GB (10^9 bytes) of WAL segments received; the baseline the
same for pg_receivewal. The issue sets no target for this figure; ``ratio ≤ 3×`` is a generous
guard: compressing and storing with checksums and fsync must not cost more than twice the
streaming itself. One untimed warm-up collection first (it drains what earlier scenarios left
behind the slot), then ``min(repeats, 3)`` rounds; medians reported.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from bench.backups import MIB, flush_dirty_pages, run_pgwarden, tool, tool_env
from bench.datagen import EVENTS_INSERT, ORDERS_INSERT, Dataset, shared_dataset
from bench.harness import BenchmarkError, Context, Result, median

ROUNDS = 3
WAL_PER_ROUND = 320 * MIB
TARGET_RATIO = 3.0
HOLD_SLOT = "bench_hold"

# One "minute of shop traffic" per batch, in one transaction.
UPDATE_ORDERS = """
UPDATE orders SET status = CASE WHEN status = 'pending' THEN 'processing'
                                WHEN status = 'processing' THEN 'shipped'
                                WHEN status = 'shipped' THEN 'delivered' ELSE status END,
                  updated_at = now()
 WHERE id BETWEEN %(first)s AND %(first)s + 12000
"""
UPDATE_USERS = "UPDATE users SET last_login_at = now() WHERE id BETWEEN %(first)s AND %(first)s + 6000"


def write_load(ctx: Context, data: Dataset, wal_bytes: int, round_no: int) -> dict[str, Any]:
    """Run batches of the write load until the server has written ``wal_bytes`` of WAL."""
    from pgwarden.engine.postgres import connect

    started = time.monotonic()
    batches = 0
    with connect(data.target()) as conn:
        start_lsn = conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        next_order = int(conn.execute("SELECT max(id) FROM orders").fetchone()[0]) + 1
        next_event = int(conn.execute("SELECT max(id) FROM events").fetchone()[0]) + 1
        users, orders = data.rows["users"], data.rows["orders"]
        conn.execute("SELECT setseed(%s)", (0.7 + round_no / 100,))
        written = 0
        while written < wal_bytes:
            with conn.transaction():
                conn.execute(ORDERS_INSERT, {"first": next_order, "last": next_order + 3999, "users": users})
                conn.execute(EVENTS_INSERT, {"first": next_event, "last": next_event + 15999, "users": users,
                                             "orders": orders})
                conn.execute(UPDATE_ORDERS, {"first": (batches * 104729) % orders})
                conn.execute(UPDATE_USERS, {"first": (batches * 7919) % users})
            next_order += 4000
            next_event += 16000
            batches += 1
            written = int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)",
                                       (start_lsn,)).fetchone()[0])
            if batches % 10 == 0:
                ctx.log(f"write load: {written / MIB:.0f}/{wal_bytes / MIB:.0f} MiB of WAL")
    return {"batches": batches, "wal_bytes": written, "seconds": round(time.monotonic() - started, 1)}


def _slot_sql(data: Dataset, statement: str, *params: Any) -> Any:
    from pgwarden.engine.postgres import connect

    with connect(data.cluster.target("postgres")) as conn:
        return conn.execute(statement, params).fetchone()


def _collect(ctx: Context, data: Dataset, repo_root: Path, slot: str, name: str) -> tuple[Any, dict]:
    workdir = ctx.tempdir("pgwarden-wal-work")
    measurement, report = run_pgwarden(ctx, {
        "mode": "wal", "port": data.cluster.port, "dbname": data.database, "database": data.database,
        "repo_url": f"file://{repo_root}", "workdir": str(workdir), "compression": "auto",
        "slot": slot, "restore_point": name,
    })
    shutil.rmtree(workdir, ignore_errors=True)
    return measurement, report


def _receivewal(ctx: Context, data: Dataset, end_lsn: str) -> dict[str, Any]:
    dest = ctx.tempdir("receivewal")
    argv = [tool("pg_receivewal"), "-D", str(dest), f"--slot={HOLD_SLOT}", f"--endpos={end_lsn}", "--no-loop"]
    measurement = ctx.measure(argv, env=tool_env(ctx, data.cluster.port), tree_rss=True, timeout=3600).check()
    # Both sides stop at the same segment boundary and leave the next segment's ".partial"
    # behind (pgwarden deletes it): compare complete segments only.
    complete = [p for p in dest.iterdir() if not p.name.endswith(".partial")]
    files = sorted(p.name for p in complete)
    result = {"wall_s": measurement.wall_s, "cpu_s": measurement.cpu_s,
              "bytes": sum(p.stat().st_size for p in complete),
              "segments": len(files), "first": files[0] if files else None, "last": files[-1] if files else None,
              "tree_rss_bytes": measurement.peak_tree_rss_bytes}
    shutil.rmtree(dest, ignore_errors=True)
    return result


def run(ctx: Context) -> list[Result]:
    data = shared_dataset(ctx)
    slot = f"pgwarden_{data.database}"
    repo_root = ctx.tempdir("repository")
    if _slot_sql(data, "SELECT count(*) FROM pg_replication_slots WHERE slot_name = %s", slot)[0] == 0:
        ctx.log(f"creating the guard slot {slot} (no full backup ran before in this run)")
        _slot_sql(data, "SELECT pg_create_physical_replication_slot(%s, true)", slot)
    _slot_sql(data, "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = %s",
              HOLD_SLOT)

    ctx.log("warm-up collection (untimed): drains WAL left behind the slot by earlier work")
    _collect(ctx, data, repo_root, slot, "bench_warmup")
    flush_dirty_pages()

    rounds = max(1, min(ctx.repeats, ROUNDS))
    ours: list[dict[str, Any]] = []
    base: list[dict[str, Any]] = []
    loads: list[dict[str, Any]] = []
    for i in range(rounds):
        loads.append(write_load(ctx, data, WAL_PER_ROUND, i))
        flush_dirty_pages()
        _slot_sql(data, "SELECT pg_copy_physical_replication_slot(%s, %s)", slot, HOLD_SLOT)
        try:
            measurement, report = _collect(ctx, data, repo_root, slot, f"bench_round_{i + 1}")
            flush_dirty_pages()
            outcome = report["outcome"]
            received = int(outcome["bytes_received"])
            if received < WAL_PER_ROUND // 2 or outcome["segments_uploaded"] == 0:
                raise BenchmarkError(f"pgwarden collected only {received} bytes; the write load wrote "
                                     f"{loads[-1]['wal_bytes']}")
            theirs = _receivewal(ctx, data, outcome["end_lsn"])
            flush_dirty_pages()
        finally:
            _slot_sql(data, "SELECT pg_drop_replication_slot(%s)", HOLD_SLOT)
        if theirs["segments"] != outcome["segments_uploaded"] + outcome["segments_skipped"]:
            raise BenchmarkError(f"not the same range: pg_receivewal got {theirs['segments']} segments "
                                 f"({theirs['first']}..{theirs['last']}), pgwarden {outcome['segments_uploaded']}")
        ours.append({"wall_s": measurement.wall_s, "cpu_s": measurement.cpu_s, "bytes": received,
                     "tree_rss_bytes": measurement.peak_tree_rss_bytes, "report": report})
        base.append(theirs)
        ctx.log(f"round {i + 1}/{rounds}: {received / MIB:.0f} MiB of WAL; pgwarden {measurement.wall_s:.2f} s, "
                f"pg_receivewal {theirs['wall_s']:.2f} s")

    per_gb = median([r["wall_s"] / (r["bytes"] / 1e9) for r in ours])
    base_per_gb = median([r["wall_s"] / (r["bytes"] / 1e9) for r in base])
    phases = {name: round(median([r["report"]["phases"]["seconds"].get(name, 0.0) for r in ours]), 3)
              for name in sorted({n for r in ours for n in r["report"]["phases"]["seconds"]})}
    received = median([r["bytes"] for r in ours])
    uploaded = median([r["report"]["outcome"]["bytes_uploaded"] for r in ours])
    return [
        Result(
            name="backup_incremental.seconds_per_gb", value=per_gb, unit="s/GB",
            baseline_name="plain pg_receivewal of the same range", baseline_value=base_per_gb,
            target=TARGET_RATIO, target_kind="ratio_max",
            description=(
                f"pgwarden's `collect_wal` (restore point, switch, stream, zstd, store with SHA-256 + fsync, "
                f"advance slot) per GB of WAL, {received / MIB:.0f} MiB per round from a shop write load, "
                f"vs plain `pg_receivewal --endpos` of the same range to a local dir; median of {rounds}. "
                f"No target in the issue: ratio ≤ 3× is a generous guard. pgwarden's steps (median s): "
                + ", ".join(f"{k} {v:.2f}" for k, v in phases.items() if v >= 0.05)
                + f", python start-up {median([r['report']['import_s'] for r in ours]):.2f}."
            ),
            extra={
                "dataset": data.summary(),
                "rounds": rounds,
                "warmup_runs": 1,
                "wal_bytes_received_median": received,
                "wal_bytes_stored_median": uploaded,
                "wal_compression_ratio": round(received / uploaded, 2) if uploaded else None,
                "pgwarden_wall_runs_s": [r["wall_s"] for r in ours],
                "pgwarden_bytes_runs": [r["bytes"] for r in ours],
                "baseline_wall_runs_s": [r["wall_s"] for r in base],
                "pgwarden_cpu_s_median": median([r["cpu_s"] for r in ours]),
                "baseline_cpu_s_median": median([r["cpu_s"] for r in base]),
                "pgwarden_phase_s_median": phases,
                "pgwarden_import_s_median": median([r["report"]["import_s"] for r in ours]),
                "pgwarden_peak_tree_rss_mib": round(max(r["tree_rss_bytes"] for r in ours) / MIB, 1),
                "mb_per_s": {"pgwarden": round(1e3 / per_gb, 1), "pg_receivewal": round(1e3 / base_per_gb, 1)},
                "write_load": loads,
                "repository": "file:// directory on the same device as the server's data directory",
            },
        )
    ]
