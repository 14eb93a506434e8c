"""Operations that tell the truth (issue 21): a source listing that stays inside its root, a
file identity that includes its content, and `stedi` commands that fail in one line."""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from stedi_assets.cli import main
from stedi_assets.lakehouse import AUDITS
from stedi_assets.lake.store import LocalStore
from stedi_assets.landing.source import LandingSource, with_content_hash
from stedi_assets.settings import SAMPLE_SOURCE, ConsentPolicy, Settings, SettingsError
from stedi_assets.tables import LAKE_TABLES
from stedi_assets_tests.conftest import REPO
from stedi_assets_tests.incremental_harness import InProcessLakehouse, copy_source, memory_instance

ACCELEROMETER = Path("accelerometer/landing")


# -- the source listing stays inside the source root ---------------------------------------
def test_the_source_listing_never_leaves_its_root_nor_opens_special_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
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
        monkeypatch.chdir(folder)  # bound by a relative path: AF_UNIX paths are limited to 107 bytes
        sock.bind("sock.json")
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
        result = InProcessLakehouse(tmp_path, source, instance, ConsentPolicy.ANY).run("accelerometer_landing")
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
        rejects = InProcessLakehouse(tmp_path, source, instance, ConsentPolicy.ANY).tables()["accelerometer_landing_rejects"]
        assert not any("root:" in json.dumps(r) for r in rejects)


# -- a file's identity includes its content --------------------------------------------------
def test_a_file_corrected_in_place_with_the_same_size_and_time_is_read_again(tmp_path: Path):
    """`cp -p` / `rsync -t` keep the modification time: only the content says it changed."""
    source = copy_source(SAMPLE_SOURCE, tmp_path / "incremental" / "source")
    policy = ConsentPolicy.SINCE_CONSENT
    with memory_instance() as instance:
        lakehouse = InProcessLakehouse(tmp_path / "incremental", source, instance, policy)
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
        reference = InProcessLakehouse(tmp_path / "full", copy_source(source, tmp_path / "full" / "source"), instance, policy)
        assert reference.run().success
        assert after == reference.tables()
        assert after != before


def test_an_etag_is_the_content_hash_unless_the_object_was_uploaded_in_parts(tmp_path: Path):
    (tmp_path / "a.json").write_bytes(b'{"x": 1}\n')
    store, entry = LocalStore(tmp_path), LocalStore(tmp_path).entries("a.json")["a.json"]
    hashed = with_content_hash(store, "a.json", entry)
    assert hashed.etag == "blake2b:" + hashlib.blake2b(b'{"x": 1}\n', digest_size=16).hexdigest()
    assert with_content_hash(store, "a.json", replace(entry, etag='"9b2cf535f27731c974343645a3985328"')).etag == '"9b2cf535f27731c974343645a3985328"'
    assert with_content_hash(store, "a.json", replace(entry, etag='"9b2cf535f27731c974343645a3985328-2"')).etag == hashed.etag


# -- settings: one line naming the setting, any case ----------------------------------------
@pytest.mark.parametrize("value, policy", [("ANY", ConsentPolicy.ANY), (" Since_Consent ", ConsentPolicy.SINCE_CONSENT)])
def test_settings_that_name_a_choice_take_it_in_any_case(value: str, policy: ConsentPolicy):
    settings = Settings.from_env({"STEDI_CONSENT_POLICY": value, "STEDI_ENGINE": "DuckDB"})
    assert (settings.consent_policy, settings.engine) == (policy, "duckdb")


def test_a_lake_that_names_a_file_is_refused_before_anything_is_built(tmp_path: Path):
    (tmp_path / "file").write_text("not a lake")
    for lake in (tmp_path / "file", tmp_path / "file" / "lake"):
        with pytest.raises(SettingsError, match=f"STEDI_LAKE={lake} (is|lies under) a file, not a folder: set it to a folder"):
            Settings.from_env({"STEDI_LAKE": str(lake)})
    assert Settings.from_env({"STEDI_LAKE": str(tmp_path / "new" / "lake")}).lake == str(tmp_path / "new" / "lake")


