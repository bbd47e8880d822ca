"""Opening rasters, checking grids and reading tiles (with read-ahead threads).

This is the one way the engine reads rasters: :func:`open_raster` for a path
or an open GDAL dataset, :func:`check_same_grid` before pairing two rasters,
:func:`plan_windows` for a tiling aligned with the file's blocks, and
:class:`TileReader` to read those windows ahead of the computation.
"""

import contextlib
import math
import os
import threading
from dataclasses import dataclass

import numpy as np
from osgeo import gdal, osr

from ..errors import TesseraError
from ..parallel import SharedSetting
from .output_safety import redact

#: Pixels per window when the caller does not choose (a few tens of MB per band).
DEFAULT_WINDOW_PIXELS = 1 << 22


@dataclass(frozen=True)
class Window:
    """A rectangle of pixels: column and row offsets, width and height."""

    xoff: int
    yoff: int
    xsize: int
    ysize: int


def raster_name(source):
    """The path of a dataset, or the path given (for reopening; see :func:`message_name`)."""
    if isinstance(source, gdal.Dataset):
        return source.GetDescription() or "<in-memory dataset>"
    return str(source)


def message_name(source):
    """A name for messages: :func:`raster_name` with credentials in URLs redacted."""
    return redact(raster_name(source))


#: URL schemes and the GDAL virtual file systems that read them.
URL_FILE_SYSTEMS = {"s3://": "/vsis3/", "gs://": "/vsigs/", "az://": "/vsiaz/"}


def gdal_path(path):
    """GDAL's name for ``path``: ``s3://b/k`` -> ``/vsis3/b/k`` (``gs://``, ``az://``,
    ``http(s)://`` likewise); other paths as they are. For ``/vsis3/`` an S3-compatible
    endpoint given the AWS way (``AWS_ENDPOINT_URL``) is passed on to GDAL, which reads
    ``AWS_S3_ENDPOINT`` instead."""
    path = os.fspath(path)
    lowered = path.lower()
    if lowered.startswith(("http://", "https://")):
        path = "/vsicurl/" + path
    for scheme, prefix in URL_FILE_SYSTEMS.items():
        if lowered.startswith(scheme):
            path = prefix + path[len(scheme):]
    if path.startswith("/vsis3/"):
        _s3_endpoint_for_gdal()
    return path


def _s3_endpoint_for_gdal():
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    if not endpoint or gdal.GetConfigOption("AWS_S3_ENDPOINT"):
        return
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    gdal.SetConfigOption("AWS_S3_ENDPOINT", parts.netloc or parts.path)
    gdal.SetConfigOption("AWS_HTTPS", "NO" if parts.scheme == "http" else "YES")
    gdal.SetConfigOption("AWS_VIRTUAL_HOSTING", "FALSE")


def open_raster(source, update=False):
    """Return a GDAL dataset for a path or URL (see :func:`gdal_path`) or pass an open
    dataset through.

    Raises :class:`TesseraError` naming the file when it cannot be opened.
    """
    if isinstance(source, gdal.Dataset):
        return source
    path = gdal_path(source)
    if not path.startswith("/vsi") and not os.path.exists(path):
        raise TesseraError(f"Raster not found: {message_name(path)}")
    mode = gdal.GA_Update if update else gdal.GA_ReadOnly
    gdal.ErrorReset()
    with gdal_quiet():
        dataset = gdal.OpenEx(path, gdal.OF_RASTER | (gdal.OF_UPDATE if update else 0))
        if dataset is None and update:
            dataset = gdal.Open(path, mode)
    if dataset is None:
        detail = gdal.GetLastErrorMsg() or "GDAL cannot read it as a raster"
        action = "open for writing" if update else "open"
        raise TesseraError(redact(f"Cannot {action} raster {path}: {detail}"))
    return dataset


@contextlib.contextmanager
def gdal_failures(what):
    """Raise ``TesseraError("<what> failed: <GDAL's message>")`` after the block when GDAL
    reported a failure in this thread inside it: GDAL reports write errors (a full disk
    included) only through its error handler, not through return values."""
    failures = []

    def handler(level, _number, message):
        if level >= gdal.CE_Failure:
            failures.append(message)

    gdal.PushErrorHandler(handler)
    try:
        yield
    finally:
        gdal.PopErrorHandler()
    if failures:
        raise TesseraError(redact(f"{what} failed: {failures[0]}"))


class gdal_quiet:  # noqa: N801 (used like a function)
    """Context manager that keeps GDAL errors out of stderr (they stay readable
    through ``gdal.GetLastErrorMsg``)."""

    def __enter__(self):
        gdal.PushErrorHandler("CPLQuietErrorHandler")
        return self

    def __exit__(self, *exc):
        gdal.PopErrorHandler()
        return False


