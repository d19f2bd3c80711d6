"""Two helper threads for work that runs beside the caller's (OpenCV, numba kernels and scipy's sparse products release the GIL).

Each frame of a sequence depends on the one before, so frames cannot run side
by side, but parts of them can, and the second core is otherwise idle:

* ``beside(fn, *args)``: leaf work of the current frame (the two optical flows,
  the two halves of each sparse product) on the *helper* thread; the caller
  does its own half meanwhile and then waits on the future. The helper only
  runs such leaf work (never work that waits on it), so it cannot deadlock.
* ``ahead_of_caller(fn, *args)``: a larger piece of the *next* frame (its cues,
  which need this frame's coarse mask only) on the *look-ahead* thread while
  the caller mattes this frame. On that thread ``helps()`` is False: the caller
  holds the other core, so the work there runs in one piece.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["ahead_of_caller", "beside", "helps"]

_helper: ThreadPoolExecutor | None = None
_ahead: ThreadPoolExecutor | None = None
_lock = threading.Lock()
_here = threading.local()


def helps() -> bool:
    """Whether a second core is there to run work beside the caller's (never on the look-ahead thread)."""
    return (os.cpu_count() or 1) >= 2 and not getattr(_here, "ahead", False)


def _mark_ahead() -> None:
    _here.ahead = True


def ahead_of_caller(fn, *args) -> Future:
    """Run ``fn(*args)`` on the look-ahead thread (one at a time, in order); its future."""
    global _ahead
    with _lock:
        if _ahead is None:
            _ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iconmat-ahead", initializer=_mark_ahead)
        ahead = _ahead
    return ahead.submit(fn, *args)


def beside(fn, *args) -> Future:
    """Run ``fn(*args)`` on the helper thread; its future (``.result()`` re-raises its error)."""
    global _helper
    with _lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iconmat-helper")
        helper = _helper
    return helper.submit(fn, *args)
