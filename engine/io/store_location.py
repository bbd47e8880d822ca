"""Where a Zarr RAT store lives: a local folder or an ``s3://bucket/prefix``.

:func:`store_location` classifies what the user typed. Local paths are taken
as they are on every operating system (``C:\\data\\rat.zarr`` is a Windows
drive path, not a URL with the scheme ``c``); ``s3://`` URLs go through
fsspec/s3fs. :class:`StoreLocation` holds the few file-system operations the
store needs besides Zarr itself: existence, reading one small key, and
deleting the store (every object under exactly ``prefix/`` on S3).

Credentials never belong in an address: ``s3://KEY:SECRET@bucket/...`` is
refused without repeating them, and :attr:`StoreLocation.name` (what messages
show) is redacted.
"""

import contextlib
import os
import re
import shutil
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from ..dependencies import require
from ..errors import TesseraError
from .output_safety import redact

LOCAL = "local"
S3 = "s3"

#: ``scheme://`` with a scheme of two letters or more (one letter is a drive).
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+)://(.*)$", re.DOTALL)
_DRIVE = re.compile(r"^[A-Za-z]:")


def classify_store_path(path):
    """``"local"`` or ``"s3"`` for a store path or URL; raise for other URLs.

    Windows drive paths (``C:\\x.zarr``, ``C:/x.zarr``) and UNC paths
    (``\\\\server\\share\\x.zarr``) are local on every system; ``file://``
    URLs are local too.
    """
    return store_location(path).kind


def store_location(path, storage_options=None):
    """The :class:`StoreLocation` of a local path (str or PathLike) or URL."""
    if isinstance(path, StoreLocation):
        return path
    if isinstance(path, os.PathLike):
        path = os.fspath(path)
    if not isinstance(path, str):
        raise TesseraError("A Zarr RAT store is named by a path or an s3:// URL, not "
                           f"{redact(repr(path))}.")
    if not path.strip():
        raise TesseraError("No Zarr RAT store was given (the path is empty).")
    if _DRIVE.match(path) or path.startswith("\\\\"):
        return StoreLocation(path, LOCAL, _strip_separators(path))
    url = _URL.match(path)
    if url is None:
        return StoreLocation(path, LOCAL, _strip_separators(path))
    scheme = url.group(1).lower()
    if scheme == "file":
        local = unquote(urlsplit(path).path)
        if re.match(r"^/[A-Za-z]:", local):  # file:///C:/x.zarr
            local = local[1:]
        return StoreLocation(path, LOCAL, _strip_separators(local))
    if scheme != "s3":
        raise TesseraError(
            f"Cannot use the Zarr RAT store {redact(path)}: '{scheme}://' addresses are not "
            "supported (use a local path or an s3://bucket/prefix URL)."
        )
    if "@" in url.group(2).split("/")[0]:
        raise TesseraError(
            f"The S3 address {redact(path)} holds credentials: never put them in a path. Give "
            "them through the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY), a "
            "credentials file (~/.aws/credentials) or storage_options."
        )
    bucket, _, prefix = url.group(2).strip("/").partition("/")
    prefix = prefix.strip("/")
    if not bucket or not prefix:
        raise TesseraError(
            f"The S3 address {path} must name a bucket and a prefix inside it "
            "(s3://bucket/prefix/store.zarr)."
        )
    if any(part in ("", ".", "..") for part in prefix.split("/")):
        raise TesseraError(f"The S3 address {path} has an empty, '.' or '..' path segment.")
    return StoreLocation(path, S3, f"{bucket}/{prefix}", dict(storage_options or {}))


def _strip_separators(path):
    stripped = path.rstrip("/\\")
    if not stripped or re.fullmatch(r"[A-Za-z]:", stripped):
        return path  # "/" or "C:\": keep the root as given
    return stripped


