"""The IO manager of every zone table: Delta tables on a local folder or on S3."""

from __future__ import annotations

from typing import Any

import dagster as dg
import pyarrow as pa

# dagster 1.13.27 does not export TableMetadataSet as dg.TableMetadataSet.
from dagster._core.definitions.metadata.metadata_set import TableMetadataSet

from stedi_assets.lake.delta import Snapshot
from stedi_assets.resources.lake import LakeResource
from stedi_assets.privacy import mask
from stedi_assets.publishing import Candidate, whole
from stedi_assets.tables import TABLES, Table

PREVIEW_ROWS = 5


class DeltaLakeIOManager(dg.ConfigurableIOManager):
    """Stores each output as Parquet data files of its Delta table, staged: no commit names
    them until the asset's step has reported its checks and commits them (publishing.py).
    A table that failed its audit is not written at all. Hands each input over as the
    table's current published version."""

    lake: LakeResource

    def handle_output(self, context: dg.OutputContext, obj: Candidate) -> None:
        lake = self.lake.lake()
        obj.stage(lake)
        context.add_output_metadata(output_metadata(obj, lake.uri(obj.table.location)))

    def load_input(self, context: dg.InputContext) -> Snapshot:
        return self.lake.lake().current(table_for(context.asset_key).spec)


def table_for(asset_key: dg.AssetKey) -> Table:
    return TABLES[asset_key.path[-1]]


def output_metadata(candidate: Candidate, uri: str) -> dict[str, Any]:
    """Row count (once committed), column schema, location, a masked preview (of the rows
    this build adds) and the audit's verdict; for an incremental build, what it changed."""
    table, data = candidate.table, candidate.added
    failed = [f"{o.rule.name} ({o.violations})" for o in candidate.outcomes if not o.passed]
    metadata: dict[str, Any] = {
        **TableMetadataSet(row_count=candidate.rows, column_schema=table.table_schema),
        "dagster/uri": uri,
        "published": candidate.passed,
        "audit": "passed every blocking rule: committed after its checks"
        if candidate.passed
        else f"FAILED {', '.join(failed)}: not published, nothing written; readers keep the previous version",
        "preview": preview(table, data.slice(0, PREVIEW_ROWS)),
    }
    increment = candidate.increment
    metadata["build"] = "full" if increment is None else "incremental"
    if increment is not None:
        metadata["rows_added"] = data.num_rows
        metadata["base_version"] = increment.base.version
        metadata["changes"] = dg.MetadataValue.json(dict(increment.summary))
    if candidate.companion is not None and candidate.audit.companion is not None and increment is None:
        metadata[f"{candidate.audit.companion.name}_rows"] = whole(candidate.audit.companion, candidate.companion).num_rows
    return metadata


def preview(table: Table, rows: pa.Table) -> dg.TableMetadataValue:
    """The first rows, direct identifiers masked."""
    names = table.column_names
    records = [dg.TableRecord({c: _cell(mask(c, row[c])) for c in names}) for row in rows.select(names).to_pylist()]
    return dg.MetadataValue.table(records, schema=table.table_schema)


def _cell(value: Any) -> str | int | float | bool | None:
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)
