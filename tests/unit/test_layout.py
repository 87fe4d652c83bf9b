"""core.layout: the repository layout is a public contract (README, "Repository layout")."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from pgwarden.core import layout


def test_backup_ids_are_the_utc_start_second_and_sort_by_time() -> None:
    moment = datetime(2026, 11, 24, 10, 30, 5, 999999, tzinfo=timezone(timedelta(hours=1)))
    assert layout.backup_id_for(moment) == "20261124T093005Z"
    ids = [layout.backup_id_for(datetime(2026, 1, d, h, tzinfo=timezone.utc)) for d, h in ((9, 23), (10, 1))]
    assert ids == sorted(ids) and all(layout.BACKUP_ID.match(i) for i in ids)


def test_object_keys_follow_the_documented_layout() -> None:
    backup = "20261124T093005Z"
    assert layout.manifest_key("shop", backup) == "shop/base/20261124T093005Z/pgwarden.json"
    assert layout.backup_prefix("shop", backup).startswith(layout.base_prefix("shop"))
    assert layout.restore_point_key("shop", "nightly") == "shop/restore_points/nightly.json"
    assert layout.drill_key("shop", "d1") == "shop/drills/d1.json"


@pytest.mark.parametrize(("name", "compression", "key"), [
    ("000000010000000000000002", "zstd", "db/wal/000000010000000000000002.zst"),
    ("000000010000000000000002", "gzip", "db/wal/000000010000000000000002.gz"),
    ("000000010000000000000002", "none", "db/wal/000000010000000000000002"),
    ("00000002.history", "zstd", "db/wal/00000002.history"),  # history files are stored as they are
])
def test_wal_keys_and_back(name, compression, key) -> None:
    assert layout.wal_key("db", name, compression) == key
    assert layout.wal_file_name(key) == name


def test_backup_id_of_accepts_only_keys_inside_a_backup_folder() -> None:
    assert layout.backup_id_of("shop/base/20261124T093005Z/base.tar.zst") == "20261124T093005Z"
    assert layout.backup_id_of("shop/base/20261124T093005Z/dump/toc.dat") == "20261124T093005Z"
    assert layout.backup_id_of("shop/base/20261124T093005Z") is None  # the folder, not an object in it
    assert layout.backup_id_of("shop/base/latest/base.tar.zst") is None
    assert layout.backup_id_of("shop/wal/20261124T093005Z/x") is None
