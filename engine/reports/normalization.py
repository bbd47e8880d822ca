"""The HTML report of a radiometric normalization run (global regression, local block
adjustment): spectral profiles before and after, the scale/offset table, block-map
thumbnails, and how much overlapping images disagree before and after.

    from tessera.engine.reports.normalization import normalization_report
    normalization_report("report.html", result, inputs, kind="global")
"""

import math

import numpy as np

from ..normalization.overlap_mismatch import overlap_mismatch
from ..normalization.spectral_profiles import spectral_profile_figure
from .html import HtmlReport, new_figure, number

#: Bands shown as block-map thumbnails (one figure per band).
THUMBNAIL_BANDS = 3


def normalization_report(path, result, inputs, kind, nodata=None, progress=None):
    """Write the report of a :class:`~.global_normalization.GlobalRegressionResult`
    (``kind="global"``) or :class:`~.local_normalization.LocalBlockAdjustmentResult`
    (``kind="local"``) of ``inputs``; returns ``(path, mismatch rows)``."""
    title = ("Global regression" if kind == "global" else "Local block adjustment")
    report = HtmlReport(f"{title}: normalization report")
    names = list(result.names)
    report.paragraph(f"{len(names)} image(s): {', '.join(names)}. Outputs: "
                     + ", ".join(str(p) for p in result.outputs) + ".")
    by_name = dict(zip(_input_names(inputs), inputs, strict=True))
    outputs = dict(zip(names, result.outputs, strict=True))
    mismatch = overlap_mismatch([by_name[n] for n in names], [outputs[n] for n in names],
                                nodata=nodata, progress=progress)
    _mismatch_section(report, mismatch)
    _profile_section(report, names, result.means_before, result.means_after, title)
    if kind == "global":
        _adjustment_section(report, names, result.adjustments)
    else:
        _block_map_section(report, result)
    return report.write(path), mismatch


def _input_names(inputs):
    from ..normalization.image_set import image_name

    return [image_name(p) for p in inputs]


def _mismatch_section(report, mismatch):
    report.heading("Mismatch in the overlaps")
    if not mismatch:
        report.paragraph("No two images overlap.")
        return
    report.paragraph("Mean absolute difference |A − B| of the co-located pixels valid in both "
                     "images of each overlap (B read on A's grid), per band, before (inputs) "
                     "and after (outputs) the correction.")
    rows = []
    for item in mismatch:
        for band, (pixels, before, after) in enumerate(
                zip(item.pixels, item.before, item.after, strict=True), start=1):
            change = (after - before) / before * 100 if before else math.nan
            rows.append([f"{item.first} / {item.second}", band, pixels, number(before),
                         number(after), number(change, 3)])
    report.table(["Overlap", "Band", "Pixel pairs", "Mean |A − B| before",
                  "Mean |A − B| after", "Change %"], rows, name_columns=1, table_id="mismatch")
    figure = new_figure(7, 0.6 + 0.35 * len(rows))
    axes = figure.add_subplot(1, 1, 1)
    labels = [f"{r[0]} b{r[1]}" for r in rows]
    y = np.arange(len(rows))
    axes.barh(y - 0.2, [float(r[3] or "nan") for r in rows], 0.4, label="before",
              color="#d95f02")
    axes.barh(y + 0.2, [float(r[4] or "nan") for r in rows], 0.4, label="after", color="#1b9e77")
    axes.set_yticks(y)
    axes.set_yticklabels(labels, fontsize="small")
    axes.invert_yaxis()
    axes.set_xlabel("Mean |A − B|")
    axes.legend(fontsize="small")
    figure.tight_layout()
    report.figure(figure, "Mean absolute difference per overlap and band, before and after")


def _profile_section(report, names, before, after, title):
    report.heading("Spectral profiles")
    report.paragraph("Mean of the valid pixels of every band of every image, before (dashed) "
                     "and after (solid) the correction.")
    report.figure(spectral_profile_figure(names, before, after, f"{title}: mean spectral "
                                          "profiles"), "Spectral profiles before and after")
    rows = [[name, band, number(b), number(a)]
            for name in names
            for band, (b, a) in enumerate(zip(before[name], after[name], strict=True), start=1)]
    report.table(["Image", "Band", "Mean before", "Mean after"], rows, table_id="means")


def _adjustment_section(report, names, adjustments):
    report.heading("Scale and offset")
    report.paragraph("Each output pixel is scale · x + offset, per image and band.")
    rows = [[name, band, number(a["scale"], 8), number(a["offset"], 8)]
            for name in names for band, a in enumerate(adjustments[name], start=1)]
    report.table(["Image", "Band", "Scale", "Offset"], rows, table_id="adjustments")


def _block_map_section(report, result):
    grid = result.grid
    report.heading("Block maps")
    report.paragraph(f"{grid.rows} × {grid.cols} blocks: the reference map (mean of the local "
                     "maps) and every image's local map of block means, on one colour scale "
                     "per band; empty blocks are blank.")
    maps = [("reference", result.reference_map)] + [(n, result.local_maps[n])
                                                    for n in result.names]
    bands = result.reference_map.shape[0]
    for band in range(min(bands, THUMBNAIL_BANDS)):
        values = np.concatenate([m[band].ravel() for _, m in maps])
        values = values[np.isfinite(values)]
        low, high = (values.min(), values.max()) if values.size else (0.0, 1.0)
        columns = min(4, len(maps))
        rows = math.ceil(len(maps) / columns)
        figure = new_figure(2.6 * columns + 0.8, 2.4 * rows)
        image = None
        for index, (name, block_map) in enumerate(maps):
            axes = figure.add_subplot(rows, columns, index + 1)
            image = axes.imshow(block_map[band], vmin=low, vmax=high, cmap="viridis",
                                interpolation="nearest")
            axes.set_title(name, fontsize="small")
            axes.set_xticks([])
            axes.set_yticks([])
        figure.colorbar(image, ax=figure.axes, shrink=0.8)
        report.figure(figure, f"Block maps of band {band + 1}")
    if bands > THUMBNAIL_BANDS:
        report.paragraph(f"Bands {THUMBNAIL_BANDS + 1}..{bands} are not shown.")
