"""Pictures for the Dagster UI (docs/ui.md): small PNG charts embedded in Markdown metadata.

Pure functions: Arrow tables or counts in, a Markdown string holding one PNG data URI out.
Each aggregates with pyarrow first, so matplotlib draws a few dozen bars or a few thousand
points whatever the table's size, on a `Figure` with the Agg canvas (never pyplot's global
state). `Pictures` is the one place that talks to Dagster: a chart that fails to draw is a
warning, never a failed step. No label shows a direct identifier (how: docs/ui.md, `reason_kind`).
"""

from __future__ import annotations

import base64
import functools
import importlib
import io
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import dagster as dg
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stedi_assets.privacy import scrub

if TYPE_CHECKING:
    import logging

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

DPI = 90
# Figure sizes in inches; in pixels they are inches x DPI (e.g. 6 x 3 in -> 540 x 270 px).
SMALL = (6.0, 3.0)
SHARE = (6.0, 1.8)
SIGNALS = (7.2, 4.0)

SUBJECT_PREFIX = 8  # hex digits of subject_id shown in a label: enough to find, not to link
MAX_BARS = 12  # bars in one chart; the rest are added up into one "others" bar
MAX_POINTS = 2_000  # points per line in a time series
SIGNAL_SUBJECTS = 3
# Titles just above the axes, where matplotlib would place them on a chart without an offset text (`1e6`;
# the signals' distances are written in full), without measuring every tick label at each draw (a seventh of a chart's time).
TITLE_Y = 1.0

_BLUE, _RED, _GREY, _GREEN = "#4c72b0", "#c44e52", "#b0b0b0", "#55a868"
_XYZ_COLOURS = {"x": "#4c72b0", "y": "#dd8452", "z": "#55a868"}
_TYPED_VALUE = re.compile(r"^(?P<column>\w+) has (?P<type>\w+) value .*, expected (?P<expected>\w+)$", re.S)
_AT_COLUMN = re.compile(r" at column \d+$")
T = TypeVar("T")


@dataclass
class Pictures:
    """Draws one step's pictures into its metadata, each `guarded`; the time they all took adds
    up in `seconds`, which the step logs when it commits (`stedi bench` reads it there).

    >>> import logging
    >>> pictures = Pictures(logging.getLogger("stedi"))
    >>> pictures.chart("broken", lambda: 1 / 0)
    {}
    >>> pictures.seconds >= 0.0
    True
    """

    log: logging.Logger | dg.DagsterLogManager
    seconds: float = 0.0

    def prepare(self) -> None:
        """Starts importing matplotlib, for a step that will draw to call before its build: the import
        then overlaps the build (docs/benchmarks.md); a step that draws nothing never imports it."""
        _matplotlib()

    def chart(self, name: str, draw: Callable[[], str]) -> dict[str, dg.MetadataValue]:
        """`{name: Markdown metadata}` holding the chart that `draw()` returns, or `{}`."""
        markdown = self.guarded(f"chart {name}", draw)
        return {} if markdown is None else {name: dg.MetadataValue.md(markdown)}

    def guarded(self, what: str, compute: Callable[[], T]) -> T | None:
        """`compute()` (a chart, or the numbers behind one), or None and a warning naming `what`."""
        start = time.perf_counter()
        try:
            return compute()
        except Exception as error:  # noqa: BLE001 - any failure only leaves a picture out
            self.log.warning(f"{what} left out of the metadata: {type(error).__name__}: {error}")
            return None
        finally:
            self.seconds += time.perf_counter() - start


# -- landing ----------------------------------------------------------------------------------
def rejects_by_reason(rejects: pa.Table) -> str:
    """Bars: how many landing lines were rejected for each kind of reason."""
    labels, [values] = _bars("other reasons", Counter(reason_kind(r) for r in rejects["reason"].to_pylist()))
    title = f"Rejects by reason ({rejects.num_rows:,} lines)"
    return _hbar_chart(title, "no rejected lines", "rejected lines", labels, values, _RED)


