"""Every blocking rule catches what it guards against, with evidence, and passes clean data."""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from stedi_assets import erasure
from stedi_assets.definitions import defs
from stedi_assets.audit import Audit, Rule, evaluate
from stedi_assets.curated import checks as curated
from stedi_assets.engine.resource import DuckDBEngineResource
from stedi_assets.landing.checks import lines_accounted_for, source_lines
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import ConsentPolicy
from stedi_assets.tables import (
    ACCELEROMETER_TRUSTED,
    CUSTOMER_CURATED,
    CUSTOMER_LANDING,
    CUSTOMER_LANDING_REJECTS,
    CUSTOMER_TRUSTED,
    MACHINE_LEARNING_CURATED,
    STEP_TRAINER_TRUSTED,
)
from stedi_assets.trusted import checks as trusted
from stedi_assets_tests.builders import customer, table, with_rejects

SINCE = ConsentPolicy.SINCE_CONSENT


def check(rules: Sequence[Rule], name: str, policy: ConsentPolicy = ConsentPolicy.ANY, **relations):
    rule = next(r for r in rules if r.name == name)
    return evaluate(rule, with_rejects(relations), DuckDBEngineResource(), PrivacyPolicy(consent_policy=policy))


def test_every_check_is_blocking_and_loaded_into_defs():
    names = {(k.asset_key.path[-1], k.name) for k in defs.resolve_asset_graph().asset_check_keys}
    assert names == {
        ("customer_landing", "lines_accounted_for"),
        ("accelerometer_landing", "lines_accounted_for"),
        ("step_trainer_landing", "lines_accounted_for"),
        ("customer_trusted", "consent_present"),
        ("customer_trusted", "consent_unambiguous"),
        ("customer_trusted", "email_unique_not_null"),
        ("accelerometer_trusted", "user_is_trusted_customer"),
        ("accelerometer_trusted", "reading_unique"),
        ("customer_curated", "email_unique"),
        ("customer_curated", "has_accelerometer_data"),
        ("step_trainer_trusted", "reading_key_unique"),
        ("step_trainer_trusted", "serial_belongs_to_curated_customer"),
        ("machine_learning_curated", "same_customer"),
        ("machine_learning_curated", "no_direct_identifiers"),
        ("machine_learning_curated", "no_duplicate_rows"),
        *((table, "no_erased_person") for table in (
            "customer_landing", "accelerometer_landing", "step_trainer_landing", "customer_trusted",
            "accelerometer_trusted", "step_trainer_trusted", "customer_curated", "machine_learning_curated",
        )),
    }
    specs = [s for a in defs.assets or [] for s in a.check_specs]  # declared on each table's asset
    assert len(specs) == 23 and all(s.blocking for s in specs)


def test_customer_trusted_rules():
    leaked = table(CUSTOMER_TRUSTED, customer("ok@x", "s1", 5), customer("no@x", "s2", None), customer("ok@x", "s1", 5))
    consent = check(trusted.CUSTOMER_TRUSTED_AUDIT.rules, "consent_present", customer_trusted=leaked)
    assert (consent.violations, consent.sample) == (1, [{"email": "no***@x"}])  # identifiers masked in evidence
    unique = check(trusted.CUSTOMER_TRUSTED_AUDIT.rules, "email_unique_not_null", customer_trusted=leaked)
    assert (unique.violations, unique.sample) == (1, [{"email": "ok***@x", "copies": 2}])
    clean = table(CUSTOMER_TRUSTED, customer("ok@x", "s1", 5))
    landing = table(CUSTOMER_LANDING, customer("ok@x", "s1", 5))
    rules = trusted.CUSTOMER_TRUSTED_AUDIT.rules
    assert all(check(rules, r.name, customer_trusted=clean, customer_landing=landing).passed for r in rules)
    # A trusted row whose landing records do not give consent unambiguously: a later record withdraws it.
    withdrawn = table(CUSTOMER_LANDING, customer("ok@x", "s1", 5, updated=1), customer("OK@x ", "s1", None, updated=2))
    doubt = check(rules, "consent_unambiguous", customer_trusted=clean, customer_landing=withdrawn)
    assert (doubt.violations, doubt.sample) == (1, [{"email": "ok***@x", "verdict": "no consent"}])


