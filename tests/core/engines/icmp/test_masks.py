"""ICMP's SAM step: preprocessing as Hugging Face's SamProcessor does it, mask upsampling, the tiny model."""

from __future__ import annotations

import numpy as np
import pytest

from napari_iconmat.core.engines.icmp.masks import SamMasker, sam_inputs, sam_points, sam_resize_shape, upscale_mask_logits
from napari_iconmat.core.errors import CheckpointError, WeightsNotFoundError


def test_resize_shape_rounds_like_the_processor():
    assert sam_resize_shape((480, 854), 1024) == (576, 1024)
    assert sam_resize_shape((1000, 500), 1024) == (1024, 512)
    assert sam_resize_shape((30, 50), 64) == (38, 64)  # 38.4 -> 38


def test_points_are_xy_in_the_resized_image():
    # (row, col) = (20, 10) in a 30 x 50 image resized to 38 x 64: x = 10 * 64/50, y = 20 * 38/30
    np.testing.assert_allclose(sam_points(np.array([[20.0, 10.0], [29, 49]]), (30, 50), 64), [[12.8, 25.333334], [62.72, 36.733334]], rtol=1e-6)


def test_inputs_and_points_match_hugging_face_sam_processor():
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "SamImageProcessorPil"):
        pytest.skip("this transformers has no numpy/PIL SAM processor")
    processor = transformers.SamProcessor(
        image_processor=transformers.SamImageProcessorPil(size={"longest_edge": 64}, pad_size={"height": 64, "width": 64})
    )
    image = (np.random.default_rng(0).random((30, 50, 3)) * 255).astype(np.uint8)
    rows_cols = np.array([[20.0, 10.0], [29.0, 49.0]])
    theirs = processor(images=image, input_points=[[rows_cols[:, ::-1].tolist()]], return_tensors="np")
    np.testing.assert_allclose(sam_points(rows_cols, image.shape, 64), theirs["input_points"].reshape(-1, 2), rtol=1e-6)
    assert tuple(theirs["reshaped_input_sizes"][0]) == sam_resize_shape(image.shape, 64)
    ours = sam_inputs(image / 255.0, 64)
    assert ours.shape == theirs["pixel_values"].shape[1:] == (3, 64, 64)
    assert np.all(ours[:, 38:] == 0) and np.all(theirs["pixel_values"][0, :, 38:] == 0)  # zero padding below
    # same normalisation; resampling differs only by PIL's 8-bit rounding
    np.testing.assert_allclose(ours, theirs["pixel_values"][0], atol=0.03)


def test_upscaled_logits_crop_the_padding():
    # logits positive exactly on the top-left 32 x 64 of a 64 x 64 padded square holding a 32 x 64 image
    low = np.full((1, 16, 16), -5.0, np.float32)
    low[:, :8, :] = 5.0
    out = upscale_mask_logits(low, (60, 120), 64)
    assert out.shape == (1, 60, 120)
    assert np.all(out > 0)  # the negative half was the padding: cropped away


def test_sam_masker_on_a_tiny_model(tiny_sam):
    masker = SamMasker(tiny_sam)
    image = np.random.default_rng(0).random((30, 50, 3)).astype(np.float32)
    mask, score = masker(image, np.array([[10.0, 20.0], [25.0, 5.0]]), np.array([1, 0]))
    assert mask.shape == (30, 50) and mask.dtype == bool
    assert np.isfinite(score)
    again, _ = masker(image, np.array([[10.0, 20.0], [25.0, 5.0]]), np.array([1, 0]))
    np.testing.assert_array_equal(again, mask)


def test_sam_bad_weights(tmp_path, tiny_dinov2):
    with pytest.raises(WeightsNotFoundError, match="SAM: no model folder"):
        SamMasker(tmp_path / "absent")
    with pytest.raises(CheckpointError, match="holds a .dinov2. model, not SAM"):
        SamMasker(tiny_dinov2)
    (tmp_path / "config.json").write_text('{"model_type": "sam", "vision_config": 7}')
    with pytest.raises(CheckpointError, match="SAM: cannot load"):
        SamMasker(tmp_path)
