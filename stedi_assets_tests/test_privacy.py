"""The privacy lifecycle on the real data plus crafted records: consent in doubt means out,
the right to erasure, and retention of old versions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
from deltalake import DeltaTable

from stedi_assets.definitions import build_definitions
from stedi_assets.settings import Settings

FUTURE = 4_102_444_800_000  # 2100-01-01


def customers(source: Path) -> list[dict]:
    return [json.loads(line) for path in sorted((source / "customer").rglob("*.json")) for line in path.read_text().splitlines() if line.strip()]


def run_lakehouse(source: Path, lake: Path, **settings: str) -> dg.ExecuteInProcessResult:
    definitions = build_definitions(Settings.from_env({"STEDI_SOURCE": str(source), "STEDI_LAKE": str(lake), **settings}))
    result = definitions.resolve_job_def("stedi_lakehouse").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return result


def table(lake: Path, location: str):
    return DeltaTable(str(lake / location)).to_pyarrow_table()


@pytest.fixture(scope="module")
def real_copy(reference_data: Path, tmp_path_factory) -> Path:
    return Path(shutil.copytree(reference_data, tmp_path_factory.mktemp("real") / "source"))


@pytest.mark.reference
def test_consent_in_doubt_keeps_each_customer_out_and_is_counted_by_reason(real_copy, tmp_path):
    source = Path(shutil.copytree(real_copy, tmp_path / "source"))
    consenting = [c for c in customers(source) if c.get("shareWithResearchAsOfDate") is not None]
    undated, false_withdrawal, tie, respelled, owner, variant = consenting[:6]
    later = max(c["lastUpdateDate"] for c in customers(source)) + 1000
    crafted = [
        # A later withdrawal without lastUpdateDate: the records cannot be ordered.
        {**undated, "shareWithResearchAsOfDate": None, "lastUpdateDate": None},
        # A withdrawal written as false: the line is rejected, and still names the e-mail.
        {**false_withdrawal, "lastUpdateDate": later, "shareWithResearchAsOfDate": False},
        # The same lastUpdateDate as the consenting record, without consent.
        {k: v for k, v in tie.items() if k != "shareWithResearchAsOfDate"},
        # A new customer whose consent is dated in 2100.
        {**consenting[6], "email": "from.the.future@test.com", "serialNumber": "future-serial", "shareWithResearchAsOfDate": FUTURE},
        # A withdrawal under another spelling of the e-mail.
        {**{k: v for k, v in respelled.items() if k != "shareWithResearchAsOfDate"}, "email": f"  {respelled['email'].upper()} ", "lastUpdateDate": later},
    ]
    lines = [json.dumps(record) for record in crafted]
    # A non-consenting customer on `owner`'s serial number, whose record is rejected (one
    # byte that is not UTF-8 in the name): the serial number is then treated as shared.
    stranger = json.dumps({**owner, "email": "stranger@test.com", "customerName": "StrXnger"}).encode()
    (source / "customer" / "landing" / "crafted.json").write_bytes(
        ("\n".join(lines) + "\n").encode() + stranger.replace(b"StrXnger", b"Str\xffnger") + b"\n"
    )
    # 30 readings of the stranger's device at moments owner's phone recorded nothing.
    (source / "step_trainer" / "landing" / "stranger.json").write_text(
        "".join(json.dumps({"sensorReadingTime": 1_600_000_000_000 + i, "serialNumber": owner["serialNumber"], "distanceFromObject": i}) + "\n" for i in range(30))
    )
    # Readings under a case variant of a trusted customer's e-mail are theirs.
    (source / "accelerometer" / "landing" / "variant.json").write_text(
        "".join(json.dumps({"user": f" {variant['email'].upper()}", "timestamp": 1_500_000_000_000 + i, "x": 1.0, "y": 2.0, "z": 3.0}) + "\n" for i in range(5))
    )

    lake = tmp_path / "lake"
    result = run_lakehouse(source, lake)
    trusted = {e for e in table(lake, "customer/trusted")["email"].to_pylist()}
    assert len(trusted) == 482 - 4  # undated, false_withdrawal, tie and respelled are out; the future one never in
    for out in (undated, false_withdrawal, tie, respelled):
        assert out["email"].strip().lower() not in trusted
    assert "from.the.future@test.com" not in trusted
    assert variant["email"].lower() in trusted and owner["email"].lower() in trusted
    [materialization] = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey("customer_trusted")]
    metadata = materialization.step_materialization_data.materialization.metadata
    assert metadata["held_out_by_reason"].value == {
        "records cannot be ordered: one has no lastUpdateDate": 1,
        "a rejected customer line names the e-mail": 1,  # the false withdrawal (the stranger has no other record)
        "latest records disagree on consent": 1,
        "consent dated after the run": 1,
    }
    assert all("***@" in s["email"] for s in metadata["held_out_sample"].value)  # masked
    step = table(lake, "step_trainer/trusted")
    assert not {r["sensorReadingTime"] for r in step.to_pylist()} & {1_600_000_000_000 + i for i in range(30)}
    readings = table(lake, "accelerometer/trusted").to_pylist()
    assert sum(r["user"] == variant["email"].lower() and r["timestamp"] < 1_600_000_000_000 for r in readings) == 5
