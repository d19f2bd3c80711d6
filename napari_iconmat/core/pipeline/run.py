"""The main job: matte one object through a whole input, from one marked reference.

:func:`matte_sequence` is what ``iconmat matte`` and the napari widget call. It
validates every argument before any work, encodes the reference once (or loads
it from a cache folder), streams the frames through the engine and writes each
matte as soon as it is made, so memory does not grow with the number of frames.
A finished run leaves ``out_dir/iconmat-run.json`` with ``"complete": true``;
a run that fails or is interrupted (even killed) keeps its finished per-frame
files and that record, with ``"complete": false``, is its manifest: the same
call resumes it (see :func:`matte_sequence`, Notes). One run at a time may
write into a folder (a lock in ``out_dir/.iconmat``).

:func:`run_demo` makes a small synthetic video with exact alpha, mattes it and
scores the result (``iconmat demo``), with a contact sheet of frames, alphas and
composites (:func:`~napari_iconmat.core.evaluation.sheet.make_contact_sheet`).
"""

from __future__ import annotations

import hashlib
import json
import numbers
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import InputError, QueryMismatchError
from ..evaluation.sheet import make_contact_sheet
from ..explain import write_explain_maps
from ..frames import check_frame
from ..io.containers import VIDEO_FORMATS, FrameTiming
from ..io.manifest import MANIFEST_FORMAT, RUN_RECORD, input_identity, to_ranges
from ..io.readers import FrameSource, open_frames, read_image
from ..io.writers import FORMATS, OutputWriter
from ..io.writers import atomic_write_bytes
from ..prompt import PROMPT_KINDS, Prompt, make_prompt
from ..reference import ReferenceQuery, reference_signature
from ..registry import check_engine_params, get_engine_class, make_engine
from .propagate import DIRECTIONS, count_outputs, parse_range, plan_runs
from .interrupt import check_interrupt, with_deferred_sigint
from .resume import RunInterrupted, RunState, matte_runs, with_resume_hint

__all__ = [
    "ORDERS",
    "RUN_RECORD",
    "DemoSummary",
    "RunInterrupted",
    "RunSummary",
    "matte_sequence",
    "query_cache_path",
    "run_demo",
    "write_json",
]

ORDERS = ("auto", "sequence", "collection")


# ---------------------------------------------------------------- results

#: a frame whose confidence is below this is reported as unsure (the engines' cues are 0.5 at their doubt point)
UNSURE = 0.5


