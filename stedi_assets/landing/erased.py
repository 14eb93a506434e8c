"""Erasure in the landing zone: the erased people's rows and rejected lines left out of a
source file as ingested, and their lines counted, so that every file's line accounting stays
whole (`lines_accounted_for`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets.erasure import EMAIL, SERIAL, Erasures, erasure_keys
from stedi_assets.landing.named import NAMED, with_named_keys
from stedi_assets.lake.delta import Snapshot
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.tables import RESCUED_DATA


@dataclass(frozen=True)
class LeftOut:
    """What is kept, and what is left out: lines (neither rows nor rejects) and, for
    customers, the keyed hashes of the erased people's serial numbers."""

    rows: pa.Table
    rejects: pa.Table
    lines: int
    serials: list[str]


def leave_out(rows: pa.Table, rejects: pa.Table, erasures: Erasures, privacy: PrivacyPolicy, column: str, kind: str) -> LeftOut:
    """Leave out the rows (of one source file) whose `column` (compared as `kind`) names an
    erased person, and the rejected lines that name one anywhere (`naming`)."""
    if not erasures:
        return LeftOut(rows, rejects, 0, [])
    rows = _rescued_without_erased(rows, erasures, privacy)
    row_mask = erasures.dropping(rows, column, kind, privacy)
    reject_mask = pa.array(naming(rejects, erasures, privacy))
    kept_rows, dropped_rows = rows.filter(pc.invert(row_mask)), rows.filter(row_mask)
    kept_rejects, dropped_rejects = rejects.filter(pc.invert(reject_mask)), rejects.filter(reject_mask)
    lines = _lines_left_out([dropped_rows, dropped_rejects], [kept_rows, kept_rejects])
    serials: list[str] = []
    if "serialNumber" in rows.column_names and kind == EMAIL:  # customers: their devices (less those kept, assets._erased_serials)
        theirs = set(dropped_rows["serialNumber"].to_pylist()) | set(pc.list_flatten(dropped_rejects[NAMED[SERIAL]]).to_pylist())
        serials = sorted(erasure_keys(theirs, privacy, SERIAL).values())
    return LeftOut(kept_rows, kept_rejects, lines, serials)


def naming(rejects: pa.Table, erasures: Erasures, privacy: PrivacyPolicy) -> np.ndarray:
    """The mask of rejected lines that name an erased person anywhere in their text (`NAMED`):
    any person key they name is hers, or any serial number only erased people own."""
    mask = np.zeros(rejects.num_rows, dtype=bool)
    for kind, column in NAMED.items():
        lists = rejects[column].combine_chunks()
        names = pa.table({column: pc.list_flatten(lists)})
        hits = erasures.dropping(names, column, kind, privacy)
        mask[pc.list_parent_indices(lists).filter(hits).to_numpy()] = True
    return mask


def _rescued_without_erased(rows: pa.Table, erasures: Erasures, privacy: PrivacyPolicy) -> pa.Table:
    """`rows` with `rescued_data` cleared where it names an erased person, as a rejected line
    would: the row is someone else's and stays, her name goes."""
    if RESCUED_DATA.name not in rows.column_names or rows[RESCUED_DATA.name].null_count == rows.num_rows:
        return rows
    rescued = rows[RESCUED_DATA.name]
    cleared = pa.array(naming(with_named_keys(pa.table({"raw": rescued})), erasures, privacy))
    return rows.set_column(
        rows.column_names.index(RESCUED_DATA.name), RESCUED_DATA.name, pc.if_else(cleared, pa.scalar(None, pa.string()), rescued)
    )


def _lines_left_out(dropped: list[pa.Table], kept: list[pa.Table]) -> int:
    """Lines of the dropped rows and rejects that no kept row or reject shares (a line of
    several records may keep some)."""
    gone = {n for t in dropped for n in t["source_line"].to_pylist()}
    if gone:
        numbers = pa.array(sorted(gone), pa.int64())
        gone -= {n for t in kept for n in t["source_line"].filter(pc.is_in(t["source_line"], value_set=numbers)).to_pylist()}
    return len(gone)


def sources_naming(
    rows: Snapshot, rejects: Snapshot, erasures: Erasures, privacy: PrivacyPolicy, column: str, kind: str
) -> set[str]:
    """The source files some of whose rows (by `column`) or rejected lines, in a published
    landing version and its rejects, name an erased person: a build applying new requests
    carries them again without her (landing/assets.py)."""
    found = rows.dataset().to_table(columns=[column, "source_file"])
    named = rejects.dataset().to_table(columns=["source_file", *NAMED.values()])
    hits = found.filter(erasures.dropping(found, column, kind, privacy))["source_file"]
    return set(pc.unique(hits).to_pylist()) | set(named.filter(pa.array(naming(named, erasures, privacy)))["source_file"].to_pylist())
