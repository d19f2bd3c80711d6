"""The matting stage: ViTMatte's input layout and padding, both refiners, the classical engine's choice."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from napari_iconmat.core import make_engine, make_prompt, propagate
from napari_iconmat.core.errors import CheckpointError, InputError, WeightsNotFoundError
from napari_iconmat.core.matting.closed_form import solve_alpha
from napari_iconmat.core.matting.refiners import (
    ClosedFormRefiner,
    VitMatteRefiner,
    make_refiner,
    pad_to_multiple,
    vitmatte_available,
    vitmatte_inputs,
)
from napari_iconmat.core.evaluation.synth import synth_video


def _image_and_trimap(shape=(45, 70), seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((*shape, 3)).astype(np.float32)
    trimap = np.zeros(shape, np.float32)
    trimap[10:35, 15:55] = 0.5
    trimap[16:29, 22:48] = 1.0
    return image, trimap


def test_pad_to_multiple_pads_bottom_right_with_zeros():
    array = np.arange(2 * 33 * 65, dtype=np.float32).reshape(2, 33, 65) + 1
    padded = pad_to_multiple(array, 32)
    assert padded.shape == (2, 64, 96)
    np.testing.assert_array_equal(padded[:, :33, :65], array)
    assert not padded[:, 33:].any() and not padded[:, :, 65:].any()
    same = np.ones((4, 64, 32))
    assert pad_to_multiple(same, 32) is same  # already a multiple: untouched
    assert pad_to_multiple(np.ones((1, 1)), 32).shape == (32, 32)


def test_vitmatte_inputs_layout():
    image, trimap = _image_and_trimap()
    inputs = vitmatte_inputs(image, trimap, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    assert inputs.shape == (4, 64, 96) and inputs.dtype == np.float32
    np.testing.assert_allclose(inputs[:3, :45, :70], (image.transpose(2, 0, 1) - 0.5) / 0.5, rtol=1e-6)
    # the trimap channel is not normalised: 0, 128/255, 1 as an 8-bit trimap rescaled by 1/255
    assert set(np.unique(inputs[3, :45, :70]).tolist()) == {0.0, np.float32(128 / 255), 1.0}
    np.testing.assert_array_equal(inputs[3, :45, :70] == 1.0, trimap == 1.0)
    assert not inputs[:, 45:].any() and not inputs[:, :, 70:].any()


def test_vitmatte_inputs_match_hugging_face_processor():
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "VitMatteImageProcessorPil"):
        pytest.skip("this transformers has no numpy/PIL ViTMatte processor")
    processor = transformers.VitMatteImageProcessorPil()
    image, trimap = _image_and_trimap()
    image_u8 = (image * 255).round().astype(np.uint8)
    trimap_u8 = np.select([trimap == 0, trimap == 1], [0, 255], 128).astype(np.uint8)
    theirs = processor(images=image_u8, trimaps=trimap_u8, return_tensors="np")["pixel_values"][0]
    ours = vitmatte_inputs(image_u8 / 255.0, trimap, mean=processor.image_mean, std=processor.image_std)
    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, atol=1e-5)


def test_closed_form_refiner_is_the_solver():
    image, trimap = _image_and_trimap()
    np.testing.assert_array_equal(ClosedFormRefiner().refine(image, trimap), solve_alpha(image, trimap))
    assert make_refiner("closed-form").name == "closed-form"


def test_vitmatte_refiner_keeps_known_pixels_and_crops_the_padding(tiny_vitmatte):
    refiner = make_refiner("vitmatte", vitmatte=tiny_vitmatte)
    assert isinstance(refiner, VitMatteRefiner) and refiner.divisor == 32
    image, trimap = _image_and_trimap()
    predicted = refiner.predict(image, trimap)
    assert predicted.shape == (45, 70) and predicted.dtype == np.float32
    alpha = refiner.refine(image, trimap)
    assert alpha.shape == (45, 70) and alpha.dtype == np.float32
    assert alpha.min() >= 0 and alpha.max() <= 1
    known = (trimap == 0) | (trimap == 1)
    np.testing.assert_array_equal(alpha[known], trimap[known])
    np.testing.assert_array_equal(alpha[~known], predicted[~known])
    # a prior is the per-pixel minimiser of (a - network)^2 + w (a - prior)^2
    prior = np.full(trimap.shape, 0.9, np.float32)
    pulled = refiner.refine(image, trimap, prior=prior, prior_weight=3.0)
    np.testing.assert_allclose(pulled[~known], (predicted[~known] + 3.0 * 0.9) / 4.0, rtol=1e-5)
    # nothing unknown: no network call needed, the trimap is the alpha
    np.testing.assert_array_equal(refiner.refine(image, (trimap == 1).astype(np.float32)), trimap == 1)


def test_refiner_errors(tmp_path, tiny_vitmatte):
    with pytest.raises(InputError, match="refiner must be one of closed-form, vitmatte, got 'knn'"):
        make_refiner("knn")
    with pytest.raises(InputError, match="device must be a torch device"):
        make_refiner("vitmatte", vitmatte=tiny_vitmatte, device="gpu please")
    with pytest.raises(WeightsNotFoundError, match="ViTMatte: no model folder"):
        make_refiner("vitmatte", vitmatte=tmp_path / "absent")
    found, why = vitmatte_available(str(tmp_path / "absent"))
    assert not found and "no model folder" in why
    assert vitmatte_available(tiny_vitmatte) == (True, tiny_vitmatte)
    broken = shutil.copytree(tiny_vitmatte, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="ViTMatte: cannot load a VitMatteForImageMatting"):
        make_refiner("vitmatte", vitmatte=str(broken))


def test_classical_engine_can_matte_with_vitmatte(tiny_vitmatte):
    # the default keeps its parameters (and so the signatures of cached queries)
    default = make_engine("classical")
    assert "refiner" not in default.params
    assert make_engine("classical", refiner="closed-form").params == default.params
    engine = make_engine("classical", refiner="vitmatte", vitmatte=tiny_vitmatte)
    assert engine.params["refiner"] == "vitmatte" and engine.params["vitmatte"] == tiny_vitmatte
    video = list(synth_video(n_frames=3, size=(64, 48), seed=0))
    frames, mask = [f.image for f in video], video[0].alpha > 0.5
    query = engine.encode_reference(frames[0], make_prompt(mask))
    mattes = dict(propagate(np.stack(frames), query, engine, reference_index=0))
    assert sorted(mattes) == [0, 1, 2]
    for matte in mattes.values():
        assert matte.alpha.shape == (48, 64) and matte.alpha.dtype == np.float32
        assert 0 <= matte.alpha.min() and matte.alpha.max() <= 1
    with pytest.raises(InputError, match="refiner must be one of"):
        make_engine("classical", refiner="vitmate")
    with pytest.raises(WeightsNotFoundError, match="ViTMatte"):
        make_engine("classical", refiner="vitmatte", vitmatte="/nonexistent/vitmatte")
