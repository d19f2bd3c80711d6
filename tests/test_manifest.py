"""The npe2 manifest (napari.yaml) and the sample data it contributes."""

from __future__ import annotations

from importlib import metadata, resources

import numpy as np
import pytest

from napari_iconmat._sample_data import sample_sequence


def test_manifest_is_registered_and_shipped():
    points = [ep for ep in metadata.entry_points(group="napari.manifest") if ep.name == "napari-iconmat"]
    assert [ep.value for ep in points] == ["napari_iconmat:napari.yaml"]
    assert resources.files("napari_iconmat").joinpath("napari.yaml").is_file()


def test_manifest_is_valid_npe2():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_distribution("napari-iconmat")
    assert manifest.name == "napari-iconmat"
    assert manifest.display_name == "napari-iconmat"
    manifest.validate_imports()  # every python_name resolves (imports no napari: see test_import_isolation)
    commands = {c.id: c.python_name for c in manifest.contributions.commands}
    assert commands["napari-iconmat.sample_sequence"] == "napari_iconmat._sample_data:sample_sequence"
    assert [s.command for s in manifest.contributions.sample_data] == ["napari-iconmat.sample_sequence"]
    assert commands["napari-iconmat.matting_widget"] == "napari_iconmat._widget:MattingWidget"
    assert [w.display_name for w in manifest.contributions.widgets] == ["In-context matting"]
    (reader,) = manifest.contributions.readers
    assert commands[reader.command] == "napari_iconmat._reader:napari_get_reader"
    assert reader.accepts_directories and "*.mp4" in reader.filename_patterns
    writers = {commands[w.command].split(":")[1]: w for w in manifest.contributions.writers}
    assert sorted(writers) == ["write_alpha", "write_alpha_png16", "write_alpha_tiff"]
    assert all(w.layer_types == ["image"] for w in writers.values())
    assert writers["write_alpha"].filename_extensions == [] and ".alpha.tif" in writers["write_alpha_tiff"].filename_extensions


def test_sample_sequence_layer_data():
    (frames, frames_meta, frames_kind), (alpha, alpha_meta, alpha_kind) = sample_sequence()
    assert frames.shape == (16, 180, 320, 3) and frames.dtype == np.uint8
    assert alpha.shape == (16, 180, 320) and alpha.dtype == np.float32
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0 and alpha[0].max() == 1.0
    assert (frames_kind, alpha_kind) == ("image", "image")
    assert frames_meta == {"name": "iconmat sample"}
    assert alpha_meta == {"name": "ground-truth alpha", "visible": False}