@dataclass
class RunSummary:
    """What a finished :func:`matte_sequence` run did.

    Attributes
    ----------
    frames : int
        Number of frames matted and written.
    seconds : float
        Wall time of the whole run (reading, encoding, matting, writing).
    fps : float
        ``frames / seconds``.
    outputs : dict of str to Path
        From :meth:`OutputWriter.close`: ``'alpha'`` (folder of PNGs), and
        ``'rgba'`` (folder) / ``'tiff'`` (file) when requested.
    out_dir : Path
        The output folder; holds ``iconmat-run.json``.
    engine : str
        Registry name of the engine used.
    reference : str
        The reference, in words (``'frame 0'`` or the image path).
    query_source : {'encoded', 'cache', 'resumed'}
        Whether the reference query was computed, loaded from the cache, or
        reloaded from the interrupted run being resumed.
    query_path : Path or None
        The cached query file, when a cache folder was given.
    record : Path or None
        The run record ``out_dir/iconmat-run.json``.
    resumed : int
        Frames an interrupted earlier run had done (not counted in ``frames``).
    confidence : dict of int to float
        The engine's confidence (0..1) that the object is where the matte says, per frame index
        written (resumed frames included); empty from engines that do not say.
    """

    frames: int
    seconds: float
    fps: float
    outputs: dict
    out_dir: Path
    engine: str
    reference: str = ""
    query_source: str = "encoded"
    query_path: Path | None = None
    record: Path | None = None
    resumed: int = 0
    confidence: dict = field(default_factory=dict)

    @property
    def not_found(self) -> list[int]:
        """Frames where the engine found no object (confidence 0, alpha all zero)."""
        return [i for i, c in sorted(self.confidence.items()) if c <= 0.0]

    @property
    def unsure(self) -> list[int]:
        """Frames with an object found but a confidence below 0.5 (worth a look, or a keyframe)."""
        return [i for i, c in sorted(self.confidence.items()) if 0.0 < c < UNSURE]

    def describe_confidence(self) -> str:
        """One sentence on the per-frame confidence; empty when the engine does not give one."""
        if not self.confidence:
            return ""
        values = np.array(list(self.confidence.values()))
        text = f"Confidence: mean {values.mean():.2f}"
        if self.not_found:
            text += f"; object not found in {len(self.not_found)} frame{'s' if len(self.not_found) != 1 else ''} ({describe_frames(self.not_found)}: alpha all zero)"
        if self.unsure:
            text += f"; unsure (< {UNSURE:g}) in {len(self.unsure)} ({describe_frames(self.unsure)})"
        return text + "."

    def describe(self) -> str:
        """One paragraph for the command line: frames, time, speed, outputs."""
        where = {
            "alpha": "alpha PNGs in {}",
            "rgba": "RGBA cut-outs in {}",
            "tiff": "TIFF stack {}",
            "zarr": "zarr array {}",
            "prores": "ProRes 4444 {}",
            "webm": "VP9 alpha WebM {}",
            "matte": "matte video {}",
        }
        outputs = "; ".join(where.get(k, k + " {}").format(v) for k, v in self.outputs.items()) or "nothing"
        query = {"cache": "loaded from cache", "resumed": "reloaded from the interrupted run"}.get(self.query_source, "encoded")
        if self.query_path is not None:
            query += f" ({self.query_path})" if self.query_source == "cache" else f" and cached as {self.query_path}"
        text = (
            f"Matted {self.frames} frame{'s' if self.frames != 1 else ''} with engine '{self.engine}' "
            f"in {self.seconds:.1f} s ({self.fps:.2f} frames/s); reference {self.reference}, query {query}. "
            f"Wrote {outputs}"
        )
        if self.resumed:
            text += f"; resumed an interrupted run that had done {self.resumed} frame{'s' if self.resumed != 1 else ''}"
        if self.record is not None:
            text += f"; run record {self.record}"
        confidence = self.describe_confidence()
        return text + "." + (f" {confidence}" if confidence else "")


@dataclass
class DemoSummary:
    """What :func:`run_demo` made and how good the matte is.

    Attributes
    ----------
    run : RunSummary
    sample_dir : Path
        The synthetic input (``frames/``, ground-truth ``alpha/``, ``reference_mask.png``).
    sheet : Path
        The contact sheet PNG.
    sad : float
        Mean SAD (sum/1000) against the ground-truth alpha.
    iou : float
        Mean IoU of ``alpha > 0.5`` against ``ground truth > 0.5``.
    scored : int
        Number of frames scored (all but the reference, when there are others).
    """

    run: RunSummary
    sample_dir: Path
    sheet: Path
    sad: float
    iou: float
    scored: int

    def quality(self) -> str:
        """One line: mean SAD and IoU against the ground truth."""
        return (
            f"Quality vs ground truth over {self.scored} frame{'s' if self.scored != 1 else ''} "
            f"(reference excluded): mean SAD {self.sad:.3f} (sum/1000), mean IoU {self.iou:.3f}."
        )


# ---------------------------------------------------------------- helpers


def describe_frames(indices: list[int], shown: int = 8) -> str:
    """Frame indices in words, as ranges: 'frame 3' or 'frames 3, 5-7' (the first ``shown`` ranges, then a count)."""
    words = [f"{a}" if a == b else f"{a}-{b}" for a, b in to_ranges(indices)]
    more = f" and {len(words) - shown} more" if len(words) > shown else ""
    return ("frame " if len(indices) == 1 else "frames ") + ", ".join(words[:shown]) + more


def prepare_output_file(path) -> Path:
    """Check that ``path`` can be a file (not a folder) and create its folder.

    Raises
    ------
    InputError
        If ``path`` is a folder or its folder cannot be created.
    """
    path = Path(os.fspath(path)).expanduser()
    if path.is_dir():
        raise InputError(f"cannot write {path}: it is a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the folder of {path}: {exc.strerror or exc}") from None
    return path


def write_json(path, data: dict) -> Path:
    """Write ``data`` as indented JSON to ``path`` atomically (temporary name, then rename).

    Raises
    ------
    InputError
        If the file or its folder cannot be written.
    """
    path = prepare_output_file(path)
    atomic_write_bytes(path, (json.dumps(data, indent=2, default=str) + "\n").encode("utf-8"))
    return path


