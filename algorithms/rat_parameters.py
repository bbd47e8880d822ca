"""The RAT source parameters shared by the RAT tools: a raster layer with a
band, or a Zarr RAT store."""

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingParameterBand,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .base import raster_source
from .qgis_compat import FOLDER


def add_rat_source_parameters(algorithm, role="read"):
    """Add INPUT_RASTER, INPUT_BAND, INPUT_STORE and COLUMNS to ``algorithm``."""
    algorithm.add(QgsProcessingParameterRasterLayer("INPUT_RASTER", "Raster with a RAT",
                                                    optional=True),
                  f"A raster whose band's raster attribute table (RAT) is {role} (its "
                  ".aux.xml for a GeoTIFF). Give either this or a Zarr RAT store.")
    algorithm.add(QgsProcessingParameterBand("INPUT_BAND", "Band", 1, "INPUT_RASTER",
                                             optional=True),
                  "Band of the raster whose RAT is used (default 1).", advanced=True)
    algorithm.add(QgsProcessingParameterFile("INPUT_STORE", "Zarr RAT store",
                                             behavior=FOLDER,
                                             optional=True),
                  "A Zarr RAT store: a folder ending .zarr, or an s3://bucket/prefix URL "
                  "(S3-compatible servers: set AWS_ENDPOINT_URL). Give either this or a raster. "
                  "A raster file given here is read as the raster with a RAT: in a model, "
                  "connect the Output RAT of Per-segment statistics here, wherever it went.")
    algorithm.add(QgsProcessingParameterString("COLUMNS", "Columns", "", optional=True),
                  "Comma-separated column names in the order wanted, e.g. b1_mean,b1_median; "
                  "empty: every column.")


def rat_source(algorithm, parameters, context):
    """``(source, band, columns)`` from the parameters added above."""
    from ..engine.rat.tables import is_zarr_target

    store = algorithm.parameterAsFile(parameters, "INPUT_STORE", context)
    has_raster = parameters.get("INPUT_RASTER") not in (None, "")
    if bool(store) == has_raster:
        raise QgsProcessingException(
            "Give either a raster with a RAT (INPUT_RASTER) or a Zarr RAT store (INPUT_STORE).")
    columns = algorithm.parameterAsString(parameters, "COLUMNS", context)
    columns = [name.strip() for name in columns.split(",") if name.strip()]
    band = algorithm.parameterAsInt(parameters, "INPUT_BAND", context) or 1
    if store and not is_zarr_target(store) and os.path.isfile(store):
        return store, band, columns  # a raster file's RAT (e.g. segmentstats' OUTPUT_RAT)
    if store:  # a store whatever its name, not a raster
        from ..engine.io.store_location import store_location

        return store_location(store), 1, columns
    return raster_source(algorithm, parameters, "INPUT_RASTER", context), band, columns
