"""Reference keypoints, upright and mirrored, and the transform that places the reference object."""

import cv2
import numpy as np

from napari_iconmat.core import make_engine, make_prompt
from napari_iconmat.core.engines.classical.keypoints import fit_reference_transform, object_keypoints
from napari_iconmat.core.evaluation.metrics import iou


def _scene(corner, *, mirrored=False, seed=0):
    """A 200 x 160 grey-textured background with a 56 x 56 asymmetric colour-textured square at ``corner``."""
    rng = np.random.default_rng(seed)
    background = cv2.GaussianBlur(rng.uniform(60, 120, (160, 200)).astype(np.float32), (0, 0), 3)
    image = np.repeat(background[..., None], 3, axis=2)
    texture = cv2.GaussianBlur(np.random.default_rng(7).uniform(0, 255, (56, 56, 3)).astype(np.float32), (0, 0), 1.2)
    if mirrored:
        texture = texture[:, ::-1]
    y, x = corner
    image[y : y + 56, x : x + 56] = texture
    mask = np.zeros((160, 200), bool)
    mask[y : y + 56, x : x + 56] = True
    return np.clip(image, 0, 255).astype(np.uint8), mask


def _gray(image):
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)


def test_a_mirrored_copy_is_matched_by_the_mirrored_keypoints_only():
    sift = cv2.SIFT_create(nfeatures=1500)
    ref_image, ref_mask = _scene((20, 20))
    gray, alpha = _gray(ref_image), ref_mask.astype(np.float32)
    upright = (*object_keypoints(sift, gray, alpha), False)
    mirrored = (*object_keypoints(sift, gray, alpha, mirrored=True), True)
    assert len(upright[0]) >= 20 and len(mirrored[0]) >= 20
    # mirrored points lie on the mirrored object
    assert (mirrored[0][:, 0] >= 200 - 20 - 56 - 3).all() and (mirrored[0][:, 0] <= 200 - 20 + 3).all()

    image, mask = _scene((70, 120), mirrored=True, seed=1)
    assert fit_reference_transform(sift, _gray(image), [upright]) is None
    found = fit_reference_transform(sift, _gray(image), [upright, mirrored])
    assert found is not None and found.mirrored and found.inliers >= 8
    assert iou(found.warp(alpha, mask.shape), mask) > 0.9

    # the same object upright is placed by the upright set
    image, mask = _scene((70, 120), seed=1)
    found = fit_reference_transform(sift, _gray(image), [upright, mirrored])
    assert found is not None and not found.mirrored
    assert iou(found.warp(alpha, mask.shape), mask) > 0.9


def test_nothing_is_placed_in_an_image_without_the_object():
    sift = cv2.SIFT_create(nfeatures=1500)
    ref_image, ref_mask = _scene((20, 20))
    gray, alpha = _gray(ref_image), ref_mask.astype(np.float32)
    sets = [(*object_keypoints(sift, gray, alpha), False), (*object_keypoints(sift, gray, alpha, mirrored=True), True)]
    empty, _ = _scene((0, 0), seed=1)
    empty[:56, :56] = empty[100:156, 100:156]
    assert fit_reference_transform(sift, _gray(empty), sets) is None


def test_the_engine_mattes_a_mirrored_instance_in_a_collection():
    engine = make_engine("classical")
    ref_image, ref_mask = _scene((20, 20))
    query = engine.encode_reference(ref_image, make_prompt(ref_mask))
    assert query.arrays["keypoints_mirrored"].shape[1] == 2
    assert len(query.arrays["descriptors_mirrored"]) == len(query.arrays["keypoints_mirrored"]) >= 20
    image, mask = _scene((90, 130), mirrored=True, seed=1)
    # a larger decoy of the same colours: colour alone would pick it (IoU 0.43 without the mirrored keypoints)
    decoy = cv2.GaussianBlur(np.random.default_rng(8).uniform(0, 255, (64, 64, 3)).astype(np.float32), (0, 0), 1.2)
    image[10:74, 20:84] = np.clip(decoy, 0, 255).astype(np.uint8)
    matte, _ = engine.matte_frame(image, query, state=None)
    assert iou(matte.alpha, mask) > 0.85


def test_a_query_from_before_the_mirrored_keypoints_is_refused(tmp_path):
    """Version-1 queries lack the mirrored keypoints: loading one for this engine asks to re-encode."""
    import pytest

    from napari_iconmat.core.errors import QueryMismatchError
    from napari_iconmat.core.reference import ReferenceQuery, load_query

    engine = make_engine("classical")
    ref_image, ref_mask = _scene((20, 20))
    query = engine.encode_reference(ref_image, make_prompt(ref_mask))
    arrays = {k: v for k, v in query.arrays.items() if not k.endswith("_mirrored")}
    old = ReferenceQuery(signature={**query.signature, "engine_version": "1"}, arrays=arrays, meta=query.meta)
    old.save(tmp_path / "old.npz")
    with pytest.raises(QueryMismatchError, match="engine_version.*re-encode"):
        load_query(tmp_path / "old.npz", expected=query.signature)


def test_a_transform_fitted_at_working_size_places_the_full_size_alpha_sharp():
    from napari_iconmat.core.engines.classical.keypoints import ReferenceTransform

    alpha = np.zeros((200, 300), np.float32)
    alpha[50:90, 60:130] = 1.0
    alpha[70, 130:160] = 0.5  # a 1 px strand: would be blurred by a working-size placement
    shift = ReferenceTransform(np.array([[1.0, 0, 10.0], [0, 1.0, 5.0]], np.float32), 30, False)
    placed = shift.warp_full(alpha, (100, 150), (100, 150), (200, 300))
    expected = np.zeros_like(alpha)
    expected[60:100, 80:150] = 1.0
    expected[80, 150:180] = 0.5
    assert np.abs(placed - expected).max() < 1e-5  # 10, 5 working pixels = 20, 10 full-size pixels
    mirrored = ReferenceTransform(np.array([[1.0, 0, 0.0], [0, 1.0, 0.0]], np.float32), 30, True)
    assert np.abs(mirrored.warp_full(alpha, (100, 150), (100, 150), (200, 300)) - alpha[:, ::-1]).max() < 1e-5
