"""Benchmark: a RAT of COLUMNS float64 columns x ROWS rows written and then
read block by block on local disk, by Tessera's Zarr RAT store and by its
peers run in the same script: plain zarr-python in the same layout (the
store's overhead) and a GDAL HFA (.img) RAT through the RAT interface.

Each phase runs in its own process, so its peak resident memory (ru_maxrss)
is its own. Reads are checked against sums computed while writing.

    .venv/bin/python bench/bench_rat_store.py                      # 10 x 10,000,000
    .venv/bin/python bench/bench_rat_store.py --rows 200000        # a quick check
"""

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BLOCK_ROWS = 1_000_000  # two chunks of the store's default 500000 rows
PEERS = ("ratstore", "zarr", "hfa")
LABELS = {"ratstore": "Tessera RatStore (Zarr)", "zarr": "plain zarr-python, same layout",
          "hfa": "GDAL HFA .img RAT (GdalRat)"}


def block_values(column, start, count):
    """Deterministic, poorly compressible float64 values of one block."""
    import numpy as np

    rng = np.random.default_rng([column, start])
    return rng.normal(100.0 * (column + 1), 25.0, count)


def plugin_path():
    folder = tempfile.mkdtemp(prefix="tessera-bench-")
    os.symlink(REPO, os.path.join(folder, "tessera"))
    return folder


# One phase, in a child process -------------------------------------------------------------------
def run_phase(peer, phase, path, rows, columns):
    import numpy as np

    names = [f"col{i:02d}" for i in range(columns)]
    sums = np.zeros(columns)
    io_seconds = 0.0
    started = time.perf_counter()
    with open_table(peer, path, phase, rows, names) as table:
        for start in range(0, rows, BLOCK_ROWS):
            count = min(BLOCK_ROWS, rows - start)
            for index, name in enumerate(names):
                if phase == "write":
                    values = block_values(index, start, count)
                    tick = time.perf_counter()
                    table.write(name, values, start)
                    io_seconds += time.perf_counter() - tick
                else:
                    tick = time.perf_counter()
                    values = table.read(name, start, count)
                    io_seconds += time.perf_counter() - tick
                sums[index] += float(values.sum())
    total = time.perf_counter() - started
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"io_seconds": io_seconds, "seconds": total, "peak_rss_mb": peak_mb,
            "sums": sums.tolist()}


class open_table:  # noqa: N801 (used like a function)
    """The peer's table as ``write(name, values, start)`` / ``read(name, start, count)``."""

    def __init__(self, peer, path, phase, rows, names):
        self.peer, self.path, self.phase, self.rows, self.names = peer, path, phase, rows, names

    def __enter__(self):
        import numpy as np

        writing = self.phase == "write"
        if self.peer == "ratstore":
            from tessera.engine.rat.store import RatStore

            self.store = RatStore(self.path, read_only=not writing)
            if writing:
                self.store.set_row_count(self.rows)
                for name in self.names:
                    self.store.create_column(name, np.float64)
            self.write = lambda n, v, s: self.store.write_block(n, v, s)
            self.read = lambda n, s, c: self.store.read_block(n, s, c)
        elif self.peer == "zarr":
            import zarr

            if writing:
                root = zarr.open_group(self.path, mode="w", zarr_format=3)
                rat = root.create_group("RAT", attributes={"ROWCOUNT": self.rows,
                                                           "CHUNKSIZE": 500000})
                for name in self.names:
                    rat.create_array(name, shape=(self.rows,), chunks=(500000,),
                                     dtype="float64", fill_value=0.0)
            group = zarr.open_group(self.path, mode="r+" if writing else "r")["RAT"]
            arrays = {name: group[name] for name in self.names}

            def write(name, values, start):
                arrays[name][start:start + len(values)] = values

            self.write = write
            self.read = lambda n, s, c: arrays[n][s:s + c]
        else:
            from tessera.engine.rat.tables import open_rat

            self.store = open_rat(self.path, update=writing, create=writing)
            if writing:
                self.store.set_row_count(self.rows)
                for name in self.names:
                    self.store.create_column(name, "real")
            self.write = lambda n, v, s: self.store.write(n, v, s)
            self.read = lambda n, s, c: self.store.read(n, s, c)
        return self

    def __exit__(self, *exc):
        if self.peer != "zarr":
            self.store.close()
        return False


