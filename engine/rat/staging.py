"""Writing a RAT so that readers see the old table or the complete new one, never a part.

:func:`open_rat_edit` opens a RAT target for writing through a *staged* copy:

- A GDAL file whose driver keeps the RAT inside the file (HFA ``.img``, KEA):
  the file is copied beside itself, the copy edited, read back and renamed over
  the original.
- A GDAL file whose RAT lives in the ``.aux.xml`` side-car (GeoTIFF and other
  PAM drivers): the raster is linked into a temporary folder beside it with a
  copy of its ``.aux.xml``; GDAL writes the complete new ``.aux.xml`` there, and
  that file is renamed over the old one. The raster itself is never opened for
  writing.
- A new GDAL file: created under a temporary name, renamed into place.
- A Zarr RAT store: new and replaced columns are written under hidden names
  (:meth:`~.rat_store.RatStore.staged_name`) and renamed when all are complete.

``edit.table`` is the writable :class:`~.rat.RatTable`; :meth:`RatEdit.stage`
stores its edits in the staged copy, :meth:`RatEdit.reopen` reads that copy
back, :meth:`RatEdit.publish` makes it the target and :meth:`RatEdit.discard`
drops it. A run that fails or is killed before publishing leaves the target as
it was (only a hidden temporary file or column may remain).
"""

from __future__ import annotations

import contextlib
import os
import shutil

import numpy as np
from osgeo import gdal

from ..errors import TesseraError
from ..io.output_safety import Publication, remove_quietly, temporary_path
from ..io.raster_io import gdal_quiet, open_raster, raster_name
from .tables import (
    LIVE_RAT_DRIVERS,
    GdalRat,
    ZarrRat,
    create_rat_file,
    is_zarr_target,
)

SIDE_CAR = ".aux.xml"


def open_rat_edit(target, band=1, template=None, storage_options=None) -> RatEdit:
    """A :class:`RatEdit` of the RAT at ``target``: a raster path (band ``band``; created
    as a RAT-only file when missing, georeferenced like ``template``), an open GDAL
    dataset (written through its handle when it has no file, e.g. in memory), or a Zarr
    store path/URL."""
    if is_zarr_target(target):
        return ZarrEdit(target, storage_options)
    if isinstance(target, gdal.Dataset):
        path = raster_name(target)
        if not os.path.isfile(path):
            return HandleEdit(target, band)
        target = path
    path = os.path.abspath(os.fspath(target))
    if not os.path.exists(path):
        return NewFileEdit(path, template)
    driver = _driver_name(path)
    if driver in LIVE_RAT_DRIVERS:
        return CopiedFileEdit(path, band)
    return SideCarEdit(path, band)


class RatEdit:
    """The staged edit of one RAT target (see the module's docstring)."""

    table = None
    name = ""

    def stage(self):
        """Store the table's edits in the staged copy (the target is not touched)."""
        self.table.close()

    def reopen(self):
        """The staged table, read-only, as a reader would see it after publishing."""
        raise NotImplementedError

    def publish(self):
        """Make the staged table the target's."""
        raise NotImplementedError

    def discard(self):
        """Drop the staged table; the target stays as it was."""
        if self.table is not None:
            self.table.discard()


class HandleEdit(RatEdit):
    """A dataset without a file (in memory): written through its handle."""

    def __init__(self, dataset, band):
        self.table = GdalRat(dataset, band, update=True)
        self.name = self.table.name
        self._dataset, self._band = dataset, band

    def reopen(self):
        return GdalRat(self._dataset, self._band)

    def publish(self):
        pass


class _StagedFileEdit(RatEdit):
    """A GDAL RAT edited in a file beside the target, published by rename."""

    def __init__(self, target, band):
        self.target = target
        self.name = target
        self.band = band
        self.publication = Publication()
        self.staged_path = None  # the raster GDAL edits
        self.cleanup = []

    def reopen(self):
        with gdal_quiet():
            dataset = gdal.Open(self.staged_path)
        if dataset is None:
            raise TesseraError(f"Writing the RAT of {self.target} failed: the written file "
                               f"cannot be read back ({gdal.GetLastErrorMsg()}). Is the disk "
                               "full? The file was left as it was.")
        return GdalRat(dataset, self.band)

    def stage(self):
        try:
            self.table.close()
        except OSError as error:
            raise _write_error(self.target, error) from None

    def publish(self):
        try:
            self.publication.publish()
        except OSError as error:
            raise _write_error(self.target, error) from None
        finally:
            self._clean()

    def discard(self):
        super().discard()
        self.publication.discard()
        self._clean()

    def _clean(self):
        for path in self.cleanup:
            remove_quietly(path)
        self.cleanup = []


