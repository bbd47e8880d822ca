"""A picture of per-band mean spectral profiles before and after a correction.

One line per image and state (dashed before, solid after, one colour per
image), band number on x, mean of the valid pixels on y, written as PNG with
matplotlib (an optional dependency, needed only when a plot is asked for).
Drawn with matplotlib's object API on an Agg canvas: no pyplot and no backend
switch, safe in QGIS's worker threads.
"""

import os

from ..dependencies import require
from ..errors import TesseraError

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def mean_profiles(names, corrected, plot_path, title):
    """(means before, means after), each image name -> band means, of the
    :class:`~.corrected_output.CorrectedImage` s; and the PNG written to
    ``plot_path`` (None when no path is given)."""
    before = {n: c.means_before for n, c in zip(names, corrected, strict=True)}
    after = {n: c.means_after for n, c in zip(names, corrected, strict=True)}
    plot = plot_spectral_profiles(plot_path, names, before, after, title) if plot_path else None
    return before, after, plot


def plot_spectral_profiles(path, names, means_before, means_after, title):
    """Write the PNG ``path``; ``means_*`` map each image name to its band means."""
    figure = spectral_profile_figure(names, means_before, means_after, title)
    path = os.fspath(path)
    try:
        figure.savefig(path, format="png")
        with open(path, "rb") as stream:
            complete = stream.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE
    except OSError as error:
        raise TesseraError(f"Writing the profile plot {path} failed: "
                           f"{error.strerror or error}.") from None
    if not complete:
        raise TesseraError(f"Writing the profile plot {path} failed: it is not a PNG.")
    return path


def spectral_profile_figure(names, means_before, means_after, title):
    """The profiles as a matplotlib Figure."""
    require("matplotlib", purpose="The spectral profile plot")
    import matplotlib

    from ..reports.html import new_figure

    figure = new_figure(8, 5)
    figure.set_dpi(110)
    axes = figure.add_subplot(1, 1, 1)
    colours = matplotlib.colormaps["tab10"]
    for index, name in enumerate(names):
        before, after = means_before[name], means_after[name]
        colour = colours(index % 10)
        bands = list(range(1, len(before) + 1))
        axes.plot(bands, before, linestyle="--", marker="o", color=colour, alpha=0.7,
                  label=f"{name} before")
        axes.plot(bands, after, linestyle="-", marker="o", color=colour,
                  label=f"{name} after")
    axes.set_title(title)
    axes.set_xlabel("Band")
    axes.set_ylabel("Mean of valid pixels")
    axes.set_xticks(list(range(1, max(len(means_before[n]) for n in names) + 1)))
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize="small", ncol=2 if len(names) > 4 else 1)
    figure.tight_layout()
    return figure
