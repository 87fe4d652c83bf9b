"""The declarative config (``include/pgwarden.yaml``) as pydantic models.

Every database entry is validated on its own, so one broken entry cannot hide the DAGs of the
others. Error messages name the file, the key path and what was expected. Secrets never live
here: the config names Airflow connection ids.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, Literal
from urllib.parse import urlparse

import yaml
from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from pgwarden.core.alerts import DeadlinesConfig, NotifyConfig
from pgwarden.core.config_types import ByteSize, ConnId, Cron, Duration, FrequentCron, Strict, TableName
from pgwarden.core.lifecycle.config import LifecycleConfig
from pgwarden.core.migrations.config import MigrationsConfig, resolve_folder
from pgwarden.core.retention import RetentionPolicy
from pgwarden.core.schedule import longest_interval

DATABASE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,47}$")

class RepositoryConfig(Strict):
    """Where backups live: ``file:///abs/path`` or ``s3://bucket/prefix``."""

    url: str
    conn_id: ConnId | None = Field(
        default=None, description="Airflow AWS connection for s3:// URLs (endpoint, region, credentials)"
    )
    sse: Literal["AES256", "aws:kms", "none"] = "AES256"
    kms_key_id: str | None = None
    object_lock_mode: Literal["GOVERNANCE", "COMPLIANCE"] | None = None

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        parsed = urlparse(url)
        if parsed.scheme == "s3":
            if not parsed.netloc:
                raise ValueError(f"s3 URL needs a bucket: s3://bucket/prefix, got {url!r}")
            return url.rstrip("/")
        if parsed.scheme == "file":
            if parsed.netloc or not parsed.path.startswith("/"):
                raise ValueError(f"file URL needs an absolute path: file:///var/backups/pg, got {url!r}")
            return url.rstrip("/")
        raise ValueError(
            f"unknown repository URL scheme {parsed.scheme or '(none)'!r} in {url!r}: "
            f"use s3://bucket/prefix or file:///absolute/path"
        )

    @model_validator(mode="after")
    def _kms_needs_key(self) -> RepositoryConfig:
        if self.sse == "aws:kms" and not self.kms_key_id:
            raise ValueError("sse 'aws:kms' needs kms_key_id")
        if self.kms_key_id and self.sse != "aws:kms":
            raise ValueError("kms_key_id is only used with sse: aws:kms")
        if self.url.startswith("file:") and (self.conn_id or self.object_lock_mode):
            raise ValueError("conn_id and object_lock_mode only apply to s3:// repositories")
        return self

    @property
    def scheme(self) -> str:
        return urlparse(self.url).scheme


class StandbyConfig(Strict):
    conn_id: ConnId
    max_replay_lag: Duration = timedelta(minutes=5)


class HealthcheckConfig(Strict):
    enabled: bool = True
    schedule: Cron = "@hourly"
    max_pg_wal_size: ByteSize = 8 * 2**30
    standbys: list[StandbyConfig] = Field(default_factory=list)


class RetentionConfig(Strict):
    """Grandfather-father-son: the newest N daily, M monthly and Y yearly full backups."""

    daily: int = Field(default=30, ge=1)
    monthly: int = Field(default=12, ge=0)
    yearly: int = Field(default=7, ge=0)
    dry_run: bool = False

    def policy(self) -> RetentionPolicy:
        return RetentionPolicy(daily=self.daily, monthly=self.monthly, yearly=self.yearly)


class LogicalDumpConfig(Strict):
    enabled: bool = False
    jobs: int = Field(default=2, ge=1, le=64)


