"""Athena DDL for the lake's tables, generated from the column contracts in tables.py (the
seeds kept hand-written `.sql` files, which drifted from the data)."""

from __future__ import annotations

from stedi_assets.lake.lake import Lake, TableNotPublishedError
from stedi_assets.tables import TABLES, Table

COMMENT_LIMIT = 255  # Glue's limit on a column comment


def catalog_columns(table: Table) -> list[tuple[str, str, str]]:
    """(name, type, comment) of each column as Athena and Glue know it: names in lower case,
    as Athena stores them; Parquet columns are matched to them ignoring case."""
    return [(c.name.lower(), c.athena_type, c.description[:COMMENT_LIMIT]) for c in table.columns]


def create_table(table: Table, location: str, database: str) -> str:
    columns = ",\n".join(f"  `{name}` {kind} COMMENT {_string(comment)}" for name, kind, comment in catalog_columns(table))
    return (
        f"CREATE EXTERNAL TABLE IF NOT EXISTS `{database}`.`{table.name}` (\n{columns}\n)\n"
        f"STORED AS PARQUET\nLOCATION {_string(location)}\nTBLPROPERTIES ('classification' = 'parquet');\n"
    )


def lake_ddl(lake: Lake, database: str) -> str:
    """A statement per table, at the folder of its published version. A table not published
    yet gets its root folder and a warning: that folder will hold every kept version, which
    Athena would read all at once, so run `stedi ddl` again once it is published."""
    statements = []
    for table in TABLES.values():
        try:
            location = lake.current(table).location
            note = ""
        except TableNotPublishedError:
            location = lake.store.uri(table.location) + "/"
            note = f"-- {table.name} is not published yet: LOCATION is its root folder; rerun once published.\n"
        statements.append(note + create_table(table, location, database))
    return "\n".join(statements)


def _string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"
