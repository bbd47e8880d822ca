"""Global regression and local block adjustment on a Dask cluster (``scheduler=``): two
single-threaded worker processes give the same bits as this machine's threads (pixels of
every output, saved adjustments and block maps, reported means), alone and with every
option; a cancel or a failure publishes nothing; a worker killed mid-run is replaced."""

import hashlib
import os
import signal

import numpy as np
import pytest
from normalization_scenes import distort, read, shifted, utm_wkt, write, write_polygons
from test_global_regression import GT, synthetic, textured, three_synthetic

from tessera.engine.errors import CancelledError, TesseraError
from tessera.engine.normalization import distributed_output
from tessera.engine.normalization.global_regression import global_regression
from tessera.engine.normalization.local_block_adjustment import local_block_adjustment

distributed = pytest.importorskip("distributed")


def same_rasters(first, second):
    for a, b in zip(first, second, strict=True):
        assert os.path.basename(a) == os.path.basename(b)
        np.testing.assert_array_equal(read(a), read(b))


def folder_hashes(folder):
    """{name: SHA-256} of every file in ``folder`` (hidden files included)."""
    hashes = {}
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as stream:
                hashes[name] = hashlib.sha256(stream.read()).hexdigest()
    return hashes


def misaligned_pair(tmp_path):
    """Three images, the third on a grid shifted by half a pixel (overlap read through a
    resampling VRT) and a float type; nodata 0."""
    paths = three_synthetic(tmp_path)
    world = textured(70, 60, bands=2, seed=5)
    x0, px, _, y0, _, py = shifted(GT, 20, 20)
    paths.append(write(tmp_path / "s4.tif", distort(world, (1.1, 0.9), (5, -5), nodata=0),
                       (x0 + px / 2, px, 0.0, y0 + py / 2, 0.0, py), utm_wkt(), nodata=0,
                       dtype=np.uint16))
    return paths


def mask_file(tmp_path):
    x0, y0 = GT[0], GT[3]
    triangle = (f"POLYGON(({x0 + 13.3} {y0 - 17.1}, {x0 + 1560.7} {y0 - 40.3}, "
                f"{x0 + 300.9} {y0 - 900.6}, {x0 + 13.3} {y0 - 17.1}))")
    return write_polygons(tmp_path / "mask.gpkg", [(triangle, "zone")], utm_wkt())


@pytest.fixture(params=["default", "stripes"])
def layout(request, monkeypatch):
    """Outputs written whole by one task per image, or in stripes by several tasks per
    image and assembled by a last task."""
    if request.param == "stripes":
        monkeypatch.setattr(distributed_output, "tasks_per_image", lambda client, images: 3)
    return request.param


def test_global_regression_on_the_cluster_is_the_threads_run(client, tmp_path, layout):
    paths = three_synthetic(tmp_path)
    options = dict(threads=3, window_size=16)
    here = global_regression(paths, tmp_path / "here", save_adjustments=tmp_path / "here.json",
                             **options)
    there = global_regression(paths, tmp_path / "there", scheduler=client,
                              save_adjustments=tmp_path / "there.json", **options)
    same_rasters(here.outputs, there.outputs)
    assert (tmp_path / "here.json").read_text() == (tmp_path / "there.json").read_text()
    assert here.adjustments == there.adjustments
    assert (here.means_before, here.means_after) == (there.means_before, there.means_after)
    assert sorted(os.listdir(tmp_path / "there")) == ["s1_Global.tif", "s2_Global.tif",
                                                      "s3_Global.tif"]


@pytest.mark.parametrize("option", ["mask", "cog", "float", "misaligned", "model", "load",
                                    "all"])
