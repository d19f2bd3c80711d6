"""The napari widget, driven programmatically in a real viewer (Xvfb): propagate, cancel, correct, export."""

from __future__ import annotations

import time

import numpy as np
import pytest
import tifffile

from napari_iconmat.core.engines.classical.engine import ClassicalEngine
from napari_iconmat.core.io import read_image
from napari_iconmat.core.evaluation.metrics import sad
from napari_iconmat.core.evaluation.synth import synth_video

pytestmark = pytest.mark.gui

N = 8


@pytest.fixture(scope="module")
def sequence():
    """8 frames of 96x64 (the start of a 40-frame synthetic video) and their exact alpha."""
    frames = list(synth_video(40, size=(96, 64), seed=1))[:N]
    return np.stack([f.image for f in frames]), np.stack([f.alpha for f in frames])


def _iou(a, b):
    a, b = a > 0.5, b > 0.5
    return (a & b).sum() / max(1, (a | b).sum())


def _setup(make_napari_viewer, frames, alpha, *, paint=0):
    from napari_iconmat._widget import MattingWidget

    viewer = make_napari_viewer()
    image = viewer.add_image(frames, name="clip", rgb=True)
    widget = MattingWidget(viewer)
    viewer.window.add_dock_widget(widget, name="iconmat")
    widget.image_layer = image
    labels = widget.new_prompt_layer()
    labels.data[paint] = (alpha[paint] > 0.5).astype(np.uint8)
    widget._options.value = "working_size=96"
    viewer.dims.set_current_step(0, paint)
    return viewer, widget, labels


def _wait(qtbot, widget, timeout=60_000):
    qtbot.waitUntil(lambda: widget.worker is None, timeout=timeout)


class _FrameSpy:
    """Records which frames ClassicalEngine.matte_frame is called on (by content); optional delay per frame."""

    def __init__(self, monkeypatch, frames, delay=0.0):
        self.calls, self.starts = [], []
        original = ClassicalEngine.matte_frame

        def spy(engine, frame, query, **options):
            self.starts.append(time.perf_counter())
            self.calls.append(next(i for i in range(len(frames)) if np.array_equal(frames[i], frame)))
            time.sleep(delay)
            return original(engine, frame, query, **options)

        monkeypatch.setattr(ClassicalEngine, "matte_frame", spy)


def test_propagate_fills_the_alpha_layer_frame_by_frame_close_to_the_truth(make_napari_viewer, qtbot, sequence):
    frames, alpha = sequence
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    filled = []
    worker = widget.propagate()
    assert worker is not None
    worker.yielded.connect(lambda _v: filled.append(int((widget.alpha_layer.data != 0).any(axis=(1, 2)).sum())))
    _wait(qtbot, widget)

    result = widget.alpha_layer.data
    assert result.shape == (N, 64, 96) and result.dtype == np.float32
    assert result.min() >= 0.0 and result.max() <= 1.0
    assert filled == sorted(filled) and filled[-1] == N and len(filled) >= N - 1  # frame by frame
    ious = [_iou(result[i], alpha[i]) for i in range(1, N)]
    sads = [sad(result[i], alpha[i]) for i in range(1, N)]
    copied = [sad(alpha[0] > 0.5, alpha[i]) for i in range(1, N)]  # baseline: copy the reference mask
    assert np.mean(ious) > 0.8, ious
    assert np.mean(sads) < 0.5 * np.mean(copied), (sads, copied)
    assert "matted 8 frames" in widget._status.value
    assert widget._keyframes_label.value.startswith("0 (8/8")


def test_cancel_stops_within_a_frame_and_propagate_resumes(make_napari_viewer, qtbot, monkeypatch, sequence):
    frames, alpha = sequence
    spy = _FrameSpy(monkeypatch, frames, delay=0.25)
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    seen, cancelled_at = [], []
    worker = widget.propagate()

    def on_frame(value):
        seen.append(value[0])
        if len(seen) == 2:
            cancelled_at.append(time.perf_counter())
            widget.cancel()

    worker.yielded.connect(on_frame)
    _wait(qtbot, widget)
    assert widget.worker is None and "cancelled after" in widget._status.value
    assert len(seen) < N
    # at most the frame in progress finishes: no new frame starts after Cancel
    assert len([t for t in spy.starts if t > cancelled_at[0]]) <= 1
    assert len(seen) == 1 + len(spy.calls)  # the keyframe's own matte, then each frame started was delivered
    done = sorted(widget.keyframes.done)
    assert done == sorted(seen)
    assert [i for i in range(N) if widget.alpha_layer.data[i].any()] == done

    # the next Propagate finishes the job
    assert widget.propagate() is not None
    _wait(qtbot, widget)
    assert sorted(widget.keyframes.done) == list(range(N))


