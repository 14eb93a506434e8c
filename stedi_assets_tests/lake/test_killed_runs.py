"""Runs killed with SIGKILL mid-step never block the runs after them (issue 21 #1).

A CLI run on the project's Dagster instance configuration (its dagster.yaml in a temporary
DAGSTER_HOME) is killed at a point it has truly reached: the fault proxy stalls one S3 request
that only that point makes (a landing file read, a landing table's commit, a trusted step's
read of its input) and the run is killed while it waits on it. The next run on the same
DAGSTER_HOME (in process, on that instance) must then finish within a minute with every
table's rows right. One lake, one instance and one sequence of three kills, each followed by
such a run. With the former per-table concurrency pools, the first run after a kill blocked
for good ("Step blocked by limit for pool stedi_accelerometer_landing"). Costs about 75 to
110 s (four CLI starts, three runs of the graph on the S3 server)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from stedi_assets.lake.delta import Lake
from stedi_assets.lake.store import LocalStore
from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets.tables import TABLES
from stedi_assets_tests.conftest import DEFINITIONS_MODULE, REPO, CliLakehouse, SharedLake, full_refresh_config
from stedi_assets_tests.lake.conftest import LAKE_BUCKET, SOURCE_BUCKET
from stedi_assets_tests.lake.fault_proxy import Fault, FaultProxy
from stedi_assets_tests.lake.s3_server import MotoServer, aws_env, ensure_bucket, lake_at, upload

pytestmark = pytest.mark.s3

PREFIX = "killed"
LAKE = f"s3://{LAKE_BUCKET}/{PREFIX}"
# A stalled request waits longer than any run here: the run is killed while it waits.
STALL_SECONDS = 120.0
NEXT_RUN_SECONDS = 60  # the acceptance bound of the run after a kill
DELTA_RS, BOTO3, ARROW = "object_store", "Boto3", "aws-sdk-cpp"


@pytest.fixture(scope="module")
def killable(s3_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CliLakehouse, FaultProxy, Path]]:
    """The sample's source on S3, an empty lake reached through a stalling proxy, and a
    DAGSTER_HOME holding the project's dagster.yaml."""
    client = s3_server.client("s3")
    upload(client, SAMPLE_SOURCE, SOURCE_BUCKET, PREFIX)
    ensure_bucket(client, LAKE_BUCKET)
    root = tmp_path_factory.mktemp("killed")
    home = root / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    dg.DagsterInstance.from_config(str(home)).dispose()  # its storage, created once
    with FaultProxy(s3_server.port, stall_seconds=STALL_SECONDS) as proxy:
        lakehouse = CliLakehouse(
            root,
            f"s3://{SOURCE_BUCKET}/{PREFIX}",  # type: ignore[arg-type]  # an S3 URI, not a folder
            STEDI_LAKE=LAKE,
            STEDI_S3_TIMEOUT=f"{STALL_SECONDS + 60:g}",  # no client gives up on the stalled request
            STEDI_AUTOMATION="false",
            DAGSTER_HOME=str(home),
            **aws_env(proxy.url),
        )
        yield lakehouse, proxy, home


def _command(select: str, full_refresh: tuple[str, ...] = ()) -> list[str]:
    config = ["--config-json", json.dumps(full_refresh_config(full_refresh))] if full_refresh else []
    dagster = str(Path(sys.executable).parent / "dagster")
    return [dagster, "asset", "materialize", "-m", DEFINITIONS_MODULE, "--select", select, *config]


def _start(lakehouse: CliLakehouse, command: list[str], output) -> subprocess.Popen:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("STEDI_")}, **lakehouse.env}
    # A process group of its own: killed with every process it started.
    return subprocess.Popen(command, env=env, cwd=lakehouse.root, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)


