"""A real S3-compatible server for tests: MinIO built by `scripts/setup.d/62-minio.sh`, one process on 127.0.0.1 in a directory of the test's."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.processes import ManagedProcess, free_port, http, wait_until

MINIO = Path.home() / ".cache" / "duro-tools" / "minio-v0.0.0-20260212201848-7aac2a2c5b7c" / "minio"
START_TIMEOUT_S = 60.0


def unavailable_reason() -> str | None:
    if not MINIO.exists():
        return f"MinIO is not built at {MINIO}; scripts/setup.d/62-minio.sh builds it"
    return None


@dataclass
class MinioServer:
    """One MinIO server with one bucket; `env` is what a duro node needs to use it as its snapshot repository."""

    directory: Path
    port: int = 0
    bucket: str = "duro-snapshots"

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.user = "duro-test"
        self.password = secrets.token_hex(16)
        self._process = ManagedProcess(
            "minio",
            [str(MINIO), "server", str(self.directory / "data"), "--address", f"127.0.0.1:{self.port}",
             "--console-address", f"127.0.0.1:{free_port()}", "--quiet"],
            self.directory / "minio.log",
            {"MINIO_ROOT_USER": self.user, "MINIO_ROOT_PASSWORD": self.password, "MINIO_BROWSER": "off"},
        )  # fmt: skip

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self._process.start()
        try:
            wait_until(lambda: http("GET", f"{self.endpoint}/minio/health/live", timeout_s=2)[0] == 200, START_TIMEOUT_S, "MinIO to serve")
        except TimeoutError as error:
            raise TimeoutError(f"{error}\n{self._process.log_tail()}") from None
        self.client().create_bucket(Bucket=self.bucket)

    def stop(self) -> None:
        self._process.stop()

    def client(self) -> Any:
        import boto3  # type: ignore[import-untyped]  # boto3 ships no type hints

        return boto3.client(
            "s3", endpoint_url=self.endpoint, aws_access_key_id=self.user, aws_secret_access_key=self.password, region_name="us-east-1"
        )

    def env(self, prefix: str) -> dict[str, str]:
        """The variables that make a duro node keep its snapshots in this server's bucket under `prefix`."""
        return {
            "DURO_SNAPSHOTS__REPOSITORY": f"s3://{self.bucket}/{prefix}",
            "DURO_SNAPSHOTS__S3_ENDPOINT_URL": self.endpoint,
            "DURO_SNAPSHOTS__S3_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": self.user,
            "AWS_SECRET_ACCESS_KEY": self.password,
        }
