"""Run one task of a gated expand/contract DAG in a process of its own, so a test can ``kill -9`` it the way a
worker dies, then run it again the way a cleared task runs (same run id, next try).

It calls what ``GatedPhaseOperator`` calls (``engine/migrations/gated.execute``). The environment comes from
``engine_child.child_env`` (``PGWARDEN_CHILD_ACTION`` is the phase, ``PGWARDEN_CHILD_DATABASE``,
``PGWARDEN_CHILD_REPO_URL``, ``PGWARDEN_CHILD_WORKDIR``, libpq's ``PG*``) plus ``PGWARDEN_CHILD_MIGRATIONS``
(the folder), ``PGWARDEN_CHILD_LABEL`` (``NNN_name``), ``PGWARDEN_CHILD_SAFETY_NET``, ``PGWARDEN_CHILD_RUN_ID``
and ``PGWARDEN_CHILD_TRY``. Each log line is printed at once (``CHILD <message>``); the last one is ``CHILD DONE``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.harness.engine_child import REPO_ROOT, child_env

DAG_PREFIX = "migrate"


def database_config(repo_url: str, folder: str, safety_net: str, lock_timeout: str = "500ms"):
    from pgwarden.core.config import DatabaseConfig

    return DatabaseConfig.model_validate({
        "conn_id": "unused", "repository": {"url": repo_url},
        "migrations": {"path": folder, "lock_timeout": lock_timeout, "gates": {"safety_net": safety_net}}})


def spawn(target, *, phase: str, database: str, repo_url: str, workdir: Path, folder: Path, label: str,
          run_id: str, try_number: int, safety_net: str = "restore_point") -> subprocess.Popen:
    env = child_env(target, repo_url, database, workdir, phase, migrations=str(folder), label=label,
                    safety_net=safety_net, run_id=run_id, try_number=str(try_number))
    return subprocess.Popen([sys.executable, "-u", "-m", "tests.harness.gated_child"], cwd=REPO_ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _main() -> None:
    from pgwarden.engine.migrations import gated
    from pgwarden.engine.migrations.history import RunInfo
    from pgwarden.engine.postgres import PgTarget
    from pgwarden.engine.repository import open_repository

    env = os.environ
    target = PgTarget(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["PGUSER"], dbname=env["PGDATABASE"])
    config = database_config(env["PGWARDEN_CHILD_REPO_URL"], env["PGWARDEN_CHILD_MIGRATIONS"],
                             env["PGWARDEN_CHILD_SAFETY_NET"])
    database, label = env["PGWARDEN_CHILD_DATABASE"], env["PGWARDEN_CHILD_LABEL"]
    run = RunInfo(dag_id=f"{database}.{DAG_PREFIX}.{label}", run_id=env["PGWARDEN_CHILD_RUN_ID"],
                  try_number=int(env["PGWARDEN_CHILD_TRY_NUMBER"]))
    gated.execute(target, lambda: open_repository(config.repository), database, config, label,
                  env["PGWARDEN_CHILD_ACTION"], run, log=lambda line: print(f"CHILD {line}", flush=True))
    print("CHILD DONE", flush=True)


if __name__ == "__main__":
    _main()
