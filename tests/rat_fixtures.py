"""RATs written for the tests with GDAL and zarr directly (not through Tessera)."""

import numpy as np
from osgeo import gdal

_GFT = {"i": gdal.GFT_Integer, "f": gdal.GFT_Real}


def write_gdal_rat(path, columns, band=1):
    """Give band ``band`` of the raster ``path`` a RAT with ``columns`` (name -> array)."""
    dataset = gdal.Open(str(path), gdal.GA_Update)
    rat = gdal.RasterAttributeTable()
    rows = len(next(iter(columns.values())))
    rat.SetRowCount(rows)
    for index, (name, values) in enumerate(columns.items()):
        values = np.asarray(values)
        rat.CreateColumn(name, _GFT[values.dtype.kind if values.dtype.kind == "f" else "i"],
                         gdal.GFU_Generic)
        rat.WriteArray(values.astype(np.float64 if values.dtype.kind == "f" else np.int32),
                       index, 0)
    dataset.GetRasterBand(band).SetDefaultRAT(rat)
    rat = dataset = None


def write_rat_file(path, columns):
    """A one-pixel Erdas Imagine file holding only a RAT."""
    gdal.GetDriverByName("HFA").Create(str(path), 1, 1, 1, gdal.GDT_UInt32).FlushCache()
    write_gdal_rat(path, columns)


def write_zarr_store(path, columns, chunk=7):
    """A Zarr RAT store in the ratzarr layout, written with zarr itself."""
    import zarr

    rows = len(next(iter(columns.values())))
    root = zarr.open_group(str(path), mode="w", zarr_format=3)
    group = root.create_group("RAT", attributes={"ROWCOUNT": rows, "CHUNKSIZE": chunk})
    for name, values in columns.items():
        values = np.asarray(values)
        array = group.create_array(name, shape=(rows,), chunks=(chunk,), dtype=values.dtype)
        array[:] = values
    return str(path)


def segment_case(rows=45, cols=70, seed=5):
    """Segments (uint32, null id 0 on a few pixels, ids in random order, one id past the
    RAT's end) and per-segment columns: an integer, a real with missing values (-9999 and
    NaN)."""
    rng = np.random.default_rng(seed)
    grid = (np.arange(rows)[:, None] // 6) * 12 + np.arange(cols)[None, :] // 6
    ids = rng.permutation(int(grid.max()) + 1) + 1
    seg = ids[grid].astype(np.uint32)
    seg[rng.random((rows, cols)) < 0.03] = 0
    count = int(seg.max()) + 1
    seg[seg == seg.max()] = count + 5  # an id the RAT has no row for
    integer = rng.integers(-500, 500, count).astype(np.int32)
    real = rng.normal(100, 30, count)
    real[rng.choice(np.arange(1, count), 6, replace=False)] = -9999
    real[rng.choice(np.arange(1, count), 4, replace=False)] = np.nan
    return seg, {"klass": integer, "b1_mean": real}
