"""Round trips of every output format: write with OutputWriter, decode with our readers (or zarr/tifffile).

Lossless formats must give back exactly what was written; lossy ones within the
tolerances stated here, measured on a synthetic sequence (a soft object over a
photograph, 96x64, 6 frames):

========  =========================  ======================================
format    alpha back vs written      colour back vs written (0..255 scale)
========  =========================  ======================================
png       exact (8-bit)              -
png16     exact (16-bit)             -
rgba      exact (8-bit)              exact (8-bit)
tiff      exact (float32)            -
tiff16    exact (16-bit)             -
zarr      exact (float32)            -
matte     exact (the alpha PNGs)     -
prores    max 1/255 (10-bit alpha)   mean < 1, max < 4 (4:4:4 10-bit YUV)
webm      mean < 1/255, max < 32/255 mean < 6 where alpha > 0.5 (4:2:0, CRF 15)
========  =========================  ======================================

webm at 96x64 measured mean 0.31-0.43/255 and max 19-24/255 for the alpha over three seeds
(soft edges are where VP9 spends few bits at this size), colour 3.9-4.3.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import tifffile

from napari_iconmat.core.errors import InputError
from napari_iconmat.core.io import OutputWriter, open_frames, read_image
from napari_iconmat.core.io.containers import FrameTiming, write_video
from napari_iconmat.core.evaluation.synth import synth_video

T = 6


@pytest.fixture(scope="module")
def sequence():
    frames = list(synth_video(T, size=(96, 64), seed=3))
    return [f.alpha for f in frames], [f.foreground for f in frames]


def _write(out, formats, sequence, order=(2, 0, 5, 1, 4, 3), **kwargs):
    alphas, foregrounds = sequence
    with OutputWriter(out, formats, **kwargs) as writer:
        for i in order:
            writer.write(i, alphas[i], foreground=foregrounds[i])
    return writer


def _decoded(path):
    with open_frames(path) as frames:
        return [frames[i] for i in range(len(frames))], frames.timing


def _unit(array):
    return array.astype(np.float64) / (65535.0 if array.dtype == np.uint16 else 255.0)


def test_lossless_stacks_round_trip_exactly(tmp_path, sequence):
    zarr = pytest.importorskip("zarr")

    alphas, _ = sequence
    _write(tmp_path / "f", ["tiff", "zarr"], sequence)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "f" / "alpha.tif"), np.stack(alphas))
    group = zarr.open_group(str(tmp_path / "f" / "alpha.zarr"), mode="r")
    assert group["alpha"].chunks == (1, 64, 96) and group["alpha"].dtype == np.float32
    np.testing.assert_array_equal(group["alpha"][:], np.stack(alphas))
    assert group.attrs["frame_indices"] == list(range(T))

    _write(tmp_path / "u", ["png16", "tiff16"], sequence)
    stack = tifffile.imread(tmp_path / "u" / "alpha.tif")
    assert stack.dtype == np.uint16
    np.testing.assert_array_equal(stack, np.rint(np.stack(alphas) * 65535).astype(np.uint16))


def test_zarr_with_frames_of_different_sizes(tmp_path):
    zarr = pytest.importorskip("zarr")

    small, large = np.full((4, 5), 0.25, np.float32), np.full((8, 9), 0.75, np.float32)
    with OutputWriter(tmp_path, ["zarr"]) as writer:
        writer.write(3, large)
        writer.write(1, small)
    group = zarr.open_group(str(tmp_path / "alpha.zarr"), mode="r")
    np.testing.assert_array_equal(group["frames/00001"][:], small)
    np.testing.assert_array_equal(group["frames/00003"][:], large)


@pytest.mark.parametrize("deep", [False, True])
def test_matte_video_is_lossless(tmp_path, sequence, deep):
    _write(tmp_path, ["png16", "matte"] if deep else ["matte"], sequence)
    frames, timing = _decoded(tmp_path / "alpha.mov")
    assert len(frames) == T
    for i, frame in enumerate(frames):
        assert frame.ndim == 2 and frame.dtype == (np.uint16 if deep else np.uint8)
        np.testing.assert_array_equal(frame, read_image(tmp_path / "alpha" / f"{i:05d}.png"))
    assert timing.rate == 25


def test_prores_4444_keeps_alpha_colour_and_source_timestamps(tmp_path, sequence):
    alphas, foregrounds = sequence
    # an NTSC-rate source whose first frame is not at 0
    timing = FrameTiming(rate=Fraction(30000, 1001), time_base=Fraction(1, 30000), pts=tuple(500 + 1001 * i for i in range(T)))
    _write(tmp_path, ["png16", "prores"], sequence, timing=timing)
    frames, back = _decoded(tmp_path / "matte.mov")
    assert len(frames) == T
    assert back.pts == timing.pts and back.time_base == timing.time_base and back.rate == timing.rate
    for i, frame in enumerate(frames):
        assert frame.shape == (64, 96, 4) and frame.dtype == np.uint16
        assert np.abs(_unit(frame[..., 3]) - alphas[i]).max() <= 1 / 255
        colour_error = np.abs(_unit(frame[..., :3]) - foregrounds[i]) * 255
        assert colour_error.mean() < 1 and colour_error.max() < 4
    import av

    with av.open(str(tmp_path / "matte.mov")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "prores" and stream.codec_context.profile == "4444"
        assert "colour: straight" in container.metadata["comment"]


def test_webm_alpha_is_read_back_by_our_reader(tmp_path, sequence):
    alphas, foregrounds = sequence
    _write(tmp_path, ["webm"], sequence)
    frames, timing = _decoded(tmp_path / "matte.webm")
    assert len(frames) == T
    assert [round(p * timing.time_base * 25) for p in timing.pts] == list(range(T))  # 25 fps, in ms
    for i, frame in enumerate(frames):
        assert frame.shape == (64, 96, 4) and frame.dtype == np.uint8  # the alpha plane is there
        error = np.abs(_unit(frame[..., 3]) - _unit(read_image(tmp_path / "alpha" / f"{i:05d}.png")))
        assert error.mean() < 1 / 255 and error.max() < 32 / 255
        solid = alphas[i] > 0.5
        assert (np.abs(_unit(frame[..., :3]) - foregrounds[i])[solid] * 255).mean() < 6
    # frame by frame in any order (seeks restart the libvpx decoder)
    with open_frames(tmp_path / "matte.webm") as video:
        np.testing.assert_array_equal(video[4], frames[4])
        np.testing.assert_array_equal(video[1], frames[1])


def test_premultiplied_colour(tmp_path, sequence):
    alphas, foregrounds = sequence
    _write(tmp_path, ["rgba", "prores"], sequence, colour="premultiplied")
    rgba = read_image(tmp_path / "rgba" / "00002.png")
    expected = np.rint(np.clip(foregrounds[2] * alphas[2][..., None], 0, 1) * 255)
    np.testing.assert_array_equal(rgba[..., :3], expected)
    frames, _ = _decoded(tmp_path / "matte.mov")
    colour = _unit(frames[2][..., :3])
    assert np.abs(colour - foregrounds[2] * alphas[2][..., None]).mean() * 255 < 1
    import av

    with av.open(str(tmp_path / "matte.mov")) as container:
        assert "colour: premultiplied" in container.metadata["comment"]


def test_video_formats_refuse_a_change_of_frame_size(tmp_path):
    writer = OutputWriter(tmp_path, ["prores"])
    writer.write(0, np.zeros((8, 8)), foreground=np.zeros((8, 8, 3)))
    with pytest.raises(InputError, match=r"'prores' needs frames of one size: frame 1 is \(8, 10\)"):
        writer.write(1, np.zeros((8, 10)), foreground=np.zeros((8, 10, 3)))
    writer.discard()


@pytest.mark.parametrize("shape", [(1, 1), (3, 41), (5, 7)])
def test_odd_and_tiny_sizes_encode(tmp_path, shape):
    rng = np.random.default_rng(0)
    alphas = [rng.random(shape) for _ in range(2)]
    with OutputWriter(tmp_path, ["prores", "webm", "matte"]) as writer:
        for i, alpha in enumerate(alphas):
            writer.write(i, alpha, foreground=np.full((*shape, 3), 0.5))
    for name in ("matte.mov", "matte.webm", "alpha.mov"):
        frames, _ = _decoded(tmp_path / name)
        assert len(frames) == 2 and frames[0].shape[:2] == shape


def test_failed_encoding_leaves_no_file(tmp_path):
    def frames():
        yield 0, np.zeros((4, 4, 4), np.uint16)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError):
        write_video(tmp_path / "matte.mov", "prores", frames(), timing=FrameTiming.from_fps(24))
    assert list(tmp_path.iterdir()) == []


def test_writer_option_errors(tmp_path):
    with pytest.raises(InputError, match="'tiff' and 'tiff16'"):
        OutputWriter(tmp_path, ["tiff", "tiff16"])
    with pytest.raises(InputError, match="colour must be one of straight, premultiplied, got 'linear'"):
        OutputWriter(tmp_path, ["rgba"], colour="linear")
    writer = OutputWriter(tmp_path, ["webm"])
    with pytest.raises(InputError, match="foreground"):
        writer.write(0, np.zeros((4, 4)))


def test_videos_made_from_a_video_keep_its_rate_and_timestamps(tmp_path):
    """A variable-rate input (time base 1/90000): the mattes are shown exactly when its frames were."""
    import av

    from napari_iconmat.core.pipeline.run import matte_sequence

    pts = [0, 3000, 6000, 10000, 13000, 16000]
    source = tmp_path / "vfr.mov"
    with av.open(str(source), "w") as container:
        stream = container.add_stream("libx264", rate=30, options={"crf": "18"})
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 90000)
        for i, stamp in enumerate(pts):
            image = np.full((48, 64, 3), 40, np.uint8)
            image[12:36, 10 + 2 * i : 40 + 2 * i] = 220
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts, frame.time_base = stamp, Fraction(1, 90000)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with open_frames(source) as frames:
        timing = frames.timing
        mask = np.zeros((48, 64), np.uint8)
        mask[12:36, 10:40] = 1
    seconds = [p * timing.time_base for p in timing.pts]
    assert seconds == [Fraction(p, 90000) for p in pts]

    out = tmp_path / "out"
    matte_sequence(source, out_dir=out, mask=mask, reference_frame=0, formats="prores,webm,matte")
    for name in ("matte.mov", "alpha.mov"):
        _, back = _decoded(out / name)
        assert [p * back.time_base for p in back.pts] == seconds, name
    _, back = _decoded(out / "matte.webm")  # WebM keeps milliseconds
    assert all(abs(p * back.time_base - s) <= Fraction(1, 1000) for p, s in zip(back.pts, seconds))


def test_a_missing_encoder_is_reported_before_any_work(tmp_path, monkeypatch):
    from napari_iconmat.core.io import containers

    name, _, pix_fmt, options = containers.VIDEO_FORMATS["prores"]
    monkeypatch.setitem(containers.VIDEO_FORMATS, "prores", (name, "no_such_encoder", pix_fmt, options))
    with pytest.raises(InputError, match="'prores' needs the no_such_encoder encoder"):
        OutputWriter(tmp_path, ["prores"])
