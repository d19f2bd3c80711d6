"""ICMP step 1: carry the reference's prompt points to a target by DINOv2 correspondence.

Dense features
    DINOv2 patch tokens of the whole image: the image is resized (aspect kept,
    no centre crop) so that its longer side is about ``side`` pixels and both
    sides are multiples of the patch size (14), ImageNet-normalised, and the
    patch tokens (CLS and register tokens dropped) form a grid of
    (H / 14) x (W / 14) unit-length descriptors, a :class:`FeatureMap`. Cell
    (i, j) covers the same fraction of every image, so its centre in pixels is
    ``((i + 0.5) * H / h, (j + 0.5) * W / w)``.

Prompt points
    Given by a scribble (its foreground and background strokes), or sampled
    from a reference mask: positives spread over the inside of the object
    (farthest-point sampling, starting at its deepest pixel), negatives spread
    over a ring of background around it (:func:`prompt_points`).

The matching rule (:func:`match_points`)
    The IconMatting paper does not spell out ICMP's rule, and its code has none;
    this one follows Matcher's bidirectional matching (Liu et al., ICLR 2024):

    1. *forward*: a reference point's descriptor (bilinear in the reference
       grid, renormalised) is matched to the target cell of highest cosine
       similarity;
    2. *backward*: that target cell's descriptor is matched back to the
       reference cell of highest cosine similarity;
    3. the match is kept only if the backward match lands within
       ``cycle_radius`` cells of the point it started from (a cycle-consistency
       check; ``cycle_radius=0`` would demand mutual nearest neighbours at the
       cell level, too strict when neighbouring cells look alike).

    The kept target point is the centre of the matched cell. The engine then
    drops duplicate cells, drops negatives that share a cell with a positive,
    and, when no positive survives, keeps the single most similar positive
    (the object is assumed present, as in PerSAM's one-point prompt).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ...errors import CheckpointError
from ...matting.trimap import band_width
from ...prompt import Prompt
from ...weights import load_pretrained, processor_config, resolve_pretrained, torch_device

__all__ = [
    "DEFAULT_DINOV2",
    "FeatureMap",
    "Matches",
    "Dinov2Features",
    "feature_input_size",
    "match_points",
    "prompt_points",
    "farthest_points",
]

DEFAULT_DINOV2 = "facebook/dinov2-base"
DINOV2_WHAT = "DINOv2"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class FeatureMap:
    """Dense unit-length descriptors on a regular grid covering a whole image.

    Attributes
    ----------
    features : (h, w, D) ndarray of float32
        One descriptor per cell, L2-normalised.
    image_shape : (H, W)
        The image the grid covers; cell (i, j) spans rows ``[i H/h, (i+1) H/h)``.
    """

    features: np.ndarray
    image_shape: tuple[int, int]

    @classmethod
    def from_array(cls, features: np.ndarray, image_shape) -> "FeatureMap":
        """Normalise a (h, w, D) array of descriptors into a :class:`FeatureMap`."""
        features = np.asarray(features, np.float32)
        if features.ndim != 3:
            raise ValueError(f"features must be (h, w, D), got shape {features.shape}")
        norm = np.linalg.norm(features, axis=2, keepdims=True)
        return cls(np.ascontiguousarray(features / np.maximum(norm, 1e-8)), (int(image_shape[0]), int(image_shape[1])))

    @property
    def grid(self) -> tuple[int, int]:
        return self.features.shape[:2]

    @property
    def cell_size(self) -> np.ndarray:
        """(2,) pixels per cell along rows and columns."""
        return np.array(self.image_shape, np.float64) / np.array(self.grid, np.float64)

    def to_cells(self, points: np.ndarray) -> np.ndarray:
        """(N, 2) pixel (row, col) -> continuous cell coordinates (cell centres at integers)."""
        return np.asarray(points, np.float64).reshape(-1, 2) / self.cell_size - 0.5

    def to_pixels(self, cells: np.ndarray) -> np.ndarray:
        """(N, 2) cell coordinates -> pixel (row, col); integer cells give cell centres."""
        return (np.asarray(cells, np.float64).reshape(-1, 2) + 0.5) * self.cell_size

    def sample(self, points: np.ndarray) -> np.ndarray:
        """(N, D) descriptors at pixel points (row, col), bilinear between cell centres, renormalised."""
        h, w = self.grid
        cells = self.to_cells(points)
        r = np.clip(cells[:, 0], 0, h - 1)
        c = np.clip(cells[:, 1], 0, w - 1)
        r0, c0 = np.floor(r).astype(int), np.floor(c).astype(int)
        r1, c1 = np.minimum(r0 + 1, h - 1), np.minimum(c0 + 1, w - 1)
        fr, fc = (r - r0)[:, None], (c - c0)[:, None]
        f = self.features
        out = (1 - fr) * ((1 - fc) * f[r0, c0] + fc * f[r0, c1]) + fr * ((1 - fc) * f[r1, c0] + fc * f[r1, c1])
        return (out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-8)).astype(np.float32)


@dataclass(frozen=True)
class Matches:
    """Where reference points land in a target (see :func:`match_points`).

    Attributes
    ----------
    points : (N, 2) ndarray of float32
        Target pixel (row, col) of each point: the centre of its matched cell.
    cells : (N,) ndarray of int
        Flat index of the matched target cell.
    similarity : (N,) ndarray of float32
        Cosine similarity of the forward match, in [-1, 1].
    cycle_error : (N,) ndarray of float32
        Distance, in reference cells, from the point to where its match maps back.
    consistent : (N,) ndarray of bool
        ``cycle_error <= cycle_radius``: the reliable matches.
    """

    points: np.ndarray
    cells: np.ndarray
    similarity: np.ndarray
    cycle_error: np.ndarray
    consistent: np.ndarray


def match_points(reference: FeatureMap, points: np.ndarray, target: FeatureMap, *, cycle_radius: float = 1.5) -> Matches:
    """Match reference points to a target, keeping cycle-consistent matches.

    Parameters
    ----------
    reference, target : FeatureMap
    points : (N, 2) array of float
        Reference pixel (row, col).
    cycle_radius : float
        Largest distance in reference cells between a point and the backward
        match of its forward match for the match to count as reliable (default 1.5).

    Returns
    -------
    Matches

    Notes
    -----
    The rule is described in the module docstring.
    """
    points = np.asarray(points, np.float64).reshape(-1, 2)
    ref_flat = reference.features.reshape(-1, reference.features.shape[2])
    tgt_flat = target.features.reshape(-1, target.features.shape[2])
    if ref_flat.shape[1] != tgt_flat.shape[1]:
        raise ValueError(f"descriptor sizes differ: reference {ref_flat.shape[1]}, target {tgt_flat.shape[1]}")
    if len(points) == 0:
        empty = np.zeros(0, np.float32)
        return Matches(np.zeros((0, 2), np.float32), np.zeros(0, int), empty, empty, np.zeros(0, bool))
    descriptors = reference.sample(points)
    forward_sim = descriptors @ tgt_flat.T  # (N, M)
    forward = np.argmax(forward_sim, axis=1)
    similarity = forward_sim[np.arange(len(points)), forward]
    backward = np.argmax(tgt_flat[forward] @ ref_flat.T, axis=1)  # (N,) reference cells
    ref_w = reference.grid[1]
    back_cells = np.stack([backward // ref_w, backward % ref_w], axis=1).astype(np.float64)
    cycle_error = np.linalg.norm(back_cells - reference.to_cells(points), axis=1)
    tgt_w = target.grid[1]
    target_points = target.to_pixels(np.stack([forward // tgt_w, forward % tgt_w], axis=1))
    return Matches(
        points=target_points.astype(np.float32),
        cells=forward.astype(int),
        similarity=similarity.astype(np.float32),
        cycle_error=cycle_error.astype(np.float32),
        consistent=cycle_error <= cycle_radius,
    )


def feature_input_size(shape, *, side: int, patch: int) -> tuple[int, int]:
    """Network input (height, width): longer side about ``side``, both multiples of ``patch``, aspect kept.

    Examples
    --------
    >>> feature_input_size((480, 854), side=448, patch=14)
    (252, 448)
    """
    height, width = int(shape[0]), int(shape[1])
    scale = side / max(height, width)
    return (max(1, round(height * scale / patch)) * patch, max(1, round(width * scale / patch)) * patch)


class Dinov2Features:
    """Dense DINOv2 patch features of whole images (no centre crop).

    Parameters
    ----------
    model : str or path
        A ``save_pretrained`` folder or a hub id in the local Hugging Face cache
        (``Dinov2Model`` or ``Dinov2WithRegistersModel``). Nothing is downloaded.
    side : int
        Longer side of the network input in pixels (default 448: a 32-cell grid).
    device : str, optional
        torch device; default CUDA when available, else the CPU.

    Raises
    ------
    WeightsNotFoundError, CheckpointError
    """

    def __init__(self, model: str = DEFAULT_DINOV2, *, side: int = 448, device: str | None = None):
        folder = resolve_pretrained(model, what=DINOV2_WHAT, required=("config.json",))
        from transformers import AutoModel

        self.device = torch_device(device)
        self.model = load_pretrained(AutoModel, folder, DINOV2_WHAT).to(self.device)
        config = self.model.config
        if config.model_type not in ("dinov2", "dinov2_with_registers"):
            raise CheckpointError(f"{DINOV2_WHAT}: {folder} holds a {config.model_type!r} model, not DINOv2")
        self.patch = int(config.patch_size)
        self.skip = 1 + int(getattr(config, "num_register_tokens", 0) or 0)  # CLS (+ registers)
        self.side = int(side)
        extra = processor_config(folder)
        self.mean = np.asarray(extra.get("image_mean", IMAGENET_MEAN), np.float32)
        self.std = np.asarray(extra.get("image_std", IMAGENET_STD), np.float32)

    def __call__(self, image: np.ndarray) -> FeatureMap:
        """Features of an (H, W, 3) float image in [0, 1]."""
        import torch

        height, width = feature_input_size(image.shape, side=self.side, patch=self.patch)
        shrink = height * width < image.shape[0] * image.shape[1]
        resized = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
        normalised = (np.clip(resized, 0, 1) - self.mean) / self.std
        pixels = torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)[None], np.float32)).to(self.device)
        with torch.inference_mode():
            tokens = self.model(pixel_values=pixels).last_hidden_state[0, self.skip :]
        grid = (height // self.patch, width // self.patch)
        features = tokens.float().cpu().numpy().reshape(grid[0], grid[1], -1)
        return FeatureMap.from_array(features, image.shape[:2])


def farthest_points(coords: np.ndarray, count: int, *, start: int = 0) -> np.ndarray:
    """Indices of ``count`` rows of ``coords`` spread out by farthest-point sampling from row ``start``.

    Parameters
    ----------
    coords : (M, 2) array
    count : int

    Returns
    -------
    (min(count, M),) ndarray of int, ``start`` first; deterministic.
    """
    coords = np.asarray(coords, np.float64)
    if len(coords) == 0 or count <= 0:
        return np.zeros(0, int)
    chosen = [int(start)]
    distance = np.sum((coords - coords[start]) ** 2, axis=1)
    for _ in range(min(count, len(coords)) - 1):
        nxt = int(np.argmax(distance))
        if distance[nxt] <= 0:
            break
        chosen.append(nxt)
        distance = np.minimum(distance, np.sum((coords - coords[nxt]) ** 2, axis=1))
    return np.array(chosen, int)


def _spread(pixels: np.ndarray, count: int, start_near: np.ndarray) -> np.ndarray:
    """``count`` well-spread (row, col) pixels of a (M, 2) set, the first the one nearest ``start_near``."""
    if len(pixels) == 0 or count <= 0:
        return np.zeros((0, 2), np.float32)
    step = max(1, len(pixels) // 40000)  # a subsample keeps sampling fast on large masks
    pixels = pixels[::step]
    start = int(np.argmin(np.sum((pixels - start_near) ** 2, axis=1)))
    return pixels[farthest_points(pixels, count, start=start)].astype(np.float32)


def prompt_points(prompt: Prompt, *, positive: int = 8, negative: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Points to carry to every target: positives on the object, negatives around it.

    Parameters
    ----------
    prompt : Prompt
        A scribble gives its strokes: positives are spread over the
        foreground strokes, negatives over the background strokes. A mask or
        alpha (> 0.5) gives positives spread over the object's inside (pixels
        at least a little away from its edge) and negatives over a ring of
        background around it.
    positive, negative : int
        Largest numbers of points (default 8 and 4).

    Returns
    -------
    points : (N, 2) ndarray of float32
        Pixel (row, col) of each point.
    labels : (N,) ndarray of int8
        1 = on the object, 0 = background; positives first.
    """
    if prompt.kind == "scribble":
        fg_pixels = np.argwhere(prompt.foreground)
        bg_pixels = np.argwhere(prompt.background)
        pos = _spread(fg_pixels, positive, fg_pixels.mean(axis=0))
        neg = _spread(bg_pixels, negative, fg_pixels.mean(axis=0))
    else:
        mask = prompt.alpha > 0.5
        mask_u8 = mask.astype(np.uint8)
        inside = cv2.distanceTransform(np.pad(mask_u8, 1), cv2.DIST_L2, 5)[1:-1, 1:-1]
        # the inside: at least a tenth of the object's size from the edge, or half the deepest point
        depth = min(max(1.0, 0.1 * np.sqrt(mask.sum())), 0.5 * float(inside.max()))
        core = np.argwhere(inside >= depth)
        pos = _spread(core, positive, np.array(np.unravel_index(np.argmax(inside), mask.shape)))
        outside = cv2.distanceTransform(1 - mask_u8, cv2.DIST_L2, 5)
        near = band_width(mask, fraction=0.1, minimum=3, maximum=60)
        ring = np.argwhere((outside > near) & (outside <= 3 * near))
        neg = _spread(ring, negative, np.argwhere(mask).mean(axis=0) if len(ring) else np.zeros(2))
    points = np.concatenate([pos, neg]).astype(np.float32).reshape(-1, 2)
    labels = np.concatenate([np.ones(len(pos), np.int8), np.zeros(len(neg), np.int8)])
    return points, labels
