"""Run ``rehearse`` in a process of its own, so a test can ``kill -9`` it the way a worker dies.

Everything comes from the environment: ``PGWARDEN_CHILD_REPO_URL`` (file:///...), ``PGWARDEN_CHILD_DATABASE``,
``PGWARDEN_CHILD_MIGRATION`` (the migration file), ``PGWARDEN_CHILD_SCRATCH`` (the scratch parent),
``PGWARDEN_CHILD_DBNAME``. Each log line goes to stdout at once (``CHILD <message>``); the last is ``CHILD DONE``.
"""

from __future__ import annotations

import os
from pathlib import Path

from pgwarden.core.config import RepositoryConfig
from pgwarden.engine.migrations.rehearsal import rehearse
from pgwarden.engine.repository import open_repository


def log(message: str) -> None:
    print(f"CHILD {message}", flush=True)


def main() -> None:
    env = os.environ
    repo = open_repository(RepositoryConfig(url=env["PGWARDEN_CHILD_REPO_URL"]))
    report = rehearse(repo, env["PGWARDEN_CHILD_DATABASE"], Path(env["PGWARDEN_CHILD_MIGRATION"]),
                      dbname=env["PGWARDEN_CHILD_DBNAME"], scratch_parent=Path(env["PGWARDEN_CHILD_SCRATCH"]), log=log)
    log(f"passed={report.passed}")
    log("DONE")


if __name__ == "__main__":
    main()
