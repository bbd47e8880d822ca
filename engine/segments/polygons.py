"""Segments as polygons: one (multi)polygon per segment id, with RAT columns as fields.

    from tessera.engine.segments.polygons import segment_polygons
    segment_polygons("segments.tif", "segments.gpkg", columns=["b1_mean"])

The segment raster is polygonized window by window with GDAL's polygonize
(4-connected, in pixel coordinates so that pieces of one segment from
neighbouring windows share exact edges). A segment is finished when all its
pixels have been seen (per-id pixel counts from the band's histogram, else
from a counting pass): its pieces are merged (shapely ``union_all``), moved
to map coordinates and handed out. Memory holds the pieces of the segments
still open plus one window, whatever the raster's size.
"""

import os
import time
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal, ogr, osr

from ..dependencies import require
from ..errors import TesseraError
from ..io.raster_io import (
    TileReader,
    band_dtype,
    gdal_quiet,
    get_band,
    open_raster,
    plan_windows,
    raster_name,
)
from ..progress import Progress
from ..rat.lookup import numeric_columns, open_segment_rat, read_lookup
from ..rat.tables import is_zarr_target
from .pipeline import segment_null_id

#: Pixels per polygonized window.
WINDOW_PIXELS = 1 << 22
#: Features written per transaction.
TRANSACTION_FEATURES = 20_000
#: What to do about a histogram that disagrees with the raster.
HISTOGRAM_ADVICE = ("the band's Histogram RAT column is out of date; delete that column (or "
                    "the .aux.xml) and run again, the pixels are then counted.")
#: The id field of every output.
ID_FIELD = "segment_id"


@dataclass
class PolygonBatch:
    """Finished segments: their ids and (multi)polygons in map coordinates (shapely)."""

    ids: np.ndarray
    geometries: np.ndarray


@dataclass
class SegmentPolygonsResult:
    """What :func:`segment_polygons` wrote."""

    output: str
    layer: str
    feature_count: int
    fields: list
    timings: dict = field(default_factory=dict)


def iter_segment_polygons(segments, segment_band=1, window_size=None, progress=None,
                          cancelled=None):
    """Yield :class:`PolygonBatch` es covering every segment of ``segments`` once.

    ``window_size`` (pixels a side) sets the polygonized windows (default:
    strips of about four million pixels).
    """
    require("numba", "shapely", purpose="Segment polygons")
    import shapely

    from .collector import count_ids
    from .pipeline import count_segment_pixels, read_histogram

    reporter = progress if isinstance(progress, Progress) else Progress(progress, cancelled)
    seg_ds = open_raster(segments)
    band = get_band(seg_ds, segment_band, "segment raster")
    if band_dtype(band).kind not in "iu":
        raise TesseraError(f"The segment raster {raster_name(seg_ds)} holds {band_dtype(band)} "
                           "values; segment ids must be integers.")
    null_id = segment_null_id(band)
    totals = read_histogram(seg_ds, segment_band)
    share = 0.0
    if totals is None:
        share = 0.2
        reporter.phase(0.0, share, "Counting the pixels of every segment")
        totals = count_segment_pixels(seg_ds, segment_band, null_id, reporter)
    seen = np.zeros(len(totals), np.int64)
    done_ids = np.zeros(len(totals), np.bool_)
    transform = _pixel_to_map(seg_ds.GetGeoTransform())
    windows = plan_windows(seg_ds, segment_band, target_pixels=WINDOW_PIXELS,
                           window_size=window_size)
    pending = {}  # id -> pieces (pixel coordinates) of segments not finished yet
    total = sum(w.xsize * w.ysize for w in windows)
    done = 0
    reporter.phase(share, 1.0, "Polygonizing the segments")
    with TileReader([(seg_ds, [segment_band], np.int32)], windows) as reader:
        for window, (tile,) in reader:
            reporter.check()
            ids, pieces = _polygonize(tile[0], window, null_id)
            largest, smallest = count_ids(tile[0], null_id, seen)
            if smallest < 0:
                raise TesseraError(f"The segment raster {raster_name(seg_ds)} holds the id "
                                   f"{smallest} (or an id above 2**31 - 1); segment ids must be "
                                   "0 .. 2**31 - 2.")
            if largest >= len(seen):
                raise TesseraError(f"The histogram of {raster_name(seg_ds)} misses id "
                                   f"{largest}: {HISTOGRAM_ADVICE}")
            finished_ids, finished = _finish(ids, pieces, seen, totals, done_ids, pending,
                                             raster_name(seg_ds))
            if len(finished_ids):
                yield _batch(finished_ids, finished, transform)
            done += window.xsize * window.ysize
            reporter.update(done / total)
    if pending:  # a histogram larger than the raster's counts: hand the rest out too
        keys = sorted(pending)
        yield _batch(keys, [shapely.union_all(pending[k]) for k in keys], transform)


