"""On a lake on S3 the cluster's executors read each published version's data files
themselves (Arrow's S3 client, the lake's access), from the file list delta-rs gives: the
rows do not pass through the step's process. Against a moto server on loopback (Spark's own
S3 connector, hadoop-aws, is not on PyPI: docs/spark.md). And they write a staged table
there the same way. Costs about 25 s: three of the sample lake's tables copied to S3, each
queried once on each engine; one staged by the executors (4 s)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stedi_assets import lakehouse
from stedi_assets.engine.duckdb_engine import DuckDBEngine
from stedi_assets.lake.delta import Lake, Snapshot
from stedi_assets.lake.store import LocalStore
from stedi_assets.tables import TABLES
from stedi_assets_tests.builders import sorted_rows
from stedi_assets_tests.lake.s3_server import MotoServer, ensure_bucket, lake_at

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def s3(tmp_path_factory) -> Iterator[MotoServer]:
    with MotoServer(tmp_path_factory.mktemp("moto") / "moto.log") as server:
        ensure_bucket(server.client("s3"), "stedi-lake")
        yield server


def test_executors_read_a_version_on_s3_where_it_lies(spark_engine, sample_lake, s3, monkeypatch):
    # A landing table (a data file per source file), a trusted and a curated one.
    names = ("accelerometer_landing", "customer_trusted", "machine_learning_curated")
    local = lakehouse.published(Lake(LocalStore(sample_lake.lake)), names)
    on_s3 = lake_at(s3, "s3://stedi-lake/spark")
    # Each in as many data files as in the sample lake.
    snapshots = {}
    for name, version in local.items():
        parts = [version.part([f]).to_arrow() for f in version.files]  # type: ignore[union-attr]
        snapshots[name] = on_s3.write(TABLES[name].spec, parts, {"copied_from": version.version})
        assert len(snapshots[name].files) == len(version.files) >= 1
    expected = {name: sorted_rows(DuckDBEngine().query(f"SELECT * FROM {name}", {name: s})) for name, s in snapshots.items()}

    def fetched(self, *args, **kwargs):
        raise AssertionError(f"{self.name} was fetched into the step's process")

    monkeypatch.setattr(Snapshot, "dataset", fetched)
    monkeypatch.setattr(Snapshot, "to_arrow", fetched)
    for name, snapshot in snapshots.items():
        on_spark = spark_engine.query(f"SELECT * FROM {name}", {name: snapshot})
        assert on_spark.schema.equals(TABLES[name].spec.storage_schema.remove_metadata()), name
        assert sorted_rows(on_spark) == expected[name] and len(expected[name]) == local[name].rows, name
    # An empty part of a version (no data files) is an empty relation, not a failed scan.
    customers = snapshots["customer_trusted"]
    assert spark_engine.query("SELECT COUNT(*) AS n FROM c", {"c": Snapshot(**{**customers.__dict__, "files": ()})})["n"].to_pylist() == [0]


def test_executors_stage_a_table_on_s3(spark_engine, sample_lake, s3, monkeypatch):
    """And they write a staged table there with Arrow's S3 client, none of it through the
    step's process: files out of sight of the log, in the storage schema, gone when discarded."""
    import pyarrow.parquet as pq

    from stedi_assets.lake import delta
    from stedi_assets.lake.s3_client import arrow_s3

    name = "machine_learning_curated"
    spec = TABLES[name].spec
    local = lakehouse.published(Lake(LocalStore(sample_lake.lake)), [name])[name]
    on_s3 = lake_at(s3, "s3://stedi-lake/spark-stage")
    published = on_s3.write(spec, local.to_arrow(), {"copied_from": local.version})
    monkeypatch.setattr(delta, "write_data_file", lambda *a, **k: pytest.fail("the driver wrote a data file"))
    staged = spark_engine.stage(f"SELECT * FROM {name}", {name: published}, on_s3, spec)
    assert staged.rows == local.rows and not set(staged.files) & set(on_s3.current(spec).files)
    filesystem = arrow_s3(on_s3.storage_options)
    for file in staged.files:
        assert pq.read_schema(file.removeprefix("s3://"), filesystem=filesystem).equals(spec.storage_schema)
    assert sorted_rows(staged.to_arrow()) == sorted_rows(local.to_arrow())
    on_s3.discard(staged)
    assert on_s3.missing(list(staged.files)) == list(staged.files)
