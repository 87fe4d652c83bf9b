"""How pgwarden reaches an S3 endpoint: one settings object, built from an Airflow AWS connection
by the hook layer (``pgwarden.airflow.hooks.s3_settings``).

Fields left ``None`` fall through to boto3's own lookup chain (environment, ``~/.aws``, instance
role), so ``S3Settings()`` is a valid "use whatever this host is configured with". No boto3 import
happens here: building settings is cheap at DAG-parse time; ``pgwarden.engine.s3.client`` builds
the client. The hook layer may hand over a ready boto3 session (credentials, assumed role) and the
connection's own botocore ``Config`` and ``verify``; pgwarden's retry and timeout defaults apply
under them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal


@dataclass(frozen=True)
class S3Settings:
    """Endpoint, region, credentials and retry policy. ``repr`` never shows credentials."""

    endpoint_url: str | None = None
    region_name: str | None = None
    aws_access_key_id: str | None = field(default=None, repr=False)
    aws_secret_access_key: str | None = field(default=None, repr=False)
    aws_session_token: str | None = field(default=None, repr=False)
    # Total attempts per request (botocore "standard" mode: exponential backoff with jitter,
    # retries 5xx, throttling and connection errors).
    max_attempts: int = 5
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    # None: "path" when endpoint_url is set (MinIO, Ceph, moto: their hostnames rarely resolve
    # bucket subdomains), else botocore's default (virtual-hosted on AWS).
    addressing_style: Literal["auto", "virtual", "path"] | None = None
    # TLS: False skips certificate checks, a path names a CA bundle; None is botocore's default.
    verify: bool | str | None = None
    # A botocore.config.Config from the connection; what it sets wins over the defaults above.
    botocore_config: Any = field(default=None, repr=False)
    # A boto3.session.Session with the credentials to use (e.g. an assumed role, refreshed by it).
    session: Any = field(default=None, repr=False, compare=False)

    def describe_endpoint(self) -> str:
        """Safe to log: where requests go, never who makes them."""
        if self.endpoint_url:
            return self.endpoint_url
        return f"AWS S3 ({self.region_name or 'default region'})"
