"""Each trusted-zone rule on hand-made inputs, traps included."""

from __future__ import annotations

import re

from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import ConsentPolicy
from stedi_assets.tables import (
    ACCELEROMETER_LANDING,
    CUSTOMER_CURATED,
    CUSTOMER_LANDING,
    CUSTOMER_LANDING_REJECTS,
    CUSTOMER_TRUSTED,
    STEP_TRAINER_LANDING,
)
from stedi_assets.trusted import rules
from stedi_assets_tests.builders import customer, run, table
from stedi_assets.tables import ACCELEROMETER_TRUSTED

SINCE = ConsentPolicy.SINCE_CONSENT


def test_customer_trusted_keeps_only_customers_with_a_consent_date():
    landing = table(
        CUSTOMER_LANDING,
        customer("yes@x", "s1", consent=100),
        customer("missing@x", "s2", consent=None),  # key absent in the JSON: null here
        customer("zero@x", "s3", consent=0),  # epoch 0 is a placeholder, not a decision (test_consent_dates.py)
    )
    assert [r["email"] for r in run(rules.CUSTOMER_TRUSTED, customer_landing=landing)] == ["yes@x"]


def test_customer_trusted_latest_record_wins_so_withdrawn_consent_is_honoured():
    landing = table(
        CUSTOMER_LANDING,
        customer("withdrew@x", "s1", consent=100, updated=1, line=1),
        customer("withdrew@x", "s1", consent=None, updated=2, line=2),
        customer("joined@x", "s2", consent=None, updated=1, line=3),
        customer("joined@x", "s2", consent=300, updated=5, line=4),
    )
    rows = run(rules.CUSTOMER_TRUSTED, customer_landing=landing)
    assert [(r["email"], r["shareWithResearchAsOfDate"]) for r in rows] == [("joined@x", 300)]


def test_customer_trusted_breaks_ties_deterministically_by_landing_line():
    landing = table(
        CUSTOMER_LANDING,
        customer("tie@x", "old-serial", consent=100, updated=7, line=1),
        customer("tie@x", "new-serial", consent=100, updated=7, line=2),
    )
    for _ in range(3):
        assert [r["serialNumber"] for r in run(rules.CUSTOMER_TRUSTED, customer_landing=landing)] == ["new-serial"]


def _trusted(*customers: dict):
    return table(CUSTOMER_TRUSTED, *customers)


def test_accelerometer_trusted_keeps_readings_of_trusted_users_once():
    trusted = _trusted(customer("a@x", "s1", consent=100))
    landing = table(
        ACCELEROMETER_LANDING,
        {"user": "a@x", "timestamp": 50, "x": 1.0, "y": 0.0, "z": 0.0},
        {"user": "a@x", "timestamp": 150, "x": 1.0, "y": 0.0, "z": 0.0},
        {"user": "a@x", "timestamp": 150, "x": 1.0, "y": 0.0, "z": 0.0, "source_line": 9},  # delivered twice
        {"user": "a@x", "timestamp": 150, "x": 0.0, "y": 1.0, "z": 0.0},  # same time, other reading
        {"user": "stranger@x", "timestamp": 150, "x": 1.0, "y": 0.0, "z": 0.0},
    )
    rows = run(rules.ACCELEROMETER_TRUSTED, accelerometer_landing=landing, customer_trusted=trusted)
    assert [(r["user"], r["timestamp"], r["x"]) for r in rows] == [("a@x", 150, 0.0), ("a@x", 150, 1.0), ("a@x", 50, 1.0)]
    since = run(rules.ACCELEROMETER_TRUSTED, SINCE, accelerometer_landing=landing, customer_trusted=trusted)
    assert [(r["timestamp"], r["x"]) for r in since] == [(150, 0.0), (150, 1.0)]


