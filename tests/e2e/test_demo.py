"""`make demo`'s stack, end to end: the same code (scripts/demo.py) with a smaller seed.

* the seed alone (PostgreSQL + S3, no Airflow): realistic, consistent data and a fast restart;
* the whole stack: Airflow standalone up, no import errors, `appdb.healthcheck` triggered through the
  REST API succeeds, and stopping leaves no process behind.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
HEALTHCHECK = "appdb.healthcheck"


def _load_demo_module():
    spec = importlib.util.spec_from_file_location("pgwarden_demo_script", ROOT / "scripts" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


demo = _load_demo_module()


@pytest.fixture
def demo_base() -> Iterator[Path]:
    # Not pytest's tmp_path: it is 0700 root, and the server runs as `postgres` when we are root.
    base = Path(tempfile.mkdtemp(prefix="pgwarden-demo-e2e-"))
    os.chmod(base, 0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _still_running(procs: list[psutil.Process]) -> list[str]:
    left = []
    for proc in procs:
        try:  # is_running() also checks the create time: a reused pid is not ours
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            pass
    return left


def _group_members(groups: set[int]) -> list[str]:
    left = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) in groups and proc.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{proc.pid} {' '.join(proc.cmdline())[:120]}")
        except (psutil.Error, OSError):
            pass
    return left


@pytest.mark.integration
def test_seed_is_realistic_and_a_restart_reuses_it(demo_base: Path) -> None:
    import psycopg

    config = demo.DemoConfig(base=demo_base, users=3000, sessions_per_user=10, airflow=False)
    with demo.DemoStack(config, progress=print) as stack:
        assert stack.seed_seconds is not None
        target = stack.cluster.target(demo.DATABASE).conninfo_params()
        with psycopg.connect(**target) as conn:
            users, deleted, deleted_long_ago = conn.execute(
                "SELECT count(*), count(deleted_at), count(*) FILTER (WHERE deleted_at < now() - interval '30 days')"
                " FROM users"
            ).fetchone()
            sessions, expired = conn.execute(
                "SELECT count(*), count(*) FILTER (WHERE expires_at < now()) FROM sessions"
            ).fetchone()
            orders = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
            distinct = conn.execute(
                "SELECT count(DISTINCT full_name), count(DISTINCT country), count(DISTINCT user_agent)"
                " FROM users JOIN sessions ON sessions.user_id = users.id"
            ).fetchone()
            inconsistent = conn.execute(
                """
                SELECT (SELECT count(*) FROM sessions s JOIN users u ON u.id = s.user_id
                         WHERE s.created_at < u.created_at OR s.created_at > coalesce(u.deleted_at, now()))
                     + (SELECT count(*) FROM orders o JOIN users u ON u.id = o.user_id
                         WHERE o.created_at < u.created_at OR o.created_at > coalesce(u.deleted_at, now()))
                     + (SELECT count(*) FROM users WHERE last_login_at < created_at
                         OR last_login_at > coalesce(deleted_at, now()))
                """
            ).fetchone()[0]
            settings = dict(conn.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('wal_level', 'max_wal_senders')"
            ).fetchall())
            indexes = {row[0] for row in conn.execute("SELECT indexname FROM pg_indexes WHERE schemaname = 'public'")}
        assert users == 3000
        assert 0.04 * users < deleted < 0.12 * users and 0 < deleted_long_ago < deleted
        assert sessions == 30000 and 0.3 * sessions < expired < 0.7 * sessions
        assert 8000 < orders <= 9000
        assert distinct[0] > 500 and distinct[1] >= 10 and distinct[2] >= 5
        assert inconsistent == 0
        assert settings == {"wal_level": "replica", "max_wal_senders": "10"}
        assert {"sessions_expires_at_idx", "users_deleted_at_idx", "sessions_token_key"} <= indexes

        buckets = [b["Name"] for b in stack_s3_client(stack).list_buckets()["Buckets"]]
        assert buckets == [demo.BUCKET]

    # A second start reuses the data directory: no seeding.
    with demo.DemoStack(config, progress=print) as again:
        assert again.seed_seconds is None
        with psycopg.connect(**again.cluster.target(demo.DATABASE).conninfo_params()) as conn:
            assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 3000
    assert not (demo_base / "pg" / "data" / "postmaster.pid").exists()
    assert not demo.demo_processes(demo_base)


@pytest.mark.integration
def test_the_env_file_gives_the_cli_the_demos_connections(demo_base: Path) -> None:
    """The banner's `source .demo/env` line is all the CLI needs: no AIRFLOW_CONN_* from the caller."""
    import subprocess

    config = demo.DemoConfig(base=demo_base, users=500, sessions_per_user=2, airflow=False)
    with demo.DemoStack(config, progress=print) as stack:
        assert stack.env_file.stat().st_mode & 0o777 == 0o600  # it holds the (throwaway) S3 keys
        assert stack.source_line.startswith("source ") and str(stack.env_file) in stack.source_line
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW_CONN_", "PGWARDEN_", "PG", "AWS_"))}
        pgwarden = Path(sys.executable).with_name("pgwarden")
        run = subprocess.run(["bash", "-c", f"{stack.source_line} && {pgwarden} catalog {demo.DATABASE}"],
                             env=clean, cwd=demo_base, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        assert f"{demo.DATABASE} in s3://{demo.BUCKET}" in run.stdout and "restore points: none yet" in run.stdout


def stack_s3_client(stack):
    import boto3

    return boto3.client(
        "s3", endpoint_url=stack.s3_endpoint, region_name=demo.S3_REGION,
        aws_access_key_id=demo.S3_ACCESS_KEY, aws_secret_access_key=demo.S3_SECRET_KEY,
    )


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(600)
def test_demo_runs_the_healthcheck_through_the_rest_api_and_stops_cleanly(demo_base: Path) -> None:
    from pgwarden.engine.cluster import free_port, port_in_use

    users = int(os.environ.get("PGWARDEN_DEMO_USERS") or 2000)
    config = demo.DemoConfig(base=demo_base, users=users, api_port=free_port())
    stack = demo.DemoStack(config, progress=print)
    started: list[psutil.Process] = []
    try:
        began = datetime.now(timezone.utc)
        stack.start()
        api = stack.api
        assert api is not None
        # Unpausing starts nothing: every DAG's first scheduled run is after the demo started, and
        # the banner says when each comes.
        banner = stack.banner()
        for dag in api.dags():
            if dag["next_dagrun_run_after"]:
                assert datetime.fromisoformat(dag["next_dagrun_run_after"].replace("Z", "+00:00")) > began, dag
                assert dag["dag_id"] in banner
        assert "appdb.backup_full" in banner and stack.source_line in banner

        # The DAG file is parsed by the time start() returns; give a slow machine a little longer.
        deadline = time.monotonic() + 90
        while HEALTHCHECK not in {d["dag_id"] for d in api.dags()} and time.monotonic() < deadline:
            time.sleep(3)
        import_errors = api.import_errors()
        assert import_errors == [], [(e["filename"], e["stack_trace"][-500:]) for e in import_errors]
        dags = {d["dag_id"]: d for d in api.dags()}
        assert HEALTHCHECK in dags, f"no {HEALTHCHECK} DAG; DAGs: {sorted(dags)}"
        assert not dags[HEALTHCHECK]["is_paused"], "the demo unpauses the appdb.* DAGs"

        run = api.trigger(HEALTHCHECK)
        final = api.wait_for_run(HEALTHCHECK, run["dag_run_id"], timeout=240)
        tasks = {ti["task_id"]: ti["state"] for ti in api.task_instances(HEALTHCHECK, run["dag_run_id"])}
        assert final["state"] == "success", f"{HEALTHCHECK} ended {final['state']}: {tasks}\n{stack.log_tail()}"

        groups = stack.process_groups()
        started = [p for proc in (stack.airflow, stack.moto) for p in demo._process_tree(proc)]
        assert len(started) > 4  # standalone, its components, the executor's workers, moto
        # Everything listens where the UI does (no log server on 0.0.0.0).
        pids = {p.pid for p in started} | {p.pid for p in demo.demo_processes(demo_base, groups)}
        listening = {(c.laddr.ip, c.laddr.port) for c in psutil.net_connections("inet")
                     if c.status == psutil.CONN_LISTEN and c.pid in pids}
        assert (config.api_host, stack.api_port) in listening
        assert {ip for ip, _ in listening} == {config.api_host}, sorted(listening)
        ports = (stack.api_port, stack.moto_port, stack.cluster.port)
    finally:
        stack.stop()

    assert _still_running(started) == []
    assert _group_members(groups) == []
    assert demo.demo_processes(demo_base, groups) == []
    assert not (demo_base / "pg" / "data" / "postmaster.pid").exists()
    assert [port for port in ports if port_in_use(port)] == []
