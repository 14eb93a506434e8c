"""What a landing table has ingested, and what has arrived since: the one comparison that both
the landing step and the sensor make.

The ledger, `<source>/landing_files`, has a row per source file. It is a Delta table paired
with the landing version through that version's commit (`Lake.companion`), so it always
describes the rows readers see (docs/ingestion.md, "What is re-read: the ledger").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from stedi_assets.lake.delta import Lake, Snapshot
from stedi_assets.lake.errors import TableNotPublishedError
from stedi_assets.lake.store import Entry
from stedi_assets.landing.source import STATUS, LandingSource
from stedi_assets.tables import Table

if TYPE_CHECKING:
    from stedi_assets.landing.ingest import Ingested


@dataclass(frozen=True)
class Arrivals:
    """A landing source as listed now, against what its landing table has ingested.
    `published`: the landing version the ledger belongs with (None: everything is new)."""

    entries: dict[str, Entry]
    recorded: dict[str, dict]  # source_file -> its ledger row
    published: Snapshot | None = None
    new: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    gone: list[str] = field(default_factory=list)  # recorded and no longer listed: their rows stay
    skipped: dict[str, str] = field(default_factory=dict)  # files of the folder not read, and why

    @property
    def to_parse(self) -> list[str]:
        """New and changed files, in listing order."""
        pending = set(self.new) | set(self.changed)
        return [key for key in self.entries if key in pending]

    @property
    def ledger_changes(self) -> bool:
        """Whether the ledger would say something it does not say yet."""
        return bool(self.to_parse) or any(self.recorded[key]["present"] for key in self.gone)

    def run_key(self) -> str:
        """Names exactly this set of arrivals, each file at its identity: a sensor requests
        one run per key, so the same arrivals are never ingested twice."""
        identities = [[key, self.entries[key].etag] for key in self.to_parse]
        return hashlib.sha256(json.dumps(identities).encode()).hexdigest()[:32]


def arrivals(source: LandingSource, lake: Lake, table: Table, ledger: Table) -> Arrivals:
    """List the source of `table` and compare it with the ledger of its published version."""
    try:
        published: Snapshot | None = lake.current(table.spec)
        recorded = {row["source_file"]: row for row in lake.companion(published, ledger.spec).to_arrow().to_pylist()}
    except TableNotPublishedError:  # never ingested, or published before it had a ledger: all is new
        published, recorded = None, {}
    entries, skipped = source.survey(table.source, recorded)  # files unchanged since recorded are not hashed again
    return Arrivals(
        entries,
        recorded,
        published,
        new=[k for k in entries if k not in recorded],
        changed=[k for k, e in entries.items() if k in recorded and recorded[k]["etag"] != e.etag],
        gone=[k for k in recorded if k not in entries],
        skipped=skipped,
    )


def ledger_rows(arrivals: Arrivals, ingested: Mapping[str, Ingested], gone: list[str]) -> pa.Table:
    """The ledger after ingesting (parsing or carrying) some files: every file listed now, with
    its status as listed now (a file only touched is not hashed again), and the `gone` ones,
    kept with their rows and marked absent."""

    def row(key: str, **now: Any) -> dict[str, Any]:
        done = ingested.get(key)
        rejects = sum(t.num_rows for t in done.rejects) if done else 0
        counts = dict(lines=done.lines, rows=done.rows, rejects=rejects, lines_erased=done.lines_erased) if done else {}
        return {"lines_erased": 0, **arrivals.recorded.get(key, {}), **now, **counts}

    rows = [row(key, **{name: getattr(entry, name) for name in STATUS}, etag=entry.etag, source_file=key, present=True)
            for key, entry in arrivals.entries.items()]
    return pa.Table.from_pylist(rows + [row(key, present=False) for key in gone])
