"""A real S3 HTTP endpoint for tests: moto's server mode in its own process."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from pgwarden.engine.cluster import free_port
from tests.harness.tls import ServerCert

ACCESS_KEY = "testing"
SECRET_KEY = "testing"
REGION = "us-east-1"


@dataclass
class MotoServer:
    port: int
    process: subprocess.Popen | None = None
    # HTTPS with this certificate (and clients trusting tls.ca) instead of HTTP.
    tls: ServerCert | None = None

    @property
    def endpoint_url(self) -> str:
        return f"https://localhost:{self.port}" if self.tls else f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        moto = Path(sys.executable).with_name("moto_server")
        tls_args = ["-c", str(self.tls.cert), "-k", str(self.tls.key)] if self.tls else []
        context = ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else None
        self.process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port), *tls_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1, context=context)
                return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto server did not start within 30 s")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        self.process = None

    def reset(self) -> None:
        """Forget every bucket and object (moto's own reset endpoint)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        context = ssl.create_default_context(cafile=str(self.tls.ca)) if self.tls else None
        urllib.request.urlopen(req, timeout=5, context=context)

    def airflow_conn_uri(self, **extra: object) -> str:
        """The AWS connection as Airflow reads it from ``AIRFLOW_CONN_<ID>`` (JSON form)."""
        import json

        return json.dumps({
            "conn_type": "aws",
            "login": ACCESS_KEY,
            "password": SECRET_KEY,
            "extra": {"endpoint_url": self.endpoint_url, "region_name": REGION, **extra},
        })

    def client(self):
        import boto3

        return boto3.client(
            "s3", endpoint_url=self.endpoint_url, region_name=REGION,
            aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY,
            verify=str(self.tls.ca) if self.tls else None,
        )


def start_moto(tls: ServerCert | None = None) -> MotoServer:
    server = MotoServer(port=free_port(), tls=tls)
    server.start()
    return server
