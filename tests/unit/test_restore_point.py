"""core.restore_point: the one record every writer and reader of ``restore_points/`` uses."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from pgwarden.core.lsn import Lsn
from pgwarden.core.restore_point import FORMAT, RestorePoint

CET = timezone(timedelta(hours=1))


def test_a_record_round_trips_and_names_its_format() -> None:
    written = RestorePoint('nightly "quoted" \\ name', Lsn.parse("0/3000060"), datetime(2026, 11, 24, 10, tzinfo=CET))
    record = json.loads(written.to_json())
    assert record == {"format": "pgwarden.restore_point/1", "name": 'nightly "quoted" \\ name', "lsn": "0/3000060",
                      "created_at": "2026-11-24T09:00:00+00:00"}
    again = RestorePoint.from_json(written.to_json())
    assert again == written and again.created_at.utcoffset() == timedelta(0)


def test_records_written_before_the_format_was_named_still_read() -> None:
    legacy = b'{"name": "pgwarden_shop_20261124T020000Z", "lsn": "0/5000028", "created_at": "2026-11-24T02:00:00+00:00"}'
    point = RestorePoint.from_json(legacy)
    assert point == RestorePoint("pgwarden_shop_20261124T020000Z", Lsn.parse("0/5000028"),
                                 datetime(2026, 11, 24, 2, tzinfo=timezone.utc))


@pytest.mark.parametrize(("data", "says"), [
    (b"not json", "not JSON"),
    (b"[1]", "not a JSON object"),
    (json.dumps({"format": "pgwarden.restore_point/2", "name": "a", "lsn": "0/1", "created_at": "x"}).encode(),
     f"is not '{FORMAT}'"),
    (b'{"name": "a", "created_at": "2026-11-24T02:00:00+00:00"}', "lsn missing or not text"),
    (b'{"name": "a", "lsn": "0/1", "created_at": "2026-11-24T02:00:00"}', "has no time zone"),
    (b'{"name": "a", "lsn": "zz", "created_at": "2026-11-24T02:00:00+00:00"}', "zz"),
])
def test_what_cannot_be_read_says_why(data: bytes, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        RestorePoint.from_json(data)
