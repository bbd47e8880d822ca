"""Global regression: a scale and offset per image and band so overlaps agree.

    from tessera.engine import global_regression
    result = global_regression(["a.tif", "b.tif", "c.tif"], "out/",
                               model_images=["a"], save_adjustments="out/adjustments.json")

Statistics (exact, windowed, parallel) of every image and every overlapping
pair feed one linear least-squares system per band
(:mod:`.regression_model`), anchored at the model images' own radiometry;
``a·x + b`` is then applied to every valid pixel of every image, written to
``<output folder>/<name>_Global.tif``. The contract is
``shared/design/NORMALIZATION.md``.
"""

import functools
import math
import os
import time
from dataclasses import dataclass, field

import numpy as np

from ..dependencies import require
from ..errors import TesseraError
from ..progress import Progress
from .corrected_output import OutputOptions
from .image_set import image_name, open_image_set, output_dtype_for, output_paths
from .run_frame import normalization_run, statistics_runner

MODEL_MODES = ("include", "exclude")
GLOBAL_SUFFIX = "_Global"


@dataclass
class GlobalRegressionResult:
    """What :func:`global_regression` computed and wrote."""

    outputs: list
    names: list
    model_images: list
    adjustments: dict  # name -> [{"scale", "offset"} per band]
    whole_stats: dict  # name -> Moments
    overlap_stats: dict  # (name_i, name_j) -> (Moments of i, Moments of j)
    unadjusted: list
    loaded: list
    means_before: dict
    means_after: dict
    adjustments_file: str = None
    profile_plot: str = None
    clamped: dict = field(default_factory=dict)  # name -> share of valid values clamped
    timings: dict = field(default_factory=dict)


def check_factor(value, name):
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise TesseraError(f"The {name} must be a finite number >= 0; got {value}.")
    return value


def choose_model_images(names, model_images, mode):
    """The model image names: all, the listed ones (include) or the others (exclude)."""
    if mode not in MODEL_MODES:
        raise TesseraError(f"Unknown model image mode '{mode}'; use 'include' or 'exclude'.")
    listed = [image_name(item) for item in (model_images or [])]
    unknown = [item for item in listed if item not in names]
    if unknown:
        raise TesseraError(f"Model image(s) {', '.join(unknown)} are not among the input images "
                           f"({', '.join(names)}); give them by file or base name.")
    if not listed:
        return list(names)
    chosen = [n for n in names if (n in listed) == (mode == "include")]
    if not chosen:
        raise TesseraError("Excluding every image leaves no model image: at least one image "
                           "must anchor the regression.")
    return chosen


