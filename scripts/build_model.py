"""Write resources/models/normalize_and_summarize.model3 with PyQGIS.

    QT_HASH_SEED=1 QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/build_model.py

(``QT_HASH_SEED=1`` keeps the XML attributes in the committed file's order, so a
change shows as a small diff.)

The model chains tessera:globalregression → tessera:localblockadjustment →
gdal:buildvirtualraster (one mosaic of the normalized images) →
tessera:zonalstats. It is written from code so that it stays in step with
the algorithms' parameter names; the .model3 file is committed.
"""

import os
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = os.path.join(REPO, "resources", "models", "normalize_and_summarize.model3")
NAME = "Normalize and summarize"  # the display name; the id is the file name (no spaces)
DESCRIPTION = (
    "Relative radiometric normalization of overlapping images (global regression, then local "
    "block adjustment into the Normalized images folder), a virtual mosaic of the normalized "
    "images (GDAL's Build virtual raster: where images overlap the last one wins) and zonal "
    "statistics of the mosaic's first band in the polygons: pixel count, mean, standard "
    "deviation, min, max and median. Open it in the graphical modeler to change any step.")
STATISTICS = ["pixcount", "mean", "stddev", "min", "max", "median"]


def build_model():
    """The model as a QgsProcessingModelAlgorithm (Tessera and GDAL providers registered)."""
    from qgis.core import (
        QgsApplication,
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterBoolean,
        QgsProcessingParameterFeatureSource,
        QgsProcessingParameterMultipleLayers,
        QgsProcessingParameterNumber,
    )

    from tessera.algorithms.qgis_compat import INTEGER, OPTIONAL_FLAG, RASTER, VECTOR_POLYGON

    model = QgsProcessingModelAlgorithm(NAME, "Workflows", "workflows")
    helps = {
        "INPUTS": "Overlapping rasters with the same CRS, bands and nodata value.",
        "POLYGONS": "Polygons to summarise the normalized mosaic in (centre rule).",
        "BLOCKS": "Target number of blocks per image of the local block adjustment.",
        "OVERWRITE": "Replace the normalized images and the zonal statistics if they exist "
                     "already (off: an existing output is an error and nothing is written).",
    }
    model.setHelpContent({"ALG_DESC": DESCRIPTION, **helps})
    inputs = QgsProcessingParameterMultipleLayers("INPUTS", "Overlapping images",
                                                  RASTER)
    polygons = QgsProcessingParameterFeatureSource("POLYGONS", "Polygons",
                                                   [VECTOR_POLYGON])
    blocks = QgsProcessingParameterNumber("BLOCKS", "Blocks per image",
                                          INTEGER, 100, minValue=1)
    overwrite = QgsProcessingParameterBoolean("OVERWRITE", "Overwrite existing outputs", False)
    for position, parameter in enumerate((inputs, polygons, blocks, overwrite)):
        parameter.setHelp(helps[parameter.name()])
        component = QgsProcessingModelParameter(parameter.name())
        component.setPosition(_point(60, 60 + 80 * position))
        model.addModelParameter(parameter, component)

    def child(child_id, algorithm_id, description, position, sources, static=(), outputs=()):
        step = QgsProcessingModelChildAlgorithm(algorithm_id)
        step.setChildId(child_id)
        step.setDescription(description)
        step.setPosition(_point(300, 60 + 110 * position))
        for name, source in sources.items():
            step.addParameterSources(name, [source])
        values = dict(static)
        algorithm = QgsApplication.processingRegistry().algorithmById(algorithm_id)
        for definition in algorithm.parameterDefinitions():  # the modeler's defaults
            if (definition.name() not in sources and not definition.isDestination()
                    and not definition.flags() & OPTIONAL_FLAG):
                values.setdefault(definition.name(), definition.defaultValue())
        for name, value in values.items():
            step.addParameterSources(
                name, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
        model_outputs = {}
        for name, child_output, description_ in outputs:
            output = QgsProcessingModelOutput(name, description_)
            output.setChildId(child_id)
            output.setChildOutputName(child_output)
            output.setPosition(_point(560, 60 + 110 * position))
            output.setDescription(description_)
            model_outputs[name] = output
        step.setModelOutputs(model_outputs)
        model.addChildAlgorithm(step)

    def from_model(name):
        return QgsProcessingModelChildParameterSource.fromModelParameter(name)

    def from_child(child_id, output):
        return QgsProcessingModelChildParameterSource.fromChildOutput(child_id, output)

    child("global", "tessera:globalregression", "Global regression", 0,
          {"INPUTS": from_model("INPUTS")})
    child("local", "tessera:localblockadjustment", "Local block adjustment", 1,
          {"INPUTS": from_child("global", "OUTPUTS"), "BLOCKS": from_model("BLOCKS"),
           "OVERWRITE": from_model("OVERWRITE")},
          outputs=[("NORMALIZED", "OUTPUT_FOLDER", "Normalized images")])
    child("mosaic", "gdal:buildvirtualraster", "Mosaic of the normalized images", 2,
          {"INPUT": from_child("local", "OUTPUTS")},
          static={"SEPARATE": False, "RESOLUTION": 0})
    child("zonal", "tessera:zonalstats", "Zonal statistics", 3,
          {"INPUT": from_model("POLYGONS"), "RASTER": from_child("mosaic", "OUTPUT"),
           "OVERWRITE": from_model("OVERWRITE")},
          static={"STATISTICS": STATISTICS, "PIXEL_RULE": "centre"},
          outputs=[("ZONES", "OUTPUT", "Zonal statistics")])
    return model


def _point(x, y):
    from qgis.PyQt.QtCore import QPointF

    return QPointF(x, y)


def main():
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    sys.path.insert(0, "/usr/share/qgis/python/plugins")
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    plugins = tempfile.mkdtemp(prefix="tessera-plugins-")
    os.symlink(REPO, os.path.join(plugins, "tessera"))
    sys.path.insert(0, plugins)
    from tessera.provider.tessera_provider import TesseraProvider

    provider = TesseraProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    model = build_model()
    ok, errors = model.validate()
    if not ok:
        sys.exit("The model is not valid:\n" + "\n".join(errors))
    os.makedirs(os.path.dirname(MODEL), exist_ok=True)
    if not model.toFile(MODEL):
        sys.exit(f"Could not write {MODEL}")
    print(f"Wrote {MODEL}: parameters "
          + ", ".join(p.name() for p in model.parameterDefinitions()))
    app.exitQgis()


if __name__ == "__main__":
    main()
