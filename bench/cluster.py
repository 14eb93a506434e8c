"""A Spark standalone cluster on loopback, for the tests (stedi_assets_tests/engine/cluster.py)
and the benchmark's `cluster` system: a master and a worker, each a JVM of its own, started with
the pyspark package's own launcher (`bin/spark-class`), as a cluster's nodes start them. Bound to
127.0.0.1 only (SPARK_LOCAL_IP binds the RPC endpoints and web UIs there), small daemons, one
worker whose executors get `cores` and `memory`."""

from __future__ import annotations

import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pyspark

REPO = Path(__file__).resolve().parents[1]  # the checkout: bench/ lies beside the package
SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"
STARTED_AT = re.compile(r"Starting Spark master at (spark://127\.0\.0\.1:\d+)")
REGISTERED = "Successfully registered with master"
PR_SET_PDEATHSIG = 1


@dataclass
class StandaloneCluster:
    url: str
    root: Path
    processes: tuple[subprocess.Popen, ...]

    @property
    def pids(self) -> tuple[int, ...]:
        """The master's and the worker's processes: the worker's executors descend from it."""
        return tuple(process.pid for process in self.processes)

    @property
    def master_log(self) -> str:
        return (self.root / "master.log").read_text(errors="replace")

    def stop(self) -> None:
        """Stop the worker (which stops its executors), then the master: each by its process
        group, which `start_cluster` started."""
        for process in reversed(self.processes):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


def _die_with_parent() -> None:
    """In the daemon's process before it starts: it is sent SIGTERM when the process that
    started it ends, even killed (a test's timeout, an interrupted benchmark), so that no JVM
    outlives it (Linux's prctl)."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _daemon(root: Path, name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen:
    log = open(root / f"{name}.log", "wb")  # noqa: SIM115 - the daemon writes it until it stops
    return subprocess.Popen(
        [str(SPARK_CLASS), *args],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=root,
        start_new_session=True,
        preexec_fn=_die_with_parent if sys.platform == "linux" else None,
    )


def _wait_for(root: Path, name: str, process: subprocess.Popen, pattern: re.Pattern | str, timeout: float = 90) -> re.Match | str:
    deadline = time.monotonic() + timeout
    log = root / f"{name}.log"
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        found = pattern.search(text) if isinstance(pattern, re.Pattern) else (pattern if pattern in text else None)
        if found:
            return found
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise RuntimeError(f"the Spark {name} did not start (exit {process.poll()}):\n{log.read_text(errors='replace')[-4000:]}")


def start_cluster(root: Path, cores: int = 2, memory: str = "1g") -> StandaloneCluster:
    """A master on a free loopback port and one worker with `cores` and `memory` for
    executors. The worker's executors inherit its environment: this checkout first on
    PYTHONPATH, so their Python imports the code under test."""
    root.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_DAEMON_MEMORY": "256m",
        "SPARK_MASTER_OPTS": "-Dspark.master.rest.enabled=false",  # its port is fixed (6066): two clusters would clash
        "SPARK_LOG_DIR": str(root),
        "SPARK_WORKER_DIR": str(root / "work"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    env.pop("SPARK_HOME", None)  # the pyspark package's own
    master = _daemon(root, "master", ["org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", "0", "--webui-port", "0"], env)
    processes: tuple[subprocess.Popen, ...] = (master,)
    try:
        url = _wait_for(root, "master", master, STARTED_AT).group(1)  # type: ignore[union-attr]
        worker_args = ["--host", "127.0.0.1", "--webui-port", "0", "--cores", str(cores), "--memory", memory]
        worker = _daemon(root, "worker", ["org.apache.spark.deploy.worker.Worker", url, *worker_args], env)
        processes = (master, worker)
        _wait_for(root, "worker", worker, REGISTERED)
    except BaseException:
        StandaloneCluster("", root, processes).stop()
        raise
    return StandaloneCluster(url, root, processes)
