"""The collection path's shape bounds: how far thin parts reach beyond the body, and cutting away
look-alikes joined to the object through them."""

import cv2
import numpy as np

from napari_iconmat.core.segmentation import bound_to_core, thin_reach


def _disk(shape, centre, radius):
    mask = np.zeros(shape, np.uint8)
    cv2.circle(mask, centre, radius, 1, -1)
    return mask.astype(bool)


def _line(shape, start, end, thickness=1):
    mask = np.zeros(shape, np.uint8)
    cv2.line(mask, start, end, 1, thickness)
    return mask.astype(bool)


def test_thin_reach_measures_strands_beyond_the_body():
    shape = (120, 160)
    body = _disk(shape, (50, 60), 20)
    long_strand = _line(shape, (70, 60), (100, 60))  # 30 px beyond the body's edge
    short_strand = _line(shape, (70, 60), (80, 60))
    # a percentile over the mask's pixels: the far end of a lone strand (a few of them) counts less
    reach = thin_reach(body | long_strand) * np.sqrt((body | long_strand).sum())
    assert 12 < reach <= 30
    assert thin_reach(body | short_strand) * np.sqrt((body | short_strand).sum()) < reach - 8
    assert thin_reach(body) * np.sqrt(body.sum()) < 3
    assert thin_reach(_line(shape, (10, 10), (150, 100))) == float("inf")  # all thin: no bound


def test_bound_to_core_cuts_a_look_alike_joined_through_a_strand_and_keeps_the_strands():
    shape = (140, 240)
    body = _disk(shape, (50, 70), 20)
    strands = _line(shape, (70, 70), (85, 70)) | _line(shape, (50, 50), (50, 35))
    reference = body | strands
    reach = thin_reach(reference)
    look_alike = _disk(shape, (190, 70), 15)
    bridge = _line(shape, (70, 72), (175, 72), thickness=2)
    mask = reference | look_alike | bridge
    log_odds = np.where(look_alike, 0.2, 1.0).astype(np.float32)

    bounded = bound_to_core(mask, log_odds, reach, slack=2.0)
    assert bounded[body].all() and bounded[strands].all()
    assert not bounded[look_alike].any()
    assert not (bounded & ~mask).any()
    # the same look-alike with as much evidence as the body is a second thick part: kept
    assert bound_to_core(mask, np.ones(shape, np.float32), reach, slack=2.0)[look_alike].all()
    # no bound without a reach
    assert np.array_equal(bound_to_core(mask, log_odds, float("inf")), mask)


def test_placed_unknown_marks_thin_soft_parts_not_wide_translucent_ones():
    from napari_iconmat.core.engines.classical import ClassicalEngine

    carried = np.zeros((100, 140), np.float32)
    carried[_disk(carried.shape, (50, 50), 20)] = 1.0
    carried[_line(carried.shape, (70, 50), (110, 20))] = 0.5  # an antenna, half covered
    carried[60:90, 95:130] = 0.5  # a translucent fin
    unknown = ClassicalEngine(placed_band=0.01)._placed_unknown(carried)
    assert unknown[_line(carried.shape, (75, 46), (105, 24))].all()
    assert not unknown[68:82, 103:122].any()
    assert not unknown[45:55, 45:55].any()
