"""The pgwarden page with 100 databases: response time from the cache against a bare endpoint.

Setup: a ``file://`` repository holding 100 synthetic databases (3 full backups with their manifest and
a base file, 48 WAL segments, 6 drill evidence files each: the objects ``read_catalog`` lists and reads),
each database's ``pgwarden`` tables read from one real PostgreSQL server (no ``schema_history`` yet: the
query still runs). A child process with its own ``AIRFLOW_HOME`` calls the plugin's FastAPI app through
Starlette's test client with a real JWT from Airflow's simple auth manager (Airflow's own ``get_user`` decodes it); the list of DAG ids
Airflow knows is filled in beforehand (no metadata database here).

Measured: the first (cold) load of all 100 statuses, then the median of repeated ``/pgwarden/`` (HTML)
and ``/pgwarden/api/status`` (JSON) requests served from the cache, against a bare FastAPI endpoint
returning a small JSON document through the same client in the same process. Target: ≤ 1 s from cache.
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


def _fill_repository(root: Path, now: datetime) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from pgwarden.core.config import RepositoryConfig
    from pgwarden.engine.repository import open_repository

    repo = open_repository(RepositoryConfig(url=f"file://{root}"))
    with ThreadPoolExecutor(8) as pool:  # every put fsyncs: side by side, or this takes minutes
        list(pool.map(lambda i: _fill_database(repo, f"db{i:03d}", now), range(DATABASES)))


def _fill_database(repo, name: str, now: datetime) -> None:
    from pgwarden.core.drill import DrillEvidence
    from pgwarden.core.layout import backup_prefix, drill_key, manifest_key, wal_key
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


def measure(root: Path, target_json: str, runs: int) -> dict:
    """In a child process with its own ``AIRFLOW_HOME``: Airflow reads its settings once per process, and
    another scenario of the same ``bench.run`` may have imported Airflow already."""
    from airflow import settings
    from airflow.api_fastapi.app import create_auth_manager
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser
    from airflow.models.revoked_token import RevokedToken
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from pgwarden.airflow.ui import app as ui
    from pgwarden.core.config import DatabaseConfig, Defaults, PgwardenConfig
    from pgwarden.engine.postgres import PgTarget
    from pgwarden.engine.repository import open_repository
    from pgwarden.engine.status import StatusCache, StatusSources

    # Airflow's get_user checks a token against revoked_token: the one metadata table this needs.
    RevokedToken.__table__.create(settings.engine, checkfirst=True)
    target = PgTarget(**json.loads(target_json))
    databases = {f"db{i:03d}": DatabaseConfig(conn_id="bench_pg", repository={"url": f"file://{root}"})
                 for i in range(DATABASES)}
    config = PgwardenConfig(source="bench", defaults=Defaults(), databases=databases)
    sources = StatusSources(open_repository, lambda _conn_id: target, timeout=30.0)
    cache = StatusCache(lambda name: sources.collect(name, databases[name]), ttl=3600)
    ui._state.update(config=(config, float("inf")), cache=cache,
                     dag_ids=({f"{name}.backup_full" for name in databases}, float("inf")))
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
    if any("unreachable" in json.dumps(s) or "error" in s for s in statuses):
        raise BenchmarkError(f"a source failed: {json.dumps(statuses[0])[:500]}")

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
    started = time.perf_counter()
    _fill_repository(root, datetime.now(UTC))
    ctx.log(f"repository with {DATABASES} databases written in {time.perf_counter() - started:.1f} s")
    runs = max(ctx.repeats * 4, 10)
    with ctx.postgres() as cluster:
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
    common = (f"{DATABASES} databases ({BACKUPS} backups, {WAL_SEGMENTS} WAL segments, {DRILLS} drills each, "
              f"file:// repository, one PostgreSQL server), median of {runs} requests through Starlette's test "
              f"client with a real simple-auth-manager JWT, from the cache (cold load of all 100: {cold_s:.1f} s). "
              f"Baseline: a bare FastAPI endpoint returning a small JSON document, same client and process. "
              f"Load average {load[0]:.1f} before, {load_after[0]:.1f} after, on 2 shared cores")
    return [
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
