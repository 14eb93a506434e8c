"""The `stedi` command: query the lake, generate source data, roll a table back."""

from __future__ import annotations

import io
import json
import os
import sys
from dataclasses import replace
from pathlib import Path

import click
import pyarrow as pa
import pyarrow.csv as pa_csv

from stedi_assets import erasure
from stedi_assets.definitions import aws_access, engine_resource, lake_resource
from stedi_assets.generate import GenerateOptions, generate
from stedi_assets.lake.ddl import lake_ddl
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.errors import LakeError
from stedi_assets.lake.legacy import migrate_lake
from stedi_assets.lake.store import open_store
from stedi_assets.lakehouse import AUDITS, query, refusal, rollback
from stedi_assets.landing.source import LandingSource
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import Settings
from stedi_assets.tables import LAKE_TABLES, TABLES

FORMATS = ("table", "csv", "json")
LAKE_OPTION = click.option("--lake", help="Lake root; default: STEDI_LAKE.")


def _settings(lake: str | None = None) -> Settings:
    settings = Settings.from_env()
    return replace(settings, lake=lake or settings.lake)


def _lake(lake: str | None) -> Lake:
    return lake_resource(_settings(lake)).lake()


def _privacy(settings: Settings) -> PrivacyPolicy:
    """The privacy settings with the subject key itself: outside Dagster no EnvVar resolves it."""
    return PrivacyPolicy(
        consent_policy=settings.consent_policy, subject_key=settings.subject_key, retention_hours=settings.retention_hours
    )


