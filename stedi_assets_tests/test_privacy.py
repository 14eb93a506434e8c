"""The privacy lifecycle on the real data plus crafted records: consent in doubt means out,
the right to erasure, and retention of old versions."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from stedi_assets.definitions import build_definitions
from stedi_assets.settings import SAMPLE_SOURCE, Settings
from stedi_assets_tests.conftest import REPO, run_cli

FUTURE = 4_102_444_800_000  # 2100-01-01


def customers(source: Path) -> list[dict]:
    return [json.loads(line) for path in sorted((source / "customer").rglob("*.json")) for line in path.read_text().splitlines() if line.strip()]


def run_lakehouse(source: Path, lake: Path, **settings: str) -> dg.ExecuteInProcessResult:
    definitions = build_definitions(Settings.from_env({"STEDI_SOURCE": str(source), "STEDI_LAKE": str(lake), **settings}))
    result = definitions.resolve_job_def("stedi_lakehouse").execute_in_process(instance=dg.DagsterInstance.ephemeral())
    assert result.success
    return result


def table(lake: Path, location: str):
    return DeltaTable(str(lake / location)).to_pyarrow_table()


@pytest.fixture(scope="module")
def real_copy(reference_data: Path, tmp_path_factory) -> Path:
    return Path(shutil.copytree(reference_data, tmp_path_factory.mktemp("real") / "source"))


@pytest.mark.reference
def test_consent_in_doubt_keeps_each_customer_out_and_is_counted_by_reason(real_copy, tmp_path):
    source = Path(shutil.copytree(real_copy, tmp_path / "source"))
    consenting = [c for c in customers(source) if c.get("shareWithResearchAsOfDate") is not None]
    undated, false_withdrawal, tie, respelled, owner, variant = consenting[:6]
    later = max(c["lastUpdateDate"] for c in customers(source)) + 1000
    crafted = [
        # A later withdrawal without lastUpdateDate: the records cannot be ordered.
        {**undated, "shareWithResearchAsOfDate": None, "lastUpdateDate": None},
        # A withdrawal written as false: the line is rejected, and still names the e-mail.
        {**false_withdrawal, "lastUpdateDate": later, "shareWithResearchAsOfDate": False},
        # The same lastUpdateDate as the consenting record, without consent.
        {k: v for k, v in tie.items() if k != "shareWithResearchAsOfDate"},
        # A new customer whose consent is dated in 2100.
        {**consenting[6], "email": "from.the.future@test.com", "serialNumber": "future-serial", "shareWithResearchAsOfDate": FUTURE},
        # A withdrawal under another spelling of the e-mail.
        {**{k: v for k, v in respelled.items() if k != "shareWithResearchAsOfDate"}, "email": f"  {respelled['email'].upper()} ", "lastUpdateDate": later},
    ]
    lines = [json.dumps(record) for record in crafted]
    # A non-consenting customer on `owner`'s serial number, whose record is rejected (one
    # byte that is not UTF-8 in the name): the serial number is then treated as shared.
    stranger = json.dumps({**owner, "email": "stranger@test.com", "customerName": "StrXnger"}).encode()
    (source / "customer" / "landing" / "crafted.json").write_bytes(
        ("\n".join(lines) + "\n").encode() + stranger.replace(b"StrXnger", b"Str\xffnger") + b"\n"
    )
    # 30 readings of the stranger's device at moments owner's phone recorded nothing.
    (source / "step_trainer" / "landing" / "stranger.json").write_text(
        "".join(json.dumps({"sensorReadingTime": 1_600_000_000_000 + i, "serialNumber": owner["serialNumber"], "distanceFromObject": i}) + "\n" for i in range(30))
    )
    # Readings under a case variant of a trusted customer's e-mail are theirs.
    (source / "accelerometer" / "landing" / "variant.json").write_text(
        "".join(json.dumps({"user": f" {variant['email'].upper()}", "timestamp": 1_500_000_000_000 + i, "x": 1.0, "y": 2.0, "z": 3.0}) + "\n" for i in range(5))
    )

    lake = tmp_path / "lake"
    result = run_lakehouse(source, lake)
    trusted = {e for e in table(lake, "customer/trusted")["email"].to_pylist()}
    assert len(trusted) == 482 - 4  # undated, false_withdrawal, tie and respelled are out; the future one never in
    for out in (undated, false_withdrawal, tie, respelled):
        assert out["email"].strip().lower() not in trusted
    assert "from.the.future@test.com" not in trusted
    assert variant["email"].lower() in trusted and owner["email"].lower() in trusted
    [materialization] = [m for m in result.get_asset_materialization_events() if m.asset_key == dg.AssetKey("customer_trusted")]
    metadata = materialization.step_materialization_data.materialization.metadata
    assert metadata["held_out_by_reason"].value == {
        "records cannot be ordered: one has no lastUpdateDate": 1,
        "a rejected customer line names the e-mail": 1,  # the false withdrawal (the stranger has no other record)
        "latest records disagree on consent": 1,
        "consent dated after the run": 1,
    }
    assert all("***@" in s["email"] for s in metadata["held_out_sample"].value)  # masked
    step = table(lake, "step_trainer/trusted")
    assert not {r["sensorReadingTime"] for r in step.to_pylist()} & {1_600_000_000_000 + i for i in range(30)}
    readings = table(lake, "accelerometer/trusted").to_pylist()
    assert sum(r["user"] == variant["email"].lower() and r["timestamp"] < 1_600_000_000_000 for r in readings) == 5


def counts(lakehouse, where: dict[str, str]) -> dict[str, int]:
    """The rows of each table that match its condition, in one `stedi sql` call."""
    query = " UNION ALL ".join(f"SELECT '{t}' AS t, COUNT(*) AS n FROM {t} WHERE {w}" for t, w in where.items())
    return {row["t"]: row["n"] for row in lakehouse.sql(query)}


def normalized(text: str) -> str:
    """Text as compared for a trace of a person: NFKC, case-folded, without whitespace."""
    return "".join(unicodedata.normalize("NFKC", text).casefold().split())


def every_text_under(folder: Path) -> str:
    """Every file under `folder` as text, `normalized`: Parquet decoded to the distinct
    values of each column, anything else decoded as UTF-8 with JSON escapes undone too."""
    return normalized("\n".join(text for path in sorted(p for p in folder.rglob("*") if p.is_file()) for text in file_texts(path.name, path.read_bytes())))


def file_texts(name: str, body: bytes) -> list[str]:
    """A file of the lake or the instance as texts: a Parquet file's distinct values, column by
    column (each value of a list column: a rejected line's names), else its bytes as UTF-8,
    with JSON escapes undone too."""
    if name.endswith(".parquet"):
        data = pq.read_table(io.BytesIO(body))
        columns = [pc.list_flatten(c) if pa.types.is_list(c.type) else c for c in data.columns]
        return [str(v) for column in columns for v in pc.unique(column).to_pylist()]
    text = body.decode("utf-8", errors="ignore")
    return [text, text.encode("latin-1", errors="ignore").decode("unicode_escape", errors="ignore")]


def traces(text: str, person: dict) -> list[str]:
    """The person's e-mail, name and serial number found in `text` (as `every_text_under`
    gives it), each compared `normalized`."""
    return [value for value in (person["email"], person["customerName"], person["serialNumber"]) if normalized(value) in text]


def kill_after_commit(lakehouse, location: str, env: dict[str, str]) -> int:
    """Run the whole graph through the `dagster` CLI and SIGKILL it (its process group) as
    soon as the table at `location` commits a new version: before that step purges anything.
    Returns the version it committed."""
    log = lakehouse.lake / location / "_delta_log"
    seen = {p.name for p in log.iterdir()}
    command = [str(Path(sys.executable).parent / "dagster"), "asset", "materialize", "-m", "stedi_assets.definitions", "--select", "*"]
    process = subprocess.Popen(command, env={**os.environ, **lakehouse.env, **env}, cwd=lakehouse.root,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not (new := [p for p in os.listdir(log) if p.endswith(".json") and p not in seen]):
            assert process.poll() is None and time.monotonic() < deadline, "the run ended before it committed"
            time.sleep(0.001)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    return int(sorted(new)[0].split(".")[0])


@pytest.mark.reference
def test_forget_removes_exactly_one_person_and_survives_a_kill(real_copy, lakehouse_factory, tmp_path, request):
    """One run; an accelerometer file holding one consenting customer's readings (and other
    people's) is deleted from the source, and a run keeps its rows (as documented); then
    `stedi forget` (the console command) that customer, who has ML rows. A run through the
    CLI is SIGKILLed right after customer_landing commits the erasure, before any purge;
    then a run in another Dagster instance. Every table has lost exactly that customer's
    rows, the gone file's included, and no one else's; no file under the lake (Parquet
    decoded) nor in either instance holds their e-mail, name or serial number in any
    spelling, and no version awaits the purge. Re-ingesting the same files never brings
    them back. Costs four in-process runs (the first whole) and one CLI run cut short."""
    source = Path(shutil.copytree(real_copy, tmp_path / "source"))
    homes = [tmp_path / "dagster_home", tmp_path / "other_dagster_home"]
    for home in homes:
        home.mkdir()
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    lakehouse = lakehouse_factory(source)
    # In process, on the project's instance configuration: every event of every run is in
    # its storage there, as the CLI's runs would be.
    instance = dg.DagsterInstance.from_config(str(homes[0]))
    request.addfinalizer(instance.dispose)
    assert lakehouse.run(instance=instance).success
    [person] = lakehouse.sql(
        "SELECT c.email, c.customerName, c.serialNumber, c.subject_id FROM customer_curated c "
        "WHERE EXISTS (SELECT 1 FROM machine_learning_curated m WHERE m.subject_id = c.subject_id) ORDER BY c.email LIMIT 1"
    )
    key = person["email"]
    [gone] = lakehouse.sql(
        f"SELECT source_file FROM accelerometer_landing GROUP BY source_file "
        f"HAVING COUNT(*) FILTER (WHERE person_key = '{key}') > 0 AND COUNT(*) FILTER (WHERE person_key <> '{key}') > 0 "
        "ORDER BY source_file LIMIT 1"
    )
    (source / gone["source_file"]).unlink()
    assert lakehouse.run(instance=instance).success
    theirs = {
        "customer_landing": f"person_key = '{key}'",
        "accelerometer_landing": f"person_key = '{key}'",
        "step_trainer_landing": f"serialNumber = '{person['serialNumber']}'",
        "customer_trusted": f"email = '{key}'",
        "accelerometer_trusted": f"user = '{key}'",
        "customer_curated": f"email = '{key}'",
        "step_trainer_trusted": f"serialNumber = '{person['serialNumber']}'",
        "machine_learning_curated": f"subject_id = '{person['subject_id']}'",
    }
    before = counts(lakehouse, {t: "TRUE" for t in theirs})
    their_rows = counts(lakehouse, theirs)
    assert all(their_rows.values()), their_rows
    in_gone_file = counts(lakehouse, {"accelerometer_landing": f"source_file = '{gone['source_file']}' AND person_key = '{key}'"})
    assert in_gone_file["accelerometer_landing"] > 0

    landing_files = set(lakehouse.delta("accelerometer/landing").file_uris())
    holding = {f for f in landing_files if key in pq.read_table(f.removeprefix("file://"), columns=["person_key"])["person_key"].to_pylist()}

    said = run_cli(["stedi", "forget", f" {key.upper()} "], lakehouse.env, lakehouse.root)
    assert "recorded 1 new erasure request" in said.stdout and key not in said.stdout
    [erasure] = lakehouse.sql("SELECT * FROM erasure_requests")
    assert erasure["erasure_key"] == person["subject_id"] and set(erasure) == {"erasure_key", "requested_at", "key_id"}

    committed = kill_after_commit(lakehouse, "customer/landing", {"DAGSTER_HOME": str(homes[0])})
    # The erasure is committed and its purge still to do: the lake says so.
    assert lakehouse.delta("customer/landing").version() == committed
    assert "awaiting-purge" in lakehouse.stedi("versions", "customer_landing").stdout
    other = dg.DagsterInstance.from_config(str(homes[1]))
    request.addfinalizer(other.dispose)
    assert lakehouse.run(instance=other).success

    after = counts(lakehouse, {t: "TRUE" for t in theirs})
    assert after == {t: before[t] - their_rows[t] for t in theirs}
    assert counts(lakehouse, theirs) == dict.fromkeys(theirs, 0)
    # Targeted: landing was changed on its published version, never parsed again, and the
    # tables downstream followed what it lost, incrementally.
    def last_commit(location: str) -> dict:
        return lakehouse.delta(location).history(1)[0]["stedi"]

    assert landing_files - set(lakehouse.delta("accelerometer/landing").file_uris()) == holding  # no other file touched
    info = last_commit("accelerometer/landing")
    assert info["build"] == "incremental" and info["changes"]["erased_rows"] == their_rows["accelerometer_landing"], info
    for location in ("accelerometer/trusted", "step_trainer/trusted", "machine_learning/curated"):
        assert last_commit(location)["build"] == "incremental", (location, last_commit(location))
    rejects = ("customer_landing_rejects", "accelerometer_landing_rejects", "step_trainer_landing_rejects")
    assert counts(lakehouse, {t: "TRUE" for t in rejects}) == dict.fromkeys(rejects, 0)
    spelled = next(c["email"] for c in customers(real_copy) if c["email"].lower() == key)
    for folder in (lakehouse.lake, *homes):
        assert traces(every_text_under(folder), {**person, "email": spelled}) == [], folder.name
    for name in theirs:
        history = lakehouse.stedi("versions", name).stdout.splitlines()
        assert "current" in history[0] and all(" gone " in line for line in history[1:]), (name, history)

    # The same source files again: still gone. (In the other instance: the killed run never
    # gave back its claim on customer_landing's pool in the first, issue 21.)
    assert lakehouse.run(instance=other).success
    assert counts(lakehouse, {t: "TRUE" for t in theirs}) == after
    refused = lakehouse.stedi("rollback", "machine_learning_curated", "--to", "0", check=False)
    assert refused.returncode != 0 and "purged when erasure requests were applied" in refused.stderr


def test_versions_leave_the_history_after_the_retention_period(lakehouse_factory, tmp_path):
    """STEDI_RETENTION_HOURS=0: each run deletes the versions it replaced, so a withdrawn
    customer's data leaves the history at once; a rollback past the window is refused."""

    def two_versions(retention: str | None) -> list[str]:
        source = Path(shutil.copytree(SAMPLE_SOURCE, tmp_path / f"sample-{retention}"))
        lakehouse = lakehouse_factory(source, **({"STEDI_RETENTION_HOURS": retention} if retention else {}))
        assert lakehouse.run("customer_landing").success
        arrival = {"customerName": "New Customer", "email": "new.customer@test.com", "serialNumber": "new-serial",
                   "registrationDate": 1, "lastUpdateDate": 1}
        # The customer file delivered again, changed: its data file is replaced in a new version
        # (a new file beside it would only add one, and the first version would stay whole).
        [customers] = (source / "customer" / "landing").glob("*.json")
        customers.write_text(customers.read_text() + json.dumps(arrival) + "\n")
        assert lakehouse.run("customer_landing").success
        lines = lakehouse.stedi("versions", "customer_landing").stdout.splitlines()
        return lakehouse, [line.split()[3] for line in lines]

    _, kept = two_versions(None)
    assert kept == ["current", "kept"]
    brief, gone = two_versions("0")
    assert gone == ["current", "gone"]
    refused = brief.stedi("rollback", "customer_landing", check=False)
    assert refused.returncode != 0 and "past the retention window (STEDI_RETENTION_HOURS=0)" in refused.stderr


