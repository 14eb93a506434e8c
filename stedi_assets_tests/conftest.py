"""Shared fixtures: the reference data, lakes built once per session in process, and the real
CLIs for the few smoke tests that must go through them.

The suite's shape (as in Dagster's own example projects): a lake is built in process with the
job's `execute_in_process` once per session and source (the bundled sample; the real data
once per consent policy); a test that only reads a lake reads the shared one, a test that
changes one works on a copy (`SharedLake.copy`), never on a rebuild. The `dagster` and
`stedi` console scripts run as subprocesses only where the command line itself is tested."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from deltalake import DeltaTable

from stedi_assets.settings import SAMPLE_SOURCE, ConsentPolicy, Settings

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"
DEFINITIONS_MODULE = "stedi_assets.definitions"


def reference_data_dir() -> Path:
    """`STEDI_REFERENCE_DATA`, or the shared folder beside the checkout."""
    return Path(os.environ.get("STEDI_REFERENCE_DATA") or REPO.parent / "shared" / "data" / "stedi")


@pytest.fixture(scope="session")
def reference_data() -> Path:
    path = reference_data_dir()
    if not (path / "customer").is_dir():
        message = f"reference data not found at {path} (set STEDI_REFERENCE_DATA)"
        if IN_CI:
            pytest.fail(message)  # in CI a missing reference folder is a failure, not a skip
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def spark_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A Spark standalone cluster on loopback (engine/cluster.py), for every Spark test of the
    run: a master and a worker JVM (about 6 s to start, 256 MB each) whose one executor (2
    cores, 1 GB) runs the tests' queries."""
    if shutil.which("java") is None:
        message = "the Spark engine needs Java 17 on PATH"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    from stedi_assets_tests.engine.cluster import start_cluster

    cluster = start_cluster(tmp_path_factory.mktemp("spark-cluster"))
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def spark_engine(spark_cluster):
    """The Spark engine on the cluster, in the run's one Spark session: the driver JVM takes
    seconds to start."""
    # Imported here: PySpark loads only in the runs that use it.
    from stedi_assets.engine.spark_engine import SparkEngine

    engine = SparkEngine.shared(spark_cluster.url)
    yield engine
    engine.session.stop()  # the application ends before its cluster


