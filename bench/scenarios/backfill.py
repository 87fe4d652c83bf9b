"""``backfill``: a ``rename_column`` (expand -> backfill -> contract) while the application writes, against
the brief's naive path.

An ``accounts`` table (2M rows x ``PGWARDEN_BENCH_SCALE``, primary key, ~120-byte rows). The application is
pgbench at a fixed rate (``-R``): read an account by id and update its e-mail and balance. Runs on fresh
copies of the table:

- **baseline**: the application alone (one client group through the old column name);
- **pgwarden**: group "old" writes ``email`` from the start; ``expand`` adds ``email_address`` with the
  dual-write trigger; group "new" starts writing ``email_address``; the ``backfill`` runs (measured
  window); group "old" ends (its version retired), ``contract`` renames; group "new" keeps going;
- **naive**: ``ALTER TABLE ADD COLUMN``; one ``UPDATE`` of every row (measured window);
  ``ALTER TABLE DROP COLUMN`` once the application stopped. Writes made to ``email`` during the UPDATE
  are not copied (no dual write): counted as rows left inconsistent.

Application p50/p99 inside the window vs the baseline, errors (failed or aborted pgbench clients),
backfill rows/s, and for pgwarden the final consistency (0 rows where the columns differ).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from bench import app_load
from bench.datagen import SERVER_SETTINGS
from bench.harness import BenchmarkError, Context, Result

ROWS_PER_SCALE = 2_000_000
RATE = 200  # application transactions per second in total
CLIENTS = 4

TABLE = """
DROP SCHEMA IF EXISTS pgwarden CASCADE;
DROP TABLE IF EXISTS accounts;
CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL, balance bigint NOT NULL DEFAULT 0,
                       created_at timestamptz NOT NULL DEFAULT '2026-01-01', note text);