def test_global_regression_options_on_the_cluster(client, tmp_path, option):
    paths = misaligned_pair(tmp_path) if option in ("misaligned", "all") else \
        three_synthetic(tmp_path)
    options = dict(threads=2, window_size=24)
    if option in ("mask", "all"):
        options.update(vector_mask=mask_file(tmp_path))
    if option in ("cog", "all"):
        options.update(cog=True)
    if option in ("float", "all"):
        options.update(output_dtype="float32")
    if option in ("model", "all"):
        options.update(model_images=["s2"], model_mode="exclude", weight_by_overlap_size=False)
    if option in ("load", "all"):
        global_regression(paths[:2], tmp_path / "first", save_adjustments=tmp_path / "two.json")
        options.update(load_adjustments=tmp_path / "two.json")
    here = global_regression(paths, tmp_path / "here", **options)
    there = global_regression(paths, tmp_path / "there", scheduler=client, **options)
    same_rasters(here.outputs, there.outputs)
    assert here.adjustments == there.adjustments
    assert (here.means_before, here.means_after, here.clamped) == (
        there.means_before, there.means_after, there.clamped)


def lba_scenes(tmp_path):
    return three_synthetic(tmp_path)


@pytest.mark.parametrize("option,stripes", [
    ("default", False), ("variation", False), ("linear", False), ("mask", False),
    ("cog", False), ("load", False), ("all", False), ("default", True), ("all", True)])
def test_local_block_adjustment_on_the_cluster_is_the_threads_run(client, tmp_path, option,
                                                                  stripes, monkeypatch):
    if stripes:  # several tasks per image write stripes, a last one assembles them
        monkeypatch.setattr(distributed_output, "tasks_per_image", lambda client, images: 3)
    paths = lba_scenes(tmp_path)
    options = dict(threads=3, window_size=16, blocks=6)
    if option in ("variation", "all"):
        options.update(blocks_from_variation=True)
    if option in ("linear",):
        options.update(method="linear")
    if option in ("mask", "all"):
        options.update(vector_mask=mask_file(tmp_path))
    if option in ("cog", "all"):
        options.update(cog=True, output_dtype="float32")
    if option in ("load", "all"):
        local_block_adjustment(paths, tmp_path / "first", save_block_maps=tmp_path / "maps0",
                               blocks=6)
        options.update(load_reference_map=tmp_path / "maps0" / "reference_block_map.tif")
    here = local_block_adjustment(paths, tmp_path / "here", save_block_maps=tmp_path / "m1",
                                  **options)
    there = local_block_adjustment(paths, tmp_path / "there", scheduler=client,
                                   save_block_maps=tmp_path / "m2", **options)
    same_rasters(here.outputs, there.outputs)
    same_rasters(here.block_map_files, there.block_map_files)
    assert (here.means_before, here.means_after, here.offsets) == (
        there.means_before, there.means_after, there.offsets)


def published(folder):
    return sorted(f for f in os.listdir(folder) if not f.startswith("."))


@pytest.mark.parametrize("phase", ["statistics", "Applying"])
def test_a_cancel_on_the_cluster_publishes_nothing(client, tmp_path, phase):
    paths = three_synthetic(tmp_path)
    out = tmp_path / "out"
    global_regression(paths, out, save_adjustments=out / "adj.json")
    before = folder_hashes(out)
    calls = []
    with pytest.raises(CancelledError):
        global_regression(paths, out, save_adjustments=out / "adj.json", overwrite=True,
                          threads=4, window_size=8, scheduler=client,
                          progress=lambda f, m: calls.append(m),
                          cancelled=lambda: any(phase in m for m in calls))
    assert folder_hashes(out) == before  # no temporary file either
    # the workers are free for the next run
    again = global_regression(paths, tmp_path / "again", scheduler=client)
    assert published(tmp_path / "again") == ["s1_Global.tif", "s2_Global.tif", "s3_Global.tif"]
    assert again.adjustments


def test_a_task_failure_on_the_cluster_publishes_nothing(client, tmp_path, monkeypatch,
                                                         restore_workers):
    paths = three_synthetic(tmp_path)
    out = tmp_path / "out"
    local_block_adjustment(paths, out, blocks=6)
    before = folder_hashes(out)
    # a correction no worker can run: the run fails as it failed there, publishing nothing
    monkeypatch.setattr(distributed_output, "tasks_per_image", lambda client, images: 2)
    with pytest.raises(TesseraError, match="not understood"):
        local_block_adjustment(paths, out, blocks=6, overwrite=True, scheduler=client,
                               method="linear", alpha=1.0, threads=2, window_size=8,
                               progress=_poison(client))
    assert {k: v for k, v in folder_hashes(out).items() if not k.startswith(".")} == before