def _kill_at(lakehouse: CliLakehouse, proxy: FaultProxy, stall: Fault, select: str, full_refresh: tuple[str, ...] = ()) -> None:
    """Start a run of `select` and SIGKILL it while it waits on the stalled request."""
    (stalled,) = proxy.inject(stall)
    run = _start(lakehouse, _command(select, full_refresh), subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not stalled.injected:
            assert run.poll() is None, f"the run ended before it reached {stall}"
            assert time.monotonic() < deadline, f"the run did not reach {stall} within 120 s"
            time.sleep(0.05)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
        proxy.inject()


def _killed_in(home: Path, step: str) -> None:
    """The instance's last run died inside `step`: started, never ended, and still STARTED."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = instance.get_runs(limit=1)
        events = [(e.step_key, e.dagster_event.event_type_value) for e in instance.all_logs(run.run_id) if e.dagster_event]
    assert run.status == dg.DagsterRunStatus.STARTED
    assert (step, "STEP_START") in events
    assert not {(step, "STEP_SUCCESS"), (step, "STEP_FAILURE")} & set(events)


def _next_run(lakehouse: CliLakehouse, home: Path) -> float:
    """The whole graph, in this process, on the instance of the same DAGSTER_HOME (where a
    killed run's state is): it must succeed within NEXT_RUN_SECONDS (a run blocked by a
    killed one would wait forever). Returns its time."""
    outcome: dict[str, object] = {}

    def run() -> None:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            result = lakehouse.run("*", instance=instance, raise_on_error=False)
            outcome["failures"] = [e.step_failure_data.error.to_string() for e in result.all_events if e.is_step_failure]

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(NEXT_RUN_SECONDS)
    assert not thread.is_alive(), f"the run after a kill did not finish within {NEXT_RUN_SECONDS} s"
    assert outcome.get("failures") == [], outcome
    return time.monotonic() - started


def _assert_right(lake: Lake, sample: SharedLake) -> None:
    """Every table has the rows of an undisturbed run of the sample, and a Delta reader of a
    landing table's rejects or ledger alone reads the data of the version the landing table
    names (that version, or a restore of it)."""
    specs = [t.spec for t in TABLES.values()]
    expected = {name: s.rows for name, s in Lake(LocalStore(sample.lake)).current_versions(specs).items()}
    current = lake.current_versions(specs)
    assert {name: s.rows for name, s in current.items()} == expected
    for snapshot in current.values():
        for companion, version in snapshot.info.get("companions", {}).items():
            named = lake.at(current[companion].spec, version)
            assert current[companion].files == named.files, f"{companion} is not at the version {snapshot.name} names"


def test_runs_killed_mid_step_never_block_the_next_run(killable, s3_server: MotoServer, sample_lake: SharedLake, aws_via):
    lakehouse, proxy, home = killable
    # This process's clients, for the runs in it, straight to the server: delta-rs holds the
    # GIL while it waits on some requests, which a proxy in this process could then not answer.
    aws_via(s3_server.url)
    lake = lake_at(s3_server, LAKE)
    times = []

    # 1. During landing, on an empty lake: reading an accelerometer source file.
    _kill_at(lakehouse, proxy, Fault("stall", method="GET", path=f"/{SOURCE_BUCKET}/{PREFIX}/accelerometer/", agent=BOTO3), "*")
    _killed_in(home, "accelerometer_landing")
    times.append(_next_run(lakehouse, home))
    _assert_right(lake, sample_lake)

    # 2. During a commit: the rejects of accelerometer_landing are committed, its own commit
    # is not; a Delta reader of the rejects alone sees a version no landing version names.
    rejects = lake.current(TABLES["accelerometer_landing_rejects"].spec).version
    landing_log = f"/{LAKE_BUCKET}/{PREFIX}/accelerometer/landing/_delta_log/0"
    _kill_at(
        lakehouse, proxy, Fault("stall", method="PUT", path=landing_log, agent=DELTA_RS), "accelerometer_landing", ("accelerometer_landing",)
    )
    _killed_in(home, "accelerometer_landing")
    assert lake.current(TABLES["accelerometer_landing_rejects"].spec).version == rejects + 1
    times.append(_next_run(lakehouse, home))
    _assert_right(lake, sample_lake)
    [restore] = lake.history(TABLES["accelerometer_landing_rejects"].spec, 1)
    assert restore.operation == "RESTORE" and restore.info["restored_version"] == rejects

    # 3. During a trusted step: its read of the landing table's data.
    _kill_at(
        lakehouse,
        proxy,
        Fault("stall", method="GET", path=f"/{LAKE_BUCKET}/{PREFIX}/accelerometer/landing/part-", agent=ARROW),
        "accelerometer_trusted",
        ("accelerometer_trusted",),
    )
    _killed_in(home, "accelerometer_trusted")
    times.append(_next_run(lakehouse, home))
    _assert_right(lake, sample_lake)
    print(f"runs after a kill: {', '.join(f'{t:.1f} s' for t in times)}")
