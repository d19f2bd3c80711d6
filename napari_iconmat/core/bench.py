"""The benchmark runner behind ``iconmat bench``.

:func:`run_bench` mattes every benchmark folder with every engine and scores
the result against the ground truth, beside three baselines computed in the
same run:

* ``copy-reference``: the reference mask copied to every frame (resized with
  nearest neighbour when sizes differ): what no tracking at all scores;
* ``<engine>-coarse``: the engine's own binary mask before matting
  (:attr:`FrameMatte.coarse`), taken from the same propagation run;
* ``gt-trimap-solver``: the closed-form solver given the ground-truth trimap
  (``solve_alpha(frame, trimap_from_alpha(gt))``), an upper bound for engines
  that matte with that solver (folders with soft ground truth only).

Three folder layouts are recognised (see :func:`detect_layout`):

==========  ====================================================  =========================
layout      folder                                                scored
==========  ====================================================  =========================
synth       ``frames/ alpha/ reference_mask.png reference.json``   SAD MSE Grad Conn (whole
            (:func:`~napari_iconmat.core.synth.write_synth`)       image), dtSSD (videos), IoU
davis       ``<seq>/frames/*.jpg|png`` + ``<seq>/masks/*.png``,    IoU of alpha > 0.5 vs the
            or one ``<seq>`` folder holding frames/ and masks/    mask, mean per sequence
icm57       ``image/ alpha/ [trimap/]`` + ``ICM57.json`` (or one   SAD MSE Grad Conn, whole
            ``*.json``) mapping image name -> class, sub_class,    image and trimap unknown
            HalfOrFull                                            region
==========  ====================================================  =========================

The reference frame itself is never scored. Frames are streamed: a run holds
the current frame, its ground truth, the previous frame's alphas (for dtSSD)
and a few down-scaled worst frames for :meth:`BenchReport.contact_sheet`.
"""

from __future__ import annotations

import heapq
import io
import json
import math
import multiprocessing
import os
import pickle
import queue as queue_module
import resource
import sys
import time
import traceback
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .io.writers import atomic_write_bytes
from .errors import IconmatError, InputError
from .metrics import METRIC_SCALES, dtssd, image_metrics, iou, trimap_region

__all__ = ["BenchReport", "LAYOUTS", "check_targets", "davis_sequences", "detect_layout", "run_bench"]

LAYOUTS = ("synth", "davis", "icm57")
COPY_REFERENCE = "copy-reference"
UPPER_BOUND = "gt-trimap-solver"
DRIFT_FACTOR = 3.0  # a frame whose error exceeds this many times the row's median is flagged

_IMAGE_KEYS = ("SAD", "MSE", "Grad", "Conn")
_COLUMNS = (*_IMAGE_KEYS, *(f"{k}_unknown" for k in _IMAGE_KEYS), "dtSSD", "IoU")
_FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")
_THUMB_SIDE = 480  # longest side of the frames kept for the contact sheet
_ICM_SEED = 42  # IconMatting's seed_everything(42): picks each target's reference


# ------------------------------------------------------------------ layouts


@dataclass(frozen=True)
class _Case:
    """One matting run to score: a sequence (synth, DAVIS) or one ICM-57 target.

    ``frames`` is what :func:`open_frames` opens (a folder, or one image file);
    ``gt`` and ``trimaps`` hold one path per frame of it. ``reference`` is the
    reference's index in ``frames``, or None when the reference is the separate
    ``reference_image``. ``targets`` are the scored frame indices, ascending.
    """

    folder: str
    sequence: str
    frames: str
    names: tuple[str, ...]
    gt: tuple[str, ...]
    reference_mask: str
    targets: tuple[int, ...]
    ordered: bool
    soft: bool  # soft ground-truth alpha (synth, ICM) or binary masks (DAVIS)
    reference: int | None = None
    reference_image: str | None = None
    first: int = 0  # reported index of frame 0 (an ICM-57 target's position in its folder)
    trimaps: tuple[str | None, ...] | None = None

    @property
    def frame_range(self) -> tuple[int, int] | None:
        if self.reference is None or not self.targets:
            return None
        return min(*self.targets, self.reference), max(*self.targets, self.reference) + 1


def _natural_key(name: str):
    from .io.readers import natural_key

    return natural_key(name)


def _images_by_stem(folder: Path, suffixes=_FRAME_SUFFIXES) -> dict[str, Path]:
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes]
    return {p.stem: p for p in sorted(files, key=lambda p: _natural_key(p.name))}


def _frame_names(frames_dir: Path) -> list[str]:
    from .io.readers import open_frames

    with open_frames(frames_dir) as source:
        return list(source.frame_names)


def _paired(names: list[str], files: dict[str, Path], what: str, folder: Path) -> tuple[str, ...]:
    missing = [n for n in names if n not in files]
    if missing:
        raise InputError(
            f"{what} folder {folder} lacks {len(missing)} of the {len(names)} frames "
            f"(first: {missing[0]!r}): every frame needs a file of the same name"
        )
    return tuple(str(files[n]) for n in names)


def _limit(indices: list[int], max_frames: int | None) -> tuple[int, ...]:
    return tuple(indices if max_frames is None else indices[:max_frames])


