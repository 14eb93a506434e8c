"""A landing file parsed in chunks of lines gives exactly the rows, line numbers, rejects and
line count of the file parsed whole (the landing step holds one chunk in memory at a time)."""

from __future__ import annotations

import pyarrow as pa
import pytest

from stedi_assets.lake.store import LocalStore
from stedi_assets.landing.ingest import chunks
from stedi_assets.landing.json_lines import count_lines, parse_file
from stedi_assets.tables import ACCELEROMETER_LANDING, as_read

BOM = b"\xef\xbb\xbf"
LINES = [b'{"user": "a@b.c", "timestamp": %d, "x": 1, "y": 2, "z": 3}' % i for i in range(40)]
# A file-start BOM, a BOM at the start of a later line (a reject), blank lines, a bad line,
# CRLF, two objects on one line, no newline at the end.
FILE = BOM + b"\n".join(
    [*LINES[:10], b"", BOM + LINES[10], b"not json", LINES[11] + b"\r", LINES[12] + b" " + LINES[13], b"   ", *LINES[14:]]
)


@pytest.mark.parametrize("size", [1, 7, 64, 200, 1 << 20])
def test_chunks_give_the_whole_file_s_rows_rejects_and_lines(tmp_path, size):
    (tmp_path / "f.json").write_bytes(FILE)
    parts = list(chunks(LocalStore(tmp_path), "f.json", size))
    assert b"".join(p.to_pybytes() for _, p in parts) == FILE
    assert not any(p.to_pybytes().startswith(BOM) for _, p in parts[1:])
    whole = parse_file(FILE, "f.json", as_read(ACCELEROMETER_LANDING))
    rows, rejects = [], []
    for before, data in parts:
        batch = parse_file(data, "f.json", as_read(ACCELEROMETER_LANDING), before + 1)
        rows.append(batch.rows)
        rejects.append(batch.rejects)
    assert pa.concat_tables(rows).to_pylist() == whole.rows.to_pylist()
    assert pa.concat_tables(rejects).to_pylist() == whole.rejects.to_pylist()
    assert whole.rejects.num_rows == 2
    assert sum(count_lines(data) for _, data in parts) == count_lines(FILE)
