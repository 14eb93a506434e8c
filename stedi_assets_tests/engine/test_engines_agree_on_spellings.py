"""DuckDB and Spark build identical tables on a source of hostile e-mail spellings (issue 20,
Found #2): with the person key computed once in Python at landing, no engine normalises an
e-mail, so trims and lower()s that differ between them cannot split or merge people."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from stedi_assets.audit import evaluate
from stedi_assets.engine.spark_engine import SparkEngineResource
from stedi_assets.person import person_key
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import SAMPLE_SOURCE, ConsentPolicy
from stedi_assets_tests.engine.test_engines_agree import CHECK_RULES, POLICIES, ZONE_RULES, on_both, published  # noqa: F401
from stedi_assets_tests.test_person_key import hostile_spellings

pytestmark = pytest.mark.spark
T0 = 1_700_000_000_000
# Where the engines' own lower() and trim() part ways: 'İ' (Spark and DuckDB lower it apart),
# U+00A0 and U+3000 (Spark's trim keeps them), tab, newline and U+200B (DuckDB's trim keeps them).
# ('İ' case-folds to 'i' and a combining dot above: İrem is not irem, on any engine.)
EXTRA = ("İrem.Kaya@test.com", "\u00a0İREM.KAYA@test.com\u3000", "i\u0307rem.kaya@test.com\t")


@pytest.fixture(scope="module")
def hostile_source(tmp_path_factory) -> Path:
    """The sample, plus each consenting sample customer's record, phone readings and step
    trainer readings again under a hostile spelling of their e-mail, one spelling each, and
    one more customer spelled the ways the engines disagree on."""
    source = Path(shutil.copytree(SAMPLE_SOURCE, tmp_path_factory.mktemp("spellings") / "source"))
    records = [json.loads(line) for line in (source / "customer" / "landing" / "customer-1655560000000.json").read_text().splitlines() if line.strip()]
    consenting = [r for r in records if r.get("shareWithResearchAsOfDate") is not None][:22]
    customers, phones, steps = [], [], []
    for i, record in enumerate(consenting):
        spellings = list(hostile_spellings(record["email"].lower()).values())
        spelled = spellings[i % len(spellings)]
        customers.append({**record, "email": spelled, "lastUpdateDate": record["lastUpdateDate"] + 1})
        phones.append({"user": spellings[(i + 1) % len(spellings)], "timestamp": T0 + i, "x": 1.0, "y": 2.0, "z": 3.0})
        steps.append({"sensorReadingTime": T0 + i, "serialNumber": record["serialNumber"], "distanceFromObject": i})
    irem = {**consenting[0], "customerName": "Irem Kaya", "serialNumber": "irem-serial", "lastUpdateDate": 1}
    for j, spelled in enumerate(EXTRA):
        customers.append({**irem, "email": spelled, "lastUpdateDate": 1})
        phones.append({"user": spelled, "timestamp": T0 + 100 + j, "x": 0.0, "y": 0.0, "z": 0.0})
        steps.append({"sensorReadingTime": T0 + 100 + j, "serialNumber": "irem-serial", "distanceFromObject": j})
    for folder, rows in (("customer", customers), ("accelerometer", phones), ("step_trainer", steps)):
        (source / folder / "landing" / "spellings.json").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return source


@POLICIES
def test_zone_rules_agree_on_hostile_spellings(spark_engine, policy, published, hostile_source):  # noqa: F811
    inputs = published(hostile_source, policy)
    for name, sql in ZONE_RULES.items():
        duck, on_spark = on_both(spark_engine, PrivacyPolicy(consent_policy=policy).render(sql), inputs)
        assert duck and on_spark == duck, name
    # Each crafted reading is kept under the key of the spelling it arrived with, and the
    # three spellings the engines disagree on are one trusted customer.
    spelled = {r["timestamp"]: r["user"] for r in inputs["accelerometer_landing"].to_arrow().to_pylist() if r["timestamp"] >= T0}
    crafted = [r for r in inputs["accelerometer_trusted"].to_arrow().to_pylist() if r["timestamp"] >= T0]
    assert len(crafted) >= 20 and all(r["user"] == person_key(spelled[r["timestamp"]]) for r in crafted)
    assert sorted(r["user"] for r in crafted if r["timestamp"] >= T0 + 100) == ["i̇rem.kaya@test.com"] * len(EXTRA)


def test_check_rules_agree_on_hostile_spellings(spark_engine, spark_cluster, published, hostile_source):  # noqa: F811
    """Every SQL check on the published tables: both engines find nothing, alike."""
    privacy = PrivacyPolicy(consent_policy=ConsentPolicy.ANY)
    tables = published(hostile_source, ConsentPolicy.ANY)
    for audited, rules in CHECK_RULES.items():
        for rule in (r for r in rules if r.sql is not None):
            if rule.name == "lines_accounted_for":
                continue  # it reads the source's line counts, not the tables: no e-mail in it
            duck, on_spark = on_both(spark_engine, privacy.render(rule.sql), tables)
            assert on_spark == duck == [], (audited, rule.name)
            assert evaluate(rule, tables, SparkEngineResource(master=spark_cluster.url), privacy).passed, (audited, rule.name)
