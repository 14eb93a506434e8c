"""Landing: the raw JSON of each source as a typed table, and a rejects table beside it."""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import replace

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets import charts, erasure
from stedi_assets.audit import Audit
from stedi_assets.lake.delta import Snapshot, Staged
from stedi_assets.lake.store import Store, read_buffer
from stedi_assets.landing import checks
from stedi_assets.landing.json_lines import BOM, MAX_DEPTH, count_lines, parse_files
from stedi_assets.landing.ledger import Arrivals, arrivals, ledger_rows
from stedi_assets.landing.named import with_named_keys
from stedi_assets.landing.source import JSON_SUFFIXES
from stedi_assets.person import with_person_keys
from stedi_assets.privacy import scrub
from stedi_assets.landing.erased import leave_out, sources_naming
from stedi_assets.publishing import AssetStep, Build, Increment, audited_asset
from stedi_assets.tables import CUSTOMER_LANDING, PERSON_KEY_OF, RESCUED_DATA, Table, as_read

CONTRACT = "contract"  # the commit info key naming the columns a landing version was written with

KINDS = {"python", "delta"}


def contract_id(*tables: Table) -> str:
    """Names the columns of a landing table and its rejects: a version written under another
    contract (a column added, say) is not continued but parsed again (`_landing`)."""
    columns = [[t.name, [[c.name, str(c.type)] for c in t.columns]] for t in tables]
    return hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:16]


