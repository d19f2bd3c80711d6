import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from napari_iconmat.core.engines.classical.background import background_change, background_match, recall, remember
from napari_iconmat.core.engines.classical.motion import fit_camera


def _scene(seed=0, h=60, w=80):
    """A textured background in Lab (values of the size CIE Lab has)."""
    rng = np.random.default_rng(seed)
    lab = np.empty((h, w, 3), np.float32)
    lab[..., 0] = rng.uniform(20, 80, (h, w))
    lab[..., 1:] = rng.uniform(-30, 30, (h, w, 2))
    return lab


def _square(h=60, w=80, x0=10, y0=20, side=16):
    mask = np.zeros((h, w), np.float32)
    mask[y0 : y0 + side, x0 : x0 + side] = 1.0
    return mask


def test_remember_stores_only_what_lies_away_from_the_object():
    lab, mask = _scene(), _square()
    memory = remember(lab, mask, margin=0.1)
    radius = 0.1 * 16  # 0.1 x sqrt(area), at least 2 px
    assert memory.seen[mask > 0].max() == 0.0
    assert memory.seen[20 + 8, 10 + 16 + 1] == 0.0  # 1 px beside the object: within the margin
    assert memory.seen[20 + 8, 10 + 16 + int(np.ceil(max(radius, 2))) + 2] == 1.0
    np.testing.assert_array_equal(memory.lab[memory.seen == 1], lab[memory.seen == 1])


def test_a_covered_place_keeps_the_colours_seen_before_and_fades():
    lab = _scene()
    first = remember(lab, _square(x0=10))
    moved = _square(x0=50)  # the object moved onto a place seen before
    later = remember(_scene(seed=1), moved, first, fade=0.9)
    covered = moved > 0
    np.testing.assert_array_equal(later.lab[covered], lab[covered])
    np.testing.assert_allclose(later.seen[covered], 0.9)
    # the place the object left is seen again
    assert later.seen[28, 15] == 1.0


def test_the_remembered_background_matches_it_and_not_the_object_moved_onto_it():
    background = _scene()
    memory = remember(background, _square(x0=10))
    frame = background.copy()
    frame[20:36, 50:66] = (50.0, 40.0, 20.0)  # the object, now on a place seen before
    recalled = recall(memory, np.eye(3))
    match = background_match(frame, recalled)
    assert match[5:15, 5:75].min() > 0.99  # unchanged background, far from both squares
    assert match[24:32, 54:62].max() == 0.0  # the object is no background
    assert match[24:32, 14:22].max() == 0.0  # never seen: says nothing


def test_a_background_in_the_object_colour_is_still_background():
    # a patch of the object's very colour, seen as background: the memory calls it background
    background = _scene()
    background[5:15, 60:75] = (50.0, 40.0, 20.0)
    memory = remember(background, _square(x0=10))
    match = background_match(background, recall(memory, np.eye(3)))
    assert match[7:13, 62:73].min() > 0.99


def test_recall_follows_the_camera():
    h, w = 60, 80
    background = _scene(h=h, w=w)
    memory = remember(background, _square())
    shift = 3  # the camera pans: everything moves 3 px to the right
    frame = np.zeros_like(background)
    frame[:, shift:] = background[:, :-shift]
    homography = np.array([[1, 0, -shift], [0, 1, 0], [0, 0, 1]], np.float64)  # now -> before
    recalled = recall(memory, homography)
    match = background_match(frame, recalled)
    assert match[5:15, 10:70].min() > 0.99
    assert recalled.seen[:, :shift].max() == 0.0  # what came into view is unseen
    assert recall(memory, None) is None


def test_fit_camera_reads_the_background_flow():
    h, w = 60, 80
    carried = _square(h, w)
    confidence = np.ones((h, w), np.float32)
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = -2.0  # background: each pixel now was 2 px to the left
    flow[carried > 0] = (5.0, 0.0)  # the object moves otherwise
    homography = fit_camera(flow, carried, confidence)
    np.testing.assert_allclose(homography / homography[2, 2], [[1, 0, -2], [0, 1, 0], [0, 0, 1]], atol=1e-3)
    assert fit_camera(flow, np.zeros((h, w), np.float32), confidence) is None  # no object



