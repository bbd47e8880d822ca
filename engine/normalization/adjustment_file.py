"""Saving and loading global-regression adjustments and statistics as JSON.

The structure is spectralmatch's, keyed by image base name and ``band_N``
(0-based)::

    {"<image>": {"adjustments": {"band_0": {"scale": .., "offset": ..}, ...},
                 "whole_stats": {"band_0": {"mean": .., "std": .., "size": ..}, ...},
                 "overlap_stats": {"<other image>": {"band_0": {"mean": .., "std": ..,
                                                                "size": ..}, ...}}}}

``overlap_stats[a][b]`` describes image a's pixels in its overlap with b.
Values are written with full float64 precision, so a loaded run reproduces
the saved one exactly.

Tessera adds ``"fingerprint"`` to each image (its size, bands, data type,
geotransform, file size and modification time; spectralmatch ignores it): the
statistics of an image are reused only for the very file they were computed
from, and recomputed for an image of the same name with other pixels. Files
without fingerprints (spectralmatch's, older Tessera's) are reused as they are.
"""

import json
import os
from dataclasses import dataclass, field

from ..errors import TesseraError
from .overlap_statistics import Moments


@dataclass
class LoadedStatistics:
    """Statistics read from a file: whole-image Moments by name, overlap Moments by
    (image, other image) and each image's fingerprint (None when the file has none)."""

    path: str
    whole: dict
    overlaps: dict
    fingerprints: dict = field(default_factory=dict)


def image_fingerprint(image) -> dict:
    """What identifies the pixels of an :class:`~.image_set.ImageInfo`'s file."""
    status = os.stat(image.path)
    return {"width": image.width, "height": image.height, "bands": image.bands,
            "dtype": str(image.dtype), "geotransform": [float(v) for v in image.geotransform],
            "file_size": status.st_size, "modified_ns": status.st_mtime_ns}


def fingerprint_difference(saved, image):
    """How the file of ``image`` differs from the ``saved`` fingerprint, or None."""
    current = image_fingerprint(image)
    for key, what in (("width", "its size"), ("height", "its size"), ("bands", "its bands"),
                      ("dtype", "its data type"), ("geotransform", "its geotransform"),
                      ("file_size", "its file size"),
                      ("modified_ns", "its modification time")):
        if saved.get(key) != current[key]:
            return what
    return None


def save_adjustments(path, model, whole, overlaps, bands, fingerprints=None):
    """Write ``model`` (a GlobalModel), the statistics it was solved from and the
    ``fingerprints`` (name -> dict) of the images; read the file back."""
    document = {}
    for index, name in enumerate(model.names):
        document[name] = {
            "adjustments": {f"band_{b}": {"scale": float(model.scales[index, b]),
                                          "offset": float(model.offsets[index, b])}
                            for b in range(bands)},
            "whole_stats": {f"band_{b}": whole[name].band(b) for b in range(bands)},
            "overlap_stats": {},
        }
        if fingerprints and name in fingerprints:
            document[name]["fingerprint"] = fingerprints[name]
    for (name_i, name_j), (stats_i, stats_j) in overlaps.items():
        if name_i in document:
            document[name_i]["overlap_stats"][name_j] = {
                f"band_{b}": stats_i.band(b) for b in range(bands)}
        if name_j in document:
            document[name_j]["overlap_stats"][name_i] = {
                f"band_{b}": stats_j.band(b) for b in range(bands)}
    path = os.fspath(path)
    text = json.dumps(document, indent=2)
    try:
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text)
        with open(path, encoding="utf-8") as stream:
            complete = stream.read() == text
    except (OSError, ValueError) as error:
        detail = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise TesseraError(f"Writing the adjustments file {path} failed: {detail}.") from None
    if not complete:
        raise TesseraError(f"Writing the adjustments file {path} failed: reading it back "
                           "gave other values.")
    return path


def load_adjustments(path, bands):
    """Read and check a file written by :func:`save_adjustments` (or spectralmatch)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TesseraError(f"The adjustments file {path} does not exist.")
    try:
        with open(path, encoding="utf-8") as stream:
            document = json.load(stream)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TesseraError(f"Cannot read the adjustments file {path}: {error}") from None
    if not isinstance(document, dict) or not document:
        raise TesseraError(f"The adjustments file {path} holds no images (a JSON object keyed "
                           "by image name is expected).")
    whole, overlaps, fingerprints = {}, {}, {}
    for name, entry in document.items():
        where = f"image '{name}' of the adjustments file {path}"
        if not isinstance(entry, dict) or "whole_stats" not in entry:
            raise TesseraError(f"The {where} has no 'whole_stats'.")
        fingerprint = entry.get("fingerprint")
        fingerprints[name] = fingerprint if isinstance(fingerprint, dict) else None
        whole[name] = _moments(entry["whole_stats"], bands, f"'whole_stats' of the {where}")
        others = entry.get("overlap_stats", {}) or {}
        if not isinstance(others, dict):
            raise TesseraError(f"The 'overlap_stats' of the {where} is not an object.")
        for other, stats in others.items():
            overlaps[(name, other)] = _moments(stats, bands,
                                               f"'overlap_stats' with '{other}' of the {where}")
    return LoadedStatistics(path, whole, overlaps, fingerprints)


def _moments(stats, bands, where):
    if not isinstance(stats, dict):
        raise TesseraError(f"The {where} is not an object.")
    keys = sorted(k for k in stats if k.startswith("band_"))
    expected = [f"band_{b}" for b in range(bands)]
    if sorted(keys) != sorted(expected):
        raise TesseraError(f"The {where} describes bands {', '.join(keys) or 'none'} but the "
                           f"images have {bands} band(s) ({expected[0]}..{expected[-1]}).")
    means, stds, sizes = [], [], []
    for key in expected:
        band = stats[key]
        try:
            means.append(float(band["mean"]))
            stds.append(float(band["std"]))
            sizes.append(int(band["size"]))
        except (TypeError, KeyError, ValueError):
            raise TesseraError(f"The {where} has no numeric mean, std and size for "
                               f"{key}.") from None
        if sizes[-1] < 0 or stds[-1] < 0:
            raise TesseraError(f"The {where} has a negative size or std for {key}.")
    return Moments.from_values(means, stds, sizes)
