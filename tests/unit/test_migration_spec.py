"""Expand/contract files parsed and planned without a server: errors name file, operation index and field."""

from __future__ import annotations

import pytest

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.migrations.planner import plan_migration
from pgwarden.core.migrations.snapshot import (
    ColumnInfo,
    IndexInfo,
    TableSnapshot,
    catalog_from_json,
    catalog_to_json,
)
from pgwarden.core.migrations.spec import SpecError, parse_spec
from pgwarden.core.migrations.steps import PlanError

PEOPLE = QualifiedName("User Data", "people")
CATALOG = {PEOPLE: TableSnapshot(
    PEOPLE, (ColumnInfo("id", "bigint", True, None), ColumnInfo("e-mail", "text", True, None)),
    (IndexInfo("people_pkey", ("id",), True, True, True, False, "people_pkey", "..."),), estimated_rows=5)}


@pytest.mark.parametrize(("text", "expected"), [
    ("operations: [", "009_x.yaml: not valid YAML at line 1"),
    ("steps: []", "009_x.yaml: expected a mapping with the key operations"),
    ("operations: [{drop_index: {index: i}}]\nrehearse: sometimes", "009_x.yaml.rehearse: expected true or false"),
    ("operations: [{nope: {}}]", "009_x.yaml: operations[0].nope: unknown operation 'nope'"),
    ("operations: [{drop_index: {index: i}}, {rename_column: {table: t, from: a}}]",
     "009_x.yaml: operations[1].rename_column.to: Field required"),
    ("operations: [{create_index: {table: t, name: i, columns: [a], colour: red}}]",
     "009_x.yaml: operations[0].create_index.colour: Extra inputs are not permitted"),
    ("operations: [{rename_column: {table: 'a.b.c', from: a, to: b}}]", "009_x.yaml: operations[0].rename_column.table: Value error, 'a.b.c' has 3"),
])
def test_spec_errors_name_file_index_and_field(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "009_x.yaml")
    assert str(caught.value).startswith(expected)


def test_file_name_must_carry_a_version() -> None:
    with pytest.raises(SpecError, match="NNN_name.yaml"):
        parse_spec("operations: [{drop_index: {index: i}}]", "rename.yaml")


def test_quoted_names_survive_into_every_phase_and_the_catalog_round_trips() -> None:
    spec = parse_spec("operations:\n  - rename_column: {table: '\"User Data\".people', from: '\"e-mail\"', "
                      "to: '\"E Mail\"'}\n", "010_rename.yaml")
    plan = plan_migration(spec, catalog_from_json(catalog_to_json(CATALOG)))
    text = plan.render()
    assert 'ALTER TABLE "User Data"."people" RENAME COLUMN "e-mail" TO "E Mail";' in text
    assert 'ADD COLUMN IF NOT EXISTS "E Mail" text' in text
    assert [s.outside_transaction for s in plan.steps("expand")] == [False]
    assert plan.backfills()[0][1].key == ("id",)


def test_a_table_without_a_usable_key_is_refused_at_plan_time() -> None:
    keyless = {PEOPLE: TableSnapshot(PEOPLE, CATALOG[PEOPLE].columns)}
    spec = parse_spec("operations:\n  - drop_index: {index: x}\n  - rename_column: {table: '\"User Data\".people', "
                      "from: '\"e-mail\"', to: mail}\n", "011_x.yaml")
    with pytest.raises(PlanError, match=r"^011_x.yaml: operations\[0\].drop_index.index: index public.x does not"):
        plan_migration(spec, keyless)
    spec = parse_spec("operations:\n  - rename_column: {table: '\"User Data\".people', from: '\"e-mail\"', "
                      "to: mail}\n", "011_x.yaml")
    with pytest.raises(PlanError, match=r"operations\[0\].rename_column.table: .* has no primary key"):
        plan_migration(spec, keyless)


def test_rehearse_is_off_unless_the_file_turns_it_on() -> None:
    body = "operations: [{drop_index: {index: i}}]"
    assert parse_spec(body, "009_x.yaml").rehearse is False
    assert parse_spec(body + "\nrehearse: true", "009_x.yaml").rehearse is True