def davis_sequences(root) -> list[Path]:
    """The DAVIS-style sequences under ``root``.

    Parameters
    ----------
    root : str or Path
        A folder holding ``frames/`` and ``masks/`` (one sequence), or a folder
        of such sequence folders.

    Returns
    -------
    list of Path
        Sequence folders in natural name order; empty when ``root`` is neither.
    """
    root = Path(root)

    def is_sequence(path: Path) -> bool:
        return (path / "frames").is_dir() and (path / "masks").is_dir()

    if is_sequence(root):
        return [root]
    if not root.is_dir():
        return []
    return sorted((p for p in root.iterdir() if p.is_dir() and is_sequence(p)), key=lambda p: _natural_key(p.name))


def _icm_json(folder: Path) -> Path | None:
    if (folder / "ICM57.json").is_file():
        return folder / "ICM57.json"
    found = sorted(folder.glob("*.json"))
    if len(found) == 1:
        return found[0]
    if len(found) > 1:
        raise InputError(
            f"ICM-57 folder {folder} holds {len(found)} .json files ({', '.join(p.name for p in found[:3])}, ...): "
            "name the grouping file ICM57.json"
        )
    return None


def detect_layout(folder) -> str:
    """Which benchmark layout ``folder`` is: one of :data:`LAYOUTS`.

    Raises
    ------
    InputError
        The folder does not exist or matches no layout.
    """
    path = Path(folder)
    if not path.is_dir():
        raise InputError(f"benchmark folder {folder} does not exist or is not a folder")
    if (path / "reference.json").is_file():
        return "synth"
    if davis_sequences(path):
        return "davis"
    if (path / "image").is_dir() and (path / "alpha").is_dir() and _icm_json(path) is not None:
        return "icm57"
    raise InputError(
        f"cannot tell the layout of benchmark folder {folder}: expected reference.json + frames/ + alpha/ "
        "(synthetic), <seq>/frames/ + <seq>/masks/ (DAVIS) or image/ + alpha/ + ICM57.json (ICM-57)"
    )


def _synth_cases(path: Path, label: str, max_frames: int | None) -> tuple[str, list[_Case]]:
    try:
        meta = json.loads((path / "reference.json").read_text())
        kind, ref, mask = meta["kind"], int(meta["frame"]), meta.get("mask", "reference_mask.png")
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path / 'reference.json'} is not a synthetic reference file: {exc!r}") from None
    if kind not in ("video", "collection"):
        raise InputError(f"{path / 'reference.json'}: 'kind' must be 'video' or 'collection', got {kind!r}")
    for part in ("frames", "alpha", mask):
        if not (path / part).exists():
            raise InputError(f"synthetic benchmark folder {path} lacks {part}")
    names = _frame_names(path / "frames")
    if not 0 <= ref < len(names):
        raise InputError(f"{path / 'reference.json'}: reference frame {ref} is out of range (0..{len(names) - 1})")
    gt = _paired(names, _images_by_stem(path / "alpha"), "alpha", path / "alpha")
    targets = _limit([i for i in range(len(names)) if i != ref], max_frames)
    case = _Case(
        folder=label, sequence="", frames=str(path / "frames"), names=tuple(names), gt=gt,
        reference_mask=str(path / mask), targets=targets, ordered=kind == "video", soft=True, reference=ref,
    )  # fmt: skip
    return f"synth-{kind}", [case]


def _davis_cases(path: Path, label: str, max_frames: int | None) -> list[_Case]:
    cases = []
    for seq in davis_sequences(path):
        names = _frame_names(seq / "frames")
        if len(names) < 2:
            raise InputError(f"DAVIS sequence {seq} has {len(names)} frame: at least 2 are needed")
        masks = _paired(names, _images_by_stem(seq / "masks", (".png",)), "masks", seq / "masks")
        cases.append(
            _Case(
                folder=label, sequence=seq.name, frames=str(seq / "frames"), names=tuple(names), gt=masks,
                reference_mask=masks[0], targets=_limit(list(range(1, len(names))), max_frames),
                ordered=True, soft=False, reference=0,
            )  # fmt: skip
        )
    return cases


def _icm_cases(path: Path, label: str, max_frames: int | None) -> list[_Case]:
    json_path = _icm_json(path)
    try:
        groups_by_name = json.loads(json_path.read_text())
        images = _images_by_stem(path / "image")
        alphas = _images_by_stem(path / "alpha", (".png", ".jpg", ".jpeg", ".tif", ".tiff"))
        trimaps = _images_by_stem(path / "trimap", (".png",)) if (path / "trimap").is_dir() else {}
        keys = {}
        for name, info in groups_by_name.items():
            stem = Path(name).stem
            if stem in images and stem in alphas:
                keys[stem] = f"{info['class']}-{info['sub_class']}-{info['HalfOrFull']}"
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise InputError(
            f"{json_path} must map image names to {{'class', 'sub_class', 'HalfOrFull'}}: {exc!r}"
        ) from None
    if not keys:
        raise InputError(f"no image of {json_path} has both image/ and alpha/ files in {path}")
    members = defaultdict(list)
    for stem in sorted(keys, key=_natural_key):
        members[keys[stem]].append(stem)
    rng = np.random.default_rng(_ICM_SEED)
    pairs = []
    for stem in sorted(keys, key=_natural_key):
        others = [s for s in members[keys[stem]] if s != stem]
        if others:  # a group of one has no reference: the target is skipped
            pairs.append((stem, others[int(rng.integers(len(others)))]))
    if not pairs:
        raise InputError(f"every group of {json_path} holds a single image: no target has a reference")
    pairs = pairs if max_frames is None else pairs[:max_frames]
    return [
        _Case(
            folder=label, sequence="", frames=str(images[target]), names=(target,), gt=(str(alphas[target]),),
            reference_mask=str(alphas[ref]), targets=(0,), ordered=False, soft=True,
            reference_image=str(images[ref]), first=position,
            trimaps=(str(trimaps[target]) if target in trimaps else None,),
        )  # fmt: skip
        for position, (target, ref) in enumerate(pairs)
    ]


