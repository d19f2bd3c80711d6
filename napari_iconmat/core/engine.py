"""The engine contract every matting engine implements.

An engine does two things:

1. :meth:`Engine.encode_reference` turns one reference image and its prompt into
   a :class:`~napari_iconmat.core.reference.ReferenceQuery` holding all
   per-reference work (done once, cacheable on disk);
2. :meth:`Engine.matte_frame` mattes one frame with that query. For ordered
   sequences it also takes and returns a small *track state* (whatever the
   engine carries from one frame to the next: the previous frame and alpha);
   for unordered collections the state is ``None``.

An engine may also offer two optional capabilities, which engines without them
do not have (test with :func:`merges_queries` and :func:`looks_ahead`):

``merge_queries(queries, times) -> ReferenceQuery``
    One query conditioned on several references of the same sequence (the
    keyframes of :mod:`napari_iconmat.core.pipeline.keyframes`): ``queries[0]``
    is the chain's own reference (its matte is :meth:`Engine.reference_matte`),
    ``times[i]`` the time of ``queries[i]`` on the chain's axis, where the own
    reference is 0 and the chain's n-th frame is n (negative: behind the
    chain's start). Its signature is
    :func:`~napari_iconmat.core.reference.merged_signature` of theirs; with one
    query it returns that query. The ``sam2`` engine has it (SAM 2's memory
    attention reads several conditioning frames).

``matte_frame(..., upcoming=next_frame)``
    The sequence's next frame, when the caller knows it, so that the engine can
    start on it (on a second core) while this frame is matted; the returned
    state carries that work to the next call, which must pass exactly that
    array as its frame to use it. The result is the same as without. The
    ``classical`` engine has it (the next frame's flow and colour cues need only
    this frame's coarse mask, not its alpha).

Engines register themselves by name in :mod:`napari_iconmat.core.registry`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from .options import Option
from .prompt import Prompt
from .reference import ReferenceQuery

__all__ = ["Engine", "EngineStatus", "FrameMatte", "looks_ahead", "merges_queries", "with_upcoming"]


def merges_queries(engine) -> bool:
    """Whether ``engine`` has the optional ``merge_queries`` capability (see the module docstring)."""
    return callable(getattr(engine, "merge_queries", None))


def looks_ahead(engine) -> bool:
    """Whether ``engine.matte_frame`` takes the optional ``upcoming`` frame (see the module docstring)."""
    import inspect

    try:
        return "upcoming" in inspect.signature(engine.matte_frame).parameters
    except (TypeError, ValueError):
        return False


def with_upcoming(engine, pairs):
    """``(index, frame)`` pairs of a chain as ``(index, frame, options)``, ``options`` the keyword arguments
    of ``engine.matte_frame`` for it: ``{'upcoming': next frame}`` when the engine looks ahead (then the
    pairs are read one frame ahead), else ``{}``."""
    pairs = iter(pairs)
    if not looks_ahead(engine):
        for index, frame in pairs:
            yield index, frame, {}
        return
    current = next(pairs, None)
    while current is not None:
        following = next(pairs, None)
        yield current[0], current[1], {} if following is None else {"upcoming": following[1]}
        current = following


@dataclass(frozen=True)
class EngineStatus:
    """Whether an engine can run here, and what it needs.

    Attributes
    ----------
    ready : bool
    needs : str
        What the engine needs, e.g. ``'nothing'`` or ``'weights: SD 2.1 + decoder'``.
    detail : str
        Why it is not ready, or where its weights were found.
    """

    ready: bool
    needs: str
    detail: str = ""


@dataclass
class FrameMatte:
    """The result for one frame.

    Attributes
    ----------
    alpha : (H, W) ndarray of float32 in [0, 1]
    coarse : (H, W) ndarray of bool, optional
        The engine's binary object mask before matting (used as a benchmark baseline).
    foreground : (H, W, 3) ndarray of float32 in [0, 1], optional
        Un-premultiplied foreground colours, when requested.
    explain : dict of str to (H, W) ndarray of float32, optional
        Maps that explain the matte, by name (e.g. IconMatting's
        ``'inter_similarity'``), from engines that make them when asked.
    confidence : float in [0, 1], optional
        How sure the engine is that the object is where the matte says
        (0 = lost or absent, 1 = sure); None from engines that do not say.
    """

    alpha: np.ndarray
    coarse: np.ndarray | None = None
    foreground: np.ndarray | None = None
    explain: dict[str, np.ndarray] | None = None
    confidence: float | None = None


class Engine(ABC):
    """Base class of matting engines; see the module docstring."""

    #: registry name, identical in the CLI, the widget and the Python API
    name: ClassVar[str] = ""
    #: bumped whenever a change makes old reference queries invalid
    version: ClassVar[str] = "0"
    #: the constructor's options, checked by type and range before any work
    #: (:func:`napari_iconmat.core.options.check_options`); options without a spec are not checked
    option_specs: ClassVar[dict[str, Option]] = {}

    @classmethod
    @abstractmethod
    def status(cls) -> EngineStatus:
        """Readiness on this machine (weights present, imports available)."""

    @property
    @abstractmethod
    def params(self) -> dict:
        """JSON-serialisable parameters; part of every query signature."""

    @abstractmethod
    def encode_reference(self, image: np.ndarray, prompt: Prompt) -> ReferenceQuery:
        """Do all per-reference work once.

        Parameters
        ----------
        image : (H, W), (H, W, 3) or (H, W, 4) ndarray
            uint8, uint16 or float reference image.
        prompt : Prompt
            Of the same height and width as ``image``.
        """

    @abstractmethod
    def reference_matte(self, query: ReferenceQuery) -> tuple[FrameMatte, Any]:
        """The matte of the reference image itself, and the track state that starts there."""

    @abstractmethod
    def matte_frame(
        self,
        frame: np.ndarray,
        query: ReferenceQuery,
        *,
        state: Any = None,
        with_foreground: bool = False,
    ) -> tuple[FrameMatte, Any]:
        """Matte one frame.

        Parameters
        ----------
        frame : (H, W[, C]) ndarray
            uint8, uint16 or float; any size (collections mix sizes).
        query : ReferenceQuery
            From :meth:`encode_reference` of this engine.
        state : optional
            Track state returned for the temporally previous frame, or ``None``
            when the frame has no temporal neighbour (collections, first frame).
        with_foreground : bool
            Also estimate the foreground colours.

        Returns
        -------
        matte : FrameMatte
        state
            Track state to pass with the next frame of the same sequence.
        """

    def save_state(self, state: Any) -> dict | None:
        """The track state as named numeric arrays, so that a killed run can resume mid-sequence.

        Returns None (the default) when the engine cannot save its state: a
        resumed run then re-mattes the sequence from the reference to rebuild it.
        """
        return None

    def load_state(self, arrays: dict) -> Any:
        """The track state saved by :meth:`save_state`; raise ValueError when ``arrays`` do not fit."""
        raise NotImplementedError(f"engine {self.name!r} does not save track states")