@dataclass(frozen=True)
class StoreLocation:
    """A classified store address.

    ``kind`` is ``"local"`` or ``"s3"``; ``path`` is the local path, or
    ``bucket/prefix`` on S3; ``storage_options`` are passed to s3fs (e.g.
    ``{"client_kwargs": {"endpoint_url": "http://127.0.0.1:9000"}}``).
    """

    text: str
    kind: str
    path: str
    storage_options: dict = field(default_factory=dict, compare=False)

    @property
    def name(self):
        """The address for messages and logs, credentials redacted."""
        return redact(self.text)

    @property
    def is_remote(self):
        return self.kind != LOCAL

    @property
    def url(self):
        return f"s3://{self.path}" if self.kind == S3 else self.path

    def filesystem(self):
        """An s3fs file system (synchronous, without listing caches)."""
        require("s3fs", purpose=f"The Zarr RAT store {self.name} on S3")
        import s3fs

        options = {"use_listings_cache": False}
        options.update(self.storage_options)
        return s3fs.S3FileSystem(**options)

    def zarr_store(self, read_only):
        """The zarr-python store object for this location."""
        import zarr

        if self.kind == LOCAL:
            from .zarr_local import ParentsKeptLocalStore

            return ParentsKeptLocalStore(self.path, read_only=read_only)
        require("s3fs", purpose=f"The Zarr RAT store {self.name} on S3")
        options = {"use_listings_cache": False}
        options.update(self.storage_options)
        return zarr.storage.FsspecStore.from_url(self.url, storage_options=options,
                                                 read_only=read_only)

    def exists(self):
        """True when anything exists at the location (a file, folder or objects under it)."""
        if self.kind == LOCAL:
            return os.path.exists(self.path)
        return bool(self.filesystem().exists(self.path))

    def is_empty_folder(self):
        """True for an existing local folder with nothing in it."""
        return self.kind == LOCAL and os.path.isdir(self.path) and not os.listdir(self.path)

    def folder_exists(self):
        """Whether the place the store would be created in exists (always True on S3)."""
        if self.kind != LOCAL:
            return True
        return os.path.isdir(os.path.dirname(os.path.abspath(self.path)))

    def read_key(self, key):
        """The bytes of ``key`` (e.g. ``"RAT/zarr.json"``) under the store, or None."""
        if self.kind == LOCAL:
            target = os.path.join(self.path, *key.split("/"))
            if not os.path.isfile(target):
                return None
            with open(target, "rb") as stream:
                return stream.read()
        try:
            return self.filesystem().cat_file(f"{self.path}/{key}")
        except FileNotFoundError:
            return None

    def object_keys(self):
        """Every key under the store (S3: all pages of the listing of ``prefix/``)."""
        if self.kind == LOCAL:
            return [os.path.relpath(os.path.join(root, name), self.path).replace(os.sep, "/")
                    for root, _, names in os.walk(self.path) for name in names]
        filesystem = self.filesystem()
        inside = self.path + "/"
        return [key[len(inside):] for key in filesystem.find(inside) if key.startswith(inside)]

    def delete_tree(self):
        """Remove the store: the local folder, or every object under exactly ``prefix/``."""
        if self.kind == LOCAL:
            if os.path.isdir(self.path):
                shutil.rmtree(self.path)
            elif os.path.exists(self.path):
                os.remove(self.path)
            return
        filesystem = self.filesystem()
        inside = self.path + "/"
        keys = [key for key in filesystem.find(inside) if key.startswith(inside)]
        if keys:
            filesystem.rm(keys)  # s3fs deletes in batches of 1000 keys
        filesystem.invalidate_cache()

    def write_key(self, key, data):
        """Store ``data`` (bytes) as ``key`` whole: a local file written beside it and renamed
        over it; one PUT on S3."""
        if self.kind == LOCAL:
            target = os.path.join(self.path, *key.split("/"))
            temporary = f"{target}.tessera-tmp-{os.getpid()}"
            with open(temporary, "wb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temporary, target)
            return
        self.filesystem().pipe_file(f"{self.path}/{key}", data)

    def delete_key(self, key):
        """Remove the single object or file ``key`` (nothing to do when absent)."""
        if self.kind == LOCAL:
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(self.path, *key.split("/")))
            return
        filesystem = self.filesystem()
        with contextlib.suppress(FileNotFoundError):
            filesystem.rm_file(f"{self.path}/{key}")
        filesystem.invalidate_cache()

    def move_tree(self, source, target):
        """Move the keys under ``source/`` to ``target/`` (relative keys, e.g.
        ``"RAT/.tmp-x"`` -> ``"RAT/x"``): one rename locally, a copy and a delete of
        every object on S3, where the array's ``zarr.json`` is copied last and deleted first
        (a half-copied array is not an array). ``target`` must not exist."""
        if self.kind == LOCAL:
            os.rename(os.path.join(self.path, *source.split("/")),
                      os.path.join(self.path, *target.split("/")))
            return
        filesystem = self.filesystem()
        inside, into = f"{self.path}/{source}/", f"{self.path}/{target}/"
        keys = sorted((key for key in filesystem.find(inside) if key.startswith(inside)),
                      key=lambda key: key == inside + "zarr.json")
        for key in keys:  # S3 has no folders: every object is copied, then the old ones go
            filesystem.copy(key, into + key[len(inside):])
        for key in reversed(keys):
            filesystem.rm_file(key)
        filesystem.invalidate_cache()

    def delete_keys(self, prefix):
        """Remove everything under ``prefix/`` (a relative key such as ``"RAT/x"``); on S3
        an array's ``zarr.json`` goes first."""
        if self.kind == LOCAL:
            shutil.rmtree(os.path.join(self.path, *prefix.split("/")), ignore_errors=True)
            return
        filesystem = self.filesystem()
        inside = f"{self.path}/{prefix}/"
        keys = sorted((key for key in filesystem.find(inside) if key.startswith(inside)),
                      key=lambda key: key != inside + "zarr.json")
        if keys:
            filesystem.rm(keys[:1])
            if keys[1:]:
                filesystem.rm(keys[1:])
        filesystem.invalidate_cache()

