"""Errors the engine raises, split by what an operator should do about them.

Every pgwarden task's retry policy (airflow/operating/retry.py) fails ``PermanentError`` at once and
retries ``TransientError`` with backoff. The message always says what to do next.
"""

from __future__ import annotations

import errno
import os


class PgwardenError(Exception):
    """Base class for every error pgwarden raises on purpose."""


class PermanentError(PgwardenError):
    """Retrying will not help: configuration, permissions, checksums, a missing object."""


class CheckFailed(PermanentError):
    """A check found what is wrong: a healthcheck requirement not met, a restore drill that failed."""


class InvalidConfig(PermanentError):
    """The config entry of the database does not validate (its stand-in DAG's only task raises it)."""


class TransientError(PgwardenError):
    """Worth retrying: lost connections, lock timeouts, S3 5xx, a server that is restarting."""


class NoBackupYet(PgwardenError):
    """Nothing to do yet: the database has never had a full backup (a new deployment).

    Operators report this as a skipped task, not a failure; its message says what runs first.
    """


def os_error(exc: OSError, doing: str) -> PgwardenError:
    """Classify a local file-system error; the message names the path and what to do."""
    where = f" ({exc.filename})" if exc.filename else ""
    detail = f"{doing}: {exc.strerror or exc}{where}"
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return PermanentError(f"{detail}; give the user running pgwarden (uid {os.getuid()}) access to it")
    if code == errno.EROFS:
        return PermanentError(f"{detail}; the file system is mounted read-only")
    if code in (errno.ENOSPC, errno.EDQUOT):
        return PermanentError(f"{detail}; the file system is full: free space or grow the volume")
    if code in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
        return PermanentError(f"{detail}; a file is in the way of a folder (or the reverse): move it away")
    if code in (errno.ENAMETOOLONG, errno.ELOOP, errno.EINVAL, errno.ENOENT):
        return PermanentError(detail)
    return TransientError(f"{detail}; retry (I/O or network file system trouble)")
