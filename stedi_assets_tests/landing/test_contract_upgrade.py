"""A lake written under an older landing contract keeps working (issue 21 #11): the Delta schema
grows by the new columns, every file still in the source is parsed again (so its rows get
what the new columns say), and the rows of a file gone from the source are kept, read back
with the new columns null and what their rejected lines name found again in their text.

Costs: a copy of the session's sample lake, two Delta commits to make its landing tables old,
and two in-process runs of the job on the sample (~20 s)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import dagster as dg

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from deltalake import DeltaTable

from stedi_assets.lake.delta import Lake, TableSpec
from stedi_assets.lake.store import LocalStore
from stedi_assets.landing.assets import CONTRACT
from stedi_assets.landing.named import named_tokens
from stedi_assets.tables import REJECTS_OF, TABLES

NEW_LANDING = ("rescued_data",)
NEW_REJECTS = ("reason_code", "named_person_keys", "named_serials")
NEW_LEDGER = ("changed_ns", "inode")
GONE = "accelerometer/landing/late/accelerometer-dirty.json"


def _old_spec(spec: TableSpec, dropped: tuple[str, ...], added: list[pa.Field]) -> TableSpec:
    kept = [f for f in spec.storage_schema if f.name not in dropped]
    return TableSpec(spec.name, spec.location, pa.schema(kept + added))


def make_old(lake: Lake, name: str) -> None:
    """Rewrite a landing table, its rejects and its ledger as the contract before the change
    wrote them: no rescued_data; the rejects with the first named e-mail, its key and the
    first serial, and no reason code; the ledger without ctime and inode. One data file per source file, paired as the landing step pairs them."""
    table, rejects = TABLES[name], REJECTS_OF[name]
    published = lake.current(table.spec)
    old_rejects = lake.companion(published, rejects.spec).to_arrow()
    first = [named_tokens(raw) for raw in old_rejects["raw"].to_pylist()]
    old_rejects = old_rejects.drop_columns(list(NEW_REJECTS))
    for column, values in (
        ("named_email", [e[0] if e else None for e, _ in first]),
        ("named_serial", [s[0] if s else None for _, s in first]),
        ("named_person_key", [e[0].lower() if e else None for e, _ in first]),
    ):
        old_rejects = old_rejects.append_column(column, pa.array(values, pa.string()))
    rejects_spec = _old_spec(rejects.spec, NEW_REJECTS, [pa.field(c, pa.string()) for c in ("named_email", "named_serial", "named_person_key")])
    by_file = lambda data: [data.filter(pc.equal(data["source_file"], f)) for f in pc.unique(data["source_file"]).to_pylist()]  # noqa: E731
    rejects_version = lake.write(rejects_spec, by_file(old_rejects), {})
    ledger_spec = TABLES[f"{name}_files"].spec
    old_ledger = lake.companion(published, ledger_spec).to_arrow().drop_columns(list(NEW_LEDGER))
    ledger = lake.write(_old_spec(ledger_spec, NEW_LEDGER, []), old_ledger, {})
    rows = published.to_arrow().drop_columns(list(NEW_LANDING))
    info = {k: v for k, v in published.info.items() if k not in (CONTRACT, "companions")}
    lake.write(_old_spec(table.spec, NEW_LANDING, []), by_file(rows), info, companions=[rejects_version, ledger])


def columns(location: Path) -> list[str]:
    return [f.name for f in DeltaTable(str(location)).schema().fields]


def test_a_lake_of_the_old_contract_grows_its_schema_and_keeps_every_row(sample_lake, tmp_path: Path):
    house = sample_lake.copy(tmp_path)
    lake = Lake(LocalStore(house.lake))
    before = {name: lake.current(TABLES[name].spec).rows for name in TABLES}
    gone_rows = lake.current(TABLES["accelerometer_landing"].spec).to_arrow()
    gone_rows = gone_rows.filter(pc.equal(gone_rows["source_file"], GONE)).num_rows
    for name in REJECTS_OF:
        make_old(lake, name)
    assert "rescued_data" not in columns(house.lake / "accelerometer/landing")
    assert "named_serial" in columns(house.lake / "accelerometer/landing_rejects")
    assert "inode" not in columns(house.lake / "accelerometer/landing_files")
    # A file gone from the source (its rows are kept), and a producer that adds a field.
    (Path(house.source) / GONE).unlink()
    drifted = Path(house.source) / "step_trainer/landing/step_trainer-1655560000001.json"
    lines = [json.loads(line) for line in drifted.read_text().splitlines() if line.strip()]
    drifted.write_text("".join(json.dumps({**r, "firmware": "2.1", "owner bo.k@test.com": 1}) + "\n" for r in lines))

    instance = dg.DagsterInstance.ephemeral()
    result = house.run(instance=instance)
    assert result.success
    for name, rejects in REJECTS_OF.items():
        table = TABLES[name]
        assert set(NEW_LANDING) <= set(columns(house.lake / table.location)), name
        assert set(NEW_REJECTS) <= set(columns(house.lake / rejects.location)), name
        assert set(NEW_LEDGER) <= set(columns(house.lake / TABLES[f"{name}_files"].location)), name
        current = lake.current(table.spec)
        assert current.info[CONTRACT], name
        # Every data file of the new version was written under the new contract.
        assert all("rescued_data" in pq.read_schema(p).names for p in current.local_paths()), name
    after = {name: lake.current(TABLES[name].spec).rows for name in TABLES}
    assert after == before  # the gone file's rows are kept; nothing else changed but a field

    readings = lake.current(TABLES["accelerometer_landing"].spec).to_arrow()
    kept = readings.filter(pc.equal(readings["source_file"], GONE))
    assert kept.num_rows == gone_rows and kept["rescued_data"].null_count == gone_rows  # read back: null
    rejects = lake.companion(lake.current(TABLES["accelerometer_landing"].spec), REJECTS_OF["accelerometer_landing"].spec).to_arrow()
    gone_rejects = rejects.filter(pc.equal(rejects["source_file"], GONE))
    assert gone_rejects.num_rows and ["ben.khatib@test.com"] in gone_rejects["named_person_keys"].to_pylist()
    assert gone_rejects["reason_code"].null_count == gone_rejects.num_rows  # older rows: no code

    steps = lake.current(TABLES["step_trainer_landing"].spec).to_arrow()
    rescued = steps.filter(pc.equal(steps["source_file"], "step_trainer/landing/step_trainer-1655560000001.json"))
    assert set(rescued["rescued_data"].to_pylist()) == {'{"firmware": "2.1", "owner bo.k@test.com": 1}'}
    [landing] = [m for m in result.get_asset_materialization_events() if m.asset_key.path[-1] == "step_trainer_landing"]
    metadata = landing.step_materialization_data.materialization.metadata
    # Field names as Dagster shows them: anything e-mail-like masked.
    fields = {"firmware": len(lines), "owner bo***@test.com": len(lines)}
    assert metadata["rescued_fields"].value == {rescued["source_file"][0].as_py(): fields}
    warnings = [r.user_message for r in instance.all_logs(result.run_id) if r.level == logging.WARNING]
    assert any("step_trainer_landing: fields outside the contract" in w and "firmware" in w for w in warnings)
    assert any("accelerometer_landing: written under another column contract" in w for w in warnings)

    # The next run continues the upgraded tables: nothing is parsed again.
    again = house.run()
    [landing] = [m for m in again.get_asset_materialization_events() if m.asset_key.path[-1] == "accelerometer_landing"]
    assert landing.step_materialization_data.materialization.metadata["files_parsed"].value == 0
