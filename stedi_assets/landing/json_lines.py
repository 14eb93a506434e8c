"""Typed landing tables from line-delimited JSON, with a rejects record for every bad line.

A file is parsed in two ways that agree on every input:
- fast: pyarrow's vectorised JSON reader against the table's contract, used when the file is
  clean enough that each non-blank line yields exactly one row (the usual case);
- exact: line by line in Python, for files with malformed lines, wrongly typed values or several
  objects on one line, so each problem gets its file, line number, raw text and reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from stedi_assets.lake.store import arrow_buffer
from stedi_assets.tables import Column, Table

Data = bytes | pa.Buffer  # a landing file's content, as Python bytes or in Arrow memory

REJECT_SCHEMA = pa.schema(
    [("source_file", pa.string()), ("source_line", pa.int64()), ("raw", pa.string()), ("reason", pa.string())]
)


@dataclass
class ParsedFile:
    rows: pa.Table
    rejects: pa.Table
    lines_read: int  # non-blank lines; blank ones carry no record
    exact_path: bool = False


@dataclass
class LandingBatch:
    rows: pa.Table
    rejects: pa.Table
    files: int = 0
    lines_read: int = 0
    files_parsed_exactly: list[str] = field(default_factory=list)


def parse_file(data: Data, source_file: str, table: Table) -> ParsedFile:
    data_columns = [c for c in table.columns if c.name not in ("source_file", "source_line")]
    fast = _parse_fast(data, source_file, table, data_columns)
    if fast is not None:
        return fast
    return _parse_exact(memoryview(data).tobytes(), source_file, table, data_columns)


def parse_files(files: Iterable[tuple[str, Data]], table: Table) -> LandingBatch:
    batch_rows, batch_rejects = [], []
    out = LandingBatch(table.arrow_schema.empty_table(), REJECT_SCHEMA.empty_table())
    for source_file, data in files:
        parsed = parse_file(data, source_file, table)
        batch_rows.append(parsed.rows)
        batch_rejects.append(parsed.rejects)
        out.files += 1
        out.lines_read += parsed.lines_read
        if parsed.exact_path:
            out.files_parsed_exactly.append(source_file)
    if batch_rows:
        out.rows = pa.concat_tables(batch_rows)
        out.rejects = pa.concat_tables(batch_rejects)
    return out


# `bytes.strip()`'s whitespace: a line of nothing else is blank and carries no record.
_IS_WHITESPACE = np.zeros(256, dtype=bool)
_IS_WHITESPACE[list(b" \t\n\r\x0b\x0c")] = True
_SLICE = 1 << 22


def non_blank_line_numbers(data: Data) -> np.ndarray:
    """1-based numbers of the lines that hold more than whitespace, counted the way both
    parsers count them, with array operations rather than a Python loop per line."""
    view = np.frombuffer(data, dtype=np.uint8)
    if view.size == 0:
        return np.empty(0, dtype=np.int64)
    # In slices, so the temporary masks stay small: a mask as large as the file costs more to
    # allocate than to compute.
    newlines = np.concatenate(
        [np.flatnonzero(view[i : i + _SLICE] == ord("\n")) + i for i in range(0, view.size, _SLICE)]
    )
    starts = np.concatenate(([0], newlines + 1))
    ends = np.append(newlines, view.size)  # exclusive; the last line ends with the data
    # A line can only be blank if it is empty or starts with whitespace: usually none do, and
    # only those few are looked at whole.
    maybe_blank = np.flatnonzero((starts == ends) | _IS_WHITESPACE[view[np.minimum(starts, view.size - 1)]])
    blank = maybe_blank[~_has_content(view, starts[maybe_blank], ends[maybe_blank])]
    return np.delete(np.arange(1, starts.size + 1, dtype=np.int64), blank)


def _has_content(view: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Whether each non-overlapping, ordered range [start, end) of `view` holds a non-whitespace byte."""
    out = np.zeros(starts.size, dtype=bool)
    filled = starts < ends
    if not filled.any():
        return out
    content = np.empty(view.size + 1, dtype=bool)  # one spare slot: reduceat's indices must be < size
    np.take(~_IS_WHITESPACE, view, out=content[:-1])
    content[-1] = False
    bounds = np.column_stack((starts[filled], ends[filled])).ravel()
    out[filled] = np.logical_or.reduceat(content, bounds)[::2]
    return out


