"""Schema-qualified table names, written in the config the way one writes them in SQL.

``public.users``, ``Public.Users`` (folded to ``public.users``, as PostgreSQL folds unquoted names),
``"User Data"."e-mail list"`` (quoted: kept exactly; ``""`` is a quote inside, a dot inside quotes is
part of the name). A name without a schema means schema ``public``: a config is read away from any
session, so there is no ``search_path`` to resolve it; the schema is always explicit in what pgwarden
stores and shows.

PostgreSQL's ``parse_ident()`` implements the same rules on the server; this parser exists because
the config is validated while DAGs are parsed, with no server to ask. Core code: nothing here talks
to PostgreSQL; the engine turns a ``QualifiedName`` into a ``psycopg.sql.Identifier``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_SCHEMA = "public"
# NAMEDATALEN - 1: PostgreSQL truncates longer names (a silently different name), so refuse them.
MAX_IDENTIFIER_BYTES = 63

_BARE = re.compile(r"[a-z_][a-z0-9_$]*")
_UNQUOTED_START = re.compile(r"[A-Za-z_\u0080-\U0010FFFF]")
_UNQUOTED = re.compile(r"[A-Za-z_\u0080-\U0010FFFF][A-Za-z0-9_$\u0080-\U0010FFFF]*")
_ASCII_UPPER_TO_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_SPACE = " \t\n\r\f\v"  # what PostgreSQL's scanner skips (not other Unicode spaces: those are name chars)
_EXAMPLE = "write table names like public.users or \"User Data\".\"e-mail list\""


class IdentifierError(ValueError):
    """A table name PostgreSQL would not accept; the message says what to write instead."""


@dataclass(frozen=True, order=True)
class QualifiedName:
    """A table's schema and name, exactly as stored in the catalog (already unquoted and folded)."""

    schema: str
    name: str

    def __post_init__(self) -> None:
        for part in (self.schema, self.name):
            _check_identifier(part, repr(part))

    @classmethod
    def parse(cls, text: str) -> QualifiedName:
        """``schema.name`` or ``name`` (schema ``public``), unquoted or in double quotes."""
        if not isinstance(text, str):
            raise IdentifierError(f"expected a table name as text, got {text!r}; {_EXAMPLE}")
        parts = _split(text)
        if len(parts) == 1:
            return cls(DEFAULT_SCHEMA, parts[0])
        if len(parts) == 2:
            return cls(parts[0], parts[1])
        raise IdentifierError(f"{text!r} has {len(parts)} dot-separated parts; give schema.table "
                              f"(put a dot that belongs to a name inside double quotes)")

    def __str__(self) -> str:
        """The name as SQL would write it; ``parse(str(q)) == q``."""
        return f"{quote(self.schema)}.{quote(self.name)}"


def parse_column(text: str) -> str:
    """One column name as SQL writes it (``expires_at``, ``"e-mail"``), unquoted and folded like a table name."""
    if not isinstance(text, str):
        raise IdentifierError(f"expected a column name as text, got {text!r}")
    parts = _split(text)
    if len(parts) != 1:
        raise IdentifierError(f"{text!r} is not one column name; put a dot that belongs to a name inside "
                              f"double quotes")
    return parts[0]


def quote(part: str) -> str:
    """One identifier as SQL writes it: bare when it reads back the same, else in double quotes."""
    if _BARE.fullmatch(part):
        return part
    return '"' + part.replace('"', '""') + '"'


def _check_identifier(part: str, shown: str) -> None:
    if not part:
        raise IdentifierError(f"{shown}: a name cannot be empty; {_EXAMPLE}")
    if "\x00" in part:
        raise IdentifierError(f"{shown}: a name cannot contain a NUL character")
    if len(part.encode()) > MAX_IDENTIFIER_BYTES:
        raise IdentifierError(f"{shown} is longer than PostgreSQL's {MAX_IDENTIFIER_BYTES}-byte limit for "
                              f"names (it would be truncated to a different name)")


def _split(text: str) -> list[str]:
    """The identifiers of a dotted name, unquoted and folded, with whitespace allowed around dots."""
    parts: list[str] = []
    i, end = 0, len(text)
    while True:
        while i < end and text[i] in _SPACE:
            i += 1
        if i < end and text[i] == '"':
            part, i = _quoted(text, i)
        elif i < end and _UNQUOTED_START.match(text, i):
            match = _UNQUOTED.match(text, i)
            assert match is not None
            # PostgreSQL folds only ASCII letters of unquoted names (in UTF-8 databases).
            part, i = match.group().translate(_ASCII_UPPER_TO_LOWER), match.end()
        else:
            found = f"{text[i]!r} at position {i + 1}" if i < end else "the end"
            raise IdentifierError(f"{text!r}: expected a name at {found}; names with spaces, dashes or "
                                  f"capitals go in double quotes: {_EXAMPLE}")
        _check_identifier(part, f"{text!r}")
        parts.append(part)
        while i < end and text[i] in _SPACE:
            i += 1
        if i == end:
            return parts
        if text[i] != ".":
            raise IdentifierError(f"{text!r}: unexpected {text[i]!r} at position {i + 1}; names with spaces, "
                                  f"dashes or capitals go in double quotes: {_EXAMPLE}")
        i += 1


def _quoted(text: str, start: int) -> tuple[str, int]:
    """The identifier in double quotes starting at ``start`` and the position after its closing quote."""
    chars = []
    i = start + 1
    while i < len(text):
        if text[i] == '"':
            if i + 1 < len(text) and text[i + 1] == '"':
                chars.append('"')
                i += 2
                continue
            return "".join(chars), i + 1
        chars.append(text[i])
        i += 1
    raise IdentifierError(f"{text!r}: the double quote at position {start + 1} is never closed; "
                          f"write a quote inside a quoted name as two quotes (\"\")")
