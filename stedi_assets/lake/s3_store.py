"""The lake or the landing zone on S3 or an S3-compatible store (MinIO, Ceph, R2), under
`s3://bucket/prefix/`, one whole-object request a call. delta-rs's commits are conditional
PUTs: `require_conditional_writes` checks that the store honours them. A call that fails after
botocore's retries raises `AwsRequestError` naming the bucket and key."""

from __future__ import annotations

import contextlib
import random
import time
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.errors import AwsRequestError, LakeError
from stedi_assets.lake.s3_client import TRANSPORT_ERRORS, error_code, reported
from stedi_assets.lake.store import Entry, Store

_DELETE_BATCH = 1000  # the most keys one DeleteObjects call takes


class S3Store(Store):
    def __init__(self, client: Any, bucket: str, prefix: str = "", max_attempts: int = 5):
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.max_attempts = max_attempts

    @classmethod
    def from_uri(cls, uri: str, access: AwsAccess | None = None) -> S3Store:
        bucket, _, prefix = uri.removeprefix("s3://").partition("/")
        if not bucket:
            raise ValueError(f"{uri!r} names no bucket: use s3://bucket/prefix")
        access = access or AwsAccess()
        return cls(access.client("s3"), bucket, prefix, access.max_attempts)

    def _key(self, key: str) -> str:
        return "/".join(part for part in (self.prefix, key) if part)

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    def _reported(self, action: str, key: str):
        return reported(f"S3 {action}", self.uri(key), self.max_attempts)

    def entries(self, prefix: str) -> dict[str, Entry]:
        """The objects at `prefix` or below the folder `prefix/`, relative to the root, in key
        order, with their size, last-modified time and ETag (every page of the listing)."""
        base = self._key(prefix)
        folder = base if not base or base.endswith("/") else base + "/"
        root = self.prefix + "/" if self.prefix else ""
        objects = {}
        with self._reported("LIST", prefix):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=base):
                for item in page.get("Contents", []):
                    key = item["Key"]
                    # Skip the empty "folder/" markers consoles create, and siblings like v_12 of v_1.
                    if not key.endswith("/") and (key == base or key.startswith(folder)):
                        modified = int(item["LastModified"].timestamp()) * 10**9 + item["LastModified"].microsecond * 1000
                        objects[key[len(root) :]] = Entry(int(item.get("Size", 0)), modified, item.get("ETag"))
        return dict(sorted(objects.items()))

    def read(self, key: str) -> bytes:
        with self._reported("GET", key):
            attempt = 1
            while True:
                body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
                try:
                    return body.read()
                except TRANSPORT_ERRORS:
                    if attempt == self.max_attempts:
                        raise
                    time.sleep(random.random() * 0.05 * 2**attempt)  # botocore's jittered backoff
                    attempt += 1

    def write(self, key: str, data: bytes) -> None:
        with self._reported("PUT", key):
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def exists(self, key: str) -> bool:
        with self._reported("HEAD", key):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            except ClientError as error:
                if error_code(error) in {"404", "NoSuchKey"}:
                    return False
                raise
        return True

    def delete_prefix(self, prefix: str) -> None:
        keys = self.list(prefix)
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            with self._reported("DELETE", batch[0]):
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._key(k)} for k in batch], "Quiet": True},
                )
            if response.get("Errors"):
                failed = response["Errors"][0]
                raise AwsRequestError(
                    f"S3 DELETE s3://{self.bucket}/{failed['Key']} failed: {failed.get('Code')}: {failed.get('Message')}"
                )

    def require_conditional_writes(self, override: str) -> None:
        """Refuse a store that ignores `If-None-Match: *` on PUT (delta-rs writes each log entry
        so): a second conditional PUT of a scratch key must be refused. Once per bucket and process."""
        endpoint, probe = self.client.meta.endpoint_url, f"_stedi_probe/{uuid.uuid4()}"
        if (endpoint, self.bucket) in _CONDITIONAL_WRITES_CHECKED:
            return
        key = self._key(probe)
        try:
            with self._reported("conditional PUT", probe):
                self.client.put_object(Bucket=self.bucket, Key=key, Body=b"1", IfNoneMatch="*")
                try:
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=b"2", IfNoneMatch="*")
                except ClientError as error:
                    if error_code(error) not in {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}:
                        raise
                else:
                    raise LakeError(
                        f"the S3 store at {endpoint} (bucket {self.bucket}) accepted a second conditional PUT of "
                        f"{key}: it ignores If-None-Match, so two Delta commits of one table version could both "
                        f"succeed and one would be lost silently. Refusing to write. Use a store that supports "
                        f"conditional writes (AWS S3, MinIO, R2, recent Ceph), or set {override} if only one "
                        "writer ever runs at a time"
                    )
        finally:
            with contextlib.suppress(ClientError, BotoCoreError):
                self.client.delete_object(Bucket=self.bucket, Key=key)
        _CONDITIONAL_WRITES_CHECKED.add((endpoint, self.bucket))


_CONDITIONAL_WRITES_CHECKED: set[tuple[str, str]] = set()
