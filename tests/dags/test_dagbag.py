"""Every DAG file imports cleanly, quickly, and without touching the network (parsed with none)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Enforced by Airflow itself (dagbag_import_timeout turns a slow file into an import error); the
# parse-time *target* is measured in bench/, tests never assert on time.
PARSE_BUDGET_SECONDS = 30


def dagbag(dag_folder: Path = ROOT / "dags"):
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(dag_folder))


def test_project_dags_import_without_errors() -> None:
    bag = dagbag()
    assert bag.import_errors == {}
    assert "appdb.healthcheck" in bag.dag_ids
    for dag in bag.dags.values():
        database, _, concern = dag.dag_id.partition(".")
        assert {"pgwarden", f"db:{database}"} <= set(dag.tags)
        assert dag.doc_md and "When it fails" in dag.doc_md
        assert dag.max_active_runs == 1 and not dag.catchup


def test_broken_database_entry_is_an_import_error_and_a_stand_in_for_that_database_only(tmp_path,
                                                                                        monkeypatch) -> None:
    config = tmp_path / "pgwarden.yaml"
    config.write_text(textwrap.dedent("""
        databases:
          good:
            conn_id: pg_good
            repository: {url: "s3://bucket/good"}
          broken:
            conn_id: pg_broken
            repository: {url: "ftp://nowhere/x"}
    """))
    monkeypatch.setenv("PGWARDEN_CONFIG", str(config))
    bag = dagbag()
    assert "good.healthcheck" in bag.dag_ids
    assert [d for d in bag.dag_ids if d.startswith("broken.")] == ["broken.config_error"]
    [(path, message)] = bag.import_errors.items()
    assert path.endswith("pgwarden_config_errors.py")
    assert "database 'broken'" in message and "databases.broken.repository.url" in message
    assert "1 database entry is invalid and has no DAGs but a failing" in message


def network_namespace_available() -> str | None:
    """None when ``unshare -n`` can make a process with no network here; else why not."""
    if shutil.which("unshare") is None:
        return "the unshare command is not installed (util-linux)"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"unshare -n does not work here (needs root or user namespaces): {probe.stderr.strip()}"
    return None


NO_NETNS = network_namespace_available()
needs_netns = pytest.mark.skipif(NO_NETNS is not None, reason=f"parse without a network: {NO_NETNS}")

PARSE_SCRIPT = textwrap.dedent("""
    import json, sys
    from airflow.dag_processing.dagbag import DagBag
    bag = DagBag(dag_folder=sys.argv[1])
    clients = sorted(m for m in sys.modules if m.partition(".")[0] in ("boto3", "botocore", "psycopg"))
    print(json.dumps({"dag_ids": sorted(bag.dag_ids), "import_errors": bag.import_errors, "clients": clients}))