def test_a_correction_runs_only_its_own_chains(make_napari_viewer, qtbot, monkeypatch, sequence, encode_calls):
    frames, alpha = sequence
    spy = _FrameSpy(monkeypatch, frames)
    viewer, widget, labels = _setup(make_napari_viewer, frames, alpha)
    widget.propagate()
    _wait(qtbot, widget)
    assert sorted(spy.calls) == list(range(1, N))
    before = widget.alpha_layer.data.copy()

    # paint a correction on frame 6 and propagate from there
    spy.calls.clear()
    labels.data[6] = (alpha[6] > 0.5).astype(np.uint8)
    viewer.dims.set_current_step(0, 6)
    widget.propagate()
    _wait(qtbot, widget)
    after = widget.alpha_layer.data
    # 1..5 lie between keyframes 0 and 6: 6's backward chain is matted and blended with 0's kept mattes
    # until it agrees with them (then the frames before keep 0's mattes); 7 is after 6; 0's chain is not
    # matted again
    met = spy.calls[-1]
    assert spy.calls == [7, *range(5, met - 1, -1)] and 1 <= met <= 5
    for i in range(0, met):
        np.testing.assert_array_equal(after[i], before[i])
    assert _iou(after[6], alpha[6]) > _iou(before[6], alpha[6])
    assert widget._keyframes_label.value.startswith("0, 6")
    assert len(encode_calls) == 2

    # the same reference again: nothing recomputed, the cached queries are used
    spy.calls.clear()
    assert widget.propagate() is None
    assert spy.calls == [] and len(encode_calls) == 2 and "up to date" in widget._status.value


def test_export_writes_the_cli_layout(make_napari_viewer, qtbot, sequence, tmp_path):
    frames, alpha = sequence
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    widget._range.value = "0:3"
    widget._direction.value = "forward"
    widget.propagate()
    _wait(qtbot, widget)
    widget._out.value = tmp_path / "out"
    widget._formats.value = "png16,tiff,rgba"
    assert widget.export() is not None
    _wait(qtbot, widget)
    names = ["00000.png", "00001.png", "00002.png"]
    assert sorted(p.name for p in (tmp_path / "out" / "alpha").iterdir()) == names
    assert sorted(p.name for p in (tmp_path / "out" / "rgba").iterdir()) == names
    result = widget.alpha_layer.data
    png = read_image(tmp_path / "out" / "alpha" / "00002.png")
    assert png.dtype == np.uint16 and np.abs(png / 65535.0 - result[2]).max() < 1e-4
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "out" / "alpha.tif"), result[:3])
    assert (tmp_path / "out" / "iconmat-run.json").is_file()
    assert "exported 3 frames" in widget._status.value

    # File > Save on the alpha layer: a name ending in .alpha.tif goes to the plugin's writer
    viewer.layers.selection = {widget.alpha_layer}
    saved = viewer.layers.save(str(tmp_path / "clip.alpha.tif"), selected=True)
    assert saved == [str(tmp_path / "clip.alpha.tif")]
    np.testing.assert_array_equal(tifffile.imread(saved[0]), result)


def test_errors_are_one_line_messages(make_napari_viewer, sequence):
    frames, alpha = sequence
    viewer, widget, labels = _setup(make_napari_viewer, frames, alpha)
    viewer.dims.set_current_step(0, 3)
    assert widget.propagate() is None
    assert widget._status.value == "nothing is painted on frame 3: paint the object there (label 1), then Propagate"
    widget._options.value = "working_size"
    viewer.dims.set_current_step(0, 0)
    assert widget.propagate() is None and "KEY=VALUE" in widget._status.value
    widget._options.value = "working_size=96"
    widget._range.value = "5:2"
    assert widget.propagate() is None and "selects no frame" in widget._status.value
    assert widget.export() is None and widget._status.value == "nothing to export yet: Propagate first"


def test_video_from_the_reader_with_a_soft_alpha_prompt(make_napari_viewer, qtbot, sequence, tmp_path):
    from napari_iconmat._widget import MattingWidget
    from napari_iconmat.core.io.lazy import LazyFrames

    av = pytest.importorskip("av")
    frames, alpha = sequence
    path = tmp_path / "clip.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=25, options={"crf": "12"})
        stream.height, stream.width, stream.pix_fmt = 64, 96, "yuv420p"
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)

    viewer = make_napari_viewer()
    (video,) = viewer.open(str(path), plugin="napari-iconmat")
    assert isinstance(video.data, LazyFrames) and video.data.shape == (N, 64, 96, 3) and video.rgb
    truth = viewer.add_image(alpha, name="ground truth", colormap="gray")
    widget = MattingWidget(viewer)
    widget.image_layer = video
    widget.prompt_layer = truth  # a soft alpha the user already has
    widget._options.value = "working_size=96"
    viewer.dims.set_current_step(0, 0)
    widget.propagate()
    _wait(qtbot, widget)
    result = widget.alpha_layer.data
    assert np.mean([_iou(result[i], alpha[i]) for i in range(1, N)]) > 0.75
    assert video.data.reads <= 2 * 16  # the viewer decoded a few frames, not a copy of the video


