"""Training pairs: ICM-57 JSON layout, group pairing, CropResize, trimaps, determinism, errors."""

from __future__ import annotations

import json
from collections import Counter

import cv2
import numpy as np
import pytest

from napari_iconmat.core.engines.iconmat.data import InContextPairs, crop_resize, derive_trimap, trimap_levels
from napari_iconmat.core.errors import InputError


def _write_dataset(root, name, groups, *, size=(60, 80), trimaps=True, soft=True, records=None, radius=20):
    """``groups``: group label -> number of images. Images are h x w RGB with a disc of soft alpha."""
    h, w = size
    folder = root / name
    for sub in ("image", "alpha") + (("trimap",) if trimaps else ()):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    meta = {}
    rng = np.random.default_rng(len(name))
    yy, xx = np.mgrid[:h, :w]
    for label, count in groups.items():
        for i in range(count):
            stem = f"{label}_{i:02d}"
            image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            dist = np.hypot(yy - h / 2, xx - w / 2)
            alpha = np.clip((radius - dist) / 4, 0, 1) if soft else (dist < radius).astype(float)
            cv2.imwrite(str(folder / "image" / f"{stem}.jpg"), image)
            cv2.imwrite(str(folder / "alpha" / f"{stem}.png"), (alpha * 255).round().astype(np.uint8))
            if trimaps:
                tri = np.where(alpha >= 1, 255, np.where(alpha <= 0, 0, 128)).astype(np.uint8)
                cv2.imwrite(str(folder / "trimap" / f"{stem}.png"), tri)
            meta[stem] = {"dataset_name": name, "class": "animal", "sub_class": label, "HalfOrFull": "half"}
    meta.update(records or {})
    (root / f"{name}.json").write_text(json.dumps(meta))
    return folder


@pytest.fixture
def root(tmp_path):
    _write_dataset(tmp_path, "toy", {"three": 3, "two": 2, "one": 1})
    return tmp_path


def test_reads_every_listed_image_with_its_group(root):
    pairs = InContextPairs(root, ["toy"], resolution=64)
    assert len(pairs) == 6
    assert sorted(len(m) for m in pairs.groups.values()) == [1, 2, 3]
    assert pairs.groups["animal-three-half"] == tuple(i for i, s in enumerate(pairs.samples) if s.name.startswith("three"))


def test_reference_pairing_rules(root):
    pairs = InContextPairs(root, ["toy"], resolution=64)
    rng = np.random.default_rng(0)
    index = {s.name: i for i, s in enumerate(pairs.samples)}
    # a group of 3: never the target itself, both others drawn
    drawn = Counter(pairs.reference_for(index["three_00"], rng) for _ in range(300))
    assert set(drawn) == {index["three_01"], index["three_02"]}
    # a group of 2: the target itself stays a candidate (the released code's rule)
    drawn = Counter(pairs.reference_for(index["two_00"], rng) for _ in range(300))
    assert set(drawn) == {index["two_00"], index["two_01"]}
    # a group of 1: the image is its own reference
    assert pairs.reference_for(index["one_00"], rng) == index["one_00"]


def test_batches_depend_only_on_seed_and_step(root):
    a = InContextPairs(root, ["toy"], resolution=64, seed=3)
    b = InContextPairs(root, ["toy"], resolution=64, seed=3)
    first = a.batch(5, 2)
    b.batch(0, 2)  # another step first: no hidden state
    again = b.batch(5, 2)
    assert first["names"] == again["names"] and first["reference_names"] == again["reference_names"]
    for key in ("image", "alpha", "trimap", "reference_image", "reference_alpha", "binary"):
        np.testing.assert_array_equal(first[key], again[key])
    other = InContextPairs(root, ["toy"], resolution=64, seed=4)
    assert [other.order(0).tolist(), other.order(1).tolist()] != [a.order(0).tolist(), a.order(1).tolist()]


def test_an_epoch_visits_every_target_once(root):
    pairs = InContextPairs(root, ["toy"], resolution=64)
    names = [n for step in range(3) for n in pairs.batch(step, 2)["names"]]
    assert sorted(names) == sorted(f"toy/{s.name}" for s in pairs.samples)


def test_batch_shapes_and_ranges(root):
    batch = InContextPairs(root, ["toy"], resolution=64).batch(0, 2)
    assert batch["image"].shape == (2, 3, 64, 64) and batch["image"].dtype == np.float32
    assert batch["reference_image"].shape == (2, 3, 64, 64)
    assert batch["alpha"].shape == batch["trimap"].shape == batch["reference_alpha"].shape == (2, 1, 64, 64)
    assert -1.0 <= batch["image"].min() and batch["image"].max() <= 1.0
    assert 0.0 <= batch["alpha"].min() and batch["alpha"].max() <= 1.0
    assert set(np.unique(batch["trimap"]).tolist()) <= {0.0, 0.5, 1.0}
    assert not batch["binary"].any()  # soft discs


