"""Archival to cold storage, the pure half: where parts go, how PostgreSQL types become Parquet
types, what the manifest of a run says, and when personal data may leave the database.

Keys (deterministic, so a retried run writes the very same objects)::

    <db>/archive/<schema>.<table>/<interval>/part-00000.parquet
    <db>/archive/<schema>.<table>/<interval>/manifest.json

``<interval>`` is the run's ``data_interval_end`` as ``20261130T190000Z``. Schema and table are
percent-encoded (RFC 3986 unreserved characters kept, and ``.`` encoded inside a name), so any name
PostgreSQL allows maps to one key segment and back: ``public.sessions``, ``User%20Data.e-mail``.

Type mapping (decided here, applied by ``engine/lifecycle/archive.py`` with pyarrow):

=====================================  ===========================================================
PostgreSQL                             Parquet / Arrow
=====================================  ===========================================================
smallint, integer, bigint              int16, int32, int64
real, double precision                 float32, float64
boolean                                bool
text, varchar(n), char(n), name        string
bytea                                  binary
date                                   date32
timestamp without time zone            timestamp[us] (naive)
timestamp with time zone               timestamp[us, UTC]
time without time zone                 time64[us]
numeric(p, s), p <= 38                 decimal128(p, s) (exact)
numeric(p, s), 38 < p <= 76            decimal256(p, s) (exact)
numeric (unconstrained)                string, PostgreSQL's own text (exact; a decimal needs a scale)
uuid                                   string, canonical 8-4-4-4-12 text
json, jsonb                            string, the server's text of the document
1-D arrays of the scalar types above   list<item>
anything else (interval, enums,        string, PostgreSQL's text output (what ``COPY`` would write)
timetz, inet, ranges, composite ...)
=====================================  ===========================================================

Domains are mapped as their base type. Columns mapped to a string are read with ``::text`` so the
value is exactly what PostgreSQL prints, never a Python re-rendering of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal
from urllib.parse import quote as _pct_quote
from urllib.parse import unquote as _pct_unquote

from pydantic import BaseModel

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.lifecycle.config import PolicyConfig

MANIFEST_NAME = "manifest.json"
PART_DIGITS = 5
# The row version each archived row had, kept in the part so a retried delete removes exactly
# that version; a restore leaves it out.
ROW_VERSION_COLUMN = "_pgwarden_xmin"
# Objects in these classes cannot be read back until restored from the archive tier (hours).
UNREADABLE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
EXPIRE_TAG = "pgwarden-archive-expire-days"


# -- keys -------------------------------------------------------------------------------------------


def interval_label(data_interval_end: datetime) -> str:
    """``2026-11-30 19:00 UTC`` -> ``20261130T190000Z`` (a naive datetime is refused, not guessed)."""
    if data_interval_end.tzinfo is None:
        raise ValueError("the run's data_interval_end must be timezone-aware")
    return data_interval_end.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _encode_name(part: str) -> str:
    return _pct_quote(part, safe="").replace(".", "%2E")


def table_segment(table: QualifiedName) -> str:
    """The table as one key segment, reversible by :func:`parse_table_segment`."""
    return f"{_encode_name(table.schema)}.{_encode_name(table.name)}"


def parse_table_segment(segment: str) -> QualifiedName:
    schema, sep, name = segment.partition(".")
    if not sep or "." in name:
        raise ValueError(f"{segment!r} is not an archive table segment (<schema>.<table>, percent-encoded)")
    return QualifiedName(_pct_unquote(schema), _pct_unquote(name))


def table_prefix(database: str, table: QualifiedName) -> str:
    return f"{database}/archive/{table_segment(table)}/"


def run_prefix(database: str, table: QualifiedName, interval: str) -> str:
    return f"{table_prefix(database, table)}{interval}/"


def part_key(database: str, table: QualifiedName, interval: str, number: int) -> str:
    return f"{run_prefix(database, table, interval)}part-{number:0{PART_DIGITS}d}.parquet"


def manifest_key(database: str, table: QualifiedName, interval: str) -> str:
    return f"{run_prefix(database, table, interval)}{MANIFEST_NAME}"


# -- type mapping -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArrowType:
    """An Arrow type described without importing pyarrow (core code)."""

    kind: str  # int16 int32 int64 float32 float64 bool string binary date32 timestamp time64 decimal list
    precision: int | None = None
    scale: int | None = None
    tz: str | None = None
    item: ArrowType | None = None

    def __str__(self) -> str:
        if self.kind == "decimal":
            return f"decimal({self.precision}, {self.scale})"
        if self.kind == "timestamp":
            return f"timestamp[us{', ' + self.tz if self.tz else ''}]"
        if self.kind == "list":
            return f"list<{self.item}>"
        return self.kind


@dataclass(frozen=True)
class PgColumn:
    """A column as the catalog describes it (domains already resolved to their base type)."""

    name: str
    type_name: str       # pg_type.typname of the (base) type, e.g. int8, numeric, _int4
    typmod: int          # atttypmod (-1 when unconstrained)
    element_type: str | None = None  # typname of the element for an array type
    formatted: str = ""  # format_type(), for messages and the manifest


@dataclass(frozen=True)
class ColumnMapping:
    name: str
    source_type: str
    arrow: ArrowType
    as_text: bool  # read with ::text (the mapping is a string of PostgreSQL's own output)
    note: str = ""


_SCALARS = {
    "int2": ArrowType("int16"), "int4": ArrowType("int32"), "int8": ArrowType("int64"),
    "float4": ArrowType("float32"), "float8": ArrowType("float64"), "bool": ArrowType("bool"),
    "text": ArrowType("string"), "varchar": ArrowType("string"), "bpchar": ArrowType("string"),
    "name": ArrowType("string"), "bytea": ArrowType("binary"), "date": ArrowType("date32"),
    "timestamp": ArrowType("timestamp"), "timestamptz": ArrowType("timestamp", tz="UTC"),
    "time": ArrowType("time64"),
}
_AS_TEXT_NOTES = {
    "uuid": "uuid as its canonical text",
    "json": "json as the server's text",
    "jsonb": "jsonb as the server's text",
}
MAX_DECIMAL_PRECISION = 76


def numeric_precision_scale(typmod: int) -> tuple[int, int] | None:
    """``numeric(p, s)`` from its typmod; ``None`` for an unconstrained numeric."""
    if typmod < 4:
        return None
    packed = typmod - 4
    precision = (packed >> 16) & 0xFFFF
    scale = packed & 0x7FF
    if scale & 0x400:  # PostgreSQL 15 allows a negative scale, stored as 11-bit two's complement
        scale -= 0x800
    return precision, scale


def map_column(column: PgColumn) -> ColumnMapping:
    """The Parquet type of one column (see the table in the module docstring)."""
    shown = column.formatted or column.type_name

    def text(note: str) -> ColumnMapping:
        return ColumnMapping(column.name, shown, ArrowType("string"), as_text=True, note=note)

    if column.type_name in _SCALARS:
        return ColumnMapping(column.name, shown, _SCALARS[column.type_name], as_text=False)
    if column.type_name == "numeric":
        ps = numeric_precision_scale(column.typmod)
        if ps is None:
            return text("unconstrained numeric as PostgreSQL's exact text (a Parquet decimal needs a fixed scale)")
        precision, scale = ps
        if precision > MAX_DECIMAL_PRECISION or scale < 0:
            return text(f"numeric({precision}, {scale}) as exact text (beyond Parquet decimals)")
        return ColumnMapping(column.name, shown, ArrowType("decimal", precision=precision, scale=scale),
                             as_text=False)
    if column.type_name in _AS_TEXT_NOTES:
        return text(_AS_TEXT_NOTES[column.type_name])
    if column.element_type is not None and column.element_type in _SCALARS:
        return ColumnMapping(column.name, shown, ArrowType("list", item=_SCALARS[column.element_type]),
                             as_text=False, note="one-dimensional array as a list")
    return text(f"{shown} as PostgreSQL's text output")


# -- policy checks ----------------------------------------------------------------------------------


def expiry_tag_days(expire_after: timedelta) -> int:
    """Whole days for the S3 expiry tag, rounded down so objects never outlive ``expire_after``."""
    days = expire_after.days
    if days < 1:
        raise ValueError(f"archive.expire_after must be at least 1d (S3 expires objects by the day), "
                         f"got {expire_after}")
    return days


def check_archive_columns(columns: list[str], key: list[str], policy: PolicyConfig) -> None:
    """Refuse an archive the table's columns make impossible, before any row is read. (The personal
    data rule needs no table and is checked when the config is validated: ``PolicyConfig``.)"""
    options = policy.archive_settings
    named = {"archive.drop_columns": options.drop_columns, "archive.anonymize_columns": options.anonymize_columns,
             "personal_data": policy.personal_data}
    for field_name, names in named.items():
        unknown = [n for n in names if n not in columns]
        if unknown:
            raise ValueError(f"policy {policy.name}: {field_name} names {unknown}, which {policy.table} "
                             f"does not have (its columns: {columns})")
    touched = [k for k in key if k in options.drop_columns or k in options.anonymize_columns]
    if touched:
        raise ValueError(f"policy {policy.name}: key column(s) {touched} cannot be dropped or anonymized: the archive "
                         f"needs the key to delete exactly the archived rows and to restore them")
    if ROW_VERSION_COLUMN in columns:
        raise ValueError(f"the table has a column named {ROW_VERSION_COLUMN}, which archival reserves")


# -- manifest ---------------------------------------------------------------------------------------


class ArchivedColumn(BaseModel):
    name: str
    source_type: str
    arrow_type: str
    treatment: Literal["kept", "anonymized"] = "kept"
    note: str = ""


class ArchivePart(BaseModel):
    number: int
    key: str
    rows: int
    size: int
    sha256: str
    key_min: list[str]  # the first and last key of the part, as text (for people; resume reads the part)
    key_max: list[str]
    state: Literal["uploaded", "deleted"] = "uploaded"
    rows_deleted: int = 0
    rows_changed_kept: int = 0  # updated (or no longer expired) after archival: kept in the table
    rows_already_gone: int = 0  # deleted by someone else, or by an attempt killed before it was recorded


class ArchiveManifest(BaseModel):
    """What one run archived; rewritten after every part so a retry knows where it stands."""

    format: Literal[1] = 1
    database: str
    table: str  # as SQL writes it
    interval: str
    cutoff: datetime
    policy: str
    run_id: str
    storage_class: str
    expire_after_days: int | None
    key_columns: list[str]
    columns: list[ArchivedColumn]
    dropped_columns: list[str]
    created_at: datetime
    updated_at: datetime
    complete: bool = False
    parts: list[ArchivePart] = []

    @property
    def rows_archived(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def rows_deleted(self) -> int:
        return sum(p.rows_deleted for p in self.parts)

    @property
    def rows_changed_kept(self) -> int:
        return sum(p.rows_changed_kept for p in self.parts)
