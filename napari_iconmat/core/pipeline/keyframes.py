"""Keyframes: several references on one sequence, and which frames each one mattes.

A user marks the object on one frame, propagates, then corrects a frame where
the matte went wrong. Each marked frame is a *keyframe* (a reference frame with
its prompt). :class:`Keyframes` decides which keyframe mattes which frame and
which frames must be re-matted after a change; :func:`matte_keyframes` does
the matting; :class:`QueryCache` keeps each keyframe's reference query so that
it is encoded once.

The rule
--------
Every frame is matted from its **nearest keyframe in time**, propagating from
that keyframe towards the frame (forward for later frames, backward for earlier
ones), each frame handing the engine's track state to the next. A frame
equidistant from two keyframes goes to the earlier one. With direction
``'forward'`` only keyframes at or before a frame count (frames before the
first keyframe are not matted), with ``'backward'`` only those at or after it.

With ``Keyframes(n, blend=True)`` (the napari widget's setting), a frame
between two keyframes is matted from **both**: the earlier keyframe's forward
chain and the later one's backward chain, blended by closeness times each
matte's confidence (:meth:`Keyframes.blend_weights`); frames before the first or
after the last keyframe come from that one alone. Each side's matte is kept, so
a new keyframe runs only its own two chains, and each of them stops at the first
frame where its matte agrees with the other side's matte kept from an earlier
job (:data:`MEET_AGREEMENT`): that frame is blended, the frames beyond keep the
other side's matte alone (:meth:`Keyframes.sources`). A correction so changes the
frames that were wrong and leaves those that were right. Without blending:

So each keyframe owns one contiguous segment of frames around it, and a frame's
matte depends only on its keyframe (its pixels, prompt and the engine, i.e. the
query signature) and the frames between the two. A frame is up to date when it
was last matted from the same keyframe with the same query signature. Adding a
keyframe takes over exactly the frames nearer to it than to its neighbouring
keyframes: only those are re-matted. Re-painting a keyframe re-mattes its
segment; removing one hands its segment to the neighbours, whose chains go on
from the track state they kept at the end of their segment up to the farthest
frame they take back. A chain stopped part-way (a Cancel) goes on the same way:
the engine's track state after the last frame matted on each chain is kept
(:meth:`Keyframes.keep_track`), so only the frames left are matted.

Engines that merge queries (``sam2``)
-------------------------------------
With an engine that has the optional ``merge_queries`` capability
(:func:`~napari_iconmat.core.engine.merges_queries`) and two or more
keyframes, the rule above still decides which chains run, but every chain is
matted from one query conditioned on **all** keyframes: its own keyframe at
time 0 and each other keyframe at its signed distance along the chain (a
keyframe the chain walks towards is ahead of it, one behind its start is
behind). A frame's matte then depends on every keyframe, so each keyframe's
signature key (:meth:`Keyframes.signature_keys`) is that of its chains'
merged query: adding, re-painting or removing any keyframe changes every key,
and the next plan re-mattes every chain (all frames), not only the frames
nearer to the changed keyframe; :attr:`Plan.conditioning` names the keyframes
the chains are conditioned on. With one keyframe the key and the query are the
keyframe's own, as for any other engine, which behave as before.

Examples
--------
>>> import numpy as np
>>> from napari_iconmat.core import make_prompt
>>> frames = np.zeros((10, 16, 16), np.uint8); mask = np.zeros((16, 16), bool); mask[4:12, 4:12] = True
>>> keys = Keyframes(10)
>>> _ = keys.set(0, frames[0], make_prompt(mask))
>>> [keys.owner(i) for i in (0, 5, 9)]
[0, 0, 0]
>>> _ = keys.set(8, frames[8], make_prompt(mask))
>>> [keys.owner(i) for i in range(10)]
[0, 0, 0, 0, 0, 8, 8, 8, 8, 8]
"""

from __future__ import annotations

import bisect
import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..engine import Engine, FrameMatte, merges_queries, with_upcoming
from ..errors import InputError, QueryMismatchError
from ..evaluation.metrics import iou
from ..frames import check_frame
from ..prompt import Prompt
from ..reference import ReferenceQuery, merged_signature, reference_signature
from .propagate import DIRECTIONS

__all__ = ["Keyframe", "KeyframeRun", "Keyframes", "Plan", "QueryCache", "matte_keyframes", "signature_key"]


