"""Raster attribute tables: GDAL RATs and Zarr RAT stores, written safely."""
