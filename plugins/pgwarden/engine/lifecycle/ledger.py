"""The erasure ledger in the database it describes: ``pgwarden.erasure_ledger``, append-only.

Each entry is appended inside the erasure's own per-subject transaction, so the entry exists exactly
when the erasure committed. Appends are serialized by a transaction-scoped advisory lock (the next
position and the previous hash are read under it); the UNIQUE previous hash is a second guard should
anything append without the lock. A row trigger rejects UPDATE and DELETE, a statement trigger
TRUNCATE, and the application roles hold no privilege on the table. A superuser or the table owner
can still disable the triggers: ``verify_chain`` and the exported chain (``export.py``) catch that.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
from psycopg import sql

from pgwarden.core.lifecycle.ledger import (
    GENESIS_HASH,
    ChainProblem,
    ErasureRecord,
    LedgerEntry,
    StoredEntry,
    next_entry,
)
from pgwarden.engine.control import CONTROL_SCHEMA, control_table, ensure_control_schema
from pgwarden.engine.errors import PermanentError

LEDGER_TABLE = "erasure_ledger"
_GUARD_FUNCTION = "erasure_ledger_append_only"
_APPEND_LOCK = "pgwarden.erasure_ledger.append"
# A well-formed ledger time (format_time); anything else in an edited record compares as NULL, not an error.
_TIME_PATTERN = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$"
_COLUMNS = sql.SQL("seq, prev_hash, entry_hash, record, kind, request_id, subject_ref, erased_at")


def ledger_table() -> sql.Composed:
    return control_table(LEDGER_TABLE)


def ensure_ledger(conn: psycopg.Connection, app_roles: Sequence[str] = ()) -> None:
    """Create the ledger table, its append-only triggers, and revoke privileges. Idempotent.

    ``app_roles``: roles the application connects as; they lose every privilege on the table (as does
    PUBLIC), so the application can neither write nor read entries. Any other role granted something
    (schema default privileges, a GRANT by hand) keeps SELECT at most: an auditor role may read. Runs in
    its own transaction (a savepoint inside the caller's) with a short lock timeout: DDL must not queue
    behind traffic.
    """
    table = ledger_table()
    guard = control_table(_GUARD_FUNCTION)
    with conn.transaction():
        conn.execute("SELECT set_config('lock_timeout', '5s', true)")
        ensure_control_schema(conn)
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('pgwarden.erasure_ledger.ddl', 0))")
        conn.execute(sql.SQL(
            """CREATE TABLE IF NOT EXISTS {} (
                   seq bigint PRIMARY KEY CHECK (seq > 0),
                   prev_hash text NOT NULL UNIQUE CHECK (prev_hash ~ '^[0-9a-f]{{64}}$'),
                   entry_hash text NOT NULL UNIQUE CHECK (entry_hash ~ '^[0-9a-f]{{64}}$'),
                   record json NOT NULL,
                   kind text NOT NULL CHECK (kind IN ('erasure', 'reapply')),
                   request_id text NOT NULL,
                   subject_ref text NOT NULL,
                   erased_at timestamptz NOT NULL,
                   appended_at timestamptz NOT NULL DEFAULT clock_timestamp()
               )""").format(table))
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (subject_ref)").format(
            sql.Identifier(f"{LEDGER_TABLE}_subject_ref"), table))
        conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (request_id)").format(
            sql.Identifier(f"{LEDGER_TABLE}_request_id"), table))
        conn.execute(sql.SQL(
            """CREATE OR REPLACE FUNCTION {}() RETURNS trigger LANGUAGE plpgsql AS $$
               BEGIN
                   RAISE EXCEPTION 'pgwarden.erasure_ledger is append-only: % is not allowed', TG_OP
                       USING ERRCODE = 'insufficient_privilege',
                             HINT = 'erasure ledger entries are never changed or removed';
               END $$""").format(guard))
        conn.execute(sql.SQL(
            "CREATE OR REPLACE TRIGGER erasure_ledger_no_change BEFORE UPDATE OR DELETE ON {} "
            "FOR EACH ROW EXECUTE FUNCTION {}()").format(table, guard))
        conn.execute(sql.SQL(
            "CREATE OR REPLACE TRIGGER erasure_ledger_no_truncate BEFORE TRUNCATE ON {} "
            "FOR EACH STATEMENT EXECUTE FUNCTION {}()").format(table, guard))
        conn.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM PUBLIC").format(table))
        conn.execute(sql.SQL("REVOKE ALL ON FUNCTION {}() FROM PUBLIC").format(guard))
        for role in app_roles:
            conn.execute(sql.SQL("REVOKE ALL ON TABLE {} FROM {}").format(table, sql.Identifier(role)))
        # Whoever else was granted anything (default privileges of the schema, a hand-made GRANT) keeps at
        # most SELECT: no role but the owner may write to the ledger.
        writers = conn.execute(
            "SELECT DISTINCT r.rolname FROM pg_class c, aclexplode(c.relacl) a JOIN pg_roles r ON r.oid = a.grantee "
            "WHERE c.oid = %s::regclass AND a.grantee <> c.relowner AND a.privilege_type <> 'SELECT'",
            (f'"{CONTROL_SCHEMA}"."{LEDGER_TABLE}"',)).fetchall()
        for (role,) in writers:
            conn.execute(sql.SQL("REVOKE INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON TABLE {} FROM {}")
                         .format(table, sql.Identifier(role)))


def append(conn: psycopg.Connection, record: ErasureRecord) -> LedgerEntry:
    """Append ``record`` after the current head; call it inside the erasure's transaction.

    The advisory lock is held to the end of the caller's transaction, so concurrent erasures append
    one after another and every entry links to the one committed before it.
    """
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_APPEND_LOCK,))
        row = conn.execute(sql.SQL("SELECT seq, entry_hash FROM {} ORDER BY seq DESC LIMIT 1").format(
            ledger_table())).fetchone()
        entry = next_entry(None, record) if row is None else LedgerEntry.chain(int(row[0]) + 1, row[1], record)
        conn.execute(
            sql.SQL("INSERT INTO {} ({}) VALUES (%s, %s, %s, %s::json, %s, %s, %s, %s)").format(ledger_table(), _COLUMNS),
            (entry.seq, entry.prev_hash, entry.entry_hash, StoredEntry.of(entry).record_json,
             record.kind, record.request_id, record.subject_ref, record.erased_at),
        )
    return entry


def is_erased(conn: psycopg.Connection, subject_ref: str) -> bool:
    """Whether an erasure entry exists for the subject (re-apply entries do not count)."""
    row = conn.execute(sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE subject_ref = %s AND kind = 'erasure')").format(
        ledger_table()), (subject_ref,)).fetchone()
    return bool(row and row[0])


def erased_refs_since(conn: psycopg.Connection, since: datetime | None) -> list[LedgerEntry]:
    """Erasure entries with ``erased_at`` after ``since`` (all of them for ``None``), in chain order."""
    query = sql.SQL("SELECT {} FROM {} WHERE kind = 'erasure' AND (%s::timestamptz IS NULL OR erased_at > %s) "
                    "ORDER BY seq").format(_COLUMNS, ledger_table())
    return [_entry(row) for row in conn.execute(query, (since, since))]


def ledger_exists(conn: psycopg.Connection) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL",
                       (f'"pgwarden"."{LEDGER_TABLE}"',)).fetchone()
    return bool(row and row[0])


def read_stored(conn: psycopg.Connection, after_seq: int = 0) -> tuple[list[StoredEntry], ChainProblem | None]:
    """Entries after ``after_seq`` in position order, records unparsed (what verification needs), and the
    first whose queryable columns disagree with the hashed record (an edit the chain alone would not see:
    ``is_erased`` reads the columns). The columns are compared by the server, and records come as text
    parsed here: together three times faster than letting psycopg convert every column of 100k rows."""
    edited = conn.execute(sql.SQL(
        "SELECT min(seq) FROM {} WHERE seq > %s AND (kind IS DISTINCT FROM record->>'kind' "
        "OR request_id IS DISTINCT FROM record->>'request_id' OR subject_ref IS DISTINCT FROM record->>'subject_ref' "
        "OR erased_at IS DISTINCT FROM CASE WHEN record->>'erased_at' ~ {} "
        "THEN (record->>'erased_at')::timestamptz END)").format(ledger_table(), sql.Literal(_TIME_PATTERN)),
        (after_seq,)).fetchone()
    mismatch = None
    if edited and edited[0] is not None:
        mismatch = ChainProblem(int(edited[0]), "its kind, request id, subject reference or time columns differ "
                                                "from the hashed record: the row was edited")
    rows = conn.execute(sql.SQL("SELECT seq, prev_hash, entry_hash, record::text FROM {} WHERE seq > %s "
                                "ORDER BY seq").format(ledger_table()), (after_seq,)).fetchall()
    return [StoredEntry(seq, prev_hash, entry_hash, text) for seq, prev_hash, entry_hash, text in rows], mismatch


def read_entries(conn: psycopg.Connection, after_seq: int = 0) -> tuple[list[LedgerEntry], ChainProblem | None]:
    """``read_stored`` with the records parsed."""
    stored, mismatch = read_stored(conn, after_seq)
    return [e.entry() for e in stored], mismatch


def _entry(row: Sequence[Any]) -> LedgerEntry:
    seq, prev_hash, entry_hash, record = row[:4]
    return LedgerEntry(seq=int(seq), prev_hash=prev_hash, entry_hash=entry_hash,
                       record=ErasureRecord.from_json_dict(record))


def restore_entries(conn: psycopg.Connection, entries: Sequence[StoredEntry]) -> int:
    """Insert exported ``entries`` the database lacks, verbatim (same positions and hashes), after its head.

    After a restore the database's chain ends where its backup did; the export holds the entries
    appended since. They go back in as they were, so the chain stays one chain, before any re-apply
    entry is appended behind them. ``entries`` must be a verified chain; each is inserted only if it
    links to the current head (the unique previous hash and the primary key refuse anything else).
    """
    inserted = 0
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (_APPEND_LOCK,))
        row = conn.execute(sql.SQL("SELECT seq, entry_hash FROM {} ORDER BY seq DESC LIMIT 1").format(
            ledger_table())).fetchone()
        head_seq, head_hash = (int(row[0]), row[1]) if row else (0, GENESIS_HASH)
        for entry in entries:
            if entry.seq <= head_seq:
                continue
            if entry.seq != head_seq + 1 or entry.prev_hash != head_hash:
                raise PermanentError(f"exported ledger entry {entry.seq} does not follow the database's entry "
                                     f"{head_seq}; run `pgwarden ledger verify` on both")
            record = entry.entry().record
            conn.execute(
                sql.SQL("INSERT INTO {} ({}) VALUES (%s, %s, %s, %s::json, %s, %s, %s, %s)").format(ledger_table(), _COLUMNS),
                (entry.seq, entry.prev_hash, entry.entry_hash, entry.record_json,
                 record.kind, record.request_id, record.subject_ref, record.erased_at))
            head_seq, head_hash = entry.seq, entry.entry_hash
            inserted += 1
    return inserted


def head(conn: psycopg.Connection) -> tuple[int, str]:
    """(seq, entry hash) of the last entry; (0, genesis) for an empty or missing ledger."""
    if not ledger_exists(conn):
        return 0, GENESIS_HASH
    row = conn.execute(sql.SQL("SELECT seq, entry_hash FROM {} ORDER BY seq DESC LIMIT 1").format(
        ledger_table())).fetchone()
    return (int(row[0]), row[1]) if row else (0, GENESIS_HASH)
