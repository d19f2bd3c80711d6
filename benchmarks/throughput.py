"""Speed and memory of ``matte_sequence`` with the classical engine, for docs/benchmarks.md.

Two measurements, each on synthetic video encoded to H.264 first (PyAV, libx264),
so decoding, matting and writing PNG alphas are all part of what is timed:

1. **Throughput**: ``--frames`` frames (default 40) at ``--size`` (default
   854x480) through :func:`~napari_iconmat.core.pipeline.run.matte_sequence` from
   reference frame 0. Reported twice: end to end (opening the video, encoding
   the reference, matting, writing), and per frame once the reference is
   encoded (the rate a long video approaches). A tiny warm-up run first pays
   the one-time numba compilation of pymatting (fast when ``NUMBA_CACHE_DIR``
   holds a cache), which is reported on its own.
2. **Peak memory**: a 100-frame and a 1000-frame video at ``--rss-size``
   (default 640x360; the 1000 frames are the 100 synthetic ones played back and
   forth, so the motion stays continuous). Each is matted in a fresh Python
   process, which reports its peak resident set size (``ru_maxrss``, and
   ``VmHWM`` as a check). Linux carries ``ru_maxrss`` across fork and exec, so
   these runs come first, started by a parent that has made no frames (a helper
   process writes the videos). Streaming means the two peaks should be within
   10% of each other; the RSS at the end of each run is reported too, since a
   one-frame spike in the peak could hide a slow growth.

Prints a markdown table (with the machine and date) ready to paste into docs/benchmarks.md.

Usage::

    python benchmarks/throughput.py                     # both, 3-4 min on 2 cores
    python benchmarks/throughput.py --skip-rss --frames 80
    python benchmarks/throughput.py --json bench.json --workdir /tmp/iconmat-bench
    python benchmarks/throughput.py --blas-threads 1    # on a machine other jobs share

``--blas-threads N`` pins the BLAS thread count of every run, so that timings
on a machine other jobs share are comparable (the table says which setting was
used). The matting solver itself no longer depends on BLAS threads.

This is not a test: it takes minutes and its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    import numpy as np  # imported where used, after --blas-threads has set the environment

TARGET_FPS = 2.0
TARGET_RSS_RATIO = 1.10
RSS_FRAMES = (100, 1000)
VIDEO_FPS = 25


# ---------------------------------------------------------------- inputs


def parse_size(text: str) -> tuple[int, int]:
    """``'854x480'`` -> ``(854, 480)`` as (W, H); both even (H.264 in yuv420p needs it)."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like WxH (e.g. 854x480), got {text!r}") from None
    if width < 32 or height < 32 or width % 2 or height % 2:
        raise argparse.ArgumentTypeError(f"size must have even sides of at least 32 px, got {text!r}")
    return width, height


