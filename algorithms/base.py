"""The base class of Tessera's Processing algorithms.

Subclasses declare ``NAME``, ``DISPLAY_NAME``, ``GROUP``, ``GROUP_ID``,
``HELP`` and ``REQUIRES`` (Python packages the engine call needs), add their
parameters in ``initAlgorithm`` with :meth:`TesseraAlgorithm.add`, and do the
work in :meth:`TesseraAlgorithm.process`: translate parameters, call the engine
with :meth:`engine_callbacks`, return plain Python values.
"""

import os
import re
import traceback

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingParameterEnum,
    QgsProcessingParameterString,
    QgsProject,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QIcon

from .qgis_compat import ADVANCED_FLAG
from .readiness import announce_compilation, help_url, missing_requirements

PLUGIN_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DASK_SCHEDULER = "DASK_SCHEDULER"


def static_enum(name, description, options, default, multiple=False, optional=False):
    """An enum parameter whose values are the option strings themselves (stable in
    models and scripts; from qgis_process: ``NAME=a,b``)."""
    parameter = QgsProcessingParameterEnum(name, description, options=list(options),
                                           allowMultiple=multiple, defaultValue=default,
                                           optional=optional)
    parameter.setUsesStaticStrings(True)
    return parameter


def plugin_icon():
    return QIcon(os.path.join(PLUGIN_DIR, "resources", "icon.png"))


def plugin_version():
    from ..engine.version import tessera_version

    return tessera_version()


class TesseraAlgorithm(QgsProcessingAlgorithm):
    """Shared boilerplate: names, help, dependency checks, engine errors."""

    NAME = ""
    DISPLAY_NAME = ""
    GROUP = ""
    GROUP_ID = ""
    HELP = ""
    REQUIRES = ("numba",)

    def name(self):
        return self.NAME

    def displayName(self):  # noqa: N802 (QGIS API)
        return self.DISPLAY_NAME

    def group(self):
        return self.GROUP

    def groupId(self):  # noqa: N802 (QGIS API)
        return self.GROUP_ID

    def icon(self):
        return plugin_icon()

    def createInstance(self):  # noqa: N802 (QGIS API)
        return type(self)()

    def shortHelpString(self):  # noqa: N802 (QGIS API)
        lines = [self.HELP.strip()]
        described = [p for p in self.parameterDefinitions() if p.help()]
        if described:
            lines.append("<h3>Parameters</h3><dl>")
            for parameter in described:
                lines.append(f"<dt><b>{parameter.description()}</b> ({parameter.name()})</dt>")
                lines.append(f"<dd>{parameter.help()}</dd>")
            lines.append("</dl>")
        return "\n".join(lines)

    def helpUrl(self):  # noqa: N802 (QGIS API)
        return help_url(self.NAME)

    def canExecute(self):  # noqa: N802 (QGIS API)
        return missing_requirements(self.DISPLAY_NAME, self.REQUIRES)

    def add(self, parameter, help_text="", advanced=False):
        """Add a parameter with its help text."""
        if help_text:
            parameter.setHelp(help_text)
        if advanced:
            parameter.setFlags(parameter.flags() | ADVANCED_FLAG)
        self.addParameter(parameter)
        return parameter

    def add_dask_scheduler(self):
        """The advanced ``DASK_SCHEDULER`` parameter (empty: this machine's threads)."""
        self.add(QgsProcessingParameterString(DASK_SCHEDULER, "Dask scheduler",
                                              defaultValue="", optional=True),
                 "Empty: run on this machine's threads. 'local': start a Dask cluster of "
                 "worker processes on this machine for the run. An address such as "
                 "tcp://host:8786: run on that Dask scheduler's workers, which must be able "
                 "to import tessera and read the inputs (shared paths, /vsis3/, s3://). "
                 "Needs the Python package dask[distributed].", advanced=True)

    def dask_scheduler(self, parameters, context):
        """The ``scheduler=`` of the engine call: None (this machine) or the text given."""
        if self.parameterDefinition(DASK_SCHEDULER) is None:
            return None
        value = (self.parameterAsString(parameters, DASK_SCHEDULER, context) or "").strip()
        return value or None

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802 (QGIS API)
        from ..engine.errors import TesseraError
        from ..engine.io.output_safety import redact

        try:
            from ..engine.dependencies import require

            require(*self.REQUIRES, purpose=f"Tessera's '{self.DISPLAY_NAME}'")
            announce_compilation(feedback, self.REQUIRES, plugin_version())
            return self.process(parameters, context, feedback)
        except TesseraError as error:
            raise QgsProcessingException(redact(str(error))) from None
        except QgsProcessingException as error:
            raise QgsProcessingException(redact(str(error))) from None
        except MemoryError:
            raise QgsProcessingException(
                f"{self.DISPLAY_NAME} ran out of memory. Close other programs, or run it on "
                "smaller inputs (fewer bands or statistics, a smaller extent).") from None
        except Exception as error:  # an engine bug: say so plainly, keep details in the log
            if feedback is not None:
                feedback.pushDebugInfo(redact(traceback.format_exc()))
            raise QgsProcessingException(
                f"{self.DISPLAY_NAME} failed unexpectedly: {redact(error)}. "
                "Please report this with the log at https://github.com/tessera-gis/tessera/issues"
            ) from None

    def process(self, parameters, context, feedback):
        """Translate parameters, call the engine, return plain Python results."""
        raise NotImplementedError

    @staticmethod
    def engine_callbacks(feedback):
        """``(progress, cancelled)`` callables for an engine call."""
        last_message = [None]

        def progress(fraction, message=""):
            if feedback is None:
                return
            if message and message != last_message[0]:
                last_message[0] = message
                feedback.setProgressText(message)
            feedback.setProgress(100.0 * fraction)

        def cancelled():
            return feedback is not None and feedback.isCanceled()

        return progress, cancelled


