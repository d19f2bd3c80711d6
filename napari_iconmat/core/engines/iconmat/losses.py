"""Training losses of the IconMatting decoder, as in the released code (``LossFunction2``).

Every term is computed per sample and the per-sample values are summed over the
batch (not averaged). A *matting* sample (soft ground truth) gets

- ``unknown_l1``: L1 inside the unknown region of the trimap,
- ``known_l1``: L1 inside the known region,
- ``laplacian``: L1 between 5-level Laplacian pyramids of the whole image,
- ``gradient``: L1 between Sobel gradients inside the unknown region, plus
  0.01 x the mean absolute Sobel gradient of the prediction there;

a *segmentation* sample (binary ground truth) gets only

- ``known_smooth_l1``: smooth L1 (beta 1) inside the known region.

Region terms are normalised as in the released code: the mean over all H x W
pixels of the masked error, times 512² / Σm (Σm = pixels in the region), so
that a region's weight does not depend on its size; 0 for an empty region.
All weights are 1. Reference: ``iconmatting.md`` §4.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ...errors import IconmatError

__all__ = [
    "LOSS_LIMIT",
    "LossExplosionError",
    "REGION_NORM",
    "check_loss",
    "gradient_penalty",
    "laplacian_loss",
    "matting_losses",
    "region_l1",
    "unknown_region",
]

#: the released code's region normalisation constant, 512²
REGION_NORM = 512.0 * 512.0
#: training stops when the total loss exceeds this (or is not finite)
LOSS_LIMIT = 1e4
#: Laplacian pyramid levels
PYRAMID_LEVELS = 5

_GAUSS_1D = (1.0, 4.0, 6.0, 4.0, 1.0)
_SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))


class LossExplosionError(IconmatError, FloatingPointError):
    """The training loss became NaN, infinite or larger than :data:`LOSS_LIMIT`."""


def unknown_region(trimap: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) float mask: 1 where the trimap is unknown (0.5), else 0.

    ``trimap`` holds 0 (background), 0.5 (unknown) and 1 (foreground).
    """
    return (trimap == 0.5).to(trimap.dtype)


def _region_scale(region: torch.Tensor) -> torch.Tensor:
    """(B,) 512² / Σm per sample, 0 where the region is empty."""
    count = region.sum(dim=(1, 2, 3))
    return torch.where(count > 0, REGION_NORM / count.clamp_min(1.0), torch.zeros_like(count))


def region_l1(pred: torch.Tensor, gt: torch.Tensor, region: torch.Tensor, *, smooth: bool = False) -> torch.Tensor:
    """(B,) per-sample L1 (or smooth L1, beta 1) inside ``region``, normalised by 512² / Σm.

    Parameters
    ----------
    pred, gt : (B, 1, H, W) tensors of float
    region : (B, 1, H, W) tensor of float in {0, 1}

    Returns
    -------
    (B,) tensor: mean over H·W of the masked error, times 512² / Σregion
    (0 for an empty region).
    """
    diff = pred * region - gt * region
    error = F.smooth_l1_loss(diff, torch.zeros_like(diff), reduction="none") if smooth else diff.abs()
    return error.mean(dim=(1, 2, 3)) * _region_scale(region)


def _sobel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    kx = torch.tensor(_SOBEL_X, dtype=x.dtype, device=x.device)[None, None]
    ky = kx.transpose(2, 3).contiguous()  # [[-1,-2,-1],[0,0,0],[1,2,1]]
    return F.conv2d(x, kx, padding=1), F.conv2d(x, ky, padding=1)


