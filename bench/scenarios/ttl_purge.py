"""``ttl_purge``: purging expired sessions while the application uses the table, against one ``DELETE``.

A sessions table (5M rows × ``PGWARDEN_BENCH_SCALE``, ~400-byte rows: token, user agent, IP, a JSON
payload; secondary indexes on ``token``, ``user_id`` and ``expires_at``; 30 % expired, mostly the
oldest ids) while PostgreSQL's ``pgbench`` runs a custom script at a fixed rate (``-R``): look a live
session up by token, read it by id and touch its ``last_seen``. Three runs on fresh copies of the table:

- **baseline**: the application alone (its p50/p99 latency and errors);
- **pgwarden**: ``purge()`` as the ``<db>.ttl_purge`` task calls it (batches over ranges of the key, 100 ms
  time budget, lock_timeout 2 s, commit per batch);
- **single DELETE**: the brief's ``DELETE FROM sessions WHERE expires_at < cutoff``, one transaction.

Latency is taken from pgbench's per-transaction log for the transactions that ran while the purge
(or the DELETE) ran. WAL per purged row is the WAL written during the purge minus what the
application writes in the same time (its rate measured in the baseline). Partition mode: the same
data in a table range-partitioned by day on ``expires_at``, purged by ``mode: partition_drop``
(detach concurrently + drop), timed and its WAL counted, without load.
"""

from __future__ import annotations

import os
import subprocess
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from bench.backups import tool, tool_env
from bench.datagen import SERVER_SETTINGS
from bench.harness import BenchmarkError, Context, Result

ROWS_PER_SCALE = 5_000_000
EXPIRED_FRACTION = 0.3
RATE = 200  # application transactions per second (pgbench -R)
CLIENTS = 4
NOW = datetime(2026, 11, 30, 19, 0, tzinfo=timezone.utc)

TABLE = """
DROP TABLE IF EXISTS {name} CASCADE;
CREATE TABLE {name} (
    id bigint {pk},
    user_id bigint NOT NULL,
    token text NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    last_seen timestamptz,
    ip inet,
    user_agent text,
    data jsonb
){partition};
"""
FILL = """
INSERT INTO {name}
SELECT g, (g * 7919) %% %(users)s + 1, md5(g::text),
       %(now)s::timestamptz - interval '20 days' + g * %(step)s,
       CASE WHEN g <= %(expired)s THEN %(now)s::timestamptz - interval '1 day' * (1 + (g %% 9)) / 10
                                        - interval '1 hour' * ((%(expired)s - g) * 200 / %(expired)s)
            ELSE %(now)s::timestamptz + interval '1 day' + g * interval '1 millisecond' END,
       %(now)s, ('10.' || (g %% 250) || '.' || (g %% 200) || '.1')::inet,
       'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 #' || g %% 97,
       jsonb_build_object('cart', jsonb_build_array(g %% 13, g %% 17, g %% 19), 'locale', 'en-GB',
                          'csrf', md5((-g)::text), 'flags', jsonb_build_object('beta', g %% 2 = 0))
FROM generate_series(%(first)s::bigint, %(last)s::bigint) g
"""
INDEXES = """
CREATE INDEX ON {name} (token);
CREATE INDEX ON {name} (user_id);
CREATE INDEX ON {name} (expires_at);
VACUUM ANALYZE {name};
"""
APP_SCRIPT = """
\\set sid random(:lo, :hi)
SELECT user_id, expires_at FROM sessions WHERE token = md5(:sid::text);
SELECT data FROM sessions WHERE id = :sid;
UPDATE sessions SET last_seen = now() WHERE id = :sid;
"""


def _connect(port: int):
    from pgwarden.engine.postgres import PgTarget, connect

    return connect(PgTarget(host="127.0.0.1", port=port, dbname="postgres"))