class BackupConfig(Strict):
    enabled: bool = True
    full_schedule: Cron = "0 2 * * *"
    incremental_schedule: FrequentCron = "@hourly"
    checkpoint: Literal["fast", "spread"] = "fast"
    compression: Literal["auto", "zstd", "gzip", "none"] = "auto"
    count_rows: list[TableName] = Field(
        default_factory=list, description="tables whose row counts the manifest records (schema.table)"
    )
    logical_dump: LogicalDumpConfig = Field(default_factory=LogicalDumpConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    slot_name: str | None = Field(default=None, description="defaults to pgwarden_<database>")
    slot_warn_size: ByteSize = 16 * 2**30
    offsite: RepositoryConfig | None = None

    def slot_for(self, database: str) -> str:
        """The guard replication slot's name (``pgwarden_<database>`` unless configured)."""
        return self.slot_name or f"pgwarden_{database}"

    @field_validator("slot_name")
    @classmethod
    def _slot(cls, name: str | None) -> str | None:
        if name is not None and not re.match(r"^[a-z0-9_]{1,63}$", name):
            raise ValueError(f"replication slot names use a-z, 0-9 and '_' (max 63), got {name!r}")
        return name


class VerifyConfig(Strict):
    """The monthly restore drill: restore into a scratch server, check, measure RTO and RPO."""

    enabled: bool = True
    schedule: Cron = "0 4 1 * *"
    rto_target: Duration = timedelta(hours=1)
    rpo_target: Duration = timedelta(minutes=90)
    amcheck_tables: list[TableName] | None = Field(
        default=None, description="tables pg_amcheck checks (heap and indexes); default: backup.count_rows"
    )
    old_backup_every: int = Field(
        default=3, ge=0, description="in the months N divides (by the run's date) the drill also restores the oldest "
        "monthly/yearly backup; 0 = never"
    )


class DatabaseConfig(Strict):
    conn_id: ConnId = Field(description="Airflow Postgres connection of the database")
    repository: RepositoryConfig
    owner: str = "pgwarden"
    healthcheck: HealthcheckConfig = Field(default_factory=HealthcheckConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    lifecycle: LifecycleConfig = Field(default_factory=LifecycleConfig)
    migrations: MigrationsConfig = Field(default_factory=MigrationsConfig)
    notify: NotifyConfig | None = Field(default=None, description="replaces defaults.notify for this database")
    deadlines: DeadlinesConfig | None = Field(default=None, description="overrides defaults.deadlines key by key")

    @model_validator(mode="after")
    def _rpo_reachable(self) -> DatabaseConfig:
        if self.backup.enabled and self.verify.enabled:
            interval = longest_interval(self.backup.incremental_schedule)
            if self.verify.rpo_target < interval:
                raise ValueError(
                    f"verify.rpo_target ({self.verify.rpo_target}) is shorter than the time between WAL "
                    f"collections (backup.incremental_schedule {self.backup.incremental_schedule!r}: up to "
                    f"{interval}); collect WAL more often or raise the target"
                )
        return self


class Defaults(Strict):
    """Values every database entry inherits unless it sets them itself."""

    owner: str = "pgwarden"
    retries: int = Field(default=2, ge=0, le=20)
    retry_delay: Duration = timedelta(minutes=2)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    deadlines: DeadlinesConfig = Field(default_factory=DeadlinesConfig)


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in the config, ready to show a human."""

    source: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.path}: {self.message}"


class ConfigError(ValueError):
    def __init__(self, issues: list[ConfigIssue]) -> None:
        self.issues = issues
        super().__init__("\n".join(str(i) for i in issues))


@dataclass(frozen=True)
class PgwardenConfig:
    """The validated config: good databases, and the issues of each broken one."""

    source: str
    defaults: Defaults
    databases: dict[str, DatabaseConfig] = field(default_factory=dict)
    broken: dict[str, list[ConfigIssue]] = field(default_factory=dict)
    # Each broken entry as written, for what can still be read from it (its stand-in DAG's schedule).
    broken_entries: dict[str, Any] = field(default_factory=dict)

    @property
    def issues(self) -> list[ConfigIssue]:
        return [issue for issues in self.broken.values() for issue in issues]


def _keys_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys the model accepts at ``loc`` (a pydantic error location; list indices are skipped)."""
    for part in loc:
        if isinstance(part, int):
            continue
        info = model.model_fields.get(str(part))
        if info is None:
            return []
        nested = [t for t in _types_in(info.annotation) if isinstance(t, type) and issubclass(t, BaseModel)]
        if not nested:
            return []
        model = nested[0]
    return list(model.model_fields)


def _types_in(annotation: Any) -> list[Any]:
    """``X``, ``X | None``, ``list[X]``, ``Annotated[X, ...]`` -> the types inside."""
    args = getattr(annotation, "__args__", None)
    if not args:
        return [annotation]
    return [t for arg in args for t in _types_in(arg)]


def _unknown_key(model: type[BaseModel], loc: tuple[Any, ...]) -> str:
    close = difflib.get_close_matches(str(loc[-1]), _keys_at(model, loc[:-1]), n=1)
    if close:
        return f"unknown key; did you mean `{close[0]}`?"
    return "unknown key; check its spelling against the documented keys in README"


def _issues_from(exc: ValidationError, source: str, prefix: str, model: type[BaseModel]) -> list[ConfigIssue]:
    issues = []
    for error in exc.errors():
        loc = ".".join(str(p) for p in error["loc"])
        path = f"{prefix}.{loc}" if loc else prefix
        if error["type"] == "extra_forbidden":
            message = _unknown_key(model, error["loc"])
        elif error["type"] == "missing":
            message = "required key is missing"
        else:
            message = error["msg"].removeprefix("Value error, ")
            given = error.get("input")
            if error["type"] not in ("value_error",) and isinstance(given, (str, int, float, bool)):
                message += f" (got {given!r})"
        issues.append(ConfigIssue(source, path, message))
    return issues


TOP_LEVEL_KEYS = {"defaults", "databases"}


def parse_config(text: str, source: str) -> PgwardenConfig:
    """Validate config text. Raises ``ConfigError`` only for problems that break every database."""
    try:
        # The C loader when PyYAML has it: parsing the config dominates DAG-parse time.
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise ConfigError([ConfigIssue(source, "(file)", f"not valid YAML: {exc}")]) from exc
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError([ConfigIssue(source, "(top)", "expected a mapping with 'databases:'")])
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        raise ConfigError(
            [ConfigIssue(source, key, f"unknown top-level key; expected one of {sorted(TOP_LEVEL_KEYS)}")
             for key in unknown]
        )
    try:
        defaults = Defaults.model_validate(raw.get("defaults") or {})
    except ValidationError as exc:
        raise ConfigError(_issues_from(exc, source, "defaults", Defaults)) from exc

    databases_raw = raw.get("databases") or {}
    if not isinstance(databases_raw, dict):
        raise ConfigError([ConfigIssue(source, "databases", "expected a mapping of database name -> settings")])

    databases: dict[str, DatabaseConfig] = {}
    broken: dict[str, list[ConfigIssue]] = {}
    for name, entry in databases_raw.items():
        path = f"databases.{name}"
        if not isinstance(name, str) or not DATABASE_NAME.match(name):
            broken[str(name)] = [ConfigIssue(
                source, path,
                "database names start with a lowercase letter and use a-z, 0-9 and '_' (max 48): "
                "they become DAG ids and replication slot names",
            )]
            continue
        if not isinstance(entry, dict):
            broken[name] = [ConfigIssue(source, path, "expected a mapping with conn_id and repository")]
            continue
        merged = {"owner": defaults.owner, **entry}
        try:
            validated = DatabaseConfig.model_validate(merged)
            databases[name] = validated.model_copy(
                update={"migrations": resolve_folder(validated.migrations, name, source)}
            )
        except ValidationError as exc:
            broken[name] = _issues_from(exc, source, path, DatabaseConfig)
    return PgwardenConfig(source=source, defaults=defaults, databases=databases, broken=broken,
                          broken_entries={name: databases_raw.get(name) for name in broken})
