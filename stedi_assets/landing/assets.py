"""Landing: the raw JSON of each source as a typed table, and a rejects table beside it."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace

import dagster as dg
import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets import charts, erasure
from stedi_assets.audit import Audit
from stedi_assets.lake.delta import Snapshot, Staged
from stedi_assets.landing import checks
from stedi_assets.landing.erased import sources_naming
from stedi_assets.landing.ingest import Ingest
from stedi_assets.landing.json_lines import MAX_DEPTH
from stedi_assets.landing.ledger import Arrivals, arrivals, ledger_rows
from stedi_assets.landing.source import JSON_SUFFIXES
from stedi_assets.publishing import AssetStep, Build, Increment, NextVersion, audited_asset
from stedi_assets.tables import CUSTOMER_LANDING, RESCUED_DATA, Table

CONTRACT = "contract"  # commit info: the columns written with (docs/ingestion.md, "Adding a column to a contract")


def landing_asset(audit: Audit, description: str, inputs: Sequence[Table] = ()) -> dg.AssetsDefinition:
    table, rejects, ledger = audit.table, audit.companion, audit.ledger
    assert rejects is not None and ledger is not None and table.erased_by is not None
    required = ", ".join(c.name for c in table.columns if c.required)
    columns = [[t.name, [[c.name, str(c.type)] for c in t.columns]] for t in (table, rejects)]
    contract = hashlib.sha256(json.dumps(columns).encode()).hexdigest()[:16]

    @audited_asset(
        audit,
        group="landing",
        kinds={"python", "delta"},
        inputs=inputs,
        description=(
            f"{description} It reads every file at any depth under its source folder whose name ends in "
            f"{'/'.join(JSON_SUFFIXES)} and does not start with `.` or `_` (any other is listed in files_skipped, "
            "with why). Lines that cannot become a row (not JSON, "
            f"nested deeper than {MAX_DEPTH} levels, NaN or infinite numbers, missing {required}, or a value of "
            f"the wrong type) go to {rejects.name} beside it, with file, line, raw text, a reason code and reason, "
            "and the person keys and serial numbers the line names. Fields outside the contract are kept in "
            f"rescued_data. Only new and changed source files are parsed ({ledger.name} records every file "
            f"ingested); the three are published together, paired by {table.name}'s commit. Lines of people "
            "whose erasure was requested are left out, and counted. How, in docs/ingestion.md."
        ),
    )
    def _landing(step: AssetStep) -> Build:
        step.pictures.prepare()  # beside the parse
        found = arrivals(step.source, step.lake, table, ledger)
        if found.skipped:
            listed = "; ".join(f"{key}: {why}" for key, why in list(found.skipped.items())[:20])
            more = f" (and {len(found.skipped) - 20} more)" if len(found.skipped) > 20 else ""
            step.context.log.warning(f"{table.source}: {len(found.skipped)} files not read: {listed}{more}")
        continuing = found.published is not None and not step.full_refresh
        upgrade = continuing and found.published.info.get(CONTRACT) != contract  # type: ignore[union-attr]
        if upgrade:
            step.context.log.warning(f"{table.name}: written under another column contract; parsing every file again")
        incremental = continuing and not upgrade
        gone = found.gone if continuing else []  # a full build holds exactly the files listed now
        to_parse = found.to_parse if incremental else list(found.entries)
        replaced = [key for key in to_parse if key in found.recorded] if incremental else []
        increment, carried = _replacing(step, found, table, rejects, replaced, upgrade) if continuing else (None, {})
        # Each source file ingested where the engine runs (landing/ingest.py: here on DuckDB, by
        # Spark's executors), its rows staged as one data file: the rules judge those, the commit adds them.
        work = Ingest(table, rejects, step.source, step.erasures, step.privacy,
                      {key: (found.recorded[key], *parts) for key, parts in carried.items()})
        engine = step.engine.engine()
        staged, done = engine.stage_each([*to_parse, *carried], work, step.lake, table.spec)
        ingested = {d.source_file: d for d in done}
        exact = [d.source_file for d in done if d.exact]
        rescued = {d.source_file: d.rescued for d in done if d.rescued}
        reject_parts = [part for d in done for part in d.rejects]
        if exact:
            step.context.log.warning(f"{table.source}: files parsed line by line (bad lines or fields outside the contract): {', '.join(exact)}")
        if rescued:
            listed = "; ".join(f"{key}: {', '.join(f'{f} ({n} rows)' for f, n in fields.items())}" for key, fields in list(rescued.items())[:20])
            step.context.log.warning(f"{table.name}: fields outside the contract, kept in {RESCUED_DATA.name}: {listed}")
        kept_rejects = rejects.whole(reject_parts)
        erased_rows = sum(found.recorded[key]["rows"] - ingested[key].rows for key in carried)
        if increment is not None:
            removed_rows = sum(found.recorded[key]["rows"] for key in [*replaced, *carried])
            summary = {**increment.summary, **({"files_carried": len(carried), "erased_rows": erased_rows} if carried else {})}
            increment = replace(increment, rows=found.published.rows - removed_rows + staged.rows, summary=summary)  # type: ignore[union-attr]
        record = ledger_rows(found, ingested, gone) if not incremental or carried or found.ledger_changes else None
        relations = {"source_lines": checks.source_lines([(d.source_file, d.lines, d.lines_erased) for d in done])}
        info: dict[str, object] = {CONTRACT: contract}
        if table.name == CUSTOMER_LANDING.name:
            left_out: set[str] = set().union(*(d.serials for d in done))
            serials = _erased_serials(left_out, found.published if incremental or carried else None, increment, staged, kept_rejects, step)
            info[erasure.ERASED_SERIALS] = sorted(serials)
            relations.update(step.erasures.with_serials(serials).relations())
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
                "files_gone": dg.MetadataValue.json(gone),
                "files_skipped": dg.MetadataValue.json(found.skipped),
                "lines_read": sum(d.lines for d in done),
                "rows": staged.rows,
                "rejects": kept_rejects.num_rows,
                "reject_reasons": dg.MetadataValue.json(dict(Counter(kept_rejects["reason_code"].to_pylist()).most_common(10))),
                "rescued_fields": dg.MetadataValue.json(rescued),
                # Where the files were ingested: this process (DuckDB) or Spark's executors.
                "ingested_in": dg.MetadataValue.json({"engine": engine.name, "files": len(done),
                                                      "processes": sorted({d.process for d in done})}),
                "erased_lines": sum(d.lines_erased for d in done),
                "erased_rows": erased_rows,
                "source": dg.MetadataValue.path(step.source.location(table.source)),
                # Pictures for the UI: a chart that fails to draw is a warning, never a failed step.
                **step.pictures.chart("rejects_by_reason", lambda: charts.rejects_by_reason(kept_rejects)),
                **step.pictures.chart("rows_per_file", lambda: charts.rows_per_file({d.source_file: d.rows for d in done}, kept_rejects)),
            },
        )

    return _landing


def _erased_serials(
    found: set[str], published: Snapshot | None, increment: Increment | None, staged: Staged, rejects: pa.Table, step: AssetStep
) -> set[str]:
    """The keyed hashes of serial numbers only erased people own: those of the customer
    records this build left out (`found`) and those the published version recorded, less
    those named by the records and rejected lines it adds, and, when `found` is not empty (a
    build applying a new request), by those it keeps of that version (they named none of
    the ones it recorded, which were cleared then)."""
    candidates = found | erasure.erased_serials(published)
    if not candidates:
        return candidates
    serials, named = [staged.dataset().to_table(columns=["serialNumber"])["serialNumber"]], [rejects["named_serials"]]
    if found and increment is not None and increment.companion is not None:
        for change, column, into in ((increment, "serialNumber", serials), (increment.companion, "named_serials", named)):
            into.append(change.base.without(change.removes).dataset().to_table(columns=[column])[column])  # type: ignore[union-attr]
    owned = {v for c in serials for v in pc.unique(c).to_pylist()} | {v for c in named for v in pc.list_flatten(c).to_pylist()}
    return candidates - set(erasure.erasure_keys(owned, step.privacy, erasure.SERIAL).values())


def _replacing(
    step: AssetStep, found: Arrivals, table: Table, rejects: Table, replaced: list[str], upgrade: bool
) -> tuple[Increment | None, dict[str, tuple[Snapshot, ...]]]:
    """The change to the published landing table and its rejects that drops the data files
    holding the `replaced` source files (None on an `upgrade`: all is written again), and the
    source files carried from the published version (not parsed again), each with the data
    files of the version and its rejects that hold it: on an upgrade, the files gone from the
    source; else those naming a person whose erasure the version does not apply yet (written
    again without her, docs/privacy.md), and those sharing a data file with a file dropped (a
    table written before one data file per source file)."""
    published = found.published
    assert published is not None
    versions = (published, step.lake.companion(published, rejects.spec))
    dropping, carry = set(replaced), set(found.gone) if upgrade else set()
    if not upgrade and step.erasures and not step.erasures.applied_by(published):
        carry = sources_naming(*versions, step.erasures, step.privacy, *table.erased_by) - dropping  # type: ignore[misc]
    holding = [s.values_by_file("source_file") if dropping | carry else {} for s in versions]
    drop: list[list[str]] = [[], []]
    while not upgrade:
        drop = [[f for f, sources in files.items() if sources & (dropping | carry)] for files in holding]
        more = set().union(*(files[f] for files, dropped in zip(holding, drop) for f in dropped)) - dropping - carry
        if not more:
            break
        carry |= more
    carried = {
        key: tuple(s.part([f for f, sources in files.items() if key in sources]) for s, files in zip(versions, holding))
        for key in sorted(carry)
    }
    summary = {"files_new": len(found.new), "files_replaced": len(replaced), "files_gone": len(found.gone)}
    rejects_change = NextVersion(rejects, None, versions[1], tuple(drop[1]))
    increment = None if upgrade else Increment(published, published.rows, tuple(drop[0]), rejects_change, summary)
    return increment, carried


customer_landing = landing_asset(
    checks.CUSTOMER_LANDING_AUDIT,
    "Every customer record of the landing zone, consenting or not, typed, with its source file and line.",
)
accelerometer_landing = landing_asset(
    checks.ACCELEROMETER_LANDING_AUDIT,
    "Every accelerometer reading of the landing zone (user = customer e-mail), typed, with its source file and line.",
)
step_trainer_landing = landing_asset(
    checks.STEP_TRAINER_LANDING_AUDIT,
    "Every step trainer reading of the landing zone (keyed by device serial number), typed, with its source file "
    "and line. It reads customer_landing for the serial numbers that only erased people owned.",
    inputs=[CUSTOMER_LANDING],
)
BY_TABLE = {a.key.to_user_string(): a for a in (customer_landing, accelerometer_landing, step_trainer_landing)}
