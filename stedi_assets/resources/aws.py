"""The S3 and Glue access of a resource, as Dagster config (lake/aws.py is the library's).

dagster-aws's S3Resource is not used: it has no timeouts, counts retries rather than
attempts, and takes keys as config, which would put secrets in Dagster's config; the lake
reaches S3 through the standard AWS chain only."""

from __future__ import annotations

import dagster as dg

from stedi_assets.lake.aws import AwsAccess


class AwsConfig(dg.Config):
    """Retries and timeouts of every S3 and Glue call (see AwsAccess)."""

    max_attempts: int = 5  # the first call included
    timeout_seconds: float = 30.0
    anonymous: bool = False  # unsigned requests: reads of a public bucket without credentials

    def access(
        self, allow_unconditional_writes: bool = False, unconditional_writes_setting: str = "allow_unconditional_writes"
    ) -> AwsAccess:
        """The library's AwsAccess; the lake adds its policy on unconditional writes."""
        return AwsAccess(
            self.max_attempts, self.timeout_seconds, self.anonymous, allow_unconditional_writes, unconditional_writes_setting
        )
