"""The widget's engine box lists ``sam2`` with its readiness line (from the registry)."""

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