class NewFileEdit(_StagedFileEdit):
    """A RAT-only raster created under a temporary name."""

    def __init__(self, target, template=None):
        super().__init__(target, 1)
        self.staged_path = self.publication.add(target, companions=(SIDE_CAR,))
        self.table = GdalRat(create_rat_file(self.staged_path, template, name=target), 1,
                             update=True)


class CopiedFileEdit(_StagedFileEdit):
    """A raster whose driver writes the RAT into the file: a copy is edited."""

    def __init__(self, target, band):
        super().__init__(target, band)
        stem = os.path.splitext(target)[0]
        if os.path.exists(stem + ".ige"):  # a spill file the copy could not refer to
            raise TesseraError(
                f"The RAT of {target} cannot be written safely: its pixels spill into "
                f"{stem}.ige, which a copy cannot share. Write the statistics to a separate "
                "RAT file (.img) or a Zarr store (.zarr) instead.")
        self.staged_path = self.publication.add(target, companions=(SIDE_CAR,))
        try:
            shutil.copyfile(target, self.staged_path)
            if os.path.exists(target + SIDE_CAR):
                shutil.copyfile(target + SIDE_CAR, self.staged_path + SIDE_CAR)
        except OSError as error:
            self.publication.discard()
            raise _write_error(target, error) from None
        self.table = GdalRat(open_raster(self.staged_path, update=True), band, update=True)


class SideCarEdit(_StagedFileEdit):
    """A raster whose RAT lives in its ``.aux.xml``: GDAL writes the new side-car
    in a temporary folder beside the raster, through a link to the raster."""

    def __init__(self, target, band):
        super().__init__(target, band)
        folder = temporary_path(os.path.join(os.path.dirname(target), "rat"))
        try:
            os.mkdir(folder)
            self.cleanup.append(folder)
            self.staged_path = os.path.join(folder, os.path.basename(target))
            _link(target, self.staged_path)
            if os.path.exists(target + SIDE_CAR):
                shutil.copyfile(target + SIDE_CAR, self.staged_path + SIDE_CAR)
        except OSError as error:
            self._clean()
            raise _write_error(target, error) from None
        self.publication.add(target + SIDE_CAR, temporary=self.staged_path + SIDE_CAR)
        # read-only: GDAL stores the RAT of a read-only dataset in its .aux.xml on closing
        self.table = GdalRat(open_raster(self.staged_path), band, update=True)


def _link(source, link):
    """``link`` names the file ``source``: a hard link, else a symbolic one."""
    try:
        os.link(source, link)
    except OSError:
        try:
            os.symlink(os.path.abspath(source), link)
        except OSError as error:
            raise TesseraError(
                f"The RAT of {source} cannot be written safely here: this file system "
                f"allows neither hard nor symbolic links ({error.strerror}). Write the "
                "statistics to a separate RAT file (.img) or a Zarr store (.zarr).") from None


class ZarrEdit(RatEdit):
    """New and replaced columns of a Zarr RAT store, written under hidden names."""

    def __init__(self, target, storage_options=None):
        from .store import RatStore

        self.created = not RatStore.exists(target, storage_options)
        self.target, self.storage_options = target, storage_options
        self.table = StagedZarrRat(target, storage_options)
        self.name = self.table.name

    def stage(self):
        pass  # every block is in the store already

    def reopen(self):
        return _Unclosed(self.table)

    def publish(self):
        self.table.commit()
        self.table.close()

    def discard(self):
        from .store import RatStore

        self.table.abandon()
        self.table.close()
        if self.created:  # the store did not exist before this edit
            RatStore.delete(self.target, self.storage_options)


