"""Peak memory is the whole process tree's, and that of its Python processes alone; wall time is
the command's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path


from bench.measure import measure, processes, python_rss, tree_rss

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


# A process tree in the shape of a Dagster run on Spark: the CLI's Python holds 30 MiB and starts
# a `java` (Python under that name, as Spark's driver JVM is a child of the Python that uses it)
# holding 120 MiB whose own Python child holds 80 MiB, and a shell whose Python child holds 40 MiB.
# Each writes its pid, then waits for the `stop` file. About 2 s and 300 MiB.
TREE = """
import pathlib, subprocess, sys, time
folder, role, java = pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3]
held = {"root": 30, "jvm": 120, "under_jvm": 80, "under_shell": 40}[role]
block = bytearray(held * 2**20); block[::4096] = b"x" * len(block[::4096])
started = []
if role == "root":
    started.append(subprocess.Popen([java, __file__, str(folder), "jvm", java]))
    started.append(subprocess.Popen(["sh", "-c", f"'{sys.executable}' '{__file__}' '{folder}' under_shell '{java}'; true"]))
elif role == "jvm":
    started.append(subprocess.Popen([sys.executable, __file__, str(folder), "under_jvm", java]))
(folder / f"{role}.pid").write_text(str(__import__("os").getpid()))
roles = ("root", "jvm", "under_jvm", "under_shell")
while role == "root" and not all((folder / f"{r}.pid").exists() for r in roles):
    time.sleep(0.05)
if role == "root":
    (folder / "ready").touch()
    if len(sys.argv) > 4:  # timed: stop the tree after a second
        time.sleep(1)
        (folder / "stop").touch()
while not (folder / "stop").exists():
    time.sleep(0.05)
for process in started:
    process.wait()
"""


def tree_command(folder: Path, *timed: str) -> list[str]:
    script, java = folder / "tree.py", folder / "java"
    script.write_text(TREE)
    java.symlink_to(sys.executable)  # the kernel names the process after the link: `java`
    return [sys.executable, str(script), str(folder), "root", str(java), *timed]


def test_python_memory_leaves_out_every_jvm_and_what_it_started(tmp_path: Path):
    root = subprocess.Popen(tree_command(tmp_path))
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "ready").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        table = processes()  # one look at the machine, so that every figure below adds up the same
    finally:
        (tmp_path / "stop").touch()
        root.wait(30)
    pid = {role: int((tmp_path / f"{role}.pid").read_text()) for role in ("root", "jvm", "under_jvm", "under_shell")}
    assert pid["root"] == root.pid
    assert table[pid["jvm"]].name == "java"
    (shell,) = [p for p, process in table.items() if process.parent == root.pid and p != pid["jvm"]]
    rss = {role: table[p].rss_bytes for role, p in pid.items()}
    # The Python processes: the root and its shell's child; not the `java`, nor the Python under it, nor the shell.
    assert python_rss(root.pid, table) == rss["root"] + rss["under_shell"]
    assert tree_rss(root.pid, table) == sum(rss.values()) + table[shell].rss_bytes
    assert rss["jvm"] + rss["under_jvm"] >= 200 * MIB and rss["root"] + rss["under_shell"] >= 70 * MIB


def test_measure_reports_the_python_peak_and_the_daemons_beside_the_whole_tree(tmp_path: Path):
    daemon = subprocess.Popen([sys.executable, "-c", holder(100, then="import time; time.sleep(30)")])
    try:
        time.sleep(1)  # the daemon holds its 100 MiB before the command starts
        measured = measure(tree_command(tmp_path, "timed"), {}, tmp_path, tmp_path / "log", daemons=[daemon.pid])
    finally:
        daemon.kill()
        daemon.wait()
    assert measured.returncode == 0, (tmp_path / "log").read_text()
    assert 70 * MIB <= measured.python_peak_rss_bytes <= measured.peak_rss_bytes - 200 * MIB
    assert measured.peak_rss_bytes >= 270 * MIB
    assert measured.daemons_peak_rss_bytes >= 100 * MIB
    assert max(rss for _, rss in measured.python_samples) == measured.python_peak_rss_bytes


def test_cpu_time_counts_the_processes_no_one_waits_for(tmp_path: Path):
    # The command starts a child that spins for a second of CPU, and exits without waiting for it:
    # the kernel's accounting of waited-for children misses the child, the samples do not. About 2 s.
    done = tmp_path / "spun"
    spin = f"import pathlib, time\nwhile time.process_time() < 1: pass\npathlib.Path({str(done)!r}).touch(); time.sleep(1)"
    parent = (
        f"import pathlib, subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {spin!r}])\n"
        f"while not pathlib.Path({str(done)!r}).exists(): time.sleep(0.05)\n"
        "time.sleep(0.5)"  # a sample or two sees the child's time
    )
    measured = measure([sys.executable, "-c", parent], {}, tmp_path, tmp_path / "log")
    assert measured.returncode == 0, (tmp_path / "log").read_text()
    assert measured.cpu_seconds >= 0.8


def test_an_interrupted_measurement_takes_the_command_with_it(tmp_path: Path):
    # Ctrl-C (or SIGTERM, which `python -m bench` turns into it) while a command runs: the
    # command's whole process group is killed before the interruption goes on. The measuring
    # process is a child of the test's, so the SIGINT reaches its main thread whatever runs the
    # tests (a pytest-xdist worker delays it). About 2 s.
    pid_file = tmp_path / "child.pid"
    child = f"import os, pathlib, time; pathlib.Path({str(pid_file)!r}).write_text(str(os.getpid())); time.sleep(600)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}])"
    measuring = (
        "import sys; from pathlib import Path; from bench.measure import measure\n"
        f"measure([sys.executable, '-c', {parent!r}], {{}}, {str(tmp_path)!r}, Path({str(tmp_path / 'log')!r}))"
    )
    runner = subprocess.Popen([sys.executable, "-c", measuring], env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])})
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    runner.send_signal(signal.SIGINT)
    assert runner.wait(timeout=30) != 0  # the KeyboardInterrupt went on
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # killed, then reaped by init
    assert not Path(f"/proc/{pid}").exists()