def gradient_penalty(pred: torch.Tensor, gt: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(B,) per-sample gradient loss inside ``region`` (the unknown region).

    ``|Sx(pred) - Sx(gt)| + |Sy(pred) - Sy(gt)| + 0.01 (|Sx(pred)| + |Sy(pred)|)``
    masked by ``region``, averaged over H·W and scaled by 512² / Σregion; Sx, Sy
    are 3x3 Sobel filters (cross-correlation, zero padding).
    """
    px, py = _sobel(pred)
    gx, gy = _sobel(gt)
    dims = (1, 2, 3)
    loss = (
        (px * region - gx * region).abs().mean(dim=dims)
        + (py * region - gy * region).abs().mean(dim=dims)
        + 0.01 * (px * region).abs().mean(dim=dims)
        + 0.01 * (py * region).abs().mean(dim=dims)
    )
    return loss * _region_scale(region)


def _gauss_blur(x: torch.Tensor) -> torch.Tensor:
    k1 = torch.tensor(_GAUSS_1D, dtype=x.dtype, device=x.device)
    kernel = (k1[:, None] * k1[None, :] / 256.0)[None, None]
    b, c, h, w = x.shape
    y = F.pad(x.reshape(b * c, 1, h, w), (2, 2, 2, 2), mode="reflect")
    return F.conv2d(y, kernel).reshape(b, c, h, w)


def _laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    bands = []
    for _ in range(levels):
        x = x[:, :, : x.shape[2] // 2 * 2, : x.shape[3] // 2 * 2]  # even size
        low = _gauss_blur(x)[:, :, ::2, ::2]
        up = torch.zeros_like(x)
        up[:, :, ::2, ::2] = 4.0 * low  # zero insertion; x4 keeps the mean after the blur
        bands.append(x - _gauss_blur(up))
        x = low
    return bands


def laplacian_loss(pred: torch.Tensor, gt: torch.Tensor, *, levels: int = PYRAMID_LEVELS) -> torch.Tensor:
    """(B,) per-sample Laplacian pyramid loss over the whole image.

    ``Σ_l 2^l · mean|L_l(pred) - L_l(gt)| / levels`` with ``L_l`` the l-th band of
    a Laplacian pyramid built with the 5x5 binomial kernel ([1 4 6 4 1]ᵀ[1 4 6 4 1]
    / 256, reflect padding), the image cropped to even size before each level.
    The smallest band works at H / 2^(levels-1): H and W must be at least
    3 · 2^(levels-1) (48 for 5 levels).
    """
    smallest = 3 * 2 ** (levels - 1)
    if min(pred.shape[-2:]) < smallest:
        raise ValueError(f"laplacian_loss needs images of at least {smallest}x{smallest}, got {tuple(pred.shape[-2:])}")
    loss = pred.new_zeros(pred.shape[0])
    for level, (bp, bg) in enumerate(zip(_laplacian_pyramid(pred, levels), _laplacian_pyramid(gt, levels))):
        loss = loss + 2.0**level * (bp - bg).abs().mean(dim=(1, 2, 3))
    return loss / levels


def matting_losses(
    pred: torch.Tensor,
    gt: torch.Tensor,
    trimap: torch.Tensor,
    *,
    binary: torch.Tensor | None = None,
) -> dict[str, torch.Tensor]:
    """The released training losses, per sample, summed over the batch.

    Parameters
    ----------
    pred : (B, 1, H, W) tensor of float in [0, 1]
        Predicted alpha.
    gt : (B, 1, H, W) tensor of float in [0, 1]
        Ground-truth alpha.
    trimap : (B, 1, H, W) tensor of float in {0, 0.5, 1}
        0.5 marks the unknown region; everything else is known.
    binary : (B,) tensor of bool, optional
        Which samples are segmentation samples (supervised by the known-region
        smooth L1 only). None: a sample is binary when every value of its ``gt``
        is exactly 0 or 1.

    Returns
    -------
    dict of 0-d tensors
        ``unknown_l1``, ``known_l1``, ``laplacian``, ``gradient`` (summed over the
        matting samples), ``known_smooth_l1`` (summed over the binary samples) and
        ``total`` (their sum).

    Notes
    -----
    The released code's own test for a segmentation sample is "all of ``gt`` is 0
    or all of it is 1" (a comment there says "only 0 and 1"); after a resize with
    linear or cubic interpolation even a binarised mask is rarely strictly binary.
    The trainer therefore passes ``binary`` from the loaded mask, before the resize.
    """
    if pred.shape != gt.shape or pred.shape != trimap.shape or pred.ndim != 4 or pred.shape[1] != 1:
        raise ValueError(
            f"pred, gt and trimap must all be (B, 1, H, W), got {tuple(pred.shape)}, {tuple(gt.shape)}, {tuple(trimap.shape)}"
        )
    if binary is None:
        binary = ((gt == 0) | (gt == 1)).flatten(1).all(dim=1)
    binary = binary.to(device=pred.device, dtype=torch.bool)
    matting = ~binary
    unknown = unknown_region(trimap)
    known = 1.0 - unknown
    terms = {
        "unknown_l1": region_l1(pred, gt, unknown),
        "known_l1": region_l1(pred, gt, known),
        "laplacian": laplacian_loss(pred, gt),
        "gradient": gradient_penalty(pred, gt, unknown),
    }
    zero = pred.new_zeros(())
    # torch.where, not multiplication: a term that is not used must not carry its NaN into the sum.
    losses = {name: torch.where(matting, value, zero).sum() for name, value in terms.items()}
    losses["known_smooth_l1"] = torch.where(binary, region_l1(pred, gt, known, smooth=True), zero).sum()
    losses["total"] = sum(losses.values())
    return losses


def _as_float(value) -> float:
    return float(value.detach()) if torch.is_tensor(value) else float(value)


def check_loss(total: torch.Tensor | float, *, step: int | None = None, terms: dict | None = None, batch_size: int = 2) -> float:
    """The loss as a float; :class:`LossExplosionError` if it is NaN, infinite or too large.

    The released code stops training the same way ("Loss explosion") above
    :data:`LOSS_LIMIT` with its batch of 2; the loss is a sum over the batch, so
    the limit here grows with ``batch_size`` (``LOSS_LIMIT * batch_size / 2``).
    """
    limit = LOSS_LIMIT * max(1.0, batch_size / 2.0)
    value = _as_float(total)
    if math.isfinite(value) and value <= limit:
        return value
    where = f" at step {step}" if step is not None else ""
    detail = ""
    if terms:
        detail = " (" + ", ".join(f"{k} {_as_float(v):.4g}" for k, v in terms.items() if k != "total") + ")"
    raise LossExplosionError(
        f"training loss exploded{where}: {value:.4g}{detail}, limit {limit:g}; "
        "lower --lr or lengthen --warmup; the last checkpoint, if any, is kept (--resume)"
    )
