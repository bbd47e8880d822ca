"""A segment's pixels as *points*, for user functions (see :func:`segment_user_stats`).

The points of a segment are a numpy structured array with one record per
valid pixel (image nodata and NaN left out), fields

- ``x``: the pixel's column in the whole raster (int64),
- ``y``: its row in the whole raster (int64),
- ``val``: its image value (int64 for integer images, float64 for float ones),

like pyshepseg's ``SegPoint`` list, so a function written for pyshepseg
(``for pt in pts: pt.x, pt.y, pt.val``) runs unchanged. The helpers below
are numba functions to call from inside such a function.
"""

import numpy as np
from numba import njit


def point_dtype(value_dtype):
    """The record type of the points of an image of ``value_dtype``."""
    value = np.int64 if np.dtype(value_dtype).kind in "iub" else np.float64
    return np.dtype([("x", np.int64), ("y", np.int64), ("val", value)])


@njit(cache=True, nogil=True)
def points_bounds(points):
    """(xmin, ymin, xmax, ymax): the columns and rows the points span (inclusive)."""
    xmin = xmax = points[0].x
    ymin = ymax = points[0].y
    for i in range(1, points.shape[0]):
        x = points[i].x
        y = points[i].y
        xmin = min(xmin, x)
        xmax = max(xmax, x)
        ymin = min(ymin, y)
        ymax = max(ymax, y)
    return xmin, ymin, xmax, ymax


@njit(cache=True, nogil=True)
def points_to_array(points, fill):
    """The points' values as a 2-D array just covering them (row = y − ymin,
    column = x − xmin); cells without a point hold ``fill`` (pass the null
    value the function received). pyshepseg's ``convertPtsInto2DArray``."""
    xmin, ymin, xmax, ymax = points_bounds(points)
    values = points["val"]
    array = np.full((ymax - ymin + 1, xmax - xmin + 1), fill, values.dtype)
    for i in range(points.shape[0]):
        array[points[i].y - ymin, points[i].x - xmin] = points[i].val
    return array


@njit(cache=True, nogil=True)
def points_to_mask(points):
    """A boolean 2-D array over the points' span, True where a point is
    (same layout as :func:`points_to_array`). pyshepseg's
    ``convertPtsInto2DMaskArray``."""
    xmin, ymin, xmax, ymax = points_bounds(points)
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), np.bool_)
    for i in range(points.shape[0]):
        mask[points[i].y - ymin, points[i].x - xmin] = True
    return mask


@njit(nogil=True)
def call_user_function(function, parameter, ids, starts, lengths, values, rows, cols, nodata,
                       has_nodata, null_value, points, int_out, float_out, int_columns,
                       float_columns, missing_int, missing, results):
    """Build each segment's valid points and call ``function`` on them.

    The segments are ``ids[i]`` with values ``values[0, starts[i]:starts[i] + lengths[i]]``
    at ``rows``/``cols`` (a collector batch); results go to ``results[column, id]``.
    Not cached: numba compiles it once per user function.
    """
    for i in range(ids.shape[0]):
        n = 0
        for j in range(starts[i], starts[i] + lengths[i]):
            v = values[0, j]
            if v != v or (has_nodata and v == nodata):
                continue
            points[n].x = cols[j]
            points[n].y = rows[j]
            points[n].val = v
            n += 1
        if n == 0:
            continue
        int_out[:] = missing_int
        float_out[:] = missing
        function(points[:n], null_value, int_out, float_out, parameter)
        sid = ids[i]
        for k in range(int_columns.shape[0]):
            results[int_columns[k], sid] = int_out[k]
        for k in range(float_columns.shape[0]):
            results[float_columns[k], sid] = float_out[k]
