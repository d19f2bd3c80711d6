"""Resuming an interrupted :func:`~napari_iconmat.core.pipeline.run.matte_sequence`.

:class:`RunState` is the run manifest of a run in progress (see
:mod:`napari_iconmat.core.io.manifest`): it decides whether an output folder
holds an interrupted run of the same identity to continue, or an earlier run to
clear, and records progress and track-state checkpoints after every frame.
:func:`matte_runs` mattes the planned propagation chains (see
:func:`~napari_iconmat.core.pipeline.propagate.plan_runs`) skipping what is done.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from ..engine import with_upcoming
from ..errors import IconmatError, InputError, QueryMismatchError
from ..io.manifest import (
    RUN_DIR,
    RUN_RECORD,
    clear_run_outputs,
    clear_run_state,
    expand_ranges,
    load_arrays,
    read_manifest,
    read_record,
    save_arrays,
    to_ranges,
)
from ..io.writers import OutputWriter, atomic_write_bytes
from ..reference import ReferenceQuery
from .interrupt import check_interrupt, is_interrupt

__all__ = ["RunInterrupted", "RunState", "matte_runs", "with_resume_hint"]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a cancel from ``on_progress``) stopped :func:`matte_sequence`; the message says what is kept."""


def with_resume_hint(exc: BaseException, done: int, total: int, out_dir: Path) -> BaseException:
    """The exception to raise for a run that stopped: user errors and interrupts say how to resume."""
    if done <= 0:
        hint = None
    elif done < total:
        hint = f"{done} of {total} frames are done and kept in {out_dir}; run the same command again to resume"
    else:
        hint = f"all {total} frames are done and kept in {out_dir}; run the same command again to finish the outputs"
    if is_interrupt(exc):  # Ctrl-C, also as numba's SystemError around it
        return exc if isinstance(exc, RunInterrupted) else RunInterrupted(hint or "no frame was finished")
    # Only failures to write (a full disk, a vanished folder) go away by running again.
    cause = exc.__cause__
    if isinstance(exc, IconmatError) and isinstance(cause, OSError) and hint is not None and len(exc.args) == 1:
        try:
            return type(exc)(f"{exc}; {hint}")
        except TypeError:  # a subclass with another constructor
            return exc
    return exc


class RunState:
    """The manifest of a run in progress: identity, frames done, per-chain checkpoints (see io.manifest)."""

    def __init__(self, out_dir: Path, identity: dict, writer: OutputWriter) -> None:
        self.out_dir = out_dir
        self.path = out_dir / RUN_RECORD
        self.run_dir = out_dir / RUN_DIR
        self.identity = identity
        self.writer = writer
        self.done: set[int] = set()
        self.confidence: dict[int, float] = {}  # per frame written, from engines that say (FrameMatte.confidence)
        self.chains: dict[str, dict] = {}
        self.previous_query: dict | None = None
        self.record: dict | None = None

    @classmethod
    def open(cls, out_dir: Path, identity: dict, writer: OutputWriter, wanted: set[int]) -> "RunState":
        """Resume the folder's interrupted run of the same identity, or clear an earlier run and start over."""
        state = cls(out_dir, identity, writer)
        previous, problem = read_manifest(state.path)
        same = previous is not None and previous["identity"] == identity and not previous.get("complete")
        if same:
            progress = previous["progress"]
            claimed = expand_ranges(progress["done"], limit=identity["input"]["frames"]) & wanted
            state.done = claimed - set(writer.resume(claimed))
            state.chains = {k: v for k, v in progress["chains"].items()}
            saved = progress.get("confidence") if isinstance(progress.get("confidence"), dict) else {}
            state.confidence = {int(k): float(v) for k, v in saved.items() if str(k).isdigit() and int(k) in state.done and isinstance(v, (int, float))}
            state.previous_query = progress.get("query") if isinstance(progress.get("query"), dict) else None
            # Checkpoints a killed run wrote but never recorded (or no longer needs) are dropped.
            kept = {chain.get("state") for chain in state.chains.values()}
            for path in state.run_dir.glob("state-*.npz"):
                if path.name not in kept:
                    path.unlink(missing_ok=True)
            return state
        if previous is not None or problem or state.path.exists():
            # One line whenever an earlier run is replaced, finished or not; only what its record
            # says it wrote is deleted.
            if previous is not None and not previous.get("complete"):
                why = _difference(previous["identity"], identity)
                warnings.warn(f"{out_dir} holds an unfinished run of {why}: starting over", stacklevel=4)
            elif previous is not None:
                why = "the same command" if previous["identity"] == identity else _difference(previous["identity"], identity)
                warnings.warn(f"{out_dir} holds a finished run of {why}: replacing it", stacklevel=4)
            elif problem:
                warnings.warn(f"cannot resume: {problem}; starting over", stacklevel=4)
            else:
                warnings.warn(f"{out_dir} holds a finished run of another version: replacing it", stacklevel=4)
            clear_run_outputs(out_dir, read_record(state.path))
        return state

    def query(self, engine, image, prompt, cache_dir, encode_or_load):
        """The reference query: the one this run saved before it was interrupted, else encoded (or from the cache)."""
        saved = self.run_dir / "query.npz"
        if self.previous_query is not None and saved.is_file():
            try:
                query = ReferenceQuery.load(saved, expected=self.previous_query)
                return query, "resumed", None
            except (InputError, QueryMismatchError) as exc:
                warnings.warn(f"re-encoding the reference: {exc}", stacklevel=4)
        query, source, path = encode_or_load(engine, image, prompt, cache_dir)
        try:
            query.save(saved)
        except InputError:
            raise  # it names the file and the reason already ("cannot write X: ...")
        except OSError as exc:
            raise InputError(f"cannot write {saved}: {exc.strerror or exc}") from None
        self.previous_query = query.signature
        return query, source, path

    def save(self, **extra) -> None:
        progress = {"done": to_ranges(self.done), "chains": self.chains, "query": self.previous_query,
                    "confidence": self.confidence_json()}  # fmt: skip
        data = dict(self.record, **extra, frames_written=len(self.done), progress=progress)
        atomic_write_bytes(self.path, (json.dumps(data, indent=2, default=str) + "\n").encode("utf-8"))

    def note_confidence(self, index: int, matte) -> None:
        """Keep the engine's confidence for a frame written (nothing when the engine does not say)."""
        if getattr(matte, "confidence", None) is not None:
            self.confidence[index] = float(matte.confidence)

    def confidence_json(self) -> dict:
        """The per-frame confidences, by frame index as a string, rounded to 3 decimals."""
        return {str(i): round(self.confidence[i], 3) for i in sorted(self.confidence)}

    def checkpoint(self, chain: int, pos: int, arrays: dict | None, finished: bool) -> None:
        """Record that ``pos`` frames of chain ``chain`` are matted, with the state after them."""
        key = str(chain)
        old = self.chains.get(key, {}).get("state")
        name = None
        if arrays is not None and not finished:
            name = f"state-{chain}-{pos}.npz"
            save_arrays(self.run_dir / name, arrays)
        self.chains[key] = {"pos": pos, "state": name}
        self.save()
        if old and old != name:
            (self.run_dir / old).unlink(missing_ok=True)

    def restore(self, chain: int, engine, run_length: int):
        """``(pos, state)`` saved for a chain, or None when there is nothing usable."""
        entry = self.chains.get(str(chain))
        if not entry or not entry.get("state") or not 0 < entry["pos"] < run_length:
            return None
        if entry["state"] != f"state-{chain}-{entry['pos']}.npz":  # a checkpoint of another frame
            return None
        try:
            return entry["pos"], engine.load_state(load_arrays(self.run_dir / entry["state"]))
        except (InputError, ValueError, KeyError, NotImplementedError) as exc:
            warnings.warn(f"cannot use the saved track state ({exc}); re-matting that part from its start", stacklevel=4)
            return None

    def finish(self) -> None:
        """All frames are done: drop the checkpoints and the saved query (the parts stay for assembly)."""
        self.chains = {}
        self.save()
        clear_run_state(self.out_dir, keep_parts=True)


