"""Landing: the raw JSON of each source as a typed table, and a rejects table beside it."""


from collections import Counter

import dagster as dg
import pyarrow as pa

from stedi_assets.lake.resource import LakeResource
from stedi_assets.landing.json_lines import parse_files
from stedi_assets.landing.source import LandingSource
from stedi_assets.tables import (
    ACCELEROMETER_LANDING,
    ACCELEROMETER_LANDING_REJECTS,
    CUSTOMER_LANDING,
    CUSTOMER_LANDING_REJECTS,
    STEP_TRAINER_LANDING,
    STEP_TRAINER_LANDING_REJECTS,
    Table,
)

KINDS = {"python", "parquet"}


def landing_asset(table: Table, rejects: Table, description: str) -> dg.AssetsDefinition:
    required = ", ".join(c.name for c in table.columns if c.required)

    @dg.asset(
        name=table.name,
        group_name="landing",
        kinds=KINDS,
        description=(
            f"{description} Lines that cannot become a row (not JSON, missing {required}, or a value of "
            f"the wrong type) go to {rejects.name} beside it, with file, line number, raw text and reason; "
            "the two are staged together and published together by the landing audit."
        ),
    )
    def _landing(context: dg.AssetExecutionContext, source: LandingSource, lake: LakeResource) -> pa.Table:
        batch = parse_files(source.read_all(table.source), table)
        # The rejects are a by-product of the same parse, not a separately selectable asset:
        # `key:customer_landing+` must always rebuild a landing table and its rejects together.
        staged_rejects = lake.lake().stage(rejects, batch.rejects, version=context.run.run_id)
        if batch.files_parsed_exactly:
            context.log.warning(f"{table.source}: files with bad lines: {', '.join(batch.files_parsed_exactly)}")
        reasons = Counter(batch.rejects["reason"].to_pylist())
        context.add_output_metadata(
            {
                "files": batch.files,
                "lines_read": batch.lines_read,
                "rows": batch.rows.num_rows,
                "rejects": batch.rejects.num_rows,
                "reject_reasons": dg.MetadataValue.json(dict(reasons.most_common(10))),
                "rejects_location": dg.MetadataValue.path(staged_rejects.location),
                "source": dg.MetadataValue.path(source.location(table.source)),
            }
        )
        return batch.rows

    return _landing


customer_landing = landing_asset(
    CUSTOMER_LANDING,
    CUSTOMER_LANDING_REJECTS,
    "Every customer record of the landing zone, consenting or not, typed, with its source file and line.",
)
accelerometer_landing = landing_asset(
    ACCELEROMETER_LANDING,
    ACCELEROMETER_LANDING_REJECTS,
    "Every accelerometer reading of the landing zone (user = customer e-mail), typed, with its source file and line.",
)
step_trainer_landing = landing_asset(
    STEP_TRAINER_LANDING,
    STEP_TRAINER_LANDING_REJECTS,
    "Every step trainer reading of the landing zone (keyed by device serial number), typed, with its source file and line.",
)
