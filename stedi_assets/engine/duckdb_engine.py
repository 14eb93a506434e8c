from __future__ import annotations

from collections.abc import Mapping

import duckdb
import pyarrow as pa

from stedi_assets.engine import Relation


def _sql_string(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class DuckDBEngine:
    """The local engine: an in-memory DuckDB per query, reading Parquet where it lies."""

    name = "duckdb"

    def query(self, sql: str, relations: Mapping[str, Relation]) -> pa.Table:
        with duckdb.connect() as con:
            for name, relation in relations.items():
                if isinstance(relation, pa.Table):
                    con.register(name, relation)
                elif (paths := relation.local_paths()) is not None:
                    files = ", ".join(_sql_string(p) for p in paths)
                    con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet([{files}])")
                else:  # remote lake: DuckDB reads the Arrow table the store fetched
                    con.register(name, relation.to_arrow())
            return con.sql(sql).to_arrow_table()
