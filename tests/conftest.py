"""Shared fixtures: real PostgreSQL servers, a real S3 endpoint, a real Airflow metadata DB.

Nothing here mocks the database or pgwarden's own code.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.airflow_home import prepare_airflow_home
from tests.harness.postgres import postgres_server
from tests.harness.s3 import MotoServer, start_moto


def pytest_configure(config: pytest.Config) -> None:
    # Airflow reads AIRFLOW_HOME at import time, so the home is prepared before collection imports it.
    if "PGWARDEN_TEST_AIRFLOW_HOME" not in os.environ:
        os.environ["PGWARDEN_TEST_AIRFLOW_HOME"] = str(prepare_airflow_home())


def pytest_unconfigure(config: pytest.Config) -> None:
    home = os.environ.get("AIRFLOW_HOME", "")
    if "pgwarden-airflow-" in home:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pg_factory():
    """Start PostgreSQL servers with per-test settings; all are stopped and removed afterwards.

    ``pg_factory(settings={"wal_level": "minimal", "max_wal_senders": "0"}, hba=(...))``
    """
    stack = []

    def start(settings=None, hba=None):
        from pgwarden.engine.cluster import DEFAULT_HBA

        ctx = postgres_server(settings=settings, hba=hba or DEFAULT_HBA)
        server = ctx.__enter__()
        stack.append(ctx)
        return server

    yield start
    for ctx in reversed(stack):
        ctx.__exit__(None, None, None)


@pytest.fixture
def pg(pg_factory):
    """One server with replication-ready defaults."""
    return pg_factory()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    server = start_moto()
    yield server
    server.stop()


@pytest.fixture
def s3(moto_server: MotoServer) -> Iterator[MotoServer]:
    """The S3 endpoint, emptied after the test; restarted if a test stopped it."""
    if moto_server.process is None or moto_server.process.poll() is not None:
        moto_server.start()
    yield moto_server
    if moto_server.process is None or moto_server.process.poll() is not None:
        moto_server.start()
    moto_server.reset()


@pytest.fixture
def file_repo(tmp_path: Path) -> str:
    path = tmp_path / "repo"
    path.mkdir()
    return f"file://{path}"
