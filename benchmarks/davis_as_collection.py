"""The collection path on real images: DAVIS videos matted as collections.

Each sequence of a DAVIS-layout folder (``<seq>/frames/*.jpg|png``, ``<seq>/masks/*.png``) gives
a reference (frame 0 and its mask) and a collection: every ``--step``-th frame after it, each
matted alone, with no temporal neighbour, as ``iconmat matte --order collection`` would. The
score is the IoU of alpha > 0.5 against the frame's mask, per sequence and as a mean. Objects
move, turn and deform between the frames, so this checks the keypoint placement and the colour
cut of collection images on real photographs; compare with ``iconmat bench`` on the same folder,
where the frames are tracked.

Usage::

    python benchmarks/davis_as_collection.py ../shared/data/davis2016-dev
    python benchmarks/davis_as_collection.py DIR --step 10 --engine-option placed_soft=0
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np


def _read_mask(path: Path) -> np.ndarray:
    import imageio.v3 as iio

    mask = iio.imread(path)
    return (mask[..., 0] if mask.ndim == 3 else mask) > 127


def _frames(sequence: Path) -> list[Path]:
    return sorted(p for p in (sequence / "frames").iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))


def score_sequence(sequence: Path, step: int, options: dict) -> tuple[str, list[float]]:
    """IoU per collection image of one sequence (reference = its first frame)."""
    import imageio.v3 as iio

    from napari_iconmat.core import make_engine, make_prompt
    from napari_iconmat.core.metrics import iou

    engine = make_engine("classical", **options)
    frames = _frames(sequence)
    query = engine.encode_reference(iio.imread(frames[0]), make_prompt(_read_mask(sequence / "masks" / f"{frames[0].stem}.png")))
    scores = []
    for frame in frames[step::step]:
        matte, _ = engine.matte_frame(iio.imread(frame), query)  # no state: no temporal neighbour
        scores.append(iou(matte.alpha, _read_mask(sequence / "masks" / f"{frame.stem}.png")))
    return sequence.name, scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="DAVIS-layout folder")
    parser.add_argument("--step", type=int, default=5, help="every STEP-th frame after frame 0 (default 5)")
    parser.add_argument("--engine-option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    if not args.folder.is_dir():
        print(f"error: {args.folder} is not a folder", file=sys.stderr)
        return 2
    sequences = sorted(p for p in args.folder.iterdir() if (p / "frames").is_dir() and (p / "masks").is_dir())
    if not sequences or args.step < 1:
        print(f"error: no <seq>/frames + <seq>/masks folders in {args.folder}, or --step < 1", file=sys.stderr)
        return 2
    options = {}
    for item in args.engine_option:
        key, _, value = item.partition("=")
        try:
            options[key] = float(value)
        except ValueError:
            print(f"error: --engine-option {item!r} is not KEY=NUMBER", file=sys.stderr)
            return 2
    from napari_iconmat.core import make_engine

    try:
        make_engine("classical", **options)
    except Exception as error:  # an unknown parameter, a value out of range
        print(f"error: classical engine options {options}: {error}", file=sys.stderr)
        return 2
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(score_sequence, sequences, [args.step] * len(sequences), [options] * len(sequences)))
    print("| sequence | images | mean IoU |")
    print("|---|---|---|")
    for name, scores in results:
        print(f"| {name} | {len(scores)} | {np.mean(scores):.4f} |")
    print(f"| mean over {len(results)} sequences | | {np.mean([np.mean(s) for _, s in results]):.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