def build(ctx: Context, port: int, rows: int, partitioned: bool = False) -> None:
    name = "sessions"
    expired = int(rows * EXPIRED_FRACTION)
    with _connect(port) as conn:
        conn.execute(TABLE.format(name=name, pk="" if partitioned else "PRIMARY KEY",
                                  partition=" PARTITION BY RANGE (expires_at)" if partitioned else ""))
        if partitioned:
            day = NOW.replace(hour=0) - timedelta(days=10)
            while day < NOW + timedelta(days=40):
                part = f"sessions_{day:%Y%m%d}"  # built from a date: digits only
                conn.execute(f"CREATE TABLE {part} PARTITION OF sessions FOR VALUES FROM ('{day.isoformat()}') "
                             f"TO ('{(day + timedelta(days=1)).isoformat()}')")
                day += timedelta(days=1)
        step = timedelta(days=20) / rows
        for first in range(1, rows + 1, 250_000):
            conn.execute(FILL.format(name=name), {"users": max(1, rows // 10), "now": NOW, "step": step,
                                                  "expired": expired, "first": first,
                                                  "last": min(rows, first + 249_999)})
        if partitioned:
            conn.execute("ALTER TABLE sessions ADD PRIMARY KEY (id, expires_at)")
        for statement in INDEXES.format(name=name).strip().split(";\n"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("CHECKPOINT")
    ctx.log(f"{'partitioned ' if partitioned else ''}sessions: {rows} rows, {expired} expired")


def wal_lsn(port: int) -> str:
    with _connect(port) as conn:
        return str(conn.execute("SELECT pg_current_wal_lsn()").fetchone()[0])


def wal_since(port: int, start: str) -> int:
    with _connect(port) as conn:
        return int(conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (start,)).fetchone()[0])


def with_load(ctx: Context, port: int, rows: int, seconds: int, action) -> dict[str, Any]:
    """Run pgbench for ``seconds`` at ``RATE``; ``action()`` runs 3 s in. Latencies of the action's window."""
    workdir = ctx.tempdir("pgbench")
    script = workdir / "app.sql"
    script.write_text(APP_SCRIPT)
    expired = int(rows * EXPIRED_FRACTION)
    argv = [tool("pgbench"), "-n", "-f", str(script), "-c", str(CLIENTS), "-j", "2", "-R", str(RATE),
            "-T", str(seconds), "-l", "--log-prefix", str(workdir / "tx"), "-D", f"lo={expired + 1}",
            "-D", f"hi={rows}", "postgres"]
    bench = subprocess.Popen(argv, env=tool_env(ctx, port), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True)
    window: dict[str, Any] = {}
    try:
        time.sleep(3)
        if action is not None:
            wal_start = wal_lsn(port)
            window["start"] = time.time()
            window["outcome"] = action()
            window["end"] = time.time()
            window["wal_bytes"] = wal_since(port, wal_start)
        output, _ = bench.communicate(timeout=seconds + 120)
    finally:
        if bench.poll() is None:
            bench.kill()
            bench.wait()
    if bench.returncode != 0:
        raise BenchmarkError(f"pgbench failed:\n{output[-3000:]}")
    latencies, stamps = [], []
    for log in workdir.glob("tx*"):
        for line in log.read_text().splitlines():
            fields = line.split()
            # client_id transaction_no time script_no time_epoch time_us [schedule_lag]
            stamps.append(int(fields[4]) + int(fields[5]) / 1e6)
            latencies.append(int(fields[2]) / 1000)
    if "start" in window:
        lo, hi = window["start"], max(window["end"], window["start"] + 1)
        if stamps and window["end"] > max(stamps):
            raise BenchmarkError(f"the measured action outlasted the {seconds} s of load; raise the duration")
    else:
        lo, hi = min(stamps) + 3, max(stamps)
    inside = sorted(lat for lat, at in zip(latencies, stamps, strict=True) if lo <= at <= hi)
    failed = 0
    for line in output.splitlines():
        if line.startswith("number of failed transactions:"):
            failed = int(line.split(":")[1].split()[0])
    if not inside:
        raise BenchmarkError("no application transaction ran in the measured window")
    return {"p50_ms": inside[len(inside) // 2], "p99_ms": inside[min(len(inside) - 1, int(len(inside) * 0.99))],
            "transactions": len(inside), "failed": failed, "window_s": round(hi - lo, 2), **window}


def run(ctx: Context) -> list[Result]:
    from pgwarden.core.lifecycle.config import PolicyConfig
    from pgwarden.engine.lifecycle.purge import purge
    from pgwarden.engine.postgres import PgTarget

    scale = float(os.environ.get("PGWARDEN_BENCH_SCALE", "1.0"))
    rows = int(ROWS_PER_SCALE * scale)
    expired = int(rows * EXPIRED_FRACTION)
    policy = PolicyConfig.model_validate({"name": "sessions", "table": "public.sessions",
                                          "expire": {"column": "expires_at"}, "vacuum_after": None,
                                          "batch": {"max_run_time": "2h"}})
    with ctx.postgres(settings=SERVER_SETTINGS) as cluster:
        port = cluster.port
        target = PgTarget(host="127.0.0.1", port=port, dbname="postgres")

        build(ctx, port, rows)
        wal_start = wal_lsn(port)
        baseline = with_load(ctx, port, rows, 20, None)
        app_wal_per_s = wal_since(port, wal_start) / 20
        ctx.log(f"baseline: p50 {baseline['p50_ms']:.2f} ms, p99 {baseline['p99_ms']:.2f} ms")

        # Long enough for the purge at a fraction of the rate it reaches on a quiet machine; with_load
        # refuses a run whose purge outlasted the load, so a slower machine fails loudly, not silently.
        duration = max(40, int(expired / 20_000) + 30)
        ours = with_load(ctx, port, rows, duration, lambda: purge(target, policy, NOW, log=lambda _: None))
        summary = ours["outcome"]
        if int(summary["rows"]) != expired:
            raise BenchmarkError(f"pgwarden purged {summary['rows']} rows, not the {expired} expired")
        ctx.log(f"pgwarden: {summary['rows']} rows in {ours['end'] - ours['start']:.1f} s, max batch "
                f"{summary['batch_ms_max']} ms, app p99 {ours['p99_ms']:.2f} ms")

        build(ctx, port, rows)

        def single_delete() -> int:
            with _connect(port) as conn:
                return conn.execute("DELETE FROM sessions WHERE expires_at < %s", (NOW,)).rowcount

        theirs = with_load(ctx, port, rows, duration, single_delete)
        if theirs["outcome"] != expired:
            raise BenchmarkError(f"the single DELETE removed {theirs['outcome']} rows, not {expired}")
        ctx.log(f"single DELETE: {expired} rows in {theirs['end'] - theirs['start']:.1f} s, "
                f"app p99 {theirs['p99_ms']:.2f} ms")

        build(ctx, port, rows, partitioned=True)
        part_policy = policy.model_copy(update={"mode": "partition_drop"})
        from pgwarden.engine.lifecycle.partitions import drop_detached_partitions

        start, wal0 = time.monotonic(), wal_lsn(port)
        part_summary = purge(target, part_policy, NOW, log=lambda _: None)
        with _connect(port) as conn:
            dropped = drop_detached_partitions(conn, part_policy, log=lambda _: None)
        part_s, part_wal = time.monotonic() - start, wal_since(port, wal0)

    def rate(run: dict[str, Any]) -> float:
        return expired / (run["end"] - run["start"])

    def wal_per_row(run: dict[str, Any]) -> float:
        return max(0.0, run["wal_bytes"] - app_wal_per_s * (run["end"] - run["start"])) / expired

    common = {"rows": rows, "expired": expired, "scale": scale, "rate_tps": RATE, "clients": CLIENTS,
              "baseline": {k: v for k, v in baseline.items() if k != "outcome"}}
    ours_extra = {**common, "pgwarden_summary": summary, "app_during_pgwarden": {k: v for k, v in ours.items()
                                                                                if k != "outcome"},
                  "app_during_single_delete": {k: v for k, v in theirs.items() if k != "outcome"}}
    return [
        Result(name="ttl_purge.app_p99_during_purge", value=ours["p99_ms"], unit="ms",
               baseline_name="application p99 without a purge", baseline_value=baseline["p99_ms"],
               target=1.5, target_kind="ratio_max",
               description=(f"pgbench at {RATE} tx/s (token lookup, read, touch of live sessions) while pgwarden "
                            f"purges {expired} expired of {rows} sessions; p99 of the transactions during the "
                            f"purge vs the same load alone. Single DELETE under the same load: p99 "
                            f"{theirs['p99_ms']:.1f} ms. Application errors: {ours['failed']} (pgwarden), "
                            f"{theirs['failed']} (single DELETE)."),
               extra=ours_extra),
        Result(name="ttl_purge.app_errors", value=float(ours["failed"]), unit="errors", target=0,
               target_kind="value_max", description="failed application transactions during pgwarden's purge",
               extra={"single_delete_failed": theirs["failed"]}),
        Result(name="ttl_purge.max_batch_ms", value=float(summary["batch_ms_max"]), unit="ms", target=100,
               target_kind="value_max",
               description=(f"longest batch transaction of pgwarden's purge (p50 {summary['batch_ms_p50']} ms, "
                            f"p99 {summary['batch_ms_p99']} ms, {summary['batches']} batches); the single DELETE "
                            f"held its locks for {theirs['end'] - theirs['start']:.2f} s"),
               extra={"single_delete_s": theirs["end"] - theirs["start"]}),
        Result(name="ttl_purge.rows_per_s", value=rate(ours), unit="rows/s",
               baseline_name="single DELETE under the same load", baseline_value=rate(theirs),
               target=0.5, target_kind="ratio_min",
               description="purge throughput under load; target: at least 0.5x the single DELETE's"),
        Result(name="ttl_purge.wal_bytes_per_row", value=wal_per_row(ours), unit="B/row",
               baseline_name="single DELETE", baseline_value=wal_per_row(theirs),
               description=("WAL written per purged row (application's WAL rate from the baseline subtracted); "
                            f"partition mode on a day-partitioned copy: {part_wal / expired:.2f} B/row, "
                            f"{part_s:.2f} s for {len(dropped)} partitions (detach concurrently + drop), plus "
                            f"{part_summary['rows']} rows of the straddling partition deleted in batches"),
               extra={"partition_drop": {"seconds": round(part_s, 3), "wal_bytes": part_wal,
                                         "partitions_dropped": len(dropped),
                                         "straddling_rows_deleted": part_summary["rows"]},
                      "app_wal_bytes_per_s": app_wal_per_s}),
    ]
