"""Typed landing tables from line-delimited JSON, with a rejects record for every bad line.

A file is parsed in two ways that agree on every input (rows, line numbers, rejects): fast,
with pyarrow, when the file provably gives one row per non-blank line (the usual case); else
line by line in Python, so each problem gets its file, line, raw text, reason code and reason.
Neither crashes on hostile input. docs/ingestion.md says what is a line, a row and a reject.
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from stedi_assets.lake.store import arrow_buffer
from stedi_assets.tables import REJECTED_LINE, RESCUED_DATA, Column, Table

Data = bytes | pa.Buffer  # a landing file's content, as Python bytes or in Arrow memory

REJECT_SCHEMA = pa.schema([(c.name, c.type) for c in REJECTED_LINE])
# The reason code of each cause of a reject (docs/ingestion.md lists them); `bad_type:` and
# `missing:` are followed by the column(s).
NOT_UTF8, NOT_JSON, NOT_OBJECT, NOT_FINITE, NOT_UNICODE = "not_utf8", "not_json", "not_object", "not_finite", "not_unicode"
TOO_DEEP_CODE, CONFLICTING, UNPARSEABLE = "too_deep", "conflicting_values", "unparseable"
BAD_TYPE, MISSING = "bad_type:", "missing:"
REASON_CODES = (NOT_UTF8, NOT_JSON, NOT_OBJECT, NOT_FINITE, NOT_UNICODE, TOO_DEEP_CODE, CONFLICTING, UNPARSEABLE, BAD_TYPE, MISSING)
Reason = tuple[str, str]  # a reject's code and its detail


@dataclass
class ParsedFile:
    rows: pa.Table
    rejects: pa.Table
    exact_path: bool = False


def parse_file(data: Data, source_file: str, table: Table, first_line: int = 1) -> ParsedFile:
    """`first_line`: the number of the first line of `data` (a chunk of a file) in its file."""
    data = _without_bom(data)
    data_columns = [c for c in table.columns if c.name not in ("source_file", "source_line", RESCUED_DATA.name)]
    fast = _parse_fast(data, source_file, table, data_columns, first_line)
    return fast or _parse_exact(memoryview(data).tobytes(), source_file, table, data_columns, first_line)


# -- one definition of a line ------------------------------------------------------------------
# JSON's insignificant whitespace (RFC 8259, section 2), and nothing else: a line of nothing but
# these is blank and carries no record. Python's str.strip() and bytes.strip() are NOT this.
JSON_WHITESPACE = " \t\r\n"
_JSON_WHITESPACE_BYTES = JSON_WHITESPACE.encode()
_IS_WHITESPACE = np.zeros(256, dtype=bool)
_IS_WHITESPACE[list(_JSON_WHITESPACE_BYTES)] = True
BOM = b"\xef\xbb\xbf"
_SLICE = 1 << 22


def _without_bom(data: Data) -> Data:
    """The file without the UTF-8 byte order mark at its very start, if it has one."""
    if bytes(memoryview(data)[:3]) != BOM:
        return data
    return data.slice(3) if isinstance(data, pa.Buffer) else memoryview(data)[3:].tobytes()


def non_blank_line_numbers(data: Data) -> np.ndarray:
    """1-based numbers of the lines that hold more than JSON whitespace (a file-start BOM
    dropped), as both parsers number them."""
    return _lines_of(np.frombuffer(_without_bom(data), dtype=np.uint8))[2] + 1


def _where(view: np.ndarray, test) -> np.ndarray:
    """Offsets of the bytes that pass `test`, found in slices: a mask as large as the file costs
    more to allocate than to compute."""
    return np.concatenate([np.flatnonzero(test(view[i : i + _SLICE])) + i for i in range(0, view.size, _SLICE)])


def _lines_of(view: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and (exclusive) end offset of every line, split on b"\n" only, and the 0-based
    indices of the non-blank ones."""
    if view.size == 0:
        return np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.int64)
    newlines = _where(view, lambda part: part == ord("\n"))
    starts, ends = np.concatenate(([0], newlines + 1)), np.append(newlines, view.size)  # the last line ends with the data
    # A line can only be blank if it is empty or starts with whitespace: usually none do, and
    # only those few are looked at whole.
    maybe_blank = np.flatnonzero((starts == ends) | _IS_WHITESPACE[view[np.minimum(starts, view.size - 1)]])
    blank = maybe_blank[~_has_content(view, starts[maybe_blank], ends[maybe_blank])]
    return starts, ends, np.delete(np.arange(starts.size, dtype=np.int64), blank)


