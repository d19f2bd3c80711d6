"""Synthetic in-context matting data with exact alpha.

Every image is a composite ``I = alpha * F + (1 - alpha) * B`` made here, so its
matte ``alpha`` and foreground colours ``F`` are known exactly. The object is a
procedurally drawn "creature": an opaque textured body, fur strands radiating
from part of its outline, a translucent fin (alpha about 0.3 to 0.6), and two
antennae 1 to 2 px wide. It is drawn once per seed (or per variant) at 4x
supersampling and box-filtered down, so strands and edges get fractional alpha;
each frame then scales, rotates and places it over a real photograph bundled
with scikit-image (no download).

The module reads top to bottom: photographs, creature construction, per-frame
placement, the video and collection sequences, and the writers.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Iterator, NamedTuple

import cv2
import numpy as np

from ..errors import InputError
from ..io.writers import atomic_write_bytes

__all__ = ["SynthFrame", "synth_video", "synth_collection", "write_synth", "SYNTH_KINDS", "REFERENCE_FRAME"]

SYNTH_KINDS = ("video", "collection")
REFERENCE_FRAME = 0  # the frame the user marks; it is never blurred or occluded
_DEFAULTS = {"video": (40, (640, 360)), "collection": (12, (512, 384))}
_SUPERSAMPLE = 4
_SPAN = 0.7  # side of the creature's canvas at scale 1, as a fraction of the frame's shorter side
_SNAP = 1e-5  # alpha this close to 0 or 1 is set to exactly 0 or 1


class SynthFrame(NamedTuple):
    """One synthetic frame and its ground truth.

    Attributes
    ----------
    image : (H, W, 3) ndarray of uint8
        The composite, RGB.
    alpha : (H, W) ndarray of float32 in [0, 1]
        Exact opacity of the object (after occlusion and motion blur).
    foreground : (H, W, 3) ndarray of float32 in [0, 1]
        The object's un-premultiplied colours, lighting included; where alpha is
        0 they extend the object's colours smoothly.
    """

    image: np.ndarray
    alpha: np.ndarray
    foreground: np.ndarray


class _Layers(NamedTuple):
    frame: SynthFrame
    background: np.ndarray  # (H, W, 3) float32: B in I = alpha F + (1 - alpha) B
    object_alpha: np.ndarray  # (H, W) float32: alpha before the occluder


# ---------------------------------------------------------------- photographs

# Photographs that ship inside scikit-image (none is downloaded); grayscale ones get a tint.
_COLOUR = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "immunohistochemistry", "hubble_deep_field", "retina")
_TINTS = {"grass": (0.55, 0.8, 0.4), "gravel": (0.85, 0.78, 0.68), "brick": (0.9, 0.6, 0.5),
          "camera": (1.0, 1.0, 1.0), "coins": (0.95, 0.9, 0.8), "moon": (0.9, 0.9, 0.95)}  # fmt: skip
_PHOTOS = _COLOUR + tuple(_TINTS)
_SCENES = ("astronaut", "coffee", "chelsea", "rocket", "motorcycle", "grass", "gravel", "brick")


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
    """(h, w, 3) float32 in [0, 1], read-only."""
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    image = image.astype(np.float32) / 255.0
    if image.ndim == 2:
        image = image[..., None] * np.asarray(_TINTS[name], np.float32)
    image.setflags(write=False)
    return image


def _view(photo: np.ndarray, size: tuple[int, int], centre: tuple[float, float], zoom: float) -> np.ndarray:
    """A (H, W, 3) view of ``photo`` covering it by 1/1.35 at zoom 1, centred at ``centre`` (fractions)."""
    width, height = size
    ph, pw = photo.shape[:2]
    k = max(1.35 * width / pw, 1.35 * height / ph)
    if k < 1:  # shrink with an area filter first, so the view does not alias
        photo = cv2.resize(photo, (max(1, round(pw * k)), max(1, round(ph * k))), interpolation=cv2.INTER_AREA)
        ph, pw = photo.shape[:2]
        k = max(1.35 * width / pw, 1.35 * height / ph)
    step = 1.0 / (k * zoom)
    half_w, half_h = width * step / 2, height * step / 2
    cx = half_w + centre[0] * (pw - 2 * half_w)
    cy = half_h + centre[1] * (ph - 2 * half_h)
    m = np.array([[step, 0, cx - half_w], [0, step, cy - half_h]], np.float64)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    return cv2.warpAffine(photo, m, (width, height), flags=flags, borderMode=cv2.BORDER_REFLECT)


# ------------------------------------------------------------------ creature


class _Creature(NamedTuple):
    alpha: np.ndarray  # (S, S) float32 in [0, 1]
    premult: np.ndarray  # (S, S, 3) float32: alpha * F
    colour: np.ndarray  # (S, S, 3) float32: F, extended beyond the object


def _creature_params(rng: np.random.Generator) -> dict:
    """Random shape, colour and appendage parameters of one creature."""
    return {
        "hue": rng.uniform(0, 1),
        "elongation": rng.uniform(1.15, 1.45),
        "harmonics": rng.uniform(0.02, 0.07, 4) * rng.choice([-1, 1], 4),
        "phases": rng.uniform(0, 2 * np.pi, 4),
        "hair_side": rng.uniform(0.6, 1.1) * np.pi,  # fur grows around this angle (back of the body)
        "hair_arc": rng.uniform(0.55, 0.8) * np.pi,
        "hair_count": int(rng.integers(180, 260)),
        "hair_length": rng.uniform(0.16, 0.22),
        "fin_side": rng.uniform(0.35, 0.55) * np.pi,
        "antenna_bend": rng.uniform(0.1, 0.3),
        "texture_seed": int(rng.integers(2**31)),
    }


def _vary(params: dict, rng: np.random.Generator) -> dict:
    """A same-category variant: other outline, shifted hue, other fur and fin."""
    varied = dict(params)
    varied["hue"] = (params["hue"] + rng.choice([-1, 1]) * rng.uniform(0.05, 0.15)) % 1.0
    varied["elongation"] = rng.uniform(1.05, 1.55)
    varied["harmonics"] = rng.uniform(0.02, 0.09, 4) * rng.choice([-1, 1], 4)
    varied["phases"] = rng.uniform(0, 2 * np.pi, 4)
    varied["hair_arc"] = rng.uniform(0.45, 0.9) * np.pi
    varied["hair_count"] = int(rng.integers(140, 280))
    varied["hair_length"] = rng.uniform(0.13, 0.24)
    varied["fin_side"] = params["fin_side"] + rng.uniform(-0.15, 0.15) * np.pi
    varied["texture_seed"] = int(rng.integers(2**31))
    return varied


def _hsv(h: float, s: float, v: float) -> np.ndarray:
    """One RGB colour, float32 in [0, 1], from hue/saturation/value in [0, 1]."""
    pixel = np.array([[[(h % 1.0) * 180, s * 255, v * 255]]], np.float32).clip(0, [179, 255, 255])
    return cv2.cvtColor(pixel.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255.0


def _noise(rng: np.random.Generator, n: int, cells: int) -> np.ndarray:
    """(n, n) smooth noise with about ``cells`` blobs across, zero mean, unit std."""
    field = cv2.resize(rng.standard_normal((cells, cells)).astype(np.float32), (n, n), interpolation=cv2.INTER_CUBIC)
    return (field - field.mean()) / (field.std() + 1e-6)


def _curve(start, direction, length: float, bend: float, steps: int = 12) -> np.ndarray:
    """(steps + 1, 2) points of a bent stroke from ``start`` along unit vector ``direction``."""
    u = np.linspace(0, 1, steps + 1)[:, None]
    normal = np.array([-direction[1], direction[0]])
    return np.asarray(start) + length * (u * np.asarray(direction) + bend * u**2 * normal)


def _build_creature(params: dict, canvas: int, px: float) -> _Creature:
    """Draw the creature on a ``canvas`` x ``canvas`` grid; ``px`` canvas pixels make one screen pixel at scale 1."""
    rng = np.random.default_rng(params["texture_seed"])
    ss = _SUPERSAMPLE
    n = canvas * ss
    c = n / 2.0
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)

    # Body: an ellipse whose radius wobbles with a few harmonics.
    theta = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    a, b = 0.2 * n * params["elongation"] ** 0.5, 0.2 * n / params["elongation"] ** 0.5
    wobble = 1 + sum(h * np.cos((k + 2) * theta + p) for k, (h, p) in enumerate(zip(params["harmonics"], params["phases"])))
    radius = wobble / np.sqrt((np.cos(theta) / a) ** 2 + (np.sin(theta) / b) ** 2)
    outline = np.stack([c + radius * np.cos(theta), c + radius * np.sin(theta)], 1)
    body = np.zeros((n, n), np.uint8)
    cv2.fillPoly(body, [np.round(outline).astype(np.int32)], 1)

    # Body colour: hue with mottled spots, fine grain, a highlight and a darker rim.
    hue = params["hue"]
    base, spot = _hsv(hue, 0.55, 0.85), _hsv(hue + 0.06, 0.75, 0.45)
    spots = np.clip((_noise(rng, n, 9) - 0.3) * 2.5, 0, 1)[..., None]
    grain = 1 + 0.1 * _noise(rng, n, 60)[..., None]
    depth = cv2.distanceTransform(body, cv2.DIST_L2, 5) / (0.25 * b)
    highlight = 1 - 0.35 * np.clip(((xx - c + 0.3 * a) ** 2 + (yy - c + 0.4 * b) ** 2) / (1.3 * a) ** 2, 0, 1)
    rim = 0.55 + 0.45 * np.clip(depth, 0, 1)
    skin = ((1 - spots) * base + spots * spot) * (grain * (highlight * rim)[..., None])
    for side in (-1, 1):  # eyes near the front, on the side opposite the fur
        eye = (int(c + 0.72 * a), int(c + side * 0.35 * b))
        cv2.circle(skin, eye, int(0.16 * b), (0.95, 0.95, 0.92), -1)
        cv2.circle(skin, (eye[0] + int(0.04 * b), eye[1]), int(0.08 * b), (0.05, 0.04, 0.04), -1)

    # Translucent fin: a scalloped fan attached to one side, alpha 0.3 .. 0.6 plus faint veins.
    side, spread = params["fin_side"], 0.8
    fan = np.linspace(side - spread / 2, side + spread / 2, 60)
    r_fin = 0.2 * n * (1.85 + 0.1 * np.cos((fan - side) * 24))
    fin_outline = np.concatenate([[[c, c]], np.stack([c + r_fin * np.cos(fan), c + r_fin * np.sin(fan)], 1)])
    fin_mask = np.zeros((n, n), np.uint8)
    cv2.fillPoly(fin_mask, [np.round(fin_outline).astype(np.int32)], 1)
    dist = np.hypot(xx - c, yy - c) / (0.42 * n)
    fin_alpha = fin_mask * (0.3 + 0.3 * np.clip(dist, 0, 1))
    veins = np.zeros((n, n), np.float32)
    for angle in np.linspace(side - spread / 2.5, side + spread / 2.5, 6):
        tip = (int(c + 0.38 * n * np.cos(angle)), int(c + 0.38 * n * np.sin(angle)))
        cv2.line(veins, (int(c), int(c)), tip, 1.0, max(1, round(0.6 * px * ss)))
    fin_alpha = np.maximum(fin_alpha, fin_mask * veins * 0.7).astype(np.float32)
    fin_colour = _hsv(hue + 0.5, 0.35, 0.97) * (0.85 + 0.15 * _noise(rng, n, 5)[..., None].clip(-1, 1))

    # Fur: many thin tapering strands from an arc of the outline, darker at the root.
    fur = np.zeros((n, n), np.uint8)
    fur_colour = np.zeros((n, n, 3), np.float32)
    root, tip = _hsv(hue - 0.03, 0.6, 0.35), _hsv(hue + 0.02, 0.3, 0.9)
    angles = params["hair_side"] + rng.uniform(-0.5, 0.5, params["hair_count"]) * params["hair_arc"]
    for angle in angles:
        i = int(np.round(angle % (2 * np.pi) / (2 * np.pi) * len(theta))) % len(theta)
        start = c + 0.92 * (outline[i] - c)
        out = angle + rng.normal(0, 0.25)
        direction = np.array([np.cos(out), np.sin(out)])
        length = params["hair_length"] * n * rng.uniform(0.5, 1.2)
        points = _curve(start, direction, length, rng.normal(0, 0.35))
        points = points[np.hypot(*(points - c).T) < 0.48 * n]
        shade = rng.uniform(0.8, 1.15)
        for k in range(len(points) - 1):
            t = k / 12
            width = max(1, round(px * ss * (1.1 - 0.9 * t)))
            colour = np.clip(((1 - t) * root + t * tip) * shade, 0, 1)
            p0, p1 = tuple(np.round(points[k]).astype(int)), tuple(np.round(points[k + 1]).astype(int))
            cv2.line(fur, p0, p1, 1, width)
            cv2.line(fur_colour, p0, p1, colour.tolist(), width)

    # Antennae: two bent sticks about 1.5 px wide at scale 1, with a knob at the tip.
    stick = np.zeros((n, n), np.uint8)
    for sign in (-1, 1):
        angle = sign * 0.55
        start = np.array([c + 0.8 * a * np.cos(angle), c + 0.8 * b * np.sin(angle)])
        points = _curve(start, np.array([np.cos(angle), np.sin(angle)]), 0.2 * n, sign * params["antenna_bend"])
        cv2.polylines(stick, [np.round(points).astype(np.int32)], False, 1, max(1, round(1.5 * px * ss)))
        cv2.circle(stick, tuple(np.round(points[-1]).astype(int)), max(1, round(2.2 * px * ss)), 1, -1)

    # "Over" compositing back to front, then a box filter down to the canvas.
    alpha = fin_alpha
    premult = fin_alpha[..., None] * fin_colour
    layers = ((body, skin), (fur, fur_colour), (stick, np.broadcast_to(_hsv(hue, 0.4, 0.2), (n, n, 3))))
    for mask, colour in layers:
        m = mask.astype(np.float32)
        premult = m[..., None] * colour + (1 - m[..., None]) * premult
        alpha = m + (1 - m) * alpha
    alpha = _snap(cv2.resize(alpha, (canvas, canvas), interpolation=cv2.INTER_AREA))
    premult = cv2.resize(np.clip(premult, 0, 1), (canvas, canvas), interpolation=cv2.INTER_AREA)
    premult = np.minimum(premult, alpha[..., None])
    return _Creature(alpha, premult, _extend(alpha, premult))


def _snap(alpha: np.ndarray) -> np.ndarray:
    alpha = np.clip(alpha, 0, 1).astype(np.float32)
    alpha[alpha < _SNAP] = 0
    alpha[alpha > 1 - _SNAP] = 1
    return alpha


def _extend(alpha: np.ndarray, premult: np.ndarray) -> np.ndarray:
    """Un-premultiplied colours, filled outside the object from the nearest well-covered pixel."""
    from scipy import ndimage

    solid = alpha > 0.1
    colour = np.where(solid[..., None], premult / np.maximum(alpha, 1e-6)[..., None], 0)
    if solid.any():
        _, (iy, ix) = ndimage.distance_transform_edt(~solid, return_indices=True)
        colour = colour[iy, ix]
    return np.clip(colour, 0, 1).astype(np.float32)


# --------------------------------------------------------------- placement


def _place(creature: _Creature, size, *, centre, angle: float, scale: float, flip: bool = False, blur=None):
    """Scale, rotate and place the creature in a (W, H) frame; optionally motion-blur it.

    ``scale`` is screen pixels per canvas pixel (at most 1). ``blur`` is None or
    ``(length_px, direction_radians)``. Returns alpha (H, W) and F (H, W, 3),
    both float32, with ``alpha * F`` the (blurred) premultiplied object.
    """
    canvas = creature.alpha.shape[0]
    side = max(1, round(canvas * scale))
    rotation = cv2.getRotationMatrix2D((side / 2, side / 2), np.degrees(angle), 1.0)
    if flip:  # mirror the columns before rotating
        rotation[:, 0] *= -1
        rotation[:, 2] -= rotation[:, 0] * side
    rotation[:, 2] += np.asarray(centre) - side / 2

    def warp(layer, border):
        if side < canvas:  # shrink with an area filter first: strands would alias under a bilinear warp
            layer = cv2.resize(layer, (side, side), interpolation=cv2.INTER_AREA)
        return cv2.warpAffine(layer, rotation, size, flags=cv2.INTER_LINEAR, borderMode=border)

    alpha = warp(creature.alpha, cv2.BORDER_CONSTANT)
    premult = warp(creature.premult, cv2.BORDER_CONSTANT)
    colour = warp(creature.colour, cv2.BORDER_REPLICATE)
    if blur is not None:
        # Blurring alpha and alpha * F with one kernel keeps the composite exact.
        kernel = _line_kernel(*blur)
        alpha = cv2.filter2D(alpha, -1, kernel, borderType=cv2.BORDER_CONSTANT)
        premult = cv2.filter2D(premult, -1, kernel, borderType=cv2.BORDER_CONSTANT)
    alpha = _snap(alpha)
    solid = alpha > 1e-3
    fg = np.where(solid[..., None], premult / np.maximum(alpha, 1e-3)[..., None], colour)
    return alpha, np.clip(fg, 0, 1).astype(np.float32)


def _line_kernel(length: float, direction: float) -> np.ndarray:
    """Normalised kernel of a box blur ``length`` px long along ``direction`` (bilinear splats)."""
    k = int(np.ceil(length)) | 1
    kernel = np.zeros((k + 1, k + 1), np.float64)
    for u in np.linspace(-length / 2, length / 2, 8 * k):
        x, y = k / 2 + u * np.cos(direction), k / 2 + u * np.sin(direction)
        x0, y0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - x0, y - y0
        kernel[y0 : y0 + 2, x0 : x0 + 2] += np.outer([1 - fy, fy], [1 - fx, fx])
    return (kernel / kernel.sum()).astype(np.float32)


def _composite(alpha, fg, background, occluder=None, occluder_colour=None) -> _Layers:
    """Composite, with an optional opaque occluder in front; returns the exact layers."""
    object_alpha = alpha
    if occluder is not None:
        # I = o O + (1 - o)(a F + (1 - a) B) = a' F + (1 - a') B' with a' = a (1 - o).
        alpha = _snap(alpha * (1 - occluder))
        rest = (1 - object_alpha) * (1 - occluder)
        mixed = rest[..., None] * background + occluder[..., None] * occluder_colour
        open_ = (1 - alpha) > 1e-6
        background = np.where(open_[..., None], mixed / np.maximum(1 - alpha, 1e-6)[..., None], background)
    background = np.clip(background, 0, 1).astype(np.float32)
    a = alpha.astype(np.float64)[..., None]
    image = np.round(255 * np.clip(a * fg + (1 - a) * background, 0, 1)).astype(np.uint8)
    return _Layers(SynthFrame(image, alpha, fg), background, object_alpha)


def _occluder(size, x: float, width: float, tilt: float, texture: np.ndarray):
    """An opaque post with 1 px anti-aliased edges: (H, W) alpha and (H, W, 3) colours."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    d = (xx - x - (yy - h / 2) * np.tan(tilt)) * np.cos(tilt)
    alpha = np.clip(width / 2 - np.abs(d) + 0.5, 0, 1)
    u = np.clip((d / width + 0.5) * (texture.shape[1] - 1), 0, texture.shape[1] - 1)
    v = yy * (texture.shape[0] - 1) / max(h - 1, 1)
    colour = cv2.remap(texture, u.astype(np.float32), v.astype(np.float32), cv2.INTER_LINEAR)
    shade = 0.55 + 0.45 * np.sqrt(np.clip(1 - (2 * d / width) ** 2, 0, 1))  # round post
    return alpha.astype(np.float32), (colour * shade[..., None]).astype(np.float32)


