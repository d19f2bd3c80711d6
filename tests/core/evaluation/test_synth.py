"""Tests of napari_iconmat.core.evaluation.synth: determinism, exact composites, layout on disk."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from napari_iconmat.core.errors import InputError
from napari_iconmat.core.evaluation.synth import (
    _collection_layers,
    _video_layers,
    synth_collection,
    synth_video,
    write_synth,
)

SIZE = (96, 64)  # (W, H)


@pytest.fixture(scope="module")
def video_layers():
    return list(_video_layers(8, SIZE, 3))


@pytest.fixture(scope="module")
def collection_layers():
    return list(_collection_layers(4, SIZE, 3))


def _same(a, b):
    return all(np.array_equal(x, y) for fa, fb in zip(a, b, strict=True) for x, y in zip(fa, fb))


@pytest.mark.parametrize("make", [synth_video, synth_collection])
def test_same_seed_gives_identical_frames(make):
    first, again, other = (list(make(3, SIZE, seed)) for seed in (7, 7, 8))
    assert _same(first, again)
    assert not _same(first, other)


@pytest.mark.parametrize("which", ["video_layers", "collection_layers"])
def test_frames_have_shapes_dtypes_and_ranges(which, request):
    for layers in request.getfixturevalue(which):
        image, alpha, fg = layers.frame
        assert image.shape == (64, 96, 3) and image.dtype == np.uint8
        assert alpha.shape == (64, 96) and alpha.dtype == np.float32
        assert fg.shape == (64, 96, 3) and fg.dtype == np.float32
        assert 0 <= alpha.min() and alpha.max() <= 1
        assert 0 <= fg.min() and fg.max() <= 1


@pytest.mark.parametrize("which", ["video_layers", "collection_layers"])
def test_alpha_is_soft_with_an_opaque_interior(which, request):
    alpha = request.getfixturevalue(which)[0].frame.alpha
    on_object = alpha > 0
    soft = on_object & (alpha < 1)
    opaque = alpha == 1
    assert soft.sum() > 0.05 * on_object.sum()
    assert opaque.sum() > 0.2 * on_object.sum()
    # the opaque body is one solid region, not scattered pixels
    assert cv2.erode(opaque.astype(np.uint8), np.ones((3, 3), np.uint8)).sum() > 20


@pytest.mark.parametrize("which", ["video_layers", "collection_layers"])
def test_image_is_the_exact_composite(which, request):
    for layers in request.getfixturevalue(which):
        image, alpha, fg = layers.frame
        a = alpha.astype(np.float64)[..., None]
        expected = a * fg + (1 - a) * layers.background
        assert np.abs(image / 255.0 - expected).max() <= 0.5 / 255 + 1e-6


def test_reference_mask_of_video_is_the_object_wholly_in_view(video_layers):
    alpha = video_layers[0].frame.alpha
    border = np.concatenate([alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]])
    assert border.max() == 0
    assert np.array_equal(alpha, video_layers[0].object_alpha)


def test_object_moves(video_layers):
    def centroid(alpha):
        rows, cols = np.mgrid[: alpha.shape[0], : alpha.shape[1]]
        return np.array([(rows * alpha).sum(), (cols * alpha).sum()]) / alpha.sum()

    path = np.array([centroid(layers.object_alpha) for layers in video_layers])
    steps = np.linalg.norm(np.diff(path, axis=0), axis=1)
    assert np.linalg.norm(path[-1] - path[0]) > 3 or steps.max() > 3
    assert (steps > 0.1).all()  # it moves in every frame


def test_occluder_lowers_the_object_area_for_a_few_frames(video_layers):
    ratio = np.array([layers.frame.alpha.sum() / layers.object_alpha.sum() for layers in video_layers])
    occluded = ratio < 0.95
    assert 1 <= occluded.sum() <= len(ratio) // 2
    assert ratio.min() < 0.9
    assert not occluded[0]
    # the ground truth under the occluder is alpha * (1 - o): never above the unoccluded alpha
    for layers in video_layers:
        assert (layers.frame.alpha <= layers.object_alpha + 1e-6).all()


def test_write_synth_layout(tmp_path):
    out = write_synth("video", tmp_path / "clip", frames=3, size=SIZE, seed=2)
    frames = list(synth_video(3, SIZE, 2))
    names = [f"{i:05d}.png" for i in range(3)]
    for sub in ("frames", "alpha", "fg"):
        assert sorted(p.name for p in (out / sub).iterdir()) == names
    for name, frame in zip(names, frames):
        image = cv2.imread(str(out / "frames" / name), cv2.IMREAD_UNCHANGED)[..., ::-1]
        assert np.array_equal(image, frame.image)
        alpha = cv2.imread(str(out / "alpha" / name), cv2.IMREAD_UNCHANGED)
        assert alpha.dtype == np.uint16 and alpha.ndim == 2
        assert np.abs(alpha / 65535.0 - frame.alpha).max() <= 1 / 65535
        fg = cv2.imread(str(out / "fg" / name), cv2.IMREAD_UNCHANGED)[..., ::-1]
        assert np.abs(fg / 255.0 - frame.foreground).max() <= 0.5 / 255 + 1e-6
    mask = cv2.imread(str(out / "reference_mask.png"), cv2.IMREAD_UNCHANGED)
    assert mask.dtype == np.uint8 and set(np.unique(mask)) <= {0, 255}
    assert np.array_equal(mask == 255, frames[0].alpha > 0.5)
    meta = json.loads((out / "reference.json").read_text())
    assert meta == {"frame": 0, "mask": "reference_mask.png", "kind": "video", "seed": 2, "size": [96, 64]}
    assert not list(out.rglob("*.tmp"))


def test_write_synth_collection(tmp_path):
    out = write_synth("collection", tmp_path, frames=2, size=(64, 48), seed=1)
    assert json.loads((out / "reference.json").read_text())["kind"] == "collection"
    assert cv2.imread(str(out / "frames" / "00001.png")).shape == (48, 64, 3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "film"}, "kind"),
        ({"frames": 1}, "frames"),
        ({"frames": 2.5}, "frames"),
        ({"size": (31, 64)}, "size"),
        ({"size": (64,)}, "size"),
    ],
)
def test_write_synth_rejects_bad_arguments(tmp_path, kwargs, match):
    kind = kwargs.pop("kind", "video")
    with pytest.raises(InputError, match=match):
        write_synth(kind, tmp_path, **kwargs)
    assert not list(tmp_path.iterdir())


def test_generators_reject_bad_arguments_when_called():
    with pytest.raises(InputError, match="n_frames"):
        synth_video(1, SIZE)
    with pytest.raises(InputError, match="size"):
        synth_collection(3, (64, 16))
    with pytest.raises(InputError, match="seed"):
        synth_video(3, SIZE, seed=-1)
