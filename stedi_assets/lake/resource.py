from __future__ import annotations

import dagster as dg

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.glue import GlueCatalog
from stedi_assets.lake.store import open_store


class LakeResource(dg.ConfigurableResource):
    """The lake root (a folder or `s3://bucket/prefix`) holding every zone table as a Delta
    table, and the catalog, if any, each new table is registered in.

    On S3 the lake first checks that the store refuses a second conditional PUT of one key
    (`If-None-Match: *`), which Delta's commits rely on; a store that ignores the header
    would lose concurrent commits silently, so the lake refuses to write to it unless
    `allow_unconditional_writes` is set (`unconditional_writes_setting` names the setting
    that sets it, for the error message)."""

    root: str
    aws: AwsAccess = AwsAccess()
    catalog: GlueCatalog | None = None
    allow_unconditional_writes: bool = False
    unconditional_writes_setting: str = "allow_unconditional_writes"

    def lake(self) -> Lake:
        store = open_store(self.root, self.aws)
        if not self.root.startswith("s3://"):
            return Lake(store, catalog=self.catalog)

        def probe() -> None:
            if not self.allow_unconditional_writes:
                store.require_conditional_writes(self.unconditional_writes_setting)  # type: ignore[attr-defined]

        return Lake(store, storage_options=self.aws.storage_options(), catalog=self.catalog, before_write=probe)
