"""Group the pixels of a tiled raster by segment, finishing each segment as
soon as all its pixels have been seen.

The caller knows how many pixels every segment id has (the ``totals``, from
the segment file's histogram or a counting pass). For each tile,
:meth:`SegmentCollector.add_tile` yields :class:`Batch` es of complete
segments whose pixel values (and optionally positions) lie contiguously:

- segments wholly inside the tile come straight from the tile, grouped by a
  counting sort on the segment id;
- segments that cross tiles are kept in an *arena*, one slot per open
  segment sized to the segment, and are yielded from it when their last
  pixel arrives; their slot is then freed.

Memory is the per-id bookkeeping (16 bytes per id), the tile buffers, and
the pixels of open segments only, whatever the order of the ids.
"""

from dataclasses import dataclass

import numpy as np
from numba import njit

from .errors import TesseraError

# Indices into the collector's int64 state array.
ARENA_TOP, ARENA_LIVE, SLOTS_USED, FREE_COUNT = range(4)
# Kinds of segment within a tile.
IN_TILE, CLOSING, OPENING, CONTINUING = range(4)


@dataclass
class Batch:
    """Complete segments: ``ids[i]`` has pixels ``values[:, starts[i]:starts[i]+lengths[i]]``."""

    ids: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray
    values: np.ndarray
    rows: np.ndarray     # pixel rows (whole-raster), empty without positions
    cols: np.ndarray


@njit(cache=True, nogil=True)
def tally_tile(seg, null_id, remaining, tile_local, tile_ids, k_count, k_kind, slot_of, kmap):
    """Give each id of the tile a local index k (in order of appearance), write
    every pixel's k to ``kmap`` (-1 for null), count the pixels per k and
    classify the ids.

    Returns (ids in tile, pixels of in-tile segments, slots to open, arena
    pixels to reserve, error code, offending id); error 1: id outside the
    totals, 2: more pixels than the total, 3: more ids than ``tile_ids`` holds.
    """
    n_ids = remaining.shape[0]
    capacity = tile_ids.shape[0]
    n = 0
    cols = seg.shape[1]
    for r in range(seg.shape[0]):
        # The left neighbour's id and k stay in registers, and a run of one k is
        # counted once: no store-to-load chain through kmap or k_count per pixel.
        prev_raw = seg[r, 0]
        prev_k = -1
        run = 0
        for c in range(cols):
            p = r * cols + c
            raw = seg[r, c]
            # Most pixels share the id of their left or upper neighbour; others
            # look their k up in the per-id table.
            if c > 0 and raw == prev_raw:
                k = prev_k
            elif r > 0 and raw == seg[r - 1, c]:
                k = kmap[p - cols]
            else:
                sid = np.int64(raw)
                if sid == null_id:
                    k = -1
                elif sid < 0 or sid >= n_ids:
                    _forget(tile_local, tile_ids, n)
                    return n, 0, 0, 0, 1, sid
                else:
                    k = tile_local[sid] - 1
                    if k < 0:
                        if n == capacity:
                            _forget(tile_local, tile_ids, n)
                            return n, 0, 0, 0, 3, sid
                        k = n
                        tile_ids[n] = sid
                        k_count[n] = 0
                        tile_local[sid] = n + 1
                        n += 1
            kmap[p] = k
            if k != prev_k:
                if prev_k >= 0:
                    k_count[prev_k] += run
                run = 0
                prev_k = k
            run += 1
            prev_raw = raw
        if prev_k >= 0:
            k_count[prev_k] += run
    _forget(tile_local, tile_ids, n)
    in_tile = 0
    opening = 0
    reserve = 0
    for k in range(n):
        sid = tile_ids[k]
        count = k_count[k]
        left = remaining[sid] - count
        if left < 0:
            return n, 0, 0, 0, 2, sid
        remaining[sid] = left
        if slot_of[sid] < 0:
            if left == 0:
                k_kind[k] = IN_TILE
                in_tile += count
            else:
                k_kind[k] = OPENING
                opening += 1
                reserve += count + left
        else:
            k_kind[k] = CLOSING if left == 0 else CONTINUING
    return n, in_tile, opening, reserve, 0, 0


@njit(cache=True, nogil=True)
def _forget(tile_local, tile_ids, n):
    for k in range(n):
        tile_local[tile_ids[k]] = 0


