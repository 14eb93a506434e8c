"""The report of `python -m bench`: the measured table, the targets, JSON, Markdown and a plot.

The targets live here, in the benchmark's output, and never in a timed test. Times and
memory are the medians of the runs; ratios compare medians measured on the same data.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import matplotlib  # imported up front: a missing plotter should fail before the runs, not after

from bench.runner import REAL, ScaleResult
from stedi_assets.tables import TABLES

MIB = 2**20
GIB = 2**30
MB = 10**6
MEMORY_LIMIT_100X = 2 * GIB
PYTHON_LIMIT_CLUSTER = 600 * MB  # issue 23: the Dagster run's Python processes on a cluster, JVMs excluded
NAMES = {
    "ours": "ours (dagster + DuckDB)",
    "cluster": "ours on a Spark cluster",
    "baseline": "seeds' jobs on Spark",
    "floor": "Dagster floor",
}
STEPPED = ("ours", "cluster")  # the systems whose runs are broken down by step
STARTUP = "start-up and Dagster"
PICTURES = "pictures"  # within the asset steps: the charts of the UI (charts.py), taken out of their zones
PHASES = ("landing", "trusted", "curated", "checks", PICTURES, STARTUP)
STEP_FIELDS = ("build", "pictures", "audit", "commit", "peak_rss_bytes")  # runner.step_breakdown


def machine() -> dict:
    """What the numbers were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in _proc("cpuinfo") if line.startswith("model name")), "")
    mem_kb = next((int(line.split()[1]) for line in _proc("meminfo") if line.startswith("MemTotal")), 0)
    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory_bytes": mem_kb * 1024,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {p: version(p) for p in ("dagster", "duckdb", "pyarrow", "pyspark")},
        "load_average": os.getloadavg(),
    }


def _proc(name: str) -> list[str]:
    try:
        return Path("/proc", name).read_text().splitlines()
    except OSError:
        return []


def summarize(results: Sequence[ScaleResult], runs: int, host: dict) -> dict:
    scales = [r.summary() for r in results]
    for scale in scales:
        medians = scale["medians"]
        ratios = {}
        if "ours" in medians and "baseline" in medians:
            ratios["time_ours_over_baseline"] = medians["ours"]["wall_seconds"] / medians["baseline"]["wall_seconds"]
            ratios["memory_ours_over_baseline"] = medians["ours"]["peak_rss_bytes"] / medians["baseline"]["peak_rss_bytes"]
        if "ours" in medians and "floor" in medians:
            ratios["time_ours_over_floor"] = medians["ours"]["wall_seconds"] / medians["floor"]["wall_seconds"]
        for other in ("baseline", "ours"):
            if "cluster" in medians and other in medians:
                ratios[f"time_cluster_over_{other}"] = medians["cluster"]["wall_seconds"] / medians[other]["wall_seconds"]
        scale["ratios"] = ratios
        for system in STEPPED:
            done = scale["runs"].get(system, [])
            if done and all("step_seconds" in run for run in done):
                scale[f"{system}_phase_seconds"] = {p: statistics.median(phases(run)[p] for run in done) for p in PHASES}
            if done and all("steps" in run for run in done):
                scale[f"{system}_steps"] = {
                    step: {k: statistics.median(run["steps"].get(step, {}).get(k, 0) for run in done) for k in STEP_FIELDS}
                    for step in done[0]["steps"]
                }
    summary = {"machine": host, "runs": runs, "scales": scales}
    summary["targets"] = targets(summary)
    summary["capacity"] = capacity(summary)
    return summary


def phases(run: dict) -> dict[str, float]:
    """A run of ours split by zone: the times of its asset steps less the time each spent
    judging its rules and drawing its pictures, those times (checks, pictures), and the rest
    of the wall time (starting Python and Dagster, the run's events)."""
    out = dict.fromkeys(PHASES, 0.0)
    audits, pictures = run.get("audit_seconds", {}), run.get("picture_seconds", {})
    for step, seconds in run["step_seconds"].items():
        judged = min(audits.get(step, 0.0), seconds)
        drawn = min(pictures.get(step, 0.0), seconds - judged)
        out[TABLES[step].zone] += seconds - judged - drawn
        out["checks"] += judged
        out[PICTURES] += drawn
    out[STARTUP] = run["wall_seconds"] - sum(run["step_seconds"].values())
    return out