def signature_key(signature: dict) -> str:
    """Short stable key of a query signature (as :attr:`ReferenceQuery.key`)."""
    return ReferenceQuery(signature=signature).key


@dataclass(frozen=True)
class Keyframe:
    """A reference frame of the sequence and its prompt.

    Attributes
    ----------
    index : int
        Frame index in the sequence.
    image : (H, W[, C]) ndarray
        The frame's pixels, as read.
    prompt : Prompt
        Of the frame's height and width.
    """

    index: int
    image: np.ndarray
    prompt: Prompt

    def signature(self, engine: Engine) -> dict:
        """The signature the engine's query of this keyframe has."""
        return reference_signature(self.image, self.prompt, engine=engine.name, version=engine.version, params=engine.params)


@dataclass(frozen=True)
class KeyframeRun:
    """The frames matted from one keyframe in one job.

    Attributes
    ----------
    keyframe : int
        Index of the keyframe.
    key : str
        Signature key of its query (see :func:`signature_key`).
    matte_keyframe : bool
        The keyframe's own matte (the reference matte) is produced.
    forward : tuple of int
        Frames after the keyframe, matted in this order (keyframe + 1, + 2, ...).
    backward : tuple of int
        Frames before the keyframe, matted in this order (keyframe - 1, - 2, ...).
    """

    keyframe: int
    key: str
    matte_keyframe: bool
    forward: tuple[int, ...]
    backward: tuple[int, ...]

    @property
    def frames(self) -> int:
        """Number of mattes this run produces."""
        return int(self.matte_keyframe) + len(self.forward) + len(self.backward)


@dataclass(frozen=True)
class Plan:
    """What one propagation job does (from :meth:`Keyframes.plan`).

    Attributes
    ----------
    runs : tuple of KeyframeRun
    stale : tuple of int
        Frames that hold a matte but have no keyframe any more (direction
        ``'forward'`` before the first keyframe, ``'backward'`` after the last):
        their mattes should be dropped (:meth:`Keyframes.forget`).
    """

    runs: tuple[KeyframeRun, ...]
    stale: tuple[int, ...] = ()
    #: with blending (:class:`Keyframes` ``blend=True``): the frames yielded, and each keyframe's signature key
    blended: tuple[int, ...] | None = None
    keys: tuple[tuple[int, str], ...] = ()
    #: with an engine that merges queries (sam2) and several keyframes: the keyframes every chain is
    #: conditioned on (all of them; a change to any re-mattes every chain); else empty
    conditioning: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        """Number of mattes the job produces (one per frame yielded by :func:`matte_keyframes`)."""
        if self.blended is not None:
            return len(self.blended)
        return sum(run.frames for run in self.runs)

    @property
    def indices(self) -> list[int]:
        """Every frame the job mattes, ascending."""
        if self.blended is not None:
            return sorted(self.blended)
        out = []
        for run in self.runs:
            out += ([run.keyframe] if run.matte_keyframe else []) + list(run.forward) + list(run.backward)
        return sorted(out)