def query_cache_path(cache_dir, signature: dict) -> Path:
    """Where the query of ``signature`` is cached: ``cache_dir/<engine>-<key>.npz``.

    ``key`` is :attr:`ReferenceQuery.key` of a query with this signature (the
    first 16 hex digits of the SHA-1 of the signature as sorted JSON), so the
    file can be found before the query is computed.
    """
    key = hashlib.sha1(json.dumps(signature, sort_keys=True).encode()).hexdigest()[:16]
    return Path(os.fspath(cache_dir)).expanduser() / f"{signature['engine']}-{key}.npz"


def _check_folder_target(path: Path, what: str) -> None:
    """``path`` may become a folder: it is not a file, nor under one."""
    if path.exists():
        if not path.is_dir():
            raise InputError(f"{what} is a file, not a folder: {path}")
        return
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise InputError(f"{what} {path} cannot be created: {parent} is a file")
            return


def _read_user_image(value, what: str) -> tuple[np.ndarray, str]:
    """An image given as a path or an array, with a description for messages."""
    if isinstance(value, (str, os.PathLike)):
        path = Path(os.fspath(value)).expanduser()
        if not path.exists():
            raise InputError(f"{what} not found: {path}")
        if path.is_dir():
            raise InputError(f"{what} must be an image file, got a folder: {path}")
        try:
            return read_image(path), str(path)
        except InputError as exc:
            raise InputError(f"{what}: {exc}") from None
    if isinstance(value, np.ndarray) or hasattr(value, "__array__"):
        return np.asarray(value), f"the {what} array"
    raise InputError(f"{what} must be a path or an array, got a {type(value).__name__}")


def _normalise_formats(formats) -> tuple[str, ...]:
    if isinstance(formats, str):
        formats = formats.split(",")
    try:
        items = [str(f).strip().lower() for f in formats]
    except TypeError:
        raise InputError(f"formats must be a string or a list of strings from {FORMATS}, got {formats!r}") from None
    items = [f for f in items if f]
    unknown = [f for f in items if f not in FORMATS]
    if unknown:
        raise InputError(f"unknown output format {unknown[0]!r}: choose from {', '.join(FORMATS)}")
    return tuple(dict.fromkeys(items)) or ("png",)


def _frame_range(frame_range, length: int) -> tuple[int, int]:
    if frame_range is None or isinstance(frame_range, str):
        return parse_range(frame_range, length)
    try:
        start, stop = frame_range
        if isinstance(start, bool) or isinstance(stop, bool):
            raise TypeError
        start, stop = int(start.__index__()), int(stop.__index__())
    except (TypeError, ValueError, AttributeError):
        raise InputError(f"frame range must be 'A:B' or a (start, stop) pair of integers, got {frame_range!r}") from None
    if not 0 <= start < stop <= length:
        raise InputError(
            f"frame range ({start}, {stop}) must satisfy 0 <= start < stop <= {length} (the input has {length} frames)"
        )
    return start, stop


def _reference_index(reference_frame, length: int) -> int:
    if isinstance(reference_frame, bool) or not isinstance(reference_frame, numbers.Integral):
        raise InputError(f"reference frame must be an integer frame index, got {reference_frame!r}")
    index = int(reference_frame)
    if not 0 <= index < length:
        raise InputError(
            f"reference frame {index} is out of range: the input has {length} frame{'s' if length != 1 else ''} "
            f"(0..{length - 1})"
        )
    return index


def _input_name(value) -> str:
    if isinstance(value, (str, os.PathLike)):
        return str(Path(os.fspath(value)).expanduser())
    if isinstance(value, FrameSource) and value.path is not None:
        return str(value.path)
    return f"<{type(value).__name__}>"


