"""The files a normalization run writes: checked before any work, published together.

Global regression and local block adjustment write corrected images and, when
asked, an adjustments file, block maps and a profile plot. :class:`RunOutputs`
applies the output-safety rule (:mod:`tessera.engine.io.output_safety`) to all of them at once:
every target is locked against another run writing it, checked against every
input (images, vector mask, loaded statistics or reference map) and against
the other targets, refused when it exists unless *overwrite*; every folder is
checked writable. Each file is then written beside its target
(:meth:`RunOutputs.temporary`) and read back by its writer; :meth:`publish`
renames all of them only once every one was written, so a failed, cancelled
or killed run (a full disk included) leaves every file as it was.
"""

from __future__ import annotations

import contextlib
import os

from ..errors import TesseraError
from ..io.output_safety import Publication, TargetLock, check_folder, check_targets


def normalization_inputs(image_set, vector_mask=None, adjustments=None, reference_map=None):
    """``(path, role)`` of everything a normalization run reads."""
    inputs = [(image.path, "input image") for image in image_set.images]
    for path, role in ((vector_mask, "vector mask"), (adjustments, "adjustments file to load"),
                       (reference_map, "reference map to load")):
        if path:
            inputs.append((os.fspath(path), role))
    return inputs


class RunOutputs:
    """The targets of one run (``(path, role)`` pairs, None paths skipped) in the
    folders ``(folder, role)`` they need; use as a context manager::

        with RunOutputs(targets, inputs, folders, overwrite) as run:
            write(run.temporary(target))   # for every target
            run.publish()                  # all renamed at once

    Leaving the block without :meth:`publish` (an error, a cancel) removes the
    temporary files and releases the locks; the targets stay as they were.
    """

    def __init__(self, targets, inputs, folders, overwrite=False, log=None, cancelled=None):
        self.targets = [(os.fspath(path), role) for path, role in targets if path]
        self.inputs = list(inputs)
        self.folders = [(os.fspath(folder), role) for folder, role in folders if folder]
        named = {os.path.abspath(folder) for folder, _ in self.folders}
        for path, role in self.targets:  # the folders of the other targets, made if missing
            folder = os.path.dirname(os.path.abspath(path))
            if folder not in named:
                named.add(folder)
                self.folders.append((folder, f"folder of the {role}"))
        self.overwrite = overwrite
        self.log = log
        self.cancelled = cancelled
        self.publication = Publication()
        self._locks = contextlib.ExitStack()

    def __enter__(self):
        for folder, role in self.folders:
            check_folder(folder, role, create=True)
        try:
            for folder, _ in self.folders:
                os.makedirs(folder, exist_ok=True)
            for path in sorted({os.path.abspath(path) for path, _ in self.targets}):
                self._locks.enter_context(TargetLock(path, self.log, self.cancelled))
            check_targets(self.targets, self.inputs, self.overwrite)
        except BaseException:
            self._locks.close()
            raise
        return self

    def temporary(self, target, companions=()) -> str:
        """Where to write ``target`` (beside it, renamed over it by :meth:`publish`)."""
        return self.publication.add(target, companions)

    def publish(self):
        """Rename every written file over its target."""
        try:
            self.publication.publish()
        except OSError as error:  # e.g. a target held open by another program (Windows)
            target = error.filename2 or error.filename
            raise TesseraError(f"Cannot replace {target}: {error.strerror or error}. Close it "
                               "where it is open (a layer in QGIS, another program) and run "
                               "again.") from None

    def __exit__(self, exc_type, exc, tb):
        names = [(temporary, target) for temporary, target, _ in self.publication.pending]
        try:
            self.publication.discard()  # whatever was not published
        finally:
            self._locks.close()
        if isinstance(exc, TesseraError) and exc.args:
            # messages name the targets, not their temporary names
            text = str(exc.args[0])
            for temporary, target in names:
                text = text.replace(temporary, target)
            exc.args = (text, *exc.args[1:])
        return False
