"""Landing: the raw JSON of each source as a typed table, and a rejects table beside it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import dagster as dg

from stedi_assets import charts, erasure
from stedi_assets.audit import Audit
from stedi_assets.charts import chart_metadata
from stedi_assets.landing import checks
from stedi_assets.landing.json_lines import count_lines, parse_files
from stedi_assets.landing.named import with_named_keys
from stedi_assets.privacy import scrub
from stedi_assets.publishing import AssetStep, Build, audited_asset
from stedi_assets.tables import CUSTOMER_LANDING, Table

KINDS = {"python", "delta"}


def landing_asset(
    audit: Audit, description: str, erased_by: tuple[str, str, str], inputs: Sequence[Table] = ()
) -> dg.AssetsDefinition:
    """`erased_by`: (column of the rows, column of the rejects, kind) that tell an erased
    person's lines (erasure.py)."""
    table, rejects = audit.table, audit.companion
    assert rejects is not None
    required = ", ".join(c.name for c in table.columns if c.required)

    @audited_asset(
        audit,
        group="landing",
        kinds=KINDS,
        inputs=inputs,
        description=(
            f"{description} Lines that cannot become a row (not JSON, missing {required}, or a value of "
            f"the wrong type) go to {rejects.name} beside it, with file, line number, raw text and reason, "
            "and the e-mail address and serial number the line still names, which count for privacy. "
            f"The two are built, audited and published together, {rejects.name} first, and readers pair "
            f"them by the version {table.name}'s commit names. Lines of people whose erasure was "
            "requested are left out of both, and counted."
        ),
    )
    def _landing(step: AssetStep) -> Build:
        files = list(step.source.read_all(table.source))
        batch = parse_files(files, table)
        # Counted apart from the parse, from the same bytes: what `lines_accounted_for` checks.
        line_counts = [(key, count_lines(data)) for key, data in files]
        if batch.files_parsed_exactly:
            step.context.log.warning(f"{table.source}: files with bad lines: {', '.join(batch.files_parsed_exactly)}")
        kept = erasure.leave_out(batch.rows, with_named_keys(batch.rejects), step.erasures, step.privacy, *erased_by)
        reasons = Counter(scrub(reason) for reason in kept.rejects["reason"].to_pylist())
        relations = {"source_lines": checks.source_lines(line_counts, kept.lines)}
        info: dict[str, object] = {checks.ERASED_LINES: kept.lines}
        if table.name == CUSTOMER_LANDING.name:
            info[erasure.ERASED_SERIALS] = kept.serials
            relations.update(step.erasures.with_serials(kept.serials).relations())
        return Build(
            kept.rows,
            companion=kept.rejects,
            relations=relations,
            info=info,
            metadata={
                "files": batch.files,
                "lines_read": batch.lines_read,
                "rows": kept.rows.num_rows,
                "rejects": kept.rejects.num_rows,
                "reject_reasons": dg.MetadataValue.json(dict(reasons.most_common(10))),
                "erased_lines": kept.count,
                "source": dg.MetadataValue.path(step.source.location(table.source)),
                # Pictures for the UI: a chart that fails to draw is a warning, never a failed step.
                **chart_metadata(step.context.log, "rejects_by_reason", lambda: charts.rejects_by_reason(kept.rejects)),
                **chart_metadata(step.context.log, "rows_per_file", lambda: charts.rows_per_file(kept.rows, kept.rejects)),
            },
        )

    return _landing


customer_landing = landing_asset(
    checks.CUSTOMER_LANDING_AUDIT,
    "Every customer record of the landing zone, consenting or not, typed, with its source file and line.",
    erased_by=("email", "named_email", erasure.EMAIL),
)
accelerometer_landing = landing_asset(
    checks.ACCELEROMETER_LANDING_AUDIT,
    "Every accelerometer reading of the landing zone (user = customer e-mail), typed, with its source file and line.",
    erased_by=("user", "named_email", erasure.EMAIL),
)
step_trainer_landing = landing_asset(
    checks.STEP_TRAINER_LANDING_AUDIT,
    "Every step trainer reading of the landing zone (keyed by device serial number), typed, with its source file "
    "and line. It reads customer_landing for the serial numbers that only erased people owned.",
    erased_by=("serialNumber", "named_serial", erasure.SERIAL),
    inputs=[CUSTOMER_LANDING],
)
