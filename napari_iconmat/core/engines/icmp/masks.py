"""ICMP step 2: SAM turns the carried points into one coarse mask per target.

The image goes through SAM's preprocessing (as ``SamImageProcessor`` does it):
resized so that its longer side is the model's input size (1024 for the
released models), normalised, zero-padded at the bottom and right to a square.
Points are given in (x, y) pixel coordinates of that resized image, label 1 on
the object and 0 on the background. SAM proposes three masks with a predicted
IoU each; the one with the highest predicted IoU is kept, its low-resolution
logits are upsampled to the padded square, cropped to the resized image,
upsampled to the original size and cut at 0.
"""

from __future__ import annotations

import cv2
import numpy as np

from ...errors import CheckpointError
from ...weights import load_pretrained, processor_config, resolve_pretrained, torch_device

__all__ = ["DEFAULT_SAM", "SamMasker", "sam_resize_shape", "sam_inputs", "sam_points", "upscale_mask_logits"]

DEFAULT_SAM = "facebook/sam-vit-base"
SAM_WHAT = "SAM"
_SAM_MEAN = (0.485, 0.456, 0.406)
_SAM_STD = (0.229, 0.224, 0.225)


def sam_resize_shape(shape, longest: int) -> tuple[int, int]:
    """(height, width) of an image of ``shape`` resized so that its longer side is ``longest``.

    Rounded as ``SamImageProcessor`` rounds (``int(x + 0.5)``).

    Examples
    --------
    >>> sam_resize_shape((480, 854), 1024)
    (576, 1024)
    """
    height, width = int(shape[0]), int(shape[1])
    scale = longest / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def sam_points(points: np.ndarray, shape, longest: int) -> np.ndarray:
    """Pixel (row, col) points of an image of ``shape`` -> SAM's (x, y) in the resized image.

    Returns (N, 2) float32, scaled per axis by resized / original size, as
    ``SamProcessor`` scales its ``input_points``.
    """
    resized = sam_resize_shape(shape, longest)
    points = np.asarray(points, np.float64).reshape(-1, 2)
    x = points[:, 1] * (resized[1] / shape[1])
    y = points[:, 0] * (resized[0] / shape[0])
    return np.stack([x, y], axis=1).astype(np.float32)


def sam_inputs(image: np.ndarray, longest: int, *, mean=_SAM_MEAN, std=_SAM_STD) -> np.ndarray:
    """SAM's pixel values: (3, longest, longest) float32, resized, normalised, zero-padded bottom/right.

    Parameters
    ----------
    image : (H, W, 3) ndarray of float in [0, 1]
    """
    height, width = sam_resize_shape(image.shape, longest)
    shrink = height * width < image.shape[0] * image.shape[1]  # area averaging, like PIL's antialiased resize
    resized = cv2.resize(np.asarray(image, np.float32), (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    normalised = (resized - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    out = np.zeros((3, longest, longest), np.float32)
    out[:, :height, :width] = normalised.transpose(2, 0, 1)
    return out


def upscale_mask_logits(logits: np.ndarray, shape, longest: int) -> np.ndarray:
    """SAM's low-resolution mask logits -> logits at the original image size.

    Parameters
    ----------
    logits : (K, m, m) ndarray of float
        Low-resolution logits covering the padded ``longest`` x ``longest`` input.
    shape : (H, W)
        The original image size.

    Returns
    -------
    (K, H, W) ndarray of float32: upsampled to the padded square, cropped to the
    resized image, upsampled to (H, W) (bilinear each time).
    """
    resized = sam_resize_shape(shape, longest)
    out = []
    for plane in np.asarray(logits, np.float32):
        square = cv2.resize(plane, (longest, longest), interpolation=cv2.INTER_LINEAR)
        crop = square[: resized[0], : resized[1]]
        out.append(cv2.resize(crop, (int(shape[1]), int(shape[0])), interpolation=cv2.INTER_LINEAR))
    return np.stack(out)


class SamMasker:
    """SAM with point prompts: the best of its masks at the original resolution.

    Parameters
    ----------
    model : str or path
        A ``save_pretrained`` folder of a ``SamModel`` or a hub id in the local
        Hugging Face cache. Nothing is downloaded.
    device : str, optional
        torch device; default CUDA when available, else the CPU.

    Raises
    ------
    WeightsNotFoundError, CheckpointError
    """

    def __init__(self, model: str = DEFAULT_SAM, *, device: str | None = None):
        folder = resolve_pretrained(model, what=SAM_WHAT, required=("config.json",))
        from transformers import SamModel

        self.device = torch_device(device)
        self.model = load_pretrained(SamModel, folder, SAM_WHAT).to(self.device)
        if self.model.config.model_type != "sam":
            raise CheckpointError(f"{SAM_WHAT}: {folder} holds a {self.model.config.model_type!r} model, not SAM")
        self.longest = int(self.model.config.vision_config.image_size)
        extra = processor_config(folder)
        self.mean = tuple(extra.get("image_mean", _SAM_MEAN))
        self.std = tuple(extra.get("image_std", _SAM_STD))

    def __call__(self, image: np.ndarray, points: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, float]:
        """The mask SAM predicts best for these points.

        Parameters
        ----------
        image : (H, W, 3) ndarray of float in [0, 1]
        points : (N, 2) array of float
            Pixel (row, col), N >= 1.
        labels : (N,) array of int
            1 = on the object, 0 = background.

        Returns
        -------
        mask : (H, W) ndarray of bool
        score : float
            SAM's predicted IoU of that mask.
        """
        import torch

        shape = image.shape[:2]
        pixels = torch.from_numpy(sam_inputs(image, self.longest, mean=self.mean, std=self.std)[None]).to(self.device)
        xy = torch.from_numpy(sam_points(points, shape, self.longest)[None, None]).to(self.device)
        point_labels = torch.from_numpy(np.asarray(labels, np.int64).reshape(1, 1, -1)).to(self.device)
        with torch.inference_mode():
            out = self.model(pixel_values=pixels, input_points=xy, input_labels=point_labels, multimask_output=True)
        scores = out.iou_scores[0, 0].float().cpu().numpy()  # (3,)
        best = int(np.argmax(scores))
        logits = out.pred_masks[0, 0, best : best + 1].float().cpu().numpy()
        return upscale_mask_logits(logits, shape, self.longest)[0] > 0.0, float(scores[best])
