"""The Parquet IO manager: every zone table goes through it, on a local lake or on S3."""

from __future__ import annotations

import dagster as dg
import pyarrow as pa

from stedi_assets.lake.lake import LakeTable
from stedi_assets.lake.resource import LakeResource
from stedi_assets.privacy import mask
from stedi_assets.tables import TABLES, Table

PREVIEW_ROWS = 5


class ParquetLakeIOManager(dg.ConfigurableIOManager):
    """Stages each output as a new Parquet version of its table, unpublished until its audit
    passes; hands each input over as the table's current published version."""

    lake: LakeResource

    def handle_output(self, context: dg.OutputContext, obj: pa.Table) -> None:
        table = table_for(context.asset_key)
        staged = self.lake.lake().stage(table, obj, version=context.run_id)
        context.add_output_metadata(
            {
                **table_metadata(staged, obj),
                "publication": f"staged; audit_{table.name} publishes this version if every blocking check passes",
            }
        )

    def load_input(self, context: dg.InputContext) -> LakeTable:
        return self.lake.lake().current(table_for(context.asset_key))


def table_for(asset_key: dg.AssetKey) -> Table:
    return TABLES[asset_key.path[-1]]


def table_metadata(lake_table: LakeTable, data: pa.Table) -> dict[str, dg.RawMetadataValue]:
    """Row count, column schema, location and a masked preview, for the UI."""
    preview = data.select(lake_table.table.column_names).slice(0, PREVIEW_ROWS)
    return {
        "dagster/row_count": lake_table.rows,
        "dagster/column_schema": lake_table.table.table_schema,
        "dagster/uri": lake_table.location,
        "version": lake_table.version,
        "preview": dg.MetadataValue.md(markdown_table(preview) if preview.num_rows else "_empty table_"),
    }


def markdown_table(data: pa.Table) -> str:
    rows = data.to_pylist()
    header = "| " + " | ".join(data.column_names) + " |"
    rule = "|" + "---|" * len(data.column_names)
    body = ["| " + " | ".join(str(mask(c, r[c])) for c in data.column_names) + " |" for r in rows]
    return "\n".join([header, rule, *body])
