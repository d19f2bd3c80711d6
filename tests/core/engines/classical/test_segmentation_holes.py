"""Holes of a tracked frame's cut: filled where the object was, kept where it opened."""

import numpy as np

from napari_iconmat.core.engines.classical.segmentation import refill_holes


def test_refill_holes_fills_only_holes_where_the_object_was():
    mask = np.zeros((40, 60), bool)
    mask[5:35, 5:55] = True
    mask[10:16, 10:16] = False  # a window the colour model lost: object in the previous frame
    mask[10:16, 30:36] = False  # a gap the object really opened: background before
    mask[25:35, 40:46] = False  # a notch open to the outside: no hole
    was_object = np.zeros_like(mask)
    was_object[5:35, 5:25] = True
    was_object[25:35, 40:46] = True
    filled = refill_holes(mask, was_object, 0.5)
    assert filled[10:16, 10:16].all()
    assert not filled[10:16, 30:36].any()
    assert not filled[25:35, 40:46].any()
    assert (filled | ~mask).all()  # nothing of the mask is lost


def test_refill_holes_in_a_mask_that_touches_every_border():
    mask = np.ones((20, 20), bool)
    mask[8:12, 8:12] = False
    assert refill_holes(mask, np.ones_like(mask), 0.5).all()
    assert not refill_holes(mask, np.zeros_like(mask), 0.5)[8:12, 8:12].any()
