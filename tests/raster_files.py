"""Small raster fixtures written to temporary folders for the tests."""

import numpy as np
from osgeo import gdal, osr

from tessera.engine.io.raster_io import write_array


def utm_wkt(zone=33):
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32600 + zone)
    return srs.ExportToWkt()


GEOTRANSFORM = (500000.0, 10.0, 0.0, 6000000.0, 0.0, -10.0)


def blocky_segments(rows, cols, block_rows, block_cols, seed=0, dtype=np.uint32, first_id=1):
    """Rectangular segments numbered in random order (ids from ``first_id``)."""
    grid = (np.arange(rows)[:, None] // block_rows) * (-(-cols // block_cols)) + (
        np.arange(cols)[None, :] // block_cols)
    count = int(grid.max()) + 1
    ids = np.random.default_rng(seed).permutation(count) + first_id
    return ids[grid].astype(dtype)


def speckled_segments(rows, cols, block, speck_share, seed):
    """Ragged blocks (demo sample segmentation) with specks of random other ids and 2 %
    null pixels: concave, holed and split segments, ids in random order."""
    import sample_data

    seg = sample_data.segmentation(rows, cols, block, seed=seed)
    rng = np.random.default_rng(seed)
    specks = rng.random((rows, cols)) < speck_share
    seg[specks] = rng.integers(1, seg.max() + 1, specks.sum())
    seg[rng.random((rows, cols)) < 0.02] = 0
    return seg


def write_raster(path, array, nodata=None, geotransform=GEOTRANSFORM, crs_wkt=None,
                 driver="GTiff", options=None):
    """Write an array (2-D or bands x rows x cols) as a georeferenced raster."""
    return write_array(path, array, geotransform, utm_wkt() if crs_wkt is None else crs_wkt,
                       nodata, driver, options)


def read_rat(path, band=1):
    """All RAT columns of a raster as a dict name -> array (reopened with GDAL)."""
    dataset = gdal.Open(str(path))
    rat = dataset.GetRasterBand(band).GetDefaultRAT()
    if rat is None:
        return {}
    return {rat.GetNameOfCol(i): rat.ReadAsArray(i) for i in range(rat.GetColumnCount())}


def add_histogram(path, band=1):
    """Give a segment raster a Histogram RAT column (pixel count per id)."""
    dataset = gdal.Open(str(path), gdal.GA_Update)
    data = dataset.GetRasterBand(band).ReadAsArray()
    counts = np.bincount(data.ravel().astype(np.int64))
    existing = dataset.GetRasterBand(band).GetDefaultRAT()
    rat = existing.Clone() if existing is not None else gdal.RasterAttributeTable()
    existing = None  # owned by the band: never hand it back to SetDefaultRAT
    rat.SetRowCount(len(counts))
    rat.CreateColumn("Histogram", gdal.GFT_Real, gdal.GFU_PixelCount)
    rat.WriteArray(counts.astype(np.float64), rat.GetColumnCount() - 1, 0)
    dataset.GetRasterBand(band).SetDefaultRAT(rat)
    rat = dataset = None
    return counts
