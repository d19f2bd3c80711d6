"""The motion cue: what moves with the camera is background, unless colour says object next to the object."""

import numpy as np

from napari_iconmat.core.engines.classical.motion import background_motion, camera_residual, motion_evidence, moves_with_object


def _scene(object_flow=(-3.0, 1.0)):
    """A 120 x 160 flow field: the camera pans by 2 px, a 40 x 40 object moves on its own."""
    h, w = 120, 160
    flow = np.zeros((h, w, 2), np.float32)
    flow[..., 0] = 2.0
    carried = np.zeros((h, w), np.float32)
    carried[40:80, 30:70] = 1.0
    flow[40:80, 30:70] = object_flow
    carried[10:30, 110:150] = 1.0  # a leak: carried as object, moving with the camera
    return flow, carried, np.ones((h, w), np.float32)


def test_motion_evidence_calls_camera_motion_background_and_own_motion_object():
    flow, carried, confidence = _scene()
    evidence = motion_evidence(flow, carried, confidence)
    assert evidence is not None and evidence.shape == carried.shape and evidence.dtype == np.float32
    assert evidence.min() >= -1 and evidence.max() <= 1
    assert evidence[45:75, 35:65].min() > 0.9  # the object
    assert evidence[12:28, 112:148].max() < -0.9  # the leak
    assert evidence[95:115, 80:150].max() < -0.9  # plain background
    # untrusted flow says nothing
    confidence[:, :] = 0.6
    confidence[12:28, 112:148] = 0.0
    evidence = motion_evidence(flow, carried, confidence)
    assert np.abs(evidence[12:28, 112:148]).max() == 0


def test_motion_evidence_is_silent_when_the_object_moves_like_the_background():
    flow, carried, confidence = _scene(object_flow=(2.3, 0.0))  # 0.3 px apart: below min_motion
    assert motion_evidence(flow, carried, confidence) is None
    flow, carried, confidence = _scene()
    carried[:] = 1.0  # no background to fit the camera's motion to
    assert motion_evidence(flow, carried, confidence) is None


def test_motion_evidence_follows_a_zooming_camera():
    """A homography, not a translation: a zoom moves the background differently everywhere."""
    h, w = 120, 160
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    flow = np.stack([(xs - w / 2) * 0.03, (ys - h / 2) * 0.03], axis=-1).astype(np.float32)
    carried = np.zeros((h, w), np.float32)
    carried[40:80, 30:70] = 1.0
    flow[40:80, 30:70] = (4.0, -2.0)
    evidence = motion_evidence(flow, carried, np.ones((h, w), np.float32))
    assert evidence[45:75, 35:65].min() > 0.9
    assert evidence[0:20, 100:160].max() < -0.9 and evidence[100:120, 0:20].max() < -0.9


def test_background_motion_keeps_only_the_background_side_and_spares_object_colours_next_to_the_object():
    flow, carried, confidence = _scene()
    evidence = motion_evidence(flow, carried, confidence)
    colour = np.zeros_like(carried)
    result = background_motion(evidence, colour, carried)
    assert result.max() <= 0 and result.min() >= -1
    assert result[45:75, 35:65].max() == 0  # object motion is not turned into object evidence
    assert result[12:28, 112:148].max() < -0.9
    # a translucent part next to the object (background moving through it, object colours) is spared ...
    evidence[40:80, 70:76] = -1.0
    colour[:, :] = 4.0
    spared = background_motion(evidence, colour, carried)
    assert spared[40:80, 70:76].max() > -0.3
    # ... a far leak in object colours is not
    assert spared[12:28, 112:148].max() < -0.9
    # nor is a pixel next to the object whose colour the reference does not call object
    colour[40:80, 70:76] = -1.0
    assert background_motion(evidence, colour, carried)[40:80, 70:76].max() < -0.9


def _turning_object():
    """The scene above, plus an unseen part of the object (right of it, not carried) that moves with it,
    textured (a checkerboard) where the flow is pinned down, and a straight horizontal edge beside it."""
    flow, carried, confidence = _scene()
    flow[40:80, 70:90] = (-3.0, 1.0)  # the object's new side: moves with it, not carried yet
    gray = np.full(carried.shape, 100, np.uint8)
    yy, xx = np.mgrid[0:120, 0:160]
    gray[40:80, 70:90] = np.where(((yy[40:80, 70:90] // 4) + (xx[40:80, 70:90] // 4)) % 2, 200, 40)
    gray[88:92, 20:100] = 220  # a rail: an edge, along which any horizontal motion fits
    flow[85:95, 20:100] = (-3.0, 1.0)  # ... and the flow has smeared the object's motion along it
    object_matrix = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -1.0]])  # previous -> now: the inverse of the flow
    return flow, carried, confidence, object_matrix, gray


def test_moves_with_object_finds_unseen_parts_that_follow_the_object_where_texture_pins_the_flow():
    flow, carried, confidence, matrix, gray = _turning_object()
    follows = moves_with_object(flow, carried, confidence, matrix, gray)
    assert follows is not None and follows.shape == carried.shape and follows.dtype == np.float32
    assert follows.min() >= 0 and follows.max() <= 1
    assert np.median(follows[44:76, 71:77]) > 0.6  # the new side, next to the object ...
    assert np.median(follows[44:76, 71:77]) > np.median(follows[44:76, 84:88])  # ... fading with distance from it
    assert follows[95:115, 100:150].max() == 0  # background moving with the camera
    assert np.median(follows[89:91, 30:90]) < 0.2  # the rail's straight edge
    assert follows[12:28, 112:148].max() == 0  # the leak moves with the camera
    camera = camera_residual(flow, carried, confidence)
    assert np.array_equal(moves_with_object(flow, carried, confidence, matrix, gray, camera=camera), follows)


def test_moves_with_object_is_silent_without_a_single_object_motion_or_a_camera_fit():
    flow, carried, confidence, matrix, gray = _turning_object()
    assert moves_with_object(flow, carried, confidence, None, gray) is None
    carried[:] = 1.0
    assert moves_with_object(flow, carried, confidence, matrix, gray) is None
