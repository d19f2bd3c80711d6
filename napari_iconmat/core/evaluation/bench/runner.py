"""Running engines and baselines over benchmark cases, optionally one fresh process per job."""

from __future__ import annotations

import heapq
import multiprocessing
import os
import pickle
import queue as queue_module
import time
import traceback
import warnings
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from ...errors import IconmatError, InputError
from ..metrics import dtssd, image_metrics, iou, j_and_f
from .layouts import (
    _COLUMNS,
    _THUMB_SIDE,
    COPY_REFERENCE,
    DRIFT_FACTOR,
    UPPER_BOUND,
    _Case,
    _folder_cases,
    _peak_rss_mib,
    _read_gt,
    _read_region,
    _reference_mask,
    _resize_nearest,
)
from .report import BenchReport

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
        else:  # binary ground truth (DAVIS): J (IoU), the boundary F-measure and their mean
            scores = j_and_f(pred, gt)
            values.update({"IoU": scores["J"], "F": scores["F"], "J&F": scores["J&F"]})
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
    from ...frames import to_rgb_float

    rgb = (to_rgb_float(frame) * 255 + 0.5).astype(np.uint8)
    return {
        "folder": case.folder, "sequence": case.sequence, "method": method, "name": values["name"],
        "index": values["index"], "MAE": values["MAE"], "SAD": values.get("SAD"), "IoU": values["IoU"],
        "frame": _thumbnail(rgb),
        "gt": _thumbnail((np.asarray(gt, np.float32) * 255 + 0.5).astype(np.uint8)),
        "pred": _thumbnail((np.asarray(pred, np.float32) * 255 + 0.5).astype(np.uint8)),
    }  # fmt: skip


# ------------------------------------------------------------------ jobs (run in a child process when isolated)


def _engine_job(layout: str, cases: list[_Case], engine_name: str, keep_worst: int, engine_params: dict | None, progress) -> dict:
    """Propagate every case with one engine; score its alpha and its coarse mask."""
    from ...io.readers import open_frames, read_image
    from ...pipeline.propagate import propagate
    from ...prompt import make_prompt
    from ...registry import make_engine

    engine = make_engine(engine_name, **(engine_params or {}))
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
    from ...frames import to_rgb_float
    from ...io.readers import open_frames
    from ...matting.closed_form import solve_alpha
    from ...matting.trimap import trimap_from_alpha

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
    # warnings go to the parent, which shows them as its own (one line each on the command line)
    warnings.showwarning = lambda message, category, *rest, **kw: messages.put(("warning", (str(message), category)))
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
            elif kind == "warning":
                text, category = payload
                warnings.warn(text, category if isinstance(category, type) and issubclass(category, Warning) else UserWarning, stacklevel=2)
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
    engine_params: dict[str, dict] | None = None,
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
    engine_params : dict, optional
        Keyword arguments per engine name (``{'classical': {'working_size': 480}}``);
        engines not named get their defaults.

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
      :data:`~napari_iconmat.core.evaluation.metrics.METRIC_SCALES`, ``dtSSD`` (mean over
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
    from ...registry import check_engine_params, get_engine_class

    for name in engines:
        get_engine_class(name)  # unknown names fail here, before any work
    for name in engine_params or {}:
        if name not in engines:
            raise InputError(f"engine parameters given for {name!r}, which is not among the engines run ({', '.join(engines)})")
    for name, params in (engine_params or {}).items():
        check_engine_params(name, params)  # an option no engine has fails now, not after the first engine's run

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
            _run_job(_engine_job, (layout, cases, name, keep_worst, (engine_params or {}).get(name)), isolate=isolate, progress=progress) for name in engines
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
