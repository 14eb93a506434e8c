"""Wall time and peak memory of a command's whole process tree.

Peak memory is sampled, not taken from one process: while the command runs, every
`interval` seconds the resident set sizes (field `rss` of
`/proc/<pid>/stat`) of it and of every process descended from it are added up; the
largest sum is the peak. That counts a JVM that Spark starts beside the Python driver, and
the dagster CLI's children, the way the machine sees them. Linux only (it reads /proc).

CPU time (user + system, from the kernel's accounting of waited-for children) is reported
beside wall time: on a machine shared with other work it varies less than wall time.

A watchdog guards the machine (other work shares it): if the memory the machine still has
available (`MemAvailable` of /proc/meminfo) drops under `min_available` bytes, the command's
whole process group is killed and the measurement says so (`killed`).
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class Measurement:
    wall_seconds: float
    peak_rss_bytes: int
    returncode: int
    samples: tuple[tuple[float, int], ...] = ()  # (epoch seconds, tree RSS bytes) every interval
    killed: str | None = None  # why the watchdog stopped the command, if it did
    cpu_seconds: float = 0.0  # user + system time of the command and the children it waited for


def measure(
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    log: Path,
    interval: float = 0.2,
    min_available: int = 0,
) -> Measurement:
    """Run `command` to its end, its output going to `log`, sampling its tree's memory; kill
    it if the machine's available memory drops under `min_available` bytes."""
    peak, samples, killed = 0, [], None
    with open(log, "wb") as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        process = subprocess.Popen(
            list(command), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        done = threading.Event()

        def sample() -> None:
            nonlocal peak, killed
            while not done.is_set():
                rss = tree_rss(process.pid)
                peak = max(peak, rss)
                samples.append((time.time(), rss))
                if min_available and killed is None and (left := available_memory()) < min_available:
                    killed = f"the machine had {left / 2**30:.1f} GiB available, under the watchdog's {min_available / 2**30:.1f} GiB"
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        returncode = process.wait()
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        done.set()
        sampler.join()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Measurement(wall, peak, returncode, tuple(samples), killed, cpu)


def available_memory() -> int:
    """Bytes the machine can still give without swapping (MemAvailable)."""
    for line in (PROC / "meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def tree_rss(root: int) -> int:
    """Resident bytes of `root` and all its descendants, now."""
    children: dict[int, list[int]] = {}
    pages: dict[int, int] = {}
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        try:
            stat = (PROC / name / "stat").read_bytes()
        except OSError:  # the process ended while we looked
            continue
        # Fields after the command name, which may itself hold spaces and parentheses:
        # state, ppid, ... rss (the 24th field of proc(5), in pages).
        fields = stat[stat.rfind(b")") + 2 :].split()
        pid = int(name)
        children.setdefault(int(fields[1]), []).append(pid)
        pages[pid] = int(fields[21])
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += pages.get(pid, 0)
        stack.extend(children.get(pid, []))
    return total * PAGE_SIZE
