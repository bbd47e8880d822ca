"""Issue 19 for the radiometric normalization outputs: every mistake is a clear error that
changes no file (every file under the test folder is hashed before and after), outputs are
published together only when all were written and read back (a failed adjustments file or
block map, a full disk), loaded statistics are reused only for the files they describe,
clamping is reported, a block grid is bounded by the images."""

import errno
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
from conftest import PLUGINS_DIR
from normalization_scenes import read, shifted, utm_wkt, write

from tessera.engine import TesseraError, global_regression, local_block_adjustment

GT = (500000.0, 10.0, 0.0, 6000000.0, 0.0, -10.0)


def scene(folder, name, col0, seed, rows=60, cols=70, low=100, high=3000):
    """A 2-band UInt16 scene (nodata 0) at column ``col0`` of one grid."""
    os.makedirs(folder, exist_ok=True)
    array = np.random.default_rng(seed).integers(low, high, (2, rows, cols)).astype(float)
    return write(os.path.join(folder, f"{name}.tif"), array, shifted(GT, 0, col0), utm_wkt(),
                 nodata=0, dtype=np.uint16)


def scenes(folder, names=("s1", "s2", "s3"), **options):
    """Three overlapping scenes (each overlaps the next by 30 columns)."""
    return [scene(folder, name, 40 * index, index + 1, **options)
            for index, name in enumerate(names)]


def hashes(folder):
    """relative path -> SHA-256 of every file under ``folder``."""
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as stream:
                found[os.path.relpath(path, folder)] = hashlib.sha256(stream.read()).hexdigest()
    return found


def refused(tmp_path, call, *patterns):
    """Run ``call``: it must raise a TesseraError whose text holds every pattern, and
    leave every file under ``tmp_path`` as it was."""
    before = hashes(tmp_path)
    with pytest.raises(TesseraError) as caught:
        call()
    text = str(caught.value)
    for pattern in patterns:
        assert pattern in text, (pattern, text)
    assert "unexpectedly" not in text
    assert hashes(tmp_path) == before
    return text


# Targets checked against every input and each other, before any work ---------------------------
def test_a_block_map_folder_holding_an_input_map_name_is_refused(tmp_path):
    maps = tmp_path / "maps"
    inputs = [scene(maps, "reference_block_map", 0, 1), scene(tmp_path, "b", 40, 2)]
    refused(tmp_path, lambda: local_block_adjustment(inputs, tmp_path / "out", blocks=4,
                                                     save_block_maps=maps),
            f"The block map {maps / 'reference_block_map.tif'} is the input image",
            "would destroy an input", "Choose another path for the block map")


def test_an_input_named_like_a_local_map_is_refused_too(tmp_path):
    maps = tmp_path / "maps"
    inputs = [scene(tmp_path, "a", 0, 1), scene(maps, "a_local_block_map", 40, 2)]
    refused(tmp_path, lambda: local_block_adjustment(inputs, tmp_path / "out", blocks=4,
                                                     save_block_maps=maps),
            f"The block map {maps / 'a_local_block_map.tif'} is the input image",
            "would destroy an input")


def test_the_adjustments_file_can_be_neither_an_output_image_nor_an_input(tmp_path):
    paths = scenes(tmp_path / "in")
    out = tmp_path / "out"
    refused(tmp_path, lambda: global_regression(paths, out,
                                                save_adjustments=out / "s1_Global.tif"),
            "The adjustments file and the output image are both", "s1_Global.tif",
            "give each output its own path")
    refused(tmp_path, lambda: global_regression(paths, out, save_adjustments=paths[1]),
            f"The adjustments file {paths[1]} is the input image", "would destroy an input")
    refused(tmp_path, lambda: global_regression(paths, out, profile_plot=paths[0]),
            "The profile plot", "would destroy an input")


def test_a_loaded_file_is_never_overwritten(tmp_path):
    paths = scenes(tmp_path / "in")
    global_regression(paths, tmp_path / "first", save_adjustments=tmp_path / "adj.json")
    refused(tmp_path, lambda: global_regression(
        paths, tmp_path / "second", load_adjustments=tmp_path / "adj.json",
        save_adjustments=tmp_path / "adj.json", overwrite=True),
        "is the adjustments file to load", "would destroy an input")
    local_block_adjustment(paths, tmp_path / "local", blocks=4, save_block_maps=tmp_path / "m")
    reference = tmp_path / "m" / "reference_block_map.tif"
    refused(tmp_path, lambda: local_block_adjustment(
        paths, tmp_path / "again", load_reference_map=reference,
        save_block_maps=tmp_path / "m", overwrite=True),
        "is the reference map to load", "would destroy an input")


