"""The ``lifecycle`` section of a database entry: policies saying which rows of which table expire.

A policy names a table, how its rows expire (an expiry timestamp column, or an age column plus a
maximum age), an optional extra predicate, the key batches walk, and the mode (delete, archive then
delete, or drop whole partitions). The cutoff is never part of the config: it is the run's
``data_interval_end``, so a cleared or backfilled run selects the same rows.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, field_validator, model_validator

from pgwarden.core.config_types import ByteSize, ColumnName, Cron, Duration, Strict, TableName
from pgwarden.core.lifecycle.pii import ErasureConfig

POLICY_NAME = re.compile(r"^[a-z0-9_]{1,64}$")


def _positive(delta: timedelta) -> timedelta:
    if delta <= timedelta(0):
        raise ValueError(f"expected a positive duration, got {delta}")
    return delta


PositiveDuration = Annotated[Duration, AfterValidator(_positive)]


class ExpireRule(Strict):
    """``{column: expires_at}``: rows with ``column < cutoff`` expire; ``{column: created_at, after: 30d}``:
    rows with ``column < cutoff - after``. A NULL in the column never expires."""

    column: ColumnName
    after: PositiveDuration | None = None

    def threshold(self, cutoff: datetime) -> datetime:
        """Rows whose column is older than this expire at ``cutoff``."""
        return cutoff - self.after if self.after else cutoff


class SoftDeleteConfig(Strict):
    column: ColumnName = "deleted_at"
    active_view: bool = Field(default=False, description="keep a <table>_active view (rows where column IS NULL)")


class BatchConfig(Strict):
    time_budget: PositiveDuration = timedelta(milliseconds=100)
    lock_timeout: PositiveDuration = timedelta(seconds=2)
    pause: Duration = timedelta(0)
    max_run_time: PositiveDuration = timedelta(minutes=50)


StorageClass = Literal["STANDARD", "STANDARD_IA", "ONEZONE_IA", "INTELLIGENT_TIERING", "GLACIER_IR", "GLACIER",
                       "DEEP_ARCHIVE"]


class ArchiveConfig(Strict):
    storage_class: StorageClass = "STANDARD"
    max_part_size: ByteSize = 64 * 2**20
    drop_columns: list[ColumnName] = Field(default_factory=list)
    anonymize_columns: list[ColumnName] = Field(default_factory=list)
    expire_after: PositiveDuration | None = None

    @model_validator(mode="after")
    def _disjoint(self) -> ArchiveConfig:
        both = sorted(set(self.drop_columns) & set(self.anonymize_columns))
        if both:
            raise ValueError(f"columns {both} are both dropped and anonymized; choose one per column")
        return self


Mode = Literal["delete", "archive_then_delete", "partition_drop"]


class PolicyConfig(Strict):
    name: str = Field(description="unique per database, [a-z0-9_]; labels the policy's task")
    table: TableName
    expire: ExpireRule
    where: str | None = Field(default=None, description="extra SQL predicate, ANDed; checked by the server's planner")
    key: list[ColumnName] | None = Field(default=None, description="columns batches walk; default: the primary key")
    mode: Mode = "delete"
    children: Literal["auto"] | list[TableName] = "auto"
    soft_delete: SoftDeleteConfig | None = None
    batch: BatchConfig = Field(default_factory=BatchConfig)
    vacuum_after: int | None = Field(default=100_000, ge=0)
    personal_data: list[ColumnName] = Field(default_factory=list)
    archive: ArchiveConfig | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not POLICY_NAME.match(name):
            raise ValueError(f"policy names use a-z, 0-9 and '_' (max 64), got {name!r}")
        return name

    @field_validator("where")
    @classmethod
    def _where(cls, where: str | None) -> str | None:
        if where is not None and not where.strip():
            raise ValueError("where is empty; leave it out or give an SQL condition such as \"kind <> 'pinned'\"")
        return where

    @field_validator("key")
    @classmethod
    def _key(cls, key: list[str] | None) -> list[str] | None:
        if key is not None and (not key or len(set(key)) != len(key)):
            raise ValueError("key lists one or more distinct columns (or null for the primary key)")
        return key

    @model_validator(mode="after")
    def _consistent(self) -> PolicyConfig:
        if self.archive is not None and self.mode != "archive_then_delete":
            raise ValueError(f"archive settings only apply to mode archive_then_delete (mode is {self.mode!r})")
        if self.mode == "partition_drop" and self.where is not None:
            raise ValueError("mode partition_drop drops whole partitions, which a where predicate cannot filter; "
                             "use mode delete for a filtered purge")
        if self.mode == "archive_then_delete":
            archive = self.archive or ArchiveConfig()
            kept = sorted(set(self.personal_data) - set(archive.drop_columns) - set(archive.anonymize_columns))
            if kept and archive.expire_after is None:
                raise ValueError(
                    f"personal_data columns {kept} would be archived as they are; list them under "
                    f"archive.drop_columns or archive.anonymize_columns, or set archive.expire_after no later "
                    f"than your erasure horizon")
        return self

    @property
    def archive_settings(self) -> ArchiveConfig:
        return self.archive or ArchiveConfig()

    def lock_key(self) -> str:
        """What the per-table advisory lock is taken on: the table, whichever policy purges it."""
        return f"pgwarden.lifecycle:{self.table}"


class LifecycleConfig(Strict):
    """A database's data lifecycle: TTL policies (``<db>.ttl_purge``) and GDPR erasure (``<db>.gdpr_erasure``).

    One section, so the two agree on what is personal data: a policy's ``personal_data`` columns must be
    mapped by ``erasure`` when it is configured, and an archiving policy treats the erasure map's columns of
    its table as personal data too (they are dropped, anonymized or expire from the archive).
    """

    schedule: Cron = "@hourly"
    policies: list[PolicyConfig] = Field(default_factory=list)
    erasure: ErasureConfig | None = None

    @field_validator("policies")
    @classmethod
    def _unique_names(cls, policies: list[PolicyConfig]) -> list[PolicyConfig]:
        seen: set[str] = set()
        for policy in policies:
            if policy.name in seen:
                raise ValueError(f"policy name {policy.name!r} is used twice; names label tasks and must be unique")
            seen.add(policy.name)
        return policies

    @model_validator(mode="after")
    def _personal_data_agrees(self) -> LifecycleConfig:
        if self.erasure is None:
            return self
        for index, policy in enumerate(self.policies):
            mapped = self.erasure.pii_columns(policy.table)
            unmapped = sorted(set(policy.personal_data) - mapped)
            if unmapped:
                raise ValueError(
                    f"policies[{index}] ({policy.name}) lists personal_data {unmapped} of {policy.table}, which "
                    f"erasure.tables does not map; give each a strategy under erasure.tables (one list of "
                    f"personal data per database)")
            if policy.mode == "archive_then_delete":
                archive = policy.archive_settings
                kept = sorted(mapped - set(archive.drop_columns) - set(archive.anonymize_columns))
                if kept and archive.expire_after is None:
                    raise ValueError(
                        f"policies[{index}] ({policy.name}) would archive {policy.table}'s personal data {kept} "
                        f"(mapped by erasure) as it is; list them under archive.drop_columns or "
                        f"archive.anonymize_columns, or set archive.expire_after")
        return self

    def policy(self, name: str) -> PolicyConfig:
        for policy in self.policies:
            if policy.name == name:
                return policy
        raise KeyError(f"no lifecycle policy named {name!r}")