def test_a_purge_waits_for_the_readers_or_stedi_forget_purge(sample_lake, tmp_path):
    """A run of customer_landing alone applies a request: its earlier version awaits the purge
    (its readers, not run, were built from it and still follow from it), `stedi versions`
    says so, and `stedi forget --purge` deletes it. Costs a copy of the sample lake and one
    single-step run."""
    lakehouse = sample_lake.copy(tmp_path)
    [person] = lakehouse.sql("SELECT email, customerName FROM customer_trusted ORDER BY email LIMIT 1")
    lakehouse.stedi("forget", person["email"])
    assert lakehouse.run("customer_landing").success
    assert "awaiting-purge" in lakehouse.stedi("versions", "customer_landing").stdout
    assert "awaiting-purge" in lakehouse.stedi("versions", "customer_landing_files").stdout  # its ledger
    said = lakehouse.stedi("forget", "--purge").stdout
    assert "customer_landing: deleted every version built before the erasure requests" in said
    assert "awaiting-purge" not in lakehouse.stedi("versions", "customer_landing").stdout
    assert traces(every_text_under(lakehouse.lake / "customer" / "landing"), {**person, "serialNumber": person["email"]}) == []
    assert lakehouse.stedi("forget", "--purge").stdout == "no version awaits the purge\n"


