"""RATs that chain in models: the OUTPUT_RAT of segmentstats feeds rattoraster and
exportrat in a .model3 run by ``qgis_process.bin``, whether the RAT went to the segment file
or to a Zarr store; the bundled model's outputs are listed by ``qgis_process.bin help``."""

import csv

import numpy as np
import pytest
from osgeo import gdal
from raster_files import blocky_segments, write_raster


def build_chain_model(path, rat_to_store):
    """segmentstats → rattoraster and segmentstats → exportrat, saved as ``path``."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("Segment means on the map", "Tests", "tests")
    for name in ("SEGMENTS", "IMAGE"):
        model.addModelParameter(QgsProcessingParameterRasterLayer(name, name),
                                QgsProcessingModelParameter(name))

    def static(value):
        return QgsProcessingModelChildParameterSource.fromStaticValue(value)

    def child(child_id, algorithm, sources, outputs):
        step = QgsProcessingModelChildAlgorithm(algorithm)
        step.setChildId(child_id)
        for name, source in sources.items():
            step.addParameterSources(name, [source])
        declared = {}
        for name, child_output in outputs:
            output = QgsProcessingModelOutput(name, name)
            output.setChildId(child_id)
            output.setChildOutputName(child_output)
            declared[name] = output
        step.setModelOutputs(declared)
        model.addChildAlgorithm(step)

    segments = QgsProcessingModelChildParameterSource.fromModelParameter("SEGMENTS")
    rat = QgsProcessingModelChildParameterSource.fromChildOutput("stats", "OUTPUT_RAT")
    child("stats", "tessera:segmentstats",
          {"SEGMENTS": segments,
           "IMAGE": QgsProcessingModelChildParameterSource.fromModelParameter("IMAGE"),
           "STATISTICS": static(["pixcount", "mean"]), "PERCENTILE_METHOD": static("inverted_cdf"),
           "MISSING_VALUE": static(-9999), "OVERWRITE": static(True)},
          [("RAT_STORE", "OUTPUT_RAT")] if rat_to_store else [])
    child("raster", "tessera:rattoraster",
          {"SEGMENTS": segments, "RAT": rat, "COLUMNS": static("b1_mean,b1_pixcount"),
           "DATA_TYPE": static("auto"), "MISSING_VALUE": static(-9999), "RAT_BAND": static(1),
           "OVERWRITE": static(False)},
          [("VALUES", "OUTPUT")])
    child("table", "tessera:exportrat",
          {"INPUT_STORE": rat, "COLUMNS": static("b1_pixcount,b1_mean"),
           "ID_FIELD": static("id"), "OVERWRITE": static(False)},
          [("TABLE", "OUTPUT")])
    ok, errors = model.validate()
    assert ok, errors
    assert model.toFile(str(path))
    return str(path)


@pytest.mark.parametrize("rat_to_store", [False, True], ids=["own_rat", "zarr_store"])
def test_segmentstats_rat_chains_to_rattoraster_and_exportrat(rat_to_store, tessera_provider,
                                                              qgis_process, tmp_path):
    seg = blocky_segments(40, 60, 5, 6, seed=2)
    image = np.random.default_rng(2).integers(1, 1000, (40, 60)).astype(np.uint16)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", image)
    model = build_chain_model(tmp_path / "chain.model3", rat_to_store)
    arguments = [f"SEGMENTS={seg_path}", f"IMAGE={image_path}",
                 f"raster:VALUES={tmp_path / 'values.tif'}",
                 f"table:TABLE={tmp_path / 'table.csv'}"]
    if rat_to_store:
        arguments.append(f"stats:RAT_STORE={tmp_path / 'stats.zarr'}")
    code, result, output = qgis_process("run", model, "--", *arguments)
    assert code == 0, output
    assert "Traceback" not in output
    if rat_to_store:
        assert (tmp_path / "stats.zarr" / "RAT").is_dir()

    ids = np.unique(seg)
    means = {int(i): image[seg == i].mean() for i in ids}
    values = gdal.Open(str(tmp_path / "values.tif")).ReadAsArray()
    expected_mean = np.vectorize(means.get)(seg)
    np.testing.assert_allclose(values[0], expected_mean, rtol=1e-12)
    np.testing.assert_array_equal(values[1], np.bincount(seg.ravel())[seg])

    with open(tmp_path / "table.csv", newline="") as stream:
        rows = {int(r["id"]): r for r in csv.DictReader(stream)}
    for sid in ids:
        assert int(rows[int(sid)]["b1_pixcount"]) == (seg == sid).sum()
        assert float(rows[int(sid)]["b1_mean"]) == pytest.approx(means[int(sid)], rel=1e-12)


def test_bundled_model_has_an_id_without_spaces_and_lists_its_outputs(qgis_process):
    code, result, output = qgis_process("help", "tessera:normalize_and_summarize")
    assert code == 0, output
    assert set(result["outputs"]) == {"local:NORMALIZED", "zonal:ZONES"}
    assert result["algorithm_details"]["name"] == "Normalize and summarize"


def test_segmentstats_returns_where_its_rat_went(run_algorithm, tmp_path):
    seg = blocky_segments(20, 30, 5, 5, seed=1)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    image_path = write_raster(tmp_path / "image.tif", seg.astype(np.uint16))
    own = run_algorithm("segmentstats", {"SEGMENTS": seg_path, "IMAGE": image_path,
                                         "STATISTICS": ["mean"]})
    assert own["OUTPUT_RAT"] == seg_path
    store = str(tmp_path / "s.zarr")
    separate = run_algorithm("segmentstats", {"SEGMENTS": seg_path, "IMAGE": image_path,
                                              "STATISTICS": ["mean"], "OUTPUT_RAT": store})
    assert separate["OUTPUT_RAT"] == store
