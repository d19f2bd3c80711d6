"""Per-frame overhead of napari's ``thread_worker`` against a plain loop.

One napari segmentation plugin (micro-sam#740) measured a large slowdown with
thread workers; this measures ours. The same frame generator the widget runs
(:func:`napari_iconmat._widget._matting_steps`, the classical engine on a
synthetic video) is consumed

* ``loop``: in a plain ``for`` loop on the main thread, storing each alpha;
* ``thread``: the same loop in a plain Python thread (no Qt), to tell the
  cost of signals and the progress bar from the effect of leaving the main thread;
* ``worker``: in ``thread_worker`` with a napari progress bar, each alpha
  stored by the ``yielded`` slot on the GUI thread, as in the widget.

CPU time (all threads of the process) is reported with the wall time: on a
shared, loaded machine the wall time of a single-threaded loop depends on the
scheduler more than on the code.

With ``--viewer`` both also write into an alpha layer of a napari viewer and
refresh it per frame (what the widget does); that needs a display, e.g.
``xvfb-run -a -s "-screen 0 1280x1024x24" python benchmarks/worker_overhead.py --viewer``.
Without it, ``QT_QPA_PLATFORM=offscreen`` is enough.

Usage::

    python benchmarks/worker_overhead.py [--frames 40] [--size 320x180] [--repeat 3] [--viewer]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np


def _frames(n: int, size: tuple[int, int]):
    from napari_iconmat.core.evaluation.synth import synth_video

    made = list(synth_video(max(n, 2), size=size, seed=0))[:n]
    return np.stack([f.image for f in made]), np.stack([f.alpha for f in made])


def _steps(frames, truth, engine, cache):
    from napari_iconmat._widget import _matting_steps
    from napari_iconmat.core import make_prompt
    from napari_iconmat.core.pipeline.keyframes import Keyframes

    keys = Keyframes(len(frames))
    keys.set(0, frames[0], make_prompt(truth[0] > 0.5))
    plan = keys.plan(engine)
    return _matting_steps(list(frames), engine, keys, plan, cache, False), plan.total


def _loop(frames, truth, engine, cache, layer) -> tuple[float, float]:
    out = np.zeros(truth.shape, np.float32)
    steps, _ = _steps(frames, truth, engine, cache)
    start, cpu = time.perf_counter(), time.process_time()
    for index, alpha, _ in steps:
        out[index] = alpha
        if layer is not None:
            layer.data[index] = alpha
            layer.refresh()
    return time.perf_counter() - start, time.process_time() - cpu


def _thread(frames, truth, engine, cache, layer) -> tuple[float, float]:
    """The plain loop in a plain Python thread (no Qt signals): separates "off the main thread" from the worker."""
    import threading

    result = []
    thread = threading.Thread(target=lambda: result.append(_loop(frames, truth, engine, cache, None)))
    thread.start()
    thread.join()
    return result[0]


def _worker(frames, truth, engine, cache, layer, app) -> tuple[float, float]:
    from napari.qt.threading import thread_worker

    out = np.zeros(truth.shape, np.float32)
    steps, total = _steps(frames, truth, engine, cache)
    done, errors = [], []

    delivered = []

    def store(value):
        index, alpha, _ = value
        out[index] = alpha
        delivered.append(index)
        if layer is not None:
            layer.data[index] = alpha
            layer.refresh()

    worker = thread_worker(lambda: (yield from steps), progress={"total": total})()
    worker.yielded.connect(store)
    worker.errored.connect(lambda exc: errors.append(exc))
    worker.finished.connect(lambda: done.append(time.perf_counter()))
    start, cpu = time.perf_counter(), time.process_time()
    worker.start()
    while not done:
        app.processEvents()
        time.sleep(0.001)
    cpu = time.process_time() - cpu
    if errors:
        raise errors[0]
    if len(delivered) != total:
        raise RuntimeError(f"the worker delivered {len(delivered)} of {total} frames")
    return done[0] - start, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--size", default="320x180", help="W x H of the synthetic frames")
    parser.add_argument("--working-size", type=int, default=320)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--viewer", action="store_true", help="also write into a napari alpha layer and refresh it")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if not args.viewer:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from napari.qt import get_qapp

    from napari_iconmat.core import make_engine
    from napari_iconmat.core.pipeline.keyframes import QueryCache

    app = get_qapp()
    frames, truth = _frames(args.frames, (width, height))
    engine = make_engine("classical", working_size=args.working_size)
    cache = QueryCache()
    layer = viewer = None
    if args.viewer:
        import napari

        viewer = napari.Viewer(show=False)
        viewer.add_image(frames, rgb=True)
        layer = viewer.add_image(np.zeros(truth.shape, np.float32), contrast_limits=(0, 1), colormap="magma")
    _loop(frames, truth, engine, cache, layer)  # warm up: numba, the query cache, Qt

    loops, threads, workers = [], [], []
    for i in range(args.repeat):  # rotating the order, so that load from other processes hits all alike
        jobs = [
            lambda: loops.append(_loop(frames, truth, engine, cache, layer)),
            lambda: workers.append(_worker(frames, truth, engine, cache, layer, app)),
        ]
        if layer is None:  # a plain thread cannot refresh a layer: that row is for the no-viewer case
            jobs.insert(1, lambda: threads.append(_thread(frames, truth, engine, cache, layer)))
        for job in jobs[i % len(jobs) :] + jobs[: i % len(jobs)]:
            job()
    n = len(frames)
    print(
        f"{n} frames of {width}x{height}, classical engine (working_size={args.working_size}), "
        f"{'napari viewer with layer refresh' if args.viewer else 'no viewer'}, best of {args.repeat}; "
        f"{platform.machine()}, {os.cpu_count()} cores"
    )
    rows = {"plain loop": loops, "plain thread": threads, "thread_worker": workers}
    rows = {name: runs for name, runs in rows.items() if runs}
    best = {name: (1000 * min(w for w, _ in runs) / n, 1000 * min(c for _, c in runs) / n) for name, runs in rows.items()}
    print(f"{'':15} {'wall ms/frame':>14} {'CPU ms/frame':>13}")
    for name, (wall, cpu) in best.items():
        print(f"{name:15} {wall:14.2f} {cpu:13.2f}")
    (lw, lc), (ww, wc) = best["plain loop"], best["thread_worker"]
    print(f"{'worker - loop':15} {ww - lw:+14.2f} {wc - lc:+13.2f}   ({100 * (ww / lw - 1):+.1f} % wall, {100 * (wc / lc - 1):+.1f} % CPU)")
    if "plain thread" in best:
        print(f"{'worker - thread':15} {ww - best['plain thread'][0]:+14.2f}")
    if viewer is not None:
        viewer.close()


if __name__ == "__main__":
    main()
