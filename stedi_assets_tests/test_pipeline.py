"""The whole graph: blocking checks, selective rebuilds, idempotency, rollback, damage.

Most runs are in process, each on a copy of the session's sample lake (conftest); the command
line is tested where it is the point: the README's full_refresh.yaml, a failing check exiting
non-zero, two CLI runs at once, and the `stedi` rollback, versions and sql commands."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from stedi_assets.landing.json_lines import count_lines
from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets_tests.conftest import DEFINITIONS_MODULE, REPO, CliLakehouse, SharedLake, run_cli

LEAKY_DEFINITIONS = Path(__file__).with_name("leaky_definitions.py")
SPARK_BANNER = "Spark's default log4j profile"  # what a starting Spark JVM prints on stderr
LOCATIONS = {
    "customer_landing": "customer/landing",
    "customer_landing_rejects": "customer/landing_rejects",
    "accelerometer_landing": "accelerometer/landing",
    "accelerometer_landing_rejects": "accelerometer/landing_rejects",
    "step_trainer_landing": "step_trainer/landing",
    "step_trainer_landing_rejects": "step_trainer/landing_rejects",
    "customer_trusted": "customer/trusted",
    "accelerometer_trusted": "accelerometer/trusted",
    "step_trainer_trusted": "step_trainer/trusted",
    "customer_curated": "customer/curated",
    "machine_learning_curated": "machine_learning/curated",
}
DOWNSTREAM_OF_CUSTOMER_TRUSTED = {
    "customer_trusted",
    "accelerometer_trusted",
    "customer_curated",
    "step_trainer_trusted",
    "machine_learning_curated",
}


def versions(lakehouse: CliLakehouse) -> dict[str, int]:
    return {t: lakehouse.version(loc) for t, loc in LOCATIONS.items()}


def snapshot(lakehouse: CliLakehouse) -> dict[str, list]:
    """Every table's rows, sorted, as `stedi sql` reads them."""
    return {t: lakehouse.sql(f"SELECT * FROM {t} ORDER BY ALL") for t in LOCATIONS}


def failures(result: dg.ExecuteInProcessResult) -> str:
    """Every failed step's error, causes included, as the CLI would print it."""
    return "\n".join(e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure)


@pytest.fixture
def sample(sample_lake: SharedLake, tmp_path: Path) -> CliLakehouse:
    """A copy of the session's sample lake and of its source, free to be changed by a test."""
    return sample_lake.copy(tmp_path / "sample")


def test_sample_run_accounts_for_every_landing_line(sample_lake):
    lakehouse = sample_lake.lakehouse
    for source in ("customer", "accelerometer", "step_trainer"):
        lines = sum(count_lines(p.read_bytes()) for p in (SAMPLE_SOURCE / source).rglob("*.json"))
        [row] = lakehouse.sql(
            f"SELECT COUNT(*) AS n FROM (SELECT source_file, source_line FROM {source}_landing "
            f"UNION SELECT source_file, source_line FROM {source}_landing_rejects)"
        )
        assert row["n"] == lines
    rejects = lakehouse.sql("SELECT source_file, source_line, reason FROM accelerometer_landing_rejects ORDER BY source_line")
    assert [(r["source_file"], r["source_line"]) for r in rejects] == [
        ("accelerometer/landing/late/accelerometer-dirty.json", n) for n in (3, 5, 6, 7, 8)
    ]
    assert lakehouse.count("machine_learning_curated") > 0


def test_a_second_run_changes_nothing_and_a_full_refresh_gives_the_same_tables(sample_lake, sample):
    """The README's commands: a second `dagster asset materialize` commits nothing, and one
    with full_refresh.yaml gives every table a new version with the same rows. Neither starts
    a JVM: PySpark loads only when STEDI_ENGINE=spark."""
    first, first_versions = snapshot(sample), versions(sample)
    assert first == snapshot(sample_lake.lakehouse)
    again = sample.materialize("*")  # incremental: nothing new, nothing committed
    assert versions(sample) == first_versions
    refreshed = sample.materialize("*", full_refresh=("*",))
    assert snapshot(sample) == first
    assert all(versions(sample)[t] != first_versions[t] for t in LOCATIONS)  # new versions, same rows
    assert SPARK_BANNER not in again.stderr + refreshed.stderr


