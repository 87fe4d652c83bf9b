"""Split migration SQL into statements with their line numbers, and name the lock each one takes (pure).

The splitter knows what can hide a ``;``: quoted strings and identifiers, dollar-quoted bodies,
``--`` and (nested) ``/* */`` comments. It does not parse SQL; the server does that when it runs.

The lock table (:data:`LOCK_RULES`) derives the strongest table lock from the statement's kind, after
PostgreSQL's documentation ("Explicit Locking", and each command's page). First match wins, so the more
specific forms come first. It is a planning aid shown by ``pgwarden migrate plan``; squawk's lint is what
refuses unsafe statements.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

BLOCKS = {
    "ACCESS EXCLUSIVE": "reads and writes",
    "EXCLUSIVE": "writes (reads go on)",
    "SHARE ROW EXCLUSIVE": "writes (reads go on)",
    "SHARE": "writes (reads go on)",
    "SHARE UPDATE EXCLUSIVE": "other schema changes and VACUUM (reads and writes go on)",
    "ROW EXCLUSIVE": "only schema changes (row locks on the rows it changes)",
    "ACCESS SHARE": "only ACCESS EXCLUSIVE schema changes",
    "none": "nothing existing (new object)",
}

# (pattern on the statement's leading words, lock mode, what it applies to)
LOCK_RULES: tuple[tuple[str, str, str], ...] = (
    (r"CREATE (UNIQUE )?INDEX CONCURRENTLY", "SHARE UPDATE EXCLUSIVE", "table"),
    (r"CREATE (UNIQUE )?INDEX", "SHARE", "table"),
    (r"DROP INDEX CONCURRENTLY", "SHARE UPDATE EXCLUSIVE", "table"),
    (r"DROP INDEX", "ACCESS EXCLUSIVE", "table of the index"),
    (r"REINDEX .*CONCURRENTLY", "SHARE UPDATE EXCLUSIVE", "table"),
    (r"REINDEX", "ACCESS EXCLUSIVE", "index (SHARE on its table)"),
    (r"ALTER TABLE .* VALIDATE CONSTRAINT", "SHARE UPDATE EXCLUSIVE", "table"),
    (r"ALTER TABLE .* ADD (CONSTRAINT \S+ )?FOREIGN KEY", "SHARE ROW EXCLUSIVE", "table and referenced table"),
    (r"ALTER TABLE .* (ENABLE|DISABLE) TRIGGER", "SHARE ROW EXCLUSIVE", "table"),
    (r"ALTER TABLE .* ATTACH PARTITION", "SHARE UPDATE EXCLUSIVE", "parent (ACCESS EXCLUSIVE on the partition)"),
    (r"ALTER TABLE .* DETACH PARTITION .*CONCURRENTLY", "SHARE UPDATE EXCLUSIVE", "parent"),
    (r"ALTER TABLE .* SET STATISTICS", "SHARE UPDATE EXCLUSIVE", "table"),
    (r"ALTER TABLE .* (SET|RESET) \(", "SHARE UPDATE EXCLUSIVE", "table"),
    (r"ALTER TABLE .* CLUSTER ON", "SHARE UPDATE EXCLUSIVE", "table"),
    (r"ALTER TABLE", "ACCESS EXCLUSIVE", "table"),
    (r"ALTER INDEX", "SHARE UPDATE EXCLUSIVE", "index"),
    (r"CREATE TRIGGER|CREATE OR REPLACE TRIGGER|DROP TRIGGER", "SHARE ROW EXCLUSIVE", "table"),
    (r"CREATE (TEMP |TEMPORARY |UNLOGGED )?TABLE .*REFERENCES", "SHARE ROW EXCLUSIVE",
     "referenced table (the new table itself: none)"),
    (r"CREATE (TEMP |TEMPORARY |UNLOGGED )?TABLE", "none", "new table"),
    (r"CREATE (OR REPLACE )?(VIEW|FUNCTION|PROCEDURE|SCHEMA|TYPE|SEQUENCE|EXTENSION|DOMAIN)", "none",
     "new object"),
    (r"DROP (TABLE|MATERIALIZED VIEW)", "ACCESS EXCLUSIVE", "table"),
    (r"TRUNCATE", "ACCESS EXCLUSIVE", "table"),
    (r"VACUUM FULL|CLUSTER", "ACCESS EXCLUSIVE", "table"),
    (r"VACUUM|ANALYZE", "SHARE UPDATE EXCLUSIVE", "table"),
    (r"COMMENT ON", "SHARE UPDATE EXCLUSIVE", "object"),
    (r"REFRESH MATERIALIZED VIEW .*CONCURRENTLY", "EXCLUSIVE", "materialized view"),
    (r"REFRESH MATERIALIZED VIEW", "ACCESS EXCLUSIVE", "materialized view"),
    (r"LOCK TABLE .* IN (.+?) MODE", "{0}", "table"),
    (r"INSERT|UPDATE|DELETE|MERGE|COPY .* FROM", "ROW EXCLUSIVE", "table"),
    (r"SELECT|WITH|COPY", "ACCESS SHARE", "table"),
    (r"SET |RESET |SHOW ", "none", "session setting"),
)


@dataclass(frozen=True)
class Statement:
    text: str
    line: int  # 1-based line of the statement's first character

    @property
    def lock(self) -> tuple[str, str]:
        """(lock mode, what it applies to)."""
        return lock_for(self.text)


def _leading_words(text: str) -> str:
    words = re.sub(r"--[^\n]*|/\*.*?\*/", " ", text, flags=re.S)
    return " ".join(words.upper().split())


def lock_for(statement: str) -> tuple[str, str]:
    words = _leading_words(statement)
    for pattern, mode, what in LOCK_RULES:
        match = re.match(pattern, words)
        if match:
            return (mode.format(*match.groups()) if "{0}" in mode else mode), what
    return "unknown", "check the PostgreSQL documentation of this command"


_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")


def split_statements(text: str) -> list[Statement]:
    """Statements in order, each with the line it starts on; comments-only chunks are dropped."""
    statements: list[Statement] = []
    start = 0
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "-" and text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end
        elif ch == "/" and text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
            continue
        elif ch in "'\"":
            i += 1
            while i < n:
                if text[i] == ch:
                    if i + 1 < n and text[i + 1] == ch:  # doubled quote inside the literal
                        i += 2
                        continue
                    break
                i += 1
        elif ch == "$":
            tag = _DOLLAR.match(text, i)
            if tag and not (i and (text[i - 1].isalnum() or text[i - 1] == "_")):
                end = text.find(tag.group(0), tag.end())
                i = n if end < 0 else end + len(tag.group(0))
                continue
        elif ch == ";":
            _append(statements, text, start, i)
            start = i + 1
        i += 1
    _append(statements, text, start, n)
    return statements


def _append(statements: list[Statement], text: str, start: int, end: int) -> None:
    chunk = text[start:end]
    if not _leading_words(chunk):
        return
    offset = len(chunk) - len(chunk.lstrip())
    # skip leading comments so the line points at the statement itself
    body = chunk[offset:]
    while body.startswith("--") or body.startswith("/*"):
        cut = body.find("\n") + 1 if body.startswith("--") else body.find("*/") + 2
        if cut <= 0:
            break
        stripped = body[cut:].lstrip()
        offset += len(body) - len(stripped)
        body = stripped
    line = text.count("\n", 0, start + offset) + 1
    statements.append(Statement(text=body.strip(), line=line))
