"""An AWS connection as pgwarden's ``S3Settings``, read by the Amazon provider's ``AwsBaseHook``.

The provider's session factory gives the credentials (keys, ``profile_name``, ``role_arn`` with
``assume_role_method`` and ``assume_role_kwargs``, web identity), and its connection wrapper the
client options (``endpoint_url`` or ``service_config.s3.endpoint_url``, ``region_name``, ``verify``,
``config_kwargs`` as a botocore ``Config``: retries, addressing style, timeouts).
"""

from __future__ import annotations

from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

from pgwarden.airflow.hooks.connection import get_connection
from pgwarden.engine.s3.settings import S3Settings


def s3_settings(conn_id: str | None) -> S3Settings:
    """Without a conn_id, boto3's own chain applies (environment, instance profile, AWS_ENDPOINT_URL)."""
    if conn_id is None:
        return S3Settings()
    get_connection(conn_id)  # AwsBaseHook would fall back to the default chain without saying so
    hook = AwsBaseHook(aws_conn_id=conn_id, client_type="s3")
    wrapper = hook.conn_config
    return S3Settings(
        endpoint_url=wrapper.get_service_endpoint_url("s3"),
        region_name=hook.region_name,
        verify=hook.verify,
        botocore_config=wrapper.botocore_config,
        session=hook.get_session(region_name=hook.region_name),
    )
