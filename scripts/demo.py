#!/usr/bin/env python3
"""The embedded demo stack behind ``make demo``.

Starts, all under ``.demo/`` (ignored by git, removed by ``make demo-clean``):

* the application database: a PostgreSQL server from the engine's own ``LocalCluster`` on a free port,
  ready for backups (``wal_level=replica``, WAL senders and slots) and with ``pg_stat_statements``, with
  database ``appdb`` holding the demo schema (``include/sql/demo/``) and ~100k users, ~1M sessions and
  ~300k orders;
* an S3 endpoint (moto's server mode) on a free port with the bucket ``pgwarden-demo``, saved to
  ``.demo/s3/`` when the demo stops and loaded back when it starts (moto keeps objects in memory);
* ``airflow standalone`` with the project's ``dags/`` and ``plugins/``, connections given through
  ``AIRFLOW_CONN_*`` variables, a fixed ``admin``/``admin`` login, and the ``appdb.*`` DAGs unpaused
  through the REST API.

Ctrl-C (or SIGTERM/SIGHUP) stops every process it started. Running it again reuses the seeded data
directory. ``--no-airflow`` starts only the database and S3. Either way ``.demo/env`` holds the
environment (connections, ``PGWARDEN_*``, ``PG*``, ``AWS_*``) to use them from a shell or a test.

The start/stop logic (``DemoStack``) and the small REST client (``AirflowApi``) are importable:
``tests/e2e/test_demo.py`` drives the same code.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "plugins") not in sys.path:  # the package lives in plugins/, as Airflow sees it
    sys.path.insert(0, str(ROOT / "plugins"))

from pgwarden.engine.cluster import LocalCluster, free_port, port_in_use  # noqa: E402

DEMO_DIR = ROOT / ".demo"
SQL_DIR = ROOT / "include" / "sql" / "demo"
DATABASE = "appdb"
BUCKET = "pgwarden-demo"
ADMIN_USER = "admin"
ADMIN_PASSWORD = "admin"  # a throwaway demo on 127.0.0.1; never the way to run Airflow for real
S3_ACCESS_KEY = "testing"
S3_SECRET_KEY = "testing"
S3_REGION = "us-east-1"
DAG_PREFIX = f"{DATABASE}."

# Every process the demo starts carries this variable (value: the demo folder), so leftovers of a
# crashed run are found precisely, and the e2e test can prove that nothing is left.
MARKER_ENV = "PGWARDEN_DEMO_HOME"

PG_SETTINGS = {
    "wal_level": "replica",
    "max_wal_senders": "10",
    "max_replication_slots": "10",
    "max_connections": "100",
    "shared_buffers": "128MB",
    "maintenance_work_mem": "256MB",
    "log_min_messages": "warning",
    "log_line_prefix": "%m [%p] %q%u@%d ",
    # What a real operator runs: the gated migrations' readiness check reads which statements still use
    # an old column from it (without it, it can only wait a fixed soak time).
    "shared_preload_libraries": "pg_stat_statements",
}

Progress = Callable[[str], None]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "").strip()
    return int(value) if value else default


@dataclass
class DemoConfig:
    """What to start and where. Defaults come from ``PGWARDEN_DEMO_*`` variables."""

    base: Path = DEMO_DIR
    users: int = field(default_factory=lambda: _env_int("PGWARDEN_DEMO_USERS", 100_000))
    sessions_per_user: int = field(default_factory=lambda: _env_int("PGWARDEN_DEMO_SESSIONS_PER_USER", 10))
    airflow: bool = True
    api_host: str = field(default_factory=lambda: os.environ.get("PGWARDEN_DEMO_API_HOST", "127.0.0.1"))
    # 0: 8080 when free, else any free port.
    api_port: int = field(default_factory=lambda: _env_int("PGWARDEN_DEMO_API_PORT", 0))
    config_file: Path = field(
        default_factory=lambda: Path(os.environ.get("PGWARDEN_CONFIG", ROOT / "include" / "pgwarden.yaml"))
    )
    dags_folder: Path = ROOT / "dags"
    plugins_folder: Path = ROOT / "plugins"
    startup_timeout: float = 240.0
    # More simple-auth-manager users than the demo's admin: name -> (role, password); the e2e tests log in
    # as a viewer with them.
    more_users: dict[str, tuple[str, str]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# Processes


def _venv_bin() -> Path:
    return Path(sys.executable).parent


def _alive(procs: Any) -> list[Any]:
    """The processes in ``procs`` still running (a zombie has exited; only its parent's reap is missing)."""
    import psutil

    alive = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
    return alive


def demo_processes(base: Path, groups: Any = ()) -> list[Any]:
    """Live processes that a demo rooted at ``base`` started.

    Found by the marker variable in their environment, or, for processes that rewrite their title
    (and with it what /proc shows of their environment, as Airflow's workers do), by being in one of
    the demo's process ``groups`` with the demo folder as working directory.
    """
    import psutil

    wanted = str(base)
    groups = set(groups)
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error, OSError):
            marked = proc.environ().get(MARKER_ENV) == wanted
            if not marked and groups and os.getpgid(proc.pid) in groups:
                marked = proc.cwd() == wanted
            if marked:
                found.append(proc)
    return _alive(found)


