"""The ``icmp`` engine: the In-Context Matting Pipeline of the IconMatting paper.

ICMP is the paper's baseline built from off-the-shelf models, for every target
independently:

1. the reference's prompt points carry to the target by DINOv2 correspondence
   (:mod:`.correspondence`, which documents the matching rule);
2. SAM turns the carried points into a coarse mask (:mod:`.masks`);
3. morphology turns the mask into a pseudo-trimap (:mod:`.trimap`);
4. ViTMatte predicts the alpha from the image and the trimap
   (:mod:`napari_iconmat.core.matting.refiners`); the closed-form solver stands in when
   the ViTMatte weights are absent (``refiner='auto'``).

Per reference (once, in the query): the prompt points and labels, the
reference's DINOv2 feature grid (descriptors for the forward match, the whole
grid for the backward check) and the reference's own alpha.
"""

from __future__ import annotations

from importlib.util import find_spec

import numpy as np

from ...engine import Engine, EngineStatus, FrameMatte
from ...errors import InputError, WeightsNotFoundError
from ...frames import intensity_range, to_rgb_float
from ...matting.closed_form import estimate_foreground
from ...matting.refiners import DEFAULT_VITMATTE, make_refiner, vitmatte_available
from ...options import Option
from ...prompt import Prompt
from ...reference import ReferenceQuery, reference_signature
from ...weights import resolve_pretrained
from .correspondence import DEFAULT_DINOV2, DINOV2_WHAT, Dinov2Features, FeatureMap, match_points, prompt_points
from .masks import DEFAULT_SAM, SAM_WHAT, SamMasker
from .trimap import pseudo_trimap

__all__ = ["IcmpEngine"]

_REFINERS = ("auto", "vitmatte", "closed-form")


