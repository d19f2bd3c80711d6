"""The ``classical`` engine: weights-free in-context matting on the CPU.

Per reference (once): a colour model of object and background (Lab histograms),
SIFT keypoints of the object, the reference's shape (the prompt with a softened
edge; a scribble is first turned into a mask by graph cut), which the cues that
find the object again read, and its own alpha, matted as far as its fur and
strands reach, which is its output and what a placed reference carries.

Per frame, in three steps:

1. **Where is the object?** For a frame of an ordered sequence the previous
   alpha is carried to the frame by dense optical flow (OpenCV DIS), trusted
   where the flow explains the image (photometric check); thin parts (antennae,
   strands) move with the object around them rather than with the dense flow,
   which is smooth and would leave them behind. For a frame with no
   temporal neighbour (collections, or the first frame after an external
   reference) SIFT matches against the reference and its mirror image give a
   similarity transform that carries the reference alpha instead; without
   enough matches only appearance is used: the reference's colours in nearby
   hues (same-category variants), refitted on the image's own cut (GrabCut-style). On frames of a sequence the same matches also
   *re-detect* reference parts: each pastes the reference alpha around its
   part, which recovers parts the flow lost and vetoes leaks next to them.
   Pixels that move with the camera while the object moves otherwise are
   background (motion cue), which drops leaks left behind on the background;
   pixels next to the object that move with it (its own motion fitted to its
   flow) and not with the camera are object: a side of a car or a scooter
   that comes into view as it turns, in colours the reference never showed.
2. **Coarse mask:** the carried alpha and the colour log-odds are fused into
   per-pixel log-odds and cut with a contrast-sensitive graph cut (PyMaxflow)
   at a reduced working size; stray components are dropped. The graph cut's
   smoothness is relaxed on thin parts of the carried mask (antennae, legs),
   which it would otherwise erase.
3. **Matte:** an unknown band around the mask (wider where the fused evidence is
   uncertain) is solved with closed-form matting at full resolution, warm-started
   from and gently pulled towards the carried alpha where nothing moved (a small
   flow and an unchanged image around the pixel), which keeps static edges from
   flickering.
"""

from __future__ import annotations

from concurrent.futures import wait
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np

from ...engine import Engine, EngineStatus, FrameMatte
from ...errors import InputError
from ...frames import intensity_range, to_rgb_float
from ...matting.closed_form import estimate_foreground, solve_alpha
from ...matting.refiners import DEFAULT_VITMATTE, REFINERS, make_refiner
from ...matting.trimap import band_width, trimap_from_mask
from ...options import Option
from ...prompt import Prompt
from ...reference import ReferenceQuery, reference_signature
from ...threads import ahead_of_caller, beside, helps
from .appearance import ColourModel, fit_colour_model, hue_tolerant, lab_bins
from .confidence import colour_confidence, colour_similarity, flow_confidence, keypoint_confidence, size_confidence
from .filters import wide_gaussian, within
from .keypoints import fit_reference_transform, match_reference, object_keypoints
from .memory import release_free_memory
from .background import BackgroundMemory, background_change, background_match, recall, remember
from .motion import background_motion, camera_residual, fit_camera, motion_evidence, moves_with_object
from .refit import fill_holes_like, refit_segmentation
from .segmentation import bound_to_core, fragmented_parts, graph_cut, keep_supported, refill_holes, select_object, thin_reach, thin_relief
from .temporal import carry_thin_alpha, carry_thin_parts, object_motion, unchanged

__all__ = ["ClassicalEngine"]

# band-edge alpha beyond which the unknown band is widened (see _widen_where_unsettled)
UNSETTLED = 0.1
# OpenCV's DIS optical flow refuses images with a side shorter than this
_MIN_FLOW_SIDE = 12
# px of context SIFT reads around the region searched for reference parts
_SIFT_PAD = 24
# frames between returns of freed heap memory to the system (see core/memory.py)
_TRIM_EVERY = 25


@dataclass
class _Track:
    """What the engine carries from one frame of a sequence to the next."""

    gray: np.ndarray  # (h, w) uint8 at working size
    lab: np.ndarray  # (h, w, 3) float32 CIE Lab at working size
    mask: np.ndarray  # (h, w) float32 at working size: the coarse mask, what segmentation carries
    alpha: np.ndarray  # (H, W) float32, full size: what the matting prior carries
    model: ColourModel  # colour model adapted along the sequence
    background: BackgroundMemory | None = None  # the scene seen behind the object (background.py)
    # (next frame, future of its _Cues) when the caller named the next frame; never saved
    ahead: tuple | None = None
    search_misses: int = 0  # whole-frame searches in a row that found nothing to replace the track
    search_wait: int = 0  # frames to go before the next such search


class _Previous(NamedTuple):
    """What the next frame's cues read of the previous frame (all known before its alpha)."""

    gray: np.ndarray
    lab: np.ndarray
    mask: np.ndarray
    full_hw: tuple[int, int]
    background: BackgroundMemory | None = None


@dataclass
class _Cues:
    """A frame's images at working size and, on a sequence, the cues of :meth:`ClassicalEngine._cues`."""

    rgb: np.ndarray
    small: np.ndarray
    gray: np.ndarray
    bins: np.ndarray
    lab: np.ndarray
    neighbour: bool = False
    carried: np.ndarray | None = None
    confidence: np.ndarray | None = None
    flow: np.ndarray | None = None
    local: np.ndarray | None = None
    found: np.ndarray | None = None
    held: np.ndarray | None = None
    object_moved: object = None
    reference_colour: np.ndarray | None = None
    camera: object = None
    follows: np.ndarray | None = None
    moves: np.ndarray | None = None
    recalled: BackgroundMemory | None = None  # the background memory moved with the camera to this frame
    plain_background: np.ndarray | None = None  # 0..1: looks as the remembered background there
    changed: np.ndarray | None = None  # 0..1: something next to the object in front of the remembered background

    def alone(self) -> "_Cues":
        """The frame's own images without the sequence's cues: the frame searched as a collection image."""
        return _Cues(rgb=self.rgb, small=self.small, gray=self.gray, bins=self.bins, lab=self.lab)


class _Cut(NamedTuple):
    """A frame's coarse cut (:meth:`ClassicalEngine._cut`), at working size."""

    mask: np.ndarray  # (h, w) bool
    log_odds: np.ndarray  # (h, w) float32: the evidence the cut was made on
    confidence: float  # 0..1, the frame's confidence
    colour: float  # 0..1, its colour cue alone
    model: ColourModel  # the colour model the cut read
    neighbour: bool  # tracked from the previous frame (else searched for)
    carried: np.ndarray | None  # (h, w) float32 0..1: the carried or placed reference mask
    transform: object  # the keypoint transform that placed the reference (searched frames), or None


def _logit(p: np.ndarray, eps: float = 0.02) -> np.ndarray:
    p = np.clip(p, eps, 1 - eps)
    return np.log(p / (1 - p))


def _working_size(shape: tuple[int, int], max_side: int) -> tuple[int, int]:
    h, w = shape[:2]
    scale = min(1.0, max_side / max(h, w))
    return max(2, round(h * scale)), max(2, round(w * scale))


def _resize(array: np.ndarray, size_hw: tuple[int, int], interpolation=cv2.INTER_AREA) -> np.ndarray:
    if array.shape[:2] == tuple(size_hw):
        return array
    return cv2.resize(array, (size_hw[1], size_hw[0]), interpolation=interpolation)