def _environment(env: dict[str, str]) -> dict[str, str]:
    """This process's environment without its STEDI_* settings, plus `env`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("STEDI_")}, **env}


def run_cli(args: list[str], env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a console command from this environment's bin folder, as a user would."""
    command = [str(Path(sys.executable).parent / args[0]), *args[1:]]
    result = subprocess.run(command, env=_environment(env), cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def full_refresh_config(assets: tuple[str, ...]) -> dict:
    return {"ops": {a: {"config": {"full_refresh": True}} for a in assets}}


class CliLakehouse:
    """A source and a lake in a folder: materialized in process (`run`) or through the
    `dagster` CLI (`materialize`), read and managed through the `stedi` command (`stedi`,
    `sql`; `run_cli` always starts the real console script)."""

    def __init__(self, root: Path, source: Path | str, **settings: str):
        self.root = root
        self.source = source
        self.lake = root / "lake"
        self.env = {"STEDI_SOURCE": str(source), "STEDI_LAKE": str(self.lake), **settings}

    def definitions(self, **env: str) -> dg.Definitions:
        from stedi_assets.definitions import build_definitions

        return build_definitions(Settings.from_env({**self.env, **env}))

    def run(
        self,
        select: str = "*",
        full_refresh: tuple[str, ...] = (),
        raise_on_error: bool = True,
        instance: dg.DagsterInstance | None = None,
        **env: str,
    ) -> dg.ExecuteInProcessResult:
        """`dg.materialize` of `select` in this process, as `materialize` does through the CLI;
        `full_refresh` as there."""
        definitions = self.definitions(**env)
        if full_refresh == ("*",):
            full_refresh = tuple(k.path[-1] for k in definitions.resolve_asset_graph().get_all_asset_keys())
        return dg.materialize(
            definitions.assets,
            selection=select,
            resources=definitions.resources,
            instance=instance or dg.DagsterInstance.ephemeral(),
            run_config=full_refresh_config(full_refresh) if full_refresh else None,
            raise_on_error=raise_on_error,
        )

    def materialize(
        self, select: str = "*", check: bool = True, full_refresh: tuple[str, ...] = (), **env: str
    ) -> subprocess.CompletedProcess:
        """`dagster asset materialize`; `full_refresh`: the assets to rebuild from scratch
        (run config), or ("*",) for the README's full_refresh.yaml."""
        config = []
        if full_refresh == ("*",):
            config = ["-c", str(REPO / "full_refresh.yaml")]
        elif full_refresh:
            config = ["--config-json", json.dumps(full_refresh_config(full_refresh))]
        return run_cli(
            ["dagster", "asset", "materialize", "-m", DEFINITIONS_MODULE, "--select", select, *config],
            {**self.env, **env},
            self.root,
            check=check,
        )

    def stedi(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """A `stedi` command with this lakehouse's settings as its environment. On a local lake
        its own code runs in this process (click's runner: no interpreter to start); on S3 the
        console script runs, since this process's S3 clients are cached with the endpoint of
        the environment they were made in."""
        if str(self.env["STEDI_LAKE"]).startswith("s3://"):
            return run_cli(["stedi", *args], self.env, self.root, check=check)
        from stedi_assets.cli import main

        env = {**dict.fromkeys(k for k in os.environ if k.startswith("STEDI_")), **self.env}
        ran = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
        result = subprocess.CompletedProcess(["stedi", *args], ran.exit_code, ran.stdout, ran.stderr)
        if check and result.returncode != 0:
            raise AssertionError(f"stedi {' '.join(args)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
        return result

    def sql(self, query: str) -> list[dict]:
        return json.loads(self.stedi("sql", query, "--format", "json").stdout)

    def count(self, table: str) -> int:
        return self.sql(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]

    def delta(self, location: str) -> DeltaTable:
        """A table of the lake as delta-rs alone reads it, without our code."""
        return DeltaTable(str(self.lake / location))

    def version(self, location: str) -> int:
        return self.delta(location).version()


@pytest.fixture
def lakehouse_factory(tmp_path: Path) -> Callable[..., CliLakehouse]:
    def make(source: Path, **settings: str) -> CliLakehouse:
        root = tmp_path / f"lakehouse{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        return CliLakehouse(root, source, **settings)

    return make


@dataclass(frozen=True)
class SharedLake:
    """A lake built once for the session by the whole job, in process: its result and
    instance (for the run's events and logs) and its folder. Read it, never change it:
    `copy` gives a test its own lakehouse to change."""

    lakehouse: CliLakehouse
    policy: ConsentPolicy
    result: dg.ExecuteInProcessResult
    instance: dg.DagsterInstance
    definitions: dg.Definitions

    @property
    def lake(self) -> Path:
        return self.lakehouse.lake

    def copy(self, root: Path) -> CliLakehouse:
        """A lakehouse of the test's own in `root`: this lake copied (cheap, beside a rebuild),
        on a copy of its source that keeps each file's modification time, so that the ledger
        sees the same files and a run finds nothing new."""
        root.mkdir(parents=True, exist_ok=True)
        source = Path(shutil.copytree(self.lakehouse.source, root / "source", copy_function=shutil.copy2))
        shutil.copytree(self.lake, root / "lake", copy_function=shutil.copy2)
        settings = {k: v for k, v in self.lakehouse.env.items() if k not in ("STEDI_SOURCE", "STEDI_LAKE")}
        return CliLakehouse(root, source, **settings)


@pytest.fixture(scope="session")
def shared_lake(tmp_path_factory: pytest.TempPathFactory) -> Callable[[Path, ConsentPolicy], SharedLake]:
    """The lake of a source under a consent policy, built at its first use in the session."""

    @functools.cache
    def build(source: Path, policy: ConsentPolicy) -> SharedLake:
        lakehouse = CliLakehouse(tmp_path_factory.mktemp(f"shared-{policy.value}"), source, STEDI_CONSENT_POLICY=policy.value)
        definitions = lakehouse.definitions()
        instance = dg.DagsterInstance.ephemeral()
        result = definitions.resolve_job_def("stedi_lakehouse").execute_in_process(instance=instance)
        assert result.success
        return SharedLake(lakehouse, policy, result, instance, definitions)

    return build


@pytest.fixture(scope="session")
def sample_lake(shared_lake) -> SharedLake:
    """The bundled sample, ingested under the default policy (any)."""
    return shared_lake(SAMPLE_SOURCE, ConsentPolicy.ANY)


@pytest.fixture(scope="session", params=list(ConsentPolicy), ids=lambda p: p.value)
def real_lake(request, shared_lake, reference_data: Path) -> SharedLake:
    """The real STEDI data ingested under each consent policy, once per policy."""
    return shared_lake(reference_data, request.param)


# -- pytest-xdist: the tests that share an expensive session fixture run on one worker ---------
# Paths under stedi_assets_tests/ of the modules that share one: the real data's lake on the S3
# server (lake/conftest.py, minutes to build), and the Spark JVM. Others build what they share
# in seconds (the moto server, the in-process lakes), once per worker that needs it.
SHARING = {
    "s3_reference_lake": ("lake/test_glue", "lake/test_s3_lake", "lake/test_s3_erasure"),
    "spark": ("engine/", "bench/", "test_charts.py", "test_consent_in_doubt.py"),
}
# The longest units (minutes each, measured), started first so that no worker ends the run
# alone on one of them; the rest follow, most tests first.
LONGEST_FIRST = (
    "spark",
    "stedi_assets_tests/test_ui.py",
    "s3_reference_lake",
    "stedi_assets_tests/lake/test_s3_faults.py",
    "stedi_assets_tests/test_incremental.py",
)


@pytest.hookimpl(optionalhook=True)  # an xdist hook: unknown when xdist is not loaded
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Under `--dist loadfile` (pyproject's addopts), each module goes to one worker as a
    whole, and so does each group of modules in SHARING, so that one worker alone builds what
    they share. (xdist's own `--dist loadgroup` would need `xdist_group` marks, which it
    cannot read under pytest 9: it renames items through an attribute pytest no longer has.)
    Largest units first, each to the worker that is free."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SharedFixtureScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            within = module.partition("stedi_assets_tests/")[2]
            return next((group for group, paths in SHARING.items() if within.startswith(paths)), module)

        def _assign_work_unit(self, node) -> None:
            for scope in reversed(LONGEST_FIRST):  # the queue is ordered once it exists
                if scope in self.workqueue:
                    self.workqueue.move_to_end(scope, last=False)
            super()._assign_work_unit(node)

    return SharedFixtureScheduling(config, log)
