"""Every pgwarden DAG in the DagBag is ready to operate: docs in four parts, owner, tags, no overlapping
runs, the retry policy and the failure notifier on every task, a deadline alert when scheduled.

It walks whatever DAGs the project's config produces (and a broken entry's stand-in), so a new
concern's DAGs are held to the same rules as soon as they are built."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC_PARTS = ("What it does", "What it touches", "Run it by hand", "When it fails")


def pgwarden_dags(config: Path | None = None):
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(ROOT / "dags"))
    return [dag for dag in bag.dags.values() if "pgwarden" in dag.tags]


def problems_of(dag) -> list[str]:
    from pgwarden.airflow.operating.deadlines import CALLBACK
    from pgwarden.airflow.operating.notify import FailureNotifier
    from pgwarden.airflow.operating.retry import RETRY_POLICY

    database, _, concern = dag.dag_id.partition(".")
    found = []
    missing_docs = [part for part in DOC_PARTS if part not in (dag.doc_md or "")]
    if missing_docs:
        found.append(f"doc_md lacks {missing_docs}")
    if not {"pgwarden", concern.split(".")[0], f"db:{database}"} <= set(dag.tags):
        found.append(f"tags {sorted(dag.tags)}")
    if dag.max_active_runs != 1:
        found.append(f"max_active_runs {dag.max_active_runs}")
    for task in dag.tasks:
        if not task.owner or task.owner == "airflow":
            found.append(f"{task.task_id}: owner {task.owner!r}")
        if task.retry_policy is None or task.retry_policy.serialize() != RETRY_POLICY.serialize():
            found.append(f"{task.task_id}: retry policy {task.retry_policy!r}")
        callbacks = task.on_failure_callback or []
        callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
        if not any(isinstance(c, FailureNotifier) for c in callbacks):
            found.append(f"{task.task_id}: no FailureNotifier in on_failure_callback")
    if dag.timetable.can_be_scheduled and concern != "config_error":
        paths = [alert.callback.path for alert in dag.deadline or []]
        if CALLBACK not in paths:
            found.append(f"scheduled but no deadline alert calling {CALLBACK} ({paths})")
    return found


def test_every_project_dag_is_operable() -> None:
    dags = pgwarden_dags()
    assert len(dags) >= 6  # the demo database's healthcheck, backups, drill, PITR and purge at least
    problems = {dag.dag_id: p for dag in dags if (p := problems_of(dag))}
    assert problems == {}


def test_a_broken_entrys_stand_in_is_operable_too(tmp_path, monkeypatch) -> None:
    config = tmp_path / "pgwarden.yaml"
    config.write_text(textwrap.dedent("""
        defaults:
          notify: {webhook: {http_conn_id: alerts}}
        databases:
          broken:
            conn_id: pg_broken
            repository: {url: "ftp://nowhere/x"}
    """))
    monkeypatch.setenv("PGWARDEN_CONFIG", str(config))
    [dag] = pgwarden_dags()
    assert dag.dag_id == "broken.config_error"
    assert problems_of(dag) == []
    assert dag.tasks[0].on_failure_callback[0].notify.channels == ["webhook"]


@pytest.mark.parametrize("yaml_text, key", [
    ("notify: {email: {to: [not-an-address]}}", "defaults.notify.email.to"),
    ("notify: {webhook: {url: 'https://hooks.example.com/secret'}}", "defaults.notify.webhook.url"),
    ("deadlines: {backup_ful: 2h}", "defaults.deadlines.backup_ful"),
    ("deadlines: {backup_full: soon}", "defaults.deadlines.backup_full"),
])
def test_operating_config_mistakes_name_their_key(yaml_text: str, key: str) -> None:
    from pgwarden.core.config import ConfigError, parse_config

    with pytest.raises(ConfigError) as caught:
        parse_config(f"defaults:\n  {yaml_text}\ndatabases: {{}}\n", "pgwarden.yaml")
    assert key in [issue.path for issue in caught.value.issues]
