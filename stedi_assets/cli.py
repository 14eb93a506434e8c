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

from stedi_assets.engine.duckdb_engine import DuckDBEngine
from stedi_assets.generate import GenerateOptions, generate
from stedi_assets.lake.aws import AwsAccess, AwsRequestError
from stedi_assets.lake.ddl import lake_ddl
from stedi_assets.lake.lake import Lake, TableNotPublishedError
from stedi_assets.lake.resource import LakeResource
from stedi_assets.lake.store import open_store
from stedi_assets.settings import Settings
from stedi_assets.tables import TABLES

FORMATS = ("table", "csv", "json")


def _lake(lake: str | None) -> Lake:
    settings = Settings.from_env()
    return LakeResource.from_settings(replace(settings, lake=lake or settings.lake)).lake()


class _Commands(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except (AwsRequestError, TableNotPublishedError) as error:  # the message says it all; a traceback adds nothing
            raise click.ClickException(str(error)) from None


@click.group(cls=_Commands)
def main() -> None:
    """STEDI lakehouse tools. Settings come from the STEDI_* environment variables."""


@main.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True)
@click.option("--lake", help="Lake root; default: STEDI_LAKE.")
def sql(query: str, fmt: str, lake: str | None) -> None:
    """Run QUERY over the current version of every published table (rejects included)."""
    tables = _lake(lake).published_tables()
    if not tables:
        raise click.ClickException(f"no published tables in {_lake(lake).uri()}: materialize the assets first")
    try:
        result = DuckDBEngine().query(query, tables)
    except Exception as error:  # DuckDB's own message names the problem
        raise click.ClickException(str(error)) from None
    click.echo(render(result, fmt), nl=False)


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
    counts = generate(open_store(target, AwsAccess.from_settings(settings)), options)
    click.echo(
        f"wrote {counts.customer} customer, {counts.accelerometer} accelerometer and "
        f"{counts.step_trainer} step trainer records to {target}"
    )


@main.command()
@click.argument("table", type=click.Choice(sorted(TABLES)))
@click.option("--lake", help="Lake root; default: STEDI_LAKE.")
def rollback(table: str, lake: str | None) -> None:
    """Point TABLE back at its previous published version."""
    current = _lake(lake).rollback(TABLES[table])
    click.echo(f"{table} now at version {current.version} ({current.rows} rows)")


@main.command()
@click.argument("table", type=click.Choice(sorted(TABLES)))
@click.option("--lake", help="Lake root; default: STEDI_LAKE.")
def versions(table: str, lake: str | None) -> None:
    """List TABLE's published versions, current first."""
    for entry in _lake(lake).history(TABLES[table]):
        click.echo(f"{entry['version']}  {entry['rows']:>10} rows  published {entry['published_at']}")


@main.command()
@click.option("--lake", help="Lake root, usually s3://bucket/prefix; default: STEDI_LAKE.")
@click.option("--database", help="Athena database; default: STEDI_GLUE_DATABASE, else stedi.")
def ddl(lake: str | None, database: str | None) -> None:
    """Print Athena CREATE EXTERNAL TABLE statements for every table, from the column
    contracts, each at the folder of its published version (see lake/ddl.py)."""
    click.echo(lake_ddl(_lake(lake), database or Settings.from_env().glue_database or "stedi"), nl=False)


@main.command()
@click.option("--scales", default="real,1,10,100", show_default=True, help="'real' (the real data) and/or generator scales.")
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True, help="Runs per system and scale.")
@click.option("--out", type=click.Path(file_okay=False), default="bench_results", show_default=True)
@click.option("--real", "real_source", help="The real STEDI data; default: STEDI_REFERENCE_DATA, else ../shared/data/stedi.")
@click.option("--systems", default="ours,baseline,floor", show_default=True, help="Which of ours, baseline, floor to run.")
def bench(scales: str, runs: int, out: str, real_source: str | None, systems: str) -> None:
    """Time ours, the seeds' jobs on Spark and a Dagster floor on the same data (see bench/)."""
    # Imported here: the other commands need neither the runner nor matplotlib.
    from stedi_assets.bench.report import machine, markdown, summarize, write_report
    from stedi_assets.bench.runner import SYSTEMS, run_benchmark

    chosen = [s.strip() for s in systems.split(",") if s.strip()]
    if unknown := set(chosen) - set(SYSTEMS):
        raise click.BadParameter(f"unknown: {', '.join(sorted(unknown))}", param_hint="--systems")
    real = Path(real_source or os.environ.get("STEDI_REFERENCE_DATA") or "../shared/data/stedi")
    host = machine()
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