def _difference(old: dict, new: dict) -> str:
    for key, what in (("input", "another input (or the input changed)"), ("reference", "another reference, mask or engine setting")):
        if old.get(key) != new.get(key):
            return what
    return "other options"


def matte_runs(source, query, engine, runs, writer, state: RunState, reference_index, total, on_progress, on_matte=None) -> None:
    """Matte the planned chains, skipping what ``state`` says is done, writing and checkpointing each frame.

    ``on_matte(index, matte)``, when given, is called with each matte written (before its checkpoint).

    A chain whose engine saved its track state resumes right after the last
    checkpoint, with exactly the state an uninterrupted run would have had; an
    engine that saves none re-mattes the chain from its start (the reference)
    and writes only the frames not done yet. Either way the outputs are those of
    an uninterrupted run, as the engines are deterministic.
    """
    from ..frames import to_rgb_float
    from ..matting.closed_form import estimate_foreground

    def report() -> None:
        if on_progress is not None:
            on_progress(len(state.done), total)
        check_interrupt()  # Ctrl-C stops here, between frames, with everything done recorded

    for k, run in enumerate(runs):
        if not run.indices:  # the reference frame's own matte
            if reference_index in state.done or reference_index not in run.emit:
                continue
            matte, _ = engine.reference_matte(query)
            foreground = None
            if writer.needs_foreground:
                foreground = matte.foreground
                if foreground is None and "image" in query.arrays:
                    foreground = estimate_foreground(to_rgb_float(query.arrays["image"]), matte.alpha)
            writer.write(reference_index, matte.alpha, foreground=foreground)
            if on_matte is not None:
                on_matte(reference_index, matte)
            state.note_confidence(reference_index, matte)
            state.done.add(reference_index)
            state.checkpoint(k, 0, None, True)
            report()
            continue
        if all(i in state.done for i in run.emit):
            continue
        pos, track = 0, None
        if run.start == "reference":
            _, track = engine.reference_matte(query)
        restored = state.restore(k, engine, len(run.indices))
        if restored is not None and all(i in state.done for i in run.indices[: restored[0]] if i in run.emit):
            pos, track = restored
        for index, frame, options in with_upcoming(engine, source.iter_frames(run.indices[pos:])):
            check_interrupt()
            emit = index in run.emit
            matte, track = engine.matte_frame(frame, query, state=track, with_foreground=writer.needs_foreground and emit, **options)
            pos += 1
            wrote = emit and index not in state.done
            if wrote:
                writer.write(index, matte.alpha, foreground=matte.foreground if writer.needs_foreground else None)
                if on_matte is not None:
                    on_matte(index, matte)
                state.note_confidence(index, matte)
                state.done.add(index)
            finished = pos == len(run.indices)
            arrays = None if finished else engine.save_state(track)
            if wrote or arrays is not None or finished:
                state.checkpoint(k, pos, arrays, finished)
            if wrote:
                report()
