"""SAM 2's input maths without torchvision: images, mask prompts, point prompts and mask logits.

transformers' SAM 2 processors (``Sam2VideoVideoProcessor``, ``Sam2VideoProcessor``)
need torchvision, whose wheels do not load against a CPU-only torch. These
functions do the same documented steps with torch alone:

- **image** (``Sam2VideoVideoProcessor``: ``size={'height': S, 'width': S}``,
  ``resample=BILINEAR``, ``do_rescale``, ``do_normalize`` with the ImageNet mean
  and std): RGB in [0, 1] (the rescale by 1/255 of 8-bit frames), resized to
  S x S without keeping the aspect ratio by antialiased bilinear interpolation
  (``align_corners=False``; torchvision's tensor resize), then
  ``(x - mean) / std`` per channel. torchvision resizes 8-bit frames before the
  rescale and rounds to 8 bits in between; resizing the float image skips
  that rounding (a difference below 1/255 before normalisation);
- **mask prompt** (``Sam2VideoProcessor.process_new_mask_for_video_frame``): the
  mask as float, resized to S x S by antialiased bilinear interpolation, then
  ``>= 0.5``;
- **points** (``Sam2VideoProcessor._normalize_coordinates``): pixel ``(x, y)``
  scaled by ``(S / W, S / H)``;
- **mask logits back to the frame** (``Sam2VideoVideoProcessor.post_process_masks``
  without padding): the low-resolution logits bilinearly interpolated to S x S,
  then to the frame's H x W (``align_corners=False``, no antialiasing).

Importing this module does not import torch; the functions do.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "image_to_pixels", "mask_to_input", "points_to_input", "logits_to_frame"]

#: ``transformers.image_utils.IMAGENET_DEFAULT_MEAN`` / ``IMAGENET_DEFAULT_STD``
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def _resize(tensor, size: int):
    import torch.nn.functional as F

    return F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def image_to_pixels(rgb: np.ndarray, size: int, *, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """(H, W, 3) float RGB in [0, 1] -> (3, size, size) float32 torch tensor, normalised."""
    import torch

    image = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    if image.shape[-2:] != (size, size):
        image = _resize(image, size)
    mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
    return ((image - mean_t) / std_t)[0]


def mask_to_input(mask: np.ndarray, size: int):
    """(H, W) bool mask -> (1, 1, size, size) float32 torch tensor of 0 and 1."""
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(mask, dtype=np.float32))[None, None]
    if tensor.shape[-2:] == (size, size):
        return tensor
    return (_resize(tensor, size) >= 0.5).float()


def points_to_input(points_rc: np.ndarray, labels: np.ndarray, shape: tuple[int, int], size: int) -> dict:
    """Pixel (row, col) points and 0/1 labels -> the model's ``point_inputs`` dict (one object)."""
    import torch

    h, w = shape
    points_rc = np.asarray(points_rc, dtype=np.float32).reshape(-1, 2)
    coords = np.stack([points_rc[:, 1] * (size / w), points_rc[:, 0] * (size / h)], axis=1)
    return {
        "point_coords": torch.from_numpy(coords)[None, None],
        "point_labels": torch.from_numpy(np.asarray(labels, dtype=np.int32).reshape(-1))[None, None],
    }


def logits_to_frame(logits, size: int, shape: tuple[int, int]) -> np.ndarray:
    """(1, 1, h, w) mask logits -> (H, W) float32 logits at the frame's size."""
    import torch.nn.functional as F

    logits = logits.float()
    if logits.shape[-2:] != (size, size):
        logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
    if logits.shape[-2:] != tuple(shape):
        logits = F.interpolate(logits, size=tuple(shape), mode="bilinear", align_corners=False)
    return logits[0, 0].cpu().numpy().astype(np.float32)
