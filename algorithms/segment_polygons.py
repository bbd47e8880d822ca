"""tessera:segmentpolygons — one polygon per segment, with RAT columns as fields."""

from qgis.core import (
    QgsFeature,
    QgsFields,
    QgsGeometry,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
    QgsWkbTypes,
)

from .base import TesseraAlgorithm, check_outputs
from .file_sink import FileSink
from .layer_loading import PolygonStyle, style_output
from .qgis_compat import FAST_INSERT, VECTOR_POLYGON, make_field
from .segment_rat_source import add_segment_rat_parameters, segment_rat_arguments

MULTI_POLYGON = getattr(getattr(QgsWkbTypes, "Type", QgsWkbTypes), "MultiPolygon",
                        QgsWkbTypes.MultiPolygon)


class SegmentPolygonsAlgorithm(TesseraAlgorithm):
    NAME = "segmentpolygons"
    DISPLAY_NAME = "Segments to polygons"
    GROUP = "Segments"
    GROUP_ID = "segments"
    REQUIRES = ("numba", "shapely")
    HELP = (
        "Turns a segment raster into polygons: one multipolygon per segment id (the null id "
        "left out), with a segment_id field and, optionally, columns of the segmentation's "
        "raster attribute table (RAT) as fields, ready to be styled or joined. The RAT is the "
        "segment file's own, a separate GDAL file, or a Zarr RAT store; its values are copied "
        "as they are (NaN and ids without a RAT row as NULL). Pixels are 4-connected; a "
        "segment's area is its pixel count times the pixel area. The raster is polygonized "
        "window by window with GDAL and the pieces of segments crossing window edges are "
        "merged, so memory stays bounded for millions of segments."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        add_segment_rat_parameters(
            self, "Comma-separated names of numeric RAT columns to copy as fields, e.g. "
            "b1_mean,b1_median; empty: only segment_id.", columns_optional=True)
        self.add(QgsProcessingParameterFeatureSink("OUTPUT", "Segment polygons",
                                                   VECTOR_POLYGON),
                 "The polygons: segment_id, then the chosen columns.")
        self.add(QgsProcessingParameterBoolean("OVERWRITE", "Replace an existing output file",
                                               False),
                 "Replace the output's file when it exists already; otherwise that is an error "
                 "and nothing is written. An input is never replaced.")
        self.addOutput(QgsProcessingOutputNumber("FEATURE_COUNT", "Segments"))

    def process(self, parameters, context, feedback):
        import shapely

        from ..engine.segments.polygons import (
            ID_FIELD,
            SegmentAttributes,
            iter_segment_polygons,
        )

        arguments = segment_rat_arguments(self, parameters, context)
        check_outputs(self, parameters, context, {"OUTPUT": "output layer"},
                      {"SEGMENTS": "segment raster"},
                      self.parameterAsBool(parameters, "OVERWRITE", context))
        progress, cancelled = self.engine_callbacks(feedback)
        attributes = SegmentAttributes(**arguments)
        fields = QgsFields()
        fields.append(make_field(ID_FIELD, "longlong"))
        for name, kind in zip(attributes.columns, attributes.kinds, strict=True):
            fields.append(make_field(name, "longlong" if kind == "integer" else "double"))
        segments = self.parameterAsRasterLayer(parameters, "SEGMENTS", context)
        count = 0
        with FileSink(self, parameters, "OUTPUT", context, fields, MULTI_POLYGON,
                      segments.crs()) as output:
            for batch in iter_segment_polygons(arguments["segments"], arguments["segment_band"],
                                               progress=progress, cancelled=cancelled):
                values = attributes.values(batch.ids)
                features = []
                # 2-D WKB said explicitly: in QGIS desktop shapely may run on QGIS's older GEOS
                wkbs = shapely.to_wkb(batch.geometries, output_dimension=2)
                for index, (sid, wkb) in enumerate(zip(batch.ids.tolist(), wkbs, strict=True)):
                    feature = QgsFeature(fields)
                    geometry = QgsGeometry()
                    geometry.fromWkb(wkb)
                    feature.setGeometry(geometry)
                    feature.setAttributes([sid] + [column[index] for column in values])
                    features.append(feature)
                if not output.sink.addFeatures(features, FAST_INSERT):
                    raise QgsProcessingException(
                        f"Writing the polygons failed: {output.sink.lastError()}")
                count += len(features)
        destination = output.destination
        feedback.pushInfo(f"Wrote {count} segment polygon(s).")
        style_output(context, destination, f"Segments of {segments.name()}",
                     PolygonStyle(attributes.columns[0] if attributes.columns else None))
        return {"OUTPUT": destination, "FEATURE_COUNT": int(count)}


