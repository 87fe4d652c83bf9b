"""Archive-verify-delete: expired rows go to Parquet parts in the repository, are read back and
checked, and only then deleted, in a transaction that re-selects them by key.

One run (one policy, one ``data_interval_end``) does, part after part:

1. read the next expired rows in key order (short read-only queries through a binary server-side
   cursor; no lock is held while uploading), until about ``max_part_size`` of them;
2. write them as ``part-NNNNN.parquet`` (types: ``core/lifecycle/archive.py``), upload it with the
   policy's storage class (and expiry tag), read it back from the repository, check its SHA-256,
   its row count and its key set;
3. record the part in the run's ``manifest.json`` (state ``uploaded``);
4. delete those rows in batches, each in one transaction: the archived keys are copied into a temp
   table and ``DELETE ... USING`` it deletes a row only if it still has the archived row version
   (``xmin``) and still matches the expiry predicate. Rows updated in the meantime stay and are
   counted as ``rows_changed_kept``;
5. record the part as ``deleted`` with its counts.

Part numbers come from the manifest, so a worker killed at any point converges on the next attempt:
killed before 3, the same part number is written again (same key, overwritten); killed between 3
and 5, the part is read back and its delete is run again (a delete of gone rows deletes nothing).
The walk resumes after the last archived key, read from the last part itself.

It runs inside ``purge()`` (engine/lifecycle/purge.py) as the main table's runner: the plan step,
the per-table advisory lock and the children's purge come from there; the expiry condition is the
plan's ``Selection`` (``select`` to read, ``recheck`` in the DELETE) at the plan's threshold.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from pgwarden.core.identifiers import QualifiedName
from pgwarden.core.lifecycle.archive import (
    EXPIRE_TAG,
    ROW_VERSION_COLUMN,
    UNREADABLE_CLASSES,
    ArchivedColumn,
    ArchiveManifest,
    ArchivePart,
    ArrowType,
    ColumnMapping,
    PgColumn,
    check_archive_columns,
    expiry_tag_days,
    interval_label,
    manifest_key,
    map_column,
    part_key,
)
from pgwarden.core.lifecycle.config import ArchiveConfig, PolicyConfig
from pgwarden.engine.batches import BatchSettings, BatchStats, Key
from pgwarden.engine.errors import PermanentError, TransientError
from pgwarden.engine.lifecycle.plan import set_batch_session
from pgwarden.engine.lifecycle.selection import Selection, after_condition, after_params, columns
from pgwarden.engine.postgres import PgTarget, connect, table_identifier
from pgwarden.engine.repository import ObjectMissing, Repository

if TYPE_CHECKING:
    import pyarrow as pa

HMAC_KEY_ENV = "PGWARDEN_ARCHIVE_HMAC_KEY"
KEYS_TABLE = "pgwarden_archive_keys"
READ_BATCH_ROWS = 10_000
DELETE_BATCH_ROWS = 5_000
LOCK_RETRIES = 30

Log = Callable[[str], None]


@dataclass(frozen=True)
class ArchiveRequest:
    """One policy's archival for one run: rows whose expiry column is older than
    ``policy.expire.threshold(data_interval_end)`` (the run's logical now, never ``now()``)."""

    database: str
    policy: PolicyConfig
    data_interval_end: datetime
    run_id: str

    @property
    def table(self) -> QualifiedName:
        return self.policy.table

    @property
    def options(self) -> ArchiveConfig:
        return self.policy.archive_settings

    @property
    def interval(self) -> str:
        return interval_label(self.data_interval_end)


@dataclass
class ArchiveStats(BatchStats):
    """The purge runner's counts (``rows`` = rows deleted) plus the archive's. Counts only."""

    parts: int = 0
    rows_archived: int = 0
    rows_changed_kept: int = 0
    rows_already_gone: int = 0
    bytes_archived: int = 0
    manifest_key: str = ""

    @property
    def rows_deleted(self) -> int:
        return self.rows

    def to_json_dict(self) -> dict[str, object]:
        return {**super().to_json_dict(), "parts": self.parts, "rows_archived": self.rows_archived,
                "rows_changed_kept": self.rows_changed_kept, "rows_already_gone": self.rows_already_gone,
                "bytes_archived": self.bytes_archived, "manifest_key": self.manifest_key}


def _millis(delta: timedelta) -> str:
    return f"{max(1, int(delta.total_seconds() * 1000))}ms"


def hmac_key_from_env(environ: dict[str, str] | None = None) -> bytes | None:
    """The anonymization key: ``PGWARDEN_ARCHIVE_HMAC_KEY`` (never the config, which is in git)."""
    value = (environ if environ is not None else os.environ).get(HMAC_KEY_ENV)
    return value.encode() if value else None


# -- the table --------------------------------------------------------------------------------------

_COLUMNS_SQL = """
SELECT a.attname,
       bt.typname,
       CASE WHEN t.typtype = 'd' THEN t.typtypmod ELSE a.atttypmod END,
       et.typname,
       format_type(a.atttypid, a.atttypmod)
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
JOIN pg_type bt ON bt.oid = CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.oid END
LEFT JOIN pg_type et ON et.oid = bt.typelem AND bt.typcategory = 'A'
WHERE a.attrelid = %s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

def _regclass(table: QualifiedName) -> str:
    return str(table)  # parse_ident-compatible text; passed as a bind parameter to ::regclass


def describe_columns(conn: psycopg.Connection, table: QualifiedName) -> list[PgColumn]:
    try:
        rows = conn.execute(_COLUMNS_SQL, (_regclass(table),)).fetchall()
    except psycopg.errors.UndefinedTable:
        raise PermanentError(f"table {table} does not exist; fix the policy's table (names with capitals "
                             f"or spaces go in double quotes)") from None
    return [PgColumn(name=r[0], type_name=r[1], typmod=r[2], element_type=r[3], formatted=r[4]) for r in rows]


# -- Arrow ------------------------------------------------------------------------------------------


def _pa_type(t: ArrowType) -> pa.DataType:
    import pyarrow as pa

    simple = {"int16": pa.int16(), "int32": pa.int32(), "int64": pa.int64(), "float32": pa.float32(),
              "float64": pa.float64(), "bool": pa.bool_(), "string": pa.string(), "binary": pa.binary(),
              "date32": pa.date32(), "time64": pa.time64("us")}
    if t.kind in simple:
        return simple[t.kind]
    if t.kind == "timestamp":
        return pa.timestamp("us", tz=t.tz)
    if t.kind == "decimal":
        assert t.precision is not None and t.scale is not None
        maker = pa.decimal128 if t.precision <= 38 else pa.decimal256
        return maker(t.precision, t.scale)
    if t.kind == "list":
        assert t.item is not None
        return pa.list_(_pa_type(t.item))
    raise ValueError(f"no Arrow type for {t}")


@dataclass(frozen=True)
class _Layout:
    """What a run reads and writes: the archived columns, how, and the key."""

    mappings: list[ColumnMapping]
    anonymized: frozenset[str]
    dropped: list[str]
    key: list[str]

    def schema(self) -> pa.Schema:
        import pyarrow as pa

        fields = [pa.field(m.name, _pa_type(m.arrow)) for m in self.mappings]
        return pa.schema([*fields, pa.field(ROW_VERSION_COLUMN, pa.int64(), nullable=False)])

    def select_list(self) -> sql.Composable:
        items: list[sql.Composable] = []
        for m in self.mappings:
            col = sql.Identifier(m.name)
            items.append(sql.SQL("{}::text").format(col) if m.as_text else col)
        items.append(sql.SQL("xmin::text::bigint"))
        return sql.SQL(", ").join(items)

    def key_list(self, alias: str | None = None) -> sql.Composable:
        return sql.SQL(", ").join(sql.Identifier(alias, k) if alias else sql.Identifier(k) for k in self.key)


def _layout(columns: list[PgColumn], key: list[str], options: ArchiveConfig) -> _Layout:
    mappings = []
    for column in columns:
        if column.name in options.drop_columns:
            continue
        mapping = map_column(column)
        if column.name in options.anonymize_columns:
            mapping = ColumnMapping(column.name, mapping.source_type, ArrowType("string"), as_text=True,
                                    note="anonymized: hex HMAC-SHA256 of the value's text (keyed)")
        mappings.append(mapping)
    return _Layout(mappings, frozenset(options.anonymize_columns), list(options.drop_columns), key)


def _anonymize(value: str | None, key: bytes) -> str | None:
    return None if value is None else hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def _to_table(layout: _Layout, rows: list[tuple[Any, ...]], hmac_key: bytes | None) -> pa.Table:
    import pyarrow as pa

    schema = layout.schema()
    arrays = []
    for i, f in enumerate(schema):
        values = [r[i] for r in rows]
        if f.name in layout.anonymized:
            assert hmac_key is not None
            values = [_anonymize(v, hmac_key) for v in values]
        try:
            arrays.append(pa.array(values, type=f.type))
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            # No value in the message: it may be personal data.
            raise PermanentError(
                f"column {f.name!r} has a value that does not fit {f.type} ({type(exc).__name__}); e.g. a "
                f"multi-dimensional array or a NaN numeric. Archive it as text: give the column a "
                f"domain/type that maps to a string, or drop it from the archive") from None
    return pa.Table.from_arrays(arrays, schema=schema)


# -- the run ----------------------------------------------------------------------------------------


class _Run:
    def __init__(self, conn: psycopg.Connection, archiver: Archiver, selection: Selection, threshold: datetime,
                 settings: BatchSettings) -> None:
        self.conn = conn
        self.repo = archiver.repo
        self.req = archiver.request
        self.workdir = archiver.workdir
        self.hmac_key = archiver.hmac_key
        self.log = archiver.log
        self.read_batch_rows = archiver.read_batch_rows
        self.delete_batch_rows = archiver.delete_batch_rows
        self.clock = archiver.clock
        self.selection = selection
        self.threshold = threshold
        self.settings = settings
        self.started = self.clock()
        self.table = table_identifier(selection.table)
        self.manifest_key = manifest_key(self.req.database, self.req.table, self.req.interval)
        self.stats = ArchiveStats(manifest_key=self.manifest_key)
        expire_after = self.req.options.expire_after
        self.expire_days = expiry_tag_days(expire_after) if expire_after else None

    def begin_batch(self) -> None:
        """The purge's per-transaction settings (UTC, index walks) and the policy's timeouts."""
        set_batch_session(self.conn)
        self.conn.execute("SELECT set_config('lock_timeout', %s, true), set_config('statement_timeout', %s, true)",
                          (_millis(self.settings.lock_timeout), _millis(self.settings.statement_timeout)))

    # -- manifest ------------------------------------------------------------------------------------

    def load_manifest(self, layout: _Layout) -> ArchiveManifest:
        try:
            return ArchiveManifest.model_validate_json(self.repo.get_bytes(self.manifest_key))
        except ObjectMissing:
            pass
        now = datetime.now(timezone.utc)
        columns = [ArchivedColumn(name=m.name, source_type=m.source_type, arrow_type=str(m.arrow),
                                  treatment="anonymized" if m.name in layout.anonymized else "kept", note=m.note)
                   for m in layout.mappings]
        return ArchiveManifest(
            database=self.req.database, table=str(self.req.table), interval=self.req.interval,
            cutoff=self.threshold, policy=self.req.policy.name, run_id=self.req.run_id,
            storage_class=self.req.options.storage_class, expire_after_days=self.expire_days,
            key_columns=layout.key, columns=columns, dropped_columns=layout.dropped, created_at=now,
            updated_at=now)

    def save_manifest(self, manifest: ArchiveManifest) -> None:
        manifest.updated_at = datetime.now(timezone.utc)
        self.repo.put_bytes(self.manifest_key, manifest.model_dump_json(indent=1).encode())

    # -- reading -------------------------------------------------------------------------------------

    def read_batches(self, layout: _Layout, after: Key | None) -> Iterator[list[tuple[Any, ...]]]:
        """Selected rows in key order, one batch per short transaction (no lock held between them),
        read through a binary server-side cursor."""
        key = self.selection.key
        positions = [self.column_index(layout, k) for k in key]
        while True:
            query = sql.SQL("SELECT {} FROM {} AS t WHERE {}{} ORDER BY {} LIMIT %(limit)s").format(
                layout.select_list(), self.table, after_condition("t", key, after), self.selection.select("t"),
                columns("t", key))
            params = {"threshold": self.threshold, "limit": self.read_batch_rows, **after_params(key, after)}
            with self.conn.transaction():
                self.begin_batch()
                with self.conn.cursor(name="pgwarden_archive_read", binary=True) as cur:
                    cur.execute(query, params)
                    rows = cur.fetchall()
            if not rows:
                return
            yield rows
            if len(rows) < self.read_batch_rows:
                return
            after = tuple(rows[-1][p] for p in positions)

    @staticmethod
    def column_index(layout: _Layout, name: str) -> int:
        return [m.name for m in layout.mappings].index(name)

    # -- one part ------------------------------------------------------------------------------------

    def write_part(self, layout: _Layout, manifest: ArchiveManifest, table: pa.Table) -> ArchivePart:
        import pyarrow.parquet as pq

        number = len(manifest.parts)
        key = part_key(self.req.database, self.req.table, self.req.interval, number)
        local = self.workdir / f"part-{number:05d}.parquet"
        table = table.replace_schema_metadata({"pgwarden.table": str(self.req.table),
                                               "pgwarden.interval": self.req.interval,
                                               "pgwarden.run_id": self.req.run_id})
        pq.write_table(table, local, compression="zstd")
        options = self.req.options
        tags = {EXPIRE_TAG: str(self.expire_days)} if self.expire_days else None
        self.log(f"uploading part {number} ({table.num_rows} rows, {local.stat().st_size} bytes) to "
                 f"{self.repo.uri(key)}")
        info = self.repo.put_file(key, local, storage_class=options.storage_class, tags=tags)
        keys = table.select(layout.key).to_pylist()
        self.verify_part(layout, key, local, info.sha256 or "", table.num_rows, keys)
        local.unlink()
        key_text = [[str(v) for v in row.values()] for row in (keys[0], keys[-1])]
        return ArchivePart(number=number, key=key, rows=table.num_rows, size=info.size, sha256=info.sha256 or "",
                           key_min=key_text[0], key_max=key_text[1])

    def verify_part(self, layout: _Layout, key: str, local: Path, sha256: str, rows: int,
                    keys: list[dict[str, Any]]) -> None:
        """Read the part back from the repository: same checksum, same rows, same keys."""
        import pyarrow.parquet as pq

        if self.req.options.storage_class in UNREADABLE_CLASSES:
            # GLACIER/DEEP_ARCHIVE objects cannot be read before a restore: check what S3 recorded
            # against the local file, which is re-read and checked instead.
            head = self.repo.head(key)
            if head is None or head.sha256 != sha256 or head.size != local.stat().st_size:
                raise TransientError(f"{self.repo.uri(key)} is not the part just uploaded; the run retries it")
            back = local
        else:
            back = self.workdir / f"verify-{local.name}"
            self.repo.get_file(key, back, expected_sha256=sha256)
        try:
            table = pq.read_table(back)
        finally:
            if back != local:
                back.unlink(missing_ok=True)
        if table.num_rows != rows or table.select(layout.key).to_pylist() != keys:
            raise TransientError(f"{self.repo.uri(key)} read back with {table.num_rows} rows, not the {rows} "
                                 f"archived (or other keys); nothing was deleted, the run retries the part")

    def read_part(self, part: ArchivePart) -> pa.Table:
        import pyarrow.parquet as pq

        local = self.workdir / f"recover-{part.number:05d}.parquet"
        if self.req.options.storage_class in UNREADABLE_CLASSES:
            raise PermanentError(
                f"part {part.key} was uploaded but not yet deleted from the table, and its storage class "
                f"{self.req.options.storage_class} cannot be read back without an S3 restore; restore it "
                f"(aws s3api restore-object) and rerun, or delete the part and its manifest entry to redo it")
        self.repo.get_file(part.key, local, expected_sha256=part.sha256)
        try:
            return pq.read_table(local)
        finally:
            local.unlink(missing_ok=True)

    # -- deleting ------------------------------------------------------------------------------------

    def delete_part(self, layout: _Layout, part: ArchivePart, table: pa.Table) -> None:
        """Delete the part's rows that still have the archived version and still expire."""
        versions = table.select([*layout.key, ROW_VERSION_COLUMN]).to_pylist()
        deleted = kept = gone = 0
        for start in range(0, len(versions), self.delete_batch_rows):
            chunk = [tuple(v.values()) for v in versions[start:start + self.delete_batch_rows]]
            began = self.clock()
            d, k = self.delete_chunk(layout, chunk)
            self.stats.durations_ms.append((self.clock() - began) * 1000)
            self.stats.batches += 1
            deleted, kept, gone = deleted + d, kept + k, gone + len(chunk) - d - k
        part.state = "deleted"
        part.rows_deleted, part.rows_changed_kept, part.rows_already_gone = deleted, kept, gone
        self.log(f"part {part.number}: deleted {deleted} rows, kept {kept} changed since archival, "
                 f"{gone} already gone")

    def ensure_keys_table(self, layout: _Layout) -> None:
        keys = sql.Identifier("pg_temp", KEYS_TABLE)
        with self.conn.transaction():
            self.conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(keys))
            # LIMIT 0 copies the key columns' exact types without naming them.
            self.conn.execute(sql.SQL("CREATE TEMP TABLE {} AS SELECT {} FROM {} LIMIT 0").format(
                sql.Identifier(KEYS_TABLE), layout.key_list(), self.table))
            self.conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} bigint").format(
                keys, sql.Identifier(ROW_VERSION_COLUMN)))

    def delete_chunk(self, layout: _Layout, chunk: list[tuple[Any, ...]]) -> tuple[int, int]:
        keys = sql.Identifier("pg_temp", KEYS_TABLE)
        match = sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(sql.Identifier("t", k), sql.Identifier("a", k)) for k in layout.key)
        delete = sql.SQL(
            "DELETE FROM {table} AS t USING {keys} AS a WHERE {match} AND t.xmin::text::bigint = a.{ver} AND {recheck}"
        ).format(table=self.table, keys=keys, match=match, ver=sql.Identifier(ROW_VERSION_COLUMN),
                 recheck=self.selection.recheck("t"))
        still_there = sql.SQL("SELECT count(*) FROM {table} AS t JOIN {keys} AS a ON {match}").format(
            table=self.table, keys=keys, match=match)
        copy = sql.SQL("COPY {} ({}, {}) FROM STDIN").format(keys, layout.key_list(),
                                                            sql.Identifier(ROW_VERSION_COLUMN))
        for attempt in range(LOCK_RETRIES + 1):
            try:
                with self.conn.transaction():
                    self.begin_batch()
                    self.conn.execute(sql.SQL("TRUNCATE {}").format(keys))
                    with self.conn.cursor().copy(copy) as cp:
                        for row in chunk:
                            cp.write_row(row)
                    self.conn.execute(sql.SQL("ANALYZE {}").format(keys))
                    deleted = self.conn.execute(delete, {"threshold": self.threshold}).rowcount
                    kept = self.conn.execute(still_there).fetchone()[0]  # type: ignore[index]
                return deleted, int(kept)
            except psycopg.errors.LockNotAvailable:
                self.stats.lock_timeout_retries += 1
                if attempt == LOCK_RETRIES:
                    raise TransientError(f"deleting archived rows from {self.req.table}: still locked after "
                                         f"{LOCK_RETRIES} lock timeouts; the archive is safe, the next run "
                                         f"deletes them") from None
                time.sleep(min(0.2 * 2 ** attempt, 5.0))
        raise AssertionError("unreachable")

    # -- the whole run -------------------------------------------------------------------------------

    def run(self) -> ArchiveStats:
        import pyarrow as pa

        columns = describe_columns(self.conn, self.req.table)
        names = [c.name for c in columns]
        key = list(self.selection.key)
        try:
            check_archive_columns(names, key, self.req.policy)
        except ValueError as exc:
            raise PermanentError(str(exc)) from None
        if self.req.options.anonymize_columns and self.hmac_key is None:
            raise PermanentError(f"archive.anonymize_columns needs a secret key: set {HMAC_KEY_ENV} in the "
                                 f"worker's environment (or an Airflow secret exposed as that variable)")
        layout = _layout(columns, key, self.req.options)
        self.workdir.mkdir(parents=True, exist_ok=True)
        manifest = self.load_manifest(layout)
        if manifest.key_columns != key or manifest.cutoff != self.threshold:
            raise PermanentError(f"{self.manifest_key} was written for key {manifest.key_columns} and cutoff "
                                 f"{manifest.cutoff}, not this policy's; move it away to archive this run again")
        self.ensure_keys_table(layout)

        last: pa.Table | None = None
        for part in manifest.parts:
            if part.state == "uploaded" or part is manifest.parts[-1]:
                last = self.read_part(part)
            if part.state == "uploaded":
                self.log(f"part {part.number} was archived by an earlier attempt; deleting its rows now")
                self.delete_part(layout, part, last)
                self.save_manifest(manifest)
        after = None
        if last is not None and last.num_rows:
            after = tuple(last.slice(last.num_rows - 1).select(key).to_pylist()[0].values())

        finished = manifest.complete
        if not finished:
            pending: list[pa.Table] = []
            pending_bytes = 0
            finished = True
            for rows in self.read_batches(layout, after):
                batch = _to_table(layout, rows, self.hmac_key)
                pending.append(batch)
                pending_bytes += batch.nbytes
                if pending_bytes >= self.req.options.max_part_size:
                    self.archive_part(layout, manifest, pa.concat_tables(pending))
                    pending, pending_bytes = [], 0
                    if self.clock() - self.started >= self.settings.max_run_time.total_seconds():
                        self.log("archive: stopping at the run time limit; a retry of this run continues")
                        finished = False
                        break
            if pending:
                self.archive_part(layout, manifest, pa.concat_tables(pending))
            manifest.complete = finished
            self.save_manifest(manifest)

        s = self.stats
        s.finished = finished
        s.parts = len(manifest.parts)
        s.rows = manifest.rows_deleted
        s.rows_archived = manifest.rows_archived
        s.rows_changed_kept = manifest.rows_changed_kept
        s.rows_already_gone = sum(p.rows_already_gone for p in manifest.parts)
        s.bytes_archived = sum(p.size for p in manifest.parts)
        s.elapsed_s = self.clock() - self.started
        self.log(f"archived {s.rows_archived} rows of {self.req.table} in {s.parts} part(s); deleted "
                 f"{s.rows_deleted}, kept {s.rows_changed_kept} changed since archival")
        return s

    def archive_part(self, layout: _Layout, manifest: ArchiveManifest, table: pa.Table) -> None:
        part = self.write_part(layout, manifest, table)
        manifest.parts.append(part)
        self.save_manifest(manifest)
        self.delete_part(layout, part, table)
        self.save_manifest(manifest)


