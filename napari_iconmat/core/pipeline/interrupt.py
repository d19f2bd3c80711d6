"""Ctrl-C that stops a run between frames, wherever the signal lands.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when
SIGINT arrives. Inside numba-compiled code (pymatting's solver) it surfaces as
``SystemError: CPUDispatcher(...) returned a result with an exception set``;
inside OpenCV, PyAV or a ``with`` block's ``__exit__`` it can leave half-made
state. While :func:`deferred_sigint` is active, the first SIGINT only sets a flag;
:func:`check_interrupt`, called at safe points (between frames, before the
outputs are assembled), turns it into a ``KeyboardInterrupt`` there. A second
SIGINT raises at once, for a user who does not want to wait for the frame to
end; :func:`is_interrupt` recognises what numba makes of it.

Only the main thread can install a signal handler: elsewhere (the napari
widget's worker, Dask workers) :func:`deferred_sigint` does nothing, and the
flag stays unset.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

__all__ = ["check_interrupt", "deferred_sigint", "is_interrupt", "with_deferred_sigint"]

_pending = threading.Event()
_installed = False


def _on_sigint(signum, frame) -> None:
    if _pending.is_set():
        raise KeyboardInterrupt  # the second Ctrl-C: at once
    _pending.set()


@contextlib.contextmanager
def deferred_sigint() -> Iterator[None]:
    """While active (main thread only), SIGINT sets a flag that :func:`check_interrupt` raises.

    Nested uses share the outer one's handler and flag.
    """
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        previous = signal.signal(signal.SIGINT, _on_sigint)
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        yield
        return
    _installed = True
    _pending.clear()
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        _installed = False
        _pending.clear()


def check_interrupt() -> None:
    """Raise ``KeyboardInterrupt`` if a SIGINT arrived since :func:`deferred_sigint` started."""
    if _pending.is_set():
        _pending.clear()
        raise KeyboardInterrupt


def is_interrupt(exc: BaseException) -> bool:
    """``exc`` is a KeyboardInterrupt, or an error that a KeyboardInterrupt raised inside
    compiled code turned into (numba's ``SystemError`` with the interrupt as its cause or context)."""
    for _ in range(16):  # a chain, not a cycle
        if isinstance(exc, KeyboardInterrupt):
            return True
        if not isinstance(exc, SystemError):
            return False
        exc = exc.__cause__ or exc.__context__
    return False


def with_deferred_sigint(function):
    """Decorator: run ``function`` inside :func:`deferred_sigint`."""
    import functools

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with deferred_sigint():
            return function(*args, **kwargs)

    return wrapper
