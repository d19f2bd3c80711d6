"""Binary segmentation pieces of the classical engine: a contrast-sensitive graph cut and the clean-up of its result.

Pure numpy / OpenCV / PyMaxflow functions on working-size arrays; the engine
(:mod:`napari_iconmat.core.engines.classical.engine`) decides what log-odds go in.
"""

from __future__ import annotations

import cv2
import maxflow
import numpy as np

__all__ = ["bound_to_core", "enclosed_background", "fragmented_parts", "graph_cut", "keep_supported", "refill_holes", "select_object", "thin_parts", "thin_reach", "thin_relief"]

_DISK5 = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))


def thin_parts(mask: np.ndarray) -> np.ndarray:
    """What a 5 x 5 disk opening removes from a mask (antennae, strands, thin legs): (H, W) uint8 0/1."""
    mask_u8 = mask.astype(np.uint8)
    return mask_u8 & (1 - cv2.morphologyEx(mask_u8, cv2.MORPH_OPEN, _DISK5))


def fragmented_parts(mask: np.ndarray, fraction: float = 0.03) -> np.ndarray:
    """What an opening by a disk of ``fraction`` x sqrt(area) removes from a mask: fur, hair,
    strands, antennae and the gaps' edges between them, the parts a binary mask draws least
    exactly. (H, W) bool."""
    mask = mask.astype(bool)
    radius = int(round(fraction * np.sqrt(max(int(mask.sum()), 1))))
    if radius < 1:
        return mask.copy()
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return mask & (cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk) == 0)


def thin_relief(inside: np.ndarray, factor: float) -> np.ndarray:
    """Per-pixel smoothness factor: ``factor`` on and around thin parts of a mask, 1 elsewhere.

    Thin parts (what a 5 x 5 opening removes: antennae, legs, strands) are where the
    graph cut's boundary cost outweighs any unary evidence and erases them; a lower
    pairwise weight there lets the carried evidence keep them.
    """
    near = cv2.dilate(thin_parts(inside), _DISK5) > 0
    return np.where(near, factor, 1.0).astype(np.float32)


def graph_cut(rgb: np.ndarray, log_odds: np.ndarray, smoothness) -> np.ndarray:
    """Binary labelling minimising unary log-odds + contrast-sensitive Potts (4-neighbours).

    ``smoothness`` is a float or an (H, W) map of per-pixel pairwise weights.
    """
    smoothness = np.broadcast_to(np.asarray(smoothness, np.float64), log_odds.shape)
    # A pixel whose log-odds are below -4x the largest pairwise weight is background in every
    # minimum (flipping it alone to background lowers the energy), so the cut is solved only
    # inside the bounding box of the other pixels, the rest fixed to background: same result.
    undecided = log_odds >= -4.0 * float(smoothness.max(initial=0.0))
    if not undecided.any():
        return np.zeros(log_odds.shape, bool)
    rows, cols = np.nonzero(undecided)
    box = (slice(max(rows.min() - 1, 0), rows.max() + 2), slice(max(cols.min() - 1, 0), cols.max() + 2))
    # squared colour steps to the right and down; the contrast scale is the whole image's
    right = _squared_step(rgb[:, 1:], rgb[:, :-1])
    down = _squared_step(rgb[1:, :], rgb[:-1, :])
    beta = 1.0 / (2.0 * max(float((right.sum() + down.sum()) / max(right.size + down.size, 1)), 1e-6))
    labels = np.zeros(log_odds.shape, bool)
    rows_box, cols_box = box
    labels[box] = _graph_cut(log_odds[box], smoothness[box], right[rows_box, cols_box.start : cols_box.stop - 1], down[rows_box.start : rows_box.stop - 1, cols_box], beta)
    return labels


