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
    """The local engine: DuckDB in this process, on every core, holding at most
    `memory_limit` (DuckDB's syntax: 1GB, 512MB) and spilling the rest to `spill_directory`."""

    memory_limit: str = "1GB"
    spill_directory: str | None = None

    def engine(self) -> SqlEngine:
        from stedi_assets.engine.duckdb_engine import DuckDBEngine

        return DuckDBEngine(self.memory_limit, self.spill_directory)


def engine_resource(settings: Settings) -> SqlEngineResource:
    """The engine named by STEDI_ENGINE (settings.ENGINES): Spark on STEDI_SPARK_MASTER, or
    DuckDB bound by STEDI_MEMORY_LIMIT and STEDI_SPILL_DIRECTORY."""
    if settings.engine == "spark":
        from stedi_assets.engine.spark_engine import SparkEngineResource  # pyspark only when chosen

        return SparkEngineResource(master=settings.spark_master)
    return DuckDBEngineResource(memory_limit=settings.memory_limit, spill_directory=settings.spill_directory)