def count_lines(data: Data) -> int:
    """Non-blank lines: the records a file holds, as both parsers number them."""
    return int(non_blank_line_numbers(data).size)


# -- fast path ---------------------------------------------------------------------------------
def _parse_fast(data: Data, source_file: str, table: Table, columns: list[Column]) -> ParsedFile | None:
    if not _is_utf8(data):
        return None
    line_numbers = pa.array(non_blank_line_numbers(data))
    if len(line_numbers) == 0:
        return ParsedFile(table.arrow_schema.empty_table(), REJECT_SCHEMA.empty_table(), 0)
    options = pa_json.ParseOptions(
        explicit_schema=pa.schema([(c.name, c.type) for c in columns]), unexpected_field_behavior="infer"
    )
    try:
        parsed = pa_json.read_json(pa.BufferReader(_arrow_owned(data)), parse_options=options)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if parsed.num_rows != len(line_numbers):
        return None  # several objects on a line: only the exact path can number them
    values = {}
    for column in columns:
        merged = _case_insensitive_column(parsed, column)
        if merged is None:
            return None
        values[column.name] = merged
    values["source_file"] = pa.DictionaryArray.from_arrays(
        np.zeros(parsed.num_rows, dtype=np.int32), pa.array([source_file], pa.string())
    )
    values["source_line"] = line_numbers
    rows = pa.table(values, schema=table.arrow_schema)

    missing = _missing_required_mask(rows, columns)
    if not pc.any(missing).as_py():
        return ParsedFile(rows, REJECT_SCHEMA.empty_table(), parsed.num_rows)
    bad = rows.filter(missing)
    raw = pc.take(_lines(data), pc.subtract(bad["source_line"], 1))
    reasons = [_missing_reason(r, columns) for r in bad.select([c.name for c in columns if c.required]).to_pylist()]
    rejects = pa.table(
        {
            "source_file": bad["source_file"].cast(pa.string()),
            "source_line": bad["source_line"],
            "raw": pc.utf8_trim_whitespace(raw).cast(pa.string()),
            "reason": pa.array(reasons, pa.string()),
        },
        schema=REJECT_SCHEMA,
    )
    return ParsedFile(rows.filter(pc.invert(missing)), rejects, parsed.num_rows)


def _arrow_owned(data: Data) -> pa.Buffer:
    return data if isinstance(data, pa.Buffer) else arrow_buffer(data)


def _is_utf8(data: Data) -> bool:
    if np.frombuffer(data, dtype=np.uint8).max(initial=0) < 0x80:  # ASCII, the usual case
        return True
    try:
        memoryview(data).tobytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _lines(data: Data) -> pa.Array:
    """Every line of the file, blank ones included: index = line number - 1."""
    buffer = _arrow_owned(data)
    whole = pa.Array.from_buffers(pa.large_binary(), 1, [None, pa.array([0, buffer.size], pa.int64()).buffers()[1], buffer])
    return pc.split_pattern(whole, b"\n").flatten().cast(pa.large_string())


def _case_insensitive_column(parsed: pa.Table, column: Column) -> pa.ChunkedArray | None:
    """The column under its canonical name, filled from any other spelling of it."""
    merged = parsed[column.name]
    for name in parsed.column_names:
        if name != column.name and name.lower() == column.name.lower():
            try:
                merged = pc.coalesce(merged, parsed[name].cast(column.type, safe=True))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                return None
            if not _same_kind(parsed[name].type, column.type):
                return None  # e.g. a number under a text column: let the exact path reject it
    return merged


def _same_kind(actual: pa.DataType, wanted: pa.DataType) -> bool:
    if pa.types.is_null(actual):
        return True
    if pa.types.is_string(wanted):
        return pa.types.is_string(actual)
    if pa.types.is_integer(wanted):
        return pa.types.is_integer(actual)
    return pa.types.is_integer(actual) or pa.types.is_floating(actual)


