"""Airflow connections for tests, given the way deployments give them: AIRFLOW_CONN_<ID> variables."""

from __future__ import annotations

import json

from pgwarden.engine.cluster import LocalCluster


def postgres_conn(server: LocalCluster, *, user: str = "postgres", dbname: str = "postgres",
                  password: str | None = None) -> str:
    conn = {"conn_type": "postgres", "host": "127.0.0.1", "port": server.port, "login": user, "schema": dbname}
    if password is not None:
        conn["password"] = password
    return json.dumps(conn)


def set_postgres_conn(monkeypatch, conn_id: str, server: LocalCluster, **kwargs) -> None:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", postgres_conn(server, **kwargs))