def _scale(summary: dict, name: str) -> dict | None:
    return next((s for s in summary["scales"] if s["scale"] == name), None)


def _target(name: str, measured: float | None, limit: float, at_most: bool, unit: str = "") -> dict:
    met = None if measured is None else (measured <= limit if at_most else measured >= limit)
    return {"target": name, "measured": measured, "limit": limit, "at_most": at_most, "unit": unit, "met": met}


def targets(summary: dict) -> list[dict]:
    """The issue's targets, each with its measured value (None when that scale was not run)."""
    real, x10, x100, x1000 = (_scale(summary, name) for name in (REAL, "10", "100", "1000"))

    def ratio(scale: dict | None, key: str, invert: bool = False) -> float | None:
        value = None if scale is None else scale["ratios"].get(key)
        return None if value is None else (1 / value if invert else value)

    def growth(metric: str) -> float | None:
        """How much faster than the data a metric grew from 10x to 100x (1 = linearly)."""
        if x10 is None or x100 is None or "ours" not in x10["medians"]:
            return None
        data = x100["rows"]["accelerometer"] / x10["rows"]["accelerometer"]
        return x100["medians"]["ours"][metric] / x10["medians"]["ours"][metric] / data

    def ours(scale: dict | None, metric: str) -> float | None:
        return None if scale is None or "ours" not in scale["medians"] else scale["medians"]["ours"][metric]

    peak_100 = None if ours(x100, "peak_rss_bytes") is None else ours(x100, "peak_rss_bytes") / GIB
    peak_1000 = None if ours(x1000, "peak_rss_bytes") is None else ours(x1000, "peak_rss_bytes") / GIB
    time_1000 = None if ours(x1000, "wall_seconds") is None or ours(x100, "wall_seconds") is None else (
        ours(x1000, "wall_seconds") / ours(x100, "wall_seconds")
    )
    on_cluster = None if x100 is None else x100["medians"].get("cluster", {}).get("python_peak_rss_bytes")
    return [
        _target("real data: ours / Dagster floor, time", ratio(real, "time_ours_over_floor"), 1.25, at_most=True, unit="x"),
        _target("real data: speed-up over the Spark baseline", ratio(real, "time_ours_over_baseline", True), 4, False, "x"),
        _target("100x: speed-up over the Spark baseline", ratio(x100, "time_ours_over_baseline", True), 3, False, "x"),
        _target("100x: peak memory of ours", peak_100, MEMORY_LIMIT_100X / GIB, at_most=True, unit=" GiB"),
        _target("10x -> 100x: time growth / data growth", growth("wall_seconds"), 1, at_most=True, unit="x"),
        _target("10x -> 100x: memory growth / data growth", growth("peak_rss_bytes"), 1, at_most=True, unit="x"),
        _target("1000x: peak memory of ours", peak_1000, MEMORY_LIMIT_100X / GIB, at_most=True, unit=" GiB"),
        _target("1000x: time / the 100x time", time_1000, 10, at_most=True, unit="x"),
        _target("1000x: speed-up over the Spark baseline", ratio(x1000, "time_ours_over_baseline", True), 3, False, "x"),
        _target(
            "100x on the Spark cluster: peak memory of the run's Python processes (JVMs excluded)",
            None if on_cluster is None else on_cluster / MB, PYTHON_LIMIT_CLUSTER / MB, at_most=True, unit=" MB",
        ),
    ]


def capacity(summary: dict) -> dict | None:
    """Memory per million accelerometer rows between the two largest generated scales, and the
    scale at which ours would fill this machine's memory, extrapolated linearly."""
    measured = sorted(
        (s for s in summary["scales"] if s["scale"] != REAL and "ours" in s["medians"]),
        key=lambda s: s["rows"]["accelerometer"],
    )
    if len(measured) < 2:
        return None
    low, high = measured[-2], measured[-1]
    rows = high["rows"]["accelerometer"] - low["rows"]["accelerometer"]
    memory = high["medians"]["ours"]["peak_rss_bytes"] - low["medians"]["ours"]["peak_rss_bytes"]
    if rows <= 0 or memory <= 0:
        return None
    per_million = memory / rows * 1e6
    rows_per_scale = high["rows"]["accelerometer"] / float(high["scale"])
    spare = summary["machine"]["memory_bytes"] - high["medians"]["ours"]["peak_rss_bytes"]
    largest_rows = high["rows"]["accelerometer"] + spare / per_million * 1e6
    return {
        "between_scales": [low["scale"], high["scale"]],
        "bytes_per_million_accelerometer_rows": per_million,
        "largest_accelerometer_rows": largest_rows,
        "largest_scale": largest_rows / rows_per_scale,
        "memory_bytes": summary["machine"]["memory_bytes"],
    }