def test_selective_rebuild_touches_only_the_selection_and_downstream(sample):
    before = versions(sample)
    assert sample.run("key:customer_trusted+", full_refresh=tuple(DOWNSTREAM_OF_CUSTOMER_TRUSTED)).success
    after = versions(sample)
    changed = {t for t in LOCATIONS if after[t] != before[t]}
    assert changed == DOWNSTREAM_OF_CUSTOMER_TRUSTED


def test_a_privacy_violation_is_stopped_and_the_previous_table_stays(sample):
    """A deployment whose customer_trusted leaks, run through the CLI: the blocking check
    fails the run (exit code non-zero), nothing downstream runs, nothing is published."""
    before, published = versions(sample), snapshot(sample)
    non_consenting = {
        r["email"]
        for r in sample.sql("SELECT email FROM customer_landing EXCEPT SELECT email FROM customer_trusted")
    }
    assert non_consenting

    leaky = run_cli(
        ["dagster", "asset", "materialize", "-f", str(LEAKY_DEFINITIONS), "--select", "key:customer_trusted+"],
        sample.env,
        sample.root,
        check=False,
    )
    assert leaky.returncode != 0
    assert "consent_present" in leaky.stdout + leaky.stderr
    assert versions(sample) == before  # nothing downstream ran, nothing was published
    assert snapshot(sample) == published
    # The rejected version was deleted: no non-consenting customer's record is on disk in
    # the trusted or curated zones.
    for zone_folder in ("customer/trusted", "customer/curated"):
        for parquet in (sample.lake / zone_folder).rglob("*.parquet"):
            assert not non_consenting & set(pq.read_table(parquet, columns=["email"]).column("email").to_pylist())


def test_a_duplicate_reading_key_blocks_step_trainer_trusted(sample):
    before, published = versions(sample), snapshot(sample)
    [reading] = sample.sql("SELECT serialNumber, sensorReadingTime FROM step_trainer_trusted ORDER BY ALL LIMIT 1")
    conflicting = (
        f'{{"serialNumber":"{reading["serialNumber"]}","sensorReadingTime":{reading["sensorReadingTime"]},'
        '"distanceFromObject":9999}\n'
    )
    (sample.source / "step_trainer" / "landing" / "late.json").write_text(conflicting)

    result = sample.run("key:step_trainer_landing+", raise_on_error=False)
    assert not result.success
    assert "reading_key_unique" in failures(result)
    after = versions(sample)
    assert after["step_trainer_landing"] != before["step_trainer_landing"]  # landing itself was sound
    assert after["step_trainer_trusted"] == before["step_trainer_trusted"]
    assert after["machine_learning_curated"] == before["machine_learning_curated"]  # skipped
    assert snapshot(sample)["step_trainer_trusted"] == published["step_trainer_trusted"]


def test_a_source_without_files_is_an_error_naming_the_folder(tmp_path, lakehouse_factory):
    empty = tmp_path / "empty_source"
    (empty / "customer").mkdir(parents=True)
    result = lakehouse_factory(empty).run("customer_landing", raise_on_error=False)
    assert not result.success
    assert f"no landing files for customer: {empty / 'customer'}/" in failures(result)


def withdraw_consent(source: Path, email: str, after: int) -> None:
    """A later record for `email` without `shareWithResearchAsOfDate`: consent withdrawn."""
    record = {"customerName": "Withdrawn", "email": email, "phone": "8015550000", "birthDay": "1990-01-01",
              "serialNumber": "withdrawn-serial", "registrationDate": after, "lastUpdateDate": after + 1}
    (source / "customer" / "landing" / "withdrawal.json").write_text(json.dumps(record) + "\n")


