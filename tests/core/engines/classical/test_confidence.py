"""The classical engine's per-frame confidence, and 'not there' in collections."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from napari_iconmat.core import make_engine, make_prompt, propagate
from napari_iconmat.core.engines.classical.confidence import (
    colour_confidence,
    colour_similarity,
    keypoint_confidence,
    size_confidence,
)
from napari_iconmat.core.engines.classical.appearance import lab_bins
from napari_iconmat.core.evaluation.metrics import iou
from napari_iconmat.core.evaluation.synth import synth_collection, synth_video


@pytest.fixture(scope="module")
def collection():
    """The reference, the same creature in another pose, a same-category variant in another hue,
    and a scene with something else in it (another photo, the creature cut out, a cyan disc)."""
    images = list(synth_collection(3, size=(256, 192), seed=0))  # 0, 1: the instance; 2: a variant
    scene = list(synth_video(2, size=(256, 192), seed=5))[1]
    other = cv2.inpaint(scene.image, (scene.alpha > 0.02).astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
    cv2.circle(other, (150, 90), 40, (40, 200, 230), -1)
    return images, other


def _matte(collection, **options):
    images, other = collection
    engine = make_engine("classical", working_size=256, **options)
    query = engine.encode_reference(images[0].image, make_prompt(images[0].alpha > 0.5))
    return {name: engine.matte_frame(image, query)[0] for name, image in
            (("same", images[1].image), ("variant", images[2].image), ("other", other))}  # fmt: skip


def test_cues_are_in_unit_range_and_half_at_their_doubt_point():
    assert colour_confidence(0.85, 0.85) == pytest.approx(0.5)
    assert colour_confidence(0.99, 0.85) > 0.9 and colour_confidence(0.5, 0.85) < 0.01
    assert keypoint_confidence(8) < keypoint_confidence(30) == keypoint_confidence(300) == 1.0
    assert size_confidence(200, 100) == pytest.approx(0.5) == size_confidence(50, 100)
    assert size_confidence(100, 100) == 1.0 and size_confidence(0, 100) == 0.0
    rgb = np.zeros((20, 20, 3), np.float32)
    rgb[:10] = (1.0, 0.0, 0.0)
    mask = np.zeros((20, 20), bool)
    mask[:10] = True
    bins = lab_bins(rgb)
    from napari_iconmat.core.engines.classical.appearance import fit_colour_model

    red = fit_colour_model(bins, mask, ~mask).foreground
    assert colour_similarity(bins, mask, red) == pytest.approx(1.0, abs=1e-6)
    assert colour_similarity(bins, ~mask, red) < 0.05  # black is not red
    assert colour_similarity(bins, np.zeros_like(mask), red) == 0.0


def test_an_image_of_something_else_gets_an_empty_matte_and_zero_confidence(collection):
    mattes = _matte(collection)
    assert mattes["other"].alpha.max() == 0.0 and mattes["other"].confidence == 0.0
    same = mattes["same"]
    assert same.confidence >= 0.5
    assert iou(same.alpha, collection[0][1].alpha > 0.5) > 0.8


def test_colour_match_zero_keeps_every_find(collection):
    """Same-category objects in another hue: rejected by the default colour check, found without it."""
    strict, loose = _matte(collection), _matte(collection, colour_match=0.0)
    assert strict["variant"].alpha.max() == 0.0
    assert loose["variant"].alpha.mean() > 0.01 and loose["variant"].confidence > 0.5
    np.testing.assert_array_equal(strict["same"].alpha, loose["same"].alpha)


def test_sequence_confidence_says_when_the_track_is_lost():
    """On this small synthetic video the track is mostly lost after two frames (the creature turns and
    dims against the photo; IoU 0.2-0.3 since the background memory, below 0.1 before); the confidence
    must say which frames are good and which are lost."""
    frames = list(synth_video(n_frames=5, size=(192, 128), seed=3))
    engine = make_engine("classical")
    query = engine.encode_reference(frames[0].image, make_prompt(frames[0].alpha > 0.5))
    matte, track = engine.reference_matte(query)
    assert matte.confidence == 1.0
    scored = []
    for frame in frames[1:]:
        matte, track = engine.matte_frame(frame.image, query, state=track)
        assert 0.0 <= matte.confidence <= 1.0
        scored.append((iou(matte.alpha, frame.alpha > 0.5), matte.confidence))
    good = [c for i, c in scored if i > 0.5]
    lost = [c for i, c in scored if i < 0.35]
    assert good and lost, scored  # the case this test is about; it fails if the engine changes so
    assert min(good) > max(lost) and max(lost) < 0.05
    empty = np.full_like(frames[1].image, 128)  # a grey frame: nothing of the object
    matte, _ = engine.matte_frame(empty, query, state=track)
    assert matte.alpha.max() < 0.5 and matte.confidence == 0.0


def test_colour_match_is_checked():
    from napari_iconmat.core.errors import InputError

    with pytest.raises(InputError, match="colour_match must be a number from 0 to 1"):
        make_engine("classical", colour_match=2)


def test_a_lost_object_that_comes_back_is_found_again(collection):
    images, _ = collection
    grey = np.full_like(images[0].image, 128)  # the object is gone for a frame ...
    frames = [images[0].image, grey, images[1].image]  # ... and back, elsewhere, in another pose
    found = {}
    for search in (True, False):
        engine = make_engine("classical", working_size=256, search_when_lost=search)
        query = engine.encode_reference(images[0].image, make_prompt(images[0].alpha > 0.5))
        mattes = dict(propagate(frames, query, engine, reference_index=0))
        assert mattes[1].alpha.max() < 0.5 and mattes[1].confidence == 0.0
        found[search] = (iou(mattes[2].alpha, images[1].alpha > 0.5), mattes[2].confidence)
    assert found[True][0] > 0.8 and found[True][1] >= 0.5
    assert found[False][0] < 0.1 and found[False][1] == 0.0  # without the search the track stays lost
