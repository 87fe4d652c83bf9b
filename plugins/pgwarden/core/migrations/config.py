"""The ``migrations`` section of a database entry: where its versioned migrations live and how they run.

``path`` defaults to ``sql/migrations/<database>`` beside the config file (``include/sql/migrations/appdb``
for ``include/pgwarden.yaml``); a relative path is read from the config file's folder too. The parser
resolves it once (:func:`resolve_folder`), so every reader (DAG factory, CLI, tasks) sees one absolute folder.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import PurePath

from pydantic import Field

from pgwarden.core.config_types import Duration, Strict


class MigrationsConfig(Strict):
    path: str | None = Field(
        default=None,
        description="folder of NNN_name.sql/.down.sql/.yaml files; default sql/migrations/<database> "
        "beside the config file; relative paths are read from the config file's folder",
    )
    lint_exclude: list[str] = Field(
        default_factory=list,
        description="squawk rules to skip for this database, besides the ones pgwarden's runner makes safe",
    )
    lock_timeout: Duration = Field(default=timedelta(seconds=1), description="per statement: wait this long for a lock")
    statement_timeout: Duration = Field(default=timedelta(minutes=10), description="per statement: run this long")
    lock_retries: int = Field(default=10, ge=0, le=1000, description="retries of a migration on lock timeout")


def resolve_folder(config: MigrationsConfig, database: str, config_source: str) -> MigrationsConfig:
    """The section with ``path`` made absolute against the config file's folder (pure path arithmetic)."""
    base = PurePath(config_source).parent
    path = PurePath(config.path) if config.path else PurePath("sql", "migrations", database)
    if not path.is_absolute():
        path = base / path
    return config.model_copy(update={"path": str(path)})
