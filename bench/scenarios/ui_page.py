"""The pgwarden page for a fleet of 100 databases: response time from the cache against a bare endpoint.

Setup: one real PostgreSQL server holding 100 real databases ``db000``..``db099``, each a copy of one seeded
template: the application tables the erasure config names (``public.users`` with soft-deleted and held
subjects), ``pgwarden.schema_history`` (two plain migrations and three gated ones: applied, mid-backfill,
rolled back, with phases and an approval), ``pgwarden.lifecycle_runs`` (three policies, 14 days) and an
erasure ledger with a few entries, all written by pgwarden's own engine functions. Each database's entry is
the ``dag_parse`` fleet entry (every concern: lifecycle policies with archive, erasure, migrations) with
its own connection. A ``file://`` repository holds each database's catalog (3 full backups with their
manifest and a base file, 48 WAL segments, 6 drill evidence files, an exported ledger head). A child
process with its own ``AIRFLOW_HOME`` calls the plugin's FastAPI app through Starlette's test client with a
real JWT from Airflow's simple auth manager (Airflow's own ``get_user`` decodes it); the DAG ids Airflow
knows (the fleet's ~1100) are filled in beforehand (no metadata database here).

Measured: the first (cold) load of all 100 statuses (every database queried, every catalog read; reported,
no target), then the median of repeated ``/pgwarden/`` (HTML) and ``/pgwarden/api/status`` (JSON) requests
served from the cache, against a bare FastAPI endpoint returning a small JSON document through the same
client in the same process. Target: ≤ 1 s from cache.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.harness import BenchmarkError, Context, Result, median

DATABASES = 100
BACKUPS = 3
WAL_SEGMENTS = 48
DRILLS = 6
SEG = 16 * 2**20


def _fill_repository(root: Path, now: datetime, ledger_head: dict) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from pgwarden.core.config import RepositoryConfig
    from pgwarden.engine.repository import open_repository

    repo = open_repository(RepositoryConfig(url=f"file://{root}"))
    with ThreadPoolExecutor(8) as pool:  # every put fsyncs: side by side, or this takes minutes
        list(pool.map(lambda i: _fill_database(repo, f"db{i:03d}", now, ledger_head), range(DATABASES)))


def _fill_database(repo, name: str, now: datetime, ledger_head: dict) -> None:
    from pgwarden.core.drill import DrillEvidence
    from pgwarden.core.layout import backup_prefix, drill_key, ledger_head_key, manifest_key, wal_key
    from pgwarden.core.lsn import Lsn
    from pgwarden.core.manifest import BackupManifest, StoredFile, Verification
    from pgwarden.core.walnames import segment_name

    for b in range(BACKUPS):
        started = now - timedelta(days=BACKUPS - b, hours=1)
        backup_id = started.strftime("%Y%m%dT%H%M%SZ")
        body = os.urandom(4096)
        info = repo.put_bytes(backup_prefix(name, backup_id) + "base.tar.zst", body)
        start = Lsn((b * 16 + 2) * SEG + 0x28)
        manifest = BackupManifest(
            database=name, backup_id=backup_id, started_at=started, finished_at=started + timedelta(minutes=5),
            duration_seconds=300.0, start_lsn=str(start), stop_lsn=str(start + 0x1000), timeline=1,
            wal_segment_size=SEG, system_identifier="7300000000000000000", server_version="17.2",
            server_version_num=170002, compression="zstd", checkpoint="fast", database_size_bytes=2**30,
            stored_bytes=len(body), files=[StoredFile(name="base.tar.zst", size=len(body), sha256=info.sha256,
                                                      role="base")],
            verification=Verification(method="pg_verifybackup", files_checked=10, ok=True),
            pgwarden_version="bench")
        repo.put_bytes(manifest_key(name, backup_id), manifest.model_dump_json().encode())
    for s in range(2, 2 + WAL_SEGMENTS):
        repo.put_bytes(wal_key(name, segment_name(1, Lsn(s * SEG), SEG)), b"w" * 512)
    for d in range(DRILLS):
        started = now - timedelta(days=7 * (DRILLS - d))
        drill = DrillEvidence(database=name, drill_id=started.strftime("%Y%m%dT%H%M%SZ"), started_at=started,
                              rto_seconds=200 + 30 * d, rpo_seconds=900, rto_target_seconds=3600,
                              rpo_target_seconds=5400, pgwarden_version="bench")
        drill.add("restore", True, "ok")
        repo.put_bytes(drill_key(name, drill.drill_id), drill.model_dump_json().encode())
    repo.put_bytes(ledger_head_key(name), json.dumps(ledger_head).encode())  # the exported ledger's head


TEMPLATE = "fleet_template"
# (version, name, kind, phases run): two plain migrations applied, a gated one applied (contract ends it), one
# between its phases after backfill (at its switch gate), one rolled back.
MIGRATIONS = [
    (1, "user_preferences", "plain", ["apply"]),
    (2, "orders_note", "plain", ["apply"]),
    (3, "rename_users_email", "expand_contract", ["plan", "restore_point", "expand", "backfill", "contract"]),
    (4, "index_orders_status", "expand_contract", ["plan", "restore_point", "expand", "backfill"]),
    (5, "orders_total_numeric", "expand_contract", ["plan", "restore_point", "expand", "backfill", "rollback"]),
]
POLICIES = ("expired_sessions", "retracted_notes", "cold_orders")
LEDGER_ENTRIES = 20


def fleet_config(root: Path):
    """The ``dag_parse`` fleet's entries (every concern), each with its own database and the file repository."""
    import yaml

    from bench.scenarios.dag_parse import config_text
    from pgwarden.core.config import parse_config

    document = yaml.safe_load(config_text(DATABASES))
    for name, entry in document["databases"].items():
        entry["conn_id"] = f"pg_{name}"
        entry["repository"] = {"url": f"file://{root}"}
        del entry["backup"]["offsite"]  # the page never reads the off-site copy
    config = parse_config(yaml.safe_dump(document), "bench-fleet.yaml")
    if config.broken or len(config.databases) != DATABASES:
        raise BenchmarkError(f"the fleet config does not validate: {config.issues}")
    return config


