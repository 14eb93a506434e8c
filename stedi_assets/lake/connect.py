"""Opening a lake at its root: a folder, or `s3://bucket/prefix` with the one S3
configuration (lake/aws.py) for every client and, optionally, the Glue catalog."""

from __future__ import annotations

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.glue import GlueCatalog
from stedi_assets.lake.store import open_store


def open_lake(root: str, aws: AwsAccess = AwsAccess(), glue_database: str | None = None) -> Lake:
    """The Delta tables under `root`. On S3, each new table is registered in `glue_database`
    (if named), and the lake probes the store's conditional PUTs before its first write
    (AwsAccess)."""
    store = open_store(root, aws)
    if not root.startswith("s3://"):
        return Lake(store)

    def probe() -> None:
        if not aws.allow_unconditional_writes:
            store.require_conditional_writes(aws.unconditional_writes_setting)  # type: ignore[attr-defined]

    catalog = GlueCatalog(glue_database, aws) if glue_database else None
    return Lake(store, storage_options=aws.storage_options(), catalog=catalog, before_write=probe)
