"""The whole graph through the dagster CLI: blocking checks, selective rebuilds, idempotency."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from stedi_assets.landing.json_lines import count_lines
from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets_tests.conftest import Lakehouse, run_cli

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


def versions(lakehouse: Lakehouse) -> dict[str, str]:
    return {t: lakehouse.pointer(loc)["version"] for t, loc in LOCATIONS.items()}


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


def test_two_runs_give_identical_tables(sample_source, lakehouse_factory):
    lakehouse = lakehouse_factory(sample_source)
    lakehouse.materialize("*")
    first, first_versions = snapshot(lakehouse), versions(lakehouse)
    lakehouse.materialize("*")
    assert snapshot(lakehouse) == first
    assert all(versions(lakehouse)[t] != first_versions[t] for t in LOCATIONS)  # new versions, same rows


def test_selective_rebuild_touches_only_the_selection_and_downstream(sample_source, lakehouse_factory):
    lakehouse = lakehouse_factory(sample_source)
    lakehouse.materialize("*")
    before = versions(lakehouse)
    lakehouse.materialize("key:customer_trusted+")
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
