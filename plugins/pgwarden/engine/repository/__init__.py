"""The backup repository: one content store over ``file:///abs/path`` and ``s3://bucket/prefix``.

Full backups, WAL upload, restore, drills, retention and the CLI all read and write through
:class:`Repository`; :func:`open_repository` picks the backend from ``RepositoryConfig.url``.

- ``contract``: key rules, ``ObjectInfo``, ``ChecksumMismatch``/``ObjectMissing``, verified reads
  and the ``Repository`` base every backend implements;
- ``file``: ``FileRepository``, crash-safe writes to a local folder tree;
- ``s3``: ``S3Repository`` on ``pgwarden.engine.s3`` (client, transfers, error taxonomy).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlparse

from pgwarden.engine.repository.contract import (
    ChecksumMismatch,
    ObjectInfo,
    ObjectMissing,
    Repository,
    check_key,
)
from pgwarden.engine.repository.file import FileRepository
from pgwarden.engine.repository.s3 import S3Repository
from pgwarden.engine.s3.settings import S3Settings

if TYPE_CHECKING:
    from pgwarden.core.config import RepositoryConfig

__all__ = [
    "ChecksumMismatch",
    "FileRepository",
    "ObjectInfo",
    "ObjectMissing",
    "Repository",
    "S3Repository",
    "S3Settings",
    "check_key",
    "open_repository",
]


def open_repository(config: RepositoryConfig, s3: S3Settings | None = None) -> Repository:
    """The repository at ``config.url``; ``s3`` says how to reach S3 (default: boto3's own lookup)."""
    scheme = urlparse(config.url).scheme
    if scheme == "file":
        return FileRepository(config)
    if scheme == "s3":
        return S3Repository(config, s3)
    raise ValueError(f"unknown repository URL scheme in {config.url!r}: use s3://bucket/prefix or file:///abs/path")
