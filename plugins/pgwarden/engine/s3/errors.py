"""boto3 and botocore failures on one bucket as pgwarden's error taxonomy.

What retrying can fix (5xx, throttling, lost connections: botocore already retried
``S3Settings.max_attempts`` times) becomes ``TransientError``; the rest (access denied, a missing
bucket, no credentials, Object Lock misconfiguration) ``PermanentError`` saying what to fix. Messages
name the endpoint, the bucket and the connection, never credentials.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pgwarden.engine.errors import PermanentError, PgwardenError, TransientError, os_error
from pgwarden.engine.s3.settings import S3Settings

ACCESS_DENIED = {
    "AccessDenied", "AllAccessDisabled", "AccountProblem", "InvalidAccessKeyId", "SignatureDoesNotMatch",
    "ExpiredToken", "InvalidToken", "TokenRefreshRequired", "InvalidSecurity", "403", "Forbidden",
}
TRANSIENT_CODES = {
    "SlowDown", "RequestTimeout", "Throttling", "ThrottlingException", "RequestThrottled",
    "InternalError", "ServiceUnavailable", "503", "500", "PreconditionFailed", "OperationAborted",
}
NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


def client_error_parts(exc: Any) -> tuple[str, str, int]:
    """A ``ClientError``'s code, message and HTTP status."""
    response = getattr(exc, "response", None) or {}
    error = response.get("Error", {})
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0
    return str(error.get("Code", "")), str(error.get("Message", "")), int(status)


def is_not_found(exc: Any) -> bool:
    """A ``ClientError`` that says the key is absent (HEAD answers a bare 404)."""
    code, _, status = client_error_parts(exc)
    return code in NOT_FOUND or status == 404


def unwrap(exc: BaseException) -> BaseException:
    """boto3/s3transfer wrap the real error; find the botocore one underneath."""
    for _ in range(5):
        last = getattr(exc, "last_exception", None)  # RetriesExceededError (boto3 and s3transfer)
        if last is not None:
            exc = last
            continue
        if type(exc).__name__ in ("S3UploadFailedError", "S3DownloadFailedError", "S3TransferFailedError"):
            inner = exc.__cause__ or exc.__context__
            if inner is not None:
                exc = inner
                continue
        break
    return exc


@dataclass(frozen=True)
class S3Errors:
    """Classifies the failures of requests to ``bucket`` (under ``prefix``) reached with ``settings``.

    ``config_name`` is the configuration section whose ``url`` named the bucket and whose
    ``object_lock_mode`` asked for Object Lock (``repository``); ``not_found`` is what a missing key
    raises.
    """

    settings: S3Settings
    bucket: str
    prefix: str
    url: str
    conn_id: str | None
    config_name: str = "repository"
    not_found: type[PgwardenError] = PermanentError

    def connection_hint(self) -> str:
        if self.conn_id:
            return f"Airflow connection {self.conn_id!r}"
        return "the AWS credentials of this host (environment, ~/.aws or instance role)"

    def bucket_missing(self, doing: str) -> PermanentError:
        return PermanentError(
            f"{doing}: bucket {self.bucket} does not exist at {self.settings.describe_endpoint()}; create it "
            f"(aws s3 mb s3://{self.bucket}) or fix {self.config_name}.url ({self.url})"
        )

    def classify(self, exc: BaseException, doing: str) -> PgwardenError | None:
        """The pgwarden error for ``exc``, or ``None`` when it is no S3 or I/O failure."""
        from botocore.exceptions import (
            BotoCoreError,
            ClientError,
            CredentialRetrievalError,
            FlexibleChecksumError,
            HTTPClientError,
            IncompleteReadError,
            NoCredentialsError,
            PartialCredentialsError,
        )
        from botocore.exceptions import ConnectionError as BotoConnectionError

        exc = unwrap(exc)
        endpoint = self.settings.describe_endpoint()
        attempts = self.settings.max_attempts
        if isinstance(exc, ClientError):
            code, message, status = client_error_parts(exc)
            if code == "NoSuchBucket":
                return self.bucket_missing(doing)
            if code in ACCESS_DENIED or status == 403:
                return PermanentError(
                    f"{doing}: access denied ({code or status}) by {endpoint}; check {self.connection_hint()} "
                    f"and that its policy allows s3:GetObject, s3:PutObject, s3:DeleteObject and "
                    f"s3:ListBucket on s3://{self.bucket}/{self.prefix}* (without s3:ListBucket, S3 "
                    f"also answers 403 for a missing key)"
                )
            if code in NOT_FOUND:
                return self.not_found(f"{doing}: no such object")
            if code == "InvalidRequest" and "objectlock" in message.replace(" ", "").lower():
                return PermanentError(
                    f"{doing}: {message}; {self.config_name}.object_lock_mode is set but bucket {self.bucket} "
                    f"has no Object Lock: use a bucket created with Object Lock enabled, or unset object_lock_mode"
                )
            if status >= 500 or code in TRANSIENT_CODES:
                return TransientError(
                    f"{doing}: {code or status} from {endpoint}, still failing after {attempts} attempts; "
                    f"S3 is busy or failing, retry later"
                )
            return PermanentError(f"{doing}: {code or status}: {message} (endpoint {endpoint})")
        if isinstance(exc, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
            return PermanentError(f"{doing}: no usable AWS credentials ({type(exc).__name__}); set them in "
                                  f"{self.connection_hint()}")
        if isinstance(exc, (BotoConnectionError, HTTPClientError, IncompleteReadError, FlexibleChecksumError)):
            return TransientError(
                f"{doing}: could not talk to {endpoint} after {attempts} attempts "
                f"({type(exc).__name__}: {exc}); check that the endpoint is up and reachable from this worker"
            )
        if isinstance(exc, BotoCoreError):
            return PermanentError(f"{doing}: {type(exc).__name__}: {exc} (endpoint {endpoint})")
        if isinstance(exc, OSError):
            return os_error(exc, doing)
        return None

    @contextlib.contextmanager
    def translated(self, doing: str) -> Iterator[None]:
        """Raise what ``classify`` makes of an error in the block; pgwarden's own errors pass as they are."""
        try:
            yield
        except PgwardenError:
            raise
        except Exception as exc:
            classified = self.classify(exc, doing)
            if classified is None:
                raise
            raise classified from exc
