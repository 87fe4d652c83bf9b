"""``dag_parse``: how long Airflow takes to parse ``dags/`` for a fleet of 100 databases, every concern enabled.

Both sides run the same way, each run in a fresh interpreter with a fresh, empty AIRFLOW_HOME:
import ``DagBag`` (timed apart, kept as extra information), then time ``DagBag(dag_folder=...)``.

- measured: the project's real ``dags/`` folder, with ``PGWARDEN_CONFIG`` pointing at a generated
  config of 100 databases ``db000``..``db099``, each with every concern (backups with off-site copy and
  logical dump, drill, PITR, healthcheck, three lifecycle policies one of which archives, GDPR erasure)
  and its own migrations folder (two plain migrations, three gated expand/contract files): 1100 DAGs;
- baseline: a folder holding one trivial DAG file with one ``EmptyOperator``.

One discarded warm-up run each (bytecode caches, disk cache), then ``ctx.repeats`` runs of each,
interleaved so drift on the machine hits both alike; the median is reported. The fill's CPU time is
recorded beside its wall time: on a shared machine the difference is time spent waiting for a core. A run whose bag has
import errors, misses a file of the folder or lacks any DAG the factory builds from the config stops
the scenario: a benchmark that silently times a broken parse would be worthless.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bench.harness import BenchmarkError, Context, Result, median

DATABASES = 100
TARGET_S = 2.0
CHILD = Path(__file__).with_name("_dagbag_child.py")
BASELINE_DAG_ID = "bench_baseline_one_task"

BASELINE_DAG = f'''\
"""The benchmark baseline: one DAG with one task."""

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG

with DAG(dag_id="{BASELINE_DAG_ID}", schedule=None, catchup=False):
    EmptyOperator(task_id="noop")
'''

DATABASE_ENTRY = """\
  {name}:
    conn_id: pgwarden_{name}
    owner: team_{team}
    repository:
      url: s3://pgwarden-bench/{name}
      conn_id: pgwarden_s3
      sse: AES256
    healthcheck:
      schedule: "{minute} * * * *"
      max_pg_wal_size: 4GiB
    backup:
      full_schedule: "{minute} 2 * * *"
      incremental_schedule: "@hourly"
      checkpoint: fast
      compression: auto
      count_rows: [public.users, public.orders]
      logical_dump: {{enabled: true, jobs: 2}}
      retention: {{daily: 30, monthly: 12, yearly: 7}}
      offsite: {{url: s3://pgwarden-bench-offsite/{name}, conn_id: pgwarden_s3_offsite, sse: AES256}}
    verify:
      schedule: "{minute} 4 1 * *"
      old_backup_every: 3
    lifecycle:
      schedule: "@hourly"
      policies:
        - name: expired_sessions
          table: public.sessions
          expire: {{column: expires_at}}
          batch: {{time_budget: 100ms, lock_timeout: 2s}}
        - name: retracted_notes
          table: public.audit_notes
          expire: {{column: deleted_at, after: 90d}}
          soft_delete: {{column: deleted_at, active_view: true}}
        - name: cold_orders
          table: public.orders
          expire: {{column: created_at, after: 730d}}
          mode: archive_then_delete
          children: []
          personal_data: [shipping_address]
          archive: {{storage_class: STANDARD_IA, drop_columns: [shipping_address]}}
      erasure:
        schedule: "@daily"
        subject: {{table: public.users, key: id}}
        erasable: {{soft_deleted: {{column: deleted_at, grace: 30d}}}}
        legal_hold: {{column: legal_hold}}
        hmac_key: {{conn_id: pgwarden_erasure_key}}
        tables:
          - table: public.users
            columns: {{email: redact_email, full_name: {{constant: Deleted User}}, phone: null}}
          - table: public.sessions
            subject_column: user_id
            columns: {{token: delete_row, ip_address: delete_row}}
          - table: public.orders
            subject_column: user_id
            columns: {{shipping_address: null}}
    migrations:
      lock_timeout: 1s
"""

# Each database's migrations folder (the default one, sql/migrations/<database> beside the config): two plain
# migrations for <db>.migrate and GATED expand/contract files, one <db>.migrate.<NNN_name> DAG each.
PLAIN_MIGRATIONS = {
    "001_user_preferences": ("CREATE TABLE user_preferences (user_id bigint PRIMARY KEY, theme text);\n",
                             "DROP TABLE user_preferences;\n"),
    "002_orders_note": ("ALTER TABLE orders ADD COLUMN note text;\n", "ALTER TABLE orders DROP COLUMN note;\n"),
}
GATED_MIGRATIONS = {
    "003_rename_users_email": "operations:\n  - rename_column: {table: public.users, from: email, to: email_address}\n",
    "004_index_orders_status": "operations:\n  - create_index: {table: public.orders, name: orders_status_idx, "
                               "columns: [status, created_at]}\n",
    "005_orders_total_numeric": "rehearse: true\noperations:\n  - change_column_type:\n      table: public.orders\n"
                                "      column: total\n      type: numeric(12, 2)\n      up: total::numeric(12, 2)\n"
                                "      down: total::integer\n",
}
# The DAGs each database must get: the config enables every concern.
CONCERNS = {"healthcheck", "backup_full", "backup_incremental", "verify_restore", "pitr_restore", "ttl_purge",
            "gdpr_erasure", "migrate"} | {f"migrate.{name}" for name in GATED_MIGRATIONS}


def config_text(databases: int = DATABASES) -> str:
    """A pgwarden.yaml with ``databases`` entries db000, db001, ..., every concern enabled."""
    entries = "".join(
        DATABASE_ENTRY.format(name=db_name(i), team=i % 5, minute=i % 60) for i in range(databases)
    )
    return (f"defaults:\n  owner: data-platform\n  retries: 2\n  retry_delay: 2m\n"
            f"  notify: {{webhook: {{http_conn_id: pgwarden_alerts}}}}\n  deadlines: {{backup_full: 4h}}\n\n"
            f"databases:\n{entries}")


def db_name(i: int) -> str:
    return f"db{i:03d}"


def write_migrations(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name, (up, down) in PLAIN_MIGRATIONS.items():
        (folder / f"{name}.sql").write_text(up)
        (folder / f"{name}.down.sql").write_text(down)
    for name, text in GATED_MIGRATIONS.items():
        (folder / f"{name}.yaml").write_text(text)


def check_migrations() -> None:
    """Every gated file must parse: an unreadable one still gets a DAG, but a cheaper one (no plan in its doc)."""
    from pgwarden.core.migrations.spec import SpecError, parse_spec

    for name, text in GATED_MIGRATIONS.items():
        try:
            parse_spec(text, f"{name}.yaml")
        except SpecError as exc:
            raise BenchmarkError(f"a generated migration file does not parse: {exc}") from None


def write_config(directory: Path, databases: int = DATABASES) -> Path:
    """Write the config and every database's migrations folder; check the config is valid in full."""
    from pgwarden.core.config import parse_config

    path = directory / "pgwarden.yaml"
    path.write_text(config_text(databases))
    for i in range(databases):
        write_migrations(directory / "sql" / "migrations" / db_name(i))
    check_migrations()
    config = parse_config(path.read_text(), str(path))
    if config.broken or len(config.databases) != databases:
        raise BenchmarkError(f"generated config is not what the benchmark needs: {config.issues}")
    return path


# Airflow's own cost for the fleet's shape, reported beside the figure (no target): the same DAG ids, task
# counts, DAG params and schedules, built from EmptyOperators in a loop with no config, file or pgwarden code.
# (concern, tasks, params, scheduled); checked against the real bag's totals on every run.
FLOOR_SHAPES = [("healthcheck", 1, 0, True), ("backup_full", 3, 0, True), ("backup_incremental", 3, 0, True),
                ("verify_restore", 3, 2, True), ("pitr_restore", 3, 6, False), ("ttl_purge", 5, 1, True),
                ("gdpr_erasure", 4, 1, True), ("migrate", 4, 1, False)] + [
                   (f"migrate.{name}", 14, 1, False) for name in GATED_MIGRATIONS]

FLOOR_DAGS = f'''\
"""The benchmark's floor: the fleet's DAG shapes with EmptyOperator tasks."""

from datetime import timedelta

from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.sdk import DAG, CronTriggerTimetable, Param

for d in range({DATABASES}):
    for concern, tasks, params, scheduled in {FLOOR_SHAPES!r}:
        schedule = CronTriggerTimetable("0 2 * * *", timezone="UTC", run_immediately=timedelta(0)) if scheduled else None
        with DAG(dag_id=f"db{{d:03d}}.{{concern}}", schedule=schedule, catchup=False, max_active_runs=1,
                 tags=["pgwarden", concern, f"db:db{{d:03d}}"], default_args={{"owner": "team", "retries": 2}},
                 params={{f"p{{i}}": Param(None, type=["null", "string"], description="a param") for i in range(params)}}
                 ) as dag:
            previous = None
            for t in range(tasks):
                task = EmptyOperator(task_id=f"t{{t}}")
                if previous is not None:
                    previous >> task
                previous = task
        globals()[dag.dag_id] = dag
'''


def write_floor(directory: Path) -> Path:
    (directory / "fleet_shape_dags.py").write_text(FLOOR_DAGS)
    return directory


def write_baseline(directory: Path) -> Path:
    (directory / "one_task_dag.py").write_text(BASELINE_DAG)
    return directory


def parse_once(ctx: Context, folder: Path, config: Path, *, pgwarden: bool) -> dict[str, Any]:
    """One DagBag fill of ``folder`` in a fresh child; its report plus the process's cost."""
    report = ctx.tempdir("report") / "dagbag.json"
    argv = [ctx.python, str(CHILD), str(folder), str(report)] + (["--pgwarden"] if pgwarden else [])
    env = ctx.airflow_env(folder, PGWARDEN_CONFIG=str(config))
    # The warm-up run is there to write the bytecode caches a deployed Airflow has (pip compiles on install):
    # a caller's PYTHONDONTWRITEBYTECODE would leave every measured run compiling pgwarden and the providers.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    run = ctx.measure(argv, env=env, cwd=ctx.scratch).check()
    if not report.exists():
        raise BenchmarkError(f"the DagBag child wrote no report:\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")
    result = json.loads(report.read_text())
    result["process_wall_s"] = run.wall_s
    result["peak_rss_bytes"] = run.peak_rss_bytes
    return result


def check_pgwarden_bag(result: dict[str, Any], folder: Path, databases: int) -> None:
    problems = []
    if result["import_errors"]:
        problems.append("import errors:\n" + "\n".join(f"{p}: {e}" for p, e in result["import_errors"].items()))
    missing_files = sorted(str(p) for p in folder.glob("*.py") if str(p) not in result["files"])
    if missing_files:
        problems.append(f"files the DagBag did not parse: {missing_files}")
    if result["broken_databases"] or len(result["databases"]) != databases:
        problems.append(f"config seen by the child: {len(result['databases'])} databases, "
                        f"broken: {result['broken_databases']}")
    missing_dags = sorted(set(result["expected_dag_ids"]) - set(result["dag_ids"]))
    if missing_dags:
        problems.append(f"DAGs the factory builds but the bag lacks: {missing_dags}")
    # Every database gets every concern: a fleet that silently lost a concern would parse faster.
    concerns: dict[str, set[str]] = {}
    for dag_id in result["dag_ids"]:
        database, _, concern = dag_id.partition(".")
        concerns.setdefault(database, set()).add(concern)
    incomplete = {db_name(i): sorted(CONCERNS - concerns.get(db_name(i), set()))
                  for i in range(databases) if concerns.get(db_name(i), set()) != CONCERNS}
    if incomplete:
        problems.append(f"databases without some of their DAGs (missing concerns): {incomplete}")
    if problems:
        raise BenchmarkError("the parse being timed is broken:\n" + "\n".join(problems))


def check_baseline_bag(result: dict[str, Any]) -> None:
    if result["import_errors"] or result["dag_ids"] != [BASELINE_DAG_ID] or result["tasks"] != 1:
        raise BenchmarkError(f"the baseline parse is broken: dags={result['dag_ids']} "
                             f"tasks={result['tasks']} import_errors={result['import_errors']}")


def run(ctx: Context) -> list[Result]:
    load_before = os.getloadavg()
    dags_folder = ctx.root / "dags"
    config = write_config(ctx.tempdir("config"))
    baseline_folder = write_baseline(ctx.tempdir("baseline-dags"))
    floor_folder = write_floor(ctx.tempdir("floor-dags"))

    def measure_once() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
        base = parse_once(ctx, baseline_folder, config, pgwarden=False)
        check_baseline_bag(base)
        ours = parse_once(ctx, dags_folder, config, pgwarden=True)
        check_pgwarden_bag(ours, dags_folder, DATABASES)
        floor = parse_once(ctx, floor_folder, config, pgwarden=False)
        if floor["import_errors"] or (len(floor["dag_ids"]), floor["tasks"]) != (len(ours["dag_ids"]), ours["tasks"]):
            raise BenchmarkError(f"the floor no longer has the fleet's shape: {len(floor['dag_ids'])} DAGs, "
                                 f"{floor['tasks']} tasks vs {len(ours['dag_ids'])}, {ours['tasks']}; "
                                 f"{floor['import_errors']}")
        return ours, base, floor

    ctx.log("warm-up run (discarded)")
    measure_once()
    ours_runs, base_runs, floor_runs = [], [], []
    for i in range(ctx.repeats):
        ours, base, floor = measure_once()
        ctx.log(f"run {i + 1}/{ctx.repeats}: dags/ fill {ours['fill_s']:.3f} s (CPU {ours['fill_cpu_s']:.3f} s, "
                f"import {ours['import_s']:.2f} s), floor {floor['fill_s']:.3f} s (CPU {floor['fill_cpu_s']:.3f} s), "
                f"baseline fill {base['fill_s']:.3f} s; load {os.getloadavg()[0]:.1f}")
        ours_runs.append(ours)
        base_runs.append(base)
        floor_runs.append(floor)

    fill = median([r["fill_s"] for r in ours_runs])
    fill_cpu = median([r["fill_cpu_s"] for r in ours_runs])
    floor_fill, floor_cpu = median([r["fill_s"] for r in floor_runs]), median([r["fill_cpu_s"] for r in floor_runs])
    dags, tasks = len(ours_runs[-1]["dag_ids"]), ours_runs[-1]["tasks"]
    load_after = os.getloadavg()
    return [
        Result(
            name="dag_parse",
            value=fill,
            unit="s",
            baseline_name="one-task DAG file",
            baseline_value=median([r["fill_s"] for r in base_runs]),
            target=TARGET_S,
            target_kind="value_max",
            description=(
                f"`DagBag(dag_folder='dags/')` fill with {DATABASES} configured databases ({dags} DAGs, "
                f"{tasks} tasks), fresh interpreter per run, median of {ctx.repeats}; baseline: a folder "
                f"with one `EmptyOperator` DAG. Airflow's import is timed apart "
                f"(median {median([r['import_s'] for r in ours_runs]):.2f} s) and not included. Each database has "
                f"every concern: backups with off-site copy and logical dump, drill, PITR, healthcheck, ttl_purge "
                f"(3 policies, one archiving), gdpr_erasure, migrate and {len(GATED_MIGRATIONS)} gated migrations. "
                f"CPU time of the fill {fill_cpu:.2f} s (median). Airflow's floor for this shape (the same DAG ids, "
                f"task counts, params and schedules built from EmptyOperators in one loop): {floor_fill:.2f} s "
                f"(CPU {floor_cpu:.2f} s). Load average {load_before[0]:.1f} before, {load_after[0]:.1f} after, on 2 "
                f"shared cores."
            ),
            extra={
                "databases": DATABASES,
                "dags": dags,
                "tasks": tasks,
                "files": [Path(f).name for f in ours_runs[-1]["files"]],
                "per_dag_ms": 1000 * fill / dags,
                "repeats": ctx.repeats,
                "warmup_runs": 1,
                "fill_runs_s": [r["fill_s"] for r in ours_runs],
                "fill_cpu_s_median": fill_cpu,
                "fill_cpu_runs_s": [r["fill_cpu_s"] for r in ours_runs],
                "floor_fill_s_median": floor_fill,
                "floor_fill_cpu_s_median": floor_cpu,
                "floor_fill_runs_s": [r["fill_s"] for r in floor_runs],
                "load_avg_before": [round(x, 2) for x in load_before],
                "load_avg_after": [round(x, 2) for x in load_after],
                "baseline_fill_runs_s": [r["fill_s"] for r in base_runs],
                "import_s_median": median([r["import_s"] for r in ours_runs]),
                "baseline_import_s_median": median([r["import_s"] for r in base_runs]),
                "process_wall_s_median": median([r["process_wall_s"] for r in ours_runs]),
                "baseline_process_wall_s_median": median([r["process_wall_s"] for r in base_runs]),
                "process_ratio": median([r["process_wall_s"] for r in ours_runs])
                / median([r["process_wall_s"] for r in base_runs]),
                "peak_rss_mib": max(r["peak_rss_bytes"] for r in ours_runs) / 2**20,
                "baseline_peak_rss_mib": max(r["peak_rss_bytes"] for r in base_runs) / 2**20,
                "method": "fresh interpreter per run; perf_counter around DagBag(dag_folder=...) only",
            },
        )
    ]