def _process_tree(proc: subprocess.Popen) -> list[Any]:
    """The process we started, its descendants (some in process groups of their own, like Airflow's
    task processes) and whatever else is in its process group (orphans whose parent already died)."""
    import psutil

    pgid = proc.pid  # started with start_new_session=True: the leader's pid is the group id
    tree: dict[int, Any] = {}
    with contextlib.suppress(psutil.Error):
        leader = psutil.Process(proc.pid)
        tree[leader.pid] = leader
        for child in leader.children(recursive=True):
            tree[child.pid] = child
    for other in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if other.pid not in tree and os.getpgid(other.pid) == pgid:
                tree[other.pid] = other
                for child in other.children(recursive=True):
                    tree.setdefault(child.pid, child)
    return _alive(tree.values())


def terminate(proc: subprocess.Popen | None, grace: float = 20.0) -> None:
    """Stop a process started in its own session, with its whole tree: SIGTERM, then SIGKILL.

    Every process gets the signal itself rather than only the group: Airflow runs each task in a
    process group of its own, and LocalExecutor workers outlive a scheduler that died first.
    """
    import psutil

    if proc is None:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        targets = _process_tree(proc)
        if not targets:
            break
        for target in targets:
            with contextlib.suppress(psutil.Error):
                target.send_signal(sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=0.2)  # reap the leader, so it does not linger as a zombie
            if not _process_tree(proc):
                break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


# --------------------------------------------------------------------------------------------------
# The application database


