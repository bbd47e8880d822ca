"""A raster attribute table kept in a Zarr group: :class:`RatStore`.

For rasters that cannot be written (read-only files, object storage) and for
tables of millions of rows built column by column and block by block. The
layout is ratzarr's (Zarr format 3), so stores interchange with it and with
any code that follows the layout::

    <store>/zarr.json              root group
    <store>/RAT/zarr.json          group, attributes ROWCOUNT and CHUNKSIZE
    <store>/RAT/<column>/...       one array per column, shape (rows,) or
                                   (rows, width), chunks (CHUNKSIZE,)

Tessera writes new columns under hidden names and publishes a run's columns together
(:meth:`RatStore.publish`): the plan is stored first (``.tessera-publication.json``), so
readers see the whole new set from then on and a writer that dies half-way has its plan
completed by the next one.

Every column carries the attribute ``MODIFICATIONLOG``: a list of
``[ISO-8601 UTC time, writer, what]`` (ratzarr's three fields), one entry per
column per opened store, added at that store's first write of the column.
Tessera records what it did, never who ran it or how: the writer is
``"Tessera <version>"`` and what is ``[operation, column]`` (e.g.
``["write column", "b1_mean"]``); entries of other writers (a user name and
their ``argv``) are read as they are.

Columns hold any numpy integer or float dtype, or strings. Strings use
zarr's variable-length UTF-8 data type (``"string"`` in the array metadata,
codec ``vlen-utf8``) — what ratzarr writes from numpy 2's ``StringDType``.
With numpy 1.x they are read and written as numpy ``object`` arrays of
Python ``str``; create a string column with ``dtype=str``.

Local paths (Windows drive paths included) and ``s3://bucket/prefix`` URLs
(through fsspec/s3fs; pass ``storage_options`` such as
``{"client_kwargs": {"endpoint_url": ...}}`` for S3-compatible servers) are
supported. One writer at a time; any number of readers.

Command line: ``python -m tessera.engine.rat.store info|columns|head STORE``.
"""

import contextlib
import json
import os
import re
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from typing import NamedTuple

import numpy as np

from ..dependencies import require
from ..errors import TesseraError
from ..io.output_safety import redact
from ..io.store_location import store_location

RAT_GROUP = "RAT"
ROWCOUNT_ATTR = "ROWCOUNT"
CHUNKSIZE_ATTR = "CHUNKSIZE"
MODIFICATION_ATTR = "MODIFICATIONLOG"
DEFAULT_CHUNK_SIZE = 500_000
#: Name prefix of columns being written (hidden until renamed; see RatStore.staged_name).
STAGED_PREFIX = ".tessera-staged-"
#: The plan of a publication of columns under way (see RatStore.publish).
PUBLICATION_KEY = ".tessera-publication.json"


class Modification(NamedTuple):
    """One entry of a column's modification log."""

    when: datetime
    by: str  # "Tessera <version>", or another writer's user name
    what: list  # [operation, column], or another writer's argv


