"""The Spark engine: the same rule SQL on PySpark, with the session from dagster-pyspark."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping

import pyarrow as pa
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame, SparkSession

from stedi_assets.engine import Relation
from stedi_assets.engine.resource import SqlEngineResource

# What a rule's result depends on, so it is set on every query's session whatever the
# deployment: ANSI semantics (Spark 4's default, pinned), UTC, and plain Arrow strings so
# results carry the contracts' types rather than Spark 4's default large_string.
ENGINE_SQL_CONF = {
    "spark.sql.ansi.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.useLargeVarTypes": "false",
}

# One machine: every core, reachable on loopback only, no web UI, and few shuffle partitions
# because the tables are small (the default 200 would be mostly empty tasks).
LOCAL_SPARK_CONFIG = {
    "spark.master": "local[*]",
    "spark.driver.host": "127.0.0.1",
    "spark.driver.bindAddress": "127.0.0.1",
    "spark.driver.memory": "2g",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.shuffle.partitions": "4",
    **ENGINE_SQL_CONF,
}


def local_spark() -> LazyPySparkResource:
    """dagster-pyspark's session resource for one machine; no JVM starts until it is used."""
    return LazyPySparkResource(spark_config=LOCAL_SPARK_CONFIG)


class SparkEngineResource(SqlEngineResource):
    """The Spark engine on dagster-pyspark's session resource `spark` (lazy: no JVM starts
    unless a rule runs on it), whose `spark_config` can point at a cluster; None: this
    process's local session."""

    spark: LazyPySparkResource | None = None

    def engine(self) -> SparkEngine:
        return SparkEngine(self.spark.spark_session) if self.spark else SparkEngine.shared()


class SparkEngine:
    """Runs a rule on PySpark: each relation becomes a temporary view, the result comes back
    as Arrow. Each query gets a session of its own (sharing the one SparkContext), so its
    views are private to it, as DuckDB's connection per query makes them."""

    name = "spark"

    def __init__(self, session: SparkSession):
        self.session = session

    @classmethod
    @functools.cache
    def shared(cls) -> SparkEngine:
        """This process's engine on the local session: started once, reused by every query."""
        return cls(local_spark().spark_session)

    def query(self, sql: str, relations: Mapping[str, Relation]) -> pa.Table:
        session = self.session.newSession()
        for key, value in ENGINE_SQL_CONF.items():
            session.conf.set(key, value)
        for name, relation in relations.items():
            _frame(session, relation).createOrReplaceTempView(name)
        result = session.sql(sql).toArrow()
        # Spark marks some columns NOT NULL; DuckDB and the contracts never do.
        return result.cast(pa.schema([f.with_nullable(True) for f in result.schema]))

    def batches(self, sql: str, relations: Mapping[str, Relation]) -> Iterator[pa.RecordBatch]:
        """A result to stage (Lake.stage), as record batches: here through the driver, whole."""
        yield from self.query(sql, relations).to_batches()


def _frame(session: SparkSession, relation: Relation) -> DataFrame:
    if isinstance(relation, pa.Table):
        return _from_arrow(session, relation)
    # A local lake: the version's data files, as delta-rs lists them, read where they lie.
    # A remote one: the Arrow table delta-rs fetched, so Spark needs no Hadoop S3 connector
    # or credentials of its own.
    if (paths := relation.local_paths()) is not None:
        return session.read.parquet(*paths)
    return _from_arrow(session, relation.to_arrow())


def _from_arrow(session: SparkSession, table: pa.Table) -> DataFrame:
    # PySpark 4 silently loses rows of an Arrow table that holds empty record batches, and
    # tables concatenated from many files often do: send only the batches with rows.
    batches = [batch for batch in table.to_batches() if batch.num_rows]
    return session.createDataFrame(pa.Table.from_batches(batches, table.schema))