def test_accelerometer_trusted_rules_under_both_policies():
    customers = table(CUSTOMER_TRUSTED, customer("a@x", "s1", consent=100))
    readings = table(
        ACCELEROMETER_TRUSTED,
        {"user": "a@x", "timestamp": 50, "x": 0.0, "y": 0.0, "z": 0.0},
        {"user": "stranger@x", "timestamp": 150, "x": 0.0, "y": 0.0, "z": 0.0},
    )
    inputs = dict(accelerometer_trusted=readings, customer_trusted=customers)
    rules = trusted.ACCELEROMETER_TRUSTED_AUDIT.rules
    assert check(rules, "user_is_trusted_customer", **inputs).violations == 1
    since = check(rules, "user_is_trusted_customer", SINCE, **inputs)
    assert since.violations == 2  # the reading from before consent counts too
    twice = table(ACCELEROMETER_TRUSTED, *[{"user": "a@x", "timestamp": 150, "x": 1.0, "y": 0.0, "z": 0.0}] * 2)
    assert check(rules, "reading_unique", accelerometer_trusted=twice).violations == 1


def test_step_trainer_trusted_rules():
    curated_customers = table(CUSTOMER_CURATED, customer("a@x", "s1", consent=100))
    readings = table(
        STEP_TRAINER_TRUSTED,
        {"serialNumber": "s1", "sensorReadingTime": 200, "distanceFromObject": 1},
        {"serialNumber": "s1", "sensorReadingTime": 200, "distanceFromObject": 2},
        {"serialNumber": "s9", "sensorReadingTime": 300, "distanceFromObject": 3},
    )
    inputs = dict(
        step_trainer_trusted=readings,
        customer_curated=curated_customers,
        customer_landing=table(CUSTOMER_LANDING, customer("a@x", "s1", consent=100)),
        accelerometer_trusted=table(ACCELEROMETER_TRUSTED),
    )
    rules = trusted.STEP_TRAINER_TRUSTED_AUDIT.rules
    unique = check(rules, "reading_key_unique", **inputs)
    assert (unique.violations, unique.sample) == (1, [{"serialNumber": "s1***", "sensorReadingTime": 200, "copies": 2}])
    owner = check(rules, "serial_belongs_to_curated_customer", **inputs)
    assert (owner.violations, owner.sample) == (1, [{"serialNumber": "s9***", "sensorReadingTime": 300}])  # serials masked


def test_customer_curated_rules():
    customers = table(CUSTOMER_CURATED, customer("a@x", "s1", 1), customer("a@x", "s1", 1), customer("idle@x", "s2", 1))
    readings = table(ACCELEROMETER_TRUSTED, {"user": "a@x", "timestamp": 5, "x": 0.0, "y": 0.0, "z": 0.0})
    rules = curated.CUSTOMER_CURATED_AUDIT.rules
    assert check(rules, "email_unique", customer_curated=customers).violations == 1
    idle = check(rules, "has_accelerometer_data", customer_curated=customers, accelerometer_trusted=readings)
    assert idle.sample == [{"email": "id***@x"}]


