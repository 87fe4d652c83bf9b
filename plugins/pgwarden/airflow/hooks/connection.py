"""Looking up an Airflow connection, with an error that says where to define a missing one."""

from __future__ import annotations

from typing import Any

from pgwarden.engine.errors import PermanentError


def get_connection(conn_id: str) -> Any:
    from airflow.sdk import BaseHook

    try:
        return BaseHook.get_connection(conn_id)
    except Exception as exc:  # Airflow raises its own not-found type, differing by context
        raise PermanentError(
            f"Airflow connection {conn_id!r} is not defined: add it in Admin > Connections, "
            f"a secrets backend, or as the environment variable AIRFLOW_CONN_{conn_id.upper()}"
        ) from exc