def test_crop_resize_takes_the_centre_square():
    tall = np.arange(6 * 4).reshape(6, 4).astype(np.float32)
    np.testing.assert_array_equal(crop_resize(tall, 4, cv2.INTER_NEAREST), tall[1:5])
    wide = tall.T.copy()
    np.testing.assert_array_equal(crop_resize(wide, 4, cv2.INTER_NEAREST), wide[:, 1:5])
    assert crop_resize(np.zeros((5, 9, 3), np.uint8), 8, cv2.INTER_CUBIC).shape == (8, 8, 3)


def test_trimap_levels_follow_the_released_thresholds():
    stored = np.array([[0, 84, 85, 128, 169, 170, 255]], np.uint8)
    np.testing.assert_array_equal(trimap_levels(stored), [[0, 0, 0.5, 0.5, 0.5, 1, 1]])
    np.testing.assert_array_equal(trimap_levels((stored.astype(np.uint16) * 257)), [[0, 0, 0.5, 0.5, 0.5, 1, 1]])


def test_missing_trimaps_are_derived_and_announced(tmp_path):
    _write_dataset(tmp_path, "notri", {"g": 2}, trimaps=False, soft=False)
    with pytest.warns(UserWarning, match="no trimap/ file; their trimaps are derived"):
        pairs = InContextPairs(tmp_path, ["notri"], resolution=64)
    sample = pairs.load(0, np.random.default_rng(0))
    assert sample["binary"]  # a hard disc is a segmentation sample
    assert (sample["trimap"] == 0.5).any() and (sample["trimap"] == 1).any() and (sample["trimap"] == 0).any()


def test_derived_trimap_marks_soft_pixels_and_the_edge():
    alpha = np.zeros((40, 40), np.float32)
    alpha[10:30, 10:30] = 1
    alpha[20, 5] = 0.5  # an isolated soft pixel
    trimap = derive_trimap(alpha)
    assert trimap[20, 5] == 0.5 and trimap[10, 20] == 0.5 and trimap[29, 20] == 0.5  # soft pixel, edges
    assert trimap[20, 20] == 1 and trimap[0, 39] == 0


def test_open_images_alphas_are_binarised_and_images_shared(tmp_path):
    folder = _write_dataset(tmp_path, "open-images-test", {"cat": 2})
    # instance masks '<image id>_<k>' share the image '<image id>.jpg'
    (folder / "image" / "cat_00.jpg").rename(folder / "image" / "cat.jpg")
    # resolution 60 = the 60x80 image's centre square: the bilinear resize is the identity
    pairs = InContextPairs(tmp_path, ["open-images-test"], resolution=60, random_interpolation=False)
    assert pairs.samples[0].image.name == "cat.jpg"
    sample = pairs.load(0, np.random.default_rng(0))
    assert sample["binary"] and pairs.samples[0].binarise
    assert set(np.unique(sample["alpha"]).tolist()) == {0.0, 1.0}  # the soft disc, binarised


def test_groups_span_datasets(tmp_path):
    _write_dataset(tmp_path, "a", {"g": 1})
    _write_dataset(tmp_path, "b", {"g": 1})
    pairs = InContextPairs(tmp_path, ["a", "b"], resolution=64)
    assert pairs.groups == {"animal-g-half": (0, 1)}


def test_small_instances_are_subsampled(tmp_path):
    _write_dataset(tmp_path, "inst", {"g": 2})
    meta = json.loads((tmp_path / "inst.json").read_text())
    meta["g_00"]["instance_area_ratio"] = [0.5, 0.4]  # >= 0.3: always kept
    meta["g_01"]["instance_area_ratio"] = [0.001]  # kept with probability ~1e-11
    (tmp_path / "inst.json").write_text(json.dumps(meta))
    pairs = InContextPairs(tmp_path, ["inst"], resolution=64)
    assert [s.name for s in pairs.samples] == ["g_00"]


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no-json", "no metadata file"),
        ("no-folder", "no folder"),
        ("bad-record", "must map image names"),
        ("missing-image", "lists 'g_01' but"),
        ("bad-trimap-size", "trimap .* is 10x10"),
    ],
)
def test_malformed_datasets_fail_with_one_clear_line(tmp_path, breakage, message):
    folder = _write_dataset(tmp_path, "bad", {"g": 2})
    if breakage == "no-json":
        (tmp_path / "bad.json").unlink()
    elif breakage == "no-folder":
        folder.rename(tmp_path / "elsewhere")
    elif breakage == "bad-record":
        (tmp_path / "bad.json").write_text(json.dumps({"g_00": {"class": "x"}}))
    elif breakage == "missing-image":
        (folder / "image" / "g_01.jpg").unlink()
    elif breakage == "bad-trimap-size":
        cv2.imwrite(str(folder / "trimap" / "g_00.png"), np.zeros((10, 10), np.uint8))
    with pytest.raises(InputError, match=message) as info:
        pairs = InContextPairs(tmp_path, ["bad"], resolution=64)
        for i in range(len(pairs)):
            pairs.load(i, np.random.default_rng(0))
    assert "\n" not in str(info.value)


def test_resolution_and_dataset_list_are_checked(root):
    with pytest.raises(InputError, match="at least 48"):
        InContextPairs(root, ["toy"], resolution=32)
    with pytest.raises(InputError, match="no dataset given"):
        InContextPairs(root, [], resolution=64)