def test_plugin_contributions_in_the_viewer(make_napari_viewer):
    from napari_iconmat._widget import MattingWidget

    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-iconmat", "In-context matting")
    assert isinstance(widget, MattingWidget)
    layers = viewer.open_sample("napari-iconmat", "sequence")
    assert [layer.name for layer in layers] == ["iconmat sample", "ground-truth alpha"]
    widget.reset_choices()
    assert [name for name, _ in widget._image_choices()] == ["iconmat sample", "ground-truth alpha"]


def test_screenshot_of_the_viewer_with_the_widget_and_a_result(make_napari_viewer, qtbot, sequence, tmp_path):
    frames, alpha = sequence
    viewer, widget, labels = _setup(make_napari_viewer, frames, alpha)
    widget._with_composite.value = True
    widget.propagate()
    _wait(qtbot, widget)
    labels.visible = False
    viewer.dims.set_current_step(0, 5)
    viewer.reset_view()
    path = tmp_path / "napari_screenshot.png"
    shot = viewer.screenshot(path=str(path), canvas_only=False)
    assert path.is_file()
    saved = read_image(path)
    assert saved.shape[0] >= 500 and saved.shape[1] >= 800
    canvas = viewer.screenshot(canvas_only=True)
    assert (canvas[..., :3].max(axis=2) > 30).mean() > 0.2  # the result is drawn, not a black canvas
    composite = viewer.layers["clip composite"].data
    assert composite.shape == (N, 64, 96, 3) and composite[5].std() > 10
    assert shot.shape == saved.shape


def test_a_single_2d_image_and_a_composite(make_napari_viewer, qtbot, sequence):
    from napari_iconmat._widget import MattingWidget

    frames, alpha = sequence
    viewer = make_napari_viewer()
    image = viewer.add_image(frames[0], name="photo", rgb=True)
    widget = MattingWidget(viewer)
    widget.image_layer = image
    labels = widget.new_prompt_layer()
    assert labels.data.shape == (64, 96)
    labels.data[...] = np.where(alpha[0] > 0.5, 1, 0).astype(np.uint8)
    widget._with_composite.value = True
    widget._background.value = "green"
    widget._options.value = "working_size=96"
    assert widget.propagate() is not None
    _wait(qtbot, widget)
    result = widget.alpha_layer.data
    assert result.shape == (64, 96) and _iou(result, alpha[0]) > 0.9
    preview = viewer.layers["photo composite"].data
    assert preview.shape == (64, 96, 3) and preview.dtype == np.uint8 and preview.std() > 10
    assert preview[result == 0].tolist() == [[0, 204, 51]] * int((result == 0).sum())  # green where alpha is 0
    assert widget.propagate() is None and "up to date" in widget._status.value


def test_deleting_the_alpha_layer_mattes_again_into_a_new_one(make_napari_viewer, qtbot, sequence):
    frames, alpha = sequence
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    widget._range.value = "0:2"
    widget.propagate()
    _wait(qtbot, widget)
    viewer.layers.remove(widget.alpha_layer)
    assert widget.propagate() is not None
    _wait(qtbot, widget)
    assert widget.alpha_layer in viewer.layers and widget.alpha_layer.data[1].any()


def test_scribble_strokes_as_the_prompt(make_napari_viewer, qtbot, sequence):
    import cv2

    frames, alpha = sequence
    viewer, widget, labels = _setup(make_napari_viewer, frames, alpha)
    mask = (alpha[0] > 0.5).astype(np.uint8)
    inside = cv2.erode(mask, np.ones((5, 5), np.uint8)) > 0
    outside = cv2.dilate(mask, np.ones((15, 15), np.uint8)) == 0
    strokes = np.zeros_like(mask)
    strokes[::4][inside[::4]] = 1  # horizontal strokes every 4th row: 1 on the object,
    strokes[::4][outside[::4]] = 2  # 2 on the background, 0 (unknown) elsewhere
    labels.data[0] = strokes
    widget.propagate()
    _wait(qtbot, widget)
    assert widget.keyframes[0].prompt.kind == "scribble"
    result = widget.alpha_layer.data
    assert np.mean([_iou(result[i], alpha[i]) for i in range(N)]) > 0.75
