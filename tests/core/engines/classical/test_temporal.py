"""Temporal pieces of the classical engine: the 'unchanged' check and the carry of thin parts."""

import cv2
import numpy as np

from napari_iconmat.core.engines.classical.temporal import carry_thin_alpha, carry_thin_parts, object_motion, unchanged


def _texture(h=64, w=96, seed=0):
    rng = np.random.default_rng(seed)
    return cv2.GaussianBlur(rng.uniform(40, 220, (h, w)).astype(np.float32), (0, 0), 1.5).astype(np.uint8)


def test_unchanged_is_one_on_a_repeated_frame_and_falls_around_a_change():
    frame = _texture()
    assert np.array_equal(unchanged(frame, frame, 4.0), np.ones(frame.shape, np.float32))
    changed = frame.copy()
    changed[30:34, 40:44] = np.clip(changed[30:34, 40:44].astype(int) + 60, 0, 255).astype(np.uint8)
    weight = unchanged(changed, frame, 4.0, radius=2)
    assert weight[30:34, 40:44].max() < 0.05
    assert weight[29, 39] < 0.05  # the neighbourhood counts too
    assert weight[5:20, 5:20].min() == 1.0  # far away nothing changed


def test_unchanged_tolerates_sensor_noise_and_can_be_switched_off():
    frame = _texture()
    rng = np.random.default_rng(1)
    noisy = np.clip(frame.astype(int) + rng.integers(-2, 3, frame.shape), 0, 255).astype(np.uint8)
    assert unchanged(noisy, frame, 4.0).mean() > 0.8
    moved = np.roll(frame, 3, axis=1)
    assert unchanged(moved, frame, 4.0).mean() < 0.3
    assert np.array_equal(unchanged(moved, frame, 0.0), np.ones(frame.shape, np.float32))


def _object(dy):
    """A 24 x 24 square with a 2 px wide, 20 px long antenna to its right, shifted down by dy."""
    mask = np.zeros((64, 96), np.float32)
    mask[14 + dy : 38 + dy, 20:44] = 1
    mask[25 + dy : 27 + dy, 44:64] = 1
    return mask


def test_thin_parts_move_with_the_object_not_with_the_dense_flow():
    before, after = _object(0), _object(6)
    background = _texture()
    prev_gray = np.where(before > 0, 30, background).astype(np.uint8)
    gray = np.where(after > 0, 30, background).astype(np.uint8)
    # a smooth dense flow: the object's motion on the solid square, the still background elsewhere
    # (also on the antenna, which is what a dense flow does to a 2 px structure)
    flow = np.zeros((64, 96, 2), np.float32)
    flow[20:44, 20:44, 1] = -6.0
    grid_x, grid_y = np.meshgrid(np.arange(96, dtype=np.float32), np.arange(64, dtype=np.float32))
    dense = cv2.remap(before, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR)
    confidence = np.ones_like(dense)
    confidence[14:20, 20:44] = 0.0  # uncovered background: the forward-backward check fails there
    assert dense[31:33, 46:64].max() == 0  # the dense carry loses the antenna where it is now...
    assert dense[25:27, 46:64].min() == 1  # ... and leaves it where it was (a ghost)

    carried, trust = carry_thin_parts(before, prev_gray, gray, flow, dense, confidence, window=0.5)
    assert carried[31:33, 46:64].mean() > 0.8  # the antenna is where it is now
    assert carried[25:27, 46:64].max() < 0.2  # no ghost
    assert carried[29, 46:64].max() < 0.2 and carried[34, 46:64].max() < 0.2  # still 2 px wide
    assert carried[20:44, 20:44].mean() > 0.95  # the solid part keeps the dense carry
    assert trust[31:33, 46:64].mean() > 0.8  # the object flow explains the image there


def test_carry_thin_parts_leaves_a_still_solid_object_and_the_switched_off_case_alone():
    disk = np.zeros((64, 96), np.float32)
    cv2.circle(disk, (40, 32), 12, 1.0, -1)
    gray = np.where(disk > 0, 30, _texture()).astype(np.uint8)
    flow = np.zeros((64, 96, 2), np.float32)
    confidence = np.full((64, 96), 0.7, np.float32)
    carried, trust = carry_thin_parts(disk, gray, gray, flow, disk, confidence, window=0.1)
    assert np.abs(carried - disk).max() < 1e-6 and np.abs(trust - confidence).max() < 0.31
    with_antenna = _object(0)
    carried, trust = carry_thin_parts(with_antenna, gray, gray, flow, with_antenna, confidence, window=0.0)
    assert carried is with_antenna and trust is confidence
    empty = np.zeros_like(disk)
    carried, trust = carry_thin_parts(empty, gray, gray, flow, empty, confidence, window=0.1)
    assert carried is empty and trust is confidence


