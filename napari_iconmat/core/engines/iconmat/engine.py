"""The ``iconmat`` engine: IconMatting behind the engine contract.

Per reference (once): the reference's fine-grid SD features inside the
min-pooled mask, LayerNorm-ed into K query tokens, saved in the
:class:`~napari_iconmat.core.reference.ReferenceQuery` (``query_tokens``,
``(K, 1280)`` float32). Per frame: one VAE encode + one UNet pass (batch of
``ensemble_size`` noisy copies) and the decoder. Frames are matted
independently (no track state); the noise is seeded, so a frame's alpha does
not depend on the order in which frames are matted.

Importing this module does not import torch; :meth:`IconMattingEngine.status`
only checks that files exist.
"""

from __future__ import annotations

import contextlib
import importlib.util
import warnings

import numpy as np

from ...engine import Engine, EngineStatus, FrameMatte
from ...errors import InputError, WeightsNotFoundError
from ...frames import check_frame, intensity_range, to_rgb_float
from ...options import Option
from ...prompt import Prompt
from ...reference import ReferenceQuery, reference_signature
from ...weights import HOME_ENV, find_model_file, iconmat_home, resolve_pretrained
from .config import SD21_MODEL_ID, SD_REQUIRED_FILES
from .geometry import FITS, SquareFit

__all__ = ["IconMattingEngine", "find_decoder_checkpoint"]

RANDOM_INITS = ("tiny", "sd21")
MAX_SEED = 2**62 - 1  # the noise generators are seeded with 2 * seed + 1, a signed 64-bit integer
DTYPES = ("float32", "bfloat16", "float16")
_DECODER_NAMES = ("iconmatting-decoder.safetensors", "12-0.00800-mat.pth")
_SD_WHAT = "Stable Diffusion 2.1 (768-v)"


def find_decoder_checkpoint(explicit=None):
    """The decoder checkpoint: ``explicit``, else the first of ``iconmatting-decoder.safetensors``
    and ``12-0.00800-mat.pth`` in :func:`~napari_iconmat.core.weights.iconmat_home`.

    Raises
    ------
    WeightsNotFoundError
        Naming where to put the file.
    """
    what = "IconMatting decoder checkpoint"
    if explicit is not None:
        return find_model_file(_DECODER_NAMES[0], what=what, explicit=explicit)
    for name in _DECODER_NAMES:
        path = iconmat_home() / name
        if path.is_file():
            return path
    raise WeightsNotFoundError(
        f"{what}: not found; put the released {_DECODER_NAMES[1]} (or its 'iconmat checkpoint convert' copy "
        f"{_DECODER_NAMES[0]}) in {iconmat_home()} (set {HOME_ENV} to use another folder), "
        f"or pass --engine-option decoder=PATH"
    )


def _pick_device(device: str):
    import torch

    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        chosen = None
    if chosen is None or chosen.type not in ("cpu", "cuda", "mps"):
        raise InputError(f"device must be 'auto', 'cpu', 'cuda[:N]' or 'mps', got {device!r}")
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was asked for, but torch sees no CUDA GPU here")
    if chosen.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("device 'mps' was asked for, but it is not available here")
    return chosen


@contextlib.contextmanager
def _gpu_memory_error(device, what: str):
    """Running out of GPU memory: one clear line with what to change, not a CUDA traceback."""
    import torch

    try:
        yield
    except torch.OutOfMemoryError:
        raise InputError(
            f"out of GPU memory on {device} while {what}; use --engine-option dtype=bfloat16, "
            "a smaller ensemble_size, or device=cpu"
        ) from None


