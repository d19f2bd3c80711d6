"""Configuration of the IconMatting network, with the released defaults.

Every number of the released ``config/eval.yaml`` lives here (see
``shared/reference/iconmatting.md`` §6.1). The two feature scales are fixed by
the architecture relative to the input resolution ``S``: the *coarse* grid is
``S / 32`` (24 for 768) and the *fine* grid ``S / 16`` (48 for 768); the
detail-capture head upsamples the fine grid four times back to ``S``.

Nothing here imports torch.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace

__all__ = [
    "IconMattingConfig",
    "SD21_UNET_CONFIG",
    "SD21_VAE_CONFIG",
    "SD21_SCHEDULER_CONFIG",
    "SD21_MODEL_ID",
    "SD_REQUIRED_FILES",
]

#: the Stable Diffusion 2.1 (768-v) repository the released model was trained on
SD21_MODEL_ID = "stabilityai/stable-diffusion-2-1"

#: what a Stable Diffusion folder (diffusers layout) must hold for IconMatting
SD_REQUIRED_FILES = (
    "unet/config.json",
    "vae/config.json",
    "scheduler/scheduler_config.json",
    "text_encoder/config.json",
    "tokenizer",
)

#: ``unet/config.json`` of SD 2.1 (768-v): builds the real-size UNet without a download
SD21_UNET_CONFIG = dict(
    sample_size=96,
    in_channels=4,
    out_channels=4,
    center_input_sample=False,
    flip_sin_to_cos=True,
    freq_shift=0,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    only_cross_attention=False,
    block_out_channels=(320, 640, 1280, 1280),
    layers_per_block=2,
    downsample_padding=1,
    mid_block_scale_factor=1,
    act_fn="silu",
    norm_num_groups=32,
    norm_eps=1e-5,
    cross_attention_dim=1024,
    attention_head_dim=(5, 10, 20, 20),  # diffusers' name for the number of heads (64 channels each)
    dual_cross_attention=False,
    use_linear_projection=True,
    upcast_attention=True,
)

#: ``vae/config.json`` of SD 2.1 (only the encoder is used)
SD21_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    act_fn="silu",
    latent_channels=4,
    norm_num_groups=32,
    sample_size=768,
    scaling_factor=0.18215,
)

#: ``scheduler/scheduler_config.json`` of SD 2.1 (only ``add_noise`` is used)
SD21_SCHEDULER_CONFIG = dict(
    num_train_timesteps=1000,
    beta_start=0.00085,
    beta_end=0.012,
    beta_schedule="scaled_linear",
    clip_sample=False,
    set_alpha_to_one=False,
    steps_offset=1,
    prediction_type="v_prediction",
)

_TINY_UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    block_out_channels=(8, 16, 16, 16),
    layers_per_block=1,
    norm_num_groups=4,
    cross_attention_dim=16,
    attention_head_dim=(1, 2, 2, 2),
    use_linear_projection=True,
    upcast_attention=True,
)

_TINY_VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(4, 8, 8, 8),
    layers_per_block=1,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=64,
    scaling_factor=0.18215,
)


@dataclass
class IconMattingConfig:
    """All settings of the IconMatting network; the defaults are the released ones.

    Attributes
    ----------
    sd_model : str
        Stable Diffusion 2.1 (768-v) as a diffusers folder or hub id (default
        ``'stabilityai/stable-diffusion-2-1'``); used when ``unet_config`` is None.
    resolution : int
        Side ``S`` of the square network input (default 768; a multiple of 64).
        The coarse feature grid is ``S/32``, the fine one ``S/16``.
    timestep : int
        Diffusion timestep of the single noising step (default 200; the paper's
        text says 0, the released code and checkpoint use 200).
    ensemble_size : int
        Noisy copies per image, run as one batch and averaged (default 4).
    mask_threshold : float
        The reference mask is binarised at ``> mask_threshold`` (default 0.5).
    feature_channels : (int, int)
        Channels of the UNet decoder features at the coarse and fine grids
        (``up_blocks[0]`` and ``up_blocks[1]`` of SD 2.1: 1280, 1280).
    attn_out_dim : int
        Channels of each intra-similarity branch (256).
    ft_out_dim : (int, int)
        Channels of the target-feature branches and the fused map (320, 320).
    convstream_out : tuple of 3 int
        Detail-capture conv stream widths (48, 96, 192).
    fusion_out : tuple of 4 int
        Detail-capture fusion block widths (256, 128, 64, 32).
    head_hidden : int
        Hidden width of the matting head (16).
    img_chans : int
        Channels of the head's image input: 3 (RGB), 4 for the trimap variant.
    use_sigmoid : bool
        Sigmoid on the head output (True).
    unet_config, vae_config : dict or None
        None: load SD from ``sd_model``. A dict: build a *randomly initialised*
        diffusers UNet / VAE from it (tests, benchmarks; no download).
    scheduler_config : dict
        The DDIM scheduler settings (SD 2.1's); only ``add_noise`` is used.
    """

    sd_model: str = SD21_MODEL_ID
    resolution: int = 768
    timestep: int = 200
    ensemble_size: int = 4
    mask_threshold: float = 0.5
    feature_channels: tuple[int, int] = (1280, 1280)
    attn_out_dim: int = 256
    ft_out_dim: tuple[int, int] = (320, 320)
    convstream_out: tuple[int, int, int] = (48, 96, 192)
    fusion_out: tuple[int, int, int, int] = (256, 128, 64, 32)
    head_hidden: int = 16
    img_chans: int = 3
    use_sigmoid: bool = True
    unet_config: dict | None = None
    vae_config: dict | None = None
    scheduler_config: dict = field(default_factory=lambda: dict(SD21_SCHEDULER_CONFIG))

    def __post_init__(self) -> None:
        for name in ("resolution", "timestep", "ensemble_size", "attn_out_dim", "head_hidden", "img_chans"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an integer, got {value!r}")
        for name in ("feature_channels", "ft_out_dim", "convstream_out", "fusion_out"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not hasattr(value, "__len__"):
                raise ValueError(f"{name} must be a sequence of integers, got {value!r}")
            if not all(isinstance(c, int) and not isinstance(c, bool) and c > 0 for c in value):
                raise ValueError(f"{name} must hold positive integers, got {value!r}")
        if min(self.attn_out_dim, self.head_hidden, self.img_chans) < 1:
            raise ValueError("attn_out_dim, head_hidden and img_chans must be positive")
        if isinstance(self.mask_threshold, bool) or not isinstance(self.mask_threshold, (int, float)) or not 0 <= self.mask_threshold < 1:
            raise ValueError(f"mask_threshold must be a number in [0, 1), got {self.mask_threshold!r}")
        if not isinstance(self.use_sigmoid, bool):
            raise ValueError(f"use_sigmoid must be true or false, got {self.use_sigmoid!r}")
        if self.resolution < 64 or self.resolution % 64:
            raise ValueError(f"resolution must be a positive multiple of 64, got {self.resolution!r}")
        if not 0 <= int(self.timestep) < int(self.scheduler_config.get("num_train_timesteps", 1000)):
            raise ValueError(f"timestep must lie in [0, num_train_timesteps), got {self.timestep!r}")
        if int(self.ensemble_size) < 1:
            raise ValueError(f"ensemble_size must be at least 1, got {self.ensemble_size!r}")
        if len(self.feature_channels) != 2 or len(self.ft_out_dim) != 2:
            raise ValueError("feature_channels and ft_out_dim hold two values: (coarse, fine)")
        if len(self.convstream_out) != 3 or len(self.fusion_out) != 4:
            raise ValueError("convstream_out holds 3 widths and fusion_out 4")
        self.feature_channels = tuple(int(c) for c in self.feature_channels)
        self.ft_out_dim = tuple(int(c) for c in self.ft_out_dim)
        self.convstream_out = tuple(int(c) for c in self.convstream_out)
        self.fusion_out = tuple(int(c) for c in self.fusion_out)

    # ------------------------------------------------------------------ derived
    @property
    def coarse_grid(self) -> int:
        """Side of the coarse feature grid, ``resolution / 32`` (24 at 768)."""
        return self.resolution // 32

    @property
    def fine_grid(self) -> int:
        """Side of the fine feature grid, ``resolution / 16`` (48 at 768)."""
        return self.resolution // 16

    @property
    def grids(self) -> tuple[int, int]:
        """(coarse, fine) grid sides."""
        return self.coarse_grid, self.fine_grid

    @property
    def attention_dims(self) -> tuple[int, int]:
        """Length of a self-attention row at each grid: (coarse², fine²) = (576, 2304) at 768."""
        return self.coarse_grid**2, self.fine_grid**2

    @property
    def random_init(self) -> bool:
        """True when SD is built from ``unet_config`` / ``vae_config`` with random weights."""
        return self.unet_config is not None

    # ------------------------------------------------------------------ variants
    @classmethod
    def tiny(cls, resolution: int = 64, **changes) -> "IconMattingConfig":
        """A tiny random UNet/VAE and a narrow decoder: milliseconds per forward on a CPU.

        Same architecture family as the real one (4-level SD-shaped UNet with
        self-attention at the coarse and fine grids, VAE downsampling by 8), so
        every code path runs. Keyword arguments override fields.
        """
        base = dict(
            sd_model="random:tiny",
            resolution=resolution,
            feature_channels=(16, 16),
            attn_out_dim=8,
            ft_out_dim=(8, 8),
            convstream_out=(4, 8, 8),
            fusion_out=(8, 8, 8, 8),
            head_hidden=4,
            unet_config=copy.deepcopy(_TINY_UNET_CONFIG),
            vae_config=copy.deepcopy(_TINY_VAE_CONFIG),
        )
        base.update(changes)
        return cls(**base)

    @classmethod
    def random_sd21(cls, **changes) -> "IconMattingConfig":
        """The real-size architecture (SD 2.1 UNet/VAE) with random weights: for timing, no download."""
        base = dict(sd_model="random:sd21", unet_config=copy.deepcopy(SD21_UNET_CONFIG), vae_config=copy.deepcopy(SD21_VAE_CONFIG))
        base.update(changes)
        return cls(**base)

    def replace(self, **changes) -> "IconMattingConfig":
        """A copy with some fields changed."""
        return replace(self, **changes)
