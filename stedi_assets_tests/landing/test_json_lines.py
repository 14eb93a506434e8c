"""The landing parser on hand-made files: every kind of line, and both paths agreeing."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from stedi_assets.landing.json_lines import REASON_CODES, _parse_exact, count_lines, non_blank_line_numbers, parse_file
from stedi_assets.tables import ACCELEROMETER_LANDING, CUSTOMER_LANDING, STEP_TRAINER_LANDING, Table, as_read

A = as_read(ACCELEROMETER_LANDING)  # as the landing step reads a file: the person key comes after
DATA_COLUMNS = [c for c in A.columns if c.name not in ("source_file", "source_line", "rescued_data")]


def parse(text: str | bytes, table=A):
    data = text.encode() if isinstance(text, str) else text
    return parse_file(data, "accelerometer/landing/f.json", table)


def test_clean_file_takes_the_fast_path_with_line_numbers():
    parsed = parse('{"user":"a@x","timestamp":1,"x":1,"y":0,"z":-1}\n\n{"user":"b@x","timestamp":2,"x":0.5,"y":0,"z":0}\n')
    assert not parsed.exact_path
    assert parsed.rows.to_pylist() == [
        {"user": "a@x", "timestamp": 1, "x": 1.0, "y": 0.0, "z": -1.0, "rescued_data": None,
         "source_file": "accelerometer/landing/f.json", "source_line": 1},
        {"user": "b@x", "timestamp": 2, "x": 0.5, "y": 0.0, "z": 0.0, "rescued_data": None,
         "source_file": "accelerometer/landing/f.json", "source_line": 3},
    ]
    assert parsed.rows.schema == A.spec.schema


def test_crlf_and_whitespace_lines_are_tolerated():
    parsed = parse('{"user":"a@x","timestamp":1}\r\n \t\r\n\r\n{"user":"b@x","timestamp":2}\r\n')
    assert [r["source_line"] for r in parsed.rows.to_pylist()] == [1, 4]
    assert parsed.rejects.num_rows == 0


def test_field_names_match_case_insensitively_under_one_spelling():
    parsed = parse('{"USER":"a@x","TimeStamp":7,"X":1}\n{"user":"b@x","timestamp":8}\n')
    rows = parsed.rows.to_pylist()
    assert [(r["user"], r["timestamp"], r["x"]) for r in rows] == [("a@x", 7, 1.0), ("b@x", 8, None)]
    step = parse('{"serialnumber":"s-1","SENSORREADINGTIME":5,"distancefromobject":200}\n', STEP_TRAINER_LANDING)
    assert step.rows.select(["serialNumber", "sensorReadingTime", "distanceFromObject"]).to_pylist() == [
        {"serialNumber": "s-1", "sensorReadingTime": 5, "distanceFromObject": 200}
    ]


def test_several_objects_on_one_line_share_its_line_number():
    parsed = parse('{"user":"a@x","timestamp":1}{"user":"b@x","timestamp":2} {"user":"c@x","timestamp":3}\n')
    assert parsed.exact_path
    assert [(r["user"], r["source_line"]) for r in parsed.rows.to_pylist()] == [("a@x", 1), ("b@x", 1), ("c@x", 1)]


@pytest.mark.parametrize(
    ("line", "code", "reason"),
    [
        ("not json at all", "not_json", "not JSON: Expecting value at column 1"),
        ('{"user":"a@x","timestamp":1', "not_json", "not JSON: Expecting ',' delimiter at column 28"),
        ('{"timestamp":1,"x":1}', "missing:user", "missing required field user"),
        ('{"user":"a@x"}', "missing:timestamp", "missing required field timestamp"),
        ('{"user":null,"timestamp":null}', "missing:user,timestamp", "missing required field user, timestamp"),
        ('{"user":"a@x","timestamp":"yesterday"}', "bad_type:timestamp", 'timestamp has str value "yesterday", expected bigint'),
        ('{"user":"a@x","timestamp":1.5}', "bad_type:timestamp", "timestamp has float value 1.5, expected bigint"),
        ('{"user":"a@x","timestamp":1,"x":true}', "bad_type:x", "x has bool value true, expected double"),
        ('{"user":42,"timestamp":1}', "bad_type:user", "user has int value 42, expected string"),
        ('["a@x", 1]', "not_object", "not a JSON object but list"),
    ],
)
def test_each_bad_line_is_rejected_with_file_line_raw_text_code_and_reason(line: str, code: str, reason: str):
    parsed = parse('{"user":"ok@x","timestamp":1}\n' + line + "\n")
    assert parsed.rows.num_rows == 1
    assert parsed.rejects.to_pylist() == [
        {"source_file": "accelerometer/landing/f.json", "source_line": 2, "raw": line, "reason_code": code, "reason": reason}
    ]
    assert code.startswith(REASON_CODES)  # one of the documented codes


def test_one_cause_is_one_reason_code_whatever_the_value():
    """Issue 21 #11: 100 numeric strings in `timestamp` are ~100 distinct reasons, one code."""
    lines = "".join(f'{{"user":"a@x","timestamp":"{1655564376361 + i * 7}"}}\n' for i in range(100))
    parsed = parse(lines)
    assert len(set(parsed.rejects["reason"].to_pylist())) == 100
    assert set(parsed.rejects["reason_code"].to_pylist()) == {"bad_type:timestamp"}


def test_a_broken_second_object_rejects_only_that_object():
    parsed = parse('{"user":"a@x","timestamp":1}{"user":"b@x"}\n')
    assert [r["user"] for r in parsed.rows.to_pylist()] == ["a@x"]
    assert parsed.rejects.to_pylist()[0]["raw"] == '{"user":"b@x"}'