def _encode_or_load(engine, image: np.ndarray, prompt: Prompt, cache_dir) -> tuple[ReferenceQuery, str, Path | None]:
    """The reference query, from the cache when a valid one is there; else encoded (and cached)."""
    if cache_dir is None:
        return engine.encode_reference(image, prompt), "encoded", None
    signature = reference_signature(image, prompt, engine=engine.name, version=engine.version, params=engine.params)
    path = query_cache_path(cache_dir, signature)
    if path.exists():
        try:
            return ReferenceQuery.load(path, expected=signature), "cache", path
        except (InputError, QueryMismatchError) as exc:
            warnings.warn(f"ignoring cached reference query: {exc}; re-encoding the reference", stacklevel=3)
    query = engine.encode_reference(image, prompt)
    # An engine whose signature differs from the one computed here is cached
    # under its own key; it is then simply not found (and re-encoded) next time.
    target = path if query.signature == signature else query_cache_path(cache_dir, query.signature)
    try:
        query.save(target)
    except OSError as exc:
        warnings.warn(f"could not cache the reference query as {target}: {exc.strerror or exc}", stacklevel=3)
        return query, "encoded", None
    return query, "encoded", target


# ---------------------------------------------------------------- the main job


@with_deferred_sigint  # Ctrl-C stops between frames (core/pipeline/interrupt.py)
def matte_sequence(
    input,
    *,
    out_dir,
    mask,
    reference_frame: int | None = None,
    reference_image=None,
    engine: str = "classical",
    engine_params: dict | None = None,
    formats: str | Sequence[str] = ("png",),
    frame_range: str | tuple[int, int] | None = None,
    direction: str = "both",
    order: str = "auto",
    prompt_kind: str = "auto",
    cache_dir=None,
    on_progress: Callable[[int, int], Any] | None = None,
    colour: str = "straight",
    explain: bool = False,
    runner: Callable | None = None,
) -> RunSummary:
    """Matte the object marked on one reference in every frame of ``input`` and write the alphas.

    Parameters
    ----------
    input : str, path-like, ndarray or FrameSource
        A video, image folder, TIFF stack, image file or (T, H, W[, C]) array;
        see :func:`~napari_iconmat.core.io.open_frames`.
    out_dir : str or path-like
        Output folder, created if missing; must not be a file. Layout:
        ``alpha/NNNNN.png`` (frame index, 5 digits), ``rgba/``, ``alpha.tif``
        (see :class:`~napari_iconmat.core.io.OutputWriter`) and ``iconmat-run.json``.
    mask : str, path-like or (H, W[, C]) ndarray
        The prompt on the reference: a mask, soft alpha or scribble image of the
        reference's size (see :func:`~napari_iconmat.core.prompt.make_prompt`).
    reference_frame : int, optional
        Index of the reference frame in ``input`` (0-based).
    reference_image : str, path-like or ndarray, optional
        An external reference image instead. Exactly one of ``reference_frame``
        and ``reference_image`` must be given.
    engine : str, default 'classical'
        Registry name (:func:`~napari_iconmat.core.registry.engine_names`).
    engine_params : dict, optional
        Keyword arguments of the engine; None: its defaults.
    formats : str or sequence of str, default ('png',)
        Any of {'png', 'png16', 'rgba', 'tiff', 'tiff16', 'zarr', 'prores',
        'webm', 'matte'} (see :data:`~napari_iconmat.core.io.FORMAT_HELP`); a
        string may list several separated by commas.
    frame_range : str or (start, stop), optional
        Frames to output: ``'A:B'`` (slice bounds, either may be empty, negative
        counts from the end) or a pair ``0 <= start < stop <= len(input)``.
        None (default): all frames.
    direction : {'both', 'forward', 'backward'}, default 'both'
        Direction of propagation from the reference frame (sequences only).
    order : {'auto', 'sequence', 'collection'}, default 'auto'
        ``'auto'`` treats the input as a temporal sequence when its frames share
        one size (videos, stacks, folders of equal images) and as an unordered
        collection otherwise. ``'collection'`` mattes every frame on its own;
        ``'sequence'`` requires frames of one size.
    prompt_kind : {'auto', 'mask', 'alpha', 'scribble'}, default 'auto'
        How to read ``mask``.
    cache_dir : str or path-like, optional
        Folder of cached reference queries (``<engine>-<key>.npz``). A valid
        cached query is loaded instead of encoding the reference; an unreadable
        or mismatching one is ignored with a warning and replaced. None: no cache.
    on_progress : callable, optional
        Called as ``on_progress(done, total)``: once before the first frame
        (``done`` = frames already done by an interrupted run being resumed,
        else 0), then after each frame written. An exception raised in it stops
        the run as a failure (a way to cancel; the run can be resumed).
    colour : {'straight', 'premultiplied'}, default 'straight'
        Colour of 'rgba', 'prores' and 'webm': the estimated foreground, or the
        foreground multiplied by the alpha (recorded in ``iconmat-run.json``).
    explain : bool, default False
        Also write the engine's explain maps of every frame as heatmaps,
        ``out_dir/explain/<map>/NNNNN.png`` (engines with ``supports_explain``).
    runner : callable, optional
        Mattes the planned chains in place of
        :func:`~napari_iconmat.core.pipeline.resume.matte_runs` (same arguments); used
        by :mod:`napari_iconmat.core.pipeline.cluster` to run them on Dask workers.

    Returns
    -------
    RunSummary

    Raises
    ------
    InputError
        Before any work or any file is written: an unreadable input, no or two
        references, a reference frame out of range, a missing, wrongly sized,
        empty or full mask, an output folder that is a file, an unknown format,
        engine, order, direction or prompt kind, or a bad range. Later: a frame
        or output file that cannot be read or written.
        Another run holds ``out_dir`` (its lock). A run that stops on a user
        error after some frames says how many are kept and that the same call
        resumes it.
    WeightsNotFoundError
        The engine needs weights that are not on this machine.
    RunInterrupted
        (a KeyboardInterrupt) Ctrl-C or a cancel from ``on_progress``; the
        message says how many frames are kept.

    Notes
    -----
    Only the current frame, the engine's track state and the writer's
    bookkeeping are held, so memory does not depend on the number of frames.

    **Resume.** After every frame ``iconmat-run.json`` records the run's
    identity (input fingerprint, reference signature, engine, parameters,
    options) and progress; see :mod:`napari_iconmat.core.io.manifest`. Called
    again on the same folder with the same identity, an interrupted run
    (failure, Ctrl-C, SIGKILL, power kept) continues: done frames are kept, the
    reference query is reloaded from ``out_dir/.iconmat``, and each propagation
    chain restarts from the engine's checkpointed track state (engines that
    save none re-matte the chain from the reference without rewriting done
    frames), so the finished output equals an uninterrupted run's. With another
    identity, or a finished run, the earlier outputs are deleted and the run
    starts over. Stacks and videos are assembled from per-frame parts at the end.

    Examples
    --------
    >>> import tempfile
    >>> frames = np.zeros((3, 32, 32), np.uint8); frames[:, 8:24, 8:24] = 200
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     summary = matte_sequence(frames, out_dir=tmp, mask=frames[0] > 100, reference_frame=0)
    ...     sorted(p.name for p in (Path(tmp) / "alpha").iterdir())
    ['00000.png', '00001.png', '00002.png']
    """
    started = time.perf_counter()

    # 1. options that need no file
    if (reference_frame is None) == (reference_image is None):
        raise InputError(
            "give exactly one reference: a reference frame index or a reference image "
            f"(got {'both' if reference_frame is not None else 'neither'})"
        )
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if order not in ORDERS:
        raise InputError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if prompt_kind not in PROMPT_KINDS:
        raise InputError(f"prompt kind must be one of {', '.join(PROMPT_KINDS)}, got {prompt_kind!r}")
    if engine_params is not None and not isinstance(engine_params, dict):
        raise InputError(f"engine parameters must be a dict, got {type(engine_params).__name__}")
    check_engine_params(engine, engine_params or {})  # unknown engine, option or value -> one InputError, before any work
    if explain and not getattr(get_engine_class(engine), "supports_explain", False):
        raise InputError(f"engine {engine!r} makes no explain maps; explain works with the iconmat engine")
    formats = _normalise_formats(formats)
    out_dir = Path(os.fspath(out_dir)).expanduser()
    _check_folder_target(out_dir, "output folder")
    if cache_dir is not None:
        cache_dir = Path(os.fspath(cache_dir)).expanduser()
        _check_folder_target(cache_dir, "cache folder")
    writer = OutputWriter(out_dir, formats, colour=colour)  # checks again (and the colour); writes nothing yet

    # 2. the input, the reference and the prompt
    source = open_frames(input)
    try:
        length = len(source)
        start, stop = _frame_range(frame_range, length)
        one_size = [fmt for fmt in formats if fmt in VIDEO_FORMATS]
        if one_size and not source.ordered:  # before the first frame, not at the assembly
            raise InputError(
                f"--format {', '.join(one_size)} needs frames of one size, but the images of {_input_name(input)} "
                "differ in size: leave out the video formats (png, tiff, zarr keep each size)"
            )
        if reference_frame is not None:
            reference_index = _reference_index(reference_frame, length)
            image = check_frame(source[reference_index], what=f"reference frame {reference_index}")
            reference_text = f"frame {reference_index}"
        else:
            reference_index = None
            image, reference_text = _read_user_image(reference_image, "reference image")
            image = check_frame(image, what=f"reference image {reference_text}")
        mask_array, mask_text = _read_user_image(mask, "mask")
        try:
            prompt = make_prompt(mask_array, kind=prompt_kind, shape=image.shape[:2])
        except InputError as exc:
            raise InputError(f"mask {mask_text}: {exc}") from None

        if order == "auto":
            ordered = bool(source.ordered)
        elif order == "sequence":
            if not source.ordered:
                raise InputError(
                    "order 'sequence' needs frames of one size, but the images of the input differ in size; "
                    "use order 'collection' or 'auto'"
                )
            ordered = True
        else:
            ordered = False
        runs = plan_runs(
            length, reference_index=reference_index, ordered=ordered, direction=direction, frame_range=(start, stop)
        )
        total = count_outputs(runs)
        if total == 0:
            raise InputError(
                f"nothing to matte: direction {direction!r} from reference frame {reference_index} "
                f"leaves no frame in the range {start}:{stop}"
            )

        # 3. the engine; the folder's lock; what an earlier run of this folder left
        matter = make_engine(engine, **dict(engine_params or {}, **({"explain": True} if explain else {})))
        signature = reference_signature(image, prompt, engine=engine, version=matter.version, params=matter.params)
        identity = {
            "input": input_identity(source),
            "reference": signature,
            "options": {
                "order": "sequence" if ordered else "collection",
                "direction": direction,
                "range": [start, stop],
                "reference_frame": reference_index,
                "formats": sorted(formats),
                "colour": colour,
            },
        }
        timing = getattr(source, "timing", None)  # a video's own timestamps
        writer.timing = timing if isinstance(timing, FrameTiming) else FrameTiming.from_fps(source.fps)
        writer.lock()  # refuses a second run into this folder; released when the run ends
        state = None
        try:
            wanted = set().union(*(run.emit for run in runs))
            state = RunState.open(out_dir, identity, writer, wanted)
            query, query_source, query_path = state.query(matter, image, prompt, cache_dir, _encode_or_load)

            # 4. stream the frames into the writer, recording progress after each
            record = {
                "format": MANIFEST_FORMAT,
                "complete": False,
                "input": _input_name(input),
                "input_kind": source.kind,
                "input_frames": length,
                "reference": (
                    {"frame": reference_index} if reference_index is not None else {"image": reference_text}
                ),
                "mask": mask_text,
                "prompt_kind": prompt.kind,
                "engine": {"name": engine, "version": matter.version, "params": matter.params},
                "query": {"key": query.key, "source": query_source, "path": None if query_path is None else str(query_path)},
                "order": "sequence" if ordered else "collection",
                "direction": direction,
                "range": [start, stop],
                "formats": list(formats),
                "colour": colour,
                "timing": writer.timing.to_json(),
                "identity": identity,
            }
            state.record = record
            state.save()
            resumed = len(state.done)
            if on_progress is not None:
                on_progress(resumed, total)
            on_matte = None
            if explain:
                def on_matte(index, matte):
                    if matte.explain:
                        write_explain_maps(out_dir / "explain", index, matte.explain)
            check_interrupt()
            (runner or matte_runs)(source, query, matter, runs, writer, state, reference_index, total, on_progress, on_matte=on_matte)
            check_interrupt()
            state.finish()
            outputs = writer.close(release=False)
            check_interrupt()  # a Ctrl-C while the outputs were assembled: the next run finishes them again
        except BaseException as exc:
            done = len(state.done) if state is not None else 0
            if state is not None and state.record is not None and out_dir.is_dir():
                try:
                    state.save(error=f"{type(exc).__name__}: {exc}")
                except InputError:
                    pass  # the original failure is what the user needs to see
            writer.discard(keep_parts=True)  # releases the lock after the record is written
            replacement = with_resume_hint(exc, done, total, out_dir)
            if replacement is exc:
                raise
            raise replacement from exc
    finally:
        source.close()

    done = len(state.done)
    matted = done - resumed
    seconds = time.perf_counter() - started
    fps = matted / seconds if seconds > 0 else float("inf")
    record.update(
        complete=True,
        frames_written=done,
        frames_resumed=resumed,
        outputs={key: str(value) for key, value in outputs.items()},
        seconds=round(seconds, 3),
        fps=round(fps, 3),
        confidence=state.confidence_json(),
        not_found=to_ranges({i for i, c in state.confidence.items() if c <= 0.0}),
    )
    try:
        write_json(state.path, dict(record, progress={"done": to_ranges(state.done), "chains": {}, "query": None}))
    finally:
        writer.unlock()
    return RunSummary(
        frames=matted,
        seconds=seconds,
        fps=fps,
        outputs=outputs,
        out_dir=out_dir,
        engine=engine,
        reference=reference_text,
        query_source=query_source,
        query_path=query_path,
        record=state.path,
        resumed=resumed,
        confidence=dict(state.confidence),
    )


