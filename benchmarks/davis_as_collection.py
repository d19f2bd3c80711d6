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

from davis_layout import frame_paths, parse, read_mask


def score_sequence(sequence: Path, step: int, options: dict) -> tuple[str, list[float]]:
    """IoU per collection image of one sequence (reference = its first frame)."""
    import imageio.v3 as iio

    from napari_iconmat.core import make_engine, make_prompt
    from napari_iconmat.core.evaluation.metrics import iou

    engine = make_engine("classical", **options)
    frames = frame_paths(sequence)
    query = engine.encode_reference(iio.imread(frames[0]), make_prompt(read_mask(sequence / "masks" / f"{frames[0].stem}.png")))
    scores = []
    for frame in frames[step::step]:
        matte, _ = engine.matte_frame(iio.imread(frame), query)  # no state: no temporal neighbour
        scores.append(iou(matte.alpha, read_mask(sequence / "masks" / f"{frame.stem}.png")))
    return sequence.name, scores


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--step", type=int, default=5, help="every STEP-th frame after frame 0 (default 5)")
    setup = parse(parser, argv, positive="step")
    if setup is None:
        return 2
    args, sequences, options = setup
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
