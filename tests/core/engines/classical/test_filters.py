"""Fast forms of wide filters, against the plain ones."""

import cv2
import numpy as np
import pytest

from napari_iconmat.core.engines.classical.filters import wide_gaussian, within


@pytest.mark.parametrize("sigma", [2.0, 9.0, 16.0, 40.0])
def test_wide_gaussian_matches_a_full_size_blur_of_a_smooth_image(sigma):
    rng = np.random.default_rng(0)
    # an object-like weight map: smooth at the blur's scale, with a hard edge
    yy, xx = np.mgrid[:240, :320]
    weight = (np.hypot(yy - 120, xx - 150) < 60).astype(np.float32)
    lab = np.stack([weight * 40 + 30, weight * -20 + 5, rng.normal(0, 1, weight.shape)], axis=2).astype(np.float32)
    for array in (weight, lab):
        fast = wide_gaussian(array, sigma)
        plain = cv2.GaussianBlur(array, (0, 0), sigma)
        assert fast.shape == array.shape and fast.dtype == np.float32
        scale = float(np.abs(plain).max())
        # the reduced-size blur differs from the full one by a few percent of the range at most
        assert np.abs(fast - plain).max() <= 0.03 * scale
        if sigma < 4:
            np.testing.assert_array_equal(fast, plain)


def test_within_is_the_euclidean_disk_dilation():
    rng = np.random.default_rng(1)
    mask = rng.random((60, 80)) > 0.995
    for radius in (1.5, 4.0, 10.0):
        ys, xs = np.nonzero(mask)
        yy, xx = np.mgrid[:60, :80]
        expected = np.zeros(mask.shape, bool)
        for y, x in zip(ys, xs):
            expected |= np.hypot(yy - y, xx - x) <= radius
        np.testing.assert_array_equal(within(mask, radius), expected)


def test_within_an_empty_mask_is_empty():
    assert not within(np.zeros((5, 7), bool), 3.0).any()