def raster_source(algorithm, parameters, name, context):
    """The GDAL source string of raster parameter ``name``, or a clear error."""
    layer = algorithm.parameterAsRasterLayer(parameters, name, context)
    if layer is None:
        raise QgsProcessingException(f"Cannot load the raster given for {name}.")
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"The raster {layer.name()} for {name} is not a GDAL raster "
            f"(provider '{layer.providerType()}'): Tessera reads rasters with GDAL."
        )
    return layer.source()


def destination_file(algorithm, parameters, name, context):
    """The local file a destination parameter (file or sink) will write, or None for a
    temporary, memory or database output."""
    if algorithm.parameterDefinition(name).type() == "sink":
        value = algorithm.parameterAsOutputLayer(parameters, name, context)
    else:
        value = algorithm.parameterAsFileOutput(parameters, name, context)
    value = (value or "").strip()
    if value.startswith("ogr:"):  # ogr:dbname='file.gpkg' table="name" (sql=)
        match = re.search(r"dbname='([^']*)'", value)
        value = match.group(1) if match else ""
    if not value or "://" in value or value.startswith(
            ("memory:", "TEMPORARY_OUTPUT", "postgres:", "postgis:", "spatialite:", "mssql:",
             "oracle:")):
        return None
    return value.split("|")[0]


def layer_file(algorithm, parameters, name, context):
    """The file behind a layer parameter (None when it is not a file)."""
    value = parameters.get(name)
    if value in (None, ""):
        return None
    layer = algorithm.parameterAsLayer(parameters, name, context)
    return layer.source().split("|")[0] if layer is not None else None


def check_outputs(algorithm, parameters, context, outputs, inputs, overwrite):
    """Refuse, before any work, destination parameters ``outputs`` (name -> role) that are
    one of the layers ``inputs`` (name -> role) or exist without ``overwrite``."""
    from ..engine.io.output_safety import check_targets

    check_targets(
        [(destination_file(algorithm, parameters, name, context), role)
         for name, role in outputs.items()],
        [(layer_file(algorithm, parameters, name, context), role)
         for name, role in inputs.items()], overwrite)


def keep_rat_visible_to_qgis(path, band, context):
    """Make a RAT just written to ``path``'s ``.aux.xml`` survive QGIS's own handles.

    QGIS keeps the raster open while it is a layer (in the project or the
    Processing context); when it closes the file GDAL rewrites the
    ``.aux.xml`` from what it read at opening, without the new RAT. Call this
    from ``postProcessAlgorithm`` (main thread): layers of that file are
    reloaded, then the RAT is stored again so the reopened handles keep it.
    """
    from ..engine.rat.staging import side_car_rat_kept

    target = os.path.realpath(path)
    stores = [context.temporaryLayerStore(), QgsProject.instance()]
    layers = [
        layer for store in stores for layer in store.mapLayers().values()
        if isinstance(layer, QgsRasterLayer) and layer.providerType() == "gdal"
        and os.path.realpath(layer.source().split("|")[0]) == target
    ]
    if layers:
        with side_car_rat_kept(path, band):
            for layer in layers:
                layer.dataProvider().reloadData()
                layer.triggerRepaint()