def test_step_trainer_trusted_follows_the_serial_to_a_curated_customer():
    curated = table(CUSTOMER_CURATED, customer("a@x", "s1", consent=100), customer("b@x", "s2", consent=100))
    landing_customers = table(
        CUSTOMER_LANDING, customer("a@x", "s1", consent=100), customer("b@x", "s2", consent=100), customer("c@x", "s3", consent=None)
    )
    readings = table(
        STEP_TRAINER_LANDING,
        {"serialNumber": "s1", "sensorReadingTime": 50, "distanceFromObject": 1},
        {"serialNumber": "s1", "sensorReadingTime": 150, "distanceFromObject": 2},
        {"serialNumber": "s1", "sensorReadingTime": 150, "distanceFromObject": 2, "source_line": 5},
        {"serialNumber": "s3", "sensorReadingTime": 150, "distanceFromObject": 3},
    )
    inputs = dict(
        step_trainer_landing=readings,
        customer_curated=curated,
        customer_landing=landing_customers,
        accelerometer_trusted=table(ACCELEROMETER_TRUSTED),
    )
    assert [(r["serialNumber"], r["sensorReadingTime"]) for r in run(rules.STEP_TRAINER_TRUSTED, **inputs)] == [
        ("s1", 150),
        ("s1", 50),
    ]
    assert [r["sensorReadingTime"] for r in run(rules.STEP_TRAINER_TRUSTED, SINCE, **inputs)] == [150]


def test_step_trainer_trusted_on_a_shared_serial_keeps_only_the_consenting_owners_readings():
    # s1 was registered to a@x (consented) and to b@x (did not): a reading on s1 counts only
    # where a@x's phone recorded at the same time.
    curated = table(CUSTOMER_CURATED, customer("a@x", "s1", consent=100))
    landing_customers = table(CUSTOMER_LANDING, customer("a@x", "s1", consent=100), customer("b@x", "s1", consent=None))
    readings = table(
        STEP_TRAINER_LANDING,
        {"serialNumber": "s1", "sensorReadingTime": 200, "distanceFromObject": 1},  # a@x's session
        {"serialNumber": "s1", "sensorReadingTime": 900, "distanceFromObject": 2},  # b@x's session
    )
    accelerometer = table(ACCELEROMETER_TRUSTED, {"user": "a@x", "timestamp": 200, "x": 0.0, "y": 0.0, "z": 1.0})
    rows = run(
        rules.STEP_TRAINER_TRUSTED,
        step_trainer_landing=readings,
        customer_curated=curated,
        customer_landing=landing_customers,
        accelerometer_trusted=accelerometer,
    )
    assert [r["sensorReadingTime"] for r in rows] == [200]


def test_step_trainer_trusted_is_not_multiplied_by_customers_sharing_a_serial():
    curated = table(CUSTOMER_CURATED, customer("a@x", "s1", consent=100), customer("b@x", "s1", consent=100))
    readings = table(STEP_TRAINER_LANDING, {"serialNumber": "s1", "sensorReadingTime": 200, "distanceFromObject": 1})
    accelerometer = table(
        ACCELEROMETER_TRUSTED,
        {"user": "a@x", "timestamp": 200, "x": 0.0, "y": 0.0, "z": 1.0},
        {"user": "b@x", "timestamp": 200, "x": 1.0, "y": 0.0, "z": 1.0},
    )
    rows = run(
        rules.STEP_TRAINER_TRUSTED,
        step_trainer_landing=readings,
        customer_curated=curated,
        customer_landing=table(CUSTOMER_LANDING, customer("a@x", "s1", consent=100), customer("b@x", "s1", consent=100)),
        accelerometer_trusted=accelerometer,
    )
    assert len(rows) == 1


def test_the_consent_clause_renders_as_its_condition_or_true():
    for sql, condition in (
        (rules.ACCELEROMETER_TRUSTED, "(a.timestamp >= c.shareWithResearchAsOfDate)"),
        (rules.STEP_TRAINER_TRUSTED, "(s.sensorReadingTime >= c.shareWithResearchAsOfDate)"),
    ):
        since_consent = PrivacyPolicy(consent_policy=SINCE).render(sql)
        anytime = PrivacyPolicy(consent_policy=ConsentPolicy.ANY).render(sql)
        for rendered in (since_consent, anytime):
            assert "{" not in rendered and "since_consent" not in rendered
        assert condition in since_consent
        # A literal TRUE, not `NOT FALSE OR ...`, which DuckDB plans as a slow join.
        assert not re.search(r">=\s*\w+\.shareWithResearchAsOfDate", anytime) and "AND TRUE" in anytime