class IconMattingEngine(Engine):
    """In-context matting with IconMatting (CVPR 2024) on frozen Stable Diffusion 2.1.

    Parameters
    ----------
    sd_model : str
        SD 2.1 (768-v) diffusers folder or hub id in the local HF cache
        (default ``'stabilityai/stable-diffusion-2-1'``).
    decoder : str or path, optional
        Decoder checkpoint (released ``.pth`` or converted ``.safetensors``);
        default: looked for in ``$ICONMAT_HOME``.
    fit : {'letterbox', 'crop'}
        How a non-square image becomes the square input (default 'letterbox':
        the whole image, alpha mapped back exactly; 'crop': the released centre
        square, alpha 0 outside it).
    resolution, timestep, ensemble_size
        Released defaults 768, 200, 4 (see :class:`IconMattingConfig`);
        ``resolution`` None means 768 (64 with ``random_init='tiny'``).
    seed : int
        Seed of the VAE samples and noise (default 0), the same for every frame.
    device : str
        'auto' (cuda > mps > cpu), 'cpu', 'cuda', 'cuda:N' or 'mps'.
    dtype : {'float32', 'bfloat16', 'float16'}
        Precision of the frozen SD part (default float32; half precisions need a GPU).
        The decoder always runs in float32.
    random_init : {None, 'tiny', 'sd21'}
        Random weights instead of files: 'tiny' (a tiny SD-shaped network for
        tests and smoke runs) or 'sd21' (the real-size architecture, for timing).
        The mattes are then meaningless.
    explain : bool
        Also return the inter-similarity S and the averaged intra-similarity map
        of every frame in ``FrameMatte.explain`` (not part of :attr:`params`).
    """

    name = "iconmat"
    version = "1"
    supports_explain = True
    option_specs = {
        "sd_model": Option("path", help="SD 2.1 diffusers folder or hub id"),
        "decoder": Option("path", allow_none=True, help="decoder checkpoint (.pth or .safetensors)"),
        "fit": Option("str", choices=FITS, help="how a non-square image becomes the square input"),
        "resolution": Option("int", low=64, high=4096, multiple=64, allow_none=True, help="square input size (px)"),
        "timestep": Option("int", low=0, high=999, help="diffusion timestep of the features"),
        "ensemble_size": Option("int", low=1, high=64, help="feature samples averaged per frame"),
        "seed": Option("int", low=0, high=MAX_SEED, help="seed of the VAE samples and noise"),
        "device": Option("str", help="'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"),
        "dtype": Option("str", choices=DTYPES, help="precision of the frozen SD part"),
        "random_init": Option("str", choices=RANDOM_INITS, allow_none=True, help="random weights instead of files (tests, timing)"),
        "explain": Option("bool", help="also return the similarity maps"),
    }

    def __init__(
        self,
        *,
        sd_model: str = SD21_MODEL_ID,
        decoder=None,
        fit: str = "letterbox",
        resolution: int | None = None,
        timestep: int = 200,
        ensemble_size: int = 4,
        seed: int = 0,
        device: str = "auto",
        dtype: str = "float32",
        random_init: str | None = None,
        explain: bool = False,
    ):
        if fit not in FITS:
            raise InputError(f"fit must be one of {', '.join(FITS)}, got {fit!r}")
        if dtype not in DTYPES:
            raise InputError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        if random_init not in (None, *RANDOM_INITS):
            raise InputError(f"random_init must be one of {', '.join(RANDOM_INITS)} (or unset), got {random_init!r}")
        if resolution is None:
            resolution = 64 if random_init == "tiny" else 768
        for key, value, low in (("resolution", resolution, 64), ("timestep", timestep, 0), ("ensemble_size", ensemble_size, 1), ("seed", seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise InputError(f"{key} must be an integer >= {low}, got {value!r}")
        if seed > MAX_SEED:
            raise InputError(f"seed must be at most {MAX_SEED}, got {seed}")
        if resolution % 64:
            raise InputError(f"resolution must be a multiple of 64, got {resolution}")
        if timestep >= 1000:
            raise InputError(f"timestep must lie in [0, 1000), got {timestep}")
        import torch

        from .checkpoint import load_decoder_weights, sha256_file
        from .config import IconMattingConfig
        from .decoder import InContextDecoder
        from .model import InContextMatting

        self._device = _pick_device(str(device))
        if dtype != "float32" and self._device.type == "cpu":
            raise InputError(f"dtype {dtype} needs a GPU; on the CPU use float32")
        common = dict(resolution=resolution, timestep=timestep, ensemble_size=ensemble_size)
        if random_init is not None:
            config = IconMattingConfig.tiny(**common) if random_init == "tiny" else IconMattingConfig.random_sd21(**common)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                model = InContextMatting(config)
            decoder_id = f"random:{random_init}:{seed}"
            if decoder is not None:  # e.g. a decoder trained with `iconmat train --tiny`
                decoder_path = find_decoder_checkpoint(decoder)
                load_decoder_weights(model.decoder, decoder_path)
                decoder_id = sha256_file(decoder_path)
        else:
            missing = []  # every missing piece named at once, not the first only
            try:
                decoder_path = find_decoder_checkpoint(decoder)
            except WeightsNotFoundError as exc:
                decoder_path = None
                missing.append(str(exc))
            try:
                resolve_pretrained(sd_model, what=_SD_WHAT, required=SD_REQUIRED_FILES)
            except WeightsNotFoundError as exc:
                missing.append(f"{exc} (or pass --engine-option sd_model=FOLDER)")
            config = IconMattingConfig(sd_model=str(sd_model), **common)
            if resolution != 768:
                warnings.warn(
                    f"resolution {resolution}: the released decoder was trained at 768 and its LayerNorm widths "
                    "fix the resolution; only a decoder trained at this resolution loads",
                    stacklevel=2,
                )
            decoder_net = InContextDecoder(config)
            if decoder_path is not None:
                load_decoder_weights(decoder_net, decoder_path)  # before SD: a bad checkpoint fails in a second
            if missing:
                raise WeightsNotFoundError("; ".join(missing))
            model = InContextMatting.from_pretrained(sd_model, None, config)
            model.decoder = decoder_net
            decoder_id = sha256_file(decoder_path)
        model.eval().to(self._device)
        if dtype != "float32":
            model.feature_extractor.to(getattr(torch, dtype))
        self.model = model
        self.config = config
        self.explain = bool(explain)
        self._params = dict(
            sd_model=str(sd_model) if random_init is None else f"random:{random_init}",
            decoder=decoder_id,
            fit=fit,
            resolution=resolution,
            timestep=timestep,
            ensemble_size=ensemble_size,
            seed=seed,
            dtype=dtype,
        )

    # ------------------------------------------------------------------ contract
    @classmethod
    def status(cls) -> EngineStatus:
        needs = "SD 2.1 (768-v) weights + IconMatting decoder checkpoint"
        missing = [name for name in ("torch", "diffusers", "transformers", "safetensors") if importlib.util.find_spec(name) is None]
        if missing:
            return EngineStatus(False, needs, f"Python packages missing: {', '.join(missing)}")
        problems, found = [], []
        try:
            folder = resolve_pretrained(SD21_MODEL_ID, what=_SD_WHAT, required=SD_REQUIRED_FILES)
            found.append(f"SD 2.1 in {folder}")
        except WeightsNotFoundError as exc:
            problems.append(f"{exc} (or pass --engine-option sd_model=FOLDER)")
        try:
            found.append(f"decoder {find_decoder_checkpoint()}")
        except WeightsNotFoundError as exc:
            problems.append(str(exc))
        if problems:
            return EngineStatus(False, needs, "; ".join(problems))
        return EngineStatus(True, needs, "; ".join(found))

    @property
    def params(self) -> dict:
        return dict(self._params)

    def encode_reference(self, image: np.ndarray, prompt: Prompt) -> ReferenceQuery:
        import torch

        image = check_frame(image, what="reference image")
        if tuple(prompt.shape) != tuple(image.shape[:2]):
            raise InputError(f"prompt must have the shape of the reference image {image.shape[:2]}, got {prompt.shape}")
        value_range = intensity_range(image)
        rgb = to_rgb_float(image, value_range)
        fit = SquareFit(rgb.shape[:2], self.config.resolution, mode=self._params["fit"])
        foreground = prompt.foreground.astype(np.float32)
        if not (foreground * fit.covered()).any():
            raise InputError(
                "the object marked on the reference lies outside the centre square that fit='crop' uses; "
                "use fit='letterbox' (the default)"
            )
        mask = fit.to_square(foreground, interpolation="area", fill=0.0)
        if not (mask > 0.5).any():
            # thinner than a pixel at the network resolution: keep every pixel it touches
            mask = (mask > 0).astype(np.float32)
        with torch.inference_mode(), _gpu_memory_error(self._device, "encoding the reference"):
            query = self.model.encode_reference(self._tensor(fit.to_square(rgb)), self._tensor(mask), seed=self._params["seed"])
        tokens = query.tokens[0].float().cpu().numpy()
        signature = reference_signature(image, prompt, engine=self.name, version=self.version, params=self.params)
        arrays = {"query_tokens": np.ascontiguousarray(tokens, np.float32), "image": rgb.astype(np.float32)}
        meta = {
            "value_range": list(value_range),
            "shape": list(rgb.shape[:2]),
            "query_cells": int(tokens.shape[0]),
            "fallback": bool(query.fallback[0]),
        }
        return ReferenceQuery(signature=signature, arrays=arrays, meta=meta)

    def reference_matte(self, query: ReferenceQuery):
        self._check_query(query)
        return self._matte_rgb(query.arrays["image"], query, with_foreground=False), None

    def matte_frame(self, frame, query, *, state=None, with_foreground=False):
        self._check_query(query)
        rgb = to_rgb_float(check_frame(frame), tuple(query.meta["value_range"]))
        return self._matte_rgb(rgb, query, with_foreground=with_foreground), None

    # ------------------------------------------------------------------ pieces
    def _tensor(self, array: np.ndarray):
        import torch

        array = array * 2.0 - 1.0 if array.ndim == 3 else array  # images to [-1, 1] (x/127.5 - 1), masks as they are
        if array.ndim == 2:
            array = array[..., None]
        return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1), np.float32))[None].to(self._device)

    def _check_query(self, query: ReferenceQuery) -> None:
        if query.engine != self.name or "query_tokens" not in query.arrays:
            raise InputError(f"this reference query was built by engine {query.engine!r}, not {self.name!r}: re-encode the reference")
        width = self.config.feature_channels[1]
        tokens = query.arrays["query_tokens"]
        if tokens.ndim != 2 or tokens.shape[1] != width:
            raise InputError(f"reference query tokens have shape {tokens.shape}, expected (K, {width}): re-encode the reference")

    def _matte_rgb(self, rgb: np.ndarray, query: ReferenceQuery, *, with_foreground: bool) -> FrameMatte:
        import torch
        import torch.nn.functional as F

        from .decoder import QueryTokens

        fit = SquareFit(rgb.shape[:2], self.config.resolution, mode=self._params["fit"])
        tokens = QueryTokens([torch.from_numpy(query.arrays["query_tokens"]).to(self._device)], [bool(query.meta.get("fallback"))])
        with torch.inference_mode(), _gpu_memory_error(self._device, "matting a frame"):
            out = self.model.matte(self._tensor(fit.to_square(rgb)), tokens, seed=self._params["seed"], return_maps=self.explain)
            alpha, maps = out if self.explain else (out, None)
            explain = None
            if maps is not None:
                side = self.config.resolution
                up = lambda t: F.interpolate(t.float(), size=(side, side), mode="bilinear", align_corners=False)[0, 0].cpu().numpy()
                inter = up(maps["inter"])
                intra = np.mean([up(m) for m in maps["intra"]], axis=0)
                explain = {"inter_similarity": fit.from_square(inter), "intra_similarity": fit.from_square(intra)}
            alpha = alpha[0, 0].float().cpu().numpy()
        alpha = np.clip(fit.from_square(alpha), 0.0, 1.0).astype(np.float32)
        foreground = None
        if with_foreground:
            from ...matting.closed_form import estimate_foreground

            foreground = estimate_foreground(rgb, alpha)
        return FrameMatte(alpha=alpha, coarse=alpha > 0.5, foreground=foreground, explain=explain)
