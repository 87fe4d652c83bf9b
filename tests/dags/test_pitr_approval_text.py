"""What a person reads at pitr_restore's approval gate: the subject and the plan, rendered from a real backup."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pgwarden.airflow.operators.restore import PLAN_MARKDOWN_KEY, plan_markdown
from pgwarden.core.config import BackupConfig, RepositoryConfig
from pgwarden.core.recovery import RecoveryTarget
from pgwarden.core.units import format_size
from pgwarden.engine.backup_full import take_full_backup
from pgwarden.engine.repository import open_repository
from pgwarden.engine.restore import plan_restore
from pgwarden.engine.wal import collect_wal
from tests.harness.workload import add_items, create_items


@pytest.fixture
def planned(pg, tmp_path, pgwarden_config):
    """A real backup plus WAL with a restore point, its 'latest' plan, and the DAG built for that repository."""
    root = tmp_path / "repo"
    root.mkdir()
    config = RepositoryConfig(url=f"file://{root}")
    repo = open_repository(config)
    create_items(pg, 1000)
    take_full_backup(pg.target(), repo, "db", BackupConfig(), config, workdir=tmp_path / "w0")
    add_items(pg, 100)
    collect_wal(pg.target(), repo, "db", slot="pgwarden_db", workdir=tmp_path / "w1", compression="zstd",
                restore_point="rp_1100", warn_bytes=2**30)
    pgwarden_config(f"""
        db:
          conn_id: pg_db
          repository: {{url: "file://{root}"}}
    """)
    from pgwarden.airflow.dag_factory import build_dags

    return plan_restore(repo, "db", RecoveryTarget("latest")), build_dags()["db.pitr_restore"]


def render(dag, template: str, params: dict, plan_text: str) -> str:
    """Render one of the approve task's templates as Airflow does, with the plan task's XCom."""
    def xcom_pull(task_ids: str, key: str = "return_value"):
        return plan_text if (task_ids, key) == ("plan", PLAN_MARKDOWN_KEY) else None

    return dag.get_template_env().from_string(template).render(params=params, ti=SimpleNamespace(xcom_pull=xcom_pull))


@pytest.mark.integration
def test_approval_shows_the_plan_as_a_readable_list(planned) -> None:
    plan, dag = planned
    approve = dag.get_task("approve")
    params = {**dag.params.validate(), "destination": "/srv/restore/db"}
    text = plan_markdown(plan.to_json_dict())
    body = render(dag, approve.body, params, text)

    assert text in body and "/srv/restore/db" in body and "port any free" in body
    lines = text.splitlines()
    assert all(line.startswith("- **") for line in lines)
    assert f"`{plan.backup.id}`" in text and "`rp_1100`" in text and "the newest WAL" in text
    assert f"{format_size(plan.backup.stored_bytes)} to download" in text
    assert format_size(plan.backup.manifest.database_size_bytes).endswith(("MiB", "GiB"))
    assert f"about {format_size(plan.backup.manifest.database_size_bytes)} of data" in text
    # No raw JSON: no braces, escapes, or byte counts.
    assert "{" not in body and "\\u0027" not in body and "_bytes" not in body
    assert str(plan.backup.stored_bytes) not in body


@pytest.mark.integration
def test_approval_subject_has_no_stray_space(planned) -> None:
    _, dag = planned
    approve = dag.get_task("approve")
    latest = render(dag, approve.subject, dag.params.validate(), "")
    assert latest == "Restore db to latest?"
    named = render(dag, approve.subject, {**dag.params.validate(), "target_kind": "name", "target_value": "rp_1100"},
                   "")
    assert named == "Restore db to name rp_1100?"


@pytest.mark.integration
def test_plan_task_with_the_form_defaults_pushes_what_the_approval_shows(planned) -> None:
    """The plan task of the real DAG, run by Airflow with the default params (restore to latest)."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    plan, dag = planned
    run = dag.partial_subset(task_ids=["plan"], include_downstream=False, include_upstream=False).test()
    assert {ti.task_id: ti.state for ti in run.get_task_instances()} == {"plan": "success"}
    with create_session() as session:
        [row] = session.scalars(XComModel.get_many(run_id=run.run_id, dag_ids=dag.dag_id, task_ids="plan",
                                                   key=PLAN_MARKDOWN_KEY)).all()
        assert XComModel.deserialize_value(row) == plan_markdown(plan.to_json_dict())
