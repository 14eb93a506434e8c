"""Retention at every run (issue 20, #6): a replaced version leaves the history within the
retention period even if its table is never committed again, and `stedi vacuum --apply` keeps
the same period by default."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from stedi_assets.settings import SAMPLE_SOURCE


def _two_versions(lakehouse_factory, tmp_path: Path, name: str):
    """customer_landing with a replaced version, kept (default retention)."""
    source = Path(shutil.copytree(SAMPLE_SOURCE, tmp_path / name))
    lakehouse = lakehouse_factory(source)
    assert lakehouse.run("customer_landing").success
    [customers] = (source / "customer" / "landing").glob("*.json")
    arrival = {"customerName": "New Customer", "email": "new.customer@test.com", "serialNumber": "new-serial"}
    customers.write_text(customers.read_text() + json.dumps(arrival) + "\n")  # the file replaced: its data file too
    assert lakehouse.run("customer_landing").success
    assert _states(lakehouse) == ["current", "kept"]
    return lakehouse


def _states(lakehouse) -> list[str]:
    return [line.split()[3] for line in lakehouse.stedi("versions", "customer_landing").stdout.splitlines()]


def test_a_run_that_changes_nothing_still_applies_retention(lakehouse_factory, tmp_path):
    lakehouse = _two_versions(lakehouse_factory, tmp_path, "run")
    version = lakehouse.version("customer/landing")
    assert lakehouse.run("customer_landing", STEDI_RETENTION_HOURS="0").success
    assert lakehouse.version("customer/landing") == version  # nothing changed: no commit
    assert _states(lakehouse) == ["current", "gone"]


def test_stedi_vacuum_keeps_the_retention_setting(lakehouse_factory, tmp_path):
    lakehouse = _two_versions(lakehouse_factory, tmp_path, "vacuum")
    lakehouse.stedi("vacuum", "customer_landing", "--apply")  # STEDI_RETENTION_HOURS unset: 168 h
    assert _states(lakehouse) == ["current", "kept"]
    lakehouse.env["STEDI_RETENTION_HOURS"] = "0"
    lakehouse.stedi("vacuum", "customer_landing", "--apply")
    assert _states(lakehouse) == ["current", "gone"]


def test_with_no_erasure_request_each_step_reads_one_commit_per_table_for_the_purge(sample_lake, tmp_path, monkeypatch):
    """The purge check runs at every step for its table and each input: with no request in
    force (the versions say so), it reads one commit of each log, not the whole history nor
    any earlier version. Counted on a real lake (a copy of the sample's: cheap)."""
    from stedi_assets.io_manager import forget_history
    from stedi_assets.lake.delta import Lake
    from stedi_assets.lake.store import LocalStore
    from stedi_assets.tables import MACHINE_LEARNING_CURATED

    lake = Lake(LocalStore(shutil.copytree(sample_lake.lake, tmp_path / "lake")))
    reads: list[tuple[str, object]] = []
    history, at = Lake.history, Lake.at
    monkeypatch.setattr(Lake, "history", lambda self, spec, limit=None: reads.append((spec.name, limit)) or history(self, spec, limit))
    monkeypatch.setattr(Lake, "at", lambda self, spec, version: reads.append((spec.name, "at")) or at(self, spec, version))
    inputs = ["step_trainer_trusted", "accelerometer_trusted", "customer_curated"]
    assert forget_history(lake, [MACHINE_LEARNING_CURATED], 24 * 365, inputs) == []
    assert reads == [(name, 1) for name in [MACHINE_LEARNING_CURATED.name, *inputs]]


def test_a_dead_runs_file_leaves_after_an_hour_and_a_replaced_version_stays_for_the_retention(tmp_path):
    """The vacuum at every step: a data file no commit names, left by a run that died, is
    deleted once UNTRACKED_FILE_HOURS old even within a long retention period; one younger (maybe
    another writer's, about to be committed) stays, and so do the files of a replaced version
    within the retention period. A lake of one small table: cheap."""
    import os
    import time

    from stedi_assets import erasure
    from stedi_assets.io_manager import UNTRACKED_FILE_HOURS, forget_history
    from stedi_assets.lake.delta import Lake
    from stedi_assets.lake.store import LocalStore
    from stedi_assets.privacy import PrivacyPolicy
    from stedi_assets.tables import ERASURE_REQUESTS

    lake = Lake(LocalStore(tmp_path / "lake"))
    erasure.record(lake, PrivacyPolicy(), ["first@test.com"])
    replaced = {Path(f.removeprefix("file://")) for f in lake.current(ERASURE_REQUESTS.spec).files}
    lake.write(ERASURE_REQUESTS.spec, lake.current(ERASURE_REQUESTS.spec).to_arrow(), {})  # version 0 replaced
    [written] = replaced
    dead, young = written.with_name("part-dead-run.parquet"), written.with_name("part-young.parquet")
    shutil.copy(written, dead)
    shutil.copy(written, young)
    hour_and_more = time.time() - UNTRACKED_FILE_HOURS * 3600 - 60
    os.utime(dead, (hour_and_more, hour_and_more))
    forget_history(lake, [ERASURE_REQUESTS], retention_hours=24 * 7)
    assert not dead.exists() and young.exists() and written.exists()
