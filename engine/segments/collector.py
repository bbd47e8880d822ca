"""Group the pixels of a tiled raster by segment, finishing each segment as
soon as all its pixels have been seen.

The caller knows how many pixels every segment id has (the ``totals``, from
the segment file's histogram or a counting pass). Each segment gets, at the
first sight of its id, a slot of exactly that many pixels in an *arena*;
every run of pixels of one id along a row is copied straight to the slot's
next free place, and when the slot is full the segment is complete.
:meth:`SegmentCollector.add_tile` yields :class:`Batch` es of completed
segments whose pixel values (and optionally positions) lie contiguously.

The arena is a bump allocator: when it runs out, the completed segments are
handed out first, then the slots still open are moved to its front (and it
grows only if they fill half of it). Memory is the per-id bookkeeping (24
bytes per id), the arena and the pixels of open segments, whatever the order
of the ids.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit

from ..errors import TesseraError

# Indices into the collector's int64 state array.
TOP, LIVE, OPENED, DONE = range(4)
# Place of a segment (cursor column) before its first pixel and after its last.
UNSEEN, CLOSED = -1, -2
# Why collect_tile stopped.
FINISHED, NEED_ROOM, DONE_FULL, UNKNOWN_ID, TOO_MANY = range(5)


@dataclass
class Batch:
    """Complete segments: ``ids[i]`` has pixels ``values[:, starts[i]:starts[i]+lengths[i]]``
    (``values`` is a (bands, pixels) view of the arena, whose memory holds the bands of
    a pixel side by side)."""

    ids: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    values: np.ndarray
    rows: np.ndarray     # pixel rows (whole-raster), empty without positions
    cols: np.ndarray


@njit(cache=True, nogil=True)
def collect_tile(seg, image, items, row0, col0, with_pos, resume, null_id, place, state,
                 opened, arena_vals, arena_rows, arena_cols, done_ids, done_starts,
                 done_lengths):
    """Copy the pixels of the tile from flat position ``resume`` on to their segments'
    arena slots, run by run (``place[sid]`` = next free position, slot end, total).
    ``image`` is (rows, cols * items) and ``arena_vals`` flat, both with the bands
    of a pixel side by side in ``items`` elements (one per band, or one integer
    holding them all), so a run is one contiguous copy.

    Returns (why, flat position, segment id): FINISHED, or where to resume
    after NEED_ROOM (the arena or the opened list is full), DONE_FULL (the
    done list is full), or UNKNOWN_ID / TOO_MANY (the id is outside the
    totals, or has more pixels than its total).
    """
    rows, cols = seg.shape
    n_ids = place.shape[0]
    capacity = arena_vals.shape[0] // items
    for r in range(resume // cols, rows):
        c = resume % cols if r == resume // cols else 0
        while c < cols:
            raw = seg[r, c]
            end = c + 1
            while end < cols and seg[r, end] == raw:
                end += 1
            sid = np.int64(raw)
            if sid == null_id:
                c = end
                continue
            if sid < 0 or sid >= n_ids:
                return UNKNOWN_ID, r * cols + c, sid
            cursor = place[sid, 0]
            if cursor == UNSEEN:
                size = place[sid, 2]
                if size == 0:
                    return TOO_MANY, r * cols + c, sid
                if (state[TOP] + size > capacity
                        or state[OPENED] == opened.shape[0]):
                    return NEED_ROOM, r * cols + c, sid
                cursor = state[TOP]
                place[sid, 1] = cursor + size
                state[TOP] += size
                state[LIVE] += size
                opened[state[OPENED]] = sid
                state[OPENED] += 1
            elif cursor == CLOSED:
                return TOO_MANY, r * cols + c, sid
            stop = cursor + end - c
            slot_end = place[sid, 1]
            if stop > slot_end:
                return TOO_MANY, r * cols + c, sid
            if stop == slot_end and state[DONE] == done_ids.shape[0]:
                return DONE_FULL, r * cols + c, sid
            first = c * items
            to = cursor * items
            for i in range((end - c) * items):
                arena_vals[to + i] = image[r, first + i]
            if with_pos:
                for i in range(end - c):
                    arena_rows[cursor + i] = row0 + r
                    arena_cols[cursor + i] = col0 + c + i
            if stop == slot_end:
                size = place[sid, 2]
                done = state[DONE]
                done_ids[done] = sid
                done_starts[done] = slot_end - size
                done_lengths[done] = size
                state[DONE] = done + 1
                state[LIVE] -= size
                place[sid, 0] = CLOSED
            else:
                place[sid, 0] = stop
            c = end
    return FINISHED, rows * cols, -1


@njit(cache=True, nogil=True)
def compact_arena(src_vals, src_rows, src_cols, dst_vals, dst_rows, dst_cols, items,
                  with_pos, place, state, opened):
    """Move the open slots, in arena order, to the front of ``dst`` (which may be
    ``src``: slots only move towards the front); drop closed ones from ``opened``."""
    top = 0
    kept = 0
    for i in range(state[OPENED]):
        sid = opened[i]
        cursor = place[sid, 0]
        if cursor < 0:
            continue
        size = place[sid, 2]
        start = place[sid, 1] - size
        for j in range((cursor - start) * items):
            dst_vals[top * items + j] = src_vals[start * items + j]
        if with_pos:
            for j in range(cursor - start):
                dst_rows[top + j] = src_rows[start + j]
                dst_cols[top + j] = src_cols[start + j]
        place[sid, 0] = top + cursor - start
        place[sid, 1] = top + size
        top += size
        opened[kept] = sid
        kept += 1
    state[TOP] = top
    state[OPENED] = kept


@njit(cache=True, nogil=True)
def count_ids(seg, null_id, counts):
    """Add the tile's pixels per id to ``counts``; returns (largest id, smallest id)
    of the tile without counting when one does not fit ``counts``."""
    largest = -1
    smallest = 0
    for r in range(seg.shape[0]):
        for c in range(seg.shape[1]):
            sid = np.int64(seg[r, c])
            if sid == null_id:
                continue
            if sid > largest:
                largest = sid
            if sid < smallest:
                smallest = sid
    if smallest < 0 or largest >= counts.shape[0]:
        return largest, smallest
    for r in range(seg.shape[0]):
        for c in range(seg.shape[1]):
            sid = np.int64(seg[r, c])
            if sid != null_id:
                counts[sid] += 1
    return largest, smallest


class SegmentCollector:
    """Tile-by-tile grouping of pixels by segment (see the module docstring)."""

    #: Completed segments handed out at most per batch.
    BATCH_IDS = 1 << 16

    def __init__(self, totals, null_id, n_bands, dtype, with_positions=False,
                 before_compaction=None):
        self.null_id = int(null_id)
        self.before_compaction = before_compaction
        # per id: next free arena position, slot end, pixels in all
        self.place = np.full((len(totals), 3), UNSEEN, np.int64)
        self.place[:, 2] = totals
        self.totals = self.place[:, 2]
        if 0 <= self.null_id < len(self.totals):
            self.totals[self.null_id] = 0
        self.n_bands = n_bands
        self.dtype = np.dtype(dtype)
        # the bands of a pixel copied as one integer when they fill one
        width = n_bands * self.dtype.itemsize
        self.item = np.dtype(f"u{width}") if n_bands > 1 and width in (2, 4, 8) else self.dtype
        self.item_count = n_bands if self.item == self.dtype else 1
        self.with_pos = bool(with_positions)
        self.state = np.zeros(4, np.int64)
        self.opened = np.empty(self.BATCH_IDS, np.int64)
        self.done = [np.empty(self.BATCH_IDS, np.int64) for _ in range(3)]
        self._arena(0)

    def _arena(self, capacity):
        self.arena_vals = np.empty((capacity, self.n_bands), self.dtype)
        positions = capacity if self.with_pos else 0
        self.arena_rows = np.empty(positions, np.int32)
        self.arena_cols = np.empty(positions, np.int32)

    def _make_room(self, size, tile_pixels):
        """Compact the arena (growing it when the open slots fill half of it) so that a
        slot of ``size`` pixels fits, and the opened list has room."""
        source = (self._arena_items(), self.arena_rows, self.arena_cols)
        capacity = self.capacity
        wanted = int(self.state[LIVE]) + size
        if wanted > capacity // 2:
            self._arena(max(2 * capacity, 2 * wanted, 2 * tile_pixels, 1 << 16))
        elif self.before_compaction is not None:
            self.before_compaction()  # completed slots are about to be overwritten
        compact_arena(*source, self._arena_items(), self.arena_rows, self.arena_cols,
                      self.item_count, self.with_pos, self.place, self.state, self.opened)
        if self.state[OPENED] > len(self.opened) // 2:
            grown = np.empty(2 * len(self.opened), np.int64)
            grown[: len(self.opened)] = self.opened
            self.opened = grown

    def _arena_items(self):
        """The arena's values flat, as the items the kernels copy."""
        return self.arena_vals.reshape(-1).view(self.item)

    def _done_batch(self):
        count = int(self.state[DONE])
        self.state[DONE] = 0
        ids, starts, lengths = (a[:count].copy() for a in self.done)
        return Batch(ids, starts, lengths, self.arena_vals.T, self.arena_rows, self.arena_cols)

    def add_tile(self, seg_tile, image_tile, row0=0, col0=0):
        """Yield the :class:`Batch` es of segments completed by this tile.

        ``seg_tile`` is (rows, cols) of ids, ``image_tile`` (bands, rows, cols), best
        read pixel-interleaved (see :func:`~.raster_io.read_window`), else copied so.
        A batch's pixel values stay valid until the arena is next compacted in
        place: ``before_compaction()``, when given, is called first, so a
        consumer still reading earlier batches can finish.
        """
        seg_tile = np.ascontiguousarray(seg_tile)
        rows, cols = seg_tile.shape
        pixels = np.ascontiguousarray(np.moveaxis(image_tile, 0, -1), self.dtype)
        pixels = pixels.reshape(rows, -1).view(self.item)
        position = 0
        while True:
            why, position, sid = collect_tile(
                seg_tile, pixels, self.item_count, row0, col0, self.with_pos, position,
                self.null_id, self.place, self.state, self.opened, self._arena_items(),
                self.arena_rows, self.arena_cols, *self.done)
            if why == UNKNOWN_ID:
                raise TesseraError(_unknown_id_message(sid, len(self.totals)))
            if why == TOO_MANY:
                raise TesseraError(
                    f"Segment {sid} has more pixels than the {self.totals[sid]} its histogram "
                    "count says: the segment file's Histogram column disagrees with the raster."
                )
            if self.state[DONE]:
                yield self._done_batch()
            if why == FINISHED:
                return
            if why == NEED_ROOM:
                self._make_room(int(self.totals[sid]), seg_tile.size)

    @property
    def capacity(self):
        """Pixels the arena holds."""
        return self.arena_vals.shape[0]

    def open_pixels(self):
        """Pixels reserved for segments not yet complete."""
        return int(self.state[LIVE])

    def open_segments(self):
        """(ids, starts, lengths) of the segments not yet complete: the pixels seen so far
        of ``ids[i]`` are ``arena_vals[starts[i]:starts[i]+lengths[i]]``, in reading order
        (a part of the raster hands them on to whoever reads the rest)."""
        opened = self.opened[: int(self.state[OPENED])]
        cursors = self.place[opened, 0]
        ids = opened[cursors >= 0]
        starts = self.place[ids, 1] - self.totals[ids]
        return ids.copy(), starts, self.place[ids, 0] - starts

    def check_complete(self):
        """Raise when some segment got fewer pixels than its total."""
        short = np.flatnonzero((self.place[:, 0] != CLOSED) & (self.totals > 0))
        if short.size:
            sid = int(short[0])
            cursor, end = self.place[sid, :2]
            seen = 0 if cursor == UNSEEN else int(cursor - (end - self.totals[sid]))
            raise TesseraError(
                f"The segment file's Histogram column disagrees with the raster: segment {sid} "
                f"has {seen} pixels, not {self.totals[sid]} ({short.size} segment(s) differ)."
            )


def _unknown_id_message(sid, n_ids):
    if sid < 0:
        return f"The segment raster holds the negative id {sid}; segment ids must be >= 0."
    return (
        f"The segment raster holds id {sid}, beyond the {n_ids} rows of its Histogram "
        "column: the histogram disagrees with the raster."
    )
