"""The CLI's one seam to Airflow connections.

The CLI must reach the same servers and buckets as the DAG tasks, with every extra the Postgres and
Amazon providers document (SSL files, IAM auth, assume-role, CA bundles, botocore settings), resolved
from ``AIRFLOW_CONN_<ID>`` variables or a secrets backend without a running scheduler. That mapping is
``pgwarden.airflow.hooks``, built on the providers' own hooks; writing a second one for the CLI would
let the two drift. So this module imports ``pgwarden.airflow.hooks`` and nothing else from
``pgwarden.airflow`` (operators and pipelines are no business of the CLI), and only when a command
needs a connection: ``pgwarden config validate`` and ``--help`` never import Airflow.
"""

from __future__ import annotations

import os

from pgwarden.core.config import RepositoryConfig

# Airflow logs to stdout at INFO by default (the Amazon provider says where credentials came from), which
# would corrupt the JSON the commands print there. Set before Airflow is first imported in this process.
os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "WARNING"


def pg_target(conn_id: str):
    """The Postgres connection ``conn_id`` as the engine's ``PgTarget``."""
    from pgwarden.airflow.hooks import pg_target as resolve

    return resolve(conn_id)


def open_repository(config: RepositoryConfig):
    """The repository ``config`` names, reached through its Airflow connection (if any)."""
    from pgwarden.airflow.hooks import open_repository as resolve

    return resolve(config)


def erasure_key(source) -> bytes:
    """The erasure HMAC key the config's ``lifecycle.erasure.hmac_key`` names (connection or variable)."""
    from pgwarden.airflow.hooks import erasure_key as resolve

    return resolve(source)