def test_invalid_utf8_is_a_reject_not_a_crash():
    parsed = parse(b'{"user":"a@x","timestamp":1}\n{"user":"\xff\xfe","timestamp":2}\n')
    assert parsed.rows.num_rows == 1
    assert parsed.rejects["reason"][0].as_py().startswith("not valid UTF-8")
    assert parsed.rejects["reason_code"][0].as_py() == "not_utf8"
    assert parsed.rejects["source_line"][0].as_py() == 2


def test_empty_and_blank_files_give_empty_tables():
    for text in ("", "\n\n", "\r\n  \r\n"):
        parsed = parse(text)
        assert (parsed.rows.num_rows, parsed.rejects.num_rows, count_lines(text.encode())) == (0, 0, 0)


@pytest.mark.parametrize(
    "data",
    [b"", b"x", b"\n", b" ", b"x\n", b"\nx", b"x\n\n\ny", b"x\r\n\r\n \t\x0b\x0c\ny\n  z  \n", b"\n \n\t", b"a\nb\n \n", b"\x0b\n\x0c\n\x1c"],
)
def test_non_blank_lines_are_numbered_as_split_on_newline_and_json_whitespace_would(data: bytes):
    # Blank means JSON whitespace only (space, \t, \r, \n): \x0b and \x0c are content.
    expected = [n for n, line in enumerate(data.split(b"\n"), start=1) if line.strip(b" \t\r\n")]
    assert non_blank_line_numbers(data).tolist() == expected
    assert non_blank_line_numbers(pa.py_buffer(data)).tolist() == expected


def test_missing_required_field_on_the_fast_path_keeps_line_numbers_exact():
    parsed = parse('{"user":"a@x","timestamp":1}\n\n{"user":"b@x"}\n{"user":"c@x","timestamp":3}\n')
    assert not parsed.exact_path
    assert [r["source_line"] for r in parsed.rows.to_pylist()] == [1, 4]
    assert parsed.rejects.to_pylist() == [
        {"source_file": "accelerometer/landing/f.json", "source_line": 3, "raw": '{"user":"b@x"}',
         "reason_code": "missing:timestamp", "reason": "missing required field timestamp"}
    ]


@pytest.mark.parametrize(
    "text",
    [
        '{"user":"a@x","timestamp":1,"x":1,"y":2,"z":3}\n{"user":"b@x","timestamp":2,"x":-1.5}\n',
        '{"User":"a@x","TIMESTAMP":1}\r\n\r\n{"user":"b@x","timestamp":2,"extra":"ignored"}\n',
        '{"user":"a@x","timestamp":1}\n{"timestamp":2}\n   \n{"user":"c@x","timestamp":3,"z":null}',
    ],
)
def test_fast_and_exact_paths_agree(text: str):
    fast = parse(text)
    exact = _parse_exact(text.encode(), "accelerometer/landing/f.json", A, DATA_COLUMNS)
    # A key in another letter case goes the exact way: pyarrow cannot tell whether it stands
    # beside a null under the canonical spelling (a conflict, rejected).
    assert fast.exact_path == ('"User"' in text)
    assert fast.rows.equals(exact.rows)
    assert fast.rejects.to_pylist() == exact.rejects.to_pylist()


def test_every_line_is_a_row_or_a_reject_across_files():
    files = [
        ("customer/a.json", b'{"email":"a@x","registrationDate":1}\n{"email":"b@x"}{"phone":"1"}\n'),
        ("customer/b.json", b'\n{"email":"c@x","shareWithResearchAsOfDate":"soon"}\nnope\n'),
    ]
    parsed = [parse_file(data, name, CUSTOMER_LANDING) for name, data in files]
    rows, rejects = pa.concat_tables([p.rows for p in parsed]), pa.concat_tables([p.rejects for p in parsed])
    assert rows.column("email").to_pylist() == ["a@x", "b@x"]
    assert rejects.select(["source_file", "source_line"]).to_pylist() == [
        {"source_file": "customer/a.json", "source_line": 2},
        {"source_file": "customer/b.json", "source_line": 2},
        {"source_file": "customer/b.json", "source_line": 3},
    ]
    lines = {(r["source_file"], r["source_line"]) for t in (rows, rejects) for r in t.select(["source_file", "source_line"]).to_pylist()}
    assert len(lines) == sum(count_lines(d) for _, d in files) == 4


def test_fields_outside_the_contract_are_rescued_with_their_row_as_sent():
    """Issue 21 #11: a producer adds fields; they land with the row, in rescued_data."""
    parsed = parse(
        '{"user":"a@x","timestamp":1,"x":1}\n'
        '{"user":"b@x","timestamp":2,"battery":0.5,"Firmware":{"v":[1,"2"]},"note":null}\n'
        '{"user":"c@x","timestamp":3,"battery":"low"}\n'
    )
    assert parsed.exact_path  # pyarrow reads an absent field and a null alike, and infers types
    assert parsed.rejects.num_rows == 0
    assert [json.loads(r) if r else r for r in parsed.rows["rescued_data"].to_pylist()] == [
        None,
        {"battery": 0.5, "Firmware": {"v": [1, "2"]}, "note": None},
        {"battery": "low"},
    ]
    # A contract field in another letter case is that field, not a rescued one.
    assert parse('{"USER":"a@x","timestamp":1}\n').rows["rescued_data"].to_pylist() == [None]


def test_a_table_without_a_rescued_data_column_ignores_extra_fields_on_both_paths():
    table = Table("t", "accelerometer", "landing", tuple(c for c in A.columns if c.name != "rescued_data"))
    parsed = parse('{"user":"a@x","timestamp":1,"extra":2}\n', table)
    assert parsed.rows.column_names == table.column_names and parsed.rows.num_rows == 1
