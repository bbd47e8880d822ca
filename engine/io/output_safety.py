"""The one output-safety rule every Tessera writer follows.

1. Before any work, :func:`check_targets` refuses a target that is one of the
   inputs (after resolving links; a GeoPackage layer ``file.gpkg|layername=x``
   counts as its file), two outputs with the same path, an existing target
   unless the caller said *overwrite*, and a folder that is missing, a file or
   not writable.
2. Files are written beside their target under a temporary name and renamed
   over it (:class:`Publication`): outputs that belong together are renamed
   together, only after all of them were written, and a failed, cancelled or
   killed run leaves the targets as they were.
3. One writer at a time per target (:class:`TargetLock`): a second run waits
   for the first (or stops when cancelled), so no run's result is lost.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import time
from collections.abc import Iterable

from ..errors import CancelledError, TesseraError

#: Name part of the temporary files and folders Tessera writes beside a target.
TEMPORARY_MARK = ".tessera-tmp-"
#: Suffix of the lock file beside a target.
LOCK_SUFFIX = ".tessera-lock"


def file_part(source) -> str | None:
    """The local file of a source or target (``a.gpkg|layername=x`` -> ``a.gpkg``);
    None for URLs, ``/vsi…`` paths and in-memory datasets."""
    if source is None:
        return None
    if not isinstance(source, (str, os.PathLike)):
        from .raster_io import raster_name

        source = raster_name(source)
    text = os.fspath(source).split("|")[0].strip()
    if not text or "://" in text or text.startswith("/vsi"):
        return None
    return text


def same_file(a, b) -> bool:
    """True when ``a`` and ``b`` name the same local file (links resolved)."""
    first, second = file_part(a), file_part(b)
    if first is None or second is None:
        return False
    if os.path.exists(first) and os.path.exists(second):
        return os.path.samefile(first, second)
    return os.path.normcase(os.path.realpath(first)) == os.path.normcase(
        os.path.realpath(second))


def check_targets(targets: Iterable[tuple], inputs: Iterable[tuple] = (), overwrite=False,
                  may_exist=False):
    """Refuse, before any work, targets that would destroy data or cannot be written.

    ``targets`` and ``inputs`` are ``(path, role)`` pairs (None paths are
    skipped); roles name the file in messages ("output table", "image", ...).
    With ``overwrite`` an existing target may be replaced, an input never;
    ``may_exist`` is for targets that are added to (RATs, Zarr stores), also
    given per target as ``(path, role, may_exist)``.
    """
    inputs = [(path, role) for path, role in inputs if file_part(path)]
    seen = []
    for path, role, *added_to in targets:
        local = file_part(path)
        if local is None:
            continue
        for source, source_role in inputs:
            if same_file(local, source):
                raise TesseraError(
                    f"The {role} {local} is the {source_role} {file_part(source)}: writing it "
                    f"would destroy an input. Choose another path for the {role}.")
        for other, other_role in seen:
            if same_file(local, other):
                raise TesseraError(f"The {role} and the {other_role} are both {local}: give "
                                   "each output its own path.")
        seen.append((local, role))
        if os.path.isdir(local) and not local.lower().rstrip("/\\").endswith(".zarr"):
            raise TesseraError(f"The {role} {local} is a folder: give a file name.")
        if os.path.exists(local) and not (overwrite or (added_to or [may_exist])[0]):
            raise TesseraError(f"The {role} {local} already exists: choose to overwrite it, "
                               "or another path.")
        check_not_read_only(local, role)
        check_folder(os.path.dirname(os.path.abspath(local)), f"folder of the {role}")


def check_not_read_only(path, role):
    """Refuse to replace an existing file marked read-only (its owner's write bit cleared,
    or not writable for this user): a rename would replace it all the same."""
    if not os.path.isfile(path):
        return
    if not os.stat(path).st_mode & stat.S_IWUSR or not os.access(path, os.W_OK):
        raise TesseraError(f"The {role} {path} is read-only: make it writable, or choose "
                           "another path.")


def check_folder(folder, role="output folder", create=False):
    """Refuse a folder that is a file, missing (unless ``create``; its nearest existing
    parent must then be writable) or not writable."""
    folder = os.path.abspath(os.fspath(folder))
    probe = folder
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if not create or parent == probe:
            raise TesseraError(f"The {role} {folder} does not exist; create it or choose "
                               "another.")
        probe = parent
    if not os.path.isdir(probe):
        raise TesseraError(f"The {role} {folder} cannot be used: {probe} is a file, not a "
                           "folder. Choose another path.")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise TesseraError(f"The {role} {probe} is not writable: choose a folder you may "
                           "write to.")


def temporary_path(target) -> str:
    """A fresh name beside ``target`` (same folder, so a rename replaces it atomically),
    keeping the extension so drivers recognise it."""
    target = os.path.abspath(os.fspath(target))
    folder, name = os.path.split(target)
    stem, extension = _split_extension(name)
    return os.path.join(folder, f".{stem}{TEMPORARY_MARK}{secrets.token_hex(4)}{extension}")


def _split_extension(name):
    for double in (".aux.xml", ".tar.gz"):
        if name.lower().endswith(double):
            return name[: -len(double)], name[-len(double):]
    return os.path.splitext(name)


def flush_file(path):
    """Make ``path``'s bytes durable (so a rename cannot publish a half-written file);
    a full disk shows here at the latest."""
    try:
        with open(path, "rb+") as stream:
            os.fsync(stream.fileno())
    except OSError as error:
        raise TesseraError(f"Writing {path} failed: {error.strerror or error}.") from None


def remove_quietly(path):
    """Remove a temporary file or folder if it is there."""
    import shutil

    with contextlib.suppress(OSError):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        elif os.path.lexists(path):
            os.remove(path)


class Publication:
    """Files written under temporary names, renamed over their targets together.

    ``temporary = publication.add(target)`` returns where to write ``target``;
    :meth:`publish` renames every written file over its target once all are
    complete; :meth:`discard` (also on an exception inside ``with``) removes
    them and leaves the targets as they were.
    """

    def __init__(self):
        self.pending = []  # (temporary, target, companions)

    def add(self, target, companions=(), temporary=None) -> str:
        """A temporary path for ``target`` (or the given one, which must be on the same file
        system); ``companions`` are suffixes of side files written with it (e.g.
        ``".aux.xml"``) that move along."""
        temporary = temporary or temporary_path(target)
        self.pending.append((temporary, os.path.abspath(os.fspath(target)), tuple(companions)))
        return temporary

    def publish(self):
        """Flush every temporary file, then rename each over its target."""
        for temporary, target, companions in self.pending:
            if not os.path.exists(temporary):
                raise TesseraError(f"The output {target} was not written.")
            for path in (temporary, *[temporary + c for c in companions]):
                if os.path.isfile(path):
                    flush_file(path)
        for temporary, target, companions in self.pending:
            for suffix in companions:
                if os.path.exists(temporary + suffix):
                    os.replace(temporary + suffix, target + suffix)
                elif os.path.exists(target + suffix):
                    os.remove(target + suffix)  # a side file of the replaced output
            os.replace(temporary, target)
        self.pending = []

    def discard(self):
        for temporary, _, companions in self.pending:
            for path in (temporary, *[temporary + c for c in companions]):
                remove_quietly(path)
        self.pending = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.publish()
        else:
            self.discard()
        return False


class TargetLock:
    """A lock file beside ``target`` held while one run checks and writes it.

    Another run locking the same target waits, telling ``waiting(message)``
    once, until the first is done, or raises :class:`CancelledError` when
    ``cancelled()`` says so. The lock is released when the process ends,
    however it ends (an OS file lock), so a killed run blocks nobody.
    """

    def __init__(self, target, waiting=None, cancelled=None, poll=0.2):
        local = file_part(target)
        self.path = None if local is None else os.path.abspath(local).rstrip("/\\") + LOCK_SUFFIX
        self.waiting = waiting
        self.cancelled = cancelled
        self.poll = poll
        self._stream = None

    def acquire(self):
        if self.path is None or self._stream is not None:
            return self
        told = False
        while True:
            stream = open(self.path, "a+b")  # noqa: SIM115 (held until release)
            if _try_lock(stream):
                # the file may have been removed by the run that held it: lock the file
                # that is at the path now
                try:
                    if os.path.samestat(os.fstat(stream.fileno()), os.stat(self.path)):
                        self._stream = stream
                        return self
                except FileNotFoundError:
                    pass
            stream.close()
            if self.cancelled is not None and self.cancelled():
                raise CancelledError()
            if not told and self.waiting is not None:
                self.waiting(f"Waiting for another Tessera run writing "
                             f"{self.path[:-len(LOCK_SUFFIX)]} to finish")
                told = True
            time.sleep(self.poll)

    def release(self):
        if self._stream is None:
            return
        with contextlib.suppress(OSError):
            os.remove(self.path)
        _unlock(self._stream)
        self._stream.close()
        self._stream = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
        return False


def _try_lock(stream) -> bool:
    if os.name == "nt":
        import msvcrt

        try:
            msvcrt.locking(stream.fileno(), msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False
    import fcntl

    try:
        fcntl.flock(stream.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False


def _unlock(stream):
    if os.name == "nt":
        import msvcrt

        with contextlib.suppress(OSError):
            stream.seek(0)
            msvcrt.locking(stream.fileno(), msvcrt.LK_UNLCK, 1)
        return
    import fcntl

    fcntl.flock(stream.fileno(), fcntl.LOCK_UN)


def redact(text) -> str:
    """``text`` with credentials in URLs (``scheme://user:secret@host``, also with one
    slash; a one-letter drive is no scheme) and ``key=secret`` style query parameters
    replaced by ``***``."""
    import re

    # one slash too: path functions turn "https://u:p@h" into "https:/u:p@h"
    text = re.sub(r"(?i)([a-z][a-z0-9+.-]+:/{1,2})[^/@\s]+@", r"\1***@", str(text))
    return re.sub(r"(?i)((?:secret|password|passwd|token|signature|credential|key)[\w-]*=)"
                  r"[^&\s'\"]+", r"\1***", text)