class StagedZarrRat(ZarrRat):
    """A writable :class:`~.rat.ZarrRat` whose created columns stay hidden until
    :meth:`commit`; deleting a column is deferred to :meth:`commit` too."""

    def __init__(self, target, storage_options=None):
        super().__init__(target, update=True, create=True, storage_options=storage_options)
        # left by a run that died (writers hold the target's lock)
        self.store.finish_publication()
        self.store.purge_staged()
        self.original_rows = self.store.row_count
        self.staged = {}      # column -> hidden name
        self.deleted = set()  # columns to delete (or replace) on commit

    def _stored(self, column):
        return self.staged.get(column, column)

    def column_names(self):
        visible = set(self.store.column_names()) - self.deleted
        return sorted(visible | set(self.staged))

    def has_column(self, column):
        return column in self.staged or (column not in self.deleted
                                         and self.store.has_column(column))

    def create_column(self, column, kind, dtype=None):
        if self.has_column(column):
            raise TesseraError(f"The Zarr RAT store {self.name} already has a column "
                               f"'{column}'.")
        hidden = self.store.staged_name(column)
        super().create_column(hidden, kind, dtype)
        self.staged[column] = hidden

    def delete_column(self, column):
        if column in self.staged:
            self.store.delete_column(self.staged.pop(column))
        elif self.has_column(column):
            self.deleted.add(column)
        else:
            self._check_column(column)

    def column_kind(self, column):
        return super().column_kind(self._stored(column))

    def column_dtype(self, column):
        return super().column_dtype(self._stored(column))

    def column_width(self, column):
        return super().column_width(self._stored(column))

    def read(self, column, start=0, length=None):
        return super().read(self._stored(column), start, length)

    def write(self, column, values, start=0):
        super().write(self._stored(column), values, start)

    def set_row_count(self, rows):
        self.store.stage_row_count(int(rows))

    def commit(self):
        """Make the staged columns visible (replacing deleted ones) and delete the rest,
        all in one publication (:meth:`~.store.RatStore.publish`)."""
        self.store.publish(self.staged, self.deleted)
        self.staged, self.deleted = {}, set()

    def abandon(self):
        """Delete the staged columns: the visible columns and the row count stay as they
        were."""
        for hidden in self.staged.values():
            try:
                self.store.delete_column(hidden)
            except TesseraError:
                pass  # hidden anyway
        self.staged, self.deleted = {}, set()
        self.store.unstage_row_count(self.original_rows)

    def close(self):
        if self.staged:  # closed without commit: nothing becomes visible
            self.abandon()
        super().close()


class _Unclosed:
    """A table seen through a context that does not close it (for read-backs)."""

    def __init__(self, table):
        self.table = table

    def __enter__(self):
        return self.table

    def __exit__(self, *exc):
        return False

    def __getattr__(self, name):
        return getattr(self.table, name)


def _driver_name(path):
    with gdal_quiet():
        driver = gdal.IdentifyDriver(path)
    if driver is None:
        raise TesseraError(f"{path} is not a raster GDAL can read: cannot write a RAT into it.")
    return driver.ShortName


def _write_error(target, error):
    reason = error.strerror or str(error)
    return TesseraError(f"Writing the RAT of {target} failed: {reason}. The file was left as "
                        "it was.")


@contextlib.contextmanager
def side_car_rat_kept(path, band=1):
    """Keep the RAT of ``path`` (band ``band``) across code that may rewrite its
    ``.aux.xml`` from an older state (QGIS closing its handles of the file): the RAT is
    copied on entry and stored again on exit through a staged side-car. Files whose
    driver keeps the RAT inside the file are left alone."""
    dataset = open_raster(path)
    driver = dataset.GetDriver().ShortName if dataset.GetDriver() else ""
    rat = dataset.GetRasterBand(band).GetDefaultRAT()
    kept = rat.Clone() if rat is not None and driver not in LIVE_RAT_DRIVERS else None
    dataset = rat = None
    yield
    if kept is not None:
        edit = SideCarEdit(os.path.abspath(path), band)
        try:
            edit.table.replace_table(kept)
            edit.stage()
            edit.publish()
        except BaseException:
            edit.discard()
            raise


def same_values(stored, written):
    """True when a block read back from a staged RAT holds what was written: exactly, or
    for floats to the 16 significant digits a GeoTIFF's ``.aux.xml`` keeps."""
    if stored.shape != written.shape:
        return False
    if written.dtype.kind == "f":
        return bool(np.allclose(stored, written, rtol=1e-15, atol=0, equal_nan=True))
    return bool(np.array_equal(stored, written))
