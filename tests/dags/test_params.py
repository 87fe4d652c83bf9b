"""Every DAG's trigger form works with its defaults: each default validates and no optional param is required.

Airflow validates params with JSON Schema (``Param.resolve``) and the trigger form disables its Trigger
button while a param it considers required is empty. Airflow 3.3's UI rule (airflow-core/src/airflow/ui/
src/components/FlexibleForm/isParamRequired.tsx, used by FlexibleForm.tsx's ``recheckSection``): a param is
required when its schema has a ``type`` that is not an array containing "null"; a required param whose
value is null, undefined or "" blocks the form.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, FormatChecker

ROOT = Path(__file__).resolve().parents[2]

FULL_FEATURED = """
defaults: {owner: ops, retries: 1, retry_delay: 1m}
databases:
  shop:
    conn_id: pg_shop
    repository: {url: "s3://bucket/pg", conn_id: s3}
    healthcheck: {standbys: [{conn_id: pg_shop_standby}]}
    backup:
      count_rows: [public.items]
      logical_dump: {enabled: true}
      offsite: {url: "s3://offsite/pg", conn_id: s3}
    verify: {amcheck_tables: [public.items], old_backup_every: 2}
  files:
    conn_id: pg_files
    repository: {url: "file:///var/backups/pg"}
"""


def ui_requires(schema: dict) -> bool:
    """Airflow 3.3 UI's ``isRequired`` (isParamRequired.tsx), in Python."""
    kind = schema.get("type")
    return bool(kind) and not (isinstance(kind, list) and "null" in kind)


def is_empty(value: object) -> bool:
    return value is None or value == ""


def all_dags(config: Path | None, monkeypatch) -> dict:
    from pgwarden.airflow.dag_factory import build_dags

    if config is not None:
        monkeypatch.setenv("PGWARDEN_CONFIG", str(config))
    return build_dags()


@pytest.fixture(params=["demo", "full"])
def dags(request, tmp_path, monkeypatch) -> dict:
    path = None
    if request.param == "full":
        path = tmp_path / "pgwarden.yaml"
        path.write_text(textwrap.dedent(FULL_FEATURED))
    built = all_dags(path, monkeypatch)
    assert any(dag.params for dag in built.values()), "no DAG with params: nothing was checked"
    return built


def test_every_default_validates_and_the_form_does_not_block_it(dags) -> None:
    problems = []
    for dag_id, dag in sorted(dags.items()):
        for name, param in dag.params.items():
            schema = dict(param.schema)
            errors = [e.message for e in Draft202012Validator(schema, format_checker=FormatChecker())
                      .iter_errors(param.value)]
            if errors:
                problems.append(f"{dag_id} param {name!r}: default {param.value!r} is invalid: {errors}")
            if ui_requires(schema) and is_empty(param.value):
                problems.append(f"{dag_id} param {name!r}: the trigger form requires it but its default is empty")
    assert not problems, "\n".join(problems)


def test_params_that_may_stay_empty_are_optional_in_the_form(dags) -> None:
    """A param documented as ``empty: <what happens>`` must accept null and not be required."""
    optional = 0
    for dag_id, dag in dags.items():
        for name, param in dag.params.items():
            schema = dict(param.schema)
            if "empty:" not in (param.description or ""):
                continue
            optional += 1
            assert not ui_requires(schema), f"{dag_id} param {name!r} says empty is fine but the form requires it"
            assert Draft202012Validator(schema).is_valid(None), f"{dag_id} param {name!r} rejects an empty value"
    assert optional >= 4  # pitr_restore's target_value, backup_id and port; verify_restore's backup_id


def test_pitr_restore_triggers_with_its_defaults(dags) -> None:
    """The emergency path: the form's defaults alone are a valid 'restore to latest'."""
    [pitr] = [d for d in dags.values() if d.dag_id.endswith(".pitr_restore")][:1]
    resolved = pitr.params.validate()
    assert resolved["target_kind"] == "latest"
    assert resolved["target_value"] is None and resolved["backup_id"] is None and resolved["port"] is None


def test_pgwarden_operators_read_params_from_the_context_not_through_templates(dags) -> None:
    """A param rendered into a template arrives as text ("None", "False", ''), so the operator would have
    to guess the value back; the operators read ``context["params"]`` in ``execute()`` instead."""
    from pgwarden.airflow.operators.base import PgwardenOperator

    checked = 0
    templated = []
    for dag_id, dag in dags.items():
        for task in dag.tasks:
            if not isinstance(task, PgwardenOperator):
                continue
            checked += 1
            for field in task.template_fields:
                value = getattr(task, field)
                if isinstance(value, str) and "params" in value:
                    templated.append(f"{dag_id}.{task.task_id}.{field} = {value!r}")
    assert checked >= 8, "no pgwarden operator found: nothing was checked"
    assert not templated, "\n".join(templated)
