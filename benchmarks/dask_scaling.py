"""Speed-up and overhead of the Dask path (``iconmat matte --workers N``), for docs/many-inputs.md.

One synthetic collection (``--frames`` images, default 200, at ``--size``,
default 320x240; what ``iconmat synth collection`` writes) is matted with the
classical engine as an unordered collection, alpha PNGs out, in three ways:

- **plain**: :func:`~napari_iconmat.core.pipeline.run.matte_sequence` in this process;
- **dask-1**: :func:`~napari_iconmat.core.pipeline.cluster.matte_inputs` on a local
  cluster of 1 worker process (1 thread);
- **dask-2**: the same on 2 worker processes.

The clusters are started once, before the timed runs (their start-up time is
reported on its own), and the three ways run interleaved, ``--rounds`` times
in a rotating order, so that a change in the machine's load hits all three
alike. Each run writes into a fresh folder. Reported: the median time of each
way, the speed-up dask-1 / dask-2, the overhead dask-1 / plain - 1, each also
per round, the CPU time each way used (this process plus the workers; it does
not depend on other jobs' load the way wall time does) and the load average
before and after (the machine may be shared).

Every process does its work on one thread (OpenCV, OpenMP and BLAS pinned to
1), so the comparison is of processes, as on a cluster of single-core workers.

Usage::

    python benchmarks/dask_scaling.py                       # ~3 min on 2 cores
    python benchmarks/dask_scaling.py --rounds 5 --frames 100
    python benchmarks/dask_scaling.py --batches 1,8,25      # also: dask-2 with these images per task

This is not a test: it takes minutes and its numbers depend on the machine.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy is imported; the worker processes inherit it

import argparse
import json
import platform
import resource
import shutil
import statistics
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import cv2


def _pin_threads() -> None:
    cv2.setNumThreads(1)


def _cpu_seconds() -> float:
    """User + system CPU time of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--size", default="320x240", help="WxH")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="", help="comma-separated images per task to try on 2 workers")
    parser.add_argument("--workdir", help="folder for the data and outputs (default: a temporary one, deleted)")
    parser.add_argument("--json", help="also write the numbers as JSON")
    args = parser.parse_args()

    from distributed import Client

    from napari_iconmat.core.pipeline.cluster import local_cluster, matte_inputs
    from napari_iconmat.core.pipeline.run import matte_sequence
    from napari_iconmat.core.evaluation.synth import write_synth

    _pin_threads()
    width, height = (int(v) for v in args.size.lower().split("x"))
    work = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="iconmat-dask-"))
    work.mkdir(parents=True, exist_ok=True)
    sample = write_synth("collection", work / "collection", frames=args.frames, size=(width, height), seed=0)
    options = dict(mask=sample / "reference_mask.png", reference_frame=0, order="collection")
    load_before = os.getloadavg()

    clusters, clients, startup = {}, {}, {}
    for n in (1, 2):
        t0 = time.perf_counter()
        clusters[n] = local_cluster(n)  # what --workers N starts
        clients[n] = Client(clusters[n])
        clients[n].run(_pin_threads)
        startup[n] = time.perf_counter() - t0

    counter = iter(range(10**6))

    def fresh() -> Path:
        out = work / f"out-{next(counter)}"
        shutil.rmtree(out, ignore_errors=True)
        return out

    cpu: dict[str, list[float]] = {}

    def plain() -> float:
        out = fresh()
        c0, t0 = _cpu_seconds(), time.perf_counter()
        matte_sequence(sample / "frames", out_dir=out, **options)
        seconds = time.perf_counter() - t0
        cpu.setdefault("plain", []).append(_cpu_seconds() - c0)
        shutil.rmtree(out)
        return seconds

    def dask(n: int, batch=None):
        def run() -> float:
            out = fresh()
            w0 = sum(clients[n].run(_cpu_seconds).values())
            c0, t0 = _cpu_seconds(), time.perf_counter()
            (result,) = matte_inputs([sample / "frames"], out_dir=out, client=clients[n], batch=batch, **options)
            seconds = time.perf_counter() - t0
            used = _cpu_seconds() - c0 + sum(clients[n].run(_cpu_seconds).values()) - w0
            cpu.setdefault(f"dask-{n}" + (f" batch {batch}" if batch else ""), []).append(used)
            assert result.error is None, result.error
            shutil.rmtree(out)
            return seconds

        return run

    ways = {"plain": plain, "dask-1": dask(1), "dask-2": dask(2)}
    for b in [int(v) for v in args.batches.split(",") if v.strip()]:
        ways[f"dask-2 batch {b}"] = dask(2, b)
    # warm-up: numba compilation and the workers' first imports are not what is measured
    matte_sequence(sample / "frames", out_dir=fresh(), frame_range=(0, 4), **options)
    for n in (1, 2):
        matte_inputs([sample / "frames"], out_dir=fresh(), client=clients[n], frame_range=(0, 2 * n), batch=1, **options)

    times: dict[str, list[float]] = {name: [] for name in ways}
    names = list(ways)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[: r % len(names)]:  # rotate the order each round
            times[name].append(ways[name]())
            print(f"round {r + 1}: {name:<16} {times[name][-1]:6.2f} s  (load {os.getloadavg()[0]:.2f})", flush=True)
    load_after = os.getloadavg()
    for n in (1, 2):
        clients[n].close()
        clusters[n].close()
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)

    median = {name: statistics.median(v) for name, v in times.items()}
    speedups = [a / b for a, b in zip(times["dask-1"], times["dask-2"])]
    overheads = [a / b - 1 for a, b in zip(times["dask-1"], times["plain"])]
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "frames": args.frames,
        "size": f"{width}x{height}",
        "rounds": args.rounds,
        "median_seconds": median,
        "cluster_startup_seconds": startup,
        "speedup_1_to_2_workers": median["dask-1"] / median["dask-2"],
        "speedup_per_round": speedups,
        "overhead_dask1_vs_plain": median["dask-1"] / median["plain"] - 1,
        "overhead_per_round": overheads,
        "median_cpu_seconds": {name: statistics.median(v) for name, v in cpu.items()},
        "cpu_overhead_dask1_vs_plain": statistics.median(cpu["dask-1"]) / statistics.median(cpu["plain"]) - 1,
        "overhead_with_startup": (median["dask-1"] + startup[1]) / median["plain"] - 1,
        "load_average_before": load_before,
        "load_average_after": load_after,
    }
    print()
    print(f"{args.frames} images {width}x{height}, classical engine, {args.rounds} interleaved rounds, "
          f"{report['machine']}, {report['date']}; load average (1/5/15 min) before "
          f"{'/'.join(f'{v:.1f}' for v in load_before)}, after {'/'.join(f'{v:.1f}' for v in load_after)}")  # fmt: skip
    print()
    print("| way | median wall time | frames/s | median CPU time (driver + workers) |")
    print("|---|---|---|---|")
    for name, seconds in median.items():
        print(f"| {name} | {seconds:.2f} s | {args.frames / seconds:.1f} | {report['median_cpu_seconds'][name]:.2f} s |")
    print()
    print(f"speed-up 1 -> 2 workers: {report['speedup_1_to_2_workers']:.2f}x "
          f"(per round {', '.join(f'{v:.2f}' for v in speedups)}; target >= 1.6)")  # fmt: skip
    print(f"overhead dask-1 vs plain: {100 * report['overhead_dask1_vs_plain']:+.1f}% "
          f"(per round {', '.join(f'{100 * v:+.1f}%' for v in overheads)}; target <= 10%); "
          f"with the cluster start-up ({startup[1]:.1f} s): {100 * report['overhead_with_startup']:+.1f}%; "
          f"in CPU time: {100 * report['cpu_overhead_dask1_vs_plain']:+.1f}%")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
