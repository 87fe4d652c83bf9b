"""Airflow connections -> engine settings, in one declarative place (as astronomer-cosmos does).

Used by the operators inside tasks and by the CLI, which resolves connections from the
environment (``AIRFLOW_CONN_<ID>``) or a secrets backend without a running scheduler.
"""

from __future__ import annotations

from typing import Any

from pgwarden.core.config import RepositoryConfig
from pgwarden.engine.errors import PermanentError
from pgwarden.engine.postgres import PgTarget


def _get_connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # Airflow raises its own not-found type, differing by context
        raise PermanentError(
            f"Airflow connection {conn_id!r} is not defined: add it in Admin > Connections, "
            f"a secrets backend, or as the environment variable AIRFLOW_CONN_{conn_id.upper()}"
        ) from exc


def pg_target(conn_id: str) -> PgTarget:
    """A Postgres connection: host, port, login, password, schema (= database), extra.sslmode."""
    conn = _get_connection(conn_id)
    extra = conn.extra_dejson or {}
    return PgTarget(
        host=conn.host or "localhost",
        port=int(conn.port or 5432),
        user=conn.login or "postgres",
        password=conn.password or None,
        dbname=conn.schema or extra.get("dbname") or "postgres",
        sslmode=extra.get("sslmode"),
        application_name=f"pgwarden:{conn_id}",
    )


def s3_settings(conn_id: str | None):
    """An AWS connection: login/password = access keys; extra.endpoint_url, extra.region_name.

    Without a conn_id, boto3's own chain applies (environment, instance profile, AWS_ENDPOINT_URL).
    """
    from pgwarden.engine.repository import S3Settings

    if conn_id is None:
        return S3Settings()
    conn = _get_connection(conn_id)
    extra = conn.extra_dejson or {}
    return S3Settings(
        endpoint_url=extra.get("endpoint_url") or (extra.get("service_config") or {}).get("s3", {}).get(
            "endpoint_url"),
        region_name=extra.get("region_name"),
        aws_access_key_id=conn.login or extra.get("aws_access_key_id"),
        aws_secret_access_key=conn.password or extra.get("aws_secret_access_key"),
        aws_session_token=extra.get("aws_session_token"),
    )


def open_repository(config: RepositoryConfig):
    from pgwarden.engine.repository import open_repository as _open

    return _open(config, s3_settings(config.conn_id) if config.scheme == "s3" else None)
