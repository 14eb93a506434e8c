"""On Spark the large tables are written by the executors, not by the step's process: each
staged result is Parquet the executors wrote into the Delta table's folder, out of sight until
committed, file for file in the storage schema DuckDB's staged files have, row for row what
DuckDB stages; and a failed audit of such files leaves none of them. Costs about 25 s on the
session's cluster: three staged queries on each engine, and one step of a run that fails."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from pyspark.sql.classic.dataframe import DataFrame

from stedi_assets import lakehouse
from stedi_assets.engine.duckdb_engine import DuckDBEngine
from stedi_assets.lake import delta
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.store import LocalStore
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.tables import TABLES
from stedi_assets_tests.builders import sorted_rows
from stedi_assets_tests.engine.test_engines_agree import STAGED, ZONE_RULES

pytestmark = pytest.mark.spark



def folder_files(lake: Path, location: str) -> set[str]:
    """Every file in a table's folder but its Delta log."""
    root = lake / location
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and "_delta_log" not in p.parts}


def test_staged_tables_are_written_by_the_executors_as_duckdb_writes_them(spark_engine, sample_lake, tmp_path, monkeypatch):
    house = sample_lake.copy(tmp_path / "house")
    lake = Lake(LocalStore(house.lake))
    inputs = lakehouse.published(lake, TABLES)
    privacy = PrivacyPolicy(consent_policy=sample_lake.policy)
    # What comes back to this process from Spark's driver, in rows: the file list, never the table.
    returned: list[int] = []
    to_arrow = DataFrame.toArrow

    def counted(frame):
        result = to_arrow(frame)
        returned.append(result.num_rows)
        return result

    monkeypatch.setattr(DataFrame, "toArrow", counted)
    for name in STAGED:
        sql = ZONE_RULES[name]
        spec = TABLES[name].spec
        published = inputs[name]
        before = folder_files(house.lake, spec.location)
        duck = DuckDBEngine().stage(privacy.render(sql), inputs, lake, spec)
        # This process cannot write a data file: only the executors' processes can.
        returned.clear()
        with monkeypatch.context() as driver:
            driver.setattr(delta, "write_data_file", lambda *a, **k: pytest.fail("the driver wrote a data file"))
            on_spark = spark_engine.stage(privacy.render(sql), inputs, lake, spec)
        assert returned == [len(on_spark.files)], name  # one AddAction per file, nothing else
        assert on_spark.rows == duck.rows == published.rows > 0, name
        # Staged: in the folder, named by no version, and nothing else left beside them.
        spark_files = {f.rsplit("/", 1)[-1] for f in on_spark.files}
        duck_files = {f.rsplit("/", 1)[-1] for f in duck.files}
        assert folder_files(house.lake, spec.location) == before | spark_files | duck_files, name
        assert not spark_files & {f.rsplit("/", 1)[-1] for f in lake.current(spec).files}
        # File for file the storage schema DuckDB's files have, as Arrow and as Parquet.
        for path in on_spark.local_paths():
            assert pq.read_schema(path) == pq.read_schema(duck.local_paths()[0]), (name, path)
            assert pq.read_schema(path).equals(spec.storage_schema), (name, path)
            assert pq.ParquetFile(path).schema.to_arrow_schema() == pq.ParquetFile(duck.local_paths()[0]).schema.to_arrow_schema()
        assert sorted_rows(on_spark.to_arrow()) == sorted_rows(duck.to_arrow()) == sorted_rows(published.to_arrow()), name
        # Audited where they lie: Spark SQL reads the staged files.
        [row] = spark_engine.query(f"SELECT COUNT(*) AS n FROM {name}", {name: on_spark}).to_pylist()
        assert row["n"] == on_spark.rows
        lake.discard(duck)
        committed = lake.write(spec, on_spark, {"run_id": "spark-stage-test"})
        assert sorted_rows(committed.to_arrow()) == sorted_rows(published.to_arrow())
        assert {f.rsplit("/", 1)[-1] for f in committed.files} == spark_files


def test_a_failed_audit_on_spark_leaves_no_staged_file(spark_engine, spark_cluster, sample_lake, tmp_path):
    """A reading sharing the key of a published one breaks reading_key_unique: the full build
    of step_trainer_trusted on the cluster stages its files, fails its audit, and deletes them;
    the table keeps its version and its folder its files."""
    house = sample_lake.copy(tmp_path / "house")
    location = TABLES["step_trainer_trusted"].spec.location
    lake = Lake(LocalStore(house.lake))
    version, files = lake.current(TABLES["step_trainer_trusted"].spec).version, folder_files(house.lake, location)
    reading = lake.current(TABLES["step_trainer_trusted"].spec).to_arrow().slice(0, 1).to_pylist()[0]
    (Path(house.source) / "step_trainer" / "landing" / "late.json").write_text(
        f'{{"serialNumber":"{reading["serialNumber"]}","sensorReadingTime":{reading["sensorReadingTime"]},"distanceFromObject":9999}}\n'
    )
    result = house.run(
        ["step_trainer_landing", "step_trainer_trusted"],
        full_refresh=("step_trainer_trusted",),
        raise_on_error=False,
        STEDI_ENGINE="spark",
        STEDI_SPARK_MASTER=spark_cluster.url,
    )
    assert not result.success
    [failed] = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert failed.check_name == "reading_key_unique"
    assert lake.current(TABLES["step_trainer_trusted"].spec).version == version
    assert folder_files(house.lake, location) == files