def get_band(dataset, number, role="raster"):
    """Return band ``number`` (1-based) or raise a clear error."""
    count = dataset.RasterCount
    if not 1 <= number <= count:
        raise TesseraError(
            f"The {role} {message_name(dataset)} has {count} band(s); band {number} does not exist."
        )
    return dataset.GetRasterBand(number)


def band_dtype(band):
    """The numpy dtype of a band's values (int8 for a signed-byte band of GDAL < 3.7)."""
    from osgeo import gdal_array

    if is_signed_byte(band):
        return np.dtype(np.int8)
    return np.dtype(gdal_array.GDALTypeCodeToNumericTypeCode(band.DataType))


def is_signed_byte(band):
    """True for a Byte band marked PIXELTYPE=SIGNEDBYTE: GDAL < 3.7 reads its values as
    unsigned; they are signed."""
    return (band.DataType == gdal.GDT_Byte
            and band.GetMetadataItem("PIXELTYPE", "IMAGE_STRUCTURE") == "SIGNEDBYTE")


def band_nodata(band):
    """The band's nodata value as a Python number, or None."""
    value = band.GetNoDataValue()
    if value is None:
        return None
    if np.issubdtype(band_dtype(band), np.integer):
        if not float(value).is_integer():
            return None  # such a value can never occur in integer data
        return int(value)
    return float(value)


def same_crs(wkt_a, wkt_b):
    """True when two WKT strings describe the same coordinate reference system."""
    if not wkt_a and not wkt_b:
        return True
    if not wkt_a or not wkt_b:
        return False
    a, b = osr.SpatialReference(), osr.SpatialReference()
    a.ImportFromWkt(wkt_a)
    b.ImportFromWkt(wkt_b)
    return bool(a.IsSame(b))


def check_same_grid(first, second, first_role="first raster", second_role="second raster"):
    """Raise :class:`TesseraError` unless both datasets share size, geotransform and CRS.

    Geotransforms may differ by at most 1e-9 of a pixel.
    """
    name_a, name_b = message_name(first), message_name(second)
    size_a = (first.RasterXSize, first.RasterYSize)
    size_b = (second.RasterXSize, second.RasterYSize)
    if size_a != size_b:
        raise TesseraError(
            f"The {first_role} {name_a} is {size_a[0]} x {size_a[1]} pixels but the "
            f"{second_role} {name_b} is {size_b[0]} x {size_b[1]}: they must be on the same grid."
        )
    gt_a, gt_b = first.GetGeoTransform(), second.GetGeoTransform()
    pixel = max(abs(gt_a[1]), abs(gt_a[5]), abs(gt_a[2]), abs(gt_a[4])) or 1.0
    if any(abs(a - b) > 1e-9 * pixel for a, b in zip(gt_a, gt_b, strict=True)):
        raise TesseraError(
            f"The {first_role} {name_a} and the {second_role} {name_b} have different "
            f"geotransforms ({_fmt_gt(gt_a)} vs {_fmt_gt(gt_b)}): they must be on the same grid."
        )
    if not same_crs(first.GetProjection(), second.GetProjection()):
        raise TesseraError(
            f"The {first_role} {name_a} and the {second_role} {name_b} have different "
            "coordinate reference systems."
        )


def _fmt_gt(gt):
    return "(" + ", ".join(f"{v:.10g}" for v in gt) + ")"