def test_a_rollback_never_republishes_what_todays_rules_forbid(sample):
    """A customer withdraws consent and a run removes them: rolling the trusted and curated
    tables back to the versions that still hold their readings is refused, with the rule and
    the count; a rollback that passes today's rules is a new commit. (`stedi rollback` and
    `stedi versions` as console commands.)"""
    [who] = sample.sql(
        "SELECT c.email, COUNT(*) AS readings, (SELECT COUNT(*) FROM machine_learning_curated m "
        "WHERE m.subject_id = c.subject_id) AS ml_rows FROM customer_curated c "
        "JOIN accelerometer_trusted a ON a.user = c.email GROUP BY c.email, c.subject_id "
        "HAVING ml_rows > 0 ORDER BY c.email LIMIT 1"
    )
    [latest] = sample.sql("SELECT MAX(lastUpdateDate) AS t FROM customer_landing")
    withdraw_consent(sample.source, who["email"], latest["t"])
    assert sample.run("*", full_refresh=("*",)).success  # every table gets a version to roll back from
    assert sample.sql(f"SELECT COUNT(*) AS n FROM accelerometer_trusted WHERE user = '{who['email']}'") == [{"n": 0}]
    before = versions(sample)

    refused = run_cli(["stedi", "rollback", "accelerometer_trusted"], sample.env, sample.root, check=False)
    assert refused.returncode != 0
    assert "rollback of accelerometer_trusted to version 0 refused" in refused.stderr
    assert f"user_is_trusted_customer: {who['readings']} violation" in refused.stderr
    refused = sample.stedi("rollback", "machine_learning_curated", check=False)
    assert refused.returncode != 0
    assert "rollback of machine_learning_curated to version 0 refused" in refused.stderr
    assert f"same_customer: {who['ml_rows']} violation" in refused.stderr
    assert versions(sample) == before  # nothing changed

    allowed = run_cli(["stedi", "rollback", "accelerometer_landing", "--to", "0", "--apply"], sample.env, sample.root)
    assert "accelerometer_landing restored to version 0 as version 2" in allowed.stdout
    history = run_cli(["stedi", "versions", "accelerometer_landing"], sample.env, sample.root).stdout.splitlines()
    assert "RESTORE" in history[0] and "restore of 0" in history[0] and "lines_accounted_for 0" in history[0]
    # Its rejects went back with it: to the version that landing version 0 named.
    assert sample.delta("accelerometer/landing_rejects").history(1)[0]["stedi"]["restored_version"] == 0


def test_a_damaged_table_fails_only_the_queries_that_read_it(sample):
    [data_file] = [f.removeprefix("file://") for f in sample.delta("step_trainer/trusted").file_uris()]
    Path(data_file).write_bytes(Path(data_file).read_bytes()[:100])  # truncated
    assert sample.count("customer_trusted") > 0
    broken = run_cli(["stedi", "sql", "SELECT COUNT(*) FROM step_trainer_trusted"], sample.env, sample.root, check=False)
    assert broken.returncode != 0
    assert "step_trainer_trusted cannot be read" in broken.stderr


def test_an_unknown_engine_fails_the_run_with_the_setting_named(lakehouse_factory):
    result = lakehouse_factory(SAMPLE_SOURCE).materialize("*", check=False, STEDI_ENGINE="nope")
    assert result.returncode != 0
    assert "STEDI_ENGINE='nope' is not one of: duckdb, spark" in result.stdout + result.stderr


def test_two_runs_at_once_on_one_lake_lose_no_commit(sample_lake, tmp_path, lakehouse_factory):
    """Two CLI runs of the whole graph at the same time, on the project's Dagster instance
    configuration: a step whose commit the other run beat is retried on the new version
    (io_manager.py), every commit lands (the second run's steps find the first's versions
    and, nothing having changed, commit nothing more, or commit the same rows), and the
    tables are those of a single run."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    # Create the instance's sqlite storage first: two processes creating it at once race on
    # its schema migration ("table alembic_version already exists"), which is not what this tests.
    dg.DagsterInstance.from_config(str(home)).dispose()
    lakehouse = lakehouse_factory(SAMPLE_SOURCE, DAGSTER_HOME=str(home))
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", DEFINITIONS_MODULE, "--select", "*"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STEDI_")}, **lakehouse.env}
    # Each in a process group of its own, so that a run that hangs is stopped with every
    # process it started (its compute-log `tail`s hold the output pipe open).
    runs = [
        subprocess.Popen(command, env=env, cwd=lakehouse.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        for _ in range(2)
    ]
    try:
        outputs = [run.communicate(timeout=180)[0] for run in runs]
    finally:
        for run in runs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.pid, signal.SIGKILL)
    assert [run.returncode for run in runs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    for table, location in LOCATIONS.items():
        commits = lakehouse.delta(location).history()
        assert len(commits) in (1, 2), table
        assert len({c["stedi"]["run_id"] for c in commits}) == len(commits), table
    assert snapshot(lakehouse) == snapshot(sample_lake.lakehouse)  # a single run's tables


def test_delta_rs_alone_reads_what_stedi_sql_reads(sample_lake):
    lakehouse = sample_lake.lakehouse
    for table, location in LOCATIONS.items():
        delta = lakehouse.delta(location)
        assert delta.protocol().min_reader_version == 1, table
        if not table.endswith("_rejects"):  # a rejects table is read at the version its landing table names
            assert delta.to_pyarrow_table().num_rows == lakehouse.count(table), table
