"""The seeds' five Glue jobs, as plain Spark SQL on local PySpark: the baseline of `python -m bench`.

These are the seeds' rules, not ours, on purpose: a consent filter, a join on e-mail, a
DISTINCT, a join on serial number and a join on the timestamp alone (which pairs strangers'
readings: the rubric's 43,681 rows on the real data). Each job reads what the one before it
wrote, JSON in and Parquet out, as the Glue jobs did through the catalog. Landing JSON is read
with the declared schema of the seeds' landing tables (the column contracts), as Glue did.

Run as a process of its own, as a user would submit it:
`python -m bench.seeds_baseline SOURCE OUT`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pyspark.sql import SparkSession

from stedi_assets.tables import ACCELEROMETER_LANDING, CUSTOMER_LANDING, RESCUED_DATA, STEP_TRAINER_LANDING, Table, as_read

# (output table, its SQL over earlier outputs and the landing views), in the seeds' order.
JOBS: tuple[tuple[str, str], ...] = (
    ("customer_trusted", "SELECT * FROM customer_landing WHERE shareWithResearchAsOfDate IS NOT NULL"),
    (
        "accelerometer_trusted",
        "SELECT a.* FROM accelerometer_landing AS a JOIN customer_trusted AS c ON a.user = c.email",
    ),
    (
        "customer_curated",
        "SELECT DISTINCT c.* FROM customer_trusted AS c JOIN accelerometer_trusted AS a ON a.user = c.email",
    ),
    (
        "step_trainer_trusted",
        "SELECT s.* FROM step_trainer_landing AS s JOIN customer_curated AS c ON s.serialNumber = c.serialNumber",
    ),
    (
        "machine_learning_curated",
        "SELECT s.*, a.* FROM step_trainer_trusted AS s "
        "JOIN accelerometer_trusted AS a ON s.sensorReadingTime = a.timestamp",
    ),
)
LANDING = (CUSTOMER_LANDING, ACCELEROMETER_LANDING, STEP_TRAINER_LANDING)


def local_session(driver_memory: str = "4g") -> SparkSession:
    """Local Spark on every core, as a user would start it for these jobs: loopback only, no
    UI or progress bars; shuffle partitions left to adaptive execution (Spark's default)."""
    return (
        SparkSession.builder.master("local[*]")
        .appName("stedi-seeds-baseline")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.driver.memory", driver_memory)
        .getOrCreate()
    )


def landing_ddl(table: Table) -> str:
    """The seeds' landing table schema: the contract's data columns, without our lineage and
    person key, and without the fields outside the contract we keep (the seeds drop them)."""
    ours = {RESCUED_DATA.name}
    return ", ".join(
        f"`{c.name}` {c.athena_type}" for c in as_read(table).columns if not c.name.startswith("source_") and c.name not in ours
    )


def run_jobs(spark: SparkSession, source: str | Path, out: str | Path) -> dict[str, str]:
    """Run the five jobs; returns where each output table was written."""
    for table in LANDING:
        landing = spark.read.schema(landing_ddl(table)).option("recursiveFileLookup", "true")
        landing.json(str(Path(source) / table.source)).createOrReplaceTempView(table.name)
    written = {}
    for name, sql in JOBS:
        path = str(Path(out) / name)
        spark.sql(sql).write.mode("overwrite").parquet(path)
        spark.read.parquet(path).createOrReplaceTempView(name)  # the next job reads it back
        written[name] = path
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", help="folder with customer/, accelerometer/ and step_trainer/ landing JSON")
    parser.add_argument("out", help="folder for the five Parquet outputs")
    parser.add_argument("--driver-memory", default="4g")
    args = parser.parse_args()
    spark = local_session(driver_memory=args.driver_memory)
    try:
        run_jobs(spark, args.source, args.out)
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
