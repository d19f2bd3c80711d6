"""How opaque the mattes are inside opaque objects of real videos, and how clean outside them.

IoU of alpha > 0.5 (what ``iconmat bench`` scores on DAVIS) does not see a matte that is grey
inside the object or faintly present around it. DAVIS masks are binary and its objects mostly
opaque (a dancer, a car, a horse; the goat's long hair is the exception), so away from the mask's
edge the alpha should be 1 inside and 0 outside. Per sequence (reference = frame 0 and its mask,
frames tracked as ``iconmat bench`` does), over frames 1.., and for the reference frame's own
alpha:

- ``IoU``: alpha > 0.5 against the mask;
- ``interior deficit``: mean of 1 - alpha more than ``--margin`` px inside the mask;
- ``grey interior``: the fraction of those pixels with alpha in (0.1, 0.9);
- ``exterior mass``: the alpha summed more than ``--margin`` px outside the mask, per mask pixel.

Usage::

    python benchmarks/davis_opacity.py ../shared/data/davis2016-dev
    python benchmarks/davis_opacity.py DIR --margin 8 --engine-option band=0.02
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from davis_layout import frame_paths, parse, read_mask


def opacity_scores(alpha: np.ndarray, mask: np.ndarray, margin: int) -> tuple[float, float, float, float]:
    """(IoU, interior deficit, grey interior fraction, exterior mass) of one alpha (H, W) in [0, 1]
    against a binary mask (H, W), ``margin`` px away from the mask's edge."""
    import cv2

    from napari_iconmat.core.evaluation.metrics import iou

    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * margin + 1, 2 * margin + 1))
    inside = cv2.erode(mask.astype(np.uint8), disk) > 0
    outside = cv2.dilate(mask.astype(np.uint8), disk) == 0
    interior = alpha[inside]
    deficit = float((1.0 - interior).mean()) if interior.size else 0.0
    grey = float(((interior > 0.1) & (interior < 0.9)).mean()) if interior.size else 0.0
    return iou(alpha, mask), deficit, grey, float(alpha[outside].sum() / max(int(mask.sum()), 1))


def score_sequence(sequence: Path, margin: int, options: dict) -> tuple[str, np.ndarray, np.ndarray]:
    """Scores of the reference frame's alpha, and the mean over the tracked frames 1.., of one sequence."""
    import imageio.v3 as iio

    from napari_iconmat.core import make_engine, make_prompt, propagate

    engine = make_engine("classical", **options)
    frames = frame_paths(sequence)
    masks = [read_mask(sequence / "masks" / f"{f.stem}.png") for f in frames]
    images = [iio.imread(f) for f in frames]
    query = engine.encode_reference(images[0], make_prompt(masks[0]))
    reference, tracked = None, []
    for index, matte in propagate(images, query, engine, reference_index=0):
        scores = opacity_scores(matte.alpha, masks[index], margin)
        if index == 0:
            reference = scores
        else:
            tracked.append(scores)
    return sequence.name, np.array(reference), np.mean(tracked, axis=0)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--margin", type=int, default=5, help="px from the mask's edge left out (default 5)")
    setup = parse(parser, argv, positive="margin")
    if setup is None:
        return 2
    args, sequences, options = setup
    count = len(sequences)
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(score_sequence, sequences, [args.margin] * count, [options] * count))
    print("| sequence | frames | IoU | interior deficit | grey interior | exterior mass | reference frame: IoU / deficit / grey / exterior |")
    print("|---|---|---|---|---|---|---|")
    for name, reference, tracked in results:
        print(f"| {name} | 1.. | {' | '.join(f'{v:.4f}' for v in tracked)} | {' / '.join(f'{v:.3f}' for v in reference)} |")
    tracked_mean = np.mean([t for _, _, t in results], axis=0)
    reference_mean = np.mean([r for _, r, _ in results], axis=0)
    print(f"| mean over {count} sequences | | {' | '.join(f'{v:.4f}' for v in tracked_mean)} | {' / '.join(f'{v:.3f}' for v in reference_mean)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