def _squared_step(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    step = a - b
    return step[..., 0] ** 2 + step[..., 1] ** 2 + step[..., 2] ** 2


def _graph_cut(log_odds: np.ndarray, smoothness: np.ndarray, right: np.ndarray, down: np.ndarray, beta: float) -> np.ndarray:
    h, w = log_odds.shape
    w_right = np.zeros((h, w), np.float64)
    w_down = np.zeros((h, w), np.float64)
    w_right[:, :-1] = np.minimum(smoothness[:, :-1], smoothness[:, 1:]) * np.exp(-beta * right)
    w_down[:-1, :] = np.minimum(smoothness[:-1], smoothness[1:]) * np.exp(-beta * down)
    graph = maxflow.Graph[float]()
    nodes = graph.add_grid_nodes((h, w))
    graph.add_grid_edges(nodes, weights=w_right, structure=np.array([[0, 0, 0], [0, 0, 1], [0, 0, 0]]), symmetric=True)
    graph.add_grid_edges(nodes, weights=w_down, structure=np.array([[0, 0, 0], [0, 0, 0], [0, 1, 0]]), symmetric=True)
    graph.add_grid_tedges(nodes, np.maximum(log_odds, 0), np.maximum(-log_odds, 0))
    graph.maxflow()
    # get_grid_segments is True on the sink side (background)
    return ~graph.get_grid_segments(nodes)


def keep_supported(mask: np.ndarray, support: np.ndarray, min_fraction: float = 0.02) -> np.ndarray:
    """Drop connected components that do not touch ``support`` or are tiny, fill small holes."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 1:
        return mask
    touched = np.bincount(labels[support & mask], minlength=count) > 0
    areas = stats[:, cv2.CC_STAT_AREA]
    biggest = areas[1:].max()
    keep = touched & (areas >= min_fraction * biggest)
    keep[0] = False
    if not keep.any():
        keep[1 + int(np.argmax(areas[1:]))] = True
    out = keep[labels]
    # fill holes smaller than 1% of the object: segmentation noise rather than real holes
    holes_count, holes, hstats, _ = cv2.connectedComponentsWithStats((~out).astype(np.uint8), connectivity=4)
    small = hstats[:, cv2.CC_STAT_AREA] < 0.01 * out.sum()
    border = np.unique(np.concatenate([holes[0], holes[-1], holes[:, 0], holes[:, -1]]))
    small[border] = False
    small[0] = False if holes_count > 0 and out[holes == 0].all() else small[0]
    return out | (small[holes] & ~out)


def enclosed_background(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The background of ``mask`` in 4-connected components, and which of them are holes.

    Returns ``labels`` ((H, W) int32, 0 on the mask) and ``enclosed`` (bool per label: a
    component that does not reach the image border).
    """
    count, labels = cv2.connectedComponents((~mask.astype(bool)).astype(np.uint8), connectivity=4)
    enclosed = np.ones(count, bool)
    enclosed[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = False
    enclosed[0] = False  # label 0 is the mask itself
    return labels, enclosed


def refill_holes(mask: np.ndarray, was_object: np.ndarray, share: float = 0.5) -> np.ndarray:
    """``mask`` with the holes filled that mostly lie where the object was.

    A hole is background enclosed by the mask (:func:`enclosed_background`). It is filled when
    at least ``share`` of its pixels are True in ``was_object`` (the previous frame's object,
    carried to this one). (H, W) bool in, (H, W) bool out.
    """
    mask = mask.astype(bool)
    labels, enclosed = enclosed_background(mask)
    if not enclosed.any():
        return mask
    flat = labels.ravel()
    size = np.bincount(flat, minlength=enclosed.size)
    inside = np.bincount(flat, weights=was_object.ravel().astype(np.float64), minlength=enclosed.size)
    fill = enclosed & (inside >= share * np.maximum(size, 1))
    return mask | fill[labels]


def select_object(mask: np.ndarray, log_odds: np.ndarray, area_fraction: float, touches_border: bool) -> np.ndarray:
    """On a frame without a temporal neighbour, keep the component(s) that look most like the object.

    Each connected component is scored by its summed positive evidence, damped
    when it is far larger than the reference object (relative to the frame) and,
    unless the reference object itself touched the frame border, when it spans
    the border (backgrounds do, isolated objects rarely). The best component is
    kept, with any other scoring at least half as well.
    """
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    if count <= 2:
        return mask
    evidence = np.bincount(labels.ravel(), weights=np.maximum(log_odds, 0).ravel(), minlength=count)
    areas = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    h, w = mask.shape
    expected = max(area_fraction, 1e-4) * h * w
    score = evidence * np.minimum(1.0, 3.0 * expected / np.maximum(areas, 1.0))
    if not touches_border:
        left, top = stats[:, cv2.CC_STAT_LEFT], stats[:, cv2.CC_STAT_TOP]
        right, bottom = left + stats[:, cv2.CC_STAT_WIDTH], top + stats[:, cv2.CC_STAT_HEIGHT]
        sides = (left == 0).astype(int) + (top == 0) + (right == w) + (bottom == h)
        score = score / (1.0 + sides)
    score[0] = -1.0
    best = score.max()
    keep = score >= 0.5 * best
    keep[0] = False
    return keep[labels]


def _opened_parts(mask: np.ndarray, radius: int) -> tuple[int, np.ndarray, np.ndarray]:
    """Connected components (8-connected) of ``mask`` opened by a disk of ``radius``: (count, labels, areas)."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    opened = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, disk)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(opened, connectivity=8)
    return count, labels, stats[:, cv2.CC_STAT_AREA]


def thin_reach(reference: np.ndarray, fraction: float = 0.12) -> float:
    """How far the reference object's thin structures (fur, antennae, legs) reach beyond its thick body.

    The mask is opened by a disk of radius ``fraction`` x sqrt(area) (what remains: the thick
    parts); returns the 99th percentile of the mask pixels' distance to them, over sqrt(mask
    area). ``inf`` when nothing remains (an all-thin object: no bound).
    """
    area = int(reference.sum())
    if area == 0:
        return float("inf")
    count, labels, _ = _opened_parts(reference, max(1, int(round(fraction * np.sqrt(area)))))
    if count <= 1:
        return float("inf")
    distance = cv2.distanceTransform((labels == 0).astype(np.uint8), cv2.DIST_L2, 3)
    return float(np.percentile(distance[reference.astype(bool)], 99) / np.sqrt(area))


def bound_to_core(mask: np.ndarray, log_odds: np.ndarray, reach: float, *, fraction: float = 0.12, slack: float = 1.3, keep: float = 0.3, drop_look_alikes: bool = True) -> np.ndarray:
    """Cut away look-alikes that touch the object through thin structures (fur, strands).

    The mask is opened by a disk of radius ``fraction`` x sqrt(area): thin structures and
    mottled look-alikes vanish, thick blobs remain. The blobs with at least ``keep`` x the best
    one's positive evidence (``log_odds``) are the object's body; the weaker thick blobs are
    look-alikes and dropped, as are mask pixels farther from the body than ``slack`` x ``reach``
    x sqrt(mask area) (:func:`thin_reach` of the reference); what is left is kept where
    connected to the body (``drop_look_alikes=False`` keeps the weaker thick blobs to that
    distance rule: on tracked frames they can be the object's own parts, split by an occluder).
    Returns an (h, w) bool mask.
    """
    mask = mask.astype(bool)
    area = int(mask.sum())
    if area == 0 or not np.isfinite(reach):
        return mask
    count, labels, _ = _opened_parts(mask, max(1, int(round(fraction * np.sqrt(area)))))
    if count <= 1:
        return mask
    evidence = np.bincount(labels.ravel(), weights=np.maximum(log_odds, 0).ravel(), minlength=count)
    evidence[0] = -1.0
    is_body = evidence >= keep * evidence.max()
    body = is_body[labels] & (labels > 0)
    distance = cv2.distanceTransform((~body).astype(np.uint8), cv2.DIST_L2, 3)
    near = mask & (distance <= slack * reach * np.sqrt(area) + 2.0)
    if drop_look_alikes:
        # a thick blob with weak evidence is a look-alike, not one of the thin structures the reach allows
        look_alike = cv2.dilate(((~is_body)[labels] & (labels > 0)).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        near &= ~(look_alike & ~body)
    n, near_labels = cv2.connectedComponents(near.astype(np.uint8), connectivity=8)
    touching = np.bincount(near_labels[body], minlength=n) > 0
    touching[0] = False
    return touching[near_labels]
