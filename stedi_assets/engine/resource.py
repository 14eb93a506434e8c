from __future__ import annotations

from typing import TYPE_CHECKING

import dagster as dg

from stedi_assets.engine import SqlEngine

if TYPE_CHECKING:
    from stedi_assets.settings import Settings


class SqlEngineResource(dg.ConfigurableResource):
    """Runs the zone rules' SQL: DuckDBEngineResource on one machine, SparkEngineResource
    (engine/spark_engine.py, imported only when chosen) on local or cluster PySpark."""

    def engine(self) -> SqlEngine:
        raise NotImplementedError


class DuckDBEngineResource(SqlEngineResource):
    """The local engine: DuckDB in this process, on every core."""

    def engine(self) -> SqlEngine:
        from stedi_assets.engine.duckdb_engine import DuckDBEngine

        return DuckDBEngine()


def engine_resource(settings: Settings) -> SqlEngineResource:
    """The engine named by STEDI_ENGINE (settings.ENGINES); Spark on STEDI_SPARK_MASTER."""
    if settings.engine == "spark":
        from stedi_assets.engine.spark_engine import SparkEngineResource  # pyspark only when chosen

        return SparkEngineResource(master=settings.spark_master)
    return DuckDBEngineResource()