def _missing_required_mask(rows: pa.Table, columns: list[Column]) -> pa.ChunkedArray:
    mask = None
    for column in columns:
        if column.required:
            is_null = pc.is_null(rows[column.name])
            mask = is_null if mask is None else pc.or_(mask, is_null)
    return mask if mask is not None else pa.chunked_array([pa.array([False] * rows.num_rows)])


def _missing_reason(row: dict[str, Any], columns: list[Column]) -> str:
    missing = [c.name for c in columns if c.required and row.get(c.name) is None]
    return "missing required field " + ", ".join(missing)


# -- exact path --------------------------------------------------------------------------------
_DECODER = json.JSONDecoder()


def _parse_exact(data: bytes, source_file: str, table: Table, columns: list[Column]) -> ParsedFile:
    records: dict[str, list[Any]] = {c.name: [] for c in table.columns}
    rejects: dict[str, list[Any]] = {f.name: [] for f in REJECT_SCHEMA}
    lines_read = 0

    def reject(line_number: int, raw: str, reason: str) -> None:
        rejects["source_file"].append(source_file)
        rejects["source_line"].append(line_number)
        rejects["raw"].append(raw)
        rejects["reason"].append(reason)

    for line_number, raw_bytes in enumerate(data.split(b"\n"), start=1):
        if not raw_bytes.strip():
            continue
        lines_read += 1
        try:
            line = raw_bytes.decode("utf-8").strip()
        except UnicodeDecodeError as error:
            reject(line_number, raw_bytes.decode("utf-8", "replace").strip(), f"not valid UTF-8: {error.reason}")
            continue
        try:
            objects = _split_objects(line)
        except ValueError as error:
            reject(line_number, line, f"not JSON: {error}")
            continue
        for obj, text in objects:
            problem = _typed_record(obj, columns)
            if isinstance(problem, str):
                reject(line_number, text, problem)
                continue
            for name, value in problem.items():
                records[name].append(value)
            records["source_file"].append(source_file)
            records["source_line"].append(line_number)
    return ParsedFile(
        pa.table(records, schema=table.arrow_schema),
        pa.table(rejects, schema=REJECT_SCHEMA),
        lines_read,
        exact_path=True,
    )


def _split_objects(line: str) -> list[tuple[Any, str]]:
    """Every JSON value on the line (`{...}{...}` included), with its own text."""
    out, pos = [], 0
    while pos < len(line):
        try:
            value, end = _DECODER.raw_decode(line, pos)
        except json.JSONDecodeError as error:
            raise ValueError(f"{error.msg} at column {error.colno}") from None
        out.append((value, line[pos:end]))
        pos = end
        while pos < len(line) and line[pos].isspace():
            pos += 1
    return out


def _typed_record(obj: Any, columns: list[Column]) -> dict[str, Any] | str:
    """The record's values under canonical names, or the reason it is rejected."""
    if not isinstance(obj, dict):
        return f"not a JSON object but {type(obj).__name__}"
    out: dict[str, Any] = {}
    missing = []
    for column in columns:
        value = _field(obj, column.name)
        if value is None:
            if column.required:
                missing.append(column.name)
            out[column.name] = None
            continue
        if not _has_type(value, column.type):
            return f"{column.name} has {type(value).__name__} value {json.dumps(value)[:40]}, expected {column.athena_type}"
        out[column.name] = float(value) if pa.types.is_floating(column.type) else value
    if missing:
        return "missing required field " + ", ".join(missing)
    return out


def _field(obj: dict[str, Any], name: str) -> Any:
    """The canonical spelling first, then any other spelling: the same order as the fast path."""
    if obj.get(name) is not None:
        return obj[name]
    return next((v for k, v in obj.items() if k.lower() == name.lower() and v is not None), None)


def _has_type(value: Any, wanted: pa.DataType) -> bool:
    if isinstance(value, bool):
        return False
    if pa.types.is_string(wanted):
        return isinstance(value, str)
    if pa.types.is_integer(wanted):
        return isinstance(value, int) and -(2**63) <= value < 2**63
    return isinstance(value, (int, float))