class Keyframes:
    """The keyframes of one sequence, and which frames are up to date.

    Parameters
    ----------
    n_frames : int
        Length of the sequence (>= 1).
    direction : {'both', 'forward', 'backward'}, default 'both'
        Which keyframes may matte a frame; see the module docstring.
    blend : bool, default False
        With direction ``'both'``, a frame between two keyframes is matted
        from both (the earlier one's forward chain and the later one's
        backward chain) and the two alphas are blended, each weighted by its
        closeness (``1 - distance / gap``) times its matte's confidence (None
        counts as 1). Each side's matte is kept (:attr:`sides`), so a new
        keyframe between two others computes only its own chains, up to where
        they meet the kept mattes (see the module docstring).

    Notes
    -----
    State is held here, not globally: a widget (or a script) keeps one
    ``Keyframes`` per sequence. The bookkeeping of mattes done is updated by
    :func:`matte_keyframes` as each frame is matted.
    """

    def __init__(self, n_frames: int, *, direction: str = "both", blend: bool = False) -> None:
        if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or n_frames < 1:
            raise InputError(f"a sequence needs at least one frame, got n_frames={n_frames!r}")
        self.n_frames = int(n_frames)
        self._keys: dict[int, Keyframe] = {}
        self._sorted: list[int] = []
        # frame -> (keyframe index, signature key) it was last matted from
        self._done: dict[int, tuple[int, str]] = {}
        # (keyframe, signature key, step +1/-1) -> (last frame matted on that chain, the engine's track state after it)
        self._tracks: dict[tuple[int, str, int], tuple[int, object]] = {}
        self.blend = bool(blend)
        # with blend: (frame, keyframe, signature key) -> the FrameMatte that keyframe's chain gave the frame
        self._sides: dict[tuple[int, int, str], FrameMatte] = {}
        # with blend: (earlier keyframe, later keyframe) -> (their keys, the frame where a re-matted chain met
        # the other side's kept mattes, the keyframe whose chain stopped there); see :meth:`sources`
        self._meets: dict[tuple[int, int], tuple[str, str, int, int]] = {}
        self.direction = direction

    # ------------------------------------------------------------ keyframes
    @property
    def direction(self) -> str:
        return self._direction

    @direction.setter
    def direction(self, value: str) -> None:
        if value not in DIRECTIONS:
            raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {value!r}")
        self._direction = value

    @property
    def indices(self) -> list[int]:
        """Keyframe indices, ascending."""
        return list(self._sorted)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, index: object) -> bool:
        return index in self._keys

    def __getitem__(self, index: int) -> Keyframe:
        return self._keys[index]

    def set(self, index: int, image: np.ndarray, prompt: Prompt) -> Keyframe:
        """Add a keyframe at ``index`` or replace its image and prompt.

        Parameters
        ----------
        index : int
            Frame index, ``0 <= index < n_frames``.
        image : (H, W[, C]) ndarray
            The frame's pixels.
        prompt : Prompt
            Of the same height and width as ``image``.

        Raises
        ------
        InputError
            Index out of range, or image and prompt of different sizes.
        """
        index = self._check_index(index, "keyframe")
        image = check_frame(image, what=f"keyframe {index}")
        if tuple(prompt.shape) != tuple(image.shape[:2]):
            raise InputError(
                f"the prompt of keyframe {index} must have the frame's shape {tuple(image.shape[:2])}, "
                f"got {tuple(prompt.shape)}"
            )
        key = Keyframe(index, np.array(image, copy=True), prompt)
        self._keys[index] = key
        self._sorted = sorted(self._keys)
        return key

    def remove(self, index: int) -> None:
        """Remove the keyframe at ``index``; its frames go to the neighbouring keyframes."""
        if index not in self._keys:
            raise InputError(f"frame {index} is not a keyframe (keyframes: {self.describe()})")
        del self._keys[index]
        self._sorted = sorted(self._keys)

    def describe(self) -> str:
        """The keyframe indices in words, e.g. ``'0, 12'`` or ``'none'``."""
        return ", ".join(str(i) for i in self._sorted) or "none"

    # ------------------------------------------------------------ the rule
    def owner(self, frame: int) -> int | None:
        """The keyframe that mattes ``frame``, or None when no keyframe may (see the module docstring)."""
        frame = self._check_index(frame, "frame")
        keys = self._sorted
        at = bisect.bisect_right(keys, frame)
        before = keys[at - 1] if at > 0 else None  # the last keyframe <= frame
        after = keys[at] if at < len(keys) else None  # the first keyframe > frame
        if before == frame:
            return frame
        if self._direction == "forward":
            return before
        if self._direction == "backward":
            return after
        if before is None or after is None:
            return after if before is None else before
        return before if frame - before <= after - frame else after

    def segment(self, keyframe: int) -> tuple[int, int]:
        """The frames ``keyframe`` mattes, as ``(first, last)`` inclusive."""
        if keyframe not in self._keys:
            raise InputError(f"frame {keyframe} is not a keyframe (keyframes: {self.describe()})")
        first = last = keyframe
        while first > 0 and self.owner(first - 1) == keyframe:
            first -= 1
        while last < self.n_frames - 1 and self.owner(last + 1) == keyframe:
            last += 1
        return first, last

    def signature_keys(self, engine: Engine) -> dict[int, str]:
        """Each keyframe's signature key for ``engine``: what a frame matted from it is recorded with.

        The key of the keyframe's own query; with an engine that merges queries
        and two or more keyframes, the key of its (forward) chain's query
        conditioned on all keyframes (:func:`merged_signature`), which changes
        when any keyframe changes.
        """
        signatures = {k: self._keys[k].signature(engine) for k in self._sorted}
        if not merges_queries(engine) or len(signatures) < 2:
            return {k: signature_key(s) for k, s in signatures.items()}
        keys = {}
        for k in self._sorted:
            order, times = _merge_order(k, 1, self._sorted)
            keys[k] = signature_key(merged_signature([signatures[j] for j in order], times))
        return keys

    # ------------------------------------------------------------ bookkeeping
    @property
    def done(self) -> dict[int, tuple[int, str]]:
        """Frames matted so far: frame -> (keyframe, signature key) it was matted from."""
        return dict(self._done)

    def mark_done(self, frame: int, keyframe: int, key: str) -> None:
        """Record that ``frame`` was matted from ``keyframe`` with query key ``key``."""
        self._done[int(frame)] = (int(keyframe), key)

    def keep_track(self, keyframe: int, key: str, step: int, frame: int, state) -> None:
        """Keep the engine's track state after ``frame`` on the chain from ``keyframe`` (``step`` +1 or -1),
        so that a stopped job resumes there instead of matting the chain again from its keyframe."""
        self._tracks = {
            k: v for k, v in self._tracks.items() if k[0] in self._keys and (k[0], k[2]) != (keyframe, step)
        }  # one state per chain: an older key's state would never be used again
        self._tracks[(int(keyframe), key, int(step))] = (int(frame), state)

    def track(self, keyframe: int, key: str, step: int) -> tuple[int, object] | None:
        """``(last frame, state)`` kept by :meth:`keep_track` for that chain, or None."""
        return self._tracks.get((int(keyframe), key, int(step)))

    def _resume_from(self, keyframe: int, key: str, step: int, dirty: list[int]) -> int:
        """First frame a chain from ``keyframe`` must matte to reach ``dirty``: right after the kept track
        state when every frame up to it is still done from this keyframe and key, else the keyframe's neighbour."""
        first = keyframe + step
        kept = self.track(keyframe, key, step)
        if kept is None:
            return first
        last = kept[0]
        nearest = min(dirty) if step > 0 else max(dirty)
        if (last - nearest) * step >= 0 or (last - keyframe) * step <= 0:
            return first  # the kept state is past the first frame to matte, or not on this side
        if self.blend:
            kept_all = all((f, keyframe, key) in self._sides for f in range(first, last + step, step))
        else:
            kept_all = all(self._done.get(f) == (keyframe, key) for f in range(first, last + step, step))
        if kept_all:
            return last + step
        return first

    def sources(self, frame: int) -> list[int]:
        """The keyframes whose mattes make ``frame``'s: two when blending between two keyframes, else its owner."""
        owner = self.owner(frame)
        if owner is None:
            return []
        if not self.blend or self._direction != "both" or owner == frame:
            return [owner]
        at = bisect.bisect_right(self._sorted, frame)
        if 0 < at < len(self._sorted):
            a, b = self._sorted[at - 1], self._sorted[at]
            meet = self._meets.get((a, b))
            if meet is not None:
                met, stopper = meet[2], meet[3]
                if stopper == b and frame < met:
                    return [a]  # beyond where b's chain met a's mattes: a's alone, as before b's chain ran
                if stopper == a and frame > met:
                    return [b]
            return [a, b]
        return [owner]

    def meet(self, frame: int, keyframe: int, keys: dict[int, str]) -> None:
        """Record that ``keyframe``'s chain, re-matted, agreed at ``frame`` with the other side's kept matte
        (:data:`MEET_AGREEMENT`): the frames beyond it keep the other side's mattes alone."""
        at = bisect.bisect_right(self._sorted, frame)
        a, b = self._sorted[at - 1], self._sorted[at]
        self._meets[(a, b)] = (keys[a], keys[b], int(frame), int(keyframe))

    def blend_weights(self, frame: int, mattes: dict[int, FrameMatte]) -> dict[int, float]:
        """Weight of each source keyframe's matte of ``frame``: closeness times confidence, summing to 1."""
        if len(mattes) == 1:
            return {k: 1.0 for k in mattes}
        (a, b) = sorted(mattes)
        gap = float(b - a)
        raw = {}
        for k, other in ((a, b), (b, a)):
            confidence = mattes[k].confidence
            confidence = 1.0 if confidence is None else float(np.clip(confidence, 0.0, 1.0))
            raw[k] = (1.0 - abs(frame - k) / gap) * confidence
        total = sum(raw.values())
        if total <= 0:
            return {k: 0.5 for k in raw}
        return {k: w / total for k, w in raw.items()}

    def keep_side(self, frame: int, keyframe: int, key: str, matte: FrameMatte) -> None:
        """Keep the matte ``keyframe``'s chain gave ``frame`` (blending): its alpha, foreground and confidence."""
        kept = FrameMatte(alpha=matte.alpha, foreground=matte.foreground, confidence=matte.confidence)
        self._sides[(int(frame), int(keyframe), key)] = kept  # not the coarse or explain maps: memory

    def side(self, frame: int, keyframe: int, key: str) -> FrameMatte | None:
        return self._sides.get((int(frame), int(keyframe), key))

    def _source_key(self, frame: int, owner: int, keys: dict[int, str]) -> tuple[int, str]:
        sources = self.sources(frame)
        if len(sources) == 1:
            return owner, keys[owner]
        return owner, "|".join(f"{k}:{keys[k]}" for k in sources)

    def forget(self, frames: Sequence[int] | None = None) -> None:
        """Drop the record of ``frames`` (all frames when None): they count as not matted."""
        if frames is None:
            self._done.clear()
            self._tracks.clear()
            self._sides.clear()
            self._meets.clear()
        for frame in frames or ():
            self._done.pop(int(frame), None)
        if frames:
            gone = {int(f) for f in frames}
            self._sides = {k: v for k, v in self._sides.items() if k[0] not in gone}

    def plan(self, engine: Engine, *, frame_range: tuple[int, int] | None = None) -> Plan:
        """The runs that bring every frame of ``frame_range`` up to date.

        Parameters
        ----------
        engine : Engine
            The engine that will matte; its name, version and parameters are
            part of each keyframe's query signature.
        frame_range : (start, stop), optional
            Frames that must be up to date, ``0 <= start < stop <= n_frames``;
            default all. Frames between a keyframe and the range are matted too
            (they carry the track state) and count as done.

        Returns
        -------
        Plan
            Empty (``total == 0``) when everything in the range is up to date.

        Raises
        ------
        InputError
            No keyframe, or a bad range.
        """
        if not self._keys:
            raise InputError("no keyframe: mark the object on a frame first")
        start, stop = (0, self.n_frames) if frame_range is None else frame_range
        if not 0 <= start < stop <= self.n_frames:
            raise InputError(f"frame range ({start}, {stop}) must satisfy 0 <= start < stop <= {self.n_frames}")
        keys = self.signature_keys(engine)
        conditioning = tuple(self._sorted) if merges_queries(engine) and len(self._sorted) > 1 else ()
        if self.blend:
            return self._blend_plan(keys, start, stop, conditioning)
        dirty: dict[int, list[int]] = {k: [] for k in self._sorted}
        for frame in range(start, stop):
            owner = self.owner(frame)
            if owner is not None and self._done.get(frame) != (owner, keys[owner]):
                dirty[owner].append(frame)
        runs = []
        for k in self._sorted:
            if not dirty[k]:
                continue
            later = [f for f in dirty[k] if f > k]
            earlier = [f for f in dirty[k] if f < k]
            runs.append(
                KeyframeRun(
                    keyframe=k,
                    key=keys[k],
                    matte_keyframe=k in dirty[k],
                    forward=tuple(range(self._resume_from(k, keys[k], 1, later), max(later) + 1)) if later else (),
                    backward=tuple(range(self._resume_from(k, keys[k], -1, earlier), min(earlier) - 1, -1))
                    if earlier
                    else (),
                )
            )
        stale = tuple(sorted(f for f in self._done if self.owner(f) is None))
        return Plan(tuple(runs), stale, conditioning=conditioning)

    def _blend_plan(self, keys: dict[int, str], start: int, stop: int, conditioning: tuple[int, ...]) -> Plan:
        """:meth:`plan` with blending: chains run only where a source keyframe's matte is not kept."""
        self._sides = {k: v for k, v in self._sides.items() if keys.get(k[1]) == k[2]}
        # a meeting holds while both keyframes keep their queries and stay neighbours
        self._meets = {
            (a, b): m for (a, b), m in self._meets.items()
            if (keys.get(a), keys.get(b)) == m[:2] and self._sorted.index(b) == self._sorted.index(a) + 1
        }  # fmt: skip
        dirty, need = [], {k: [] for k in self._sorted}
        for frame in range(start, stop):
            owner = self.owner(frame)
            if owner is None or self._done.get(frame) == self._source_key(frame, owner, keys):
                continue
            dirty.append(frame)
            for k in self.sources(frame):
                if k != frame and (frame, k, keys[k]) not in self._sides:
                    need[k].append(frame)
        runs = []
        for k in self._sorted:
            later = [f for f in need[k] if f > k]
            earlier = [f for f in need[k] if f < k]
            if not (later or earlier or k in dirty):
                continue
            runs.append(
                KeyframeRun(
                    keyframe=k,
                    key=keys[k],
                    matte_keyframe=k in dirty,
                    forward=tuple(range(self._resume_from(k, keys[k], 1, later), max(later) + 1)) if later else (),
                    backward=tuple(range(self._resume_from(k, keys[k], -1, earlier), min(earlier) - 1, -1))
                    if earlier
                    else (),
                )
            )
        stale = tuple(sorted(f for f in self._done if self.owner(f) is None))
        return Plan(tuple(runs), stale, blended=tuple(dirty), keys=tuple(keys.items()), conditioning=conditioning)

    def _check_index(self, index, what: str) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise InputError(f"{what} index must be an integer, got {index!r}")
        if not 0 <= index < self.n_frames:
            raise InputError(f"{what} {index} is out of range: the sequence has {self.n_frames} frames (0..{self.n_frames - 1})")
        return int(index)


