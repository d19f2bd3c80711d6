"""The collection path's shape bounds: how far thin parts reach beyond the body, and cutting away
look-alikes joined to the object through them."""

import cv2
import numpy as np

from napari_iconmat.core.engines.classical.segmentation import bound_to_core, fragmented_parts, thin_reach


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


def test_bound_to_core_drops_a_weak_thick_look_alike_within_the_strands_reach():
    """A spoon beside a furry object, joined to it by the fur: it lies within the reach the reference's
    strands allow, but it is thick and weakly evidenced, so it is no strand and no body."""
    shape = (140, 200)
    body = _disk(shape, (60, 70), 22)
    fur = np.zeros(shape, bool)
    for dy in range(-12, 13, 4):
        fur |= _line(shape, (75, 70 + dy), (112, 70 + dy))
    reference = body | fur
    reach = thin_reach(reference)
    look_alike = _disk(shape, (124, 70), 14)  # overlaps the fur's tips
    mask = reference | look_alike
    within = cv2.distanceTransform((~body).astype(np.uint8), cv2.DIST_L2, 3) <= 1.3 * reach * np.sqrt(mask.sum())
    assert within[look_alike].mean() > 0.3  # the reach alone would keep this much of it
    log_odds = np.where(look_alike & ~fur, 0.4, 1.5).astype(np.float32)

    bounded = bound_to_core(mask, log_odds, reach, slack=1.3)
    assert bounded[body].all()
    assert bounded[fur & (np.arange(shape[1]) < 100)].mean() > 0.95  # the fur short of the spoon stays
    assert bounded[look_alike].mean() < 0.1


def test_placed_soft_parts_are_left_to_the_solve_which_starts_from_them():
    """An image placed by a keypoint transform: the soft parts of the placed reference alpha (a half
    covered antenna, a translucent fin) are unknown, one pixel wider, and the solve starts from the
    placed alpha there; the solid body is neither."""
    from types import SimpleNamespace

    from napari_iconmat.core.engines.classical.engine import ClassicalEngine
    from napari_iconmat.core.engines.classical.keypoints import ReferenceTransform

    alpha = np.zeros((100, 140), np.float32)
    body = _disk(alpha.shape, (50, 50), 20)
    alpha[body] = 1.0
    alpha[_line(alpha.shape, (70, 50), (110, 20))] = 0.5  # an antenna, half covered
    alpha[60:90, 95:130] = 0.4  # a translucent fin
    query = SimpleNamespace(arrays={"alpha": alpha})
    identity = ReferenceTransform(np.array([[1.0, 0, 0], [0, 1.0, 0]], np.float32), 30, False)
    region, guess = ClassicalEngine(placed_soft=1)._placed_soft(query, identity, alpha.shape, body)
    assert region[_line(alpha.shape, (75, 46), (105, 24))].all()
    assert region[60:90, 95:130].all() and region[59, 110] and not region[57, 110]
    assert np.allclose(guess[62:88, 97:128], 0.4)
    assert not region[40:60, 40:60].any() and guess[40:60, 40:60].min() > 0.99


def test_fragmented_parts_are_the_strands_not_the_body():
    shape = (120, 160)
    body = _disk(shape, (60, 60), 25)  # area ~1960: opened by a disk of radius round(0.03 * 44) = 1
    strands = _line(shape, (85, 50), (110, 40)) | _line(shape, (85, 70), (110, 80))
    fragmented = fragmented_parts(body | strands)
    assert fragmented[strands & ~body].all()  # every strand pixel beyond the body
    assert not fragmented[_disk(shape, (60, 60), 23)].any()  # nothing inside the body
    assert not fragmented_parts(np.zeros(shape, bool)).any()
