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