def rows_per_file(rows: Mapping[str, int], rejects: pa.Table | None = None) -> str:
    """Stacked bars: the rows (and rejected lines) that each landing file gave, the largest
    files first. `rows`: the count per file (what a build that staged them knows)."""
    good = Counter({f: n for f, n in rows.items() if n})
    bad = Counter(rejects["source_file"].to_pylist()) if rejects is not None else Counter()  # rejects are few
    labels, (values, rejected) = _bars("other files", good, bad, label=_file_label)
    title = f"Rows per source file ({len(good | bad):,} files, {sum(good.values()):,} rows)"
    xlabel = "rows" + (" (red: rejected lines)" if any(rejected) else "")
    return _hbar_chart(title, "no files", xlabel, labels, values, _BLUE, rejected)


# -- curated ----------------------------------------------------------------------------------
def privacy_funnel(stages: Sequence[tuple[str, int]]) -> str:
    """Bars, top to bottom: how many customers are left at each stage, each with its number
    and its share of the first stage; "what (table)" on two lines."""
    labels = [_safe_label(label, width=60) for label, _ in stages]
    values = [int(n) for _, n in stages]
    first = values[0] if values and values[0] else 1
    caption = " → ".join(f"**{v:,}** {label}" for label, v in zip(labels, values))
    return _hbar_chart(
        "Privacy funnel: customers at each stage", "no stages", "customers", [label.replace(" (", "\n(") for label in labels],
        values, [_BLUE] * (len(values) - 1) + [_GREEN], notes=[f"{v:,} ({v / first:.0%})" for v in values], caption=caption,
    )


def readings_per_subject(counts: pa.Table) -> str:
    """Histogram: how many subjects have how many readings in the ML table (`counts`: subject_id, readings)."""
    readings = counts["readings"].to_numpy()
    median = f", median {float(np.median(readings)):,.0f}" if readings.size else ""
    fig, ax = _axes(SMALL, f"Readings per subject ({readings.size:,} subjects{median})", "readings (rows of the ML table)")
    if readings.size == 0:
        return _empty(fig, "no subjects")
    # One filled outline, not a rectangle per bin: the same picture, a third of the artists.
    ax.hist(readings, bins=int(min(30, readings.max() - readings.min() + 1)), color=_BLUE, histtype="stepfilled")
    ax.set_ylabel("subjects", fontsize=8)
    fig.subplots_adjust(left=0.1)
    return _markdown(fig, "readings per subject")


def subject_signals(step_and_accel: pa.Table, subjects: Sequence[str]) -> str:
    """For the first SIGNAL_SUBJECTS subjects, one column each: the step trainer distance above,
    the accelerometer x, y and z below, in seconds since the subject's first reading."""
    subjects = list(subjects)[:SIGNAL_SUBJECTS]
    if not subjects:
        return _empty(_axes(SIGNALS, "Step trainer distance and accelerometer x, y, z")[0], "no subjects")
    chosen = step_and_accel.filter(pc.is_in(step_and_accel["subject_id"], pa.array(subjects, pa.string())))
    fig = _figure(SIGNALS)
    from matplotlib.ticker import MaxNLocator  # after _figure: once matplotlib's import is done

    fig.subplots_adjust(left=0.09, right=0.99, bottom=0.11, top=0.86, wspace=0.08, hspace=0.12)
    axes = fig.subplots(2, len(subjects), sharex="col", sharey="row", squeeze=False)
    for column, subject in enumerate(subjects):
        rows = chosen.filter(pc.equal(chosen["subject_id"], subject)).sort_by("sensorReadingTime")
        top, bottom = axes[0][column], axes[1][column]
        start = rows["sensorReadingTime"][0].as_py() if rows.num_rows else 0
        seconds = (rows["sensorReadingTime"].to_numpy() - start) / 1000.0
        step = _thin(len(seconds))
        # Several accelerometer rows can share one step trainer reading: one distance per time.
        distance_t, first = np.unique(seconds, return_index=True)
        distance = rows["distanceFromObject"].to_numpy(zero_copy_only=False)[first]
        thin = _thin(len(distance_t))
        top.step(distance_t[thin], distance[thin], where="post", color=_GREY, lw=1)
        for axis, colour in _XYZ_COLOURS.items():
            values = rows[axis].to_numpy(zero_copy_only=False)
            bottom.plot(seconds[step], values[step], lw=0.8, color=colour, label=axis)
        top.set_title(f"subject {subject[:SUBJECT_PREFIX]}…", fontsize=8, y=TITLE_Y)
        top.ticklabel_format(axis="y", style="plain", useOffset=False)
        bottom.set_xlabel("seconds", fontsize=8)
        for ax in (top, bottom):
            _tidy(ax)
            # Few ticks: each tick label is a text to lay out and draw, most of this chart's cost.
            ax.yaxis.set_major_locator(MaxNLocator(4))
        bottom.xaxis.set_major_locator(MaxNLocator(4, integer=True))
    axes[0][0].set_ylabel("distance", fontsize=8)
    axes[1][0].set_ylabel("acceleration", fontsize=8)
    fig.legend(*axes[1][0].get_legend_handles_labels(), loc="upper right", ncols=3, fontsize=7, frameon=False)
    fig.suptitle("Step trainer distance and accelerometer x, y, z", x=0.01, y=0.98, ha="left", fontsize=10)
    return _markdown(fig, "subject signals")


