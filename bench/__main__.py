"""`python -m bench` from the checkout: time ours, the seeds' jobs on Spark and a Dagster floor
on the same data. The harness is not part of the installed package."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import click


@click.command()
@click.option(
    "--scales",
    default="real,1,10,100",
    show_default=True,
    help="'real' (the real data) and/or generator scales, as 100 or 100x (1000x needs about 11 GB of disk).",
)
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True, help="Runs per system and scale.")
@click.option("--out", type=click.Path(file_okay=False), default="bench_results", show_default=True)
@click.option("--real", "real_source", help="The real STEDI data; default: STEDI_REFERENCE_DATA, else ../shared/data/stedi.")
@click.option(
    "--systems",
    default="ours,baseline,floor",
    show_default=True,
    help="Which of ours, cluster (ours on a Spark standalone cluster on loopback), baseline, floor to run.",
)
@click.option(
    "--data",
    type=click.Path(file_okay=False),
    help="Where generated scales are kept and reused (scale-N folders); default: <out>/data.",
)
@click.option(
    "--min-available-gb",
    type=click.FloatRange(min=0),
    default=6.0,
    show_default=True,
    help="Watchdog: kill a run when the machine's available memory drops under this (other work shares it).",
)
@click.option(
    "--incremental",
    is_flag=True,
    help="Instead: a full run, then one new accelerometer and step trainer file with 1% of the rows each, "
    "the incremental run, and the time to the ML table under dagster dev (bench/incremental.py).",
)
def bench(
    scales: str,
    runs: int,
    out: str,
    real_source: str | None,
    systems: str,
    data: str | None,
    min_available_gb: float,
    incremental: bool,
) -> None:
    """Time ours, the seeds' jobs on Spark and a Dagster floor on the same data (see bench/)."""
    # SIGTERM as Ctrl-C: the command being measured and a cluster the run started are stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    from bench.report import machine, markdown, summarize, write_report
    from bench.runner import SYSTEMS, run_benchmark

    chosen = [s.strip() for s in systems.split(",") if s.strip()]
    if unknown := set(chosen) - set(SYSTEMS):
        raise click.BadParameter(f"unknown: {', '.join(sorted(unknown))}", param_hint="--systems")
    real = Path(real_source or os.environ.get("STEDI_REFERENCE_DATA") or "../shared/data/stedi")
    host = machine()
    if incremental:
        from bench import incremental as incremental_bench

        try:
            done = incremental_bench.run_incremental_benchmark(
                [s.strip() for s in scales.split(",") if s.strip()], Path(out), real, click.echo,
                data=Path(data) if data else None,
            )
        except (FileNotFoundError, RuntimeError) as error:
            raise click.ClickException(str(error)) from None
        click.echo(incremental_bench.markdown(done))
        for kind, path in incremental_bench.write_report(done, host, Path(out).resolve()).items():
            click.echo(f"{kind}: {path}")
        return
    try:
        results = run_benchmark(
            [s.strip() for s in scales.split(",") if s.strip()], runs, Path(out), real, chosen, click.echo,
            min_available=int(min_available_gb * 2**30), data=Path(data) if data else None,
        )
    except (FileNotFoundError, RuntimeError) as error:  # no real data, or a run that failed
        raise click.ClickException(str(error)) from None
    summary = summarize(results, runs, host)
    click.echo(markdown(summary))
    for kind, path in write_report(summary, Path(out)).items():
        click.echo(f"{kind}: {path}")


if __name__ == "__main__":
    sys.exit(bench())
