"""An expand/contract migration file (``NNN_name.yaml``) parsed into typed operations.

::

    operations:
      - rename_column: {table: public.users, from: email, to: email_address}
      - create_index: {table: public.users, name: users_email_address, columns: [email_address]}

``rehearse: true`` beside ``operations`` makes the migration's DAG rehearse it on a restored copy of
the newest backup before expand runs on production (a run Param can ask for it too; README "Rehearsal").

Each operation is one key naming its kind, holding its fields. Identifiers are written as in SQL
(``"User Data"."e-mail"``); expressions (``up``, ``down``, ``check``, ``default``...) are SQL text the
server type-checks when the migration is planned against it. A mistake is a ``SpecError`` naming the
file, the operation's index and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from pgwarden.core.config_types import TableName
from pgwarden.core.lifecycle.config import ColumnName


class SpecError(ValueError):
    """A migration file that cannot be planned; the message names file, operation index and field."""

    def __init__(self, file: str, message: str, index: int | None = None, field: str | None = None) -> None:
        self.file, self.index, self.field = file, index, field
        where = file + (f": operations[{index}]" if index is not None else "") + (f".{field}" if field else "")
        super().__init__(f"{where}: {message}")


class Operation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    kind: str = Field(default="", exclude=True)


def _sql_text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("expected SQL text")
    return value


class RenameColumn(Operation):
    """Expand adds ``to`` kept equal to ``from`` by a trigger both ways; contract drops the copy and renames."""

    kind: Literal["rename_column"] = "rename_column"
    table: TableName
    from_: ColumnName = Field(alias="from")
    to: ColumnName


class ChangeColumnType(Operation):
    """A new column of ``type`` filled by ``up`` (an expression of the old column, by its name) and written
    back by ``down`` (an expression of the new column, by its final name); contract swaps them."""

    kind: Literal["change_column_type"] = "change_column_type"
    table: TableName
    column: ColumnName
    type: str
    up: str
    down: str
    # The final name; by default the column keeps its name (new writers use the temporary one until contract).
    to: ColumnName | None = None

    _text = field_validator("type", "up", "down")(_sql_text)


class AddColumn(Operation):
    kind: Literal["add_column"] = "add_column"
    table: TableName
    column: ColumnName
    type: str
    default: str | None = None
    not_null: bool = False

    _text = field_validator("type")(_sql_text)


class SetNotNull(Operation):
    """``fill``: an expression (of the row's columns) the backfill writes where the column is NULL."""

    kind: Literal["set_not_null"] = "set_not_null"
    table: TableName
    column: ColumnName
    fill: str | None = None


class DropNotNull(Operation):
    kind: Literal["drop_not_null"] = "drop_not_null"
    table: TableName
    column: ColumnName


class AddCheck(Operation):
    kind: Literal["add_check"] = "add_check"
    table: TableName
    name: ColumnName
    check: str

    _text = field_validator("check")(_sql_text)


class References(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    table: TableName
    columns: tuple[ColumnName, ...] = Field(min_length=1)


class AddForeignKey(Operation):
    kind: Literal["add_foreign_key"] = "add_foreign_key"
    table: TableName
    name: ColumnName
    columns: tuple[ColumnName, ...] = Field(min_length=1)
    references: References
    on_delete: Literal["no action", "restrict", "cascade", "set null", "set default"] = "no action"


class AddUnique(Operation):
    kind: Literal["add_unique"] = "add_unique"
    table: TableName
    name: ColumnName
    columns: tuple[ColumnName, ...] = Field(min_length=1)


class CreateIndex(Operation):
    kind: Literal["create_index"] = "create_index"
    table: TableName
    name: ColumnName
    columns: tuple[ColumnName, ...] = Field(min_length=1)
    unique: bool = False
    method: Literal["btree", "hash", "gin", "gist", "brin"] = "btree"
    where: str | None = None


class DropIndex(Operation):
    kind: Literal["drop_index"] = "drop_index"
    index: TableName  # schema.name of the index (schema public when omitted)


class DropColumn(Operation):
    kind: Literal["drop_column"] = "drop_column"
    table: TableName
    column: ColumnName


class AddSoftDelete(Operation):
    kind: Literal["add_soft_delete"] = "add_soft_delete"
    table: TableName
    column: ColumnName = "deleted_at"


class RawSql(Operation):
    """Runs ``up`` at expand and ``down`` at rollback; ``outside_transaction`` for CONCURRENTLY statements."""

    kind: Literal["raw_sql"] = "raw_sql"
    up: str
    down: str
    table: TableName | None = None
    outside_transaction: bool = False

    _text = field_validator("up", "down")(_sql_text)


OPERATIONS: dict[str, type[Operation]] = {
    cls.model_fields["kind"].default: cls
    for cls in (RenameColumn, ChangeColumnType, AddColumn, SetNotNull, DropNotNull, AddCheck, AddForeignKey,
                AddUnique, CreateIndex, DropIndex, DropColumn, AddSoftDelete, RawSql)
}


class MigrationSpec(BaseModel):
    model_config = ConfigDict(frozen=True)
    file: str
    version: str
    name: str
    operations: tuple[Operation, ...]
    # Rehearse on a restored copy of the newest backup before expand touches production (README "Rehearsal").
    rehearse: bool = False


def _load_yaml(text: str) -> Any:
    """libyaml's loader where installed (as for the config): DAG parsing reads every gated file of every
    database, ~10x faster. On an error the pure-Python loader reads it again, for its wording and line."""
    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return yaml.safe_load(text)


def parse_spec(text: str, file: str) -> MigrationSpec:
    """Parse ``text`` (the content of ``file``, ``NNN_name.yaml``) into typed operations."""
    stem = Path(file).name.removesuffix(".yaml").removesuffix(".yml")
    version, _, name = stem.partition("_")
    if not (version.isdigit() and name):
        raise SpecError(file, "the file name must be NNN_name.yaml (a version number, an underscore, a name)")
    try:
        document = _load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" at line {mark.line + 1}" if mark is not None else ""
        raise SpecError(file, f"not valid YAML{line}: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(document, dict) or "operations" not in document or set(document) - {"operations", "rehearse"}:
        raise SpecError(file, "expected a mapping with the key operations (a list of operations) and optionally "
                        "rehearse (true or false)")
    rehearse = document.get("rehearse", False)
    if not isinstance(rehearse, bool):
        raise SpecError(file, "expected true or false", field="rehearse")
    items = document["operations"]
    if not isinstance(items, list) or not items:
        raise SpecError(file, "operations must be a non-empty list", field=None)
    operations = []
    for index, item in enumerate(items):
        if not isinstance(item, dict) or len(item) != 1:
            raise SpecError(file, "each operation is a mapping with one key, its kind "
                            f"(one of {', '.join(OPERATIONS)})", index)
        (kind, fields), = item.items()
        model = OPERATIONS.get(kind)
        if model is None:
            raise SpecError(file, f"unknown operation {kind!r}; known: {', '.join(OPERATIONS)}", index, str(kind))
        if not isinstance(fields, dict):
            raise SpecError(file, "expected a mapping of fields", index, kind)
        try:
            operations.append(model.model_validate(fields))
        except ValidationError as exc:
            error = exc.errors()[0]
            path = ".".join(str(part) for part in (kind, *error["loc"]))
            raise SpecError(file, error["msg"], index, path) from None
    return MigrationSpec(file=file, version=version, name=name, operations=tuple(operations), rehearse=rehearse)
