"""The widget as users meet it (issue 20): a layout that holds, pre-selection, visible progress, corrections.

Each test drives the widget in a real viewer under Xvfb and failed before its fix.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_iconmat.core.engines.classical.engine import ClassicalEngine
from napari_iconmat.core.errors import InputError
from napari_iconmat.core.evaluation.synth import synth_video
from napari_iconmat.core.registry import engine_names

pytestmark = pytest.mark.gui

N = 8


@pytest.fixture(scope="module")
def sequence():
    """8 frames of 96x64 (the start of a 40-frame synthetic video) and their exact alpha (as test_widget.py)."""
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
        self.calls = []
        original = ClassicalEngine.matte_frame

        def spy(engine, frame, query, **options):
            self.calls.append(next(i for i in range(len(frames)) if np.array_equal(frames[i], frame)))
            time.sleep(delay)
            return original(engine, frame, query, **options)

        monkeypatch.setattr(ClassicalEngine, "matte_frame", spy)


def _notifications(monkeypatch):
    """A list that grows by one for every notification napari would show (toasts)."""
    from napari.utils.notifications import notification_manager

    seen = []
    notification_manager.notification_ready.connect(lambda event: seen.append(event))
    return seen


def _settle(qtbot):
    from qtpy.QtWidgets import QApplication

    QApplication.processEvents()
    qtbot.wait(50)
    QApplication.processEvents()


# ---------------------------------------------------------------- 1: the window does not blow up
def test_the_widget_stays_within_its_dock_for_every_engine_and_message(make_napari_viewer, qtbot, sequence):
    frames, alpha = sequence
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    window = viewer.window._qt_window
    window.resize(1200, 800)
    window.show()
    _settle(qtbot)
    width = window.width()
    messages = [
        "not ready: needs " + "a very long list of model weights and their download instructions " * 12,
        "cannot write to " + "/a/folder/that/does/not/exist/and/has/a/very/long/name" * 12,
        "x" * 600,  # one word that cannot wrap
    ]
    for name in engine_names() + ["classical"]:
        widget._engine.value = name
        _settle(qtbot)
        assert widget.native.minimumSizeHint().width() <= 400, name
        assert window.width() == width, name
    for message in messages:
        widget._fail(InputError(message))
        _settle(qtbot)
        assert widget.native.minimumSizeHint().width() <= 400, message[:20]
        assert window.width() == width
        assert 280 <= widget.native.width() <= width // 2  # readable, and the canvas keeps the rest
    for label in (widget._engine_state, widget._status, widget._progress_text, widget._keyframes_label):
        assert label.native.wordWrap()


# ---------------------------------------------------------------- 2: pre-selection
def test_the_only_or_active_image_is_chosen_and_the_selection_is_followed(make_napari_viewer, sequence):
    from napari_iconmat._widget import MattingWidget

    frames, alpha = sequence
    viewer = make_napari_viewer()
    clip = viewer.add_image(frames, name="clip", rgb=True)
    widget = MattingWidget(viewer)
    assert widget.image_layer is clip
    labels = widget.new_prompt_layer()
    assert labels is not None and widget.prompt_layer is labels and labels.data.shape == (N, 64, 96)

    other = viewer.add_image(frames[:, ::-1], name="other", rgb=True)  # adding selects it: it is followed
    assert widget.image_layer is other
    viewer.layers.selection.active = clip
    assert widget.image_layer is clip
    viewer.layers.selection.active = labels
    assert widget.image_layer is clip and widget.prompt_layer is labels

    late = make_napari_viewer()  # a widget opened after the image: the active one
    first = late.add_image(frames, name="first", rgb=True)
    late.add_image(frames, name="second", rgb=True)
    late.layers.selection.active = first
    assert MattingWidget(late).image_layer is first


# ---------------------------------------------------------------- 3: corrections paint
def test_after_propagate_the_prompt_layer_is_active_and_paints(make_napari_viewer, qtbot, sequence):
    frames, alpha = sequence
    viewer, widget, labels = _setup(make_napari_viewer, frames, alpha)
    widget._with_composite.value = True
    assert widget.propagate() is not None
    assert viewer.layers.selection.active is labels  # already while the job runs
    _wait(qtbot, widget)
    assert viewer.layers.selection.active is labels and labels.mode == "paint"
    assert viewer.layers.selection.active is not widget.alpha_layer


# ---------------------------------------------------------------- 4: remove keyframe clears its strokes
def test_remove_keyframe_clears_its_strokes_undoably_and_stays_removed(make_napari_viewer, qtbot, sequence):
    frames, alpha = sequence
    viewer, widget, labels = _setup(make_napari_viewer, frames, alpha)
    widget.propagate()
    _wait(qtbot, widget)
    labels.data[6] = (alpha[6] > 0.5).astype(np.uint8)
    viewer.dims.set_current_step(0, 6)
    widget.propagate()
    _wait(qtbot, widget)
    assert widget.keyframes.indices == [0, 6]

    widget._goto.value = 6  # go-to from the keyframes list
    assert widget.current_frame() == 6
    widget.remove_keyframe()
    assert widget.keyframes.indices == [0] and not labels.data[6].any() and labels.data[0].any()
    assert "strokes cleared" in widget._status.value
    assert widget.propagate() is not None  # what the status says to do
    _wait(qtbot, widget)
    assert widget.keyframes.indices == [0]  # not put back
    labels.undo()
    np.testing.assert_array_equal(labels.data[6], (alpha[6] > 0.5).astype(np.uint8))


def test_remove_keyframe_of_a_soft_prompt_layer_keeps_it_removed(make_napari_viewer, qtbot, sequence):
    from napari_iconmat._widget import MattingWidget

    frames, alpha = sequence
    viewer = make_napari_viewer()
    clip = viewer.add_image(frames, name="clip", rgb=True)
    truth = viewer.add_image(alpha.copy(), name="truth", colormap="gray")
    widget = MattingWidget(viewer)
    widget.image_layer, widget.prompt_layer = clip, truth
    widget._options.value = "working_size=96"
    widget._range.value = "0:2"
    viewer.dims.set_current_step(0, 0)
    widget.propagate()
    _wait(qtbot, widget)
    widget.remove_keyframe()
    assert "is kept" in widget._status.value
    assert widget.propagate() is None and len(widget.keyframes) == 0 and "nothing is painted" in widget._status.value
    truth.data[0, :4] = 1.0  # the prompt changes: it is a keyframe again
    assert widget.propagate() is not None
    _wait(qtbot, widget)
    assert widget.keyframes.indices == [0]


# ---------------------------------------------------------------- 5: one message, no abort
@pytest.mark.parametrize("problem", ["folder", "format"])
def test_an_error_inside_a_job_is_one_message_and_not_reraised(make_napari_viewer, qtbot, monkeypatch, sequence, tmp_path, problem):
    frames, alpha = sequence
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    widget._range.value = "0:2"
    widget.propagate()
    _wait(qtbot, widget)
    (tmp_path / "a file").write_text("not a folder")
    widget._out.value = tmp_path / "a file" / "out" if problem == "folder" else tmp_path / "out"
    widget._formats.value = "png" if problem == "folder" else "png,jpeg2000"
    seen = _notifications(monkeypatch)
    with qtbot.capture_exceptions() as raised:
        worker = widget.export()
        if worker is not None:
            _wait(qtbot, widget)
        _settle(qtbot)
    assert raised == []  # nothing re-raised in the event loop (a scripted viewer aborted)
    assert len(seen) == 1, [str(getattr(e, "message", e)) for e in seen]
    assert widget._status.value and "\n" not in widget._status.value
    assert widget.worker is None and widget._export.enabled


# ---------------------------------------------------------------- 6: bad option values
@pytest.mark.parametrize("value, shown", [("abc", "'abc'"), ("0", "0")])
def test_bad_option_values_show_the_cores_one_line_before_any_work(make_napari_viewer, monkeypatch, sequence, value, shown):
    frames, alpha = sequence
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    widget._options.value = f"working_size={value}"
    seen = _notifications(monkeypatch)
    assert widget.propagate() is None and widget.worker is None
    assert widget._status.value == f"engine classical: working_size must be an integer from 64 to 8192, got {shown}"
    assert len(seen) == 1
    assert not widget.keyframes and widget.alpha_layer is None  # nothing was done


# ---------------------------------------------------------------- 7: visible progress
def test_a_progress_bar_and_the_keyframes_line_follow_the_frames(make_napari_viewer, qtbot, sequence):
    frames, alpha = sequence
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    widget._range.value = "5:2"
    assert widget.propagate() is None and "selects no frame" in widget._status.value  # an error first
    widget._range.value = ""
    seen = []
    worker = widget.propagate()
    assert widget._progress.max == N and widget._progress.value == 0
    worker.yielded.connect(
        lambda _v: seen.append((widget._progress.value, widget._progress_text.value, widget._keyframes_label.value))
    )
    _wait(qtbot, widget)
    assert [v for v, _, _ in seen] == list(range(1, N + 1))
    assert all("frames/s" in text and "ETA" in text for _, text, _ in seen)
    assert seen[0][1].startswith(f"1/{N} frames")
    # the line follows the frames (the worker may already have matted the next one when a frame is shown)
    counts = [int(line.split("(")[1].split("/")[0]) for _, _, line in seen]
    assert all(line.startswith("0 (") and line.endswith(f"/{N} frames matted)") for _, _, line in seen)
    assert counts == sorted(counts) and all(c >= i for i, c in enumerate(counts, 1)) and counts[-1] == N
    assert widget._status.value == f"matted {N} frames"  # no stale error
    assert widget._progress.value == N


# ---------------------------------------------------------------- 8: composite without matting again
def test_the_composite_and_its_background_change_at_once_without_matting(make_napari_viewer, qtbot, monkeypatch, sequence):
    frames, alpha = sequence
    spy = _FrameSpy(monkeypatch, frames)
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    widget.propagate()
    _wait(qtbot, widget)
    spy.calls.clear()
    viewer.dims.set_current_step(0, 3)
    widget._with_composite.value = True
    preview = viewer.layers["clip composite"]
    assert preview.data[3].std() > 10 and spy.calls == []
    result = widget.alpha_layer.data
    widget._background.value = "green"
    assert preview.data[3][result[3] == 0].tolist() == [[0, 204, 51]] * int((result[3] == 0).sum())
    viewer.dims.set_current_step(0, 5)  # another frame: its foreground is estimated once, when shown
    assert preview.data[5][result[5] == 0].tolist() == [[0, 204, 51]] * int((result[5] == 0).sum())
    assert widget.propagate() is None and "up to date" in widget._status.value
    assert spy.calls == []


def test_a_run_with_the_composite_on_keeps_foregrounds_for_a_new_background(make_napari_viewer, qtbot, monkeypatch, sequence):
    frames, alpha = sequence
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    widget._with_composite.value = True
    widget.propagate()
    _wait(qtbot, widget)
    spy = _FrameSpy(monkeypatch, frames)
    widget._background.value = "black"
    preview, result = viewer.layers["clip composite"].data, widget.alpha_layer.data
    for i in range(N):  # every frame at once, none matted again
        assert (preview[i][result[i] == 0] == 0).all() and preview[i].std() > 10
    assert spy.calls == []
    viewer.layers.remove(viewer.layers["clip composite"])  # deleted: Propagate makes a new one
    assert widget.propagate() is None and spy.calls == []
    assert (viewer.layers["clip composite"].data[3][result[3] == 0] == 0).all()


# ---------------------------------------------------------------- 9: frames between two keyframes, from both
def test_a_correction_blends_both_keyframes_and_makes_no_frame_of_the_sample_worse(make_napari_viewer, qtbot):
    from napari_iconmat._widget import MattingWidget

    viewer = make_napari_viewer()
    frames, truth = viewer.open_sample("napari-iconmat", "sequence")  # 16 frames of 320x180
    widget = MattingWidget(viewer)
    widget.image_layer = frames  # the ground truth, added last, is the active layer
    labels = widget.new_prompt_layer()
    widget._options.value = "working_size=96"
    before = None
    for index in (0, 14):  # the first mark, then a correction (the sample's frame 8 got worse with nearest-only)
        labels.data[index] = (truth.data[index] > 0.5).astype(np.uint8)
        viewer.dims.set_current_step(0, index)
        widget.propagate()
        _wait(qtbot, widget)
        ious = [_iou(widget.alpha_layer.data[i], truth.data[i]) for i in range(16)]
        before = before or ious
    after = ious
    keys = widget.keyframes
    assert keys.sources(8) == [0, 14]
    assert all(after[i] >= before[i] - 0.005 for i in range(1, 16)), [round(a - b, 3) for a, b in zip(after, before)]
    assert np.mean(after[1:14]) > np.mean(before[1:14])
    # frame 8 is the blend of both sides' mattes, weighted by closeness times each side's confidence
    key = dict(keys.plan(widget._make_engine()).keys)
    sides = {k: keys.side(8, k, key[k]) for k in (0, 14)}
    assert all(0.0 < sides[k].confidence <= 1.0 for k in (0, 14))  # the classical engine says how sure it is
    raw = {0: 6 / 14 * sides[0].confidence, 14: 8 / 14 * sides[14].confidence}
    weights = {k: w / sum(raw.values()) for k, w in raw.items()}
    assert keys.blend_weights(8, sides) == pytest.approx(weights)
    expected = weights[0] * sides[0].alpha + weights[14] * sides[14].alpha
    np.testing.assert_allclose(widget.alpha_layer.data[8], expected, atol=1e-5)


# ---------------------------------------------------------------- 10: cancel, then propagate
def test_cancel_then_propagate_mattes_only_the_frames_left(make_napari_viewer, qtbot, monkeypatch, sequence):
    frames, alpha = sequence
    spy = _FrameSpy(monkeypatch, frames, delay=0.2)
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    worker = widget.propagate()
    seen = []

    def on_frame(value):
        seen.append(value[0])
        if len(seen) == 3:
            widget.cancel()

    worker.yielded.connect(on_frame)
    _wait(qtbot, widget)
    done = sorted(widget.keyframes.done)
    assert len(done) < N
    first = widget.alpha_layer.data.copy()
    spy.calls.clear()
    assert widget.propagate() is not None
    _wait(qtbot, widget)
    assert spy.calls == [i for i in range(N) if i not in done]  # only the frames left, in order
    assert sorted(widget.keyframes.done) == list(range(N))
    np.testing.assert_array_equal(widget.alpha_layer.data[done], first[done])


# ---------------------------------------------------------------- the shape of the widget
def test_the_widget_is_grouped_in_the_order_of_work_with_tooltips(make_napari_viewer, sequence):
    from magicgui.widgets import Container
    from qtpy.QtWidgets import QGroupBox

    frames, alpha = sequence
    viewer, widget, _ = _setup(make_napari_viewer, frames, alpha)
    titles = [box.title().replace("&&", "&") for box in widget.native.findChildren(QGroupBox)]
    assert titles == ["1 Image & prompt", "2 Engine", "3 Propagate", "4 Correct", "5 Export"]
    fields = [w for _, widgets in widget._groups for w in widgets if not isinstance(w, Container)]
    fields += [widget._options, widget._propagate, widget._cancel, widget._status]
    assert all(w.tooltip for w in fields), [w.label or w.name for w in fields if not w.tooltip]
    assert widget._advanced.text() == "advanced" and not widget._advanced.isExpanded()  # options folded away
    assert widget._advanced.isAncestorOf(widget._options.native)


def test_the_status_after_a_run_names_the_frames_where_the_object_was_not_found(make_napari_viewer, qtbot):
    from napari_iconmat._widget import MattingWidget

    viewer = make_napari_viewer()
    frames, truth = viewer.open_sample("napari-iconmat", "sequence")
    data = np.array(frames.data)
    data[10:] = 128  # the object is gone from frame 10 on: a grey picture
    layer = viewer.add_image(data, rgb=frames.rgb, name="gone")
    widget = MattingWidget(viewer)
    widget.image_layer = layer
    labels = widget.new_prompt_layer()
    widget._options.value = "working_size=96"
    labels.data[0] = (truth.data[0] > 0.5).astype(np.uint8)
    viewer.dims.set_current_step(0, 0)
    widget.propagate()
    _wait(qtbot, widget)
    status = widget._status.value.replace("\u200b", "")
    assert "object not found in frames 10-15 (alpha all zero)" in status, status
    assert widget.alpha_layer.data[10:].max() == 0
