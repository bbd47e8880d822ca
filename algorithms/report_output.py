"""The optional ``OUTPUT_HTML`` report of an algorithm: its path, checked before any work."""

import os

from qgis.core import QgsProcessingException, QgsProcessingParameterFileDestination

HTML_FILTER = "HTML files (*.html)"


def add_report_parameter(algorithm, description, help_text):
    """Add the optional ``OUTPUT_HTML`` destination (QGIS lists it as an HTML output, which
    the Results Viewer opens)."""
    algorithm.add(QgsProcessingParameterFileDestination(
        "OUTPUT_HTML", description, HTML_FILTER, optional=True, createByDefault=False),
        help_text + " An existing report is replaced only with Overwrite on.")


def report_path(algorithm, parameters, context):
    """The report's path (``.html`` added), or None; an existing file without OVERWRITE and
    a folder that cannot be created are errors before any work."""
    path = algorithm.parameterAsFileOutput(parameters, "OUTPUT_HTML", context) or None
    if not path:
        return None
    if not path.lower().endswith((".html", ".htm")):
        path += ".html"
    overwrite = ("OVERWRITE" in parameters
                 and algorithm.parameterAsBool(parameters, "OVERWRITE", context))
    if os.path.exists(path) and not overwrite:
        raise QgsProcessingException(
            f"The report {path} exists already: turn on Overwrite, or choose another file.")
    from ..engine.io.output_safety import check_folder

    check_folder(os.path.dirname(os.path.abspath(path)), "folder of the report", create=True)
    return path