def _seed_template(cluster, now: datetime) -> dict:
    """One database as a fleet member's looks after a while, written by pgwarden's own engine functions."""
    from psycopg import sql

    from pgwarden.core.lifecycle.ledger import ErasureRecord, TableErasure
    from pgwarden.core.migrations.file import MigrationFile
    from pgwarden.engine.lifecycle.ledger import append, ensure_ledger, head
    from pgwarden.engine.lifecycle.runs import RUNS, record_purge
    from pgwarden.engine.migrations.gated import ENDS, record_approval
    from pgwarden.engine.migrations.history import (
        HISTORY,
        RunInfo,
        ensure_history,
        finish_phase_statement,
        start_phase,
    )
    from pgwarden.engine.postgres import connect

    target = cluster.target(TEMPLATE)
    with connect(target) as conn:
        # The subject table the erasure config names: 2000 users, a tenth soft-deleted over the last 60 days
        # (some still in their 30-day grace), one in fifty on legal hold.
        conn.execute("CREATE TABLE public.users (id bigint PRIMARY KEY, email text, full_name text, phone text, "
                     "deleted_at timestamptz, legal_hold boolean NOT NULL DEFAULT false)")
        conn.execute("INSERT INTO public.users SELECT g, 'user' || g || '@example.com', 'User ' || g, NULL, "
                     "CASE WHEN g % 10 = 0 THEN now() - (g % 60) * interval '1 day' END, g % 50 = 0 "
                     "FROM generate_series(1, 2000) g")
        ensure_history(conn)
        for version, name, kind, phases in MIGRATIONS:
            suffix = ".sql" if kind == "plain" else ".yaml"
            migration = MigrationFile(version=version, name=name, kind=kind, up_file=f"{version:03d}_{name}{suffix}",
                                      up_text="-- bench", checksum=f"{version:064x}")
            # One active expand/contract migration per table (the engine refuses a second claim).
            tables = [("public.users", "public.orders", "public.sessions")[version - 3]] if kind != "plain" else []
            for phase in phases:
                run = RunInfo(dag_id=f"db.migrate.{version:03d}_{name}", run_id=f"manual__{phase}", try_number=1)
                start_phase(conn, migration, phase, run, tables=tables)
                # As the engine ends each: a plain migration's apply, a gated phase (gated.ENDS, else running).
                end = "applied" if kind == "plain" else ENDS.get(phase, "running")
                conn.execute(finish_phase_statement(version, phase, end, run))
            if kind != "plain":
                record_approval(target, version, {"gate": "gate_switch_reads", "by": "dba-oncall",
                                                  "at": now.isoformat()})
        conn.execute(sql.SQL("UPDATE {} SET started_at = started_at - interval '3 days'").format(HISTORY))
        for day in range(14):
            for n, policy in enumerate(POLICIES):
                record_purge(conn, f"scheduled__day{day}", policy, 1, 1000 * (day + 1) + n, True)
        conn.execute(sql.SQL("UPDATE {} SET finished_at = now() - (substring(run_id from 'day([0-9]+)')::int "
                             "* interval '1 day')").format(RUNS))
        ensure_ledger(conn)
        for i in range(LEDGER_ENTRIES):
            with conn.transaction():
                append(conn, ErasureRecord(kind="erasure", request_id=f"bench-{i}", subject_ref=f"{i:064x}",
                                           policy_version="bench", tables=(TableErasure('"public"."users"',
                                                                                        "delete_row", 1),),
                                           dag_id="db.gdpr_erasure", run_id=f"scheduled__{i}", task_id="erase",
                                           try_number=1, erased_at=now - timedelta(days=LEDGER_ENTRIES - i)))
        seq, entry_hash = head(conn)
    return {"seq": seq, "entry_hash": entry_hash, "exported_at": now.isoformat()}