@dataclass
class Archiver:
    """The main-table runner ``purge(..., archiver=...)`` calls for mode ``archive_then_delete``
    (after the children, inside the table's advisory lock); ``last`` holds its stats afterwards."""

    repo: Repository
    request: ArchiveRequest
    workdir: Path
    hmac_key: bytes | None = None
    log: Log = print
    read_batch_rows: int = READ_BATCH_ROWS
    delete_batch_rows: int = DELETE_BATCH_ROWS
    clock: Callable[[], float] = time.monotonic
    last: ArchiveStats | None = None

    def __call__(self, conn: psycopg.Connection, selection: Selection, threshold: datetime,
                 settings: BatchSettings) -> ArchiveStats:
        self.last = _Run(conn, self, selection, threshold, settings).run()
        return self.last


def archive_then_delete(
    target: PgTarget,
    repo: Repository,
    request: ArchiveRequest,
    *,
    workdir: Path,
    hmac_key: bytes | None = None,
    log: Log = lambda _: None,
    read_batch_rows: int = READ_BATCH_ROWS,
    delete_batch_rows: int = DELETE_BATCH_ROWS,
) -> ArchiveStats:
    """One policy's run in mode ``archive_then_delete``: the purge (plan, advisory lock, children
    first) with the main table archived, verified, then deleted. Returns the archive's stats."""
    from pgwarden.engine.lifecycle.purge import purge

    archiver = Archiver(repo, request, workdir, hmac_key, log, read_batch_rows, delete_batch_rows)
    purge(target, request.policy, request.data_interval_end, log=log, archiver=archiver)
    assert archiver.last is not None
    return archiver.last


