"""The pictures in the UI (issue #13): each chart is in its materialization's metadata as a
PNG of the expected size, the funnel's numbers are the tables' counts, a chart that fails
is a warning and never a failed step, and no picture shows a direct identifier."""

from __future__ import annotations

import base64
import doctest
import logging
import re
import struct
import time
import zlib
from collections import Counter
from pathlib import Path

import dagster as dg
import pyarrow as pa
import pytest

from stedi_assets import charts
from stedi_assets.curated import signals
from stedi_assets.definitions import build_definitions
from stedi_assets.engine.duckdb_engine import DuckDBEngine
from stedi_assets.resources.lake import LakeResource
from stedi_assets.lakehouse import published
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import SAMPLE_SOURCE, ConsentPolicy, Settings
from stedi_assets.tables import (
    ACCELEROMETER_LANDING,
    CUSTOMER_CURATED,
    CUSTOMER_LANDING,
    MACHINE_LEARNING_CURATED,
    STEP_TRAINER_TRUSTED,
    TABLES,
)
from stedi_assets_tests.builders import table
from stedi_assets_tests.test_reference_counts import REFERENCE

# Pixels: inches x charts.DPI (90), fixed so that the UI's layout does not jump between runs.
SMALL, SHARE, SIGNALS = (540, 270), (540, 162), (648, 360)
LANDING_CHARTS = {"rejects_by_reason": SMALL, "rows_per_file": SMALL}
EXPECTED = {
    "customer_landing": LANDING_CHARTS,
    "accelerometer_landing": LANDING_CHARTS,
    "step_trainer_landing": LANDING_CHARTS,
    "customer_curated": {"privacy_funnel": SMALL},
    "machine_learning_curated": {
        "privacy_funnel": SMALL,
        "subject_signals": SIGNALS,
        "readings_per_subject": SMALL,
        "step_trainer_matches": SHARE,
    },
}
MAX_PNG_BYTES = 100_000  # "small (tens of KB)"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_DATA_URI = re.compile(r"!\[[^\]]*\]\(data:image/png;base64,([A-Za-z0-9+/=]+)\)")


def png_of(markdown: str) -> bytes:
    [encoded] = _DATA_URI.findall(markdown)
    return base64.b64decode(encoded, validate=True)