def _fleet_databases(cluster, now: datetime) -> dict:
    """100 real databases on the one server, each a copy of the seeded template; the ledger head they share."""
    from psycopg import sql

    from pgwarden.engine.postgres import connect

    with connect(cluster.target("postgres")) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
    ledger_head = _seed_template(cluster, now)
    with connect(cluster.target("postgres")) as conn:
        # FILE_COPY (PostgreSQL 15+): a plain copy of the small template, instead of writing it all to WAL.
        strategy = sql.SQL(" STRATEGY FILE_COPY") if conn.info.server_version >= 150000 else sql.SQL("")
        for i in range(DATABASES):
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(
                sql.Identifier(f"db{i:03d}"), sql.Identifier(TEMPLATE), strategy))
    return ledger_head


def measure(root: Path, target_json: str, runs: int) -> dict:
    """In a child process with its own ``AIRFLOW_HOME``: Airflow reads its settings once per process, and
    another scenario of the same ``bench.run`` may have imported Airflow already."""
    from airflow import settings
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from bench.scenarios.dag_parse import CONCERNS
    from pgwarden.airflow.ui import app as ui
    from pgwarden.engine.postgres import PgTarget
    from pgwarden.engine.repository import open_repository
    from pgwarden.engine.status import StatusCache, StatusSources

    # Airflow's get_user checks a token against revoked_token: the one metadata table this needs.
    RevokedToken.__table__.create(settings.engine, checkfirst=True)
    server = json.loads(target_json)
    config = fleet_config(root)
    databases = config.databases

    def target_for(conn_id: str) -> PgTarget:  # pg_db042 -> database db042 on the one server
        return PgTarget(**{**server, "dbname": conn_id.removeprefix("pg_")})

    sources = StatusSources(open_repository, target_for, timeout=30.0)
    cache = StatusCache(lambda name: sources.collect(name, databases[name]), ttl=3600)
    ui._state.update(config=(config, float("inf")), cache=cache,
                     dag_ids=({f"{name}.{concern}" for name in databases for concern in CONCERNS}, float("inf")))
    token = create_auth_manager().generate_jwt(SimpleAuthManagerUser(username="bench", role="viewer"))
    headers = {"Authorization": f"Bearer {token}"}

    bare = FastAPI()

    @bare.get("/version")
    def version() -> dict[str, str | None]:
        return {"version": "bench", "git_version": None}

    page_client, bare_client = TestClient(ui.create_app()), TestClient(bare)
    started = time.perf_counter()
    cold = page_client.get("/api/status", headers=headers)
    cold_s = time.perf_counter() - started
    if cold.status_code != 200 or len(cold.json()["databases"]) != DATABASES:
        raise BenchmarkError(f"/api/status answered {cold.status_code}: {cold.text[:300]}")
    statuses = cold.json()["databases"]
    failed = [s for s in statuses if "unreachable" in json.dumps(s).lower() or "error" in s]
    if failed:
        raise BenchmarkError(f"{len(failed)} statuses have a failed source: {json.dumps(failed[0])[:800]}")
    # Every part of every database is there (a page missing its heavier parts would be timed cheaper).
    thin = [s["database"] for s in statuses
            if not (s["backups"] and s["drills"] and s["lifecycle"] and s["erasure"] and len(s["migrations"]) == 3)]
    if thin:
        raise BenchmarkError(f"statuses without some of their parts: {thin[:5]}: {json.dumps(statuses[0])[:800]}")

    def timed(client: TestClient, path: str, **kwargs) -> float:
        t = time.perf_counter()
        answer = client.get(path, **kwargs)
        elapsed = time.perf_counter() - t
        if answer.status_code != 200:
            raise BenchmarkError(f"{path} answered {answer.status_code}")
        return elapsed

    return {"cold_s": cold_s,
            "html_s": [timed(page_client, "/", headers=headers) for _ in range(runs)],
            "json_s": [timed(page_client, "/api/status", headers=headers) for _ in range(runs)],
            "bare_s": [timed(bare_client, "/version") for _ in range(runs)],
            "page_bytes": len(page_client.get("/", headers=headers).content)}


