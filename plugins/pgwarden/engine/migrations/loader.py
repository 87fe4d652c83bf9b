"""Read a database's migrations folder and check it against the history: the one gate before any run."""

from __future__ import annotations

from pathlib import Path

from pgwarden.core.migrations.config import MigrationsConfig
from pgwarden.core.migrations.file import MigrationFile, Refusal, check_against_history, discover
from pgwarden.engine.errors import PermanentError, os_error
from pgwarden.engine.migrations.history import HistoryRow


class MigrationsRefused(PermanentError):
    def __init__(self, folder: str, refusals: list[Refusal]):
        self.refusals = refusals
        lines = "\n".join(f"  {refusal}" for refusal in refusals)
        super().__init__(f"migrations in {folder} refused ({len(refusals)} problem(s)):\n{lines}")


def migrations_folder(config: MigrationsConfig) -> Path:
    return Path(config.path or ".")


def load_migrations(config: MigrationsConfig) -> list[MigrationFile]:
    """The folder's migrations in version order; :class:`MigrationsRefused` lists every bad file."""
    folder = migrations_folder(config)
    if not folder.is_dir():
        raise PermanentError(
            f"migrations folder {folder} does not exist: create it or set migrations.path in pgwarden.yaml")
    try:
        files = {path.name: path.read_bytes() for path in folder.iterdir() if path.is_file()}
    except OSError as exc:
        raise os_error(exc, f"reading migrations folder {folder}") from exc
    migrations, refusals = discover(files)
    if refusals:
        raise MigrationsRefused(str(folder), refusals)
    return migrations


def check_history(config: MigrationsConfig, migrations: list[MigrationFile], history: list[HistoryRow]) -> None:
    refusals = check_against_history(migrations, [row.record for row in history])
    if refusals:
        raise MigrationsRefused(str(migrations_folder(config)), refusals)
