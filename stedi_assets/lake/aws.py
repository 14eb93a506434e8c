"""How the lake reaches S3 and Glue: one configuration, shared by every client that talks to
S3 (boto3 for the store and Glue, delta-rs for the Delta log, Arrow for scans; see
lake/s3_client.py). Credentials, endpoint and region come only from the standard AWS chain
(AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL(_S3), AWS_REGION,
instance roles), so no secret ever passes through configuration, metadata or logs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class AwsAccess:
    """Bounded retries with backoff for transient errors, and a timeout on every connect and
    read so that a stall becomes a retry. Before its first write to S3 the lake checks that
    the store refuses a second conditional PUT (`If-None-Match: *`), which Delta commits rely
    on, unless `allow_unconditional_writes` (set by `unconditional_writes_setting`)."""

    max_attempts: int = 5  # the first call included
    timeout_seconds: float = 30.0
    anonymous: bool = False  # unsigned requests: reads of a public bucket without credentials
    allow_unconditional_writes: bool = False
    unconditional_writes_setting: str = "allow_unconditional_writes"

    def client(self, service: str) -> Any:
        """A shared boto3 client for `service` (s3, glue) with these settings."""
        # boto3 costs about a second to import: only a lake or source on S3 pays it.
        from stedi_assets.lake.s3_client import shared_client

        return shared_client(service, self.max_attempts, self.timeout_seconds, self.anonymous)

    def storage_options(self) -> dict[str, str]:
        """The same access for delta-rs's own S3 client: what botocore's chain resolved (a
        profile, SSO or an instance role work as for boto3), the same attempts and timeouts."""
        from stedi_assets.lake.s3_client import delta_storage_options

        return delta_storage_options(self.client("s3"), self.max_attempts, self.timeout_seconds)
