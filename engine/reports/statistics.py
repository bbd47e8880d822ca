"""HTML summaries of per-segment and zonal statistics: counts, and per statistic its
range, mean and histogram.

The per-segment summary reads the columns back from the RAT that was written
(block by block, two passes: range, then histogram), so it describes what is
stored; rows of the null id and missing values (the missing value, NaN) are
left out.
"""

import math
from dataclasses import dataclass

import numpy as np

from .html import HtmlReport, new_figure, number

#: Bins of every histogram.
BINS = 30
#: Histograms drawn at most (one small plot each).
MAX_HISTOGRAMS = 24


@dataclass
class ColumnSummary:
    """One statistic over the segments or zones that have a value."""

    name: str
    count: int
    minimum: float
    maximum: float
    mean: float
    histogram: np.ndarray
    edges: np.ndarray


def summarize(columns, blocks, missing_value=None):
    """:class:`ColumnSummary` s of ``columns``; ``blocks()`` yields dicts name -> values
    (called twice)."""
    counts = dict.fromkeys(columns, 0)
    sums = dict.fromkeys(columns, 0.0)
    lows = dict.fromkeys(columns, math.inf)
    highs = dict.fromkeys(columns, -math.inf)
    for block in blocks():
        for name in columns:
            values = _valid(block[name], missing_value)
            if values.size:
                counts[name] += int(values.size)
                sums[name] += float(values.sum())
                lows[name] = min(lows[name], float(values.min()))
                highs[name] = max(highs[name], float(values.max()))
    edges = {}
    histograms = {}
    for name in columns:
        low, high = (lows[name], highs[name]) if counts[name] else (0.0, 1.0)
        edges[name] = np.linspace(low, high if high > low else low + 1.0, BINS + 1)
        histograms[name] = np.zeros(BINS, np.int64)
    for block in blocks():
        for name in columns:
            values = _valid(block[name], missing_value)
            histograms[name] += np.histogram(values, edges[name])[0]
    return [ColumnSummary(name, counts[name], lows[name] if counts[name] else math.nan,
                          highs[name] if counts[name] else math.nan,
                          sums[name] / counts[name] if counts[name] else math.nan,
                          histograms[name], edges[name]) for name in columns]


def _valid(values, missing_value):
    values = np.asarray(values, np.float64)
    keep = np.isfinite(values)
    if missing_value is not None and not math.isnan(float(missing_value)):
        keep &= values != missing_value
    return values[keep]


def write_summary_report(path, title, facts, summaries, unit="segments"):
    """Write the report: ``facts`` (label, value) pairs, then one table row and one
    histogram per :class:`ColumnSummary`."""
    report = HtmlReport(title)
    report.table(["", "Value"], [[label, value] for label, value in facts], table_id="facts")
    report.heading("Statistics")
    report.paragraph(f"Over the {unit} that have a value (missing values and NaN left out).")
    report.table(["Statistic", f"{unit.capitalize()} with a value", "Minimum", "Mean",
                  "Maximum"],
                 [[s.name, s.count, number(s.minimum), number(s.mean), number(s.maximum)]
                  for s in summaries], table_id="statistics")
    shown = [s for s in summaries if s.count][:MAX_HISTOGRAMS]
    if shown:
        report.heading("Histograms")
        columns = min(3, len(shown))
        rows = math.ceil(len(shown) / columns)
        figure = new_figure(3.3 * columns, 2.5 * rows)
        for index, summary in enumerate(shown):
            axes = figure.add_subplot(rows, columns, index + 1)
            axes.stairs(summary.histogram, summary.edges, fill=True, color="#3b75af")
            axes.set_title(summary.name, fontsize="small")
            axes.tick_params(labelsize="x-small")
        figure.tight_layout()
        report.figure(figure, "Histograms of the statistics")
    return report.write(path)


def segment_stats_report(path, rat_target, columns, segment_count, null_id=0,
                         missing_value=-9999, rat_band=1, title="Per-segment statistics"):
    """The summary of per-segment statistics written to ``rat_target`` (a raster whose
    band ``rat_band`` holds the RAT, a GDAL RAT file or a Zarr store)."""
    from ..rat.tools import iter_rat_blocks, open_rat_source

    with open_rat_source(rat_target, rat_band) as rat:
        rows = rat.row_count()

        def blocks():
            for block in iter_rat_blocks(rat, columns):
                if block.start <= null_id < block.start + len(block):
                    block.columns = {n: np.delete(np.asarray(v, np.float64),
                                                  null_id - block.start)
                                     for n, v in block.columns.items()}
                yield block.columns

        summaries = summarize(columns, blocks, missing_value)
        name = rat.name
    facts = [("RAT", name), ("Segments with pixels", segment_count), ("RAT rows", rows),
             ("Columns", len(columns)), ("Missing value", number(missing_value))]
    return write_summary_report(path, title, facts, summaries), summaries


def zonal_stats_report(path, columns, values, feature_count, pixel_rule,
                       title="Zonal statistics"):
    """The summary of zonal statistics: ``values`` is (columns x features), NaN missing."""
    values = np.asarray(values, np.float64)

    def blocks():
        yield {name: values[index] for index, name in enumerate(columns)}

    summaries = summarize(columns, blocks)
    facts = [("Features", feature_count), ("Pixel rule", pixel_rule), ("Columns", len(columns))]
    return write_summary_report(path, title, facts, summaries, unit="features"), summaries