class RatStore:
    """A Zarr RAT store, opened for reading or for reading and writing.

    ``RatStore(path, read_only=False, create=True)`` opens the store at
    ``path`` (a local path or ``s3://`` URL) and creates it when missing
    (unless ``read_only`` or not ``create``). A path holding something that
    is not a store is refused; an empty folder may receive a new store.
    Errors are :class:`TesseraError` naming the store and the problem.
    """

    def __init__(self, path, read_only=False, create=True, storage_options=None):
        require("zarr", purpose="Zarr RAT stores")
        self.location = store_location(path, storage_options)
        self.name = self.location.name  # credentials never reach a message
        self.read_only = bool(read_only)
        self._arrays = {}
        self._logged = set()
        self._group = None
        self._pending = {}    # column -> hidden column of a publication not yet completed
        self._retired = set()  # columns such a publication deletes
        self._staged_rows = None  # the row count publish() gives the visible columns
        with self._io("open"):
            exists = self.location.exists()
            if not exists or (self.location.is_empty_folder() and not self.read_only):
                self._create_or_refuse(exists, create)
            elif not _is_valid(self.location):
                raise TesseraError(
                    f"{self.name} is not a Zarr RAT store (it needs a zarr.json root group "
                    f"and a '{RAT_GROUP}' group): refusing to use it."
                )
            self._open()

    # Opening and creating ------------------------------------------------
    def _create_or_refuse(self, exists, create):
        if self.read_only:
            raise TesseraError(f"The Zarr RAT store {self.name} does not exist "
                               "(it was opened read-only, so it is not created).")
        if not create:
            raise TesseraError(f"The Zarr RAT store {self.name} does not exist.")
        if not exists and not self.location.folder_exists():
            raise TesseraError(f"Cannot create the Zarr RAT store {self.name}: its folder "
                               "does not exist.")
        import zarr

        root = zarr.create_group(self.location.zarr_store(read_only=False), zarr_format=3)
        root.create_group(RAT_GROUP, attributes={ROWCOUNT_ATTR: 0,
                                                 CHUNKSIZE_ATTR: DEFAULT_CHUNK_SIZE})

    def _open(self):
        import zarr

        store = self.location.zarr_store(read_only=self.read_only)
        mode = "r" if self.read_only else "r+"
        self._store = store
        self._group = zarr.open_group(store, mode=mode, zarr_format=3)[RAT_GROUP]
        attrs = self._group.attrs
        rows = attrs.get(ROWCOUNT_ATTR)
        if rows is None:  # a store written before ROWCOUNT existed: the columns tell
            names = self.column_names()
            rows = self._array(names[0]).shape[0] if names else 0
        self._rows = int(rows)
        self._chunk = int(attrs.get(CHUNKSIZE_ATTR, DEFAULT_CHUNK_SIZE))
        missing = {k: v for k, v in ((ROWCOUNT_ATTR, self._rows), (CHUNKSIZE_ATTR, self._chunk))
                   if k not in attrs}
        if missing and not self.read_only:
            self._group.update_attributes(missing)
        self._read_publication()

    @staticmethod
    def exists(path, storage_options=None):
        """True when something exists at ``path`` (not necessarily a store)."""
        location = store_location(path, storage_options)
        with _io_errors(location.name, "look for"):
            return location.exists()

    @staticmethod
    def is_valid(path, storage_options=None):
        """True when ``path`` is a Zarr RAT store (root group and ``RAT`` group)."""
        location = store_location(path, storage_options)
        with _io_errors(location.name, "read"):
            return _is_valid(location)

    @staticmethod
    def delete(path, storage_options=None):
        """Delete the store at ``path``; nothing to do when it does not exist.

        Refuses (:class:`TesseraError`) to delete anything that is not a store.
        On S3 every object under exactly ``prefix/`` goes, however many.
        """
        location = store_location(path, storage_options)
        with _io_errors(location.name, "delete"):
            if not location.exists():
                return
            if not _is_valid(location):
                raise TesseraError(f"{location.name} is not a Zarr RAT store: not deleting it.")
            location.delete_tree()

    # Rows and chunks -----------------------------------------------------
    @property
    def row_count(self):
        """The number of rows of every column."""
        self._rat()
        return self._rows

    def set_row_count(self, rows):
        """Resize every column to ``rows`` (truncate, or extend with zeros / empty strings)."""
        rows = _count(rows, "row count", self.name)
        self._require_writable("change the row count of")
        with self._io("resize"):
            for name in list(self._rat().array_keys()):  # staged columns too
                _resize(self._array(name), rows)
            self._group.update_attributes({ROWCOUNT_ATTR: rows})
        self._rows = rows

    def stage_row_count(self, rows):
        """Give this writer's view ``rows`` rows: hidden columns (:meth:`staged_name`) are
        resized and new columns created with them, while the visible columns and ROWCOUNT
        change only when :meth:`publish` publishes (reads past a visible column's end give
        its fill value meanwhile)."""
        rows = _count(rows, "row count", self.name)
        self._require_writable("change the row count of")
        with self._io("resize"):
            for name in list(self._rat().array_keys()):
                if name.startswith(STAGED_PREFIX):
                    _resize(self._array(name), rows)
        self._rows = self._staged_rows = rows

    def unstage_row_count(self, rows):
        """Forget a staged row count: this writer's view has ``rows`` rows again."""
        self._rows, self._staged_rows = int(rows), None

    @property
    def chunk_size(self):
        """Rows per chunk of the columns created from now on (default 500000)."""
        self._rat()
        return self._chunk

    def set_chunk_size(self, rows):
        """Set (and store) the chunk size of columns created after this call."""
        rows = _count(rows, "chunk size", self.name)
        if rows == 0:
            raise TesseraError(f"The chunk size of {self.name} must be at least 1 row.")
        self._require_writable("change the chunk size of")
        with self._io("write to"):
            self._group.update_attributes({CHUNKSIZE_ATTR: rows})
        self._chunk = rows

    # Columns -----------------------------------------------------------------
    def column_names(self):
        """The names of the columns, sorted (columns still being written are hidden)."""
        with self._io("read"):
            stored = {name for name in self._rat().array_keys()
                      if not name.startswith(STAGED_PREFIX)}
        return sorted((stored - self._retired) | set(self._pending))

    def staged_name(self, name):
        """A hidden name under which column ``name`` is written before :meth:`publish`
        makes it visible (a run that dies leaves no half-written visible column)."""
        import secrets

        return f"{STAGED_PREFIX}{secrets.token_hex(4)}-{name}"

    def purge_staged(self):
        """Delete hidden columns left by runs that died while writing them (call only while
        holding the store's :class:`~.output_safety.TargetLock`)."""
        self._require_writable("clean")
        location = self.location
        prefix = f"{RAT_GROUP}/{STAGED_PREFIX}"
        with self._io("clean"):
            if location.is_remote:
                keys = {key.split("/")[1] for key in location.object_keys()
                        if key.startswith(prefix)}
            else:
                folder = os.path.join(location.path, RAT_GROUP)
                keys = {name for name in os.listdir(folder) if name.startswith(STAGED_PREFIX)}
            for name in keys:
                location.delete_keys(f"{RAT_GROUP}/{name}")
                self._arrays.pop(name, None)

    def publish(self, staged, deleted=()):
        """Make the hidden columns ``staged`` (column -> hidden name from
        :meth:`staged_name`) visible, in place of any column of the same name (whose
        modification log they continue), and delete the columns ``deleted``, as one step:
        the plan is stored first, so readers see the new set from that moment and a
        writer that dies half-way leaves its plan for :meth:`finish_publication`."""
        self._require_writable("publish columns in")
        staged = dict(staged)
        plan = {"move": sorted([hidden, name] for name, hidden in staged.items()),
                "delete": sorted(set(deleted) - set(staged)), "rows": self._staged_rows}
        with self._io("publish columns in"):
            for name, hidden in staged.items():
                if self.has_column(name):
                    old, new = self._array(name), self._array(hidden)
                    history = list(old.attrs.get(MODIFICATION_ATTR, []))
                    new.update_attributes({MODIFICATION_ATTR: history + list(
                        new.attrs.get(MODIFICATION_ATTR, []))})
            self.location.write_key(PUBLICATION_KEY, json.dumps(plan).encode())
            self._read_publication()
            self._carry_out(plan)

    def finish_publication(self):
        """Complete the publication a writer that died left half-way (call only while
        holding the store's :class:`~.output_safety.TargetLock`); True when there was one."""
        self._require_writable("publish columns in")
        with self._io("publish columns in"):
            data = self.location.read_key(PUBLICATION_KEY)
            if data is None:
                return False
            self._carry_out(json.loads(data))
        return True

    def _carry_out(self, plan):
        """Each step can be repeated: a hidden column still there has not been moved."""
        rows = plan.get("rows")
        if rows is not None:
            for name in list(self._rat().array_keys()):
                if not name.startswith(STAGED_PREFIX):
                    _resize(self._rat()[name], rows)
            self._group.update_attributes({ROWCOUNT_ATTR: rows})
            self._rows, self._staged_rows = rows, None
        for hidden, name in plan["move"]:
            if self.location.read_key(f"{RAT_GROUP}/{hidden}/zarr.json") is not None:
                self.location.delete_keys(f"{RAT_GROUP}/{name}")
                self.location.move_tree(f"{RAT_GROUP}/{hidden}", f"{RAT_GROUP}/{name}")
            if hidden in self._logged:
                self._logged.add(name)
        for name in plan["delete"]:
            self.location.delete_keys(f"{RAT_GROUP}/{name}")
        self.location.delete_key(PUBLICATION_KEY)
        self._arrays.clear()
        self._pending, self._retired = {}, set()

    def _read_publication(self):
        """Readers see the columns of a publication under way as published."""
        data = self.location.read_key(PUBLICATION_KEY)
        plan = json.loads(data) if data is not None else {"move": [], "delete": []}
        self._pending = {name: hidden for hidden, name in plan["move"]
                         if self.location.read_key(f"{RAT_GROUP}/{hidden}/zarr.json")
                         is not None}
        self._retired = set(plan["delete"])
        if plan.get("rows") is not None:
            self._rows = plan["rows"]
        self._arrays.clear()

    def rename_column(self, old, new):
        """Give column ``old`` the name ``new`` (which must not exist)."""
        self._require_writable("rename a column of")
        self._array(old)
        if new in self._rat().array_keys():
            raise TesseraError(f"The Zarr RAT store {self.name} already has a column '{new}'.")
        with self._io("rename a column of"):
            self.location.move_tree(f"{RAT_GROUP}/{old}", f"{RAT_GROUP}/{new}")
        self._arrays.pop(old, None)
        self._arrays.pop(new, None)
        if old in self._logged:
            self._logged.discard(old)
            self._logged.add(new)

    def has_column(self, name):
        return name in self._arrays or name in self.column_names()

    def create_column(self, name, dtype, width=1):
        """Create column ``name`` of ``dtype`` (numpy integer/float, or ``str``),
        ``width`` values per row, at the current row count and chunk size."""
        self._require_writable("create a column in")
        _check_column_name(name, self.name)
        width = _count(width, "column width", self.name)
        if width < 1:
            raise TesseraError(f"Column '{name}' of {self.name} needs a width of at least 1.")
        zarr_dtype, fill = _column_type(dtype, name, self.name)
        if self.has_column(name):
            raise TesseraError(f"The Zarr RAT store {self.name} already has a column '{name}'.")
        shape = (self._rows,) if width == 1 else (self._rows, width)
        chunks = (self._chunk,) if width == 1 else (self._chunk, width)
        with self._io("create a column in"):
            self._arrays[name] = self._group.create_array(
                name, shape=shape, chunks=chunks, dtype=zarr_dtype, fill_value=fill,
                attributes={MODIFICATION_ATTR: []})

    def delete_column(self, name):
        self._require_writable("delete a column of")
        self._array(name)
        with self._io("delete a column of"):
            del self._group[name]
        self._arrays.pop(name, None)
        self._logged.discard(name)

    def column_dtype(self, name):
        """The numpy dtype of a column (``object`` for variable-length strings)."""
        return self._array(name).dtype

    def column_is_string(self, name):
        return _is_string_dtype(self._array(name).dtype)

    def column_width(self, name):
        """Values per row: 1 for a one-dimensional column."""
        shape = self._array(name).shape
        return 1 if len(shape) == 1 else int(shape[1])

    def column_chunk_size(self, name):
        """Rows per chunk of this column (set when it was created)."""
        return int(self._array(name).chunks[0])

    # Blocks ----------------------------------------------------------------
    def read_block(self, name, start, length):
        """Rows ``start .. start + length - 1`` of a column (fewer at the end)."""
        array = self._array(name)
        start = _count(start, "start row", self.name)
        length = _count(length, "block length", self.name)
        stop = min(start + length, max(array.shape[0], self._rows))
        if stop <= start:
            return np.empty((0,) + array.shape[1:], dtype=array.dtype)
        with self._io("read"):
            block = array[start:min(stop, array.shape[0])]
        if block.shape[0] < stop - start:  # rows a publication under way adds
            tail = np.full((stop - start - block.shape[0],) + array.shape[1:],
                           array.fill_value, dtype=array.dtype)
            block = np.concatenate([block, tail])
        if block.dtype.kind == "O":
            block = _decoded_strings(block)
        return block

    def write_block(self, name, block, start):
        """Write ``block`` into a column from row ``start``.

        Refused past the row count, and refused when a value would change:
        float data into an integer column, integers out of the column's
        range, integers a float column cannot hold exactly, floats that
        overflow a narrower float column, non-strings into a string column.
        Floats are rounded to a narrower float column's precision.
        """
        self._require_writable("write to")
        array = self._array(name)
        start = _count(start, "start row", self.name)
        block = np.asarray(block)
        width = self.column_width(name)
        expected = 1 if width == 1 and array.ndim == 1 else 2
        if block.ndim != expected or (expected == 2 and block.shape[1] != width):
            shape = "(rows,)" if expected == 1 else f"(rows, {width})"
            raise TesseraError(f"A block for column '{name}' of {self.name} must have the "
                               f"shape {shape}, not {block.shape}.")
        count = block.shape[0]
        if start + count > min(self._rows, array.shape[0]):
            raise TesseraError(
                f"Cannot write rows {start}..{start + count - 1} of column '{name}' of "
                f"{self.name}: it has {min(self._rows, array.shape[0])} rows "
                "(set the row count first)."
            )
        values = conform_values(block, array.dtype, f"column '{name}' of {self.name}")
        if count == 0:
            return
        with self._io("write to"):
            array[start:start + count] = values
            if name not in self._logged:
                self._log_modification(array)
                self._logged.add(name)

    # Attributes and modification log ---------------------------------------
    def column_attrs(self, name):
        """The attributes of a column: a mapping written to the store at once."""
        return StoreAttributes(self._array(name), f"column '{name}' of {self.name}",
                               self.read_only)

    @property
    def attrs(self):
        """The attributes of the RAT group (ROWCOUNT, CHUNKSIZE and yours)."""
        return StoreAttributes(self._rat(), self.name, self.read_only)

    def modification_log(self, name):
        """The column's modifications: a list of :class:`Modification` ``(when (datetime
        UTC), by, what)``; Tessera's ``by`` is ``"Tessera <version>"`` and its ``what``
        ``[operation, column]``, other writers' entries are read as stored."""
        entries = self._array(name).attrs.get(MODIFICATION_ATTR, [])
        log = []
        for entry in entries:
            try:
                when, by, what = entry
                log.append(Modification(_utc_datetime(when), str(by), [str(a) for a in what]))
            except (TypeError, ValueError) as error:
                raise TesseraError(f"Column '{name}' of {self.name} has an unreadable "
                                   f"modification log entry {entry!r}.") from error
        return log

    def _log_modification(self, array, operation="write column"):
        """Record what Tessera did to ``array``: time, operation, column, version."""
        from ..version import tessera_version

        column = array.name.rstrip("/").rsplit("/", 1)[-1]
        column = re.sub(r"^\.tessera-staged-[0-9a-f]+-", "", column)  # a column being written
        entry = [datetime.now(UTC).isoformat(), f"Tessera {tessera_version()}".strip(),
                 [operation, column]]
        log = list(array.attrs.get(MODIFICATION_ATTR, []))
        array.update_attributes({MODIFICATION_ATTR: log + [entry]})

    # Life cycle ---------------------------------------------------------------
    def close(self):
        """Release the store (further use raises)."""
        if self._group is not None:
            self._group = None
            self._arrays.clear()
            with contextlib.suppress(Exception):
                self._store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self):
        state = "closed" if self._group is None else f"{self._rows} rows"
        return f"RatStore({self.name!r}, read_only={self.read_only}, {state})"

    # Internals --------------------------------------------------------------
    def _rat(self):
        if self._group is None:
            raise TesseraError(f"The Zarr RAT store {self.name} is closed.")
        return self._group

    def _array(self, name):
        array = self._arrays.get(name)
        if array is None:
            group = self._rat()
            stored = self._pending.get(name, name)
            with self._io("read"):
                if name in self._retired or stored not in set(group.array_keys()):
                    names = self.column_names()
                    raise TesseraError(f"The Zarr RAT store {self.name} has no column '{name}' "
                                       f"(it has: {', '.join(names) or 'none'}).")
                array = self._arrays[name] = group[stored]
        return array

    def _require_writable(self, action):
        self._rat()
        if self.read_only:
            raise TesseraError(f"Cannot {action} the Zarr RAT store {self.name}: "
                               "it is open read-only.")

    def _io(self, action):
        return _io_errors(self.name, action)