def _poison(client):
    """A progress callback that, once the correction starts, makes every later correction
    task fail on its worker (its output type is unknown there)."""
    state = {"done": False}

    def progress(fraction, message):
        if "Applying" in message and not state["done"]:
            state["done"] = True
            client.run(_break_output_raster)

    return progress


def _break_output_raster():
    from tessera.engine.errors import TesseraError
    from tessera.engine.normalization import corrected_output

    def broken(*args, **kwargs):
        raise TesseraError("this output type is not understood (a test's failure)")

    raster = corrected_output.OutputRaster
    raster.original_init = getattr(raster, "original_init", raster.__init__)
    raster.__init__ = broken
    return True


def _restore_output_raster():
    from tessera.engine.normalization import corrected_output

    raster = corrected_output.OutputRaster
    if hasattr(raster, "original_init"):
        raster.__init__ = raster.original_init
    return True


@pytest.fixture
def restore_workers(client):
    yield
    client.run(_restore_output_raster)


def larger_scenes(tmp_path):
    """Three 400 x 500 scenes overlapping by half: tasks that take a while."""
    world = textured(400, 1000, bands=2, seed=3)
    return [synthetic(tmp_path, f"big{k}", distort(world[:, :, c:c + 500], gains, (0, 0),
                                                   nodata=0), 0, c)
            for k, (c, gains) in enumerate(((0, (1, 1)), (250, (1.2, 0.9)),
                                            (500, (0.8, 1.1))))]


@pytest.mark.parametrize("phase", ["Block means", "Applying"])
def test_a_worker_killed_mid_run_is_replaced_or_the_run_fails_cleanly(client, tmp_path, phase):
    paths = larger_scenes(tmp_path)
    options = dict(blocks=6, threads=4, window_size=64)
    reference = local_block_adjustment(paths, tmp_path / "reference", **options)
    out = tmp_path / "out"
    local_block_adjustment(paths, out, blocks=6, method="linear")
    before = folder_hashes(out)
    killed = []

    def progress(fraction, message):
        if phase not in message or killed:
            return
        busy = [worker for worker, keys in client.processing().items() if keys]
        if busy:  # a worker running one of the run's tasks dies
            pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

    try:
        result = local_block_adjustment(paths, out, overwrite=True, scheduler=client,
                                        progress=progress, **options)
    except TesseraError as error:
        assert "nothing was published" in str(error)
        assert {k: v for k, v in folder_hashes(out).items() if not k.startswith(".")} == before
    else:
        same_rasters(reference.outputs, result.outputs)
        assert (reference.means_before, reference.means_after) == (result.means_before,
                                                                   result.means_after)
    assert killed, "no task was running when the progress was reported"
    client.wait_for_workers(2, timeout=60)


@pytest.mark.parametrize("name", ["globalregression", "localblockadjustment"])
def test_the_algorithms_take_a_dask_scheduler(run_algorithm, cluster, tmp_path, name):
    paths = three_synthetic(tmp_path)
    common = {"INPUTS": paths, "OUTPUT_DTYPE": "input", "COG": False}
    here = run_algorithm(name, {**common, "OUTPUT_FOLDER": str(tmp_path / "here")})
    there = run_algorithm(name, {**common, "OUTPUT_FOLDER": str(tmp_path / "there"),
                                 "DASK_SCHEDULER": cluster.scheduler_address})
    same_rasters(sorted(here["OUTPUTS"]), sorted(there["OUTPUTS"]))
    for key in ("ADJUSTMENTS", "GRID_ROWS", "GRID_COLS"):
        assert here.get(key) == there.get(key)
