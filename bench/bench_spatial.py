"""Benchmark: per-segment spatial statistics against per-segment statistics on the same data.

Generates (once, under bench/output/) a uint32 segmentation with ragged-edged segments
numbered in random order and a uint16 image (nodata 0), as tiled DEFLATE GeoTIFFs, then
runs each case in a fresh interpreter (numba compiled on a tiny raster first, so the
timings leave compilation out) and prints seconds, the ratio to per-segment statistics,
and the peak RSS of the process:

1. segment_stats with mean and stddev (the per-segment statistics baseline);
2. segment_spatial_stats with centroid, bbox, area, perimeter, edgepixels (8-connected);
3. segment_spatial_stats with variogram (max lag 5 pixels: 60 pixel offsets);
4. segment_spatial_stats with diagonalrms (max lag 5: 18 offsets);
5. segment_user_stats with a centroid user function (every segment's points held until
   it is complete, as in pyshepseg).

    .venv/bin/python bench/bench_spatial.py [--size 4000] [--block 13]

4000 x 4000 with block 13 gives about 95,000 segments; `--size 400` checks the script.
`--block 0` makes one segment of the whole raster: the streamed built-ins keep a few tiles,
while per-segment statistics and user functions hold the segment's pixels until the end.
"""

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np
from peak_memory import peak_rss_mb

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "demo"))
from qgis_cli import plugin_folder  # noqa: E402

PLUGINS = plugin_folder()
sys.path.insert(0, PLUGINS)

CASES = {
    "segment_stats mean,stddev": ("stats", {"statistics": ["mean", "stddev"]}),
    "spatial shape (centroid,bbox,area,perimeter,edgepixels)": (
        "spatial", {"statistics": ["centroid", "bbox", "area", "perimeter", "edgepixels"]}),
    "spatial variogram max_lag 5": ("spatial", {"statistics": ["variogram"], "max_lag": 5}),
    "spatial diagonalrms max_lag 5": ("spatial", {"statistics": ["diagonalrms"],
                                                  "max_lag": 5}),
    "user function centroid (points)": ("user", {}),
}
BASELINE = "segment_stats mean,stddev"


def generate(folder, size, block):
    """Write the segmentation and the image (if missing); return their paths."""
    import sample_data

    from tessera.engine.io.raster_io import write_array

    os.makedirs(folder, exist_ok=True)
    seg_path = os.path.join(folder, f"spatial_segments_{size}_{block}.tif")
    image_path = os.path.join(folder, f"spatial_image_{size}.tif")
    options = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "COMPRESS=DEFLATE",
               "BIGTIFF=IF_SAFER"]
    if not os.path.exists(seg_path):
        print(f"generating {seg_path} ...", flush=True)
        if block:
            segments = sample_data.segmentation(size, size, block, seed=2)
        else:
            segments = np.ones((size, size), np.uint32)
        write_array(seg_path, segments, sample_data.geotransform(), sample_data.crs_wkt(),
                    options=options)
    if not os.path.exists(image_path):
        print(f"generating {image_path} ...", flush=True)
        write_array(image_path, sample_data.landscape(size, size, 1, seed=1)[0],
                    sample_data.geotransform(), sample_data.crs_wkt(), nodata=0,
                    options=options)
    return seg_path, image_path


def run_case(name, seg_path, image_path, folder):
    """Time one case in this (fresh) process; print a JSON line."""
    kind, options = CASES[name]
    call = _engine_call(kind)
    tiny_seg, tiny_image = _tiny_case(folder)
    call(tiny_seg, tiny_image, os.path.join(folder, "tiny_rat.img"), options)  # compile
    before = peak_rss_mb()
    started = time.perf_counter()
    result = call(seg_path, image_path, os.path.join(folder, "bench_spatial_rat.img"), options)
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "peak_mb": peak_rss_mb(), "before_mb": before,
                      "segments": result.segment_count}))




def _engine_call(kind):
    from tessera.engine import segment_spatial_stats, segment_stats, segment_user_stats

    def stats(seg, image, out, options):
        return segment_stats(seg, image, output_rat=out, overwrite=True, **options)

    def spatial(seg, image, out, options):
        return segment_spatial_stats(seg, image, output_rat=out, overwrite=True, **options)

    centroid = _centroid_function()  # one function: numba compiles it once

    def user(seg, image, out, options):
        from osgeo import gdal

        gt = np.array(gdal.Open(seg).GetGeoTransform())
        return segment_user_stats(seg, image, centroid, [("cx", "real"), ("cy", "real")],
                                  parameter=gt, output_rat=out, overwrite=True)

    return {"stats": stats, "spatial": spatial, "user": user}[kind]


def _centroid_function():
    from numba import njit

    @njit
    def centroid(points, null_value, int_out, float_out, gt):
        sum_x = 0.0
        sum_y = 0.0
        for pt in points:
            sum_x += gt[0] + gt[1] * (pt.x + 0.5) + gt[2] * (pt.y + 0.5)
            sum_y += gt[3] + gt[4] * (pt.x + 0.5) + gt[5] * (pt.y + 0.5)
        float_out[0] = sum_x / points.shape[0]
        float_out[1] = sum_y / points.shape[0]

    return centroid


def _tiny_case(folder):
    from tessera.engine.io.raster_io import write_array

    seg = (np.arange(900).reshape(30, 30) // 7 + 1).astype(np.uint32)
    image = (np.arange(900).reshape(30, 30) % 97 + 1).astype(np.uint16)
    return (write_array(os.path.join(folder, "tiny_spatial_seg.tif"), seg),
            write_array(os.path.join(folder, "tiny_spatial_image.tif"), image, nodata=0))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4000, help="rows = columns")
    parser.add_argument("--block", type=int, default=13,
                        help="segment size in pixels (0: one segment over everything)")
    parser.add_argument("--run", help=argparse.SUPPRESS)  # one case, in a child process
    arguments = parser.parse_args()
    folder = os.path.join(HERE, "output")
    seg_path, image_path = generate(folder, arguments.size, arguments.block)
    if arguments.run:
        run_case(arguments.run, seg_path, image_path, folder)
        return
    print(f"{arguments.size} x {arguments.size} pixels, segment block {arguments.block}")
    rows = []
    for name in CASES:
        done = subprocess.run(
            [sys.executable, os.path.abspath(__file__), "--size", str(arguments.size),
             "--block", str(arguments.block), "--run", name],
            capture_output=True, text=True, check=True)
        rows.append((name, json.loads(done.stdout.strip().splitlines()[-1])))
    baseline = dict(rows)[BASELINE]["seconds"]
    print(f"{rows[0][1]['segments']} segments\n")
    print("| case | seconds | ratio to segment_stats | peak RSS MB (before the run) |")
    print("| --- | ---: | ---: | ---: |")
    for name, row in rows:
        print(f"| {name} | {row['seconds']:.2f} | {row['seconds'] / baseline:.2f} | "
              f"{row['peak_mb']:.0f} ({row['before_mb']:.0f}) |")


if __name__ == "__main__":
    main()
