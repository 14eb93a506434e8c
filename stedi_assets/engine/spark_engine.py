"""The Spark engine: the same rule SQL on PySpark, on this machine or a cluster (STEDI_SPARK_MASTER).
What runs where (executors read, ingest and write the data files; only small results come back)
and why: docs/spark.md."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from dagster_pyspark import LazyPySparkResource
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql.pandas.types import from_arrow_schema

from stedi_assets.engine import BATCH_ROWS, Relation, Work, named
from stedi_assets.engine.resource import SqlEngineResource
from stedi_assets.lake.delta import Lake, Snapshot, Staged, TableSpec
from stedi_assets.settings import DEFAULT_SPARK_MASTER

APP_NAME = "stedi-lakehouse"  # how the application shows in the cluster manager
# What each executor task that writes a staged data file sends back: its delta-rs AddAction
# (deltalake.transaction.AddAction, less its partition values: the lake's tables have none).
ADDED = pa.schema([("path", pa.string()), ("size", pa.int64()), ("modification_time", pa.int64()),
                   ("data_change", pa.bool_()), ("stats", pa.string())])
# What each task of `stage_each` sends back: its item's AddAction (all null if it has no rows)
# and the work's small result, pickled.
EACH = pa.schema([*ADDED, ("result", pa.binary())])

# What a rule's result depends on, set on every query's session whatever the deployment: ANSI (Spark 4's
# default, pinned), UTC, and plain Arrow strings so results carry the contracts' types (not large_string).
ENGINE_SQL_CONF = {
    "spark.sql.ansi.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.execution.arrow.useLargeVarTypes": "false",
    # Rows per record batch an executor hands to the Python that writes a staged file (Spark's
    # default, 10,000, would make as many small row groups): as DuckDB's.
    "spark.sql.execution.arrow.maxRecordsPerBatch": str(BATCH_ROWS),
}


def spark_config(master: str = DEFAULT_SPARK_MASTER) -> dict[str, str]:
    """The session's Spark config on `master` (docs/spark.md). On this machine (local, or a
    cluster on loopback) the tables are small enough for few shuffle partitions (the default
    200 would be mostly empty tasks)."""
    config = {
        "spark.master": master,
        "spark.app.name": APP_NAME,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        **ENGINE_SQL_CONF,
    }
    if master.startswith("local"):
        config["spark.driver.memory"] = "2g"  # the driver is the executor too
    if master.startswith("local") or master.split("://", 1)[-1].startswith(("127.0.0.1:", "localhost:")):
        config |= {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1", "spark.sql.shuffle.partitions": "4"}
    return config


class SparkEngineResource(SqlEngineResource):
    """The Spark engine on `master` (STEDI_SPARK_MASTER, chosen in definitions.py), in this
    process's one session (lazy: no JVM starts unless a rule runs on it)."""

    master: str = DEFAULT_SPARK_MASTER

    def engine(self) -> SparkEngine:
        return SparkEngine.shared(self.master)


class SparkEngine:
    """Runs a rule on PySpark: each relation becomes a temporary view, the result comes back
    as Arrow. Each query gets a session of its own (sharing the one SparkContext), so its
    views are private to it, as DuckDB's connection per query makes them."""

    name = "spark"

    def __init__(self, session: SparkSession):
        self.session = session

    @classmethod
    @functools.cache
    def shared(cls, master: str = DEFAULT_SPARK_MASTER) -> SparkEngine:
        """This process's engine on `master`, started once: a process has one SparkContext, so a
        second master is an error, not a silent reuse. Executors run PYSPARK_PYTHON (docs/spark.md)."""
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        session = LazyPySparkResource(spark_config=spark_config(master)).spark_session  # dagster-pyspark's
        running = session.sparkContext.master
        if running != master:
            raise RuntimeError(f"this process already runs Spark on {running}; it cannot also run on {master}")
        return cls(session)

    def _session(self) -> SparkSession:
        session = self.session.newSession()
        for key, value in ENGINE_SQL_CONF.items():
            session.conf.set(key, value)
        return session

    def _sql(self, sql: str, relations: Mapping[str, Relation]) -> DataFrame:
        session = self._session()
        for name, relation in named(sql, relations).items():
            _frame(session, relation).createOrReplaceTempView(name)
        return session.sql(sql)

    def query(self, sql: str, relations: Mapping[str, Relation]) -> pa.Table:
        result = self._sql(sql, relations).toArrow()
        # Spark marks some columns NOT NULL; DuckDB and the contracts never do.
        return result.cast(pa.schema([f.with_nullable(True) for f in result.schema]))

    def stage(self, sql: str, relations: Mapping[str, Relation], lake: Lake, spec: TableSpec) -> Staged:
        """Each executor task with rows writes its share as one data file with the lake's own
        writer (lake/data_files.py `write_data_file`, not Spark's: docs/spark.md) and sends back only
        its AddAction. A file of a task Spark retried is named by no commit: vacuum deletes it."""
        frame = self._sql(sql, relations)

        def write(root: str, options: Mapping[str, str]) -> list:
            return _adds(frame.mapInArrow(_writer(spec, root, dict(options)), from_arrow_schema(ADDED)).toArrow())

        return lake.stage_with(spec, write)

    def stage_each(self, items: Sequence[str], work: Work, lake: Lake, spec: TableSpec) -> tuple[Staged, list[Any]]:
        """One executor task per item, writing as `stage` does; `work` travels with the task
        (pickled) and reads its item there, so no row passes through this process."""
        import pickle

        results: list[Any] = []

        def write(root: str, options: Mapping[str, str]) -> list:
            if not items:
                return []
            tasks = self._session().range(0, len(items), 1, len(items))  # one task per item
            done = tasks.mapInArrow(_each(list(items), work, spec, root, dict(options)), from_arrow_schema(EACH)).toArrow()
            results.extend(pickle.loads(r) for r in done["result"].to_pylist())
            return _adds(done.drop_columns(["result"]).filter(pc.is_valid(done["path"])))

        return lake.stage_with(spec, write), results


