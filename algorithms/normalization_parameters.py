"""Parameters shared by the radiometric normalization algorithms.

Inputs and output folder, the statistics vector mask, output type, COG,
threads and the spectral profile plot are declared and read the same way by
``tessera:globalregression`` and ``tessera:localblockadjustment``.
"""

import json

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputFolder,
    QgsProcessingOutputMultipleLayers,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterVectorLayer,
)

from ..engine.io.vector_mask import MASK_MODES
from ..engine.normalization.image_set import OUTPUT_DTYPES
from .base import static_enum as enum
from .qgis_compat import INTEGER, RASTER, VECTOR_POLYGON
from .report_output import add_report_parameter, report_path

DTYPE_CHOICES = ("input",) + OUTPUT_DTYPES


def add_inputs(algorithm, suffix):
    algorithm.add(QgsProcessingParameterMultipleLayers("INPUTS", "Input images",
                                                       RASTER),
                  "Overlapping rasters with the same CRS, bands and nodata value (file-based "
                  "GDAL rasters). Pixel grids may differ.")
    algorithm.add(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", "Output folder"),
                  f"Outputs are written here as &lt;input base name&gt;{suffix}.tif (the folder "
                  "is created if missing); an output that would overwrite an input is an "
                  "error, and so is an existing output unless Overwrite is on.")


def add_mask(algorithm):
    algorithm.add(QgsProcessingParameterVectorLayer(
        "VECTOR_MASK", "Vector mask for statistics", [VECTOR_POLYGON],
        optional=True),
        "Optional polygons limiting the pixels used for statistics (pixel centres inside); the "
        "correction is still applied to every pixel.")
    algorithm.add(enum("MASK_MODE", "Mask mode", MASK_MODES, "include"),
                  "include: only pixels inside the polygons feed the statistics; exclude: only "
                  "pixels outside them.")
    algorithm.add(QgsProcessingParameterField("MASK_FIELD", "Mask image-name field", None,
                                              "VECTOR_MASK", optional=True),
                  "Optional field of the mask: an image uses only the features whose value "
                  "contains the image's base name.", advanced=True)


def add_output_options(algorithm):
    algorithm.add(enum("OUTPUT_DTYPE", "Output data type", DTYPE_CHOICES, "input"),
                  "input: the input's type. Integer outputs are rounded and clamped to the "
                  "type's range (the share of clamped values is reported per image as a "
                  "warning); nodata stays nodata and a valid pixel never becomes nodata.")
    algorithm.add(QgsProcessingParameterBoolean("COG", "Cloud-Optimized GeoTIFF", False),
                  "Write Cloud-Optimized GeoTIFFs (GDAL's COG driver, with overviews) instead "
                  "of tiled GeoTIFFs.")
    algorithm.add(QgsProcessingParameterBoolean("OVERWRITE", "Overwrite existing outputs",
                                                False),
                  "Replace output files that exist already (images, adjustments, block maps, "
                  "plot). Off (default): an existing output is an error and nothing is "
                  "written. Inputs are never overwritten. Every output is written under a "
                  "temporary name and all are renamed together once each was written and read "
                  "back: a failed or cancelled run (a full disk included) leaves every file as "
                  "it was.")
    algorithm.add(QgsProcessingParameterNumber(
        "THREADS", "Threads", INTEGER, 0, minValue=0),
        "Worker threads over images and windows; 0: one per CPU core.", advanced=True)
    algorithm.add(QgsProcessingParameterFileDestination(
        "PROFILE_PLOT", "Spectral profile plot", "PNG files (*.png)", optional=True,
        createByDefault=False),
        "Optional PNG of every image's per-band mean before (dashed) and after (solid) the "
        "correction (needs matplotlib).")
    add_report_parameter(
        algorithm, "Report", "Optional HTML report, opened in the Results Viewer: the mismatch "
        "between overlapping images before and after (mean |A − B| per overlap and band), "
        "spectral profiles, and the scales and offsets (global) or block maps (local). Needs "
        "matplotlib.")
    algorithm.addOutput(QgsProcessingOutputMultipleLayers("OUTPUTS", "Written images"))
    algorithm.addOutput(QgsProcessingOutputFolder("OUTPUT_FOLDER", "Output folder"))
    algorithm.addOutput(QgsProcessingOutputString(
        "CLAMPED", "Share of valid values clamped to the output type, per image (JSON)"))


