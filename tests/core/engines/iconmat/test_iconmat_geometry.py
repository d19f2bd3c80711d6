"""Any image size to the square network input and back (letterbox and centre crop)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_iconmat.core.engines.iconmat.geometry import SquareFit

SHAPES = [(480, 854), (1620, 1080), (333, 777), (768, 768), (50, 90), (97, 31), (1, 40)]


def _disc(shape, centre, radius):
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    return ((rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= radius**2).astype(np.float32)


@pytest.mark.parametrize("shape", SHAPES)
def test_letterbox_maps_back_to_the_exact_geometry(shape):
    fit = SquareFit(shape, 768, mode="letterbox")
    top, left, h, w = fit.target_box
    assert max(h, w) == 768 and abs(h / w - shape[0] / shape[1]) < 2 / min(h, w) + 1e-9
    # the image's box is centred: padding splits evenly (within one pixel)
    assert abs(top - (768 - top - h)) <= 1 and abs(left - (768 - left - w)) <= 1
    # a ramp in the original geometry comes back identical in shape and position
    rows, cols = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    ramp = (rows / max(shape[0] - 1, 1) + cols / max(shape[1] - 1, 1)) / 2
    square = fit.to_square(ramp, interpolation="linear", fill=-1.0)
    assert (square[:top] == -1).all() and (square[top + h :] == -1).all()
    back = fit.from_square(square)
    assert back.shape == shape
    tolerance = 1.0 / min(shape) + 2.0 / 768 + 1e-5  # one source pixel of the ramp + resampling
    assert np.abs(back - ramp).max() <= tolerance


def test_letterbox_keeps_an_object_where_it_was():
    shape = (480, 854)
    disc = _disc(shape, (300, 200), 40)
    fit = SquareFit(shape, 768, mode="letterbox")
    back = fit.from_square(fit.to_square(disc, fill=0.0))
    rows, cols = np.nonzero(disc > 0.5)
    rows_b, cols_b = np.nonzero(back > 0.5)
    assert abs(rows.mean() - rows_b.mean()) < 0.5 and abs(cols.mean() - cols_b.mean()) < 0.5
    assert abs((back > 0.5).sum() - (disc > 0.5).sum()) / (disc > 0.5).sum() < 0.03


def test_crop_uses_the_centre_square_and_leaves_the_rest_at_zero():
    shape = (400, 600)
    fit = SquareFit(shape, 64, mode="crop")
    assert fit.source_box == (0, 100, 400, 400)
    image = np.zeros(shape, np.float32)
    image[:, 100:500] = 1.0
    square = fit.to_square(image)
    assert square.shape == (64, 64) and np.allclose(square, 1.0)  # only the ones of the centre square
    back = fit.from_square(np.ones((64, 64), np.float32))
    assert back.shape == shape
    assert (back[:, 100:500] == 1).all() and (back[:, :100] == 0).all() and (back[:, 500:] == 0).all()
    assert fit.covered().sum() == 400 * 400


def test_colour_images_and_bad_arguments():
    fit = SquareFit((30, 60), 64)
    assert fit.to_square(np.ones((30, 60, 3))).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="shape"):
        fit.to_square(np.ones((31, 60)))
    with pytest.raises(ValueError, match="fit must be one of"):
        SquareFit((30, 60), 64, mode="stretch")