def _gray_u8(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor((rgb * 255.0 + 0.5).astype(np.uint8), cv2.COLOR_RGB2GRAY)


def _lab(rgb: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(rgb.astype(np.float32), cv2.COLOR_RGB2LAB)


def _local_colour_log_odds(state, flow: np.ndarray, lab: np.ndarray, carried: np.ndarray, window: float) -> np.ndarray:
    """Log-odds from local colour statistics of object and background near each pixel.

    The previous frame's Lab colours and mask are carried to the current frame by
    the flow; within a Gaussian window (scaled to the object) they give a local
    mean and variance of object colour and of background colour. A pixel is
    scored by which of the two local Gaussians explains its colour better, which
    separates object and background far better than global colour statistics
    where both share colours elsewhere in the frame (Video SnapCut's idea,
    without explicit windows).
    """
    h, w = carried.shape
    grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    prev_lab = cv2.remap(state.lab, grid_x + flow[..., 0], grid_y + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    area = float(np.count_nonzero(carried > 0.5))
    sigma = max(4.0, window * np.sqrt(max(area, 1.0)))
    fg = carried.astype(np.float32)
    # the two sides are independent: the background's on the helper thread
    background = beside(_local_score, prev_lab, lab, 1.0 - fg, sigma) if helps() else None
    score_fg, mass_fg = _local_score(prev_lab, lab, fg, sigma)
    score_bg, mass_bg = background.result() if background is not None else _local_score(prev_lab, lab, 1.0 - fg, sigma)
    valid = np.minimum(mass_fg, mass_bg) > 0.03
    return np.where(valid, np.clip(score_fg - score_bg, -6.0, 6.0), 0.0).astype(np.float32)


def _local_score(prev_lab: np.ndarray, lab: np.ndarray, weight: np.ndarray, sigma: float):
    """Log-likelihood of each pixel's colour under the local Gaussian of one side (weights 0..1), and that side's local mass."""
    mass = wide_gaussian(weight, sigma)
    mean = wide_gaussian(prev_lab * weight[..., None], sigma) / (mass[..., None] + 1e-6)
    second = wide_gaussian(prev_lab**2 * weight[..., None], sigma) / (mass[..., None] + 1e-6)
    var = np.maximum((second - mean**2).mean(axis=2), 0) + 9.0
    dist = ((lab - mean) ** 2).sum(axis=2)
    return -dist / (2 * var) - 1.5 * np.log(var), mass


def _growth_limit(carried: np.ndarray, found: np.ndarray | None, max_growth: float, regrow: float) -> float:
    """Largest plausible object area (pixels) in a frame of a sequence.

    Objects rarely grow by a quarter between two frames: sudden growth is a leak,
    unless it is onto reference parts found again (``found`` > 0.5, re-detection
    evidence in -1..1) outside the carried object, i.e. an object coming out from
    behind an occluder; that area is allowed on top, times ``regrow``.
    """
    limit = max_growth * max(float((carried > 0.5).sum()), 16.0)
    if found is not None and regrow > 0:
        limit += regrow * float(((found > 0.5) & (carried <= 0.5)).sum())
    return limit


class ClassicalEngine(Engine):
    """Weights-free engine: colour model + optical flow / keypoints + graph cut + closed-form matting.

    Parameters
    ----------
    working_size : int
        Longest side, in pixels, at which flow and graph cut run (default 480).
        Matting always runs at the frame's full size.
    flow_weight, colour_weight : float
        Weights of the carried-alpha and colour log-odds in the fusion.
    smoothness : float
        Graph-cut pairwise weight.
    band : float
        Unknown-band half-width as a fraction of sqrt(object area).
    temporal : float
        Strength of the pull towards the previous frame's alpha where nothing moved (0 = off).
    adapt : float
        How fast the colour model follows the sequence (0 = reference only).
    local_weight, local_window : float
        Weight of the local colour log-odds, and its Gaussian window as a fraction of sqrt(object area).
    margin : float
        Distance (fraction of sqrt(object area)) beyond the carried object at which growth is penalised.
    wide_band : float
        Widest unknown band, as a fraction of sqrt(object area), where the alpha has not settled
        (at most 32 px, which bounds the matting cost on large objects).
    strand_share : float
        Share of the reference mask in fragmented parts (strands, hair, fur) at which the widened
        band reaches as far into the object as out of it. A reference with less reaches in
        proportionally less (down to two band widths): an opaque object stays opaque inside where
        its colours resemble the background. 0 always reaches in fully.
    max_growth : float
        Largest plausible area growth from one frame to the next (0 = no limit).
    reference_veto : float
        Weight of the reference colour model's background evidence, which keeps the adapted
        model from learning a leak; it is lifted where the flow confidently carries the object.
    thin_relief : float
        Factor (0..1) on the graph-cut smoothness on and around thin parts of the carried
        mask (1 = off).
    redetect, redetect_window : float
        Weight of the re-detection evidence on frames of a sequence (0 = off): SIFT matches
        against the reference's object keypoints paste the reference alpha around each
        matched part, in a Gaussian window of ``redetect_window`` x sqrt(object area);
        where it says object, the reference veto is lifted too.
    solver_iterations, solver_tolerance
        Conjugate-gradient budget of the matting solve. The solve starts from the carried
        alpha; a bounded number of steps (rather than full convergence) keeps the alpha
        from bleeding across ambiguous colours, which measured better on both the synthetic
        set (SAD) and DAVIS (IoU).
    refiner : {'closed-form', 'vitmatte'}
        The matting stage (:mod:`napari_iconmat.core.matting.refiners`): the closed-form solver
        (default) or ViTMatte, which needs its weights (``vitmatte``).
    vitmatte : str
        ViTMatte model folder or hub id in the local Hugging Face cache (``refiner='vitmatte'`` only).
    keypoint_trust, min_inliers
        Frames without a temporal neighbour: weight (0..1 of the flow's) of the reference alpha
        placed by a similarity transform fitted (RANSAC) to SIFT matches of the reference's object
        keypoints, upright or mirrored, and the fewest inliers that make a transform (full weight
        from 30 inliers).
    hue_tolerance : float
        Frames without a temporal neighbour nor a keypoint transform: the reference's object
        colours count in any hue within +- this many degrees (same-category variants, colour
        casts; 0 = off).
    refit_rounds : int
        ... and the colour model is refitted on the image's own cut this many times at most (0 = off).
    still_tolerance : float
        The temporal prior holds a pixel only where the frame itself did not change around it
        (grey-level change, after a light blur, at which the hold falls to 1/e; 0 = no check):
        a smooth flow calls thin parts moving over a still background "still".
    thin_carry : float
        Thin parts of the previous mask (what a 5 x 5 opening removes: antennae, strands) are
        carried by the flow of the solid object around them, spread over a Gaussian window of
        ``thin_carry`` x sqrt(object area), instead of by the dense flow, which leaves them
        behind (0 = dense flow only).
    regrow : float
        Growth onto re-detected reference parts (re-detection evidence > 0.5 outside the carried
        object) is allowed beyond ``max_growth``, times this factor (0 = not): an object coming
        out from behind an occluder regains its area in one frame instead of a quarter a frame.
    motion : float
        Weight of the motion cue on frames of a sequence (0 = off): pixels whose flow the
        camera's motion (a homography fitted to the background's flow) explains, while the
        object moves otherwise, are background (:mod:`napari_iconmat.core.engines.classical.motion`); this
        drops leaks that stay behind with the background.
    object_motion : float
        Weight of the cue's other half (0 = off): pixels near the object whose flow follows the
        object's own motion (a similarity transform fitted to its flow) and departs from the
        camera's are object, where the frame's texture pins the flow down (corners, not the
        straight edge of a rail). Half the background half's weight: flow departs from the
        camera's motion for other reasons too (parallax, flow smoothed across edges).
    reach_slack : float
        ... and the cut keeps only what lies within this many times the reference's reach of thin
        parts (fur, antennae) of its thick body, cutting away look-alikes joined through them (0 = off).
    compact_reach : float
        A reference whose thin parts reach less than this (:func:`~napari_iconmat.core.engines.classical.segmentation.thin_reach`,
        over sqrt(area)) is a compact object: on tracked frames too, what lies farther from its body
        than ``reach_slack`` x this reach is cut (leaks crept along a kerb or a road line). 0 = off.
    refill_holes : float
        Frames of a sequence: a hole of the cut (background enclosed by it) is filled when at least
        this share of its pixels was object where the previous frame was carried to: the colour
        model lost object parts there (car windows, shadowed folds), while holes the object really
        forms (an arm against the body) open onto background it had around it. 0 = off.
    placed_soft : int
        Frames placed by a keypoint transform: the soft parts of the placed reference alpha
        (edges, strands, antennae, translucent parts), this many pixels wider, are left to the
        matting solve, which starts from the placed alpha there (0 = off).
    colour_match : float
        How closely the colours of what was found must match the reference object's (Bhattacharyya
        coefficient of their colour histograms, 0..1) for a frame's confidence to reach 0.5. In a
        collection, an image where no keypoints place the reference and the colours match less than
        this does not contain the object: its alpha is all zero. 0 = accept any colours (same-category
        objects in other hues, with ``hue_tolerance``).
    search_when_lost : bool
        Frames of a sequence whose previous frame's matte is empty (the object was lost, or had left
        the frame), or whose tracked matte's colours are unlike the reference object's (the colour
        cue of the confidence below 0.5: the track slipped onto an occluder or the background): search
        the whole frame for the object as in a collection image (keypoints placing the reference, else
        the reference's colours, checked with ``colour_match``) and resume the track from a verified
        find, instead of carrying nothing, or the wrong thing, on. A find lying mostly on the tracked
        matte does not replace it: that is the tracked object, its looks changed (new light, a turn).
    background_memory : float
        Weight of the background memory on frames of a sequence (0 = off,
        :mod:`~napari_iconmat.core.engines.classical.background`): the background seen away from the
        object is remembered, moved with the camera; a pixel that looks as the background looked at
        that place is background, whatever its colour (a look-alike patch the object passes).
    background_change : float
        ... and the other half (0 = off): next to the object (within 0.4 x sqrt(area)), a pixel clearly
        unlike the background seen there (twice the match's colour difference, lightness counting a
        quarter: a shadow darkens the ground) is something in front of it, a part of the object
        (a limb swung out over the ground); like a part that moves with the object, it also lifts the
        reference's colour veto. Half the match's weight: water, a shadow or a passer-by change the
        background too.
    thin_matte : int
        Frames of a sequence: thin parts of the previous alpha (antennae, strands), moved with
        the whole object (a similarity fitted to its flow), are left to the matting solve, this
        many pixels wider, without the temporal hold, where they lie beyond the unknown band
        of the coarse mask (which tends to drop them); 0 = off.
    """

    name = "classical"
    version = "4"  # 2: mirrored reference keypoints; 3: the reference's shape and matted alpha; 4: its strand share
    option_specs = {
        "working_size": Option("int", low=64, high=8192, help="longest side (px) at which flow and graph cut run"),
        "flow_weight": Option("float", low=0, high=100, help="weight of the carried alpha in the fusion"),
        "colour_weight": Option("float", low=0, high=100, help="weight of the colour log-odds in the fusion"),
        "smoothness": Option("float", low=0, high=1000, help="graph-cut pairwise weight"),
        "band": Option("float", low=0.001, high=0.5, help="unknown-band half-width / sqrt(object area)"),
        "temporal": Option("float", low=0, high=100, help="pull towards the previous alpha where nothing moved (0 = off)"),
        "adapt": Option("float", low=0, high=1, help="how fast the colour model follows the sequence"),
        "local_weight": Option("float", low=0, high=100, help="weight of the local colour log-odds"),
        "local_window": Option("float", low=0.001, high=1, help="local colour window / sqrt(object area)"),
        "margin": Option("float", low=0, high=10, help="distance beyond the carried object where growth is penalised"),
        "wide_band": Option("float", low=0, high=1, help="widest unknown band / sqrt(object area)"),
        "strand_share": Option("float", low=0, high=1, help="strand share at which the band reaches fully in"),
        "thin_relief": Option("float", low=0, high=1, help="factor on the smoothness around thin parts (1 = off)"),
        "max_growth": Option("float", low=0, high=1000, help="largest area growth per frame (0 = no limit)"),
        "solver_iterations": Option("int", low=1, high=100000, help="conjugate-gradient steps of the matting solve"),
        "solver_tolerance": Option("float", low=0, high=1, help="conjugate-gradient tolerance"),
        "reference_veto": Option("float", low=0, high=100, help="weight of the reference model's background evidence"),
        "redetect": Option("float", low=0, high=100, help="weight of the re-detection evidence (0 = off)"),
        "redetect_window": Option("float", low=0.001, high=1, help="re-detection window / sqrt(object area)"),
        "refiner": Option("str", choices=REFINERS, help="the matting stage"),
        "vitmatte": Option("path", help="ViTMatte folder or hub id (refiner='vitmatte')"),
        "keypoint_trust": Option("float", low=0, high=1, help="weight of the keypoint-placed reference alpha"),
        "min_inliers": Option("int", low=2, high=10000, help="fewest RANSAC inliers that make a transform"),
        "hue_tolerance": Option("float", low=0, high=180, help="hue tolerance in degrees (0 = off)"),
        "refit_rounds": Option("int", low=0, high=100, help="colour-model refits on untracked frames (0 = off)"),
        "still_tolerance": Option("float", low=0, high=255, help="grey-level change at which the temporal hold falls to 1/e (0 = no check)"),
        "thin_carry": Option("float", low=0, high=1, help="window carrying thin parts / sqrt(object area) (0 = off)"),
        "regrow": Option("float", low=0, high=100, help="growth allowed onto re-detected parts (0 = not)"),
        "motion": Option("float", low=0, high=100, help="weight of the motion cue (0 = off)"),
        "object_motion": Option("float", low=0, high=100, help="weight of 'moves with the object' next to it (0 = off)"),
        "reach_slack": Option("float", low=0, high=100, help="times the reference's reach kept around the body (0 = off)"),
        "compact_reach": Option("float", low=0, high=1, help="reach below which the object counts as compact (0 = off)"),
        "refill_holes": Option("float", low=0, high=1, help="share of a hole that was object to refill it (0 = off)"),
        "placed_soft": Option("int", low=0, high=1000, help="px widening of placed soft parts left to the solve (0 = off)"),
        "thin_matte": Option("int", low=0, high=1000, help="px widening of carried thin parts left to the solve (0 = off)"),
        "colour_match": Option("float", low=0.0, high=1.0, help="least colour similarity to the reference for a found object"),
        "search_when_lost": Option("bool", help="search the whole frame when the track is lost"),
        "background_memory": Option("float", low=0, high=100, help="weight of 'looks as the background seen there' (0 = off)"),
        "background_change": Option("float", low=0, high=100, help="weight of 'stands in front of the background seen there' (0 = off)"),
    }

    def __init__(
        self,
        *,
        working_size: int = 640,
        flow_weight: float = 1.5,
        colour_weight: float = 1.0,
        smoothness: float = 3.0,
        band: float = 0.012,
        temporal: float = 1.0,
        adapt: float = 0.3,
        local_weight: float = 1.0,
        local_window: float = 0.08,
        margin: float = 0.15,
        wide_band: float = 0.2,
        strand_share: float = 0.1,
        thin_relief: float = 0.3,
        max_growth: float = 1.25,
        solver_iterations: int = 120,
        solver_tolerance: float = 3e-3,
        reference_veto: float = 2.5,
        redetect: float = 5.0,
        redetect_window: float = 0.25,
        refiner: str = "closed-form",
        vitmatte: str = DEFAULT_VITMATTE,
        keypoint_trust: float = 1.0,
        min_inliers: int = 8,
        hue_tolerance: float = 60.0,
        refit_rounds: int = 3,
        still_tolerance: float = 4.0,
        thin_carry: float = 0.1,
        regrow: float = 1.0,
        motion: float = 8.0,
        object_motion: float = 4.0,
        reach_slack: float = 2.0,
        compact_reach: float = 0.05,
        refill_holes: float = 0.5,
        placed_soft: int = 1,
        thin_matte: int = 2,
        colour_match: float = 0.85,
        search_when_lost: bool = True,
        background_memory: float = 4.0,
        background_change: float = 2.0,
    ):
        self._params = dict(
            working_size=int(working_size),
            flow_weight=float(flow_weight),
            colour_weight=float(colour_weight),
            smoothness=float(smoothness),
            band=float(band),
            temporal=float(temporal),
            adapt=float(adapt),
            local_weight=float(local_weight),
            local_window=float(local_window),
            margin=float(margin),
            wide_band=float(wide_band),
            strand_share=float(strand_share),
            thin_relief=float(thin_relief),
            max_growth=float(max_growth),
            solver_iterations=int(solver_iterations),
            solver_tolerance=float(solver_tolerance),
            reference_veto=float(reference_veto),
            redetect=float(redetect),
            redetect_window=float(redetect_window),
            keypoint_trust=float(keypoint_trust),
            min_inliers=int(min_inliers),
            hue_tolerance=float(hue_tolerance),
            refit_rounds=int(refit_rounds),
            still_tolerance=float(still_tolerance),
            thin_carry=float(thin_carry),
            regrow=float(regrow),
            motion=float(motion),
            object_motion=float(object_motion),
            reach_slack=float(reach_slack),
            compact_reach=float(compact_reach),
            refill_holes=float(refill_holes),
            placed_soft=int(placed_soft),
            thin_matte=int(thin_matte),
            background_memory=float(background_memory),
            background_change=float(background_change),
        )
        self._search_when_lost = bool(search_when_lost)
        if not search_when_lost:  # only then in the signature
            self._params["search_when_lost"] = False
        if colour_match != 0.85:  # only then in the signature: default queries keep theirs
            self._params["colour_match"] = float(colour_match)
        self._colour_match = float(colour_match)
        self._refiner = None if refiner == "closed-form" else make_refiner(refiner, vitmatte=vitmatte)
        if self._refiner is not None:  # only then in the signature: default queries keep theirs
            self._params.update(refiner=refiner, vitmatte=str(vitmatte))
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._flow_forward = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
        self._sift = cv2.SIFT_create(nfeatures=1500)
        self._frames_matted = 0  # for returning freed memory every _TRIM_EVERY frames
        self._looks_ahead = helps()
        self._in_flight = None  # the last look-ahead started (see _cues_of)

    @classmethod
    def status(cls) -> EngineStatus:
        return EngineStatus(True, "nothing", "weights-free; runs on the CPU")

    @property
    def params(self) -> dict:
        return dict(self._params)

    # ------------------------------------------------------------------ reference
    def encode_reference(self, image: np.ndarray, prompt: Prompt) -> ReferenceQuery:
        self._settle()  # its SIFT object may be in use by a look-ahead
        value_range = intensity_range(image)
        rgb = to_rgb_float(image, value_range)
        if tuple(prompt.shape) != rgb.shape[:2]:
            raise InputError(f"prompt must have the shape of the reference image {rgb.shape[:2]}, got {tuple(prompt.shape)}")
        signature = reference_signature(image, prompt, engine=self.name, version=self.version, params=self.params)

        if prompt.kind == "alpha":
            alpha = shape = prompt.alpha.copy()
            mask = alpha > 0.5
            strand_share = float(fragmented_parts(mask).sum() / max(int(mask.sum()), 1))
        else:
            mask = prompt.alpha > 0.5 if prompt.kind == "mask" else self._segment_scribble(rgb, prompt)
            fragmented = fragmented_parts(mask)
            strand_share = float(fragmented.sum() / max(int(mask.sum()), 1))
            # the user's mask is the truth on the reference: the cues that find the object again
            # read it with a softened edge and no change of shape ...
            shape = self._matte_mask(rgb, mask, None, widen=False)
            # ... while the reference's own alpha reaches as far as its fur and strands do: the
            # band widens around the mask's fragmented parts, where a binary mask cannot be right
            alpha = self._matte_mask(rgb, mask, None, widen_near=fragmented, solved=shape, inner=self._inner_reach(strand_share))
        fg, bg = self._sure_regions(shape)
        model = fit_colour_model(lab_bins(rgb), fg, bg)
        if model is None:  # tiny or thin objects: fall back to the prompt itself
            model = fit_colour_model(lab_bins(rgb), prompt.alpha > 0.5, prompt.alpha <= 0.5)

        small = _resize(rgb, _working_size(rgb.shape, self._params["working_size"]))
        small_alpha = _resize(shape, small.shape[:2])
        gray = _gray_u8(small)
        points, descriptors = object_keypoints(self._sift, gray, small_alpha)
        # objects face either way in a collection; SIFT is not mirror-invariant
        mirrored_points, mirrored_descriptors = object_keypoints(self._sift, gray, small_alpha, mirrored=True)

        arrays = {
            "alpha": alpha.astype(np.float32),
            "shape": shape.astype(np.float32),
            "colour_fg": model.foreground,
            "colour_bg": model.background,
            "keypoints": points,
            "descriptors": descriptors.astype(np.float32),
            "keypoints_mirrored": mirrored_points,
            "descriptors_mirrored": mirrored_descriptors,
            "image": rgb.astype(np.float32),
        }
        core = shape > 0.5
        meta = {
            "value_range": list(value_range),
            "shape": list(alpha.shape),
            "prompt_kind": prompt.kind,
            "area_fraction": float(core.mean()),
            "touches_border": bool(core[0].any() or core[-1].any() or core[:, 0].any() or core[:, -1].any()),
            # how much of the object is strands: how far into it the frames' unknown band may widen
            "strand_share": strand_share,
        }
        return ReferenceQuery(signature=signature, arrays=arrays, meta=meta)

    def reference_matte(self, query: ReferenceQuery):
        rgb = query.arrays["image"]
        alpha = query.arrays["alpha"]
        small = _resize(rgb, _working_size(rgb.shape, self._params["working_size"]))
        # the sequence starts from the user's shape; the matting prior from the matted alpha
        mask = _resize((query.arrays["shape"] > 0.5).astype(np.float32), small.shape[:2])
        lab = _lab(small)
        background = None
        if self._params["background_memory"] > 0:
            # the user's mask is the truth here: the background is remembered up to its matting band
            # (on later frames only beyond 0.1 sqrt(area), since the cut may have missed a part there)
            background = remember(lab, mask, margin=self._params["band"])
        track = _Track(gray=_gray_u8(small), lab=lab, mask=mask, alpha=alpha, model=self._model(query), background=background)
        return FrameMatte(alpha=alpha.copy(), coarse=query.arrays["shape"] > 0.5, confidence=1.0), track

    # ------------------------------------------------------------------ frames
    def matte_frame(self, frame, query, *, state=None, with_foreground=False, upcoming=None):
        """See :class:`~napari_iconmat.core.engine.Engine`; ``upcoming``, the sequence's next frame when known,
        has its flow and colour cues computed on a second thread while this frame is matted (same result)."""
        p = self._params
        cues = self._cues_of(frame, query, state)
        cut = self._cut(cues, query, state)
        misses, wait = 0, 0  # searches in a row that found nothing better; frames to the next one
        if cut.neighbour and self._search_when_lost and cut.colour < 0.5:
            # the tracked matte's colours are unlike the reference object's: the track may have slipped
            # onto something else (an occluder, look-alike background). Search the whole frame as in a
            # collection image; a find verified against the reference takes over the track ...
            misses, wait = state.search_misses, state.search_wait
            if wait > 0:
                wait -= 1
            else:
                search = self._cut(cues.alone(), query, None)
                # ... and lies mostly elsewhere: a find on the track is the tracked object, its looks changed
                elsewhere = (search.mask & cut.mask).sum() < 0.5 * search.mask.sum()
                if search.confidence >= 0.5 and elsewhere:
                    cut, misses, wait = search, 0, 0
                else:
                    # a search costs as much as the frame: while the track stays unlike the reference
                    # and searches find nothing, search its first 3 frames, then every 2nd, 3rd, 5th,
                    # 9th frame, then every 9th
                    misses += 1
                    wait = min(2 ** (misses - 3), 8) if misses >= 3 else 0
        rgb, lab, mask_small, log_odds, neighbour = cues.rgb, cues.lab, cut.mask, cut.log_odds, cut.neighbour
        full_hw, small_hw = rgb.shape[:2], cues.small.shape[:2]

        carried_full = confidence_full = thin_carried = None
        if neighbour:
            carried_full, confidence_full = self._carry_full(state.alpha, cues.flow, cues.held, full_hw)
            if p["thin_matte"] > 0 and cues.object_moved is not None:
                thin_carried = carry_thin_alpha(state.alpha, cues.object_moved, small_hw, grow=p["thin_matte"])
        coarse = _resize(mask_small.astype(np.float32), full_hw, cv2.INTER_LINEAR) > 0.5
        uncertainty = _resize((1.0 - np.tanh(np.abs(log_odds) / 4.0)).astype(np.float32), full_hw, cv2.INTER_LINEAR)

        background = None
        if p["background_memory"] > 0:
            background = remember(lab, mask_small, cues.recalled)
        if upcoming is not None and self._looks_ahead:
            # the next frame's cues need this frame's coarse mask only, not its alpha: compute them meanwhile
            previous = _Previous(cues.gray, lab, mask_small.astype(np.float32), full_hw, background)
            ahead = (upcoming, ahead_of_caller(self._cues, upcoming, query, previous))
            self._in_flight = ahead[1]
        else:
            ahead = None

        unknown = None
        if thin_carried is not None and thin_carried[1].any():
            unknown, carried_full, confidence_full = self._thin_unknown(coarse, *thin_carried, carried_full, confidence_full)
        if not neighbour and cut.carried is not None and p["placed_soft"] > 0:
            unknown, carried_full = self._placed_soft(query, cut.transform, small_hw, coarse)
        if coarse.any():
            alpha = self._matte_mask(rgb, coarse, uncertainty, guess=carried_full, confidence=confidence_full, unknown=unknown, inner=self._inner_reach(query.meta.get("strand_share")))
        else:
            alpha = np.zeros(full_hw, np.float32)
        foreground = estimate_foreground(rgb, alpha) if with_foreground else None

        new_model = self._adapt(query, cut.model, cues.bins, _resize(alpha, small_hw))
        self._frames_matted += 1
        if self._frames_matted % _TRIM_EVERY == 0:
            release_free_memory()
        track = _Track(cues.gray, lab, mask_small.astype(np.float32), alpha, new_model, background, ahead, misses, wait)
        return FrameMatte(alpha=alpha, coarse=coarse, foreground=foreground, confidence=cut.confidence), track

    def _cut(self, cues: _Cues, query: ReferenceQuery, state) -> _Cut:
        """The frame's coarse object mask at working size: every cue's log-odds, a graph cut, and the
        cleanup of its result; on a sequence (``cues.neighbour``) tracked from ``state``, else searched
        for in the whole frame as in a collection image."""
        p = self._params
        small, gray, bins = cues.small, cues.gray, cues.bins
        small_hw, neighbour = small.shape[:2], cues.neighbour
        model = state.model if neighbour else self._model(query).with_scene(bins)

        transform = None
        if neighbour:
            carried, confidence, local = cues.carried, cues.confidence, cues.local
        else:
            carried, confidence, transform = self._carry_by_keypoints(query, gray, small_hw)
            local = None
            if carried is None and p["hue_tolerance"] > 0:
                # nothing of the reference instance found: maybe a same-category variant in another hue
                fg = hue_tolerant(query.arrays["colour_fg"], p["hue_tolerance"])
                model = ColourModel(fg, query.arrays["colour_bg"]).with_scene(bins)

        log_odds = p["colour_weight"] * model.log_odds(bins)
        found, reference_colour, camera, follows = cues.found, cues.reference_colour, cues.camera, cues.follows
        if neighbour and p["reference_veto"] > 0:
            # the adapted model can learn a leak; colours the reference calls background cannot
            veto = p["reference_veto"] * np.minimum(reference_colour, 0.0)
            # ... but a leak is growth: where the flow confidently carries the object, trust the flow
            # (object parts the reference saw in background colours: eyes, windows, lit fur)
            trusted = confidence * np.clip(carried, 0.0, 1.0)
            if found is not None:  # ... and where reference parts found again say object
                trusted = np.maximum(trusted, np.clip(found, 0.0, 1.0))
            if follows is not None:  # ... and where a part moves with the object (one the reference did not show)
                trusted = np.maximum(trusted, follows)
            if cues.changed is not None:  # ... and where something next to it stands in front of the seen background
                trusted = np.maximum(trusted, cues.changed)
            log_odds += veto * (1.0 - trusted)
        if local is not None:
            log_odds = log_odds + p["local_weight"] * local
        if found is not None:
            log_odds = log_odds + p["redetect"] * found
        if camera is not None and p["motion"] > 0:  # what moves with the camera is background
            moves = cues.moves
            if moves is not None:
                log_odds += p["motion"] * background_motion(moves, np.maximum(reference_colour, local), carried)
        if follows is not None:
            log_odds += p["object_motion"] * follows
        if cues.plain_background is not None:  # looks as the background seen at that place before
            log_odds = log_odds - p["background_memory"] * cues.plain_background
        if cues.changed is not None:  # ... and in front of it, next to the object: a part of the object
            log_odds = log_odds + p["background_change"] * cues.changed
        if carried is not None:
            log_odds = log_odds + p["flow_weight"] * confidence * _logit(carried)
            log_odds -= self._distance_penalty(carried, p["margin"])
        smoothness = p["smoothness"]
        if carried is not None and p["thin_relief"] < 1:
            smoothness = smoothness * thin_relief(carried > 0.5, p["thin_relief"])
        mask_small = graph_cut(small, log_odds, smoothness)
        # evidence other than colour (the carried alpha), for refitting the colour model below
        other = None if neighbour else log_odds - p["colour_weight"] * model.log_odds(bins)
        if not neighbour:
            # no temporal anchor: a region far larger than the reference object is mostly
            # look-alike background, so demand stronger evidence until the size is plausible
            limit = 3.0 * query.meta["area_fraction"] * mask_small.size
        else:
            # sudden growth is a leak, unless onto reference parts found again
            limit = _growth_limit(carried, found, p["max_growth"], p["regrow"])
        if p["max_growth"] > 0:
            for _ in range(6):
                if mask_small.sum() <= limit:
                    break
                log_odds = log_odds - 1.0 * (carried < 0.5 if carried is not None else 1.0)
                mask_small = graph_cut(small, log_odds, smoothness)
        support = (carried > 0.5) if carried is not None else (log_odds > 0)
        if mask_small.any():
            # without a temporal neighbour, stray look-alike blobs are common: keep dominant components only
            if neighbour:
                mask_small = keep_supported(mask_small, support | (support.sum() == 0))
                if p["refill_holes"] > 0:
                    mask_small = refill_holes(mask_small, carried > 0.5, p["refill_holes"])
                if p["compact_reach"] > 0 and p["reach_slack"] > 0:
                    mask_small = self._bound_compact(query, mask_small, log_odds)
            else:
                mask_small = select_object(mask_small, log_odds, query.meta["area_fraction"], query.meta["touches_border"])
                if carried is None and p["refit_rounds"] > 0:
                    mask_small, log_odds = self._refit(query, small, bins, mask_small, model, other, smoothness, log_odds)
                if carried is None and p["reach_slack"] > 0:
                    mask_small = self._bound_to_body(query, mask_small, log_odds)
        confidence_score, colour = self._confidence(query, bins, mask_small, neighbour, state, transform, confidence if neighbour else None, carried)
        if not neighbour and transform is None and self._colour_match > 0 and confidence_score < 0.5:
            # nothing placed by keypoints and colours unlike the reference's: the object is not in this image
            mask_small = np.zeros_like(mask_small)
            confidence_score = colour = 0.0
        return _Cut(mask_small, log_odds, confidence_score, colour, model, neighbour, carried, transform)

    def _cues_of(self, frame, query, state) -> _Cues:
        """The frame's cues: computed ahead if ``state`` says so (for this very frame), else here."""
        self._settle()
        ahead = state.ahead if isinstance(state, _Track) else None
        if ahead is not None and ahead[0] is frame:
            return ahead[1].result()
        previous = None if state is None else _Previous(state.gray, state.lab, state.mask, state.alpha.shape, state.background)
        return self._cues(frame, query, previous)

    def _settle(self) -> None:
        """Wait for the look-ahead in flight (this chain's or another's): it may use the flow and SIFT objects."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            wait([in_flight])

    def _cues(self, frame, query, previous: _Previous | None) -> _Cues:
        """Everything a frame's segmentation reads besides the colour model and the previous alpha.

        From the frame alone and, on a sequence, the previous frame's gray, Lab and coarse mask:
        the flow carry, local colours, redetection, the camera and motion cues.
        """
        p = self._params
        rgb = to_rgb_float(frame, tuple(query.meta["value_range"]))
        full_hw = rgb.shape[:2]
        small_hw = _working_size(full_hw, p["working_size"])
        small = _resize(rgb, small_hw)
        gray = _gray_u8(small)
        cues = _Cues(rgb=rgb, small=small, gray=gray, bins=lab_bins(small), lab=_lab(small))
        # a temporal neighbour of another size (collections read as sequences) is no neighbour;
        # nor is one in a frame too thin for optical flow (DIS needs 12 px each way)
        neighbour = previous is not None and previous.gray.shape == gray.shape and previous.full_hw == full_hw
        neighbour = neighbour and min(gray.shape) >= _MIN_FLOW_SIDE
        if neighbour and self._search_when_lost and not (previous.mask > 0.5).any():
            # the track is lost (nothing carried from the previous frame): search the whole frame
            # as for a collection image, and resume from a find that is verified against the reference
            neighbour = False
        if not neighbour:
            return cues
        cues.neighbour = True
        carried, confidence, flow = self._carry_by_flow(previous, gray)
        carried, confidence = carry_thin_parts(previous.mask, previous.gray, gray, flow, carried, confidence, p["thin_carry"])
        cues.carried, cues.confidence, cues.flow = carried, confidence, flow
        cues.local = _local_colour_log_odds(previous, flow, cues.lab, carried, p["local_window"])
        redetection = None
        if p["redetect"] > 0 and helps():  # SIFT on the helper thread while the motion cues are computed here
            redetection = beside(self._redetect, query, gray, carried)
        # the matting prior holds only what verifiably did not change (see core/temporal.py)
        cues.held = confidence * unchanged(gray, previous.gray, p["still_tolerance"])
        if p["thin_matte"] > 0 or p["object_motion"] > 0:
            cues.object_moved = object_motion(carried, confidence, flow)
        # what the reference alone says of each colour (the veto and the motion cue read it)
        cues.reference_colour = self._model(query).log_odds(cues.bins)
        # the camera's motion, fitted to the background's flow (both motion cues read it)
        homography = None
        if p["background_memory"] > 0 or p["motion"] > 0 or p["object_motion"] > 0:
            homography = fit_camera(flow, carried, confidence)
        if p["background_memory"] > 0 and previous.background is not None:
            cues.recalled = recall(previous.background, homography)
            if cues.recalled is not None:
                cues.plain_background = background_match(cues.lab, cues.recalled)
                if p["background_change"] > 0:
                    cues.changed = background_change(cues.lab, cues.recalled, carried)
        if homography is not None and (p["motion"] > 0 or p["object_motion"] > 0):
            cues.camera = camera_residual(flow, carried, confidence, homography=homography)
        if cues.camera is not None and p["object_motion"] > 0:  # how surely each pixel next to the object moves with it
            cues.follows = moves_with_object(flow, carried, confidence, cues.object_moved, gray, camera=cues.camera)
        if cues.camera is not None and p["motion"] > 0:
            cues.moves = motion_evidence(flow, carried, confidence, camera=cues.camera)
        if redetection is not None:
            cues.found = redetection.result()
        elif p["redetect"] > 0:
            cues.found = self._redetect(query, gray, carried)
        return cues

    def _confidence(self, query, bins, mask_small, neighbour, state, transform, flow_check, carried) -> tuple[float, float]:
        """The frame's confidence in [0, 1] (:mod:`~napari_iconmat.core.engines.classical.confidence`): the
        weakest of the colour cue and, on a sequence, the flow and size cues, or, placed by keypoints, the
        keypoint cue (which then outweighs colour: the reference's own parts were found); and the colour cue."""
        if not mask_small.any():
            return 0.0, 0.0
        colour = colour_confidence(colour_similarity(bins, mask_small, self._reference_colours(query)), self._colour_match)
        if not neighbour:
            return (max(colour, keypoint_confidence(transform.inliers)) if transform is not None else colour), colour
        cues = [colour, flow_confidence(flow_check, carried)]
        previous_area = float((state.mask > 0.5).sum())
        cues.append(size_confidence(float(mask_small.sum()), previous_area))
        return float(min(cues)), colour

    # ------------------------------------------------------------------ resumable runs
    _STATE_FIELDS = {"gray": 2, "lab": 3, "mask": 2, "alpha": 2, "colour_fg": 3, "colour_bg": 3}

    def save_state(self, state):
        if not isinstance(state, _Track):
            return None
        arrays = {
            "gray": state.gray, "lab": state.lab, "mask": state.mask, "alpha": state.alpha,
            "colour_fg": state.model.foreground, "colour_bg": state.model.background,
        }  # fmt: skip
        if state.background is not None:
            arrays.update(background_lab=state.background.lab, background_seen=state.background.seen)
        arrays["search"] = np.array([state.search_misses, state.search_wait], np.int32)
        return arrays

    def load_state(self, arrays):
        for name, ndim in self._STATE_FIELDS.items():
            if name not in arrays or np.asarray(arrays[name]).ndim != ndim:
                raise ValueError(f"track state lacks a {ndim}-D array {name!r}")
        model = ColourModel(arrays["colour_fg"], arrays["colour_bg"])
        background = None
        if "background_lab" in arrays and "background_seen" in arrays:  # states saved before it have none
            background = BackgroundMemory(np.asarray(arrays["background_lab"], np.float32), np.asarray(arrays["background_seen"], np.float32))
        elif self._params["background_memory"] > 0:
            background = remember(np.asarray(arrays["lab"], np.float32), np.asarray(arrays["mask"]))
        misses, wait = (int(v) for v in np.asarray(arrays.get("search", (0, 0))).reshape(-1)[:2])  # older states: none
        return _Track(arrays["gray"], arrays["lab"], arrays["mask"], arrays["alpha"], model, background, None, misses, wait)

    # ------------------------------------------------------------------ pieces
    def _reference_shape_small(self, query: ReferenceQuery) -> np.ndarray:
        """The reference's shape (the user's mask, edge softened) at working size, (h, w) float32."""
        alpha = query.arrays["shape"]
        return _resize(alpha, _working_size(alpha.shape, self._params["working_size"]))

    def _model(self, query: ReferenceQuery) -> ColourModel:
        return ColourModel(query.arrays["colour_fg"], query.arrays["colour_bg"])

    @staticmethod
    def _sure_regions(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask = (alpha > 0.5).astype(np.uint8)
        r = max(1, band_width(mask, fraction=0.01, minimum=1, maximum=6))
        kernel = np.ones((2 * r + 1, 2 * r + 1), np.uint8)
        fg = cv2.erode(mask, kernel) > 0
        bg = cv2.dilate(mask, kernel) == 0
        if fg.sum() < 16:
            fg = alpha > 0.5
        return fg, bg

    def _adapt(self, query, model: ColourModel, bins: np.ndarray, alpha_small: np.ndarray) -> ColourModel:
        rate = self._params["adapt"]
        if rate <= 0:
            return model
        fg, bg = self._sure_regions(alpha_small)
        # background near the object matters most: sample it within a few object radii
        radius = int(2 * np.sqrt(max(fg.sum(), 1)))
        near = cv2.dilate((alpha_small > 0.5).astype(np.uint8), np.ones((3, 3), np.uint8), iterations=max(1, radius // 2)) > 0
        current = fit_colour_model(bins, fg, bg & near)
        if current is None:
            return model
        reference = self._model(query)
        # stay anchored to the reference: at most half of the model is learned along the way
        adapted = model.blend(current, rate)
        return reference.blend(adapted, 0.5)

    def _carry_by_flow(self, state: _Previous, gray: np.ndarray):
        h, w = gray.shape
        # the two flows are independent: the forward one on the helper thread (its own DIS instance)
        forward = beside(self._flow_forward.calc, state.gray, gray, None) if helps() else None
        backward = self._flow.calc(gray, state.gray, None)  # for each pixel now: where it was before
        # for each pixel before: where it went
        forward = forward.result() if forward is not None else self._flow_forward.calc(state.gray, gray, None)
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x, map_y = grid_x + backward[..., 0], grid_y + backward[..., 1]
        carried = cv2.remap(state.mask, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        warped = cv2.remap(state.gray, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        error = cv2.GaussianBlur(np.abs(gray.astype(np.float32) - warped.astype(np.float32)), (0, 0), 2.0)
        # forward-backward check: disoccluded pixels (revealed behind a moving object) fail it
        round_trip = cv2.remap(forward, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE) + backward
        mismatch = np.hypot(round_trip[..., 0], round_trip[..., 1])
        motion = np.hypot(backward[..., 0], backward[..., 1])
        consistent = np.exp(-(mismatch**2) / (0.5 + 0.05 * motion**2))
        confidence = (np.exp(-((error / 20.0) ** 2)) * consistent).astype(np.float32)
        confidence = cv2.GaussianBlur(confidence, (0, 0), 1.5)
        return carried, confidence, backward

    @staticmethod
    def _carry_full(prev_alpha: np.ndarray, flow: np.ndarray, confidence: np.ndarray, full_hw):
        h, w = full_hw
        scale_y, scale_x = h / flow.shape[0], w / flow.shape[1]
        flow_full = _resize(flow, full_hw, cv2.INTER_LINEAR)
        grid_x, grid_y = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        carried = cv2.remap(
            prev_alpha,
            grid_x + flow_full[..., 0] * scale_x,
            grid_y + flow_full[..., 1] * scale_y,
            cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_REPLICATE,
        )
        # "nothing moved here": little motion and a flow that explains the image
        still = np.exp(-np.hypot(flow_full[..., 0] * scale_x, flow_full[..., 1] * scale_y) ** 2 / 0.5)
        return carried, (_resize(confidence, full_hw, cv2.INTER_LINEAR) * still).astype(np.float32)

    def _carry_by_keypoints(self, query: ReferenceQuery, gray: np.ndarray, small_hw):
        sets = [(query.arrays["keypoints"], query.arrays["descriptors"], False)]
        sets.append((query.arrays["keypoints_mirrored"], query.arrays["descriptors_mirrored"], True))
        transform = fit_reference_transform(self._sift, gray, sets, min_inliers=self._params["min_inliers"])
        if transform is None:
            return None, None, None
        ref_alpha = self._reference_shape_small(query)
        carried = transform.warp(ref_alpha, small_hw)
        trust = min(1.0, transform.inliers / 30.0) * self._params["keypoint_trust"]
        return carried, np.full(small_hw, trust, np.float32), transform

    def _refit(self, query, small, bins, mask, model, other, smoothness, log_odds):
        """Collection image without a keypoint transform: GrabCut-style refits of the colour model
        on the image's own cut (:func:`~napari_iconmat.core.engines.classical.refit.refit_segmentation`), then the
        cut's holes filled if the reference object has none. Returns the mask and its log-odds."""
        p = self._params
        mask, refit_odds = refit_segmentation(
            small, bins, mask, model, other, colour_weight=p["colour_weight"], smoothness=smoothness,
            area_fraction=query.meta["area_fraction"], touches_border=query.meta["touches_border"], rounds=p["refit_rounds"],
        )  # fmt: skip
        ref_mask = self._reference_shape_small(query) > 0.5
        return fill_holes_like(mask, ref_mask), (log_odds if refit_odds is None else refit_odds)

    def _thin_unknown(self, coarse, thin_alpha, region, carried_full, confidence_full):
        """Where the thin parts carried by the object's motion are left to the matting solve:
        beyond 3x the unknown band of the coarse mask (closer, the band and its widening see
        to them). There the solve starts from them, and the temporal hold is dropped: it would
        keep the ghost the dense flow left behind. Returns the (H, W) bool region, the solve's
        starting alpha and the hold's weight."""
        width = band_width(coarse, fraction=self._params["band"])
        beyond = cv2.distanceTransform((~coarse).astype(np.uint8), cv2.DIST_L2, 3) > 3 * width
        region = region & beyond
        on = region & (thin_alpha > 0.1)
        guess = np.where(on, thin_alpha, carried_full).astype(np.float32)
        return region, guess, np.where(on, 0.0, confidence_full).astype(np.float32)

    def _placed_soft(self, query, transform, small_hw, coarse):
        """Frames placed by a keypoint transform: the soft parts of the reference alpha placed at full
        size (0.05 < alpha < 0.95: edges, strands, antennae, translucent parts), ``placed_soft`` px
        wider, as an (H, W) bool region left to the matting solve, and the solve's starting alpha
        (the placed alpha there, the blurred coarse mask elsewhere). Started there, the solve keeps
        a translucent part that, started from the coarse mask, it would fill with the colours
        around it."""
        ref_alpha = query.arrays["alpha"]
        ref_working = _working_size(ref_alpha.shape, self._params["working_size"])
        placed = transform.warp_full(ref_alpha, ref_working, small_hw, coarse.shape)
        r = self._params["placed_soft"]
        soft = ((placed > 0.05) & (placed < 0.95)).astype(np.uint8)
        soft = cv2.dilate(soft, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))) > 0
        return soft, np.where(soft, placed, self._start_from_mask(coarse)).astype(np.float32)

    def _start_from_mask(self, mask: np.ndarray) -> np.ndarray:
        """The matting solve's default starting alpha: the mask blurred over half the band width."""
        width = band_width(mask, fraction=self._params["band"])
        return cv2.GaussianBlur(mask.astype(np.float32), (0, 0), max(1.0, width / 2))

    def _bound_to_body(self, query, mask, log_odds):
        """Collection image without a keypoint transform: look-alikes joined to the object through
        thin structures cut away (:func:`~napari_iconmat.core.engines.classical.segmentation.bound_to_core`), the
        thin structures reaching as far beyond the body as the reference's do."""
        return bound_to_core(mask, log_odds, self._thin_reach(query), slack=self._params["reach_slack"])

    def _reference_colours(self, query: ReferenceQuery) -> np.ndarray:
        """Colour histogram of the reference's whole object at working size, computed once per reference:
        the frames' mattes are compared with it measured the same way (edges included, not just the sure
        inside the colour model reads)."""
        if getattr(self, "_reference_colours_of", (None,))[0] != query.signature:
            rgb = query.arrays["image"]
            small = _resize(rgb, _working_size(rgb.shape, self._params["working_size"]))
            mask = self._reference_shape_small(query) > 0.5
            model = fit_colour_model(lab_bins(small), mask, ~mask) if mask.any() and not mask.all() else None
            self._reference_colours_of = (query.signature, query.arrays["colour_fg"] if model is None else model.foreground)
        return self._reference_colours_of[1]

    def _thin_reach(self, query: ReferenceQuery) -> float:
        """:func:`~napari_iconmat.core.engines.classical.segmentation.thin_reach` of the reference's shape at working size,
        computed once per reference."""
        if getattr(self, "_thin_reach_of", (None,))[0] != query.signature:
            self._thin_reach_of = (query.signature, thin_reach(self._reference_shape_small(query) > 0.5))
        return self._thin_reach_of[1]

    def _bound_compact(self, query, mask, log_odds):
        """Tracked frame of a compact object (the reference's thin parts reach less than
        ``compact_reach``): what lies farther from its body than ``reach_slack`` x ``compact_reach``
        x sqrt(area) is a leak crept along background of its colours (a kerb, a road line): cut away."""
        limit = self._params["compact_reach"]
        if not self._thin_reach(query) < limit:
            return mask
        # the limit, not the reach itself (near 0 on a smooth mask), bounds how far parts may stick out
        return bound_to_core(mask, log_odds, limit, slack=self._params["reach_slack"], drop_look_alikes=False)

    def _redetect(self, query: ReferenceQuery, gray: np.ndarray, carried: np.ndarray):
        """Evidence (-1..1, working size) from the reference's object parts found again in the frame.

        SIFT matches between the reference's object keypoints and the frame say where
        reference parts are now. Each match pastes the reference alpha around its
        reference point (scaled by the object's size change) around its frame point,
        Gaussian-weighted; the votes say object where the reference had object next to
        that part and background where it had background. Matches far from where the
        flow carries the object are dropped (look-alike background). None without matches.
        """
        inside = (carried > 0.5).astype(np.uint8)
        area = float(inside.sum())
        if area < 16:
            return None
        h, w = gray.shape
        distance = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
        reach = max(6.0, self._params["margin"] * np.sqrt(area))
        # only matches within reach of the carried object count: detect there alone (SIFT costs
        # in proportion to the pixels it reads), with a margin for the descriptors' support
        rows, cols = np.nonzero(distance <= reach)
        pad = _SIFT_PAD
        y0, y1 = max(int(rows.min()) - pad, 0), min(int(rows.max()) + pad + 1, h)
        x0, x1 = max(int(cols.min()) - pad, 0), min(int(cols.max()) + pad + 1, w)
        ref_matched, frame_matched = match_reference(self._sift, gray[y0:y1, x0:x1], query.arrays["keypoints"], query.arrays["descriptors"])
        if not len(ref_matched):
            return None
        frame_matched = frame_matched + np.array([x0, y0], np.float32)
        ref_alpha = self._reference_shape_small(query)
        ref_area = max(float((ref_alpha > 0.5).sum()), 16.0)
        scale = float(np.clip(np.sqrt(area / ref_area), 0.5, 2.0))
        radius = max(4, int(round(self._params["redetect_window"] * np.sqrt(area))))
        size = 2 * radius + 1
        offsets = np.arange(size, dtype=np.float32) - radius
        sigma = radius / 2.0
        window = np.exp(-(offsets[None, :] ** 2 + offsets[:, None] ** 2) / (2 * sigma**2)).astype(np.float32)
        votes_fg = np.zeros((h + 2 * radius, w + 2 * radius), np.float32)
        votes_bg = np.zeros_like(votes_fg)
        for (rx, ry), (cx, cy) in zip(ref_matched, frame_matched):
            ix, iy = int(round(cx)), int(round(cy))
            if not (0 <= ix < w and 0 <= iy < h) or distance[iy, ix] > reach:
                continue
            # window pixel (u, v) <- reference pixel ((u - radius) / scale + rx, ...)
            to_ref = np.array([[1 / scale, 0, rx - radius / scale], [0, 1 / scale, ry - radius / scale]], np.float32)
            patch = cv2.warpAffine(ref_alpha, to_ref, (size, size), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REPLICATE)
            votes_fg[iy : iy + size, ix : ix + size] += window * patch
            votes_bg[iy : iy + size, ix : ix + size] += window * (1.0 - patch)
        votes_fg = votes_fg[radius : radius + h, radius : radius + w]
        votes_bg = votes_bg[radius : radius + h, radius : radius + w]
        total = votes_fg + votes_bg
        if not total.any():
            return None
        return ((votes_fg - votes_bg) / (total + 1e-6) * np.minimum(1.0, total)).astype(np.float32)

    @staticmethod
    def _distance_penalty(carried: np.ndarray, margin_fraction: float) -> np.ndarray:
        """Log-odds penalty growing with the distance from where the object was carried to."""
        inside = (carried > 0.5).astype(np.uint8)
        if not inside.any():
            return np.zeros_like(carried)
        distance = cv2.distanceTransform(1 - inside, cv2.DIST_L2, 3)
        margin = max(6.0, margin_fraction * np.sqrt(inside.sum()))
        return ((distance / margin) ** 2).astype(np.float32)

    def _segment_scribble(self, rgb: np.ndarray, prompt: Prompt) -> np.ndarray:
        """GrabCut-style: colour models from the strokes, cut, refit on the cut, cut again."""
        bins = lab_bins(rgb)
        model = fit_colour_model(bins, prompt.foreground, prompt.background)
        if model is None:
            raise InputError("a scribble prompt needs both foreground (1) and background (2) strokes")
        mask = prompt.foreground
        for _ in range(4):
            log_odds = model.log_odds(bins, novelty=0.0)
            log_odds[prompt.foreground] = 50.0
            log_odds[prompt.background] = -50.0
            new_mask = keep_supported(graph_cut(rgb, log_odds, self._params["smoothness"]), prompt.foreground)
            if np.array_equal(new_mask, mask):
                break
            mask = new_mask
            refit = fit_colour_model(bins, mask, ~mask)
            if refit is None:
                break
            # the strokes stay in the model: they are the only certain labels
            model = refit.blend(fit_colour_model(bins, prompt.foreground, prompt.background), 0.5)
        return mask

    def _inner_reach(self, strand_share: float | None) -> float:
        """How far into the object the widened band reaches, as a share (0..1) of how far out."""
        if self._params["strand_share"] <= 0 or strand_share is None:
            return 1.0
        return min(1.0, float(strand_share) / self._params["strand_share"])

    def _matte_mask(self, rgb, mask, uncertainty, *, guess=None, confidence=None, widen=True, unknown=None, widen_near=None, solved=None, inner=1.0) -> np.ndarray:
        """Alpha (H, W) of a coarse mask: solved on its unknown band (or ``solved``, that solve done
        already), then on a band widened where the alpha has not settled (``widen``; only within
        ``wide`` px of ``widen_near`` when given; inwards ``inner`` x as far, at least 2 band widths)."""
        width = band_width(mask, fraction=self._params["band"])
        wide = max(3 * width, band_width(mask, fraction=self._params["wide_band"], maximum=32))
        trimap = trimap_from_mask(mask, width=width, uncertainty=uncertainty, wide_width=3 * width)
        if unknown is not None:
            trimap[unknown] = 0.5
        prior = prior_weight = None
        if guess is not None and confidence is not None and self._params["temporal"] > 0:
            prior, prior_weight = guess, self._params["temporal"] * confidence
        if guess is None:
            guess = self._start_from_mask(mask)
        budget = dict(max_iterations=self._params["solver_iterations"], tolerance=self._params["solver_tolerance"])
        solve = solve_alpha if self._refiner is None else self._refiner.refine
        alpha = solve(rgb, trimap, guess=guess, prior=prior, prior_weight=prior_weight, **budget) if solved is None else solved
        # Hair, fur and blur reach beyond a narrow band: where the solved alpha has not
        # settled to 0 (or 1) at the band's edge, widen the band there and solve again.
        inward = wide if inner >= 1 else int(round(max(2 * width, inner * wide)))
        grown = _widen_where_unsettled(trimap, alpha, mask, wide, inner=inward) if widen else None
        if grown is not None and widen_near is not None:
            far = ~within(widen_near, wide)
            grown[far] = trimap[far]
        if grown is not None:
            alpha = solve(rgb, grown, guess=alpha, prior=prior, prior_weight=prior_weight, **budget)
        return alpha


def _widen_where_unsettled(trimap: np.ndarray, alpha: np.ndarray, mask: np.ndarray, wide: int, inner: int):
    """A wider trimap around band-edge pixels whose alpha is still far from 0 or 1, or None."""
    unknown = (trimap > 0) & (trimap < 1)
    kernel = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(unknown.astype(np.uint8), kernel) > 0
    reach_out = cv2.dilate(np.where(unknown, alpha, 0).astype(np.float32), kernel)
    reach_in = cv2.erode(np.where(unknown, alpha, 1).astype(np.float32), kernel)
    seeds = edge & (((trimap == 0) & (reach_out > UNSETTLED)) | ((trimap == 1) & (reach_in < 1 - UNSETTLED)))
    if seeds.sum() < 4:
        return None
    near = within(seeds, wide)
    mask_u8 = mask.astype(np.uint8)
    distance = np.where(mask, cv2.distanceTransform(mask_u8, cv2.DIST_L2, 3), cv2.distanceTransform(1 - mask_u8, cv2.DIST_L2, 3))
    grown = trimap.copy()
    # outwards up to `wide`; inwards less, so the object keeps a solid core
    grown[near & (distance <= np.where(mask, inner, wide))] = 0.5
    return grown
