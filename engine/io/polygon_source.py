"""Reading polygons for zonal statistics: from a vector file (OGR) or from
``(feature id, geometry)`` pairs, into flat pixel-space ring arrays.

Geometries are read in chunks and handled with shapely's vectorised
functions: transformed to the raster's CRS when they are in another one
(OSR, traditional GIS axis order), checked, repaired with ``make_valid``
when invalid (its polygonal part is kept), then flattened into the layout of
:mod:`tessera.engine.zonal.polygon_raster` in pixel coordinates. Vertex arrays spill to a
temporary file when they grow large, so millions of polygons stay in bounded
memory.
"""

import os
import tempfile
from dataclasses import dataclass, field

import numpy as np
from osgeo import gdal, ogr, osr

from ..errors import TesseraError

#: Features converted per chunk.
CHUNK_FEATURES = 20_000
#: Vertex bytes kept in memory before spilling to a temporary file.
SPILL_BYTES = 256 << 20
POLYGONAL = {"Polygon", "MultiPolygon"}


@dataclass
class PolygonSet:
    """Polygons in pixel space (see :mod:`tessera.engine.zonal.polygon_raster` for the layout)."""

    fids: np.ndarray        # int64 feature ids, in input order
    xs: np.ndarray          # float64 vertex columns
    ys: np.ndarray          # float64 vertex rows
    ring_start: np.ndarray  # int64, n_rings + 1
    ring_sign: np.ndarray   # float64, n_rings
    poly_ring: np.ndarray   # int64, n_polygons + 1
    notes: list = field(default_factory=list)  # what was transformed, repaired, skipped
    _folder: object = None

    def __len__(self):
        return len(self.fids)

    def close(self):
        """Remove the temporary file holding spilled vertices, if any."""
        self.xs = self.ys = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


#: The placeholder CRSs of GeoPackage (srs_id 0 and -1): no CRS at all, named as one.
UNDEFINED_CRS_NAMES = ("Undefined geographic SRS", "Undefined Cartesian SRS")


def crs_from(value):
    """An OSR SpatialReference (traditional GIS axis order) from WKT, 'EPSG:n',
    an int EPSG code or a SpatialReference; None for None or ''."""
    if value is None or value == "":
        return None
    if isinstance(value, osr.SpatialReference):
        srs = value.Clone()
    else:
        srs = osr.SpatialReference()
        text = str(value)
        if srs.SetFromUserInput(text) != 0:
            raise TesseraError(f"Cannot understand the coordinate reference system {text[:80]}.")
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    return srs


def open_layer(path, layer=None):
    """Open an OGR vector layer: ``path`` or ``path|layername=name``; returns (dataset, layer)."""
    path = os.fspath(path)
    if "|layername=" in path and layer is None:
        path, layer = path.split("|layername=", 1)
        layer = layer.split("|")[0]
    if not path.startswith("/vsi") and not os.path.exists(path):
        raise TesseraError(f"Vector file not found: {path}")
    gdal.ErrorReset()
    dataset = gdal.OpenEx(path, gdal.OF_VECTOR)
    if dataset is None:
        raise TesseraError(f"Cannot open {path} as a vector layer: "
                           f"{gdal.GetLastErrorMsg() or 'GDAL cannot read it'}")
    found = dataset.GetLayerByName(layer) if layer else dataset.GetLayer(0)
    if found is None:
        raise TesseraError(f"{path} has no layer {layer!r}." if layer else f"{path} has no layer.")
    return dataset, found


def layer_features(layer):
    """Yield ``(fid, wkb or None)`` of every feature of an OGR layer."""
    layer.ResetReading()
    for feature in layer:
        geometry = feature.GetGeometryRef()
        yield feature.GetFID(), (None if geometry is None else bytes(geometry.ExportToIsoWkb()))


