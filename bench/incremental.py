"""`python -m bench --incremental`: what one delivery costs after a full run, and how long it takes
to reach the ML table under `dagster dev`.

For each scale (`stedi generate --scale N --seed 1`, made once and reused, as runner.py does):

1. a full run, `dagster asset materialize -m stedi_assets.definitions --select '*'`, into a fresh lake;
2. one new accelerometer file and one new step trainer file, each with 1% of that source's
   rows: a 1% sample of the step trainer readings and their owners' phone readings at the same
   times, all moved ten days on, so they are new readings that pair into new ML rows;
3. the same command again: incremental by default;
4. `dagster dev` on that lake, with the sensors and automation as the README starts them
   (every STEDI_SENSOR_INTERVAL seconds, default 30): another such pair of files is dropped
   into the source and the time until the ML table's next Delta version is measured.

Each run's cost is the sum of its step durations, from the "Finished execution of step"
lines of Dagster's event log (runner.step_seconds), beside its wall time; the target is the
incremental run's step time at most 15% of the full run's. The source is a folder of links to
the generated files, so the deliveries never touch the cached data.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from deltalake import DeltaTable

from bench.measure import measure
from bench.runner import _check, bin_command, clean_env, prepare_source, scale_name, step_seconds
from stedi_assets.engine.duckdb_engine import DuckDBEngine
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.store import LocalStore
from stedi_assets.lakehouse import published

TARGET_RATIO = 0.15
DELIVERY_SHARE = 0.01
DAY_MS = 86_400_000
LATENCY_TIMEOUT = 600

# A 1% sample of step trainer readings moved `shift` on, and their owners' phone readings at
# those times: new readings of existing devices and customers that pair in the ML table.
_STEPS = """
SELECT s.sensorReadingTime + {shift} AS sensorReadingTime, s.serialNumber, s.distanceFromObject
FROM step_trainer_landing AS s
WHERE hash(s.serialNumber, s.sensorReadingTime) % {modulus} = 0
"""
_PHONES = """
SELECT a.user, a.timestamp + {shift} AS timestamp, a.x, a.y, a.z
FROM accelerometer_landing AS a
JOIN (SELECT DISTINCT email, serialNumber FROM customer_landing) AS c ON c.email = a.user
JOIN step_trainer_landing AS s ON s.serialNumber = c.serialNumber AND s.sensorReadingTime = a.timestamp
WHERE hash(s.serialNumber, s.sensorReadingTime) % {modulus} = 0
"""


def linked_source(generated: Path, target: Path) -> Path:
    """A source folder of hard links to the generated files (copies across file systems): the
    landing source never follows a symbolic link out of its root."""
    shutil.rmtree(target, ignore_errors=True)
    for path in generated.rglob("*.json"):
        link = target / path.relative_to(generated)
        link.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, link)
        except OSError:
            shutil.copy2(path, link)
    return target


def deliver(lake: Path, source: Path, days: int) -> dict[str, int]:
    """Write a new accelerometer file and a new step trainer file (about 1% of each source's
    rows) made from the published landing tables, `days` on; returns their row counts."""
    tables = published(Lake(LocalStore(lake)), ["step_trainer_landing", "accelerometer_landing", "customer_landing"])
    modulus = round(1 / DELIVERY_SHARE)
    rows = {}
    for name, sql, folder in (("step_trainer", _STEPS, "step_trainer"), ("accelerometer", _PHONES, "accelerometer")):
        data = DuckDBEngine().query(sql.format(shift=days * DAY_MS, modulus=modulus), tables)
        path = source / folder / "landing" / f"{folder}-delivery-{days}.json"
        tmp = path.with_suffix(".tmp")  # written whole, then renamed: the sensor never sees half a file
        with tmp.open("w") as out:
            for record in data.to_pylist():
                out.write(json.dumps(record) + "\n")
        tmp.rename(path)
        rows[name] = data.num_rows
    return rows


def _run(command: list[str], env: dict[str, str], work: Path, log: Path, what: str) -> dict:
    measured = measure(command, env, work, log)
    _check(measured, what, log)
    steps = step_seconds(log.read_text(errors="replace"))
    return {"wall_seconds": measured.wall_seconds, "step_seconds": sum(steps.values()), "steps": steps,
            "peak_rss_bytes": measured.peak_rss_bytes, "load_average_1m": os.getloadavg()[0]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


REPO = Path(__file__).resolve().parents[1]


def dagster_home(work: Path) -> Path:
    """An instance like the project's, shared by the CLI runs and `dagster dev`: the automation
    follows materializations it has seen (a table no run of the instance materialized counts
    as missing, and eager waits for missing inputs)."""
    home = work / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    return home


def dev_latency(source: Path, lake: Path, home: Path, work: Path, log: Path, report: Callable[[str], None]) -> dict:
    """Start `dagster dev` on the lake, wait until its sensors have nothing to do, drop a
    delivery and time it to the ML table's next Delta version."""
    from stedi_assets.settings import Settings

    repo = REPO
    env = clean_env(STEDI_SOURCE=str(source), STEDI_LAKE=str(lake), DAGSTER_HOME=str(home))
    interval = Settings.from_env(os.environ).sensor_interval_seconds
    with log.open("wb") as out:
        process = subprocess.Popen(
            [bin_command("dagster"), "dev", "-w", str(repo / "workspace.yaml"), "-h", "127.0.0.1", "-p", str(_free_port())],
            env=env, cwd=repo, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
        )
    try:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stopped benchmark stops its dagster dev too
        time.sleep(interval + 30)  # started, and a first tick of every sensor found nothing new
        ml = DeltaTable(str(lake / "machine_learning" / "curated"))
        version = ml.version()
        rows = deliver(lake, source, days=20)
        arrived = time.perf_counter()
        report(f"delivered {rows} under dagster dev; waiting for machine_learning_curated after version {version}")
        while True:
            ml.update_incremental()
            if ml.version() > version:
                break
            if time.perf_counter() - arrived > LATENCY_TIMEOUT or process.poll() is not None:
                raise RuntimeError(f"machine_learning_curated not updated {LATENCY_TIMEOUT}s after the delivery (log: {log})")
            time.sleep(0.5)
        return {"seconds": time.perf_counter() - arrived, "sensor_interval_seconds": interval, "rows": rows}
    finally:
        os.killpg(process.pid, 15)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()


