"""Issue 10's hostile files beside the real data: the whole graph runs (in process: a file that
crashed the parser would take the test run down with it) and succeeds, accounts for every
line, and no NaN or infinity reaches any table."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from stedi_assets_tests.test_reference_counts import REFERENCE
from stedi_assets.settings import ConsentPolicy

FLOAT_COLUMNS = {"accelerometer_landing": ("x", "y", "z"), "accelerometer_trusted": ("x", "y", "z"),
                 "machine_learning_curated": ("x", "y", "z")}


def _consenting_reading(source: Path) -> dict:
    """A real accelerometer reading of a customer who consented: a NaN in a copy of it would
    reach the ML table if it were accepted."""
    consenting = set()
    for path in sorted((source / "customer" / "landing").glob("*.json")):
        for line in path.read_text().splitlines():
            if line.strip():
                record = json.loads(line)
                if record.get("shareWithResearchAsOfDate"):
                    consenting.add(record["email"])
    for path in sorted((source / "accelerometer" / "landing").glob("*.json")):
        for line in path.read_text().splitlines():
            if line.strip() and json.loads(line)["user"] in consenting:
                return json.loads(line)
    raise AssertionError("no reading of a consenting customer in the reference data")


def _hostile_files(reading: dict) -> dict[str, bytes]:
    """Each case of the issue, in a file of its own (the path under the source root -> bytes),
    and the number of lines of it that must be rejects."""
    good = json.dumps({**reading, "user": "hostile@example.com"}).encode()
    real = json.dumps(reading)
    nan = real.replace('"x": ' + json.dumps(reading["x"]), '"x": NaN').replace(
        '"y": ' + json.dumps(reading["y"]), '"y": Infinity').replace('"z": ' + json.dumps(reading["z"]), '"z": -Infinity')
    assert "NaN" in nan and "-Infinity" in nan
    return {
        # Nested 20,000 deep in an otherwise clean file: pyarrow's reader would crash the process.
        "accelerometer/landing/deep.json": good + b"\n" + b'{"user":"a","timestamp":1,"n":' + b"[" * 20_000 + b"]" * 20_000 + b"}\n",
        # 100,000 deep beside a non-UTF-8 line: the line-by-line path would raise RecursionError.
        "accelerometer/landing/deeper.json": b'{"user":"a","timestamp":1,"n":' + b"[" * 100_000 + b"]" * 100_000 + b"}\n\xff\xfe\n" + good + b"\n",
        # Lines of whitespace that is not JSON's: each is a line and a reject.
        "accelerometer/landing/spaces.json": b"\n".join(
            [good] + [c.encode() for c in ("\u00a0", "\x1c", "\x1f", "\u0085", "\u2028", "\u3000")]
        ) + b"\n",
        "accelerometer/landing/nan.json": nan.encode() + b"\n" + real.replace(
            '"x": ' + json.dumps(reading["x"]), '"x": 1e999').encode() + b"\n",
        # A BOM, with a bad line later in the file: the first record still lands.
        "accelerometer/landing/bom.json": b"\xef\xbb\xbf" + good + b"\nnot json\n",
        # A two-object line, then an object split over two lines.
        "accelerometer/landing/split.json": good + good + b"\n" + good[:20] + b"\n" + good[20:] + b"\n",
        # Hidden and marker files: not read, but listed.
        "accelerometer/landing/_manifest.json": good + b"\n",
        "accelerometer/landing/.hidden.json": good + b"\n",
        "accelerometer/landing/_SUCCESS": b"",
    }


REJECTED = {"deep.json": 1, "deeper.json": 2, "spaces.json": 6, "nan.json": 2, "bom.json": 1, "split.json": 2}
ROWS = {"deep.json": 1, "deeper.json": 1, "spaces.json": 1, "nan.json": 0, "bom.json": 1, "split.json": 2}


@pytest.mark.reference
def test_a_run_over_the_real_data_and_hostile_files_succeeds_and_accounts_for_every_line(
    reference_data: Path, lakehouse_factory, tmp_path: Path
):
    source = tmp_path / "source"
    shutil.copytree(reference_data, source)  # a copy in the test's temporary folder, never in the repo
    for relative, data in _hostile_files(_consenting_reading(reference_data)).items():
        (source / relative).write_bytes(data)
    lakehouse = lakehouse_factory(source, STEDI_CONSENT_POLICY=ConsentPolicy.ANY.value)

    instance = dg.DagsterInstance.ephemeral()
    result = lakehouse.run(instance=instance)  # raises unless every step succeeds
    assert result.success

    rejects = lakehouse.sql(
        "SELECT regexp_extract(source_file, '[^/]+$') AS file, COUNT(*) AS n FROM accelerometer_landing_rejects GROUP BY 1"
    )
    assert {r["file"]: r["n"] for r in rejects} == REJECTED
    rows = lakehouse.sql(
        "SELECT regexp_extract(source_file, '[^/]+$') AS file, COUNT(*) AS n FROM accelerometer_landing "
        "WHERE user = 'hostile@example.com' GROUP BY 1"
    )
    assert {r["file"]: r["n"] for r in rows} == {f: n for f, n in ROWS.items() if n}  # none from the hidden files
    reference = REFERENCE[ConsentPolicy.ANY]
    assert lakehouse.count("accelerometer_landing") == reference["accelerometer_landing"] + sum(ROWS.values())
    for table in ("accelerometer_trusted", "customer_curated", "machine_learning_curated"):
        assert lakehouse.count(table) == reference[table]
    for table, columns in FLOAT_COLUMNS.items():
        bad = " OR ".join(f"isnan({c}) OR isinf({c})" for c in columns)
        assert lakehouse.sql(f"SELECT COUNT(*) AS n FROM {table} WHERE {bad}") == [{"n": 0}]
    reasons = {r["reason"] for r in lakehouse.sql("SELECT DISTINCT reason FROM accelerometer_landing_rejects")}
    assert "nested deeper than 64 levels" in reasons
    assert any(r.startswith("not a finite number") for r in reasons)
    # The skipped files are named in a warning of the run (and in the asset's metadata).
    log = "\n".join(e.user_message for e in instance.all_logs(result.run_id))
    assert "accelerometer: 3 files not read" in log
    for name in ("_manifest.json", ".hidden.json", "_SUCCESS"):
        assert name in log
    # The landing audits ran on this data and passed: the run says so for every line.
    checks = lakehouse.stedi("versions", "accelerometer_landing").stdout
    assert "lines_accounted_for" in checks
