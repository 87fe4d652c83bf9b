"""Backup ids are UTC seconds: a backup must never take the id (and so the pgwarden.json) of a complete one."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pgwarden.core import layout
from pgwarden.core.config import RepositoryConfig
from pgwarden.engine.backup_full import unused_backup_id
from pgwarden.engine.repository import open_repository


def test_a_backup_started_in_the_second_of_a_complete_one_takes_the_next_second(file_repo) -> None:
    repo = open_repository(RepositoryConfig(url=file_repo))
    now = datetime.now(timezone.utc)
    taken = {layout.backup_id_for(now + timedelta(seconds=s)) for s in range(2)}
    for backup_id in taken:
        repo.put_bytes(layout.manifest_key("db", backup_id), b"{}")

    started_at, backup_id = unused_backup_id(repo, "db")

    assert backup_id not in taken
    assert backup_id == layout.backup_id_for(started_at)
    assert not repo.exists(layout.manifest_key("db", backup_id))
