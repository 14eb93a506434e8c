"""How the lake reaches S3 and Glue: retries and timeouts. Nothing else is configured here:
credentials, endpoint and region come only from the standard AWS chain (AWS_PROFILE,
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL(_S3), AWS_REGION, instance roles),
so no secret ever passes through Dagster config, metadata or logs."""

from __future__ import annotations

from typing import Any

import dagster as dg


class AwsAccess(dg.Config):
    """Bounded retries with backoff for transient errors (throttling, 5xx, dropped or stalled
    connections), and a timeout on every connect and read so that a stall becomes a retry."""

    max_attempts: int = 5  # the first call included
    timeout_seconds: float = 30.0
    anonymous: bool = False  # unsigned requests: reads of a public bucket without credentials

    def client(self, service: str) -> Any:
        """A shared boto3 client for `service` (s3, glue) with these settings."""
        # dagster-aws and boto3 cost seconds to import: only a lake or source on S3 pays it.
        from stedi_assets.lake.s3_client import shared_client

        return shared_client(service, self.max_attempts, self.timeout_seconds, self.anonymous)

    def storage_options(self) -> dict[str, str]:
        """The same access for delta-rs, which has an S3 client of its own: the endpoint, region
        and credentials that botocore's chain resolved (so a profile, SSO or an instance role
        work exactly as for boto3), and the same attempts and timeouts."""
        from stedi_assets.lake.s3_client import delta_storage_options

        return delta_storage_options(self.client("s3"), self.max_attempts, self.timeout_seconds)
