"""Outputs added to the project when an algorithm finishes, named and styled.

Destination parameters (raster, sink) are loaded by QGIS itself when the
caller asks for it (the dialog's "Open output file", ``runAndLoadResults``);
:func:`style_output` gives such a layer a readable name and a style. Outputs
QGIS does not know to be layers (corrected images written to a folder, block
maps, CSV tables) are added with :func:`load_on_completion`: the dialog and
``runAndLoadResults`` load them, ``processing.run`` and ``qgis_process``
ignore them, and so do models (their steps' files are intermediate).

Post-processors are Python objects QGIS calls after the algorithm: they are
kept referenced here (the context does not own them).
"""

import math
import os

from qgis.core import (
    QgsClassificationQuantile,
    QgsColorRampShader,
    QgsFillSymbol,
    QgsGraduatedSymbolRenderer,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingUtils,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
    QgsStyle,
)

#: Post-processors alive until the next algorithm run adds its own.
_KEPT = []
#: Colour ramp of value rasters (a QGIS default style ramp).
RAMP = "Viridis"


def _keep(post_processor):
    del _KEPT[:-50]  # bounded: older runs have long been loaded
    _KEPT.append(post_processor)
    return post_processor


class PolygonStyle(QgsProcessingLayerPostProcessorInterface):
    """Polygons coloured by ``field`` (quantile classes on the value ramp), or outlines only
    when no field is given (the segments stay readable over a raster)."""

    def __init__(self, field=None):
        super().__init__()
        self.field = field

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        apply_polygon_style(layer, self.field)


def apply_polygon_style(layer, field=None):
    if layer is None or not layer.isValid():
        return
    outline = {"color": "0,0,0,0", "outline_color": "35,35,35,255", "outline_width": "0.2"}
    if not field:
        layer.setRenderer(QgsSingleSymbolRenderer(QgsFillSymbol.createSimple(outline)))
    else:
        renderer = QgsGraduatedSymbolRenderer(field)
        renderer.setSourceSymbol(QgsFillSymbol.createSimple(
            {"outline_color": "35,35,35,120", "outline_width": "0.1"}))
        renderer.setClassificationMethod(QgsClassificationQuantile())
        renderer.updateClasses(layer, 7)
        renderer.updateColorRamp(QgsStyle.defaultStyle().colorRamp(RAMP))
        layer.setRenderer(renderer)
    layer.triggerRepaint()


class PseudocolorStyle(QgsProcessingLayerPostProcessorInterface):
    """A singleband pseudocolour ramp over ``minimum .. maximum`` of ``band``."""

    def __init__(self, band, minimum, maximum):
        super().__init__()
        self.band, self.minimum, self.maximum = band, minimum, maximum

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API)
        apply_pseudocolor(layer, self.band, self.minimum, self.maximum)


def apply_pseudocolor(layer, band, minimum, maximum):
    """Style a raster layer with a continuous ramp; nothing for a missing range."""
    if layer is None or not layer.isValid() or minimum is None or maximum is None:
        return
    if not (math.isfinite(minimum) and math.isfinite(maximum)):
        return
    if maximum <= minimum:
        maximum = minimum + 1.0
    ramp = QgsStyle.defaultStyle().colorRamp(RAMP)
    colour_shader = QgsColorRampShader(minimum, maximum)
    colour_shader.setSourceColorRamp(ramp)
    colour_shader.setColorRampType(QgsColorRampShader.Interpolated)
    colour_shader.classifyColorRamp(5, -1)
    shader = QgsRasterShader(minimum, maximum)
    shader.setRasterShaderFunction(colour_shader)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(minimum)
    renderer.setClassificationMax(maximum)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def style_output(context, path, name, post_processor=None):
    """Name (and style) the layer QGIS loads for a destination parameter's ``path``,
    when it loads one."""
    if not path or not context.willLoadLayerOnCompletion(path):
        return
    details = context.layerToLoadOnCompletionDetails(path)
    details.name = name
    details.forceName = True
    if post_processor is not None:
        details.setPostProcessor(_keep(post_processor))


def load_on_completion(context, path, name, output_name="", kind="raster", post_processor=None):
    """Have the dialog / ``runAndLoadResults`` add ``path`` to the project as ``name``.

    ``kind`` is ``raster``, ``vector`` or ``table`` (a CSV without geometry).
    """
    project = context.project()
    if not path or project is None or not os.path.exists(path) or in_model(context):
        return
    hint = (QgsProcessingUtils.LayerHint.Raster if kind == "raster"
            else QgsProcessingUtils.LayerHint.Vector)
    details = QgsProcessingContext.LayerDetails(name, project, output_name, hint)
    details.forceName = True
    if post_processor is not None:
        details.setPostProcessor(_keep(post_processor))
    context.addLayerToLoadOnCompletion(path, details)


def in_model(context):
    """True when the algorithm runs as a step of a model (QGIS puts the model's scopes in
    the context's expression context): a step's intermediate files are not added to the
    project, only the model's outputs are (QGIS does that)."""
    scopes = context.expressionContext()
    return any(scopes.scope(i).name() in ("Model", "algorithm_inputs")
               for i in range(scopes.scopeCount()))


def layer_name(path):
    """A readable layer name from a file name: ``a_Global_Local.tif`` -> ``a_Global_Local``."""
    return os.path.splitext(os.path.basename(os.fspath(path).rstrip("/\\")))[0]
