"""One person under every hostile spelling of her e-mail (issue 20, Found #2 and #10): the
spellings are one customer, and once her plain address is forgotten none of her records
reaches any table again, readings included. `stedi forget` refuses what names nobody."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from stedi_assets import erasure, lakehouse
from stedi_assets.definitions import build_definitions
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.store import LocalStore
from stedi_assets.person import person_key, person_keys
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import SAMPLE_SOURCE, Settings
from stedi_assets.tables import LAKE_TABLES, TABLES
from stedi_assets_tests.conftest import REPO, CliLakehouse, run_cli
from stedi_assets_tests.test_person_key import HOSTILE, hostile_spellings

T0 = 1_700_000_000_000  # the crafted readings' times: none of the sample's


def run(source: Path, lake: Path) -> dict[str, pa.Table]:
    """Every table as the job publishes it, after one in-process run."""
    settings = Settings.from_env({"STEDI_SOURCE": str(source), "STEDI_LAKE": str(lake)})
    result = build_definitions(settings).resolve_job_def("stedi_lakehouse").execute_in_process(
        instance=dg.DagsterInstance.ephemeral()
    )
    assert result.success
    return {name: snapshot.to_arrow() for name, snapshot in lakehouse.published(Lake(LocalStore(lake)), TABLES).items()}


def sample_person(tables: dict[str, pa.Table], source: Path) -> dict:
    """A curated customer with rows in the ML table whose serial number is hers alone, with
    her record as the source spells it."""
    ml_subjects = set(tables["machine_learning_curated"]["subject_id"].to_pylist())
    records = [
        json.loads(line) for path in sorted((source / "customer" / "landing").glob("*.json")) for line in path.read_text().splitlines() if line.strip()
    ]
    for row in sorted(tables["customer_curated"].to_pylist(), key=lambda r: r["email"]):
        owners = {person_key(r["email"]) for r in records if r.get("serialNumber") == row["serialNumber"]}
        if row["subject_id"] in ml_subjects and owners == {row["email"]}:
            spelled = max((r for r in records if person_key(r["email"]) == row["email"]), key=lambda r: r["lastUpdateDate"])
            return {**row, "record": spelled}
    raise AssertionError("the sample has no curated customer with ML rows and a serial number of her own")


def deliver_hostile_spellings(source: Path, person: dict) -> None:
    """Her customer record, phone readings and step trainer readings again, under each
    hostile spelling of her e-mail (one reading per spelling, at times the sample has not)."""
    record = person["record"]
    spellings = list(hostile_spellings(person["email"]).values())
    later = record["lastUpdateDate"] + 1
    lines = [{**record, "email": s, "lastUpdateDate": later} for s in spellings]
    (source / "customer" / "landing" / "hostile.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines))
    phones = [{"user": s, "timestamp": T0 + i, "x": 1.0, "y": 2.0, "z": 3.0} for i, s in enumerate(spellings)]
    (source / "accelerometer" / "landing" / "hostile.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in phones))
    steps = [{"sensorReadingTime": T0 + i, "serialNumber": person["serialNumber"], "distanceFromObject": i} for i in range(len(spellings))]
    (source / "step_trainer" / "landing" / "hostile.json").write_text("".join(json.dumps(r) + "\n" for r in steps))


def hers(tables: dict[str, pa.Table], person: dict) -> dict[str, int]:
    """Rows of each table that are hers: by any e-mail column's person key, her serial
    number, her subject id or her name."""
    found = {}
    for name, data in tables.items():
        masks = []
        for column in ("email", "user", "person_key"):
            if column in data.column_names:
                masks.append(pa.compute.equal(person_keys(data[column]), person["email"]))
        for column, value in (("named_person_keys", person["email"]), ("named_serials", person["serialNumber"])):
            if column in data.column_names:  # a rejected line's names: hers in any position
                masks.append(pa.array([value in names for names in data[column].to_pylist()], pa.bool_()))
        for column, value in (("serialNumber", person["serialNumber"]), ("subject_id", person["subject_id"]),
                              ("customerName", person["customerName"])):
            if column in data.column_names:
                masks.append(pa.compute.equal(data[column], value))
        if masks:
            any_mask = masks[0]
            for mask in masks[1:]:
                any_mask = pa.compute.or_kleene(any_mask, mask)
            found[name] = pa.compute.sum(pa.compute.fill_null(any_mask, False).cast(pa.int64())).as_py() or 0
    return found


def crafted_times(tables: dict[str, pa.Table]) -> dict[str, int]:
    """Rows at the crafted readings' times, per readings table."""
    times = pa.array([T0 + i for i in range(len(HOSTILE))], pa.int64())
    out = {}
    for name, data in tables.items():
        for column in ("timestamp", "sensorReadingTime"):
            if column in data.column_names:
                out[name] = pa.compute.sum(pa.compute.is_in(data[column], value_set=times).cast(pa.int64())).as_py() or 0
    return out


