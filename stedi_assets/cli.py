"""The `stedi` command: query the lake, generate source data, roll a table back.

It opens the lake library directly, without Dagster (whose import alone costs seconds):
only `rollback` loads the engine resource, and with it Dagster."""

from __future__ import annotations

import functools
import io
import json
import os
from dataclasses import replace
from pathlib import Path

import click
import pyarrow as pa
import pyarrow.csv as pa_csv

from stedi_assets import erasure
from stedi_assets.generate import generate
from stedi_assets.lake.connect import open_lake
from stedi_assets.lake.ddl import lake_ddl
from stedi_assets.lake.delta import Lake
from stedi_assets.lake.errors import LakeError, TableNotPublishedError
from stedi_assets.lake.store import open_store
from stedi_assets.lakehouse import AUDITS, OWNERS, purge, query, rollback
from stedi_assets.landing.source import LandingSource
from stedi_assets.privacy import PrivacyPolicy
from stedi_assets.settings import LANDING_SOURCES, SAMPLE_SOURCE, Settings, SettingsError
from stedi_assets.tables import LAKE_TABLES, TABLES


def _settings(ctx: click.Context, param: click.Parameter, lake: str | None) -> Settings:
    """The settings, with `--lake` for STEDI_LAKE: what every command taking it receives."""
    settings = Settings.from_env()
    return replace(settings, lake=lake or settings.lake)


LAKE_OPTION = click.option("--lake", "settings", callback=_settings, help="Lake root; default: STEDI_LAKE.")


def _open(settings: Settings) -> Lake:
    return open_lake(settings.lake, settings.aws_access(), settings.glue_database)


def _privacy(settings: Settings) -> PrivacyPolicy:
    return PrivacyPolicy(settings.consent_policy, settings.subject_key, settings.retention_hours)


def _source(settings: Settings) -> LandingSource:
    return LandingSource(settings.source, dict(settings.source_prefixes), settings.aws_access(settings.source_anonymous))


def _counted(n: int, thing: str) -> str:
    return f"{n} {thing}{'' if n == 1 else 's'}"


def _tables(names) -> str:
    """The table names for a command's help, one a line (`\b`: click must not rewrap them
    and break a name mid-word)."""
    return "\b\nTables:\n" + "\n".join(f"  {name}" for name in sorted(names))


class _Commands(click.Group):
    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except SettingsError:
            raise  # a click exception: `stedi: <message>`, exit 2
        except (LakeError, ValueError) as error:  # the message says it all; a traceback adds nothing
            raise click.ClickException(str(error)) from None


@click.group(cls=_Commands)
def main() -> None:
    """STEDI lakehouse tools. Settings come from the STEDI_* environment variables.
    (The benchmarks run from the checkout: python -m bench --help.)"""


@main.command()
@click.argument("sql_query", metavar="QUERY")
@click.option("--format", "fmt", type=click.Choice(("table", "csv", "json")), default="table", show_default=True)
@LAKE_OPTION
def sql(sql_query: str, fmt: str, settings: Settings) -> None:
    """Run QUERY over the current version of the published tables it names (rejects included)."""
    click.echo(render(query(_open(settings), sql_query), fmt), nl=False)


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
    return "\n".join(lines) + f"\n({_counted(result.num_rows, 'row')})\n"


@main.command("generate")
@click.argument("out", required=False)
@click.option("--scale", type=float, default=1.0, show_default=True, help="1 = the course data's size (956 customers).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--duplicate-emails", type=int, default=0, show_default=True, help="Customers listed twice.")
@click.option("--reused-serials", type=int, default=0, show_default=True, help="Serial numbers given to two customers.")
@click.option("--dirty-lines", is_flag=True, help="Add a file with every kind of bad landing line.")
def generate_command(out: str | None, **options) -> None:
    """Write synthetic landing data to OUT (default: STEDI_SOURCE) in the source layout."""
    settings = Settings.from_env()
    target = out or settings.source
    if not target.startswith("s3://") and Path(target).resolve() == SAMPLE_SOURCE.resolve():
        raise SettingsError(
            f"generate writes to OUT, else STEDI_SOURCE, which names the bundled sample ({SAMPLE_SOURCE}): "
            "name an output folder, e.g. stedi generate generated_source"
        )
    counts = generate(open_store(target, settings.aws_access()), **options)
    click.echo(
        f"wrote {counts['customer']} customer, {counts['accelerometer']} accelerometer and "
        f"{counts['step_trainer']} step trainer records to {target}"
    )


