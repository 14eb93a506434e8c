from __future__ import annotations

import dagster as dg

from stedi_assets.lake.aws import AwsAccess


class AwsConfig(dg.Config):
    """Retries and timeouts of every S3 and Glue call (lake/aws.py's AwsAccess). Not dagster-aws's
    S3Resource: it has no timeouts, counts retries rather than attempts, and takes keys as config,
    which would put secrets in Dagster's config; the lake reaches S3 through the standard AWS chain only."""

    max_attempts: int = 5  # the first call included
    timeout_seconds: float = 30.0
    anonymous: bool = False  # unsigned requests: reads of a public bucket without credentials

    def access(self, **policy: object) -> AwsAccess:
        return AwsAccess(**self.model_dump(), **policy)  # type: ignore[arg-type]
