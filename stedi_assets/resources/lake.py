from __future__ import annotations

import dagster as dg

from stedi_assets.lake.connect import open_lake
from stedi_assets.lake.delta import Lake
from stedi_assets.resources.aws import AwsConfig


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
        access = self.aws.access(allow_unconditional_writes=self.allow_unconditional_writes,
                           unconditional_writes_setting=self.unconditional_writes_setting)
        return open_lake(self.root, access, self.glue_database)
