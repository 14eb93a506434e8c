"""`stedi generate`: the course data's shape at scale 1, the same bytes for the same seed, and
the real data's traps (and the optional ones) present."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from stedi_assets.generate import (
    CUSTOMERS_PER_SCALE,
    DIRTY_LINES,
    STEP_READINGS_PER_CUSTOMER,
    generate,
)
from stedi_assets.lake.store import LocalStore
from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets_tests.conftest import run_cli


def records(root: Path, source: str) -> list[dict]:
    lines = [line for p in sorted((root / source).rglob("*.json")) for line in p.read_text().splitlines()]
    return [json.loads(line) for line in lines if line.strip()]


def files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def course_shape(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("scale1")
    return root, generate(LocalStore(root), scale=1, seed=3)


def test_scale_one_is_the_course_data_shape(course_shape):
    root, counts = course_shape
    assert counts["customer"] == CUSTOMERS_PER_SCALE == 956
    assert counts["step_trainer"] == 956 * STEP_READINGS_PER_CUSTOMER == 28_680
    # 1 to 3 phone readings at each step trainer time, mostly 3: about 81 thousand.
    assert 80_000 <= counts["accelerometer"] <= 82_500
    assert (len(records(root, "customer")), len(records(root, "accelerometer")), len(records(root, "step_trainer"))) == (
        counts["customer"],
        counts["accelerometer"],
        counts["step_trainer"],
    )
    assert [len(list((root / s).rglob("*.json"))) for s in ("customer", "accelerometer", "step_trainer")] == [1, 9, 3]


def test_the_real_data_traps_are_present(course_shape):
    root, _ = course_shape
    customers = records(root, "customer")
    missing = [c for c in customers if "shareWithResearchAsOfDate" not in c]
    null = [c for c in customers if "shareWithResearchAsOfDate" in c and c["shareWithResearchAsOfDate"] is None]
    consented = {c["email"]: c["shareWithResearchAsOfDate"] for c in customers if c.get("shareWithResearchAsOfDate")}
    assert 0.4 < len(missing) / len(customers) < 0.6  # no consent: the key is missing, not null
    assert null
    readings = records(root, "accelerometer")
    per_moment = Counter((r["user"], r["timestamp"]) for r in readings)
    assert max(per_moment.values()) > 1  # several rows per (user, timestamp)
    users_per_time = Counter(t for _, t in per_moment)
    assert max(users_per_time.values()) > 1  # a reading time shared across customers
    assert any(r["user"] in consented and r["timestamp"] < consented[r["user"]] for r in readings)
    serials = {c["serialNumber"] for c in customers}
    assert {r["serialNumber"] for r in records(root, "step_trainer")} <= serials


def test_same_seed_same_bytes_other_seed_other_data(tmp_path: Path):
    options = dict(scale=0.05, seed=11, duplicate_emails=2, reused_serials=1, dirty_lines=True)
    for name in ("a", "b"):
        generate(LocalStore(tmp_path / name), **options)
    generate(LocalStore(tmp_path / "c"), scale=0.05, seed=12, duplicate_emails=2, reused_serials=1, dirty_lines=True)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert files(tmp_path / "a") != files(tmp_path / "c")


def test_the_console_command_writes_what_generate_writes(tmp_path: Path):
    """`stedi generate`, the console script, into STEDI_SOURCE by default: the same bytes as
    the function with the same options, and a line saying what it wrote."""
    said = run_cli(
        ["stedi", "generate", "--scale", "0.05", "--seed", "11", "--duplicate-emails", "2", "--reused-serials", "1", "--dirty-lines"],
        {"STEDI_SOURCE": str(tmp_path / "command")},
        tmp_path,
    )
    counts = generate(LocalStore(tmp_path / "function"), scale=0.05, seed=11, duplicate_emails=2, reused_serials=1, dirty_lines=True)
    assert files(tmp_path / "command") == files(tmp_path / "function")
    assert said.stdout.startswith(f"wrote {counts['customer']} customer, {counts['accelerometer']} accelerometer and {counts['step_trainer']} step trainer records to ")


def test_optional_traps(tmp_path: Path):
    counts = generate(LocalStore(tmp_path), scale=0.1, seed=5, duplicate_emails=4, reused_serials=3, dirty_lines=True)
    customers = records(tmp_path, "customer")
    assert counts["customer"] == len(customers) == round(956 * 0.1) + 4
    emails = Counter(c["email"] for c in customers)
    assert sorted(emails.values())[-4:] == [2, 2, 2, 2]
    owners = Counter(c["serialNumber"] for c in {c["email"]: c for c in customers}.values())
    assert sorted(owners.values())[-3:] == [2, 2, 2]
    assert (tmp_path / DIRTY_LINES).read_bytes() == (SAMPLE_SOURCE / DIRTY_LINES).read_bytes()


def test_without_options_no_optional_trap(tmp_path: Path):
    generate(LocalStore(tmp_path), scale=0.1, seed=5)
    customers = records(tmp_path, "customer")
    assert len({c["email"] for c in customers}) == len(customers)
    assert len({c["serialNumber"] for c in customers}) == len(customers)
    assert not list(tmp_path.rglob("*dirty*"))
