"""One source file ingested into a landing table: parsed (or carried from a published
version), person keys computed, erased people left out, its rows handed on a piece at a time
and what it gave counted. The one definition, run in the step's process on DuckDB and on
Spark's executors (engine `stage_each`), which import it: it imports neither Dagster nor an engine."""

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

# A piece of a source file: its rows, its rejected lines, its non-blank lines (counted apart
# from the parse, from the same bytes: what `lines_accounted_for` checks and the ledger records).
Piece = tuple[pa.Table, pa.Table, int]


@dataclass
class Ingested:
    """What one source file gave beside its rows, complete once they are all handed on: small,
    so an executor sends it back to the step. `process`: the host and process that ingested it."""

    source_file: str
    lines: int = 0
    rows: int = 0
    lines_erased: int = 0
    rejects: list[pa.Table] = field(default_factory=list)  # kept rejected lines, a part per piece that has any
    serials: set[str] = field(default_factory=set)  # customers: keyed serials of the records left out
    rescued: dict[str, int] = field(default_factory=dict)  # fields outside the contract, rows per field
    exact: bool = False  # parsed line by line (bad lines or fields outside the contract)
    process: str = ""


@dataclass(frozen=True)
class Ingest:
    """How one landing table ingests a source file; `carried`: the source files carried from the
    published version (landing/assets.py `_replacing`), each with its ledger row. Sent whole to
    Spark's executors, with the privacy policy they need to tell an erased person."""

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
        for rows, rejected, lines in pieces:
            kept = leave_out(rows, rejected, self.erasures, self.privacy, *self.table.erased_by)  # type: ignore[misc]
            if kept.rejects.num_rows:
                done.rejects.append(kept.rejects)
            done.serials.update(kept.serials)
            fields.update(rescued_fields(kept.rows))
            done.rows += kept.rows.num_rows
            done.lines_erased += kept.lines
            done.lines += lines
            yield kept.rows
        done.rescued = dict(fields)

    def _parsed(self, key: str, done: Ingested) -> Iterator[Piece]:
        keys, store = PERSON_KEY_OF.get(self.table.name, {}), self.source.store()
        for before, data in chunks(store, key):
            batch = parse_file(data, key, as_read(self.table), before + 1)  # a record's own "person_key" is rescued, not read
            done.exact |= batch.exact_path
            # The person key, computed once, here, beside the e-mail as it arrived.
            rows = with_person_keys(batch.rows, keys).select(self.table.column_names)
            yield rows, with_named_keys(batch.rejects), count_lines(data)

    def _published(self, key: str, lines: int, published: list[Snapshot]) -> Iterator[Piece]:
        """What the published data files holding `key` hold of it, with the columns a version
        written under an older contract lacked null, the person keys computed again and what
        each rejected line names found again in its text, as a parse builds them."""
        rows, rejects = (s.dataset().to_table(filter=pc.field("source_file") == key) for s in published)
        rows = with_person_keys(rows, PERSON_KEY_OF.get(self.table.name, {}))
        yield self.table.conform(rows), self.rejects.conform(with_named_keys(rejects.drop_columns(list(NAMED.values())))), lines


def chunks(store: Store, key: str, size: int = CHUNK_BYTES) -> Iterator[tuple[int, pa.Buffer]]:
    """A source file in chunks of whole lines, each with the number of lines before it: a local
    file read chunk by chunk, an object of a remote store whole. A chunk never starts with a
    byte order mark: only the file's first may drop one, and a later line starting with one is a reject."""
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


def rescued_fields(rows: pa.Table) -> dict[str, int]:
    """Each field outside the contract that rows kept in rescued_data, and how many rows have
    it. A field's name is the producer's, for Dagster to show: anything e-mail-like in it masked."""
    if RESCUED_DATA.name not in rows.column_names:
        return {}
    counts: Counter[str] = Counter()
    for text in rows[RESCUED_DATA.name].drop_null().to_pylist():
        counts.update(scrub(name) for name in json.loads(text))
    return dict(counts)