def landing_asset(
    audit: Audit, description: str, erased_by: tuple[str, str], inputs: Sequence[Table] = ()
) -> dg.AssetsDefinition:
    """`erased_by`: (column of the rows, kind) that tell an erased person's rows; rejected
    lines are told by every name they hold (landing/erased.py)."""
    table, rejects, ledger = audit.table, audit.companion, audit.ledger
    assert rejects is not None and ledger is not None
    keys = PERSON_KEY_OF.get(table.name, {})
    required = ", ".join(c.name for c in table.columns if c.required)
    contract = contract_id(table, rejects)

    @audited_asset(
        audit,
        group="landing",
        kinds=KINDS,
        inputs=inputs,
        description=(
            f"{description} It reads every file at any depth under its source folder whose name ends in "
            f"{'/'.join(JSON_SUFFIXES)} and does not start with `.` or `_`; any other file there is listed in "
            "the files_skipped metadata, with why, and in a warning. Lines that cannot become a row (not JSON, "
            f"nested deeper than {MAX_DEPTH} levels, NaN or infinite numbers, missing {required}, or a value of "
            f"the wrong type) go to {rejects.name} beside it, with file, line number, raw text, a reason code "
            "(one per cause) and reason, and every e-mail address (as its person key) and serial number the "
            "line names, which count for privacy. Fields outside the contract are kept with their row in "
            "rescued_data, counted per field and file (rescued_fields) and named in a warning. "
            f"Only new and changed source files are parsed (the identity of every file ingested is in "
            f"{ledger.name}); a changed file's rows and rejects are replaced, a file gone from the source "
            f"keeps its rows. The three are built, audited and published together, and readers pair them "
            f"by the versions {table.name}'s commit names. Lines of people whose erasure was requested "
            "are left out of both, and counted; a new request rewrites, from the published version, only the "
            "data files of the source files that hold theirs (not parsed again, gone files included)."
        ),
    )
    def _landing(step: AssetStep) -> Build:
        found = arrivals(step.source, step.lake, table, ledger)
        if found.skipped:
            listed = "; ".join(f"{key}: {why}" for key, why in list(found.skipped.items())[:20])
            more = f" (and {len(found.skipped) - 20} more)" if len(found.skipped) > 20 else ""
            step.context.log.warning(f"{table.source}: {len(found.skipped)} files not read: {listed}{more}")
        continuing = found.published is not None and not step.full_refresh
        # Written under another contract: every file is parsed again (older rows get the new
        # columns from their files), and the rows of files gone from the source are kept,
        # read back with the new columns null.
        upgrade = continuing and found.published.info.get(CONTRACT) != contract  # type: ignore[union-attr]
        if upgrade:
            step.context.log.warning(f"{table.name}: written under another column contract; parsing every file again")
        incremental = continuing and not upgrade
        to_parse = found.to_parse if incremental else list(found.entries)
        replaced = [key for key in to_parse if key in found.recorded] if incremental else []
        increment, carried = _replacing(step, found, rejects, replaced, erased_by) if incremental else (None, found.gone if upgrade else [])
        reject_parts, parsed, exact, line_counts = [], {}, [], []
        erased_lines: dict[str, int] = {}
        serials: set[str] = set()
        rescued: dict[str, dict[str, int]] = {}

        def ingest(key: str, pieces: Iterator[tuple[pa.Table, pa.Table, int, int]], erased_before: int = 0) -> Iterator[pa.Table]:
            """One source file's rows, handed on a piece at a time (a chunk of lines parsed, or
            what a version under an older contract kept of it): only the piece at hand is held
            in memory, never the whole file or source. A piece: rows, rejected lines, lines
            counted, lines read."""
            counts = [0, 0, 0, erased_before, 0]  # lines read, rows, rejects, erased lines, lines counted
            fields: Counter[str] = Counter()
            for rows, rejected, lines, lines_read in pieces:
                kept = leave_out(rows, rejected, step.erasures, step.privacy, *erased_by)
                if kept.rejects.num_rows:
                    reject_parts.append(kept.rejects)
                serials.update(kept.serials)
                fields.update(_rescued_fields(kept.rows))
                added = (lines_read, kept.rows.num_rows, kept.rejects.num_rows, sum(kept.lines.values()), lines)
                counts = [a + b for a, b in zip(counts, added)]
                yield kept.rows
            line_counts.append((key, counts[4]))
            erased_lines[key] = counts[3]
            parsed[key] = tuple(counts[:4])
            if fields:
                rescued[key] = dict(fields)

        def parse(key: str) -> Iterator[tuple[pa.Table, pa.Table, int, int]]:
            for before, data in chunks(step.source.store(), key):
                batch = parse_files([(key, data)], as_read(table))  # a record's own "person_key" is rescued, not read
                if batch.files_parsed_exactly and key not in exact:
                    exact.append(key)
                # The person key, computed once, here, beside the e-mail as it arrived.
                rows = with_person_keys(_after(batch.rows, before), keys).select(table.column_names)
                # Lines counted apart from the parse, from the same bytes: what `lines_accounted_for` checks.
                yield rows, with_named_keys(_after(batch.rejects, before)), count_lines(data), batch.lines_read

        old_rows, old_rejects = _published_rows(step, found.published, increment, (table, rejects), carried) if carried else ({}, {})  # type: ignore[arg-type]
        files = [
            *(ingest(key, parse(key)) for key in to_parse),
            *(
                ingest(key, iter([(old_rows[key], old_rejects[key], was["lines"], was["lines"])]), was.get("lines_erased") or 0)
                for key in carried
                for was in [found.recorded[key]]
            ),
        ]
        # One data file per source file, staged in the table's folder as it is parsed (out of
        # sight until the commit): the rules judge those files, and the commit adds them.
        staged = step.lake.stage(table.spec, files)
        if exact:
            step.context.log.warning(f"{table.source}: files parsed line by line (bad lines or fields outside the contract): {', '.join(exact)}")
        if rescued:
            listed = "; ".join(f"{key}: {', '.join(f'{f} ({n} rows)' for f, n in fields.items())}" for key, fields in list(rescued.items())[:20])
            step.context.log.warning(f"{table.name}: fields outside the contract, kept in {RESCUED_DATA.name}: {listed}")
        rows_added = staged.rows
        kept_rejects = rejects.whole(reject_parts)
        erased_rows = sum(found.recorded[key]["rows"] - parsed[key][1] for key in carried)
        if increment is not None:
            removed_rows = sum(found.recorded[key]["rows"] for key in [*replaced, *carried])
            summary = {**increment.summary, **({"files_carried": len(carried), "erased_rows": erased_rows} if carried else {})}
            increment = replace(increment, rows=found.published.rows - removed_rows + rows_added, summary=summary)  # type: ignore[union-attr]
        if carried:  # the files carried from the published version, with what they hold now
            recorded = {**found.recorded, **{k: {**found.recorded[k], "rows": parsed[k][1], "rejects": parsed[k][2],
                                                 "lines_erased": parsed[k][3]} for k in carried}}
            record = ledger_rows(replace(found, recorded=recorded), parsed)
        elif not incremental:  # a full build holds exactly the files listed now: none gone before is kept
            record = ledger_rows(replace(found, recorded={}, gone=[]), parsed)
        else:
            record = ledger_rows(found, parsed) if found.ledger_changes else None
        relations = {"source_lines": checks.source_lines(line_counts, erased_lines)}
        info: dict[str, object] = {CONTRACT: contract}
        if table.name == CUSTOMER_LANDING.name:
            serials = _erased_serials(serials, found.published if incremental or carried else None, increment, staged, kept_rejects, step)
            info[erasure.ERASED_SERIALS] = sorted(serials)
            relations.update(step.erasures.with_serials(serials).relations())
        reasons = Counter(kept_rejects["reason_code"].to_pylist())
        rows_per_file = {key: counts[1] for key, counts in parsed.items()}
        return Build(
            staged,
            companion=reject_parts,
            ledger=record,
            relations=relations,
            increment=increment,
            info=info,
            metadata={
                "files": len(found.entries),
                "files_parsed": len(to_parse),
                "files_new": dg.MetadataValue.json(found.new if incremental else []),
                "files_replaced": dg.MetadataValue.json(replaced),
                "files_gone": dg.MetadataValue.json(found.gone if incremental or carried else []),
                "files_skipped": dg.MetadataValue.json(found.skipped),
                "lines_read": sum(v[0] for v in parsed.values()),
                "rows": rows_added,
                "rejects": kept_rejects.num_rows,
                "reject_reasons": dg.MetadataValue.json(dict(reasons.most_common(10))),
                "rescued_fields": dg.MetadataValue.json(rescued),
                "erased_lines": sum(erased_lines.values()),
                "erased_rows": erased_rows,
                "source": dg.MetadataValue.path(step.source.location(table.source)),
                # Pictures for the UI: a chart that fails to draw is a warning, never a failed step.
                **step.pictures.chart("rejects_by_reason", lambda: charts.rejects_by_reason(kept_rejects)),
                **step.pictures.chart("rows_per_file", lambda: charts.rows_per_file(rows_per_file, kept_rejects)),
            },
        )

    return _landing


