"""How much memory this machine has free, for checks made before a run allocates; how
glibc's allocator serves a task's large buffers on a Dask worker."""

import functools
import os
import sys
from contextlib import nullcontext

from .parallel import SharedSetting


def available_memory() -> int | None:
    """Bytes of memory free for a new allocation (Linux: MemAvailable; elsewhere the
    physical memory), or None when unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as stream:
            for line in stream:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    if os.name == "nt":
        import ctypes

        class _Status(ctypes.Structure):
            _fields_ = [("length", ctypes.c_ulong), ("load", ctypes.c_ulong),
                        ("total", ctypes.c_ulonglong), ("free", ctypes.c_ulonglong),
                        ("rest", ctypes.c_ulonglong * 5)]

        status = _Status()
        status.length = ctypes.sizeof(_Status)
        if ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status)):
            return int(status.free)
        return None
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def gibibytes(size) -> str:
    return f"{size / 2**30:.1f} GiB"


#: glibc's own ceiling for its sliding mmap threshold on 64-bit systems, and the trim
#: threshold it pairs with it (twice the mmap threshold): what the allocator of a process
#: without ``MALLOC_*_`` settings uses once it has freed a few buffers of that size.
REUSED_BUFFER_BYTES = 32 << 20
TRIM_BYTES = 2 * REUSED_BUFFER_BYTES
#: glibc's mallopt parameters and its default mmap and trim thresholds.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DEFAULT_MMAP_BYTES = _DEFAULT_TRIM_BYTES = 128 << 10

_allocator = SharedSetting()


def large_buffers_reused():
    """Let glibc reuse freed buffers of up to :data:`REUSED_BUFFER_BYTES` while the block
    runs, where the process was started with fixed allocator thresholds.

    A Dask nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``. Setting any
    such variable turns off glibc's sliding mmap threshold: every allocation above 128 KiB
    (each window's arrays, each GDAL block) is then a fresh ``mmap`` given back to the
    system when freed, so a windowed task keeps touching new zeroed pages, in system CPU
    time (bench/RESULTS.md, "Normalization on a Dask cluster"). Here the thresholds are
    those glibc slides to on its own; once the last block sharing them has ended, the ones
    found at start-up are set again and the free memory given back (``malloc_trim``), as
    Dask intends between tasks. Elsewhere (no such variable, not glibc): nothing."""
    libc = _fixed_threshold_glibc()
    if libc is None:
        return nullcontext()

    def reuse():
        libc.mallopt(_M_MMAP_THRESHOLD, REUSED_BUFFER_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_BYTES)

    def restore(_):
        libc.mallopt(_M_MMAP_THRESHOLD, _environment_bytes("MALLOC_MMAP_THRESHOLD_",
                                                           _DEFAULT_MMAP_BYTES))
        libc.mallopt(_M_TRIM_THRESHOLD, _environment_bytes("MALLOC_TRIM_THRESHOLD_",
                                                           _DEFAULT_TRIM_BYTES))
        libc.malloc_trim(0)

    return _allocator.held(reuse, restore)


@functools.lru_cache(maxsize=1)
def _fixed_threshold_glibc():
    """glibc (ctypes) when this process started with fixed mmap or trim thresholds (the
    environment variables glibc reads at start-up), else None."""
    if not sys.platform.startswith("linux") or not any(
            name in os.environ for name in ("MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_")):
        return None
    import ctypes

    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 (glibc, not musl)
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
    except (OSError, AttributeError):
        return None
    return libc


def _environment_bytes(name, default):
    try:
        return int(os.environ[name])
    except (KeyError, ValueError):
        return default
