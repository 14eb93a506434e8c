"""The whole graph through the dagster CLI: blocking checks, selective rebuilds, idempotency."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pyarrow.parquet as pq
import pytest

from stedi_assets.landing.json_lines import count_lines
from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets_tests.conftest import REPO, Lakehouse, run_cli

LEAKY_DEFINITIONS = Path(__file__).with_name("leaky_definitions.py")
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


def versions(lakehouse: Lakehouse) -> dict[str, int]:
    return {t: lakehouse.version(loc) for t, loc in LOCATIONS.items()}


def snapshot(lakehouse: Lakehouse) -> dict[str, list]:
    """Every table's rows, sorted, as `stedi sql` reads them."""
    return {t: lakehouse.sql(f"SELECT * FROM {t} ORDER BY ALL") for t in LOCATIONS}


@pytest.fixture
def sample_source(tmp_path: Path) -> Path:
    """A private copy of the bundled sample, free to be edited by a test."""
    return Path(shutil.copytree(SAMPLE_SOURCE, tmp_path / "source"))


def test_sample_run_accounts_for_every_landing_line(sample_source, lakehouse_factory):
    lakehouse = lakehouse_factory(sample_source)
    lakehouse.materialize("*")
    for source in ("customer", "accelerometer", "step_trainer"):
        lines = sum(count_lines(p.read_bytes()) for p in (sample_source / source).rglob("*.json"))
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


def test_a_second_run_changes_nothing_and_a_full_refresh_gives_the_same_tables(sample_source, lakehouse_factory):
    lakehouse = lakehouse_factory(sample_source)
    lakehouse.materialize("*")
    first, first_versions = snapshot(lakehouse), versions(lakehouse)
    lakehouse.materialize("*")  # incremental: nothing new, nothing committed
    assert versions(lakehouse) == first_versions
    lakehouse.materialize("*", full_refresh=("*",))
    assert snapshot(lakehouse) == first
    assert all(versions(lakehouse)[t] != first_versions[t] for t in LOCATIONS)  # new versions, same rows


def test_selective_rebuild_touches_only_the_selection_and_downstream(sample_source, lakehouse_factory):
    lakehouse = lakehouse_factory(sample_source)
    lakehouse.materialize("*")
    before = versions(lakehouse)
    lakehouse.materialize("key:customer_trusted+", full_refresh=tuple(DOWNSTREAM_OF_CUSTOMER_TRUSTED))
    after = versions(lakehouse)
    changed = {t for t in LOCATIONS if after[t] != before[t]}
    assert changed == DOWNSTREAM_OF_CUSTOMER_TRUSTED


def test_a_privacy_violation_is_stopped_and_the_previous_table_stays(sample_source, lakehouse_factory):
    lakehouse = lakehouse_factory(sample_source)
    lakehouse.materialize("*")
    before, published = versions(lakehouse), snapshot(lakehouse)
    non_consenting = {
        r["email"]
        for r in lakehouse.sql("SELECT email FROM customer_landing EXCEPT SELECT email FROM customer_trusted")
    }
    assert non_consenting

    leaky = run_cli(
        ["dagster", "asset", "materialize", "-f", str(LEAKY_DEFINITIONS), "--select", "key:customer_trusted+"],
        lakehouse.env,
        lakehouse.root,
        check=False,
    )
    assert leaky.returncode != 0
    assert "consent_present" in leaky.stdout + leaky.stderr
    assert versions(lakehouse) == before  # nothing downstream ran, nothing was published
    assert snapshot(lakehouse) == published
    # The rejected version was deleted: no non-consenting customer's record is on disk in
    # the trusted or curated zones.
    for zone_folder in ("customer/trusted", "customer/curated"):
        for parquet in (lakehouse.lake / zone_folder).rglob("*.parquet"):
            assert not non_consenting & set(pq.read_table(parquet, columns=["email"]).column("email").to_pylist())


def test_a_duplicate_reading_key_blocks_step_trainer_trusted(sample_source, lakehouse_factory):
    lakehouse = lakehouse_factory(sample_source)
    lakehouse.materialize("*")
    before, published = versions(lakehouse), snapshot(lakehouse)
    [reading] = lakehouse.sql("SELECT serialNumber, sensorReadingTime FROM step_trainer_trusted ORDER BY ALL LIMIT 1")
    conflicting = (
        f'{{"serialNumber":"{reading["serialNumber"]}","sensorReadingTime":{reading["sensorReadingTime"]},'
        '"distanceFromObject":9999}\n'
    )
    (sample_source / "step_trainer" / "landing" / "late.json").write_text(conflicting)

    result = lakehouse.materialize("key:step_trainer_landing+", check=False)
    assert result.returncode != 0
    assert "reading_key_unique" in result.stdout + result.stderr
    after = versions(lakehouse)
    assert after["step_trainer_landing"] != before["step_trainer_landing"]  # landing itself was sound
    assert after["step_trainer_trusted"] == before["step_trainer_trusted"]
    assert after["machine_learning_curated"] == before["machine_learning_curated"]  # skipped
    assert snapshot(lakehouse)["step_trainer_trusted"] == published["step_trainer_trusted"]


def test_a_source_without_files_is_an_error_naming_the_folder(tmp_path, lakehouse_factory):
    empty = tmp_path / "empty_source"
    (empty / "customer").mkdir(parents=True)
    result = lakehouse_factory(empty).materialize("customer_landing", check=False)
    assert result.returncode != 0
    assert f"no landing files for customer: {empty / 'customer'}/" in result.stdout + result.stderr


