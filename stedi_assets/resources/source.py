from __future__ import annotations

import dagster as dg

from stedi_assets.landing.source import LandingSource
from stedi_assets.resources.aws import AwsConfig


class LandingSourceResource(dg.ConfigurableResource):
    """Where the raw JSON arrives (a folder or `s3://bucket/prefix`); `prefixes` names another
    folder for a source; `aws` may read an S3 source unsigned. Steps get the LandingSource."""

    root: str
    prefixes: dict[str, str] = {}
    aws: AwsConfig = AwsConfig()

    def create_resource(self, context: dg.InitResourceContext) -> LandingSource:
        return LandingSource(self.root, dict(self.prefixes), self.aws.access())
