"""ICMP's pseudo-trimap, checked exactly against a brute-force erosion and dilation."""

from __future__ import annotations

import numpy as np
import pytest

from napari_iconmat.core.engines.icmp.trimap import disk, pseudo_trimap


def _brute_force(mask, radius):
    """Erosion and dilation by the Euclidean disk, pixel by pixel (pixels outside the image ignored)."""
    h, w = mask.shape
    inner = np.zeros_like(mask)
    outer = np.zeros_like(mask)
    offsets = [(dr, dc) for dr in range(-radius, radius + 1) for dc in range(-radius, radius + 1) if dr * dr + dc * dc <= radius * radius]
    for r in range(h):
        for c in range(w):
            values = [mask[r + dr, c + dc] for dr, dc in offsets if 0 <= r + dr < h and 0 <= c + dc < w]
            inner[r, c], outer[r, c] = all(values), any(values)
    return inner, outer


def test_disk():
    np.testing.assert_array_equal(disk(1), [[0, 1, 0], [1, 1, 1], [0, 1, 0]])
    assert disk(3).sum() == 29  # lattice points within radius 3
    assert disk(0).tolist() == [[1]]


@pytest.mark.parametrize("radius", [1, 2, 4])
def test_trimap_is_erosion_and_dilation_by_a_disk(radius):
    rng = np.random.default_rng(radius)
    mask = np.zeros((30, 40), bool)
    mask[8:22, 10:30] = True
    mask[0:6, 34:40] = True  # touches the border: no band along the image edge
    mask[rng.integers(0, 30, 20), rng.integers(0, 40, 20)] ^= True
    inner, outer = _brute_force(mask, radius)
    trimap = pseudo_trimap(mask, width=radius)
    assert trimap.dtype == np.float32 and set(np.unique(trimap)) <= {0.0, 0.5, 1.0}
    np.testing.assert_array_equal(trimap == 1.0, inner)
    np.testing.assert_array_equal(trimap == 0.5, outer & ~inner)
    np.testing.assert_array_equal(trimap == 0.0, ~outer)


def test_square_counts_and_relative_width():
    mask = np.zeros((100, 100), bool)
    mask[30:70, 30:70] = True  # 40 x 40: area 1600, sqrt 40
    trimap = pseudo_trimap(mask, fraction=0.1)  # width round(0.1 * 40) = 4
    assert (trimap == 1).sum() == 32 * 32
    # the dilated square by a radius-4 disk: 48 x 48 less what the rounded corners cut away
    inner, outer = _brute_force(mask, 4)
    assert (trimap > 0).sum() == outer.sum()
    assert 40 * 40 + 4 * 40 * 4 < outer.sum() < 48 * 48
    # the width follows the object's size within [minimum, maximum]
    assert (pseudo_trimap(mask, fraction=0.0, minimum=3) == 1).sum() == 34 * 34
    assert (pseudo_trimap(mask, fraction=1.0, maximum=5) == 1).sum() == 30 * 30


def test_empty_mask_and_zero_width():
    assert not pseudo_trimap(np.zeros((5, 5), bool)).any()
    mask = np.eye(5, dtype=bool)
    np.testing.assert_array_equal(pseudo_trimap(mask, width=0), mask.astype(np.float32))
    with pytest.raises(ValueError, match="width"):
        pseudo_trimap(mask, width=-1)