class QueryCache:
    """Reference queries by signature: each keyframe is encoded once per engine setting.

    Parameters
    ----------
    folder : str or path-like, optional
        Also keep the queries as ``<engine>-<key>.npz`` files there (the
        layout of ``iconmat matte --cache-dir``), so they survive the session.
        None (default): memory only.
    max_items : int, default 32
        Queries kept in memory (least recently used ones are dropped).

    Attributes
    ----------
    encoded : int
        How many times a query was computed (not found in the cache).
    """

    def __init__(self, folder=None, *, max_items: int = 32) -> None:
        self.folder = None if folder is None else Path(os.fspath(folder)).expanduser()
        self.max_items = int(max_items)
        self.encoded = 0
        self._items: OrderedDict[str, ReferenceQuery] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, engine: Engine, image: np.ndarray, prompt: Prompt) -> ReferenceQuery:
        """The query of ``image`` + ``prompt`` for ``engine``: cached when the signatures agree, else encoded.

        A cached query is used only when its signature (reference pixels and
        prompt, engine name, version and parameters) equals the one ``engine``
        would give; a file in ``folder`` whose signature differs is ignored and
        replaced.
        """
        signature = reference_signature(image, prompt, engine=engine.name, version=engine.version, params=engine.params)
        key = signature_key(signature)
        query = self._items.get(key)
        if query is not None and query.signature == signature:
            self._items.move_to_end(key)
            return query
        path = None
        if self.folder is not None:
            from .run import query_cache_path

            path = query_cache_path(self.folder, signature)
            if path.is_file():
                try:
                    query = ReferenceQuery.load(path, expected=signature)
                except (InputError, QueryMismatchError):
                    query = None  # re-encoded below, and the file replaced
                if query is not None:
                    self._remember(key, query)
                    return query
        query = engine.encode_reference(image, prompt)
        self.encoded += 1
        if query.signature != signature:
            # an engine that signs differently is not cached: it would never be found again
            return query
        self._remember(key, query)
        if path is not None:
            try:
                query.save(path)
            except (InputError, OSError):
                pass  # the cache folder is an optimisation; the query itself is fine
        return query

    def _remember(self, key: str, query: ReferenceQuery) -> None:
        self._items[key] = query
        self._items.move_to_end(key)
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)


