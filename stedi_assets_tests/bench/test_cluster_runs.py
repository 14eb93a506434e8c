"""The benchmark's `cluster` system starts a Spark standalone cluster for each run and stops it
whatever the run does; the master's log tells whether the run used it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from bench.cluster import REGISTERED
from bench.runner import clean_env, run_on_cluster


def cluster_processes(root: Path) -> list[int]:
    """The processes working in `root` (the cluster's daemons run there)."""
    found = []
    for name in filter(str.isdigit, os.listdir("/proc")):
        try:
            if Path(os.readlink(f"/proc/{name}/cwd")).is_relative_to(root):
                found.append(int(name))
        except OSError:
            continue
    return found


@pytest.mark.spark
def test_a_failed_run_stops_the_cluster_and_keeps_its_logs(tmp_path: Path):
    # A master and a worker JVM start (about 6 s, 256 MB each) for a command that fails at once.
    root = tmp_path / "cluster"
    command = [sys.executable, "-c", "raise SystemExit(3)"]
    measured, cluster = run_on_cluster(command, clean_env(), tmp_path, tmp_path / "run.log", root)
    assert measured.returncode == 3
    assert "Starting Spark master at spark://127.0.0.1:" in (root / "master.log").read_text()
    assert REGISTERED in (root / "worker.log").read_text()
    assert cluster["application_in_master_log"] is False  # the command never reached it
    assert cluster["cluster_peak_rss_bytes"] > 0 and cluster["cluster_start_seconds"] > 0
    deadline = time.monotonic() + 10
    while cluster_processes(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert cluster_processes(root) == []