@njit(cache=True, nogil=True)
def scatter_tile(kmap, image, cols, row0, col0, with_pos, n, tile_ids, k_count, k_kind,
                 k_cursor, remaining, slot_of, slot_start, slot_len, slot_cap, slot_id,
                 free_slots, state, tile_vals, tile_rows, tile_cols, arena_vals, arena_rows,
                 arena_cols, done_ids, done_starts, done_lengths, closed_ids, closed_slots):
    """Write every pixel of the tile to its segment's place: the tile buffer for
    in-tile segments, the arena slot for the others. Returns (in-tile segments
    listed in ``done_*``, closing segments listed in ``closed_*``)."""
    n_done = 0
    n_closed = 0
    cursor = 0
    for k in range(n):
        sid = tile_ids[k]
        kind = k_kind[k]
        if kind == IN_TILE:
            done_ids[n_done] = sid
            done_starts[n_done] = cursor
            done_lengths[n_done] = k_count[k]
            n_done += 1
            k_cursor[k] = cursor
            cursor += k_count[k]
            continue
        if kind == OPENING:
            if state[FREE_COUNT] > 0:
                state[FREE_COUNT] -= 1
                slot = free_slots[state[FREE_COUNT]]
            else:
                slot = state[SLOTS_USED]
                state[SLOTS_USED] += 1
            capacity = k_count[k] + remaining[sid]
            slot_of[sid] = slot
            slot_id[slot] = sid
            slot_start[slot] = state[ARENA_TOP]
            slot_cap[slot] = capacity
            slot_len[slot] = 0
            state[ARENA_TOP] += capacity
            state[ARENA_LIVE] += capacity
        slot = slot_of[sid]
        k_cursor[k] = slot_start[slot] + slot_len[slot]
        slot_len[slot] += k_count[k]
        if kind == CLOSING:
            closed_ids[n_closed] = sid
            closed_slots[n_closed] = slot
            n_closed += 1
    n_bands = image.shape[0]
    pixels = kmap.shape[0]
    flat = image.reshape(n_bands, pixels)
    p = 0
    while p < pixels:  # one run of pixels of the same segment at a time
        k = kmap[p]
        end = p + 1
        while end < pixels and kmap[end] == k:
            end += 1
        if k >= 0:
            position = k_cursor[k]
            k_cursor[k] = position + end - p
            vals = tile_vals if k_kind[k] == IN_TILE else arena_vals
            for b in range(n_bands):
                for i in range(end - p):
                    vals[b, position + i] = flat[b, p + i]
            if with_pos:
                pos_rows = tile_rows if k_kind[k] == IN_TILE else arena_rows
                pos_cols = tile_cols if k_kind[k] == IN_TILE else arena_cols
                for i in range(end - p):
                    pos_rows[position + i] = row0 + (p + i) // cols
                    pos_cols[position + i] = col0 + (p + i) % cols
        p = end
    return n_done, n_closed


@njit(cache=True, nogil=True)
def free_closed(closed_ids, closed_slots, n_closed, slot_of, slot_cap, slot_id, free_slots,
                state):
    """Return the slots of closed segments to the free list."""
    for i in range(n_closed):
        slot = closed_slots[i]
        slot_of[closed_ids[i]] = -1
        slot_id[slot] = -1
        state[ARENA_LIVE] -= slot_cap[slot]
        free_slots[state[FREE_COUNT]] = slot
        state[FREE_COUNT] += 1
    if state[ARENA_LIVE] == 0:
        state[ARENA_TOP] = 0