# The driver -------------------------------------------------------------------------------------
def folder_size_mb(path):
    if os.path.isfile(path):
        return os.path.getsize(path) / 2**20
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names) / 2**20


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--columns", type=int, default=10)
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--folder", default=None, help="where to write (default: a temp folder)")
    parser.add_argument("--phase", nargs=4, metavar=("PEER", "PHASE", "PATH", "PLUGINS"),
                        help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    if arguments.phase:
        peer, phase, path, plugins = arguments.phase
        sys.path.insert(0, plugins)
        print(json.dumps(run_phase(peer, phase, path, arguments.rows, arguments.columns)))
        return

    plugins = plugin_path()
    folder = tempfile.mkdtemp(prefix="rat-bench-", dir=arguments.folder)
    peers = [p for p in arguments.peers.split(",") if p]
    print(f"RAT of {arguments.columns} float64 columns x {arguments.rows:,} rows, blocks of "
          f"{BLOCK_ROWS:,} rows, local disk ({folder}); {os.cpu_count()} CPUs\n")
    results = {}
    try:
        for peer in peers:
            path = os.path.join(folder, "bench.img" if peer == "hfa" else f"{peer}.zarr")
            for phase in ("write", "read"):
                done = subprocess.run(
                    [sys.executable, __file__, "--rows", str(arguments.rows), "--columns",
                     str(arguments.columns), "--phase", peer, phase, path, plugins],
                    capture_output=True, text=True, check=False)
                if done.returncode != 0:
                    raise SystemExit(f"{peer} {phase} failed:\n{done.stderr[-3000:]}")
                results[peer, phase] = json.loads(done.stdout.strip().splitlines()[-1])
            written, read = results[peer, "write"]["sums"], results[peer, "read"]["sums"]
            if any(abs(a - b) > 1e-9 * abs(a) for a, b in zip(written, read, strict=True)):
                raise SystemExit(f"{peer}: the values read differ from those written")
            results[peer, "size"] = folder_size_mb(path)
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(plugins, ignore_errors=True)

    header = (f"{'peer':34} {'write s':>8} {'read s':>8} {'write RSS MB':>13} "
              f"{'read RSS MB':>12} {'size MB':>8}")
    print(header)
    print("-" * len(header))
    for peer in peers:
        w, r = results[peer, "write"], results[peer, "read"]
        print(f"{LABELS[peer]:34} {w['io_seconds']:8.2f} {r['io_seconds']:8.2f} "
              f"{w['peak_rss_mb']:13.0f} {r['peak_rss_mb']:12.0f} {results[peer, 'size']:8.0f}")
    if "ratstore" in peers:
        base_w = results["ratstore", "write"]["io_seconds"]
        base_r = results["ratstore", "read"]["io_seconds"]
        print("\nTime relative to RatStore (>1: slower than RatStore)")
        for peer in peers:
            if peer != "ratstore":
                w = results[peer, "write"]["io_seconds"] / base_w
                r = results[peer, "read"]["io_seconds"] / base_r
                print(f"{LABELS[peer]:34} write x{w:.2f}  read x{r:.2f}")
    data_mb = arguments.rows * arguments.columns * 8 / 2**20
    block_mb = BLOCK_ROWS * 8 / 2**20
    print(f"\nRaw data: {data_mb:.0f} MB; one block of one column: {block_mb:.0f} MB. "
          "Seconds are time spent in the write/read calls (value generation excluded).")


if __name__ == "__main__":
    main()