""")


def parse_in_child(dag_folder: Path, *, network: bool, **env_vars: str) -> dict:
    """Parse ``dag_folder`` in a fresh interpreter; without ``network`` in its own network namespace.

    A new network namespace has no interface up, not even loopback: any TCP connection, from Python
    or from C (libpq), fails at once, and the DagBag reports it as an import error of that file.
    """
    env = {**os.environ, "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": str(PARSE_BUDGET_SECONDS), **env_vars}
    argv = [sys.executable, "-c", PARSE_SCRIPT, str(dag_folder)]
    result = subprocess.run(argv if network else ["unshare", "-n", *argv],
                            capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@needs_netns
def test_parse_needs_no_network_and_stays_in_budget() -> None:
    parsed = parse_in_child(ROOT / "dags", network=False)
    assert parsed["import_errors"] == {}
    assert "appdb.healthcheck" in parsed["dag_ids"]


def test_parse_imports_no_database_or_aws_client() -> None:
    """Hooks and clients are imported inside tasks: boto3 alone would add ~0.3 s to every parse of dags/."""
    parsed = parse_in_child(ROOT / "dags", network=True)
    assert parsed["import_errors"] == {} and "appdb.gdpr_erasure" in parsed["dag_ids"]
    assert parsed["clients"] == []


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_paused_while_the_dags_are_built_and_left_as_it_was(enabled: bool, tmp_path,
                                                                              monkeypatch) -> None:
    """The factory builds without cyclic garbage collection (bench dag_parse), and restores the collector's state
    afterwards, also when the build fails."""
    import gc

    from pgwarden.airflow.dag_factory import build_dags
    from pgwarden.core.config import ConfigError

    collections: list[int] = []

    def record(phase: str, info: dict) -> None:
        if phase == "start":
            collections.append(info["generation"])

    thresholds = gc.get_threshold()
    gc.set_threshold(100)  # a young-generation collection every 100 net allocations while it runs
    gc.callbacks.append(record)
    (gc.enable if enabled else gc.disable)()
    try:
        collections.clear()
        dags = build_dags()
        # Running, the collector would run dozens of times over the build's allocations (55 for this config);
        # a few may fall in the allocations of the call itself, before the pause begins.
        assert "appdb.healthcheck" in dags and len(collections) <= 3
        assert gc.isenabled() is enabled
        unreadable = tmp_path / "pgwarden.yaml"
        unreadable.write_text("databases: [")
        monkeypatch.setenv("PGWARDEN_CONFIG", str(unreadable))
        with pytest.raises(ConfigError):
            build_dags()
        assert gc.isenabled() is enabled
    finally:
        gc.callbacks.remove(record)
        gc.set_threshold(*thresholds)
        gc.enable()


@pytest.mark.parametrize("frozen_before", [False, True])
def test_what_was_built_goes_to_the_oldest_generation_still_collectable(frozen_before: bool) -> None:
    """After the build its objects are in the oldest generation (no young collection walks them again) and not
    frozen: a full collection still sees them. A process that froze objects itself keeps them as they were."""
    import gc

    from pgwarden.airflow.dag_factory import build_dags

    assert gc.get_freeze_count() == 0
    if frozen_before:
        gc.freeze()
    frozen = gc.get_freeze_count()
    try:
        dag = build_dags()["appdb.healthcheck"]
        assert gc.get_freeze_count() == frozen
        oldest = any(obj is dag for obj in gc.get_objects(generation=2))
        young = any(obj is dag for obj in gc.get_objects(generation=0) + gc.get_objects(generation=1))
        assert (oldest, young) == ((False, True) if frozen_before else (True, False))
    finally:
        gc.unfreeze()


def dag_file_connecting_at_parse_time(folder: Path, server) -> Path:
    """A DAG file that opens a database connection (libpq, in C) when it is imported."""
    folder.mkdir()
    (folder / "connects_at_parse.py").write_text(textwrap.dedent(f"""
        import psycopg
        from airflow.sdk import DAG

        psycopg.connect(host="127.0.0.1", port={server.port}, user="postgres", dbname="postgres",
                        connect_timeout=10).close()
        with DAG("connects_at_parse", schedule=None):
            pass
    """))
    return folder


@pytest.mark.integration
@needs_netns
def test_a_dag_file_that_connects_at_parse_time_is_caught(pg, tmp_path) -> None:
    """The check above can fail: a DAG file that connects at import is an import error without a network."""
    folder = dag_file_connecting_at_parse_time(tmp_path / "dags", pg)
    with_network = parse_in_child(folder, network=True)
    assert with_network["dag_ids"] == ["connects_at_parse"] and with_network["import_errors"] == {}  # it connects
    assert "psycopg" in with_network["clients"]  # and the clients check of the project's parse can fail

    without = parse_in_child(folder, network=False)
    assert without["dag_ids"] == []
    [(path, message)] = without["import_errors"].items()
    assert path.endswith("connects_at_parse.py") and "OperationalError" in message, message


@pytest.mark.integration
@pytest.mark.skipif(NO_NETNS is None, reason="a network namespace is available: the tests above parse without one")
def test_parse_opens_no_connection_to_the_configured_server(pg_factory, tmp_path) -> None:
    """Without a network namespace: the project's config points at a server that logs every connection.

    Weaker than no network at all (it covers connections to that server only), and it can fail: the
    DAG file that connects at parse time shows up in the same log.
    """
    from tests.harness.airflow_conns import postgres_conn

    server = pg_factory(settings={"log_connections": "on"})
    parsed = parse_in_child(ROOT / "dags", network=True, AIRFLOW_CONN_PGWARDEN_APPDB=postgres_conn(server))
    assert parsed["import_errors"] == {} and "appdb.healthcheck" in parsed["dag_ids"]
    assert "connection received" not in server.logfile.read_text()

    parse_in_child(dag_file_connecting_at_parse_time(tmp_path / "dags", server), network=True)
    assert "connection received" in server.logfile.read_text()