# -- consent in doubt means out ----------------------------------------------------------------
NOW = 1_700_000_000_000


def _trusted_emails(landing, rejects=None, as_of: int = NOW) -> list[str]:
    relations = {"customer_landing": landing}
    if rejects is not None:
        relations["customer_landing_rejects"] = rejects
    return [r["email"] for r in run(rules.CUSTOMER_TRUSTED, as_of=as_of, **relations)]


def _held_out(landing, rejects=None, as_of: int = NOW) -> dict[str, str]:
    relations = {"customer_landing": landing}
    if rejects is not None:
        relations["customer_landing_rejects"] = rejects
    return {r["person_key"]: r["reason"] for r in run(rules.CUSTOMERS_HELD_OUT, as_of=as_of, **relations)}


def test_a_withdrawal_without_last_update_date_keeps_the_customer_out():
    landing = table(
        CUSTOMER_LANDING,
        customer("a@x", "s1", consent=100, updated=5, line=1),
        customer("a@x", "s1", consent=None, updated=None, line=2),  # a later withdrawal, undated
        customer("b@x", "s2", consent=100, updated=None, line=3),  # one record: nothing to order
    )
    assert _trusted_emails(landing) == ["b@x"]
    assert _held_out(landing) == {"a@x": "records cannot be ordered: one has no lastUpdateDate"}


def test_a_rejected_line_naming_the_email_keeps_the_customer_out():
    """`"shareWithResearchAsOfDate": false` or `""` is rejected at landing; the old consenting
    record must not stand."""
    landing = table(CUSTOMER_LANDING, customer("a@x", "s1", consent=100, updated=5), customer("b@x", "s2", consent=100))
    rejects = table(
        CUSTOMER_LANDING_REJECTS,
        {"source_file": "c.json", "source_line": 9, "raw": '{"email":" A@X ","shareWithResearchAsOfDate":false}',
         "reason": "wrong type", "named_person_keys": ["a@x"]},
    )
    assert _trusted_emails(landing, rejects) == ["b@x"]
    assert _held_out(landing, rejects) == {"a@x": "a rejected customer line names the e-mail"}


def test_latest_records_that_disagree_on_consent_keep_the_customer_out_whatever_the_file_names():
    for first, second in (("a.json", "b.json"), ("b.json", "a.json")):
        landing = table(
            CUSTOMER_LANDING,
            customer("a@x", "s1", consent=100, updated=7, source_file=first),
            customer("a@x", "s1", consent=None, updated=7, source_file=second),
        )
        assert _trusted_emails(landing) == []
        assert _held_out(landing) == {"a@x": "latest records disagree on consent"}


def test_consent_dated_after_the_run_is_no_consent_yet():
    future = 4_102_444_800_000  # 2100-01-01
    landing = table(CUSTOMER_LANDING, customer("a@x", "s1", consent=future), customer("b@x", "s2", consent=NOW))
    assert _trusted_emails(landing) == ["b@x"]  # consent dated exactly at the run counts
    assert _held_out(landing) == {"a@x": "consent dated after the run"}
    assert _trusted_emails(landing, as_of=future) == ["a@x", "b@x"]


