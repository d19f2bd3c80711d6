"""Engine option checks (core/options.py): every option of every engine is declared and checked
by type and range, in one place the CLI, ``iconmat bench`` and the Python API all go through."""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from napari_iconmat.cli import main
from napari_iconmat.core import InputError
from napari_iconmat.core.evaluation.synth import write_synth
from napari_iconmat.core.options import Option, check_options
from napari_iconmat.core.pipeline.run import matte_sequence
from napari_iconmat.core.registry import check_engine_params, engine_names, get_engine_class


@pytest.mark.parametrize("name", engine_names())
def test_every_constructor_option_is_declared(name):
    cls = get_engine_class(name)
    accepted = {p for p in inspect.signature(cls.__init__).parameters if p != "self"}
    assert set(cls.option_specs) == accepted


@pytest.mark.parametrize("name", engine_names())
def test_defaults_pass_their_own_checks(name):
    cls = get_engine_class(name)
    defaults = {p.name: p.default for p in inspect.signature(cls.__init__).parameters.values() if p.name != "self"}
    check_options(name, cls.option_specs, defaults)


@pytest.mark.parametrize(
    "engine, params, message",
    [
        ("classical", {"working_size": 0}, "engine classical: working_size must be an integer from 64 to 8192, got 0"),
        ("classical", {"working_size": -100}, "working_size must be an integer from 64 to 8192, got -100"),
        ("classical", {"working_size": "big"}, "working_size must be an integer from 64 to 8192, got 'big'"),
        ("classical", {"working_size": 480.5}, "working_size must be an integer"),
        ("classical", {"band": "wide"}, "engine classical: band must be a number from 0.001 to 0.5, got 'wide'"),
        ("classical", {"band": float("nan")}, "band must be a number"),
        ("classical", {"adapt": True}, "adapt must be a number"),
        ("classical", {"refiner": "knn"}, "refiner must be one of closed-form, vitmatte, got 'knn'"),
        ("classical", {"vitmatte": 3}, "vitmatte must be a path or model id"),
        ("icmp", {"feature_side": 0}, "engine icmp: feature_side must be an integer from 14"),
        ("icmp", {"refiner": "knn"}, "engine icmp: refiner must be one of auto, vitmatte, closed-form"),
        ("icmp", {"band": -1}, "engine icmp: band must be a number"),
        ("iconmat", {"resolution": 100}, "engine iconmat: resolution must be an integer from 64 to 4096, a multiple of 64"),
        ("iconmat", {"ensemble_size": 0}, "ensemble_size must be an integer from 1 to 64"),
        ("iconmat", {"dtype": "int8"}, "dtype must be one of float32, bfloat16, float16"),
        ("iconmat", {"explain": "maybe"}, "explain must be true or false"),
    ],
)
def test_bad_values_are_one_input_error(engine, params, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        check_engine_params(engine, params)


def test_values_are_converted():
    specs = get_engine_class("classical").option_specs
    assert check_options("classical", specs, {"working_size": np.int64(96), "band": 1 / 50}) == {"working_size": 96, "band": 0.02}
    assert Option("bool").check("false") is False
    assert Option("path").check(Path("/x")) == Path("/x")
    assert Option("int", allow_none=True, multiple=64).check(None) is None


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_synth("video", tmp_path_factory.mktemp("synth"), frames=2, size=(64, 48), seed=1)


@pytest.mark.parametrize("option", ["working_size=0", "working_size=-100", "working_size=big", "band=wide"])
def test_cli_matte_refuses_before_any_work(sample, tmp_path, capsys, option):
    out = tmp_path / "out"
    code = main(["matte", str(sample / "frames"), "--reference-frame", "0", "--mask", str(sample / "reference_mask.png"),
                 "--out", str(out), "--engine-option", option, "--format", "png,prores"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("iconmat: error: engine classical: ")
    assert not out.exists()  # nothing written, no lock taken


def test_cli_several_inputs_refuse_once(sample, tmp_path, capsys):
    code = main(["matte", str(sample / "frames"), str(sample / "frames"), "--reference-frame", "0",
                 "--mask", str(sample / "reference_mask.png"), "--out", str(tmp_path), "--engine-option", "working_size=0"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "working_size must be" in err


def test_cli_bench_refuses(sample, capsys):
    assert main(["bench", str(sample), "--engine-option", "classical.band=wide"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "engine classical: band must be a number" in err


def test_python_api_refuses(sample, tmp_path):
    with pytest.raises(InputError, match="engine classical: working_size must be an integer from 64"):
        matte_sequence(sample / "frames", out_dir=tmp_path / "o", mask=sample / "reference_mask.png",
                       reference_frame=0, engine_params={"working_size": 0})  # fmt: skip
    assert not (tmp_path / "o").exists()
