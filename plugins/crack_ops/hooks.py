"""Where the workflow's object store is, and how to reach it, from Airflow configuration."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

STORE_VARIABLE = "crack_store"


def default_store() -> str:
    """The embedded default: a folder in AIRFLOW_HOME (no cloud account needed)."""
    home = os.environ.get("AIRFLOW_HOME", str(Path.home() / "airflow"))
    return str(Path(home) / "crack-store")


class CrackStoreHook(BaseHook):
    """Resolve the store URI and hand the AWS connection's settings to boto3.

    The store comes from the task's ``store`` param, else the Airflow Variable
    ``crack_store``, else a local folder in AIRFLOW_HOME. For ``s3://`` stores, the AWS
    connection (``aws_default`` or a named one; its ``endpoint_url`` extra points at MinIO)
    supplies credentials, region and endpoint through the standard AWS environment
    variables, which the crack_model library's boto3 client reads.
    """

    conn_name_attr = "aws_conn_id"
    default_conn_name = "aws_default"
    hook_name = "Crack store"

    def __init__(self, store: str | None = None, aws_conn_id: str | None = default_conn_name) -> None:
        super().__init__()
        self.store = store
        self.aws_conn_id = aws_conn_id

    def store_uri(self) -> str:
        if self.store:
            return self.store
        from airflow.sdk import Variable

        return str(Variable.get(STORE_VARIABLE, default=None) or default_store())

    def configure(self) -> str:
        """Export the connection's settings for boto3 (s3:// stores only); return the store URI."""
        uri = self.store_uri()
        if uri.startswith("s3://") and self.aws_conn_id:
            os.environ.update(self._aws_environment())
        return uri

    def _aws_environment(self) -> dict[str, str]:
        from airflow.providers.amazon.aws.hooks.base_aws import AwsGenericHook

        try:
            self.get_connection(self.aws_conn_id)
        except Exception:  # no such connection: boto3's own chain (env, profile, instance role) applies
            self.log.info("no Airflow connection %r; using the default AWS credential chain", self.aws_conn_id)
            return {}
        hook = AwsGenericHook(aws_conn_id=self.aws_conn_id, client_type="s3")
        config = hook.conn_config
        environment: dict[str, Any] = {}
        credentials = hook.get_credentials()
        if credentials.access_key:
            environment["AWS_ACCESS_KEY_ID"] = credentials.access_key
            environment["AWS_SECRET_ACCESS_KEY"] = credentials.secret_key
        if credentials.token:
            environment["AWS_SESSION_TOKEN"] = credentials.token
        if config.endpoint_url:
            environment["AWS_ENDPOINT_URL"] = config.endpoint_url
        if config.region_name:
            environment["AWS_DEFAULT_REGION"] = config.region_name
        return {key: str(value) for key, value in environment.items()}