class _Commands(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (LakeError, ValueError) as error:  # the message says it all; a traceback adds nothing
            raise click.ClickException(str(error)) from None


@click.group(cls=_Commands)
def main() -> None:
    """STEDI lakehouse tools. Settings come from the STEDI_* environment variables."""


@main.command()
@click.argument("sql_query", metavar="QUERY")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@LAKE_OPTION
def sql(sql_query: str, fmt: str, lake: str | None) -> None:
    """Run QUERY over the current version of the published tables it names (rejects included)."""
    click.echo(render(query(_lake(lake), sql_query), fmt), nl=False)


def render(result: pa.Table, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result.to_pylist(), default=str) + "\n"
    if fmt == "csv":
        out = io.BytesIO()
        pa_csv.write_csv(result, out)
        return out.getvalue().decode()
    cells = [result.column_names] + [["NULL" if v is None else str(v) for v in row.values()] for row in result.to_pylist()]
    widths = [max(len(r[i]) for r in cells) for i in range(len(result.column_names))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines) + f"\n({result.num_rows} row{'s' if result.num_rows != 1 else ''})\n"


@main.command("generate")
@click.argument("out", required=False)
@click.option("--scale", type=float, default=1.0, show_default=True, help="1 = the course data's size (956 customers).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--duplicate-emails", type=int, default=0, show_default=True, help="Customers listed twice.")
@click.option("--reused-serials", type=int, default=0, show_default=True, help="Serial numbers given to two customers.")
@click.option("--dirty-lines", is_flag=True, help="Add a file with every kind of bad landing line.")
def generate_command(
    out: str | None, scale: float, seed: int, duplicate_emails: int, reused_serials: int, dirty_lines: bool
) -> None:
    """Write synthetic landing data to OUT (default: STEDI_SOURCE) in the source layout."""
    settings = Settings.from_env()
    target = out or settings.source
    options = GenerateOptions(
        scale=scale, seed=seed, duplicate_emails=duplicate_emails, reused_serials=reused_serials, dirty_lines=dirty_lines
    )
    counts = generate(open_store(target, aws_access(settings)), options)
    click.echo(
        f"wrote {counts.customer} customer, {counts.accelerometer} accelerometer and "
        f"{counts.step_trainer} step trainer records to {target}"
    )


@main.command("rollback")
@click.argument("table", type=click.Choice(sorted(AUDITS)))
@click.option("--to", "to_version", type=click.IntRange(min=0), help="The version to restore; default: the one before the current.")
@LAKE_OPTION
def rollback_command(table: str, to_version: int | None, lake: str | None) -> None:
    """Restore an earlier version of TABLE as a new commit, only if it passes the table's
    blocking rules against today's upstream tables; otherwise refuse and change nothing."""
    settings = _settings(lake)
    privacy = _privacy(settings)
    source = LandingSource(root=settings.source, prefixes=dict(settings.source_prefixes), aws=aws_access(settings, settings.source_anonymous))
    result = rollback(lake_resource(settings).lake(), table, engine_resource(settings), privacy, source, to_version)
    if result.refused:
        raise click.ClickException(refusal(result))
    assert result.restored is not None
    click.echo(
        f"{table} restored to version {result.target.version} as version {result.restored.version} "
        f"({result.restored.rows} rows); every blocking rule passed"
    )


@main.command()
@click.argument("table", type=click.Choice(sorted(LAKE_TABLES)))
@LAKE_OPTION
def versions(table: str, lake: str | None) -> None:
    """List TABLE's versions, newest first: when, which run, what its audit found, and
    whether it is still kept (its files are there, so a rollback can restore it)."""
    store, spec = _lake(lake), LAKE_TABLES[table].spec
    history = store.history(spec)
    for commit in history:
        info = commit.info
        rules = ", ".join(f"{rule} {n}" for rule, n in info.get("rules", {}).items()) or "-"
        origin = f"restore of {info['restored_version']}, " if "restored_version" in info else ""
        kept = "current" if commit is history[0] else "kept" if store.restorable(spec, commit.version) else "gone"
        click.echo(
            f"{commit.version:>4}  {commit.timestamp:%Y-%m-%d %H:%M:%S}  {kept:<7}  {commit.operation:<12} "
            f"{origin}run {info.get('run_id', '-')}  policy {info.get('consent_policy', '-')}  rules: {rules}"
        )


@main.command()
@click.argument("emails", nargs=-1)
@click.option("--file", "from_file", type=click.File("r"), help="One e-mail address a line ('-': standard input).")
@LAKE_OPTION
def forget(emails: tuple[str, ...], from_file, lake: str | None) -> None:
    """Request the erasure of each person by EMAIL: the lake records only their erasure key
    (a keyed hash of the address's person key, stedi_assets/person.py) and the time; an
    empty or non-e-mail argument records nothing. The next run of the graph removes every
    row of theirs from every table and the earlier versions that held them (see erasure.py)."""
    given = [*emails, *((line.strip() for line in from_file if line.strip()) if from_file else ())]
    if not given:
        raise click.UsageError("name at least one e-mail address, or --file")
    for email in given:
        if (why := erasure.refused(email)) is not None:
            raise click.ClickException(f"nothing recorded: {why}")
    settings = _settings(lake)
    new = erasure.record(lake_resource(settings).lake(), _privacy(settings), given)
    click.echo(
        f"recorded {new} new erasure request{'s' if new != 1 else ''}; the next run of the graph removes "
        "every row of theirs from every table, and the earlier versions that hold them"
    )


@main.command()
@click.argument("tables", nargs=-1, type=click.Choice(sorted(LAKE_TABLES)))
@click.option("--retain-hours", type=click.IntRange(min=0), default=168, show_default=True, help="Keep every file a version younger than this needs.")
@click.option("--apply", is_flag=True, help="Delete the files; without it, only list them.")
@LAKE_OPTION
def vacuum(tables: tuple[str, ...], retain_hours: int, apply: bool, lake: str | None) -> None:
    """List (or with --apply delete) the data files of TABLES (default: all) that no version
    younger than --retain-hours needs, and files no commit ever named."""
    store = _lake(lake)
    for name in tables or sorted(LAKE_TABLES):
        try:
            files = store.vacuum(LAKE_TABLES[name].spec, retain_hours, apply=apply)
        except LakeError as error:
            click.echo(f"{name}: {error}")
            continue
        verb = "deleted" if apply else "would delete"
        click.echo(f"{name}: {verb} {len(files)} file{'s' if len(files) != 1 else ''}")
        for path in files:
            click.echo(f"  {path}")


@main.command()
@LAKE_OPTION
@click.option("--database", help="Athena database; default: STEDI_GLUE_DATABASE, else stedi.")
def ddl(lake: str | None, database: str | None) -> None:
    """Print Athena CREATE EXTERNAL TABLE statements for every table: Delta tables at their
    fixed locations (see lake/ddl.py)."""
    specs = [t.spec for t in TABLES.values()]
    click.echo(lake_ddl(_lake(lake), specs, database or Settings.from_env().glue_database or "stedi"), nl=False)


@main.command()
@click.option("--apply", is_flag=True, help="Convert; without it, only say what would be converted.")
@LAKE_OPTION
def migrate(apply: bool, lake: str | None) -> None:
    """Convert a lake written by the versioned-Parquet layout: each table's current version
    becomes its first Delta version, and the old version folders are deleted."""
    for line in migrate_lake(_lake(lake), [t.spec for t in TABLES.values()], apply=apply):
        click.echo(line)


@main.command()
@click.option("--scales", default="real,1,10,100", show_default=True, help="'real' (the real data) and/or generator scales.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True, help="Runs per system and scale.")
@click.option("--out", type=click.Path(file_okay=False), default="bench_results", show_default=True)
@click.option("--real", "real_source", help="The real STEDI data; default: STEDI_REFERENCE_DATA, else ../shared/data/stedi.")
@click.option("--systems", default="ours,baseline,floor", show_default=True, help="Which of ours, baseline, floor to run.")
@click.option(
    "--incremental",
    is_flag=True,
    help="Instead: a full run, then one new accelerometer and step trainer file with 1% of the rows each, "
    "the incremental run, and the time to the ML table under dagster dev (bench/incremental.py).",
)
def bench(scales: str, runs: int, out: str, real_source: str | None, systems: str, incremental: bool) -> None:
    """Time ours, the seeds' jobs on Spark and a Dagster floor on the same data (see bench/)."""
    # Imported here: the other commands need neither the runner nor matplotlib.
    from stedi_assets.bench.report import machine, markdown, summarize, write_report
    from stedi_assets.bench.runner import SYSTEMS, run_benchmark

    chosen = [s.strip() for s in systems.split(",") if s.strip()]
    if unknown := set(chosen) - set(SYSTEMS):
        raise click.BadParameter(f"unknown: {', '.join(sorted(unknown))}", param_hint="--systems")
    real = Path(real_source or os.environ.get("STEDI_REFERENCE_DATA") or "../shared/data/stedi")
    host = machine()
    if incremental:
        from stedi_assets.bench import incremental as incremental_bench

        try:
            done = incremental_bench.run_incremental_benchmark(
                [s.strip() for s in scales.split(",") if s.strip()], Path(out), real, click.echo
            )
        except (FileNotFoundError, RuntimeError) as error:
            raise click.ClickException(str(error)) from None
        click.echo(incremental_bench.markdown(done))
        for kind, path in incremental_bench.write_report(done, host, Path(out).resolve()).items():
            click.echo(f"{kind}: {path}")
        return
    try:
        results = run_benchmark([s.strip() for s in scales.split(",") if s.strip()], runs, Path(out), real, chosen, click.echo)
    except (FileNotFoundError, RuntimeError) as error:  # no real data, or a run that failed
        raise click.ClickException(str(error)) from None
    summary = summarize(results, runs, host)
    click.echo(markdown(summary))
    for kind, path in write_report(summary, Path(out)).items():
        click.echo(f"{kind}: {path}")


if __name__ == "__main__":
    sys.exit(main())
