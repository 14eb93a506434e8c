from __future__ import annotations

import dagster as dg

from stedi_assets.lake.lake import Lake
from stedi_assets.lake.store import open_store


class LakeResource(dg.ConfigurableResource):
    """The lake root (a folder or `s3://bucket/prefix`) holding every zone table."""

    root: str
    keep_versions: int = 3

    def lake(self) -> Lake:
        return Lake(open_store(self.root), keep_versions=self.keep_versions)
