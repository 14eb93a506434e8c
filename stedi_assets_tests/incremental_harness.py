"""A lakehouse driven in-process through Dagster's API, for the incremental ingest tests: a
source folder, a lake, runs on a persistent instance, and every table read back as sorted
rows, so an incremental history can be compared with a full run row for row."""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from stedi_assets.definitions import build_definitions
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.store import LocalStore
from stedi_assets.lakehouse import published
from stedi_assets.settings import ConsentPolicy, Settings
from stedi_assets.tables import TABLES
from stedi_assets_tests.builders import sorted_rows

ASSETS = [name for name, table in TABLES.items() if table.zone in ("landing", "trusted", "curated")]
# A ledger's file identities depend on when a file was written; what it says of the lines does not.
LEDGER_COLUMNS = ["source_file", "lines", "rows", "rejects"]


def full_refresh_config() -> dict:
    return {"ops": {name: {"config": {"full_refresh": True}} for name in ASSETS}}


class InProcessLakehouse:
    def __init__(self, root: Path, source: Path, instance: dg.DagsterInstance, policy: ConsentPolicy):
        self.root, self.source, self.instance, self.policy = root, source, instance, policy
        self.lake = root / "lake"

    def settings(self) -> Settings:
        return Settings.from_env(
            {
                "STEDI_SOURCE": str(self.source),
                "STEDI_LAKE": str(self.lake),
                "STEDI_CONSENT_POLICY": self.policy.value,
                "STEDI_AUTOMATION": "false",
            }
        )

    def definitions(self) -> dg.Definitions:
        return build_definitions(self.settings())

    def run(self, select: str = "*", full_refresh: bool = False, raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        defs = self.definitions()
        return dg.materialize(
            defs.assets,
            selection=select,
            resources=defs.resources,
            instance=self.instance,
            run_config=full_refresh_config() if full_refresh else None,
            raise_on_error=raise_on_error,
        )

    def store(self) -> Lake:
        return Lake(LocalStore(self.lake))

    def tables(self) -> dict[str, list[dict]]:
        """Every table's rows, sorted; a ledger on the columns that say what its files gave."""
        snapshots = published(self.store(), list(TABLES))
        out = {}
        for name, snapshot in snapshots.items():
            data = snapshot.to_arrow()
            if TABLES[name].zone == "landing_files":
                data = data.select(LEDGER_COLUMNS)
            out[name] = sorted_rows(data)
        return out

    def versions(self) -> dict[str, int]:
        return {name: s.version for name, s in published(self.store(), list(TABLES)).items()}


def copy_source(source: Path, target: Path) -> Path:
    """A copy that keeps modification times: a copied file is the same file to the ledger."""
    return Path(shutil.copytree(source, target, copy_function=shutil.copy2))


@contextmanager
def persistent_instance(root: Path):
    home = root / "dagster_home"
    home.mkdir(exist_ok=True)
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        yield instance


@contextmanager
def memory_instance():
    """An instance in memory: the equivalence tests need no run history across processes,
    and a run records its events several times faster than in sqlite."""
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def touch_later(path: Path) -> None:
    """Make sure a rewritten file's identity differs even on a coarse clock."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