def test_every_spelling_is_her_and_after_forgetting_her_plain_address_none_comes_back(tmp_path):
    source = Path(shutil.copytree(SAMPLE_SOURCE, tmp_path / "source"))
    lake = tmp_path / "lake"
    person = sample_person(run(source, lake), source)
    deliver_hostile_spellings(source, person)

    # Every spelling is the one customer: one trusted row, and each crafted reading is hers.
    tables = run(source, lake)
    n = len(HOSTILE)
    trusted = tables["customer_trusted"].to_pylist()
    assert [r["email"] for r in trusted if r["serialNumber"] == person["serialNumber"]] == [person["email"]]
    phones = tables["accelerometer_trusted"].filter(pa.compute.greater_equal(tables["accelerometer_trusted"]["timestamp"], T0))
    assert set(phones["user"].to_pylist()) == {person["email"]}
    assert crafted_times(tables) == {
        "accelerometer_landing": n, "step_trainer_landing": n,
        "accelerometer_trusted": n, "step_trainer_trusted": n, "machine_learning_curated": n,
    }
    landing = tables["accelerometer_landing"].filter(pa.compute.greater_equal(tables["accelerometer_landing"]["timestamp"], T0))
    assert set(landing["person_key"].to_pylist()) == {person["email"]}  # the key beside each spelling
    assert set(landing["user"].to_pylist()) == set(hostile_spellings(person["email"]).values())  # as it arrived

    # Forget her plain address, as the source first spelled it: nothing of hers is left anywhere.
    assert erasure.record(Lake(LocalStore(lake)), PrivacyPolicy(), [person["record"]["email"]]) == 1
    tables = run(source, lake)
    assert {name: count for name, count in hers(tables, person).items() if count} == {}
    assert {name: count for name, count in crafted_times(tables).items() if count} == {}
    assert tables["customer_trusted"].num_rows > 0 and tables["machine_learning_curated"].num_rows > 0


@pytest.mark.parametrize(("argument", "why"), [("", "an empty e-mail address names nobody"), ("not-an-email", "is not an e-mail address")])
def test_forget_refuses_what_names_nobody_in_one_line_and_records_nothing(tmp_path, argument, why):
    lake = tmp_path / "lake"
    result = run_cli(["stedi", "forget", argument], {"STEDI_LAKE": str(lake)}, cwd=REPO, check=False)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("Error: nothing recorded: ") and why in line
    assert not (lake / LAKE_TABLES["erasure_requests"].location).exists()
    with pytest.raises(ValueError, match="nothing recorded"):
        erasure.record(Lake(LocalStore(lake)), PrivacyPolicy(), ["ok@x", argument])
    assert not (lake / LAKE_TABLES["erasure_requests"].location).exists()


def test_key_rotation_rekeys_the_requests_found_in_the_source_and_keeps_them_in_force(tmp_path, monkeypatch):
    """Issue 20 #8: with a new STEDI_SUBJECT_KEY the run and `stedi forget` refuse, naming the
    procedure; `stedi forget --rekey` (old key in STEDI_PREVIOUS_SUBJECT_KEY) refuses while a
    request names someone the source does not hold, and with --drop-unfound re-keys the
    others, storing no e-mail. After the documented rebuild under the new key, her records
    delivered again stay out, readings included. Costs four in-process runs of the sample."""
    source = Path(shutil.copytree(SAMPLE_SOURCE, tmp_path / "source"))
    old, new = "old-subject-key-of-the-test", "new-subject-key-of-the-test"
    house = CliLakehouse(tmp_path, source, STEDI_SUBJECT_KEY=old)
    monkeypatch.setenv("STEDI_SUBJECT_KEY", old)  # the runs' privacy resource reads it (dg.EnvVar)
    assert house.run().success
    tables = {n: s.to_arrow() for n, s in lakehouse.published(Lake(LocalStore(house.lake)), TABLES).items()}
    person = sample_person(tables, source)
    house.stedi("forget", person["record"]["email"], "someone.gone@nowhere.test")
    assert house.run().success

    rotated = CliLakehouse(tmp_path, source, STEDI_SUBJECT_KEY=new)
    monkeypatch.setenv("STEDI_SUBJECT_KEY", new)
    refused = rotated.stedi("forget", "another@test.com", check=False)
    assert refused.returncode != 0 and "stedi forget --rekey" in refused.stderr
    assert not rotated.run(raise_on_error=False).success
    version = rotated.version(LAKE_TABLES["erasure_requests"].location)
    rotating = CliLakehouse(tmp_path, source, STEDI_SUBJECT_KEY=new, **{erasure.PREVIOUS_KEY_VARIABLE: old})
    refused = rotating.stedi("forget", "--rekey", check=False)
    assert refused.returncode != 0 and "1 erasure request(s) name a person found nowhere" in refused.stderr
    assert rotated.version(LAKE_TABLES["erasure_requests"].location) == version  # nothing changed
    said = rotating.stedi("forget", "--rekey", "--drop-unfound").stdout
    assert "re-keyed 1 erasure request under STEDI_SUBJECT_KEY; dropped 1" in said
    [request] = rotated.sql("SELECT * FROM erasure_requests")
    keyed = PrivacyPolicy(subject_key=new)
    assert request["key_id"] == erasure.key_id(keyed)
    assert request["erasure_key"] == keyed.subject_ids(pa.array([person["email"]]))[0].as_py()
    stored = b"".join(p.read_bytes() for p in (rotated.lake / LAKE_TABLES["erasure_requests"].location).rglob("*") if p.is_file())
    assert person["email"].encode() not in stored and person["record"]["email"].encode() not in stored

    rebuilt = ("customer_landing", "customer_curated", "machine_learning_curated")
    assert rotated.run(full_refresh=rebuilt).success
    deliver_hostile_spellings(source, person)
    assert rotated.run().success
    tables = {n: s.to_arrow() for n, s in lakehouse.published(Lake(LocalStore(rotated.lake)), TABLES).items()}
    assert {name: count for name, count in hers(tables, {**person, "subject_id": request["erasure_key"]}).items() if count} == {}
    assert {name: count for name, count in crafted_times(tables).items() if count} == {}
    assert rotated.stedi("forget", "another@test.com").returncode == 0