# ---------------------------------------------------------------- demo


def run_demo(
    out_dir,
    *,
    frames: int = 24,
    size: tuple[int, int] = (480, 270),
    seed: int = 0,
    engine: str = "classical",
    on_progress: Callable[[int, int], Any] | None = None,
) -> DemoSummary:
    """Synthesize a short video with exact alpha, matte it from frame 0, draw and score the result.

    Parameters
    ----------
    out_dir : str or path-like
        Gets ``sample/`` (the synthetic video, see
        :func:`~napari_iconmat.core.evaluation.synth.write_synth`), ``matte/`` (the run's
        outputs) and ``contact_sheet.png``. Frame files ``NNNNN.png`` numbered
        past ``frames`` that an earlier demo left there are deleted.
    frames : int, default 24
        Number of frames, at least 2.
    size : (W, H), default (480, 270)
    seed : int, default 0
    engine : str, default 'classical'
    on_progress : callable, optional
        Passed to :func:`matte_sequence`.

    Returns
    -------
    DemoSummary
    """
    from ..evaluation.evaluate import read_alpha_file
    from ..evaluation.metrics import iou, sad
    from ..evaluation.synth import REFERENCE_FRAME, write_synth

    out_dir = Path(os.fspath(out_dir)).expanduser()
    _check_folder_target(out_dir, "demo folder")
    sample = write_synth("video", out_dir / "sample", frames=frames, size=size, seed=seed)
    # An earlier, longer demo in the same folder left frames this one must not read or score.
    for folder in ("sample/frames", "sample/alpha", "sample/fg", "matte/alpha"):
        for path in (out_dir / folder).glob("[0-9][0-9][0-9][0-9][0-9].png"):
            if int(path.stem) >= frames:
                path.unlink()
    run = matte_sequence(
        sample / "frames",
        out_dir=out_dir / "matte",
        mask=sample / "reference_mask.png",
        reference_frame=REFERENCE_FRAME,
        engine=engine,
        on_progress=on_progress,
    )
    names = sorted(p.name for p in (out_dir / "matte" / "alpha").glob("*.png"))
    sads, ious = [], []
    for name in names:
        if len(names) > 1 and int(Path(name).stem) == REFERENCE_FRAME:
            continue
        pred = read_alpha_file(out_dir / "matte" / "alpha" / name)
        gt = read_alpha_file(sample / "alpha" / name)
        sads.append(sad(pred, gt))
        ious.append(iou(pred, gt))
    picks = sorted({int(round(i)) for i in np.linspace(0, len(names) - 1, min(4, len(names)))})
    sheet = make_contact_sheet(
        [read_image(sample / "frames" / names[i]) for i in picks],
        [read_alpha_file(out_dir / "matte" / "alpha" / names[i]) for i in picks],
        out_dir / "contact_sheet.png",
    )
    return DemoSummary(
        run=run,
        sample_dir=sample,
        sheet=sheet,
        sad=float(np.mean(sads)),
        iou=float(np.mean(ious)),
        scored=len(sads),
    )
