"""The widget with ``sam2``: its readiness line in the engine box, and a correction conditioned on all keyframes."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gui


def test_sam2_is_in_the_engine_box_with_what_it_needs(make_napari_viewer, tmp_path, monkeypatch):
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # an empty cache
    from napari_iconmat._widget import MattingWidget

    widget = MattingWidget(make_napari_viewer())
    assert "sam2" in widget._engine.choices
    widget._engine.value = "sam2"
    state = widget._engine_state.value.replace("\u200b", "")  # the widget's wrap points
    assert state.startswith("not ready: needs weights: SAM 2 video")
    assert "huggingface-cli download facebook/sam2.1-hiera-tiny" in state


def test_a_sam2_correction_conditions_every_chain_on_all_keyframes(make_napari_viewer, qtbot, monkeypatch):
    """Keyframes 0 then 4 with the sam2 engine (tiny random model): the correction re-mattes every frame,
    each chain's session holding both keyframes; nothing changed: nothing to do; removing keyframe 4
    returns to keyframe 0's single conditioning and its mattes."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    import numpy as np

    from napari_iconmat._widget import MattingWidget
    from napari_iconmat.core.engine import EngineStatus
    from napari_iconmat.core.engines.sam2 import model as sam2_model
    from napari_iconmat.core.engines.sam2.engine import Sam2Engine
    from napari_iconmat.core.evaluation.synth import synth_video

    # the weights are not here; random_init=tiny needs none
    monkeypatch.setattr(Sam2Engine, "status", classmethod(lambda cls: EngineStatus(True, "weights: SAM 2 video")))
    conditioning = []
    original = sam2_model.step

    def step(*args, **kwargs):
        conditioning.append(sorted(kwargs["conditioning"]))
        return original(*args, **kwargs)

    monkeypatch.setattr(sam2_model, "step", step)
    sequence = list(synth_video(n_frames=5, size=(64, 48), seed=0))
    frames = np.stack([f.image for f in sequence])
    viewer = make_napari_viewer()
    widget = MattingWidget(viewer)
    widget.image_layer = viewer.add_image(frames, name="clip", rgb=True)
    labels = widget.new_prompt_layer()
    labels.data[0] = sequence[0].alpha > 0.5
    widget._engine.value = "sam2"
    widget._options.value = "random_init=tiny refiner=closed-form"

    def run(frame):
        viewer.dims.set_current_step(0, frame)
        worker = widget.propagate()
        assert worker is not None, widget._status.value
        started = widget._status.value
        qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
        return started

    assert "conditioned" not in run(0)
    assert conditioning == [[0]] * 4
    first = widget.alpha_layer.data.copy()

    conditioning.clear()
    labels.data[4] = sequence[4].alpha > 0.5
    assert "from keyframes 0, 4, each chain conditioned on all of them" in run(4)
    assert conditioning == [[0, 4]] * 6  # both sides of frames 1-3 (blending), each from both keyframes
    assert widget.keyframes.indices == [0, 4] and widget._status.value.startswith("matted 5 frames")
    assert widget.propagate() is None and "up to date" in widget._status.value

    conditioning.clear()
    widget.remove_keyframe()  # the current frame, 4
    assert widget.keyframes.indices == [0]
    run(4)
    assert conditioning == [[0]] * 4
    np.testing.assert_array_equal(widget.alpha_layer.data, first)
