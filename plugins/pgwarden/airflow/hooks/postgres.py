"""A Postgres connection as pgwarden's ``PgTarget``, assembled by the provider's ``PostgresHook``.

``PostgresHook.get_conn`` is where the provider turns a connection into libpq arguments: every
extra except its own switches (``sslmode``, ``sslrootcert``, ``sslcert``/``sslkey``, ``options``,
``connect_timeout``, ``service``, keepalives...), and with ``"iam": true`` a token from AWS (RDS) or
Azure as the password. pgwarden takes those arguments at the point the provider would connect, so
psycopg and the PostgreSQL tools get the same parameters the provider's own operators would.
"""

from __future__ import annotations

from typing import Any

from airflow.providers.postgres.hooks.postgres import PostgresHook

from pgwarden.airflow.hooks.connection import get_connection
from pgwarden.engine.postgres import PgTarget

# get_conn adds these for the "cursor" extra: Python objects for psycopg, not libpq parameters.
_NOT_LIBPQ = ("cursor_factory", "row_factory")


class PgwardenPostgresHook(PostgresHook):
    """``PostgresHook`` that yields the connection's libpq parameters instead of connecting."""

    def _create_connection(self, conn_args: dict[str, Any]) -> Any:
        return dict(conn_args)

    def libpq_params(self) -> dict[str, Any]:
        """libpq keyword -> value, as ``PostgresHook.get_conn`` would connect (``None`` values dropped)."""
        params: dict[str, Any] = self.get_conn()  # type: ignore[assignment]  # see _create_connection
        self.conn = None
        return {k: v for k, v in params.items() if v is not None and k not in _NOT_LIBPQ}

    def target(self) -> PgTarget:
        params = self.libpq_params()
        port = params.pop("port", None)  # None: libpq's default (PGPORT, a service file entry, 5432)
        return PgTarget(
            host=params.pop("host", None),
            port=int(port) if port is not None else None,
            user=params.pop("user", "postgres"),
            password=params.pop("password", None),
            dbname=params.pop("dbname", "postgres"),
            application_name=params.pop("application_name", f"pgwarden:{self.postgres_conn_id}"),
            connect_timeout=int(params.pop("connect_timeout", 10)),
            libpq={keyword: _libpq_value(value) for keyword, value in params.items()},
        )


def _libpq_value(value: Any) -> str:
    # JSON extras may hold booleans and numbers; libpq takes strings, its booleans as 1/0.
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def pg_target(conn_id: str) -> PgTarget:
    """The server an Airflow Postgres connection names; a missing connection says where to define it."""
    return PgwardenPostgresHook(postgres_conn_id=conn_id, connection=get_connection(conn_id)).target()
