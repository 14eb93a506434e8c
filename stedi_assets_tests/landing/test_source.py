"""Which files of a landing folder are read, and that every other one is named with why."""

from __future__ import annotations

from pathlib import Path

import pytest

from stedi_assets.landing.source import LandingSource, NoLandingFilesError


def test_a_survey_reads_json_files_at_any_depth_and_names_every_other_file(tmp_path: Path):
    folder = tmp_path / "accelerometer" / "landing"
    (folder / "2026" / "12").mkdir(parents=True)
    for name in ("a.json", "b.JSONL", "c.ndjson", "2026/12/d.json", "_manifest.json", ".e.json", "_SUCCESS", "notes.txt"):
        (folder / name).write_text("{}\n")
    entries, skipped = LandingSource(root=str(tmp_path)).survey("accelerometer")
    assert sorted(k.rsplit("/", 1)[-1] for k in entries) == ["a.json", "b.JSONL", "c.ndjson", "d.json"]
    assert {k.rsplit("/", 1)[-1]: why for k, why in skipped.items()} == {
        "_manifest.json": "name starts with '_' (a hidden or marker file)",
        ".e.json": "name starts with '.' (a hidden or marker file)",
        "_SUCCESS": "name starts with '_' (a hidden or marker file)",
        "notes.txt": "not a .json/.jsonl/.ndjson file",
    }


def test_a_folder_of_skipped_files_only_is_an_error_that_says_where(tmp_path: Path):
    (tmp_path / "customer" / "landing").mkdir(parents=True)
    (tmp_path / "customer" / "landing" / "_all.json").write_text("{}\n")
    with pytest.raises(NoLandingFilesError, match=r"no landing files for customer: .* not read: .*_all.json \(name starts with"):
        LandingSource(root=str(tmp_path)).survey("customer")


def _recorded(path: Path, etag: str) -> dict:
    """A ledger row of `path` as it is now, with `etag` as its recorded content hash."""
    status = path.stat()
    return {"size": status.st_size, "modified_ns": status.st_mtime_ns, "changed_ns": status.st_ctime_ns,
            "inode": status.st_ino, "etag": etag}


def test_a_file_whose_status_is_as_recorded_is_not_hashed_again_and_any_write_is(tmp_path: Path):
    """Issue 21 #2: hashing is skipped only while size, mtime, ctime and inode are all as
    recorded; an in-place correction that keeps size and mtime (`cp -p`) moves the ctime."""
    import os
    import time

    path = tmp_path / "customer" / "landing" / "c.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"email": "a@x"}\n')
    source = LandingSource(root=str(tmp_path))
    key = "customer/landing/c.json"
    hashed = source.survey("customer")[0][key].etag
    assert hashed.startswith("blake2b:")
    # As recorded: the recorded hash stands (a stand-in value shows the file was not read).
    assert source.survey("customer", {key: _recorded(path, "blake2b:recorded")})[0][key].etag == "blake2b:recorded"
    # Anything unknown or different in the record: hashed.
    for missing in ("changed_ns", "inode"):
        assert source.survey("customer", {key: {**_recorded(path, "x"), missing: None}})[0][key].etag == hashed
    recorded = _recorded(path, hashed)
    status = path.stat()
    time.sleep(0.05)
    path.write_text('{"email": "b@x"}\n')  # same size
    os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))  # same modification time
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (status.st_size, status.st_mtime_ns)
    corrected = source.survey("customer", {key: recorded})[0][key]
    assert corrected.etag != hashed


def test_a_status_changed_less_than_a_second_before_the_listing_is_not_recorded(tmp_path: Path):
    """File times tick in steps: a write right after the listing could leave them unchanged."""
    path = tmp_path / "customer" / "landing" / "c.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"email": "a@x"}\n')
    entry = LandingSource(root=str(tmp_path)).survey("customer")[0]["customer/landing/c.json"]
    assert entry.changed_ns is None and entry.inode == path.stat().st_ino
