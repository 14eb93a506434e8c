"""Consent in doubt, second pass (issue 20, #7): a consent date that is no date (at or before the
epoch, or before the customer registered), and a record whose consent keys conflict (a case
variant or the same key twice, null beside a date), which Python's json and pyarrow would each
quietly resolve to one of the two."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from stedi_assets.landing.json_lines import parse_file
from stedi_assets import tables as rules_tables
from stedi_assets.tables import CUSTOMER_LANDING, as_read
from stedi_assets.trusted import rules
from stedi_assets_tests.builders import customer, run, table
from stedi_assets_tests.test_privacy import customers, run_lakehouse
from stedi_assets_tests.test_privacy import table as lake_table

NOW = 1_700_000_000_000
YEAR_1 = -62_135_596_800_000  # 0001-01-01T00:00:00Z, epoch ms
CONTRACT = as_read(CUSTOMER_LANDING)


def _held_out(landing) -> dict[str, str]:
    return {r["person_key"]: r["reason"] for r in run(rules.CUSTOMERS_HELD_OUT, as_of=NOW, customer_landing=landing)}


def _trusted(landing) -> list[str]:
    return [r["email"] for r in run(rules.CUSTOMER_TRUSTED, as_of=NOW, customer_landing=landing)]


def test_consent_at_or_before_the_epoch_or_before_registration_is_in_doubt():
    landing = table(
        CUSTOMER_LANDING,
        customer("zero@x", "s1", consent=0),
        customer("minus@x", "s2", consent=-1),
        customer("year1@x", "s3", consent=YEAR_1),
        customer("early@x", "s4", consent=999, registrationDate=1000),
        customer("same@x", "s5", consent=1000, registrationDate=1000),  # the moment they registered: fine
        customer("epoch1@x", "s6", consent=1),
    )
    assert _trusted(landing) == ["epoch1@x", "same@x"]
    assert _held_out(landing) == {
        "zero@x": "consent dated at or before the epoch",
        "minus@x": "consent dated at or before the epoch",
        "year1@x": "consent dated at or before the epoch",
        "early@x": "consent dated before registration",
    }


def test_registration_is_the_latest_the_latest_records_claim():
    """Two latest records that agree on consent but not on when the customer registered:
    privacy wins, the later registration counts."""
    landing = table(
        CUSTOMER_LANDING,
        customer("a@x", "s1", consent=500, updated=7, registrationDate=100, line=1),
        customer("a@x", "s1", consent=500, updated=7, registrationDate=600, line=2),
    )
    assert _held_out(landing) == {"a@x": "consent dated before registration"}


RECORD = '"email": "a@test.com", "customerName": "A", "serialNumber": "s1", "registrationDate": 1, "lastUpdateDate": 2'


@pytest.mark.parametrize(
    "consent",
    [
        '"shareWithResearchAsOfDate": null, "ShareWithResearchAsOfDate": 1655564376361',  # case variant
        '"ShareWithResearchAsOfDate": 1655564376361, "shareWithResearchAsOfDate": null',
        '"shareWithResearchAsOfDate": null, "shareWithResearchAsOfDate": 1655564376361',  # the same key twice
        '"shareWithResearchAsOfDate": 1655564376361, "shareWithResearchAsOfDate": null',
        '"shareWithResearchAsOfDate": 1655564376361, "SHAREWITHRESEARCHASOFDATE": 1655564376362',
        '"shareWithResearchAsOfDate": 1655564376361, "shareWith\\u0052esearchAsOfDate": null',  # twice, once escaped
    ],
)
def test_conflicting_consent_keys_reject_the_line_naming_the_person(consent: str):
    good = '{"email": "b@test.com", "serialNumber": "s2", "shareWithResearchAsOfDate": 5}'
    parsed = parse_file(f"{good}\n{{{RECORD}, {consent}}}\n".encode(), "customer/landing/c.json", CONTRACT)
    assert parsed.rows["email"].to_pylist() == ["b@test.com"]
    [reject] = parsed.rejects.to_pylist()
    assert reject["source_line"] == 2
    assert reject["reason"] == "conflicting values for shareWithResearchAsOfDate"
    assert '"email": "a@test.com"' in reject["raw"]  # what names the person for consent in doubt


@pytest.mark.parametrize(
    "consent",
    [
        '"shareWithResearchAsOfDate": 1655564376361, "shareWithResearchAsOfDate": 1655564376361',
        '"ShareWithResearchAsOfDate": 1655564376361',  # one key, another spelling: no conflict
    ],
)
def test_consent_keys_that_agree_are_one_value(consent: str):
    parsed = parse_file(f"{{{RECORD}, {consent}}}\n".encode(), "customer/landing/c.json", CONTRACT)
    assert parsed.rejects.num_rows == 0
    assert parsed.rows["shareWithResearchAsOfDate"].to_pylist() == [1655564376361]


@pytest.mark.reference
def test_consent_in_doubt_on_the_real_data_plus_crafted_records(reference_data: Path, tmp_path: Path):
    """Each crafted record is the latest (or only) record of a consenting real customer: each is
    held out and counted under its reason; everybody else is as before (482 trusted)."""
    source = Path(shutil.copytree(reference_data, tmp_path / "source"))
    consenting = [c for c in customers(source) if c.get("shareWithResearchAsOfDate") is not None]
    later = max(c["lastUpdateDate"] for c in customers(source)) + 1000
    dates = {"zero": 0, "minus_one": -1, "year_1": YEAR_1}
    crafted = [json.dumps({**c, "lastUpdateDate": later, "shareWithResearchAsOfDate": d}) for c, d in zip(consenting, dates.values())]
    before = consenting[3]
    crafted.append(json.dumps({**before, "lastUpdateDate": later, "shareWithResearchAsOfDate": before["registrationDate"] - 1}))
    # Conflicting keys, written by hand: json.dumps cannot write a key twice.
    variant, twice = consenting[4], consenting[5]
    for person, keys in ((variant, '"shareWithResearchAsOfDate": null, "ShareWithResearchAsOfDate": 1655564376361'),
                         (twice, '"shareWithResearchAsOfDate": null, "shareWithResearchAsOfDate": 1655564376361')):
        plain = {k: v for k, v in person.items() if k != "shareWithResearchAsOfDate"}
        crafted.append(json.dumps({**plain, "lastUpdateDate": later})[:-1] + ", " + keys + "}")
    (source / "customer" / "landing" / "crafted.json").write_text("\n".join(crafted) + "\n")

    lake = tmp_path / "lake"
    result = run_lakehouse(source, lake)
    trusted = set(lake_table(lake, "customer/trusted")["email"].to_pylist())
    assert len(trusted) == 482 - 6
    assert not trusted & {c["email"].lower() for c in consenting[:6]}
    [materialization] = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey("customer_trusted")]
    metadata = materialization.step_materialization_data.materialization.metadata
    assert metadata["held_out_by_reason"].value == {
        "consent dated at or before the epoch": 3,
        "consent dated before registration": 1,
        "a rejected customer line names the e-mail": 2,  # the two records whose consent keys conflict
    }
    reasons = lake_table(lake, "customer/landing_rejects")["reason"].to_pylist()
    assert reasons == ["conflicting values for shareWithResearchAsOfDate"] * 2


def test_spark_holds_out_the_same_customers_for_the_same_reasons(spark_engine):
    from stedi_assets.engine.duckdb_engine import DuckDBEngine
    from stedi_assets.privacy import PrivacyPolicy
    from stedi_assets_tests.builders import with_rejects

    landing = table(
        CUSTOMER_LANDING,
        customer("zero@x", "s1", consent=0),
        customer("year1@x", "s2", consent=YEAR_1),
        customer("early@x", "s3", consent=999, registrationDate=1000),
        customer("fine@x", "s4", consent=1000, registrationDate=1000),
    )
    sql = PrivacyPolicy().render(rules.CUSTOMERS_HELD_OUT, NOW)
    relations = with_rejects({"customer_landing": landing})
    rows = [sorted(e.query(sql, relations).to_pylist(), key=str) for e in (DuckDBEngine(), spark_engine)]
    assert rows[0] == rows[1] and len(rows[0]) == 3


def test_a_rejected_line_naming_two_customers_holds_out_both_on_both_engines(spark_engine):
    """Issue 20: a rejected line names every customer it holds, not only the first; and every
    serial number it names counts as shared. DuckDB and Spark agree (`array_contains`). Costs
    a few queries on the session's Spark."""
    from stedi_assets.engine.duckdb_engine import DuckDBEngine
    from stedi_assets.landing.named import with_named_keys
    from stedi_assets.privacy import PrivacyPolicy
    from stedi_assets.tables import CUSTOMER_CURATED, STEP_TRAINER_LANDING
    from stedi_assets_tests.builders import with_rejects

    serial = "50f7b4f3-7af5-4b07-a421-7b902c8d2b7c"
    landing = table(
        CUSTOMER_LANDING,
        customer("first@x.com", "s1", consent=100),
        customer("second@x.com", "s2", consent=100),
        customer("third@x.com", serial, consent=100),
    )
    line = f'{{"email": "first@x.com", "serialNumber": "s1", "note": "cc Second@X.com, device {serial}", "lastUpdateDate": "soon"}}'
    rejects = with_named_keys(parse_file(f"{line}\n".encode(), "customer/landing/c.json", CONTRACT).rejects)
    assert rejects["named_person_keys"].to_pylist() == [["first@x.com", "second@x.com"]]
    assert rejects["named_serials"].to_pylist() == [["s1", serial]]
    relations = with_rejects({"customer_landing": landing, "customer_landing_rejects": rejects})
    held = PrivacyPolicy().render(rules.CUSTOMERS_HELD_OUT, NOW)
    for engine in (DuckDBEngine(), spark_engine):
        assert {r["person_key"]: r["reason"] for r in engine.query(held, relations).to_pylist()} == {
            "first@x.com": "a rejected customer line names the e-mail",
            "second@x.com": "a rejected customer line names the e-mail",
        }, engine.name
    # The serial number the line names second: shared, so a reading needs its owner's phone then.
    curated = table(CUSTOMER_CURATED, customer("third@x.com", serial, consent=100))
    readings = table(STEP_TRAINER_LANDING, {"serialNumber": serial, "sensorReadingTime": 60, "distanceFromObject": 2})
    inputs = with_rejects({**relations, "customer_curated": curated, "step_trainer_landing": readings,
                           "accelerometer_trusted": table(rules_tables.ACCELEROMETER_TRUSTED)})
    kept = PrivacyPolicy().render(rules.STEP_TRAINER_TRUSTED, NOW)
    for engine in (DuckDBEngine(), spark_engine):
        assert engine.query(kept, inputs).num_rows == 0, engine.name
        assert engine.query(kept, {**inputs, "customer_landing_rejects": rejects.slice(0, 0)}).num_rows == 1, engine.name