def test_an_output_folder_that_is_a_file_is_a_clear_error(tmp_path):
    paths = scenes(tmp_path / "in")
    (tmp_path / "out").write_text("a file")
    refused(tmp_path, lambda: global_regression(paths, tmp_path / "out"),
            f"The output folder {tmp_path / 'out'} cannot be used", "is a file, not a folder")
    refused(tmp_path, lambda: local_block_adjustment(
        paths, tmp_path / "local", save_block_maps=tmp_path / "out" / "maps"),
        "block map folder", "is a file, not a folder")


def test_existing_outputs_are_replaced_only_with_overwrite(tmp_path):
    paths = scenes(tmp_path / "in")
    out = tmp_path / "out"
    first = global_regression(paths, out, save_adjustments=out / "adj.json",
                              profile_plot=out / "plot.png")
    refused(tmp_path, lambda: global_regression(paths, out, model_images=["s2"]),
            f"The output image {out / 's1_Global.tif'} already exists",
            "choose to overwrite it, or another path")
    refused(tmp_path, lambda: global_regression(paths, tmp_path / "other",
                                                save_adjustments=out / "adj.json"),
            "adj.json already exists")
    again = global_regression(paths, out, model_images=["s2"], save_adjustments=out / "adj.json",
                              profile_plot=out / "plot.png", overwrite=True)
    assert again.adjustments != first.adjustments
    assert json.loads((out / "adj.json").read_text())["s2"]["adjustments"]["band_0"] == \
        pytest.approx({"scale": 1.0, "offset": 0.0}, abs=1e-9)
    assert sorted(os.listdir(out)) == ["adj.json", "plot.png", "s1_Global.tif", "s2_Global.tif",
                                       "s3_Global.tif"]  # no temporary or lock file left


# Published together, read back, all or nothing --------------------------------------------------
def test_when_the_adjustments_cannot_be_saved_no_image_is_published(tmp_path, monkeypatch):
    from tessera.engine.normalization import adjustment_file

    paths = scenes(tmp_path / "in")
    out = tmp_path / "out"
    global_regression(paths, out, save_adjustments=out / "adj.json")

    def full_disk(path, mode="r", **options):
        if "w" in mode:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return open(path, mode, **options)

    monkeypatch.setattr(adjustment_file, "open", full_disk, raising=False)
    refused(tmp_path, lambda: global_regression(paths, out, model_images=["s3"],
                                                save_adjustments=out / "adj.json",
                                                overwrite=True),
            f"Writing the adjustments file {out / 'adj.json'} failed: No space left on device")


def test_when_a_block_map_cannot_be_saved_no_image_is_published(tmp_path, monkeypatch):
    from tessera.engine.normalization import block_maps

    paths = scenes(tmp_path / "in")
    out, maps = tmp_path / "out", tmp_path / "maps"
    local_block_adjustment(paths, out, blocks=4, save_block_maps=maps)
    real, written = block_maps.write_block_map, []

    def second_fails(path, *args):
        if written:
            raise TesseraError(f"Writing the block map {path} failed: No space left on device")
        written.append(real(path, *args))
        return written[-1]

    monkeypatch.setattr(block_maps, "write_block_map", second_fails)
    text = refused(tmp_path, lambda: local_block_adjustment(
        paths, out, blocks=9, save_block_maps=maps, overwrite=True),
        f"Writing the block map {maps / 's1_local_block_map.tif'} failed")
    assert ".tessera-tmp-" not in text  # the message names the target


FULL_DISK = textwrap.dedent("""
    import resource, signal, sys
    sys.path.insert(0, {plugins!r})
    from tessera.engine import TesseraError, global_regression, local_block_adjustment

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    try:
        {call}
    except TesseraError as error:
        print("refused:", error)
        sys.exit(3)
    print("written")
""")


@pytest.mark.parametrize("call", [
    "global_regression({paths!r}, {out!r}, save_adjustments={out!r} + '/adj.json', "
    "model_images=['s2'], overwrite=True, threads=2)",
    "local_block_adjustment({paths!r}, {out!r}, blocks=9, save_block_maps={out!r} + '/maps', "
    "overwrite=True, threads=2)"])
