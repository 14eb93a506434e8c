"""A real S3 protocol server for the tests: moto's standalone server (which also serves Glue
and IAM), run as a subprocess on 127.0.0.1, and the environment that points clients at it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import boto3

from stedi_assets.lake.delta import Lake
from stedi_assets.lake.s3_store import S3Store

REGION = "us-east-1"
ACCESS_KEY = "AKIASTEDITESTKEY0001"
SECRET_KEY = "stedi-test-secret-7f3c9a"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def aws_env(endpoint: str, access_key: str = ACCESS_KEY, secret_key: str = SECRET_KEY) -> dict[str, str]:
    """The standard AWS variables, and nothing else, that point a process at `endpoint`."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": access_key,
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,  # for tools that read only this one (boto3 itself)
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    }


# moto's server, with TCP_NODELAY on its sockets: werkzeug writes a response's headers and
# body separately, and without it each response can wait for the client's delayed ACK (a run
# on the sample took 17.5 s instead of 7 s, most of it waiting).
_MOTO_MAIN = """
import sys
import werkzeug.serving
werkzeug.serving.WSGIRequestHandler.disable_nagle_algorithm = True
from moto.server import main
sys.exit(main(sys.argv[1:]))
"""


class MotoServer:
    """moto's server on a free port; `log` receives its request log."""

    def __init__(self, log: Path, **env: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.env = env
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> MotoServer:
        command = [sys.executable, "-c", _MOTO_MAIN, "-H", "127.0.0.1", "-p", str(self.port)]
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {self.process.returncode}: see {self.log}")
            try:
                urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2).close()
                return self
            except OSError:
                time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"moto_server did not answer on {self.url} within 60 s")

    def __exit__(self, *exc: object) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def client(self, service: str, **credentials: str) -> Any:
        """A plain boto3 client straight to the server (not through the code under test)."""
        env = aws_env(self.url)
        return boto3.session.Session(
            aws_access_key_id=credentials.get("access_key", env["AWS_ACCESS_KEY_ID"]),
            aws_secret_access_key=credentials.get("secret_key", env["AWS_SECRET_ACCESS_KEY"]),
            region_name=REGION,
        ).client(service, endpoint_url=self.url)

    def storage_options(self, endpoint: str | None = None) -> dict[str, str]:
        """delta-rs's (and Polars') options for reaching the server (or `endpoint`, a proxy
        in front of it) directly, written out by hand: not through the code under test."""
        return {
            "AWS_ENDPOINT_URL": endpoint or self.url,
            "AWS_ALLOW_HTTP": "true",
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        }

    def require_signed_requests(self) -> None:
        """From now on every request must be signed by a known IAM user's key (moto's auth)."""
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}
        )
        urllib.request.urlopen(request, timeout=10).close()


def ensure_bucket(client: Any, bucket: str) -> None:
    if bucket not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
        client.create_bucket(Bucket=bucket)


def upload(client: Any, folder: Path, bucket: str, prefix: str, rename: dict[str, str] | None = None) -> int:
    """Copy every file under `folder` to `s3://bucket/prefix/`, renaming top-level folders."""
    ensure_bucket(client, bucket)
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    for path in files:
        top, _, rest = path.relative_to(folder).as_posix().partition("/")
        key = "/".join(filter(None, (prefix, (rename or {}).get(top, top), rest)))
        client.upload_file(str(path), bucket, key)
    return len(files)


def lake_at(server: MotoServer, uri: str) -> Lake:
    """The lake at `s3://bucket/prefix`, read in this process straight from the server."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    return Lake(S3Store(server.client("s3"), bucket, prefix), storage_options=server.storage_options())


def keys(server: MotoServer, uri: str) -> list[str]:
    """Every object key at `s3://bucket/prefix/` and below, as `s3://` URIs."""
    bucket, _, prefix = uri.removeprefix("s3://").partition("/")
    pages = server.client("s3").get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix.rstrip("/") + "/")
    return sorted(f"s3://{bucket}/{o['Key']}" for page in pages for o in page.get("Contents", []))


def glue_tables(server: MotoServer, database: str) -> dict[str, dict]:
    """Every table of a Glue database, by name."""
    pages = server.client("glue").get_paginator("get_tables").paginate(DatabaseName=database)
    return {t["Name"]: t for page in pages for t in page["TableList"]}


def copy_prefix(server: MotoServer, source: str, target: str) -> None:
    """Copy every object at `s3://bucket/prefix/` to another prefix, server side: a lake's
    copy (its Delta logs name their files relative to the table's root)."""
    client = server.client("s3")
    prefix = source.removeprefix("s3://").partition("/")[2].rstrip("/") + "/"
    to_bucket, _, to_prefix = target.removeprefix("s3://").partition("/")
    for uri in keys(server, source):
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        copied = f"{to_prefix.rstrip('/')}/{key.removeprefix(prefix)}"
        client.copy_object(Bucket=to_bucket, Key=copied, CopySource={"Bucket": bucket, "Key": key})
