"""`python -m bench`: the lakehouse, the seeds' Spark jobs and a Dagster floor, timed on the same data.

For each scale, the source data is the real STEDI data (`real`) or what `stedi generate`
writes at that scale (kept under `<out>/data/` and reused by later benchmarks). Each run then
times, one after the other on the same machine:
- `ours`: `dagster asset materialize -m stedi_assets.definitions --select '*'`, every asset and check,
  into a fresh lake, as a user runs it;
- `cluster`: the same command with `STEDI_ENGINE=spark` on a Spark standalone cluster on loopback
  that the run starts and stops (cluster.py): a master and a worker JVM, one executor;
- `baseline`: the seeds' five Glue jobs as Spark SQL on local PySpark (seeds_baseline.py);
- `floor`: eight trivial assets through the same CLI and executor (floor.py).
Wall time and the peak memory of each command's process tree are measured from outside
(measure.py); medians over the runs go to the report (report.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from bench.measure import Measurement, measure
from stedi_assets.landing.json_lines import count_lines
from stedi_assets.landing.source import LandingSource

SOURCES = ("customer", "accelerometer", "step_trainer")
SYSTEMS = ("ours", "cluster", "baseline", "floor")
DEFAULT_SYSTEMS = ("ours", "baseline", "floor")
REAL = "real"
GENERATE_SEED = 1
# The `cluster` system's one worker: this machine's two cores and an executor of 3 GB (the
# executor joins the largest tables; its Python workers write the staged files beside it).
CLUSTER_CORES = 2
CLUSTER_MEMORY = "3g"
# Medians the report takes, beside wall time and peak memory, of the runs that have them.
METRICS = (
    "cpu_seconds",
    "python_peak_rss_bytes",
    "cluster_peak_rss_bytes",
    "cluster_cpu_seconds",
    "cluster_start_seconds",
)


@dataclass
class ScaleResult:
    """One scale's data and the measurements of every system on it."""

    scale: str
    source: str
    json_bytes: int
    rows: dict[str, int]
    runs: dict[str, list[dict]] = field(default_factory=dict)

    @property
    def input_rows(self) -> int:
        return sum(self.rows.values())

    def median(self, system: str, metric: str) -> float:
        return statistics.median(run[metric] for run in self.runs[system])

    def summary(self) -> dict:
        out = {**asdict(self), "input_rows": self.input_rows, "medians": {}}
        for system in self.runs:
            wall = self.median(system, "wall_seconds")
            out["medians"][system] = {
                "wall_seconds": wall,
                "peak_rss_bytes": self.median(system, "peak_rss_bytes"),
                "rows_per_second": self.input_rows / wall,
                **{m: self.median(system, m) for m in METRICS if all(m in run for run in self.runs[system])},
            }
        return out


_STEP_FINISHED = re.compile(r'Finished execution of step "(?P<step>[^"]+)" in (?P<took>[0-9.hms]+)\.')
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def step_seconds(log: str) -> dict[str, float]:
    """Each step's time from a run's log, where Dagster writes it as 8.3ms, 533ms, 5.31s, 4m52s or 1h4m."""
    return {
        m["step"]: sum(float(n) * _UNIT_SECONDS[unit] for n, unit in re.findall(r"([0-9.]+)(ms|h|m|s)", m["took"]))
        for m in _STEP_FINISHED.finditer(log)
    }


# The line a step logs when it commits (publishing._publish), as Dagster's CLI writes it:
# `... - <step key> - <table>: committed as Delta version 3 (...); build 0.9 s (pictures 0.8 s), audit 0.1 s, ...`
_COMMITTED = re.compile(
    r" - (?P<step>\w+) - \w+: (?:committed as|nothing changed, stays at) Delta version .*?; "
    r"build (?P<build>[0-9.]+) s \(pictures (?P<pictures>[0-9.]+) s\), audit (?P<audit>[0-9.]+) s"
    r"(?:,[^\n]*? commit (?P<commit>[0-9.]+) s)?"
)


def audit_seconds(log: str) -> dict[str, float]:
    """The time each step spent judging its rules, from the line it logs when it commits."""
    return {m["step"]: float(m["audit"]) for m in _COMMITTED.finditer(log)}


def picture_seconds(log: str) -> dict[str, float]:
    """The time each step spent on its pictures (charts and the numbers behind them), from the
    line it logs when it commits."""
    return {m["step"]: float(m["pictures"]) for m in _COMMITTED.finditer(log)}


def step_breakdown(log: str, samples: Sequence[tuple[float, int]] = ()) -> dict[str, dict[str, float]]:
    """Per step: its build (pictures included), pictures, audit and commit seconds, from the
    line it logs when it commits, and the peak memory of the run's processes while it ran
    (`samples` of measure.py against the step's start and end in the log, to the second)."""
    out = {
        m["step"]: {k: float(m[k] or 0) for k in ("build", "pictures", "audit", "commit")} for m in _COMMITTED.finditer(log)
    }
    for step, (start, end) in _step_windows(log).items():
        within = [rss for t, rss in samples if start <= t < end + 1]
        if within:
            out.setdefault(step, {})["peak_rss_bytes"] = max(within)
    return out


