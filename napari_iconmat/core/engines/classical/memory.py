"""Giving freed heap memory back to the operating system during long runs.

A run mattes frame after frame with work buffers whose sizes follow the object (the box of a
graph cut, the region SIFT reads, the unknown band of a solve). glibc's allocator keeps such
freed blocks in its heap, fragmented, so a process's resident memory creeps up over thousands
of frames although nothing is kept. ``malloc_trim`` returns the free pages; it is cheap (a few
milliseconds) and exists only in glibc: elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util

__all__ = ["release_free_memory"]

_TRIM = None


def _malloc_trim():
    global _TRIM
    if _TRIM is None:
        _TRIM = False
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _TRIM = libc.malloc_trim
            _TRIM.argtypes = [ctypes.c_size_t]
            _TRIM.restype = ctypes.c_int
        except (OSError, AttributeError):
            _TRIM = False
    return _TRIM


def release_free_memory() -> bool:
    """Return the heap's free pages to the operating system (glibc); True when it could."""
    trim = _malloc_trim()
    if not trim:
        return False
    trim(0)
    return True