def read_polygons(features, source_crs, raster_ds, source_name="the polygon layer",
                  check=None):
    """Read ``(fid, geometry)`` pairs (WKB bytes, shapely or OGR geometries) whose
    coordinates are in ``source_crs`` into a :class:`PolygonSet` on ``raster_ds``'s grid;
    ``check()`` is called between chunks (it may raise to cancel)."""
    import shapely

    from ..zonal.polygon_raster import ring_signs as compute_signs

    notes = []
    transform = _transformer(source_crs, raster_ds, source_name, notes)
    to_pixel = _pixel_mapping(raster_ds)
    store = _VertexStore()
    fids, ring_starts, ring_signs, poly_rings = [], [], [], []
    counts = {"repaired": 0, "unrepairable": 0, "not polygonal": 0, "empty": 0}
    vertex_base = ring_base = 0
    chunk = []
    for item in _with_end(features):
        if item is not None:
            chunk.append(item)
        if chunk and (item is None or len(chunk) >= CHUNK_FEATURES):
            if check is not None:
                check()
            ids = np.fromiter((fid for fid, _ in chunk), np.int64, len(chunk))
            geometries = shapely.from_wkb([_wkb(g) for _, g in chunk], on_invalid="ignore")
            chunk = []
            geometries = _polygonal(geometries, transform, counts, shapely)
            coords, ring_offsets, part_offsets, geom_offsets = _ring_arrays(geometries, shapely)
            cols, rows = to_pixel(coords[:, 0], coords[:, 1])
            signs = np.zeros(len(ring_offsets) - 1, np.float64)
            compute_signs(cols, rows, ring_offsets, part_offsets, signs)
            store.append(cols, rows)
            fids.append(ids)
            ring_starts.append(ring_offsets[:-1] + vertex_base)
            ring_signs.append(signs)
            poly_rings.append(part_offsets[geom_offsets[:-1]] + ring_base)
            vertex_base += len(coords)
            ring_base += len(ring_offsets) - 1
    xs, ys, folder = store.finish()
    _describe(counts, notes)
    return PolygonSet(
        fids=np.concatenate(fids) if fids else np.zeros(0, np.int64),
        xs=xs, ys=ys,
        ring_start=np.concatenate(ring_starts + [np.array([vertex_base], np.int64)]),
        ring_sign=np.concatenate(ring_signs) if ring_signs else np.zeros(0),
        poly_ring=np.concatenate(poly_rings + [np.array([ring_base], np.int64)]),
        notes=notes, _folder=folder)


def _with_end(iterable):
    yield from iterable
    yield None


def _wkb(geometry):
    if geometry is None or isinstance(geometry, (bytes, bytearray, memoryview)):
        return None if geometry is None else bytes(geometry)
    if isinstance(geometry, ogr.Geometry):
        return bytes(geometry.ExportToIsoWkb())
    if hasattr(geometry, "wkb"):
        return geometry.wkb
    raise TesseraError(f"Cannot read a geometry of type {type(geometry).__name__}.")


def _polygonal(geometries, transform, counts, shapely):
    """Transformed, valid, polygonal geometries (None where nothing polygonal is left)."""
    missing = shapely.is_missing(geometries)
    geometries[missing] = None
    present = ~missing
    counts["empty"] += int(missing.sum())
    if transform is not None and present.any():
        geometries[present] = shapely.transform(geometries[present], transform)
    kinds = shapely.get_type_id(geometries)
    others = present & ~np.isin(kinds, (3, 6))  # neither Polygon nor MultiPolygon
    for index in np.flatnonzero(others):
        kept = _polygonal_parts(geometries[index], shapely)
        if kept is None:
            counts["not polygonal"] += 1
        geometries[index] = kept
    present = ~shapely.is_missing(geometries)
    invalid = present & ~shapely.is_valid(geometries)
    for index in np.flatnonzero(invalid):
        try:
            repaired = _polygonal_parts(shapely.make_valid(geometries[index]), shapely)
        except Exception:  # GEOS could not repair it: reported, never a crash
            repaired = None
        if repaired is None:
            counts["unrepairable"] += 1
        else:
            counts["repaired"] += 1
        geometries[index] = repaired
    empty = ~shapely.is_missing(geometries) & shapely.is_empty(geometries)
    counts["empty"] += int(empty.sum())
    return geometries


def _polygonal_parts(geometry, shapely):
    """The polygons of any geometry as one (Multi)Polygon, or None."""
    parts = [p for p in shapely.get_parts(geometry) if p.geom_type in POLYGONAL]
    polygons = [q for p in parts for q in (shapely.get_parts(p) if p.geom_type ==
                                           "MultiPolygon" else [p])]
    polygons = [p for p in polygons if not p.is_empty]
    if not polygons:
        return None
    return shapely.MultiPolygon(polygons) if len(polygons) > 1 else polygons[0]


def _ring_arrays(geometries, shapely):
    """(coords (n, 2), ring offsets, part -> ring offsets, geometry -> part offsets)."""
    if shapely.is_missing(geometries).all():
        zero = np.zeros(1, np.int64)
        return np.zeros((0, 2)), zero, zero, np.zeros(len(geometries) + 1, np.int64)
    try:  # no M asked for: shapely >= 2.1 would else ask GEOS (GEOSHasM, GEOS >= 3.12),
        # and inside QGIS an older GEOS loaded first answers with a GEOSException
        kind, coords, offsets = shapely.to_ragged_array(geometries, include_m=False)
    except TypeError:  # shapely 2.0: no M at all
        kind, coords, offsets = shapely.to_ragged_array(geometries)
    offsets = [np.asarray(o, np.int64) for o in offsets]
    if kind == shapely.GeometryType.POLYGON:  # one part per geometry
        ring_offsets, part_offsets = offsets
        geom_offsets = np.arange(len(part_offsets), dtype=np.int64)
    else:
        ring_offsets, part_offsets, geom_offsets = offsets
    return coords, ring_offsets, part_offsets, geom_offsets


