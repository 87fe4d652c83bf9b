"""Errors the engine raises, split by what an operator should do about them.

Airflow adapters map ``PermanentError`` to ``AirflowFailException`` (no retry) and let
``TransientError`` retry with backoff. The message always says what to do next.
"""

from __future__ import annotations


class PgwardenError(Exception):
    """Base class for every error pgwarden raises on purpose."""


class PermanentError(PgwardenError):
    """Retrying will not help: configuration, permissions, checksums, a missing object."""


class TransientError(PgwardenError):
    """Worth retrying: lost connections, lock timeouts, S3 5xx, a server that is restarting."""


class NoBackupYet(PgwardenError):
    """Nothing to do yet: the database has never had a full backup (a new deployment).

    Operators report this as a skipped task, not a failure; its message says what runs first.
    """
