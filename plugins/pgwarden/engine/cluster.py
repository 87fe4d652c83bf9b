"""A PostgreSQL server that pgwarden starts itself: scratch servers for restore drills and tests.

Runs ``initdb``/``pg_ctl`` from the newest installed PostgreSQL (or ``PGWARDEN_PG_BINDIR``), as an
unprivileged user when we are root, listening on 127.0.0.1 and a private Unix socket directory
so it never collides with a system server.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pgwarden.engine import pgtools
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.postgres import PgTarget


def free_port() -> int:
    """A TCP port nobody listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


DEFAULT_HBA = (
    "local all all trust",
    "host all all 127.0.0.1/32 trust",
    "local replication all trust",
    "host replication all 127.0.0.1/32 trust",
)


@dataclass
class LocalCluster:
    """One server's data directory and port. ``start``/``stop`` are idempotent."""

    datadir: Path
    port: int
    settings: Mapping[str, str] = field(default_factory=dict)
    hba: tuple[str, ...] = DEFAULT_HBA
    superuser: str = "postgres"

    @property
    def socket_dir(self) -> Path:
        # Unix socket paths are limited to ~107 bytes, so keep it short and beside the datadir.
        return self.datadir.parent / f".s.{self.port}"

    @property
    def logfile(self) -> Path:
        return self.datadir.parent / f"postgres-{self.port}.log"

    def target(self, dbname: str = "postgres", user: str | None = None) -> PgTarget:
        return PgTarget(host="127.0.0.1", port=self.port, user=user or self.superuser, dbname=dbname)

    def initdb(self, *, data_checksums: bool = True) -> None:
        if (self.datadir / "PG_VERSION").exists():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.datadir, 0o700)
        pgtools.give_to_server_user(self.datadir)
        argv = [
            pgtools.tool("initdb"),
            "-D", str(self.datadir),
            "-U", self.superuser,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if data_checksums:
            argv.append("--data-checksums")
        pgtools.run(argv, as_server=True, timeout=300)
        self.write_hba(self.hba)

    def write_hba(self, lines: tuple[str, ...]) -> None:
        self.hba = lines
        (self.datadir / "pg_hba.conf").write_text("\n".join(lines) + "\n")
        pgtools.give_to_server_user(self.datadir / "pg_hba.conf")

    def start(self, timeout: float = 60) -> None:
        if self.is_running():
            return
        if port_in_use(self.port):
            raise PermanentError(
                f"Port {self.port} is already in use by another process; choose a free port."
            )
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        pgtools.give_to_server_user(self.socket_dir)
        # The server refuses a data directory others can read (restored or copied ones often are).
        os.chmod(self.datadir, 0o700)
        options = {
            "port": str(self.port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.socket_dir),
            "fsync": "on",
            **{k: str(v) for k, v in self.settings.items()},
        }
        opts = " ".join(f"-c {key}={_quote_opt(value)}" for key, value in options.items())
        self.logfile.touch()
        pgtools.give_to_server_user(self.logfile)
        try:
            pgtools.run(
                [pgtools.tool("pg_ctl"), "start", "-w", "-t", str(int(timeout)), "-D", str(self.datadir),
                 "-l", str(self.logfile), "-o", opts],
                as_server=True,
                timeout=timeout + 10,
            )
        except pgtools.ToolError as exc:
            raise PermanentError(
                f"PostgreSQL in {self.datadir} did not start on port {self.port}. "
                f"Server log ({self.logfile}), last lines:\n{self.log_tail()}"
            ) from exc

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log file)"

    def is_running(self) -> bool:
        if not (self.datadir / "postmaster.pid").exists():
            return False
        result = subprocess.run(
            pgtools.as_server_user([pgtools.tool("pg_ctl"), "status", "-D", str(self.datadir)]),
            capture_output=True, text=True, check=False,
        )
        return result.returncode == 0

    def stop(self, mode: str = "fast", timeout: float = 60) -> None:
        if not self.is_running():
            return
        pgtools.run(
            [pgtools.tool("pg_ctl"), "stop", "-w", "-m", mode, "-t", str(int(timeout)), "-D", str(self.datadir)],
            as_server=True,
            timeout=timeout + 10,
        )

    def remove(self) -> None:
        """Stop (immediately: a scratch server's data does not matter) and delete everything."""
        with contextlib.suppress(Exception):
            self.stop(mode="immediate")
        shutil.rmtree(self.datadir, ignore_errors=True)
        shutil.rmtree(self.socket_dir, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            self.logfile.unlink()

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [pgtools.tool("pg_isready"), "-h", "127.0.0.1", "-p", str(self.port)],
                capture_output=True, check=False,
            )
            if probe.returncode == 0:
                return
            time.sleep(0.2)
        raise PermanentError(f"server on port {self.port} not ready after {timeout}s; see {self.logfile}")


def _quote_opt(value: str) -> str:
    # pg_ctl -o passes through a shell-like split; quote values with spaces or quotes.
    if value == "" or any(c in value for c in " '\"\\"):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return value
