"""Keypoint pieces of the classical engine: the reference object's SIFT keypoints, upright and mirrored, and the
similarity transform that places the reference object in an image with no temporal neighbour.

Real collections show objects facing either way (left- and right-facing animals, cars, cells); SIFT
descriptors are not mirror-invariant, so the reference's keypoints are also detected on its horizontal
mirror image, and a frame is matched against both sets.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["object_keypoints", "match_reference", "ReferenceTransform", "fit_reference_transform"]

# Lowe's ratio test, as for re-detection
RATIO = 0.8


def object_keypoints(sift, gray: np.ndarray, alpha: np.ndarray, *, mirrored: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints on (or within 2 px of) the object.

    Parameters
    ----------
    sift : cv2.SIFT
    gray : (h, w) uint8
    alpha : (h, w) float32 in [0, 1], same size: the object
    mirrored : bool
        Detect on the horizontal mirror image of ``gray`` and ``alpha``; points are then
        in the mirror image's coordinates.

    Returns
    -------
    points : (N, 2) float32 (x, y); descriptors : (N, 128) float32
    """
    if mirrored:
        gray, alpha = gray[:, ::-1].copy(), alpha[:, ::-1].copy()
    keypoints, descriptors = sift.detectAndCompute(gray, None)
    points = np.array([k.pt for k in keypoints], np.float32).reshape(-1, 2)
    descriptors = descriptors if descriptors is not None else np.zeros((0, 128), np.float32)
    if len(points):
        inside = cv2.dilate((alpha > 0.5).astype(np.uint8), np.ones((5, 5), np.uint8))
        on_object = inside[points[:, 1].astype(int), points[:, 0].astype(int)] > 0
        points, descriptors = points[on_object], descriptors[on_object]
    return points, descriptors.astype(np.float32)


@dataclass
class ReferenceTransform:
    """A similarity transform from the (possibly mirrored) reference, at working size, to a frame.

    ``matrix`` (2, 3) maps reference pixels (of the mirror image when ``mirrored``) to frame pixels;
    ``inliers`` counts the RANSAC inliers that support it.
    """

    matrix: np.ndarray
    inliers: int
    mirrored: bool

    def warp(self, ref_alpha: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
        """The reference alpha (h, w) float32 placed in a frame of ``size_hw``."""
        source = ref_alpha[:, ::-1].copy() if self.mirrored else ref_alpha
        return cv2.warpAffine(source, self.matrix, (size_hw[1], size_hw[0]), flags=cv2.INTER_LINEAR)

    def warp_full(self, ref_alpha: np.ndarray, ref_working_hw, frame_working_hw, size_hw) -> np.ndarray:
        """The reference alpha at its own size placed in a frame of ``size_hw``: (h, w) float32.

        The transform was fitted between working sizes (``ref_working_hw`` for the reference,
        ``frame_working_hw`` for the frame); both ends are rescaled, so that a full-size
        reference alpha lands sharp in the full-size frame.
        """
        source = ref_alpha[:, ::-1].copy() if self.mirrored else ref_alpha
        matrix = rescale_transform(self.matrix, ref_alpha.shape[:2], ref_working_hw, frame_working_hw, size_hw)
        return cv2.warpAffine(source, matrix, (size_hw[1], size_hw[0]), flags=cv2.INTER_LINEAR)


def _rescaling(from_hw, to_hw) -> np.ndarray:
    """(3, 3) map of pixel centres of an image of ``from_hw`` to the same image resized to ``to_hw``."""
    sx, sy = to_hw[1] / from_hw[1], to_hw[0] / from_hw[0]
    return np.array([[sx, 0.0, 0.5 * (sx - 1)], [0.0, sy, 0.5 * (sy - 1)], [0.0, 0.0, 1.0]])


def rescale_transform(matrix: np.ndarray, source_hw, source_working_hw, target_working_hw, target_hw) -> np.ndarray:
    """A (2, 3) transform fitted between two images at working sizes, for the same images at other sizes.

    ``matrix`` maps pixels of the source at ``source_working_hw`` to the target at
    ``target_working_hw``; the result maps the source at ``source_hw`` to the target at
    ``target_hw`` (pixel centres kept, as ``cv2.resize`` does). Returns float64.
    """
    affine = np.vstack([np.asarray(matrix, np.float64), [0.0, 0.0, 1.0]])
    return (_rescaling(target_working_hw, target_hw) @ affine @ _rescaling(source_hw, source_working_hw))[:2]


def _no_matches() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros((0, 2), np.float32), np.zeros((0, 2), np.float32)


def match_reference(sift, gray: np.ndarray, ref_points: np.ndarray, ref_descriptors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SIFT matches (Lowe's ratio test) of the reference's object keypoints in ``gray``.

    Returns the matched reference points and frame points, two (N, 2) float32 arrays
    (N = 0 when the reference or the frame has fewer than 4 keypoints).
    """
    if len(ref_points) < 4:
        return _no_matches()
    keypoints, descriptors = sift.detectAndCompute(gray, None)
    if descriptors is None or len(keypoints) < 4:
        return _no_matches()
    return _matches(ref_points, ref_descriptors, keypoints, descriptors)


def _matches(ref_points, ref_descriptors, keypoints, descriptors) -> tuple[np.ndarray, np.ndarray]:
    if len(ref_points) < 4:
        return _no_matches()
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(ref_descriptors, descriptors, k=2)
    good = [m[0] for m in pairs if len(m) == 2 and m[0].distance < RATIO * m[1].distance]
    src = np.array([ref_points[m.queryIdx] for m in good], np.float32).reshape(-1, 2)
    dst = np.array([keypoints[m.trainIdx].pt for m in good], np.float32).reshape(-1, 2)
    return src, dst


def fit_reference_transform(
    sift, gray: np.ndarray, sets: list[tuple[np.ndarray, np.ndarray, bool]], *, min_inliers: int = 6, threshold: float = 4.0
) -> ReferenceTransform | None:
    """The best-supported similarity transform of the reference object into ``gray``, or None.

    Parameters
    ----------
    sift : cv2.SIFT
    gray : (h, w) uint8, the frame at working size
    sets : list of (points (N, 2), descriptors (N, 128), mirrored)
        The reference's keypoint sets (upright, mirrored); each is matched (ratio test) and
        fitted with RANSAC; the one with the most inliers wins.
    min_inliers : int
        Fewer inliers than this: no transform.
    threshold : float
        RANSAC reprojection threshold in pixels.
    """
    keypoints, descriptors = sift.detectAndCompute(gray, None)
    if descriptors is None or len(keypoints) < 4:
        return None
    best = None
    for points, ref_descriptors, mirrored in sets:
        src, dst = _matches(points, ref_descriptors, keypoints, descriptors)
        if len(src) < min_inliers:
            continue
        matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=threshold)
        if matrix is None or inliers is None:
            continue
        count = int(inliers.sum())
        if count >= min_inliers and (best is None or count > best.inliers):
            best = ReferenceTransform(matrix.astype(np.float32), count, mirrored)
    return best
