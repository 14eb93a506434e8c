"""SQL engines that run the zone rules. Every rule is one SQL text over named relations,
written in the dialect DuckDB and Spark SQL share, so the engines cannot disagree."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol, Union

import pyarrow as pa

from stedi_assets.lake.delta import Snapshot, Staged

# A published version of a lake table, files staged to become one (a table a step is
# auditing), or a table in memory.
Relation = Union[Snapshot, Staged, pa.Table]


class SqlEngine(Protocol):
    name: str

    def query(self, sql: str, relations: Mapping[str, Relation]) -> pa.Table: ...

    def batches(self, sql: str, relations: Mapping[str, Relation]) -> Iterator[pa.RecordBatch]: ...
