"""tessera:copyrat — copy RAT columns between GDAL RATs and Zarr RAT stores."""

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from .base import TesseraAlgorithm, keep_rat_visible_to_qgis
from .qgis_compat import INTEGER
from .rat_parameters import add_rat_source_parameters, rat_source


class CopyRatAlgorithm(TesseraAlgorithm):
    NAME = "copyrat"
    DISPLAY_NAME = "Copy RAT columns"
    GROUP = "Raster attribute tables"
    GROUP_ID = "rat"
    REQUIRES = ()
    HELP = (
        "Copies columns of a raster attribute table (RAT) between a raster band's GDAL RAT "
        "(in the file, or a GeoTIFF's .aux.xml) and a Zarr RAT store, either way, block by "
        "block: a table of millions of rows is never held whole in memory. Columns keep their "
        "type (into a Zarr store, their exact numpy type; GDAL integer columns are 32-bit, so "
        "wider values are refused before anything is written). The destination grows to the "
        "source's row count. Existing columns are an error unless overwrite is set. A failed "
        "or cancelled copy removes what it created."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        add_rat_source_parameters(self, "copied")
        destination = QgsProcessingParameterFileDestination(
            "OUTPUT", "Destination RAT",
            "Zarr RAT store (*.zarr);;Erdas Imagine (*.img);;GeoTIFF with .aux.xml (*.tif)")
        self.add(destination, "A path ending .zarr (or an s3:// URL): a Zarr RAT store, created "
                 "if missing. An existing raster: its band's RAT. Another new .img or .tif path: "
                 "a one-pixel file holding only the RAT.")
        self.add(QgsProcessingParameterNumber("OUTPUT_BAND", "Destination band",
                                              INTEGER, 1,
                                              minValue=1),
                 "Band of an existing destination raster whose RAT receives the columns.",
                 advanced=True)
        self.add(QgsProcessingParameterBoolean("OVERWRITE", "Overwrite existing columns", False),
                 "Replace destination columns of the same names (a GDAL column must be of the "
                 "same type); otherwise such columns are an error and nothing is written.")
        self.addOutput(QgsProcessingOutputString("COLUMNS", "Columns copied"))
        self.addOutput(QgsProcessingOutputNumber("ROW_COUNT", "Rows of the destination"))

    def process(self, parameters, context, feedback):
        from ..engine.rat.tables import is_zarr_target
        from ..engine.rat.tools import copy_rat

        source, band, columns = rat_source(self, parameters, context)
        destination = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        destination_band = self.parameterAsInt(parameters, "OUTPUT_BAND", context) or 1
        progress, cancelled = self.engine_callbacks(feedback)
        result = copy_rat(source, destination, columns=columns,
                          overwrite=self.parameterAsBool(parameters, "OVERWRITE", context),
                          source_band=band, destination_band=destination_band,
                          progress=progress, cancelled=cancelled)
        feedback.pushInfo(f"Copied {len(result.columns)} column(s) of {result.row_count} rows "
                          f"to {result.destination}.")
        self._written_rat = None if is_zarr_target(destination) else (destination,
                                                                       destination_band)
        return {"OUTPUT": result.destination, "COLUMNS": ",".join(result.columns),
                "ROW_COUNT": int(result.row_count)}

    def postProcessAlgorithm(self, context, feedback):  # noqa: N802 (QGIS API)
        if getattr(self, "_written_rat", None):
            keep_rat_visible_to_qgis(*self._written_rat, context)
        return {}
