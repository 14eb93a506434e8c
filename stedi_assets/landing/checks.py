"""Landing audits: every non-blank line of every landing file is a row or a reject."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import dagster as dg
import pyarrow as pa

from stedi_assets.audit import Rule, table_audit
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
        f"Each landing file's non-blank lines, counted again from the source, all appear in {table.name} "
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


def source_lines(table: Table) -> Callable[[LandingSource], Mapping[str, pa.Table]]:
    def relations(source: LandingSource) -> Mapping[str, pa.Table]:
        counts = [(key, count_lines(data)) for key, data in source.read_all(table.source)]
        return {
            "source_lines": pa.table(
                {"source_file": [k for k, _ in counts], "lines_read": pa.array([n for _, n in counts], pa.int64())}
            )
        }

    return relations


def _landing_audit(table: Table, rejects: Table) -> dg.AssetChecksDefinition:
    return table_audit(
        table,
        [lines_accounted_for(table, rejects)],
        also_publishes=[rejects],
        extra_relations=source_lines(table),
    )


customer_landing_audit = _landing_audit(CUSTOMER_LANDING, CUSTOMER_LANDING_REJECTS)
accelerometer_landing_audit = _landing_audit(ACCELEROMETER_LANDING, ACCELEROMETER_LANDING_REJECTS)
step_trainer_landing_audit = _landing_audit(STEP_TRAINER_LANDING, STEP_TRAINER_LANDING_REJECTS)
