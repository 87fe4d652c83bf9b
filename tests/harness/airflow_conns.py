"""Airflow connections for tests, given the way deployments give them: AIRFLOW_CONN_<ID> variables."""

from __future__ import annotations

import json

from pgwarden.engine.cluster import LocalCluster
from tests.harness.s3 import MotoServer


def conn_var(conn_id: str) -> str:
    """The environment variable Airflow reads connection ``conn_id`` from."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


def postgres_conn(server: LocalCluster, *, user: str = "postgres", dbname: str = "postgres",
                  password: str | None = None) -> str:
    conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": server.port, "login": user, "schema": dbname}
    if password is not None:
        conn["password"] = password
    return json.dumps(conn)


def set_postgres_conn(monkeypatch, conn_id: str, server: LocalCluster, **kwargs) -> None:
    monkeypatch.setenv(conn_var(conn_id), postgres_conn(server, **kwargs))


def aws_conn_env(conn_id: str, s3: MotoServer) -> dict[str, str]:
    """The AWS connection to ``s3`` as a child process's environment (what its hooks resolve)."""
    return {conn_var(conn_id): s3.airflow_conn_uri()}
