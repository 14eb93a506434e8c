"""Write-audit-publish in each asset's own step, through Dagster's Python API: a failed audit
is recorded on the materialization it judged and publishes nothing; re-execution, partial
selections and checks run alone never report a check on data they did not judge, and never
publish a version no check judged."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
from dagster._core.definitions.reconstruct import ReconstructableJob
import pytest
from deltalake import DeltaTable

from stedi_assets.definitions import build_definitions
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.store import LocalStore
from stedi_assets.lakehouse import published
from stedi_assets.settings import SAMPLE_SOURCE, Settings
from stedi_assets.tables import STEP_TRAINER_LANDING, STEP_TRAINER_LANDING_REJECTS

STEP_TRAINER_TRUSTED_KEY = dg.AssetKey("step_trainer_trusted")
PROJECT_DAGSTER_HOME = Path(__file__).resolve().parents[1] / "dagster_home"


def lakehouse_job() -> dg.JobDefinition:
    """The lakehouse job as a reconstructable target, with settings from the environment."""
    return build_definitions(Settings.from_env()).resolve_job_def("stedi_lakehouse")


class Sandbox:
    def __init__(self, root: Path, instance: dg.DagsterInstance):
        self.source = Path(shutil.copytree(SAMPLE_SOURCE, root / "source"))
        self.lake = root / "lake"
        self.instance = instance
        self.job = dg.reconstructable(lakehouse_job)

    def run(self, **kwargs) -> dg.ExecuteJobResult:
        with dg.execute_job(self.job, instance=self.instance, raise_on_error=False, **kwargs) as result:
            return result

    def definitions(self) -> dg.Definitions:
        return build_definitions(Settings.from_env())

    def version(self, location: str) -> int:
        return DeltaTable(str(self.lake / location)).version()

    def rows(self, location: str) -> int:
        return DeltaTable(str(self.lake / location)).to_pyarrow_table().num_rows

    def add_conflicting_step_trainer_reading(self) -> Path:
        """A reading with the key of a published one and another distance."""
        published_reading = DeltaTable(str(self.lake / "step_trainer/trusted")).to_pyarrow_table().slice(0, 1).to_pylist()[0]
        late = self.source / "step_trainer" / "landing" / "late.json"
        late.write_text(
            f'{{"serialNumber":"{published_reading["serialNumber"]}",'
            f'"sensorReadingTime":{published_reading["sensorReadingTime"]},"distanceFromObject":9999}}\n'
        )
        return late


def forget_loaded_jobs() -> None:
    """Dagster keeps the last job it reconstructed (an lru_cache): each test's job has the
    settings of its own sandbox."""
    ReconstructableJob.get_definition.cache_clear()
    ReconstructableJob.get_repository_definition.cache_clear()


@pytest.fixture
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    forget_loaded_jobs()
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_DAGSTER_HOME / "dagster.yaml", home)  # the instance the README's commands use
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        box = Sandbox(tmp_path, instance)
        monkeypatch.setenv("STEDI_SOURCE", str(box.source))
        monkeypatch.setenv("STEDI_LAKE", str(box.lake))
        yield box


def materializations(result: dg.ExecuteJobResult, asset: str) -> list[dg.AssetMaterialization]:
    return [
        e.step_materialization_data.materialization
        for e in result.get_asset_materialization_events()
        if e.asset_key == dg.AssetKey(asset)
    ]


def evaluations(instance: dg.DagsterInstance, run_id: str) -> list[dg.AssetCheckEvaluation]:
    records = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    return [r.dagster_event.event_specific_data for r in records]


def materialization_storage_id(instance: dg.DagsterInstance, run_id: str, asset: str) -> int:
    """As the asset index numbers it (what check targets refer to; sqlite's run logs number apart)."""
    records = instance.fetch_materializations(dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset)), limit=100).records
    [record] = [r for r in records if r.run_id == run_id]
    return record.storage_id


def test_a_failed_audit_is_recorded_on_the_materialization_it_judged_and_publishes_nothing(sandbox):
    assert sandbox.run().success
    version, files = sandbox.version("step_trainer/trusted"), sorted((sandbox.lake / "step_trainer/trusted").glob("*.parquet"))
    sandbox.add_conflicting_step_trainer_reading()

    failed = sandbox.run()
    assert not failed.success
    [materialization] = materializations(failed, "step_trainer_trusted")
    metadata = materialization.metadata
    assert metadata["published"].value is False
    assert "FAILED reading_key_unique (1)" in metadata["audit"].value
    judged = {e.check_name: e for e in evaluations(sandbox.instance, failed.run_id) if e.asset_key == STEP_TRAINER_TRUSTED_KEY}
    assert judged["reading_key_unique"].passed is False
    assert judged["reading_key_unique"].metadata["violations"].value == 1
    # Recorded against the materialization it judged, not the previous one.
    target = judged["reading_key_unique"].target_materialization_data
    assert target.storage_id == materialization_storage_id(sandbox.instance, failed.run_id, "step_trainer_trusted")
    # Nothing published, nothing even written, and nothing downstream ran.
    assert sandbox.version("step_trainer/trusted") == version
    assert sorted((sandbox.lake / "step_trainer/trusted").glob("*.parquet")) == files
    assert not materializations(failed, "machine_learning_curated")


