"""Benchmark: per-segment statistics on a Dask cluster against the threaded default.

The case of ``bench_segment_stats.py`` (10000 x 10000 uint16 image, ~1 M segments in random
order, HFA segments with a Histogram column; generated once under bench/output/), the same
statistics into a separate ``.img`` RAT, in three set-ups, each in a fresh interpreter:

1. the threaded default (``scheduler=None``);
2. a LocalCluster of 1 single-threaded worker process;
3. a LocalCluster of 2 single-threaded worker processes;

and, into a Zarr RAT store instead, the threaded default against 2 workers that write the
store's row blocks themselves.

The cluster is started before the timing (its start is printed apart) and warmed with a
tiny case, as numba's cache is. ``--calls 2`` times a second call in each process and on
each cluster (reported; the first call's time printed beside it): the steady state of a
long-lived QGIS session or Dask cluster, where no process is fresh. The set-ups take turns
``--repeat`` times; the fastest run of each is reported, with the Dask path's parts and
merge times, the bytes of the segments crossing part edges (sent to the merge) per part
boundary, the result rows gathered, and a projection for N machines from the measured
per-part times.

    flock /work/bench.lock .venv/bin/python bench/bench_segment_cluster.py [--repeat 3] [--calls 2]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from bench_segment_stats import PERCENTILES, STATISTICS, generate, tiny_case  # noqa: E402

CHILD = """
import json, os, sys, time
sys.path.insert(0, {plugins!r})
from tessera.engine import segment_stats
workers = {workers!r}
client = cluster = None
scheduler = None
start_seconds = 0.0
if workers:
    import distributed
    started = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, host="127.0.0.1",
                                       dashboard_address=":0")
    client = distributed.Client(cluster)
    start_seconds = time.perf_counter() - started
    scheduler = client
call = dict(statistics={statistics!r}, percentiles={percentiles!r})
import shutil
def remove(*paths):
    for path in paths:
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
remove({tiny_rat!r}, {rat!r})
segment_stats({tiny_seg!r}, {tiny_image!r}, output_rat={tiny_rat!r}, scheduler=scheduler,
              **call)
calls = []
for _ in range({calls!r}):
    remove({rat!r})
    started = time.perf_counter()
    result = segment_stats({seg!r}, {image!r}, output_rat={rat!r}, scheduler=scheduler,
                           **call)
    calls.append(time.perf_counter() - started)
timings = {{k: v for k, v in result.timings.items()}}
print("RESULT", json.dumps({{"seconds": calls[-1], "first": calls[0], "start": start_seconds,
                             "segments": result.segment_count, "timings": timings}}))
if client is not None:
    client.close()
    cluster.close()
"""


def run(workers, seg, image, work, tiny, plugins, suffix=".img", calls=1):
    script = CHILD.format(plugins=plugins, workers=workers, statistics=STATISTICS, calls=calls,
                          percentiles=PERCENTILES, tiny_seg=tiny[0], tiny_image=tiny[1],
                          tiny_rat=os.path.join(work, f"tiny_{workers}{suffix}"),
                          seg=seg, image=image, rat=os.path.join(work, f"rat_{workers}{suffix}"))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr[-3000:])
    return json.loads(done.stdout.split("RESULT", 1)[1].strip().splitlines()[0])


def projection(best, machines, cores=2):
    """Seconds on ``machines`` machines of ``cores`` workers: the client's serial work
    (histogram, gathering, merge, writing) plus the parts' pixel work spread evenly."""
    timings = best["timings"]
    part_work = sum(timings["part_seconds"])  # seconds of part work in all
    serial = best["seconds"] - timings["parts"]
    return serial + part_work / (machines * cores)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--calls", type=int, default=1,
                        help="calls timed in each process (and on each cluster); the last "
                             "one is reported: 2 gives a long-lived process's or cluster's "
                             "steady state, as in QGIS desktop or a running Dask cluster")
    parser.add_argument("--output", default=os.path.join(HERE, "output"))
    args = parser.parse_args()
    sys.path.insert(0, os.path.join(os.path.dirname(HERE), "demo"))
    from qgis_cli import plugin_folder

    plugins = plugin_folder()
    _, seg_img, image_path = generate(args.output, args.size, 1, True)
    work = tempfile.mkdtemp(prefix="tessera-bench-cluster-")
    try:
        tiny = tiny_case(work)
        runs = {0: [], 1: [], 2: [], "0z": [], "2z": []}
        for _ in range(args.repeat):
            for key in runs:
                workers, suffix = (int(str(key)[0]), ".zarr" if str(key).endswith("z")
                                   else ".img")
                runs[key].append(run(workers, seg_img, image_path, work, tiny, plugins,
                                     suffix, args.calls))
        best = {w: min(r, key=lambda x: x["seconds"]) for w, r in runs.items()}
        print(f"\n{args.size} x {args.size} uint16, {best[0]['segments']} segments, "
              f"{os.cpu_count()} CPUs, fastest of {args.repeat}, call {args.calls} of each "
              "process")
        names = {0: "threaded default", 1: "LocalCluster 1 worker", 2: "LocalCluster 2 workers",
                 "0z": "threaded, Zarr target", "2z": "2 workers write Zarr"}
        for workers, result in best.items():
            spread = sorted(r["seconds"] for r in runs[workers])
            ratio = result["seconds"] / best[0 if workers in (0, 1, 2) else "0z"]["seconds"]
            line = (f"{names[workers]:24s} {result['seconds']:6.2f} s  x{ratio:4.2f}"
                    f"  (runs {spread[0]:.2f}-{spread[-1]:.2f}; first call {result['first']:.2f})")
            if workers not in (0, "0z"):
                t = result["timings"]
                boundaries = max(1, t["part_count"] - 1)
                line += (f"  cluster start {result['start']:.1f} s; {t['part_count']} parts "
                         f"{t['parts']:.2f} s (per part {min(t['part_seconds']):.2f}-"
                         f"{max(t['part_seconds']):.2f} s), merge {t['merge']:.2f} s, "
                         f"{t['crossing_segments']} crossing segments, "
                         f"{t['exchanged_bytes'] / boundaries / 2**10:.0f} KiB per part "
                         f"boundary, rows {t['gathered_bytes'] / 2**20:.0f} MiB, "
                         f"write {t['write']:.2f} s")
            print(line)
        two = best[2]
        for machines in (1, 2, 4, 8, 16):
            print(f"projection, {machines:2d} machine(s) x 2 workers: "
                  f"{projection(two, machines):6.2f} s")
        print("RAW", json.dumps({str(k): v for k, v in runs.items()}))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