def markdown(summary: dict) -> str:
    host = summary["machine"]
    systems = [s for s in NAMES if any(s in x["medians"] for x in summary["scales"])]
    header = ["scale", "accelerometer rows", "JSON MiB"]
    header += [f"{NAMES[s]} s" for s in systems]
    header += [f"{NAMES[s]} peak MiB" for s in systems if s != "floor"]
    header += [f"{NAMES[s]} rows/s" for s in systems if s != "floor"]
    header += ["ours / Spark time", "ours / floor time", "ours / Spark memory"]
    lines = [
        f"Medians of {summary['runs']} run(s) on {host['cpus']} cores ({host['cpu_model']}), "
        f"{host['memory_bytes'] / GIB:.0f} GiB RAM, {host['platform']}; Python {host['python']}, "
        + ", ".join(f"{k} {v}" for k, v in host["versions"].items())
        + ". Rows/s counts every landing record (customer, accelerometer and step trainer).",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for scale in summary["scales"]:
        m, r = scale["medians"], scale["ratios"]
        cells = [scale["scale"], f"{scale['rows']['accelerometer']:,}", f"{scale['json_bytes'] / MIB:,.0f}"]
        cells += [f"{m[s]['wall_seconds']:.1f}" for s in systems]
        cells += [f"{m[s]['peak_rss_bytes'] / MIB:,.0f}" for s in systems if s != "floor"]
        cells += [f"{m[s]['rows_per_second']:,.0f}" for s in systems if s != "floor"]
        cells += [_num(r.get(k)) for k in ("time_ours_over_baseline", "time_ours_over_floor", "memory_ours_over_baseline")]
        lines.append("| " + " | ".join(cells) + " |")
    if clustered := [s for s in summary["scales"] if "cluster" in s["medians"]]:
        lines += [
            "",
            "Ours on the Spark cluster (a master, a worker and its executor on loopback, started for each run): peak "
            "memory of the Dagster run's Python processes (the CLI and its Python descendants; every JVM and what it "
            "starts left out), of the run's whole process tree (with the driver JVM), and of the cluster (master, "
            "worker, the executor and its Python workers); CPU seconds of the run's processes and of the cluster's "
            "while it ran (medians):",
            "",
            "| scale | wall s | run CPU s | cluster CPU s | cluster start s | Python peak MiB | run tree peak MiB | cluster peak MiB | Spark / cluster time | cluster / DuckDB time |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for scale in clustered:
            c, r = scale["medians"]["cluster"], scale["ratios"]
            cells = [f"{c['wall_seconds']:.1f}", f"{c['cpu_seconds']:.1f}", f"{c['cluster_cpu_seconds']:.1f}"]
            cells += [f"{c['cluster_start_seconds']:.1f}"]
            cells += [f"{c[k] / MIB:,.0f}" for k in ("python_peak_rss_bytes", "peak_rss_bytes", "cluster_peak_rss_bytes")]
            spark = r.get("time_cluster_over_baseline")
            cells += [_num(None if spark is None else 1 / spark), _num(r.get("time_cluster_over_ours"))]
            lines.append(f"| {scale['scale']} | " + " | ".join(cells) + " |")
    for system in STEPPED:
        lines += _step_tables(summary, system)
    lines += ["", "| target | measured | limit | met |", "|---|---|---|---|"]
    for t in summary["targets"]:
        limit = f"{'<=' if t['at_most'] else '>='} {t['limit']:g}{t['unit']}"
        met = "not measured" if t["met"] is None else ("yes" if t["met"] else "NO")
        lines.append(f"| {t['target']} | {_num(t['measured'])}{t['unit'] if t['measured'] is not None else ''} | {limit} | {met} |")
    if cap := summary["capacity"]:
        lines += [
            "",
            f"Memory per million accelerometer rows (from {cap['between_scales'][0]}x to {cap['between_scales'][1]}x): "
            f"{cap['bytes_per_million_accelerometer_rows'] / MIB:,.0f} MiB. At that rate ours fills this machine's "
            f"{cap['memory_bytes'] / GIB:.0f} GiB at about {cap['largest_scale']:,.0f}x "
            f"({cap['largest_accelerometer_rows'] / 1e6:,.0f} million accelerometer rows).",
        ]
    return "\n".join(lines) + "\n"


def _step_tables(summary: dict, system: str) -> list[str]:
    """Where a system's runs spend their time, by zone and by step."""
    lines, name = [], "ours" if system == "ours" else NAMES[system]
    if broken_down := [s for s in summary["scales"] if f"{system}_phase_seconds" in s]:
        lines += [
            "",
            f"Where {name} spends its time, in seconds (medians; checks: judging the rules, and pictures: drawing the charts, both inside each step and not counted in its zone):",
            "",
            "| scale | " + " | ".join(PHASES) + " |",
            "|" + "---|" * (len(PHASES) + 1),
        ]
        for scale in broken_down:
            phase = scale[f"{system}_phase_seconds"]
            lines.append(f"| {scale['scale']} | " + " | ".join(f"{phase[p]:.1f}" for p in PHASES) + " |")
    if stepped := [s for s in summary["scales"] if f"{system}_steps" in s]:
        whose = "the run's Python processes (JVMs excluded)" if system == "cluster" else "the run's processes"
        lines += [
            "",
            f"Each step of {name}: seconds to build (pictures included), of which pictures, to judge its rules, to commit; "
            f"and the peak memory of {whose} while it ran (medians):",
            "",
            "| scale | step | build s | pictures s | audit s | commit s | peak MiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for scale in stepped:
            for step, f in scale[f"{system}_steps"].items():
                lines.append(
                    f"| {scale['scale']} | {step} | {f['build']:.2f} | {f['pictures']:.2f} | {f['audit']:.2f} | "
                    f"{f['commit']:.2f} | {f['peak_rss_bytes'] / MIB:,.0f} |"
                )
    return lines


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def plot(summary: dict, path: Path) -> None:
    """Wall time and peak memory against accelerometer rows, ours vs the Spark baseline."""
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    plain = FuncFormatter(lambda value, _: f"{value:g}")

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(10, 4), dpi=80)
    styles = {"ours": ("tab:blue", "o"), "cluster": ("tab:green", "D"), "baseline": ("tab:orange", "s"), "floor": ("tab:gray", "^")}
    for system, (color, marker) in styles.items():
        scales = [s for s in summary["scales"] if system in s["medians"]]
        generated = sorted((s for s in scales if s["scale"] != REAL), key=lambda s: s["rows"]["accelerometer"])
        real = [s for s in scales if s["scale"] == REAL]
        metrics = [(time_axis, "wall_seconds", 1)] + ([] if system == "floor" else [(memory_axis, "peak_rss_bytes", MIB)])
        for axis, metric, unit in metrics:
            rows = [s["rows"]["accelerometer"] for s in generated]
            axis.plot(rows, [s["medians"][system][metric] / unit for s in generated], marker=marker, color=color, label=NAMES[system])
            for s in real:
                axis.scatter([s["rows"]["accelerometer"]], [s["medians"][system][metric] / unit], marker="*", s=120, color=color)
    for axis, label in ((time_axis, "wall seconds (median)"), (memory_axis, "peak memory, MiB (median)")):
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.yaxis.set_major_formatter(plain)
        axis.yaxis.set_minor_formatter(plain)
        axis.set_xlabel("accelerometer rows (star: the real data)")
        axis.set_ylabel(label)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    time_axis.set_title("Time")
    memory_axis.set_title("Memory")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def write_report(summary: dict, out: Path) -> dict[str, Path]:
    """bench.json, bench.md and bench.png under `out`."""
    paths = {"json": out / "bench.json", "markdown": out / "bench.md", "plot": out / "bench.png"}
    paths["json"].write_text(json.dumps(summary, indent=1) + "\n")
    paths["markdown"].write_text(markdown(summary))
    plot(summary, paths["plot"])
    return paths
