"""Decoder checkpoints: a fake released-layout file through inspect / convert / strict load."""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from napari_iconmat.cli import main
from napari_iconmat.core.engines.iconmat import checkpoint as ckpt
from napari_iconmat.core.engines.iconmat.config import IconMattingConfig
from napari_iconmat.core.engines.iconmat.decoder import InContextDecoder
from napari_iconmat.core.errors import CheckpointError, WeightsNotFoundError

PACKAGE = Path(__file__).resolve().parents[4] / "napari_iconmat"


def _released_like(decoder_or_config=None, seed=0) -> dict:
    """Random tensors in the released layout: a Lightning-style dict, keys prefixed."""
    generator = torch.Generator().manual_seed(seed)
    layout = ckpt.expected_layout(decoder_or_config)
    state = OrderedDict()
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            state[ckpt.DECODER_PREFIX + key] = torch.tensor(1234, dtype=torch.int64)
        else:
            state[ckpt.DECODER_PREFIX + key] = torch.randn(shape, generator=generator)
    return {"epoch": 12, "global_step": 34567, "state_dict": state}


@pytest.fixture(scope="module")
def released_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "12-0.00800-mat.pth"
    torch.save(_released_like(), path)
    return path


def test_full_size_fake_round_trips_through_the_cli(released_file, tmp_path, capsys):
    assert main(["checkpoint", "inspect", str(released_file)]) == 0
    out = capsys.readouterr().out
    assert "matched:    89 of 89 decoder tensors (21,101,585 trainable parameters)" in out
    assert "loads strictly" in out and "other entries ignored: epoch, global_step" in out

    target = tmp_path / "iconmatting-decoder.safetensors"
    assert main(["checkpoint", "convert", str(released_file), str(target)]) == 0
    out = capsys.readouterr().out
    digest = re.search(r"sha256 ([0-9a-f]{64})", out).group(1)
    assert digest == hashlib.sha256(target.read_bytes()).hexdigest()
    assert main(["checkpoint", "inspect", str(target)]) == 0

    source = torch.load(released_file, weights_only=True)["state_dict"]
    for path in (released_file, target):
        decoder = InContextDecoder(IconMattingConfig())
        ckpt.load_decoder_weights(decoder, path)
        for key, value in decoder.state_dict().items():
            assert torch.equal(value, source[ckpt.DECODER_PREFIX + key]), key


def test_bare_state_dict_without_prefix_loads(tmp_path):
    config = IconMattingConfig.tiny()
    decoder = InContextDecoder(config)
    path = tmp_path / "bare.pt"
    torch.save(decoder.state_dict(), path)
    other = InContextDecoder(config)
    report = ckpt.load_decoder_weights(other, path)
    assert report.ok and "bare state dict" in report.container
    assert all(torch.equal(a, b) for a, b in zip(decoder.state_dict().values(), other.state_dict().values()))


def _broken(tmp_path, change) -> Path:
    config = IconMattingConfig.tiny()
    data = _released_like(config)
    change(data["state_dict"])
    path = tmp_path / "broken.pth"
    torch.save(data, path)
    return path