@main.command("rollback", epilog=_tables(AUDITS))
@click.argument("table", type=click.Choice(sorted(AUDITS)), metavar="TABLE")
@click.option("--to", "to_version", type=click.IntRange(min=0), help="The version to restore; default: the one before the current.")
@click.option("--apply", is_flag=True, help="Restore it; without it, only judge it and say what would happen.")
@LAKE_OPTION
def rollback_command(table: str, to_version: int | None, apply: bool, settings: Settings) -> None:
    """Restore an earlier version of TABLE as a new commit, only if it passes the table's
    blocking rules against today's upstream tables; otherwise refuse and change nothing.
    Without --apply a dry run: the version is judged, nothing is restored."""
    from stedi_assets.engine.resource import engine_resource  # Dagster: the rules run on the chosen engine

    target, restored = rollback(_open(settings), table, engine_resource(settings), _privacy(settings), _source(settings), to_version, apply)
    click.echo(
        f"{table} would be restored to version {target.version} ({target.rows} rows); every blocking rule passed; "
        "nothing was changed: add --apply to restore it"
        if restored is None
        else f"{table} restored to version {target.version} as version {restored.version} ({restored.rows} rows); "
        "every blocking rule passed"
    )


@main.command(epilog=_tables(LAKE_TABLES))
@click.argument("table", type=click.Choice(sorted(LAKE_TABLES)), metavar="TABLE")
@LAKE_OPTION
def versions(table: str, settings: Settings) -> None:
    """List TABLE's versions, newest first: when, which run, what its audit found, and whether
    it is kept (a rollback can restore it), gone, or awaiting-purge (built before erasure
    requests the current version applies; the next run or `stedi forget --purge` deletes it)."""
    store, spec = _open(settings), LAKE_TABLES[table].spec
    history, owner = store.history(spec), OWNERS.get(table, LAKE_TABLES[table])
    restorable = functools.cache(lambda version: store.restorable(spec, version))
    awaiting = set(erasure.awaiting_purge(store, spec)) or (
        {c.version for c in history[1:] if restorable(c.version)}
        if owner is not LAKE_TABLES[table] and erasure.awaiting_purge(store, owner.spec) else set()
    )
    for commit in history:
        info = commit.info
        rules = ", ".join(f"{rule} {n}" for rule, n in info.get("rules", {}).items()) or "-"
        origin = f"restore of {info['restored_version']}, " if "restored_version" in info else ""
        kept = "current" if commit is history[0] else "awaiting-purge" if commit.version in awaiting else None
        kept = kept or ("kept" if restorable(commit.version) else "gone")
        click.echo(
            f"{commit.version:>4}  {commit.timestamp:%Y-%m-%d %H:%M:%S}  {kept:<7}  {commit.operation:<12} "
            f"{origin}run {info.get('run_id', '-')}  policy {info.get('consent_policy', '-')}  rules: {rules}"
        )


