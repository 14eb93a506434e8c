"""The report's arithmetic: medians, ratios, targets and the capacity estimate."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

import pytest

from bench.report import GIB, markdown, summarize, write_report
from bench.runner import ScaleResult, audit_seconds, picture_seconds, scale_name, step_breakdown, step_seconds

MIB = 2**20
HOST = {
    "cpus": 2,
    "cpu_model": "test cpu",
    "memory_bytes": 24 * GIB,
    "platform": "test",
    "python": "3.11",
    "versions": {"dagster": "x"},
    "load_average": (0.0, 0.0, 0.0),
}


def scale(name: str, accelerometer: int, ours: list[float], baseline: list[float], floor: list[float], ours_mib: list[int]) -> ScaleResult:
    result = ScaleResult(name, f"/data/{name}", accelerometer * 100, {"customer": 10, "accelerometer": accelerometer, "step_trainer": 90})
    result.runs = {
        "ours": [{"wall_seconds": s, "peak_rss_bytes": m * MIB} for s, m in zip(ours, ours_mib)],
        "baseline": [{"wall_seconds": s, "peak_rss_bytes": 1000 * MIB} for s in baseline],
        "floor": [{"wall_seconds": s, "peak_rss_bytes": 200 * MIB} for s in floor],
    }
    return result


@pytest.fixture
def summary() -> dict:
    results = [
        # real: ours 6 s, floor 4 s (1.5x), baseline 30 s (5x): both met.
        scale("real", 80_000, [6, 7, 5], [30, 29, 31], [4, 4, 5], [300, 310, 305]),
        scale("10", 800_000, [10, 11, 9], [40, 40, 40], [4, 4, 4], [500, 500, 500]),
        # 100x: 2x faster only (not met); time 9x for 10x the data, memory 5.5x.
        scale("100", 8_000_000, [90, 80, 100], [180, 180, 180], [4, 4, 4], [2700, 2750, 2800]),
    ]
    return summarize(results, 3, HOST)


def test_medians_and_ratios(summary):
    real = summary["scales"][0]
    assert real["medians"]["ours"]["wall_seconds"] == 6
    assert real["medians"]["ours"]["peak_rss_bytes"] == 305 * MIB
    assert real["medians"]["ours"]["rows_per_second"] == pytest.approx(80_100 / 6)
    assert real["ratios"]["time_ours_over_baseline"] == pytest.approx(6 / 30)
    assert real["ratios"]["time_ours_over_floor"] == pytest.approx(6 / 4)
    assert real["ratios"]["memory_ours_over_baseline"] == pytest.approx(305 / 1000)


def test_targets(summary):
    met = {t["target"]: (None if t["measured"] is None else round(t["measured"], 3), t["met"]) for t in summary["targets"]}
    assert met == {
        "real data: ours / Dagster floor, time": (1.5, False),  # the target: at most 1.25
        "real data: speed-up over the Spark baseline": (5.0, True),
        "100x: speed-up over the Spark baseline": (2.0, False),
        "100x: peak memory of ours": (round(2750 * MIB / GIB, 3), False),  # the target: at most 2 GiB
        "10x -> 100x: time growth / data growth": (0.9, True),
        "10x -> 100x: memory growth / data growth": (0.55, True),
        "1000x: peak memory of ours": (None, None),  # 1000x not run
        "1000x: time / the 100x time": (None, None),
        "1000x: speed-up over the Spark baseline": (None, None),
        "100x on the Spark cluster: peak memory of the run's Python processes (JVMs excluded)": (None, None),
    }


def test_targets_of_scales_not_run_are_not_measured():
    only = summarize([scale("1", 80_000, [5], [20], [4], [300])], 1, HOST)
    assert [t["met"] for t in only["targets"]] == [None] * 10
    assert only["capacity"] is None


def test_capacity_extrapolates_the_memory_per_million_rows(summary):
    capacity = summary["capacity"]
    per_million = (2750 - 500) * MIB / 7.2
    assert capacity["bytes_per_million_accelerometer_rows"] == pytest.approx(per_million)
    rows = 8_000_000 + (24 * GIB - 2750 * MIB) / per_million * 1e6
    assert capacity["largest_accelerometer_rows"] == pytest.approx(rows)
    assert capacity["largest_scale"] == pytest.approx(rows / 80_000)


def test_markdown_and_files(summary, tmp_path: Path):
    text = markdown(summary)
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| scale | accelerometer rows |")
    assert [row.split(" | ")[0] for row in table[1:4]] == ["| real", "| 10", "| 100"]
    assert "| 100x: speed-up over the Spark baseline | 2.00x | >= 3x | NO |" in text
    paths = write_report(summary, tmp_path)
    assert json.loads(paths["json"].read_text())["targets"] == summary["targets"]
    assert paths["markdown"].read_text() == text
    assert paths["plot"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_step_times_are_read_from_the_run_log_in_every_format_dagster_writes():
    log = (
        'x - STEP_SUCCESS - Finished execution of step "customer_landing" in 8.3ms.\n'
        'x - STEP_SUCCESS - Finished execution of step "customer_trusted" in 5.31s.\n'
        'x - STEP_SUCCESS - Finished execution of step "customer_curated" in 4m52s.\n'
        'x - STEP_SUCCESS - Finished execution of step "machine_learning_curated" in 1h4m.\n'
        'x - STEP_START - Started execution of step "step_trainer_trusted".\n'
    )
    assert step_seconds(log) == pytest.approx(
        {
            "customer_landing": 0.0083,
            "customer_trusted": 5.31,
            "customer_curated": 292.0,
            "machine_learning_curated": 3840.0,
        }
    )


def test_audit_and_picture_times_are_read_from_the_commit_line_of_each_step():
    log = (
        "2026-12-02 04:05:52 +0000 - dagster - INFO - __ASSET_JOB - 61be - customer_landing - customer_landing: "
        "committed as Delta version 0 (51 rows, full build); build 0.120 s (pictures 0.417 s), audit 0.033 s, "
        "write 0.010 s, commit 0.020 s\n"
        "2026-12-02 04:05:53 +0000 - dagster - INFO - __ASSET_JOB - 61be - customer_trusted - customer_trusted: "
        "nothing changed, stays at Delta version 3 (25 rows); build 0.050 s (pictures 0.000 s), audit 1.500 s\n"
        "2026-12-02 04:05:54 +0000 - dagster - WARNING - __ASSET_JOB - 61be - customer_curated - "
        "chart privacy_funnel left out of the metadata: RuntimeError: audit 9 s\n"
    )
    assert audit_seconds(log) == {"customer_landing": 0.033, "customer_trusted": 1.5}
    assert picture_seconds(log) == {"customer_landing": 0.417, "customer_trusted": 0.0}
    start = "2026-12-02 04:05:52 +0000 - dagster - DEBUG - __ASSET_JOB - 61be - 7 - customer_landing - STEP_START - x\n"
    end = "2026-12-02 04:05:53 +0000 - dagster - DEBUG - __ASSET_JOB - 61be - 7 - customer_landing - STEP_SUCCESS - x\n"
    at = datetime.datetime(2026, 12, 2, 4, 5, 52, tzinfo=datetime.timezone.utc).timestamp()
    steps = step_breakdown(start + log + end, [(at - 5, 9 * MIB), (at + 0.5, 3 * MIB), (at + 1.5, 2 * MIB), (at + 9, 8 * MIB)])
    assert steps["customer_landing"] == {"build": 0.12, "pictures": 0.417, "audit": 0.033, "commit": 0.02, "peak_rss_bytes": 3 * MIB}
    assert steps["customer_trusted"]["commit"] == 0 and "peak_rss_bytes" not in steps["customer_trusted"]
    assert [scale_name(s) for s in ("real", "1x", "100", " 1000x")] == ["real", "1", "100", "1000"]


def test_ours_is_split_by_zone_and_the_rest_is_start_up():
    steps = {"customer_landing": 1.5, "accelerometer_landing": 2.0, "customer_trusted": 0.25, "machine_learning_curated": 0.75}
    result = scale("100", 8_000_000, [10, 20, 12], [30, 30, 30], [4, 4, 4], [100, 100, 100])
    for run in result.runs["ours"]:
        run["step_seconds"] = steps
        run["audit_seconds"] = {"customer_landing": 0.5}
    (summarized,) = summarize([result], 3, HOST)["scales"]
    assert summarized["ours_phase_seconds"] == {
        "landing": 3.0,
        "trusted": 0.25,
        "curated": 0.75,
        "checks": 0.5,
        "pictures": 0.0,  # a run without picture times in its log
        "start-up and Dagster": 12 - 4.5,  # the median run's wall time less its steps
    }
    assert "| 100 | 3.0 | 0.2 | 0.8 | 0.5 | 0.0 | 7.5 |" in markdown(summarize([result], 3, HOST))


def test_picture_times_are_taken_out_of_their_zones():
    result = scale("100", 8_000_000, [10, 20, 12], [30, 30, 30], [4, 4, 4], [100, 100, 100])
    for run in result.runs["ours"]:
        run["step_seconds"] = {"accelerometer_landing": 2.0, "machine_learning_curated": 1.0}
        run["audit_seconds"] = {"accelerometer_landing": 0.5}
        run["picture_seconds"] = {"accelerometer_landing": 0.5, "machine_learning_curated": 0.25}
    (summarized,) = summarize([result], 3, HOST)["scales"]
    assert summarized["ours_phase_seconds"] == pytest.approx(
        {"landing": 1.0, "trusted": 0.0, "curated": 0.75, "checks": 0.5, "pictures": 0.75, "start-up and Dagster": 9.0}
    )


def cluster_run(wall: float, python_mib: int) -> dict:
    return {
        "wall_seconds": wall,
        "peak_rss_bytes": (python_mib + 1100) * MIB,  # the run's tree: its Python and the driver JVM
        "python_peak_rss_bytes": python_mib * MIB,
        "cluster_peak_rss_bytes": 3000 * MIB,
        "cpu_seconds": 40.0,
        "cluster_cpu_seconds": 300.0,
        "cluster_start_seconds": 6.0,
        "application_in_master_log": True,
    }


@pytest.mark.parametrize(("python_mib", "met"), [(1200, False), (500, True)])
def test_the_cluster_runs_python_peak_is_judged_against_600_mb(python_mib: int, met: bool):
    result = scale("100", 8_000_000, [90, 80, 100], [180, 180, 180], [4, 4, 4], [1500, 1500, 1500])
    result.runs["cluster"] = [cluster_run(wall, python_mib) for wall in (300, 360, 330)]
    summary = summarize([result], 3, HOST)
    (scaled,) = summary["scales"]
    cluster = scaled["medians"]["cluster"]
    assert cluster["wall_seconds"] == 330 and cluster["python_peak_rss_bytes"] == python_mib * MIB
    assert cluster["cluster_peak_rss_bytes"] == 3000 * MIB and cluster["cluster_cpu_seconds"] == 300
    assert scaled["ratios"]["time_cluster_over_baseline"] == pytest.approx(330 / 180)
    assert scaled["ratios"]["time_cluster_over_ours"] == pytest.approx(330 / 90)
    (target,) = [t for t in summary["targets"] if t["target"].startswith("100x on the Spark cluster")]
    assert target["measured"] == pytest.approx(python_mib * MIB / 1e6) and target["limit"] == 600 and target["met"] is met
    text = markdown(summary)
    assert f"| 100 | 330.0 | 40.0 | 300.0 | 6.0 | {python_mib:,} | {python_mib + 1100:,} | 3,000 | 0.55 | 3.67 |" in text
    limit_row = f"| 100x on the Spark cluster: peak memory of the run's Python processes (JVMs excluded) | {python_mib * MIB / 1e6:.2f} MB | <= 600 MB | {'yes' if met else 'NO'} |"
    assert limit_row in text
