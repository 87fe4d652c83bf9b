"""Airflow connections -> engine settings, through the providers' own hooks.

This package is the one seam between Airflow connections and everything else: operators call it
inside tasks, and the CLI calls it (only from ``pgwarden.cli.connections``, never the operators) to
resolve the same connections from ``AIRFLOW_CONN_<ID>`` variables or a secrets backend without a
running scheduler.

- ``pg_target(conn_id)``: a Postgres connection as a ``PgTarget`` (every libpq extra, IAM tokens);
- ``s3_settings(conn_id)``: an AWS connection as ``S3Settings`` (session, role, verify, botocore config);
- ``open_repository(config)``: the repository a ``RepositoryConfig`` names, reached with those settings;
- ``erasure_key(source)``: the erasure HMAC key from the connection or variable the config names.
"""

from __future__ import annotations

from pgwarden.airflow.hooks.aws import s3_settings
from pgwarden.airflow.hooks.postgres import pg_target
from pgwarden.airflow.hooks.secrets import erasure_key
from pgwarden.core.config import RepositoryConfig

__all__ = ["erasure_key", "open_repository", "pg_target", "s3_settings"]


def open_repository(config: RepositoryConfig):
    from pgwarden.engine.repository import open_repository as _open

    return _open(config, s3_settings(config.conn_id) if config.scheme == "s3" else None)
