"""One helper thread for work that runs beside the caller's (OpenCV and scipy's sparse products release the GIL).

The classical engine leaves the second core idle for most of a frame: each
frame depends on the one before, so frames cannot run side by side, but parts
of one frame can (the two optical flows, the two halves of each sparse
product). ``beside(fn, *args)`` starts ``fn`` on the helper thread and returns
its future; the caller does its own half meanwhile and then waits on it. The
helper only ever runs such leaf work (never work that waits on the helper), so
it cannot deadlock.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor

__all__ = ["beside", "helps"]

_helper: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def helps() -> bool:
    """Whether a second core is there to run work beside the caller's."""
    return (os.cpu_count() or 1) >= 2


def beside(fn, *args) -> Future:
    """Run ``fn(*args)`` on the helper thread; its future (``.result()`` re-raises its error)."""
    global _helper
    with _lock:
        if _helper is None:
            _helper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iconmat-helper")
        helper = _helper
    return helper.submit(fn, *args)