def _folder_cases(folder, label: str, max_frames: int | None) -> tuple[str, list[_Case]]:
    layout = detect_layout(folder)
    path = Path(folder)
    if layout == "synth":
        return _synth_cases(path, label, max_frames)
    if layout == "davis":
        return layout, _davis_cases(path, label, max_frames)
    return layout, _icm_cases(path, label, max_frames)


# ------------------------------------------------------------------ reading


def _read_gt(case: _Case, index: int, shape: tuple[int, int]) -> np.ndarray:
    """(H, W) float32 alpha (soft ground truth) or bool mask (DAVIS)."""
    path = case.gt[index]
    if case.soft:
        from .evaluate import read_alpha_file

        gt = read_alpha_file(path)
    else:
        gt = _read_mask(path)
    if gt.shape != tuple(shape):
        raise InputError(f"ground truth {path} is {gt.shape[0]}x{gt.shape[1]}, its frame is {shape[0]}x{shape[1]}")
    return gt


def _read_mask(path) -> np.ndarray:
    """(H, W) bool: any non-zero pixel (grey, RGB or palette masks)."""
    from .io.readers import read_image

    image = read_image(path)
    if image.ndim == 3:
        image = image[..., 3] if image.shape[2] == 4 and image[..., 3].min() != image[..., 3].max() else image[..., :3].max(axis=2)
    return image > 0


def _reference_mask(case: _Case) -> np.ndarray:
    """(H, W) bool reference mask: a binary mask as is, a soft alpha binarised > 0.5."""
    if case.soft:
        from .evaluate import read_alpha_file

        return read_alpha_file(case.reference_mask) > 0.5
    return _read_mask(case.reference_mask)


def _read_region(case: _Case, index: int, shape) -> np.ndarray | None:
    if case.trimaps is None or case.trimaps[index] is None:
        return None
    from .io.readers import read_image

    trimap = read_image(case.trimaps[index])
    trimap = trimap[..., 0] if trimap.ndim == 3 else trimap
    if trimap.shape != tuple(shape):
        raise InputError(f"trimap {case.trimaps[index]} is {trimap.shape[0]}x{trimap.shape[1]}, its image is {shape[0]}x{shape[1]}")
    return trimap_region(trimap)


