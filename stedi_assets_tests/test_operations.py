"""Operations that tell the truth (issue 21): a source listing that stays inside its root, a
file identity that includes its content, and `stedi` commands that fail in one line."""

from __future__ import annotations

import json
import os
import shutil
import socket
from pathlib import Path

import dagster as dg
import pytest

from stedi_assets.landing.source import LandingSource
from stedi_assets.settings import SAMPLE_SOURCE, ConsentPolicy
from stedi_assets_tests.incremental_harness import Lakehouse, copy_source, memory_instance

ACCELEROMETER = Path("accelerometer/landing")


# -- the source listing stays inside the source root ---------------------------------------
def test_the_source_listing_never_leaves_its_root_nor_opens_special_files(tmp_path: Path):
    root = tmp_path / "source"
    folder = root / "accelerometer" / "landing"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text('{"x": 1}\n')
    outside = tmp_path / "secret.json"
    outside.write_text('{"password": "hunter2"}\n')
    (folder / "out.json").symlink_to(outside)
    (folder / "etc.json").symlink_to("/etc/passwd")
    (folder / "in.json").symlink_to(folder / "a.json")  # inside the root: read
    (folder / "gone.json").symlink_to(folder / "nothing.json")
    (folder / "loop.json").symlink_to(folder / "loop.json")
    (folder / "up").symlink_to(tmp_path, target_is_directory=True)  # a folder out of the root
    os.mkfifo(folder / "pipe.json")  # opening it would block the step forever
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(folder / "sock.json"))
        entries, skipped = LandingSource(root=str(root)).survey("accelerometer")
    names = lambda keys: sorted(k.rsplit("/", 1)[-1] for k in keys)  # noqa: E731
    assert names(entries) == ["a.json", "in.json"]
    assert entries[f"{ACCELEROMETER}/in.json"].etag == entries[f"{ACCELEROMETER}/a.json"].etag
    assert {k.rsplit("/", 1)[-1]: why for k, why in skipped.items()} == {
        "out.json": "a symlink out of the root folder (not followed)",
        "etc.json": "a symlink out of the root folder (not followed)",
        "gone.json": "a dangling symlink",
        "loop.json": "a dangling symlink",
        "up": "a symlink out of the root folder (not followed)",
        "pipe.json": "a FIFO, never opened",
        "sock.json": "a socket, never opened",
    }


def test_a_landing_run_names_each_file_it_would_not_open_in_its_metadata_and_a_warning(tmp_path: Path):
    source = copy_source(SAMPLE_SOURCE, tmp_path / "source")
    (source / ACCELEROMETER / "passwd.json").symlink_to("/etc/passwd")
    os.mkfifo(source / ACCELEROMETER / "pipe.json")
    with memory_instance() as instance:
        result = Lakehouse(tmp_path, source, instance, ConsentPolicy.ANY).run("accelerometer_landing")
        assert result.success
        [materialization] = result.asset_materializations_for_node("accelerometer_landing")
        skipped = materialization.metadata["files_skipped"].value
        assert skipped == {
            f"{ACCELEROMETER}/passwd.json": "a symlink out of the root folder (not followed)",
            f"{ACCELEROMETER}/pipe.json": "a FIFO, never opened",
        }
        warnings = [
            e.message for e in instance.all_logs(result.run_id) if e.level == 30 and "files not read" in (e.user_message or "")
        ]
        assert len(warnings) == 1 and "passwd.json" in warnings[0] and "pipe.json" in warnings[0]
        rejects = Lakehouse(tmp_path, source, instance, ConsentPolicy.ANY).tables()["accelerometer_landing_rejects"]
        assert not any("root:" in json.dumps(r) for r in rejects)


# -- a file's identity includes its content --------------------------------------------------
def test_a_file_corrected_in_place_with_the_same_size_and_time_is_read_again(tmp_path: Path):
    """`cp -p` / `rsync -t` keep the modification time: only the content says it changed."""
    source = copy_source(SAMPLE_SOURCE, tmp_path / "incremental" / "source")
    policy = ConsentPolicy.SINCE_CONSENT
    with memory_instance() as instance:
        lakehouse = Lakehouse(tmp_path / "incremental", source, instance, policy)
        assert lakehouse.run().success
        before = lakehouse.tables()
        path = source / "customer" / "landing" / "customer-1655560000000.json"
        stat = path.stat()
        text = path.read_text()
        # Move a consent past every reading: the same number of bytes, the same modification time.
        consenting = next(json.loads(line) for line in text.splitlines() if json.loads(line).get("shareWithResearchAsOfDate"))
        date = str(consenting["shareWithResearchAsOfDate"])
        corrected = text.replace(f'"shareWithResearchAsOfDate": {date}', f'"shareWithResearchAsOfDate": {"9" * len(date)}', 1)
        assert corrected != text and len(corrected) == len(text)
        path.write_text(corrected)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
        assert (path.stat().st_size, path.stat().st_mtime_ns) == (stat.st_size, stat.st_mtime_ns)
        assert lakehouse.run().success
        after = lakehouse.tables()
        reference = Lakehouse(tmp_path / "full", copy_source(source, tmp_path / "full" / "source"), instance, policy)
        assert reference.run().success
        assert after == reference.tables()
        assert after != before