def test_machine_learning_curated_rules_catch_a_cross_customer_pair():
    customers = table(
        CUSTOMER_CURATED,
        customer("a@x", "s-a", 1, subject_id="subject-a"),
        customer("b@x", "s-b", 1, subject_id="subject-b"),
    )
    steps = table(STEP_TRAINER_TRUSTED, {"serialNumber": "s-a", "sensorReadingTime": 1000, "distanceFromObject": 10})
    readings = table(
        ACCELEROMETER_TRUSTED,
        {"user": "a@x", "timestamp": 1000, "x": 1.0, "y": 0.0, "z": 0.0},
        {"user": "b@x", "timestamp": 1000, "x": 0.0, "y": 0.0, "z": 1.0},
    )
    ml = table(
        MACHINE_LEARNING_CURATED,
        {"subject_id": "subject-a", "sensorReadingTime": 1000, "distanceFromObject": 10, "x": 1.0, "y": 0.0, "z": 0.0},
        # a's step trainer reading with b's phone: what a timestamp-only join produces
        {"subject_id": "subject-a", "sensorReadingTime": 1000, "distanceFromObject": 10, "x": 0.0, "y": 0.0, "z": 1.0},
    )
    inputs = dict(machine_learning_curated=ml, customer_curated=customers, step_trainer_trusted=steps, accelerometer_trusted=readings)
    rules = curated.MACHINE_LEARNING_CURATED_AUDIT.rules
    same = check(rules, "same_customer", **inputs)
    assert (same.violations, same.sample) == (1, [{"subject_id": "subject-a", "sensorReadingTime": 1000}])
    assert check(rules, "no_duplicate_rows", **inputs).passed
    doubled = pa.concat_tables([ml.slice(0, 1), ml.slice(0, 1)])
    assert check(rules, "no_duplicate_rows", machine_learning_curated=doubled).violations == 1


def test_no_direct_identifiers_reads_the_written_columns():
    rules = curated.MACHINE_LEARNING_CURATED_AUDIT.rules
    clean = table(MACHINE_LEARNING_CURATED)
    assert check(rules, "no_direct_identifiers", machine_learning_curated=clean).passed
    leaky = clean.append_column("Email", pa.array([], pa.string())).append_column("phone", pa.array([], pa.string()))
    found = check(rules, "no_direct_identifiers", machine_learning_curated=leaky)
    assert (found.violations, found.sample) == (2, [{"column": "Email"}, {"column": "phone"}])


def test_lines_accounted_for_finds_a_lost_line():
    rule = lines_accounted_for(CUSTOMER_LANDING, CUSTOMER_LANDING_REJECTS)
    rows = table(CUSTOMER_LANDING, customer("a@x", "s", 1, line=1), customer("b@x", "s", 1, line=1), customer("c@x", "s", 1, line=3))
    rejects = table(CUSTOMER_LANDING_REJECTS, {"source_file": "customer/landing/c.json", "source_line": 4, "raw": "?", "reason": "r"})
    source = source_lines([("customer/landing/c.json", 4, 0), ("customer/landing/gone.json", 2, 0)])
    result = evaluate(rule, {"customer_landing": rows, "customer_landing_rejects": rejects, "source_lines": source}, DuckDBEngineResource(), PrivacyPolicy())
    assert result.violations == 2
    assert sorted(result.sample, key=lambda r: r["source_file"]) == [
        {"source_file": "customer/landing/c.json", "lines_read": 4, "lines_erased": 0, "lines_accounted": 3},
        {"source_file": "customer/landing/gone.json", "lines_read": 2, "lines_erased": 0, "lines_accounted": 0},
    ]
    # Lines left out because they name an erased person are accounted for, as such.
    erased = source_lines([("customer/landing/c.json", 4, 1), ("customer/landing/gone.json", 2, 2)])
    relations = {"customer_landing": rows, "customer_landing_rejects": rejects, "source_lines": erased}
    assert evaluate(rule, relations, DuckDBEngineResource(), PrivacyPolicy()).passed


def test_no_erased_person_finds_the_rows_of_an_erased_person_whatever_the_spelling():
    privacy = PrivacyPolicy()
    erased = erasure.Erasures(frozenset(erasure.erasure_keys(["gone@x"], privacy).values()))
    rule = erasure.not_erased(("customer_trusted", "email", erasure.EMAIL))
    customers = table(CUSTOMER_TRUSTED, customer("ok@x", "s1", 5), customer(" GONE@x", "s2", 5))
    found = evaluate(rule, {"customer_trusted": customers, **erased.relations()}, DuckDBEngineResource(), privacy)
    assert (found.violations, found.sample) == (1, [{"table": "customer_trusted", "email": " G***@x"}])
    assert evaluate(rule, {"customer_trusted": customers}, DuckDBEngineResource(), privacy).passed  # none requested
    ml = table(MACHINE_LEARNING_CURATED, {"subject_id": next(iter(erased.subjects)), "sensorReadingTime": 1})
    by_subject = erasure.not_erased(("machine_learning_curated", "subject_id", erasure.SUBJECT))
    assert evaluate(by_subject, {"machine_learning_curated": ml, **erased.relations()}, DuckDBEngineResource(), privacy).violations == 1