def test_the_settings_tables_list_every_setting_once_with_its_default():
    """settings.py defines each setting; README.md's table and docs/s3-and-aws.md's say what it means."""
    text = (REPO / "README.md").read_text() + (REPO / "docs/s3-and-aws.md").read_text()
    documented = re.findall(r"^\| `(STEDI_\w+)` \| ([^|]+) \|", text, re.M)
    defined = {variable: default for variable, default, _ in (f.metadata["setting"] for f in fields(Settings))}
    assert sorted(v for v, _ in documented) == sorted([*defined, "STEDI_REFERENCE_DATA"])  # that one is the tests'
    literal = {v: cell.strip("`").removeprefix("./") for v, cell in documented if re.fullmatch(r"`[^`]+`", cell) and defined.get(v)}
    assert literal == {v: defined[v] for v in literal} and len(literal) == 12


BAD_SETTINGS = {
    "STEDI_CONSENT_POLICY": ("sometimes", "STEDI_CONSENT_POLICY='sometimes' is not one of: any, since_consent"),
    "STEDI_ENGINE": ("pandas", "STEDI_ENGINE='pandas' is not one of: duckdb, spark"),
    "STEDI_RETENTION_HOURS": ("a week", "STEDI_RETENTION_HOURS='a week' is not a whole number of hours: set it to 0 or more"),
    "STEDI_S3_TIMEOUT": ("soon", "STEDI_S3_TIMEOUT='soon' is not a number: set it to a positive number"),
}
COMMANDS = [["sql", "SELECT 1"], ["versions", "customer_trusted"], ["vacuum"], ["forget", "a@b.c"], ["ddl"],
            ["generate", "out"], ["rollback", "customer_trusted"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize("setting", list(BAD_SETTINGS))
def test_every_stedi_command_reports_a_bad_setting_in_one_line(command: list[str], setting: str, tmp_path: Path):
    value, message = BAD_SETTINGS[setting]
    result = CliRunner().invoke(main, command, env={"STEDI_LAKE": str(tmp_path / "lake"), setting: value})
    assert (result.exit_code, result.stderr, result.stdout) == (2, f"stedi: {message}\n", "")
    assert not (tmp_path / "lake").exists()


def test_a_run_with_a_bad_setting_fails_in_one_line_before_building_anything(tmp_path: Path):
    """The command line is the point: what `dagster job execute` prints when the Definitions
    cannot load their settings."""
    (tmp_path / "file").write_text("not a lake")
    env = {**os.environ, "PYTHONPATH": str(REPO), "STEDI_LAKE": str(tmp_path / "file"), "DAGSTER_HOME": str(tmp_path)}
    command = [str(Path(sys.executable).parent / "dagster"), "job", "execute", "-m", "stedi_assets.definitions", "-j", "stedi_lakehouse"]
    done = subprocess.run(command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    errors = [line for line in done.stderr.splitlines() if "SupersessionWarning" not in line and line.strip()]
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert errors[-1] == f"stedi: STEDI_LAKE={tmp_path / 'file'} is a file, not a folder: set it to a folder (created if missing) or an s3:// location"
    assert (tmp_path / "file").read_text() == "not a lake"


# -- stedi commands ----------------------------------------------------------------------------
def test_generate_never_overwrites_the_bundled_sample():
    before = {p: p.read_bytes() for p in SAMPLE_SOURCE.rglob("*") if p.is_file()}
    for env in ({}, {"STEDI_SOURCE": str(SAMPLE_SOURCE)}):
        result = CliRunner().invoke(main, ["generate"], env={"STEDI_SOURCE": None, **env})
        assert result.exit_code == 2 and result.stderr.startswith("stedi: generate writes to OUT, else STEDI_SOURCE")
        assert "name an output folder" in result.stderr and result.stderr.count("\n") == 1
    assert {p: p.read_bytes() for p in SAMPLE_SOURCE.rglob("*") if p.is_file()} == before


def test_help_never_breaks_a_table_name():
    for command in ("rollback", "versions", "vacuum"):
        text = CliRunner().invoke(main, [command, "--help"], terminal_width=60).stdout
        words = set(re.findall(r"[a-z_]+", text))
        assert {"machine_learning_curated", "step_trainer_trusted"} <= words, text
        assert all(n in words for n in (LAKE_TABLES if command != "rollback" else AUDITS)), text


@pytest.fixture(scope="module")
def lake_of_the_sample(tmp_path_factory) -> InProcessLakehouse:
    """The sample ingested twice (every table has a version to roll back to)."""
    root = tmp_path_factory.mktemp("sample")
    with memory_instance() as instance:
        lakehouse = InProcessLakehouse(root, copy_source(SAMPLE_SOURCE, root / "source"), instance, ConsentPolicy.ANY)
        assert lakehouse.run().success and lakehouse.run(full_refresh=True).success
        yield lakehouse


def stedi(lakehouse: InProcessLakehouse, *args: str):
    env = {"STEDI_SOURCE": str(lakehouse.source), "STEDI_LAKE": str(lakehouse.lake), "STEDI_CONSENT_POLICY": lakehouse.policy.value}
    return CliRunner().invoke(main, list(args), env=env)


def test_sql_on_an_unknown_table_names_the_lake_tables(lake_of_the_sample: InProcessLakehouse):
    result = stedi(lake_of_the_sample, "sql", "SELECT * FROM customer_trusteed")
    assert result.exit_code == 1 and "pg_" not in result.stderr
    assert result.stderr == f"Error: no table customer_trusteed in the lake: query one of {', '.join(sorted(LAKE_TABLES))}\n"


def test_vacuum_of_a_lake_without_erasure_requests_says_nothing_to_vacuum(lake_of_the_sample: InProcessLakehouse):
    result = stedi(lake_of_the_sample, "vacuum", "erasure_requests", "customer_trusted")
    assert result.exit_code == 0 and "materialize" not in result.stdout
    assert result.stdout.splitlines()[0] == f"erasure_requests: not in {lake_of_the_sample.lake}, nothing to vacuum"


def test_rollback_is_a_dry_run_unless_applied(lake_of_the_sample: InProcessLakehouse):
    before = lake_of_the_sample.versions()
    dry = stedi(lake_of_the_sample, "rollback", "customer_trusted")
    assert dry.exit_code == 0, dry.output
    assert dry.stdout.startswith("customer_trusted would be restored to version 0") and "add --apply" in dry.stdout
    assert lake_of_the_sample.versions() == before
    applied = stedi(lake_of_the_sample, "rollback", "customer_trusted", "--apply")
    assert applied.exit_code == 0 and "customer_trusted restored to version 0 as version 2" in applied.stdout
    assert lake_of_the_sample.versions() == {**before, "customer_trusted": before["customer_trusted"] + 1}


def test_a_rollback_refused_because_an_erasure_purged_the_version_says_so(tmp_path: Path):
    with memory_instance() as instance:
        lakehouse = InProcessLakehouse(tmp_path, copy_source(SAMPLE_SOURCE, tmp_path / "source"), instance, ConsentPolicy.ANY)
        assert lakehouse.run().success
        assert stedi(lakehouse, "forget", "Jerry.Jones40@test.com").exit_code == 0
        assert lakehouse.run().success
    refused = stedi(lakehouse, "rollback", "customer_trusted", "--to", "0")
    assert refused.exit_code == 1 and "retention" not in refused.stderr
    assert refused.stderr == (
        "Error: customer_trusted version 0 was purged when erasure requests were applied (no version from before "
        "an erasure is kept): it left the history and cannot be restored\n"
    )
