"""The ``sam2`` engine: SAM 2 (or EdgeTAM) streaming memory for the object, our matting stage for the alpha.

Per reference (once, in the query): the reference frame and its prompt (a mask,
a soft alpha thresholded at 0.5, or a scribble's strokes as points) run through
the model as its conditioning frame; the query keeps that frame's memory entry
(mask memory features and their positional encoding, object pointer, object
score) and the reference's own alpha. Nothing else of the reference is needed
again, so a video re-run or another collection starts without re-encoding.

Per frame: the frame is preprocessed (:mod:`.preprocess`), tracked against the
conditioning memory plus the bounded memory of the previous frames carried in
the track state (:mod:`.model`), and its mask logits give the coarse mask (logit
> 0) and an uncertainty band (sigmoid between 0.25 and 0.75 widens the
trimap's unknown band). The matting stage (:mod:`napari_iconmat.core.matting`)
makes the alpha: the closed-form solver with a temporal prior (the previous
alpha, where the frame did not change) or ViTMatte.

Time. The reference is time 0 and every matted frame one step further from it,
whichever way the pipeline walks (forward or backward from the reference frame):
the model sees each chain as a forward stream. A frame without a track state (a
collection's image, or a chain's first frame) is a one-frame continuation of the
reference at time 1.

Several references. :meth:`Sam2Engine.merge_queries` makes one query whose
conditioning memory holds several references of one sequence (the keyframes of
a correction), each at its time on the chain's axis; the keyframe pipeline uses
it so that a correction re-mattes from the memory of all keyframes.

Importing this module does not import torch; building the engine does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib.util import find_spec

import numpy as np

from ...engine import Engine, EngineStatus, FrameMatte
from ...errors import IconmatError, InputError, WeightsNotFoundError
from ...frames import intensity_range, to_rgb_float
from ...matting.closed_form import estimate_foreground
from ...matting.refiners import DEFAULT_VITMATTE, make_refiner, vitmatte_available
from ...matting.trimap import band_width, trimap_from_mask
from ...options import Option
from ...prompt import Prompt
from ...reference import ReferenceQuery, merged_signature, reference_signature
from ...weights import resolve_pretrained
from .model import DEFAULT_MODEL, SAM2_WHAT

__all__ = ["Sam2Engine", "conditioning_times"]

_REFINERS = ("auto", "closed-form", "vitmatte")
_DTYPES = ("auto", "float32", "bfloat16", "float16")
_RANDOM = ("tiny", "full")
_COND = "cond0."
_STATE_FORMAT = 1


@dataclass
class _Track:
    """What a chain carries from frame to frame: the bounded model memory (time -> entry of torch
    tensors), the time of the last frame, and its image and alpha (the temporal prior)."""

    index: int
    memory: dict = field(default_factory=dict)
    rgb: np.ndarray | None = None
    alpha: np.ndarray | None = None


class Sam2Engine(Engine):
    """SAM 2 video memory -> coarse mask + uncertainty -> matting stage.

    Parameters
    ----------
    model : str
        A hub id in the local Hugging Face cache (default ``facebook/sam2.1-hiera-tiny``;
        ``facebook/sam2.1-hiera-small`` / ``-base-plus`` / ``-large``, EdgeTAM's
        ``yonigozlan/EdgeTAM-hf``) or a ``save_pretrained`` folder (the model alone is
        enough: no processor files are read). Never downloaded.
    refiner : {'auto', 'closed-form', 'vitmatte'}
        The matting stage; 'auto' (default): ViTMatte when its weights are found, else closed-form.
    vitmatte : str
        ViTMatte folder or hub id (``refiner='vitmatte'`` or 'auto').
    band : float
        Half-width of the trimap's unknown band as a fraction of sqrt(mask area), clipped to
        [2, 24] px (default 0.012); three times as wide where the logits are uncertain.
    temporal : float
        Weight of the previous frame's alpha as a prior of the closed-form solve where the frame
        did not change (default 1.0; 0 = none).
    device : str, optional
        torch device (default: cuda > mps > cpu); not part of the query signature.
    dtype : {'auto', 'float32', 'bfloat16', 'float16'}
        'auto' (default): bfloat16 on a CUDA GPU, float32 elsewhere; not part of the signature.
    random_init : {None, 'tiny', 'full'}
        Random weights instead of ``model``: 'tiny' (a ~1 M parameter network, a smoke test) or
        'full' (the hiera-tiny architecture, for speed measurements). The mattes are meaningless.
    """

    name = "sam2"
    version = "1"
    option_specs = {
        "model": Option("str", help="SAM 2 / EdgeTAM video model: hub id in the local HF cache or a folder"),
        "refiner": Option("str", choices=_REFINERS, help="matting stage: auto (ViTMatte if found), closed-form, vitmatte"),
        "vitmatte": Option("str", help="ViTMatte folder or hub id"),
        "band": Option("float", low=0.0, high=1.0, help="unknown band half-width, fraction of sqrt(mask area)"),
        "temporal": Option("float", low=0.0, high=100.0, help="weight of the previous alpha where the frame did not change"),
        "device": Option("str", allow_none=True, help="torch device (default cuda > mps > cpu)"),
        "dtype": Option("str", choices=_DTYPES, help="auto: bfloat16 on a GPU, float32 on the CPU"),
        "random_init": Option("str", choices=_RANDOM, allow_none=True, help="random weights (tiny: smoke test; full: speed)"),
    }

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL,
        refiner: str = "auto",
        vitmatte: str = DEFAULT_VITMATTE,
        band: float = 0.012,
        temporal: float = 1.0,
        device: str | None = None,
        dtype: str = "auto",
        random_init: str | None = None,
    ):
        if refiner not in _REFINERS:
            raise InputError(f"sam2: refiner must be one of {', '.join(_REFINERS)}, got {refiner!r}")
        if dtype not in _DTYPES:
            raise InputError(f"sam2: dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if random_init not in (None, *_RANDOM):
            raise InputError(f"sam2: random_init must be one of {', '.join(_RANDOM)} (or unset), got {random_init!r}")
        if find_spec("transformers") is None or find_spec("torch") is None:
            raise WeightsNotFoundError("sam2 needs torch and transformers: pip install torch transformers")
        from . import model as sam2_model

        torch_device = sam2_model.pick_device(device)
        torch_dtype = sam2_model.pick_dtype(dtype, torch_device)
        if random_init is not None:
            network = sam2_model.random_model(random_init, device=torch_device, dtype=torch_dtype)
        else:
            network = sam2_model.load_model(model, device=torch_device, dtype=torch_dtype)
        self._loaded = sam2_model.describe(network, torch_device, torch_dtype)
        if refiner == "auto":
            refiner = "vitmatte" if vitmatte_available(vitmatte)[0] else "closed-form"
        self._refiner = make_refiner(refiner, vitmatte=vitmatte, device=device)
        self._params = dict(
            model=str(model) if random_init is None else f"random:{random_init}",
            refiner=refiner,
            band=float(band),
            temporal=float(temporal),
        )
        if refiner == "vitmatte":
            self._params["vitmatte"] = str(vitmatte)

    @classmethod
    def status(cls) -> EngineStatus:
        needs = "weights: SAM 2 video (+ ViTMatte optional)"
        if find_spec("transformers") is None or find_spec("torch") is None:
            return EngineStatus(False, needs, "torch and transformers are not installed: pip install torch transformers")
        has_vitmatte = vitmatte_available(DEFAULT_VITMATTE)[0]
        matting = "ViTMatte found" if has_vitmatte else "no ViTMatte: closed-form matting"
        try:
            folder = resolve_pretrained(DEFAULT_MODEL, what=SAM2_WHAT, required=("config.json",))
        except WeightsNotFoundError:
            return EngineStatus(
                False,
                needs,
                f"{DEFAULT_MODEL!r} is not in the Hugging Face cache: `huggingface-cli download {DEFAULT_MODEL}` "
                f"on a machine with network (or -small / -base-plus / -large, or EdgeTAM yonigozlan/EdgeTAM-hf), "
                f"or pass a folder with --engine-option model=DIR; {matting}",
            )
        return EngineStatus(True, needs, f"{DEFAULT_MODEL} found at {folder}; {matting}")

    @property
    def params(self) -> dict:
        return dict(self._params)

    # ------------------------------------------------------------------ model calls
    def _call(self, function, *args, **kwargs):
        """``function(...)``, with an out-of-memory turned into one line saying what to change."""
        import torch

        try:
            return function(*args, **kwargs)
        except torch.OutOfMemoryError:
            if self._loaded.device.type == "cuda":
                torch.cuda.empty_cache()
            raise IconmatError(
                f"sam2: out of memory on {self._loaded.device} ({self._loaded.dtype}); use a smaller model "
                f"(--engine-option model={DEFAULT_MODEL}), --engine-option dtype=bfloat16 on a GPU, "
                f"or --engine-option device=cpu"
            ) from None

    def _pixels(self, rgb: np.ndarray):
        from .preprocess import image_to_pixels

        return image_to_pixels(rgb, self._loaded.size).to(self._loaded.device)

    def _conditioning(self, query: ReferenceQuery) -> dict:
        """The query's conditioning frames as model memory entries: time -> entry (``{0: ...}`` unless merged)."""
        cache = getattr(self, "_cond_cache", None)
        if cache is not None and cache[0] is query:
            return cache[1]
        from .model import arrays_to_entry

        conditioning = {
            t: arrays_to_entry(query.arrays, f"cond{i}.", self._loaded) for i, t in enumerate(conditioning_times(query))
        }
        self._cond_cache = (query, conditioning)
        return conditioning

    # ------------------------------------------------------------------ several references
    def merge_queries(self, queries, times) -> ReferenceQuery:
        """One query whose conditioning memory holds every reference of ``queries``, each at its time.

        Parameters
        ----------
        queries : sequence of ReferenceQuery
            Single-reference sam2 queries of one sequence (same engine
            settings and frame size); the first is the chain's own reference
            (its alpha is the reference matte).
        times : sequence of int
            Distinct times on the chain's axis, the first 0: the chain's n-th
            frame is at time n, so a keyframe it walks towards is ahead (> 0)
            and one behind its start is < 0. SAM 2 gives every conditioning
            frame's mask memory the same temporal encoding, and reads the
            object pointers only of those at or before the frame, at their
            distance from it.

        Returns
        -------
        ReferenceQuery
            ``queries[0]`` itself when there is one; else its arrays plus
            ``cond1.``, ``cond2.``, ... entries of the others and ``cond_times``,
            signed by :func:`~napari_iconmat.core.reference.merged_signature`.
        """
        queries, times = list(queries), [int(t) for t in times]
        if not queries or len(queries) != len(times) or times[0] != 0 or len(set(times)) != len(times):
            raise InputError("sam2: merge_queries needs one distinct time per query, the first 0")
        for query in queries:
            if query.arrays.get(_COND + "maskmem_features") is None or "cond_times" in query.arrays:
                raise InputError("sam2: merge_queries takes single-reference sam2 queries")
            if tuple(query.meta.get("shape", ())) != tuple(queries[0].meta.get("shape", ())):
                raise InputError("sam2: merge_queries takes queries of one sequence (frames of one size)")
        if len(queries) == 1:
            return queries[0]
        try:
            signature = merged_signature([q.signature for q in queries], times)
        except ValueError as exc:
            raise InputError(f"sam2: {exc}") from None
        own = queries[0]
        arrays = dict(own.arrays)
        for i, query in enumerate(queries[1:], start=1):
            arrays.update({f"cond{i}." + k[len(_COND):]: v for k, v in query.arrays.items() if k.startswith(_COND)})
        arrays["cond_times"] = np.array(times, np.int64)
        meta = dict(own.meta, conditioning=[[t, q.key] for t, q in zip(times, queries)])
        return ReferenceQuery(signature=signature, arrays=arrays, meta=meta)

    # ------------------------------------------------------------------ reference
    def encode_reference(self, image: np.ndarray, prompt: Prompt) -> ReferenceQuery:
        from .model import encode_conditioning, entry_to_arrays
        from .preprocess import logits_to_frame, mask_to_input, points_to_input

        value_range = intensity_range(image)
        rgb = to_rgb_float(image, value_range)
        if prompt.shape != rgb.shape[:2]:
            raise InputError(f"prompt must have the shape of the reference image {rgb.shape[:2]}, got {prompt.shape}")
        signature = reference_signature(image, prompt, engine=self.name, version=self.version, params=self.params)
        size, shape = self._loaded.size, rgb.shape[:2]
        pixels = self._pixels(rgb)
        if prompt.kind == "scribble":
            points, labels = _scribble_points(prompt)
            if not np.any(labels == 1):
                raise InputError("sam2: the scribble has no object stroke (label 1)")
            inputs = points_to_input(points, labels, shape, size)
            inputs = {k: v.to(self._loaded.device) for k, v in inputs.items()}
            entry, logits = self._call(encode_conditioning, self._loaded, pixels, shape, point_inputs=inputs)
            mask = logits_to_frame(logits, size, shape) > 0
        else:
            mask = prompt.alpha > 0.5
            if not mask.any():
                raise InputError("sam2: the reference mask is empty")
            mask_input = mask_to_input(mask, size).to(self._loaded.device)
            entry, _ = self._call(encode_conditioning, self._loaded, pixels, shape, mask_input=mask_input)
        if prompt.kind == "alpha":
            alpha = prompt.alpha.astype(np.float32).copy()
        else:
            alpha = self._matte(rgb, mask, None)
        arrays = entry_to_arrays(entry, _COND)
        arrays.update(alpha=alpha.astype(np.float32), coarse=mask)
        meta = {"value_range": list(value_range), "shape": list(shape), "prompt_kind": prompt.kind, "size": size}
        return ReferenceQuery(signature=signature, arrays=arrays, meta=meta)

    def reference_matte(self, query: ReferenceQuery):
        alpha = query.arrays["alpha"].astype(np.float32)
        coarse = query.arrays["coarse"].astype(bool)
        # the reference pixels are not kept in the query: the first tracked frame has no temporal prior
        return FrameMatte(alpha=alpha.copy(), coarse=coarse, confidence=1.0), _Track(index=0)

    # ------------------------------------------------------------------ frames
    def matte_frame(self, frame, query, *, state=None, with_foreground=False):
        from .model import prune, step
        from .preprocess import logits_to_frame

        if query.arrays.get(_COND + "maskmem_features") is None:
            raise InputError("sam2: the reference query holds no conditioning memory (not a sam2 query?)")
        rgb = to_rgb_float(frame, tuple(query.meta["value_range"]))
        shape = rgb.shape[:2]
        track = state if isinstance(state, _Track) else _Track(index=0)
        index = track.index + 1
        entry, low_res, object_logit = self._call(
            step, self._loaded, self._pixels(rgb), shape,
            conditioning={t: e for t, e in self._conditioning(query).items() if t != index},
            memory=track.memory, index=index,
        )
        memory = prune(self._loaded, {**track.memory, index: entry}, index)
        logits = logits_to_frame(low_res, self._loaded.size, shape)
        mask = logits > 0
        present = object_logit > 0 and bool(mask.any())
        if present:
            previous = track.alpha if track.alpha is not None and track.alpha.shape == shape else None
            prior_weight = None
            if previous is not None and track.rgb is not None and self._params["temporal"] > 0:
                prior_weight = self._params["temporal"] * _unchanged(track.rgb, rgb)
            alpha = self._matte(rgb, mask, logits, guess=previous, prior_weight=prior_weight)
            probability = 1.0 / (1.0 + np.exp(-logits[mask]))
            confidence = float(np.clip(_sigmoid(object_logit) * probability.mean(), 0.0, 1.0))
        else:
            alpha = np.zeros(shape, np.float32)
            mask = np.zeros(shape, bool)
            confidence = 0.0
        foreground = estimate_foreground(rgb, alpha) if with_foreground else None
        new_state = _Track(index=index, memory=memory, rgb=rgb, alpha=alpha)
        return FrameMatte(alpha=alpha, coarse=mask, foreground=foreground, confidence=confidence), new_state

    def _matte(self, rgb, mask, logits, *, guess=None, prior_weight=None) -> np.ndarray:
        """Alpha of a coarse mask: an unknown band around it, wider where the logits are uncertain."""
        width = band_width(mask, fraction=self._params["band"])
        uncertainty = None
        if logits is not None:
            uncertainty = 1.0 - np.abs(2.0 * _sigmoid(logits) - 1.0)
        trimap = trimap_from_mask(mask, width=width, uncertainty=uncertainty, wide_width=3 * width)
        prior = guess if prior_weight is not None else None
        return self._refiner.refine(rgb, trimap, guess=guess, prior=prior, prior_weight=prior_weight).astype(np.float32)

    # ------------------------------------------------------------------ resume
    def save_state(self, state) -> dict | None:
        if not isinstance(state, _Track):
            return None
        from .model import entry_to_arrays

        arrays = {"format": np.array([_STATE_FORMAT]), "index": np.array([state.index]), "times": np.array(sorted(state.memory), dtype=np.int64)}
        for t, entry in state.memory.items():
            arrays.update(entry_to_arrays(entry, f"t{t}."))
        if state.alpha is not None and state.rgb is not None:
            arrays["alpha"] = state.alpha.astype(np.float32)
            arrays["rgb"] = state.rgb.astype(np.float32)
        return arrays

    def load_state(self, arrays: dict):
        from .model import arrays_to_entry

        try:
            if int(np.asarray(arrays["format"]).reshape(-1)[0]) != _STATE_FORMAT:
                raise ValueError("sam2: a track state of another format")
            index = int(np.asarray(arrays["index"]).reshape(-1)[0])
            memory = {}
            for t in np.asarray(arrays["times"]).reshape(-1).tolist():
                entry = arrays_to_entry(arrays, f"t{int(t)}.", self._loaded)
                if "object_pointer" not in entry:
                    raise ValueError(f"sam2: the track state misses time {t}")
                memory[int(t)] = entry
        except KeyError as exc:
            raise ValueError(f"sam2: not a sam2 track state (no {exc})") from None
        alpha = arrays.get("alpha")
        rgb = arrays.get("rgb")
        return _Track(
            index=index,
            memory=memory,
            rgb=None if rgb is None else np.asarray(rgb, np.float32),
            alpha=None if alpha is None else np.asarray(alpha, np.float32),
        )