# -- bringing archived rows back --------------------------------------------------------------------


def read_manifest(repo: Repository, database: str, table: QualifiedName, interval: str) -> ArchiveManifest:
    key = manifest_key(database, table, interval)
    try:
        return ArchiveManifest.model_validate_json(repo.get_bytes(key))
    except ObjectMissing:
        raise PermanentError(f"no archive of {table} for interval {interval} in {repo.uri(key)}; list them with "
                             f"aws s3 ls (or ls) under {repo.uri(key).rsplit('/', 2)[0]}/") from None


def restore_archive(target: PgTarget, repo: Repository, database: str, table: QualifiedName, interval: str, *,
                    into: QualifiedName | None = None, workdir: Path, log: Log = lambda _: None) -> int:
    """Copy one run's archived rows into ``into`` (default: the table itself), all in one transaction.

    For an audit, restore into a copy (``CREATE TABLE audit.sessions (LIKE public.sessions)``):
    anonymized columns come back as their hex HMAC, so their column must take text, and dropped
    columns come back NULL. Every part's SHA-256 is checked against the manifest before it is used.
    """
    import pyarrow.parquet as pq

    manifest = read_manifest(repo, database, table, interval)
    if not manifest.complete:
        log(f"the archive run {manifest.run_id} did not finish; restoring the {len(manifest.parts)} part(s) it wrote")
    destination = table_identifier(into or table)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = 0
    with connect(target, autocommit=False) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        for part in manifest.parts:
            local = workdir / f"restore-{part.number:05d}.parquet"
            repo.get_file(part.key, local, expected_sha256=part.sha256)
            try:
                data = pq.read_table(local).drop_columns([ROW_VERSION_COLUMN])
            finally:
                local.unlink(missing_ok=True)
            columns = sql.SQL(", ").join(sql.Identifier(n) for n in data.column_names)
            with conn.cursor().copy(sql.SQL("COPY {} ({}) FROM STDIN").format(destination, columns)) as cp:
                for batch in data.to_batches(max_chunksize=10_000):
                    for row in zip(*(c.to_pylist() for c in batch.columns), strict=True):
                        cp.write_row(row)
            rows += data.num_rows
            log(f"restored part {part.number}: {data.num_rows} rows")
        conn.commit()
    log(f"restored {rows} archived rows of {table} ({interval}) into {into or table}")
    return rows
