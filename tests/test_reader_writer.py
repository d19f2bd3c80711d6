"""The npe2 reader and writer contributions, called as napari calls them (no viewer needed)."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import tifffile

from napari_iconmat._reader import napari_get_reader, read_frames
from napari_iconmat._writer import write_alpha, write_alpha_png16, write_alpha_tiff
from napari_iconmat.core.errors import InputError
from napari_iconmat.core.io import read_image
from napari_iconmat.core.io.lazy import LazyFrames


def test_reader_claims_videos_and_image_folders_only(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"f{i}.png"), np.full((6, 8, 3), 40 * i, np.uint8))
    assert napari_get_reader(str(folder)) is read_frames
    assert napari_get_reader([str(folder)]) is read_frames
    assert napari_get_reader(str(tmp_path / "clip.MP4")) is read_frames
    assert napari_get_reader(str(tmp_path / "notes.txt")) is None
    assert napari_get_reader(str(tmp_path)) is None  # no image directly inside
    assert napari_get_reader([str(folder), str(folder)]) is None

    ((data, meta, kind),) = read_frames(str(folder))
    assert kind == "image" and isinstance(data, LazyFrames) and data.shape == (3, 6, 8, 3)
    assert meta["rgb"] and meta["contrast_limits"] == (0, 255) and meta["name"] == "frames"
    assert int(data[2].max()) == 80


def test_reader_on_a_folder_of_mixed_sizes_names_the_problem(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 4), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((5, 4), np.uint8))
    with pytest.raises(InputError, match="differ in size"):
        read_frames(str(tmp_path))


def test_writer_writes_the_cli_layout(tmp_path):
    alpha = np.zeros((3, 8, 10), np.float32)
    alpha[:, 2:6, 3:7] = 1.0
    alpha[1, 2, 2] = 0.5
    paths = write_alpha(str(tmp_path / "out"), alpha, {"name": "clip alpha"})
    assert [p.rsplit("/", 2)[-2:] for p in paths] == [["alpha", "00000.png"], ["alpha", "00001.png"], ["alpha", "00002.png"], ["out", "alpha.tif"]]
    assert read_image(paths[1])[2, 2] == 128
    np.testing.assert_array_equal(tifffile.imread(paths[-1]), alpha)
    assert json.loads((tmp_path / "out" / "iconmat-run.json").read_text())["layer"] == "clip alpha"
    single = write_alpha(str(tmp_path / "one"), alpha[0], {"name": "frame"})
    assert len(single) == 2
    deep = write_alpha_png16(str(tmp_path / "deep"), alpha, {"name": "clip alpha"})
    assert read_image(deep[1]).dtype == np.uint16 and read_image(deep[1])[2, 2] == 32768


def test_tiff_writer_writes_one_float_stack(tmp_path):
    alpha = np.random.default_rng(0).random((4, 6, 5)).astype(np.float32)
    assert write_alpha_tiff(str(tmp_path / "clip.alpha.tif"), alpha, {"name": "a"}) == [str(tmp_path / "clip.alpha.tif")]
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "clip.alpha.tif"), alpha)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.alpha.tif"]  # no work folder left behind


@pytest.mark.parametrize(
    "data, message",
    [(np.zeros((2, 4, 4), np.uint8), "not an alpha matte"), (np.full((2, 4, 4), 2.0), r"values must lie in \[0, 1\]")],
)
def test_writer_refuses_layers_that_are_not_alphas(tmp_path, data, message):
    with pytest.raises(InputError, match=message):
        write_alpha(str(tmp_path / "out"), data, {"name": "photo"})
    assert not (tmp_path / "out").exists()
