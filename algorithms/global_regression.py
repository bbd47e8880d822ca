"""tessera:globalregression — scale and offset per image and band so overlaps agree."""

import json

from qgis.core import (
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
)

from ..engine.normalization.global_regression import MODEL_MODES
from .base import TesseraAlgorithm
from .normalization_parameters import (
    add_inputs,
    add_mask,
    add_output_options,
    common_results,
    engine_log,
    enum,
    html_output,
    input_paths,
    load_corrected_images,
    mask_arguments,
    output_arguments,
    output_folder,
    write_report,
)
from .qgis_compat import DOUBLE, RASTER


class GlobalRegressionAlgorithm(TesseraAlgorithm):
    NAME = "globalregression"
    DISPLAY_NAME = "Global regression (radiometric normalization)"
    GROUP = "Radiometric normalization"
    GROUP_ID = "normalization"
    HELP = (
        "Relative radiometric normalization of overlapping images, part 1 (Yu et al. 2017, as "
        "spectralmatch): one scale a and offset b per image and band, found by linear least "
        "squares so that the means and standard deviations of co-located pixels in every "
        "overlap agree, anchored at the model images' own whole-image means and standard "
        "deviations. Each output pixel is a·x + b (nodata kept; integer outputs rounded and "
        "clamped). Statistics are exact and computed window by window; images that overlap "
        "no model image (and are not model images) are kept unchanged. Follow with local "
        "block adjustment for brightness differences that vary across the images."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        add_inputs(self, "_Global")
        self.add(QgsProcessingParameterMultipleLayers(
            "MODEL_IMAGES", "Model images", RASTER, optional=True),
            "Images (among the inputs, matched by base name) included in or excluded from the "
            "anchoring of the solution; empty: all images are model images. Including a single "
            "image matches every other image to it.")
        self.add(enum("MODEL_MODE", "Model image mode", MODEL_MODES, "include"),
                 "include: only the listed images anchor the solution; exclude: all but them.")
        self.add(QgsProcessingParameterNumber(
            "MEAN_FACTOR", "Mean factor", DOUBLE, 1.0,
            minValue=0.0), "Weight of the overlap mean equations (default 1).", advanced=True)
        self.add(QgsProcessingParameterNumber(
            "STD_FACTOR", "Standard deviation factor", DOUBLE, 1.0,
            minValue=0.0), "Weight of the overlap standard deviation equations (default 1).",
            advanced=True)
        self.add(QgsProcessingParameterBoolean(
            "WEIGHT_BY_OVERLAP_SIZE", "Weight overlaps by their pixel count", True),
            "On (default, as the paper and spectralmatch 1.0): each overlap's equations are "
            "weighted by its number of pixel pairs; off (as spectralmatch 1.6): by 1.",
            advanced=True)
        add_mask(self)
        self.add(QgsProcessingParameterFileDestination(
            "SAVE_ADJUSTMENTS", "Save adjustments and statistics", "JSON files (*.json)",
            optional=True, createByDefault=False),
            "Optional JSON of scales, offsets, whole-image and overlap statistics (spectralmatch's "
            "structure, keyed by image base name and band_0, band_1, ..., plus a fingerprint "
            "of each image). Published together with the images: if it cannot be written, no "
            "image is.")
        self.add(QgsProcessingParameterFile(
            "LOAD_ADJUSTMENTS", "Load statistics", extension="json", optional=True),
            "Optional JSON saved by an earlier run: the statistics of the images it describes "
            "are reused, those of new images (and their overlaps) computed. Tessera stores a "
            "fingerprint of every image (size, geotransform, bands, file size and time); an "
            "image whose file differs from it (other pixels under the same name) has its "
            "statistics computed again, with a warning. Files without fingerprints "
            "(spectralmatch's) are reused as they are, with a warning.")
        add_output_options(self)
        self.add_dask_scheduler()
        self.addOutput(QgsProcessingOutputString("ADJUSTMENTS", "Adjustments (JSON)"))

    def process(self, parameters, context, feedback):
        from ..engine import global_regression

        progress, cancelled = self.engine_callbacks(feedback)
        model = input_paths(self, parameters, context, "MODEL_IMAGES")
        save = self.parameterAsFileOutput(parameters, "SAVE_ADJUSTMENTS", context) or None
        if save and not save.lower().endswith(".json"):
            save += ".json"
        folder = output_folder(self, parameters, context)
        inputs = input_paths(self, parameters, context)
        html = html_output(self, parameters, context)
        result = global_regression(
            inputs, folder,
            model_images=model,
            model_mode=self.parameterAsEnumString(parameters, "MODEL_MODE", context),
            mean_factor=self.parameterAsDouble(parameters, "MEAN_FACTOR", context),
            std_factor=self.parameterAsDouble(parameters, "STD_FACTOR", context),
            weight_by_overlap_size=self.parameterAsBool(parameters, "WEIGHT_BY_OVERLAP_SIZE",
                                                        context),
            save_adjustments=save,
            load_adjustments=self.parameterAsFile(parameters, "LOAD_ADJUSTMENTS", context)
            or None,
            **mask_arguments(self, parameters, context),
            **output_arguments(self, parameters, context),
            progress=progress, cancelled=cancelled, log=engine_log(feedback),
            scheduler=self.dask_scheduler(parameters, context),
        )
        for name in result.names:
            pairs = ", ".join(f"{a['scale']:.4f}·x{a['offset']:+.2f}"
                              for a in result.adjustments[name])
            feedback.pushInfo(f"{name}: {pairs}")
        feedback.pushInfo(f"Wrote {len(result.outputs)} image(s) to {folder} in "
                          f"{result.timings['total']:.1f} s.")
        outputs = common_results(result, folder)
        outputs["ADJUSTMENTS"] = json.dumps({name: {f"band_{b}": a for b, a in enumerate(bands)}
                                             for name, bands in result.adjustments.items()})
        if result.adjustments_file:
            outputs["SAVE_ADJUSTMENTS"] = result.adjustments_file
        if html:
            outputs["OUTPUT_HTML"] = write_report(html, result, inputs, "global", feedback)
        load_corrected_images(context, result.outputs, "OUTPUTS")
        return outputs
