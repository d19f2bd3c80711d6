"""Tests for napari_iconmat.core.io.readers: every source kind, ordering, errors."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest
import tifffile

from napari_iconmat.core.errors import InputError
from napari_iconmat.core.io import FrameSource, natural_key, open_frames, read_image

av = pytest.importorskip("av")

T, H, W = 40, 48, 64


def _synthetic_frames(n: int = T, h: int = H, w: int = W) -> list[np.ndarray]:
    """Smooth, distinct RGB uint8 frames (smooth so that x264 keeps them close)."""
    yy, xx = np.mgrid[0:h, 0:w]
    frames = []
    for i in range(n):
        r = 128 + 100 * np.sin(xx / 9.0 + i / 5.0)
        g = 128 + 100 * np.cos(yy / 7.0 - i / 7.0)
        b = np.full((h, w), 20 + 5 * i)
        frames.append(np.dstack([r, g, b]).astype(np.uint8))
    return frames


def _encode(path, frames, *, codec="libx264", pix_fmt="yuv420p", gop=None, in_format="rgb24", options=None):
    with av.open(str(path), "w", options=options or {}) as container:
        stream = container.add_stream(codec, rate=25, options={"crf": "10"} if codec == "libx264" else {})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        if gop:
            stream.codec_context.gop_size = gop
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format=in_format)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def frames():
    return _synthetic_frames()


@pytest.fixture(scope="module")
def mp4(tmp_path_factory, frames):
    return _encode(tmp_path_factory.mktemp("video") / "clip.mp4", frames, gop=8)


# --- video ----------------------------------------------------------------------------------------


def test_video_length_fps_and_content(mp4, frames):
    with open_frames(mp4) as video:
        assert isinstance(video, FrameSource)
        assert (video.kind, video.path, video.frame_names, video.ordered) == ("video", mp4, None, True)
        assert len(video) == T
        assert video.fps == pytest.approx(25.0)
        decoded = list(video)
    assert len(decoded) == T
    for original, frame in zip(frames, decoded):
        assert frame.shape == (H, W, 3) and frame.dtype == np.uint8
        assert np.abs(frame.astype(float) - original).mean() < 4.0  # RGB order, not BGR


def test_video_reverse_run_equals_forward_reversed(mp4):
    with open_frames(mp4) as video:
        forward = [frame for _, frame in video.iter_frames(range(T))]
        backward = list(video.iter_frames(range(T - 1, -1, -1)))
    assert [i for i, _ in backward] == list(range(T - 1, -1, -1))
    for i, frame in backward:
        np.testing.assert_array_equal(frame, forward[i])


def test_video_random_access_equals_sequential(mp4):
    with open_frames(mp4) as video:
        sequential = list(video)
        rng = np.random.default_rng(0)
        for i in [int(i) for i in rng.integers(0, T, 30)] + [-1, -T, 5, 6, 7, 0]:
            np.testing.assert_array_equal(video[i], sequential[i])
        # Mixed runs: ascending, descending, jumps.
        order = [30, 31, 32, 12, 11, 10, 9, 39, 0]
        assert [i for i, _ in video.iter_frames(order)] == order
        for i, frame in video.iter_frames(order):
            np.testing.assert_array_equal(frame, sequential[i])


def test_video_default_gop_and_descending_blocks(tmp_path):
    # The default GOP puts the only keyframe at frame 0: blocks still decode correctly.
    original = _synthetic_frames(n=70, h=16, w=16)
    path = _encode(tmp_path / "long.mkv", original)
    with open_frames(path) as video:
        forward = list(video)
        backward = dict(video.iter_frames(range(69, -1, -1)))
    assert len(forward) == 70
    for i in range(70):
        np.testing.assert_array_equal(backward[i], forward[i])


def test_video_avi_with_b_frames(tmp_path, frames):
    # h264 in AVI reports packet "pts" in decoding order; frames are then counted.
    path = _encode(tmp_path / "clip.avi", frames[:20], gop=5)
    with open_frames(path) as video:
        assert len(video) == 20
        sequential = list(video)
        for i in [13, 2, 19, 7, 8]:
            np.testing.assert_array_equal(video[i], sequential[i])
    for original, frame in zip(frames, sequential):
        assert np.abs(frame.astype(float) - original).mean() < 4.0


def test_video_gray_and_high_bit_depth(tmp_path):
    yy, xx = np.mgrid[0:16, 0:24]
    gray = [((xx * 9 + i) % 256).astype(np.uint8) for i in range(4)]
    with open_frames(_encode(tmp_path / "gray.mkv", gray, codec="ffv1", pix_fmt="gray", in_format="gray")) as video:
        frame = video[2]
    assert frame.shape == (16, 24) and frame.dtype == np.uint8
    np.testing.assert_array_equal(frame, gray[2])  # ffv1 is lossless

    deep = [np.dstack([(xx * 2000 + i) % 65536] * 3).astype(np.uint16) for i in range(4)]
    path = _encode(tmp_path / "deep.mkv", deep, codec="ffv1", pix_fmt="rgb48le", in_format="rgb48le")
    with open_frames(path) as video:
        frame = video[1]
    assert frame.shape == (16, 24, 3) and frame.dtype == np.uint16
    np.testing.assert_array_equal(frame, deep[1])


def test_video_keeps_alpha(tmp_path):
    rgba = [np.dstack([np.full((8, 8), v, np.uint8) for v in (10, 20, 30, 40 + i)]) for i in range(3)]
    path = _encode(tmp_path / "alpha.mov", rgba, codec="png", pix_fmt="rgba", in_format="rgba")
    with open_frames(path) as video:
        np.testing.assert_array_equal(video[2], rgba[2])


def test_video_errors(tmp_path, mp4):
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 20)
    with pytest.raises(InputError, match="notes.mp4"):
        open_frames(text)

    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(InputError, match="empty.*0 bytes"):
        open_frames(empty)

    with av.open(str(tmp_path / "sound.mkv"), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=8000)
        chunk = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
        chunk.sample_rate = 8000
        for packet in list(stream.encode(chunk)) + list(stream.encode()):
            container.mux(packet)
    with pytest.raises(InputError, match="no video stream"):
        open_frames(tmp_path / "sound.mkv")


@pytest.mark.parametrize("faststart", [False, True], ids=["moov-at-end", "moov-first"])
def test_truncated_video_raises_input_error(tmp_path, frames, faststart):
    options = {"movflags": "faststart"} if faststart else None
    whole = _encode(tmp_path / "whole.mp4", frames, gop=8, options=options).read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole[: len(whole) // 2])
    # Without the index at the end the file does not open; with it, the frame
    # count shrinks (with a warning) or a late frame fails to decode.
    with pytest.raises(InputError, match="cut.mp4"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_frames(cut) as video:
            for i in range(len(video)):
                video[i]
            video[T - 1]


def test_index_out_of_range_names_index_and_length(mp4):
    with open_frames(mp4) as video:
        with pytest.raises(InputError, match=f"index {T} .*{T} frames"):
            video[T]
        with pytest.raises(InputError, match=f"-{T + 1}"):
            video[-T - 1]
        with pytest.raises(InputError, match="index 99"):
            list(video.iter_frames([0, 99]))
        with pytest.raises(InputError, match="integer"):
            video["3"]


# --- folders, TIFF, images ------------------------------------------------------------------------


def _write_png(path, image):
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR) if image.ndim == 3 else image
    assert cv2.imwrite(str(path), bgr)


def test_folder_natural_sort_and_mixed_sizes(tmp_path):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in (10, 2, 1):
        image = np.zeros((12, 16, 3), np.uint8)
        image[..., 0] = i  # red channel carries the number: checks RGB order too
        _write_png(folder / f"frame_{i}.png", image)
    (folder / ".hidden.png").write_bytes(b"junk")
    (folder / "notes.txt").write_text("ignored")
    with open_frames(folder) as source:
        assert (source.kind, len(source), source.frame_names) == ("folder", 3, ["frame_1", "frame_2", "frame_10"])
        assert source.ordered is True
        assert [int(frame[0, 0, 0]) for frame in source] == [1, 2, 10]
        assert int(source[-1][0, 0, 2]) == 0

    _write_png(folder / "frame_11.png", np.zeros((20, 16, 3), np.uint8))
    with open_frames(folder) as source:
        assert len(source) == 4 and source.ordered is False


def test_natural_key():
    names = ["f10.png", "f2.png", "F1.png", "f002.png", "g.png", "frame_9.png"]
    assert sorted(names, key=natural_key) == ["F1.png", "f002.png", "f2.png", "f10.png", "frame_9.png", "g.png"]


def test_tiff_stack_uint16(tmp_path):
    stack = np.arange(5 * 6 * 7, dtype=np.uint16).reshape(5, 6, 7) * 100
    tifffile.imwrite(tmp_path / "stack.tif", stack)
    with open_frames(tmp_path / "stack.tif") as source:
        assert (source.kind, len(source), source.ordered) == ("tiff", 5, True)
        frame = source[3]
        assert frame.dtype == np.uint16
        np.testing.assert_array_equal(frame, stack[3])
        np.testing.assert_array_equal(np.stack([f for _, f in source.iter_frames(range(4, -1, -1))]), stack[::-1])


def test_tiff_rgb_stack_single_page_and_rgb_image(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (4, 6, 7, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    with open_frames(tmp_path / "rgb.tif") as source:
        assert len(source) == 4
        np.testing.assert_array_equal(source[2], rgb[2])

    tifffile.imwrite(tmp_path / "page.tiff", rgb[0, ..., 0])
    with open_frames(tmp_path / "page.tiff") as source:
        assert len(source) == 1 and source[0].shape == (6, 7)

    tifffile.imwrite(tmp_path / "one_rgb.tif", rgb[1], photometric="rgb")
    with open_frames(tmp_path / "one_rgb.tif") as source:
        assert len(source) == 1
        np.testing.assert_array_equal(source[0], rgb[1])
    np.testing.assert_array_equal(read_image(tmp_path / "one_rgb.tif"), rgb[1])
    with pytest.raises(InputError, match="4 frames"):
        read_image(tmp_path / "rgb.tif")


def test_single_image_file(tmp_path):
    image = np.random.default_rng(1).integers(0, 255, (9, 11, 3), dtype=np.uint8)
    _write_png(tmp_path / "one.png", image)
    with open_frames(tmp_path / "one.png") as source:
        assert (source.kind, len(source)) == ("image", 1)
        np.testing.assert_array_equal(source[0], image)


def test_read_image_gray_16bit_rgba_jpeg(tmp_path):
    gray16 = (np.arange(30, dtype=np.uint16).reshape(5, 6) * 2000).astype(np.uint16)
    assert cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    out = read_image(tmp_path / "g16.png")
    assert out.dtype == np.uint16 and out.shape == (5, 6)
    np.testing.assert_array_equal(out, gray16)

    gray = np.arange(30, dtype=np.uint8).reshape(5, 6)
    assert cv2.imwrite(str(tmp_path / "g.png"), gray)
    np.testing.assert_array_equal(read_image(tmp_path / "g.png"), gray)

    rgba = np.zeros((5, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 200, np.arange(30).reshape(5, 6) * 8
    assert cv2.imwrite(str(tmp_path / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgba)

    red = np.zeros((16, 16, 3), np.uint8)
    red[..., 0] = 255
    assert cv2.imwrite(str(tmp_path / "red.jpg"), cv2.cvtColor(red, cv2.COLOR_RGB2BGR))
    out = read_image(tmp_path / "red.jpg")
    assert out.shape == (16, 16, 3) and out[..., 0].mean() > 240 and out[..., 2].mean() < 15


# --- arrays ---------------------------------------------------------------------------------------


def test_numpy_arrays():
    video = np.random.default_rng(2).random((3, 5, 6, 3)).astype(np.float32)
    with open_frames(video) as source:
        assert (source.kind, source.path, len(source)) == ("array", None, 3)
        assert source[1].dtype == np.float32
        np.testing.assert_array_equal(source[-1], video[2])

    gray = np.zeros((4, 5, 6), np.uint16)
    assert open_frames(gray)[0].shape == (5, 6)
    assert open_frames(np.zeros((2, 5, 6, 1), np.uint8))[0].shape == (5, 6)

    with pytest.raises(InputError, match=r"\(5, 6\).*list"):
        open_frames(np.zeros((5, 6)))
    with pytest.raises(InputError, match=r"C in 1, 3, 4.*\(2, 5, 6, 2\)"):
        open_frames(np.zeros((2, 5, 6, 2)))


def test_list_of_frames_of_different_sizes():
    frames = [np.zeros((5, 6), np.uint8), np.ones((7, 8, 3), np.uint8), np.ones((7, 8, 4), np.uint8)]
    with open_frames(frames) as source:
        assert len(source) == 3 and source.ordered is False
        assert [f.shape for f in source] == [(5, 6), (7, 8, 3), (7, 8, 4)]
    assert open_frames((np.zeros((5, 6)),)).ordered is True
    with pytest.raises(InputError, match="frame 1 .*shape \\(5,\\)"):
        open_frames([np.zeros((5, 6)), np.zeros(5)])
    with pytest.raises(InputError, match="empty"):
        open_frames([])


def test_dask_array_reads_one_frame_at_a_time():
    da = pytest.importorskip("dask.array")
    data = np.random.default_rng(3).integers(0, 255, (6, 8, 9, 3), dtype=np.uint8)
    lazy = da.from_array(data, chunks=(1, 8, 9, 3))
    with open_frames(lazy) as source:
        assert (source.kind, len(source)) == ("array", 6)
        frame = source[4]
        assert isinstance(frame, np.ndarray)
        np.testing.assert_array_equal(frame, data[4])
        assert [i for i, _ in source.iter_frames([5, 4])] == [5, 4]


# --- path errors ----------------------------------------------------------------------------------


def test_path_errors(tmp_path):
    with pytest.raises(InputError, match="input not found: .*nothing.mp4"):
        open_frames(tmp_path / "nothing.mp4")
    (tmp_path / "data.xyz").write_text("?")
    with pytest.raises(InputError, match=r"unsupported input .*data.xyz.*\.mp4.*\.png"):
        open_frames(tmp_path / "data.xyz")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    with pytest.raises(InputError, match="no images in folder .*empty"):
        open_frames(tmp_path / "empty")
    with pytest.raises(InputError, match="input not found"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(InputError, match="broken.png"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(InputError, match="dict"):
        open_frames({"frames": 1})


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_exif_orientation_is_applied_as_photo_viewers_do(tmp_path, suffix):
    """A phone photo stored sideways with an orientation tag reads upright (as cv2.imread, PIL exif_transpose)."""
    from PIL import Image, ImageOps

    from napari_iconmat.core.evaluation.evaluate import _decode

    rng = np.random.default_rng(0)
    stored = (rng.random((30, 50, 3)) * 255).astype(np.uint8)
    for orientation in range(1, 9):
        image = Image.fromarray(stored)
        exif = image.getexif()
        exif[0x0112] = orientation
        path = tmp_path / f"o{orientation}{suffix}"
        image.save(path, exif=exif, **({"quality": 100} if suffix == ".jpg" else {}))
        with Image.open(path) as im:
            upright = np.asarray(ImageOps.exif_transpose(im))
        got = read_image(path)
        assert got.shape == upright.shape == ((50, 30, 3) if orientation >= 5 else (30, 50, 3))
        assert np.abs(got.astype(int) - upright).max() <= 1
        assert np.array_equal(_decode(path)[..., ::-1], got)  # the evaluator reads the same geometry (BGR there)


def test_a_folder_with_a_turned_photo_is_one_size(tmp_path):
    """Sizes come from headers: an orientation-6 photo stored 30x50 counts as 50x30, like its upright neighbours."""
    from PIL import Image

    upright = np.zeros((50, 30, 3), np.uint8)
    Image.fromarray(upright).save(tmp_path / "00000.jpg")
    turned = Image.fromarray(np.zeros((30, 50, 3), np.uint8))
    exif = turned.getexif()
    exif[0x0112] = 6
    turned.save(tmp_path / "00001.jpg", exif=exif)
    source = open_frames(tmp_path)
    assert source.ordered
    assert [source[i].shape for i in range(len(source))] == [(50, 30, 3), (50, 30, 3)]
