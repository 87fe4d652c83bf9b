"""Compression for what pgwarden stores: zstd where the tools support it, gzip otherwise.

WAL segments are compressed by the ``zstd`` command (multi-threaded, streaming, bounded memory);
without it, by Python's gzip. Base backups are compressed by pg_basebackup itself.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from functools import cache
from pathlib import Path
from typing import BinaryIO

from pgwarden.engine import pgtools
from pgwarden.engine.errors import PermanentError

_CHUNK = 1 << 20


@cache
def basebackup_supports_zstd(pg_basebackup: str) -> bool:
    """Ask pg_basebackup itself: an unsupported method is rejected before it connects anywhere."""
    if pgtools.tool_major(pg_basebackup) < 15:
        return False  # --compress=client-zstd arrived in PostgreSQL 15
    result = subprocess.run(
        [pg_basebackup, "-D", "/nonexistent/pgwarden-probe", "-Ft", "--compress=client-zstd:1",
         "-d", "host=/nonexistent-pgwarden-probe connect_timeout=1"],
        capture_output=True, text=True, check=False, timeout=30,
    )
    return "does not support compression" not in result.stderr


def resolve(method: str, pg_basebackup: str | None = None) -> str:
    """Turn the config's ``compression`` (auto|zstd|gzip|none) into what this worker can do."""
    zstd_cli = shutil.which("zstd") is not None
    zstd_pg = basebackup_supports_zstd(pg_basebackup or pgtools.tool("pg_basebackup"))
    if method == "auto":
        return "zstd" if zstd_cli and zstd_pg else "gzip"
    if method == "zstd" and not (zstd_cli and zstd_pg):
        raise PermanentError(
            "compression: zstd was asked for, but this worker lacks the zstd command or a pg_basebackup "
            "built with zstd. Install zstd (apt-get install zstd) or set backup.compression: auto."
        )
    return method


def compress_file(src: Path, dst: Path, method: str) -> None:
    if method == "zstd":
        # Level 1: on backup data it compresses about as well as 3 at more than twice the speed.
        pgtools.run(["zstd", "-q", "-f", "-1", "-T0", str(src), "-o", str(dst)], timeout=3600)
    elif method == "gzip":
        with open(src, "rb") as fin, gzip.open(dst, "wb", compresslevel=6) as fout:
            shutil.copyfileobj(fin, fout, _CHUNK)
    else:
        shutil.copyfile(src, dst)


@contextmanager
def decompressed(path: Path) -> Iterator[BinaryIO]:
    """``path`` (``.zst``/``.gz``/plain) as one forward-only byte stream, decompressed on the fly.

    Raises ``PermanentError`` naming the file when decompression fails (a corrupt object).
    """
    proc = None
    if path.suffix == ".zst":
        proc = subprocess.Popen(["zstd", "-q", "-d", "-c", str(path)], stdout=subprocess.PIPE, bufsize=_CHUNK)
        assert proc.stdout is not None
        stream: BinaryIO = proc.stdout
    elif path.suffix == ".gz":
        stream = gzip.open(path, "rb")  # type: ignore[assignment]
    else:
        stream = open(path, "rb")
    try:
        yield stream
    except BaseException:
        # The reader failed (disk full, a bad member): that error is the one to report. zstd then dies
        # of a broken pipe, which must not be mistaken for a corrupt object.
        stream.close()
        if proc is not None:
            proc.kill()
            proc.wait()
        raise
    # Readers stop at tar's end-of-archive marker; drain the padding after it so zstd can finish
    # writing and exit on its own (closing early would kill it with a broken pipe).
    while stream.read(_CHUNK):
        pass
    stream.close()
    if proc is not None and proc.wait() != 0:
        raise PermanentError(f"{path.name}: decompression failed; the object is corrupt")


@contextmanager
def decompressed_from(stream: BinaryIO, suffix: str, name: str) -> Iterator[BinaryIO]:
    """Like ``decompressed``, for a stream (an object being read from the repository).

    zstd is fed from a thread while the caller reads its output. Errors of the feeding stream
    (a dropped S3 connection) win over zstd's exit status, which they cause.
    """
    if suffix == ".gz":
        with gzip.GzipFile(fileobj=stream, mode="rb") as unzipped:
            yield unzipped  # type: ignore[misc]
            while unzipped.read(_CHUNK):
                pass
        return
    if suffix != ".zst":
        yield stream
        return
    proc = subprocess.Popen(["zstd", "-q", "-d", "-c"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            bufsize=_CHUNK)
    assert proc.stdin is not None and proc.stdout is not None
    feed_errors: list[BaseException] = []

    def feed() -> None:
        try:
            while chunk := stream.read(_CHUNK):
                proc.stdin.write(chunk)  # type: ignore[union-attr]
        except BrokenPipeError:
            pass  # zstd stopped reading: its exit status says why
        except BaseException as exc:
            feed_errors.append(exc)
        finally:
            with suppress(OSError):
                proc.stdin.close()  # type: ignore[union-attr]

    feeder = threading.Thread(target=feed, name=f"pgwarden-feed-{name}", daemon=True)
    feeder.start()
    try:
        yield proc.stdout
    except BaseException:
        proc.kill()
        proc.wait()
        feeder.join(timeout=30)
        raise
    while proc.stdout.read(_CHUNK):
        pass
    feeder.join()
    proc.stdout.close()
    status = proc.wait()
    if feed_errors:
        raise feed_errors[0]
    if status != 0:
        raise PermanentError(f"{name}: decompression failed; the object is corrupt")
