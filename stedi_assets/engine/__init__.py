"""SQL engines that run the zone rules. Every rule is one SQL text over named relations,
written in the dialect DuckDB and Spark SQL share, so the engines cannot disagree."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Protocol, Union

import pyarrow as pa

from stedi_assets.lake.delta import Lake, Snapshot, Staged, TableSpec

# A published version of a lake table, files staged to become one (a table a step is
# auditing), or a table in memory.
Relation = Union[Snapshot, Staged, pa.Table]
# Builds one data file's rows from an item (a landing source file): the rows, a piece at a time,
# and a small result about them, complete once the rows are all handed on (landing/ingest.py).
Work = Callable[[str], tuple[Iterator[pa.Table], Any]]
BATCH_ROWS = 1 << 17  # rows per record batch of a staged result (and row group): a few MB to tens of MB


def named(sql: str, relations: Mapping[str, Relation]) -> dict[str, Relation]:
    """The relations `sql` names: callers hand over every input of a step, and a view costs
    (an Arrow transfer, a listing of Parquet or S3 files) whether the query reads it or not."""
    return {n: r for n, r in relations.items() if re.search(rf"\b{re.escape(n)}\b", sql, re.IGNORECASE)}


class SqlEngine(Protocol):
    name: str
    def query(self, sql: str, relations: Mapping[str, Relation]) -> pa.Table:
        """A result small enough for the step's process: a rule's violations, counts, keys,
        a small table (customers)."""
        ...

    def stage(self, sql: str, relations: Mapping[str, Relation], lake: Lake, spec: TableSpec) -> Staged:
        """A result of any size written as `spec`'s staged data files (not committed, see
        `Staged`), by the engine where it runs: the way every large table is built."""
        ...

    def stage_each(self, items: Sequence[str], work: Work, lake: Lake, spec: TableSpec) -> tuple[Staged, list[Any]]:
        """`work` run on each item where the engine runs (the step's process, Spark's
        executors), its rows staged as one data file of `spec` per item that has any, and
        its small results, in the order of `items`: how landing files are ingested."""
        ...
