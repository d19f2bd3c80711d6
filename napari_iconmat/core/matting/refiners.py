"""The matting stage as its own piece: image + trimap -> alpha.

A :class:`Refiner` turns an image and a trimap into a soft alpha. Two exist:

* ``'closed-form'``: closed-form matting on the unknown pixels
  (:func:`napari_iconmat.core.matting.closed_form.solve_alpha`), weights-free, CPU;
* ``'vitmatte'``: ViTMatte (Yao et al., 2024; Hugging Face
  ``VitMatteForImageMatting``), which needs its weights.

Engines choose one by name (:func:`make_refiner`): the ``classical`` engine can
use ViTMatte instead of its own solver, and ``icmp`` falls back to the
closed-form solver when the ViTMatte weights are absent. torch and transformers
are imported only when a ViTMatte refiner is built.

Trimaps here are float: 0 = background, 1 = foreground, anything strictly
between = unknown. Known pixels keep their trimap value in every refiner.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from importlib.util import find_spec
from typing import ClassVar

import numpy as np

from ..errors import InputError, WeightsNotFoundError
from ..weights import load_pretrained, processor_config, resolve_pretrained, torch_device
from .closed_form import solve_alpha

__all__ = [
    "REFINERS",
    "DEFAULT_VITMATTE",
    "Refiner",
    "ClosedFormRefiner",
    "VitMatteRefiner",
    "make_refiner",
    "vitmatte_available",
    "vitmatte_inputs",
    "pad_to_multiple",
]

#: refiner names accepted by :func:`make_refiner`
REFINERS = ("closed-form", "vitmatte")
#: the ViTMatte model used when none is named (Apache-2.0 weights, ~100 MB)
DEFAULT_VITMATTE = "hustvl/vitmatte-small-composition-1k"
VITMATTE_WHAT = "ViTMatte"

# VitMatteImageProcessor's defaults, used when a model folder has no preprocessor_config.json
_VITMATTE_MEAN = (0.5, 0.5, 0.5)
_VITMATTE_STD = (0.5, 0.5, 0.5)
_VITMATTE_DIVISOR = 32


class Refiner(ABC):
    """Image + trimap -> alpha."""

    name: ClassVar[str] = ""

    @abstractmethod
    def refine(
        self,
        image: np.ndarray,
        trimap: np.ndarray,
        *,
        guess: np.ndarray | None = None,
        prior: np.ndarray | None = None,
        prior_weight: np.ndarray | float | None = None,
        max_iterations: int = 400,
        tolerance: float = 1e-4,
    ) -> np.ndarray:
        """Alpha on the unknown region of ``trimap``.

        Parameters
        ----------
        image : (H, W, 3) ndarray of float in [0, 1]
        trimap : (H, W) ndarray of float
            0 = background, 1 = foreground, strictly between = unknown.
        guess : (H, W) ndarray of float in [0, 1], optional
            Starting point (iterative solvers only).
        prior, prior_weight : optional
            Alpha that unknown pixels are pulled towards, and how strongly (per pixel, >= 0).
        max_iterations, tolerance
            Budget of iterative solvers; ignored by network refiners.

        Returns
        -------
        alpha : (H, W) ndarray of float32 in [0, 1], equal to the trimap on known pixels.
        """


class ClosedFormRefiner(Refiner):
    """Closed-form matting (Levin et al. 2008) on the unknown pixels; see :func:`solve_alpha`."""

    name = "closed-form"

    def refine(self, image, trimap, *, guess=None, prior=None, prior_weight=None, max_iterations=400, tolerance=1e-4):
        return solve_alpha(
            image, trimap, guess=guess, prior=prior, prior_weight=prior_weight,
            max_iterations=max_iterations, tolerance=tolerance,
        )  # fmt: skip


def pad_to_multiple(array: np.ndarray, multiple: int) -> np.ndarray:
    """Zero-pad the last two axes at the bottom and right to a multiple of ``multiple``.

    Parameters
    ----------
    array : (..., H, W) ndarray
    multiple : int >= 1

    Returns
    -------
    (..., H', W') ndarray, H' and W' the smallest multiples of ``multiple`` >= H, W;
    ``array[..., :H, :W]`` is the input (a copy only where padding was needed).
    """
    height, width = array.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return array
    padding = [(0, 0)] * (array.ndim - 2) + [(0, pad_h), (0, pad_w)]
    return np.pad(array, padding, mode="constant", constant_values=0)


def vitmatte_inputs(
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    mean=_VITMATTE_MEAN,
    std=_VITMATTE_STD,
    divisor: int = _VITMATTE_DIVISOR,
) -> np.ndarray:
    """ViTMatte's input: the normalised image and the trimap as a 4th channel, padded.

    What ``VitMatteImageProcessor`` does, on floats: the image is normalised
    with ``mean`` / ``std``; the trimap is *not* normalised and takes the values
    of an 8-bit trimap rescaled by 1/255 (0, 128/255 for unknown, 1); both are
    zero-padded at the bottom and right to a multiple of ``divisor``.

    Parameters
    ----------
    image : (H, W, 3) ndarray of float in [0, 1]
    trimap : (H, W) ndarray of float
        0 = background, 1 = foreground, strictly between = unknown.

    Returns
    -------
    (4, H', W') ndarray of float32, H' and W' multiples of ``divisor``.
    """
    image = np.asarray(image, np.float32)
    trimap = np.asarray(trimap, np.float32)
    mean = np.asarray(mean, np.float32).reshape(3, 1, 1)
    std = np.asarray(std, np.float32).reshape(3, 1, 1)
    channels = (image.transpose(2, 0, 1) - mean) / std
    quantised = np.where(trimap <= 0.0, 0.0, np.where(trimap >= 1.0, 1.0, np.float32(128.0 / 255.0)))
    stacked = np.concatenate([channels, quantised[None].astype(np.float32)], axis=0)
    return pad_to_multiple(stacked, divisor)


class VitMatteRefiner(Refiner):
    """ViTMatte on the whole image; known pixels keep their trimap value.

    Parameters
    ----------
    model : str or path
        A ``save_pretrained`` folder or a hub id in the local Hugging Face cache
        (default :data:`DEFAULT_VITMATTE`). Nothing is downloaded.
    device : str, optional
        torch device; default CUDA when available, else the CPU.

    Notes
    -----
    ViTMatte has no temporal prior; a ``prior`` is applied per pixel after the
    network, as the minimiser of ``(a - vitmatte)^2 + w (a - prior)^2``.
    ``guess`` and the solver budget are ignored.

    Raises
    ------
    WeightsNotFoundError
        The model is not on this machine.
    CheckpointError
        The folder does not hold a loadable ViTMatte model.
    """

    name = "vitmatte"

    def __init__(self, model: str = DEFAULT_VITMATTE, *, device: str | None = None):
        if find_spec("transformers") is None:
            raise WeightsNotFoundError("ViTMatte needs the transformers package: pip install transformers")
        folder = resolve_pretrained(model, what=VITMATTE_WHAT, required=("config.json",))
        from transformers import VitMatteForImageMatting

        self.device = torch_device(device)
        self.model = load_pretrained(VitMatteForImageMatting, folder, VITMATTE_WHAT).to(self.device)
        config = processor_config(folder)
        self.mean = tuple(config.get("image_mean", _VITMATTE_MEAN))
        self.std = tuple(config.get("image_std", _VITMATTE_STD))
        self.divisor = int(config.get("size_divisor", config.get("size_divisibility", _VITMATTE_DIVISOR)))

    def predict(self, image: np.ndarray, trimap: np.ndarray) -> np.ndarray:
        """The network's alpha for every pixel: (H, W) float32 in [0, 1], cropped back from the padding."""
        import torch

        height, width = trimap.shape
        inputs = vitmatte_inputs(image, trimap, mean=self.mean, std=self.std, divisor=self.divisor)
        with torch.inference_mode():
            pixel_values = torch.from_numpy(inputs[None]).to(self.device)
            alphas = self.model(pixel_values=pixel_values).alphas
        return np.clip(alphas[0, 0, :height, :width].float().cpu().numpy(), 0.0, 1.0).astype(np.float32)

    def refine(self, image, trimap, *, guess=None, prior=None, prior_weight=None, max_iterations=400, tolerance=1e-4):
        trimap = np.asarray(trimap, np.float32)
        if image.shape[:2] != trimap.shape:
            raise InputError(f"trimap must have the image's shape {image.shape[:2]}, got {trimap.shape}")
        alpha = np.where(trimap >= 1.0, 1.0, 0.0).astype(np.float32)
        unknown = (trimap > 0.0) & (trimap < 1.0)
        if not unknown.any():
            return alpha
        predicted = self.predict(image, trimap)
        if prior is not None and prior_weight is not None:
            weight = np.broadcast_to(np.asarray(prior_weight, np.float32), trimap.shape)
            predicted = (predicted + weight * np.asarray(prior, np.float32)) / (1.0 + weight)
        alpha[unknown] = np.clip(predicted[unknown], 0.0, 1.0)
        return alpha


def vitmatte_available(model: str = DEFAULT_VITMATTE) -> tuple[bool, str]:
    """Whether ViTMatte weights are here, without loading them: (found, where or why not)."""
    if find_spec("transformers") is None:
        return False, "the transformers package is not installed"
    try:
        return True, str(resolve_pretrained(model, what=VITMATTE_WHAT, required=("config.json",)))
    except WeightsNotFoundError as exc:
        return False, str(exc)


def make_refiner(name: str = "closed-form", *, vitmatte: str = DEFAULT_VITMATTE, device: str | None = None) -> Refiner:
    """Build the refiner called ``name``.

    Parameters
    ----------
    name : {'closed-form', 'vitmatte'}
    vitmatte : str or path
        ViTMatte model folder or hub id (only for ``'vitmatte'``).
    device : str, optional
        torch device for ViTMatte.

    Raises
    ------
    InputError
        Unknown ``name``.
    WeightsNotFoundError, CheckpointError
        ``'vitmatte'`` without usable weights.
    """
    if name == "closed-form":
        return ClosedFormRefiner()
    if name == "vitmatte":
        return VitMatteRefiner(vitmatte, device=device)
    raise InputError(f"refiner must be one of {', '.join(REFINERS)}, got {name!r}")