def _finish(ids, pieces, seen, totals, done_ids, pending, name):
    """(ids, geometries in pixel coordinates) of the segments a window finishes; pieces of
    the others go to ``pending``. A segment whose pieces all come from this window gets them
    as one multipolygon without a union (4-connected pieces of one value touch at most at
    corners); a segment that crossed windows is merged with ``union_all``."""
    import shapely

    if not len(ids):
        return np.empty(0, np.int64), np.empty(0, object)
    order = np.argsort(ids, kind="stable")
    ids, pieces = ids[order], pieces[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    counts = np.diff(np.r_[starts, len(ids)])
    unique = ids[starts]
    if done_ids[unique].any():
        sid = int(unique[done_ids[unique]][0])
        raise TesseraError(f"Segment {sid} of {name} has more pixels than its histogram says: "
                           f"{HISTOGRAM_ADVICE}")
    complete = seen[unique] >= totals[unique]
    earlier = (np.fromiter((int(s) in pending for s in unique), np.bool_, len(unique))
               if pending else np.zeros(len(unique), np.bool_))
    whole = complete & ~earlier
    geometries = np.empty(len(unique), object)
    single = whole & (counts == 1)
    geometries[single] = pieces[starts[single]]
    several = whole & (counts > 1)
    if several.any():
        group = np.repeat(np.arange(len(unique)), counts)
        chosen = several[group]
        target = (np.cumsum(several) - 1)[group[chosen]]
        geometries[several] = shapely.multipolygons(pieces[chosen], indices=target)
    for k in np.flatnonzero(~whole):
        sid = int(unique[k])
        parts = pieces[starts[k]:starts[k] + counts[k]]
        if sid in pending:
            parts = np.concatenate([pending.pop(sid), parts])
        if complete[k]:
            geometries[k] = shapely.union_all(parts)
        else:
            pending[sid] = parts
    done_ids[unique[complete]] = True
    return unique[complete], geometries[complete]


def _polygonize(tile, window, null_id):
    """(ids, shapely polygons in pixel coordinates of the whole raster) of one window."""
    import shapely

    rows, cols = tile.shape
    memory = gdal.GetDriverByName("MEM")
    source = memory.Create("", cols, rows, 2, gdal.GDT_Int32)
    source.SetGeoTransform((float(window.xoff), 1.0, 0.0, float(window.yoff), 0.0, 1.0))
    source.GetRasterBand(1).WriteArray(tile)
    source.GetRasterBand(2).WriteArray((tile != null_id).astype(np.int32))
    layer_source = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = layer_source.CreateLayer("pieces", geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("id", ogr.OFTInteger))
    with gdal_quiet():
        failed = gdal.Polygonize(source.GetRasterBand(1), source.GetRasterBand(2), layer, 0,
                                 [], callback=None)
    if failed:
        raise TesseraError(f"Polygonizing the window at pixel ({window.xoff}, {window.yoff}) "
                           f"failed: {gdal.GetLastErrorMsg()}")
    ids, wkbs = [], []
    for feature in layer:
        ids.append(feature.GetFieldAsInteger64(0))
        wkbs.append(bytes(feature.GetGeometryRef().ExportToWkb()))
    return np.asarray(ids, np.int64), shapely.from_wkb(wkbs)


def _pixel_to_map(geotransform):
    x0, gx, rx, y0, ry, gy = geotransform
    matrix = np.array([[gx, ry], [rx, gy]])
    offset = np.array([x0, y0])
    return lambda coords: coords @ matrix + offset


def _batch(ids, geometries, transform):
    import shapely

    moved = shapely.transform(np.asarray(geometries, dtype=object), transform)
    single = shapely.get_type_id(moved) == 3  # Polygon -> MultiPolygon: one type per layer
    if single.any():
        moved[single] = shapely.multipolygons(moved[single][:, np.newaxis])
    return PolygonBatch(np.asarray(ids, np.int64), moved)


class SegmentAttributes:
    """RAT columns of a segmentation as field values by segment id.

    Values are the RAT's own (integer columns as integers); NaN and ids the
    RAT has no row for give None (NULL).
    """

    def __init__(self, segments, segment_band=1, rat=None, rat_band=1, columns=None,
                 progress=None, cancelled=None):
        self.columns, self.kinds, self._tables = [], [], []
        if not columns:
            return
        with open_segment_rat(open_raster(segments), segment_band, rat, rat_band) as table:
            self.columns = numeric_columns(table, columns)
            for name in self.columns:
                kind = table.column_kind(name)
                dtype = np.dtype(np.int64 if kind == "integer" else np.float64)
                lookup = read_lookup(table, [name], dtype, 0 if kind == "integer" else np.nan,
                                     progress=progress, cancelled=cancelled)
                self.kinds.append(kind)
                self._tables.append(lookup.table[:, 0])

    def values(self, ids):
        """Per column, the values of ``ids`` as a list of Python numbers or None."""
        out = []
        for table in self._tables:
            inside = ids < len(table) - 1
            values = table[np.where(inside, ids, len(table) - 1)].tolist()
            if table.dtype.kind == "f":
                values = [None if v != v else v for v in values]
            out.append([v if ok else None for v, ok in zip(values, inside.tolist(),
                                                            strict=True)])
        return out


def segment_polygons(segments, output, columns=None, *, rat=None, segment_band=1, rat_band=1,
                     layer_name=None, overwrite=False, window_size=None, progress=None,
                     cancelled=None) -> SegmentPolygonsResult:
    """Write one multipolygon per segment to the GeoPackage ``output``.

    Fields: ``segment_id``, then ``columns`` of the RAT (``rat`` None: the
    segment file's own; a GDAL file; a ``.zarr`` store), as they are in the
    RAT (NaN as NULL). The file is written beside ``output`` and renamed when
    complete; an existing ``output`` is replaced only with ``overwrite``.
    """
    started = time.perf_counter()
    output = os.fspath(output)
    if not output.lower().endswith(".gpkg"):
        raise TesseraError(f"The output {output} must be a GeoPackage: give a name ending .gpkg.")
    from ..io.output_safety import Publication, TargetLock, check_targets

    rat_file = None if rat in (None, "") or is_zarr_target(rat) else rat
    check_targets([(output, "output layer")],
                  [(raster_name(segments), "segment raster"), (rat_file, "RAT file")], overwrite)
    reporter = Progress(progress, cancelled)
    attributes = SegmentAttributes(segments, segment_band, rat, rat_band, columns)
    seg_ds = open_raster(segments)
    layer_name = layer_name or os.path.splitext(os.path.basename(output))[0]
    with TargetLock(output, cancelled=cancelled), Publication() as publication:
        temporary = publication.add(output)
        count = _write_gpkg(temporary, layer_name, seg_ds, segment_band, attributes,
                            window_size, reporter)
    return SegmentPolygonsResult(output, layer_name, count,
                                 [ID_FIELD, *attributes.columns],
                                 {"total": time.perf_counter() - started})


def _write_gpkg(path, layer_name, seg_ds, segment_band, attributes, window_size, reporter):
    """Write every segment's polygon to a new GeoPackage ``path``; the feature count."""
    import shapely

    dataset = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    if dataset is None:
        raise TesseraError(f"Cannot create the GeoPackage {path}: {gdal.GetLastErrorMsg()}")
    srs = None
    if seg_ds.GetProjection():
        srs = osr.SpatialReference()
        srs.ImportFromWkt(seg_ds.GetProjection())
        srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    layer = dataset.CreateLayer(layer_name, srs, ogr.wkbMultiPolygon, ["SPATIAL_INDEX=YES"])
    layer.CreateField(ogr.FieldDefn(ID_FIELD, ogr.OFTInteger64))
    for name, kind in zip(attributes.columns, attributes.kinds, strict=True):
        layer.CreateField(ogr.FieldDefn(name, ogr.OFTInteger64 if kind == "integer"
                                        else ogr.OFTReal))
    definition = layer.GetLayerDefn()
    count = 0
    layer.StartTransaction()
    for batch in iter_segment_polygons(seg_ds, segment_band, window_size, reporter):
        # 2-D WKB said explicitly: in QGIS desktop shapely may run on QGIS's older GEOS
        wkbs = shapely.to_wkb(batch.geometries, output_dimension=2)
        values = attributes.values(batch.ids)
        for index, (sid, wkb) in enumerate(zip(batch.ids.tolist(), wkbs, strict=True)):
            feature = ogr.Feature(definition)
            feature.SetField(0, sid)
            for column, column_values in enumerate(values, start=1):
                value = column_values[index]
                if value is None:
                    feature.SetFieldNull(column)
                else:
                    feature.SetField(column, value)
            feature.SetGeometryDirectly(ogr.CreateGeometryFromWkb(wkb))
            if layer.CreateFeature(feature) != 0:
                raise TesseraError(f"Writing {path} failed: {gdal.GetLastErrorMsg()}")
            count += 1
            if count % TRANSACTION_FEATURES == 0:
                layer.CommitTransaction()
                layer.StartTransaction()
    if layer.CommitTransaction() != 0:
        raise TesseraError(f"Writing {path} failed: {gdal.GetLastErrorMsg()}")
    layer = dataset = None
    return count
