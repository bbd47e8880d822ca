"""tessera:exportrat — RAT columns (GDAL RAT or Zarr store) to a table."""

import math

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterString,
)

from .base import TesseraAlgorithm, check_outputs
from .file_sink import FileSink
from .qgis_compat import FAST_INSERT, NO_GEOMETRY, VECTOR, make_field
from .rat_parameters import add_rat_source_parameters, rat_source

#: Rows turned into features at a time (bounds the memory of Python objects).
FEATURE_BATCH = 10_000


class ExportRatAlgorithm(TesseraAlgorithm):
    NAME = "exportrat"
    DISPLAY_NAME = "Export RAT to table"
    GROUP = "Raster attribute tables"
    GROUP_ID = "rat"
    REQUIRES = ()
    HELP = (
        "Writes columns of a raster attribute table (RAT) to a table without geometry: a "
        "GeoPackage table, a CSV file, a temporary layer, or any format QGIS writes. The RAT is "
        "a raster band's GDAL RAT (in the file, or a GeoTIFF's .aux.xml) or a Zarr RAT store. "
        "One row per RAT row (for a segmentation, row = segment id), with an id field holding "
        "the row number so the table can be joined to polygons of the segments. The table is "
        "read block by block, so tables of millions of rows are fine."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        add_rat_source_parameters(self, "exported")
        self.add(QgsProcessingParameterString("ID_FIELD", "Row number field", "id",
                                              optional=True),
                 "Name of the field holding the row number (the segment id); empty: no such "
                 "field.", advanced=True)
        self.add(QgsProcessingParameterFeatureSink(
            "OUTPUT", "Table", VECTOR, createByDefault=True),
            "The table written: e.g. a .gpkg (a table without geometry) or a .csv file.")
        self.add(QgsProcessingParameterBoolean("OVERWRITE", "Replace an existing table file",
                                               False),
                 "Replace the table's file when it exists already; otherwise that is an error "
                 "and nothing is written. An input is never replaced.")
        self.addOutput(QgsProcessingOutputNumber("ROW_COUNT", "Rows written"))

    def process(self, parameters, context, feedback):
        from ..engine.rat.tools import choose_columns, iter_rat_blocks, open_rat_source

        source, band, columns = rat_source(self, parameters, context)
        check_outputs(self, parameters, context, {"OUTPUT": "output table"},
                      {"INPUT_RASTER": "raster with a RAT"},
                      self.parameterAsBool(parameters, "OVERWRITE", context))
        id_field = self.parameterAsString(parameters, "ID_FIELD", context).strip()
        progress, cancelled = self.engine_callbacks(feedback)
        with open_rat_source(source, band) as rat:
            chosen = choose_columns(rat, columns)
            if id_field in chosen:
                raise QgsProcessingException(
                    f"The RAT already has a column '{id_field}': choose another name for the "
                    "row number field, or leave it empty.")
            fields = QgsFields()
            if id_field:
                fields.append(make_field(id_field, "longlong"))
            for name in chosen:
                fields.append(make_field(name, _field_type(rat.column_kind(name),
                                                           rat.column_dtype(name))))
            rows = 0
            with FileSink(self, parameters, "OUTPUT", context, fields, NO_GEOMETRY,
                          QgsCoordinateReferenceSystem()) as output:
                for block in iter_rat_blocks(rat, chosen, progress=progress,
                                             cancelled=cancelled):
                    rows += len(block)
                    _add_rows(output.sink, fields, block, chosen, id_field)
            destination = output.destination
        feedback.pushInfo(f"Exported {len(chosen)} column(s) x {rows} row(s) of {rat.name}.")
        return {"OUTPUT": destination, "ROW_COUNT": int(rows)}


def _field_type(kind, dtype):
    if kind == "string":
        return "string"
    if kind == "real":
        return "double"
    return "int" if dtype.itemsize < 4 or dtype.kind == "i" and dtype.itemsize == 4 \
        else "longlong"


def _plain(values):
    """NaN as NULL (None); everything else as it is."""
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]


def _add_rows(sink, fields, block, chosen, id_field):
    """Add the rows of a RAT block to ``sink`` as features, a batch at a time."""
    for offset in range(0, len(block), FEATURE_BATCH):
        first = block.start + offset
        values = [_plain(block.columns[name][offset:offset + FEATURE_BATCH].tolist())
                  for name in chosen]
        if id_field:
            values.insert(0, range(first, first + len(values[0])))
        features = []
        for row in zip(*values, strict=True):
            feature = QgsFeature(fields)
            feature.setAttributes(list(row))
            features.append(feature)
        if not sink.addFeatures(features, FAST_INSERT):
            raise QgsProcessingException(f"Writing the table failed: {sink.lastError()}")
