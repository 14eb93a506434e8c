"""The Glue Data Catalog entry of every table, kept at its published version for Athena."""

from __future__ import annotations

from typing import Any

import dagster as dg

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.ddl import catalog_columns
from stedi_assets.lake.lake import LakeTable

PARQUET_SERDE = {
    "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
    "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
    "SerdeInfo": {"SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"},
}


class GlueCatalog(dg.ConfigurableResource):
    """On (STEDI_GLUE_DATABASE) only for a lake on S3. After each publish and rollback it
    creates the database if needed and creates or updates the table: columns and types from
    the contract, location the folder of the published version. That folder holds the data
    file and `_manifest.json`, which Athena skips (names starting with `_`), so a query reads
    exactly the published version; and the switch is one UpdateTable call."""

    database: str
    aws: AwsAccess = AwsAccess()

    def publish(self, version: LakeTable) -> None:
        from stedi_assets.lake.s3_client import reported  # boto3 only when Glue is on

        with reported("Glue update of", f"{self.database}.{version.name}", self.aws.max_attempts):
            glue = self.aws.client("glue")
            self._ensure_database(glue)
            table = table_input(version)
            try:
                # SkipArchive: the lake keeps its own versions; Glue's would pile up, one per run.
                glue.update_table(DatabaseName=self.database, TableInput=table, SkipArchive=True)
            except glue.exceptions.EntityNotFoundException:
                glue.create_table(DatabaseName=self.database, TableInput=table)

    def _ensure_database(self, glue: Any) -> None:
        try:
            glue.get_database(Name=self.database)
        except glue.exceptions.EntityNotFoundException:
            try:
                glue.create_database(DatabaseInput={"Name": self.database, "Description": "STEDI lakehouse zone tables"})
            except glue.exceptions.AlreadyExistsException:
                pass  # another step created it meanwhile


def table_input(version: LakeTable) -> dict[str, Any]:
    """The Glue definition of `version`'s table, pointing at exactly that version."""
    if not version.location.startswith("s3://"):
        raise ValueError(f"Glue registers S3 locations only, not {version.location}: put STEDI_LAKE on s3://")
    return {
        "Name": version.name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "EXTERNAL": "TRUE",
            "stedi_version": version.version,
            "stedi_rows": str(version.rows),
        },
        # The contracts have no partition columns: every table is one version folder.
        "PartitionKeys": [],
        "StorageDescriptor": {
            "Columns": [{"Name": n, "Type": t, "Comment": c} for n, t, c in catalog_columns(version.table)],
            "Location": version.location,
            **PARQUET_SERDE,
        },
    }
