"""Issue 20, defect 9: a correction never makes the frames it touches worse (by more than 0.01 IoU).

The widget's rule (``Keyframes(n, blend=True)``): mark frame 0, propagate, paint the true mask on a
later frame, propagate again; every other frame's IoU (alpha > 0.5 against the truth) must not drop.
On the plugin's sample at two working sizes, and on a DAVIS dev video when the shared data is there.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from napari_iconmat.core import Keyframes, QueryCache, make_engine, make_prompt
from napari_iconmat.core.evaluation.metrics import iou
from napari_iconmat.core.pipeline.keyframes import matte_keyframes

TOLERANCE = 0.01
DAVIS_DEV = Path(os.environ.get("ICONMAT_DAVIS_DEV", Path(__file__).resolve().parents[3] / ".." / "shared" / "data" / "davis2016-dev"))


def _worst_change(frames, masks, correction, working_size):
    engine = make_engine("classical", working_size=working_size)
    keys, cache = Keyframes(len(frames), blend=True), QueryCache()
    keys.set(0, frames[0], make_prompt(masks[0]))
    before = {i: m.alpha for i, m in matte_keyframes(frames, engine, keys, keys.plan(engine), cache=cache)}
    keys.set(correction, frames[correction], make_prompt(masks[correction]))
    after = dict(before)
    after.update({i: m.alpha for i, m in matte_keyframes(frames, engine, keys, keys.plan(engine), cache=cache)})
    others = [i for i in range(1, len(frames)) if i != correction]
    change = {i: iou(after[i], masks[i]) - iou(before[i], masks[i]) for i in others}
    worst = min(change, key=change.get)
    return change[worst], worst, iou(after[correction], masks[correction]) - iou(before[correction], masks[correction])


@pytest.mark.parametrize("working_size", [96, 320])
def test_a_correction_of_the_sample_makes_no_frame_worse(working_size):
    from napari_iconmat._sample_data import sample_sequence

    (frames, _, _), (alpha, _, _) = sample_sequence()
    worst, frame, corrected = _worst_change(frames, alpha > 0.5, 14, working_size)
    assert worst >= -TOLERANCE, f"frame {frame} got worse by {-worst:.3f}"
    assert corrected >= 0.0


@pytest.mark.skipif(not (DAVIS_DEV / "goat" / "frames").is_dir(), reason="DAVIS dev data not here (set ICONMAT_DAVIS_DEV)")
def test_a_correction_of_a_davis_dev_video_makes_no_frame_worse():
    import cv2

    sequence = DAVIS_DEV / "goat"
    frames, masks = [], []
    for path in sorted((sequence / "frames").iterdir())[:30]:
        image = cv2.imread(str(path))[..., ::-1]
        mask = cv2.imread(str(sequence / "masks" / f"{path.stem}.png"), cv2.IMREAD_GRAYSCALE) > 127
        size = (image.shape[1] // 4, image.shape[0] // 4)
        frames.append(cv2.resize(image, size, interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_AREA) > 0.5)
    worst, frame, _ = _worst_change(np.stack(frames), np.stack(masks), 20, 96)
    assert worst >= -TOLERANCE, f"frame {frame} got worse by {-worst:.3f}"
