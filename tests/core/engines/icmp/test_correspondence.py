"""ICMP's correspondence step: geometry of feature grids, prompt points, and the matching rule.

The matching rule is checked on a synthetic pair with a known correspondence:
the target is the reference scaled by 0.8 and shifted, with a deterministic
feature map of local colour layout standing in for DINOv2.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from napari_iconmat.core.engines.icmp.correspondence import (
    Dinov2Features,
    FeatureMap,
    farthest_points,
    feature_input_size,
    match_points,
    prompt_points,
)
from napari_iconmat.core.errors import CheckpointError, WeightsNotFoundError
from napari_iconmat.core.prompt import make_prompt

H, W, CELL = 96, 128, 8
SCALE, SHIFT = 0.8, np.array([40.0, 56.0])  # target (row, col) = SCALE * reference + SHIFT


def _texture(shape, seed):
    """A smooth random colour field in [0, 1] (two octaves of interpolated noise)."""
    rng = np.random.default_rng(seed)
    h, w = shape
    out = np.zeros((h, w, 3), np.float32)
    for scale, weight in ((16, 1.0), (6, 0.5)):
        noise = rng.random((h // scale + 2, w // scale + 2, 3)).astype(np.float32)
        big = cv2.resize(noise, (w + 2 * scale, h + 2 * scale), interpolation=cv2.INTER_CUBIC)
        out += weight * big[scale : scale + h, scale : scale + w]
    out -= out.min()
    return out / out.max()


def _colour_layout_features(image, cell):
    """Deterministic stand-in for DINOv2: blurred Lab colours on a 3x3 pattern around each cell centre, two scales."""
    h, w = image.shape[:2]
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB) / np.array([100, 128, 128], np.float32)
    rows = ((np.arange(h // cell) + 0.5) * cell).astype(int)
    cols = ((np.arange(w // cell) + 0.5) * cell).astype(int)
    parts = []
    for sigma, reach in ((cell / 2, cell), (cell, 2 * cell)):
        padded = cv2.copyMakeBorder(cv2.GaussianBlur(lab, (0, 0), sigma), reach, reach, reach, reach, cv2.BORDER_REFLECT)
        for dr in (-reach, 0, reach):
            for dc in (-reach, 0, reach):
                parts.append(padded[rows + reach + dr][:, cols + reach + dc])
    grid = np.concatenate(parts, axis=2)
    grid -= grid.reshape(-1, grid.shape[2]).mean(axis=0)
    return FeatureMap.from_array(grid, (h, w))


@pytest.fixture(scope="module")
def pair():
    reference = _texture((H, W), seed=0)
    warp = np.array([[SCALE, 0, SHIFT[1]], [0, SCALE, SHIFT[0]]], np.float32)
    target = cv2.warpAffine(reference, warp, (W, H), flags=cv2.INTER_LINEAR, borderValue=(0.5, 0.5, 0.5))
    rows, cols = np.meshgrid(np.arange(6, H - 6, 6), np.arange(6, W - 6, 6), indexing="ij")
    points = np.stack([rows.ravel(), cols.ravel()], axis=1).astype(np.float64)
    truth = SCALE * points + SHIFT
    return _colour_layout_features(reference, CELL), _colour_layout_features(target, CELL), points, truth


def test_matching_recovers_a_shifted_and_scaled_copy(pair):
    reference, target, points, truth = pair
    matches = match_points(reference, points, target, cycle_radius=1.5)
    error = np.linalg.norm(matches.points - truth, axis=1)
    in_view = (truth[:, 0] < H - CELL) & (truth[:, 1] < W - CELL)
    kept = matches.consistent & in_view
    assert in_view.sum() > 100
    # nearly every point with a counterpart is kept, and lands in (or next to) the right cell
    assert kept.sum() >= 0.9 * in_view.sum()
    assert np.median(error[kept]) <= CELL / 2
    assert error[kept].max() <= 1.5 * CELL
    # points whose counterpart is far outside the target have nothing to match: the cycle check drops most
    lost = (truth[:, 0] > H + 2 * CELL) | (truth[:, 1] > W + 2 * CELL)
    assert lost.sum() >= 20
    assert (~matches.consistent[lost]).mean() >= 0.75
    # without the check every lost point would be matched somewhere, far from any right answer
    assert np.all(error[lost] > 2 * CELL)


def test_cycle_radius_zero_is_the_strictest(pair):
    reference, target, points, _ = pair
    loose = match_points(reference, points, target, cycle_radius=1.5)
    strict = match_points(reference, points, target, cycle_radius=0.0)
    assert np.all(loose.consistent[strict.consistent])
    assert strict.consistent.sum() < loose.consistent.sum()
    np.testing.assert_array_equal(loose.consistent, loose.cycle_error <= 1.5)
    np.testing.assert_array_equal(loose.cells, strict.cells)  # the radius changes the verdict, not the match


def test_feature_map_geometry():
    rng = np.random.default_rng(1)
    fmap = FeatureMap.from_array(rng.normal(size=(4, 6, 5)), (40, 90))
    np.testing.assert_allclose(np.linalg.norm(fmap.features, axis=2), 1.0, rtol=1e-6)
    np.testing.assert_allclose(fmap.cell_size, [10.0, 15.0])
    np.testing.assert_allclose(fmap.to_pixels([[0, 0], [3, 5]]), [[5.0, 7.5], [35.0, 82.5]])
    cells = np.array([[0.0, 0.0], [2.0, 3.0], [1.5, 4.25]])
    np.testing.assert_allclose(fmap.to_cells(fmap.to_pixels(cells)), cells)
    # at a cell centre the sample is that cell's descriptor; half-way, the normalised mean of two
    np.testing.assert_allclose(fmap.sample(fmap.to_pixels([[2, 3]]))[0], fmap.features[2, 3], rtol=1e-5)
    mid = fmap.features[1, 1] + fmap.features[1, 2]
    np.testing.assert_allclose(fmap.sample(fmap.to_pixels([[1, 1.5]]))[0], mid / np.linalg.norm(mid), rtol=1e-5)


def test_feature_input_size_keeps_aspect_and_patch_multiples():
    assert feature_input_size((480, 854), side=448, patch=14) == (252, 448)
    assert feature_input_size((1000, 500), side=448, patch=14) == (448, 224)
    assert feature_input_size((5, 300), side=448, patch=14) == (14, 448)  # never an empty side


def test_farthest_points_spreads_from_the_start():
    coords = np.array([[0, 0], [0, 1], [10, 10], [0, 10], [10, 0]], float)
    order = farthest_points(coords, 4, start=1)
    assert order[0] == 1 and order[1] == 2  # (10, 10) is farthest from (0, 1)
    assert set(order[2:]) == {3, 4}
    assert len(farthest_points(coords, 99)) == 5
    assert len(farthest_points(np.zeros((3, 2)), 3)) == 1  # identical points are taken once


def test_prompt_points_from_a_mask():
    mask = np.zeros((80, 100), np.uint8)
    mask[20:60, 30:70] = 1
    points, labels = prompt_points(make_prompt(mask), positive=6, negative=3)
    assert labels.tolist() == [1] * 6 + [0] * 3
    rows, cols = points[:, 0].astype(int), points[:, 1].astype(int)
    positives, negatives = labels == 1, labels == 0
    # positives well inside the object (a tenth of its size from the edge), the deepest first
    assert np.all(mask[rows[positives], cols[positives]] == 1)
    depth = np.minimum.reduce([rows - 20, 59 - rows, cols - 30, 69 - cols])
    assert np.all(depth[positives] >= 3)
    np.testing.assert_allclose(points[0], [39.5, 49.5], atol=1.0)
    # negatives in the background, near the object but not touching it
    assert np.all(mask[rows[negatives], cols[negatives]] == 0)
    gap = np.maximum.reduce([20 - rows, rows - 59, 30 - cols, cols - 69])
    assert np.all((gap[negatives] > 3) & (gap[negatives] <= 3 * 4 + 1))
    # spread out: no two positives closer than a quarter of the object's side
    d = np.linalg.norm(points[positives][:, None] - points[positives][None], axis=2)
    assert d[np.triu_indices(6, 1)].min() >= 10


def test_prompt_points_from_a_scribble():
    scribble = np.zeros((50, 50), np.uint8)
    scribble[10, 10] = 1  # two clicks on the object
    scribble[30, 35] = 1
    scribble[45, 2:8] = 2  # a background stroke
    points, labels = prompt_points(make_prompt(scribble, kind="scribble"), positive=8, negative=2)
    assert labels.tolist() == [1, 1, 0, 0]
    assert {tuple(p) for p in points[:2].astype(int).tolist()} == {(10, 10), (30, 35)}
    assert np.all(points[2:, 0] == 45) and np.all((points[2:, 1] >= 2) & (points[2:, 1] < 8))


def test_dinov2_features_from_a_tiny_model(tiny_dinov2):
    features = Dinov2Features(tiny_dinov2, side=32)
    image = np.random.default_rng(0).random((30, 50, 3)).astype(np.float32)
    fmap = features(image)
    # 50 -> 32 px wide, 30 -> 20 px high (multiples of the 4-px patch): a 5 x 8 grid, CLS dropped
    assert fmap.grid == (5, 8) and fmap.features.shape[2] == 32
    assert fmap.image_shape == (30, 50)
    np.testing.assert_allclose(np.linalg.norm(fmap.features, axis=2), 1.0, rtol=1e-5)
    np.testing.assert_array_equal(features(image).features, fmap.features)  # deterministic


def test_dinov2_bad_weights(tmp_path, tiny_sam):
    with pytest.raises(WeightsNotFoundError, match="DINOv2: no model folder"):
        Dinov2Features(tmp_path / "absent")
    with pytest.raises(WeightsNotFoundError, match="lacks config.json"):
        Dinov2Features(tmp_path)
    with pytest.raises(CheckpointError, match="not DINOv2"):
        Dinov2Features(tiny_sam)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="DINOv2: cannot load"):
        Dinov2Features(tmp_path)
