"""Finding PostgreSQL's command-line tools and running them safely.

Secrets reach the tools only through the environment (``PGPASSWORD``), never argv, because argv
is visible to every user on the host through ``ps``.
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path

from pgwarden.engine.errors import PermanentError

BINDIR_ENV = "PGWARDEN_PG_BINDIR"


def _version_of(bindir: Path) -> int:
    match = re.search(r"(\d+)", bindir.parent.name if bindir.name == "bin" else bindir.name)
    return int(match.group(1)) if match else 0


@cache
def candidate_bindirs() -> tuple[Path, ...]:
    """Directories holding PostgreSQL binaries, newest major version first.

    ``PGWARDEN_PG_BINDIR`` wins; then Debian/Ubuntu's ``/usr/lib/postgresql/<major>/bin``,
    Homebrew's ``postgresql@<major>``, then whatever ``pg_ctl`` is on ``PATH``.
    """
    found: list[Path] = []
    if os.environ.get(BINDIR_ENV):
        found.append(Path(os.environ[BINDIR_ENV]))
    patterns = [
        "/usr/lib/postgresql/*/bin",
        "/usr/pgsql-*/bin",
        "/opt/homebrew/opt/postgresql@*/bin",
        "/usr/local/opt/postgresql@*/bin",
    ]
    versioned = [Path(p) for pattern in patterns for p in glob.glob(pattern)]
    found.extend(sorted(versioned, key=_version_of, reverse=True))
    on_path = shutil.which("pg_ctl")
    if on_path:
        found.append(Path(on_path).resolve().parent)
    unique: list[Path] = []
    for path in found:
        if path not in unique and ((path / "pg_ctl").exists() or (path / "pg_basebackup").exists()):
            unique.append(path)
    return tuple(unique)


def tool(name: str, min_major: int | None = None) -> str:
    """Absolute path of a PostgreSQL tool, at least ``min_major`` when given.

    Client tools must be at least as new as the server they talk to (``pg_basebackup`` 15
    cannot back up a 16 server), so callers pass the server's major version.
    """
    for bindir in candidate_bindirs():
        path = bindir / name
        if not path.exists():
            continue
        if min_major is not None and tool_major(str(path)) < min_major:
            continue
        return str(path)
    wanted = f" version {min_major} or newer" if min_major else ""
    raise PermanentError(
        f"PostgreSQL tool {name!r}{wanted} not found. Install the PostgreSQL client and server "
        f"packages (Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql@16) "
        f"or point {BINDIR_ENV} at the directory that holds it."
    )


@cache
def tool_major(path: str) -> int:
    out = subprocess.run([path, "--version"], capture_output=True, text=True, check=True).stdout
    match = re.search(r"\s(\d+)(?:\.\d+)?", out)
    return int(match.group(1)) if match else 0


def unprivileged_user() -> str | None:
    """The user to run server processes as: ``None`` unless we are root.

    ``initdb`` and ``postgres`` refuse to run as root. CI and containers often are root, so
    scratch servers run as ``postgres`` (or ``PGWARDEN_SERVER_USER``) through ``runuser``.
    """
    if os.geteuid() != 0:
        return None
    name = os.environ.get("PGWARDEN_SERVER_USER", "postgres")
    try:
        pwd.getpwnam(name)
    except KeyError as exc:
        raise PermanentError(
            f"Running as root, but user {name!r} does not exist to own a PostgreSQL server. "
            f"Create it (useradd --system {name}) or set PGWARDEN_SERVER_USER."
        ) from exc
    return name


def give_to_server_user(path: Path) -> None:
    """Make ``path`` (recursively) owned by the user that runs server processes."""
    user = unprivileged_user()
    if user is None:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def as_server_user(argv: Sequence[str]) -> list[str]:
    user = unprivileged_user()
    return list(argv) if user is None else ["runuser", "-u", user, "--", *argv]


def run(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    as_server: bool = False,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a tool, raising with its stderr (never its environment) when it fails."""
    full_env = {**os.environ, **(env or {})}
    command = as_server_user(argv) if as_server else list(argv)
    result = subprocess.run(
        command, env=full_env, capture_output=True, text=True, timeout=timeout, cwd=cwd, check=False
    )
    if result.returncode != 0:
        raise ToolError(Path(argv[0]).name, result.returncode, result.stderr)
    return result


class ToolError(PermanentError):
    """A PostgreSQL tool exited non-zero. ``stderr`` is kept for classification."""

    def __init__(self, name: str, returncode: int, stderr: str) -> None:
        self.name = name
        self.returncode = returncode
        self.stderr = stderr.strip()
        super().__init__(f"{name} exited with status {returncode}: {self.stderr[-2000:]}")
