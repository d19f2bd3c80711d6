"""Tests of napari_iconmat.core.pipeline.export: mattes in memory written in the CLI's layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile

from napari_iconmat.core.errors import InputError
from napari_iconmat.core.pipeline.export import composite, export_mattes, iter_export
from napari_iconmat.core.io import read_image
from napari_iconmat.core.pipeline.run import RUN_RECORD


def _alphas(n=4, h=12, w=16):
    alphas = np.zeros((n, h, w), np.float32)
    for i in range(n):
        alphas[i, 2:10, i : i + 8] = 1.0
        alphas[i, 2:10, i + 8] = 0.5
    return alphas


def test_export_writes_the_cli_layout(tmp_path):
    alphas = _alphas()
    frames = np.random.default_rng(0).integers(0, 255, (4, 12, 16, 3), dtype=np.uint8)
    outputs = export_mattes(alphas, tmp_path, indices=[3, 1], formats="png16,rgba,tiff", frames=frames, record={"engine": "classical"})
    assert sorted(p.name for p in (tmp_path / "alpha").iterdir()) == ["00001.png", "00003.png"]
    assert sorted(p.name for p in (tmp_path / "rgba").iterdir()) == ["00001.png", "00003.png"]
    png = read_image(tmp_path / "alpha" / "00003.png")
    assert png.dtype == np.uint16 and np.abs(png / 65535.0 - alphas[3]).max() < 1e-4
    rgba = read_image(tmp_path / "rgba" / "00001.png")
    assert rgba.shape == (12, 16, 4) and np.array_equal(rgba[..., 3], np.rint(alphas[1] * 255).astype(np.uint8))
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "alpha.tif"), alphas[[1, 3]])
    record = json.loads((tmp_path / RUN_RECORD).read_text())
    assert record["complete"] and record["frame_indices"] == [1, 3] and record["engine"] == "classical"
    assert set(outputs) == {"alpha", "rgba", "tiff"}


def test_export_yields_per_frame_and_a_cancel_leaves_no_tiff(tmp_path):
    steps = iter_export(_alphas(), tmp_path, formats=("png", "tiff"))
    assert next(steps) == 0 and next(steps) == 1
    steps.close()
    assert sorted(p.name for p in (tmp_path / "alpha").iterdir()) == ["00000.png", "00001.png"]
    assert not (tmp_path / "alpha.tif").exists() and not (tmp_path / RUN_RECORD).exists()


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(formats="png,jpeg"), "unknown output format 'jpeg'"),
        (dict(formats="rgba"), "'rgba' needs the input frames"),
        (dict(indices=[7]), "frame 7 is out of range for 4 mattes"),
        (dict(indices=[]), "nothing to export"),
    ],
)
def test_export_errors_before_writing(tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        export_mattes(_alphas(), tmp_path / "out", **options)
    assert not (tmp_path / "out").exists()


def test_export_refuses_non_alpha_data(tmp_path):
    with pytest.raises(InputError, match="float in"):
        export_mattes(np.zeros((2, 4, 4), np.uint8), tmp_path)
    with pytest.raises(InputError, match="stack"):
        export_mattes(np.zeros((4, 4), np.float32), tmp_path)


def test_composite_over_checkerboard_and_colour():
    image = np.full((32, 32, 3), 200, np.uint8)
    alpha = np.zeros((32, 32), np.float32)
    alpha[8:24, 8:24] = 1.0
    out = composite(image, alpha)
    assert out.dtype == np.uint8 and (out[8:24, 8:24] == 200).all()
    assert len(np.unique(out[:8, :, 0])) == 2  # two checker shades around the object
    green = composite(image, alpha, background=(0, 1, 0))
    assert green[0, 0].tolist() == [0, 255, 0]
    with pytest.raises(InputError, match="background"):
        composite(image, alpha, background="stripes")