def test_emails_are_compared_trimmed_and_case_folded():
    landing = table(
        CUSTOMER_LANDING,
        customer("angie.huey@test.com", "s1", consent=100, updated=1),
        customer(" ANGIE.HUEY@TEST.COM ", "s1", consent=None, updated=2),  # withdraws under another spelling
        customer("Bo@Test.com", "s2", consent=100),
    )
    trusted = run(rules.CUSTOMER_TRUSTED, as_of=NOW, customer_landing=landing)
    assert [r["email"] for r in trusted] == ["bo@test.com"]  # stored as its key
    readings = table(
        ACCELEROMETER_LANDING,
        {"user": " BO@test.com", "timestamp": 150, "x": 1.0, "y": 0.0, "z": 0.0},  # a case variant: kept
        {"user": "bo@test.com", "timestamp": 150, "x": 1.0, "y": 0.0, "z": 0.0},  # the same reading
        {"user": "angie.huey@test.com", "timestamp": 150, "x": 1.0, "y": 0.0, "z": 0.0},
    )
    kept = run(rules.ACCELEROMETER_TRUSTED, accelerometer_landing=readings, customer_trusted=table(CUSTOMER_TRUSTED, *trusted))
    assert [(r["user"], r["timestamp"]) for r in kept] == [("bo@test.com", 150)]


def test_a_serial_named_by_a_rejected_customer_line_is_treated_as_shared():
    """The co-owner's own record was rejected (one non-UTF-8 byte in the name): their serial
    number still counts, so readings need the consenting owner's phone at the same moment."""
    curated = table(CUSTOMER_CURATED, customer("a@x", "s1", consent=100))
    landing_customers = table(CUSTOMER_LANDING, customer("a@x", "s1", consent=100))
    rejects = table(
        CUSTOMER_LANDING_REJECTS,
        {"source_file": "c.json", "source_line": 2, "raw": '{"customerName":"B\ufffd","email":"b@x","serialNumber":"s1"}',
         "reason": "not valid UTF-8", "named_person_keys": ["b@x"], "named_serials": ["s1"]},
    )
    readings = table(
        STEP_TRAINER_LANDING,
        {"serialNumber": "s1", "sensorReadingTime": 50, "distanceFromObject": 1},  # a's phone recorded then
        {"serialNumber": "s1", "sensorReadingTime": 60, "distanceFromObject": 2},  # nobody's phone: b's?
    )
    phone = table(ACCELEROMETER_TRUSTED, {"user": "a@x", "timestamp": 50, "x": 0.0, "y": 0.0, "z": 0.0})
    inputs = dict(step_trainer_landing=readings, customer_curated=curated, customer_landing=landing_customers, accelerometer_trusted=phone)
    assert [r["sensorReadingTime"] for r in run(rules.STEP_TRAINER_TRUSTED, **inputs)] == [50, 60]  # without the reject
    kept = run(rules.STEP_TRAINER_TRUSTED, customer_landing_rejects=rejects, **inputs)
    assert [r["sensorReadingTime"] for r in kept] == [50]


def test_a_serial_also_on_a_record_without_an_email_or_only_on_someone_elses_is_treated_as_shared():
    """Whoever else a serial number's landing records name, a record with no usable e-mail
    included, or if they name only someone else: its readings need the owner's phone then."""
    curated = table(CUSTOMER_CURATED, customer("a@x", "s1", consent=100))
    readings = table(
        STEP_TRAINER_LANDING,
        {"serialNumber": "s1", "sensorReadingTime": 50, "distanceFromObject": 1},  # a's phone recorded then
        {"serialNumber": "s1", "sensorReadingTime": 60, "distanceFromObject": 2},
    )
    phone = table(ACCELEROMETER_TRUSTED, {"user": "a@x", "timestamp": 50, "x": 0.0, "y": 0.0, "z": 0.0})
    inputs = dict(step_trainer_landing=readings, customer_curated=curated, accelerometer_trusted=phone)
    for registered, kept in (
        ([customer("a@x", "s1", consent=100)], [50, 60]),
        ([customer("a@x", "s1", consent=100), {**customer("a@x", "s1", consent=None, line=2), "email": None}], [50]),
        ([customer("b@x", "s1", consent=100)], [50]),
    ):
        rows = run(rules.STEP_TRAINER_TRUSTED, customer_landing=table(CUSTOMER_LANDING, *registered), **inputs)
        assert [r["sensorReadingTime"] for r in rows] == kept, registered