def test_growth_onto_re_detected_parts_is_not_capped_as_a_leak():
    from napari_iconmat.core.engines.classical.engine import _growth_limit

    carried = np.zeros((40, 60), np.float32)
    carried[10:30, 10:30] = 1.0  # 400 px carried
    found = np.zeros_like(carried)
    found[10:30, 30:45] = 0.8  # 300 px of reference parts found again next to it (behind a former occluder)
    found[0:5, 0:5] = 0.3  # weak evidence does not count
    assert _growth_limit(carried, None, 1.25, 1.0) == 500.0
    assert _growth_limit(carried, found, 1.25, 1.0) == 800.0
    assert _growth_limit(carried, found, 1.25, 0.0) == 500.0
    found[10:30, 10:30] = 1.0  # found again inside the carried object: no extra allowance
    assert _growth_limit(carried, found, 1.25, 1.0) == 800.0


def _flow_of(matrix, h=64, w=96):
    """Backward flow of a (2, 3) motion: for each pixel now, the offset to where it was."""
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    inverse = cv2.invertAffineTransform(matrix)
    before_x = inverse[0, 0] * grid_x + inverse[0, 1] * grid_y + inverse[0, 2]
    before_y = inverse[1, 0] * grid_x + inverse[1, 1] * grid_y + inverse[1, 2]
    return np.stack([before_x - grid_x, before_y - grid_y], -1).astype(np.float32)


def test_object_motion_recovers_a_rotation_and_shift_and_refuses_disagreeing_halves():
    matrix = cv2.getRotationMatrix2D((40.0, 30.0), 8.0, 1.05)
    matrix[:, 2] += (3.0, -2.0)
    carried = np.zeros((64, 96), np.float32)
    carried[10:50, 15:70] = 1.0
    confidence = np.ones_like(carried)
    found = object_motion(carried, confidence, _flow_of(matrix))
    assert found is not None and np.abs(found - matrix).max() < 0.05
    # three parts moving three ways: no one motion moves half of the object
    flow = np.zeros((64, 96, 2), np.float32)
    flow[:, :33, 0] = -5.0
    flow[:, 33:52, 1] = -5.0
    flow[:, 52:, 0] = 5.0
    assert object_motion(carried, confidence, flow) is None
    # too little trusted solid object
    assert object_motion(carried, np.zeros_like(confidence), _flow_of(matrix)) is None


def test_thin_parts_of_the_alpha_are_carried_by_the_object_motion_and_nothing_else():
    before = _object(0)  # square body and a 2 px antenna
    shift = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 6.0]])
    alpha, region = carry_thin_alpha(before, shift, before.shape, grow=2)
    after = _object(6)
    antenna = np.zeros_like(after, bool)
    antenna[31:33, 46:64] = True
    assert alpha[antenna].mean() > 0.9  # the antenna, where the object took it
    assert alpha[25:27, 46:64].max() == 0  # not where it was
    assert alpha[24:40, 22:40].max() == 0  # the body is not a thin part
    assert region[antenna].all() and region[29, 50] and region[34, 50] and not region[28, 50]  # 2 px wider
    # at another working size the motion is rescaled to the full-size alpha
    half = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    alpha_half, _ = carry_thin_alpha(before, half, (32, 48), grow=2)
    assert alpha_half[antenna].mean() > 0.9
    # a solid disk: at most a few rim pixels that the opening shaves off, nothing inside
    solid = np.zeros_like(before)
    cv2.circle(solid, (30, 30), 15, 1.0, -1)
    alpha, _ = carry_thin_alpha(solid, np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]), solid.shape)
    rim = solid.astype(bool) & ~(cv2.erode(solid, np.ones((3, 3), np.uint8)) > 0)
    assert alpha[~rim].max() == 0 and (alpha > 0).sum() < 0.05 * solid.sum()
    empty = np.zeros_like(before)
    alpha, region = carry_thin_alpha(empty, shift, empty.shape)
    assert not alpha.any() and not region.any()
