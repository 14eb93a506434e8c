"""Shared fixtures: the reference data, a fresh lake per test, and the real CLIs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from deltalake import DeltaTable

REPO = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


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
def spark_engine():
    """The Spark engine on its one local session, for every Spark test of the run: the JVM
    takes seconds to start."""
    if shutil.which("java") is None:
        message = "the Spark engine needs Java 17 on PATH"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    # Imported here: PySpark loads only in the runs that use it.
    from stedi_assets.engine.spark_engine import SparkEngine

    return SparkEngine.shared()


def run_cli(args: list[str], env: dict[str, str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """Run a console command from this environment's bin folder, as a user would."""
    command = [str(Path(sys.executable).parent / args[0]), *args[1:]]
    merged = {**{k: v for k, v in os.environ.items() if not k.startswith("STEDI_")}, **env}
    result = subprocess.run(command, env=merged, cwd=cwd, capture_output=True, text=True, timeout=900)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {result.returncode}\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


class Lakehouse:
    """A source and a lake in a temporary folder, driven through the dagster and stedi CLIs."""

    def __init__(self, root: Path, source: Path, **settings: str):
        self.root = root
        self.lake = root / "lake"
        self.env = {"STEDI_SOURCE": str(source), "STEDI_LAKE": str(self.lake), **settings}

    def materialize(
        self, select: str = "*", check: bool = True, full_refresh: tuple[str, ...] = (), **env: str
    ) -> subprocess.CompletedProcess:
        """`dagster asset materialize`; `full_refresh`: the assets to rebuild from scratch
        (run config), or ("*",) for the README's full_refresh.yaml."""
        config = []
        if full_refresh == ("*",):
            config = ["-c", str(REPO / "full_refresh.yaml")]
        elif full_refresh:
            config = ["--config-json", json.dumps({"ops": {a: {"config": {"full_refresh": True}} for a in full_refresh}})]
        return run_cli(
            ["dagster", "asset", "materialize", "-m", "stedi_assets.definitions", "--select", select, *config],
            {**self.env, **env},
            self.root,
            check=check,
        )

    def sql(self, query: str) -> list[dict]:
        out = run_cli(["stedi", "sql", query, "--format", "json"], self.env, self.root)
        return json.loads(out.stdout)

    def count(self, table: str) -> int:
        return self.sql(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"]

    def delta(self, location: str) -> DeltaTable:
        """A table of the lake as delta-rs alone reads it, without our code."""
        return DeltaTable(str(self.lake / location))

    def version(self, location: str) -> int:
        return self.delta(location).version()


@pytest.fixture
def lakehouse_factory(tmp_path: Path) -> Callable[..., Lakehouse]:
    def make(source: Path, **settings: str) -> Lakehouse:
        root = tmp_path / f"lakehouse{len(list(tmp_path.iterdir()))}"
        root.mkdir()
        return Lakehouse(root, source, **settings)

    return make