CHUNK_BYTES = 1 << 26  # a landing file is parsed in chunks of lines of about this many bytes


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


def _after(rows: pa.Table, lines: int) -> pa.Table:
    """Rows of a chunk numbered as lines of the whole file."""
    if not lines:
        return rows
    i = rows.schema.get_field_index("source_line")
    return rows.set_column(i, rows.schema.field(i), pc.add(rows["source_line"], lines))


def _erased_serials(
    found: set[str], published: Snapshot | None, increment: Increment | None, staged: Staged, rejects: pa.Table, step: AssetStep
) -> set[str]:
    """The keyed hashes of serial numbers only erased people own: those of the customer
    records this build left out, less any a record it kept names (`leave_out` has taken those
    of the same file out already), and, building on a published version, with the ones it
    recorded, less those named by the records and rejected lines it keeps."""
    if published is None:
        return found
    serials, named = [staged.dataset().to_table(columns=["serialNumber"])["serialNumber"]], [rejects["named_serials"]]
    if increment is not None and increment.companion_base is not None:
        kept = increment.base.without(increment.removes)
        serials.append(kept.dataset().to_table(columns=["serialNumber"])["serialNumber"])
        base = increment.companion_base
        kept = base.without(increment.companion_removes)
        named.append(kept.dataset().to_table(columns=["named_serials"])["named_serials"])
    owned = {v for c in serials for v in pc.unique(c).to_pylist()} | {v for c in named for v in pc.list_flatten(c).to_pylist()}
    return (found | erasure.erased_serials(published)) - set(erasure.serial_keys(owned, step.privacy).values())


