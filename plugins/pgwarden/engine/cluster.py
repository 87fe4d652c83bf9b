"""A PostgreSQL server that pgwarden starts itself: scratch servers for restore drills and tests.

Runs ``initdb``/``pg_ctl`` from the newest installed PostgreSQL (or ``PGWARDEN_PG_BINDIR``), as an
unprivileged user when we are root, listening on 127.0.0.1 (unless its settings say otherwise) and
a private Unix socket directory so it never collides with a system server. pgwarden's own
connections (``target``) always go through that socket: only the server's OS user (and root) can
open its directory, so a ``private_hba`` server lets them in whatever the data directory's own
``pg_hba.conf`` demands.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shlex
import shutil
import socket
import subprocess
import tempfile
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


# pgwarden's way into a server it started, placed before the data directory's own rules. "local" means
# the private socket directory, which only the server's OS user and root can open.
PRIVATE_HBA = ("local all all trust",)

SOCKET_PATH_MAX = 107  # bytes of a Unix socket path (sun_path is 108 with the terminating NUL)


@dataclass
class LocalCluster:
    """One server's data directory and port. ``start``/``stop`` are idempotent.

    ``home`` holds pgwarden's files for the server (log, socket directory, private hba file); by
    default the data directory's parent. ``private_hba`` starts the server with ``hba_file`` pointing
    at pgwarden's own file (``PRIVATE_HBA`` followed by the data directory's ``pg_hba.conf``, which
    stays untouched), so pgwarden never needs the passwords of a restored source.
    """

    datadir: Path
    port: int
    settings: Mapping[str, str] = field(default_factory=dict)
    hba: tuple[str, ...] = DEFAULT_HBA
    superuser: str = "postgres"
    home: Path | None = None
    private_hba: bool = False

    @property
    def files_dir(self) -> Path:
        return self.home or self.datadir.parent

    @property
    def socket_dir(self) -> Path:
        near = self.files_dir / f".s.{self.port}"
        if len(str(near / f".s.PGSQL.{self.port}").encode()) <= SOCKET_PATH_MAX:
            return near
        # Too deep for a Unix socket: a short directory named after the data directory, so that
        # whoever removes this server finds it again.
        digest = hashlib.sha256(str(self.datadir.resolve()).encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"pgwarden-{digest}.s.{self.port}"

    @property
    def logfile(self) -> Path:
        return self.files_dir / f"postgres-{self.port}.log"

    @property
    def hba_file(self) -> Path:
        """pgwarden's own hba file when ``private_hba``; the data directory's one is never written."""
        return self.files_dir / f"pg_hba-{self.port}.conf"

    def target(self, dbname: str = "postgres", user: str | None = None) -> PgTarget:
        """pgwarden's connection: through the private socket, never TCP."""
        return PgTarget(host=str(self.socket_dir), port=self.port, user=user or self.superuser, dbname=dbname)

    def pg_ctl_command(self, *args: str) -> str:
        """A ``pg_ctl`` command line for a person to run on this server, as the user that owns it."""
        return shlex.join(pgtools.as_server_user([pgtools.tool("pg_ctl"), *args, "-D", str(self.datadir)]))

    def initdb(self, *, data_checksums: bool = True, encoding: str = "UTF8") -> None:
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
            f"--encoding={encoding}",
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
        if self.home is not None:
            self.home.mkdir(parents=True, exist_ok=True)
            pgtools.give_to_server_user(self.home)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.socket_dir, 0o700)  # the private socket's only access control, see PRIVATE_HBA
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
        if self.private_hba:
            options["hba_file"] = str(self._write_private_hba())
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

    def _write_private_hba(self) -> Path:
        own = self.datadir / "pg_hba.conf"
        text = "\n".join((
            "# Written by pgwarden for this run of the server only (the data directory's pg_hba.conf is",
            "# unchanged and applies again when the server is started without pgwarden).",
            *PRIVATE_HBA,
            f"# {own}, for every other connection:",
            own.read_text(errors="replace") if own.exists() else "",
        ))
        self.hba_file.write_text(text)
        pgtools.give_to_server_user(self.hba_file)
        return self.hba_file

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
        for path in (self.logfile, self.hba_file):
            path.unlink(missing_ok=True)
        if self.home is not None:
            shutil.rmtree(self.home, ignore_errors=True)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            probe = subprocess.run(
                [pgtools.tool("pg_isready"), "-h", str(self.socket_dir), "-p", str(self.port)],
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
