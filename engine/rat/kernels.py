"""numba kernels of the RAT-to-map tools."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def lookup_tile(ids, table, out):
    """``out[k, r, c] = table[ids[r, c], k]``; ids outside ``0 .. len(table) - 2`` take
    the last row of ``table`` (the nodata row)."""
    last = table.shape[0] - 1
    columns = table.shape[1]
    for r in range(ids.shape[0]):
        for c in range(ids.shape[1]):
            sid = np.int64(ids[r, c])
            if sid < 0 or sid > last:
                sid = last
            for k in range(columns):
                out[k, r, c] = table[sid, k]