def conditioning_times(query: ReferenceQuery) -> list[int]:
    """Times of the conditioning frames of a sam2 query, in the order of its ``cond0.``, ``cond1.``, ... entries."""
    times = query.arrays.get("cond_times")
    return [0] if times is None else [int(t) for t in np.asarray(times).reshape(-1)]


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60.0, 60.0)))


def _unchanged(previous: np.ndarray, current: np.ndarray, *, tolerance: float = 0.04) -> np.ndarray:
    """Per pixel, 1 where the frame did not change since the previous one (blurred grey difference
    below ``tolerance``), falling to 0 at twice that; 0 everywhere when the sizes differ."""
    import cv2

    if previous.shape != current.shape:
        return np.zeros(current.shape[:2], np.float32)
    difference = np.abs(previous.mean(axis=2) - current.mean(axis=2)).astype(np.float32)
    difference = cv2.GaussianBlur(difference, (0, 0), 2.0)
    return np.clip(2.0 - difference / tolerance, 0.0, 1.0).astype(np.float32)


def _scribble_points(prompt: Prompt, *, positive: int = 8, negative: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``positive`` object and ``negative`` background stroke pixels, evenly spread along
    each label's pixels in raster order: (N, 2) (row, col) and (N,) labels 1 / 0."""
    points, labels = [], []
    for where, label, count in ((prompt.foreground, 1, positive), (prompt.background, 0, negative)):
        rows, cols = np.nonzero(where)
        if len(rows) == 0:
            continue
        pick = np.unique(np.linspace(0, len(rows) - 1, min(count, len(rows))).round().astype(int))
        points.append(np.stack([rows[pick], cols[pick]], axis=1))
        labels.append(np.full(len(pick), label, np.int8))
    if not points:
        return np.zeros((0, 2), np.float32), np.zeros(0, np.int8)
    return np.concatenate(points).astype(np.float32), np.concatenate(labels)
