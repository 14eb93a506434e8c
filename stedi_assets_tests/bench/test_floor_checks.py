"""The second Dagster floor (bench/floor_checks.py) models our graph's checks: the same rule names
per table as the audits, in the floor's lineage. Cheap: imports only, no run (under a second)."""

from bench.floor import LINEAGE
from bench.floor_checks import CHECKS, defs
from stedi_assets.lakehouse import AUDITS


def test_the_floor_has_each_audits_rules_by_name():
    assert CHECKS == {name: tuple(rule.name for rule in audit.rules) for name, audit in AUDITS.items()}
    assert set(CHECKS) == set(LINEAGE)


def test_the_floor_declares_one_blocking_check_per_rule():
    specs = [spec for assets_def in defs.assets for spec in assets_def.check_specs]
    assert len(specs) == sum(len(rules) for rules in CHECKS.values()) == 23
    assert all(spec.blocking for spec in specs)