def run_incremental_benchmark(
    scales: list[str], out: Path, real_source: Path, log: Callable[[str], None] = print, data: Path | None = None
) -> list[dict]:
    out = out.resolve()
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    results = []
    for scale in map(scale_name, scales):
        generated = prepare_source(scale, (data or out / "data").resolve(), real_source.resolve(), log)
        work = out / "work-incremental"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        source, lake = linked_source(generated, work / "source"), work / "lake"
        command = [bin_command("dagster"), "asset", "materialize", "-m", "stedi_assets.definitions", "--select", "*"]
        home = dagster_home(work)
        env = clean_env(STEDI_SOURCE=str(source), STEDI_LAKE=str(lake), DAGSTER_HOME=str(home))
        full = _run(command, env, work, logs / f"{scale}-incremental-full.log", f"full run at scale {scale}")
        log(f"scale {scale}: full run {full['wall_seconds']:.1f} s wall, {full['step_seconds']:.1f} s in steps")
        delivered = deliver(lake, source, days=10)
        incremental = _run(command, env, work, logs / f"{scale}-incremental-run.log", f"incremental run at scale {scale}")
        log(f"scale {scale}: delivered {delivered}; incremental run {incremental['wall_seconds']:.1f} s wall, "
            f"{incremental['step_seconds']:.1f} s in steps")
        latency = dev_latency(source, lake, home, work, logs / f"{scale}-incremental-dagster-dev.log", log)
        log(f"scale {scale}: arrival to an updated ML table under dagster dev: {latency['seconds']:.0f} s")
        results.append({
            "scale": scale,
            "delivered_rows": delivered,
            "full": full,
            "incremental": incremental,
            "step_ratio": incremental["step_seconds"] / full["step_seconds"],
            "wall_ratio": incremental["wall_seconds"] / full["wall_seconds"],
            "dagster_dev_latency": latency,
            "target_step_ratio": TARGET_RATIO,
        })
        shutil.rmtree(work, ignore_errors=True)
    return results


def markdown(results: list[dict]) -> str:
    lines = [
        "| scale | delivered rows (accelerometer + step trainer) | full run: steps s | full run: wall s "
        "| incremental run: steps s | incremental run: wall s | steps ratio | wall ratio "
        "| target (steps) | arrival -> ML table under dagster dev s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        d, latency = r["delivered_rows"], r["dagster_dev_latency"]
        met = "met" if r["step_ratio"] <= r["target_step_ratio"] else "NOT met"
        lines.append(
            f"| {r['scale']} | {d['accelerometer']:,} + {d['step_trainer']:,} | {r['full']['step_seconds']:.1f} "
            f"| {r['full']['wall_seconds']:.1f} | {r['incremental']['step_seconds']:.1f} | {r['incremental']['wall_seconds']:.1f} "
            f"| {r['step_ratio']:.1%} | {r['wall_ratio']:.1%} | <= {r['target_step_ratio']:.0%}: {met} "
            f"| {latency['seconds']:.0f} (ticks every {latency['sensor_interval_seconds']} s) |"
        )
    return "\n".join(lines) + "\n"


def write_report(results: list[dict], host: dict, out: Path) -> dict[str, Path]:
    paths = {"json": out / "incremental.json", "markdown": out / "incremental.md"}
    paths["json"].write_text(json.dumps({"machine": host, "scales": results}, indent=1) + "\n")
    paths["markdown"].write_text(markdown(results))
    return paths

