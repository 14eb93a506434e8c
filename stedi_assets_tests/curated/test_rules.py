"""Each curated-zone rule on hand-made inputs, traps included."""

from __future__ import annotations

from stedi_assets.curated import rules
from stedi_assets.tables import (
    ACCELEROMETER_TRUSTED,
    CUSTOMER_CURATED,
    CUSTOMER_TRUSTED,
    DIRECT_IDENTIFIERS,
    MACHINE_LEARNING_CURATED,
    STEP_TRAINER_TRUSTED,
)
from stedi_assets_tests.builders import customer, run, table


def test_customer_curated_keeps_trusted_customers_with_accelerometer_data():
    trusted = table(CUSTOMER_TRUSTED, customer("a@x", "s1", consent=1), customer("idle@x", "s2", consent=1))
    readings = table(
        ACCELEROMETER_TRUSTED,
        {"user": "a@x", "timestamp": 5, "x": 0.0, "y": 0.0, "z": 0.0},
        {"user": "a@x", "timestamp": 6, "x": 0.0, "y": 0.0, "z": 0.0},
    )
    rows = run(rules.CUSTOMER_CURATED, customer_trusted=trusted, accelerometer_trusted=readings)
    assert [r["email"] for r in rows] == ["a@x"]  # once, however many readings


def test_machine_learning_curated_never_pairs_two_customers_sharing_a_timestamp():
    curated = table(
        CUSTOMER_CURATED,
        customer("a@x", "s-a", consent=1, subject_id="subject-a"),
        customer("b@x", "s-b", consent=1, subject_id="subject-b"),
    )
    steps = table(
        STEP_TRAINER_TRUSTED,
        {"serialNumber": "s-a", "sensorReadingTime": 1000, "distanceFromObject": 10},
        {"serialNumber": "s-b", "sensorReadingTime": 1000, "distanceFromObject": 20},
    )
    readings = table(
        ACCELEROMETER_TRUSTED,
        {"user": "a@x", "timestamp": 1000, "x": 1.0, "y": 0.0, "z": 0.0},
        {"user": "a@x", "timestamp": 1000, "x": 0.0, "y": 1.0, "z": 0.0},
        {"user": "b@x", "timestamp": 1000, "x": 0.0, "y": 0.0, "z": 1.0},
    )
    rows = run(rules.MACHINE_LEARNING_CURATED, step_trainer_trusted=steps, accelerometer_trusted=readings, customer_curated=curated)
    # A timestamp-only join would give 6 rows; the same-customer join gives 2 + 1.
    assert [(r["subject_id"], r["distanceFromObject"], r["x"], r["y"], r["z"]) for r in rows] == [
        ("subject-a", 10, 0.0, 1.0, 0.0),
        ("subject-a", 10, 1.0, 0.0, 0.0),
        ("subject-b", 20, 0.0, 0.0, 1.0),
    ]
    assert set(rows[0]) == set(MACHINE_LEARNING_CURATED.column_names)
    assert not set(rows[0]) & DIRECT_IDENTIFIERS
