"""SAM 2's processor maths without torchvision (engines/sam2/preprocess.py), against hand computations.

Antialiased bilinear downscaling by 2 is a triangle filter 2 px wide on each side of the
output's centre in input pixels (2i + 0.5): input weights 1/8, 3/8, 3/8, 1/8 on pixels
2i - 1 .. 2i + 2, renormalised where the filter leaves the image (3/7, 3/7, 1/7 at the border).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_iconmat.core.engines.sam2.preprocess import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    image_to_pixels,
    logits_to_frame,
    mask_to_input,
    points_to_input,
)

# a ramp 0..7 along 8 columns, downscaled to 4 by the filter above
RAMP_DOWN = [(0 * 3 + 1 * 3 + 2 * 1) / 7, (1 + 2 * 3 + 3 * 3 + 4) / 8, (3 + 4 * 3 + 5 * 3 + 6) / 8, (5 + 6 * 3 + 7 * 3) / 7]


def test_image_is_resized_antialiased_then_normalised_with_the_imagenet_mean_and_std():
    ramp = np.arange(8, dtype=np.float32) / 7.0  # in [0, 1], as a rescaled 8-bit frame
    rgb = np.repeat(np.repeat(ramp[None, :, None], 8, axis=0), 3, axis=2)
    rgb[..., 1] *= 0.5  # channels differ, so the per-channel mean/std are checked
    pixels = image_to_pixels(rgb, 4).numpy()
    assert pixels.shape == (3, 4, 4) and pixels.dtype == np.float32
    expected = np.array(RAMP_DOWN) / 7.0
    for c, scale in enumerate((1.0, 0.5, 1.0)):
        want = (expected * scale - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        np.testing.assert_allclose(pixels[c], np.broadcast_to(want, (4, 4)), atol=1e-5)


def test_upscaling_is_plain_bilinear_with_half_pixel_centres():
    rgb = np.zeros((2, 2, 3), np.float32)
    rgb[:, 1] = 1.0  # columns 0 and 1
    pixels = image_to_pixels(rgb, 4, mean=(0, 0, 0), std=(1, 1, 1)).numpy()
    # output column j samples input column (j + 0.5) / 2 - 0.5 = -0.25, 0.25, 0.75, 1.25, clamped
    np.testing.assert_allclose(pixels[0, 0], [0.0, 0.25, 0.75, 1.0], atol=1e-6)


def test_the_model_size_is_kept_as_it_is():
    rgb = np.random.default_rng(0).random((4, 4, 3)).astype(np.float32)
    pixels = image_to_pixels(rgb, 4).numpy()
    np.testing.assert_allclose(pixels[2], (rgb[..., 2] - IMAGENET_MEAN[2]) / IMAGENET_STD[2], atol=1e-6)


def test_mask_prompt_is_resized_antialiased_and_thresholded_at_one_half():
    mask = np.zeros((8, 8), bool)
    mask[:, :4] = True
    # columns: border 3/7+3/7+1/7 = 1; 1/8+3/8+3/8 = 7/8; 1/8; 0
    out = mask_to_input(mask, 4)
    assert out.shape == (1, 1, 4, 4) and out.dtype == torch.float32
    np.testing.assert_array_equal(out[0, 0].numpy(), np.broadcast_to([1.0, 1.0, 0.0, 0.0], (4, 4)))
    mask = np.zeros((8, 8), bool)
    mask[:, 2:4] = True  # output column 1: 3/8 + 3/8 = 0.75 -> 1; column 0: 1/7 -> 0; column 2: 1/8 -> 0
    np.testing.assert_array_equal(mask_to_input(mask, 4)[0, 0, 0].numpy(), [0.0, 1.0, 0.0, 0.0])


def test_points_are_x_y_scaled_to_the_model_square():
    inputs = points_to_input(np.array([[10.0, 20.0], [39.0, 0.0]]), np.array([1, 0]), (40, 80), 128)
    np.testing.assert_allclose(inputs["point_coords"].numpy(), [[[[32.0, 32.0], [0.0, 124.8]]]])
    assert inputs["point_labels"].dtype == torch.int32 and inputs["point_labels"].tolist() == [[[1, 0]]]


def test_logits_go_back_to_the_frame_through_the_model_square():
    logits = torch.zeros(1, 1, 2, 2)
    logits[..., 1] = 4.0
    out = logits_to_frame(logits, 4, (3, 8))
    assert out.shape == (3, 8) and out.dtype == np.float32
    # 2 -> 4 columns: 0, 1, 3, 4; then 4 -> 8: half-pixel bilinear of those
    square = np.array([0.0, 1.0, 3.0, 4.0])
    x = np.clip((np.arange(8) + 0.5) / 2 - 0.5, 0, 3)
    np.testing.assert_allclose(out[1], np.interp(x, np.arange(4), square), atol=1e-5)