_STEP_EVENT = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [+-]\d{4}) - dagster - \w+ - [^\n]*? - (?P<step>\w+) - "
    r"(?P<event>STEP_START|STEP_SUCCESS|STEP_FAILURE) - ",
    re.M,
)


def _step_windows(log: str) -> dict[str, tuple[float, float]]:
    import datetime as dt

    windows: dict[str, list[float]] = {}
    for m in _STEP_EVENT.finditer(log):
        at = dt.datetime.strptime(m["at"], "%Y-%m-%d %H:%M:%S %z").timestamp()
        window = windows.setdefault(m["step"], [at, at])
        window[0 if m["event"] == "STEP_START" else 1] = at
    return {step: (start, end) for step, (start, end) in windows.items()}


def scale_name(scale: str) -> str:
    """`100x` or `100` -> `100`; `real` stays."""
    scale = scale.strip()
    return scale if scale == REAL else scale.removesuffix("x")


def bin_command(name: str) -> str:
    """A console script of the environment this runs in (dagster, stedi), as a user calls it."""
    return str(Path(sys.executable).parent / name)


# The checkout: the harness (bench/) lies beside the package, not in it.
CHECKOUT = Path(__file__).resolve().parents[1]


def clean_env(**settings: str) -> dict[str, str]:
    """This environment without any STEDI_* setting of the caller, plus `settings`; the
    checkout on PYTHONPATH, so that runs in other folders find `bench` (the floor, the seeds)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEDI_")}
    path = os.pathsep.join(p for p in (str(CHECKOUT), env.get("PYTHONPATH", "")) if p)
    return {**env, "PYTHONPATH": path, **settings}


def prepare_source(
    scale: str, data_dir: Path, real_source: Path, log: Callable[[str], None], min_available: int = 0
) -> Path:
    """The landing data of a scale: the real data, or `stedi generate`'s, made once and reused
    (under the same watchdog as the runs)."""
    if scale == REAL:
        if not (real_source / "customer").is_dir():
            raise FileNotFoundError(f"real STEDI data not found at {real_source}")
        return real_source
    target = data_dir / f"scale-{scale}"
    marker = target / "_generated.json"
    command = [bin_command("stedi"), "generate", str(target), "--scale", scale, "--seed", str(GENERATE_SEED)]
    if marker.is_file() and json.loads(marker.read_text()).get("command") == command[2:]:
        return target
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    log(f"generating scale {scale} into {target}")
    generated = measure(
        command, clean_env(), target.parent, target.parent / f"generate-{scale}.log", min_available=min_available
    )
    _check(generated, f"stedi generate --scale {scale}", target.parent / f"generate-{scale}.log")
    marker.write_text(
        json.dumps({"command": command[2:], "wall_seconds": generated.wall_seconds, "peak_rss_bytes": generated.peak_rss_bytes})
    )
    return target


def source_shape(source: Path) -> tuple[int, dict[str, int]]:
    """Bytes of landing JSON, and its non-blank lines (records) per source: the files the
    landing assets read, counted as they count them."""
    landing = LandingSource(root=str(source))
    total, rows = 0, dict.fromkeys(SOURCES, 0)
    for name in SOURCES:
        for _, data in landing.read_all(name):
            total += data.size
            rows[name] += count_lines(data)
    return total, rows


def commands(source: Path, work: Path) -> dict[str, tuple[list[str], dict[str, str]]]:
    """Each system's command and environment, writing under `work` (the cluster's master URL
    is added when the cluster has started: `run_on_cluster`)."""
    dagster = bin_command("dagster")
    ours = [dagster, "asset", "materialize", "-m", "stedi_assets.definitions", "--select", "*"]
    lake = {"STEDI_SOURCE": str(source), "STEDI_LAKE": str(work / "lake")}
    return {
        "ours": (ours, clean_env(**lake, STEDI_ENGINE="duckdb")),
        "cluster": (ours, clean_env(**lake, STEDI_ENGINE="spark")),
        "baseline": (
            [sys.executable, "-m", "bench.seeds_baseline", str(source), str(work / "seeds")],
            clean_env(),
        ),
        "floor": ([dagster, "asset", "materialize", "-m", "bench.floor", "--select", "*"], clean_env()),
    }


def run_on_cluster(
    command: list[str], env: dict[str, str], work: Path, log_file: Path, root: Path, min_available: int = 0
) -> tuple[Measurement, dict]:
    """`command` on a standalone cluster started for it under `root` (its daemons' logs, the
    executors' in `work/`) and stopped after it, whatever happens. Beside the command's own
    measurement: the cluster's processes' peak memory and CPU seconds while the command ran
    (master, worker, the executor and its Python workers), the time it took to start, and
    whether the master's log shows the application."""
    from bench.cluster import start_cluster
    from stedi_assets.engine.spark_engine import APP_NAME

    conf = root / "conf"  # the driver's spark-defaults.conf: the executors' memory
    conf.mkdir(parents=True, exist_ok=True)
    (conf / "spark-defaults.conf").write_text(f"spark.executor.memory {CLUSTER_MEMORY}\n")
    started = time.perf_counter()
    cluster = start_cluster(root, cores=CLUSTER_CORES, memory=CLUSTER_MEMORY)
    start_seconds = time.perf_counter() - started
    try:
        env = {**env, "STEDI_SPARK_MASTER": cluster.url, "SPARK_CONF_DIR": str(conf)}
        measured = measure(command, env, work, log_file, min_available=min_available, daemons=cluster.pids)
    finally:
        cluster.stop()
    return measured, {
        "cluster_peak_rss_bytes": measured.daemons_peak_rss_bytes,
        "cluster_cpu_seconds": measured.daemons_cpu_seconds,
        "cluster_start_seconds": start_seconds,
        "application_in_master_log": f"Registered app {APP_NAME}" in cluster.master_log,
    }


def run_benchmark(
    scales: Sequence[str],
    runs: int,
    out: Path,
    real_source: Path,
    systems: Sequence[str] = DEFAULT_SYSTEMS,
    log: Callable[[str], None] = print,
    min_available: int = 0,
    data: Path | None = None,
) -> list[ScaleResult]:
    """Measure every system `runs` times at every scale; the runs of one scale interleave the
    systems, so that a noisy moment of the machine hits them alike. Generated scales are kept
    in `data` (default `<out>/data`)."""
    out = out.resolve()
    logs, work = out / "logs", out / "work"
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    for scale in map(scale_name, scales):
        source = prepare_source(scale, (data or out / "data").resolve(), real_source.resolve(), log, min_available)
        json_bytes, rows = source_shape(source)
        result = ScaleResult(scale, str(source), json_bytes, rows, {s: [] for s in systems})
        for run in range(1, runs + 1):
            for system in systems:
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir(parents=True)
                command, env = commands(source, work)[system]
                log_file = logs / f"{scale}-{system}-{run}.log"
                cluster: dict = {}
                if system == "cluster":
                    root = logs / f"{scale}-{system}-{run}"
                    measured, cluster = run_on_cluster(command, env, work, log_file, root, min_available)
                else:
                    measured = measure(command, env, work, log_file, min_available=min_available)
                _check(measured, f"{system} at scale {scale}", log_file)
                if cluster and not cluster["application_in_master_log"]:
                    raise RuntimeError(f"{system} at scale {scale} did not run on the cluster: see {root / 'master.log'}")
                record = {
                    "wall_seconds": measured.wall_seconds,
                    "peak_rss_bytes": measured.peak_rss_bytes,
                    "cpu_seconds": measured.cpu_seconds,
                    "load_average_1m": os.getloadavg()[0],  # how busy the machine was meanwhile
                    **cluster,
                }
                if system in ("ours", "cluster"):
                    text = log_file.read_text(errors="replace")
                    record["step_seconds"] = step_seconds(text)
                    record["audit_seconds"] = audit_seconds(text)
                    record["picture_seconds"] = picture_seconds(text)
                    # Each step's peak: of the whole tree for ours, of the Python processes on the cluster.
                    record["steps"] = step_breakdown(text, measured.python_samples if cluster else measured.samples)
                if cluster:
                    record["python_peak_rss_bytes"] = measured.python_peak_rss_bytes
                result.runs[system].append(record)
                log(
                    f"scale {scale:>5} run {run}/{runs} {system:<8} {measured.wall_seconds:8.2f} s "
                    f"{measured.peak_rss_bytes / 2**20:8.0f} MiB {measured.cpu_seconds:8.1f} s CPU "
                    f"(load {record['load_average_1m']:.1f})"
                    + (
                        f"; Python {measured.python_peak_rss_bytes / 2**20:.0f} MiB, cluster "
                        f"{cluster['cluster_peak_rss_bytes'] / 2**20:.0f} MiB, {cluster['cluster_cpu_seconds']:.1f} s CPU"
                        if cluster
                        else ""
                    )
                )
        shutil.rmtree(work, ignore_errors=True)
        results.append(result)
    return results


def _check(measured: Measurement, what: str, log_file: Path) -> None:
    if measured.killed:
        raise RuntimeError(f"{what} was killed by the watchdog: {measured.killed} (log: {log_file})")
    if measured.returncode != 0:
        tail = log_file.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{what} exited {measured.returncode} (log: {log_file}):\n{tail}")
