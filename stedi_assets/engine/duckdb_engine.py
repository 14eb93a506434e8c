from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import duckdb
import pyarrow as pa

from stedi_assets.engine import BATCH_ROWS, Relation, Work, named
from stedi_assets.lake.delta import Lake, Staged, TableSpec



@functools.cache
def _database(memory_limit: str, spill_directory: str) -> duckdb.DuckDBPyConnection:
    """This process's in-memory database. It holds no tables: each query's inputs are
    temporary views of its own cursor, gone when the query ends. A join or aggregation
    larger than `memory_limit` spills to `spill_directory` instead of growing the process."""
    os.makedirs(spill_directory, exist_ok=True)
    # A folder of this process's own: DuckDB creates it when it first spills and deletes it
    # at exit, and two processes never share their spill files.
    own = os.path.join(spill_directory, f"duckdb-{os.getpid()}")
    return duckdb.connect(config={"memory_limit": memory_limit, "temp_directory": own})


class DuckDBEngine:
    """The local engine: DuckDB in this process, reading a version's Parquet files where they lie,
    holding at most `memory_limit` (STEDI_MEMORY_LIMIT) and spilling the rest to `spill_directory`."""

    name = "duckdb"

    def __init__(self, memory_limit: str = "1GB", spill_directory: str | None = None):
        self.memory_limit = memory_limit
        self.spill_directory = spill_directory or os.path.join(tempfile.gettempdir(), "stedi_duckdb_spill")

    def query(self, sql: str, relations: Mapping[str, Relation]) -> pa.Table:
        with self._cursor(sql, relations) as con:
            return con.sql(sql).to_arrow_table()

    def stage(self, sql: str, relations: Mapping[str, Relation], lake: Lake, spec: TableSpec) -> Staged:
        """Streamed into the staged files one record batch at a time: memory bounded by `memory_limit`."""
        with self._cursor(sql, relations) as con:
            return lake.stage(spec, [con.sql(sql).to_arrow_reader(BATCH_ROWS)])

    def stage_each(self, items: Sequence[str], work: Work, lake: Lake, spec: TableSpec) -> tuple[Staged, list[Any]]:
        """In this process, one item at a time, its rows staged as they come: memory bounded by one piece."""
        results: list[Any] = []

        def parts() -> Iterator[Iterator[pa.Table]]:
            for item in items:
                rows, result = work(item)
                results.append(result)  # complete once Lake.stage has written the rows
                yield rows

        return lake.stage(spec, parts()), results

    def _cursor(self, sql: str, relations: Mapping[str, Relation]) -> duckdb.DuckDBPyConnection:
        # A cursor is a connection of its own to the shared database, ~100x cheaper to open
        # than a new database (about 8 ms, paid by every rule and check).
        con = _database(self.memory_limit, self.spill_directory).cursor()
        for name, relation in named(sql, relations).items():
            if isinstance(relation, pa.Table):
                con.register(name, relation)
            elif (paths := relation.local_paths()) is not None:
                files = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)  # SQL string literals
                con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM read_parquet([{files}])")
            else:  # remote lake: DuckDB scans the files through Arrow's S3 client, in batches
                con.register(name, relation.dataset())
        return con
