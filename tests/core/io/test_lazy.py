"""Tests of napari_iconmat.core.io.lazy: a video as a lazily decoded (T, H, W, C) array."""

from __future__ import annotations

import threading

import cv2
import numpy as np
import pytest

from napari_iconmat.core.errors import InputError
from napari_iconmat.core.io import open_frames
from napari_iconmat.core.io.lazy import LazyFrames, open_lazy

av = pytest.importorskip("av")

T, H, W = 30, 32, 48


def write_video(path, frames, gop=6):
    """Encode RGB uint8 frames as H.264 (near-lossless) with PyAV."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "10"})
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = gop
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    yy, xx = np.mgrid[0:H, 0:W]
    frames = [np.dstack([128 + 90 * np.sin(xx / 6 + i / 4), 128 + 90 * np.cos(yy / 5 - i / 6), np.full((H, W), 8 * i)]).astype(np.uint8) for i in range(T)]
    return write_video(tmp_path_factory.mktemp("lazy") / "clip.mp4", frames)


def test_video_as_array_decodes_only_what_is_looked_at(video):
    lazy = open_lazy(video, cache_frames=4)
    reference = open_frames(video)
    assert lazy.shape == (T, H, W, 3) and lazy.dtype == np.uint8 and lazy.ndim == 4 and len(lazy) == T
    assert lazy.reads == 1  # the first frame, for the shape
    np.testing.assert_array_equal(lazy[17], reference[17])
    np.testing.assert_array_equal(lazy[-1, 3:9, :, 1], reference[T - 1][3:9, :, 1])
    np.testing.assert_array_equal(lazy[5:8, 0], np.stack([reference[i][0] for i in range(5, 8)]))
    np.testing.assert_array_equal(lazy[4, ..., 2], reference[4][..., 2])
    assert lazy.reads == 1 + 1 + 1 + 3 + 1
    lazy[6], lazy[5]
    assert lazy.reads == 7  # still among the last 4 frames decoded
    lazy[17]
    assert lazy.reads == 8  # dropped from the cache of 4 frames: decoded again
    with pytest.raises(IndexError):
        lazy[T]
    lazy.close()
    reference.close()


def test_worker_source_is_independent_and_reads_are_thread_safe(video):
    lazy = open_lazy(video)
    worker = lazy.open_source()
    expected = [np.asarray(worker[i]) for i in range(T)]
    errors = []

    def slice_many():
        try:
            for i in range(T - 1, -1, -3):
                np.testing.assert_array_equal(lazy[i], expected[i])
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=slice_many) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    worker.close()
    lazy.close()


def test_arrays_and_mixed_folders(tmp_path):
    data = np.arange(2 * 3 * 4, dtype=np.uint16).reshape(2, 3, 4)
    lazy = LazyFrames(open_frames(data))
    np.testing.assert_array_equal(np.asarray(lazy), data)
    assert lazy.open_source()[1].tolist() == data[1].tolist()
    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((4, 5), np.uint8))
    cv2.imwrite(str(tmp_path / "b.png"), np.zeros((5, 5), np.uint8))
    with pytest.raises(InputError, match="differ in size"):
        open_lazy(tmp_path)