class StoreAttributes(MutableMapping):
    """Attributes of a store group or column; every change is written at once."""

    def __init__(self, node, owner, read_only):
        self._node = node
        self._owner = owner
        self._read_only = read_only

    def __getitem__(self, key):
        return self._node.attrs.asdict()[key]

    def __iter__(self):
        return iter(self._node.attrs.asdict())

    def __len__(self):
        return len(self._node.attrs.asdict())

    def __setitem__(self, key, value):
        self._check_writable()
        try:
            json.dumps({key: value})
        except (TypeError, ValueError) as error:
            raise TesseraError(f"Attribute {key!r} of {self._owner} must be JSON-serializable "
                               f"({error}).") from error
        with _io_errors(self._owner, "write attributes of"):
            self._node.update_attributes({key: value})

    def __delitem__(self, key):
        self._check_writable()
        if key not in self:
            raise KeyError(key)
        with _io_errors(self._owner, "write attributes of"):
            del self._node.attrs[key]

    def _check_writable(self):
        if self._read_only:
            raise TesseraError(f"Cannot change attributes of {self._owner}: "
                               "the store is open read-only.")

    def __repr__(self):
        return f"StoreAttributes({self._node.attrs.asdict()!r})"


def conform_values(block, dtype, what):
    """``block`` as values of ``dtype`` — or a :class:`TesseraError` when a value would
    change (see :meth:`RatStore.write_block`). ``what`` names the column in messages."""
    source = block.dtype
    if _is_string_dtype(dtype):
        return _conform_strings(block, dtype, what)
    if source.kind not in "biuf":
        raise TesseraError(f"The {what} holds numbers, not {_describe(source)}.")
    if dtype.kind in "iu":
        if source.kind == "f":
            raise TesseraError(f"The {what} holds integers ({dtype}); float data cannot be "
                               "written to it (round or cast the values first).")
        if not np.can_cast(source, dtype, "safe") and block.size:
            info = np.iinfo(dtype)
            low, high = block.min(), block.max()
            if low < info.min or high > info.max:
                raise TesseraError(f"Values {low}..{high} do not fit the {what}, which holds "
                                   f"{dtype} ({info.min}..{info.max}).")
        return block.astype(dtype, copy=False)
    limit = 2 ** (np.finfo(dtype).nmant + 1)  # integers up to this are exact in dtype
    if source.kind in "iu":  # numpy calls int64 -> float64 safe; it is not for |v| > 2**53
        exact = np.iinfo(source).max <= limit and np.iinfo(source).min >= -limit
    else:
        exact = np.can_cast(source, dtype, "safe")
    if exact or not block.size:
        return block.astype(dtype, copy=False)
    with np.errstate(over="ignore"):
        values = block.astype(dtype)
    if source.kind == "f":
        overflow = np.isinf(values) & np.isfinite(block)
        if overflow.any():
            raise TesseraError(f"The value {block[overflow].flat[0]} overflows the {what}, "
                               f"which holds {dtype}.")
        return values
    large = (block > limit) | (block < -limit) if source.kind == "i" else block > limit
    for value, held in zip(block[large].flat, values[large].flat, strict=True):
        if not np.isfinite(held) or int(value) != int(held):
            raise TesseraError(f"The integer {value} cannot be held exactly by the {what} "
                               f"({dtype}).")
    return values


