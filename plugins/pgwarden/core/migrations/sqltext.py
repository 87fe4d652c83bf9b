"""SQL text for generated statements: every identifier double-quoted, every literal escaped.

Core code cannot use ``psycopg.sql`` (no I/O layer here), and ``core.identifiers.quote`` leaves
lower-case names bare, which breaks on reserved words (``order``, ``user``); generated DDL quotes
always. Values never appear in DDL: only names and the migration author's own SQL expressions.
"""

from __future__ import annotations

import hashlib

from pgwarden.core.identifiers import QualifiedName


def ident(*parts: str) -> str:
    return ".".join('"' + part.replace('"', '""') + '"' for part in parts)


def table(name: QualifiedName) -> str:
    return ident(name.schema, name.name)


def literal(text: str) -> str:
    """A standard-conforming string literal (the executor's sessions run with standard_conforming_strings on)."""
    return "'" + text.replace("'", "''") + "'"


def columns(names: tuple[str, ...] | list[str]) -> str:
    return ", ".join(ident(n) for n in names)


def short_name(prefix: str, *parts: str) -> str:
    """A generated object name within PostgreSQL's 63 bytes, stable for the same inputs."""
    digest = hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:10]
    return f"{prefix}_{digest}"
