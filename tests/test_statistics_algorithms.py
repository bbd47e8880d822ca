"""The catalogue's statistics from Processing and qgis_process: options, help and columns
built from it, and the new statistics (cv, skewness, kurtosis, frac) end to end."""

import numpy as np
import pytest
import zonal_cases as cases
from osgeo import ogr
from raster_files import blocky_segments, read_rat, write_raster
from statistic_reference import reference

from tessera.engine import zonal_stats
from tessera.engine.statistics.catalogue import PIXEL_RULES, STATISTICS


def algorithm(name):
    from qgis.core import QgsApplication

    return QgsApplication.processingRegistry().algorithmById(f"tessera:{name}")


def test_options_and_help_come_from_the_catalogue(tessera_provider):
    for name in ("segmentstats", "zonalstats"):
        alg = algorithm(name)
        assert alg.parameterDefinition("STATISTICS").options() == list(STATISTICS)
        text = alg.parameterDefinition("STATISTICS").help()
        assert all(f"{statistic}:" in text for statistic in STATISTICS), name
    assert algorithm("zonalstats").parameterDefinition("PIXEL_RULE").options() == list(
        PIXEL_RULES)


def test_segmentstats_computes_cv_shape_and_class_fractions(run_algorithm, tmp_path):
    seg = blocky_segments(40, 50, 6, 7, seed=50)
    classes = np.random.default_rng(51).choice([3, 7, 11, 40], (40, 50)).astype(np.uint8)
    seg_path = write_raster(tmp_path / "seg.tif", seg)
    image_path = write_raster(tmp_path / "classes.tif", classes, nodata=7)
    out = str(tmp_path / "stats.img")
    results = run_algorithm("segmentstats", {
        "SEGMENTS": seg_path, "IMAGE": image_path,
        "STATISTICS": ["cv", "skewness", "kurtosis", "frac"], "OUTPUT_RAT": out})
    assert results["COLUMNS"].split(",") == ["b1_cv", "b1_skewness", "b1_kurtosis",
                                             "b1_frac_3", "b1_frac_11", "b1_frac_40"]
    rat = read_rat(out)
    for sid in np.unique(seg):
        values = classes[(seg == sid) & (classes != 7)]
        expected = reference(values)
        for stat in ("cv", "skewness", "kurtosis"):
            want = -9999.0 if expected[stat] is None else expected[stat]  # undefined: missing
            assert rat[f"b1_{stat}"][sid] == pytest.approx(want, rel=1e-9), stat
        shares = [rat[f"b1_frac_{c}"][sid] for c in (3, 11, 40)]
        assert shares == pytest.approx([expected["frac"].get(c, 0.0) for c in (3, 11, 40)],
                                       rel=1e-12)
        assert sum(shares) == pytest.approx(1.0, abs=1e-12)


def test_qgis_process_zonalstats_with_frac(qgis_process, tmp_path):
    data = np.nan_to_num(cases.image(), nan=-1.0).astype(np.int16)[1:]  # 12 classes
    image_path = cases.write_image(tmp_path / "classes.tif", data)
    layer = cases.write_polygons(tmp_path / "zones.gpkg", cases.polygons())
    output = tmp_path / "zones_out.gpkg"
    code, result, text = qgis_process(
        "run", "tessera:zonalstats", "--", f"INPUT={layer}", f"RASTER={image_path}",
        "STATISTICS=mean,frac", "PIXEL_RULE=fraction", f"OUTPUT={output}")
    assert code == 0, text
    reference_result = zonal_stats(layer, image_path, statistics=["mean", "frac"],
                                   pixel_rule="fraction")
    names = reference_result.names
    assert names[0] == "_mean" and [n for n in names if n.startswith("_frac_")] == [
        f"_frac_{value}" for value in range(12)]
    source = ogr.Open(str(output))
    layer_out = source.GetLayer()
    fields = [layer_out.GetLayerDefn().GetFieldDefn(i).GetName()
              for i in range(layer_out.GetLayerDefn().GetFieldCount())]
    assert fields[-len(names):] == names
    for index, feature in enumerate(layer_out):
        for name in names:
            expected = reference_result.column(name)[index]
            got = feature.GetField(name)
            assert (got is None) if np.isnan(expected) else got == pytest.approx(expected)
    source = None