def _conform_strings(block, dtype, what):
    source = block.dtype
    if source.kind == "U":
        values = block.astype(object)
    elif source.kind == "S":
        values = _decoded_strings(block.astype(object), what)
    elif source.kind in "OT":
        values = _decoded_strings(block.astype(object), what)
        wrong = [v for v in values.flat if not isinstance(v, str)]
        if wrong:
            raise TesseraError(f"The {what} holds strings; {wrong[0]!r} is not a string.")
    else:
        raise TesseraError(f"The {what} holds strings, not {_describe(source)}.")
    if dtype.kind in "US":  # a fixed-length column written by another tool
        limit = dtype.itemsize // (4 if dtype.kind == "U" else 1)
        lengths = [len(v) if dtype.kind == "U" else len(v.encode("utf-8")) for v in values.flat]
        if lengths and max(lengths) > limit:
            raise TesseraError(f"A string of {max(lengths)} characters does not fit the "
                               f"{what}, which holds at most {limit}.")
        return values.astype(dtype)
    return values


def _decoded_strings(values, what="column"):
    """An object array with bytes decoded from UTF-8 (other values as they are)."""
    if not any(isinstance(v, bytes) for v in values.flat):
        return values
    decoded = values.copy()
    try:
        for index, value in enumerate(values.flat):
            if isinstance(value, bytes):
                decoded.flat[index] = value.decode("utf-8")
    except UnicodeDecodeError as error:
        raise TesseraError(f"Bytes for the {what} are not UTF-8 text: {error}.") from error
    return decoded