class IcmpEngine(Engine):
    """DINOv2 correspondence -> SAM mask -> pseudo-trimap -> ViTMatte, per target.

    Parameters
    ----------
    dinov2, sam, vitmatte : str
        Model folders (``save_pretrained`` layout) or hub ids resolved through
        the local Hugging Face cache (never downloaded). Defaults
        ``facebook/dinov2-base``, ``facebook/sam-vit-base`` and
        ``hustvl/vitmatte-small-composition-1k``.
    refiner : {'auto', 'vitmatte', 'closed-form'}
        The matting stage. ``'auto'`` (default): ViTMatte when its weights are
        found, else the closed-form solver.
    feature_side : int
        Longer side of DINOv2's input in pixels (default 448).
    positive_points, negative_points : int
        Largest numbers of object and background points sampled from a mask
        prompt (default 8 and 4).
    cycle_radius : float
        Cycle-consistency tolerance of the matching, in reference feature cells (default 1.5).
    band : float
        Pseudo-trimap half-width as a fraction of sqrt(mask area), clipped to [3, 30] px (default 0.05).
    device : str, optional
        torch device (default CUDA when available, else the CPU); not part of the query signature.

    Raises
    ------
    InputError
        An unknown ``refiner``.
    WeightsNotFoundError
        DINOv2 or SAM (or ViTMatte with ``refiner='vitmatte'``) is not on this machine.
    CheckpointError
        A model folder does not hold the expected model.
    """

    name = "icmp"
    version = "1"
    option_specs = {
        "dinov2": Option("path", help="DINOv2 folder or hub id"),
        "sam": Option("path", help="SAM folder or hub id"),
        "vitmatte": Option("path", help="ViTMatte folder or hub id"),
        "refiner": Option("str", choices=_REFINERS, help="the matting stage"),
        "feature_side": Option("int", low=14, high=4096, help="longer side (px) of DINOv2's input"),
        "positive_points": Option("int", low=1, high=256, help="most object points from a mask prompt"),
        "negative_points": Option("int", low=0, high=256, help="most background points from a mask prompt"),
        "cycle_radius": Option("float", low=0, high=100, help="cycle-consistency tolerance in feature cells"),
        "band": Option("float", low=0.001, high=1, help="pseudo-trimap half-width / sqrt(mask area)"),
        "device": Option("str", allow_none=True, help="torch device (default CUDA when available)"),
    }

    def __init__(
        self,
        *,
        dinov2: str = DEFAULT_DINOV2,
        sam: str = DEFAULT_SAM,
        vitmatte: str = DEFAULT_VITMATTE,
        refiner: str = "auto",
        feature_side: int = 448,
        positive_points: int = 8,
        negative_points: int = 4,
        cycle_radius: float = 1.5,
        band: float = 0.05,
        device: str | None = None,
    ):
        if refiner not in _REFINERS:
            raise InputError(f"icmp: refiner must be one of {', '.join(_REFINERS)}, got {refiner!r}")
        if find_spec("transformers") is None:
            raise WeightsNotFoundError("icmp needs the transformers package: pip install transformers")
        if refiner == "auto":
            refiner = "vitmatte" if vitmatte_available(vitmatte)[0] else "closed-form"
        self._features = Dinov2Features(dinov2, side=feature_side, device=device)
        self._sam = SamMasker(sam, device=device)
        self._refiner = make_refiner(refiner, vitmatte=vitmatte, device=device)
        self._params = dict(
            dinov2=str(dinov2),
            sam=str(sam),
            refiner=refiner,  # the one in use: queries made with ViTMatte differ from closed-form ones
            feature_side=int(feature_side),
            positive_points=int(positive_points),
            negative_points=int(negative_points),
            cycle_radius=float(cycle_radius),
            band=float(band),
        )
        if refiner == "vitmatte":
            self._params["vitmatte"] = str(vitmatte)

    @classmethod
    def status(cls) -> EngineStatus:
        needs = "weights: DINOv2, SAM (+ ViTMatte)"
        if find_spec("transformers") is None:
            return EngineStatus(False, needs, "the transformers package is not installed: pip install transformers")
        missing = []
        for what, model in ((DINOV2_WHAT, DEFAULT_DINOV2), (SAM_WHAT, DEFAULT_SAM)):
            try:
                resolve_pretrained(model, what=what, required=("config.json",))
            except WeightsNotFoundError:
                missing.append(f"{what} {model!r}")
        has_vitmatte = vitmatte_available(DEFAULT_VITMATTE)[0]
        matting = "ViTMatte found" if has_vitmatte else f"ViTMatte {DEFAULT_VITMATTE!r} missing: closed-form matting instead"
        if missing:
            return EngineStatus(
                False,
                needs,
                f"missing {', '.join(missing)} in the Hugging Face cache: `huggingface-cli download ID` on a machine "
                f"with network, or pass folders with --engine-option dinov2=DIR --engine-option sam=DIR; {matting}",
            )
        return EngineStatus(True, needs, f"DINOv2 and SAM found in the Hugging Face cache; {matting}")

    @property
    def params(self) -> dict:
        return dict(self._params)

    # ------------------------------------------------------------------ reference
    def encode_reference(self, image: np.ndarray, prompt: Prompt) -> ReferenceQuery:
        value_range = intensity_range(image)
        rgb = to_rgb_float(image, value_range)
        if prompt.shape != rgb.shape[:2]:
            raise InputError(f"prompt must have the shape of the reference image {rgb.shape[:2]}, got {prompt.shape}")
        signature = reference_signature(image, prompt, engine=self.name, version=self.version, params=self.params)
        p = self._params
        points, labels = prompt_points(prompt, positive=p["positive_points"], negative=p["negative_points"])
        features = self._features(rgb)
        if prompt.kind == "alpha":
            alpha = prompt.alpha.copy()
        elif prompt.kind == "mask":
            alpha = self._matte(rgb, prompt.alpha > 0.5)
        else:  # a scribble: SAM finds the object on the reference too
            mask, _ = self._sam(rgb, points, labels)
            alpha = self._matte(rgb, mask)
        arrays = {
            "points": points,
            "labels": labels,
            "features": features.features,
            "alpha": alpha.astype(np.float32),
        }
        meta = {"value_range": list(value_range), "shape": list(rgb.shape[:2]), "prompt_kind": prompt.kind}
        return ReferenceQuery(signature=signature, arrays=arrays, meta=meta)

    def reference_matte(self, query: ReferenceQuery):
        alpha = query.arrays["alpha"]
        return FrameMatte(alpha=alpha.copy(), coarse=alpha > 0.5), None

    # ------------------------------------------------------------------ frames
    def matte_frame(self, frame, query, *, state=None, with_foreground=False):
        rgb = to_rgb_float(frame, tuple(query.meta["value_range"]))
        points, labels = self.carry_points(rgb, query)
        mask, _ = self._sam(rgb, points, labels)
        alpha = self._matte(rgb, mask) if mask.any() else np.zeros(mask.shape, np.float32)
        foreground = estimate_foreground(rgb, alpha) if with_foreground else None
        # every target on its own, as in the paper: no track state
        return FrameMatte(alpha=alpha, coarse=mask, foreground=foreground), None

    def carry_points(self, rgb: np.ndarray, query: ReferenceQuery) -> tuple[np.ndarray, np.ndarray]:
        """The query's points carried to an (H, W, 3) float image: (N, 2) pixel (row, col) and (N,) labels.

        Reliable matches only (see :mod:`.correspondence`), one point per target
        cell, positives winning over negatives; never without a positive.
        """
        reference = FeatureMap(query.arrays["features"], tuple(query.meta["shape"]))
        target = self._features(rgb)
        labels = query.arrays["labels"]
        matches = match_points(reference, query.arrays["points"], target, cycle_radius=self._params["cycle_radius"])
        positives = np.flatnonzero((labels == 1) & matches.consistent)
        if len(positives) == 0 and np.any(labels == 1):
            candidates = np.flatnonzero(labels == 1)
            positives = candidates[[int(np.argmax(matches.similarity[candidates]))]]
        negatives = np.flatnonzero((labels == 0) & matches.consistent)
        chosen, taken = [], set()
        for i in [*positives, *negatives]:  # positives first: they win a shared cell
            if int(matches.cells[i]) not in taken:
                taken.add(int(matches.cells[i]))
                chosen.append(i)
        chosen = np.array(chosen, int)
        return matches.points[chosen].reshape(-1, 2), labels[chosen].astype(np.int8)

    def _matte(self, rgb: np.ndarray, mask: np.ndarray) -> np.ndarray:
        trimap = pseudo_trimap(mask, fraction=self._params["band"])
        return self._refiner.refine(rgb, trimap)