def synth_clip(n_frames: int, size: tuple[int, int], seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """``n_frames`` synthetic (H, W, 3) uint8 frames and the reference mask (frame 0's alpha > 0.5)."""
    from napari_iconmat.core.evaluation.synth import synth_video

    frames = list(synth_video(n_frames=n_frames, size=size, seed=seed))
    return [f.image for f in frames], frames[0].alpha > 0.5


def ping_pong(frames: list[np.ndarray], n_frames: int) -> Iterator[np.ndarray]:
    """``n_frames`` frames playing ``frames`` forward, backward, forward ... (0, 1, .., k, k-1, .., 0, 1, ..)."""
    cycle = list(range(len(frames))) + list(range(len(frames) - 2, 0, -1))
    for i in range(n_frames):
        yield frames[cycle[i % len(cycle)]]


def encode_video(path: Path, frames: Iterable[np.ndarray], size: tuple[int, int]) -> Path:
    """Write RGB uint8 frames as an H.264 mp4 (libx264, yuv420p, CRF 18)."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=VIDEO_FPS)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_mask(path: Path, mask: np.ndarray) -> Path:
    import numpy as np

    from napari_iconmat.core.io.writers import atomic_write_png

    return atomic_write_png(path, np.where(mask, 255, 0).astype(np.uint8))


# ---------------------------------------------------------------- measurements


class _Clock:
    """``on_progress`` callback noting when the reference is encoded and when each frame is written."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.ready: float | None = None
        self.last: float | None = None

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if done == 0:
            self.ready = now  # matte_sequence reports 0 once the reference query is ready
        self.last = now


def measure_throughput(workdir: Path, *, frames: int, size: tuple[int, int]) -> dict:
    """Time ``matte_sequence`` on an mp4 of ``frames`` synthetic frames at ``size``."""
    import numpy as np

    from napari_iconmat.core.pipeline.run import matte_sequence

    width, height = size
    started = time.perf_counter()
    images, mask = synth_clip(frames, size)
    video = encode_video(workdir / f"throughput-{width}x{height}-{frames}.mp4", images, size)
    mask_path = write_mask(workdir / "throughput-mask.png", mask)
    del images
    prepare_s = time.perf_counter() - started

    # One-time costs (numba compiling pymatting, OpenCV initialising) stay out of the timed run.
    started = time.perf_counter()
    tiny = np.zeros((3, 48, 64, 3), np.uint8)
    tiny[:, 12:36, 16:48] = 200
    matte_sequence(tiny, out_dir=workdir / "warm-up", mask=tiny[0, ..., 0] > 100, reference_frame=0)
    warm_up_s = time.perf_counter() - started

    clock = _Clock()
    summary = matte_sequence(video, out_dir=workdir / "throughput-out", mask=mask_path, reference_frame=0, on_progress=clock)
    written = len(list((workdir / "throughput-out" / "alpha").glob("*.png")))
    setup_s = clock.ready - clock.started
    # After the reference: frames 1..N-1 matted and written (the reference's own matte costs nothing).
    steady_s = clock.last - clock.ready
    return {
        "engine": summary.engine,
        "size": [width, height],
        "frames": summary.frames,
        "png_written": written,
        "seconds": round(summary.seconds, 3),
        "fps_end_to_end": round(summary.fps, 3),
        "reference_setup_s": round(setup_s, 3),
        "fps_after_reference": round((summary.frames - 1) / steady_s, 3) if steady_s > 0 else None,
        "warm_up_s": round(warm_up_s, 3),
        "prepare_input_s": round(prepare_s, 3),
    }


def _proc_status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in KiB; None off Linux."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _run_python(*args: str) -> str:
    """Run this script with ``args`` in a fresh interpreter; return its stdout."""
    result = subprocess.run([sys.executable, os.path.abspath(__file__), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{result.stderr}")
    return result.stdout


def _child_rss_inputs(workdir: str, size: str, counts: str) -> None:
    """In a fresh process: write the memory runs' videos and mask, so the parent never holds frames."""
    size_wh = parse_size(size)
    counts_ = [int(c) for c in counts.split(",")]
    images, mask = synth_clip(max(min(counts_), 2), size_wh)
    width, height = size_wh
    write_mask(Path(workdir) / f"rss-mask-{width}x{height}.png", mask)
    for count in counts_:
        encode_video(Path(workdir) / f"rss-{width}x{height}-{count}.mp4", ping_pong(images, count), size_wh)


def _child_rss(video: str, mask: str, out_dir: str) -> None:
    """In a fresh process: matte ``video`` and print its peak RSS as JSON."""
    from napari_iconmat.core.pipeline.run import matte_sequence

    summary = matte_sequence(video, out_dir=out_dir, mask=mask, reference_frame=0)
    result = {
        "frames": summary.frames,
        "seconds": round(summary.seconds, 3),
        "fps": round(summary.fps, 3),
        "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KiB on Linux
        # VmHWM is this process's own peak. Linux carries ru_maxrss over fork and
        # exec, so it also covers the parent's RSS at the fork: the two agree
        # only while the parent stays small (it does: see measure_rss).
        "vm_hwm_kib": _proc_status_kib("VmHWM"),
        # The RSS at the end shows growth that a one-frame spike in the peak could hide.
        "end_rss_kib": _proc_status_kib("VmRSS"),
    }
    print(json.dumps(result))


def measure_rss(workdir: Path, *, size: tuple[int, int], counts=RSS_FRAMES) -> dict:
    """Peak RSS of ``matte_sequence`` on videos of ``counts`` frames, each in its own process.

    Run before anything else in this process: the children's ``ru_maxrss``
    includes this process's RSS when it starts them, so this process makes no
    frames itself (a helper process writes the videos).
    """
    width, height = size
    _run_python("--child-rss-inputs", str(workdir), f"{width}x{height}", ",".join(map(str, counts)))
    mask_path = workdir / f"rss-mask-{width}x{height}.png"
    runs = {}
    for count in counts:
        video = workdir / f"rss-{width}x{height}-{count}.mp4"
        out = _run_python("--child-rss", str(video), str(mask_path), str(workdir / f"rss-out-{count}"))
        run = runs[count] = json.loads(out.strip().splitlines()[-1])
        print(f"  {count:5d} frames: peak RSS {run['peak_rss_kib'] / 1024:.0f} MiB in {run['seconds']:.0f} s", file=sys.stderr)
        if run["vm_hwm_kib"] and abs(run["peak_rss_kib"] - run["vm_hwm_kib"]) > 0.02 * run["vm_hwm_kib"]:
            print(
                f"  warning: ru_maxrss {run['peak_rss_kib'] / 1024:.0f} MiB but VmHWM {run['vm_hwm_kib'] / 1024:.0f} MiB "
                "(ru_maxrss includes the parent's RSS at the fork)",
                file=sys.stderr,
            )
    small, large = (runs[c]["peak_rss_kib"] for c in (counts[0], counts[-1]))
    return {
        "size": [width, height],
        "parent_rss_kib": _proc_status_kib("VmRSS"),
        "runs": {str(c): r for c, r in runs.items()},
        "ratio": round(large / small, 4),
    }


# ---------------------------------------------------------------- report


def machine() -> dict:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor() or model
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": model,
        "cores": usable,
        "load_average": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "platform": platform.platform(terse=True),
        "date": datetime.date.today().isoformat(),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default",
    }


def markdown(results: dict) -> str:
    m = results["machine"]
    lines = [
        "| Measurement | Input | Result | Target |",
        "|---|---|---|---|",
    ]
    t = results.get("throughput")
    if t is not None:
        w, h = t["size"]
        ok = t["fps_after_reference"] is not None and t["fps_after_reference"] >= TARGET_FPS
        lines.append(
            f"| Throughput, engine `{t['engine']}` | {t['frames']} frames {w}×{h} H.264 mp4 → PNG alphas "
            f"| **{t['fps_after_reference']:.2f} frames/s** after the reference "
            f"({t['fps_end_to_end']:.2f} frames/s end to end, reference {t['reference_setup_s']:.1f} s) "
            f"| ≥ {TARGET_FPS:g} frames/s {'(met)' if ok else '(missed)'} |"
        )
    r = results.get("rss")
    if r is not None:
        w, h = r["size"]
        counts = list(r["runs"])
        for count in counts:
            run = r["runs"][count]
            end = f", {run['end_rss_kib'] / 1024:.0f} MiB at the end" if run.get("end_rss_kib") else ""
            lines.append(
                f"| Peak RSS, {count} frames | {count} frames {w}×{h} H.264 mp4, fresh process "
                f"| {run['peak_rss_kib'] / 1024:.0f} MiB peak{end} ({run['fps']:.1f} frames/s) | |"
            )
        ok = r["ratio"] <= TARGET_RSS_RATIO
        lines.append(
            f"| Peak RSS ratio | {counts[-1]} vs {counts[0]} frames | **{r['ratio']:.3f}** "
            f"| ≤ {TARGET_RSS_RATIO:.2f} {'(met)' if ok else '(missed)'} |"
        )
    load = ", ".join(f"{v:g}" for v in m["load_average"]) if m["load_average"] else "n/a"
    lines += [
        "",
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, {m['platform']}; "
        f"BLAS threads: {m['blas_threads']}; load average at start {load}; {m['date']}. "
        f"Command: `python benchmarks/throughput.py {' '.join(results['argv'])}`".rstrip() + ".",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=40, help="frames in the throughput video (default 40)")
    parser.add_argument("--size", type=parse_size, default=(854, 480), help="throughput frame size WxH (default 854x480)")
    parser.add_argument("--rss-size", type=parse_size, default=(640, 360), help="frame size WxH of the memory runs (default 640x360)")
    parser.add_argument("--skip-rss", action="store_true", help="only measure throughput")
    parser.add_argument("--skip-throughput", action="store_true", help="only measure memory")
    parser.add_argument(
        "--blas-threads",
        type=int,
        metavar="N",
        help="set OPENBLAS/OMP/MKL_NUM_THREADS to N for every run (default: the libraries' own choice); "
        "1 keeps results meaningful on a machine that other jobs share",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--workdir", type=Path, help="keep the videos and outputs here (default: a temporary folder)")
    parser.add_argument("--child-rss", nargs=3, metavar=("VIDEO", "MASK", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--child-rss-inputs", nargs=3, metavar=("WORKDIR", "SIZE", "COUNTS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_rss:
        _child_rss(*args.child_rss)
        return 0
    if args.child_rss_inputs:
        _child_rss_inputs(*args.child_rss_inputs)
        return 0
    if args.frames < 2:
        parser.error(f"--frames must be at least 2, got {args.frames}")
    if args.blas_threads is not None:
        if args.blas_threads < 1:
            parser.error(f"--blas-threads must be at least 1, got {args.blas_threads}")
        # Before numpy is imported here, and inherited by the child processes.
        if "numpy" in sys.modules:
            print("warning: numpy is already imported: --blas-threads applies to the child processes only", file=sys.stderr)
        for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[variable] = str(args.blas_threads)

    results: dict = {"machine": machine(), "argv": list(sys.argv[1:] if argv is None else argv)}
    with tempfile.TemporaryDirectory(prefix="iconmat-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        # Memory first, while this process is small (see measure_rss).
        if not args.skip_rss:
            print(f"peak RSS: {' and '.join(map(str, RSS_FRAMES))} frames at {args.rss_size[0]}x{args.rss_size[1]} ...", file=sys.stderr)
            results["rss"] = measure_rss(workdir, size=args.rss_size)
        if not args.skip_throughput:
            print(f"throughput: {args.frames} frames at {args.size[0]}x{args.size[1]} ...", file=sys.stderr)
            results["throughput"] = measure_throughput(workdir, frames=args.frames, size=args.size)
    table = markdown(results)
    results["markdown"] = table
    if args.json is not None:
        from napari_iconmat.core.pipeline.run import write_json

        write_json(args.json, results)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
