"""One source file ingested into a landing table: parsed (or carried from a published
version), person keys computed, erased people left out, its rows handed on a piece at a time
and what it gave counted. The one definition, run wherever the engine ingests: in the step's
process on DuckDB, on Spark's executors (engine `stage_each`), so both give the same rows,
rejects, line numbers and ledger. It imports neither Dagster nor an engine: executors import it."""

from __future__ import annotations

import json
import os
import socket
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets.erasure import Erasures
from stedi_assets.lake.delta import Snapshot
from stedi_assets.lake.store import Store, read_buffer
from stedi_assets.landing.erased import leave_out
from stedi_assets.landing.json_lines import BOM, count_lines, parse_file
from stedi_assets.landing.named import NAMED, with_named_keys
from stedi_assets.landing.source import LandingSource
from stedi_assets.person import with_person_keys
from stedi_assets.privacy import PrivacyPolicy, scrub
from stedi_assets.tables import PERSON_KEY_OF, RESCUED_DATA, Table, as_read

CHUNK_BYTES = 1 << 26  # a landing file is parsed in chunks of lines of about this many bytes

# A piece of a source file: its rows, its rejected lines, the lines counted, the lines read.
Piece = tuple[pa.Table, pa.Table, int, int]


@dataclass
class Ingested:
    """What one source file gave beside its rows, complete once they are all handed on: small
    (counts, the rejected lines, names), so an executor sends it back to the step. `process`:
    the host and process that ingested it (the step's, or a Spark executor's)."""

    source_file: str
    lines_read: int = 0
    rows: int = 0
    rejected: int = 0
    lines_erased: int = 0
    lines: int = 0  # counted apart from the parse: what `lines_accounted_for` checks
    rejects: list[pa.Table] = field(default_factory=list)  # kept rejected lines, a part per piece that has any
    serials: set[str] = field(default_factory=set)  # customers: keyed serials only erased people own
    rescued: dict[str, int] = field(default_factory=dict)  # fields outside the contract, rows per field
    exact: bool = False  # parsed line by line (bad lines or fields outside the contract)
    process: str = ""


@dataclass(frozen=True)
class Ingest:
    """How one landing table ingests a source file. `carried`: the source files whose rows and
    rejects are carried from a published version into new data files, not parsed again (an
    erasure, or a version under an older contract), each with its ledger row and the data
    files of the version and its rejects that hold them. Sent whole to Spark's executors: it
    holds the privacy policy, whose subject key they need to tell an erased person's rows, as
    they hold the lake's access."""

    table: Table
    rejects: Table
    source: LandingSource
    erasures: Erasures
    privacy: PrivacyPolicy
    carried: Mapping[str, tuple[Mapping[str, Any], Snapshot, Snapshot]] = field(default_factory=dict)

    def __call__(self, key: str) -> tuple[Iterator[pa.Table], Ingested]:
        """The file's kept rows, a piece at a time (only the piece at hand is held, never the
        whole file or source), and what it gave: filled in as the rows are handed on."""
        done = Ingested(key, process=f"{socket.gethostname()}:{os.getpid()}")
        if key in self.carried:
            was, *published = self.carried[key]
            done.lines_erased = was.get("lines_erased") or 0
            pieces = self._published(key, was["lines"], published)
        else:
            pieces = self._parsed(key, done)
        return self._kept(pieces, done), done

    def _kept(self, pieces: Iterator[Piece], done: Ingested) -> Iterator[pa.Table]:
        fields: Counter[str] = Counter()
        for rows, rejected, lines, lines_read in pieces:
            kept = leave_out(rows, rejected, self.erasures, self.privacy, *self.table.erased_by)  # type: ignore[misc]
            if kept.rejects.num_rows:
                done.rejects.append(kept.rejects)
            done.serials.update(kept.serials)
            fields.update(rescued_fields(kept.rows))
            done.lines_read += lines_read
            done.rows += kept.rows.num_rows
            done.rejected += kept.rejects.num_rows
            done.lines_erased += sum(kept.lines.values())
            done.lines += lines
            yield kept.rows
        done.rescued = dict(fields)

    def _parsed(self, key: str, done: Ingested) -> Iterator[Piece]:
        keys, store = PERSON_KEY_OF.get(self.table.name, {}), self.source.store()
        for before, data in chunks(store, key):
            batch = parse_file(data, key, as_read(self.table))  # a record's own "person_key" is rescued, not read
            done.exact |= batch.exact_path
            # The person key, computed once, here, beside the e-mail as it arrived.
            rows = with_person_keys(after(batch.rows, before), keys).select(self.table.column_names)
            # Lines counted apart from the parse, from the same bytes: what `lines_accounted_for` checks.
            yield rows, with_named_keys(after(batch.rejects, before)), count_lines(data), batch.lines_read

    def _published(self, key: str, lines: int, published: list[Snapshot]) -> Iterator[Piece]:
        """What the published data files holding `key` hold of it, with the columns a version
        written under an older contract lacked null, the person keys computed again and what
        each rejected line names found again in its text, as a parse builds them."""
        out = []
        for table, snapshot in zip((self.table, self.rejects), published):
            data = snapshot.dataset().to_table(filter=pc.field("source_file") == key)
            if table is self.table:
                data = with_person_keys(data, PERSON_KEY_OF.get(table.name, {}))
            else:
                data = with_named_keys(data.drop_columns(list(NAMED.values())))
            out.append(table.conform(data))
        yield out[0], out[1], lines, lines


def chunks(store: Store, key: str, size: int = CHUNK_BYTES) -> Iterator[tuple[int, pa.Buffer]]:
    """A source file in chunks of whole lines, each with the number of lines before it: a
    local file read chunk by chunk (no more than one in memory), an object of a remote
    store whole. A chunk never starts with a byte order mark: only the file's first may
    drop one (json_lines), and a later line starting with one is a reject."""
    local = store.local_path(key)
    if local is None:
        yield 0, read_buffer(store, key)
        return
    lines = 0
    with open(local, "rb") as f:
        while data := f.read(size):
            data += f.readline()  # to the end of its last line
            while (mark := f.read(len(BOM))) == BOM:
                data += mark + f.readline()
            f.seek(-len(mark), os.SEEK_CUR)
            yield lines, pa.py_buffer(data)
            lines += data.count(b"\n")


def after(rows: pa.Table, lines: int) -> pa.Table:
    """Rows of a chunk numbered as lines of the whole file."""
    if not lines:
        return rows
    i = rows.schema.get_field_index("source_line")
    return rows.set_column(i, rows.schema.field(i), pc.add(rows["source_line"], lines))


def rescued_fields(rows: pa.Table) -> dict[str, int]:
    """Each field outside the contract that rows kept in rescued_data, and how many rows have
    it. A field's name is the producer's, for Dagster to show: anything e-mail-like in it masked."""
    if RESCUED_DATA.name not in rows.column_names:
        return {}
    counts: Counter[str] = Counter()
    for text in rows[RESCUED_DATA.name].drop_null().to_pylist():
        counts.update(scrub(name) for name in json.loads(text))
    return dict(counts)