def _adds(added: pa.Table) -> list:
    """The AddActions the executors sent back (ADDED)."""
    from deltalake.transaction import AddAction

    return [AddAction(partition_values={}, **row) for row in added.to_pylist()]


def _each(items: list[str], work: Work, spec: TableSpec, root: str, options: dict[str, str]):
    """What each task of `stage_each` runs over its items (the ids of `spark.range`)."""
    write = _writer(spec, root, options)  # a closure, shipped by value: executors import no Dagster

    def run(batches):
        import pickle

        for batch in batches:
            for i in batch.column("id").to_pylist():
                rows, result = work(items[i])
                # Written in full (the work is then done), or no file: its rows all empty.
                [add] = [written.to_pylist()[0] for written in write(rows)] or [dict.fromkeys(ADDED.names)]
                yield pa.RecordBatch.from_pylist([{**add, "result": pickle.dumps(result)}], schema=EACH)

    return run


def _writer(spec: TableSpec, root: str, options: dict[str, str]):
    """What each executor task runs over its share of a staged result: one data file of its
    batches (none if it has no rows), answered by the file's AddAction."""

    def write(batches):
        import itertools

        from stedi_assets.lake.data_files import write_data_file

        with_rows = (batch for batch in batches if batch.num_rows)
        first = next(with_rows, None)
        if first is not None:
            add = asdict(write_data_file(spec, root, itertools.chain([first], with_rows), options))
            add.pop("partition_values")
            yield pa.RecordBatch.from_pylist([add], schema=ADDED)

    return write


def _frame(session: SparkSession, relation: Relation) -> DataFrame:
    if isinstance(relation, pa.Table):
        return _from_arrow(session, relation)
    # A local lake (a folder every executor sees at the same path): the version's data files,
    # as delta-rs lists them, read where they lie, with the table's schema (Spark would read
    # file footers to infer it: a second or more per query on a cluster).
    if (paths := relation.local_paths()) is not None:
        return session.read.schema(from_arrow_schema(relation.spec.storage_schema)).parquet(*paths)
    return _read_on_executors(session, relation)


def _read_on_executors(session: SparkSession, snapshot: Snapshot | Staged) -> DataFrame:
    """A version on S3, read by the executors, a share of its data files each, with Arrow's S3
    client and the lake's access (not hadoop-aws: docs/spark.md). Only the file list (from the
    Delta log, by delta-rs) and the access options travel to the executors."""
    schema = snapshot.spec.storage_schema
    if not snapshot.files:
        return _from_arrow(session, schema.empty_table())
    options = dict(snapshot.storage_options)

    def read(batches):
        import pyarrow.parquet as pq

        from stedi_assets.lake.s3_client import arrow_s3

        filesystem = arrow_s3(options)
        for batch in batches:
            for file in batch.column("file").to_pylist():
                with filesystem.open_input_file(file.removeprefix("s3://")) as data:
                    for part in pq.ParquetFile(data).iter_batches(columns=schema.names):
                        yield pa.Table.from_batches([part]).select(schema.names).cast(schema).to_batches()[0]

    files = session.createDataFrame(pa.table({"file": list(snapshot.files)}))
    tasks = min(len(snapshot.files), session.sparkContext.defaultParallelism)
    return files.repartition(tasks).mapInArrow(read, from_arrow_schema(schema))


def _from_arrow(session: SparkSession, table: pa.Table) -> DataFrame:
    # PySpark 4 silently loses rows of an Arrow table that holds empty record batches, and
    # tables concatenated from many files often do: send only the batches with rows.
    batches = [batch for batch in table.to_batches() if batch.num_rows]
    # And no rows is one empty batch, not none: PySpark cannot convert a list column (a
    # rejects table's names) of no chunks.
    batches = batches or [pa.RecordBatch.from_pylist([], schema=table.schema)]
    return session.createDataFrame(pa.Table.from_batches(batches, table.schema))
