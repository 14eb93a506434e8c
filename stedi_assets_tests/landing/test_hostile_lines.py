"""Issue 10's regression corpus: hostile lines are rejects, never a crash, on both paths."""

from __future__ import annotations

import pytest

from stedi_assets.landing.json_lines import _parse_exact, count_lines, non_blank_line_numbers, parse_file
from stedi_assets.tables import ACCELEROMETER_LANDING

A = ACCELEROMETER_LANDING
DATA_COLUMNS = [c for c in A.columns if c.name not in ("source_file", "source_line")]
GOOD = b'{"user":"a@x","timestamp":1,"x":1.0,"y":0.0,"z":-1.0}'
BAD_UTF8 = b'{"user":"\xff","timestamp":2}'


def parse(data: bytes):
    return parse_file(data, "f.json", A)


def accounted(parsed) -> list[int]:
    lines = {r["source_line"] for t in (parsed.rows, parsed.rejects) for r in t.select(["source_line"]).to_pylist()}
    return sorted(lines)


def deep(n: int) -> bytes:
    return b'{"user":"a","timestamp":1,"n":' + b"[" * n + b"]" * n + b"}"


@pytest.mark.parametrize("depth", [20_000, 100_000])
@pytest.mark.parametrize("with_bad_utf8", [False, True])
def test_deep_nesting_is_a_reject_not_a_segfault_or_recursion_error(depth: int, with_bad_utf8: bool):
    data = GOOD + b"\n" + deep(depth) + b"\n" + (BAD_UTF8 + b"\n" if with_bad_utf8 else b"")
    parsed = parse(data)
    assert parsed.rows["source_line"].to_pylist() == [1]
    assert parsed.rejects["reason"].to_pylist()[0] == "nested deeper than 64 levels"
    assert accounted(parsed) == non_blank_line_numbers(data).tolist()


def test_depth_64_is_allowed_and_brackets_in_strings_do_not_count():
    ok = b'{"user":"a","timestamp":1,"n":' + b"[" * 63 + b"]" * 63 + b"}"
    too = b'{"user":"a","timestamp":1,"n":' + b"[" * 64 + b"]" * 64 + b"}"
    quoted = b'{"user":"' + b"[{" * 500 + b'\\"[[[","timestamp":1}'
    parsed = parse(ok + b"\n" + too + b"\n" + quoted + b"\n")
    assert parsed.rows["source_line"].to_pylist() == [1, 3]
    assert parsed.rejects.to_pylist()[0]["reason"] == "nested deeper than 64 levels"


@pytest.mark.parametrize("space", ["\u00a0", "\x1c", "\x1d", "\x1e", "\x1f", "\u0085", "\u2028", "\u3000", "\x0b", "\x0c"])
def test_a_line_of_non_json_whitespace_is_a_counted_reject(space: str):
    data = GOOD + b"\n" + space.encode() + b"\n" + GOOD + b"\n"
    parsed = parse(data)
    assert count_lines(data) == 3
    assert parsed.rows["source_line"].to_pylist() == [1, 3]
    assert parsed.rejects["source_line"].to_pylist() == [2]
    assert parsed.rejects["reason"][0].as_py().startswith("not JSON: ")


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", "-1e999", "Inf", "-NaN"])
@pytest.mark.parametrize("field", ["x", "extra"])
def test_non_finite_numbers_are_rejects(value: str, field: str):
    line = f'{{"user":"a","timestamp":1,"{field}":{value}}}'.encode()
    parsed = parse(GOOD + b"\n" + line + b"\n")
    assert parsed.rows["source_line"].to_pylist() == [1]
    assert parsed.rejects["source_line"].to_pylist() == [2]
    reason = parsed.rejects["reason"][0].as_py()
    assert reason.startswith("not a finite number") or reason.startswith("not JSON"), reason


def test_nan_infinity_line_of_the_issue():
    line = b'{"user":"a","timestamp":1,"x":NaN,"y":Infinity,"z":-Infinity}'
    parsed = parse(line + b"\n")
    assert parsed.rows.num_rows == 0
    assert parsed.rejects.to_pylist() == [{"source_file": "f.json", "source_line": 1, "raw": line.decode(), "reason_code": "not_finite",
                                       "reason": "not a finite number: NaN"}]


@pytest.mark.parametrize("other", [b"", BAD_UTF8 + b"\n"])
def test_a_file_start_bom_is_dropped_on_both_paths(other: bytes):
    data = b"\xef\xbb\xbf" + GOOD + b"\n" + other
    parsed = parse(data)
    assert parsed.rows["source_line"].to_pylist() == [1]
    assert parsed.exact_path == bool(other)
    assert accounted(parsed) == non_blank_line_numbers(data).tolist()


def test_a_bom_elsewhere_is_content():
    data = GOOD + b"\n\xef\xbb\xbf" + GOOD + b"\n"
    parsed = parse(data)
    assert parsed.rows["source_line"].to_pylist() == [1]
    assert parsed.rejects.to_pylist()[0]["source_line"] == 2
    assert parsed.rejects.to_pylist()[0]["reason"].startswith("not JSON")


def test_a_bom_only_first_line_is_blank():
    data = b"\xef\xbb\xbf\n" + GOOD + b"\n"
    assert non_blank_line_numbers(data).tolist() == [2]
    assert parse(data).rows["source_line"].to_pylist() == [2]


def test_an_object_split_over_two_lines_after_a_two_object_line_is_not_shifted():
    data = b'{"user":"a","timestamp":1}{"user":"b","timestamp":2}\n{"user":"c",\n"timestamp":3}\n'
    parsed = parse(data)
    assert parsed.exact_path
    assert [(r["user"], r["source_line"]) for r in parsed.rows.to_pylist()] == [("a", 1), ("b", 1)]
    assert parsed.rejects["source_line"].to_pylist() == [2, 3]


def test_a_lone_surrogate_is_a_reject_not_a_crash():
    data = GOOD + b'\n{"user":"a\\ud800","timestamp":2}\n{"user":"\\ud83d\\ude00","timestamp":3}\n'
    parsed = parse(data)
    assert parsed.rows["user"].to_pylist() == ["a@x", "\U0001f600"]
    assert parsed.rejects.to_pylist()[0]["reason"].startswith("not valid Unicode")


def test_negative_zero_keeps_its_sign_on_both_paths():
    data = b'{"user":"a","timestamp":-0,"x":-0,"y":-0.0}\n'
    fast = parse(data)
    exact = _parse_exact(data, "f.json", A, DATA_COLUMNS)
    assert not fast.exact_path
    assert repr(fast.rows.to_pylist()) == repr(exact.rows.to_pylist())


def test_huge_integers_in_a_double_column_are_rejects():
    data = b'{"user":"a","timestamp":1,"x":1' + b"0" * 400 + b"}\n"
    parsed = parse(data)
    assert parsed.rejects["reason"].to_pylist() == ["not a finite number: " + data.decode()[:40]]


def test_a_bom_is_dropped_from_arrow_buffers_too():
    import pyarrow as pa

    for data in (b"\xef\xbb\xbf", b"\xef\xbb\xbf" + GOOD + b"\n"):
        assert non_blank_line_numbers(pa.py_buffer(data)).tolist() == non_blank_line_numbers(data).tolist()
        assert parse_file(pa.py_buffer(data), "f.json", A).rows.to_pylist() == parse(data).rows.to_pylist()