def test_an_erasure_downstream_rewrites_only_the_data_files_that_held_her(sample_lake, tmp_path):
    """accelerometer_trusted follows an erasure like any change: once accelerometer_landing
    lost her readings, only its data files holding them are rewritten; a file appended since
    (another customer's new reading) stays as it is, in the same judged, incremental commit.
    Costs a copy of the sample lake and two in-process runs."""
    lakehouse = sample_lake.copy(tmp_path)
    [her, other] = lakehouse.sql("SELECT user, MAX(timestamp) AS last FROM accelerometer_trusted GROUP BY user ORDER BY user LIMIT 2")
    reading = {"user": other["user"], "timestamp": other["last"] + 1, "x": 0.5, "y": 0.5, "z": 0.5}
    (lakehouse.source / "accelerometer" / "landing" / "later.json").write_text(json.dumps(reading) + "\n")
    assert lakehouse.run().success
    trusted = lakehouse.delta("accelerometer/trusted")
    before = set(trusted.file_uris())
    [appended] = [f for f in before if pq.read_table(f.removeprefix("file://")).num_rows == 1]
    rows = lakehouse.count("accelerometer_trusted")
    [theirs] = lakehouse.sql(f"SELECT COUNT(*) AS n FROM accelerometer_trusted WHERE user = '{her['user']}'")
    lakehouse.stedi("forget", her["user"])
    assert lakehouse.run().success
    trusted = lakehouse.delta("accelerometer/trusted")
    assert appended in set(trusted.file_uris()) and len(before - set(trusted.file_uris())) == 1
    assert lakehouse.count("accelerometer_trusted") == rows - theirs["n"] > 0
    assert trusted.history(1)[0]["stedi"]["build"] == "incremental"


