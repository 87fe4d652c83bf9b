"""A hot standby of a test server, made the way a DBA would: pg_basebackup -R, then start."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pgwarden.engine import pgtools
from pgwarden.engine.cluster import LocalCluster, free_port
from tests.harness.postgres import BASE_SETTINGS, scratch_base


@contextmanager
def hot_standby(primary: LocalCluster) -> Iterator[LocalCluster]:
    base = scratch_base()
    standby = LocalCluster(datadir=base / "data", port=free_port(), settings={**BASE_SETTINGS, "hot_standby": "on"})
    try:
        standby.datadir.mkdir(parents=True)
        pgtools.give_to_server_user(base)
        pgtools.run(
            [pgtools.tool("pg_basebackup"), "-D", str(standby.datadir), "-R", "-X", "stream", "-c", "fast"],
            env=primary.target().tool_env(), as_server=True, timeout=300,
        )
        standby.start()
        yield standby
    finally:
        standby.remove()
        import shutil

        shutil.rmtree(base, ignore_errors=True)