def png_chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    """(type, data) of every chunk, each CRC checked: the PNG decodes as a PNG."""
    assert png[:8] == PNG_SIGNATURE
    chunks, pos = [], 8
    while pos < len(png):
        (length,) = struct.unpack(">I", png[pos : pos + 4])
        kind, data = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", png[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + data) == crc, f"bad CRC in chunk {kind!r}"
        chunks.append((kind, data))
        pos += 12 + length
    assert chunks[0][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    zlib.decompress(b"".join(data for kind, data in chunks if kind == b"IDAT"))  # the pixels inflate
    return chunks


def png_size(png: bytes) -> tuple[int, int]:
    kind, ihdr = png_chunks(png)[0]
    return struct.unpack(">II", ihdr[:8])


def assert_chart(markdown: str, size: tuple[int, int]) -> bytes:
    png = png_of(markdown)
    assert png_size(png) == size
    assert len(png) < MAX_PNG_BYTES
    return png


def per_file(rows: pa.Table) -> dict[str, int]:
    """The rows of each source file, as a landing build counts them for `rows_per_file`."""
    return dict(Counter(rows["source_file"].to_pylist()))


def funnel_numbers(markdown: str) -> list[tuple[str, int]]:
    """The stages in the caption under the funnel: `**956** in customer_landing → ...`."""
    caption = markdown.split(")", 1)[1]
    return [(label.strip(), int(n.replace(",", ""))) for n, label in re.findall(r"\*\*([\d,]+)\*\* ([^→]+)", caption)]


def materialize(source: Path, lake: Path, **settings: str) -> tuple[dg.ExecuteInProcessResult, dg.DagsterInstance]:
    definitions = build_definitions(Settings.from_env({"STEDI_SOURCE": str(source), "STEDI_LAKE": str(lake), **settings}))
    job = definitions.resolve_implicit_global_asset_job_def()
    instance = dg.DagsterInstance.ephemeral()
    return job.execute_in_process(instance=instance, raise_on_error=False), instance


def metadata_by_asset(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {m.asset_key.path[-1]: m.materialization.metadata for m in result.get_asset_materialization_events()}


def run_logs(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> list[tuple[int, str, str]]:
    return [(e.level, e.step_key or "", e.user_message) for e in instance.all_logs(result.run_id)]


# -- in a run ---------------------------------------------------------------------------------
@pytest.fixture
def sample_run(sample_lake) -> tuple[dg.ExecuteInProcessResult, Path, list]:
    """The run that built the session's sample lake (conftest), its lake and its logs."""
    return sample_lake.result, sample_lake.lake, run_logs(sample_lake.instance, sample_lake.result)


def test_every_chart_is_a_png_of_its_size_in_the_materialization(sample_run):
    result, _, logs = sample_run
    metadata = metadata_by_asset(result)
    for asset, expected in EXPECTED.items():
        for name, size in expected.items():
            value = metadata[asset].get(name)
            assert isinstance(value, dg.MarkdownMetadataValue), f"{asset} has no chart {name}"
            assert_chart(value.value, size)
    assert not [m for level, _, m in logs if level >= logging.WARNING and "chart" in m]


def test_landing_metadata_has_the_numbers_dagster_plots(sample_run):
    metadata = metadata_by_asset(sample_run[0])
    for asset in ("customer_landing", "accelerometer_landing", "step_trainer_landing"):
        for name in ("rows", "rejects", "files"):
            assert isinstance(metadata[asset][name], dg.IntMetadataValue), (asset, name)
    assert metadata["accelerometer_landing"]["rejects"].value == 5
    ml = metadata["machine_learning_curated"]
    assert isinstance(ml["subjects"], dg.IntMetadataValue)
    assert isinstance(ml["step_trainer_match_share"], dg.FloatMetadataValue)


def test_matched_step_trainer_readings_are_counted_exactly(sample_run):
    """The profile's count equals SQL's DISTINCT (serial number, time) over the ML table (the
    case of two subjects matching one reading is test_profile_counts_a_reading_two_subjects_share_once)."""
    result, lake, _ = sample_run
    current = LakeResource(root=str(lake)).lake().current
    relations = {t: current(TABLES[t].spec) for t in ("machine_learning_curated", "customer_curated", "step_trainer_trusted")}
    [row] = DuckDBEngine().query(
        """SELECT COUNT(*) AS matched FROM (
               SELECT DISTINCT c.serialNumber, m.sensorReadingTime FROM machine_learning_curated AS m
               JOIN customer_curated AS c ON c.subject_id = m.subject_id) AS d""",
        relations,
    ).to_pylist()
    ml = metadata_by_asset(result)["machine_learning_curated"]
    assert ml["step_trainer_readings_matched"].value == row["matched"] > 0
    total = relations["step_trainer_trusted"].rows
    assert ml["step_trainer_match_share"].value == pytest.approx(row["matched"] / total)
    assert f"**{row['matched']:,}** of **{total:,}**" in ml["step_trainer_matches"].value
    subjects = DuckDBEngine().query("SELECT COUNT(DISTINCT subject_id) AS n FROM machine_learning_curated", relations)
    assert ml["subjects"].value == subjects["n"][0].as_py()


def test_a_chart_that_fails_to_draw_is_a_warning_not_a_failure(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the plotter is broken")

    monkeypatch.setattr(charts, "rows_per_file", broken)
    monkeypatch.setattr(charts, "privacy_funnel", broken)
    result, instance = materialize(SAMPLE_SOURCE, tmp_path / "lake")
    assert result.success
    metadata = metadata_by_asset(result)
    warnings = [(step, m) for level, step, m in run_logs(instance, result) if level == logging.WARNING]
    for asset in ("customer_landing", "accelerometer_landing", "step_trainer_landing"):
        assert "rows_per_file" not in metadata[asset] and "rejects_by_reason" in metadata[asset]
        assert (asset, "chart rows_per_file left out of the metadata: RuntimeError: the plotter is broken") in warnings
    for asset in ("customer_curated", "machine_learning_curated"):
        assert "privacy_funnel" not in metadata[asset]
        assert any(step == asset and "chart privacy_funnel left out" in m for step, m in warnings)
    assert "subject_signals" in metadata["machine_learning_curated"]


def test_pictures_turn_any_exception_into_a_warning_and_add_up_their_time(caplog):
    log = logging.getLogger("stedi.test")
    pictures = charts.Pictures(log)
    with caplog.at_level(logging.DEBUG, logger="stedi.test"):
        assert pictures.chart("broken", lambda: 1 / 0) == {}
        assert pictures.guarded("numbers", lambda: time.sleep(0.05) or 7) == 7
        drawn = pictures.chart("funnel", lambda: charts.privacy_funnel([("a", 2), ("b", 1)]))
    assert [r.getMessage() for r in caplog.records] == [
        "chart broken left out of the metadata: ZeroDivisionError: division by zero"
    ]
    assert_chart(drawn["funnel"].value, SMALL)
    assert pictures.seconds >= 0.05


def test_only_a_step_that_draws_starts_importing_matplotlib():
    """Review finding: the import thread started in every step's Pictures. Now a step that draws
    nothing (Pictures made, numbers guarded) starts none; `prepare` or a chart starts it, once."""
    charts._matplotlib.cache_clear()
    pictures = charts.Pictures(logging.getLogger("stedi.test"))
    assert pictures.guarded("numbers", lambda: 7) == 7
    assert charts._matplotlib.cache_info().currsize == 0
    pictures.prepare()
    pictures.prepare()
    assert charts._matplotlib.cache_info().currsize == 1 and charts._matplotlib.cache_info().misses == 1


def test_the_docstring_examples_hold():
    tried = doctest.testmod(charts)
    assert tried.attempted and not tried.failed


# -- the funnel on the real data --------------------------------------------------------------
@pytest.fixture
def real_run(real_lake):
    """The session's real-data lake under each policy (conftest), and the run that built it."""
    return real_lake.policy, real_lake.result, real_lake.lake


@pytest.mark.reference
def test_funnel_numbers_are_the_table_counts_on_the_real_data(real_run):
    policy, result, lake = real_run
    counts = REFERENCE[policy]
    relations = published(LakeResource(root=str(lake)).lake(), TABLES)
    [tables] = DuckDBEngine().query(
        """SELECT (SELECT COUNT(DISTINCT lower(trim(email))) FROM customer_landing) AS customers,
                  (SELECT COUNT(DISTINCT subject_id) FROM machine_learning_curated) AS subjects,
                  (SELECT COUNT(*) FROM customer_trusted AS c
                   WHERE EXISTS (SELECT 1 FROM accelerometer_landing AS a WHERE lower(trim(a.user)) = c.email)) AS with_readings""",
        relations,
    ).to_pylist()
    assert tables["customers"] == counts["customer_landing"]  # every landing record is another customer
    assert tables["subjects"] == counts["customer_curated"]
    expected = [
        ("in landing (customer_landing)", counts["customer_landing"]),
        ("with research consent (customer_trusted)", counts["customer_trusted"]),
    ]
    if policy == ConsentPolicy.SINCE_CONSENT:
        expected.append(("with accelerometer readings", tables["with_readings"]))
        expected.append(("with readings since consent (customer_curated)", counts["customer_curated"]))
    else:
        assert tables["with_readings"] == counts["customer_curated"]
        expected.append(("with accelerometer readings (customer_curated)", counts["customer_curated"]))
    metadata = metadata_by_asset(result)
    assert funnel_numbers(metadata["customer_curated"]["privacy_funnel"].value) == expected
    assert funnel_numbers(metadata["machine_learning_curated"]["privacy_funnel"].value) == [
        *expected,
        ("in the ML table (machine_learning_curated)", counts["customer_curated"]),
    ]
    # On this data: 482 consenting customers all have readings; 18 have none since consent.
    assert tables["with_readings"] == 482
    ml = metadata["machine_learning_curated"]
    assert ml["step_trainer_readings_matched"].value == counts["step_trainer_trusted"]  # every one matched
    assert ml["step_trainer_match_share"].value == 1.0
    for asset, expected_charts in EXPECTED.items():
        for name, size in expected_charts.items():
            assert_chart(metadata[asset][name].value, size)


@pytest.mark.reference
@pytest.mark.spark
def test_the_funnel_sql_gives_the_same_counts_on_spark(real_run, spark_engine):
    policy, _, lake = real_run
    current = LakeResource(root=str(lake)).lake().current
    relations = {t.name: current(t.spec) for t in (*signals.FUNNEL_READS, CUSTOMER_CURATED, STEP_TRAINER_TRUSTED)}
    privacy = PrivacyPolicy(consent_policy=policy)
    on_spark = signals.funnel_stages(spark_engine, relations, privacy)
    assert on_spark == signals.funnel_stages(DuckDBEngine(), relations, privacy)
    assert on_spark[-1][1] == REFERENCE[policy]["customer_curated"]


# -- no identifier in any picture -------------------------------------------------------------
EMAIL = "Secret.Person@example.com"
PHONE = "8015559876"
SUBJECT = "5ec0e7f1d2c3b4a5968778695a4b3c2d1e0f5ec0e7f1d2c3b4a5968778695a4b"


@pytest.fixture
def drawn_texts(monkeypatch) -> list[str]:
    """Every text the charts draw (titles, tick labels, bar labels, legends), as drawn."""
    texts: list[str] = []
    encode = charts._markdown

    def spy(fig, *args, **kwargs):
        from matplotlib.text import Text

        fig.canvas.draw()
        texts.extend(t.get_text() for t in fig.findobj(Text))
        return encode(fig, *args, **kwargs)

    monkeypatch.setattr(charts, "_markdown", spy)
    return texts


def test_no_chart_shows_a_direct_identifier(drawn_texts):
    rejects = pa.table(
        {
            "source_file": [f"customer/landing/{EMAIL}.json"] * 3 + ["customer/landing/c.json"],
            "source_line": [1, 2, 3, 4],
            "raw": [f'{{"email": "{EMAIL}", "phone": {PHONE}}}'] * 4,
            "reason": [
                f"phone has int value {PHONE}, expected string",
                f'email has list value ["{EMAIL}"], expected string',
                f"not JSON: Expecting ',' delimiter near {EMAIL} at column 17",
                f"unexpected value {EMAIL}",
            ],
        }
    )
    rows = table(
        CUSTOMER_LANDING, {"email": EMAIL, "phone": PHONE, "customerName": "Secret Person", "source_file": f"customer/landing/{EMAIL}.json"}
    )
    ml = table(
        MACHINE_LEARNING_CURATED,
        *({"subject_id": SUBJECT, "sensorReadingTime": 1_000 * i, "distanceFromObject": 200 + i, "x": 1.0, "y": 0.0, "z": -1.0} for i in range(50)),
    )
    accelerometer = table(ACCELEROMETER_LANDING, {"user": EMAIL, "timestamp": 1, "source_file": "accelerometer/landing/a.json"})
    markdowns = [
        charts.rejects_by_reason(rejects),
        charts.rows_per_file(per_file(rows), rejects),
        charts.rows_per_file(per_file(accelerometer)),
        charts.privacy_funnel([("in landing (customer_landing)", 1), (f"with research consent ({EMAIL})", 1)]),
        charts.subject_signals(ml, [SUBJECT]),
        charts.readings_per_subject(pa.table({"subject_id": [SUBJECT], "readings": [50]})),
        charts.step_trainer_matches(40, 50),
    ]
    assert drawn_texts and f"subject {SUBJECT[:8]}…" in drawn_texts
    for markdown in markdowns:
        png = png_of(markdown)
        text_chunks = b"".join(data for kind, data in png_chunks(png) if kind in (b"tEXt", b"zTXt", b"iTXt"))
        visible = markdown.replace(base64.b64encode(png).decode(), "")
        for secret in (EMAIL, EMAIL.lower(), "Secret Person", PHONE, SUBJECT):
            assert secret.encode() not in png and secret.encode() not in text_chunks
            assert secret not in visible
            assert not [t for t in drawn_texts if secret in t], secret
    assert any("Se***@example.com" in t for t in drawn_texts)  # masked, as in the previews
    assert "phone has int value, expected string" in drawn_texts


def test_reason_kinds_drop_the_rejected_value():
    assert charts.reason_kind("timestamp has str value \"soon\", expected bigint") == "timestamp has str value, expected bigint"
    assert charts.reason_kind("not JSON: Expecting value at column 1") == "not JSON: Expecting value"
    assert charts.reason_kind("missing required field email") == "missing required field email"
    assert charts.reason_kind(None) == "no reason"


# -- shapes -----------------------------------------------------------------------------------
def test_charts_of_empty_tables_still_draw():
    empty_ml = MACHINE_LEARNING_CURATED.spec.schema.empty_table()
    assert_chart(charts.rejects_by_reason(pa.table({"source_file": pa.array([], pa.string()), "reason": pa.array([], pa.string())})), SMALL)
    assert_chart(charts.rows_per_file({}), SMALL)
    assert_chart(charts.readings_per_subject(pa.table({"subject_id": pa.array([], pa.string()), "readings": pa.array([], pa.int64())})), SMALL)
    assert_chart(charts.subject_signals(empty_ml, []), SIGNALS)
    assert_chart(charts.step_trainer_matches(0, 0), SHARE)


def test_many_files_and_reasons_are_summed_into_one_bar(drawn_texts):
    files = [f"accelerometer/landing/part-{i:03}.json" for i in range(40)]
    rows = table(ACCELEROMETER_LANDING, *({"user": "a@b.c", "timestamp": i, "source_file": f} for i, f in enumerate(files)))
    assert_chart(charts.rows_per_file(per_file(rows)), SMALL)
    assert f"{40 - charts.MAX_BARS + 1} other files" in drawn_texts
    reasons = pa.table({"source_file": ["f"] * 30, "reason": [f"missing required field c{i}" for i in range(30)]})
    assert_chart(charts.rejects_by_reason(reasons), SMALL)
    assert f"{30 - charts.MAX_BARS + 1} other reasons" in drawn_texts


# Two customers registered to one step trainer (A), both matching its reading at time 10.
SHARING_CUSTOMERS = pa.table({"subject_id": ["s4", "s3", "s2", "s1"], "serialNumber": ["D", "B", "A", "A"]})
SHARING_ML = table(
    MACHINE_LEARNING_CURATED,
    {"subject_id": "s1", "sensorReadingTime": 10, "x": 2.0},
    {"subject_id": "s1", "sensorReadingTime": 10, "x": 1.0},  # two accelerometer rows at one time
    {"subject_id": "s2", "sensorReadingTime": 20},
    {"subject_id": "s2", "sensorReadingTime": 10},  # the same step trainer reading, co-owner's phone
    {"subject_id": "s3", "sensorReadingTime": 10},
    {"subject_id": "s3", "sensorReadingTime": 30},
    {"subject_id": "s3", "sensorReadingTime": 40},
    {"subject_id": "s4", "sensorReadingTime": 50},  # the fewest readings: not drawn
)


def test_profile_counts_a_reading_two_subjects_share_once():
    """The ML table's profile, asked in SQL where the table lies, counts a step trainer reading
    two customers share (one serial number) once, and draws the subjects with the most readings."""
    found = signals.profile(DuckDBEngine(), {"customer_curated": SHARING_CUSTOMERS, "machine_learning_curated": SHARING_ML})
    assert found.step_trainer_readings_matched == 6  # (A, 10), (A, 20), (B, 10), (B, 30), (B, 40), (D, 50)
    assert found.subject_counts.to_pylist() == [
        {"subject_id": "s3", "readings": 3},
        {"subject_id": "s1", "readings": 2},
        {"subject_id": "s2", "readings": 2},
        {"subject_id": "s4", "readings": 1},
    ]
    assert found.signal_subjects == ["s3", "s1", "s2"]  # the most readings, ties by subject_id
    assert found.signal_rows.select(["subject_id", "sensorReadingTime", "x"]).to_pylist() == [
        {"subject_id": s, "sensorReadingTime": t, "x": x}
        for s, t, x in [("s1", 10, 1.0), ("s1", 10, 2.0), ("s2", 10, None), ("s2", 20, None), ("s3", 10, None), ("s3", 30, None), ("s3", 40, None)]
    ]
    # No serial number shared: every subject's reading times are readings of its own step trainer.
    own = SHARING_CUSTOMERS.set_column(1, "serialNumber", pa.array(["D", "B", "C", "A"]))
    assert signals.profile(DuckDBEngine(), {"customer_curated": own, "machine_learning_curated": SHARING_ML}).step_trainer_readings_matched == 7


@pytest.mark.spark
def test_the_profile_sql_gives_the_same_profile_on_spark(spark_engine):
    """The same queries on Spark (its executors answer them on a cluster), in the session the tests share."""
    relations = {"customer_curated": SHARING_CUSTOMERS, "machine_learning_curated": SHARING_ML}
    assert signals.profile(spark_engine, relations) == signals.profile(DuckDBEngine(), relations)