def _resize_nearest(mask: np.ndarray, shape) -> np.ndarray:
    if mask.shape == tuple(shape):
        return mask
    return cv2.resize(mask.astype(np.uint8), (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST) > 0


def _peak_rss_mib() -> float:
    """Peak resident memory of this process in MiB (a process-wide high-water mark).

    On Linux ``ru_maxrss`` survives ``exec``: a spawned child would report at
    least its parent's RSS at the fork. ``VmHWM`` of /proc/self/status is the
    peak of the current program only, so it is read where it exists.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB on Linux


# ------------------------------------------------------------------ scoring


class _Worst:
    """The ``k`` frames with the largest mean absolute error, as small uint8 thumbnails."""

    def __init__(self, k: int):
        self.k, self._heap, self._count = k, [], 0

    def wants(self, score: float) -> bool:
        return self.k > 0 and (len(self._heap) < self.k or score > self._heap[0][0])

    def add(self, score: float, sample: dict) -> None:
        self._count += 1
        item = (score, self._count, sample)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, item)
        else:
            heapq.heapreplace(self._heap, item)

    def samples(self) -> list[dict]:
        return [item[2] for item in sorted(self._heap, reverse=True)]


def _thumbnail(array: np.ndarray) -> np.ndarray:
    h, w = array.shape[:2]
    scale = min(1.0, _THUMB_SIDE / max(h, w))
    if scale < 1.0:
        array = cv2.resize(array, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    return array


class _Scores:
    """Per-frame scores of one row (one method on one sequence or image set)."""

    def __init__(self, case: _Case, method: str, kind: str, engine: str | None):
        self.folder, self.sequence, self.soft = case.folder, case.sequence, case.soft
        self.method, self.kind, self.engine = method, kind, engine
        self.frames: list[dict] = []
        self.dtssd: list[float] = []
        self.seconds = 0.0
        self.encode_seconds = 0.0
        self._previous = None  # (index, pred, gt) of the last ordered frame, for dtSSD

    def add(self, case: _Case, index: int, pred: np.ndarray, gt: np.ndarray, region=None) -> dict:
        values: dict = {"index": case.first + int(index), "name": case.names[index]}
        if case.soft:
            values.update(image_metrics(pred, gt))
            if region is not None:
                values.update({f"{k}_unknown": v for k, v in image_metrics(pred, gt, region).items()})
            values["IoU"] = iou(pred, gt > 0.5)
        else:
            values["IoU"] = iou(pred, gt)
        values["MAE"] = float(np.mean(np.abs(np.asarray(pred, np.float32) - gt)))
        if case.ordered and case.soft:  # dtSSD needs soft ground truth
            previous = self._previous
            if previous is not None and abs(index - previous[0]) == 1:
                self.dtssd.append(dtssd(pred, previous[1], gt, previous[2]))
            self._previous = (index, pred, gt)
        self.frames.append(values)
        return values

    def row(self, layout: str, peak_rss: float) -> dict:
        frames = sorted(self.frames, key=lambda f: f["index"])
        row: dict = {
            "folder": self.folder, "layout": layout, "sequence": self.sequence, "method": self.method,
            "kind": self.kind, "engine": self.engine, "frames": len(frames),
        }  # fmt: skip
        for key in _COLUMNS:
            values = self.dtssd if key == "dtSSD" else [f[key] for f in frames if key in f]
            row[key] = float(np.mean(values)) if values else None
        timed = self.kind in ("engine", "upper-bound") and self.seconds > 0
        row["fps"] = len(frames) / self.seconds if timed else None
        row["seconds"] = self.seconds if timed else None
        row["encode_seconds"] = self.encode_seconds if self.kind == "engine" else None
        row["peak_rss_mib"] = peak_rss
        error_name = "SAD" if self.soft else "1-IoU"
        errors = [f["SAD"] if self.soft else 1.0 - f["IoU"] for f in frames]
        row["per_frame"] = {
            "index": [f["index"] for f in frames],
            "name": [f["name"] for f in frames],
            "error_name": error_name,
            "error": errors,
        }
        row.update(_drift(errors, [f["index"] for f in frames]))
        return row


def _drift(errors: list[float], indices: list[int]) -> dict:
    """Max/median of the per-frame error, and the frames above DRIFT_FACTOR x median."""
    if not errors:
        return {"drift_ratio": None, "drift_frames": []}
    median = float(np.median(errors))
    if median <= 1e-12:  # a (near-)perfect row: no ratio, nothing to flag
        return {"drift_ratio": None, "drift_frames": []}
    flagged = [i for i, e in zip(indices, errors) if e > DRIFT_FACTOR * median]
    return {"drift_ratio": max(errors) / median, "drift_frames": flagged}


def _sample(case: _Case, method: str, values: dict, frame, gt, pred) -> dict:
    from .frames import to_rgb_float

    rgb = (to_rgb_float(frame) * 255 + 0.5).astype(np.uint8)
    return {
        "folder": case.folder, "sequence": case.sequence, "method": method, "name": values["name"],
        "index": values["index"], "MAE": values["MAE"], "SAD": values.get("SAD"), "IoU": values["IoU"],
        "frame": _thumbnail(rgb),
        "gt": _thumbnail((np.asarray(gt, np.float32) * 255 + 0.5).astype(np.uint8)),
        "pred": _thumbnail((np.asarray(pred, np.float32) * 255 + 0.5).astype(np.uint8)),
    }  # fmt: skip


# ------------------------------------------------------------------ jobs (run in a child process when isolated)


def _engine_job(layout: str, cases: list[_Case], engine_name: str, keep_worst: int, progress) -> dict:
    """Propagate every case with one engine; score its alpha and its coarse mask."""
    from .io.readers import open_frames, read_image
    from .prompt import make_prompt
    from .propagate import propagate
    from .registry import make_engine

    engine = make_engine(engine_name)
    rows: dict[tuple, _Scores] = {}
    worst = _Worst(keep_worst)
    cached = (None, None)  # (reference image path, query): ICM targets share references
    for case in sorted(cases, key=lambda c: (c.reference_image or "", c.frames)):
        main = rows.setdefault((case.sequence, "engine"), _Scores(case, engine_name, "engine", engine_name))
        coarse = rows.setdefault((case.sequence, "coarse"), _Scores(case, f"{engine_name}-coarse", "coarse", engine_name))
        with open_frames(case.frames) as source:
            start = time.perf_counter()
            if case.reference_image is not None and cached[0] == case.reference_image:
                query = cached[1]
            else:
                image = read_image(case.reference_image) if case.reference is None else source[case.reference]
                query = engine.encode_reference(image, make_prompt(_reference_mask(case)))
                cached = (case.reference_image, query)
            main.encode_seconds += time.perf_counter() - start
            if case.reference is None:
                main.seconds += time.perf_counter() - start  # a target's own reference is part of its cost
            stream = propagate(
                source, query, engine, reference_index=case.reference, ordered=case.ordered, frame_range=case.frame_range
            )
            targets = set(case.targets)
            while True:
                start = time.perf_counter()
                index, matte = next(stream, (None, None))
                if index is None:
                    break
                if index not in targets:
                    continue
                main.seconds += time.perf_counter() - start
                shape = matte.alpha.shape
                gt = _read_gt(case, index, shape)
                region = _read_region(case, index, shape)
                values = main.add(case, index, matte.alpha, gt, region)
                if matte.coarse is not None:
                    coarse.add(case, index, matte.coarse, gt, region)
                if worst.wants(values["MAE"]):
                    worst.add(values["MAE"], _sample(case, engine_name, values, source[index], gt, matte.alpha))
                progress(1)
    peak = _peak_rss_mib()
    out = [scores.row(layout, peak) for scores in rows.values() if scores.frames]
    return {"rows": out, "samples": worst.samples()}


def _baseline_job(layout: str, cases: list[_Case], progress) -> dict:
    """Score copy-reference and, with soft ground truth, the ground-truth-trimap solver."""
    from .frames import to_rgb_float
    from .io.readers import open_frames
    from .matting import solve_alpha, trimap_from_alpha

    rows: dict[tuple, _Scores] = {}
    for case in cases:
        copy = rows.setdefault((case.sequence, "copy"), _Scores(case, COPY_REFERENCE, "copy-reference", None))
        upper = rows.setdefault((case.sequence, "upper"), _Scores(case, UPPER_BOUND, "upper-bound", None))
        mask = _reference_mask(case)
        with open_frames(case.frames) as source:
            for index, frame in source.iter_frames(case.targets):
                shape = frame.shape[:2]
                gt = _read_gt(case, index, shape)
                region = _read_region(case, index, shape)
                copy.add(case, index, _resize_nearest(mask, shape), gt, region)
                if case.soft:
                    start = time.perf_counter()
                    alpha = solve_alpha(to_rgb_float(frame), trimap_from_alpha(gt))
                    upper.seconds += time.perf_counter() - start
                    upper.add(case, index, alpha, gt, region)
                progress(1)
    peak = _peak_rss_mib()
    return {"rows": [scores.row(layout, peak) for scores in rows.values() if scores.frames], "samples": []}


def _child(messages, job, args) -> None:
    """Entry point of an isolated job: run it, send progress, then the result or the error."""
    try:
        result = job(*args, progress=lambda n: messages.put(("progress", n)))
        messages.put(("done", result))
    except BaseException as exc:  # sent to the parent, which raises it there
        text = traceback.format_exc()
        try:
            pickle.dumps(exc)
        except Exception:
            exc = RuntimeError(f"{type(exc).__name__}: {exc}")
        messages.put(("error", (exc, text)))


def _run_job(job, args, *, isolate: bool, progress) -> dict:
    if not isolate:
        return job(*args, progress=progress)
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    process = context.Process(target=_child, args=(messages, job, args), daemon=True)
    process.start()
    try:
        while True:
            try:
                kind, payload = messages.get(timeout=1.0)
            except queue_module.Empty:
                if not process.is_alive():
                    raise RuntimeError(
                        f"benchmark worker {job.__name__} stopped with exit code {process.exitcode} without a result "
                        "(its traceback is above; a spawned worker re-imports the caller's __main__, so run from a "
                        "script file, or pass isolate=False)"
                    ) from None
                continue
            if kind == "progress":
                progress(payload)
            elif kind == "done":
                return payload
            else:
                exc, text = payload
                if not isinstance(exc, IconmatError) and hasattr(exc, "add_note"):  # Python >= 3.11
                    exc.add_note(f"in the benchmark worker process:\n{text}")
                raise exc
    finally:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
            process.join()


# ------------------------------------------------------------------ runner


def run_bench(
    folders,
    *,
    engines=("classical",),
    out_dir=None,
    on_progress: Callable[[int, int], None] | None = None,
    max_frames: int | None = None,
    isolate: bool = True,
    keep_worst: int = 6,
) -> BenchReport:
    """Matte and score benchmark folders with engines and baselines.

    Parameters
    ----------
    folders : str, Path or sequence of them
        Benchmark folders, each in one of the layouts of the module docstring
        (detected from its contents).
    engines : sequence of str, optional
        Registered engine names. Default ``('classical',)``.
    out_dir : str or Path, optional
        When given, ``bench.json``, ``drift.png`` and ``worst.png`` are written
        there at the end (atomically). Default None: nothing is written.
    on_progress : callable, optional
        Called as ``on_progress(done, total)`` after each scored frame of each
        engine and of the baselines.
    max_frames : int, optional
        Score at most this many frames per sequence (the first ones after the
        reference), or this many targets per ICM-57 folder. Default None: all.
    isolate : bool, optional
        Run each (folder, engine) and each folder's baselines in a fresh child
        process (``multiprocessing`` 'spawn' context), so that each row's peak
        RSS is its own. Default True; False runs everything in this process.
    keep_worst : int, optional
        Frames with the largest mean absolute error kept per folder and engine
        for :meth:`BenchReport.contact_sheet`. Default 6.

    Returns
    -------
    BenchReport

    Raises
    ------
    InputError
        A folder is missing or in no known layout, an engine name is not
        registered, or a file of a folder is unusable (raised before any
        matting, except unreadable frames and ground truth).
    WeightsNotFoundError
        An engine needs weights that are not on this machine.

    Notes
    -----
    Rows and their keys (``None`` where a value does not apply):

    * ``folder``, ``layout`` ('synth-video', 'synth-collection', 'davis',
      'icm57'), ``sequence`` (DAVIS sequence name, else ''), ``method`` (the
      engine name, ``'<engine>-coarse'``, ``'copy-reference'`` or
      ``'gt-trimap-solver'``), ``kind`` ('engine', 'coarse', 'copy-reference',
      'upper-bound'), ``engine``, ``frames`` (scored);
    * means over the scored frames: ``SAD MSE Grad Conn`` (whole image) and
      ``SAD_unknown ...`` (ICM-57 trimap unknown region) on the scales of
      :data:`~napari_iconmat.core.metrics.METRIC_SCALES`, ``dtSSD`` (mean over
      consecutive scored pairs, synthetic videos), ``IoU`` (alpha > 0.5 against
      the ground truth > 0.5 or the mask);
    * ``fps``: scored frames per second of the engine's propagation (reading
      frames included; for ICM-57 the encoding of each target's reference too)
      or of the solver; None for copy-reference and the coarse mask, which come
      for free; ``seconds``, ``encode_seconds``;
    * ``peak_rss_mib``: peak resident memory at the end of the run that made the
      row: ``resource.getrusage(RUSAGE_SELF).ru_maxrss``, or on Linux the
      equivalent ``VmHWM`` of /proc/self/status (``ru_maxrss`` survives ``exec``,
      so a spawned child would report at least its parent's RSS). It is a
      process-wide high-water mark: with ``isolate=True`` it is that child
      process's own peak (imports included, shared by the rows of that run); with
      ``isolate=False`` it is this process's peak so far, whatever ran before;
    * ``per_frame``: ``index``, ``name``, ``error_name`` ('SAD' or '1-IoU') and
      ``error`` lists, in frame order; ``drift_ratio`` (max / median error) and
      ``drift_frames`` (indices whose error exceeds 3x the median).

    The ICM-57 protocol follows IconMatting's: each target's reference is drawn
    with ``numpy.random.default_rng(42)`` from the other images of its group
    (``class-sub_class-HalfOrFull``), the guidance is the reference's alpha > 0.5;
    images are scored at their own resolution, not IconMatting's 768x768 crop.
    """
    started = time.perf_counter()
    folders = [folders] if isinstance(folders, (str, os.PathLike)) else list(folders)
    engines = [engines] if isinstance(engines, str) else list(engines)
    if not folders:
        raise InputError("run_bench needs at least one benchmark folder, got none")
    if not engines:
        raise InputError("run_bench needs at least one engine, got none")
    if max_frames is not None and (not isinstance(max_frames, int) or max_frames < 1):
        raise InputError(f"max_frames must be a positive integer or None, got {max_frames!r}")
    from .registry import get_engine_class

    for name in engines:
        get_engine_class(name)  # unknown names fail here, before any work

    labels = [Path(f).name or str(f) for f in folders]
    if len(set(labels)) < len(labels):
        labels = [str(f) for f in folders]
    plan = []  # (label, path, layout, cases)
    for folder, label in zip(folders, labels):
        layout, cases = _folder_cases(folder, label, max_frames)
        plan.append((label, str(folder), layout, cases))

    per_job = sum(len(case.targets) for _, _, _, cases in plan for case in cases)
    total, done = per_job * (len(engines) + 1), 0

    def progress(n: int) -> None:
        nonlocal done
        done += n
        if on_progress is not None:
            on_progress(done, total)

    rows, samples, folder_info = [], [], []
    for label, path, layout, cases in plan:
        results = [
            _run_job(_engine_job, (layout, cases, name, keep_worst), isolate=isolate, progress=progress) for name in engines
        ]
        results.append(_run_job(_baseline_job, (layout, cases), isolate=isolate, progress=progress))
        sequences = list(dict.fromkeys(case.sequence for case in cases))
        order = {m: i for i, m in enumerate(m for e in engines for m in (e, f"{e}-coarse"))}
        order.update({COPY_REFERENCE: len(order), UPPER_BOUND: len(order) + 1})
        found = [row for result in results for row in result["rows"]]
        rows += sorted(found, key=lambda r: (sequences.index(r["sequence"]), order[r["method"]]))
        samples += [s for result in results for s in result["samples"]]
        folder_info.append(
            {"folder": label, "path": path, "layout": layout, "sequences": [s for s in sequences if s],
             "targets": sum(len(c.targets) for c in cases)}  # fmt: skip
        )
    report = BenchReport(
        rows=rows, folders=folder_info, engines=engines, wall_seconds=time.perf_counter() - started, samples=samples
    )
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        report.save_json(out / "bench.json")
        report.plot(out / "drift.png")
        report.contact_sheet(out / "worst.png", worst=keep_worst)
    return report


# ------------------------------------------------------------------ report


def _json_value(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    if isinstance(value, np.generic):
        return _json_value(value.item())
    return value


def _fmt(value, width: int) -> str:
    if value is None:
        return f"{'-':>{width}}"
    if isinstance(value, str):
        return f"{value:>{width}}"
    return f"{value:>{width}.4g}"


@dataclass
class BenchReport:
    """What :func:`run_bench` measured.

    Attributes
    ----------
    rows : list of dict
        One per folder x sequence x method; keys in :func:`run_bench`'s Notes.
    folders : list of dict
        ``folder`` (label), ``path``, ``layout``, ``sequences`` (DAVIS), ``targets``.
    engines : list of str
    wall_seconds : float
        Wall time of the whole run.
    samples : list of dict
        The worst frames kept for :meth:`contact_sheet` (not in the JSON).
    """

    rows: list[dict]
    folders: list[dict] = field(default_factory=list)
    engines: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0
    samples: list[dict] = field(default_factory=list, repr=False)

    def davis_means(self) -> list[dict]:
        """Per DAVIS folder and method: mean of the per-sequence IoUs, and the worst sequence."""
        out = []
        for info in self.folders:
            if info["layout"] != "davis":
                continue
            by_method = defaultdict(dict)
            for row in self.rows:
                if row["folder"] == info["folder"] and row["IoU"] is not None:
                    by_method[row["method"]][row["sequence"]] = row["IoU"]
            for method, ious in by_method.items():
                worst = min(ious, key=ious.get)
                out.append(
                    {"folder": info["folder"], "method": method, "IoU": float(np.mean(list(ious.values()))),
                     "worst_sequence": worst, "worst_IoU": ious[worst], "sequences": len(ious)}  # fmt: skip
                )
        return out

    def to_json(self) -> dict:
        """The report as a JSON-serialisable dict (non-finite numbers become null).

        Returns
        -------
        dict
            ``scales``, ``engines``, ``folders``, ``rows``, ``davis_means``,
            ``targets`` (:func:`check_targets`) and ``wall_seconds``.
        """
        return _json_value(
            {
                "scales": {**METRIC_SCALES, "IoU": "alpha > 0.5 vs gt > 0.5", "peak_rss_mib": "MiB, process high-water mark"},
                "engines": list(self.engines),
                "folders": self.folders,
                "rows": self.rows,
                "davis_means": self.davis_means(),
                "targets": check_targets(self),
                "wall_seconds": self.wall_seconds,
            }
        )

    def save_json(self, path) -> Path:
        """Write :meth:`to_json` to ``path`` atomically; returns the path."""
        return atomic_write_bytes(path, (json.dumps(self.to_json(), indent=1) + "\n").encode())

    def format_table(self) -> str:
        """The report as a fixed-width text table, one line per folder x sequence x method.

        The header gives each metric's scale; DAVIS folders end with one mean
        line per method (mean of the sequence IoUs) with copy-reference beside it.
        """
        present = [k for k in _COLUMNS if any(row.get(k) is not None for row in self.rows)]
        names = [*present, "fps", "RSS", "drift"]
        units = [METRIC_SCALES.get(k.split("_")[0], "alpha>0.5") for k in present] + ["frames/s", "MiB", "max/med"]
        widths = [max(len(n), len(u), 8) for n, u in zip(names, units)]
        fw = max([len("folder"), *(len(r["folder"]) for r in self.rows)])
        sw = max([len("sequence"), *(len(r["sequence"]) for r in self.rows)])
        mw = max([len("method"), *(len(r["method"]) for r in self.rows)])
        lead = ("folder", "sequence", "method", "n")
        lines = [
            "  ".join([f"{lead[0]:<{fw}}", f"{lead[1]:<{sw}}", f"{lead[2]:<{mw}}", f"{lead[3]:>4}",
                       *(f"{n:>{w}}" for n, w in zip(names, widths))]),
            "  ".join([f"{'':<{fw}}", f"{'':<{sw}}", f"{'scale:':<{mw}}", f"{'':>4}",
                       *(f"{u:>{w}}" for u, w in zip(units, widths))]),
        ]  # fmt: skip
        for row in self.rows:
            drift = "-" if row["drift_ratio"] is None else f"{row['drift_ratio']:.1f}x({len(row['drift_frames'])})"
            values = [row.get(k) for k in present] + [row["fps"], row["peak_rss_mib"], drift]
            cells = [_fmt(v, w) for v, w in zip(values, widths)]
            lines.append(
                "  ".join([f"{row['folder']:<{fw}}", f"{row['sequence']:<{sw}}", f"{row['method']:<{mw}}",
                           f"{row['frames']:>4}", *cells]).rstrip()  # fmt: skip
            )
        means = self.davis_means()
        for info in self.folders:
            if info["layout"] != "davis":
                continue
            ious = {m["method"]: m for m in means if m["folder"] == info["folder"]}
            copy = ious.get(COPY_REFERENCE)
            for engine in self.engines:
                for method in (engine, f"{engine}-coarse"):
                    if method not in ious:
                        continue
                    m = ious[method]
                    beside = f"   copy-reference {copy['IoU']:.4f}" if copy else ""
                    lines.append(
                        f"{info['folder']}  mean over {m['sequences']} sequences  {method:<{mw}}  IoU {m['IoU']:.4f}"
                        f"{beside}   worst {m['worst_sequence']} {m['worst_IoU']:.4f}"
                    )
        lines += [
            "",
            "scales from metrics.METRIC_SCALES; IoU: alpha > 0.5 vs the ground truth (> 0.5); *_unknown: trimap "
            "unknown region; RSS: peak resident memory of the process that ran the row; drift: max/median "
            f"per-frame error (SAD, or 1-IoU on DAVIS) and, in brackets, frames above {DRIFT_FACTOR:g}x the median",
        ]
        return "\n".join(lines)

    def plot(self, path) -> Path:
        """Write a PNG of each row's per-frame error (SAD, or 1 - IoU for DAVIS) against frame index.

        One panel per folder and sequence, one line per method; flagged drift
        frames are marked with a cross. Returns the path.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        panels = list(dict.fromkeys((row["folder"], row["sequence"]) for row in self.rows))
        cols = min(3, max(1, len(panels)))
        nrows = math.ceil(len(panels) / cols) if panels else 1
        figure, axes = plt.subplots(nrows, cols, figsize=(5.5 * cols, 3.4 * nrows), squeeze=False)
        for ax, (folder, sequence) in zip(axes.ravel(), panels):
            for row in self.rows:
                if (row["folder"], row["sequence"]) != (folder, sequence):
                    continue
                curve = row["per_frame"]
                (line,) = ax.plot(curve["index"], curve["error"], label=row["method"], linewidth=1.2)
                flagged = set(row["drift_frames"])
                marks = [(i, e) for i, e in zip(curve["index"], curve["error"]) if i in flagged]
                if marks:
                    ax.plot(*zip(*marks), "x", color=line.get_color(), markersize=7)
                ax.set_ylabel(curve["error_name"] + (" (sum/1000)" if curve["error_name"] == "SAD" else ""))
            ax.set_title(f"{folder} {sequence}".strip(), fontsize=10)
            layout = next(r["layout"] for r in self.rows if (r["folder"], r["sequence"]) == (folder, sequence))
            ax.set_xlabel("target image" if layout == "icm57" else "frame")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        for ax in axes.ravel()[len(panels) :]:
            ax.axis("off")
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        plt.close(figure)
        return atomic_write_bytes(path, buffer.getvalue())

    def contact_sheet(self, path, worst: int = 6) -> Path:
        """Write a PNG of the worst frames across folders: frame | GT alpha | predicted alpha | |error|.

        Frames are ranked by mean absolute error of the engine's alpha against
        the ground truth (the DAVIS mask counts as an alpha of 0 and 1); at most
        the ``keep_worst`` frames kept per folder and engine are available.
        Returns the path.
        """
        chosen = sorted(self.samples, key=lambda s: s["MAE"], reverse=True)[:worst]
        tile_h, band = 180, 22
        strips = []
        for s in chosen:
            h, w = s["gt"].shape
            tile_w = max(1, round(w * tile_h / h))

            def tile(image, interpolation=cv2.INTER_AREA):
                return cv2.resize(image, (tile_w, tile_h), interpolation=interpolation)

            error = np.abs(s["pred"].astype(np.int16) - s["gt"].astype(np.int16)).astype(np.uint8)
            error = cv2.cvtColor(cv2.applyColorMap(error, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
            grey = [cv2.cvtColor(tile(s[k]), cv2.COLOR_GRAY2RGB) for k in ("gt", "pred")]
            strip = np.concatenate([tile(s["frame"]), *grey, tile(error)], axis=1)
            label = f"{s['folder']} {s['sequence']} frame {s['name']}  {s['method']}  MAE {s['MAE']:.4f}  IoU {s['IoU']:.3f}"
            if s["SAD"] is not None:
                label += f"  SAD {s['SAD']:.2f}"
            top = np.full((band, strip.shape[1], 3), 32, np.uint8)
            cv2.putText(top, label, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
            strips.append(np.concatenate([top, strip], axis=0))
        if not strips:
            strips = [np.full((band, 400, 3), 32, np.uint8)]
            cv2.putText(strips[0], "no frames kept", (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        width = max(s.shape[1] for s in strips)
        sheet = np.concatenate([np.pad(s, ((0, 2), (0, width - s.shape[1]), (0, 0))) for s in strips], axis=0)
        ok, buffer = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
        if not ok:
            raise OSError(f"could not encode the contact sheet {path} as PNG")
        return atomic_write_bytes(path, buffer.tobytes())


# ------------------------------------------------------------------ targets


def check_targets(report: BenchReport, *, engine: str = "classical") -> list[str]:
    """Check an engine's rows against the project's targets.

    On synthetic folders: mean SAD <= 1.5x the gt-trimap-solver's and <= 0.5x
    the engine's own coarse mask's, dtSSD <= the solver's (videos), and no
    frame with SAD > 3x the median. On DAVIS folders: mean IoU >= 0.75 and no
    sequence below 0.5.

    Returns
    -------
    list of str
        One line per check, starting with ``PASS`` or ``MISS`` (a miss shows
        the value against the target); empty when the engine has no such rows.
    """
    lines = []

    def check(ok: bool, text: str, value: float, target: float) -> None:
        lines.append(f"PASS {text}" if ok else f"MISS {text} ({value:.4g} vs {target:.4g})")

    rows = {(r["folder"], r["sequence"], r["method"]): r for r in report.rows}
    for info in report.folders:
        folder = info["folder"]
        if info["layout"].startswith("synth"):
            own = rows.get((folder, "", engine))
            if own is None:
                continue
            upper, coarse = rows.get((folder, "", UPPER_BOUND)), rows.get((folder, "", f"{engine}-coarse"))
            if upper is not None:
                check(own["SAD"] <= 1.5 * upper["SAD"], f"{folder} {engine} SAD <= 1.5x {UPPER_BOUND}", own["SAD"], 1.5 * upper["SAD"])
            if coarse is not None:
                check(own["SAD"] <= 0.5 * coarse["SAD"], f"{folder} {engine} SAD <= 0.5x {engine}-coarse", own["SAD"], 0.5 * coarse["SAD"])
            if upper is not None and own["dtSSD"] is not None and upper["dtSSD"] is not None:
                check(own["dtSSD"] <= upper["dtSSD"], f"{folder} {engine} dtSSD <= {UPPER_BOUND}", own["dtSSD"], upper["dtSSD"])
            ratio = own["drift_ratio"] or 0.0
            check(not own["drift_frames"], f"{folder} {engine} no frame with SAD > {DRIFT_FACTOR:g}x median "
                  f"(max/median {ratio:.2f}, flagged {own['drift_frames']})", ratio, DRIFT_FACTOR)  # fmt: skip
        elif info["layout"] == "davis":
            for m in report.davis_means():
                if m["folder"] == folder and m["method"] == engine:
                    check(m["IoU"] >= 0.75, f"{folder} {engine} mean IoU >= 0.75", m["IoU"], 0.75)
                    check(m["worst_IoU"] >= 0.5, f"{folder} {engine} every sequence IoU >= 0.5 (worst {m['worst_sequence']})",
                          m["worst_IoU"], 0.5)  # fmt: skip
    return lines
