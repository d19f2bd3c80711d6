"""Every pixel of every frame of the alpha videos, at sizes libswscale converts in several slices.

The alpha videos used to be converted RGBA -> YUVA by libswscale, which (PyAV 18.1) left the
alpha at slice boundaries unwritten on some calls: rows 160 and 320 of 854x480 frames came
back with alpha 0.5 where it was 0, differently from run to run. The planes are now computed
in numpy (:mod:`napari_iconmat.core.io.yuv`); these tests decode the files to their native
planes (no swscale on the way back either) and compare each pixel with what was written.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_iconmat.core.io import OutputWriter
from napari_iconmat.core.io.yuv import KB, KR, rgba_to_yuva

T = 3


def _sequence(width, height, frames=T):
    """Soft-edged object moving over smooth colour, plus all-zero alpha bands at rows 150..330."""
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    out = []
    for t in range(frames):
        cy, cx, r = height * 0.5, width * (0.3 + 0.1 * t), height * 0.3
        alpha = np.clip((r - np.hypot(rows - cy, cols - cx)) / 12.0, 0.0, 1.0)
        alpha[:, : width // 8] = 0.0  # the start of every row, where the unwritten runs were
        colour = np.dstack([
            0.5 + 0.4 * np.sin(cols / 97.0 + t), 0.5 + 0.4 * np.cos(rows / 53.0), 0.5 + 0.3 * np.sin((rows + cols) / 71.0),
        ])  # fmt: skip
        out.append((alpha.astype(np.float32), colour.astype(np.float32)))
    return out


def _planes(frame):
    out = []
    for plane in frame.planes:
        dtype = np.dtype("<u2") if frame.format.components[0].bits > 8 else np.dtype(np.uint8)
        rows = np.frombuffer(plane, dtype).reshape(plane.height, plane.line_size // dtype.itemsize)
        out.append(rows[:, : plane.width].astype(np.float64))
    return out, max(c.bits for c in frame.format.components)


def _to_rgba(planes, bits, shape):
    """Inverse BT.709 limited range, chroma repeated 2 x 2 when subsampled; values in [0, 1]."""
    y, cb, cr, a = planes
    height, width = shape
    cb, cr = (np.repeat(np.repeat(c, 2, 0), 2, 1)[:height, :width] if c.shape != (height, width) else c for c in (cb, cr))
    scale = float(1 << (bits - 8))
    y, cb, cr = (y / scale - 16) / 219, (cb / scale - 128) / 224, (cr / scale - 128) / 224
    r = y + 2 * (1 - KR) * cr
    b = y + 2 * (1 - KB) * cb
    g = (y - KR * r - KB * b) / (1 - KR - KB)
    return np.dstack([r, g, b]), a / ((1 << bits) - 1)


def _decode(path, codec=None):
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if codec is None:
            return [_planes(f) for f in container.decode(stream)]
        decoder = av.CodecContext.create(codec, "r")
        frames = [f for packet in container.demux(stream) for f in decoder.decode(packet)]
        return [_planes(f) for f in frames]


@pytest.mark.parametrize("width, height", [(854, 480), pytest.param(1920, 1080, marks=pytest.mark.slow)])
def test_prores_and_webm_every_pixel(tmp_path, width, height):
    sequence = _sequence(width, height)
    with OutputWriter(tmp_path, ["png", "prores", "webm"]) as writer:
        for i, (alpha, colour) in enumerate(sequence):
            writer.write(i, alpha, foreground=colour)
    png = [np.rint(alpha * 255) / 255 for alpha, _ in sequence]  # what the alpha PNGs hold

    prores = _decode(tmp_path / "matte.mov")
    assert len(prores) == T
    for i, (planes, bits) in enumerate(prores):
        colour, alpha = _to_rgba(planes, bits, (height, width))
        assert np.abs(alpha - png[i]).max() <= 1 / 255 + 1e-9, f"frame {i}"
        error = np.abs(colour - sequence[i][1]) * 255
        assert error.mean() < 1 and error.max() < 4, f"frame {i}: colour error {error.mean():.2f} / {error.max():.2f}"

    webm = _decode(tmp_path / "matte.webm", "libvpx-vp9")
    assert len(webm) == T
    for i, (planes, bits) in enumerate(webm):
        assert len(planes) == 4, "the VP9 alpha plane was not decoded"
        colour, alpha = _to_rgba(planes, bits, (height, width))
        alpha_error = np.abs(alpha - png[i])
        assert alpha_error.mean() < 1 / 255 and alpha_error.max() < 32 / 255, f"frame {i}: {alpha_error.max() * 255:.0f}/255"
        assert alpha_error[:, : width // 8 - 8].max() <= 2 / 255  # the flat transparent left part is exact
        inside = png[i] > 0.5
        error = np.abs(colour - sequence[i][1])[inside] * 255
        assert error.mean() < 6 and error.max() < 32, f"frame {i}: colour error {error.mean():.2f} / {error.max():.2f}"


def test_planes_are_exact_and_the_same_on_every_call():
    rng = np.random.default_rng(5)
    rgba = rng.integers(0, 65536, (480, 854, 4)).astype(np.uint16)
    rgba[..., 3] = 0
    for fmt in ("yuva444p10le", "yuva420p"):
        first = rgba_to_yuva(rgba, fmt)
        assert all(np.array_equal(a, b) for a, b in zip(first, rgba_to_yuva(rgba, fmt)))
        assert not first[3].any()  # zero alpha stays zero everywhere
    white = rgba_to_yuva(np.full((3, 5, 4), 65535, np.uint16), "yuva420p")
    assert [p.shape for p in white] == [(3, 5), (2, 3), (2, 3), (3, 5)]
    assert [int(p.max()) for p in white] == [235, 128, 128, 255]


@pytest.mark.slow
def test_the_same_frames_give_the_same_video_at_1920x1080(tmp_path):
    """What a resumed run relies on: the videos are assembled from the per-frame parts, and the same
    parts give the same planes on every call (before, the unwritten alpha runs differed run to run)."""
    sequence = _sequence(1920, 1080, frames=2)
    for name in ("a", "b"):
        with OutputWriter(tmp_path / name, ["png", "prores", "webm"]) as writer:
            for i, (alpha, colour) in enumerate(sequence):
                writer.write(i, alpha, foreground=colour)
    for video, codec in (("matte.mov", None), ("matte.webm", "libvpx-vp9")):
        first, second = _decode(tmp_path / "a" / video, codec), _decode(tmp_path / "b" / video, codec)
        assert len(first) == len(second) == 2
        for (planes_a, _), (planes_b, _) in zip(first, second):
            assert all(np.array_equal(p, q) for p, q in zip(planes_a, planes_b)), video
