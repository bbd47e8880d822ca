"""A validated set of overlapping images for relative radiometric normalization.

:func:`open_image_set` checks what global regression and local block
adjustment both assume (readable north-up rasters, one CRS, one band count,
one nodata value, unique base names) and describes every image once;
:func:`output_paths` names the outputs ``<folder>/<base name><suffix>.tif``.
"""

import math
import os
from dataclasses import dataclass

import numpy as np

from ..errors import TesseraError
from ..io.raster_io import band_dtype, band_nodata, open_raster, raster_name, same_crs

#: Output data types offered besides "same as the input".
OUTPUT_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


@dataclass(frozen=True)
class ImageInfo:
    """One input image: where it is and how its pixels sit on the ground."""

    path: str
    name: str
    width: int
    height: int
    bands: int
    dtype: np.dtype
    geotransform: tuple
    crs_wkt: str

    @property
    def bounds(self):
        """(minx, miny, maxx, maxy) of the pixel edges."""
        x0, px, _, y0, _, py = self.geotransform
        xs = (x0, x0 + px * self.width)
        ys = (y0, y0 + py * self.height)
        return min(xs), min(ys), max(xs), max(ys)

    @property
    def pixel_size(self):
        """(width, height) of a pixel in map units, both positive."""
        return abs(self.geotransform[1]), abs(self.geotransform[5])

    def window_geotransform(self, xoff, yoff):
        """The geotransform of the pixel window starting at column ``xoff``, row ``yoff``."""
        x0, px, _, y0, _, py = self.geotransform
        return (x0 + xoff * px, px, 0.0, y0 + yoff * py, 0.0, py)


@dataclass(frozen=True)
class ImageSet:
    """Images sorted by base name, with their common nodata value (or None)."""

    images: tuple
    nodata: object

    @property
    def names(self):
        return [image.name for image in self.images]

    @property
    def bands(self):
        return self.images[0].bands

    @property
    def crs_wkt(self):
        return self.images[0].crs_wkt

    def union_bounds(self):
        boxes = [image.bounds for image in self.images]
        return (min(b[0] for b in boxes), min(b[1] for b in boxes),
                max(b[2] for b in boxes), max(b[3] for b in boxes))


def image_name(path):
    """The base name of a file without its extension (the key of an image everywhere)."""
    return os.path.splitext(os.path.basename(os.fspath(path)))[0]


def describe_image(path):
    """Open ``path`` and describe it, or raise a :class:`TesseraError` naming the problem."""
    dataset = open_raster(path)
    name = raster_name(dataset)
    if dataset.RasterCount == 0:
        raise TesseraError(f"The raster {name} has no bands.")
    geotransform = dataset.GetGeoTransform(can_return_null=True)
    if geotransform is None:
        raise TesseraError(f"The raster {name} has no geotransform: it must be georeferenced.")
    if geotransform[2] != 0 or geotransform[4] != 0 or geotransform[5] >= 0 \
            or geotransform[1] <= 0:
        raise TesseraError(
            f"The raster {name} is rotated or not north-up (geotransform {geotransform}); "
            "warp it to a north-up grid first."
        )
    bands = [dataset.GetRasterBand(b) for b in range(1, dataset.RasterCount + 1)]
    dtypes = {band_dtype(b) for b in bands}
    if len(dtypes) != 1:
        raise TesseraError(f"The bands of {name} have different data types "
                           f"{sorted(map(str, dtypes))}.")
    dtype = dtypes.pop()
    if dtype.kind == "c":
        raise TesseraError(f"The raster {name} holds complex values, which cannot be normalized.")
    nodata = [b.GetNoDataValue() for b in bands]
    if any(_differ(v, nodata[0]) for v in nodata):
        raise TesseraError(f"The bands of {name} have different nodata values {nodata}; "
                           "one value for all bands is needed.")
    info = ImageInfo(os.fspath(path), image_name(path), dataset.RasterXSize, dataset.RasterYSize,
                     dataset.RasterCount, dtype, tuple(geotransform), dataset.GetProjection())
    return info, band_nodata(bands[0]) if nodata[0] is not None else None


