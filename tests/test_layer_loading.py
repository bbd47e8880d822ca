"""Outputs that QGIS does not know to be layers (corrected images, block maps, CSV tables)
are listed for loading when the algorithm finishes, with readable names; a model's steps
list nothing (their files are intermediate)."""

import os

import numpy as np
from raster_files import blocky_segments, write_raster
from test_model import NODATA, PIXEL, X0, Y0, scene, write_polygons


def fresh_context():
    from qgis.core import QgsProcessingContext, QgsProject

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    return context


def two_scenes(tmp_path):
    world = scene(40, 70, seed=5)
    a, b = world[:, :, :40], (world[:, :, 30:] * 1.2 + 30).astype(np.float32)
    write_raster(tmp_path / "scene_a.tif", a, nodata=NODATA)
    write_raster(tmp_path / "scene_b.tif", b, nodata=NODATA,
                 geotransform=(X0 + 30 * PIXEL, PIXEL, 0, Y0, 0, -PIXEL))
    return [str(tmp_path / "scene_a.tif"), str(tmp_path / "scene_b.tif")]


def listed(context):
    return {os.path.basename(path): details.name
            for path, details in context.layersToLoadOnCompletion().items()}


def test_normalization_outputs_and_block_maps_are_listed_with_names(tessera_provider, tmp_path):
    import processing

    inputs = two_scenes(tmp_path)
    context = fresh_context()
    processing.run("tessera:localblockadjustment", {
        "INPUTS": inputs, "OUTPUT_FOLDER": str(tmp_path / "out"), "BLOCKS": 4,
        "SAVE_BLOCK_MAPS": str(tmp_path / "maps")}, context=context)
    assert listed(context) == {
        "scene_a_Local.tif": "scene_a_Local", "scene_b_Local.tif": "scene_b_Local",
        "reference_block_map.tif": "reference_block_map",
        "scene_a_local_block_map.tif": "scene_a_local_block_map",
        "scene_b_local_block_map.tif": "scene_b_local_block_map"}


def test_segment_table_is_listed_as_a_table(tessera_provider, tmp_path):
    import processing

    seg = blocky_segments(20, 30, 5, 5, seed=3)
    seg_path = write_raster(tmp_path / "segments.tif", seg)
    image = write_raster(tmp_path / "image.tif", seg.astype(np.uint16))
    context = fresh_context()
    processing.run("tessera:segmentstats", {
        "SEGMENTS": seg_path, "IMAGE": image, "STATISTICS": ["mean"],
        "OUTPUT_TABLE": str(tmp_path / "stats.csv")}, context=context)
    assert listed(context) == {"stats.csv": "stats"}


def test_a_models_steps_list_nothing(tessera_provider, tmp_path):
    import processing

    inputs = two_scenes(tmp_path)
    write_polygons(tmp_path / "zones.gpkg", [(0, 20, 0, 30)])
    context = fresh_context()
    processing.run("tessera:normalize_and_summarize", {
        "INPUTS": inputs, "POLYGONS": str(tmp_path / "zones.gpkg"), "BLOCKS": 4,
        "local:NORMALIZED": str(tmp_path / "normalized"),
        "zonal:ZONES": str(tmp_path / "zones_out.gpkg")}, context=context)
    assert (tmp_path / "normalized" / "scene_a_Global_Local.tif").exists()
    assert not any(name.endswith(".tif") for name in listed(context))
