"""The seeds' five jobs on Spark give the course rubric's counts on the real data, and our
machine-learning table differs from theirs by exactly the rows that pair two customers."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import duckdb
import pytest

from bench.seeds_baseline import JOBS, run_jobs
from stedi_assets.definitions import build_definitions
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.store import LocalStore
from stedi_assets.settings import Settings
from stedi_assets.tables import CUSTOMER_CURATED, MACHINE_LEARNING_CURATED

# The course rubric, on the real data; its ML table joins on the timestamp alone.
RUBRIC = {
    "customer_trusted": 482,
    "accelerometer_trusted": 40_981,
    "customer_curated": 482,
    "step_trainer_trusted": 14_460,
    "machine_learning_curated": 43_681,
}
CROSS_CUSTOMER_ROWS = 2_700

pytestmark = [pytest.mark.spark, pytest.mark.reference]


@pytest.fixture(scope="module")
def seeds_output(spark_session, reference_data: Path, tmp_path_factory) -> dict[str, str]:
    return run_jobs(spark_session, reference_data, tmp_path_factory.mktemp("seeds"))


@pytest.fixture(scope="module")
def our_lake(reference_data: Path, tmp_path_factory) -> Lake:
    root = tmp_path_factory.mktemp("ours")
    settings = Settings.from_env({"STEDI_SOURCE": str(reference_data), "STEDI_LAKE": str(root)})
    job = build_definitions(settings).resolve_job_def("stedi_lakehouse")
    assert job.execute_in_process(instance=dg.DagsterInstance.ephemeral()).success
    return Lake(LocalStore(root))


def _parquet(path: str) -> str:
    return f"read_parquet('{Path(path) / '*.parquet'}')"


def test_jobs_run_in_the_seeds_order():
    assert [name for name, _ in JOBS] == list(RUBRIC)


def test_baseline_counts_are_the_rubric(seeds_output):
    counts = {name: duckdb.sql(f"SELECT COUNT(*) FROM {_parquet(path)}").fetchone()[0] for name, path in seeds_output.items()}
    assert counts == RUBRIC


def test_ours_differs_from_the_baseline_by_the_cross_customer_rows(seeds_output, our_lake):
    con = duckdb.connect()
    con.execute(f"CREATE VIEW seeds_ml AS SELECT * FROM {_parquet(seeds_output['machine_learning_curated'])}")
    con.execute(f"CREATE VIEW seeds_customer AS SELECT * FROM {_parquet(seeds_output['customer_curated'])}")
    for table in (MACHINE_LEARNING_CURATED, CUSTOMER_CURATED):
        files = ", ".join(f"'{p}'" for p in our_lake.current(table.spec).local_paths())
        con.execute(f"CREATE VIEW {table.name} AS SELECT * FROM read_parquet([{files}])")
    # A seeds row pairs the step trainer's owner with whoever's phone recorded at that time.
    owner = "seeds_ml AS m JOIN seeds_customer AS c ON c.serialNumber = m.serialNumber"
    cross = con.sql(f"SELECT COUNT(*) FROM {owner} WHERE c.email <> m.user").fetchone()[0]
    assert cross == CROSS_CUSTOMER_ROWS
    ours = con.sql("SELECT COUNT(*) FROM machine_learning_curated").fetchone()[0]
    assert ours == RUBRIC["machine_learning_curated"] - cross

    # Not only the counts: ours holds exactly the seeds' same-customer rows, by e-mail (ours
    # are e-mail keys, trimmed and lower-cased, from the trusted zone on).
    difference = con.sql(
        f"""
        (SELECT lower(trim(c.email)), m.sensorReadingTime, m.distanceFromObject, m.x, m.y, m.z
         FROM {owner} WHERE c.email = m.user
         EXCEPT ALL
         SELECT c.email, m.sensorReadingTime, m.distanceFromObject, m.x, m.y, m.z
         FROM machine_learning_curated AS m JOIN customer_curated AS c ON c.subject_id = m.subject_id)
        UNION ALL
        (SELECT c.email, m.sensorReadingTime, m.distanceFromObject, m.x, m.y, m.z
         FROM machine_learning_curated AS m JOIN customer_curated AS c ON c.subject_id = m.subject_id
         EXCEPT ALL
         SELECT lower(trim(c.email)), m.sensorReadingTime, m.distanceFromObject, m.x, m.y, m.z
         FROM {owner} WHERE c.email = m.user)
        """
    ).fetchall()
    assert difference == []
