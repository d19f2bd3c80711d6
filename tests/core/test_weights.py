import pytest

from napari_iconmat.core.errors import WeightsNotFoundError
from napari_iconmat.core.weights import find_model_file, iconmat_home, resolve_pretrained


def test_iconmat_home_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ICONMAT_HOME", str(tmp_path))
    assert iconmat_home() == tmp_path
    monkeypatch.delenv("ICONMAT_HOME")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert iconmat_home() == tmp_path / "cache" / "iconmat"


def test_local_folder_resolves_and_checks_required_files(tmp_path):
    (tmp_path / "unet").mkdir()
    (tmp_path / "unet" / "config.json").write_text("{}")
    assert resolve_pretrained(tmp_path, what="SD", required=("unet/config.json",)) == tmp_path
    with pytest.raises(WeightsNotFoundError, match="lacks vae/config.json"):
        resolve_pretrained(tmp_path, what="SD", required=("vae/config.json",))


def test_uncached_hub_id_fails_at_once_with_a_hint(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError, match="not in the local Hugging Face cache"):
        resolve_pretrained("nobody/no-such-model", what="DINOv2")


def test_missing_folder_and_file(tmp_path, monkeypatch):
    with pytest.raises(WeightsNotFoundError, match="no model folder"):
        resolve_pretrained(tmp_path / "absent", what="SAM")
    monkeypatch.setenv("ICONMAT_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="put it at"):
        find_model_file("decoder.safetensors", what="IconMatting decoder")
    (tmp_path / "decoder.safetensors").write_bytes(b"x")
    assert find_model_file("decoder.safetensors", what="d") == tmp_path / "decoder.safetensors"
    with pytest.raises(WeightsNotFoundError, match="no file at"):
        find_model_file("x", what="d", explicit=tmp_path / "nope.pth")
