"""tessera:localblockadjustment — block-mean maps correcting local brightness differences."""

from qgis.core import (
    QgsProcessingOutputMultipleLayers,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
)

from ..engine.normalization.local_block_adjustment import METHODS
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
from .qgis_compat import DOUBLE, INTEGER


class LocalBlockAdjustmentAlgorithm(TesseraAlgorithm):
    NAME = "localblockadjustment"
    DISPLAY_NAME = "Local block adjustment (radiometric normalization)"
    GROUP = "Radiometric normalization"
    GROUP_ID = "normalization"
    HELP = (
        "Relative radiometric normalization of overlapping images, part 2 (Yu et al. 2017, as "
        "spectralmatch): a block grid over the union of the images; per image and band the "
        "mean of the valid pixels in every block (its local map), and a reference map, the "
        "mean of the local maps. Both maps are interpolated bilinearly between block centres "
        "at every pixel centre (empty blocks weighted out) and each pixel is brought towards "
        "the reference: gamma P' = α·P^γ with γ = ln(M_ref)/ln(M_local), or linear "
        "P' = P·M_ref/M_local. Where values ≤ 0 occur, one offset per image and band shifts "
        "pixels and means for the gamma correction. Usually run on the outputs of global "
        "regression. Block maps can be saved as GeoTIFFs and a reference map reused to bring "
        "new images to it."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        add_inputs(self, "_Local")
        self.add(QgsProcessingParameterNumber(
            "BLOCKS", "Blocks per image", INTEGER, 100, minValue=1),
            "Target number of blocks per image: n × images blocks over the union of the images, "
            "shaped like it (five 384 × 239 scenes on one grid, 100 → 18 × 27).")
        self.add(QgsProcessingParameterNumber(
            "BLOCK_ROWS", "Block rows", INTEGER, 0, minValue=0),
            "Explicit grid rows (with block columns); 0: use blocks per image. At most the "
            "pixel rows of the union of the images.", advanced=True)
        self.add(QgsProcessingParameterNumber(
            "BLOCK_COLS", "Block columns", INTEGER, 0, minValue=0),
            "Explicit grid columns (with block rows); 0: use blocks per image. At most the "
            "pixel columns of the union of the images.", advanced=True)
        self.add(QgsProcessingParameterBoolean(
            "BLOCKS_FROM_VARIATION", "Grid from the coefficient of variation", False),
            "Derive the grid from the coefficient of variation of band 1 over all images: a 10 × "
            "10 grid scaled by CV / (45/125) in both directions.", advanced=True)
        self.add(QgsProcessingParameterNumber(
            "ALPHA", "Alpha", DOUBLE, 1.0, minValue=0.0),
            "Multiplier of the gamma correction (P' = α·P^γ); 1 keeps the means matched. "
            "Not used by the linear method.", advanced=True)
        self.add(enum("METHOD", "Correction method", METHODS, "gamma"),
                 "gamma (default): P' = α·P^γ, γ = ln(M_ref)/ln(M_local); linear: "
                 "P' = P·M_ref/M_local.")
        self.add(QgsProcessingParameterNumber(
            "VALID_THRESHOLD", "Valid pixel threshold", DOUBLE,
            0.001, minValue=0.0, maxValue=1.0),
            "A block whose valid pixels cover less than this fraction of its area is empty "
            "(weighted out of the interpolation).", advanced=True)
        self.add(QgsProcessingParameterFolderDestination(
            "SAVE_BLOCK_MAPS", "Save block maps to folder", optional=True,
            createByDefault=False),
            "Optional folder for reference_block_map.tif and &lt;image&gt;_local_block_map.tif "
            "(Float32, one band per image band, empty blocks NaN). A map file that is one of "
            "the inputs is an error; the maps are published together with the images.")
        self.add(QgsProcessingParameterFile(
            "LOAD_REFERENCE_MAP", "Load reference map", extension="tif", optional=True),
            "Optional reference_block_map.tif of an earlier run: its grid and means are used "
            "and the inputs (which must lie within its extent; one is enough) brought to it.")
        add_mask(self)
        add_output_options(self)
        self.add_dask_scheduler()
        self.addOutput(QgsProcessingOutputMultipleLayers("BLOCK_MAPS", "Block maps written"))
        self.addOutput(QgsProcessingOutputNumber("GRID_ROWS", "Block rows used"))
        self.addOutput(QgsProcessingOutputNumber("GRID_COLS", "Block columns used"))

    def process(self, parameters, context, feedback):
        from ..engine import local_block_adjustment

        progress, cancelled = self.engine_callbacks(feedback)
        rows = self.parameterAsInt(parameters, "BLOCK_ROWS", context)
        cols = self.parameterAsInt(parameters, "BLOCK_COLS", context)
        maps = (self.parameterAsFileOutput(parameters, "SAVE_BLOCK_MAPS", context) or None
                if parameters.get("SAVE_BLOCK_MAPS") else None)
        folder = output_folder(self, parameters, context)
        inputs = input_paths(self, parameters, context)
        html = html_output(self, parameters, context)
        result = local_block_adjustment(
            inputs, folder,
            blocks=self.parameterAsInt(parameters, "BLOCKS", context),
            block_rows=rows or None,
            block_cols=cols or None,
            blocks_from_variation=self.parameterAsBool(parameters, "BLOCKS_FROM_VARIATION",
                                                       context),
            alpha=self.parameterAsDouble(parameters, "ALPHA", context),
            method=self.parameterAsEnumString(parameters, "METHOD", context),
            valid_threshold=self.parameterAsDouble(parameters, "VALID_THRESHOLD", context),
            save_block_maps=maps,
            load_reference_map=self.parameterAsFile(parameters, "LOAD_REFERENCE_MAP", context)
            or None,
            **mask_arguments(self, parameters, context),
            **output_arguments(self, parameters, context),
            progress=progress, cancelled=cancelled, log=engine_log(feedback),
            scheduler=self.dask_scheduler(parameters, context),
        )
        feedback.pushInfo(f"Wrote {len(result.outputs)} image(s) to {folder} with a "
                          f"{result.grid.rows} × {result.grid.cols} block grid in "
                          f"{result.timings['total']:.1f} s.")
        outputs = common_results(result, folder)
        outputs.update({"BLOCK_MAPS": list(result.block_map_files),
                        "GRID_ROWS": int(result.grid.rows), "GRID_COLS": int(result.grid.cols)})
        if maps:
            outputs["SAVE_BLOCK_MAPS"] = maps
        if html:
            outputs["OUTPUT_HTML"] = write_report(html, result, inputs, "local", feedback)
        load_corrected_images(context, result.outputs, "OUTPUTS")
        _load_block_maps(context, result)
        return outputs


def _load_block_maps(context, result):
    """Block maps on the map, band 1 coloured over the reference map's range."""
    import numpy as np

    from .layer_loading import PseudocolorStyle, layer_name, load_on_completion

    values = result.reference_map[0][np.isfinite(result.reference_map[0])]
    low, high = (float(values.min()), float(values.max())) if values.size else (None, None)
    for path in result.block_map_files:
        load_on_completion(context, path, layer_name(path), "BLOCK_MAPS",
                           post_processor=PseudocolorStyle(1, low, high))
