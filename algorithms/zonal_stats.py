"""tessera:zonalstats — statistics of a raster for every polygon of a layer."""

import math

from qgis.core import (
    QgsFeatureRequest,
    QgsFields,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsWkbTypes,
)

from ..engine.statistics.catalogue import (
    DEFAULT_STATISTICS,
    PERCENTILE_METHODS,
    PIXEL_RULE_CATALOGUE,
    PIXEL_RULES,
    STATISTICS,
    statistics_help,
)
from .base import TesseraAlgorithm, check_outputs, raster_source, static_enum
from .file_sink import FileSink
from .qgis_compat import FAST_INSERT, VECTOR_POLYGON, WKT_PREFERRED_GDAL, make_field
from .report_output import add_report_parameter, report_path


class ZonalStatsAlgorithm(TesseraAlgorithm):
    NAME = "zonalstats"
    DISPLAY_NAME = "Zonal statistics"
    GROUP = "Zones"
    GROUP_ID = "zones"
    REQUIRES = ("numba", "shapely")
    HELP = (
        "Computes statistics of a raster for every polygon of a layer and writes a copy of the "
        "layer (every feature and attribute kept) with one field per statistic: "
        "&lt;prefix&gt;&lt;statistic&gt; for one band (_mean, _p25), "
        "&lt;prefix&gt;b&lt;band&gt;_&lt;statistic&gt; for several (_b2_mean). Overlapping "
        "polygons each get all their pixels; multipolygons count whole, holes are excluded; "
        "polygons in another CRS are transformed to the raster's (the log says so); invalid "
        "polygons are repaired (make_valid) and reported. Raster nodata and NaN pixels are "
        "ignored. Pixel rules: centre (a pixel counts when its centre is inside, as QGIS's "
        "zonal statistics and rasterstats), all_touched (every pixel the polygon covers with a "
        "non-zero area), fraction (each pixel weighted by the exact fraction of its area "
        "inside the polygon, as exactextract: weighted pixcount, sum, mean, stddev, median, "
        "percentiles, cv, skewness, kurtosis and class fractions; min, max and variety over the "
        "pixels touched). A polygon without any "
        "pixel (outside the raster, or too small to hold a pixel centre under centre) gets "
        "pixcount 0 and NULL in the other fields: unlike QGIS's own zonal statistics, the rule "
        "is never switched silently. The raster is read tile by tile, so rasters larger than "
        "memory and millions of polygons are fine."
    )

    def initAlgorithm(self, config=None):  # noqa: N802 (QGIS API)
        self.add(QgsProcessingParameterFeatureSource(
            "INPUT", "Polygon layer", [VECTOR_POLYGON]),
            "Polygons (or multipolygons) to summarise the raster in.")
        self.add(QgsProcessingParameterRasterLayer("RASTER", "Raster"),
                 "Raster whose values are summarised (any GDAL type).")
        self.add(QgsProcessingParameterBand("BANDS", "Bands", 1, "RASTER", optional=True,
                                            allowMultiple=True),
                 "Raster bands to summarise (default band 1); one read of each tile serves all.")
        self.add(static_enum("STATISTICS", "Statistics", STATISTICS, list(DEFAULT_STATISTICS),
                             multiple=True),
                 statistics_help(weighted=True) + " frac fields: &lt;prefix&gt;frac_3.")
        self.add(QgsProcessingParameterString("PERCENTILES", "Percentiles", "", optional=True),
                 "Comma-separated percentiles in 0..100, e.g. 25,75; field &lt;prefix&gt;p25.")
        rule = static_enum("PIXEL_RULE", "Pixel rule", list(PIXEL_RULES),
                           PIXEL_RULE_CATALOGUE[0].name)
        self.add(rule, "; ".join(f"{r.name}: {r.help}" for r in PIXEL_RULE_CATALOGUE) + ".")
        method = static_enum("PERCENTILE_METHOD", "Percentile method", PERCENTILE_METHODS,
                             PERCENTILE_METHODS[0])
        self.add(method, "centre and all_touched rules: inverted_cdf gives an actual pixel value; "
                 "linear interpolates as numpy's default (QGIS, rasterstats). The fraction rule "
                 "always uses exactextract's weighted quantiles.", advanced=True)
        self.add(QgsProcessingParameterString("COLUMN_PREFIX", "Field name prefix", "_",
                                              optional=True),
                 "Prefix of the statistic fields (default _).")
        self.add(QgsProcessingParameterFeatureSink("OUTPUT", "Zonal statistics",
                                                   VECTOR_POLYGON),
                 "The input features with their attributes and one field per statistic.")
        table = QgsProcessingParameterFileDestination(
            "OUTPUT_TABLE", "Output table", "CSV files (*.csv)", optional=True,
            createByDefault=False)
        self.add(table, "Optional CSV: fid, then every statistic (empty when missing).")
        self.add(QgsProcessingParameterBoolean("OVERWRITE", "Replace existing output files",
                                               False),
                 "Replace an output layer file or table that exists already; otherwise an "
                 "existing file is an error and nothing is written. An input is never "
                 "replaced.")
        add_report_parameter(self, "Summary report", "Optional HTML summary, opened in the "
                             "Results Viewer: feature count, and per statistic field its "
                             "range, mean and histogram. Needs matplotlib.")
        self.add_dask_scheduler()
        self.addOutput(QgsProcessingOutputNumber("FEATURE_COUNT", "Features"))

    def process(self, parameters, context, feedback):
        from ..engine import zonal_stats
        from ..engine.errors import CancelledError

        source = self.parameterAsSource(parameters, "INPUT", context)
        if source is None:
            raise QgsProcessingException("Cannot load the polygon layer given for INPUT.")
        raster = raster_source(self, parameters, "RASTER", context)
        output_table = self.parameterAsFileOutput(parameters, "OUTPUT_TABLE", context) or None
        overwrite = self.parameterAsBool(parameters, "OVERWRITE", context)
        check_outputs(self, parameters, context,
                      {"OUTPUT": "output layer", "OUTPUT_TABLE": "output table"},
                      {"INPUT": "polygon layer", "RASTER": "raster"}, overwrite)
        html = report_path(self, parameters, context)
        progress, cancelled = self.engine_callbacks(feedback)
        total = source.featureCount()
        result = zonal_stats(
            _geometries(source), raster,
            statistics=self.parameterAsEnumStrings(parameters, "STATISTICS", context),
            bands=self.parameterAsInts(parameters, "BANDS", context) or [1],
            percentiles=self.parameterAsString(parameters, "PERCENTILES", context),
            percentile_method=self.parameterAsEnumString(parameters, "PERCENTILE_METHOD",
                                                         context),
            pixel_rule=self.parameterAsEnumString(parameters, "PIXEL_RULE", context),
            column_prefix=self.parameterAsString(parameters, "COLUMN_PREFIX", context),
            polygons_crs=_crs_text(source.sourceCrs()),
            output_table=output_table, overwrite=overwrite, polygons_name=source.sourceName(),
            progress=lambda f, m="": progress(0.9 * f, m), cancelled=cancelled,
            scheduler=self.dask_scheduler(parameters, context),
        )
        for note in result.notes:
            feedback.pushInfo(note)

        fields = QgsFields(source.fields())
        clash = [name for name, _ in result.columns if fields.lookupField(name) >= 0]
        if clash:
            raise QgsProcessingException(
                f"The polygon layer already has the field(s) {', '.join(clash)}: choose another "
                "field name prefix.")
        for name, kind in result.columns:
            fields.append(_field(name, kind))
        integer = [kind == "integer" for _, kind in result.columns]
        row_of = {int(fid): row for row, fid in enumerate(result.fids)}
        with FileSink(self, parameters, "OUTPUT", context, fields, source.wkbType(),
                      source.sourceCrs()) as output:
            for done, feature in enumerate(source.getFeatures()):
                if feedback.isCanceled():
                    raise CancelledError()
                row = row_of[feature.id()]
                stats = [_attribute(result.values[c, row], integer[c])
                         for c in range(len(integer))]
                feature.setFields(fields, False)
                feature.setAttributes(list(feature.attributes()) + stats)
                if not output.sink.addFeature(feature, FAST_INSERT):
                    raise QgsProcessingException(
                        f"Writing the output layer failed: {output.sink.lastError()}")
                if total:
                    feedback.setProgress(90.0 + 10.0 * (done + 1) / total)
        dest_id = output.destination
        feedback.pushInfo(f"Zonal statistics ({result.pixel_rule} rule) of {result.feature_count} "
                          f"feature(s) in {result.timings['total']:.2f} s.")
        outputs = {"OUTPUT": dest_id, "FEATURE_COUNT": int(result.feature_count)}
        if output_table:
            outputs["OUTPUT_TABLE"] = output_table
            from .layer_loading import layer_name, load_on_completion

            load_on_completion(context, output_table, layer_name(output_table), "OUTPUT_TABLE",
                               kind="table")
        if html:
            from ..engine.reports.statistics import zonal_stats_report

            outputs["OUTPUT_HTML"], _ = zonal_stats_report(
                html, [name for name, _ in result.columns], result.values,
                int(result.feature_count), result.pixel_rule)
        return outputs


def _geometries(source):
    """Yield (feature id, WKB) of every feature; curves are segmentized."""
    request = QgsFeatureRequest().setNoAttributes()
    for feature in source.getFeatures(request):
        geometry = feature.geometry()
        if geometry is None or geometry.isNull():
            yield feature.id(), None
            continue
        if QgsWkbTypes.isCurvedType(geometry.wkbType()):
            geometry = geometry.__class__(geometry.constGet().segmentize())
        yield feature.id(), bytes(geometry.asWkb())


def _crs_text(crs):
    if not crs.isValid():
        return None
    return crs.authid() if crs.authid().upper().startswith("EPSG:") else crs.toWkt(
        WKT_PREFERRED_GDAL)


def _field(name, kind):
    return make_field(name, "longlong" if kind == "integer" else "double")


def _attribute(value, integer):
    value = float(value)
    if math.isnan(value):
        return None
    return int(value) if integer else value