def test_wrong_shape_missing_and_unexpected_keys_are_named(tmp_path, capsys):
    config = IconMattingConfig.tiny()
    p = ckpt.DECODER_PREFIX

    def change(state):
        state[p + "detail_decoder.matting_head.matting_convs.3.bias"] = torch.zeros(2)
        del state[p + "in_context_fusion.attn_module.norm.weight"]
        state["feature_extractor.unet.conv_in.weight"] = torch.zeros(1)

    path = _broken(tmp_path, change)
    report = ckpt.inspect_checkpoint(path, config)
    assert not report.ok
    assert report.missing == ["in_context_fusion.attn_module.norm.weight"]
    assert report.unexpected == ["feature_extractor.unet.conv_in.weight"]
    assert report.wrong_shape == [("detail_decoder.matting_head.matting_convs.3.bias", (2,), (1,))]
    with pytest.raises(CheckpointError) as info:
        ckpt.load_decoder_weights(InContextDecoder(config), path)
    message = str(info.value)
    for part in ("1 missing (in_context_fusion.attn_module.norm.weight)", "1 unexpected (feature_extractor.unet.conv_in.weight)",
                 "matting_convs.3.bias [2] instead of [1]"):  # fmt: skip
        assert part in message
    with pytest.raises(CheckpointError, match="not converted"):
        ckpt.convert_checkpoint(path, tmp_path / "out.safetensors", config)
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.complex64])
def test_tensors_of_the_wrong_number_type_do_not_load(tmp_path, dtype):
    config = IconMattingConfig.tiny()
    p = ckpt.DECODER_PREFIX
    key = "detail_decoder.matting_head.matting_convs.3.weight"

    def change(state):
        state[p + key] = state[p + key].to(dtype)
        state[p + "detail_decoder.matting_head.matting_convs.1.num_batches_tracked"] = torch.tensor(3.5)

    report = ckpt.inspect_checkpoint(_broken(tmp_path, change), config)
    assert not report.ok
    assert sorted(report.wrong_dtype) == [
        ("detail_decoder.matting_head.matting_convs.1.num_batches_tracked", "float32", "an integer"),
        (key, str(dtype).replace("torch.", ""), "a real float"),
    ]
    assert "of the wrong number type" in report.problems()


def test_inspect_exits_1_on_a_mismatch(tmp_path, capsys):
    path = tmp_path / "tiny.pth"
    torch.save(_released_like(IconMattingConfig.tiny()), path)  # a tiny layout is not the released one
    assert main(["checkpoint", "inspect", str(path)]) == 1
    out = capsys.readouterr().out
    assert "does NOT load strictly" in out and "wrong shape" in out


class _Payload:
    """A pickled object that weights_only loading must refuse (never executed)."""


def test_pickles_with_python_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "trainer": _Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        ckpt.read_state_dict(path)


def test_unreadable_and_missing_files(tmp_path, capsys):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint"):
        ckpt.read_state_dict(junk)
    bad = tmp_path / "junk.safetensors"
    bad.write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="safetensors"):
        ckpt.read_state_dict(bad)
    with pytest.raises(WeightsNotFoundError, match="no file"):
        ckpt.read_state_dict(tmp_path / "missing.pth")
    assert main(["checkpoint", "inspect", str(junk)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("iconmat: error:")
    assert main(["checkpoint", "convert", str(junk), str(tmp_path / "out.bin")]) == 2


@pytest.mark.parametrize("damage", ["text", "random", "truncated", "flipped"])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_damaged_files_give_one_line_errors(released_file, tmp_path, capsys, damage, suffix):
    """Any damaged file is a CheckpointError (exit 2, one line), never a bare traceback."""
    if suffix == ".pth":
        good = released_file.read_bytes()
    else:
        converted = tmp_path / "good.safetensors"
        ckpt.convert_checkpoint(released_file, converted)
        good = converted.read_bytes()
    generator = torch.Generator().manual_seed(len(damage))
    if damage == "text":
        data = b"hi\n"
    elif damage == "random":
        data = bytes(torch.randint(0, 256, (4096,), generator=generator, dtype=torch.uint8).tolist())
    elif damage == "truncated":
        data = good[: len(good) // 3]
    else:  # bytes overwritten near the start, where the headers are
        data = bytearray(good)
        data[8:72] = bytes(range(64))
        data = bytes(data)
    path = tmp_path / f"damaged{suffix}"
    path.write_bytes(data)
    with pytest.raises(CheckpointError):
        ckpt.read_state_dict(path)
    assert main(["checkpoint", "inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("iconmat: error:")


def test_torch_load_is_always_weights_only():
    calls = []
    for path in PACKAGE.rglob("*.py"):
        for line in path.read_text().splitlines():
            if "torch.load(" in line and not line.lstrip().startswith(("#", ">>>")):
                calls.append((path.name, line.strip()))
    assert calls, "expected at least one torch.load call (the checkpoint reader)"
    for name, line in calls:
        assert "weights_only=True" in line, f"{name}: {line}"