def test_a_rule_is_met_by_construction_only_by_a_build_of_its_own_sql():
    """A full build that is exactly the SQL a rule is `met_by` is not judged by recomputing
    it; any other build (incremental, another SQL) and a published version are."""
    rule = Rule("explained", "every row explained", sql="SELECT 1 AS unexplained", met_by="SELECT the zone rule")
    audit = Audit(MACHINE_LEARNING_CURATED, (rule,))
    [built] = audit.judge({}, DuckDBEngineResource(), PrivacyPolicy(), 0, built_with="SELECT the zone rule")
    assert built.passed and built.by_construction
    for other in (None, "SELECT another rule"):
        [judged] = audit.judge({}, DuckDBEngineResource(), PrivacyPolicy(), 0, built_with=other)
        assert judged.violations == 1 and not judged.by_construction
    assert curated.MACHINE_LEARNING_CURATED_AUDIT.rules[0].met_by is not None  # same_customer
    # Only where the build's own SQL guarantees the rule: accelerometer_trusted's DISTINCT over
    # every column; step_trainer_trusted's DISTINCT is over every column, not over its key.
    met = {(a.table.name, r.name) for a in (trusted.ACCELEROMETER_TRUSTED_AUDIT, trusted.STEP_TRAINER_TRUSTED_AUDIT) for r in a.rules if r.met_by}
    assert met == {("accelerometer_trusted", "reading_unique")}
    assert trusted.rules.ACCELEROMETER_TRUSTED.lstrip().startswith("SELECT DISTINCT a.user, a.timestamp, a.x, a.y, a.z")


def test_lines_accounted_for_counts_distinct_lines_exactly_whatever_the_numbers():
    """The bitmap count is COUNT(DISTINCT source_line) per file for any line numbers: repeats in
    the rows, lines both a row and a reject, word edges (62, 63, 126), zero, negative and very
    large numbers, a null. Each file passes at its distinct count and fails one line off, either
    way. (A few DuckDB queries on a few hundred rows: well under a second.)"""
    import random

    rng = random.Random(7)
    edges = [0, 1, 61, 62, 63, 64, 125, 126, 127, -1, -62, -63, -64, 2**62, 2**62 + 1, 2**63 - 1, -(2**62)]
    files = {f"customer/landing/f{i}.json": [rng.choice(edges + list(range(1, 200))) for _ in range(rng.randint(1, 120))] for i in range(6)}
    rows, rejected = [], []
    for name, lines in files.items():
        for line in lines:
            (rows if rng.random() < 0.8 else rejected).append({"source_file": name, "source_line": line})
    rows.append({"source_file": "customer/landing/f0.json", "source_line": None})  # counted by neither
    data = table(CUSTOMER_LANDING, *(customer("a@x", "s", 1, **row) for row in rows))
    rejects = table(CUSTOMER_LANDING_REJECTS, *({**r, "raw": "?", "reason": "r"} for r in rejected))
    rule = lines_accounted_for(CUSTOMER_LANDING, CUSTOMER_LANDING_REJECTS)
    distinct = {name: len(set(lines)) for name, lines in files.items()}
    for off in (0, 1, -1):
        counts = [(name, n + off, 0) for name, n in distinct.items()]
        relations = {"customer_landing": data, "customer_landing_rejects": rejects, "source_lines": source_lines(counts)}
        result = evaluate(rule, relations, DuckDBEngineResource(), PrivacyPolicy())
        assert result.violations == (0 if off == 0 else len(files)), off
        assert all(r["lines_accounted"] == distinct[r["source_file"]] for r in result.sample)
