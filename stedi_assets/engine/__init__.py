"""SQL engines that run the zone rules. Every rule is one SQL text over named relations,
written in the dialect DuckDB and Spark SQL share, so the engines cannot disagree."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, Union

import pyarrow as pa

from stedi_assets.lake.delta import Snapshot

# A published version of a lake table, or a table in memory (e.g. one a step is auditing).
Relation = Union[Snapshot, pa.Table]


class SqlEngine(Protocol):
    name: str

    def query(self, sql: str, relations: Mapping[str, Relation]) -> pa.Table: ...
