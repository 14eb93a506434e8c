"""Wall time and peak memory of a command's whole process tree.

Peak memory is sampled, not taken from one process: while the command runs, every
`interval` seconds the resident set sizes (field `rss` of
`/proc/<pid>/stat`) of it and of every process descended from it are added up; the
largest sum is the peak. That counts a JVM that Spark starts beside the Python driver, and
the dagster CLI's children, the way the machine sees them. Linux only (it reads /proc).

CPU time (user + system) is reported beside wall time: on a machine shared with other work it
varies less than wall time. The kernel's accounting of waited-for children misses processes no
one waits for (a JVM that Spark starts outlives its Python by a moment; a cluster's executors),
so the samples also add up each process's own CPU time as last seen, which misses at most each
process's last interval; the larger of the two is reported.

A watchdog guards the machine (other work shares it): if the memory the machine still has
available (`MemAvailable` of /proc/meminfo) drops under `min_available` bytes, the command's
whole process group is killed and the measurement says so (`killed`). So is it when the
measurement itself is interrupted (Ctrl-C, SIGTERM): the command never outlives the benchmark.

Beside the whole tree, each sample adds up the tree's Python processes alone, leaving out every
JVM and all it starts (`python_rss`): what the Dagster run's own processes hold when Spark's
driver JVM is their child. And the trees of `daemons`, processes the command uses but did not
start (a Spark cluster's master and worker, and their executors), are sampled beside it.
"""

from __future__ import annotations

import contextlib
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
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measurement:
    wall_seconds: float
    peak_rss_bytes: int
    returncode: int
    samples: tuple[tuple[float, int], ...] = ()  # (epoch seconds, tree RSS bytes) every interval
    killed: str | None = None  # why the watchdog stopped the command, if it did
    cpu_seconds: float = 0.0  # user + system time of the tree: the larger of the kernel's and the samples' figure
    python_peak_rss_bytes: int = 0  # the tree's Python processes, JVMs and their descendants left out
    python_samples: tuple[tuple[float, int], ...] = ()  # (epoch seconds, their RSS bytes) every interval
    daemons_peak_rss_bytes: int = 0  # the trees of `daemons` together
    daemons_cpu_seconds: float = 0.0  # sampled: the same of the daemons' trees, since the command started


@dataclass(frozen=True)
class Process:
    parent: int
    name: str  # the kernel's name for it (comm): the file name it was started as, 15 characters at most
    executable: str  # the file name of the program it runs (a script's interpreter, not the script)
    rss_bytes: int
    cpu_seconds: float  # its own user + system time so far, not its children's

    @property
    def is_jvm(self) -> bool:
        return "java" in (self.name, self.executable)


def measure(
    command: Sequence[str],
    env: Mapping[str, str],
    cwd: str | os.PathLike[str],
    log: Path,
    interval: float = 0.2,
    min_available: int = 0,
    daemons: Sequence[int] = (),
) -> Measurement:
    """Run `command` to its end, its output going to `log`, sampling its tree's memory (and
    that of the trees of `daemons`); kill it if the machine's available memory drops under
    `min_available` bytes, or if this is interrupted."""
    peak, python_peak, daemons_peak, samples, python_samples, killed = 0, 0, 0, [], [], None
    table = processes()
    daemons_before = {pid: table[pid].cpu_seconds for root in daemons for pid in tree(root, table)}
    tree_cpu: dict[int, float] = {}
    daemons_cpu = dict(daemons_before)
    with open(log, "wb") as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        process = subprocess.Popen(
            list(command), env=dict(env), cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        done = threading.Event()

        def sample() -> None:
            nonlocal peak, python_peak, daemons_peak, killed
            while not done.is_set():
                table, now = processes(), time.time()
                ran, beside = tree(process.pid, table), [pid for root in daemons for pid in tree(root, table)]
                rss, python = sum(table[pid].rss_bytes for pid in ran), python_rss(process.pid, table)
                peak, python_peak = max(peak, rss), max(python_peak, python)
                daemons_peak = max(daemons_peak, sum(table[pid].rss_bytes for pid in beside))
                tree_cpu.update((pid, table[pid].cpu_seconds) for pid in ran)
                daemons_cpu.update((pid, table[pid].cpu_seconds) for pid in beside)
                samples.append((now, rss))
                python_samples.append((now, python))
                if min_available and killed is None and (left := available_memory()) < min_available:
                    killed = f"the machine had {left / 2**30:.1f} GiB available, under the watchdog's {min_available / 2**30:.1f} GiB"
                    try:
                        os.killpg(process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                done.wait(interval)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            returncode = process.wait()
        except BaseException:  # interrupted: the command's group goes too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            done.set()
            raise
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        done.set()
        sampler.join()
    cpu = max(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, sum(tree_cpu.values()))
    return Measurement(
        wall, peak, returncode, tuple(samples), killed, cpu, python_peak, tuple(python_samples), daemons_peak,
        sum(daemons_cpu.values()) - sum(daemons_before.values()),
    )


def available_memory() -> int:
    """Bytes the machine can still give without swapping (MemAvailable)."""
    for line in (PROC / "meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 0


def processes() -> dict[int, Process]:
    """Every process of the machine now, by pid."""
    table = {}
    for name in os.listdir(PROC):
        if not name.isdigit():
            continue
        try:
            stat = (PROC / name / "stat").read_bytes()
        except OSError:  # the process ended while we looked
            continue
        # The command name lies in parentheses and may itself hold spaces and parentheses; after
        # it: state, ppid, ... rss (the 24th field of proc(5), in pages).
        fields = stat[stat.rfind(b")") + 2 :].split()
        comm = stat[stat.find(b"(") + 1 : stat.rfind(b")")].decode(errors="replace")
        # utime and stime are the 14th and 15th fields, in clock ticks.
        cpu = (int(fields[11]) + int(fields[12])) / TICKS
        table[int(name)] = Process(int(fields[1]), comm, _executable(name), int(fields[21]) * PAGE_SIZE, cpu)
    return table


def _children(table: dict[int, Process]) -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for pid, process in table.items():
        children.setdefault(process.parent, []).append(pid)
    return children


def tree(root: int, table: dict[int, Process]) -> list[int]:
    """`root` and all its descendants in `table`."""
    children, found, stack = _children(table), [], [root]
    while stack:
        pid = stack.pop()
        if pid in table:
            found.append(pid)
            stack.extend(children.get(pid, []))
    return found


def tree_rss(root: int, table: dict[int, Process] | None = None) -> int:
    """Resident bytes of `root` and all its descendants (in `table`, else now)."""
    table = processes() if table is None else table
    return sum(table[pid].rss_bytes for pid in tree(root, table))


def python_rss(root: int, table: dict[int, Process] | None = None) -> int:
    """Resident bytes of the Python processes among `root` and its descendants (in `table`,
    else now), leaving out every JVM and everything a JVM started (Spark's driver JVM is a
    child of the Python that uses it; its own children are Spark's). A process that is neither
    (a shell) is not counted, but the Python processes it started are."""
    table = processes() if table is None else table
    children, total, stack = _children(table), 0, [root]
    while stack:
        pid = stack.pop()
        if pid not in table or table[pid].is_jvm:
            continue
        if table[pid].executable.startswith("python"):
            total += table[pid].rss_bytes
        stack.extend(children.get(pid, []))
    return total


def _executable(pid: str) -> str:
    try:
        return Path(os.readlink(PROC / pid / "exe")).name
    except OSError:  # ended, a kernel thread, or not ours to look at
        return ""
