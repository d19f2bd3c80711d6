"""The ``icmp`` engine end to end on tiny random DINOv2, SAM and ViTMatte models, and its weights handling."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import cv2
import numpy as np
import pytest

from napari_iconmat.cli import main
from napari_iconmat.core import InputError, WeightsNotFoundError, load_query, make_engine, make_prompt, propagate
from napari_iconmat.core.engines.icmp.correspondence import FeatureMap
from napari_iconmat.core.engines.icmp.engine import IcmpEngine
from napari_iconmat.core.engines.icmp.trimap import pseudo_trimap
from napari_iconmat.core.evaluation.synth import synth_video, write_synth

N_FRAMES = 4


@pytest.fixture(scope="module")
def video():
    frames = list(synth_video(n_frames=N_FRAMES, size=(64, 48), seed=0))
    return np.stack([f.image for f in frames]), frames[0].alpha > 0.5


def _run(params, frames, mask, path, prompt=None):
    engine = make_engine("icmp", **params)
    query = engine.encode_reference(frames[0], prompt or make_prompt(mask))
    query.save(path)
    loaded = load_query(path, expected=query.signature)
    return query, loaded, dict(propagate(frames, loaded, make_engine("icmp", **params), reference_index=0))


def test_full_pipeline_through_the_engine_contract(tiny_icmp, video, tmp_path):
    frames, mask = video
    query, loaded, mattes = _run(tiny_icmp, frames, mask, tmp_path / "q.npz")
    assert query.signature["engine"] == "icmp"
    assert query.signature["params"]["refiner"] == "vitmatte"  # weights given: 'auto' picked ViTMatte
    for key, array in query.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[key], array, err_msg=key)
    labels = query.arrays["labels"]
    assert (labels == 1).sum() == 8 and (labels == 0).sum() == 4
    assert query.arrays["features"].shape == (6, 8, 32)  # 64 x 48 -> 32 x 24 px input, 4-px patches
    # the reference's matte is the user's mask refined in its pseudo-trimap band, certain elsewhere
    trimap = pseudo_trimap(mask, fraction=0.05)
    np.testing.assert_array_equal(mattes[0].alpha[trimap != 0.5], trimap[trimap != 0.5])
    assert sorted(mattes) == list(range(N_FRAMES))
    for index, matte in mattes.items():
        assert matte.alpha.shape == (48, 64) and matte.alpha.dtype == np.float32, index
        assert np.isfinite(matte.alpha).all() and 0 <= matte.alpha.min() and matte.alpha.max() <= 1, index
        assert matte.coarse.shape == (48, 64) and matte.coarse.dtype == bool, index
    # deterministic: fresh engines, same weights, same alphas
    _, _, again = _run(tiny_icmp, frames, mask, tmp_path / "again.npz")
    for index, matte in mattes.items():
        np.testing.assert_array_equal(again[index].alpha, matte.alpha, err_msg=f"frame {index}")


def test_frame_matte_is_the_pseudo_trimap_refined(tiny_icmp, video, monkeypatch):
    frames, mask = video
    engine = make_engine("icmp", **tiny_icmp)
    query = engine.encode_reference(frames[0], make_prompt(mask))
    matte, state = engine.matte_frame(frames[2], query, with_foreground=True)
    assert state is None  # every target on its own
    assert matte.foreground.shape == (48, 64, 3)
    if matte.coarse.any():
        trimap = pseudo_trimap(matte.coarse, fraction=0.05)
        np.testing.assert_array_equal(matte.alpha[trimap == 1], 1.0)
        np.testing.assert_array_equal(matte.alpha[trimap == 0], 0.0)
    else:
        assert not matte.alpha.any()


def test_scribble_and_alpha_prompts(tiny_icmp, video, tmp_path):
    frames, mask = video
    scribble = np.zeros(mask.shape, np.uint8)
    rows, cols = np.nonzero(mask)
    scribble[rows[len(rows) // 2], cols[len(cols) // 2]] = 1  # one click on the object
    scribble[0, 0] = 2  # one on the background
    query, _, mattes = _run(tiny_icmp, frames, mask, tmp_path / "s.npz", prompt=make_prompt(scribble, kind="scribble"))
    assert query.arrays["labels"].tolist() == [1, 0]
    assert len(mattes) == N_FRAMES
    soft = cv2.GaussianBlur(mask.astype(np.float32), (5, 5), 0)
    query = make_engine("icmp", **tiny_icmp).encode_reference(frames[0], make_prompt(soft, kind="alpha"))
    np.testing.assert_array_equal(query.arrays["alpha"], soft)  # a soft alpha is the reference's matte as given


def _layout_features(image):
    """Deterministic stand-in for DINOv2: blurred Lab at 3x3 offsets around 8-px cells."""
    cell = 8
    lab = cv2.cvtColor(image.astype(np.float32), cv2.COLOR_RGB2LAB) / np.array([100, 128, 128], np.float32)
    h, w = image.shape[:2]
    rows = ((np.arange(h // cell) + 0.5) * cell).astype(int)
    cols = ((np.arange(w // cell) + 0.5) * cell).astype(int)
    padded = cv2.copyMakeBorder(cv2.GaussianBlur(lab, (0, 0), cell / 2), cell, cell, cell, cell, cv2.BORDER_REFLECT)
    parts = [padded[rows + cell + dr][:, cols + cell + dc] for dr in (-cell, 0, cell) for dc in (-cell, 0, cell)]
    grid = np.concatenate(parts, axis=2)
    return FeatureMap.from_array(grid - grid.reshape(-1, grid.shape[2]).mean(axis=0), (h, w))


def test_carried_points_follow_the_object(tiny_icmp):
    rng = np.random.default_rng(3)
    noise = rng.random((14, 18, 3)).astype(np.float32)
    reference = cv2.resize(noise, (144, 112), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    shift = (16, 24)  # the whole scene moves down 16 and right 24 px
    target = np.roll(reference, shift, axis=(0, 1))
    mask = np.zeros((112, 144), bool)
    mask[30:70, 40:90] = True
    engine = make_engine("icmp", **tiny_icmp)
    engine._features = _layout_features  # the tiny DINOv2 is random: match on colour layout instead
    query = engine.encode_reference(reference, make_prompt(mask))
    points, labels = engine.carry_points(target, query)
    assert labels[0] == 1 and labels.tolist() == sorted(labels.tolist(), reverse=True)
    positives = points[labels == 1]
    assert len(positives) >= 4
    moved = np.roll(mask, shift, axis=(0, 1))
    assert moved[positives[:, 0].astype(int), positives[:, 1].astype(int)].all()  # on the moved object
    cells = [tuple((p // 8).astype(int)) for p in points]
    assert len(set(cells)) == len(cells)  # one point per target cell
    # when no match passes the check, the most similar positive alone is kept
    engine._params["cycle_radius"] = -1.0
    points, labels = engine.carry_points(target, query)
    assert labels.tolist() == [1] and moved[int(points[0, 0]), int(points[0, 1])]


def test_refiner_choice_and_bad_parameters(tiny_dinov2, tiny_sam, tiny_vitmatte, tmp_path):
    base = {"dinov2": tiny_dinov2, "sam": tiny_sam, "feature_side": 32}
    absent = str(tmp_path / "no-vitmatte")
    auto = make_engine("icmp", **base, vitmatte=absent)
    assert auto.params["refiner"] == "closed-form" and "vitmatte" not in auto.params
    assert make_engine("icmp", **base, vitmatte=tiny_vitmatte, refiner="closed-form").params["refiner"] == "closed-form"
    with pytest.raises(WeightsNotFoundError, match="ViTMatte: no model folder"):
        make_engine("icmp", **base, vitmatte=absent, refiner="vitmatte")
    with pytest.raises(InputError, match="refiner must be one of auto, vitmatte, closed-form, got 'knn'"):
        make_engine("icmp", **base, refiner="knn")
    with pytest.raises(InputError, match="has no option .dino.; its options: band"):
        make_engine("icmp", **base, dino=tiny_dinov2)
    with pytest.raises(WeightsNotFoundError, match="SAM: no model folder"):
        make_engine("icmp", dinov2=tiny_dinov2, sam=absent)


def _fake_hub_cache(root, repo_id, folder):
    """Lay a model folder out as the Hugging Face cache would after `huggingface-cli download repo_id`."""
    repo = root / ("models--" + repo_id.replace("/", "--"))
    shutil.copytree(folder, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")


def test_status_and_hub_ids_through_the_cache(tmp_path, monkeypatch, tiny_dinov2, tiny_sam, tiny_vitmatte):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    status = IcmpEngine.status()
    assert not status.ready
    assert "facebook/dinov2-base" in status.detail and "facebook/sam-vit-base" in status.detail
    assert "huggingface-cli download" in status.detail and "--engine-option dinov2=DIR" in status.detail
    assert "closed-form matting instead" in status.detail
    _fake_hub_cache(tmp_path, "facebook/dinov2-base", tiny_dinov2)
    _fake_hub_cache(tmp_path, "facebook/sam-vit-base", tiny_sam)
    status = IcmpEngine.status()
    assert status.ready and "ViTMatte 'hustvl/vitmatte-small-composition-1k' missing" in status.detail
    _fake_hub_cache(tmp_path, "hustvl/vitmatte-small-composition-1k", tiny_vitmatte)
    assert IcmpEngine.status().detail.endswith("ViTMatte found")
    engine = make_engine("icmp", feature_side=32)  # all three by their default hub ids, from the cache
    assert engine.params["dinov2"] == "facebook/dinov2-base" and engine.params["refiner"] == "vitmatte"


def test_engines_command_reports_icmp_without_loading_torch(tmp_path):
    code = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        import huggingface_hub.constants
        huggingface_hub.constants.HF_HUB_CACHE = {str(tmp_path)!r}
        from napari_iconmat.cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            status = main(["engines"])
        print(json.dumps({{"status": status, "out": out.getvalue(), "torch": "torch" in sys.modules}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["status"] == 0 and not report["torch"]
    (row,) = [line for line in report["out"].splitlines() if line.startswith("icmp")]
    assert " no " in row and "missing DINOv2 'facebook/dinov2-base'" in row


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_synth("video", tmp_path_factory.mktemp("icmp-synth") / "s", frames=3, size=(64, 48), seed=0)


def _options(params, prefix=""):
    return [arg for key, value in params.items() for arg in ("--engine-option", f"{prefix}{key}={value}")]


def test_cli_matte_with_icmp(sample, tiny_icmp, tmp_path, capsys):
    args = ["matte", str(sample / "frames"), "--reference-frame", "0", "--mask", str(sample / "reference_mask.png")]
    assert main([*args, "--out", str(tmp_path / "out"), "--engine", "icmp", *_options(tiny_icmp), "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "alpha").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "bad"), "--engine", "icmp", "--engine-option", "dinov2=/nonexistent/dino"]) == 2
    err = capsys.readouterr().err
    assert err == "iconmat: error: DINOv2: no model folder at /nonexistent/dino\n"


def test_cli_bench_runs_icmp_beside_classical(sample, tiny_icmp, tmp_path, capsys):
    report = tmp_path / "bench.json"
    args = ["bench", str(sample), "--engines", "classical,icmp", *_options(tiny_icmp, "icmp."), "--json", str(report), "--quiet"]
    assert main(args) == 0
    rows = json.loads(report.read_text())["rows"]
    methods = {row["method"] for row in rows}
    assert {"classical", "icmp", "icmp-coarse"} <= methods
    capsys.readouterr()
    assert main(["bench", str(sample), "--engines", "classical", "--engine-option", "icmp.sam=x"]) == 2
    assert "is for engine 'icmp', which is not among --engines (classical)" in capsys.readouterr().err