# ---------------------------------------------------------------- sequences


def _check(name: str, count, size, seed) -> None:
    def integer(x) -> bool:
        return isinstance(x, (int, np.integer)) and not isinstance(x, bool)

    if not integer(count) or count < 2:
        raise InputError(f"`{name}` must be an integer >= 2, got {count!r}")
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(integer(s) and s >= 32 for s in size):
        raise InputError(f"`size` must be (W, H) with integers >= 32, got {size!r}")
    if not integer(seed) or seed < 0:
        raise InputError(f"`seed` must be an integer >= 0, got {seed!r}")


def _video_layers(n_frames: int, size: tuple[int, int], seed: int) -> Iterator[_Layers]:
    width, height = size
    creature_rng, path_rng, scene_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    s_max = 1.2
    creature = _build_creature(_creature_params(creature_rng), round(_SPAN * min(size) * s_max), s_max)

    photo_name, post_name = scene_rng.choice(_SCENES, 2, replace=False)
    photo, post = _photo(photo_name), _photo(post_name)
    pan = scene_rng.uniform(0.1, 0.9, (2, 2))  # start and end centre of the camera, as fractions
    zoom_end = scene_rng.uniform(1.08, 1.2)
    gain_end = scene_rng.uniform(0.72, 0.85) * (1 + scene_rng.uniform(-0.08, 0.08, 3))
    px, py = (int(v * (s - 1)) for v, s in zip(scene_rng.uniform(0, 1, 2), post.shape[1::-1]))
    texture = post[max(0, py - 80) : py + 80, max(0, px - 12) : px + 12].copy()
    tilt = scene_rng.uniform(-0.12, 0.12)

    freq, phase = path_rng.uniform(0.5, 0.9, 4), path_rng.uniform(0, 2 * np.pi, 4)
    angle0 = path_rng.uniform(-0.3, 0.3)
    sway = float(np.clip(0.5 - 0.42 * min(size) / width, 0.05, 0.2))  # keeps the object in view

    def pose(t):
        wave = np.sin(2 * np.pi * freq * t + phase)
        centre = (width * (0.5 + sway * wave[0]), height * (0.5 + 0.05 * wave[1]))
        return centre, angle0 + 0.6 * wave[2], 1 + 0.18 * wave[3]

    last = n_frames - 1
    run = max(1, n_frames // 13)
    blurred = {f for start in (round(0.25 * last), round(0.75 * last)) for f in range(start, start + run)}
    blurred.discard(REFERENCE_FRAME)
    hit = max(1, round(0.5 * last))  # the post crosses the object's centre here
    post_w = max(4.0, 0.06 * width)
    reach = max(1, round(n_frames / 6))
    speed = (0.8 * width + post_w) / (reach + 1)  # off screen beyond hit +- reach
    hit_x = pose(hit / last)[0][0]
    dt = 0.5 / last

    for f in range(n_frames):
        t = f / last
        centre, angle, scale = pose(t)
        blur = None
        if f in blurred:
            (x0, y0), (x1, y1) = pose(t - dt)[0], pose(t + dt)[0]
            blur = (max(3.0, 0.03 * min(size)), float(np.arctan2(y1 - y0, x1 - x0)))
        alpha, fg = _place(creature, size, centre=centre, angle=angle, scale=scale / s_max, blur=blur)
        camera = tuple((1 - t) * pan[0] + t * pan[1])
        background = _view(photo, size, camera, 1 + t * (zoom_end - 1))
        gain = (1 + t * (gain_end - 1)).astype(np.float32)  # lighting, on F and B alike
        fg, background = np.clip(fg * gain, 0, 1), np.clip(background * gain, 0, 1)
        occluder = colour = None
        if abs(f - hit) <= reach and f != REFERENCE_FRAME:
            occluder, colour = _occluder(size, hit_x + speed * (f - hit), post_w, tilt, texture)
            colour = np.clip(colour * gain, 0, 1)
        yield _composite(alpha, fg, background, occluder, colour)


def _collection_layers(n_images: int, size: tuple[int, int], seed: int) -> Iterator[_Layers]:
    width, height = size
    creature_rng, pose_rng, scene_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
    s_max = 1.25
    canvas = round(_SPAN * min(size) * s_max)
    params = _creature_params(creature_rng)
    instance = _build_creature(params, canvas, s_max)
    order = [_PHOTOS[i] for i in scene_rng.permutation(len(_PHOTOS))]
    n_same = (n_images + 1) // 2

    for i in range(n_images):
        creature = instance if i < n_same else _build_creature(_vary(params, creature_rng), canvas, s_max)
        if i == REFERENCE_FRAME:
            centre, angle, scale, flip = (width / 2, height / 2), 0.0, 1.0, False
        else:
            margin = 0.35 * min(size)
            centre = tuple(pose_rng.uniform(margin, max(margin, side - margin)) for side in size)
            angle, scale, flip = pose_rng.uniform(-1.0, 1.0), pose_rng.uniform(0.7, s_max), bool(pose_rng.integers(2))
        alpha, fg = _place(creature, size, centre=centre, angle=angle, scale=scale / s_max, flip=flip)
        view = _view(_photo(order[i % len(order)]), size, tuple(scene_rng.uniform(0, 1, 2)), scene_rng.uniform(1, 1.3))
        gain = scene_rng.uniform(0.8, 1.1) * (1 + scene_rng.uniform(-0.06, 0.06, 3)).astype(np.float32)
        yield _composite(alpha, np.clip(fg * gain, 0, 1).astype(np.float32), np.clip(view * gain, 0, 1))


def synth_video(n_frames: int = 40, size: tuple[int, int] = (640, 360), seed: int = 0) -> Iterator[SynthFrame]:
    """Synthesize a video of one soft object over a real photograph, with exact alpha.

    The creature moves along a smooth path, rotates and scales; the camera pans
    and zooms slowly; the lighting dims with a colour cast over the sequence; a
    few frames (never the reference) are motion-blurred; an opaque post passes in
    front of the object around the middle frame.

    Parameters
    ----------
    n_frames : int, optional
        Number of frames, at least 2. Default 40.
    size : (W, H) tuple of int, optional
        Frame width and height, each at least 32. Default (640, 360).
    seed : int, optional
        Seed (>= 0) of every random choice; the same seed gives bit-identical
        frames. Default 0.

    Returns
    -------
    iterator of SynthFrame
        One per frame, made lazily: ``image`` (H, W, 3) uint8, ``alpha`` (H, W)
        float32 in [0, 1], ``foreground`` (H, W, 3) float32 in [0, 1]. Frame
        ``REFERENCE_FRAME`` (0) is the reference: unblurred, unoccluded, the
        object wholly in view.

    Raises
    ------
    InputError
        If ``n_frames`` < 2, a side of ``size`` is < 32 or ``seed`` is not an
        integer >= 0; raised by the call, before any frame is made.

    Notes
    -----
    ``image = round(255 * (alpha * F + (1 - alpha) * B))`` holds for each frame.
    Motion blur is applied to ``alpha`` and ``alpha * F`` with the same kernel, so
    blurred frames stay exact composites. Under the occluder (opacity ``o``) the
    ground truth is ``alpha * (1 - o)``.

    Examples
    --------
    >>> frames = list(synth_video(3, size=(96, 64), seed=1))
    >>> frames[0].image.shape, frames[0].alpha.dtype
    ((64, 96, 3), dtype('float32'))
    """
    _check("n_frames", n_frames, size, seed)  # here, not on the first next(): this is no generator function
    return (layers.frame for layers in _video_layers(int(n_frames), (int(size[0]), int(size[1])), int(seed)))


def synth_collection(n_images: int = 12, size: tuple[int, int] = (512, 384), seed: int = 0) -> Iterator[SynthFrame]:
    """Synthesize a collection of images of one object and its look-alikes, with exact alpha.

    The first half of the images (rounded up) show the same creature in
    different poses, scales and mirror images over different photographs; the
    rest show same-category variants (another outline, shifted hue, other fur
    and fin), one new variant per image. Image 0 is the reference, in a
    canonical pose.

    Parameters
    ----------
    n_images : int, optional
        Number of images, at least 2. Default 12.
    size : (W, H) tuple of int, optional
        Image width and height, each at least 32; all images share it. Default (512, 384).
    seed : int, optional
        Seed (>= 0) of every random choice; the same seed gives bit-identical
        images. Default 0.

    Returns
    -------
    iterator of SynthFrame
        One per image, made lazily; fields as in :func:`synth_video`.

    Raises
    ------
    InputError
        If ``n_images`` < 2, a side of ``size`` is < 32 or ``seed`` is not an
        integer >= 0.

    Examples
    --------
    >>> images = list(synth_collection(2, size=(64, 48)))
    >>> float(images[0].alpha.max())
    1.0
    """
    _check("n_images", n_images, size, seed)
    return (layers.frame for layers in _collection_layers(int(n_images), (int(size[0]), int(size[1])), int(seed)))


# ------------------------------------------------------------------ writers


def _write_png(path: Path, array: np.ndarray) -> None:
    if array.ndim == 3:
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    ok, buffer = cv2.imencode(".png", array)
    if not ok:
        raise OSError(f"could not encode {path.name} as PNG")
    atomic_write_bytes(path, buffer.tobytes())


def write_synth(kind: str, out_dir, *, frames: int | None = None, size: tuple[int, int] | None = None, seed: int = 0) -> Path:
    """Write a synthetic video or collection, with its ground truth, to a folder.

    Parameters
    ----------
    kind : {'video', 'collection'}
        Which sequence: :func:`synth_video` or :func:`synth_collection`.
    out_dir : str or Path
        Folder to write into; created if missing. Existing files of the same
        names are replaced.
    frames : int, optional
        Number of frames, at least 2. None: 40 for 'video', 12 for 'collection'.
    size : (W, H) tuple of int, optional
        Frame size, each side at least 32. None: (640, 360) for 'video',
        (512, 384) for 'collection'.
    seed : int, optional
        Random seed, an integer >= 0. Default 0.

    Returns
    -------
    Path
        ``out_dir``, holding ``frames/NNNNN.png`` (RGB, 8 bit), ``alpha/NNNNN.png``
        (16-bit gray, ``round(alpha * 65535)``), ``fg/NNNNN.png`` (RGB, 8 bit),
        ``reference_mask.png`` (0/255: the reference's alpha > 0.5) and
        ``reference.json`` (``frame``, ``mask``, ``kind``, ``seed``, ``size``).

    Raises
    ------
    InputError
        If ``kind`` is unknown, ``frames`` < 2, a side of ``size`` is < 32 or
        ``seed`` is not an integer >= 0.

    Examples
    --------
    >>> import tempfile
    >>> folder = write_synth("video", tempfile.mkdtemp(), frames=2, size=(64, 48))
    >>> sorted(p.name for p in folder.iterdir())
    ['alpha', 'fg', 'frames', 'reference.json', 'reference_mask.png']
    """
    if kind not in SYNTH_KINDS:
        raise InputError(f"`kind` must be one of {SYNTH_KINDS}, got {kind!r}")
    default_frames, default_size = _DEFAULTS[kind]
    frames = default_frames if frames is None else frames
    size = default_size if size is None else size
    _check("frames", frames, size, seed)
    out = Path(out_dir)
    for sub in ("frames", "alpha", "fg"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    make = synth_video if kind == "video" else synth_collection
    for i, frame in enumerate(make(frames, tuple(size), seed)):
        name = f"{i:05d}.png"
        _write_png(out / "frames" / name, frame.image)
        _write_png(out / "alpha" / name, np.round(frame.alpha * 65535).astype(np.uint16))
        _write_png(out / "fg" / name, np.round(frame.foreground * 255).astype(np.uint8))
        if i == REFERENCE_FRAME:
            _write_png(out / "reference_mask.png", np.where(frame.alpha > 0.5, 255, 0).astype(np.uint8))
    meta = {"frame": REFERENCE_FRAME, "mask": "reference_mask.png", "kind": kind, "seed": int(seed), "size": [int(size[0]), int(size[1])]}
    atomic_write_bytes(out / "reference.json", (json.dumps(meta, indent=2) + "\n").encode())
    return out
