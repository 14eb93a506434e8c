"""DuckDB and Spark on the cluster agree on what changes a lake: an incremental build over new
source files (one person's records and readings under every hostile spelling of her e-mail)
and then an erasure of her, applied to two copies of the same lake, publish the same rows in
every table, and nothing of hers is left on either. Costs about a minute: four runs of the
job on the sample, two of them on the cluster."""

from __future__ import annotations

import shutil

import pyarrow as pa
import pytest

from stedi_assets import erasure, lakehouse
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.store import LocalStore
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.tables import TABLES
from stedi_assets_tests.builders import sorted_rows
from stedi_assets_tests.conftest import CliLakehouse
from stedi_assets_tests.incremental_harness import LEDGER_COLUMNS
from stedi_assets_tests.test_person_key_erasure import crafted_times, deliver_hostile_spellings, hers, sample_person

pytestmark = pytest.mark.spark


def tables(house: CliLakehouse) -> dict[str, pa.Table]:
    return {name: s.to_arrow() for name, s in lakehouse.published(Lake(LocalStore(house.lake)), TABLES).items()}


def rows(data: dict[str, pa.Table]) -> dict[str, list[dict]]:
    """Every table's rows, sorted; a ledger on what its files gave (its file identities hold
    the time each copy of the lake first saw a file)."""
    return {n: sorted_rows(t.select(LEDGER_COLUMNS) if TABLES[n].zone == "landing_files" else t) for n, t in data.items()}


def builds(house: CliLakehouse) -> dict[str, str]:
    lake = Lake(LocalStore(house.lake))
    return {name: lake.current(t.spec).info.get("build") for name, t in TABLES.items() if t.zone in ("trusted", "curated")}


def test_incremental_build_and_erasure_agree_on_the_cluster(spark_engine, spark_cluster, sample_lake, tmp_path):
    on_duckdb = sample_lake.copy(tmp_path / "duckdb")
    shutil.copytree(on_duckdb.lake, tmp_path / "spark" / "lake", copy_function=shutil.copy2)
    # The same source folder: the same files, so the same ledgers and the same changes.
    on_spark = CliLakehouse(
        tmp_path / "spark", on_duckdb.source, STEDI_CONSENT_POLICY=sample_lake.policy.value,
        STEDI_ENGINE="spark", STEDI_SPARK_MASTER=spark_cluster.url,
    )
    person = sample_person(tables(on_duckdb), on_duckdb.source)
    deliver_hostile_spellings(on_duckdb.source, person)

    for house in (on_duckdb, on_spark):
        assert house.run().success
    after = {house: tables(house) for house in (on_duckdb, on_spark)}
    assert builds(on_spark) == builds(on_duckdb) and "incremental" in builds(on_spark).values()
    assert rows(after[on_spark]) == rows(after[on_duckdb])
    assert crafted_times(after[on_spark])["machine_learning_curated"] > 0  # her new readings went through

    for house in (on_duckdb, on_spark):
        assert erasure.record(Lake(LocalStore(house.lake)), PrivacyPolicy(), [person["record"]["email"]]) == 1
        assert house.run().success
    erased = {house: tables(house) for house in (on_duckdb, on_spark)}
    assert rows(erased[on_spark]) == rows(erased[on_duckdb])
    assert {name: n for name, n in hers(erased[on_spark], person).items() if n} == {}
    assert erased[on_spark]["machine_learning_curated"].num_rows > 0