def plan_windows(dataset, band=1, target_pixels=DEFAULT_WINDOW_PIXELS, window_size=None,
                 also=()):
    """Row-major windows covering the raster, aligned with its block layout.

    With ``window_size`` (rows = columns) the windows are that size; otherwise
    whole-width strips a whole number of blocks high when they fit in
    ``target_pixels``, else block-aligned tiles. ``also`` lists other
    ``(dataset, band)`` read on the same grid: the windows follow their blocks
    too when that keeps them within four times ``target_pixels`` (a block cut
    by a window edge would be decompressed twice).
    """
    width, height = dataset.RasterXSize, dataset.RasterYSize
    if window_size:
        tile_w = tile_h = int(window_size)
    else:
        block_w, block_h = _block(dataset, band, width, height)
        common_w, common_h = block_w, block_h
        for other, other_band in also:
            w, h = _block(other, other_band, width, height)
            common_w, common_h = math.lcm(common_w, w), math.lcm(common_h, h)
        if width * block_h <= target_pixels:
            unit_h = common_h if width * common_h <= 4 * target_pixels else block_h
            tile_w = width
            tile_h = unit_h * max(1, target_pixels // (width * unit_h))
        else:
            if common_w * common_h <= 4 * target_pixels:
                block_w, block_h = min(common_w, width), common_h
            side = max(1, int(math.sqrt(target_pixels)))
            tile_w = block_w * max(1, side // block_w)
            tile_h = block_h * max(1, side // block_h)
    return [
        Window(x, y, min(tile_w, width - x), min(tile_h, height - y))
        for y in range(0, height, tile_h)
        for x in range(0, width, tile_w)
    ]


def _block(dataset, band, width, height):
    w, h = dataset.GetRasterBand(band).GetBlockSize()
    return max(1, min(w, width)), max(1, min(h, height))


class TileReader:
    """Read windows of several rasters ahead of use, in background threads.

    ``sources`` is a list of ``(dataset_or_path, band_numbers, dtype)``
    (dtype None: the bands' own), optionally with a fourth item, the
    ``interleave`` of :func:`read_window`; iterating yields ``(window, [array, ...])``
    in window order, one array per source of shape
    ``(len(band_numbers), rows, cols)``. Each thread opens its own
    dataset handles (GDAL handles are not thread-safe); an in-memory dataset
    that cannot be reopened is read by a single thread.
    """

    def __init__(self, sources, windows, threads=2, depth=3):
        self.sources = [(src, list(bands), dtype, *rest) for src, bands, dtype, *rest in sources]
        for src, *_ in self.sources:
            if isinstance(src, gdal.Dataset):
                src.FlushCache()  # pending writes become visible to the reading handles
        self.windows = list(windows)
        reopenable = all(_reopenable(src) for src, *_ in self.sources)
        self.threads = max(1, int(threads)) if reopenable else 1
        self.depth = max(self.threads, int(depth))
        self._reopen = reopenable
        self._results = {}
        self._ready = threading.Condition()
        self._next = 0
        self._stop = False
        self._workers = []

    def __enter__(self):
        for index in range(self.threads):
            worker = threading.Thread(target=self._work, args=(index,), daemon=True)
            worker.start()
            self._workers.append(worker)
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def close(self):
        with self._ready:
            self._stop = True
            self._ready.notify_all()
        for worker in self._workers:
            worker.join()
        self._workers = []

    def _work(self, index):
        try:
            handles = [open_raster(raster_name(s)) if self._reopen else s
                       for s, *_ in self.sources]
        except Exception as error:  # reported at this thread's first window
            handles, failure = None, error
        for position in range(index, len(self.windows), self.threads):
            with self._ready:  # stay at most `depth` windows ahead of the consumer
                while position >= self._next + self.depth and not self._stop:
                    self._ready.wait()
                if self._stop:
                    return
            window = self.windows[position]
            try:
                if handles is None:
                    raise failure
                result = [read_window(ds, bands, window, dtype, *interleave)
                          for ds, (_, bands, dtype, *interleave)
                          in zip(handles, self.sources, strict=True)]
                if self._reopen:  # windows are read once: keep GDAL's block cache small
                    for ds in handles:
                        ds.FlushCache()
            except Exception as error:  # handed to the consumer, raised there
                result = error
            with self._ready:
                self._results[position] = result
                self._ready.notify_all()

    def __iter__(self):
        for position, window in enumerate(self.windows):
            with self._ready:
                while position not in self._results and not self._stop:
                    self._ready.wait()
                if self._stop:
                    return
                result = self._results.pop(position)
                self._next = position + 1
                self._ready.notify_all()
            if isinstance(result, Exception):
                raise result
            yield window, result


def _reopenable(source):
    if not isinstance(source, gdal.Dataset):
        return True
    name = source.GetDescription()
    driver = source.GetDriver()
    return bool(name) and driver is not None and driver.ShortName != "MEM" and (
        name.startswith("/vsi") or os.path.exists(name)
    )


def read_window(dataset, bands, window, dtype=None, interleave="band"):
    """Read ``bands`` of ``dataset`` in ``window`` as an array (bands, rows, cols); with
    ``interleave="pixel"`` its memory holds the bands of a pixel side by side (a
    (bands, rows, cols) view of a C-contiguous (rows, cols, bands) array)."""
    from osgeo import gdal_array

    gdal_bands = [dataset.GetRasterBand(b) for b in bands]
    signed = [is_signed_byte(b) for b in gdal_bands]
    if any(signed):
        return _read_signed_bytes(dataset, gdal_bands, signed, window, dtype, interleave)
    buf_type = None if dtype is None else gdal_array.NumericTypeCodeToGDALTypeCode(np.dtype(dtype))
    data = dataset.ReadAsArray(
        window.xoff, window.yoff, window.xsize, window.ysize, band_list=list(bands),
        buf_type=buf_type, interleave=interleave,
    )
    if data is None:
        raise _read_failed(dataset, window)
    if data.ndim == 2:
        return data[np.newaxis]
    return np.moveaxis(data, -1, 0) if interleave == "pixel" else data


def _read_signed_bytes(dataset, gdal_bands, signed, window, dtype, interleave):
    """:func:`read_window` band by band, the ``signed`` bands read as int8."""
    if dtype is None:
        dtype = np.result_type(*map(band_dtype, gdal_bands))
    shape = (window.ysize, window.xsize)
    if interleave == "pixel":
        out = np.moveaxis(np.empty(shape + (len(gdal_bands),), dtype), -1, 0)
    else:
        out = np.empty((len(gdal_bands),) + shape, dtype)
    for plane, band, is_signed in zip(out, gdal_bands, signed, strict=True):
        data = band.ReadAsArray(window.xoff, window.yoff, window.xsize, window.ysize)
        if data is None:
            raise _read_failed(dataset, window)
        plane[:] = data.view(np.int8) if is_signed else data
    return out


def _read_failed(dataset, window):
    return TesseraError(redact(
        f"Reading {raster_name(dataset)} failed at pixel ({window.xoff}, {window.yoff}): "
        f"{gdal.GetLastErrorMsg() or 'unknown GDAL error'}"
    ))


#: Creation options for tiled, compressed GeoTIFF outputs.
GTIFF_OPTIONS = ("TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER")


def create_raster(path, width, height, bands, dtype, geotransform=None, crs_wkt="",
                  nodata=None, driver="GTiff", options=None):
    """Create a raster file and return the open dataset (written by the caller)."""
    from osgeo import gdal_array

    gdal_type = gdal_array.NumericTypeCodeToGDALTypeCode(np.dtype(dtype))
    if gdal_type is None:
        raise TesseraError(f"GDAL cannot store pixels of type {np.dtype(dtype)} in "
                           f"{message_name(path)}.")
    if options is None:
        options = GTIFF_OPTIONS if driver == "GTiff" else ()
    options = list(options)
    if stored_as_signed_byte(dtype):
        options.append("PIXELTYPE=SIGNEDBYTE")
    gdal_driver = gdal.GetDriverByName(driver)
    if gdal_driver is None:
        raise TesseraError(f"This GDAL has no {driver} driver to write {message_name(path)}.")
    with gdal_quiet():
        dataset = gdal_driver.Create(os.fspath(path), int(width), int(height), int(bands),
                                     gdal_type, options=options)
    if dataset is None:
        raise TesseraError(redact(f"Cannot create raster {path}: {gdal.GetLastErrorMsg()}"))
    if geotransform is not None:
        dataset.SetGeoTransform(tuple(geotransform))
    if crs_wkt:
        dataset.SetProjection(crs_wkt)
    if nodata is not None:
        for number in range(1, bands + 1):
            dataset.GetRasterBand(number).SetNoDataValue(float(nodata))
    return dataset


def stored_as_signed_byte(dtype):
    """True when this GDAL stores ``dtype`` as Byte with PIXELTYPE=SIGNEDBYTE (int8
    before GDAL 3.7)."""
    from osgeo import gdal_array

    return (np.dtype(dtype) == np.int8
            and gdal_array.NumericTypeCodeToGDALTypeCode(np.int8) == gdal.GDT_Byte)


def as_stored(array):
    """``array`` as GDAL writes it: int8 as the bytes of a SIGNEDBYTE band."""
    return array.view(np.uint8) if stored_as_signed_byte(array.dtype) else array


def write_array(path, array, geotransform=(0.0, 1.0, 0.0, 0.0, 0.0, -1.0), crs_wkt="",
                nodata=None, driver="GTiff", options=None):
    """Write a 2-D ``(rows, cols)`` or 3-D ``(bands, rows, cols)`` array as a raster."""
    array = np.asarray(array)
    cube = array[np.newaxis] if array.ndim == 2 else array
    dataset = create_raster(path, cube.shape[2], cube.shape[1], cube.shape[0], cube.dtype,
                            geotransform, crs_wkt, nodata, driver, options)
    for number, plane in enumerate(cube, start=1):
        dataset.GetRasterBand(number).WriteArray(as_stored(plane))
    dataset.FlushCache()
    dataset = None
    return os.fspath(path)


_gdal_cache = SharedSetting()


def gdal_cache_limit(limit):
    """Cap GDAL's block cache (process-wide) at ``limit`` bytes while the block runs,
    never raising it, and restore the setting found once the last of the runs sharing the
    cap has ended (runs may overlap in threads). Blocks beyond the cap are dropped at once.
    """
    def lower():
        if gdal.GetCacheMax() > limit:
            gdal.SetCacheMax(int(limit))

    return _gdal_cache.held(gdal.GetCacheMax, gdal.SetCacheMax, lower)