def input_paths(algorithm, parameters, context, name="INPUTS"):
    """File paths of the rasters of a multiple-layer parameter (GDAL, file-based)."""
    layers = algorithm.parameterAsLayerList(parameters, name, context) or []
    paths = []
    for layer in layers:
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"The layer {layer.name()} for {name} is not a GDAL raster (provider "
                f"'{layer.providerType()}'): Tessera reads rasters with GDAL.")
        paths.append(layer.source().split("|")[0])
    return paths


def mask_arguments(algorithm, parameters, context):
    """``vector_mask``, ``mask_mode`` and ``mask_field`` for the engine."""
    layer = algorithm.parameterAsVectorLayer(parameters, "VECTOR_MASK", context)
    if layer is None:
        return {}
    if layer.providerType() != "ogr":
        raise QgsProcessingException(
            f"The vector mask {layer.name()} is not a file-based layer (provider "
            f"'{layer.providerType()}'); save it to a file (e.g. GeoPackage) first.")
    return {"vector_mask": layer.source(),
            "mask_mode": algorithm.parameterAsEnumString(parameters, "MASK_MODE", context),
            "mask_field": algorithm.parameterAsString(parameters, "MASK_FIELD", context) or None}


def output_arguments(algorithm, parameters, context):
    """``output_dtype``, ``cog``, ``threads``, ``profile_plot`` and ``overwrite`` for the
    engine."""
    dtype = algorithm.parameterAsEnumString(parameters, "OUTPUT_DTYPE", context)
    plot = algorithm.parameterAsFileOutput(parameters, "PROFILE_PLOT", context) or None
    if plot and not plot.lower().endswith(".png"):
        plot += ".png"
    return {"output_dtype": None if dtype in ("", "input") else dtype,
            "cog": algorithm.parameterAsBool(parameters, "COG", context),
            "threads": algorithm.parameterAsInt(parameters, "THREADS", context) or None,
            "profile_plot": plot,
            "overwrite": algorithm.parameterAsBool(parameters, "OVERWRITE", context)}


def output_folder(algorithm, parameters, context):
    """The output folder (the engine checks it and creates it when missing)."""
    folder = algorithm.parameterAsString(parameters, "OUTPUT_FOLDER", context)
    if not folder:
        raise QgsProcessingException("No output folder given.")
    return folder


def common_results(result, folder):
    """The outputs both algorithms return: images, folder, clamped shares, plot."""
    outputs = {"OUTPUTS": list(result.outputs), "OUTPUT_FOLDER": folder,
               "CLAMPED": json.dumps({name: float(share)
                                      for name, share in result.clamped.items()})}
    if result.profile_plot:
        outputs["PROFILE_PLOT"] = result.profile_plot
    return outputs


def engine_log(feedback):
    """The engine's ``log``: lines starting "Warning:" as Processing warnings."""
    def log(message):
        if message.startswith("Warning:") and hasattr(feedback, "pushWarning"):
            feedback.pushWarning(message)
        else:
            feedback.pushInfo(message)

    return log


def html_output(algorithm, parameters, context):
    """The path of the optional OUTPUT_HTML report, checked; or None."""
    return report_path(algorithm, parameters, context)


def write_report(path, result, inputs, kind, feedback):
    """Write the normalization report of ``result``; log the overlaps' mismatch."""
    from ..engine.reports.normalization import normalization_report

    written, mismatch = normalization_report(path, result, inputs, kind)
    for item in mismatch:
        pairs = ", ".join(f"b{band}: {before:.4g} → {after:.4g}" for band, (before, after)
                          in enumerate(zip(item.before, item.after, strict=True), start=1))
        feedback.pushInfo(f"Mean |A − B| in {item.first} / {item.second}: {pairs}")
    return written


def load_corrected_images(context, outputs, suffix):
    """Add the corrected images to the project when the algorithm finishes."""
    from .layer_loading import layer_name, load_on_completion

    for path in outputs:
        load_on_completion(context, path, layer_name(path), suffix)