def _has_content(view: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Whether each non-overlapping, ordered range [start, end) of `view` holds a non-whitespace byte."""
    out = np.zeros(starts.size, dtype=bool)
    filled = starts < ends
    if not filled.any():
        return out
    starts, ends = starts[filled], ends[filled]
    lengths = ends - starts
    total = int(lengths.sum())
    if total <= view.size // 4:
        # The usual case, a few candidate lines: look at their bytes only, not the whole file.
        first = np.cumsum(lengths) - lengths  # where each range begins among the gathered bytes
        offsets = np.repeat(starts - first, lengths) + np.arange(total)
        out[filled] = np.logical_or.reduceat(~_IS_WHITESPACE[view[offsets]], first)
        return out
    content = np.empty(view.size + 1, dtype=bool)  # one spare slot: reduceat's indices must be < size
    np.take(~_IS_WHITESPACE, view, out=content[:-1])
    content[-1] = False
    bounds = np.column_stack((starts, ends)).ravel()
    out[filled] = np.logical_or.reduceat(content, bounds)[::2]
    return out


def count_lines(data: Data) -> int:
    """Non-blank lines: the records a file holds, as both parsers number them."""
    return int(non_blank_line_numbers(data).size)


# -- the nesting guard -------------------------------------------------------------------------
# Hand-written because both parsers recurse per level of `[`/`{`: pyarrow's (RapidJSON's
# recursive mode, Tencent/rapidjson#1027) dies of SIGSEGV at ~20,000 levels, Python's json
# raises RecursionError at ~1,000. So no line deeper than MAX_DEPTH reaches either: it is a
# reject. The real data nests 1 level.
MAX_DEPTH = 64
TOO_DEEP = f"nested deeper than {MAX_DEPTH} levels"


def _max_depth(line: np.ndarray) -> int:
    """The deepest nesting of `[`/`{` on one line, brackets inside JSON strings not counted: an
    upper bound of the depth a parser reaches (exact up to the first syntax error)."""
    if line.size == 0:
        return 0
    index = np.arange(line.size)
    backslash = line == ord("\\")
    last_other = np.maximum.accumulate(np.where(backslash, -1, index))  # last non-backslash at or before i
    run_before = np.zeros(line.size, dtype=np.int64)  # backslashes right before i
    run_before[1:] = index[:-1] - last_other[:-1]
    quote = (line == ord('"')) & (run_before % 2 == 0)  # a quote that is not escaped
    outside = np.cumsum(quote) % 2 == 0  # an opening quote counts as inside, a closing one outside
    folded = line | 0x20  # `[`→`{`, `]`→`}`: one comparison each
    step = ((folded == ord("{")) & outside).astype(np.int64) - ((folded == ord("}")) & outside)
    return int(np.cumsum(step).max(initial=0))


def _any_too_deep(view: np.ndarray, starts: np.ndarray, ends: np.ndarray, lines: np.ndarray) -> bool:
    """Whether any of the given lines (0-based, each starting with `{`) nests too deep: only
    lines with many brackets are scanned exactly."""
    def opens(part: np.ndarray) -> np.ndarray:
        return (part | 0x20) == ord("{")  # `[` folds to `{`

    # Each line holds a `{`, so none holds more than this bound: the offsets (8 bytes each) are
    # collected only past it, which is rare.
    if sum(int(np.count_nonzero(opens(view[i : i + _SLICE]))) for i in range(0, view.size, _SLICE)) - (lines.size - 1) <= MAX_DEPTH:
        return False
    positions = _where(view, opens)
    per_line = np.bincount(np.searchsorted(starts, positions, side="right") - 1, minlength=starts.size)
    for line in np.flatnonzero(per_line > MAX_DEPTH):
        if _max_depth(view[starts[line] : ends[line]]) > MAX_DEPTH:
            return True
    return False


# -- fast path ---------------------------------------------------------------------------------
def _parse_fast(data: Data, source_file: str, table: Table, columns: list[Column], first_line: int = 1) -> ParsedFile | None:
    """The file through pyarrow, or None when that cannot be proven to equal the exact path.
    `data` has no BOM at its start (parse_file dropped it)."""
    view = np.frombuffer(data, dtype=np.uint8)
    if view.max(initial=0) >= 0x80:  # not ASCII: pyarrow reads strings that are not UTF-8 as they are
        try:
            str(memoryview(data), "utf-8")  # decoded in place, no copy of the chunk
        except UnicodeDecodeError:
            return None
    starts, ends, non_blank = _lines_of(view)
    if non_blank.size == 0:
        return ParsedFile(table.spec.schema.empty_table(), REJECT_SCHEMA.empty_table())
    # Every non-blank line must be `{ ... }` between JSON whitespace. Then no JSON value can
    # span a newline (after a `}` that leaves a container open, the next line's `{` is a syntax
    # error: no string holds a raw newline), so pyarrow sees each line from the top level, and
    # with as many rows as lines, each line is exactly one row.
    if not _each_line_is_braced(view, starts[non_blank], ends[non_blank]):
        return None
    if _any_too_deep(view, starts, ends, non_blank):
        return None  # never handed to pyarrow: the exact path rejects the line
    line_numbers = pa.array(non_blank + first_line)
    schema = pa.schema([(c.name, c.type) for c in columns])
    options = pa_json.ParseOptions(explicit_schema=schema, unexpected_field_behavior="infer")
    try:
        parsed = pa_json.read_json(pa.BufferReader(data if isinstance(data, pa.Buffer) else arrow_buffer(data)), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if parsed.num_rows != len(line_numbers):
        return None  # several objects on a line: only the exact path can number them
    # pyarrow takes NaN, Inf, Infinity and -NaN, and turns 1.8e308 into inf, anywhere in a
    # record; Python's json (as the exact path runs it) rejects the whole line.
    if not all(_all_finite(parsed[name]) for name in parsed.column_names):
        return None
    # A key spelled another way (`Email`, `SHAREWITHRESEARCHASOFDATE`) may stand beside the
    # canonical one in the same record, and pyarrow reads a null and an absent key alike, so it
    # cannot see the conflict (`null` beside a date) the exact path rejects. (A key given twice
    # in one record is an ArrowInvalid above.)
    contract = {c.name.lower(): c.name for c in columns}
    if any(contract.get(name.lower(), name) != name for name in parsed.column_names):
        return None
    rescuing = RESCUED_DATA.name in table.column_names
    if rescuing and any(name.lower() not in contract for name in parsed.column_names):
        return None  # fields outside the contract: the exact path keeps them as they were sent
    values = {column.name: parsed[column.name] for column in columns}
    if rescuing:
        values[RESCUED_DATA.name] = pa.nulls(parsed.num_rows, pa.string())
    values["source_file"] = pa.DictionaryArray.from_arrays(np.zeros(parsed.num_rows, dtype=np.int32), pa.array([source_file]))
    values["source_line"] = line_numbers
    rows = pa.table(values, schema=table.spec.schema)

    required = [c.name for c in columns if c.required]
    missing = functools.reduce(pc.or_, [pc.is_null(rows[name]) for name in required], pa.scalar(False))
    if not pc.any(missing).as_py():
        return ParsedFile(rows, REJECT_SCHEMA.empty_table())
    rejects = []
    for r in rows.filter(missing).select(["source_line", *required]).to_pylist():
        i = r["source_line"] - first_line  # the line's index in `data`
        raw = view[starts[i] : ends[i]].tobytes().strip(_JSON_WHITESPACE_BYTES).decode()
        reason = _missing([name for name in required if r[name] is None])
        rejects.append(dict(zip(REJECT_SCHEMA.names, (source_file, r["source_line"], raw, *reason))))
    return ParsedFile(rows.filter(pc.invert(missing)), pa.Table.from_pylist(rejects, REJECT_SCHEMA))


def _each_line_is_braced(view: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> bool:
    """Whether each (non-blank) line's first and last byte other than JSON whitespace are `{`, `}`."""
    first, last = starts, ends - 1
    for _ in range(16):  # a vectorised step per whitespace byte: lines rarely start or end with more
        leading, trailing = _IS_WHITESPACE[view[first]], _IS_WHITESPACE[view[last]]
        if not (leading.any() or trailing.any()):
            return bool((view[first] == ord("{")).all() and (view[last] == ord("}")).all())
        first, last = first + leading, last - trailing  # a non-blank line has content: neither runs off its line
    return False  # lots of padding: let the exact path decide


def _all_finite(values: pa.ChunkedArray | pa.Array) -> bool:
    """No NaN or infinity anywhere in the values, nested ones included."""
    kind = values.type
    if pa.types.is_floating(kind):
        return pc.all(pc.is_finite(values)).as_py() is not False
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    if pa.types.is_struct(kind):
        return all(_all_finite(chunk.field(i)) for chunk in chunks for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return all(_all_finite(chunk.values) for chunk in chunks)
    return True


def _missing(names: list[str]) -> Reason:
    return MISSING + ",".join(names), "missing required field " + ", ".join(names)


# -- exact path --------------------------------------------------------------------------------
class _NotFinite(ValueError):
    """A number JSON cannot mean: NaN, Infinity, -Infinity, or one that overflows a double."""


class _NegativeZero(int):
    """JSON's `-0`: the integer 0, which as a double keeps its sign, as pyarrow reads it."""

    def __float__(self) -> float:
        return -0.0


def _finite_float(text: str) -> float:  # also NaN, Infinity, -Infinity: JSON's missing constants
    value = float(text)
    if not math.isfinite(value):
        raise _NotFinite(text)
    return value


class _Record(dict):
    """A JSON object, and the keys (lower case) it gives differing values, twice or in two letter
    cases: Python and pyarrow would each quietly keep one; which the producer meant is in doubt."""

    conflicts: frozenset[str] = frozenset()


def _record(pairs: list[tuple[str, Any]]) -> _Record:
    record = _Record(pairs)
    if len(pairs) > 1 and len({key.lower() for key, _ in pairs}) < len(pairs):
        given: dict[str, list[Any]] = {}
        for key, value in pairs:
            given.setdefault(key.lower(), []).append(value)
        # `true` is not `1`, `null` is not a date
        differ = (k for k, vs in given.items() if any(type(v) is not type(vs[0]) or v != vs[0] for v in vs[1:]))
        record.conflicts = frozenset(differ)
    return record


_DECODER = json.JSONDecoder(
    object_pairs_hook=_record,
    parse_constant=_finite_float,
    parse_float=_finite_float,
    parse_int=lambda text: _NegativeZero(0) if text == "-0" else int(text),
)
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _parse_exact(data: bytes, source_file: str, table: Table, columns: list[Column], first_line: int = 1) -> ParsedFile:
    """`data` has no BOM at its start (parse_file dropped it)."""
    rows: list[dict[str, Any]] = []
    rejects: list[dict[str, Any]] = []
    for line_number, raw_bytes in enumerate(data.split(b"\n"), start=first_line):
        raw_bytes = raw_bytes.strip(_JSON_WHITESPACE_BYTES)
        if not raw_bytes:
            continue
        try:
            outcomes = _line_outcomes(raw_bytes, columns)
        except Exception as error:  # noqa: BLE001 - hostile input must never crash a run
            reason = (UNPARSEABLE, f"could not be parsed: {type(error).__name__}: {error}"[:200])
            outcomes = [(raw_bytes.decode("utf-8", "replace"), reason)]
        for text, outcome in outcomes:
            if isinstance(outcome, tuple):
                rejects.append(dict(zip(REJECT_SCHEMA.names, (source_file, line_number, text, *outcome))))
            else:
                extra = outcome[RESCUED_DATA.name]
                extra = json.dumps(extra, ensure_ascii=False) if extra else None
                rows.append({**outcome, "source_file": source_file, "source_line": line_number, RESCUED_DATA.name: extra})
    by_column = {name: [row[name] for row in rows] for name in table.column_names}  # 3x faster than from_pylist
    rejected = pa.Table.from_pylist(rejects, REJECT_SCHEMA)
    return ParsedFile(pa.table(by_column, schema=table.spec.schema), rejected, exact_path=True)


def _line_outcomes(raw_bytes: bytes, columns: list[Column]) -> list[tuple[str, dict[str, Any] | Reason]]:
    """Each object of a (stripped, non-blank) line with its text, and its values or the reason
    it is rejected; a line that cannot be read at all is one reject of the whole line."""
    try:
        line = raw_bytes.decode("utf-8")
    except UnicodeDecodeError as error:
        return [(raw_bytes.decode("utf-8", "replace"), (NOT_UTF8, f"not valid UTF-8: {error.reason}"))]
    # Cheap bound first: a line with at most MAX_DEPTH opening brackets cannot be deeper.
    brackets = raw_bytes.count(b"[") + raw_bytes.count(b"{")
    if brackets > MAX_DEPTH and _max_depth(np.frombuffer(raw_bytes, dtype=np.uint8)) > MAX_DEPTH:
        return [(line, (TOO_DEEP_CODE, TOO_DEEP))]
    objects, rest = _split_objects(line)
    out: list[tuple[str, dict[str, Any] | Reason]] = []
    for obj, text in objects:
        if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(obj):
            out.append((text, (NOT_UNICODE, "not valid Unicode: a string holds a lone surrogate escape")))
            continue
        try:
            out.append((text, _typed_record(obj, columns)))
        except OverflowError:  # an integer too large for a double, in a double column
            out.append((text, (NOT_FINITE, f"not a finite number: {text[:40]}")))
    return out if rest is None else [*out, rest]


def _has_lone_surrogate(obj: Any) -> bool:
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _split_objects(line: str) -> tuple[list[tuple[Any, str]], tuple[str, Reason] | None]:
    """Every JSON value on the line with its own text; and the rest of the line from the first
    value that is not a complete object (`"c",` of a cut record parses), with why it is rejected
    (else None): a line of 171 records cut inside the last keeps 170 rows and one reject."""
    values, starts, pos = [], [], 0
    while pos < len(line):
        try:
            value, end = _DECODER.raw_decode(line, pos)
        except (json.JSONDecodeError, _NotFinite) as error:
            kept = next((i for i, (v, _) in enumerate(values) if not isinstance(v, dict)), len(values))
            rest = line[starts[kept] if kept < len(values) else pos :]
            if isinstance(error, _NotFinite):
                return values[:kept], (rest, (NOT_FINITE, f"not a finite number: {error}"))
            return values[:kept], (rest, (NOT_JSON, f"not JSON: {error.msg} at column {error.colno}"))
        values.append((value, line[pos:end]))
        starts.append(pos)
        pos = end
        while pos < len(line) and line[pos] in JSON_WHITESPACE:
            pos += 1
    return values, None


def _typed_record(obj: Any, columns: list[Column]) -> dict[str, Any] | Reason:
    """The record's values under canonical names, and under RESCUED_DATA its fields outside
    the contract (a dict, maybe empty); or the reason it is rejected."""
    if not isinstance(obj, dict):
        return NOT_OBJECT, f"not a JSON object but {type(obj).__name__}"
    conflicting = [c.name for c in columns if c.name.lower() in obj.conflicts]
    if conflicting:
        return CONFLICTING, "conflicting values for " + ", ".join(conflicting)
    out: dict[str, Any] = {}
    missing = []
    for column in columns:
        value = obj.get(column.name)
        if value is None:  # another spelling of the key (spellings that disagree were rejected)
            value = next((v for k, v in obj.items() if k.lower() == column.name.lower() and v is not None), None)
        if value is None:
            if column.required:
                missing.append(column.name)
            out[column.name] = None
            continue
        if not _has_type(value, column.type):
            kind, shown = ("int", "-0") if isinstance(value, _NegativeZero) else (type(value).__name__, json.dumps(value))
            return BAD_TYPE + column.name, f"{column.name} has {kind} value {shown[:40]}, expected {column.athena_type}"
        wanted = column.type
        out[column.name] = float(value) if pa.types.is_floating(wanted) else int(value) if pa.types.is_integer(wanted) else value
    if missing:
        return _missing(missing)
    contract = {c.name.lower() for c in columns}
    out[RESCUED_DATA.name] = {key: value for key, value in obj.items() if key.lower() not in contract}
    return out


def _has_type(value: Any, wanted: pa.DataType) -> bool:
    if isinstance(value, bool):
        return False
    if pa.types.is_string(wanted):
        return isinstance(value, str)
    if pa.types.is_integer(wanted):
        return isinstance(value, int) and -(2**63) <= value < 2**63
    return isinstance(value, (int, float))
