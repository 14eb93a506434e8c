"""Peak memory is the whole process tree's, and wall time is the command's."""

from __future__ import annotations

import sys
from pathlib import Path

from bench.measure import measure

MIB = 2**20


def holder(mib: int, then: str = "import time; time.sleep(1.5)") -> str:
    """Python that makes `mib` MiB resident (every page touched), then runs `then`."""
    return f"block = bytearray({mib} * 2**20); block[::4096] = b'x' * len(block[::4096]); {then}"


def test_peak_memory_counts_the_children(tmp_path: Path):
    # The parent holds 50 MiB while its child holds 300 MiB.
    child = holder(300)
    parent = holder(50, then=f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)")
    measured = measure([sys.executable, "-c", parent], {}, tmp_path, tmp_path / "log")
    assert measured.returncode == 0, (tmp_path / "log").read_text()
    assert measured.peak_rss_bytes >= 350 * MIB
    assert measured.wall_seconds >= 1.5


def test_a_failing_command_reports_its_exit_code_and_output(tmp_path: Path):
    measured = measure([sys.executable, "-c", "print('to the log'); raise SystemExit(3)"], {}, tmp_path, tmp_path / "log")
    assert measured.returncode == 3
    assert "to the log" in (tmp_path / "log").read_text()


def test_the_watchdog_kills_the_whole_process_group_when_memory_runs_low(tmp_path: Path):
    # A machine with more memory available than it has at all: the watchdog fires at the first sample.
    child = "import time; time.sleep(60)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    measured = measure([sys.executable, "-c", parent], {}, tmp_path, tmp_path / "log", min_available=2**60)
    assert measured.killed and "watchdog" in measured.killed
    assert measured.returncode != 0 and measured.wall_seconds < 30
