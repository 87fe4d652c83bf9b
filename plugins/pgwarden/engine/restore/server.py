"""Restore step 4, start and wait: the server pgwarden runs on a restored data directory.

It keeps pgwarden's files in ``<datadir>/pgwarden/`` (log, Unix socket, a private ``hba_file`` given
on the command line), so pgwarden reaches it through its own socket whatever authentication the
source's ``pg_hba.conf`` demands; that file itself is left as it was restored.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from pgwarden.core.recovery import Action
from pgwarden.engine.cluster import LocalCluster
from pgwarden.engine.errors import PermanentError, PgwardenError
from pgwarden.engine.postgres import connect

if TYPE_CHECKING:
    from pgwarden.engine.restore.run import RestoreResult


def restored_server(datadir: Path, port: int, settings: dict[str, str] | None = None) -> LocalCluster:
    """The server pgwarden runs on a restored data directory (see the module's docstring)."""
    return LocalCluster(datadir=datadir, port=port, settings=settings or {}, home=datadir / "pgwarden",
                        private_hba=True)


# What the server answers while it cannot take connections yet; anything else is an answer to act on.
_STARTING = ("the database system is starting up", "not yet accepting connections")


def wait_for_target(cluster: LocalCluster, action: Action, timeout: float = 24 * 3600) -> None:
    """Wait until recovery reached its target: promoted (writable) or paused at it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not cluster.is_running():
            raise _stopped(cluster)
        try:
            with connect(cluster.target()) as conn:
                in_recovery = conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]
                if not in_recovery and action == "promote":
                    return
                if in_recovery and action == "pause" and conn.execute(
                        "SELECT pg_get_wal_replay_pause_state() = 'paused'").fetchone()[0]:
                    return
        except PgwardenError as exc:
            if not any(words in str(exc) for words in _STARTING):
                if not cluster.is_running():
                    raise _stopped(cluster) from exc
                raise PermanentError(f"cannot query the restored server in {cluster.datadir}: {exc}") from exc
        time.sleep(0.2)
    raise PermanentError(f"recovery did not reach its target within {timeout}s")


def _stopped(cluster: LocalCluster) -> PermanentError:
    return PermanentError("the restored server stopped during recovery (the target was not reached?). "
                          f"Server log, last lines:\n{cluster.log_tail()}")


@dataclass(frozen=True)
class Reached:
    """Where recovery stopped: the last replayed position, its last transaction's time, the timeline."""

    in_recovery: bool
    lsn: str
    time: datetime | None
    timeline: int


def reached(cluster: LocalCluster) -> Reached:
    with connect(cluster.target()) as conn:
        row = conn.execute(
            "SELECT pg_is_in_recovery(),"
            " coalesce(pg_last_wal_replay_lsn(), pg_current_wal_lsn())::text,"
            " pg_last_xact_replay_timestamp(), (SELECT timeline_id FROM pg_control_checkpoint())"
        ).fetchone()
    return Reached(bool(row[0]), row[1], row[2], int(row[3]))


def next_steps(result: RestoreResult, action: Action) -> str:
    """What a person does with the restored server next, in commands that work for them as they are."""
    datadir, port = Path(result.datadir), result.port
    if not result.started:
        start = LocalCluster(datadir=datadir, port=0).pg_ctl_command("start", "-o", "-p <port>")
        return (f"Start it with: {start}\n(recovery runs to the target, then "
                f"{'pauses' if action == 'pause' else 'promotes'}; WAL is read from {datadir}.wal)")
    server = restored_server(datadir, port or 0)
    state = ("It is promoted and writable." if action == "promote" else
             "It is paused at the target (read-only): inspect it, then promote with "
             f"`SELECT pg_wal_replay_resume()` or `{server.pg_ctl_command('promote')}`.")
    return (f"The restored server runs on 127.0.0.1:{port} with data in {datadir}. {state}\n"
            "Clients log in as on the source (its pg_hba.conf); pgwarden itself uses the private socket in "
            f"{server.socket_dir}. Log: {server.logfile}.\n"
            f"Stop it with: {server.pg_ctl_command('stop')}\n"
            "Started again with pg_ctl, it runs with its own settings alone; "
            f"{server.home} can then be deleted, and {datadir}.wal once it is promoted.")