def _is_string_dtype(dtype):
    return np.dtype(dtype).kind in "OUST"


def _describe(dtype):
    return "strings" if dtype.kind in "OUST" else str(dtype)


def _column_type(dtype, name, store):
    """The zarr data type and fill value for a column created with ``dtype``."""
    if dtype is str or (isinstance(dtype, str) and dtype.lower() in ("str", "string")):
        return str, ""
    try:
        dtype = np.dtype(dtype)
    except TypeError as error:
        raise TesseraError(f"Column '{name}' of {store}: {dtype!r} is not a data type.") from error
    if _is_string_dtype(dtype):
        return str, ""  # every string column is variable-length UTF-8
    if dtype.kind in "iuf":
        return dtype, dtype.type(0)
    raise TesseraError(f"Column '{name}' of {store} cannot hold {dtype} values: use a numpy "
                       "integer or float type, or str.")


def _check_column_name(name, store):
    if not isinstance(name, str) or not name:
        raise TesseraError(f"A column of {store} needs a non-empty name, not {name!r}.")
    if "/" in name or "\\" in name or name in (".", "..") or name.startswith("__"):
        raise TesseraError(f"'{name}' cannot name a column of {store}: names cannot contain "
                           "'/' or '\\', be '.' or '..', or start with '__'.")


