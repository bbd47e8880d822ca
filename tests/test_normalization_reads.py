"""Normalization reads each input pixel as few times as possible, in bounded memory,
and writes the same pixels as before (issue 23).

The SHA-256 digests in REFERENCE are of the outputs written by the code before the
read planning (commit 54a684e) on the scenes built here (integer pixels from a seeded
generator, so the same everywhere): the new passes must reproduce them bit for bit."""

import hashlib

import numpy as np
import pytest
from normalization_scenes import utm_wkt
from osgeo import gdal

from tessera.engine import global_regression, local_block_adjustment
from tessera.engine.io.raster_io import write_array

GT = (500000.0, 10.0, 0.0, 6000000.0, 0.0, -10.0)


def world(rows, cols, bands, seed):
    """A seeded integer texture on a smooth integer gradient (bands, rows, cols)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 400, (bands, rows, cols))
    r = np.arange(rows)[:, None]
    c = np.arange(cols)[None, :]
    ramp = np.stack([(r * (7 + b) + c * (5 + 2 * b)) // 3 for b in range(bands)])
    return noise + ramp + 500


def chain(folder, dtype=np.uint16, nodata=0, shift=0.0, bands=3):
    """Three 90 x 120 scenes in a chain overlapping by half (the third also 20 rows
    lower), each with its gain and offset and a nodata corner; ``shift`` moves the
    third scene by that fraction of a pixel (grids that do not line up)."""
    folder.mkdir(exist_ok=True)
    base = world(130, 260, bands, seed=23)
    specs = [("c1", 0, 0, 1.0, 0), ("c2", 0, 60, 1.2, 40), ("c3", 20, 120, 0.85, -60)]
    paths = []
    for k, (name, r0, c0, gain, offset) in enumerate(specs):
        array = (base[:, r0:r0 + 90, c0:c0 + 120] * gain + offset).round()
        if np.dtype(dtype).kind == "i":
            array -= 900  # values <= 0 occur (the local offsets)
        array[:, :10 + 5 * k, :15] = nodata
        array[1, 40:44, 50:57] = nodata  # one band only
        x0, px, _, y0, _, py = GT
        gt = (x0 + (c0 + (shift if k == 2 else 0.0)) * px, px, 0.0, y0 + r0 * py, 0.0, py)
        path = folder / f"{name}.tif"
        write_array(str(path), array.astype(dtype), gt, utm_wkt(), nodata)
        paths.append(str(path))
    return paths


def digest(path):
    dataset = gdal.Open(str(path))
    array = dataset.ReadAsArray()
    return hashlib.sha256(str(array.dtype).encode() + array.tobytes()).hexdigest()[:16]


CASES = {
    "global_uint16": (global_regression, dict(), dict()),
    "global_uint16_windows": (global_regression, dict(), dict(window_size=32, threads=2)),
    "global_int16_model": (global_regression, dict(dtype=np.int16, nodata=-9999),
                           dict(model_images=["c2"], weight_by_overlap_size=False)),
    "global_float32_shifted": (global_regression,
                               dict(dtype=np.float32, nodata=-9999, shift=0.5), dict()),
    "local_uint16": (local_block_adjustment, dict(), dict(blocks=6)),
    "local_uint16_windows": (local_block_adjustment, dict(),
                             dict(blocks=6, window_size=32, threads=2)),
    "local_int16_linear": (local_block_adjustment, dict(dtype=np.int16, nodata=-9999),
                           dict(blocks=4, method="linear")),
    "local_int16_gamma": (local_block_adjustment, dict(dtype=np.int16, nodata=-9999),
                          dict(blocks=4)),
    "local_float32": (local_block_adjustment, dict(dtype=np.float32, nodata=-9999),
                      dict(blocks=5)),
}

REFERENCE = {
    "global_float32_shifted": ["97a6ff1cd1292184", "dc0e6513553ffa85", "afa2fbdadca64946"],
    "global_int16_model": ["185d5d468650fa01", "63d7389bfdfd4785", "a773e047059a910a"],
    "global_uint16": ["d5284e4f1f82bf55", "feb7ad874eb8e9bd", "d1dcbca2f48e651b"],
    "global_uint16_windows": ["d5284e4f1f82bf55", "feb7ad874eb8e9bd", "d1dcbca2f48e651b"],
    "local_float32": ["b80a48931f4a4c45", "75bf98d5d450e134", "25eb380944a0b6c8"],
    "local_int16_gamma": ["89958aa1fbc3cb3c", "37a5d892160d3f9e", "bdcc3c0327726ee9"],
    "local_int16_linear": ["ff1c8e3b0ef5dc0b", "b65a394f5d421130", "a26b5176f4c0f2b7"],
    "local_uint16": ["20ce42fcc37bc64c", "fc9c91726ac88aa6", "6a6a6f60e939e179"],
    "local_uint16_windows": ["20ce42fcc37bc64c", "fc9c91726ac88aa6", "6a6a6f60e939e179"],
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_outputs_are_bit_identical_to_before(tmp_path, case):
    function, scene_options, options = CASES[case]
    paths = chain(tmp_path / "in", **scene_options)
    result = function(paths, tmp_path / "out", **options)
    got = [digest(path) for path in result.outputs]
    assert got == REFERENCE[case]


class CountedReads:
    """Every window the engine reads (``read_window``: statistics and corrections), by
    file: pixels read and the band lists asked for."""

    def __init__(self, monkeypatch):
        from tessera.engine.io import raster_io
        from tessera.engine.normalization import overlap_statistics

        self.pixels, self.bands = {}, {}
        original = raster_io.read_window

        def counting(dataset, bands, window, *args, **kwargs):
            name = dataset.GetDescription()
            self.pixels[name] = self.pixels.get(name, 0) + window.xsize * window.ysize
            self.bands.setdefault(name, set()).add(tuple(bands))
            return original(dataset, bands, window, *args, **kwargs)

        monkeypatch.setattr(raster_io, "read_window", counting)
        monkeypatch.setattr(overlap_statistics, "read_window", counting)


def pixel_count(path):
    dataset = gdal.Open(str(path))
    return dataset.RasterXSize * dataset.RasterYSize


@pytest.mark.parametrize("function", [global_regression, local_block_adjustment])
@pytest.mark.parametrize("threads", [1, 2])
def test_each_input_pixel_is_read_once_for_statistics_and_once_for_the_correction(
        tmp_path, monkeypatch, function, threads):
    paths = chain(tmp_path / "in")
    reads = CountedReads(monkeypatch)
    function(paths, tmp_path / "out", threads=threads, window_size=48)
    # only the inputs are read (no overlap VRT), each pixel twice, all bands at a time
    assert sorted(reads.pixels) == sorted(paths)
    for path in paths:
        assert reads.pixels[path] == 2 * pixel_count(path), path
        assert reads.bands[path] == {(1, 2, 3)}


def test_only_pairs_whose_grids_do_not_line_up_are_read_again(tmp_path, monkeypatch):
    from tessera.engine.normalization.image_set import open_image_set
    from tessera.engine.normalization.overlap import find_overlaps

    paths = chain(tmp_path / "in", dtype=np.float32, nodata=-9999, shift=0.5)
    reads = CountedReads(monkeypatch)
    global_regression(paths, tmp_path / "out", threads=2)
    for path in paths:
        assert reads.pixels[path] == 2 * pixel_count(path), path
    images = open_image_set(paths).images
    resampled = [o for o in find_overlaps(images) if "c3" in (images[o.i].name,
                                                               images[o.j].name)]
    assert len(resampled) == 1  # c2-c3; c1-c2 line up and are read with the images
    others = sum(n for name, n in reads.pixels.items() if name not in paths)
    assert others == 2 * sum(o.window.xsize * o.window.ysize for o in resampled)


@pytest.mark.parametrize("function", [global_regression, local_block_adjustment])
def test_gdal_cache_is_capped_during_a_run_and_restored_after(tmp_path, function):
    from tessera.engine import CancelledError
    from tessera.engine.normalization.corrected_output import NORMALIZATION_CACHE_BYTES

    paths = chain(tmp_path / "in")
    seen = []
    previous = gdal.GetCacheMax()
    try:
        gdal.SetCacheMax(777 << 20)
        function(paths, tmp_path / "out", progress=lambda f, m: seen.append(gdal.GetCacheMax()))
        assert seen and max(seen) <= NORMALIZATION_CACHE_BYTES
        assert gdal.GetCacheMax() == 777 << 20
        # a smaller setting is kept, and restored after a cancelled run too
        gdal.SetCacheMax(8 << 20)
        seen.clear()
        with pytest.raises(CancelledError):
            function(paths, tmp_path / "again", cancelled=lambda: len(seen) > 3,
                     progress=lambda f, m: seen.append(gdal.GetCacheMax()))
        assert max(seen) == 8 << 20
        assert gdal.GetCacheMax() == 8 << 20
    finally:
        gdal.SetCacheMax(previous)


def test_overlapping_caps_in_threads_keep_the_lowest_and_restore_the_first_setting():
    """Runs in threads overlapping in time: each lowers the cap, none raises it, and the
    setting found before the first comes back only when the last has left."""
    import threading

    from tessera.engine.io.raster_io import gdal_cache_limit

    previous = gdal.GetCacheMax()
    entered, release = threading.Barrier(3), threading.Event()
    seen = {}

    def run(name, limit, leave):
        with gdal_cache_limit(limit):
            entered.wait(timeout=30)
            leave.wait(timeout=30)
            seen[name] = gdal.GetCacheMax()

    first_leaves = threading.Event()
    threads = [threading.Thread(target=run, args=("a", 64 << 20, first_leaves)),
               threading.Thread(target=run, args=("b", 16 << 20, release))]
    try:
        gdal.SetCacheMax(256 << 20)
        for thread in threads:
            thread.start()
        entered.wait(timeout=30)
        assert gdal.GetCacheMax() == 16 << 20  # the lower cap holds, whoever came first
        first_leaves.set()
        threads[0].join(timeout=30)
        assert seen["a"] == 16 << 20 and gdal.GetCacheMax() == 16 << 20  # b still runs
        release.set()
        threads[1].join(timeout=30)
        assert gdal.GetCacheMax() == 256 << 20
        with gdal_cache_limit(1 << 30):  # a cap above the setting does not raise it
            assert gdal.GetCacheMax() == 256 << 20
    finally:
        release.set()
        first_leaves.set()
        gdal.SetCacheMax(previous)


def test_statistics_windows_hold_a_bounded_number_of_bytes_for_any_scenes():
    """The pieces one window of the statistics pass holds stay within its byte budget
    (up to whole blocks) however many and however large the scenes."""
    from tessera.engine.normalization.overlap_statistics import (
        REGION_WINDOW_BYTES,
        _Placed,
        union_windows,
    )

    pixel_bytes = 4 * 2
    layouts = {
        "chain of 40 large scenes": [_Placed(k, k * 30000, 0, k * 30000 + 60000, 60000)
                                     for k in range(40)],
        "40 scenes stacked": [_Placed(k, k * 7, k * 5, k * 7 + 20000, k * 5 + 20000)
                              for k in range(40)],
        "three scenes chain": [_Placed(k, k * 2000, 0, k * 2000 + 4000, 4000)
                               for k in range(3)],
    }
    for name, placed in layouts.items():
        width, height = max(p.x1 for p in placed), max(p.y1 for p in placed)
        windows = union_windows(placed, width, height, (256, 256), pixel_bytes)
        assert sum(w.xsize * w.ysize for w in windows) == width * height, name
        largest = max(sum((lambda c: c.xsize * c.ysize if c else 0)(p.clip(w))
                          for p in placed) for w in windows)
        assert largest * pixel_bytes <= 2 * REGION_WINDOW_BYTES, (name, largest)
