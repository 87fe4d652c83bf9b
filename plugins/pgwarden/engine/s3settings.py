"""How pgwarden reaches an S3 endpoint: one settings object, built from an Airflow AWS connection
(by the hook layer) or from the environment (by the CLI, with Airflow down).

Fields left ``None`` fall through to boto3's own lookup chain (environment, ``~/.aws``, instance
role), so ``S3Settings()`` is a valid "use whatever this host is configured with". No boto3 import
happens here: building settings is cheap at DAG-parse time; only a client build imports botocore.
The hook layer may hand over a ready boto3 session (credentials, assumed role) and the connection's
own botocore ``Config`` and ``verify``; pgwarden's retry and timeout defaults apply under them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> S3Settings:
        """For the CLI: endpoint and region from the standard AWS variables; credentials are left
        to boto3's chain (which reads ``AWS_ACCESS_KEY_ID`` etc. itself)."""
        env = os.environ if environ is None else environ
        return cls(
            endpoint_url=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None,
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None,
        )

    def describe_endpoint(self) -> str:
        """Safe to log: where requests go, never who makes them."""
        if self.endpoint_url:
            return self.endpoint_url
        return f"AWS S3 ({self.region_name or 'default region'})"

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``boto3.session.Session().client("s3", ...)``."""
        from botocore.config import Config

        style = self.addressing_style or ("path" if self.endpoint_url else None)
        config = Config(
            retries={"total_max_attempts": self.max_attempts, "mode": "standard"},  # botocore's max_attempts counts retries only
            connect_timeout=self.connect_timeout,
            read_timeout=self.read_timeout,
            s3={"addressing_style": style} if style else None,
        )
        if self.botocore_config is not None:
            config = config.merge(self.botocore_config)
        kwargs: dict[str, Any] = {"config": config}
        for name in ("endpoint_url", "region_name", "aws_access_key_id", "aws_secret_access_key",
                     "aws_session_token", "verify"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        return kwargs

    def client(self) -> Any:
        """A new S3 client."""
        import boto3

        return (self.session or boto3.session.Session()).client("s3", **self.client_kwargs())
