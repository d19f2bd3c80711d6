"""Frozen Stable Diffusion 2.1 features: VAE encoder + one noisy UNet pass, ensemble-averaged.

Per image (``shared/reference/iconmatting.md`` §1): VAE-encode the image
(``x/127.5 - 1``), draw ``E`` latent samples, noise each at timestep ``t`` with
its own noise, run the ``E`` copies through the UNet as one batch with the
empty-prompt embedding, and average over the copies:

- the outputs of the UNet up blocks whose output grids are the coarse (``S/32``)
  and fine (``S/16``) grids (``up_blocks[0]`` and ``up_blocks[1]`` of SD 2.1);
- for a target, the self-attention maps of every layer working at those two
  grids (:mod:`.attention`).

The UNet stops right after the last block that is needed. Which blocks and
layers those are is found once by a probe pass on a tiny latent, from the grids
they work at, not from their names: a tiny test UNet goes through the same code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ...errors import CheckpointError
from ...weights import resolve_pretrained
from .attention import AttentionRecorder, install_recorder
from .config import SD_REQUIRED_FILES, IconMattingConfig

__all__ = ["DiffusionFeatures", "TargetFeatures", "build_feature_extractor"]


_REFERENCE_STREAM, _TARGET_STREAM = 0, 1


class _Stop(Exception):
    """Raised by a forward hook to end the UNet pass early."""


@dataclass
class TargetFeatures:
    """UNet features of a batch of images, averaged over the ensemble.

    Attributes
    ----------
    features : (coarse (B, C0, g/2, g/2), fine (B, C1, g, g)) float32 tensors
    attention : (coarse (B, (g/2)², (g/2)²), fine (B, g², g²)) float32 tensors, or None
        Layer-, head- and copy-averaged self-attention maps (rows = query positions).
    """

    features: tuple
    attention: tuple | None = None


def _probe_latent_side(unet) -> int:
    downsamplers = sum(1 for block in unet.down_blocks if getattr(block, "downsamplers", None))
    return 2 ** (downsamplers + 1)


class DiffusionFeatures(nn.Module):
    """Frozen SD VAE encoder + UNet giving IconMatting's features.

    Parameters
    ----------
    vae : diffusers.AutoencoderKL
        Only its encoder is used (the decoder is dropped).
    unet : diffusers.UNet2DConditionModel
    scheduler : diffusers.DDIMScheduler
        For ``add_noise`` only.
    prompt_embeds : (1, L, D) tensor
        The empty-prompt text embedding.
    config : IconMattingConfig
    """

    def __init__(self, vae, unet, scheduler, prompt_embeds: torch.Tensor, config: IconMattingConfig) -> None:
        super().__init__()
        vae.decoder = None
        vae.post_quant_conv = None
        self.vae = vae
        self.unet = unet
        self.scheduler = scheduler
        self.config = config
        self.register_buffer("prompt_embeds", prompt_embeds.detach().clone(), persistent=False)
        self.requires_grad_(False)
        self.eval()
        self.recorder = AttentionRecorder(config.grids)
        self.recorded_layers = install_recorder(unet, self.recorder)
        self._plan(config)
        self._captured: dict[int, torch.Tensor] = {}
        self._capture: set[int] = set()
        self._stop_at: int | None = None
        for index, block in enumerate(unet.up_blocks):
            block.register_forward_hook(self._hook(index))

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_config(cls, config: IconMattingConfig, *, seed: int = 0) -> "DiffusionFeatures":
        """Randomly initialised UNet/VAE from ``config.unet_config`` / ``vae_config`` (no download)."""
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

        if config.unet_config is None or config.vae_config is None:
            raise ValueError("from_config needs config.unet_config and config.vae_config; use from_pretrained for real weights")
        state = torch.random.get_rng_state()
        torch.manual_seed(seed)
        try:
            unet = UNet2DConditionModel(**config.unet_config)
            vae = AutoencoderKL(**config.vae_config)
            context = torch.randn(1, 77, unet.config.cross_attention_dim)
        finally:
            torch.random.set_rng_state(state)
        scheduler = DDIMScheduler(**config.scheduler_config)
        return cls(vae, unet, scheduler, context, config)

    @classmethod
    def from_pretrained(cls, sd_model, config: IconMattingConfig | None = None) -> "DiffusionFeatures":
        """Load SD 2.1 (768-v) from a diffusers folder or a hub id in the local HF cache.

        The empty-prompt embedding is computed once with the text encoder, which
        is then freed.

        Raises
        ------
        WeightsNotFoundError
            The folder or cache entry is missing or incomplete.
        """
        from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
        from transformers import CLIPTextModel, CLIPTokenizer

        config = config or IconMattingConfig(sd_model=str(sd_model))
        folder = resolve_pretrained(sd_model, what="Stable Diffusion 2.1 (768-v)", required=SD_REQUIRED_FILES)
        try:
            unet = UNet2DConditionModel.from_pretrained(folder, subfolder="unet")
            vae = AutoencoderKL.from_pretrained(folder, subfolder="vae")
            scheduler = DDIMScheduler.from_pretrained(folder, subfolder="scheduler")
            tokenizer = CLIPTokenizer.from_pretrained(folder, subfolder="tokenizer")
            text_encoder = CLIPTextModel.from_pretrained(folder, subfolder="text_encoder")
        except (OSError, ValueError, TypeError, KeyError, RuntimeError, EnvironmentError) as exc:
            # a folder with damaged or missing files: diffusers and transformers raise many kinds
            reason = " ".join(str(exc).split())[:300]
            raise CheckpointError(f"{folder} is not a loadable Stable Diffusion 2.1 folder: {type(exc).__name__}: {reason}") from None
        with torch.no_grad():
            ids = tokenizer("", padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt").input_ids
            embeds = text_encoder(ids)[0]
        del text_encoder, tokenizer
        if embeds.shape[-1] != unet.config.cross_attention_dim:
            raise CheckpointError(
                f"{folder}: text embedding width {embeds.shape[-1]} does not match the UNet's "
                f"cross_attention_dim {unet.config.cross_attention_dim}: not a Stable Diffusion 2.1 folder"
            )
        return cls(vae, unet, scheduler, embeds, config)

    # ------------------------------------------------------------------ layout
    def _plan(self, config: IconMattingConfig) -> None:
        """Probe the UNet on a tiny latent: which up blocks give the grids, where to stop."""
        vae_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        if config.resolution % vae_factor:
            raise ValueError(f"resolution {config.resolution} is not a multiple of the VAE factor {vae_factor}")
        latent = config.resolution // vae_factor
        probe = _probe_latent_side(self.unet)
        events: list[tuple[str, int, int]] = []  # (kind, index, side at the probe)
        hooks = []
        from diffusers.models.attention_processor import Attention

        attention = [m for m in self.unet.modules() if isinstance(m, Attention) and not m.is_cross_attention]
        for i, module in enumerate(attention):
            hooks.append(module.register_forward_hook(lambda m, a, k, out, i=i: events.append(("attn", i, _side(a, k))), with_kwargs=True))
        for i, block in enumerate(self.unet.up_blocks):
            hooks.append(block.register_forward_hook(lambda m, a, out, i=i: events.append(("up", i, _output_side(out)))))
        try:
            with torch.no_grad():
                sample = torch.zeros(1, self.unet.config.in_channels, probe, probe, dtype=self.prompt_embeds.dtype)
                self.unet(sample, 0, encoder_hidden_states=self.prompt_embeds[:1])
        finally:
            for hook in hooks:
                hook.remove()

        def at_latent(side: int) -> float:
            return side * latent / probe

        coarse, fine = config.grids
        ups = [(i, at_latent(side)) for kind, i, side in events if kind == "up"]
        feature_blocks = []
        for grid in (coarse, fine):
            match = [i for i, side in ups if side == grid]
            if not match:
                raise ValueError(
                    f"no UNet up block outputs a {grid}x{grid} grid at resolution {config.resolution} "
                    f"(up block output grids: {[int(s) for _, s in ups]})"
                )
            feature_blocks.append(match[0])
        if feature_blocks[0] >= feature_blocks[1]:
            raise ValueError(f"the coarse grid's up block ({feature_blocks[0]}) must come before the fine grid's ({feature_blocks[1]})")
        # the target pass ends with the up block that holds the last wanted self-attention layer
        wanted = [i for i, (kind, _, side) in enumerate(events) if kind == "attn" and at_latent(side) in (coarse, fine)]
        if not wanted:
            raise ValueError(f"no self-attention layer of the UNet works at the {coarse}x{coarse} or {fine}x{fine} grid")
        last_needed = max(wanted)
        after = [i for kind, i, _ in events[last_needed:] if kind == "up"]
        self.feature_blocks = tuple(feature_blocks)
        self.reference_stop = feature_blocks[1]
        self.target_stop = max(feature_blocks[1], after[0] if after else feature_blocks[1])
        self.attention_layers = {
            grid: sum(1 for kind, _, side in events if kind == "attn" and at_latent(side) == grid) for grid in (coarse, fine)
        }
        self.latent_side = latent

    def _hook(self, index: int):
        def hook(module, args, output):
            if index in self._capture:
                self._captured[index] = output
            if index == self._stop_at:
                raise _Stop

        return hook

    # ------------------------------------------------------------------ forward
    @property
    def device(self) -> torch.device:
        return self.prompt_embeds.device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    def train(self, mode: bool = True):
        # frozen: always in eval mode, whatever the parent module does
        return super().train(False)

    def noisy_latents(self, images: torch.Tensor, *, seed: int | None = None, stream: int = 0) -> torch.Tensor:
        """Ensemble of noisy latents, ``(B·E, 4, S/8, S/8)``, b-major.

        Each copy gets its own VAE posterior sample and its own noise. With
        ``seed`` the draws come from a CPU generator (the same on every device)
        seeded with ``2 * seed + stream``: references draw from stream 0 and
        targets from stream 1, so that a reference and a target never share
        their noise (the released code draws both afresh). Without ``seed``,
        from the global RNG.
        """
        e = self.config.ensemble_size
        posterior = self.vae.encode(images.to(self.device, self.dtype)).latent_dist
        mean, std = posterior.mean, posterior.std
        shape = (mean.shape[0], e, *mean.shape[1:])
        if seed is not None:
            generator = torch.Generator().manual_seed(2 * int(seed) + int(stream))
            eps = torch.randn(shape, generator=generator).to(self.device, self.dtype)
            noise = torch.randn(shape, generator=generator).to(self.device, self.dtype)
        else:
            eps = torch.randn(shape, device=self.device, dtype=self.dtype)
            noise = torch.randn(shape, device=self.device, dtype=self.dtype)
        latents = (mean[:, None] + std[:, None] * eps) * self.vae.config.scaling_factor
        latents = latents.flatten(0, 1)
        timesteps = torch.full((latents.shape[0],), int(self.config.timestep), dtype=torch.long, device=self.device)
        return self.scheduler.add_noise(latents, noise.flatten(0, 1), timesteps)

    def _run_unet(self, latents: torch.Tensor, stop: int, capture: set[int], record: bool) -> dict[int, torch.Tensor]:
        self._captured = {}
        self._capture = set(capture)
        self._stop_at = stop
        context = self.prompt_embeds.to(self.dtype).expand(latents.shape[0], -1, -1)
        timestep = torch.tensor(int(self.config.timestep), device=self.device)
        if record:
            self.recorder.head_chunk = 1 if self.device.type == "cpu" else 64
            self.recorder.start(self.config.ensemble_size)
        try:
            self.unet(latents, timestep, encoder_hidden_states=context)
        except _Stop:
            pass
        finally:
            self.recorder.stop()
            self._stop_at = None
        captured, self._captured = self._captured, {}
        return captured

    def _average(self, tensor: torch.Tensor) -> torch.Tensor:
        e = self.config.ensemble_size
        return tensor.float().view(-1, e, *tensor.shape[1:]).mean(dim=1)

    @torch.no_grad()
    def reference_features(self, images: torch.Tensor, *, seed: int | None = None) -> torch.Tensor:
        """Fine-grid features of references: (B, 3, S, S) in [-1, 1] → (B, C1, S/16, S/16) float32."""
        latents = self.noisy_latents(images, seed=seed, stream=_REFERENCE_STREAM)
        captured = self._run_unet(latents, self.reference_stop, {self.feature_blocks[1]}, record=False)
        return self._average(captured[self.feature_blocks[1]])

    @torch.no_grad()
    def target_features(self, images: torch.Tensor, *, seed: int | None = None, attention: bool = True) -> TargetFeatures:
        """Both feature grids and (with ``attention``) the self-attention maps of targets.

        ``images`` (B, 3, S, S) in [-1, 1].
        """
        latents = self.noisy_latents(images, seed=seed, stream=_TARGET_STREAM)
        stop = self.target_stop if attention else self.feature_blocks[1]
        captured = self._run_unet(latents, stop, set(self.feature_blocks), record=attention)
        features = tuple(self._average(captured[i]) for i in self.feature_blocks)
        maps = None
        if attention:
            recorded = self.recorder.maps()
            maps = tuple(recorded[g] for g in self.config.grids)
            self.recorder.reset()
        return TargetFeatures(features, maps)

    def check_channels(self, channels) -> None:
        """Raise ValueError unless the feature blocks give ``channels`` (coarse, fine)."""
        found = tuple(int(self.unet.up_blocks[i].resnets[-1].out_channels) for i in self.feature_blocks)
        if found != tuple(channels):
            raise ValueError(f"the UNet's feature blocks give {found} channels, the decoder expects {tuple(channels)}")


def _side(args, kwargs) -> int:
    hidden = args[0] if args else kwargs["hidden_states"]
    tokens = hidden.shape[1] if hidden.ndim == 3 else hidden.shape[-1] * hidden.shape[-2]
    return int(round(tokens**0.5))


def _output_side(output) -> int:
    tensor = output[0] if isinstance(output, tuple) else output
    return int(tensor.shape[-1])


def build_feature_extractor(config: IconMattingConfig, *, seed: int = 0) -> DiffusionFeatures:
    """Random SD from the config's UNet/VAE configs, else SD loaded from ``config.sd_model``."""
    if config.random_init:
        return DiffusionFeatures.from_config(config, seed=seed)
    return DiffusionFeatures.from_pretrained(config.sd_model, config)