def test_reexecution_never_shows_green_on_data_it_did_not_judge(sandbox):
    """The issue's scenario: a bad line fails reading_key_unique; the user corrects the file
    (delivers it again, empty) and re-executes from failure. The landing step is not
    re-executed, so its published table still holds the line: the re-execution judges that
    again and fails. Re-executing everything ingests the corrected file, which replaces the
    bad line, and step_trainer_trusted, whose inputs are then as it was built from, stays."""
    assert sandbox.run().success
    landing_rows = sandbox.rows("step_trainer/landing")
    trusted_version = sandbox.version("step_trainer/trusted")
    late = sandbox.add_conflicting_step_trainer_reading()
    failed = sandbox.run()
    assert not failed.success
    assert sandbox.rows("step_trainer/landing") == landing_rows + 1  # landing itself was sound
    late.write_text("")  # a file removed would keep its rows: the fix is a corrected delivery

    from_failure = sandbox.run(reexecution_options=dg.ReexecutionOptions.from_failure(failed.run_id, sandbox.instance))
    assert not from_failure.success
    judged = [e for e in evaluations(sandbox.instance, from_failure.run_id) if e.check_name == "reading_key_unique"]
    assert judged and not any(e.passed for e in judged)
    for evaluation in judged:  # each on the materialization of the run that judged it
        target = evaluation.target_materialization_data
        assert target.run_id == from_failure.run_id
    assert sandbox.version("step_trainer/trusted") == trusted_version
    assert not materializations(from_failure, "machine_learning_curated")

    everything = sandbox.run(reexecution_options=dg.ReexecutionOptions(parent_run_id=failed.run_id))
    assert everything.success
    assert sandbox.rows("step_trainer/landing") == landing_rows
    assert sandbox.version("step_trainer/trusted") == trusted_version
    assert all(e.passed for e in evaluations(sandbox.instance, everything.run_id))


def test_checks_run_alone_judge_the_published_version_and_publish_nothing(sandbox):
    good = sandbox.run()
    assert good.success
    sandbox.add_conflicting_step_trainer_reading()
    assert not sandbox.run().success  # the newest materialization of step_trainer_trusted failed
    version = sandbox.version("step_trainer/trusted")

    defs = sandbox.definitions()
    checks_only = dg.materialize(
        defs.assets,
        selection=dg.AssetSelection.checks_for_assets("step_trainer_trusted"),
        resources=defs.resources,
        instance=sandbox.instance,
    )
    assert checks_only.success
    assert not checks_only.get_asset_materialization_events()  # nothing built
    assert sandbox.version("step_trainer/trusted") == version  # nothing published
    judged = evaluations(sandbox.instance, checks_only.run_id)
    assert {e.check_name for e in judged} == {"reading_key_unique", "serial_belongs_to_curated_customer", "no_erased_person"}
    published_storage_id = materialization_storage_id(sandbox.instance, good.run_id, "step_trainer_trusted")
    for evaluation in judged:
        assert evaluation.passed
        assert evaluation.metadata["judged_version"].value == version
        # Against the materialization that produced the published version, not the newest (failed) one.
        assert evaluation.target_materialization_data.storage_id == published_storage_id


def test_a_partial_selection_builds_and_judges_only_what_it_selects(sandbox):
    assert sandbox.run().success
    before = {t: sandbox.version(t) for t in ("customer/trusted", "accelerometer/trusted", "machine_learning/curated")}
    defs = sandbox.definitions()
    result = dg.materialize(
        defs.assets,
        selection=dg.AssetSelection.assets("customer_trusted"),
        resources=defs.resources,
        instance=sandbox.instance,
        run_config={"ops": {"customer_trusted": {"config": {"full_refresh": True}}}},  # a new version even with nothing new
    )
    assert result.success
    assert {e.check_name for e in evaluations(sandbox.instance, result.run_id)} == {"consent_present", "consent_unambiguous", "email_unique_not_null", "no_erased_person"}
    assert sandbox.version("customer/trusted") == before["customer/trusted"] + 1
    assert sandbox.version("accelerometer/trusted") == before["accelerometer/trusted"]
    assert sandbox.version("machine_learning/curated") == before["machine_learning/curated"]