"""
FILL = """
INSERT INTO accounts (id, email, balance, note)
SELECT g, 'user' || g || '@example.org', g %% 1000, repeat('x', 40) FROM generate_series(%s::bigint, %s::bigint) g
"""
SCRIPT = """
\\set id random(1, :rows)
SELECT {column}, balance FROM accounts WHERE id = :id;
UPDATE accounts SET {column} = 'u' || :id || '-' || :client_id || '@example.org', balance = balance + 1 WHERE id = :id;
"""
MIGRATION = "operations:\n  - rename_column: {table: public.accounts, from: email, to: email_address}\n"


def _connect(port: int):
    from pgwarden.engine.postgres import PgTarget, connect

    return connect(PgTarget(host="127.0.0.1", port=port, dbname="postgres"))


def build(ctx: Context, port: int, rows: int) -> None:
    with _connect(port) as conn:
        conn.execute(TABLE)
        for first in range(1, rows + 1, 250_000):
            conn.execute(FILL, (first, min(rows, first + 249_999)))
        conn.execute("VACUUM ANALYZE accounts")
        conn.execute("CHECKPOINT")
    ctx.log(f"accounts: {rows} rows")


def run(ctx: Context) -> list[Result]:
    from pgwarden.engine.migrations import expand_contract as ec
    from pgwarden.engine.postgres import PgTarget

    scale = float(os.environ.get("PGWARDEN_BENCH_SCALE", "1.0"))
    rows = int(ROWS_PER_SCALE * scale)
    defines = {"rows": rows}
    old_script, new_script = SCRIPT.format(column="email"), SCRIPT.format(column="email_address")
    # Long enough for expand + backfill at >= 30k rows/s; if the backfill is slower the old group simply
    # ends earlier and the window holds the new group's transactions only.
    old_seconds = 8 + max(20, rows // 30_000)
    path = Path(ctx.tempdir("migration")) / "001_rename_email.yaml"
    path.write_text(MIGRATION)
    with ctx.postgres(settings=SERVER_SETTINGS) as cluster:
        port = cluster.port
        target = PgTarget(host="127.0.0.1", port=port, dbname="postgres")

        build(ctx, port, rows)
        base = app_load.finish(app_load.start(ctx, port, "baseline", old_script, rate=RATE, clients=CLIENTS,
                                              seconds=20, defines=defines), timeout=200)
        stamps = [at for at, _ in base.samples]
        baseline = app_load.window([base], min(stamps) + 3, max(stamps))
        ctx.log(f"baseline: p50 {baseline['p50_ms']:.2f} ms, p99 {baseline['p99_ms']:.2f} ms, "
                f"errors {baseline['errors']}")

        # pgwarden: both versions side by side, the old one retired before contract.
        old = app_load.start(ctx, port, "old", old_script, rate=RATE // 2, clients=CLIENTS // 2,
                             seconds=old_seconds, defines=defines)
        time.sleep(3)
        t0 = time.time()
        ec.expand(target, path, log=ctx.log)
        expand_s = time.time() - t0
        new = app_load.start(ctx, port, "new", new_script, rate=RATE // 2, clients=CLIENTS // 2,
                             seconds=old_seconds + 15, defines=defines)
        time.sleep(2)
        from pgwarden.engine.migrations.backfill import BackfillSettings

        start = time.time()
        outcome = ec.backfill(target, path, settings=BackfillSettings(), log=ctx.log).backfills[0]
        end = time.time()
        app_load.finish(old, timeout=old_seconds + 300)
        t1 = time.time()
        ec.contract(target, path, log=ctx.log)
        contract_s = time.time() - t1
        app_load.finish(new, timeout=old_seconds + 300)
        ours = app_load.window([old, new], start, max(end, start + 1))
        whole = app_load.window([old, new], min(at for at, _ in old.samples), max(at for at, _ in new.samples))
        if not outcome.finished or outcome.inconsistent_rows:
            raise BenchmarkError(f"pgwarden's backfill did not converge: {outcome.summary()}")
        ours_rate = outcome.rows_walked / (end - start)
        ctx.log(f"pgwarden: {outcome.rows_walked} rows walked, {outcome.rows_updated} updated in {end - start:.1f} s "
                f"({ours_rate:.0f} rows/s); app p99 {ours['p99_ms']:.2f} ms, errors {whole['errors']}")

        # Naive path on a fresh copy.
        build(ctx, port, rows)
        app = app_load.start(ctx, port, "naive", old_script, rate=RATE, clients=CLIENTS, seconds=old_seconds,
                             defines=defines)
        time.sleep(3)
        with _connect(port) as conn:
            conn.execute("ALTER TABLE accounts ADD COLUMN email_address text")
            naive_start = time.time()
            conn.execute("UPDATE accounts SET email_address = email")
            naive_end = time.time()
        app_load.finish(app, timeout=old_seconds + 600)
        with _connect(port) as conn:
            stale = conn.execute("SELECT count(*) FROM accounts WHERE email_address IS DISTINCT FROM email"
                                 ).fetchone()[0]
            conn.execute("ALTER TABLE accounts DROP COLUMN email")
        theirs = app_load.window([app], naive_start, max(naive_end, naive_start + 1))
        theirs_rate = rows / (naive_end - naive_start)
        ctx.log(f"naive: {rows} rows in {naive_end - naive_start:.1f} s ({theirs_rate:.0f} rows/s); app p99 "
                f"{theirs['p99_ms']:.2f} ms, {stale} rows left inconsistent")

    load = os.getloadavg()
    common = {"rows": rows, "scale": scale, "rate_tps": RATE, "clients": CLIENTS,
              "load_avg_1_5_15": [round(x, 2) for x in load], "baseline": baseline,
              "pgwarden": {"window": ours, "whole_run": whole, "expand_s": round(expand_s, 3),
                           "contract_s": round(contract_s, 3), "backfill": outcome.to_json_dict()},
              "naive": {"window": theirs, "update_s": round(naive_end - naive_start, 2),
                        "rows_left_inconsistent": stale}}
    return [
        Result(name="backfill.app_p99_during_backfill", value=ours["p99_ms"], unit="ms",
               baseline_name="application p99 without a migration", baseline_value=baseline["p99_ms"],
               target=1.5, target_kind="ratio_max",
               description=(f"pgbench at {RATE} tx/s (read + update of an account; half through the old column "
                            f"name, half through the new) while pgwarden backfills a rename_column of {rows} rows; "
                            f"p99 during the backfill vs the same load alone. Naive path (one UPDATE of every row) "
                            f"under the same load: p99 {theirs['p99_ms']:.1f} ms, max {theirs['max_ms']:.0f} ms."),
               extra=common),
        Result(name="backfill.app_errors", value=float(whole["errors"]), unit="errors", target=0,
               target_kind="value_max",
               description=("failed or aborted application transactions over the whole pgwarden run (expand, "
                            "backfill, contract) with both application versions writing"),
               extra={"naive_errors": theirs["errors"], "naive_rows_left_inconsistent": stale}),
        Result(name="backfill.rows_per_s", value=ours_rate, unit="rows/s",
               baseline_name="naive single UPDATE under the same load", baseline_value=theirs_rate,
               target=50_000, target_kind="value_min",
               description=(f"rows walked per second by pgwarden's backfill (trigger-driven no-op UPDATE, batches "
                            f"sized to 100 ms, checkpoint per batch). The naive UPDATE leaves "
                            f"{stale} rows whose concurrent writes it never copied."),
               extra={"target_rows_per_s": 50_000, "meets_50k": ours_rate >= 50_000}),
    ]


