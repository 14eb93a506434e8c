"""The Glue Data Catalog entry of every table: registered once, as a Delta table at its fixed
location, so Athena reads each table's current version from its Delta log by itself."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from stedi_assets.lake.aws import AwsAccess
from stedi_assets.lake.data_files import TableSpec

COMMENT_LIMIT = 255  # Glue's limit on a column comment
# Athena's name of each Arrow type a lake table stores (the ledgers hold a boolean).
ATHENA_TYPES = {
    pa.int64(): "bigint", pa.float64(): "double", pa.string(): "string", pa.bool_(): "boolean",
    pa.list_(pa.string()): "array<string>",  # what a rejected line names
}


@dataclass(frozen=True)
class GlueCatalog:
    """On (STEDI_GLUE_DATABASE) only for a lake on S3: after a table's first commit, the database
    if needed and the table; later commits, restores and vacuums need no update."""

    database: str
    aws: AwsAccess = field(default_factory=AwsAccess)

    def register(self, spec: TableSpec, uri: str) -> None:
        """The table in Glue as a Delta table at `uri`: created if missing, updated if
        registered otherwise, else untouched. Checked after each commit, once per table and
        process, so a registration that failed is made by the table's next commit."""
        from stedi_assets.lake.s3_client import reported  # boto3 only when Glue is on

        table = table_input(spec, uri)
        with reported("Glue registration of", f"{self.database}.{spec.name}", self.aws.max_attempts):
            glue = self.aws.client("glue")
            checked = (glue.meta.endpoint_url, self.database, spec.name, table["StorageDescriptor"]["Location"])
            if checked in _REGISTERED:
                return
            try:
                found = glue.get_table(DatabaseName=self.database, Name=spec.name)["Table"]
            except glue.exceptions.EntityNotFoundException:
                self._ensure_database(glue)
                with contextlib.suppress(glue.exceptions.AlreadyExistsException):  # another process registered it meanwhile
                    glue.create_table(DatabaseName=self.database, TableInput=table)
            else:
                location = found.get("StorageDescriptor", {}).get("Location", "").rstrip("/") + "/"
                delta = (found.get("Parameters") or {}).get("table_type", "").upper() == "DELTA"
                if location != table["StorageDescriptor"]["Location"] or not delta:
                    glue.update_table(DatabaseName=self.database, TableInput=table, SkipArchive=True)
        _REGISTERED.add(checked)

    def _ensure_database(self, glue: Any) -> None:
        try:
            glue.get_database(Name=self.database)
        except glue.exceptions.EntityNotFoundException:
            with contextlib.suppress(glue.exceptions.AlreadyExistsException):  # another step created it meanwhile
                glue.create_database(DatabaseInput={"Name": self.database, "Description": "STEDI lakehouse zone tables"})


# (Glue endpoint, database, table, location) already checked by this process.
_REGISTERED: set[tuple[str, str, str, str]] = set()


def table_input(spec: TableSpec, uri: str) -> dict[str, Any]:
    """The Glue definition of a Delta table at `uri`. The columns (names in lower case, as Athena
    stores them) are for people browsing the catalog; Athena takes the schema from the Delta log."""
    if not uri.startswith("s3://"):
        raise ValueError(f"Glue registers S3 locations only, not {uri}: put STEDI_LAKE on s3://")
    columns = [
        {"Name": f.name.lower(), "Type": ATHENA_TYPES[f.type],
         "Comment": (f.metadata or {}).get(b"comment", b"").decode()[:COMMENT_LIMIT]}
        for f in spec.storage_schema
    ]
    return {
        "Name": spec.name,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"table_type": "DELTA", "EXTERNAL": "TRUE", "spark.sql.sources.provider": "delta"},
        "PartitionKeys": [],
        "StorageDescriptor": {"Columns": columns, "Location": uri.rstrip("/") + "/"},
    }
