"""Errors raised by napari-iconmat.

Every error a user can cause derives from :class:`IconmatError`; the CLI prints
its message on one line and exits with status 2, the napari widget shows it as
a notification. Anything else escaping the core is a bug and keeps its traceback.

::

    IconmatError
     ├── InputError              a file, array, prompt or option the user gave is unusable
     ├── QueryMismatchError      a saved reference query does not match what it is used for
     ├── WeightsNotFoundError    an engine's weights are not on this machine
     └── CheckpointError         a checkpoint was found but does not have the expected layout

:class:`Notice` (a ``UserWarning``) is not an error: a one-line note on something slow
that is about to happen (the CLI prints it as ``iconmat: note: ...``).
"""

from __future__ import annotations

__all__ = [
    "IconmatError",
    "InputError",
    "QueryMismatchError",
    "WeightsNotFoundError",
    "CheckpointError",
    "Notice",
]


class IconmatError(Exception):
    """Base class of every error a user can cause or fix."""


class InputError(IconmatError, ValueError):
    """A file, array, prompt or option given by the user is unusable."""


class QueryMismatchError(IconmatError):
    """A saved reference query was built for another reference, engine or parameters."""


class WeightsNotFoundError(IconmatError):
    """The weights an engine needs are not present locally."""


class CheckpointError(IconmatError):
    """A checkpoint exists but its contents are not what the engine expects."""


class Notice(UserWarning):
    """Not a problem: a note on something slow that is about to happen (e.g. compiling the matting kernels)."""
