"""Archive keys, type mapping and column checks (pure logic)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.lifecycle.archive import (
    PgColumn,
    check_archive_columns,
    expiry_tag_days,
    interval_label,
    map_column,
    numeric_precision_scale,
    parse_table_segment,
    part_key,
    table_segment,
)
from pgwarden.core.lifecycle.config import PolicyConfig
from pgwarden.engine.repository import check_key

names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=20)


@given(names, names)
def test_any_table_name_is_one_valid_key_segment_and_reads_back(schema: str, name: str) -> None:
    table = QualifiedName(schema, name)
    segment = table_segment(table)
    assert "/" not in segment and segment.count(".") == 1
    check_key(f"db/archive/{segment}/20261130T190000Z/part-00000.parquet")
    assert parse_table_segment(segment) == table


def test_keys_are_readable_for_plain_names_and_deterministic() -> None:
    end = datetime(2026, 11, 30, 20, 0, tzinfo=timezone(timedelta(hours=1)))
    assert interval_label(end) == "20261130T190000Z"
    assert part_key("appdb", QualifiedName("public", "sessions"), "20261130T190000Z", 7) == \
        "appdb/archive/public.sessions/20261130T190000Z/part-00007.parquet"
    assert table_segment(QualifiedName("User Data", "e-mail.list")) == "User%20Data.e-mail%2Elist"
    with pytest.raises(ValueError, match="timezone-aware"):
        interval_label(datetime(2026, 11, 30, 19))


def test_numeric_typmods() -> None:
    # atttypmod of numeric(12,4), numeric(50,10), numeric and numeric(3,-2) (PostgreSQL 15+)
    assert numeric_precision_scale(((12 << 16) | 4) + 4) == (12, 4)
    assert numeric_precision_scale(((50 << 16) | 10) + 4) == (50, 10)
    assert numeric_precision_scale(-1) is None
    assert numeric_precision_scale(((3 << 16) | (0x800 - 2)) + 4) == (3, -2)


@pytest.mark.parametrize(("column", "arrow", "as_text"), [
    (PgColumn("a", "timestamptz", -1), "timestamp[us, UTC]", False),
    (PgColumn("a", "timestamp", -1), "timestamp[us]", False),
    (PgColumn("a", "numeric", ((12 << 16) | 4) + 4), "decimal(12, 4)", False),
    (PgColumn("a", "numeric", -1), "string", True),
    (PgColumn("a", "numeric", ((80 << 16) | 2) + 4), "string", True),
    (PgColumn("a", "numeric", ((3 << 16) | (0x800 - 2)) + 4), "string", True),
    (PgColumn("a", "uuid", -1), "string", True),
    (PgColumn("a", "jsonb", -1), "string", True),
    (PgColumn("a", "_int4", -1, element_type="int4"), "list<int32>", False),
    (PgColumn("a", "_interval", -1, element_type="interval"), "string", True),
    (PgColumn("a", "interval", -1), "string", True),
    (PgColumn("a", "bytea", -1), "binary", False),
])
def test_type_mapping(column: PgColumn, arrow: str, as_text: bool) -> None:
    mapping = map_column(column)
    assert (str(mapping.arrow), mapping.as_text) == (arrow, as_text)


def test_expiry_days_round_down_and_refuse_less_than_a_day() -> None:
    assert expiry_tag_days(timedelta(days=365, hours=23)) == 365
    with pytest.raises(ValueError, match="at least 1d"):
        expiry_tag_days(timedelta(hours=12))


def policy(**archive) -> PolicyConfig:
    return PolicyConfig.model_validate({"name": "p", "table": "public.t", "expire": {"column": "exp"},
                                        "mode": "archive_then_delete", "archive": archive})


def test_column_checks() -> None:
    columns = ["id", "exp", "email"]
    check_archive_columns(columns, ["id"], policy(drop_columns=["email"]))
    with pytest.raises(ValueError, match=r"archive.drop_columns names \['mail'\]"):
        check_archive_columns(columns, ["id"], policy(drop_columns=["mail"]))
    with pytest.raises(ValueError, match="key column"):
        check_archive_columns(columns, ["id"], policy(anonymize_columns=["id"]))
    with pytest.raises(ValueError, match="reserves"):
        check_archive_columns([*columns, "_pgwarden_xmin"], ["id"], policy())
