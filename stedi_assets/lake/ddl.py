"""Athena DDL for Delta tables: Athena reads a Delta table's schema and current version from
its log, so a table needs only its location (and never a new statement after a commit)."""

from __future__ import annotations

from collections.abc import Sequence

from stedi_assets.lake.delta import Lake, TableSpec


def create_table(spec: TableSpec, location: str, database: str) -> str:
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{spec.name}`\n"
        f"LOCATION {_string(location.rstrip('/') + '/')}\nTBLPROPERTIES ('table_type' = 'DELTA');\n"
    )


def lake_ddl(lake: Lake, specs: Sequence[TableSpec], database: str) -> str:
    """A statement per table, at its root folder. A table not yet committed gets a warning:
    Athena cannot create a Delta table over a folder without a log."""
    published = lake.current_versions(specs)
    statements = []
    for spec in specs:
        note = "" if spec.name in published else f"-- {spec.name} is not published yet: materialize it before running this.\n"
        statements.append(note + create_table(spec, lake.uri(spec.location), database))
    return "\n".join(statements)


def _string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