def _resize(array, rows):
    """Give ``array`` ``rows`` rows (new rows hold the fill value)."""
    old = array.shape[0]
    if old != rows:
        array.resize((rows,) + array.shape[1:])
        _clear_stale_tail(array, old, rows)


def _clear_stale_tail(array, old_rows, new_rows):
    """After growing, give the new rows of the last partial chunk the fill value.

    Zarr keeps a partial chunk whole when an array shrinks, so values cut off
    by a smaller row count would reappear when it grows again.
    """
    chunk = array.chunks[0]
    end = min(new_rows, -(-old_rows // chunk) * chunk)
    if end > old_rows:
        array[old_rows:end] = np.full((end - old_rows,) + array.shape[1:], array.fill_value,
                                      dtype=array.dtype)


def _count(value, what, store):
    """A non-negative integer from ``value`` (int or integral number)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        if not (isinstance(value, (float, np.floating)) and float(value).is_integer()):
            raise TesseraError(f"The {what} for {store} must be a whole number, not {value!r}.")
    value = int(value)
    if value < 0:
        raise TesseraError(f"The {what} for {store} cannot be negative ({value}).")
    return value


def _utc_datetime(text):
    when = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _is_valid(location):
    """Both the root and the RAT group exist as Zarr format 3 groups."""
    return all(_is_group(location.read_key(key)) for key in ("zarr.json", "RAT/zarr.json"))


def _is_group(document):
    if document is None:
        return False
    try:
        metadata = json.loads(document)
    except ValueError:
        return False
    return (isinstance(metadata, dict) and metadata.get("zarr_format") == 3
            and metadata.get("node_type") == "group")


def _transport_errors():
    errors = [OSError, ValueError, KeyError]
    try:
        import zarr.errors

        errors.append(zarr.errors.BaseZarrError)
    except ImportError:
        pass
    try:
        import botocore.exceptions

        errors += [botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError]
    except ImportError:
        pass
    return tuple(errors)


@contextlib.contextmanager
def _io_errors(name, action):
    """Turn file-system and Zarr errors into a :class:`TesseraError` naming the store."""
    try:
        yield
    except TesseraError:
        raise
    except _transport_errors() as error:
        detail = redact(str(error) or type(error).__name__)
        raise TesseraError(f"Cannot {action} the Zarr RAT store {name}: {detail}") from error


if __name__ == "__main__":
    from .store_cli import main

    sys.exit(main())