@pytest.mark.parametrize(
    ("selected", "column", "full"),
    [
        ("accelerometer_trusted", "user", False),
        ("accelerometer_trusted", "user", True),
        ("customer_trusted", "email", False),
        ("customer_curated", "email", False),
    ],
)
def test_a_table_selected_alone_after_forget_leaves_her_out_itself(sample_lake, tmp_path, selected, column, full):
    """After `stedi forget`, a table selected alone (its landing input still holds her rows)
    removes her rows from what it publishes by itself, incrementally or in a full build
    (`full_refresh`): the step passes every rule, only her rows leave (an incremental commit
    for a readings table unless full), and the next whole run still succeeds. Costs a copy of
    the sample lake and two in-process runs per case (about 8 s)."""
    lakehouse = sample_lake.copy(tmp_path)
    [her] = lakehouse.sql(f"SELECT {column} AS who, COUNT(*) AS n FROM {selected} GROUP BY {column} ORDER BY {column} LIMIT 1")
    rows = lakehouse.count(selected)
    lakehouse.stedi("forget", her["who"])
    result = lakehouse.run(select=selected, full_refresh=(selected,) if full else ())
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    assert lakehouse.sql(f"SELECT COUNT(*) AS n FROM {selected} WHERE {column} = '{her['who']}'") == [{"n": 0}]
    assert lakehouse.count(selected) == rows - her["n"]
    if selected == "accelerometer_trusted":
        commit = lakehouse.delta("accelerometer/trusted").history(1)[0]["stedi"]
        assert commit["build"] == ("full" if full else "incremental")
        assert full or commit["changes"]["affected_keys"] == 1  # hers: the key it followed
    assert lakehouse.run().success
    assert lakehouse.sql(f"SELECT COUNT(*) AS n FROM {selected} WHERE {column} = '{her['who']}'") == [{"n": 0}]


