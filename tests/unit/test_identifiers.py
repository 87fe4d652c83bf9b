"""Table names as written in SQL: parsing, folding, quoting (core/identifiers.py)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgwarden.core.config import BackupConfig, VerifyConfig, parse_config
from pgwarden.core.identifiers import IdentifierError, QualifiedName, quote


@pytest.mark.parametrize(("text", "schema", "name"), [
    ("public.users", "public", "users"),
    ("users", "public", "users"),  # no schema: public, never search_path
    ("Public.Users", "public", "users"),  # unquoted names fold to lower case
    ('"User Data"."e-mail list"', "User Data", "e-mail list"),
    ('"Users"', "public", "Users"),
    ('"a.b"."c.d"', "a.b", "c.d"),  # a dot inside quotes belongs to the name
    ('"say ""hi""".t', 'say "hi"', "t"),  # "" is a quote inside a quoted name
    ("sales . Orders_2024$", "sales", "orders_2024$"),  # whitespace around the dot, as in SQL
    ("Ünïcode.ÄBC", "Ünïcode", "Äbc"),  # only ASCII letters fold, as in a UTF-8 database
    ('"select"."from"', "select", "from"),
    ("_x.y1", "_x", "y1"),
])
def test_parse(text: str, schema: str, name: str) -> None:
    assert QualifiedName.parse(text) == QualifiedName(schema, name)


@pytest.mark.parametrize(("text", "says"), [
    ("User Data.e-mail list", "double quotes"),
    ('"User Data.e-mail list', "never closed"),
    ("a.b.c", "3 dot-separated parts"),
    ('"".t', "cannot be empty"),
    ("public.", "expected a name at the end"),
    (".users", "expected a name at '.'"),
    ("1users", "expected a name at '1'"),
    ('"a"b', "unexpected 'b'"),
    ("x" * 64, "63-byte limit"),
    ('"' + "é" * 32 + '"', "63-byte limit"),  # 64 bytes in UTF-8
    ("", "expected a name at the end"),
])
def test_refused_with_a_reason(text: str, says: str) -> None:
    with pytest.raises(IdentifierError, match=says):
        QualifiedName.parse(text)


def test_str_is_the_sql_form() -> None:
    assert str(QualifiedName("public", "users")) == "public.users"
    assert str(QualifiedName("User Data", "e-mail list")) == '"User Data"."e-mail list"'
    assert str(QualifiedName("public", 'say "hi"')) == 'public."say ""hi"""'
    assert quote("Users") == '"Users"' and quote("a.b") == '"a.b"' and quote("x$1") == "x$1"


# Any name PostgreSQL can store: no NUL, 1..63 bytes of UTF-8, no lone surrogates.
names = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=63
                ).filter(lambda s: len(s.encode()) <= 63)


@given(names, names)
def test_format_then_parse_round_trips(schema: str, name: str) -> None:
    table = QualifiedName(schema, name)
    assert QualifiedName.parse(str(table)) == table


@given(names)
def test_unqualified_means_public(name: str) -> None:
    assert QualifiedName.parse(quote(name)) == QualifiedName("public", name)


def test_config_fields_take_quoted_names_and_name_the_bad_one() -> None:
    backup = BackupConfig(count_rows=['"User Data"."e-mail list"', "Public.Items"])
    assert backup.count_rows == [QualifiedName("User Data", "e-mail list"), QualifiedName("public", "items")]
    assert backup.model_dump()["count_rows"] == ['"User Data"."e-mail list"', "public.items"]
    assert VerifyConfig(amcheck_tables=['"Ä"."b c"']).amcheck_tables == [QualifiedName("Ä", "b c")]

    config = parse_config(
        "databases:\n  shop:\n    conn_id: pg\n    repository: {url: 'file:///srv/r'}\n"
        "    backup: {count_rows: [public.ok, 'User Data.e-mail list']}\n", "pgwarden.yaml")
    [issue] = config.broken["shop"]
    assert issue.path == "databases.shop.backup.count_rows.1"
    assert "'User Data.e-mail list'" in issue.message and "double quotes" in issue.message
