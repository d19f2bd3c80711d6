"""Reading frames from videos, folders, TIFF stacks and arrays; writing alpha mattes.

See :mod:`.readers` (:func:`open_frames`, :func:`read_image`),
:mod:`.writers` (:class:`OutputWriter`, the output formats), :mod:`.containers`
(videos and zarr assembled at the end), :mod:`.lock` (one writer per folder)
and :mod:`.manifest` (what makes a run resumable).
"""

from __future__ import annotations

from .readers import IMAGE_SUFFIXES, VIDEO_SUFFIXES, FrameSource, natural_key, open_frames, read_image
from .containers import FrameTiming
from .lock import FolderLock
from .writers import (
    COLOURS,
    FORMAT_HELP,
    FORMATS,
    OutputWriter,
    alpha_to_uint8,
    alpha_to_uint16,
    atomic_write_bytes,
    atomic_write_png,
)

__all__ = [
    "COLOURS",
    "FORMATS",
    "FolderLock",
    "FrameTiming",
    "atomic_write_bytes",
    "FORMAT_HELP",
    "FrameSource",
    "IMAGE_SUFFIXES",
    "OutputWriter",
    "VIDEO_SUFFIXES",
    "alpha_to_uint16",
    "alpha_to_uint8",
    "atomic_write_png",
    "natural_key",
    "open_frames",
    "read_image",
]
