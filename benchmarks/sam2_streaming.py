"""Speed and memory of the ``sam2`` engine streaming a video, default-size model with random weights.

Builds ``Sam2VideoModel`` from the default ``Sam2VideoConfig`` (the hiera-tiny
architecture of ``facebook/sam2.1-hiera-tiny``; random weights: the speed does
not depend on them, nothing is downloaded) and streams synthetic 854x480 frames
(a textured disk moving over a textured background, made on the fly) through
the engine, one frame at a time with its track state, as ``iconmat matte`` does:

- **frames/s of the model stage**: preprocessing, the memory-conditioned SAM 2
  step and the logits at the frame's size, per frame (``--stage model``, default);
  ``--stage engine`` times whole ``matte_frame`` calls, matting stage included
  (with random weights the mask, so the matting cost, is arbitrary: the model
  stage is the number that carries over to real weights);
- **peak RSS** of the process (``ru_maxrss``) after ``--frames`` frames. Run it
  twice (e.g. ``--frames 100`` and ``--frames 1000``) to check that memory does
  not grow with the video: ``--compare 100,1000`` does that in two child processes
  and prints both and their ratio;
- on a GPU, ``--dtypes float32,bfloat16`` repeats the run per dtype, and the peak
  GPU memory (``torch.cuda.max_memory_allocated``) is reported too.

Usage::

    python benchmarks/sam2_streaming.py --frames 20 --threads 2                 # this CPU
    python benchmarks/sam2_streaming.py --compare 100,1000 --threads 2          # RSS, 100 vs 1000 frames
    python benchmarks/sam2_streaming.py --device cuda --dtypes float32,bfloat16 --frames 300
    python benchmarks/sam2_streaming.py --config tiny --frames 5                # seconds: checks the script

The table goes to docs/engines.md (section SAM 2). This is not a test: its numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import subprocess
import sys
import time

import numpy as np


def _frames(n: int, size=(480, 854), seed: int = 0):
    """``n`` RGB uint8 frames: a textured disk moving over a textured background."""
    h, w = size
    rng = np.random.default_rng(seed)
    background = (rng.random((h, w, 3)) * 80 + 40).astype(np.uint8)
    texture = (rng.random((h, w, 3)) * 60 + 160).astype(np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        cy = h / 2 + 0.25 * h * np.sin(i / 25.0)
        cx = w / 2 + 0.3 * w * np.cos(i / 40.0)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < (0.15 * h) ** 2
        frame = background.copy()
        frame[disk] = texture[disk]
        yield frame, disk


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run(args, dtype: str) -> dict:
    import torch

    from napari_iconmat.core.engines.sam2 import model as sam2_model
    from napari_iconmat.core.prompt import make_prompt
    from napari_iconmat.core.registry import make_engine
    from napari_iconmat.core.engines.sam2.preprocess import logits_to_frame

    if args.threads:
        torch.set_num_threads(args.threads)
    engine = make_engine(
        "sam2", random_init=args.config, refiner="closed-form", device=args.device, dtype=dtype
    )
    loaded = engine._loaded
    frames = _frames(args.frames + 1)
    reference, mask = next(frames)
    start = time.perf_counter()
    query = engine.encode_reference(reference, make_prompt(mask.astype(np.uint8)))
    encode_s = time.perf_counter() - start
    _, state = engine.reference_matte(query)
    conditioning = engine._conditioning(query)
    rss_before = _peak_rss_mib()
    if loaded.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    memory, index = {}, 0
    for frame, _ in frames:
        t0 = time.perf_counter()
        if args.stage == "engine":
            _, state = engine.matte_frame(frame, query, state=state)
        else:  # the model stage: what matte_frame does before the matting stage
            from napari_iconmat.core.frames import to_rgb_float

            rgb = to_rgb_float(frame, (0.0, 255.0))
            index += 1
            entry, low_res, _ = sam2_model.step(
                loaded, engine._pixels(rgb), rgb.shape[:2], conditioning=conditioning, memory=memory, index=index
            )
            memory = sam2_model.prune(loaded, {**memory, index: entry}, index)
            logits_to_frame(low_res, loaded.size, rgb.shape[:2])
        if loaded.device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    timed = times[args.warmup :] or times
    result = {
        "config": args.config,
        "stage": args.stage,
        "device": str(loaded.device),
        "dtype": str(loaded.dtype).replace("torch.", ""),
        "frames": args.frames,
        "size": "854x480",
        "model_side": loaded.size,
        "threads": torch.get_num_threads(),
        "encode_reference_s": round(encode_s, 3),
        "frames_per_s": round(len(timed) / sum(timed), 3),
        "median_frame_s": round(float(np.median(timed)), 4),
        "peak_rss_mib": round(_peak_rss_mib(), 1),
        "peak_rss_before_frames_mib": round(rss_before, 1),
    }
    if loaded.device.type == "cuda":
        result["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20, help="frames streamed after the reference")
    parser.add_argument("--warmup", type=int, default=2, help="first frames left out of the rate")
    parser.add_argument("--config", choices=("full", "tiny"), default="full")
    parser.add_argument("--stage", choices=("model", "engine"), default="model")
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtypes", default="auto", help="comma-separated: auto, float32, bfloat16, float16")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--compare", default=None, help="A,B: peak RSS after A and after B frames, in child processes")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    if args.compare:
        results = []
        for n in (int(x) for x in args.compare.split(",")):
            child = [sys.executable, __file__, "--frames", str(n), "--config", args.config, "--stage", args.stage,
                     "--dtypes", args.dtypes, "--threads", str(args.threads), "--warmup", str(args.warmup)]
            if args.device:
                child += ["--device", args.device]
            out = subprocess.run(child, capture_output=True, text=True, check=True).stdout
            results.append(json.loads(out.strip().splitlines()[-1])[0])
        first, last = results[0], results[-1]
        print(f"peak RSS after {first['frames']} frames: {first['peak_rss_mib']} MiB; after {last['frames']}: "
              f"{last['peak_rss_mib']} MiB; ratio {last['peak_rss_mib'] / first['peak_rss_mib']:.3f}")
        for r in results:
            print(f"  {r['frames']} frames: {r['frames_per_s']} frames/s")
    else:
        results = [run(args, dtype) for dtype in args.dtypes.split(",")]
        print("| device | dtype | stage | frames | frames/s | median s/frame | reference encode s | peak RSS MiB |")
        print("|---|---|---|---|---|---|---|---|")
        for r in results:
            print(f"| {r['device']} | {r['dtype']} | {r['stage']} | {r['frames']} | {r['frames_per_s']} | "
                  f"{r['median_frame_s']} | {r['encode_reference_s']} | {r['peak_rss_mib']} |")
    meta = {"date": datetime.date.today().isoformat(), "machine": platform.processor() or platform.machine()}
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"meta": meta, "results": results}, handle, indent=2)
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
