"""How pgwarden reaches a PostgreSQL server: one settings object for psycopg and for the tools."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache

import psycopg
from psycopg import sql

from pgwarden.core.identifiers import QualifiedName
from pgwarden.engine.errors import PermanentError, TransientError

# SQLSTATE classes worth a retry: connection exceptions, lock/serialization trouble, shutdown.
_TRANSIENT_SQLSTATE_PREFIXES = ("08", "40", "55P03", "57P01", "57P02", "57P03", "53")


@cache
def libpq_env_names() -> dict[str, str | None]:
    """libpq's own table of connection keywords and the environment variable each is read from."""
    return {
        opt.keyword.decode(): opt.envvar.decode() if opt.envvar else None
        for opt in psycopg.pq.Conninfo.get_defaults()
    }


@dataclass(frozen=True)
class PgTarget:
    """Connection settings for one server. ``repr`` never shows the password or ``libpq`` values.

    ``host`` or ``port`` ``None`` means libpq's default (``PGHOST``/``PGPORT``, a ``service`` entry,
    the local socket, 5432). ``libpq`` carries any further libpq connection parameters (``sslmode``,
    ``sslrootcert``, ``options``, ``service``...) by their libpq keyword; they override the fields above.
    """

    host: str | None
    port: int | None = 5432
    user: str = "postgres"
    dbname: str = "postgres"
    password: str | None = field(default=None, repr=False)
    application_name: str = "pgwarden"
    connect_timeout: int = 10
    libpq: Mapping[str, str] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.libpq) - set(libpq_env_names()))
        if unknown:
            raise PermanentError(
                f"not libpq connection parameters: {', '.join(unknown)} (for {self.describe()}); remove them "
                f"from the connection's extra. libpq's parameters: "
                f"https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS"
            )

    def conninfo_params(self, *, replication: bool = False) -> dict[str, object]:
        params: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "application_name": self.application_name,
            "connect_timeout": self.connect_timeout,
            # Text comes back as str whatever the database encoding: the server converts to UTF-8,
            # and a SQL_ASCII database (no conversion) would otherwise hand psycopg bytes.
            "client_encoding": "UTF8",
        }
        if self.password is not None:
            params["password"] = self.password
        params.update(self.libpq)
        if replication:
            params["replication"] = "true"
            params["dbname"] = "replication"
        return {name: value for name, value in params.items() if value is not None}

    def tool_env(self) -> dict[str, str]:
        """The same parameters as libpq environment for ``pg_basebackup`` and friends: nothing in argv,
        which every user on the host can read through ``ps``."""
        names = libpq_env_names()
        env: dict[str, str] = {}
        for keyword, value in self.conninfo_params().items():
            variable = names.get(keyword)
            if variable is None:
                raise PermanentError(
                    f"libpq reads {keyword!r} only from a connection string, and pgwarden gives the PostgreSQL "
                    f"tools their connection through the environment only: put {keyword} in a connection "
                    f"service file (PGSERVICEFILE) and name the service in the connection's extra "
                    f'("service"), or remove it'
                )
            env[variable] = str(value)
        return env

    def describe(self) -> str:
        """Safe to log: no password."""
        return f"{self.user}@{self.host or 'default host'}:{self.port or 'default port'}/{self.dbname}"


def classify(exc: psycopg.Error, doing: str) -> Exception:
    """Turn a psycopg error into a transient or permanent pgwarden error that says what failed."""
    sqlstate = getattr(exc, "sqlstate", None) or ""
    message = f"{doing}: {type(exc).__name__}: {str(exc).strip()}"
    if isinstance(exc, psycopg.OperationalError) and not sqlstate:
        return TransientError(message)
    if sqlstate.startswith(_TRANSIENT_SQLSTATE_PREFIXES):
        return TransientError(message)
    return PermanentError(message)


@contextmanager
def connect(
    target: PgTarget,
    *,
    autocommit: bool = True,
    statement_timeout: str | None = None,
    lock_timeout: str | None = None,
) -> Iterator[psycopg.Connection]:
    """A psycopg connection with pgwarden's session settings; errors come back classified."""
    try:
        conn = psycopg.connect(**target.conninfo_params(), autocommit=autocommit)  # type: ignore[arg-type]
    except psycopg.Error as exc:
        raise classify(exc, f"connecting to {target.describe()}") from exc
    try:
        for name, value in (("statement_timeout", statement_timeout), ("lock_timeout", lock_timeout)):
            if value is not None:
                conn.execute("SELECT set_config(%s, %s, false)", (name, value))
        if not autocommit:
            conn.commit()  # session settings stay; the caller starts its own transaction
        yield conn
    finally:
        conn.close()


