"""The IconMatting network: frozen SD features + the trainable in-context decoder.

:class:`InContextMatting` is the released model (reference image + mask + target
→ target alpha); :class:`TrimapMatting` the trimap-based variant of the
supplement (target + trimap → alpha, no in-context module). Both take square
tensors at ``config.resolution``; :mod:`.geometry` maps images of any size.

Images are ``(B, 3, S, S)`` float in [-1, 1] (``x / 127.5 - 1``), masks and
trimaps ``(B, 1, S, S)`` in [0, 1], alphas ``(B, 1, S, S)`` in [0, 1].
Features are computed under ``torch.no_grad()``; gradients reach ``decoder`` only.
"""

from __future__ import annotations

import torch
from torch import nn

from .config import IconMattingConfig
from .decoder import InContextDecoder, QueryTokens, TrimapDecoder
from .features import DiffusionFeatures, build_feature_extractor

__all__ = ["InContextMatting", "TrimapMatting", "QueryTokens"]


def _check_images(name: str, tensor: torch.Tensor, channels: int, side: int) -> None:
    if tensor.ndim != 4 or tensor.shape[1] != channels or tensor.shape[2:] != (side, side):
        raise ValueError(f"{name} must be (B, {channels}, {side}, {side}), got {tuple(tensor.shape)}")


class _FrozenFeaturesMixin:
    def train(self, mode: bool = True):
        super().train(mode)
        self.feature_extractor.eval()  # frozen, whatever the mode
        return self


class InContextMatting(_FrozenFeaturesMixin, nn.Module):
    """Reference image + reference mask + target image → target alpha.

    Parameters
    ----------
    config : IconMattingConfig
    feature_extractor : DiffusionFeatures, optional
        None: built from ``config`` (random tiny / real-size SD when the config
        carries UNet/VAE configs, else SD 2.1 loaded from ``config.sd_model``).

    Attributes
    ----------
    feature_extractor : DiffusionFeatures
        Frozen (no gradients, eval mode).
    decoder : InContextDecoder
        The trainable part; ``state_dict()`` keys are the released checkpoint's
        without the ``in_context_decoder.`` prefix.
    """

    def __init__(self, config: IconMattingConfig, feature_extractor: DiffusionFeatures | None = None) -> None:
        super().__init__()
        self.config = config
        if feature_extractor is None:
            feature_extractor = build_feature_extractor(config)
        feature_extractor.check_channels(config.feature_channels)
        self.feature_extractor = feature_extractor
        self.decoder = InContextDecoder(config)

    @classmethod
    def from_pretrained(cls, sd_model, decoder_checkpoint=None, config: IconMattingConfig | None = None) -> "InContextMatting":
        """SD 2.1 from a diffusers folder or cached hub id, and the decoder from a checkpoint.

        Parameters
        ----------
        sd_model : str or path
            Folder or hub id (resolved offline through the HF cache).
        decoder_checkpoint : str or path, optional
            Released ``.pth`` / ``.ckpt`` or a ``.safetensors`` file, loaded strictly.
            None: a randomly initialised decoder (to train).
        config : IconMattingConfig, optional
            Default: the released configuration.

        Raises
        ------
        WeightsNotFoundError, CheckpointError
        """
        from .checkpoint import load_decoder_weights

        config = (config or IconMattingConfig()).replace(sd_model=str(sd_model), unet_config=None, vae_config=None)
        model = cls(config, DiffusionFeatures.from_pretrained(sd_model, config))
        if decoder_checkpoint is not None:
            load_decoder_weights(model.decoder, decoder_checkpoint)
        return model.eval()

    # ------------------------------------------------------------------ steps
    def encode_reference(self, reference_image: torch.Tensor, reference_mask: torch.Tensor, *, seed: int | None = None, warn: bool = True) -> QueryTokens:
        """LayerNorm-ed query tokens of the references (the cacheable part).

        ``reference_image`` (B, 3, S, S) in [-1, 1]; ``reference_mask`` (B, 1, S, S)
        in [0, 1]. ``seed``: fixes the VAE samples and noise (None: global RNG).
        """
        side = self.config.resolution
        _check_images("reference_image", reference_image, 3, side)
        _check_images("reference_mask", reference_mask, 1, side)
        features = self.feature_extractor.reference_features(reference_image, seed=seed)
        features = features.to(self._decoder_dtype)
        return self.decoder.in_context_fusion.encode_query(features, reference_mask.to(features.device), warn=warn)

    def matte(self, target_image: torch.Tensor, query: QueryTokens, *, seed: int | None = None, return_maps: bool = False):
        """Alpha of the targets given cached query tokens: one UNet pass + the decoder.

        Returns ``alpha`` (B, 1, S, S) in [0, 1], or ``(alpha, maps)`` with
        ``return_maps`` (see :meth:`InContextFusion.forward`).
        """
        _check_images("target_image", target_image, 3, self.config.resolution)
        target = self.feature_extractor.target_features(target_image, seed=seed)
        dtype = self._decoder_dtype
        features = tuple(f.to(dtype) for f in target.features)
        query = query.to(device=features[0].device)
        image = target_image.to(features[0].device, dtype)
        return self.decoder(query, features, target.attention, image, return_maps=return_maps)

    def forward(self, reference_image: torch.Tensor, reference_mask: torch.Tensor, target_image: torch.Tensor, *, seed: int | None = None) -> torch.Tensor:
        """Target alpha (B, 1, S, S) in [0, 1].

        Parameters
        ----------
        reference_image, target_image : (B, 3, S, S) float in [-1, 1]
        reference_mask : (B, 1, S, S) in [0, 1], binarised at 0.5
        seed : int, optional
            Fixes the reference and target noise (each pass seeded with it).
        """
        query = self.encode_reference(reference_image, reference_mask, seed=seed)
        return self.matte(target_image, query, seed=seed)

    @property
    def _decoder_dtype(self) -> torch.dtype:
        return next(self.decoder.parameters()).dtype