def test_a_full_disk_is_an_error_that_leaves_every_file_as_it_was(tmp_path, call):
    paths = scenes(tmp_path / "in", rows=300, cols=120)  # noise: ~100 KB per output image
    out = str(tmp_path / "out")
    global_regression(paths, out, save_adjustments=out + "/adj.json")
    local_block_adjustment(paths, out, blocks=4, save_block_maps=out + "/maps")
    before = hashes(tmp_path)
    script = FULL_DISK.format(plugins=PLUGINS_DIR, limit=48 * 1024,
                              call=call.format(paths=paths, out=out))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 3, (done.returncode, done.stdout, done.stderr[-3000:])
    assert "refused:" in done.stdout and "failed" in done.stdout, done.stdout
    assert "File too large" in done.stdout or "No space" in done.stdout, done.stdout
    assert hashes(tmp_path) == before


KILLED = textwrap.dedent("""
    import os, signal, sys
    sys.path.insert(0, {plugins!r})
    from tessera.engine import local_block_adjustment

    def progress(fraction, message):
        if message == "Writing block maps":  # every image written, nothing published yet
            os.kill(os.getpid(), signal.SIGKILL)

    local_block_adjustment({paths!r}, {out!r}, blocks=9, save_block_maps={out!r} + "/maps",
                           overwrite=True, progress=progress, threads=1)
""")


def test_a_run_killed_before_publishing_leaves_every_target_as_it_was(tmp_path):
    from tessera.engine.io.output_safety import TEMPORARY_MARK

    paths = scenes(tmp_path / "in")
    out = str(tmp_path / "out")
    local_block_adjustment(paths, out, blocks=4, save_block_maps=out + "/maps")
    before = hashes(tmp_path)
    script = KILLED.format(plugins=PLUGINS_DIR, paths=paths, out=out)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == -9, (done.returncode, done.stderr[-2000:])
    after = hashes(tmp_path)
    left = [name for name in after if name not in before]
    assert left and all(TEMPORARY_MARK in name or name.endswith(".tessera-lock")
                        for name in left), left  # only hidden temporary files were added
    assert {name: after[name] for name in before} == before
    again = local_block_adjustment(paths, out, blocks=9, save_block_maps=out + "/maps",
                                   overwrite=True)  # the killed run's lock blocks nobody
    assert again.grid.rows * again.grid.cols <= 27


def test_a_second_run_on_the_same_outputs_waits_then_finds_them(tmp_path):
    paths = scenes(tmp_path / "in")
    out = tmp_path / "out"
    started, errors = threading.Event(), []

    def slow(fraction, message):
        started.set()
        time.sleep(0.01)

    def first():
        try:
            global_regression(paths, out, progress=slow, window_size=16, threads=1)
        except Exception as error:  # noqa: BLE001 (reported below)
            errors.append(error)

    thread = threading.Thread(target=first)
    thread.start()
    assert started.wait(30)
    told = []
    with pytest.raises(TesseraError, match="already exists"):
        global_regression(paths, out, log=told.append)
    thread.join()
    assert not errors
    assert any("Waiting for another Tessera run" in line for line in told)


# Loaded statistics only for the files they describe -------------------------------------------
def test_adjustments_saved_for_other_pixels_are_recomputed_with_a_warning(tmp_path):
    paths = scenes(tmp_path / "in")
    global_regression(paths, tmp_path / "first", save_adjustments=tmp_path / "adj.json")
    scene(tmp_path / "in", "s1", 0, seed=99, low=2000, high=4000)  # same name, other pixels
    fresh = global_regression(paths, tmp_path / "fresh")
    told = []
    loaded = global_regression(paths, tmp_path / "loaded", load_adjustments=tmp_path / "adj.json",
                               log=told.append)
    assert loaded.loaded == ["s2", "s3"]
    assert any(line.startswith("Warning: the statistics of s1 in") and "other pixels" in line
               and "computed again" in line for line in told), told
    for name in fresh.names:
        for got, want in zip(loaded.adjustments[name], fresh.adjustments[name], strict=True):
            assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
    for first, second in zip(fresh.outputs, loaded.outputs, strict=True):
        np.testing.assert_array_equal(read(first), read(second))


def test_a_file_without_fingerprints_is_reused_with_a_warning(tmp_path):
    paths = scenes(tmp_path / "in")
    saved = global_regression(paths, tmp_path / "first", save_adjustments=tmp_path / "adj.json")
    document = json.loads((tmp_path / "adj.json").read_text())
    assert document["s1"]["fingerprint"]["width"] == 70
    for entry in document.values():
        del entry["fingerprint"]  # as spectralmatch writes it
    (tmp_path / "plain.json").write_text(json.dumps(document))
    told = []
    loaded = global_regression(paths, tmp_path / "loaded", load_adjustments=tmp_path / "plain.json",
                               log=told.append)
    assert loaded.loaded == ["s1", "s2", "s3"]
    assert loaded.adjustments == saved.adjustments
    assert any("holds no fingerprint of s1, s2, s3" in line for line in told), told