@main.command()
@click.argument("emails", nargs=-1)
@click.option("--file", "from_file", type=click.File("r"), help="One e-mail address a line ('-': standard input).")
@click.option("--purge", "purge_now", is_flag=True, help="Delete now every version awaiting the purge, as the next run would.")
@click.option(
    "--rekey",
    is_flag=True,
    help=f"Key rotation: record every request again under STEDI_SUBJECT_KEY, the old key read from "
    f"{erasure.PREVIOUS_KEY_VARIABLE} (docs/privacy.md).",
)
@click.option("--drop-unfound", is_flag=True, help="With --rekey: drop the requests whose person is found nowhere in the source.")
@LAKE_OPTION
def forget(emails: tuple[str, ...], from_file, purge_now: bool, rekey: bool, drop_unfound: bool, settings: Settings) -> None:
    """Request the erasure of each person by EMAIL: the lake records only a keyed hash of the
    address's person key, and the time. The next run of the graph removes every row of theirs
    from every table, then the earlier versions that held them (docs/privacy.md)."""
    given = [*emails, *((line.strip() for line in from_file if line.strip()) if from_file else ())]
    if given:
        new = erasure.record(_open(settings), _privacy(settings), given)
        click.echo(
            f"recorded {_counted(new, 'new erasure request')}; the next run of the graph removes "
            "every row of theirs from every table, and the earlier versions that hold them"
        )
    elif rekey:
        _rekey(settings, drop_unfound)
    elif purge_now:
        click.echo("\n".join(purge(_open(settings)) or ["no version awaits the purge"]))
    else:
        raise click.UsageError("name at least one e-mail address, or --file (or --purge)")


def _rekey(settings: Settings, drop_unfound: bool) -> None:
    old_key = os.environ.get(erasure.PREVIOUS_KEY_VARIABLE)
    if not old_key:
        raise click.UsageError(f"--rekey reads the old subject key from {erasure.PREVIOUS_KEY_VARIABLE}, which is not set")
    new = _privacy(settings)
    if old_key == new.subject_key:
        raise click.UsageError(f"{erasure.PREVIOUS_KEY_VARIABLE} is STEDI_SUBJECT_KEY: set the new key in STEDI_SUBJECT_KEY")
    source = _source(settings)
    texts = (data.to_pybytes().decode("utf-8", errors="replace") for name in LANDING_SOURCES for _, data in source.read_all(name))
    rekeyed, dropped = erasure.rekey(_open(settings), replace(new, subject_key=old_key), new, texts, drop_unfound)
    click.echo(
        f"re-keyed {_counted(rekeyed, 'erasure request')} under STEDI_SUBJECT_KEY"
        + (f"; dropped {dropped} whose person the source does not hold" if dropped else "")
        + "; now rebuild customer_landing and the tables holding subject ids with full_refresh (docs/privacy.md)"
    )


@main.command(epilog=_tables(LAKE_TABLES))
@click.argument("tables", nargs=-1, type=click.Choice(sorted(LAKE_TABLES)), metavar="[TABLES]...")
@click.option(
    "--retain-hours",
    type=click.IntRange(min=0),
    help="Keep every file a version younger than this needs; default: STEDI_RETENTION_HOURS, as every run does.",
)
@click.option("--apply", is_flag=True, help="Delete the files; without it, only list them.")
@LAKE_OPTION
def vacuum(tables: tuple[str, ...], retain_hours: int | None, apply: bool, settings: Settings) -> None:
    """List (or with --apply delete) the data files of TABLES (default: all) that no version
    younger than --retain-hours needs, and files no commit ever named."""
    store = _open(settings)
    retain_hours = settings.retention_hours if retain_hours is None else retain_hours
    for name in tables or sorted(LAKE_TABLES):
        try:
            files = store.vacuum(LAKE_TABLES[name].spec, retain_hours, apply=apply)
        except TableNotPublishedError:  # erasure_requests only exists once `stedi forget` wrote it
            click.echo(f"{name}: not in {store.uri()}, nothing to vacuum")
        except LakeError as error:
            click.echo(f"{name}: {error}")
        else:
            click.echo(f"{name}: {'deleted' if apply else 'would delete'} {_counted(len(files), 'file')}")
            for path in files:
                click.echo(f"  {path}")


@main.command()
@LAKE_OPTION
@click.option("--database", help="Athena database; default: STEDI_GLUE_DATABASE, else stedi.")
def ddl(settings: Settings, database: str | None) -> None:
    """Print Athena CREATE EXTERNAL TABLE statements for every table: Delta tables at their
    fixed locations (see lake/ddl.py)."""
    click.echo(lake_ddl(_open(settings), [t.spec for t in TABLES.values()], database or settings.glue_database or "stedi"), nl=False)


if __name__ == "__main__":
    main()