@contextmanager
def session_advisory_lock(conn: psycopg.Connection, key: str, wait: timedelta,
                          busy: Callable[[str], Exception]) -> Iterator[None]:
    """Hold the session-level advisory lock ``key`` on ``conn`` (autocommit) for the block.

    Waits up to ``wait``; then raises ``busy(<holders' backend pids>)``. Session-level, so the lock lives
    exactly as long as the backend that could still act under it: a killed holder's backend ends (its
    socket closes) and frees it, with no cleanup anyone must remember.
    """
    session_lock_timeout = conn.execute("SELECT current_setting('lock_timeout')").fetchone()[0]
    try:
        conn.execute("SELECT set_config('lock_timeout', %s, false)", (f"{int(wait.total_seconds() * 1000)}ms",))
        conn.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (key,))
    except psycopg.errors.LockNotAvailable:
        holders = conn.execute(
            "SELECT string_agg(pid::text, ', ') FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND objid = (hashtextextended(%s, 0) & x'ffffffff'::bigint)::oid", (key,)).fetchone()[0]
        raise busy(holders or "?") from None
    finally:
        if not conn.broken:
            conn.execute("SELECT set_config('lock_timeout', %s, false)", (session_lock_timeout,))
    try:
        yield
    finally:
        # A connection lost meanwhile (server restart) took its lock with it: nothing to release, and the
        # block's own error is the one to report.
        with suppress(psycopg.OperationalError):
            if not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(hashtextextended(%s, 0))", (key,))


WAL_SEGMENT_SIZE_SQL = (
    "SELECT setting::bigint * CASE unit WHEN 'B' THEN 1 WHEN 'MB' THEN 1048576 ELSE 1 END"
    " FROM pg_settings WHERE name = 'wal_segment_size'"
)


def wal_segment_size(conn: psycopg.Connection) -> int:
    """Bytes per WAL segment (16 MiB unless initdb --wal-segsize chose otherwise)."""
    return int(conn.execute(WAL_SEGMENT_SIZE_SQL).fetchone()[0])  # type: ignore[index]


def end_with_client(conn: psycopg.Connection) -> int:
    """Have the server end this session's backend within a second of its client dying (``kill -9`` of a
    worker), even mid-statement or waiting for a lock, so a dead task frees its locks and leaves no lock
    request queued in front of the application. Returns the server version number."""
    version = server_version_num(conn)
    if version >= 140000:
        conn.execute("SELECT set_config('client_connection_check_interval', '1s', false)")
    return version


def server_version_num(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT current_setting('server_version_num')::int").fetchone()[0])  # type: ignore[index]


def table_identifier(table: QualifiedName) -> sql.Identifier:
    """A configured table as SQL: both parts quoted, so any name PostgreSQL allows works."""
    return sql.Identifier(table.schema, table.name)


def count_rows(conn: psycopg.Connection, table: QualifiedName) -> int:
    return int(conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table_identifier(table))).fetchone()[0])  # type: ignore[index]


def replication_probe(target: PgTarget) -> dict[str, str]:
    """Open a physical replication connection and run ``IDENTIFY_SYSTEM``.

    This is the only honest test that the role may replicate AND that pg_hba.conf has a
    ``replication`` line for this client: both are checked by the server at connect time.
    Replication connections only speak the simple query protocol, hence ``pgconn.exec_``.
    """
    conn = psycopg.connect(**target.conninfo_params(replication=True), autocommit=True)  # type: ignore[arg-type]
    try:
        result = conn.pgconn.exec_(b"IDENTIFY_SYSTEM")
        if result.status != psycopg.pq.ExecStatus.TUPLES_OK:
            raise PermanentError(
                f"IDENTIFY_SYSTEM failed on {target.describe()}: "
                f"{(result.error_message or b'').decode(errors='replace').strip()}"
            )
        names = [(result.fname(i) or b"").decode() for i in range(result.nfields)]
        values = [(result.get_value(0, i) or b"").decode() for i in range(result.nfields)]
        return dict(zip(names, values, strict=True))
    finally:
        conn.close()
