from __future__ import annotations

from typing import Literal

import dagster as dg
from dagster_pyspark import LazyPySparkResource

from stedi_assets.engine import SqlEngine


class SqlEngineResource(dg.ConfigurableResource):
    """Runs the zone rules' SQL: `duckdb` on one machine, `spark` on local or cluster PySpark."""

    kind: Literal["duckdb", "spark"] = "duckdb"
    # The dagster-pyspark session `spark` runs on; lazy, so no JVM starts unless a rule runs
    # on it. Its `spark_config` can point at a cluster. None: SparkEngine's local session.
    spark: LazyPySparkResource | None = None

    def engine(self) -> SqlEngine:
        if self.kind == "spark":
            from stedi_assets.engine.spark_engine import SparkEngine

            return SparkEngine(self.spark.spark_session) if self.spark else SparkEngine.shared()
        from stedi_assets.engine.duckdb_engine import DuckDBEngine

        return DuckDBEngine()