def run(ctx: Context) -> list[Result]:
    import subprocess

    load = os.getloadavg()
    root = ctx.tempdir("repository")
    runs = max(ctx.repeats * 4, 10)
    now = datetime.now(UTC)
    with ctx.postgres() as cluster:
        started = time.perf_counter()
        ledger_head = _fleet_databases(cluster, now)
        ctx.log(f"{DATABASES} seeded databases created in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        _fill_repository(root, now, ledger_head)
        ctx.log(f"repository with {DATABASES} databases written in {time.perf_counter() - started:.1f} s")
        t = cluster.target("postgres")
        target = json.dumps({"host": t.host, "port": t.port, "user": t.user, "dbname": t.dbname})
        home = ctx.tempdir("airflow-home")
        env = {**os.environ, "AIRFLOW_HOME": str(home),
               "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db"}
        child = subprocess.run([ctx.python, "-m", "bench.scenarios.ui_page", str(root), target, str(runs)],
                               cwd=ctx.root, env=env, capture_output=True, text=True, timeout=600)
    if child.returncode != 0:
        raise BenchmarkError(f"the measuring process failed:\n{child.stderr[-3000:]}")
    figures = json.loads(child.stdout.strip().splitlines()[-1])
    cold_s, html_s, json_s, bare_s = figures["cold_s"], figures["html_s"], figures["json_s"], figures["bare_s"]
    page_bytes = figures["page_bytes"]
    ctx.log(f"cold load of {DATABASES} statuses: {cold_s:.2f} s; HTML from cache {median(html_s) * 1000:.1f} ms")
    load_after = os.getloadavg()
    machine = {"load_avg_before": [round(x, 2) for x in load], "load_avg_after": [round(x, 2) for x in load_after]}
    common = (f"{DATABASES} real databases on one PostgreSQL server, each with every concern configured "
              f"(schema_history with 5 migrations, 14 days of lifecycle_runs, a {LEDGER_ENTRIES}-entry erasure "
              f"ledger, 2000 users) and {BACKUPS} backups, {WAL_SEGMENTS} WAL segments, {DRILLS} drills and an "
              f"exported ledger head in a file:// repository; median of {runs} requests through Starlette's test "
              f"client with a real simple-auth-manager JWT, from the cache (cold load of all 100: {cold_s:.1f} s). "
              f"Baseline: a bare FastAPI endpoint returning a small JSON document, same client and process. "
              f"Load average {load[0]:.1f} before, {load_after[0]:.1f} after, on 2 shared cores")
    return [
        Result(name="ui_page.cold_fill_s", value=round(cold_s, 3), unit="s",
               description=f"Informational (no target): the first `/pgwarden/api/status` after a start, which loads "
                           f"all {DATABASES} statuses side by side (8 loads at a time, each reading its database and "
                           f"its catalog with a 30 s bound); {common}",
               extra={"databases": DATABASES, **machine}),
        Result(name="ui_page.html_from_cache_s", value=round(median(html_s), 4), unit="s",
               baseline_name="bare FastAPI JSON endpoint", baseline_value=round(median(bare_s), 4),
               target=1.0, target_kind="value_max", description=f"`/pgwarden/` HTML ({page_bytes:,} bytes); {common}",
               extra={"runs_s": [round(x, 4) for x in html_s], "cold_load_s": round(cold_s, 3),
                      "page_bytes": page_bytes, **machine}),
        Result(name="ui_page.json_from_cache_s", value=round(median(json_s), 4), unit="s",
               baseline_name="bare FastAPI JSON endpoint", baseline_value=round(median(bare_s), 4),
               target=1.0, target_kind="value_max", description=f"`/pgwarden/api/status` JSON; {common}",
               extra={"runs_s": [round(x, 4) for x in json_s], "bare_runs_s": [round(x, 4) for x in bare_s],
                      **machine}),
    ]


if __name__ == "__main__":
    import sys

    print(json.dumps(measure(Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]))))
