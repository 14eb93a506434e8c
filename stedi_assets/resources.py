"""The Dagster resources: configuration that the UI shows and runs may override, each handing
steps the plain object of the library layer below it (the lake, the landing source, the
privacy policy). Nothing below this layer imports Dagster for them."""

from __future__ import annotations

import dagster as dg

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.connect import open_lake
from stedi_assets.lake.delta import Lake
from stedi_assets.landing.source import LandingSource
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import DEFAULT_RETENTION_HOURS, DEVELOPMENT_SUBJECT_KEY, ConsentPolicy


class AwsConfig(dg.Config):
    """Retries and timeouts of every S3 and Glue call (lake/aws.py's AwsAccess). Not dagster-aws's
    S3Resource: it has no timeouts, counts retries rather than attempts, and takes keys as config,
    which would put secrets in Dagster's config; the lake reaches S3 through the standard AWS chain only."""

    max_attempts: int = 5  # the first call included
    timeout_seconds: float = 30.0
    anonymous: bool = False  # unsigned requests: reads of a public bucket without credentials


class LakeResource(dg.ConfigurableResource):
    """The lake root (a folder or `s3://bucket/prefix`) holding every zone table as a Delta
    table; on S3, the Glue database each new table is registered in, if any, and whether to
    write to a store that ignores conditional PUTs (see AwsAccess)."""

    root: str
    aws: AwsConfig = AwsConfig()
    glue_database: str | None = None
    allow_unconditional_writes: bool = False
    unconditional_writes_setting: str = "allow_unconditional_writes"

    def lake(self) -> Lake:
        access = AwsAccess(**self.aws.model_dump(), allow_unconditional_writes=self.allow_unconditional_writes,
                           unconditional_writes_setting=self.unconditional_writes_setting)
        return open_lake(self.root, access, self.glue_database)


class PrivacyResource(dg.ConfigurableResource):
    """The privacy settings as Dagster config: the subject key reaches it as a dg.EnvVar, so the
    UI shows the variable's name, never its value. Steps get the PrivacyPolicy."""

    consent_policy: ConsentPolicy = ConsentPolicy.ANY
    subject_key: str = DEVELOPMENT_SUBJECT_KEY
    retention_hours: int = DEFAULT_RETENTION_HOURS

    def create_resource(self, context: dg.InitResourceContext) -> PrivacyPolicy:
        return PrivacyPolicy(self.consent_policy, self.subject_key, self.retention_hours)


class LandingSourceResource(dg.ConfigurableResource):
    """Where the raw JSON arrives (a folder or `s3://bucket/prefix`); `prefixes` names another
    folder for a source; `aws` may read an S3 source unsigned. Steps get the LandingSource."""

    root: str
    prefixes: dict[str, str] = {}
    aws: AwsConfig = AwsConfig()

    def create_resource(self, context: dg.InitResourceContext) -> LandingSource:
        return LandingSource(self.root, dict(self.prefixes), AwsAccess(**self.aws.model_dump()))
