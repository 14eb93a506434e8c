"""Incremental ingest gives exactly what a full run gives.

Each case delivers something to a lakehouse that has ingested the bundled sample, runs the
graph (incrementally: the default), and compares every table, rejects and ledgers included,
row for row with a from-scratch full run on the final source, under both consent policies.
A file removed from the source keeps its rows (that is the contract), so its case compares
with a full run on the source as it was with that file. The property test does the same over
random arrival sequences of `stedi generate` files.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import types
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stedi_assets.engine.resource import DuckDBEngineResource
from stedi_assets.generate import generate
from stedi_assets.incremental import Follower
from stedi_assets.lake.delta import Lake, TableSpec
from stedi_assets.lake.store import LocalStore
from stedi_assets.lakehouse import published
from stedi_assets.settings import SAMPLE_SOURCE, ConsentPolicy
from stedi_assets.tables import TABLES
from stedi_assets_tests.conftest import IN_CI, SharedLake
from stedi_assets_tests.incremental_harness import InProcessLakehouse, copy_source, memory_instance, persistent_instance, touch_later

ACCELEROMETER = Path("accelerometer/landing")
STEP_TRAINER = Path("step_trainer/landing")
CUSTOMER = Path("customer/landing")
FOLLOWING = ("accelerometer_trusted", "step_trainer_trusted", "machine_learning_curated")


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_lines(path: Path, records: list[dict], extra: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + extra)


def customers(source: Path) -> dict[str, dict]:
    """The latest record of each customer in the source."""
    latest: dict[str, dict] = {}
    for path in sorted((source / CUSTOMER).rglob("*.json")):
        for record in lines(path):
            if record["email"] not in latest or record["lastUpdateDate"] >= latest[record["email"]]["lastUpdateDate"]:
                latest[record["email"]] = record
    return latest


# -- the arrivals; each returns the source a full run must be compared with ------------------
def new_accelerometer_file(source: Path) -> Path:
    """Readings at existing reading times with other values (new rows, new ML pairs), exact
    copies of published readings (they collapse), and a line that is not JSON (a reject)."""
    picked = lines(source / ACCELEROMETER / "accelerometer-1655560000000.json")[:60]
    moved = [{**r, "x": r["x"] + 0.5} for r in picked[:40]]
    write_lines(source / ACCELEROMETER / "accelerometer-1655570000000.json", moved + picked[40:], extra="not json\n")
    return source


def new_step_trainer_file(source: Path) -> Path:
    """Step readings at new times for existing serial numbers, with a phone reading of their
    owner at each of those times (new ML rows), and exact copies of published readings."""
    owners = {c["serialNumber"]: c["email"] for c in customers(source).values()}
    picked = lines(source / STEP_TRAINER / "step_trainer-1655560000000.json")[:50]
    moved = [{**r, "sensorReadingTime": r["sensorReadingTime"] + 7} for r in picked[:40]]
    write_lines(source / STEP_TRAINER / "step_trainer-1655570000000.json", moved + picked[40:])
    phones = [{"user": owners[r["serialNumber"]], "timestamp": r["sensorReadingTime"], "x": 0.0, "y": 1.0, "z": 0.0} for r in moved]
    write_lines(source / ACCELEROMETER / "accelerometer-1655570000001.json", phones)
    return source


def corrected_file(source: Path) -> Path:
    """A file delivered again under the same name: lines dropped, values corrected, lines added."""
    path = source / ACCELEROMETER / "accelerometer-1655560000003.json"
    records = lines(path)
    corrected = [{**r, "y": r["y"] - 2} for r in records[10:30]] + records[40:] + [{**records[0], "timestamp": records[0]["timestamp"] + 3}]
    write_lines(path, corrected, extra='{"user": "nobody@test.com"}\n')
    touch_later(path)
    return source


def same_file_new_name(source: Path) -> Path:
    """Files delivered again under new names: landing keeps their lines under the new names,
    the trusted tables already hold every reading."""
    for folder, name in ((STEP_TRAINER, "step_trainer-1655560000001.json"), (ACCELEROMETER, "accelerometer-1655560000002.json")):
        (source / folder / "again").mkdir()
        shutil.copy(source / folder / name, source / folder / "again" / name)
    return source


def consent_changes(source: Path) -> Path:
    """A customer file that withdraws one customer's consent and grants another's."""
    everyone = customers(source)
    consenting = sorted(e for e, c in everyone.items() if c.get("shareWithResearchAsOfDate"))
    refusing = sorted(e for e, c in everyone.items() if not c.get("shareWithResearchAsOfDate"))
    later = max(c["lastUpdateDate"] for c in everyone.values()) + 1000
    withdrawn = {k: v for k, v in everyone[consenting[0]].items() if k != "shareWithResearchAsOfDate"}
    granted = {**everyone[refusing[0]], "shareWithResearchAsOfDate": everyone[refusing[0]]["registrationDate"] + 30_000}
    write_lines(source / CUSTOMER / "customer-1655570000000.json", [{**withdrawn, "lastUpdateDate": later}, {**granted, "lastUpdateDate": later}])
    return source


def file_removed(source: Path) -> Path:
    """A file gone from the source keeps its rows: compare with the source that still has it."""
    as_it_was = copy_source(source, source.parent / "with_the_removed_file")
    (source / ACCELEROMETER / "accelerometer-1655560000005.json").unlink()
    return as_it_was


ARRIVALS: dict[str, Callable[[Path], Path]] = {
    "new accelerometer file": new_accelerometer_file,
    "new step trainer file": new_step_trainer_file,
    "corrected file under the same name": corrected_file,
    "same file under a new name": same_file_new_name,
    "consent withdrawn and granted": consent_changes,
    "file removed": file_removed,
}


def full_run_on(source: Path, root: Path, instance: dg.DagsterInstance, policy: ConsentPolicy) -> InProcessLakehouse:
    root.mkdir()
    reference = InProcessLakehouse(root, source, instance, policy)
    assert reference.run().success
    return reference


@pytest.fixture(params=list(ConsentPolicy), ids=lambda p: p.value)
def ingested_sample(request, shared_lake) -> SharedLake:
    """The sample, fully ingested under a policy (the session's lake, conftest): every case
    starts from a copy of it."""
    return shared_lake(SAMPLE_SOURCE, request.param)


@pytest.mark.parametrize("arrival", list(ARRIVALS))
def test_incremental_run_equals_a_full_run(arrival, ingested_sample, tmp_path):
    policy = ingested_sample.policy
    source = ingested_sample.copy(tmp_path).source
    with memory_instance() as instance:
        lakehouse = InProcessLakehouse(tmp_path, source, instance, policy)
        before = lakehouse.tables()
        final_source = ARRIVALS[arrival](source)
        result = lakehouse.run()
        assert result.success
        after = lakehouse.tables()
        reference = full_run_on(final_source, tmp_path / "reference", instance, policy)
        assert after == reference.tables()
        # The arrival changed something: the case is not vacuous.
        if arrival == "file removed":
            ledger = published(lakehouse.store(), ["accelerometer_landing_files"])["accelerometer_landing_files"].to_arrow()
            assert {r["source_file"] for r in ledger.to_pylist() if not r["present"]} == {
                "accelerometer/landing/accelerometer-1655560000005.json"
            }
        else:
            assert after != before
        # The tables that changed were changed from what changed, not rebuilt.
        for name, snapshot in published(lakehouse.store(), FOLLOWING).items():
            if snapshot.version > 0:
                assert snapshot.info["build"] == "incremental", (name, snapshot.info)


# -- random arrival sequences ----------------------------------------------------------------
POOL_OPTIONS = dict(scale=0.02, seed=3, duplicate_emails=4, reused_serials=1, files_per_source=(3, 4, 3))
OPERATIONS = ("deliver", "deliver", "correct", "copy", "remove", "run")


def corrected(key: str, content: bytes, variant: int) -> bytes:
    """Another version of a delivered file: every third line from `variant` dropped, and
    accelerometer values or customer consents changed (step trainer readings only dropped,
    so no two deliveries disagree on one reading's distance)."""
    out = []
    for n, line in enumerate(content.decode().splitlines()):
        if not line.strip() or (n + variant) % 3 == 0:
            continue
        record = json.loads(line)
        if key.startswith("accelerometer") and n % 2:
            record["x"] += variant + 1
        if key.startswith("customer") and n % 4 == variant % 4:
            record["shareWithResearchAsOfDate"] = None if record.get("shareWithResearchAsOfDate") else record["registrationDate"] + 1
        out.append(json.dumps(record))
    return ("\n".join(out) + "\n").encode()


class Arrivals:
    """A source that files arrive in, and what the lakehouse has seen of them: each file as it
    was at the last run that found it (a removed file keeps its rows, so the full run is made
    on that; a file delivered and removed again between two runs was never seen)."""

    def __init__(self, pool: Path, source: Path):
        self.pool = {str(p.relative_to(pool)): p.read_bytes() for p in sorted(pool.rglob("*.json"))}
        self.keys = list(self.pool)
        self.source = source
        self.delivered: dict[str, bytes] = {}  # in the source now
        self.ingested: dict[str, bytes] = {}
        self.copies = 0

    def _write(self, key: str, content: bytes) -> None:
        path = self.source / key
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        path.write_bytes(content)
        if existed:
            touch_later(path)
        self.delivered[key] = content

    def ran(self) -> None:
        self.ingested.update(self.delivered)

    def apply(self, operation: str, index: int) -> None:
        key = self.keys[index % len(self.keys)]
        present = sorted(self.delivered)
        if operation == "deliver":
            self._write(key, self.pool[key])
        elif operation == "correct" and present:
            target = present[index % len(present)]
            self._write(target, corrected(target, self.delivered[target], index))
        elif operation == "copy" and present:
            target = present[index % len(present)]
            self.copies += 1
            source_folder, rest = target.split("/", 1)
            self._write(f"{source_folder}/again-{self.copies}/{rest}", self.delivered[target])
        elif operation == "remove" and present:
            target = present[index % len(present)]
            folder = target.split("/", 1)[0]
            if sum(k.startswith(folder + "/") for k in present) > 1:  # a source never runs dry
                (self.source / target).unlink()
                del self.delivered[target]

    def write_final(self, target: Path) -> Path:
        for key, content in self.ingested.items():
            (target / key).parent.mkdir(parents=True, exist_ok=True)
            (target / key).write_bytes(content)
        return target


@pytest.fixture(scope="module")
def generated_pool(tmp_path_factory) -> Path:
    pool = tmp_path_factory.mktemp("pool")
    generate(LocalStore(pool), **POOL_OPTIONS)
    return pool


@settings(
    max_examples=int(os.environ.get("STEDI_PROPERTY_EXAMPLES", "8")),
    deadline=None,
    derandomize=IN_CI,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    policy=st.sampled_from(list(ConsentPolicy)),
    steps=st.lists(st.tuples(st.sampled_from(OPERATIONS), st.integers(0, 100)), min_size=1, max_size=7),
)
def test_any_arrival_sequence_ends_where_a_full_run_does(generated_pool, tmp_path_factory, policy, steps):
    root = tmp_path_factory.mktemp("arrivals")
    arrivals = Arrivals(generated_pool, root / "source")
    for source in ("customer", "accelerometer", "step_trainer"):  # the first delivery: a file of each
        arrivals.apply("deliver", next(i for i, k in enumerate(arrivals.keys) if k.startswith(source)))
    with memory_instance() as instance:
        lakehouse = InProcessLakehouse(root, arrivals.source, instance, policy)
        assert lakehouse.run().success
        arrivals.ran()
        for operation, index in steps:
            if operation == "run":
                assert lakehouse.run().success
                arrivals.ran()
            else:
                arrivals.apply(operation, index)
        assert lakehouse.run().success
        arrivals.ran()
        reference = full_run_on(arrivals.write_final(root / "final"), root / "reference", instance, policy)
        assert lakehouse.tables() == reference.tables()


# -- idempotence -----------------------------------------------------------------------------
@pytest.fixture(params=["memory"])
def ingested(request, sample_lake, tmp_path) -> InProcessLakehouse:
    """The sample ingested by a full run: a copy of the session's sample lake and its source
    (conftest), driven on an instance in memory, or on a persistent one as `dagster dev` has
    where the test asks for it with `@pytest.mark.parametrize("ingested", ["sqlite"], indirect=True)`."""
    copy = sample_lake.copy(tmp_path)
    with persistent_instance(tmp_path) if request.param == "sqlite" else memory_instance() as instance:
        yield InProcessLakehouse(tmp_path, copy.source, instance, ConsentPolicy.ANY)


def tick(lakehouse: InProcessLakehouse, sensor: str):
    defs = lakehouse.definitions()
    with dg.build_sensor_context(instance=lakehouse.instance, definitions=defs, resources=defs.resources) as context:
        return defs.resolve_sensor_def(sensor).evaluate_tick(context)


@pytest.mark.parametrize("ingested", ["sqlite"], indirect=True)
def test_a_sensor_skips_when_nothing_is_new_and_requests_each_arrival_once(ingested):
    for sensor in ("customer_arrivals", "accelerometer_arrivals", "step_trainer_arrivals"):
        idle = tick(ingested, sensor)
        assert not idle.run_requests and "already ingested" in idle.skip_message, sensor

    new_accelerometer_file(ingested.source)
    [request] = tick(ingested, "accelerometer_arrivals").run_requests
    assert request.asset_selection == [dg.AssetKey("accelerometer_landing")]
    [again] = tick(ingested, "accelerometer_arrivals").run_requests
    assert again.run_key == request.run_key  # the same arrivals: Dagster launches one run for both
    assert not tick(ingested, "step_trainer_arrivals").run_requests

    assert ingested.run("accelerometer_landing").success
    assert not tick(ingested, "accelerometer_arrivals").run_requests  # compared with the lake, not a cursor

    corrected = ingested.source / ACCELEROMETER / "accelerometer-1655570000000.json"
    corrected.write_text(corrected.read_text().replace("not json\n", ""))
    touch_later(corrected)
    [correction] = tick(ingested, "accelerometer_arrivals").run_requests
    assert correction.run_key != request.run_key


def test_the_step_trainer_sensor_waits_for_customer_landing(tmp_path):
    """On an empty lake the step trainer's arrivals are not requested before customer_landing,
    which its step reads, is published: that run could only fail, and would spend their run key."""
    source = copy_source(SAMPLE_SOURCE, tmp_path / "source")
    with memory_instance() as instance:
        lakehouse = InProcessLakehouse(tmp_path, source, instance, ConsentPolicy.ANY)
        waiting = tick(lakehouse, "step_trainer_arrivals")
        assert not waiting.run_requests
        assert waiting.skip_message == "step_trainer_landing waits for customer_landing to be published (it reads it)"
        assert tick(lakehouse, "accelerometer_arrivals").run_requests  # it reads no other table
        assert lakehouse.run("customer_landing").success
        [request] = tick(lakehouse, "step_trainer_arrivals").run_requests
        assert request.asset_selection == [dg.AssetKey("step_trainer_landing")]


def test_running_the_same_run_twice_changes_nothing(ingested):
    new_step_trainer_file(ingested.source)
    consent_changes(ingested.source)
    assert ingested.run().success
    versions, tables = ingested.versions(), ingested.tables()
    result = ingested.run()
    assert result.success
    assert ingested.versions() == versions and ingested.tables() == tables
    metadata = {m.asset_key.path[-1]: m.metadata for m in (e.materialization for e in result.get_asset_materialization_events())}
    assert metadata["accelerometer_landing"]["files_parsed"].value == 0


def test_a_run_killed_after_landing_converges_on_the_next_run(ingested, tmp_path):
    """The run is killed (SIGKILL) once the landing table is committed, wherever its other
    steps are: the next run, incremental, ends where a full run does."""
    new_accelerometer_file(ingested.source)
    landing = ingested.lake / "accelerometer" / "landing" / "_delta_log"
    committed = len(list(landing.glob("*.json")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEDI_")}
    env.update(STEDI_SOURCE=str(ingested.source), STEDI_LAKE=str(ingested.lake), STEDI_AUTOMATION="false")
    dagster = Path(sys.executable).parent / "dagster"
    run = subprocess.Popen(
        [str(dagster), "asset", "materialize", "-m", "stedi_assets.definitions", "--select", "*"],
        env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while len(list(landing.glob("*.json"))) == committed:
            assert run.poll() is None and time.monotonic() < deadline, "the run ended before its landing commit"
            time.sleep(0.05)
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait()
    assert ingested.run().success
    reference = full_run_on(copy_source(ingested.source, tmp_path / "final"), tmp_path / "reference", ingested.instance, ConsentPolicy.ANY)
    assert ingested.tables() == reference.tables()


def test_a_removed_file_keeps_its_rows_and_the_landing_checks_still_pass(ingested):
    """Its rows stay and the ledger marks it gone; the checks run alone recount the source and
    take the gone file's lines from the ledger; a full refresh then drops its rows."""
    removed = "accelerometer/landing/accelerometer-1655560000005.json"
    versions, tables = ingested.versions(), ingested.tables()
    (ingested.source / removed).unlink()
    result = ingested.run()
    assert result.success and ingested.tables() == tables
    changed = {name for name, version in ingested.versions().items() if version != versions[name]}
    assert changed == {"accelerometer_landing", "accelerometer_landing_files"}  # only the ledger says something new
    [landing] = [e.materialization for e in result.get_asset_materialization_events() if e.asset_key.path == ["accelerometer_landing"]]
    assert landing.metadata["files_gone"].value == [removed]
    defs = ingested.definitions()
    checks = dg.materialize(
        defs.assets, selection=dg.AssetSelection.checks_for_assets("accelerometer_landing"),
        resources=defs.resources, instance=ingested.instance,
    )
    assert checks.success and all(e.passed for e in checks.get_asset_check_evaluations())
    assert ingested.run(full_refresh=True).success
    tables = published(ingested.store(), ["accelerometer_landing", "accelerometer_landing_files"])
    assert removed not in set(tables["accelerometer_landing"].to_arrow()["source_file"].to_pylist())
    assert removed not in set(tables["accelerometer_landing_files"].to_arrow()["source_file"].to_pylist())


def test_a_vacuumed_input_version_means_a_full_build(ingested):
    """The version a table was built from lost the files that the new one replaced: the
    table cannot tell what changed, so it is built from scratch, and is still right."""
    corrected_file(ingested.source)
    assert ingested.run("accelerometer_landing").success  # accelerometer_trusted is now behind
    ingested.store().vacuum(TABLES["accelerometer_landing"].spec, retain_hours=0, apply=True)
    assert ingested.run().success
    accelerometer = published(ingested.store(), ["accelerometer_trusted"])["accelerometer_trusted"]
    assert accelerometer.info["build"] == "full"
    with memory_instance() as instance:
        reference = full_run_on(copy_source(ingested.source, ingested.root / "final"), ingested.root / "reference", instance, ConsentPolicy.ANY)
    assert ingested.tables() == reference.tables()


def test_a_new_subject_key_or_policy_rebuilds_what_depends_on_it(ingested, monkeypatch):
    """Nothing arrived, but the subject key changed: the curated tables are rebuilt with the
    new subject ids. Then the consent policy changed: the trusted readings are rebuilt."""
    before = ingested.tables()
    monkeypatch.setenv("STEDI_SUBJECT_KEY", "another-subject-key")  # the resource reads it as dg.EnvVar
    settings = ingested.settings
    ingested.settings = lambda: replace(settings(), subject_key="another-subject-key")
    assert ingested.run().success
    after = ingested.tables()
    assert after["customer_curated"] != before["customer_curated"]
    assert {r["subject_id"] for r in after["machine_learning_curated"]} == {r["subject_id"] for r in after["customer_curated"]}
    ingested.policy = ConsentPolicy.SINCE_CONSENT
    assert ingested.run().success
    with memory_instance() as instance:
        reference = InProcessLakehouse(ingested.root / "reference", ingested.source, instance, ConsentPolicy.SINCE_CONSENT)
        reference.settings = lambda: replace(InProcessLakehouse.settings(reference), subject_key="another-subject-key")
        assert reference.run().success
        assert ingested.tables() == reference.tables()


def test_an_input_the_build_does_not_follow_makes_it_a_full_build(ingested, monkeypatch):
    """Were accelerometer_trusted's build to overlook customer_trusted (as it would an input
    added to the asset later), a consent change must not slip past it: it builds in full."""
    from stedi_assets.incremental import Changes, Follower

    follows = Follower.changes

    def overlooking(self, name):
        if self.table.name == "accelerometer_trusted" and name == "customer_trusted":
            old = self.bases[name]
            empty = old.spec.storage_schema.empty_table()
            return Changes(old, empty, empty)  # "nothing changed", unrecorded
        return follows(self, name)

    monkeypatch.setattr(Follower, "changes", overlooking)
    consent_changes(ingested.source)
    assert ingested.run().success
    accelerometer = published(ingested.store(), ["accelerometer_trusted"])["accelerometer_trusted"]
    assert accelerometer.info["build"] == "full"
    with memory_instance() as instance:
        reference = full_run_on(copy_source(ingested.source, ingested.root / "final"), ingested.root / "reference", instance, ConsentPolicy.ANY)
    assert ingested.tables() == reference.tables()


def test_changes_are_whole_rows_so_every_column_a_rule_reads_is_followed(tmp_path):
    """No list of the columns each rule reads: a change in any column of a row is a change."""
    lake = Lake(LocalStore(tmp_path / "lake"))
    spec = TableSpec("people", "people/trusted", pa.schema([("email", pa.string()), ("phone", pa.string())]))
    old = lake.write(spec, pa.table({"email": ["a@x", "b@x"], "phone": ["1", "2"]}), {})
    new = lake.write(spec, pa.table({"email": ["a@x", "b@x"], "phone": ["1", "3"]}), {})  # only b's phone
    follower = object.__new__(Follower)
    follower.bases, follower.compared = {"people": old}, set()
    follower.step = types.SimpleNamespace(inputs={"people": new}, engine=DuckDBEngineResource())
    changes = follower.changes("people")
    assert changes.removed.to_pylist() == [{"email": "b@x", "phone": "2"}]
    assert changes.added.to_pylist() == [{"email": "b@x", "phone": "3"}]
    assert follower.compared == {"people"}
