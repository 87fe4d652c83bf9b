"""Apply migrations in a process of its own, so a test can ``kill -9`` it the way a worker dies.

Everything comes from the environment (never argv): ``PGWARDEN_CHILD_MIGRATIONS`` (the folder),
``PGWARDEN_CHILD_REPO_URL`` (file:///...), ``PGWARDEN_CHILD_DATABASE``, ``PGWARDEN_CHILD_LOCK_TIMEOUT``
and libpq's ``PGHOST``/``PGPORT``/``PGUSER``/``PGDATABASE``. Each log line is printed at once
(``CHILD <message>``); the last one is ``CHILD DONE``.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.harness.engine_child import REPO_ROOT


def spawn(target, folder: str, repo_url: str, database: str, lock_timeout: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not (k.startswith("PG") and not k.startswith("PGWARDEN_"))}
    env.update(target.tool_env())
    env.update({"PGWARDEN_CHILD_MIGRATIONS": folder, "PGWARDEN_CHILD_REPO_URL": repo_url,
                "PGWARDEN_CHILD_DATABASE": database, "PGWARDEN_CHILD_LOCK_TIMEOUT": lock_timeout})
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "tests.harness.migrate_child"], cwd=REPO_ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def _main() -> None:
    from pgwarden.core.config import RepositoryConfig
    from pgwarden.core.migrations.config import MigrationsConfig
    from pgwarden.engine.migrations.apply import apply_pending
    from pgwarden.engine.postgres import PgTarget
    from pgwarden.engine.repository.file import FileRepository

    env = os.environ
    target = PgTarget(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["PGUSER"], dbname=env["PGDATABASE"])
    config = MigrationsConfig(path=env["PGWARDEN_CHILD_MIGRATIONS"], lock_timeout=env["PGWARDEN_CHILD_LOCK_TIMEOUT"])
    repo = FileRepository(RepositoryConfig(url=env["PGWARDEN_CHILD_REPO_URL"]))
    apply_pending(target, repo, env["PGWARDEN_CHILD_DATABASE"], config,
                  log=lambda message: print(f"CHILD {message}", flush=True))
    print("CHILD DONE", flush=True)


if __name__ == "__main__":
    _main()