@njit(cache=True, nogil=True)
def compact_arena(src_vals, src_rows, src_cols, dst_vals, dst_rows, dst_cols, with_pos,
                  slot_start, slot_len, slot_cap, slot_id, slots_used):
    """Move live slots to the front of ``dst`` (which may be ``src``) in start
    order; returns the new arena top."""
    live = np.empty(slots_used, np.int64)
    n_live = 0
    for slot in range(slots_used):
        if slot_id[slot] >= 0:
            live[n_live] = slot
            n_live += 1
    live = live[:n_live]
    order = np.argsort(slot_start[live])
    top = 0
    for i in range(n_live):
        slot = live[order[i]]
        start = slot_start[slot]
        for j in range(slot_len[slot]):  # top <= start: copying forward is safe in place
            for b in range(src_vals.shape[0]):
                dst_vals[b, top + j] = src_vals[b, start + j]
            if with_pos:
                dst_rows[top + j] = src_rows[start + j]
                dst_cols[top + j] = src_cols[start + j]
        slot_start[slot] = top
        top += slot_cap[slot]
    return top


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

    def __init__(self, totals, null_id, n_bands, dtype, with_positions=False):
        self.null_id = int(null_id)
        self.totals = np.asarray(totals, dtype=np.int64)
        self.remaining = self.totals.copy()
        if 0 <= self.null_id < len(self.remaining):
            self.remaining[self.null_id] = 0
        n_ids = len(self.totals)
        self.tile_local = np.zeros(n_ids, np.int32)
        self.slot_of = np.full(n_ids, -1, np.int32)
        self.n_bands = n_bands
        self.dtype = np.dtype(dtype)
        self.with_pos = bool(with_positions)
        self.state = np.zeros(4, np.int64)
        self._slots(1024)
        self._arena(1 << 16)
        self._tile_pixels = self._tile_ids = 0

    def _slots(self, capacity):
        old = getattr(self, "slot_start", None)
        arrays = []
        for name, fill in (("slot_start", 0), ("slot_len", 0), ("slot_cap", 0), ("slot_id", -1),
                           ("free_slots", 0)):
            array = np.full(capacity, fill, np.int64)
            if old is not None:
                array[: len(old)] = getattr(self, name)
            arrays.append((name, array))
        for name, array in arrays:
            setattr(self, name, array)

    def _arena(self, capacity):
        self.arena_vals = np.empty((self.n_bands, capacity), self.dtype)
        positions = capacity if self.with_pos else 0
        self.arena_rows = np.empty(positions, np.int32)
        self.arena_cols = np.empty(positions, np.int32)

    def _tile_buffers(self, pixels, ids):
        """Buffers for a tile of ``pixels`` pixels holding up to ``ids`` distinct ids."""
        if pixels > self._tile_pixels:
            self._tile_pixels = pixels
            self.kmap = np.empty(pixels, np.int32)
            self.tile_vals = np.empty((self.n_bands, pixels), self.dtype)
            positions = pixels if self.with_pos else 0
            self.tile_rows = np.empty(positions, np.int32)
            self.tile_cols = np.empty(positions, np.int32)
        if ids > self._tile_ids:
            self._tile_ids = ids
            self.tile_ids = np.empty(ids, np.int64)
            self.k_count = np.empty(ids, np.int64)
            self.k_kind = np.empty(ids, np.int8)
            self.k_cursor = np.empty(ids, np.int64)
            self.done = [np.empty(ids, np.int64) for _ in range(3)]
            self.closed = [np.empty(ids, np.int64) for _ in range(2)]

    def _reserve(self, opening, reserve):
        """Make room for ``opening`` new slots and ``reserve`` arena pixels."""
        used = int(self.state[SLOTS_USED])
        if used + opening > len(self.slot_start):
            self._slots(max(2 * len(self.slot_start), used + opening))
        capacity = self.arena_vals.shape[1]
        if self.state[ARENA_TOP] + reserve <= capacity:
            return
        source = (self.arena_vals, self.arena_rows, self.arena_cols)
        if self.state[ARENA_LIVE] + reserve > capacity // 2:  # else compact in place
            self._arena(max(2 * capacity, 2 * int(self.state[ARENA_LIVE] + reserve)))
        target = (self.arena_vals, self.arena_rows, self.arena_cols)
        self.state[ARENA_TOP] = compact_arena(
            *source, *target, self.with_pos, self.slot_start, self.slot_len, self.slot_cap,
            self.slot_id, used)

    def add_tile(self, seg_tile, image_tile, row0=0, col0=0):
        """Yield the :class:`Batch` es of segments completed by this tile.

        ``seg_tile`` is (rows, cols) of ids, ``image_tile`` (bands, rows, cols).
        A batch is only valid until the generator resumes.
        """
        pixels = seg_tile.size
        seg_tile = np.ascontiguousarray(seg_tile)
        self._tile_buffers(pixels, min(pixels, len(self.totals), max(self._tile_ids, 1 << 16)))
        while True:
            n, _in_tile, opening, reserve, error, sid = tally_tile(
                seg_tile, self.null_id, self.remaining, self.tile_local, self.tile_ids,
                self.k_count, self.k_kind, self.slot_of, self.kmap)
            if error != 3:
                break
            self._tile_buffers(pixels, min(pixels, 2 * self._tile_ids))
        if error == 1:
            raise TesseraError(_unknown_id_message(sid, len(self.totals)))
        if error == 2:
            raise TesseraError(
                f"Segment {sid} has more pixels than the {self.totals[sid]} its histogram "
                "count says: the segment file's Histogram column disagrees with the raster."
            )
        self._reserve(opening, reserve)
        n_done, n_closed = scatter_tile(
            self.kmap[:pixels], np.ascontiguousarray(image_tile), seg_tile.shape[1], row0, col0,
            self.with_pos, n, self.tile_ids, self.k_count, self.k_kind, self.k_cursor,
            self.remaining,
            self.slot_of, self.slot_start, self.slot_len, self.slot_cap, self.slot_id,
            self.free_slots, self.state, self.tile_vals, self.tile_rows, self.tile_cols,
            self.arena_vals, self.arena_rows, self.arena_cols, *self.done, *self.closed)
        if n_done:
            ids, starts, lengths = (a[:n_done] for a in self.done)
            yield Batch(ids, starts, lengths, self.tile_vals, self.tile_rows, self.tile_cols)
        if n_closed:
            ids, slots = (a[:n_closed] for a in self.closed)
            yield Batch(ids, self.slot_start[slots], self.slot_len[slots], self.arena_vals,
                        self.arena_rows, self.arena_cols)
            free_closed(ids, slots, n_closed, self.slot_of, self.slot_cap, self.slot_id,
                        self.free_slots, self.state)

    def open_pixels(self):
        """Pixels held for segments not yet complete."""
        return int(self.state[ARENA_LIVE])

    def check_complete(self):
        """Raise when some segment got fewer pixels than its total."""
        short = np.flatnonzero(self.remaining)
        if short.size:
            sid = int(short[0])
            seen = int(self.totals[sid] - self.remaining[sid])
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
