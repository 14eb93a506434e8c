"""Property tests: on any bytes, parse_file never raises, the fast path (when it answers) equals
the exact path, and rows + rejects account for exactly the non-blank lines."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stedi_assets.landing.json_lines import _parse_exact, _parse_fast, _without_bom, non_blank_line_numbers, parse_file
from stedi_assets.tables import ACCELEROMETER_LANDING, CUSTOMER_LANDING, STEP_TRAINER_LANDING
from stedi_assets_tests.conftest import reference_data_dir

TABLES = [ACCELEROMETER_LANDING, CUSTOMER_LANDING, STEP_TRAINER_LANDING]
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _real_lines() -> list[bytes]:
    folder = reference_data_dir() / "accelerometer" / "landing"
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return files[0].read_bytes().splitlines()[:2000] if files else []


REAL = _real_lines()
SAMPLE = [
    b'{"user":"a@x","timestamp":1,"x":1.0,"y":-1,"z":0.5}',
    b'{"email":"a@x","registrationDate":1,"phone":"1"}',
    b'{"serialNumber":"s","sensorReadingTime":5,"distanceFromObject":2}',
]
ODD = ["", " ", "\t", "\r", "\u00a0", "\x0b", "\x0c", "\x1c", "\u0085", "\u2028", "\u3000", "\ufeff", "\x00"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=10,
)
names = st.sampled_from(["user", "USER", "User", "timestamp", "TimeStamp", "x", "y", "z", "email", "Email", "registrationDate",
                         "serialNumber", "serialnumber", "sensorReadingTime", "distanceFromObject", "extra"])
scalars = (st.none() | st.integers(-(2**64), 2**64) | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=6)
           | st.sampled_from([0, -1, 1655564444103]))
records = st.dictionaries(names, scalars, max_size=6).map(lambda d: json.dumps(d).encode())
literal = st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e999", b"-0", b"1e2", b"1.0", b'"\\ud800"', b'"\\u0000"', b"Inf"])
with_literal = st.tuples(st.sampled_from(["x", "timestamp", "user", "q"]), literal).map(
    lambda t: b'{"user":"a","timestamp":1,"' + t[0].encode() + b'":' + t[1] + b"}")
base_line = st.sampled_from(REAL or SAMPLE) | st.sampled_from(SAMPLE) | records | with_literal | json_values.map(lambda v: json.dumps(v).encode())


@st.composite
def mutated(draw) -> bytes:
    line = draw(base_line)
    kind = draw(st.integers(0, 9))
    if kind == 0:
        line = line[: draw(st.integers(0, len(line)))]
    elif kind == 1:
        line = line + draw(st.sampled_from([b"", b" "])) + draw(base_line)
    elif kind == 2:
        cut = draw(st.integers(0, len(line)))
        line = line[:cut] + b"\n" + line[cut:]
    elif kind == 3:
        n = draw(st.sampled_from([63, 64, 65, 200, 3000]))
        line = line.rstrip(b"}") + b',"n":' + b"[" * n + b"]" * n + b"}"
    elif kind == 4:
        pad = lambda: draw(st.sampled_from(ODD)).encode()  # noqa: E731
        line = pad() + line + pad()
    elif kind == 5:
        line = b"\xef\xbb\xbf" + line
    elif kind == 6:
        i = draw(st.integers(0, len(line)))
        line = line[:i] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x80\xa8"])) + line[i:]
    elif kind == 7:
        line = line + b"\r"
    elif kind == 8:
        line = draw(st.binary(max_size=30))
    return line


files = st.lists(mutated() | st.just(b"") | st.just(b"  "), max_size=8).map(lambda ls: b"\n".join(ls)) | st.binary(max_size=200)


def _check(data: bytes, table) -> None:
    parsed = parse_file(data, "f.json", table)  # never raises
    columns = [c for c in table.columns if c.name not in ("source_file", "source_line")]
    body = _without_bom(data)
    exact = _parse_exact(body, "f.json", table, columns)
    fast = _parse_fast(body, "f.json", table, columns)
    if fast is not None:
        assert repr(fast.rows.to_pylist()) == repr(exact.rows.to_pylist())
        assert fast.rejects.to_pylist() == exact.rejects.to_pylist()
    assert parsed.rows.schema == table.spec.schema
    lines = [r["source_line"] for t in (parsed.rows, parsed.rejects) for r in t.select(["source_line"]).to_pylist()]
    assert sorted(set(lines)) == non_blank_line_numbers(data).tolist() == non_blank_line_numbers(pa.py_buffer(data)).tolist()
    for column in columns:
        if pa.types.is_floating(column.type):
            assert all(math.isfinite(v) for v in parsed.rows[column.name].to_pylist() if v is not None)


@pytest.mark.parametrize("table", TABLES[:2], ids=lambda t: t.name)
@SETTINGS
@given(data=files)
def test_both_paths_agree_and_every_line_is_accounted_for(table, data: bytes):
    _check(data, table)


@SETTINGS
@given(lines=st.lists(st.sampled_from(REAL or SAMPLE), min_size=1, max_size=20), crlf=st.booleans(), bom=st.booleans())
def test_clean_files_take_the_fast_path(lines, crlf: bool, bom: bool):
    data = (b"\xef\xbb\xbf" if bom else b"") + (b"\r\n" if crlf else b"\n").join(lines) + b"\n"
    parsed = parse_file(data, "f.json", ACCELEROMETER_LANDING)
    if REAL:
        assert not parsed.exact_path
    _check(data, ACCELEROMETER_LANDING)
