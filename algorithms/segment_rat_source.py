"""The segmentation and RAT parameters of the tools that put RAT values on the map
(``tessera:rattoraster``, ``tessera:segmentpolygons``): a segment raster with a band, and
where its RAT is (its own, a separate GDAL file, or a Zarr RAT store)."""

from qgis.core import (
    QgsProcessingParameterBand,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .base import raster_source
from .qgis_compat import INTEGER


def add_segment_rat_parameters(algorithm, columns_help, columns_optional=False):
    """Add SEGMENTS, SEGMENT_BAND, RAT, RAT_BAND and COLUMNS to ``algorithm``."""
    algorithm.add(QgsProcessingParameterRasterLayer("SEGMENTS", "Segment raster"),
                  "Raster of segment ids (integers); its nodata value (else 0) is the null id.")
    algorithm.add(QgsProcessingParameterBand("SEGMENT_BAND", "Segment band", 1, "SEGMENTS",
                                             optional=True),
                  "Band of the segment raster holding the ids (default 1).", advanced=True)
    algorithm.add(QgsProcessingParameterFile("RAT", "RAT (empty: the segment file's own)",
                                             optional=True),
                  "Where the raster attribute table is: empty for the segment file's own RAT "
                  "(its .aux.xml for a GeoTIFF); a GDAL file holding it (.img, .tif, .kea); or a "
                  "Zarr RAT store (a folder ending .zarr, typed or pasted, or an s3:// URL). In a "
                  "model, connect the Output RAT of Per-segment statistics here.")
    algorithm.add(QgsProcessingParameterNumber("RAT_BAND", "Band of the RAT file", INTEGER, 1,
                                               minValue=1),
                  "Band of a separate GDAL RAT file whose RAT is read (default 1).",
                  advanced=True)
    algorithm.add(QgsProcessingParameterString("COLUMNS", "Columns", "",
                                               optional=columns_optional),
                  columns_help)


def segment_rat_arguments(algorithm, parameters, context):
    """``segments``, ``segment_band``, ``rat``, ``rat_band`` and ``columns`` for the engine."""
    rat = algorithm.parameterAsFile(parameters, "RAT", context) or None
    columns = algorithm.parameterAsString(parameters, "COLUMNS", context)
    return {
        "segments": raster_source(algorithm, parameters, "SEGMENTS", context),
        "segment_band": algorithm.parameterAsInt(parameters, "SEGMENT_BAND", context) or 1,
        "rat": rat,
        "rat_band": algorithm.parameterAsInt(parameters, "RAT_BAND", context) or 1,
        "columns": [c.strip() for c in columns.split(",") if c.strip()],
    }