def test_a_failure_between_the_rejects_and_the_landing_commit_leaves_the_pair_as_it_was(sandbox, monkeypatch):
    assert sandbox.run().success
    lake = Lake(LocalStore(sandbox.lake))
    pair = published(lake, [STEP_TRAINER_LANDING.name, STEP_TRAINER_LANDING_REJECTS.name])
    (sandbox.source / "step_trainer" / "landing" / "bad.json").write_text("not json\n")

    write = Lake.write

    def fail_on_the_landing_table(self, spec, data, info, **change):
        if spec.name == STEP_TRAINER_LANDING.name:
            raise OSError("the machine was lost between the two commits")
        return write(self, spec, data, info, **change)

    monkeypatch.setattr(Lake, "write", fail_on_the_landing_table)
    defs = sandbox.definitions()
    result = dg.materialize(
        defs.assets, selection=dg.AssetSelection.assets("step_trainer_landing"), resources=defs.resources,
        instance=sandbox.instance, raise_on_error=False,
    )
    assert not result.success
    assert sandbox.version("step_trainer/landing_rejects") == pair[STEP_TRAINER_LANDING_REJECTS.name].version + 1
    after = published(lake, [STEP_TRAINER_LANDING.name, STEP_TRAINER_LANDING_REJECTS.name])
    assert {n: s.version for n, s in after.items()} == {n: s.version for n, s in pair.items()}


def test_another_io_manager_gets_the_audited_table_and_the_step_still_succeeds(sandbox):
    """The step hands its IO manager one immutable value, the table that passed its audit:
    any IO manager can take it, and the step does not depend on what was done with it. The
    table's data files were staged out of sight (no Delta log names them): nothing is
    published."""
    defs = sandbox.definitions()
    result = dg.materialize(
        defs.assets,
        selection=dg.AssetSelection.assets("customer_landing"),
        resources={**defs.resources, "io_manager": dg.InMemoryIOManager()},
        instance=sandbox.instance,
    )
    assert result.success
    audited = result.output_for_node("customer_landing", "customer_landing")
    assert audited.table.name == "customer_landing" and audited.info["rows"] == audited.data.to_arrow().num_rows
    assert not list(sandbox.lake.rglob("_delta_log"))  # nothing committed: that IO manager keeps the staged files


def test_a_commit_another_run_beat_is_built_and_judged_again_on_its_version(sample_lake, tmp_path, monkeypatch):
    """Another run commits the step trainer's rejects on the version this step built on, just
    before this step does (and has not committed its landing table yet): this step's commit is
    refused, Dagster retries the step, and the retry restores the rejects to the version the
    landing table names (a Delta reader of the rejects alone never keeps seeing the other
    run's unpaired version) and commits its own on it: the new reject is in once."""
    lakehouse = sample_lake.copy(tmp_path / "sample")
    lake = Lake(LocalStore(lakehouse.lake))
    before = published(lake, [STEP_TRAINER_LANDING.name, STEP_TRAINER_LANDING_REJECTS.name])
    (lakehouse.source / "step_trainer" / "landing" / "bad.json").write_text("not json\n")

    write, beaten = Lake.write, []

    def another_run_commits_first(self, spec, data, info, **change):
        if spec.name == STEP_TRAINER_LANDING_REJECTS.name and not beaten:
            beaten.append(write(self, spec, data, {**info, "run_id": "another run"}, **change))
        return write(self, spec, data, info, **change)

    monkeypatch.setattr(Lake, "write", another_run_commits_first)
    result = lakehouse.run("step_trainer_landing", raise_on_error=False)
    assert result.success
    [other] = beaten
    assert other.version == before[STEP_TRAINER_LANDING_REJECTS.name].version + 1
    kinds = [e.event_type for e in result.all_events if e.step_key == "step_trainer_landing"]
    assert kinds.count(dg.DagsterEventType.STEP_UP_FOR_RETRY) == 1
    after = published(lake, [STEP_TRAINER_LANDING.name, STEP_TRAINER_LANDING_REJECTS.name])
    rejects = after[STEP_TRAINER_LANDING_REJECTS.name]
    assert rejects.rows == before[STEP_TRAINER_LANDING_REJECTS.name].rows + 1
    assert rejects.version == other.version + 2  # the restore of the paired version, then this run's commit
    direct = DeltaTable(str(lakehouse.lake / "step_trainer/landing_rejects"))
    assert direct.version() == rejects.version
    restore = direct.history(2)[1]
    assert restore["operation"] == "RESTORE"
    assert restore["stedi"]["restored_version"] == before[STEP_TRAINER_LANDING_REJECTS.name].version
