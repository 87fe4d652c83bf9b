"""The ``lifecycle.erasure`` section: who can be erased, when, and what erasing means per table and column.

A *subject* is one row of the subject table (``public.users.id``). It becomes erasable when it was
soft-deleted longer ago than the grace period, or when the application wrote its id into a requests
table; a legal hold (a boolean column, or a row in a holds table) keeps it untouched. The PII map says,
per table, how the table reaches the subject (its own column holding the subject id, or through another
mapped table by a join) and, per personal-data column, the strategy: ``delete_row``, ``null``, a
constant, ``redact_email`` (``deleted_<id>@invalid``) or ``hmac`` (a keyed pseudonym of the subject).

The HMAC key is named (an Airflow connection's password, or an Airflow variable), never written here.
Pure models: the catalog checks (types, constraints, foreign keys) are the engine's plan step.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from pgwarden.core.config_types import ColumnName, ConnId, Cron, Duration, Strict, TableName
from pgwarden.core.identifiers import QualifiedName, quote

SIMPLE_STRATEGIES = ("delete_row", "null", "redact_email", "hmac")


class Constant(Strict):
    """``{constant: "Deleted User"}``: the column gets this value (cast to the column's type by the server)."""

    constant: str | int | float | bool


def _strategy(value: Any) -> Any:
    if value is None:  # YAML ``phone: null`` means the strategy null, not "no strategy"
        return "null"
    return value


Strategy = Annotated[Literal["delete_row", "null", "redact_email", "hmac"] | Constant, BeforeValidator(_strategy)]


def strategy_name(strategy: Strategy) -> str:
    return "constant" if isinstance(strategy, Constant) else strategy


class Through(Strict):
    """This table reaches the subject through another mapped table: ``this.column = table.key``."""

    table: TableName
    column: ColumnName
    key: ColumnName = "id"


class MappedTable(Strict):
    """One table holding personal data of subjects, how its rows belong to a subject, and what erasing does."""

    table: TableName
    subject_column: ColumnName | None = Field(default=None, description="this table's column holding the subject id")
    through: Through | None = Field(default=None, description="or: the mapped table this one joins to")
    columns: dict[ColumnName, Strategy] = Field(
        default_factory=dict, description="personal-data column -> strategy; empty: the table only joins")

    @model_validator(mode="after")
    def _consistent(self) -> MappedTable:
        if self.subject_column is not None and self.through is not None:
            raise ValueError("give subject_column or through, not both")
        kinds = {strategy_name(s) for s in self.columns.values()}
        if "delete_row" in kinds and kinds != {"delete_row"}:
            raise ValueError("a table is either erased by delete_row (every mapped column says delete_row) or by "
                             "column strategies, not both: a deleted row has no columns left to null or redact")
        reach = {self.subject_column} | ({self.through.column} if self.through else set())
        touched = sorted(c for c in reach if c in self.columns and strategy_name(self.columns[c]) != "delete_row")
        if touched:
            raise ValueError(f"column(s) {touched} join the table to its subject and cannot be changed by a strategy "
                             f"(later checks would lose the subject's rows); erase the row with delete_row instead")
        return self

    @property
    def method(self) -> str:
        """What the ledger records for the table: ``delete_row`` or ``update``; ``join`` when nothing is erased."""
        if not self.columns:
            return "join"
        return "delete_row" if any(strategy_name(s) == "delete_row" for s in self.columns.values()) else "update"


class SubjectConfig(Strict):
    table: TableName
    key: ColumnName = "id"


class SoftDeletedRule(Strict):
    """Subjects whose ``column`` (on the subject table) is older than ``grace`` at the run's data interval end."""

    column: ColumnName = "deleted_at"
    grace: Duration = timedelta(days=30)

    @field_validator("grace")
    @classmethod
    def _not_negative(cls, grace: timedelta) -> timedelta:
        if grace < timedelta(0):
            raise ValueError("grace cannot be negative")
        return grace


class RequestsRule(Strict):
    """A table the application writes erasure requests into: subject ids only, never e-mail addresses."""

    table: TableName
    subject_column: ColumnName = "subject_id"
    request_id_column: ColumnName | None = Field(default=None, description="recorded in the ledger; default: none")
    requested_at_column: ColumnName | None = Field(default=None, description="a request counts once older than grace")
    grace: Duration = timedelta(0)


class ErasableRules(Strict):
    soft_deleted: SoftDeletedRule | None = None
    requests: RequestsRule | None = None

    @model_validator(mode="after")
    def _one_at_least(self) -> ErasableRules:
        if self.soft_deleted is None and self.requests is None:
            raise ValueError("say how a subject becomes erasable: soft_deleted, requests, or both")
        return self


class LegalHold(Strict):
    """A boolean ``column`` on the subject table, or a ``table`` of holds with the subject id in ``subject_column``
    (a hold row counts while its ``released_column``, if given, is NULL)."""

    column: ColumnName | None = None
    table: TableName | None = None
    subject_column: ColumnName = "subject_id"
    released_column: ColumnName | None = None

    @model_validator(mode="after")
    def _one(self) -> LegalHold:
        if (self.column is None) == (self.table is None):
            raise ValueError("legal_hold names a boolean column of the subject table or a holds table (one of them)")
        return self


class HmacKeySource(Strict):
    """Where the erasure key lives: an Airflow connection's password, or an Airflow variable. Never the key."""

    conn_id: ConnId | None = None
    variable: str | None = None

    @model_validator(mode="after")
    def _one(self) -> HmacKeySource:
        if (self.conn_id is None) == (self.variable is None):
            raise ValueError("hmac_key names an Airflow connection (conn_id) or variable (variable), one of them")
        return self


class ErasureConfig(Strict):
    schedule: Cron = "@daily"
    subject: SubjectConfig
    erasable: ErasableRules
    legal_hold: LegalHold | None = None
    hmac_key: HmacKeySource
    tables: list[MappedTable]
    batch_size: int = Field(default=100, ge=1, le=10_000, description=(
        "subjects per commit; each subject is atomic on its own (a savepoint) and fails alone, and one commit "
        "(one WAL flush) serves the batch"))
    lock_timeout: Duration = timedelta(seconds=2)

    @model_validator(mode="after")
    def _shape(self) -> ErasureConfig:
        names = [m.table for m in self.tables]
        twice = sorted({str(n) for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"tables {twice} are mapped twice; give each table one entry")
        for m in self.tables:
            if m.table == self.subject.table:
                if m.subject_column is not None or m.through is not None:
                    raise ValueError(f"{m.table} is the subject table: it reaches the subject by its key "
                                     f"{quote(self.subject.key)}; remove subject_column/through")
            elif m.subject_column is None and m.through is None:
                raise ValueError(f"{m.table}: say how it reaches the subject: subject_column (its column holding "
                                 f"the subject id) or through: {{table, column, key}}")
        return self

    def mapped(self, table: QualifiedName) -> MappedTable | None:
        for m in self.tables:
            if m.table == table:
                return m
        return None

    def pii_columns(self, table: QualifiedName) -> set[str]:
        m = self.mapped(table)
        return set(m.columns) if m else set()


def canonical_pii_map(config: ErasureConfig) -> dict[str, Any]:
    """What decides what an erasure does: subject, rules, hold and the mapped tables (not schedule or batch size)."""
    dumped = config.model_dump(mode="json", include={"subject", "erasable", "legal_hold", "tables"})
    dumped["tables"] = sorted(dumped["tables"], key=lambda t: t["table"])
    return dumped


def policy_version(config: ErasureConfig) -> str:
    """SHA-256 (hex) of the canonical JSON of the PII map; recorded in every ledger entry."""
    text = json.dumps(canonical_pii_map(config), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()


def redacted_email(subject_id: str) -> str:
    return f"deleted_{subject_id}@invalid"


def pseudonym(key: bytes, subject_id: str) -> str:
    """The keyed pseudonym a ``hmac`` column gets: the same for one subject in every table and column (joins and
    distinct counts keep working), unlinkable to the person without the key; 64 hex characters."""
    return hmac.new(key, b"pgwarden.pseudonym:" + subject_id.encode(), hashlib.sha256).hexdigest()


PSEUDONYM_LENGTH = 64