# Clear errors for known mistakes --------------------------------------------------------------
def test_a_huge_block_grid_is_refused_at_once(tmp_path):
    paths = scenes(tmp_path / "in")
    started = time.monotonic()
    refused(tmp_path, lambda: local_block_adjustment(paths, tmp_path / "out", block_rows=100000,
                                                     block_cols=100000),
            "A 100000 x 100000 block grid has more blocks than the images have pixels",
            "their union is 60 x 150 pixels", "at most 60 rows and 150 columns",
            "Choose fewer blocks")
    refused(tmp_path, lambda: local_block_adjustment(paths, tmp_path / "out", blocks=10**10),
            "block grid has more blocks than the images have pixels")
    assert time.monotonic() - started < 10
    result = local_block_adjustment(paths, tmp_path / "out", block_rows=60, block_cols=150)
    assert (result.grid.rows, result.grid.cols) == (60, 150)  # the limit itself works


def test_a_truncated_reference_map_is_named_as_damaged(tmp_path):
    paths = scenes(tmp_path / "in")
    local_block_adjustment(paths, tmp_path / "out", blocks=4, save_block_maps=tmp_path / "maps")
    reference = tmp_path / "maps" / "reference_block_map.tif"
    content = reference.read_bytes()
    reference.write_bytes(content[:len(content) // 2])
    refused(tmp_path, lambda: local_block_adjustment(paths[:1], tmp_path / "again",
                                                     load_reference_map=reference),
            str(reference), "damaged or incomplete", "save the block maps again")


def test_uint8_outputs_of_uint16_scenes_report_the_clamped_share(tmp_path):
    paths = scenes(tmp_path / "in", low=1000, high=3000)
    told = []
    result = global_regression(paths, tmp_path / "out", output_dtype="uint8", log=told.append)
    assert result.clamped == {"s1": 1.0, "s2": 1.0, "s3": 1.0}
    warnings = [line for line in told if line.startswith("Warning:")]
    assert len(warnings) == 3 and "s1: 100.0% of the valid pixel values fell outside the uint8 " \
        "range 0..255 and were clamped" in warnings[0]
    assert "choose a wider output data type" in warnings[0]
    in_range = scenes(tmp_path / "small", low=10, high=200)
    told = []
    result = local_block_adjustment(in_range, tmp_path / "local", blocks=4, output_dtype="uint8",
                                    log=told.append)
    assert set(result.clamped.values()) == {0.0}
    assert not [line for line in told if "clamped" in line]


# Through Processing -----------------------------------------------------------------------------
class Collecting:
    """A Processing feedback keeping warnings and infos."""

    @staticmethod
    def make():
        from qgis.core import QgsProcessingFeedback

        class Feedback(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.lines = []

            def pushWarning(self, text):  # noqa: N802 (QGIS API)
                self.lines.append(("warning", text))

            def pushInfo(self, text):  # noqa: N802 (QGIS API)
                self.lines.append(("info", text))

        return Feedback()


def test_algorithms_refuse_existing_outputs_unless_overwrite(run_algorithm, tmp_path):
    from qgis.core import QgsProcessingException

    paths = scenes(tmp_path / "in", low=1000)
    parameters = {"INPUTS": paths, "OUTPUT_FOLDER": str(tmp_path / "out"),
                  "OUTPUT_DTYPE": "uint8"}
    feedback = Collecting.make()
    results = run_algorithm("globalregression", parameters, feedback=feedback)
    assert json.loads(results["CLAMPED"]) == {"s1": 1.0, "s2": 1.0, "s3": 1.0}
    assert ("warning", next(text for kind, text in feedback.lines if "clamped" in text)) in \
        feedback.lines
    before = hashes(tmp_path)
    with pytest.raises(QgsProcessingException) as caught:
        run_algorithm("globalregression", parameters)
    assert "already exists: choose to overwrite it" in str(caught.value)
    assert hashes(tmp_path) == before
    results = run_algorithm("globalregression", {**parameters, "OVERWRITE": True})
    assert len(results["OUTPUTS"]) == 3
    (tmp_path / "file").write_text("x")
    with pytest.raises(QgsProcessingException) as caught:
        run_algorithm("localblockadjustment", {"INPUTS": paths,
                                               "OUTPUT_FOLDER": str(tmp_path / "file")})
    assert "is a file, not a folder" in str(caught.value)
    assert "unexpectedly" not in str(caught.value)