def _rescued_fields(rows) -> dict[str, int]:
    """Each field outside the contract that rows kept in rescued_data, and how many rows have
    it. A field's name is the producer's, for Dagster to show: anything e-mail-like in it masked."""
    if RESCUED_DATA.name not in rows.column_names:
        return {}
    counts: Counter[str] = Counter()
    for text in rows[RESCUED_DATA.name].drop_null().to_pylist():
        counts.update(scrub(name) for name in json.loads(text))
    return dict(counts)


def _published_rows(
    step: AssetStep, published: Snapshot, increment: Increment | None, tables: tuple[Table, Table], keys: list[str]
) -> tuple[dict, dict]:
    """The rows and rejects of `keys` (source files) in a published version (on an increment,
    read from the data files it replaces only), per file, with the columns a version written
    under an older contract lacked null, the person keys computed again and what each
    rejected line names found again in its text, as the landing step builds them."""
    wanted = pa.array(keys, pa.string())
    if increment is not None:
        assert increment.companion_base is not None
        snapshots = (published.part(increment.removes), increment.companion_base.part(increment.companion_removes))
    else:
        snapshots = (published, step.lake.companion(published, tables[1].spec))
    out = []
    for table, snapshot in zip(tables, snapshots):
        # The contract's columns (those the old files lack are null), of the wanted files only.
        data = snapshot.dataset().to_table(filter=pc.field("source_file").isin(wanted))
        if table is tables[0]:
            data = with_person_keys(data, PERSON_KEY_OF.get(table.name, {}))
        else:
            data = with_named_keys(data.drop_columns(["named_person_keys", "named_serials"]))
        data = table.conform(data)
        out.append({key: data.filter(pc.equal(data["source_file"], key)) for key in keys})
    return out[0], out[1]


def _replacing(
    step: AssetStep, found: Arrivals, rejects: Table, replaced: list[str], erased_by: tuple[str, str]
) -> tuple[Increment, list[str]]:
    """The change to the published landing table and its rejects that drops the data files
    holding rows or lines of the `replaced` source files, and the source files whose rows and
    lines are carried from the published version into new data files (not parsed again):

    - those holding a person whose erasure request the version does not apply yet: an
      erasure is a change like another, so only their data files are rewritten, without her
      rows and lines (counted as left out), and a file gone from the source keeps the rest;
    - those sharing a data file with a file dropped (a table written before one data file
      per source file)."""
    published = found.published
    assert published is not None
    rejects_base = step.lake.companion(published, rejects.spec)
    dropping, carry = set(replaced), set()
    if step.erasures and published.info.get(erasure.ERASURES_APPLIED) != step.erasures.fingerprint():
        carry = sources_naming(published, rejects_base, step.erasures, step.privacy, *erased_by) - dropping
    holding = [s.values_by_file("source_file") if dropping | carry else {} for s in (published, rejects_base)]
    while True:
        drop = [[f for f, sources in files.items() if sources & (dropping | carry)] for files in holding]
        more = set().union(*(files[f] for files, dropped in zip(holding, drop) for f in dropped)) - dropping - carry
        if not more:
            break
        carry |= more
    summary = {"files_new": len(found.new), "files_replaced": len(replaced), "files_gone": len(found.gone)}
    increment = Increment(published, published.rows, tuple(drop[0]), rejects_base, tuple(drop[1]), summary)
    return increment, sorted(carry)


customer_landing = landing_asset(
    checks.CUSTOMER_LANDING_AUDIT,
    "Every customer record of the landing zone, consenting or not, typed, with its source file and line.",
    erased_by=("person_key", erasure.EMAIL),
)
accelerometer_landing = landing_asset(
    checks.ACCELEROMETER_LANDING_AUDIT,
    "Every accelerometer reading of the landing zone (user = customer e-mail), typed, with its source file and line.",
    erased_by=("person_key", erasure.EMAIL),
)
step_trainer_landing = landing_asset(
    checks.STEP_TRAINER_LANDING_AUDIT,
    "Every step trainer reading of the landing zone (keyed by device serial number), typed, with its source file "
    "and line. It reads customer_landing for the serial numbers that only erased people owned.",
    erased_by=("serialNumber", erasure.SERIAL),
    inputs=[CUSTOMER_LANDING],
)
BY_TABLE = {a.key.to_user_string(): a for a in (customer_landing, accelerometer_landing, step_trainer_landing)}