def step_trainer_matches(matched: int, total: int) -> str:
    """One bar: the share of step trainer readings that found an accelerometer reading of the
    same customer at the same time (the rows the ML table is made of)."""
    title = f"Step trainer readings matched at the same time: {matched:,} of {total:,}"
    fig, ax = _axes(SHARE, title, "step trainer readings", fontsize=9)
    if total <= 0:
        return _empty(fig, "no step trainer readings")
    share = f"{matched / total:.1%}"
    ax.barh([0], [matched], color=_GREEN, label="with an accelerometer reading")
    ax.barh([0], [total - matched], left=[matched], color=_GREY, label="without")
    ax.text(matched / 2, 0, f"{matched:,} ({share})", ha="center", va="center", fontsize=8, color="white")
    ax.set_xlim(0, total)
    ax.set_yticks([])
    fig.legend(loc="lower center", ncols=2, fontsize=7, frameon=False)
    fig.subplots_adjust(left=0.02, top=0.8, bottom=0.42)
    caption = f"**{matched:,}** of **{total:,}** step trainer readings ({share}) found an accelerometer reading at the same time"
    return _markdown(fig, "step trainer readings matched", caption)


# -- labels -----------------------------------------------------------------------------------
def reason_kind(reason: str | None) -> str:
    """A reject reason without the rejected value: `phone has int value 8015551212, expected
    string` is `phone has int value, expected string`; `not JSON: ... at column 17` loses
    the column. Then anything that looks like an e-mail is masked."""
    if reason is None:
        return "no reason"
    typed = _TYPED_VALUE.match(reason)
    if typed:
        reason = f"{typed['column']} has {typed['type']} value, expected {typed['expected']}"
    return _safe_label(_AT_COLUMN.sub("", reason))


def _safe_label(text: str, width: int = 48) -> str:
    masked = scrub(text)
    return masked if len(masked) <= width else masked[: width - 1] + "…"


def _file_label(path: str, width: int = 34) -> str:
    name = _safe_label(str(path).rsplit("/", 1)[-1], width=10_000)
    return name if len(name) <= width else name[: width // 2 - 1] + "…" + name[-(width // 2) :]


# -- drawing helpers --------------------------------------------------------------------------
@functools.cache
def _matplotlib() -> threading.Thread:
    """matplotlib imported in a thread of its own, started once per process (Pictures.prepare,
    or the first chart): the import takes about 0.35 s of CPU, a tenth of a run's pictures at 100x."""

    def load() -> None:
        try:
            for module in ("matplotlib.backends.backend_agg", "matplotlib.figure", "matplotlib.ticker"):
                importlib.import_module(module)
        except Exception:  # noqa: BLE001, S110 - the chart's own import then fails, as a warning
            pass

    thread = threading.Thread(target=load, name="import matplotlib", daemon=True)
    thread.start()
    return thread


def _figure(size: tuple[float, float]) -> Figure:
    """A figure on the Agg canvas, laid out by hand: matplotlib's constrained layout would fit
    the labels for us but costs a third of a chart's time, and every chart is drawn each run."""
    _matplotlib().join()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=DPI)
    fig.subplots_adjust(left=0.08, right=0.97, top=0.88, bottom=0.17)
    FigureCanvasAgg(fig)
    return fig


