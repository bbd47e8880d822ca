"""Enum values and field types that moved between QGIS 3.22 and QGIS 4 (Qt6).

QGIS 3.30–3.38 scoped most enums under ``Qgis`` (``Qgis.ProcessingSourceType``
...) and typed fields with ``QMetaType``; QGIS 4 drops the old unscoped names
and Qt6 drops ``QVariant.Type``. The algorithms use the names below, which
resolve to whichever this QGIS has.
"""

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsFeatureSink,
    QgsField,
    QgsProcessing,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsTask,
    QgsWkbTypes,
)


def _pick(scope, name, old_owner, old_name):
    """``Qgis.<scope>.<name>`` when this QGIS has it, else ``old_owner.<old_name>``."""
    scoped = getattr(Qgis, scope, None)
    return getattr(scoped, name) if scoped is not None else getattr(old_owner, old_name)


INTEGER = _pick("ProcessingNumberParameterType", "Integer", QgsProcessingParameterNumber,
                "Integer")
DOUBLE = _pick("ProcessingNumberParameterType", "Double", QgsProcessingParameterNumber, "Double")
RASTER = _pick("ProcessingSourceType", "Raster", QgsProcessing, "TypeRaster")
VECTOR = _pick("ProcessingSourceType", "Vector", QgsProcessing, "TypeVector")
VECTOR_POLYGON = _pick("ProcessingSourceType", "VectorPolygon", QgsProcessing,
                       "TypeVectorPolygon")
FOLDER = _pick("ProcessingFileParameterBehavior", "Folder", QgsProcessingParameterFile, "Folder")
ADVANCED_FLAG = _pick("ProcessingParameterFlag", "Advanced", QgsProcessingParameterDefinition,
                      "FlagAdvanced")
OPTIONAL_FLAG = _pick("ProcessingParameterFlag", "Optional", QgsProcessingParameterDefinition,
                      "FlagOptional")
NO_GEOMETRY = _pick("WkbType", "NoGeometry", QgsWkbTypes, "NoGeometry")
WKT_PREFERRED_GDAL = _pick("CrsWktVariant", "PreferredGdal", QgsCoordinateReferenceSystem,
                           "WKT_PREFERRED_GDAL")
FAST_INSERT = (QgsFeatureSink.Flag.FastInsert if hasattr(QgsFeatureSink, "Flag")
               and hasattr(QgsFeatureSink.Flag, "FastInsert") else QgsFeatureSink.FastInsert)

# QGIS >= 3.38 (and 4, on Qt6 where QVariant.Type is gone) types fields with QMetaType.
USE_METATYPE = Qgis.QGIS_VERSION_INT >= 33800


def make_field(name, kind):
    """A QgsField of kind ``"string"``, ``"double"``, ``"int"`` or ``"longlong"``."""
    if USE_METATYPE:
        from qgis.PyQt.QtCore import QMetaType

        types = {"string": QMetaType.Type.QString, "double": QMetaType.Type.Double,
                 "int": QMetaType.Type.Int, "longlong": QMetaType.Type.LongLong}
    else:
        from qgis.PyQt.QtCore import QVariant

        types = {"string": QVariant.String, "double": QVariant.Double, "int": QVariant.Int,
                 "longlong": QVariant.LongLong}
    return QgsField(name, types[kind])


def _scoped(owner, scope, name):
    """``owner.<scope>.<name>`` when that resolves, else the old unscoped ``owner.<name>``."""
    value = getattr(getattr(owner, scope, None), name, None)
    return value if value is not None else getattr(owner, name)


MESSAGE_INFO = _scoped(Qgis, "MessageLevel", "Info")
MESSAGE_WARNING = _scoped(Qgis, "MessageLevel", "Warning")
MESSAGE_CRITICAL = _scoped(Qgis, "MessageLevel", "Critical")
MESSAGE_SUCCESS = _scoped(Qgis, "MessageLevel", "Success")
TASK_CAN_CANCEL = _scoped(QgsTask, "Flag", "CanCancel")
TASK_COMPLETE = _scoped(QgsTask, "TaskStatus", "Complete")
TASK_TERMINATED = _scoped(QgsTask, "TaskStatus", "Terminated")
