"""DuckDB and Spark on the cluster agree on what changes a lake: an incremental build over new
source files (one person's records and readings under every hostile spelling of her e-mail,
a dirty file of bad lines naming her and others, a source file changed by a bad line naming
her device) and then an erasure of her, applied to two copies of the same lake, publish the
same rows, rejects (line numbers included) and ledgers in every table, and nothing of hers is
left on either. On the cluster the landing files are parsed by the executors, and on the
erasure the files carried without her are rewritten by them. Costs about a minute: four runs
of the job on the sample, two of them on the cluster."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

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


DIRTY = "accelerometer/landing/late/dirty-arrival.json"
ONLY_BAD = "accelerometer/landing/late/only-bad-lines.json"


def deliver_dirty_lines(source: Path, person: dict) -> tuple[str, int]:
    """A new file of bad lines beside good ones (a byte order mark, a blank line, a value of
    the wrong type and a field outside the contract naming her, a line that is not JSON, NaN),
    a new file of bad lines only (no data file on either engine), and a line appended to a
    published step trainer file (so it is parsed again) naming her device with a time that is
    not a number: that file's key and the line's number."""
    her, other = json.dumps(person["record"]["email"]), json.dumps("someone.else@example.com")
    lines = [
        f'{{"user": {her}, "timestamp": 1655569999001, "x": 1, "y": 2, "z": 3}}',
        "",
        f'{{"user": {her}, "timestamp": "yesterday", "x": 0, "y": 0, "z": 0}}',
        "not json at all",
        f'{{"user": {other}, "timestamp": 1655569999002, "x": 1, "y": 1, "z": 1, "note": {her}}}',
        f'{{"user": {other}, "timestamp": 1655569999003, "x": NaN, "y": 0, "z": 0}}',
    ]
    (source / DIRTY).write_bytes(b"\xef\xbb\xbf" + "\n".join(lines).encode() + b"\n")
    (source / ONLY_BAD).write_text('not json\n["a", "list"]\n')  # no row: no data file, two rejects
    changed = sorted((source / "step_trainer" / "landing").glob("*.json"))[-1]
    with open(changed, "a") as f:
        f.write(json.dumps({"sensorReadingTime": "soon", "serialNumber": person["serialNumber"], "distanceFromObject": 1}) + "\n")
    return changed.relative_to(source).as_posix(), changed.read_bytes().count(b"\n")


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
    changed, line = deliver_dirty_lines(Path(on_duckdb.source), person)

    for house in (on_duckdb, on_spark):
        assert house.run().success
    after = {house: tables(house) for house in (on_duckdb, on_spark)}
    rejected = after[on_spark]["accelerometer_landing_rejects"].to_pylist()
    assert sorted(r["source_line"] for r in rejected if r["source_file"] == DIRTY) == [3, 4, 6]
    assert sorted(r["source_line"] for r in rejected if r["source_file"] == ONLY_BAD) == [1, 2]
    assert {"source_file": changed, "source_line": line} in after[on_spark]["step_trainer_landing_rejects"].select(["source_file", "source_line"]).to_pylist()
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
