from __future__ import annotations

from typing import Literal

import dagster as dg

from stedi_assets.engine import SqlEngine


class SqlEngineResource(dg.ConfigurableResource):
    """Runs the zone rules' SQL: `duckdb` on one machine, `spark` on local or cluster PySpark."""

    kind: Literal["duckdb", "spark"] = "duckdb"

    def engine(self) -> SqlEngine:
        if self.kind == "spark":
            from stedi_assets.engine.spark_engine import SparkEngine

            return SparkEngine.shared()
        from stedi_assets.engine.duckdb_engine import DuckDBEngine

        return DuckDBEngine()
