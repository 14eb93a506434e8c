"""`python -m bench` end to end at a tiny scale: every system runs, and the JSON, Markdown and
PNG come out with the expected structure. No timing is asserted."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from bench.runner import DEFAULT_SYSTEMS, REAL, prepare_source
from stedi_assets.generate import CUSTOMERS_PER_SCALE, STEP_READINGS_PER_CUSTOMER
from stedi_assets_tests.conftest import REPO, run_cli

SCALE = "0.02"


@pytest.mark.spark
def test_bench_command_writes_the_report(tmp_path: Path):
    out = tmp_path / "bench"
    # From the checkout, as the harness runs: it is not part of the installed package.
    result = run_cli(["python", "-m", "bench", "--scales", SCALE, "--runs", "1", "--out", str(out)], {}, REPO)
    assert "| target | measured | limit | met |" in result.stdout

    summary = json.loads((out / "bench.json").read_text())
    assert summary["runs"] == 1 and summary["machine"]["cpus"] >= 1
    (scale,) = summary["scales"]
    customers = round(CUSTOMERS_PER_SCALE * float(SCALE))
    assert scale["scale"] == SCALE
    assert scale["rows"]["customer"] == customers
    assert scale["rows"]["step_trainer"] == customers * STEP_READINGS_PER_CUSTOMER
    assert customers * STEP_READINGS_PER_CUSTOMER <= scale["rows"]["accelerometer"] <= 3 * customers * STEP_READINGS_PER_CUSTOMER
    assert set(scale["medians"]) == set(DEFAULT_SYSTEMS)
    for system in DEFAULT_SYSTEMS:
        (run,) = scale["runs"][system]
        assert run["wall_seconds"] > 0 and run["peak_rss_bytes"] > 0
        assert scale["medians"][system]["rows_per_second"] == pytest.approx(scale["input_rows"] / run["wall_seconds"])
    assert set(scale["ratios"]) == {"time_ours_over_baseline", "time_ours_over_floor", "memory_ours_over_baseline"}
    # Every step of ours is timed from its log: 8 assets, each with its audit inside, adding up to the wall time.
    (ours,) = scale["runs"]["ours"]
    assert len(ours["step_seconds"]) == 8 and set(ours["audit_seconds"]) == set(ours["step_seconds"])
    assert sum(scale["ours_phase_seconds"].values()) == pytest.approx(ours["wall_seconds"])
    # Only a tiny scale ran: no target can be judged, and there is nothing to extrapolate.
    assert len(summary["targets"]) == 10 and all(t["met"] is None for t in summary["targets"])
    assert summary["capacity"] is None

    markdown = (out / "bench.md").read_text()
    assert f"| {SCALE} | {scale['rows']['accelerometer']:,} |" in markdown
    png = (out / "bench.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert (width, height) == (800, 320)

    # The generated data is kept and reused by the next benchmark, not generated again.
    generated = out / "data" / f"scale-{SCALE}"
    stamp = {p: p.stat().st_mtime_ns for p in generated.rglob("*.json")}
    assert prepare_source(SCALE, out / "data", tmp_path, print) == generated
    assert {p: p.stat().st_mtime_ns for p in generated.rglob("*.json")} == stamp


def test_real_scale_reads_the_reference_data_in_place(reference_data: Path, tmp_path: Path):
    assert prepare_source(REAL, tmp_path, reference_data, print) == reference_data
    assert not any(tmp_path.iterdir())
    with pytest.raises(FileNotFoundError):
        prepare_source(REAL, tmp_path, tmp_path / "missing", print)