def _differ(a, b):
    if a is None or b is None:
        return (a is None) != (b is None)
    return not (a == b or (math.isnan(a) and math.isnan(b)))


def open_image_set(paths, min_images=2, nodata=None, role="input image"):
    """Check and describe the images; sorted by base name.

    ``nodata`` overrides the images' own nodata value; otherwise they must
    all have the same one, or none. Raises :class:`TesseraError` for fewer than
    ``min_images`` images, duplicate base names, unreadable files, CRS or
    band-count mismatch and disagreeing nodata.
    """
    paths = [os.fspath(p) for p in (paths or [])]
    if len(paths) < min_images:
        raise TesseraError(f"At least {min_images} {role}s are needed; {len(paths)} given.")
    described = [describe_image(p) for p in paths]
    images = sorted((info for info, _ in described), key=lambda info: info.name)
    seen = {}
    for info in images:
        if info.name in seen:
            raise TesseraError(
                f"The {role}s {seen[info.name]} and {info.path} have the same base name "
                f"'{info.name}'; outputs and saved statistics are keyed by that name, so it "
                "must be unique."
            )
        seen[info.name] = info.path
    first = images[0]
    for info in images[1:]:
        if info.bands != first.bands:
            raise TesseraError(f"The {role} {info.path} has {info.bands} band(s) but "
                               f"{first.path} has {first.bands}: all must have the same bands.")
        if not same_crs(info.crs_wkt, first.crs_wkt):
            raise TesseraError(f"The {role} {info.path} and {first.path} have different "
                               "coordinate reference systems; reproject them to one CRS first.")
    if nodata is None:
        values = {info.path: value for info, value in described}
        distinct = {("none" if v is None else ("nan" if v != v else float(v)))
                    for v in values.values()}
        if len(distinct) > 1:
            listing = ", ".join(f"{os.path.basename(p)}: {v}" for p, v in values.items())
            raise TesseraError(
                f"The {role}s have different nodata values ({listing}); a common nodata "
                "value is needed: set the same nodata on every image or give one explicitly."
            )
        nodata = next(iter(values.values()))
    return ImageSet(tuple(images), nodata)


def output_dtype_for(image_set, requested=None):
    """The numpy dtype of the outputs: the input's unless ``requested``; checks nodata fits."""
    if requested in (None, "", "input"):
        dtype = image_set.images[0].dtype
        dtypes = {image.dtype for image in image_set.images}
        if len(dtypes) > 1:
            dtype = np.result_type(*dtypes)
    else:
        if str(requested) not in OUTPUT_DTYPES:
            raise TesseraError(f"Unknown output data type '{requested}'; choose one of "
                               f"{', '.join(OUTPUT_DTYPES)} (or the input's).")
        dtype = np.dtype(str(requested))
    dtype = np.dtype(dtype)
    nodata = image_set.nodata
    if dtype.kind in "iu":
        if nodata is not None:
            info = np.iinfo(dtype)
            if nodata != nodata or not float(nodata).is_integer() or \
                    not info.min <= nodata <= info.max:
                raise TesseraError(f"The nodata value {nodata} cannot be stored as {dtype}; "
                                   "choose another output data type or nodata value.")
        elif any(image.dtype.kind == "f" for image in image_set.images):
            raise TesseraError(
                f"The float input images have no nodata value, so their NaN pixels cannot be "
                f"written as {dtype}: a nodata value is needed (set one on the images or give "
                "one explicitly), or keep a float output type.")
    elif dtype == np.float32 and nodata is not None and nodata == nodata and \
            abs(nodata) > np.finfo(np.float32).max:
        raise TesseraError(f"The nodata value {nodata} cannot be stored as float32.")
    return dtype


def output_paths(folder, image_set, suffix):
    """``<folder>/<name><suffix>.tif`` for every image (checked by the caller's
    :class:`~.normalization_outputs.RunOutputs`)."""
    if not folder:
        raise TesseraError("No output folder given.")
    folder = os.fspath(folder)
    return [os.path.join(folder, f"{image.name}{suffix}.tif") for image in image_set.images]