class TrimapMatting(_FrozenFeaturesMixin, nn.Module):
    """Target image + trimap → alpha: the trimap-based variant (no in-context module).

    Parameters
    ----------
    config : IconMattingConfig
        ``img_chans`` is set to 4 (RGB + trimap).
    feature_extractor : DiffusionFeatures, optional
        As for :class:`InContextMatting`. No attention maps are recorded, and the
        UNet stops after the fine-grid block.
    """

    def __init__(self, config: IconMattingConfig, feature_extractor: DiffusionFeatures | None = None) -> None:
        super().__init__()
        config = config.replace(img_chans=4)
        self.config = config
        if feature_extractor is None:
            feature_extractor = build_feature_extractor(config)
        feature_extractor.check_channels(config.feature_channels)
        self.feature_extractor = feature_extractor
        self.decoder = TrimapDecoder(config)

    @classmethod
    def from_pretrained(cls, sd_model, decoder_checkpoint=None, config: IconMattingConfig | None = None) -> "TrimapMatting":
        """As :meth:`InContextMatting.from_pretrained`; the checkpoint holds ``TrimapDecoder`` weights."""
        from .checkpoint import load_decoder_weights

        config = (config or IconMattingConfig()).replace(sd_model=str(sd_model), unet_config=None, vae_config=None, img_chans=4)
        model = cls(config, DiffusionFeatures.from_pretrained(sd_model, config))
        if decoder_checkpoint is not None:
            load_decoder_weights(model.decoder, decoder_checkpoint)
        return model.eval()

    def forward(self, target_image: torch.Tensor, trimap: torch.Tensor, *, seed: int | None = None) -> torch.Tensor:
        """Alpha (B, 1, S, S) in [0, 1] from ``target_image`` (B, 3, S, S) in [-1, 1] and ``trimap`` (B, 1, S, S) in {0, 0.5, 1}."""
        side = self.config.resolution
        _check_images("target_image", target_image, 3, side)
        _check_images("trimap", trimap, 1, side)
        target = self.feature_extractor.target_features(target_image, seed=seed, attention=False)
        dtype = next(self.decoder.parameters()).dtype
        features = tuple(f.to(dtype) for f in target.features)
        device = features[0].device
        return self.decoder(features, target_image.to(device, dtype), trimap.to(device, dtype))

    @torch.no_grad()
    def predict(self, image, trimap, *, fit: str = "letterbox", seed: int | None = 0):
        """Alpha of an image of any size given its trimap: a matting stage on numpy arrays.

        Parameters
        ----------
        image : (H, W), (H, W, 3) or (H, W, 4) ndarray
            uint8, uint16 or float in [0, 1].
        trimap : (H, W) ndarray
            0 = background, 1 (or 255) = foreground, anything between = unknown;
            uint8 trimaps use 0 / 128 / 255.
        fit : {'letterbox', 'crop'}
            How the image is made square (see :mod:`.geometry`).
        seed : int or None
            Noise seed (default 0: deterministic).

        Returns
        -------
        (H, W) ndarray of float32 in [0, 1]
            Known pixels of the trimap keep their value.
        """
        import numpy as np

        from ...errors import InputError
        from ...frames import check_frame, to_rgb_float
        from .geometry import SquareFit

        image = check_frame(image, what="image")
        trimap = np.asarray(trimap)
        if trimap.shape != image.shape[:2]:
            raise InputError(f"trimap must have the image's shape {image.shape[:2]}, got {trimap.shape}")
        values = trimap.astype(np.float32) / (255.0 if trimap.dtype == np.uint8 or trimap.max() > 1 else 1.0)
        levels = np.where(values <= 0.1, 0.0, np.where(values >= 0.9, 1.0, 0.5)).astype(np.float32)
        fit_ = SquareFit(image.shape[:2], self.config.resolution, mode=fit)
        rgb = fit_.to_square(to_rgb_float(image)) * 2.0 - 1.0
        square_trimap = fit_.to_square(levels, interpolation="nearest")
        device = self.feature_extractor.device
        x = torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None].to(device)
        t = torch.from_numpy(np.ascontiguousarray(square_trimap))[None, None].to(device)
        alpha = self(x, t, seed=seed)[0, 0].float().cpu().numpy()
        out = fit_.from_square(alpha)
        out[levels == 0.0] = 0.0
        out[levels == 1.0] = 1.0
        return out
