"""Landing: the raw JSON of each source as a typed table, and a rejects table beside it."""

from __future__ import annotations

from collections import Counter

import dagster as dg

from stedi_assets.audit import Audit
from stedi_assets.landing import checks
from stedi_assets.landing.json_lines import count_lines, parse_files
from stedi_assets.landing.named import with_named_keys
from stedi_assets.privacy import scrub
from stedi_assets.publishing import AssetStep, Build, audited_asset

KINDS = {"python", "delta"}


def landing_asset(audit: Audit, description: str) -> dg.AssetsDefinition:
    table, rejects = audit.table, audit.companion
    assert rejects is not None
    required = ", ".join(c.name for c in table.columns if c.required)

    @audited_asset(
        audit,
        group="landing",
        kinds=KINDS,
        description=(
            f"{description} Lines that cannot become a row (not JSON, missing {required}, or a value of "
            f"the wrong type) go to {rejects.name} beside it, with file, line number, raw text and reason, "
            "and the e-mail address and serial number the line still names, which count for privacy. "
            f"The two are built, audited and published together, {rejects.name} first, and readers pair "
            f"them by the version {table.name}'s commit names."
        ),
    )
    def _landing(step: AssetStep) -> Build:
        files = list(step.source.read_all(table.source))
        batch = parse_files(files, table)
        # Counted apart from the parse, from the same bytes: what `lines_accounted_for` checks.
        line_counts = [(key, count_lines(data)) for key, data in files]
        if batch.files_parsed_exactly:
            step.context.log.warning(f"{table.source}: files with bad lines: {', '.join(batch.files_parsed_exactly)}")
        rejects = with_named_keys(batch.rejects)
        reasons = Counter(scrub(reason) for reason in rejects["reason"].to_pylist())
        return Build(
            batch.rows,
            companion=rejects,
            relations={"source_lines": checks.source_lines(line_counts)},
            metadata={
                "files": batch.files,
                "lines_read": batch.lines_read,
                "rows": batch.rows.num_rows,
                "rejects": batch.rejects.num_rows,
                "reject_reasons": dg.MetadataValue.json(dict(reasons.most_common(10))),
                "source": dg.MetadataValue.path(step.source.location(table.source)),
            },
        )

    return _landing


customer_landing = landing_asset(
    checks.CUSTOMER_LANDING_AUDIT,
    "Every customer record of the landing zone, consenting or not, typed, with its source file and line.",
)
accelerometer_landing = landing_asset(
    checks.ACCELEROMETER_LANDING_AUDIT,
    "Every accelerometer reading of the landing zone (user = customer e-mail), typed, with its source file and line.",
)
step_trainer_landing = landing_asset(
    checks.STEP_TRAINER_LANDING_AUDIT,
    "Every step trainer reading of the landing zone (keyed by device serial number), typed, with its source file and line.",
)