def _transformer(source_crs, raster_ds, source_name, notes):
    """A function (n, 2) -> (n, 2) from the polygons' CRS to the raster's, or None."""
    target_wkt = raster_ds.GetProjection()
    source = crs_from(source_crs)
    if source is None or not target_wkt:
        if source is None and target_wkt:
            notes.append(f"{source_name} has no coordinate reference system: its coordinates "
                         "are taken to be in the raster's.")
        return None
    if source.GetName() in UNDEFINED_CRS_NAMES:
        raise TesseraError(
            f"{source_name} has an undefined coordinate reference system ({source.GetName()}), "
            "so its polygons cannot be placed on the raster. Assign it its real CRS (in QGIS: "
            "Processing ▸ Vector general ▸ Assign projection), then run again.")
    target = crs_from(target_wkt)
    if source.IsSame(target):
        return None
    transformation = osr.CoordinateTransformation(source, target)
    notes.append(f"{source_name} is in {source.GetName()}; its polygons were transformed to the "
                 f"raster's CRS {target.GetName()}.")

    def transform(coords):
        if not len(coords):
            return coords
        moved = np.asarray(transformation.TransformPoints(np.ascontiguousarray(coords)),
                           np.float64)
        return moved[:, :2]

    return transform


def _pixel_mapping(raster_ds):
    """A function (x, y) -> (column, row) in pixel units of the raster."""
    gt = raster_ds.GetGeoTransform()
    if gt[2] == 0.0 and gt[4] == 0.0:
        def to_pixel(x, y):
            return (x - gt[0]) / gt[1], (y - gt[3]) / gt[5]
        return to_pixel
    inverse = gdal.InvGeoTransform(gt)
    if inverse is None:
        raise TesseraError("The raster's geotransform cannot be inverted.")

    def to_rotated_pixel(x, y):
        return (inverse[0] + inverse[1] * x + inverse[2] * y,
                inverse[3] + inverse[4] * x + inverse[5] * y)

    return to_rotated_pixel


def _describe(counts, notes):
    if counts["repaired"]:
        notes.append(f"{counts['repaired']} invalid polygon(s) were repaired (make_valid).")
    if counts["unrepairable"]:
        notes.append(f"{counts['unrepairable']} invalid polygon(s) could not be repaired: they "
                     "get no statistics.")
    if counts["not polygonal"]:
        notes.append(f"{counts['not polygonal']} feature(s) have no polygon (points or lines): "
                     "they get no statistics.")
    if counts["empty"]:
        notes.append(f"{counts['empty']} feature(s) have an empty or missing geometry.")


class _VertexStore:
    """Vertex columns/rows appended chunk by chunk; spilled to a temporary file past
    :data:`SPILL_BYTES`."""

    def __init__(self):
        self.chunks = []
        self.bytes = 0
        self.folder = None
        self.files = None
        self.count = 0

    def append(self, xs, ys):
        self.count += len(xs)
        if self.folder is None:
            self.chunks.append((np.asarray(xs, np.float64), np.asarray(ys, np.float64)))
            self.bytes += 16 * len(xs)
            if self.bytes > SPILL_BYTES:
                self._spill()
            return
        for values, stream in zip((xs, ys), self.files, strict=True):
            np.asarray(values, np.float64).tofile(stream)

    def _spill(self):
        self.folder = tempfile.TemporaryDirectory(prefix="tessera-polygons-")
        self.files = [open(os.path.join(self.folder.name, name), "wb") for name in ("x", "y")]
        for xs, ys in self.chunks:
            xs.tofile(self.files[0])
            ys.tofile(self.files[1])
        self.chunks = []

    def finish(self):
        """(xs, ys, temporary folder or None)."""
        if self.folder is None:
            if not self.chunks:
                return np.zeros(0), np.zeros(0), None
            return (np.concatenate([c[0] for c in self.chunks]),
                    np.concatenate([c[1] for c in self.chunks]), None)
        for stream in self.files:
            stream.close()
        arrays = [np.memmap(os.path.join(self.folder.name, name), np.float64, "r",
                            shape=(self.count,)) for name in ("x", "y")]
        return arrays[0], arrays[1], self.folder
