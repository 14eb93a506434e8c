"""Landing audits: every non-blank line of every landing file is a row or a reject."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import pyarrow as pa

from stedi_assets.audit import Audit, Rule
from stedi_assets.landing.json_lines import count_lines
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

LINES_ACCOUNTED_FOR = "lines_accounted_for"


def lines_accounted_for(table: Table, rejects: Table) -> Rule:
    return Rule(
        LINES_ACCOUNTED_FOR,
        f"Each landing file's non-blank lines, counted apart from the parse, all appear in {table.name} "
        f"or {rejects.name}: nothing is lost.",
        sql=f"""
        WITH accounted AS (
            SELECT source_file, COUNT(DISTINCT source_line) AS lines_accounted
            FROM (
                SELECT source_file, source_line FROM {table.name}
                UNION ALL
                SELECT source_file, source_line FROM {rejects.name}
            ) AS line
            GROUP BY source_file
        )
        SELECT COALESCE(s.source_file, a.source_file) AS source_file,
               COALESCE(s.lines_read, 0) AS lines_read,
               COALESCE(a.lines_accounted, 0) AS lines_accounted
        FROM source_lines AS s
        FULL OUTER JOIN accounted AS a ON a.source_file = s.source_file
        WHERE COALESCE(s.lines_read, 0) <> COALESCE(a.lines_accounted, 0)
        """,
    )


def source_lines(counts: list[tuple[str, int]]) -> pa.Table:
    """The `source_lines` relation of the rule: each landing file and its non-blank lines."""
    return pa.table(
        {"source_file": pa.array([k for k, _ in counts], pa.string()), "lines_read": pa.array([n for _, n in counts], pa.int64())}
    )


def recount(table: Table) -> Callable[[LandingSource], Mapping[str, pa.Table]]:
    """The line counts read again from the source, for judging a published landing table."""

    def relations(source: LandingSource) -> Mapping[str, pa.Table]:
        return {"source_lines": source_lines([(key, count_lines(data)) for key, data in source.read_all(table.source)])}

    return relations


def _landing_audit(table: Table, rejects: Table) -> Audit:
    return Audit(table, (lines_accounted_for(table, rejects),), companion=rejects, from_source=recount(table))


CUSTOMER_LANDING_AUDIT = _landing_audit(CUSTOMER_LANDING, CUSTOMER_LANDING_REJECTS)
ACCELEROMETER_LANDING_AUDIT = _landing_audit(ACCELEROMETER_LANDING, ACCELEROMETER_LANDING_REJECTS)
STEP_TRAINER_LANDING_AUDIT = _landing_audit(STEP_TRAINER_LANDING, STEP_TRAINER_LANDING_REJECTS)
