"""Many inputs as one job, in this process or on a Dask cluster.

:func:`matte_inputs` runs :func:`~napari_iconmat.core.pipeline.run.matte_sequence` on
several inputs (paths or glob patterns) with one reference and one mask, each
into ``OUT/<input-name>/`` (one input: ``OUT`` itself). Given ``workers`` (a
local cluster of that many processes, one thread each), ``scheduler`` (the
address of a running cluster) or a ``client``, the matting runs on Dask
workers:

- inputs run side by side, and within an input the work is split where it is
  independent: batches of images of an unordered collection, and the forward
  and backward chains of a sequence (each chain is a string of segments, every
  segment handing its track state to the next);
- the reference query is encoded once per input by this process (the driver)
  and sent to every worker once (``client.scatter(..., broadcast=True)``);
- workers write their frames straight into the output folder with the same
  atomic writes as a single-process run; the driver alone holds the folder's
  lock and the run manifest, which it updates as tasks complete. A Dask run and
  a plain run can therefore resume each other, and the outputs are the same
  bytes;
- a worker that dies loses only its running tasks, which Dask runs again
  elsewhere; a frame written twice is written with the same bytes.

Nothing here imports dask until a cluster is asked for.
"""

from __future__ import annotations

import glob
import itertools
import json
import math
import os
import re
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from ..errors import IconmatError, InputError
from .interrupt import check_interrupt, deferred_sigint
from .run import RunSummary, matte_sequence

__all__ = ["InputResult", "JobProgress", "connect", "expand_inputs", "input_dirs", "local_cluster", "matte_inputs"]

#: frames per task of a sequence's chain (each segment hands its track state to the next)
SEGMENT_FRAMES = 16
#: at most this many images per collection task
MAX_BATCH = 32
#: a collection is cut into about this many tasks per worker
TASKS_PER_WORKER = 16
_GLOB_CHARS = re.compile(r"[*?\[]")


@dataclass
class InputResult:
    """What happened to one input of :func:`matte_inputs`.

    Attributes
    ----------
    input : str
        The input path.
    out_dir : Path
        Its output folder.
    summary : RunSummary or None
        The run's summary when it finished.
    error : str or None
        One line when it failed (an :class:`IconmatError`).
    """

    input: str
    out_dir: Path
    summary: RunSummary | None = None
    error: str | None = None

    def describe(self) -> str:
        """One line: the input and its summary or error."""
        if self.summary is not None:
            return f"{self.input}: {self.summary.describe()}"
        return f"{self.input}: failed: {self.error}"


class JobProgress:
    """Progress of a whole job, gathered from the per-input ``on_progress(done, total)`` calls.

    ``callback(done, total, status)`` gets the frames done and planned over all
    inputs that have started and ``status``, a dict of input path to one of
    'waiting', 'running', 'done', 'failed'. Thread-safe.
    """

    def __init__(self, inputs: Sequence[str], callback: Callable[[int, int, dict], Any] | None) -> None:
        self.callback = callback
        self.status = {name: "waiting" for name in inputs}
        self._counts: dict[str, tuple[int, int]] = {}
        self._lock = threading.Lock()

    def for_input(self, name: str) -> Callable[[int, int], None]:
        def on_progress(done: int, total: int) -> None:
            with self._lock:
                self._counts[name] = (done, total)
                if self.status[name] == "waiting":
                    self.status[name] = "running"
            self._report()

        return on_progress

    def set(self, name: str, status: str) -> None:
        with self._lock:
            self.status[name] = status
        self._report()

    def _report(self) -> None:
        if self.callback is None:
            return
        with self._lock:
            done = sum(d for d, _ in self._counts.values())
            total = sum(t for _, t in self._counts.values())
            status = dict(self.status)
            self.callback(done, total, status)