def withdraw_consent(source: Path, email: str, after: int) -> None:
    """A later record for `email` without `shareWithResearchAsOfDate`: consent withdrawn."""
    record = {"customerName": "Withdrawn", "email": email, "phone": "8015550000", "birthDay": "1990-01-01",
              "serialNumber": "withdrawn-serial", "registrationDate": after, "lastUpdateDate": after + 1}
    (source / "customer" / "landing" / "withdrawal.json").write_text(json.dumps(record) + "\n")


def test_a_rollback_never_republishes_what_todays_rules_forbid(sample_source, lakehouse_factory):
    """A customer withdraws consent and a run removes them: rolling the trusted and curated
    tables back to the versions that still hold their readings is refused, with the rule and
    the count; a rollback that passes today's rules is a new commit."""
    lakehouse = lakehouse_factory(sample_source)
    lakehouse.materialize("*")
    [who] = lakehouse.sql(
        "SELECT c.email, COUNT(*) AS readings, (SELECT COUNT(*) FROM machine_learning_curated m "
        "WHERE m.subject_id = c.subject_id) AS ml_rows FROM customer_curated c "
        "JOIN accelerometer_trusted a ON a.user = c.email GROUP BY c.email, c.subject_id "
        "HAVING ml_rows > 0 ORDER BY c.email LIMIT 1"
    )
    [latest] = lakehouse.sql("SELECT MAX(lastUpdateDate) AS t FROM customer_landing")
    withdraw_consent(sample_source, who["email"], latest["t"])
    lakehouse.materialize("*", full_refresh=("*",))  # every table gets a version to roll back from
    assert lakehouse.sql(f"SELECT COUNT(*) AS n FROM accelerometer_trusted WHERE user = '{who['email']}'") == [{"n": 0}]
    before = versions(lakehouse)

    for table, rule, count in (
        ("accelerometer_trusted", "user_is_trusted_customer", who["readings"]),
        ("machine_learning_curated", "same_customer", who["ml_rows"]),
    ):
        refused = run_cli(["stedi", "rollback", table], lakehouse.env, lakehouse.root, check=False)
        assert refused.returncode != 0
        assert f"rollback of {table} to version 0 refused" in refused.stderr
        assert f"{rule}: {count} violation" in refused.stderr
    assert versions(lakehouse) == before  # nothing changed

    allowed = run_cli(["stedi", "rollback", "accelerometer_landing", "--to", "0", "--apply"], lakehouse.env, lakehouse.root)
    assert "accelerometer_landing restored to version 0 as version 2" in allowed.stdout
    history = run_cli(["stedi", "versions", "accelerometer_landing"], lakehouse.env, lakehouse.root).stdout.splitlines()
    assert "RESTORE" in history[0] and "restore of 0" in history[0] and "lines_accounted_for 0" in history[0]
    # Its rejects went back with it: to the version that landing version 0 named.
    assert lakehouse.delta("accelerometer/landing_rejects").history(1)[0]["stedi"]["restored_version"] == 0


def test_a_damaged_table_fails_only_the_queries_that_read_it(sample_source, lakehouse_factory):
    lakehouse = lakehouse_factory(sample_source)
    lakehouse.materialize("*")
    [data_file] = [f.removeprefix("file://") for f in lakehouse.delta("step_trainer/trusted").file_uris()]
    Path(data_file).write_bytes(Path(data_file).read_bytes()[:100])  # truncated
    assert lakehouse.count("customer_trusted") > 0
    broken = run_cli(["stedi", "sql", "SELECT COUNT(*) FROM step_trainer_trusted"], lakehouse.env, lakehouse.root, check=False)
    assert broken.returncode != 0
    assert "step_trainer_trusted cannot be read" in broken.stderr


def test_an_unknown_engine_fails_the_run_with_the_setting_named(sample_source, lakehouse_factory):
    result = lakehouse_factory(sample_source).materialize("*", check=False, STEDI_ENGINE="nope")
    assert result.returncode != 0
    assert "STEDI_ENGINE='nope' is not one of: duckdb, spark" in result.stdout + result.stderr


def test_two_runs_at_once_on_one_lake_lose_no_commit(sample_source, lakehouse_factory, tmp_path):
    """Two CLI runs of the whole graph at the same time, on the project's Dagster instance
    configuration: each table's steps take turns (one pool per table), every commit lands
    (the second run's steps find the first's versions and, nothing having changed, commit
    nothing more, or commit the same rows), and the tables are those of a single run."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    # Create the instance's sqlite storage first: two processes creating it at once race on
    # its schema migration ("table alembic_version already exists"), which is not what this tests.
    dg.DagsterInstance.from_config(str(home)).dispose()
    lakehouse = lakehouse_factory(sample_source, DAGSTER_HOME=str(home))
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "stedi_assets.definitions", "--select", "*"]
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STEDI_")}, **lakehouse.env}
    runs = [subprocess.Popen(command, env=env, cwd=lakehouse.root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs[0][-3000:] + outputs[1][-3000:]
    for table, location in LOCATIONS.items():
        commits = lakehouse.delta(location).history()
        assert len(commits) in (1, 2), table
        assert len({c["stedi"]["run_id"] for c in commits}) == len(commits), table
    single = lakehouse_factory(sample_source)
    single.materialize("*")
    assert snapshot(lakehouse) == snapshot(single)


def test_delta_rs_alone_reads_what_stedi_sql_reads(sample_source, lakehouse_factory):
    lakehouse = lakehouse_factory(sample_source)
    lakehouse.materialize("*")
    for table, location in LOCATIONS.items():
        delta = lakehouse.delta(location)
        assert delta.protocol().min_reader_version == 1, table
        if not table.endswith("_rejects"):  # a rejects table is read at the version its landing table names
            assert delta.to_pyarrow_table().num_rows == lakehouse.count(table), table