def seed_database(cluster: LocalCluster, users: int, sessions_per_user: int, progress: Progress) -> float:
    """Create ``appdb`` with the demo schema and data; returns the seconds the load took."""
    import psycopg
    from psycopg import sql

    admin = cluster.target("postgres").conninfo_params()
    with psycopg.connect(**admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    started = time.monotonic()
    with psycopg.connect(**cluster.target(DATABASE).conninfo_params(), autocommit=True) as conn:
        conn.execute("SELECT set_config('pgwarden.demo_users', %s, false)", [str(users)])
        conn.execute("SELECT set_config('pgwarden.demo_sessions_per_user', %s, false)", [str(sessions_per_user)])
        conn.execute((SQL_DIR / "schema.sql").read_text())
        progress(f"loading {users:,} users, ~{users * sessions_per_user:,} sessions, ~{users * 3:,} orders")
        conn.execute((SQL_DIR / "seed.sql").read_text())
        conn.execute((SQL_DIR / "indexes.sql").read_text())
        conn.execute("CHECKPOINT")
    return time.monotonic() - started


def enable_statement_stats(cluster: LocalCluster) -> None:
    """``pg_stat_statements`` in ``appdb`` (loaded by PG_SETTINGS); also in a demo seeded before it was added."""
    import psycopg

    with psycopg.connect(**cluster.target(DATABASE).conninfo_params(), autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")


# --------------------------------------------------------------------------------------------------
# The S3 bucket between runs
#
# moto keeps objects in memory only. The database and Airflow's history survive a restart, so the
# backups must too: the bucket is saved to the demo folder when the demo stops (only objects that
# changed) and loaded back when it starts, with the user metadata pgwarden records (the SHA-256).


def save_bucket(client: Any, bucket: str, folder: Path) -> int:
    """Mirror ``bucket`` into ``folder``; returns how many objects were downloaded."""
    index_file = folder / "index.json"
    index = json.loads(index_file.read_text()) if index_file.exists() else {}
    seen: dict[str, Any] = {}
    downloaded = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if index.get(key, {}).get("etag") == obj["ETag"]:
                seen[key] = index[key]
                continue
            path = folder / "objects" / key
            path.parent.mkdir(parents=True, exist_ok=True)
            client.download_file(bucket, key, str(path))
            head = client.head_object(Bucket=bucket, Key=key)
            seen[key] = {
                "etag": obj["ETag"],
                "metadata": head.get("Metadata", {}),
                "sse": head.get("ServerSideEncryption"),
                "content_type": head.get("ContentType"),
            }
            downloaded += 1
    for key in set(index) - set(seen):
        (folder / "objects" / key).unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    index_file.write_text(json.dumps(seen))
    return downloaded


def load_bucket(client: Any, bucket: str, folder: Path) -> int:
    """Upload what ``save_bucket`` saved; returns the number of objects."""
    index_file = folder / "index.json"
    if not index_file.exists():
        return 0
    index = json.loads(index_file.read_text())
    loaded: dict[str, Any] = {}
    for key, entry in index.items():
        path = folder / "objects" / key
        if not path.exists():
            continue
        extra: dict[str, Any] = {"Metadata": entry.get("metadata") or {}}
        if entry.get("sse"):
            extra["ServerSideEncryption"] = entry["sse"]
        if entry.get("content_type"):
            extra["ContentType"] = entry["content_type"]
        client.upload_file(str(path), bucket, key, ExtraArgs=extra)
        # The upload's ETag (single or multipart) is what the next save compares against.
        loaded[key] = {**entry, "etag": client.head_object(Bucket=bucket, Key=key)["ETag"]}
    index_file.write_text(json.dumps(loaded))
    return len(loaded)


# --------------------------------------------------------------------------------------------------
# The Airflow REST API


class ApiError(RuntimeError):
    def __init__(self, method: str, url: str, status: int, body: str) -> None:
        self.status = status
        super().__init__(f"{method} {url} -> HTTP {status}: {body[:500]}")


@dataclass
class AirflowApi:
    """A tiny client for Airflow 3's REST API (``/api/v2``) with a JWT from the simple auth manager."""

    base_url: str
    username: str = ADMIN_USER
    password: str = ADMIN_PASSWORD
    _token: str | None = None

    def request(self, method: str, path: str, body: Any = None, *, auth: bool = True, timeout: float = 30) -> Any:
        url = self.base_url + path
        data = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                payload = resp.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 401 and auth and self._token is not None:
                self._token = None  # expired: log in again once
                return self.request(method, path, body, auth=auth, timeout=timeout)
            raise ApiError(method, url, exc.code, exc.read().decode(errors="replace")) from exc
        return json.loads(payload) if payload else None

    def token(self) -> str:
        """``POST /auth/token`` with the user's name and password returns an ``access_token``."""
        if self._token is None:
            answer = self.request(
                "POST", "/auth/token", {"username": self.username, "password": self.password}, auth=False
            )
            self._token = answer["access_token"]
        return self._token

    def health(self) -> dict[str, Any]:
        return self.request("GET", "/api/v2/monitor/health", auth=False, timeout=5)

    def dags(self, prefix: str = DAG_PREFIX) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        offset = 0
        while True:
            page = self.request("GET", f"/api/v2/dags?limit=100&offset={offset}&order_by=dag_id")
            found.extend(d for d in page["dags"] if d["dag_id"].startswith(prefix))
            offset += len(page["dags"])
            if not page["dags"] or offset >= page["total_entries"]:
                return found

    def import_errors(self) -> list[dict[str, Any]]:
        return self.request("GET", "/api/v2/importErrors?limit=100")["import_errors"]

    def unpause(self, dag_id: str) -> None:
        quoted = urllib.parse.quote(dag_id, safe="")
        self.request("PATCH", f"/api/v2/dags/{quoted}?update_mask=is_paused", {"is_paused": False})

    def trigger(self, dag_id: str, conf: dict[str, Any] | None = None) -> dict[str, Any]:
        # Airflow 3: logical_date is required in the body but may be null (a run "now", no interval).
        quoted = urllib.parse.quote(dag_id, safe="")
        return self.request("POST", f"/api/v2/dags/{quoted}/dagRuns", {"logical_date": None, "conf": conf or {}})

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        quoted = urllib.parse.quote(dag_id, safe="")
        return self.request("GET", f"/api/v2/dags/{quoted}/dagRuns/{urllib.parse.quote(run_id, safe='')}")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        quoted = urllib.parse.quote(dag_id, safe="")
        path = f"/api/v2/dags/{quoted}/dagRuns/{urllib.parse.quote(run_id, safe='')}/taskInstances"
        return self.request("GET", path)["task_instances"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            run = self.dag_run(dag_id, run_id)
            if run["state"] in ("success", "failed"):
                return run
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id} run {run_id} still {run['state']} after {timeout:.0f}s")
            time.sleep(2)


# --------------------------------------------------------------------------------------------------
# The stack


class DemoStack:
    """The demo's processes. ``start()`` then ``stop()``, or use it as a context manager."""

    def __init__(self, config: DemoConfig | None = None, progress: Progress = print) -> None:
        self.config = config or DemoConfig()
        self.progress = progress
        self.base = self.config.base.resolve()
        self.cluster: LocalCluster | None = None
        self.moto: subprocess.Popen | None = None
        self.moto_port: int | None = None
        self.airflow: subprocess.Popen | None = None
        self.api_port: int | None = None
        self.api: AirflowApi | None = None
        self.seed_seconds: float | None = None
        self._seen_dags: set[str] = set()

    # ---- paths

    @property
    def pg_dir(self) -> Path:
        return self.base / "pg"

    @property
    def seeded_marker(self) -> Path:
        return self.pg_dir / "seeded.json"

    @property
    def s3_dir(self) -> Path:
        return self.base / "s3" / BUCKET

    @property
    def work_dir(self) -> Path:
        return self.base / "work"

    @property
    def env_file(self) -> Path:
        return self.base / "env"

    @property
    def airflow_home(self) -> Path:
        return self.base / "airflow"

    @property
    def airflow_log(self) -> Path:
        return self.base / "airflow-standalone.log"

    @property
    def moto_log(self) -> Path:
        return self.base / "moto.log"

    @property
    def s3_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.moto_port}"

    @property
    def api_url(self) -> str:
        host = "127.0.0.1" if self.config.api_host in ("0.0.0.0", "::") else self.config.api_host
        return f"http://{host}:{self.api_port}"

    # ---- lifecycle

    def __enter__(self) -> DemoStack:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        os.chmod(self.base, 0o755)  # the server runs as `postgres` when we are root: it must traverse
        self.work_dir.mkdir(exist_ok=True)
        os.chmod(self.work_dir, 0o755)
        self.stop_leftovers()
        self.start_database()
        self.start_s3()
        self.write_env_file()
        if self.config.airflow:
            self.start_airflow()
            self.wait_for_api()
            self.unpause_new_dags(wait=60)

    def stop(self) -> None:
        """Stop everything this stack (or a crashed earlier run in the same folder) started."""
        with _signals_ignored():
            if self.airflow is not None:
                self.progress("stopping Airflow ...")
                terminate(self.airflow, grace=30)
                self.airflow = None
            if self.moto is not None and self.moto.poll() is None:
                try:
                    saved = save_bucket(self.s3_client(), BUCKET, self.s3_dir)
                    if saved:
                        self.progress(f"saved {saved} new S3 object(s) to {self.s3_dir}")
                except Exception as exc:
                    self.progress(f"could not save the S3 bucket ({exc}); its new objects are lost")
            if self.moto is not None:
                terminate(self.moto, grace=10)
                self.moto = None
            if self.cluster is not None:
                self.progress("stopping PostgreSQL ...")
                try:
                    self.cluster.stop(mode="fast")
                except Exception as exc:
                    self.progress(f"pg_ctl stop -m fast failed ({exc}); trying immediate")
                    self.cluster.stop(mode="immediate")
                self.cluster = None
            self.stop_leftovers(quiet=True)

    @property
    def groups_file(self) -> Path:
        return self.base / "process-groups.json"

    def process_groups(self) -> set[int]:
        """Process groups of this run and, until they are cleaned up, of a crashed earlier run."""
        groups = {p.pid for p in (self.airflow, self.moto) if p is not None}
        with contextlib.suppress(OSError, ValueError):
            groups.update(json.loads(self.groups_file.read_text()))
        return groups

    def _record_groups(self) -> None:
        self.groups_file.write_text(json.dumps(sorted(self.process_groups())))

    def stop_leftovers(self, quiet: bool = False) -> None:
        import psutil

        leftovers = demo_processes(self.base, self.process_groups())
        if leftovers:
            if not quiet:
                self.progress(f"stopping {len(leftovers)} process(es) left over from an earlier demo run")
            for proc in leftovers:
                with contextlib.suppress(psutil.Error):
                    proc.terminate()
            _, alive = psutil.wait_procs(leftovers, timeout=10)
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(alive, timeout=5)
        self.groups_file.unlink(missing_ok=True)
        stale = LocalCluster(datadir=self.pg_dir / "data", port=0)
        if stale.is_running():
            self.progress("stopping the PostgreSQL server left running by an earlier demo run")
            stale.stop(mode="fast")

    # ---- parts

    def start_database(self) -> LocalCluster:
        self.pg_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.pg_dir, 0o755)
        cluster = LocalCluster(datadir=self.pg_dir / "data", port=free_port(), settings=PG_SETTINGS)
        fresh = not (cluster.datadir / "PG_VERSION").exists()
        if fresh:
            self.progress("initdb: creating the application database server")
        cluster.initdb()
        cluster.start()
        self.cluster = cluster
        cluster.wait_ready()
        wanted = {"users": self.config.users, "sessions_per_user": self.config.sessions_per_user}
        seeded = json.loads(self.seeded_marker.read_text()) if self.seeded_marker.exists() else None
        if seeded is None or {k: seeded.get(k) for k in wanted} != wanted:
            self.seeded_marker.unlink(missing_ok=True)
            self.seed_seconds = seed_database(
                cluster, self.config.users, self.config.sessions_per_user, self.progress
            )
            self.seeded_marker.write_text(json.dumps({**wanted, "seconds": round(self.seed_seconds, 1)}))
            self.progress(f"seeded {DATABASE} in {self.seed_seconds:.1f}s")
        else:
            self.progress(f"reusing the seeded {DATABASE} in {cluster.datadir}")
        enable_statement_stats(cluster)
        self.progress(f"PostgreSQL {DATABASE} on 127.0.0.1:{cluster.port}")
        return cluster

    def start_s3(self) -> None:
        self.moto_port = free_port()
        log = self.moto_log.open("ab")
        self.moto = subprocess.Popen(
            [str(_venv_bin() / "moto_server"), "-H", "127.0.0.1", "-p", str(self.moto_port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, MARKER_ENV: str(self.base)}, cwd=self.base, start_new_session=True,
        )
        log.close()
        self._record_groups()
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{self.s3_endpoint}/moto-api/", timeout=1)
                break
            except OSError as exc:
                if self.moto.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start; see {self.moto_log}") from exc
                time.sleep(0.1)
        client = self.s3_client()
        client.create_bucket(Bucket=BUCKET)
        loaded = load_bucket(client, BUCKET, self.s3_dir)
        restored = f", {loaded} object(s) restored from {self.s3_dir}" if loaded else ""
        self.progress(f"S3 (moto) on {self.s3_endpoint}, bucket {BUCKET}{restored}")

    def s3_client(self) -> Any:
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.s3_endpoint, region_name=S3_REGION,
            aws_access_key_id=S3_ACCESS_KEY, aws_secret_access_key=S3_SECRET_KEY,
        )

    def connection_env(self) -> dict[str, str]:
        """The Airflow connections the DAGs use, as ``AIRFLOW_CONN_*`` variables (JSON form)."""
        assert self.cluster is not None and self.moto_port is not None
        return {
            "AIRFLOW_CONN_PGWARDEN_APPDB": json.dumps({
                "conn_type": "postgres", "host": "127.0.0.1", "port": self.cluster.port,
                "login": "postgres", "schema": DATABASE,
            }),
            "AIRFLOW_CONN_PGWARDEN_S3": json.dumps({
                "conn_type": "aws", "login": S3_ACCESS_KEY, "password": S3_SECRET_KEY,
                "extra": {"endpoint_url": self.s3_endpoint, "region_name": S3_REGION},
            }),
            # The GDPR erasure key (pseudonyms, ledger subject references): random, kept with the demo.
            "AIRFLOW_CONN_PGWARDEN_ERASURE_KEY": json.dumps({"conn_type": "generic",
                                                             "password": self.erasure_key()}),
            "PGWARDEN_CONFIG": str(self.config.config_file),
            # Backups in flight and restored drill servers: inside the demo folder, so
            # `make demo-clean` removes them too.
            "PGWARDEN_WORK_DIR": str(self.work_dir),
            # pitr_restore's default destination, for the same reason.
            "PGWARDEN_RESTORE_DIR": str(self.base / "restore"),
        }

    def erasure_key(self) -> str:
        """The demo's erasure HMAC key: made once, then kept (a new key would make new pseudonyms)."""
        import secrets

        path = self.base / "erasure.key"
        if not path.exists():
            path.write_text(secrets.token_hex(32))
            os.chmod(path, 0o600)
        return path.read_text().strip()

    def airflow_env(self) -> dict[str, str]:
        assert self.api_port is not None
        # Hermetic: Airflow settings from the caller's shell (or a test session) do not leak in.
        inherited = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "AIRFLOW_HOME"))
        }
        return {
            **inherited,
            **self.connection_env(),
            # `airflow standalone` runs its components as `airflow ...`: make it this virtualenv's,
            # through the shim that keeps their log servers off the network.
            "PATH": os.pathsep.join([str(self.shim_dir), str(_venv_bin()), os.environ.get("PATH", "")]),
            MARKER_ENV: str(self.base),
            "AIRFLOW_HOME": str(self.airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(self.config.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(self.config.plugins_folder),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(
                [f"{ADMIN_USER}:admin"] + [f"{name}:{role}" for name, (role, _) in self.config.more_users.items()]),
            "AIRFLOW__API__HOST": self.config.api_host,
            "AIRFLOW__API__PORT": str(self.api_port),
            # Tasks reach the Execution API through base_url; the default assumes port 8080.
            "AIRFLOW__API__BASE_URL": self.api_url,
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.api_url}/execution/",
            # Notice new DAG files (a new migration, say) within 30 s instead of 5 min.
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            # LocalExecutor forks this many workers up front; the demo needs few.
            "AIRFLOW__CORE__PARALLELISM": "8",
        }

    @property
    def shim_dir(self) -> Path:
        return self.base / "bin"

    def write_airflow_shim(self) -> None:
        """An ``airflow`` first on standalone's PATH that adds ``--skip-serve-logs`` to the scheduler
        and the triggerer.

        Each would otherwise start a log server (8793, 8794) on every interface: Airflow 3.3's
        serve_logs binds host "" and has no setting for the host. Here every component shares one
        log folder, so the API server reads the logs from disk without them.
        """
        self.shim_dir.mkdir(exist_ok=True)
        airflow = shlex.quote(str(_venv_bin() / "airflow"))
        shim = self.shim_dir / "airflow"
        shim.write_text(
            "#!/bin/sh\n# Written by scripts/demo.py: the scheduler's and triggerer's log servers stay off.\n"
            f'case "$1" in scheduler|triggerer) exec {airflow} "$@" --skip-serve-logs ;; esac\n'
            f'exec {airflow} "$@"\n'
        )
        shim.chmod(0o755)

    def start_airflow(self) -> None:
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        self.write_airflow_shim()
        # The simple auth manager keeps `{"user": "password"}` here and only generates passwords for
        # users missing from it, so writing it first gives the demo a fixed login.
        passwords = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        more = {name: password for name, (_, password) in self.config.more_users.items()}
        passwords.write_text(json.dumps({ADMIN_USER: ADMIN_PASSWORD, **more}) + "\n")
        self.api_port = self.config.api_port or (8080 if not port_in_use(8080) else free_port())
        if port_in_use(self.api_port):
            raise RuntimeError(f"port {self.api_port} for the Airflow API server is in use")
        self.api = AirflowApi(self.api_url)
        self.progress(f"starting airflow standalone (API on port {self.api_port}; log: {self.airflow_log})")
        log = self.airflow_log.open("ab")
        self.airflow = subprocess.Popen(
            [str(_venv_bin() / "airflow"), "standalone"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            env=self.airflow_env(), cwd=self.base, start_new_session=True,
        )
        log.close()
        self._record_groups()

    def _check_alive(self) -> None:
        for name, proc in (("airflow standalone", self.airflow), ("moto server", self.moto)):
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"{name} exited with status {proc.returncode}; log tail:\n{self.log_tail(name)}")

    def log_tail(self, name: str = "airflow standalone", lines: int = 40) -> str:
        path = self.moto_log if name.startswith("moto") else self.airflow_log
        with contextlib.suppress(OSError):
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def wait_for_api(self) -> None:
        """Until the API answers and the scheduler, DAG processor and triggerer heartbeat."""
        assert self.api is not None
        deadline = time.monotonic() + self.config.startup_timeout
        while True:
            self._check_alive()
            with contextlib.suppress(OSError, ApiError, ValueError):
                health = self.api.health()
                parts = ("metadatabase", "scheduler", "dag_processor", "triggerer")
                if all((health.get(p) or {}).get("status") == "healthy" for p in parts):
                    self.api.token()
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"Airflow not healthy after {self.config.startup_timeout:.0f}s; log tail:\n{self.log_tail()}"
                )
            time.sleep(1)

    def unpause_new_dags(self, wait: float = 0) -> list[str]:
        """Unpause ``appdb.*`` DAGs not seen before in this run (a DAG the user pauses stays paused).

        With ``wait``, first give the DAG processor up to that many seconds to parse the DAG files.
        """
        assert self.api is not None
        deadline = time.monotonic() + wait
        previous: int | None = None
        while True:
            dags = self.api.dags()
            # Parsed once the list stops growing for a moment (files are parsed in parallel).
            if dags and len(dags) == previous or time.monotonic() > deadline:
                break
            previous = len(dags)
            time.sleep(3)
        unpaused = []
        for dag in dags:
            if dag["dag_id"] in self._seen_dags:
                continue
            self._seen_dags.add(dag["dag_id"])
            if dag["is_paused"]:
                self.api.unpause(dag["dag_id"])
                unpaused.append(dag["dag_id"])
        if unpaused:
            self.progress(f"unpaused {len(unpaused)} DAG(s): {', '.join(sorted(unpaused))}")
        return unpaused

    def watch(self, poll: float = 15) -> None:
        """Until interrupted: fail loudly if a component dies; unpause DAGs that appear later."""
        while True:
            time.sleep(poll)
            self._check_alive()
            if self.api is not None:
                with contextlib.suppress(OSError, ApiError):
                    self.unpause_new_dags()

    # ---- what to tell the user

    def shell_exports(self) -> str:
        assert self.cluster is not None
        env = {
            **self.connection_env(),
            "PGHOST": "127.0.0.1", "PGPORT": str(self.cluster.port), "PGUSER": "postgres", "PGDATABASE": DATABASE,
            "AWS_ENDPOINT_URL": self.s3_endpoint, "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY, "AWS_DEFAULT_REGION": S3_REGION,
        }
        return "\n".join(f"export {key}={shlex.quote(value)}" for key, value in env.items())

    def write_env_file(self) -> None:
        """``shell_exports()`` in a file a shell can ``source`` (0600: it holds the demo's S3 keys)."""
        partial = self.env_file.with_name(self.env_file.name + ".partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("# The demo's connections for a shell, the pgwarden CLI or dag.test(); rewritten on every start.\n")
            out.write(self.shell_exports() + "\n")
        os.replace(partial, self.env_file)

    @property
    def source_line(self) -> str:
        """``source <env file>``, relative to the working directory when it is inside it."""
        path = self.env_file
        with contextlib.suppress(ValueError):
            path = path.relative_to(Path.cwd())
        return f"source {shlex.quote(str(path))}"

    def banner(self) -> str:
        assert self.cluster is not None
        lines = [
            "",
            "pgwarden demo is up.",
            f"  Airflow UI      {self.api_url}   login: {ADMIN_USER} / {ADMIN_PASSWORD}",
            f"  PostgreSQL      psql -h 127.0.0.1 -p {self.cluster.port} -U postgres {DATABASE}",
            f"  S3 (moto)       {self.s3_endpoint}  bucket {BUCKET}  (keys {S3_ACCESS_KEY}/{S3_SECRET_KEY};"
            f" saved to {self.s3_dir} on stop)",
            f"  logs            {self.airflow_log}, {self.cluster.logfile}",
            "",
            "Look first at the DAG appdb.healthcheck: open it, trigger it (the play button) and read its",
            "task log: it reports what the database offers pgwarden and what is missing. Then trigger",
            "appdb.backup_full (WAL collection and the restore drill skip until a first full backup exists),",
            "then appdb.backup_incremental and appdb.verify_restore, and read the drill's RTO/RPO in its log.",
            "appdb.gdpr_erasure erases users soft-deleted more than 30 days ago (a few are on legal hold and",
            "stay); trigger it with dry_run first, then for real, and read the erase task's summary.",
            f"Backups land in the bucket under {DATABASE}/. From a shell, with the demo's connections:",
            f"  {self.source_line}",
            f"  .venv/bin/pgwarden catalog {DATABASE}      # backups, WAL coverage, restore points",
            f"  .venv/bin/pgwarden ledger verify {DATABASE}    # after gdpr_erasure: the ledger chain against its export",
            f"  .venv/bin/pgwarden ledger certificate {DATABASE} <request id> --out .demo/certificates",
            "",
            *self.schedule_lines(),
            "",
            "Ctrl-C stops everything; `make demo` again restarts with the same data and backups (no reseed);",
            "`make demo-clean` forgets it all.",
        ]
        return "\n".join(lines)

    def schedule_lines(self) -> list[str]:
        """What will run by itself, and when: the scheduler's next run of each unpaused DAG."""
        dags: list[dict[str, Any]] = []
        with contextlib.suppress(OSError, ApiError, ValueError):
            dags = [d for d in (self.api.dags() if self.api else []) if not d["is_paused"]]
        scheduled = sorted((d["next_dagrun_run_after"], d["dag_id"], d.get("timetable_description") or "")
                           for d in dags if d.get("next_dagrun_run_after"))
        if not scheduled:
            return []
        now = datetime.now(timezone.utc)
        lines = ["Scheduled runs start by themselves at these times (a new DAG's first run is its next one;",
                 "a run missed while the demo was stopped starts once at start-up):"]
        for when, dag_id, description in scheduled:
            at = datetime.fromisoformat(when.replace("Z", "+00:00"))
            shown = "due now" if at <= now else f"{at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC"
            lines.append(f"  {dag_id:<26} {shown:<21} {description}".rstrip())
        return lines


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Let a cleanup finish even if the user presses Ctrl-C again."""
    names = ("SIGINT", "SIGTERM", "SIGHUP")
    previous = {}
    for name in names:
        with contextlib.suppress(ValueError, AttributeError):  # not the main thread / no such signal
            previous[name] = signal.signal(getattr(signal, name), signal.SIG_IGN)
    try:
        yield
    finally:
        for name, handler in previous.items():
            signal.signal(getattr(signal, name), handler)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--no-airflow", action="store_true",
                        help="start only PostgreSQL and S3 and print the environment to use them")
    parser.add_argument("--users", type=int, help="seed size (default: PGWARDEN_DEMO_USERS or 100000)")
    parser.add_argument("--base", type=Path, help=f"state folder (default: {DEMO_DIR})")
    parser.add_argument("--stop", action="store_true",
                        help="only stop what a crashed demo run left running in the state folder")
    args = parser.parse_args(argv)

    config = DemoConfig(airflow=not args.no_airflow)
    if args.users:
        config.users = args.users
    if args.base:
        config.base = args.base
    # A shell starting us in the background may have set SIGINT to "ignore"; Ctrl-C must work.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)
    stack = DemoStack(config, progress=lambda msg: print(f"[demo] {msg}", flush=True))
    if args.stop:
        stack.stop_leftovers()
        return 0
    try:
        stack.start()
        if config.airflow:
            print(stack.banner(), flush=True)
        else:
            print(f"\nPostgreSQL and S3 are up. In another shell:\n  {stack.source_line}", flush=True)
            print("\nCtrl-C stops them.", flush=True)
        stack.watch()
    except KeyboardInterrupt:
        print("\n[demo] interrupted", flush=True)
        return 0
    except Exception as exc:
        print(f"[demo] failed: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        stack.stop()
        print("[demo] stopped; nothing left running.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