def test_a_change_next_to_the_object_is_a_part_of_it_but_not_a_shadow_nor_far_away():
    background = _scene(h=100, w=140)
    carried = _square(100, 140, x0=10, y0=30, side=30)  # "next to it" reaches 0.4 x 30 = 12 px
    memory = recall(remember(background, carried), np.eye(3))
    frame = background.copy()
    frame[38:50, 40:52] = (50.0, 60.0, 40.0)  # a limb swung out beside the object, onto seen ground
    frame[64:72, 10:40, 0] -= 30.0  # a shadow below it: the same ground, darker
    frame[5:15, 110:120] = (50.0, 60.0, 40.0)  # a change far from the object
    change = background_change(frame, memory, carried)
    assert change[40:48, 45:47].min() > 0.4  # 5-6 px from the object, beyond the edge it does not remember
    assert change[66:70, 12:38].max() == 0.0
    assert change[7:13, 112:118].max() == 0.0
    assert change[5:25, 60:100].max() == 0.0  # unchanged background


DAVIS_TRAIN = Path(os.environ.get("ICONMAT_DAVIS_TRAIN", Path(__file__).resolve().parents[4] / ".." / "shared" / "data" / "davis2016-train"))


@pytest.mark.skipif(not (DAVIS_TRAIN / "horsejump-low" / "frames").is_dir(), reason="DAVIS train data not here (set ICONMAT_DAVIS_TRAIN)")
def test_the_memory_keeps_a_track_off_a_fence_of_its_colours():
    # horsejump-low: the grey horse passes white fence rails it was seen beside; without the memory the cut
    # creeps onto them (IoU 0.62 at frame 20), with it the fence stays background
    from napari_iconmat.core import make_engine, make_prompt, propagate
    from napari_iconmat.core.evaluation.metrics import iou
    from napari_iconmat.core.io.readers import open_frames

    sequence = DAVIS_TRAIN / "horsejump-low"
    frames = open_frames(sequence / "frames")
    names = sorted(p.stem for p in (sequence / "masks").glob("*.png"))
    truth = [cv2.imread(str(sequence / "masks" / f"{name}.png"), cv2.IMREAD_GRAYSCALE) > 127 for name in names[:21]]
    means = {}
    for weight in (0.0, 4.0):
        engine = make_engine("classical", background_memory=weight)
        query = engine.encode_reference(frames[0], make_prompt(truth[0]))
        scores = [iou(matte.alpha, truth[i]) for i, matte in propagate(frames, query, engine, reference_index=0, frame_range=(0, 21)) if i > 0]
        means[weight] = float(np.mean(scores))
    assert means[4.0] > means[0.0] + 0.03, means


def test_the_reference_background_is_remembered_up_to_the_users_mask():
    # on the reference the mask is the user's truth: its background is remembered up to the
    # matting band (2 px here), not the 0.1 x sqrt(area) kept clear of later frames' cuts
    from napari_iconmat.core import make_engine, make_prompt

    rng = np.random.default_rng(0)
    image = rng.integers(0, 120, (120, 160, 3), dtype=np.uint8)
    mask = np.zeros((120, 160), bool)
    mask[30:90, 40:100] = True  # sqrt(area) 60: 0.1 of it is 6 px
    image[mask] = (220, 40, 40)
    engine = make_engine("classical")
    _, track = engine.reference_matte(engine.encode_reference(image, make_prompt(mask)))
    seen = track.background.seen
    assert seen[60, 100 + 3] == 1.0  # 4 px beside the object
    assert seen[mask].max() == 0.0
    assert make_engine("classical", background_memory=0).reference_matte(engine.encode_reference(image, make_prompt(mask)))[1].background is None
