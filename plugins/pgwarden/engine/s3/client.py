"""S3 clients and bounded-memory transfers from one ``S3Settings``.

boto3 is imported only here and only when a client is built. Requests retry in botocore's
"standard" mode (backoff with jitter on 5xx, throttling and connection errors) up to
``S3Settings.max_attempts``.

An upload of a file at or above 32 MiB goes in 16 MiB parts, at most 4 in flight, so its buffers
peak at chunksize x concurrency = 64 MiB whatever the file's size; smaller files go in one PUT read
straight from disk. Downloads use the same part size and concurrency plus s3transfer's write queue
(at most 16 x 256 KiB), so a worker stays well under 200 MB for multi-GB objects.
"""

from __future__ import annotations

from typing import Any

from pgwarden.engine.s3.settings import S3Settings

MULTIPART_THRESHOLD = 32 * 1024 * 1024  # above one default 16 MiB WAL segment: each segment is one PUT
MULTIPART_CHUNKSIZE = 16 * 1024 * 1024
MAX_CONCURRENCY = 4


def client_kwargs(settings: S3Settings) -> dict[str, Any]:
    """Keyword arguments for ``boto3.session.Session().client("s3", ...)``."""
    from botocore.config import Config

    style = settings.addressing_style or ("path" if settings.endpoint_url else None)
    config = Config(
        # botocore's max_attempts counts retries only
        retries={"total_max_attempts": settings.max_attempts, "mode": "standard"},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        s3={"addressing_style": style} if style else None,
    )
    if settings.botocore_config is not None:
        config = config.merge(settings.botocore_config)
    kwargs: dict[str, Any] = {"config": config}
    for name in ("endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key",
                 "aws_session_token", "verify"):
        value = getattr(settings, name)
        if value is not None:
            kwargs[name] = value
    return kwargs


def new_client(settings: S3Settings) -> Any:
    """A new S3 client."""
    import boto3

    return (settings.session or boto3.session.Session()).client("s3", **client_kwargs(settings))


def transfer_manager(client: Any, settings: S3Settings) -> Any:
    """An s3transfer manager for ``client`` with the part size and concurrency above."""
    from boto3.s3.transfer import TransferConfig, create_transfer_manager

    config = TransferConfig(
        multipart_threshold=MULTIPART_THRESHOLD,
        multipart_chunksize=MULTIPART_CHUNKSIZE,
        max_concurrency=MAX_CONCURRENCY,
        # Downloads queue received bytes for the disk writer: up to 1000 x 256 KiB by default when
        # the disk is slower than the network. 16 x 256 KiB keeps memory flat either way.
        max_io_queue=16,
        num_download_attempts=settings.max_attempts,
        preferred_transfer_client="classic",
    )
    return create_transfer_manager(client, config)
