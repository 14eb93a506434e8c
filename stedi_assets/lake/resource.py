from __future__ import annotations

import dagster as dg

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.glue import GlueCatalog
from stedi_assets.lake.lake import Lake
from stedi_assets.lake.store import open_store
from stedi_assets.settings import Settings


class LakeResource(dg.ConfigurableResource):
    """The lake root (a folder or `s3://bucket/prefix`) holding every zone table, and the
    catalog, if any, that follows each publish."""

    root: str
    keep_versions: int = 3
    aws: AwsAccess = AwsAccess()
    catalog: GlueCatalog | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LakeResource:
        aws = AwsAccess.from_settings(settings)
        catalog = None
        if settings.glue_database:
            if not settings.lake.startswith("s3://"):
                raise ValueError(
                    f"STEDI_GLUE_DATABASE={settings.glue_database} registers tables on S3, "
                    f"but STEDI_LAKE={settings.lake} is not an s3:// location"
                )
            catalog = GlueCatalog(database=settings.glue_database, aws=aws)
        return cls(root=settings.lake, aws=aws, catalog=catalog)

    def lake(self) -> Lake:
        return Lake(open_store(self.root, self.aws), keep_versions=self.keep_versions, catalog=self.catalog)
