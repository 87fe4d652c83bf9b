"""Run one engine step in a process of its own, so a test can ``kill -9`` it the way a worker dies.

Everything comes from the environment (never argv, which ``ps`` shows to every user):

    PGWARDEN_CHILD_ACTION      ``full`` (take_full_backup), ``wal`` (collect_wal), ``purge`` (lifecycle purge)
                               or ``erase`` (GDPR erasure, progress every 20 subjects)
                               or ``reapply`` (erasures re-applied after a restore)
    PGWARDEN_CHILD_DATABASE    the database's name in the repository (``appdb``)
    PGWARDEN_CHILD_REPO_URL    file:///... or s3://bucket/prefix
    PGWARDEN_CHILD_REPO_CONN_ID   (s3) the repository's Airflow AWS connection
    PGWARDEN_CHILD_WORKDIR     local scratch folder
    PGWARDEN_CHILD_RESTORE_POINT  (wal) the restore point's name
    PGWARDEN_CHILD_COMPRESSION    (wal) zstd, gzip or none
    PGWARDEN_CHILD_POLICY      (purge) the lifecycle policy as written in the config, as JSON
    PGWARDEN_CHILD_CUTOFF      (purge, erase) the cutoff, ISO 8601 with a time zone
    PGWARDEN_CHILD_ERASURE     (erase, reapply) the lifecycle.erasure section as JSON
    PGWARDEN_CHILD_ERASURE_KEY (erase, reapply) the HMAC key (a test key; in production it comes from Airflow)
    PGHOST, PGPORT, PGUSER, PGDATABASE, PGPASSWORD   the server, as libpq reads them
    AIRFLOW_CONN_<ID>          that connection, resolved by pgwarden's hooks as in production

Each log line goes to stdout at once (``CHILD <message>``); the last line is ``CHILD DONE``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

from pgwarden.engine.postgres import PgTarget

REPO_ROOT = Path(__file__).resolve().parents[2]


def child_env(target: PgTarget, repo_url: str, database: str, workdir: Path, action: str,
              conn_env: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    # libpq and AWS settings of this process must not leak into the child's: it gets exactly these.
    env = {k: v for k, v in os.environ.items()
           if not (k.startswith(("PG", "AWS_")) and not k.startswith("PGWARDEN_"))}
    env.update(target.tool_env())
    env.update(conn_env or {})
    env.update({
        "PGWARDEN_CHILD_ACTION": action, "PGWARDEN_CHILD_DATABASE": database,
        "PGWARDEN_CHILD_REPO_URL": repo_url, "PGWARDEN_CHILD_WORKDIR": str(workdir),
        **{f"PGWARDEN_CHILD_{k.upper()}": v for k, v in extra.items()},
    })
    return env


def spawn(env: Mapping[str, str]) -> subprocess.Popen:
    """Start the child in its own process group (so its tools can be cleaned up by group id)."""
    return subprocess.Popen(
        [sys.executable, "-u", "-m", "tests.harness.engine_child"], cwd=REPO_ROOT, env=dict(env),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )


def wait_for_line(child: subprocess.Popen, needle: str, timeout: float) -> list[str]:
    """Read the child's output until a line contains ``needle``; returns the lines read.

    Raises ``AssertionError`` (with the output) if the child exits or the time runs out first.
    """
    import selectors

    lines: list[str] = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(child.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not selector.select(timeout=max(0.0, deadline - time.monotonic())):
                break
            line = child.stdout.readline()
            if not line:
                break
            lines.append(line.rstrip("\n"))
            if needle in line:
                return lines
    output = "\n".join(lines)
    raise AssertionError(f"child never printed {needle!r} (exit status {child.poll()}); output:\n{output}")


def kill_group(child: subprocess.Popen) -> None:
    """SIGKILL whatever is left of the child's process group (its pg_receivewal, say), then reap it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=30)
    if child.stdout is not None:
        child.stdout.close()


def _main() -> None:
    from pgwarden.airflow.hooks import open_repository
    from pgwarden.core.config import BackupConfig, RepositoryConfig
    from pgwarden.engine.backup_full import take_full_backup
    from pgwarden.engine.wal import collect_wal

    env = os.environ
    action = env["PGWARDEN_CHILD_ACTION"]
    database = env["PGWARDEN_CHILD_DATABASE"]
    workdir = Path(env["PGWARDEN_CHILD_WORKDIR"])
    target = PgTarget(host=env["PGHOST"], port=int(env["PGPORT"]), user=env["PGUSER"],
                      dbname=env.get("PGDATABASE", "postgres"), password=env.get("PGPASSWORD"))
    repo_config = RepositoryConfig(url=env["PGWARDEN_CHILD_REPO_URL"], conn_id=env.get("PGWARDEN_CHILD_REPO_CONN_ID"))
    repo = open_repository(repo_config)

    def log(message: str) -> None:
        print(f"CHILD {message}", flush=True)

    if action == "full":
        take_full_backup(target, repo, database, BackupConfig(), repo_config, workdir=workdir, log=log)
    elif action == "wal":
        collect_wal(target, repo, database, slot=f"pgwarden_{database}", workdir=workdir,
                    compression=env.get("PGWARDEN_CHILD_COMPRESSION", "zstd"),
                    restore_point=env["PGWARDEN_CHILD_RESTORE_POINT"], warn_bytes=2**40, log=log)
    elif action == "purge":
        import json
        from datetime import datetime

        from pgwarden.core.lifecycle.config import PolicyConfig
        from pgwarden.engine.lifecycle.purge import purge

        purge(target, PolicyConfig.model_validate(json.loads(env["PGWARDEN_CHILD_POLICY"])),
              datetime.fromisoformat(env["PGWARDEN_CHILD_CUTOFF"]), log=log)
    elif action == "erase":
        import json
        from datetime import datetime

        from pgwarden.core.lifecycle.pii import ErasureConfig
        from pgwarden.engine.lifecycle.erasure import RecordContext, erase_subjects
        from pgwarden.engine.lifecycle.erasure_plan import plan_erasure
        from pgwarden.engine.postgres import connect

        config = ErasureConfig.model_validate(json.loads(env["PGWARDEN_CHILD_ERASURE"]))
        with connect(target) as conn:
            erase_subjects(conn, plan_erasure(conn, config), datetime.fromisoformat(env["PGWARDEN_CHILD_CUTOFF"]),
                           env["PGWARDEN_CHILD_ERASURE_KEY"].encode(), RecordContext(database=database, try_number=1),
                           log=log, progress_every=20)
    elif action == "reapply":
        import json

        from pgwarden.core.lifecycle.pii import ErasureConfig
        from pgwarden.engine.lifecycle.erasure import RecordContext
        from pgwarden.engine.lifecycle.reapply import reapply_and_check

        reapply_and_check(target, repo, database, ErasureConfig.model_validate(json.loads(env["PGWARDEN_CHILD_ERASURE"])),
                          env["PGWARDEN_CHILD_ERASURE_KEY"].encode(), RecordContext(database=database), log=log)
    else:
        raise SystemExit(f"unknown PGWARDEN_CHILD_ACTION {action!r}")
    log("DONE")


if __name__ == "__main__":
    _main()