def test_the_ml_table_rebuilt_alone_after_forget_neither_holds_nor_draws_her(sample_lake, tmp_path):
    """After `stedi forget`, machine_learning_curated rebuilt alone (`full_refresh`, its inputs
    still hold her) publishes without her rows, and its pictures are drawn on what it
    publishes: the subjects counted are the published table's. About 6 s."""
    lakehouse = sample_lake.copy(tmp_path)
    [her] = lakehouse.sql(
        "SELECT c.email, c.subject_id, COUNT(*) AS n FROM machine_learning_curated AS m JOIN customer_curated AS c "
        "ON c.subject_id = m.subject_id GROUP BY c.email, c.subject_id ORDER BY n DESC, c.email LIMIT 1"
    )
    rows = lakehouse.count("machine_learning_curated")
    lakehouse.stedi("forget", her["email"])
    result = lakehouse.run(select="machine_learning_curated", full_refresh=("machine_learning_curated",))
    assert result.success and all(e.passed for e in result.get_asset_check_evaluations())
    assert lakehouse.count("machine_learning_curated") == rows - her["n"]
    [subjects] = lakehouse.sql("SELECT COUNT(DISTINCT subject_id) AS n FROM machine_learning_curated")
    [materialization] = result.asset_materializations_for_node("machine_learning_curated")
    assert materialization.metadata["subjects"].value == subjects["n"]
