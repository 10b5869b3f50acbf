"""A real S3-compatible server for the tests (../shared/DESIGN.md): SeaweedFS's `weed server`
(master, volume, filer and S3 gateway in one process) on loopback, built from pinned Go
modules by scripts/seaweedfs-binary.sh. boto3 talks to it unchanged, signing with
CREDENTIALS: the server is started with them as its one identity, so a request signed with
anything else is refused, as on a real deployment."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# The server's one identity (SeaweedFS takes it from these variables at start).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "chorus-test", "AWS_SECRET_ACCESS_KEY": "chorus-test-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def weed_binary() -> Path:
    out = subprocess.run(["bash", str(ROOT / "scripts" / "seaweedfs-binary.sh")], check=True,
                         capture_output=True, text=True)
    return Path(out.stdout.strip().splitlines()[-1])


def s3_client(endpoint: str, **kwargs: Any) -> Any:
    """boto3's S3 client for the server, signing as its identity."""
    import boto3

    return boto3.client("s3", endpoint_url=endpoint, region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
                        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"], **kwargs)


def _free_ports(n: int) -> list[int]:
    with ExitStack() as stack:
        socks = [stack.enter_context(closing(socket.socket())) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


@contextmanager
def s3_server(workdir: Path) -> Iterator[str]:
    """Runs SeaweedFS until the block ends, its data under `workdir`; yields the S3 endpoint URL."""
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    data = workdir / "seaweedfs"
    data.mkdir(parents=True, exist_ok=True)
    argv = [str(weed_binary()), "server", f"-dir={data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            f"-master.port={master}", f"-master.port.grpc={master_grpc}", "-master.volumeSizeLimitMB=16",
            # Every bucket is a collection with volumes of its own: as many as the disk holds.
            f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}", "-volume.max=0",
            "-filer", f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
            "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
            # Fixed default ports otherwise (8181, 9101): two servers could not run at once.
            "-s3.port.iceberg=0", "-s3.port.lance=0"]
    with (workdir / "seaweedfs.log").open("wb") as log:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | CREDENTIALS
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    endpoint = f"http://127.0.0.1:{s3}"
    try:
        _wait_until_serving(endpoint, proc, workdir / "seaweedfs.log")
        yield endpoint
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def _wait_until_serving(endpoint: str, proc: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> None:
    """Until a bucket can be made and written: the gateway answers before the volume server
    has registered, and an early put would fail."""
    from botocore.config import Config

    client = s3_client(endpoint, config=Config(retries={"max_attempts": 1}))
    deadline = time.monotonic() + timeout
    bucket = f"ready-{os.getpid()}"
    while True:
        try:
            client.create_bucket(Bucket=bucket)
            client.put_object(Bucket=bucket, Key="probe", Body=b"ok")
            client.delete_object(Bucket=bucket, Key="probe")
            client.delete_bucket(Bucket=bucket)
            return
        except Exception as err:  # noqa: BLE001 - not up yet, in any of several ways
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"SeaweedFS did not serve S3 at {endpoint}: {err}\n"
                                   f"{log.read_text(errors='replace')[-2000:]}") from err
            time.sleep(0.25)