def global_regression(inputs, output_folder, model_images=None, model_mode="include",
                      mean_factor=1.0, std_factor=1.0, vector_mask=None, mask_mode="include",
                      mask_field=None, save_adjustments=None, load_adjustments=None,
                      output_dtype=None, cog=False, weight_by_overlap_size=True, nodata=None,
                      profile_plot=None, threads=None, window_size=None, progress=None,
                      cancelled=None, log=None, overwrite=False, scheduler=None):
    """Normalize ``inputs`` (paths) into ``output_folder`` by global regression.

    ``model_images`` (names or paths) with ``model_mode`` "include" or
    "exclude" choose the images anchoring the solution (default all).
    ``mean_factor``/``std_factor`` weight the overlap rows;
    ``weight_by_overlap_size`` weights each pair by its pixel count (as the
    paper and spectralmatch 1.0), otherwise by 1 (as spectralmatch 1.6).
    ``vector_mask`` (a polygon file) with ``mask_mode`` and ``mask_field``
    limits the pixels feeding the statistics. ``save_adjustments`` /
    ``load_adjustments`` are JSON paths (loaded statistics are reused for the
    images they describe, when their fingerprint says they are the same files).
    ``output_dtype`` None keeps the input type (values clamped to another
    type are counted and reported); ``cog`` writes Cloud-Optimized GeoTIFFs;
    ``profile_plot`` a PNG of the band means before and after. ``threads``
    (default: CPU cores) run images and windows in parallel.

    ``scheduler`` (:mod:`tessera.engine.distributed`): None runs on this machine's
    threads; ``"local"``, a scheduler address or a ``distributed.Client`` run the
    statistics (per image, overlap and run of windows) and the corrections (per image and
    run of windows, each task writing its own file) as tasks on a Dask cluster, whose
    workers must read the inputs and write the output folder (shared paths, /vsis3/…).
    The pieces follow ``threads`` (default there: the cluster's worker threads): with the
    same ``threads`` the results are the same bits as on this machine's threads.

    Every output is checked before any work (never an input, never an existing
    file unless ``overwrite``), written beside its target, read back, and
    published together with the others only when all were written.
    Returns a :class:`GlobalRegressionResult`.
    """
    require("numba", purpose="Global regression")
    from .adjustment_file import load_adjustments as read_adjustments
    from .outputs import normalization_inputs
    from .overlap import find_overlaps

    started = time.perf_counter()
    say = log or (lambda message: None)
    reporter = Progress(progress, cancelled)
    image_set = open_image_set(inputs, 2, nodata)
    names = image_set.names
    dtype = output_dtype_for(image_set, output_dtype)
    outputs = output_paths(output_folder, image_set, GLOBAL_SUFFIX)
    mean_factor = check_factor(mean_factor, "mean factor")
    std_factor = check_factor(std_factor, "std factor")
    model = choose_model_images(names, model_images, model_mode)
    if profile_plot:
        require("matplotlib", purpose="The spectral profile plot")
    targets = [(path, "output image") for path in outputs]
    targets += [(save_adjustments, "adjustments file"), (profile_plot, "profile plot")]
    inputs = normalization_inputs(image_set, vector_mask, adjustments=load_adjustments)
    checks = (targets, inputs, [(output_folder, "output folder")], overwrite, say, cancelled)
    with normalization_run("Global regression", image_set, checks,
                           (vector_mask, mask_mode, mask_field), scheduler, threads,
                           reporter) as (run, client, threads, masks):
        overlaps = find_overlaps(image_set.images)
        if not overlaps:
            raise TesseraError("No two input images overlap: global regression matches images "
                               "through their overlaps (" + ", ".join(names) + ").")
        loaded = (read_adjustments(load_adjustments, image_set.bands) if load_adjustments
                  else None)
        options = OutputOptions(dtype, image_set.nodata, cog, threads, window_size,
                                profile_plot)
        return _regress(run, image_set, outputs, options, model, masks, overlaps, loaded,
                        (mean_factor, std_factor, weight_by_overlap_size), save_adjustments,
                        reporter, say, started, client)


def reusable_statistics(loaded, image_set, overlaps, say):
    """(whole-image Moments by name, overlap Moments by name pair, reused names,
    overlaps still to measure) from a loaded adjustments file: an image's statistics
    are reused only when its fingerprint matches the file it was saved for."""
    from .adjustment_file import fingerprint_difference

    names = image_set.names
    whole, pair_stats, reused = {}, {}, []
    if loaded is None:
        return whole, pair_stats, reused, list(overlaps)
    ignored = sorted(set(loaded.whole) - set(names))
    if ignored:
        say(f"The adjustments file describes images that are not inputs, ignored: "
            f"{', '.join(ignored)}.")
    unverified = []
    for image in image_set.images:
        if image.name not in loaded.whole:
            continue
        saved = loaded.fingerprints.get(image.name)
        difference = None if saved is None else fingerprint_difference(saved, image)
        if difference:
            say(f"Warning: the statistics of {image.name} in {loaded.path} were saved for "
                f"other pixels ({difference} differs from {image.path}): they are computed "
                "again.")
            continue
        if saved is None:
            unverified.append(image.name)
        whole[image.name] = loaded.whole[image.name]
        reused.append(image.name)
    if unverified:
        say(f"Warning: {loaded.path} holds no fingerprint of {', '.join(unverified)} (saved by "
            "spectralmatch or an older Tessera): their statistics are reused as they are; "
            "make sure the file was saved for these very images.")
    to_measure = []
    for overlap in overlaps:
        key = (names[overlap.i], names[overlap.j])
        if key[0] in whole and key[1] in whole:
            if key in loaded.overlaps and key[::-1] in loaded.overlaps:
                pair_stats[key] = (loaded.overlaps[key], loaded.overlaps[key[::-1]])
            continue  # both known: the file says whether they overlap
        to_measure.append(overlap)
    if reused:
        say(f"Statistics reused from {loaded.path} for: {', '.join(reused)}.")
    return whole, pair_stats, reused, to_measure