def _axes(size: tuple[float, float], title: str, xlabel: str = "", fontsize: int = 10) -> tuple[Figure, Axes]:
    """A figure of one titled axes, in the charts' one style."""
    fig = _figure(size)
    ax = fig.add_subplot()
    ax.set_title(title, loc="left", fontsize=fontsize, y=TITLE_Y)
    ax.set_xlabel(xlabel, fontsize=8)
    _tidy(ax)
    return fig, ax


def _markdown(fig: Figure, alt: str, caption: str | None = None) -> str:
    """The figure as a PNG of exactly size x DPI pixels (no "Software" text chunk: pixels only), in
    a Markdown image, with the numbers it shows as a line of text under it when they matter alone."""
    buffer = io.BytesIO()
    fig.canvas.print_png(buffer, metadata={"Software": None})
    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    image = f"![{alt}](data:image/png;base64,{encoded})"
    return image if caption is None else f"{image}\n\n{caption}"


def _hbar_chart(
    title: str, empty: str, xlabel: str, labels: Sequence[str], values: Sequence[int], colour: str | Sequence[str],
    rejected: Sequence[int] = (), notes: Sequence[str] = (), caption: str | None = None,
) -> str:
    """Horizontal bars, the first on top, each with its note at its end (by default its
    number); `rejected` adds a red segment to each bar, and its number to the note. The labels
    are texts left of the axes, not tick labels: a tick is five artists that matplotlib creates,
    measures twice and draws (a tenth of a 12-bar chart's time)."""
    fig, ax = _axes(SMALL, title, xlabel)
    if not values:
        return _empty(fig, empty)
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import ScaledTranslation

    extra = list(rejected) or [0] * len(values)
    ax.barh(range(len(values)), values, color=colour)
    if any(extra):
        ax.barh(range(len(values)), extra, left=values, color=_RED)
    notes = notes or [f"{v:,}" + (f" + {e:,} rejected" if e else "") for v, e in zip(values, extra)]
    top = max(v + e for v, e in zip(values, extra)) or 1
    for y, (v, e, note) in enumerate(zip(values, extra, notes)):
        ax.text(v + e + top * 0.01, y, note, va="center", fontsize=7)
    ax.set_yticks([])
    # 7 pt left of the axis, where a tick label would be (3.5 pt tick, 3.5 pt pad).
    at = ax.get_yaxis_transform() + ScaledTranslation(-7 / 72, 0, fig.dpi_scale_trans)
    for y, label in enumerate(labels):
        ax.text(0, y, label, transform=at, ha="right", va="center", fontsize=7)
    # Room on the left for the longest line (7 pt: at most 5.5 px a character).
    longest = max((len(line) for label in labels for line in label.split("\n")), default=0)
    fig.subplots_adjust(left=min(0.55, (longest * 5.5 + 10) / (fig.get_figwidth() * DPI)))
    ax.invert_yaxis()
    ax.set_xlim(0, top * (1.3 if any(extra) else 1.25))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 2.5, 5, 10]))
    return _markdown(fig, title.split(" (")[0].lower(), caption)  # alt: the title without its numbers


def _empty(fig: Figure, message: str) -> str:
    """The figure's one axes holding `message` instead of a chart."""
    ax = fig.axes[0]
    ax.text(0.5, 0.5, message, ha="center", va="center", fontsize=11, color="#555555", transform=ax.transAxes)
    ax.set_axis_off()
    return _markdown(fig, ax.get_title().split(" (")[0].lower())


def _tidy(ax: Axes) -> None:
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=7)


def _bars(others: str, *counts: Counter[str], label: Callable[[str], str] = str) -> tuple[list[str], list[list[int]]]:
    """Bars over the keys of `counts`, the largest total first, ties by key; beyond MAX_BARS, the
    smallest are added up into one bar `<n> <others>`: each bar's label, and each count per bar."""
    totals = sum(counts, Counter())
    ordered = sorted(totals, key=lambda k: (-totals[k], str(k)))
    groups = [[k] for k in ordered[: MAX_BARS - 1]] + ([ordered[MAX_BARS - 1 :]] if ordered[MAX_BARS - 1 :] else [])
    labels = [label(group[0]) if len(group) == 1 else f"{len(group):,} {others}" for group in groups]
    return labels, [[sum(count[k] for k in group) for group in groups] for count in counts]


def _thin(length: int) -> slice:
    return slice(None, None, max(1, -(-length // MAX_POINTS)))