def _merge_order(keyframe: int, step: int, indices: Sequence[int]) -> tuple[list[int], list[int]]:
    """The keyframes a chain from ``keyframe`` (``step`` +1 / -1) is conditioned on, its own first,
    and their times on the chain's axis (the chain's n-th frame is at time n)."""
    order = [keyframe] + [j for j in indices if j != keyframe]
    return order, [(j - keyframe) * step for j in order]


def _chain_query(engine: Engine, keyframes: Keyframes, keyframe: int, step: int, own: ReferenceQuery, cache) -> ReferenceQuery:
    """The query a chain is matted from: the keyframe's own, or, with an engine that merges queries and
    several keyframes, one conditioned on all keyframes at their times along the chain."""
    if not merges_queries(engine) or len(keyframes) < 2:
        return own
    order, times = _merge_order(keyframe, step, keyframes.indices)
    others = [cache.get(engine, keyframes[j].image, keyframes[j].prompt) for j in order[1:]]
    return engine.merge_queries([own, *others], times)


def _read(frames, index: int) -> np.ndarray:
    return np.asarray(frames[index])


def _chain(frames, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    if hasattr(frames, "iter_frames"):
        yield from frames.iter_frames(list(indices))
    else:
        for i in indices:
            yield i, _read(frames, i)


def matte_keyframes(
    frames,
    engine: Engine,
    keyframes: Keyframes,
    plan: Plan,
    *,
    cache: QueryCache | None = None,
    with_foreground: bool = False,
) -> Iterator[tuple[int, FrameMatte]]:
    """Carry out ``plan``: yield ``(index, FrameMatte)`` for every frame it mattes, as each is done.

    Parameters
    ----------
    frames : FrameSource or sequence of (H, W[, C]) arrays
        The sequence ``keyframes`` describes (``len(frames) == keyframes.n_frames``).
    engine : Engine
    keyframes : Keyframes
        Each frame is recorded as done (:meth:`Keyframes.mark_done`) just
        before it is yielded: the consumer must keep every matte it receives.
    plan : Plan
        From ``keyframes.plan(engine, ...)`` with the same engine.
    cache : QueryCache, optional
        Where keyframe queries are looked up and kept; None: a fresh cache
        (every keyframe is encoded). With an engine that merges queries
        (``sam2``) each chain's query is merged from the cached queries of all
        keyframes (cheap; the merged query itself is not cached).
    with_foreground : bool, default False
        Also estimate un-premultiplied foreground colours.

    Yields
    ------
    index : int
    matte : FrameMatte
        ``alpha`` is (H, W) float32 in [0, 1].

    Notes
    -----
    Stopping the iteration between two frames (a Cancel) leaves every yielded
    frame recorded as done and the rest as they were, and keeps each chain's
    track state (:meth:`Keyframes.keep_track`), so the next plan picks up where
    this one stopped: it mattes only the frames left, continuing the chain.
    """
    if len(frames) != keyframes.n_frames:
        raise InputError(f"the keyframes describe {keyframes.n_frames} frames, but the sequence has {len(frames)}")
    cache = QueryCache() if cache is None else cache
    if plan.blended is not None:
        yield from _matte_blended(frames, engine, keyframes, plan, cache, with_foreground)
        return
    for run in plan.runs:
        for index, matte in _matte_run(frames, engine, keyframes, run, cache, with_foreground):
            keyframes.mark_done(index, run.keyframe, run.key)
            yield index, matte


def _matte_run(frames, engine: Engine, keyframes: Keyframes, run: KeyframeRun, cache, with_foreground: bool, stop=None):
    """Yield ``(index, FrameMatte)`` of one run: the keyframe's own matte (if the run has it), then its
    chains' frames, each chain's track state kept (:meth:`Keyframes.keep_track`) before its frame is yielded.
    A chain ends early once its step (+1, -1) is in the set ``stop`` (the consumer adds it)."""
    key = keyframes[run.keyframe]
    query = cache.get(engine, key.image, key.prompt)
    if run.matte_keyframe:
        reference, _ = engine.reference_matte(query)
        if with_foreground and reference.foreground is None:
            from ..frames import to_rgb_float
            from ..matting.closed_form import estimate_foreground

            reference.foreground = estimate_foreground(to_rgb_float(key.image), reference.alpha)
        yield run.keyframe, reference
    for chain, step in ((run.forward, 1), (run.backward, -1)):
        if not chain:
            continue
        chain_query = _chain_query(engine, keyframes, run.keyframe, step, query, cache)
        kept = keyframes.track(run.keyframe, run.key, step)
        if kept is not None and kept[0] == chain[0] - step:
            state = kept[1]  # a stopped job resumes where it stopped
        else:
            _, state = engine.reference_matte(chain_query)  # each chain starts from the keyframe's own state
        for index, frame, options in with_upcoming(engine, _chain(frames, chain)):
            matte, state = engine.matte_frame(frame, chain_query, state=state, with_foreground=with_foreground, **options)
            keyframes.keep_track(run.keyframe, run.key, step, index, state)
            yield index, matte
            if stop is not None and step in stop:
                break


def _blend(keyframes: Keyframes, frame: int, mattes: dict[int, FrameMatte]) -> FrameMatte:
    """One matte of ``frame`` from its source keyframes' mattes (see :meth:`Keyframes.blend_weights`)."""
    if len(mattes) == 1:
        return next(iter(mattes.values()))
    weights = keyframes.blend_weights(frame, mattes)
    alpha = sum(weights[k] * m.alpha.astype(np.float32) for k, m in mattes.items())
    foreground = None
    if all(m.foreground is not None for m in mattes.values()):
        foreground = sum(weights[k] * m.foreground.astype(np.float32) for k, m in mattes.items()).astype(np.float32)
    confidences = [m.confidence for m in mattes.values()]
    confidence = None
    if any(c is not None for c in confidences):
        confidence = float(sum(weights[k] * (1.0 if m.confidence is None else m.confidence) for k, m in mattes.items()))
    return FrameMatte(alpha=np.clip(alpha, 0.0, 1.0).astype(np.float32), foreground=foreground, confidence=confidence)


def _matte_blended(frames, engine, keyframes: Keyframes, plan: Plan, cache, with_foreground):
    """:func:`matte_keyframes` for a blending plan: yield each frame once all its source mattes are there."""
    keys = dict(plan.keys)
    pending = set(plan.blended)

    def finish(frame):
        if frame not in pending:
            return None
        sources = keyframes.sources(frame)
        mattes = {k: keyframes.side(frame, k, keys[k]) for k in sources}
        if any(m is None for m in mattes.values()):
            return None
        if with_foreground and any(m.foreground is None for m in mattes.values()):
            from ..frames import to_rgb_float
            from ..matting.closed_form import estimate_foreground

            matte = _blend(keyframes, frame, mattes)
            matte.foreground = estimate_foreground(to_rgb_float(_read(frames, frame)), matte.alpha)
        else:
            matte = _blend(keyframes, frame, mattes)
        pending.discard(frame)
        owner, key = keyframes._source_key(frame, keyframes.owner(frame), keys)
        keyframes.mark_done(frame, owner, key)
        return matte

    for frame in sorted(pending):  # frames whose source mattes are all kept: no matting
        if frame not in keyframes:
            matte = finish(frame)
            if matte is not None:
                yield frame, matte
    made: set[tuple[int, int]] = set()  # (frame, keyframe) sides matted by this job, not kept from before
    for run in plan.runs:
        stop: set[int] = set()
        for index, matte in _matte_run(frames, engine, keyframes, run, cache, with_foreground, stop):
            if index == run.keyframe:  # its own matte: no blending
                pending.discard(index)
                keyframes.mark_done(index, run.keyframe, run.key)
                yield index, matte
                continue
            keyframes.keep_side(index, run.keyframe, run.key, matte)
            made.add((index, run.keyframe))
            met = _meets_kept_side(keyframes, index, run.keyframe, keys, matte, made)
            done = finish(index)
            if done is not None:
                yield index, done
            if met:
                # the chain agrees with the other side's kept mattes here: beyond, those stay as they are
                keyframes.meet(index, run.keyframe, keys)
                stop.add(1 if index > run.keyframe else -1)
                for frame in sorted(pending):  # those frames now have all (one) of their sources
                    done = finish(frame)
                    if done is not None:
                        yield frame, done


#: Where a re-matted chain's matte and the other keyframe's matte of the same frame, kept from an earlier
#: job, overlap this much (IoU of alpha > 0.5), the chain stops: the frames beyond keep the other side's
#: mattes. A correction then changes the frames that were wrong and leaves those that were right (the old
#: matte is not blended with a chain that drifted after the two had agreed).
MEET_AGREEMENT = 0.9


def _meets_kept_side(keyframes: Keyframes, frame: int, keyframe: int, keys: dict[int, str], matte: FrameMatte, made) -> bool:
    """Whether ``keyframe``'s new matte of ``frame`` agrees with the other source keyframe's matte kept from
    an earlier job (not one this job made: two new chains are both blended, as before)."""
    sources = keyframes.sources(frame)
    if len(sources) != 2:
        return False
    other = sources[0] if sources[1] == keyframe else sources[1]
    if (frame, other) in made:
        return False
    kept = keyframes.side(frame, other, keys[other])
    return kept is not None and iou(matte.alpha, kept.alpha) >= MEET_AGREEMENT