def _regress(run, image_set, outputs, options, model, masks, overlaps, loaded, weights,
             save_adjustments, reporter, say, started, client=None):
    """Measure, solve, correct and publish (the body of :func:`global_regression`, its
    outputs checked and locked by ``run``; ``weights``: mean factor, std factor, weight
    by overlap size)."""
    from .adjustment_file import image_fingerprint
    from .adjustment_file import save_adjustments as write_adjustments
    from .corrected_output import write_normalized
    from .overlap_statistics import measure_statistics
    from .regression_model import solve_global_model

    timings = {}
    threads, window_size = options.threads, options.window_size
    images, names, bands = image_set.images, image_set.names, image_set.bands
    whole, pair_stats, reused, to_measure = reusable_statistics(loaded, image_set, overlaps,
                                                                say)
    reporter.phase(0.0, 0.45, "Whole-image and overlap statistics")
    missing = [index for index, name in enumerate(names) if name not in whole]
    measured, pairs = measure_statistics(images, to_measure, image_set.nodata, masks,
                                         reporter, threads, window_size, whole=missing,
                                         runner=statistics_runner(client, "tessera-statistics"))
    for index in missing:
        whole[names[index]] = measured[index]
    for overlap, moments in zip(to_measure, pairs, strict=True):
        pair_stats[(names[overlap.i], names[overlap.j])] = moments
    timings["statistics"] = time.perf_counter() - started
    for name in model:
        empty = [b + 1 for b in range(bands) if whole[name].counts[b] == 0]
        if empty:
            raise TesseraError(f"The model image {name} has no valid pixel for statistics in "
                               f"band(s) {', '.join(map(str, empty))} (nodata everywhere, or "
                               "the vector mask leaves nothing).")

    reporter.phase(0.45, 0.5, "Solving the regression")
    solution = solve_global_model(names, model, whole, pair_stats, bands, *weights)
    for name in solution.unconstrained:
        say(f"{name} is not a model image and overlaps no model image: kept unchanged "
            "(scale 1, offset 0).")

    reporter.phase(0.5, 0.97, "Applying the adjustments")
    nodata_value = 0.0 if image_set.nodata is None else float(image_set.nodata)
    has_nodata = image_set.nodata is not None
    corrections = []
    for index in range(len(images)):
        corrections.append(functools.partial(
            correct_linearly, nodata_value, has_nodata,
            np.ascontiguousarray(solution.scales[index]),
            np.ascontiguousarray(solution.offsets[index])))
    written = write_normalized(run, image_set, outputs, corrections, options, reporter, say,
                               "Global regression: mean spectral profiles", client)
    timings["apply"] = written.seconds

    reporter.phase(0.97, 1.0, "Writing the adjustments")
    result = GlobalRegressionResult(
        outputs=outputs, names=names, model_images=model,
        adjustments={name: [solution.adjustment(name, b) for b in range(bands)]
                     for name in names},
        whole_stats=whole, overlap_stats=pair_stats, unadjusted=solution.unconstrained,
        loaded=reused, means_before=written.means_before, means_after=written.means_after,
        profile_plot=written.profile_plot, clamped=written.clamped)
    if save_adjustments:
        fingerprints = {image.name: image_fingerprint(image) for image in images}
        write_adjustments(run.temporary(save_adjustments), solution, whole, pair_stats, bands,
                          fingerprints)
        result.adjustments_file = os.fspath(save_adjustments)
    run.publish()
    reporter.update(1.0)
    timings["total"] = time.perf_counter() - started
    result.timings = timings
    return result


def correct_linearly(nodata_value, has_nodata, scale, offset, window, tile, out, store, totals):
    """``a·x + b`` of every valid pixel of ``tile`` into ``out`` (a correction of
    :func:`~.corrected_output.write_normalized`; module-level, so tasks can carry it)."""
    from .kernels import linear_correction

    linear_correction(tile, nodata_value, has_nodata, scale, offset, out, store, *totals)
