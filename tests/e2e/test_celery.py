"""`backup_full` then `verify_restore` under CeleryExecutor: no task relies on the scheduler's machine.

The demo stack's database and S3, with Airflow's components started one by one instead of `airflow
standalone` (which forces LocalExecutor): API server, scheduler, DAG processor and triggerer share one
AIRFLOW_HOME; the metadata database is a throwaway PostgreSQL server (tests/harness/postgres.py); the
broker is the machine's Redis (a queue of this test's own); one Celery worker runs in a working directory
of its own, with its own AIRFLOW_HOME (logs) and PGWARDEN_WORK_DIR (backups in flight, drill servers).
The scheduler's side never runs a task: every try is logged in the worker's folder.

docker-compose.yaml keeps the production shape; README "Executors" says what ran where.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
from pathlib import Path

import pytest

from pgwarden.engine.cluster import free_port
from pgwarden.engine.postgres import connect
from tests.e2e.test_demo import demo, demo_base  # noqa: F401 (fixture)
from tests.e2e.test_pitr_approval import _run
from tests.harness.postgres import postgres_server

REDIS = ("127.0.0.1", 6379)


def _redis_reachable() -> bool:
    try:
        with socket.create_connection(REDIS, timeout=2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class CeleryStack(demo.DemoStack):
    """The demo stack under CeleryExecutor, its components started separately, plus one worker."""

    def __init__(self, config, metadata_url: str, **kwargs) -> None:
        super().__init__(config, **kwargs)
        self.metadata_url = metadata_url
        self.queue = f"pgwarden-e2e-{secrets.token_hex(4)}"
        self.secret = secrets.token_hex(32)
        self.worker: subprocess.Popen | None = None

    @property
    def worker_dir(self) -> Path:
        return self.base / "celery-worker"

    def airflow_env(self) -> dict[str, str]:
        return {
            **super().airflow_env(),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.metadata_url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://{REDIS[0]}:{REDIS[1]}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + self.metadata_url,
            # A queue of this test's own: other users of the machine's Redis never get these tasks.
            "AIRFLOW__OPERATORS__DEFAULT_QUEUE": self.queue,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            # Components with separate AIRFLOW_HOMEs must agree on the secrets they sign tokens with.
            "AIRFLOW__API_AUTH__JWT_SECRET": self.secret,
            "AIRFLOW__API__SECRET_KEY": self.secret,
        }

    def start_airflow(self) -> None:
        self.airflow_home.mkdir(parents=True, exist_ok=True)
        passwords = self.airflow_home / "simple_auth_manager_passwords.json.generated"
        passwords.write_text(f'{{"{demo.ADMIN_USER}": "{demo.ADMIN_PASSWORD}"}}\n')
        self.api_port = self.config.api_port
        self.api = demo.AirflowApi(self.api_url)
        env = self.airflow_env()
        airflow = str(demo._venv_bin() / "airflow")
        subprocess.run([airflow, "db", "migrate"], env=env, cwd=self.base, check=True, capture_output=True,
                       timeout=300)
        # One process group for the scheduler's side, so stop() ends all of it.
        script = " & ".join([f"exec {airflow} api-server", f"exec {airflow} scheduler --skip-serve-logs",
                             f"exec {airflow} dag-processor", f"exec {airflow} triggerer --skip-serve-logs"])
        log = self.airflow_log.open("ab")
        self.airflow = subprocess.Popen(["bash", "-c", f"{script} & wait"], stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT, env=env, cwd=self.base, start_new_session=True)
        log.close()
        self._record_groups()

    def start_worker(self) -> None:
        self.worker_dir.mkdir(mode=0o755)
        (self.worker_dir / "work").mkdir(mode=0o755)
        env = {**self.airflow_env(), "AIRFLOW_HOME": str(self.worker_dir / "airflow-home"),
               "PGWARDEN_WORK_DIR": str(self.worker_dir / "work")}
        log = (self.worker_dir / "worker.log").open("ab")
        self.worker = subprocess.Popen(
            [str(demo._venv_bin() / "airflow"), "celery", "worker", "--queues", self.queue, "--concurrency", "2",
             "--skip-serve-logs", "--celery-hostname", f"{self.queue}@%h"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.worker_dir,
            start_new_session=True,
        )
        log.close()

    def stop(self) -> None:
        demo.terminate(self.worker, grace=20)
        super().stop()


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(900)
@pytest.mark.skipif(not _redis_reachable(), reason=f"no Redis answering PING on {REDIS[0]}:{REDIS[1]} "
                                                     "(the CeleryExecutor test's broker)")
def test_backup_and_drill_run_on_a_celery_worker(demo_base: Path) -> None:  # noqa: F811
    with postgres_server() as metadata:
        with connect(metadata.target("postgres")) as conn:
            conn.execute("CREATE DATABASE airflow")
        url = f"postgresql+psycopg2://postgres@127.0.0.1:{metadata.port}/airflow"
        config = demo.DemoConfig(base=demo_base, users=1000, sessions_per_user=2, api_port=free_port())
        stack = CeleryStack(config, url, progress=print)
        try:
            stack.start()
            stack.start_worker()
            api = stack.api
            for dag_id in ("appdb.backup_full", "appdb.verify_restore"):
                final, tasks = _run(api, dag_id, timeout=400)
                worker_log = (stack.worker_dir / "worker.log").read_text(errors="replace")[-3000:]
                assert final["state"] == "success", f"{dag_id}: {tasks}\n{stack.log_tail()}\n{worker_log}"
                instances = api.task_instances(dag_id, final["dag_run_id"])
                assert {ti["queue"] for ti in instances} == {stack.queue}
                assert {ti["executor"] or "CeleryExecutor" for ti in instances} == {"CeleryExecutor"}
                # Every try was run (and logged) by the worker, in its own folder; the scheduler's
                # AIRFLOW_HOME holds no task log.
                worker_logs = stack.worker_dir / "airflow-home" / "logs" / f"dag_id={dag_id}"
                ran = {p.parent.name for p in worker_logs.rglob("attempt=*.log")}
                assert {f"task_id={ti['task_id']}" for ti in instances} <= ran, sorted(ran)
                assert not (stack.airflow_home / "logs" / f"dag_id={dag_id}").exists()
            with connect(stack.cluster.target(demo.DATABASE)) as conn:
                assert conn.execute("SELECT count(*) FROM users").fetchone()[0] == 1000
            drills = list(stack.s3_client().list_objects_v2(Bucket=demo.BUCKET, Prefix="appdb/drills/")
                          .get("Contents", []))
            # One drill of the newest backup; in a month verify.old_backup_every divides (the demo's 3) the same
            # run also drills the oldest monthly/yearly backup, as `<id>-old.json`.
            assert len([d for d in drills if d["Key"].endswith("-newest.json")]) == 1, drills
        finally:
            stack.stop()
            assert stack.worker is None or stack.worker.poll() is not None
