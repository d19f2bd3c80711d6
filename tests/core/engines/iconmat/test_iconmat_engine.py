"""The iconmat engine through the engine contract, on the tiny random network (CPU, offline)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from napari_iconmat.cli import main
from napari_iconmat.core import InputError, load_query, make_engine, make_prompt, propagate
from napari_iconmat.core.engines.iconmat.decoder import ThinMaskWarning
from napari_iconmat.core.evaluation.synth import synth_video, write_synth

TINY = dict(random_init="tiny")

# At the tiny resolution (64 px, 16 px cells) the synthetic objects fill no cell: the fallback is
# expected here and checked on its own in test_thin_prompt_falls_back_with_a_warning.
pytestmark = pytest.mark.filterwarnings("ignore::napari_iconmat.core.engines.iconmat.decoder.ThinMaskWarning")


@pytest.fixture(scope="module")
def engine():
    return make_engine("iconmat", **TINY)


@pytest.fixture(scope="module")
def video():
    frames = list(synth_video(n_frames=3, size=(90, 50), seed=0))
    return np.stack([f.image for f in frames]), frames[0].alpha > 0.5


def test_contract_end_to_end(engine, video, tmp_path):
    frames, mask = video
    query = engine.encode_reference(frames[0], make_prompt(mask))
    assert query.engine == "iconmat" and query.arrays["query_tokens"].shape[1] == 16
    path = query.save(tmp_path / "q.npz")
    loaded = load_query(path, expected=query.signature)
    mattes = dict(propagate(frames, loaded, engine, reference_index=0))
    assert sorted(mattes) == [0, 1, 2]
    for matte in mattes.values():
        assert matte.alpha.shape == (50, 90) and matte.alpha.dtype == np.float32
        assert 0.0 <= matte.alpha.min() and matte.alpha.max() <= 1.0
        assert matte.explain is None
    # a second engine with the same parameters gives the same mattes, in any order
    again = make_engine("iconmat", **TINY)
    for index in (2, 1):
        alpha, _ = again.matte_frame(frames[index], loaded)
        assert np.array_equal(alpha.alpha, mattes[index].alpha)


def test_cached_query_equals_fresh_query(engine, video, tmp_path):
    frames, mask = video
    query = engine.encode_reference(frames[0], make_prompt(mask))
    loaded = load_query(query.save(tmp_path / "q.npz"))
    fresh, _ = engine.matte_frame(frames[1], query)
    cached, _ = engine.matte_frame(frames[1], loaded)
    assert np.array_equal(fresh.alpha, cached.alpha)


def test_params_are_the_signature(engine):
    assert engine.params == {
        "sd_model": "random:tiny", "decoder": "random:tiny:0", "fit": "letterbox", "resolution": 64,
        "timestep": 200, "ensemble_size": 4, "seed": 0, "dtype": "float32",
    }  # fmt: skip
    other = make_engine("iconmat", **TINY, timestep=100, ensemble_size=2, seed=3)
    assert (other.params["timestep"], other.params["ensemble_size"], other.params["seed"]) == (100, 2, 3)
    assert other.model.feature_extractor.config.ensemble_size == 2


def test_letterbox_and_crop_geometry(video):
    frames, mask = video
    for fit in ("letterbox", "crop"):
        engine = make_engine("iconmat", **TINY, fit=fit)
        query = engine.encode_reference(frames[0], make_prompt(mask))
        matte, _ = engine.matte_frame(frames[1][:, :77], query)  # another size than the reference
        assert matte.alpha.shape == (50, 77)
        if fit == "crop":  # outside the centred 50x50 square nothing is predicted
            assert (matte.alpha[:, :13] == 0).all() and (matte.alpha[:, 63:] == 0).all()
            assert (matte.alpha[:, 13:63] > 0).all()
        else:
            assert (matte.alpha > 0).all()


def test_crop_fit_refuses_an_object_outside_the_square():
    image = np.zeros((40, 120, 3), np.uint8)
    mask = np.zeros((40, 120), bool)
    mask[5:30, 2:20] = True
    engine = make_engine("iconmat", **TINY, fit="crop")
    with pytest.raises(InputError, match="letterbox"):
        engine.encode_reference(image, make_prompt(mask))


def test_thin_prompt_falls_back_with_a_warning(engine, video):
    frames, _ = video
    thin = np.zeros((50, 90), bool)
    thin[5:45, 40:42] = True
    with pytest.warns(ThinMaskWarning):
        query = engine.encode_reference(frames[0], make_prompt(thin))
    assert query.meta["fallback"] is True and query.meta["query_cells"] > 0
    matte, _ = engine.matte_frame(frames[1], query)
    assert np.isfinite(matte.alpha).all()


def test_explain_maps(video):
    frames, mask = video
    engine = make_engine("iconmat", **TINY, explain=True)
    assert "explain" not in engine.params
    query = engine.encode_reference(frames[0], make_prompt(mask))
    matte, _ = engine.matte_frame(frames[1], query)
    assert set(matte.explain) == {"inter_similarity", "intra_similarity"}
    for values in matte.explain.values():
        assert values.shape == (50, 90) and values.dtype == np.float32 and np.isfinite(values).all()
    assert matte.explain["inter_similarity"].min() >= 0  # a sum of softmaxes


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(fit="stretch"), "fit must be one of"),
        (dict(dtype="bfloat16", device="cpu"), "needs a GPU"),
        (dict(random_init="huge"), "random_init"),
        (dict(resolution=100), "multiple of 64"),
        (dict(ensemble_size=0), "ensemble_size"),
        (dict(device="tpu"), "device"),
        (dict(device="meta"), "device must be"),
        (dict(seed=2**63), "seed must be an integer from 0 to"),
        (dict(timestep="big"), "engine iconmat: timestep must be an integer from 0 to 999, got .big."),
        (dict(bogus=1), "has no option 'bogus'; its options: decoder, device"),
    ],
)
def test_bad_parameters(params, message):
    with pytest.raises(InputError, match=message):
        make_engine("iconmat", **{**TINY, **params})


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    from napari_iconmat.core.errors import WeightsNotFoundError

    monkeypatch.setenv("ICONMAT_HOME", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match=f"12-0.00800-mat.pth.*{tmp_path}") as caught:
        make_engine("iconmat", sd_model=str(tmp_path / "no-sd-here"))
    assert "Stable Diffusion 2.1" in str(caught.value) and "sd_model=FOLDER" in str(caught.value)  # both named at once
    with pytest.raises(WeightsNotFoundError, match="no file at"):
        make_engine("iconmat", decoder=str(tmp_path / "nope.pth"))


def test_status_is_cheap_and_names_what_is_missing(tmp_path):
    code = (
        "import json, sys\n"
        "from napari_iconmat.core.registry import engine_statuses\n"
        "s = engine_statuses()['iconmat']\n"
        "print(json.dumps({'ready': s.ready, 'detail': s.detail, 'torch': 'torch' in sys.modules}))\n"
    )
    env = {"ICONMAT_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PATH": "/usr/bin:/bin"}
    import os

    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    status = json.loads(result.stdout.strip().splitlines()[-1])
    assert not status["ready"] and not status["torch"]
    assert "12-0.00800-mat.pth" in status["detail"] and str(tmp_path) in status["detail"]
    assert "stabilityai/stable-diffusion-2-1" in status["detail"]


def test_cli_matte_with_explain_writes_heatmaps(tmp_path, capsys):
    sample = write_synth("video", tmp_path / "synth", frames=3, size=(80, 48), seed=1)
    out = tmp_path / "out"
    code = main(["matte", str(sample / "frames"), "--reference-frame", "0", "--mask", str(sample / "reference_mask.png"),
                 "--out", str(out), "--engine", "iconmat", "--engine-option", "random_init=tiny", "--explain", "--quiet",
                 "--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    for name in ("inter_similarity", "intra_similarity"):
        files = sorted(p.name for p in (out / "explain" / name).iterdir())
        assert files == ["00000.png", "00001.png", "00002.png"]
    import cv2

    heat = cv2.imread(str(out / "explain" / "inter_similarity" / "00001.png"))
    assert heat.shape == (48, 80, 3) and heat.std() > 0
    assert len(list((tmp_path / "cache").glob("iconmat-*.npz"))) == 1
    # the same folder matted again without --explain: no heatmap of the earlier run is left behind
    code = main(["matte", str(sample / "frames"), "--reference-frame", "0", "--mask", str(sample / "reference_mask.png"),
                 "--out", str(out), "--engine", "iconmat", "--engine-option", "random_init=tiny", "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert not list((out / "explain").rglob("*.png"))


def test_cli_explain_with_an_engine_without_maps(tmp_path, capsys):
    sample = write_synth("video", tmp_path / "synth", frames=2, size=(64, 48), seed=1)
    code = main(["matte", str(sample / "frames"), "--reference-frame", "0", "--mask", str(sample / "reference_mask.png"),
                 "--out", str(tmp_path / "out"), "--explain"])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no explain maps" in err[0]


def test_a_bad_decoder_fails_before_sd_is_loaded(tmp_path):
    import torch

    from napari_iconmat.core.errors import CheckpointError

    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {"in_context_decoder.x": torch.zeros(1)}}, bad)
    with pytest.raises(CheckpointError, match="does not fit the IconMatting decoder: 89 missing"):
        make_engine("iconmat", decoder=str(bad), sd_model=str(tmp_path / "no-sd-here"))


def test_running_out_of_gpu_memory_is_one_clear_error(video, monkeypatch):
    torch = pytest.importorskip("torch")
    engine = make_engine("iconmat", **TINY)
    frames, mask = video
    query = engine.encode_reference(frames[0], make_prompt(mask))

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(engine.model, "matte", out_of_memory)
    with pytest.raises(InputError, match="out of GPU memory .* while matting a frame; use --engine-option dtype=bfloat16"):
        engine.matte_frame(frames[1], query)
    monkeypatch.setattr(engine.model, "encode_reference", out_of_memory)
    with pytest.raises(InputError, match="while encoding the reference"):
        engine.encode_reference(frames[0], make_prompt(mask))