def expand_inputs(inputs: Sequence[Any]) -> list[str]:
    """Paths of the inputs, glob patterns expanded (sorted), in the order given, without repeats.

    A pattern that matches nothing, or a path that does not exist, raises
    InputError naming it.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    paths: list[str] = []
    for item in inputs:
        text = os.path.expanduser(os.fspath(item))
        if not os.path.exists(text) and _GLOB_CHARS.search(text):
            matches = sorted(glob.glob(text))
            if not matches:
                raise InputError(f"no input matches {text!r}")
            paths.extend(matches)
        elif os.path.exists(text):
            paths.append(text)
        else:
            raise InputError(f"input not found: {text}")
    return list(dict.fromkeys(paths))


def refuse_split_sequence(paths: Sequence[str]) -> None:
    """InputError when several inputs are single images that look like one sequence.

    An unquoted shell glob (``iconmat matte frames/*.png ...``) reaches iconmat as one
    input per image; each would be matted on its own, against itself. Images in one
    folder, of one size, with the same name apart from a number, are refused with a
    line that says to pass their folder.
    """
    from ..io.readers import IMAGE_SUFFIXES

    if len(paths) < 2:
        return
    files = [Path(p) for p in paths]
    if not all(p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES for p in files):
        return
    if len({p.parent.resolve() for p in files}) != 1:
        return
    stems = [re.sub(r"\d+", "#", p.stem) for p in files]
    if len(set(stems)) != 1 or "#" not in stems[0]:
        return
    sizes = set()
    for p in (files[0], files[len(files) // 2], files[-1]):
        try:
            from PIL import Image

            with Image.open(p) as image:
                sizes.add(image.size)
        except Exception:  # unreadable: the run names it later
            return
    if len(sizes) != 1:
        return
    folder = files[0].parent
    raise InputError(
        f"{len(files)} images of {folder} ({files[0].name} ... {files[-1].name}) were given as {len(files)} separate "
        f"inputs (an unquoted shell glob?): pass the folder {folder} as one input to matte them as one sequence "
        "(add --order collection to matte each image on its own)"
    )


def input_dirs(inputs: Sequence[str], out_dir) -> list[Path]:
    """The output folder of each input: ``out_dir`` for a single input, else ``out_dir/<name>``.

    ``<name>`` is the input's name without its extension (``clips/a.mp4`` ->
    ``a``); when two inputs share a name, each uses its path below the inputs'
    common folder with ``/`` replaced by ``-`` (``x/frames``, ``y/frames`` ->
    ``x-frames``, ``y-frames``). Raises InputError when two inputs would still
    share a folder.
    """
    out_dir = Path(os.fspath(out_dir)).expanduser()
    if len(inputs) == 1:
        return [out_dir]
    paths = [Path(os.path.abspath(p)) for p in inputs]

    def short(p: Path) -> str:
        return p.name if p.is_dir() else p.stem

    names = [short(p) for p in paths]
    if len(set(names)) < len(names):
        common = Path(os.path.commonpath([str(p) for p in paths]))
        names = ["-".join((*p.parent.relative_to(common).parts, short(p))) for p in paths]
    seen: dict[str, str] = {}
    for name, path in zip(names, inputs):
        if name in seen:
            raise InputError(f"inputs {seen[name]} and {path} would both write to {out_dir / name}: rename one")
        seen[name] = path
    return [out_dir / name for name in names]


@contextmanager
def connect(workers: int | None = None, scheduler: str | None = None, *, timeout: float = 60) -> Iterator[Any]:
    """A ``distributed.Client``: on a local cluster of ``workers`` processes (one thread each) or ``scheduler``.

    The local cluster is closed on exit. Raises InputError when distributed is
    missing, ``workers`` is not a positive integer, both or neither are given,
    or the scheduler cannot be reached within ``timeout`` seconds.
    """
    if (workers is None) == (scheduler is None):
        raise InputError("give either a number of local workers or a scheduler address, not both")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"workers must be a positive integer, got {workers!r}")
    try:
        from distributed import Client
    except ImportError:
        raise InputError("running on Dask needs the distributed package: pip install 'napari-iconmat[dask]'") from None
    if workers is not None:
        cluster = local_cluster(workers)
        try:
            with Client(cluster, timeout=timeout) as client:
                yield client
        finally:
            cluster.close()
        return
    try:
        client = Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {scheduler}: {' '.join(str(exc).split())}") from None
    try:
        yield client
    finally:
        client.close()


def local_cluster(workers: int):
    """A ``distributed.LocalCluster`` of ``workers`` processes, one thread each, no dashboard, quiet logs.

    Its workers keep glibc's default memory trimming: Dask's nanny sets
    ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers, which made the classical
    engine about 1.5x slower per frame here (its many temporary arrays are
    returned to the system and mapped again). The statistical profiler of the
    workers is off: sampling every thread's stack every 10 ms takes the GIL
    from the matting thread.
    """
    import logging

    import dask
    from distributed import LocalCluster

    settings = {
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        "distributed.worker.profile.enabled": False,
    }
    with dask.config.set(settings):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # no dashboard, and the scheduler's small HTTP server on a free port (8787 may be taken)
            scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
            silence_logs=logging.ERROR,
        )


def matte_inputs(
    inputs: Sequence[Any],
    *,
    out_dir,
    workers: int | None = None,
    scheduler: str | None = None,
    client: Any = None,
    on_progress: Callable[[int, int, dict], Any] | None = None,
    batch: int | None = None,
    connect_timeout: float = 60,
    **options: Any,
) -> list[InputResult]:
    """Matte several inputs with one reference as one job, here or on Dask workers.

    Parameters
    ----------
    inputs : sequence of str or path-like
        Videos, image folders, TIFF stacks or images; glob patterns are
        expanded (see :func:`expand_inputs`).
    out_dir : str or path-like
        One input: its output folder, exactly as :func:`matte_sequence`.
        Several: ``out_dir/<input-name>/`` each (see :func:`input_dirs`).
    workers : int, optional
        Run on a local Dask cluster of this many processes (one thread each).
    scheduler : str, optional
        Run on the Dask cluster at this address (``tcp://host:8786``).
    client : distributed.Client, optional
        Run on this client's cluster. With none of the three, everything runs
        in this process, one input after the other, without importing dask.
    on_progress : callable, optional
        ``on_progress(done, total, status)`` for the whole job (see :class:`JobProgress`).
    batch : int, optional
        Images per task of a collection; None picks
        ``ceil(images / (16 * workers))``, at most 32: small enough that a
        worker slowed by other jobs does not hold up the end of the run, large
        enough that the ~4 ms of CPU a task costs stays near 1% (measured with
        ``benchmarks/dask_scaling.py``).
    connect_timeout : float, default 60
        Seconds to wait for the scheduler (or the local cluster) to answer.
    **options
        Passed to :func:`matte_sequence` (``mask``, ``reference_frame`` or
        ``reference_image``, ``engine``, ``engine_params``, ``formats`` ...).

    Returns
    -------
    list of InputResult
        One per input, in input order. An input that fails with an
        :class:`IconmatError` is reported there and the others go on.

    Raises
    ------
    InputError
        An input or pattern that does not exist, two inputs with one output
        name, an unreachable scheduler, or (Dask) an input that is not a path.
    RunInterrupted
        Ctrl-C: the inputs started keep their done frames (run again to resume).
    """
    for key in ("on_progress", "runner", "out_dir"):
        if key in options:
            raise InputError(f"matte_inputs sets {key!r} itself")
    from ..registry import check_engine_params

    if isinstance(options.get("engine_params") or {}, dict):  # (matte_sequence says what else is wrong)
        check_engine_params(options.get("engine", "classical"), options.get("engine_params") or {})  # once, before any input
    paths = expand_inputs(inputs)
    refuse_split_sequence(paths)
    dirs = input_dirs(paths, out_dir)
    progress = JobProgress(paths, on_progress)
    distributed = workers is not None or scheduler is not None or client is not None

    def one(path: str, folder: Path, runner=None) -> InputResult:
        progress.set(path, "running")
        try:
            summary = matte_sequence(path, out_dir=folder, on_progress=progress.for_input(path), runner=runner, **options)
        except IconmatError as exc:
            progress.set(path, "failed")
            return InputResult(path, folder, error=" ".join(str(exc).split()))
        progress.set(path, "done")
        return InputResult(path, folder, summary=summary)

    if not distributed:
        with deferred_sigint():  # Ctrl-C stops between frames, then between inputs
            results = []
            for path, folder in zip(paths, dirs):
                check_interrupt()
                results.append(one(path, folder))
            return results

    if client is not None:
        return _run_on(client, paths, dirs, one, options, batch)
    with connect(workers, scheduler, timeout=connect_timeout) as own:
        return _run_on(own, paths, dirs, one, options, batch)


def _run_on(client, paths, dirs, one, options, batch) -> list[InputResult]:
    """Run every input through :class:`_DaskRunner` on ``client``, several inputs at a time."""
    engine = options.get("engine", "classical")
    params = dict(options.get("engine_params") or {}, **({"explain": True} if options.get("explain") else {}))
    queries = _QueryShare(client)
    runners = [_DaskRunner(client, queries, path, engine, params, bool(options.get("explain")), batch) for path in paths]
    # Enough inputs in flight to keep every worker busy even when each offers only two chains.
    parallel = max(1, min(len(paths), 32, max(4, 2 * _worker_count(client))))
    if parallel == 1:
        return [one(paths[0], dirs[0], runners[0])]
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="iconmat-input") as pool:
        futures = [pool.submit(one, path, folder, runner) for path, folder, runner in zip(paths, dirs, runners)]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for runner in runners:
                runner.stop.set()
            for future in futures:
                future.cancel()
            raise


def _worker_count(client) -> int:
    try:
        return max(1, len(client.scheduler_info()["workers"]))
    except Exception:  # an unusual client (a gateway): assume a small cluster
        return 1


class _QueryShare:
    """Each distinct reference query scattered to all workers once for the whole job."""

    def __init__(self, client) -> None:
        self.client = client
        self._futures: dict[str, Any] = {}
        self._lock = threading.Lock()

    def get(self, query):
        key = json.dumps(query.signature, sort_keys=True, default=str)
        with self._lock:
            if key not in self._futures:
                self._futures[key] = self.client.scatter(query, broadcast=True, hash=False)
            return self._futures[key]


class _DaskRunner:
    """Stands in for :func:`~napari_iconmat.core.pipeline.resume.matte_runs`: the same chains, as Dask tasks.

    The driver (this process) keeps the run manifest: after each task it adds
    the frames the task wrote to ``state.done`` and, for a chain, records the
    checkpoint after the segment, exactly as a single-process run does per frame.
    """

    def __init__(self, client, queries: _QueryShare, path: str, engine: str, params: dict, explain: bool, batch) -> None:
        self.client = client
        self.queries = queries
        self.path = path
        self.engine = engine
        self.params = params
        self.explain = explain
        self.batch = batch
        self.stop = threading.Event()

    def __call__(self, source, query, engine, runs, writer, state, reference_index, total, on_progress, on_matte=None) -> None:
        from distributed import as_completed

        if source.path is None or Path(source.path).resolve() != Path(self.path).resolve():
            raise InputError("a Dask run needs inputs given as paths")
        spec = {
            "input": str(self.path),
            "engine": self.engine,
            "params": self.params,
            "out_dir": str(writer.out_dir),
            "formats": list(writer.formats),
            "colour": writer.colour,
            "explain": self.explain,
        }
        query_future = self.queries.get(query)
        submit = self.client.submit
        tasks: dict[Any, tuple] = {}  # future -> what to record when it completes
        token = itertools.count()
        tag = f"iconmat-{os.getpid()}-{id(self):x}"

        def key(kind: str) -> str:
            return f"{kind}-{tag}-{next(token)}"

        images = []
        for k, run in enumerate(runs):
            if not run.indices:  # the reference frame's own matte
                if reference_index in run.emit and reference_index not in state.done:
                    f = submit(_matte_reference, spec, query_future, reference_index, key=key("iconmat-reference"), pure=False)
                    tasks[f] = ("reference", k)
                continue
            if all(i in state.done for i in run.emit):
                continue
            if run.start == "fresh" and len(run.indices) == 1:
                images.append(run.indices[0])
                continue
            pos, track = 0, None
            restored = state.restore(k, engine, len(run.indices))
            if restored is not None and all(i in state.done for i in run.indices[: restored[0]] if i in run.emit):
                pos, track = restored
            start = "track" if pos else run.start
            previous = None
            while pos < len(run.indices):
                piece = run.indices[pos : pos + SEGMENT_FRAMES]
                emit = [i for i in piece if i in run.emit]
                skip = [i for i in emit if i in state.done]
                previous = submit(
                    _matte_segment, spec, query_future, list(piece), emit, skip, start, track, previous,
                    key=key("iconmat-segment"), pure=False,
                )  # fmt: skip
                pos += len(piece)
                tasks[previous] = ("segment", k, pos, pos == len(run.indices))
                start, track = "previous", None
        if images:
            size = self.batch or min(MAX_BATCH, max(1, math.ceil(len(images) / (TASKS_PER_WORKER * _worker_count(self.client)))))
            for first in range(0, len(images), size):
                chunk = images[first : first + size]
                f = submit(_matte_images, spec, query_future, chunk, key=key("iconmat-images"), pure=False)
                tasks[f] = ("images",)

        pending = as_completed(list(tasks), with_results=False)
        try:
            for future in pending:
                if self.stop.is_set():
                    raise RunInterruptedByJob()
                result = future.result()  # a task's error (an unreadable frame ...) stops the run here
                info = tasks[future]
                written = result[0] if info[0] == "segment" else result
                state.done.update(written)
                if info[0] == "segment":
                    _, k, pos, finished = info
                    arrays = None if finished else engine.save_state(result[1])
                    state.checkpoint(k, pos, arrays, finished)
                elif info[0] == "reference":
                    state.checkpoint(info[1], 0, None, True)
                else:
                    state.save()
                if on_progress is not None:
                    on_progress(len(state.done), total)
        finally:
            self.client.cancel(list(tasks))
        missing = writer.resume(state.done)  # adopt the workers' frames; checks that their files are there
        if missing:
            raise InputError(
                f"{len(missing)} frames reported done have missing files in {writer.out_dir} "
                f"(first: {missing[0]}); run the same command again to redo them"
            )


class RunInterruptedByJob(KeyboardInterrupt):
    """Another input of the job failed or was interrupted: this one stops too (its frames are kept)."""


# ---------------------------------------------------------------- worker side

_ENGINES: dict[str, Any] = {}
_SOURCES: OrderedDict = OrderedDict()
_OPEN_SOURCES = 4


def _worker_engine(spec: dict):
    from ..registry import make_engine

    key = json.dumps([spec["engine"], spec["params"]], sort_keys=True, default=str)
    if key not in _ENGINES:
        _ENGINES[key] = make_engine(spec["engine"], **spec["params"])
    return _ENGINES[key]


def _worker_source(path: str):
    """The open source of ``path``, kept open for the next task (a few at a time)."""
    from ..io.readers import open_frames

    if path in _SOURCES:
        _SOURCES.move_to_end(path)
        return _SOURCES[path]
    source = open_frames(path)
    _SOURCES[path] = source
    while len(_SOURCES) > _OPEN_SOURCES:
        _, old = _SOURCES.popitem(last=False)
        old.close()
    return source


def _worker_writer(spec: dict):
    from ..io.writers import OutputWriter

    writer = OutputWriter(spec["out_dir"], spec["formats"], colour=spec["colour"], lock=False)
    # The driver prunes stale parts when it opens the run; a worker must not delete its peers' parts.
    writer._parts_ready = True
    return writer


def _write(spec: dict, writer, index: int, matte) -> None:
    writer.write(index, matte.alpha, foreground=matte.foreground if writer.needs_foreground else None)
    if spec["explain"] and matte.explain:
        from ..explain import write_explain_maps

        write_explain_maps(Path(spec["out_dir"]) / "explain", index, matte.explain)


def _matte_images(spec: dict, query, indices: list[int]) -> list[int]:
    """Task: matte each image of a collection on its own; returns the indices written."""
    engine, source, writer = _worker_engine(spec), _worker_source(spec["input"]), _worker_writer(spec)
    for index, frame in source.iter_frames(indices):
        matte, _ = engine.matte_frame(frame, query, state=None, with_foreground=writer.needs_foreground)
        _write(spec, writer, index, matte)
    return list(indices)


def _matte_reference(spec: dict, query, index: int) -> list[int]:
    """Task: the reference frame's own matte; returns ``[index]``."""
    from ..frames import to_rgb_float
    from ..matting.closed_form import estimate_foreground

    engine, writer = _worker_engine(spec), _worker_writer(spec)
    matte, _ = engine.reference_matte(query)
    if writer.needs_foreground and matte.foreground is None and "image" in query.arrays:
        matte.foreground = estimate_foreground(to_rgb_float(query.arrays["image"]), matte.alpha)
    _write(spec, writer, index, matte)
    return [index]


def _matte_segment(spec: dict, query, indices, emit, skip, start: str, track, previous):
    """Task: a piece of a chain, from the track state before it; returns ``(indices written, state after)``.

    ``start`` says where the state comes from: 'reference' (the reference's
    matte), 'fresh' (none), 'track' (``track``, a restored checkpoint) or
    'previous' (the result of the previous segment, ``previous``).
    """
    engine, source, writer = _worker_engine(spec), _worker_source(spec["input"]), _worker_writer(spec)
    if start == "reference":
        _, track = engine.reference_matte(query)
    elif start == "previous":
        track = previous[1]
    elif start == "fresh":
        track = None
    emit, skip = set(emit), set(skip)
    written = []
    for index, frame in source.iter_frames(indices):
        out = index in emit
        matte, track = engine.matte_frame(frame, query, state=track, with_foreground=writer.needs_foreground and out)
        if out and index not in skip:
            _write(spec, writer, index, matte)
            written.append(index)
    return written, track
