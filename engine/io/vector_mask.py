"""Polygons limiting which pixels feed the normalization statistics.

``VectorMask(path, mode, field)``: with ``mode`` "include" only pixels whose
centres fall inside the polygons count, with "exclude" only those outside.
With ``field``, an image uses only the features whose field value contains
the image's base name (a substring match, as spectralmatch does). The
correction itself is still applied to every pixel.
"""

import os

import numpy as np
from osgeo import gdal, ogr, osr

from ..errors import TesseraError
from .raster_io import gdal_quiet

MASK_MODES = ("include", "exclude")


class VectorMask:
    """A polygon layer read once; :meth:`for_image` gives each image's pixel mask."""

    def __init__(self, path, mode="include", field=None, layer=None):
        if mode not in MASK_MODES:
            raise TesseraError(f"Unknown mask mode '{mode}'; use 'include' or 'exclude'.")
        self.path = os.fspath(path)
        self.mode = mode
        self.field = field or None
        source, layer_name = _split_source(self.path)
        if layer is None:
            layer = layer_name
        with gdal_quiet():
            dataset = ogr.Open(source) if os.path.exists(source) or source.startswith("/vsi") \
                else None
        if dataset is None:
            raise TesseraError(f"Cannot open the vector mask {source}: not a readable vector file.")
        ogr_layer = dataset.GetLayerByName(layer) if layer else dataset.GetLayer(0)
        if ogr_layer is None:
            raise TesseraError(f"The vector mask {source} has no layer "
                               f"{'named ' + repr(layer) if layer else 'at all'}.")
        definition = ogr_layer.GetLayerDefn()
        fields = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
        if self.field is not None and self.field not in fields:
            raise TesseraError(f"The vector mask {source} has no field '{self.field}' "
                               f"(fields: {', '.join(fields) or 'none'}).")
        self.source = source
        srs = ogr_layer.GetSpatialRef()
        self.crs_wkt = srs.ExportToWkt() if srs is not None else ""
        self._features = []  # (field value or None, WKB)
        for feature in ogr_layer:
            geometry = feature.GetGeometryRef()
            if geometry is None or geometry.IsEmpty():
                continue
            if ogr.GT_Flatten(geometry.GetGeometryType()) not in (
                    ogr.wkbPolygon, ogr.wkbMultiPolygon, ogr.wkbCurvePolygon,
                    ogr.wkbMultiSurface, ogr.wkbGeometryCollection):
                raise TesseraError(f"The vector mask {source} holds non-polygon geometries; "
                                   "a mask must be polygons.")
            value = feature.GetField(self.field) if self.field else None
            self._features.append((None if value is None else str(value),
                                   bytes(geometry.ExportToWkb())))
        dataset = None

    def for_image(self, name, crs_wkt):
        """The :class:`ImageMask` of image ``name`` (geometries moved to its CRS)."""
        chosen = [wkb for value, wkb in self._features
                  if self.field is None or (value is not None and name in value)]
        transform = None
        if self.crs_wkt and crs_wkt:
            source, target = osr.SpatialReference(), osr.SpatialReference()
            source.ImportFromWkt(self.crs_wkt)
            target.ImportFromWkt(crs_wkt)
            if not source.IsSame(target):
                for srs in (source, target):
                    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
                transform = osr.CoordinateTransformation(source, target)
        geometries = []
        for wkb in chosen:
            geometry = ogr.CreateGeometryFromWkb(wkb)
            if transform is not None:
                geometry.Transform(transform)
            geometries.append((geometry.GetEnvelope(), bytes(geometry.ExportToWkb())))
        return ImageMask(geometries, self.mode == "include")


class ImageMask:
    """Which pixels of one image feed the statistics, rasterized window by window."""

    def __init__(self, geometries, include):
        self.geometries = geometries  # [(envelope (minx, maxx, miny, maxy), WKB)]
        self.include = include

    def pixels(self, geotransform, rows, cols):
        """A uint8 array (rows, cols): 1 where the pixel is used for statistics.

        ``geotransform`` is that of the window; pixels count as inside a polygon
        when their centre is (GDAL's rasterization rule).
        """
        x0, px, _, y0, _, py = geotransform
        minx, maxx = x0, x0 + px * cols
        miny, maxy = y0 + py * rows, y0
        wanted = [wkb for (gx0, gx1, gy0, gy1), wkb in self.geometries
                  if gx0 <= maxx and gx1 >= minx and gy0 <= maxy and gy1 >= miny]
        inside = np.zeros((rows, cols), np.uint8)
        if wanted:
            raster = gdal.GetDriverByName("MEM").Create("", cols, rows, 1, gdal.GDT_Byte)
            raster.SetGeoTransform(tuple(geotransform))
            source = ogr.GetDriverByName("Memory").CreateDataSource("")
            layer = source.CreateLayer("mask", geom_type=ogr.wkbMultiPolygon)
            for wkb in wanted:
                feature = ogr.Feature(layer.GetLayerDefn())
                feature.SetGeometry(ogr.CreateGeometryFromWkb(wkb))
                layer.CreateFeature(feature)
            with gdal_quiet():  # neither side has a CRS: both are the image's
                gdal.RasterizeLayer(raster, [1], layer, burn_values=[1])
            inside = raster.ReadAsArray().astype(np.uint8)
        return inside if self.include else (1 - inside).astype(np.uint8)


def _split_source(path):
    """``file.gpkg|layername=x`` (a QGIS source string) -> (file, layer name or None)."""
    parts = path.split("|")
    layer = None
    for part in parts[1:]:
        if part.startswith("layername="):
            layer = part.split("=", 1)[1]
    return parts[0], layer
