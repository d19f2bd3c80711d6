"""Tests of the ``iconmat`` command line: exit codes, one-line errors, outputs of each subcommand."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
import tifffile

from napari_iconmat.cli import main
from napari_iconmat.core.pipeline import run as core_run
from napari_iconmat.core.evaluation.synth import write_synth

SIZE = (96, 64)  # (W, H)
N = 5


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_synth("video", tmp_path_factory.mktemp("synth"), frames=N, size=SIZE, seed=2)


def _matte(sample, out, *extra):
    return main(["matte", str(sample / "frames"), "--reference-frame", "0",
                 "--mask", str(sample / "reference_mask.png"), "--out", str(out), *extra])  # fmt: skip


def _one_line_error(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _complete(out) -> bool:
    record = out / "iconmat-run.json"
    return record.is_file() and json.loads(record.read_text()).get("complete") is True


def test_matte_happy_path(sample, tmp_path, capsys):
    assert _matte(sample, tmp_path / "out") == 0
    out = capsys.readouterr().out
    names = sorted(p.name for p in (tmp_path / "out" / "alpha").iterdir())
    assert names == [f"{i:05d}.png" for i in range(N)]
    alpha = cv2.imread(str(tmp_path / "out" / "alpha" / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.shape == (SIZE[1], SIZE[0]) and alpha.dtype == np.uint8
    assert "5 frames" in out and "frames/s" in out and str(tmp_path / "out" / "alpha") in out
    assert len(out.strip().splitlines()) == 1  # one paragraph
    assert _complete(tmp_path / "out")


def test_matte_formats_repeatable_and_comma_separated(sample, tmp_path, capsys):
    assert _matte(sample, tmp_path, "--format", "png16", "--format", "rgba,tiff", "--quiet") == 0
    alpha = cv2.imread(str(tmp_path / "alpha" / "00002.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.dtype == np.uint16 and alpha.ndim == 2
    rgba = cv2.imread(str(tmp_path / "rgba" / "00002.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (SIZE[1], SIZE[0], 4) and rgba.dtype == np.uint8
    stack = tifffile.imread(tmp_path / "alpha.tif")
    assert stack.shape == (N, SIZE[1], SIZE[0]) and stack.dtype == np.float32
    assert "alpha.tif" in capsys.readouterr().out


def test_engine_options_reach_the_engine(sample, tmp_path):
    assert _matte(sample, tmp_path, "--engine-option", "working_size=64", "--engine-option", "temporal=0", "--quiet") == 0
    params = json.loads((tmp_path / "iconmat-run.json").read_text())["engine"]["params"]
    assert params["working_size"] == 64 and params["temporal"] == 0


@pytest.mark.parametrize("option, expected", [("working_size", "are KEY=VALUE pairs"), ("no_such=1", "has no option 'no_such'")])
def test_bad_engine_option_is_one_line(sample, tmp_path, capsys, option, expected):
    assert _matte(sample, tmp_path, "--engine-option", option) == 2
    assert expected in _one_line_error(capsys.readouterr().err)


def test_matte_range(sample, tmp_path):
    assert _matte(sample, tmp_path, "--range", "1:3") == 0
    assert sorted(p.name for p in (tmp_path / "alpha").iterdir()) == ["00001.png", "00002.png"]


def test_matte_external_reference(sample, tmp_path, capsys):
    code = main(["matte", str(sample / "frames"), "--reference", str(sample / "frames" / "00000.png"),
                 "--mask", str(sample / "reference_mask.png"), "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    assert len(list((tmp_path / "alpha").iterdir())) == N
    assert "00000.png" in capsys.readouterr().out


def test_matte_cache_dir_reuses_the_query(sample, tmp_path, encode_calls, capsys):
    calls = encode_calls
    cache = tmp_path / "cache"
    assert _matte(sample, tmp_path / "a", "--cache-dir", str(cache)) == 0
    assert calls == [1]
    assert _matte(sample, tmp_path / "b", "--cache-dir", str(cache)) == 0
    assert calls == [1]  # loaded, not encoded
    assert "loaded from cache" in capsys.readouterr().out

    (cached,) = cache.iterdir()
    cached.write_bytes(b"\x00corrupt")
    assert _matte(sample, tmp_path / "c", "--cache-dir", str(cache)) == 0
    assert calls == [1, 1]  # recomputed
    captured = capsys.readouterr()
    warning = _one_line_error(captured.err)
    assert warning.startswith("iconmat: warning: ignoring cached reference query")
    assert _complete(tmp_path / "c")


@pytest.fixture
def bad(tmp_path):
    h, w = SIZE[1], SIZE[0]
    (tmp_path / "not_a_video.mp4").write_text("this is text, not a video")
    (tmp_path / "a_file").write_text("x")
    for name, array in {
        "small.png": np.full((10, 10), 255, np.uint8),
        "empty.png": np.zeros((h, w), np.uint8),
        "full.png": np.full((h, w), 255, np.uint8),
    }.items():
        cv2.imwrite(str(tmp_path / name), array)
    return tmp_path


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing input", "input not found"),
        ("text .mp4", "cannot open video"),
        ("mask of wrong size", "got (10, 10)"),
        ("empty mask", "marks no foreground"),
        ("full mask", "covers the whole frame"),
        ("reference out of range", "reference frame 60 is out of range: the input has 5 frames (0..4)"),
        ("out is a file", "is a file"),
        ("unknown engine", "invalid choice: 'nope'"),
        ("bad range", "--range must look like A:B"),
        ("empty range", "selects no frame"),
        ("bad format", "unknown output format 'gif'"),
        ("no reference", "one of the arguments --reference-frame --reference is required"),
    ],
)
def test_matte_bad_input_is_one_line_and_exit_2(sample, bad, capsys, case, expected):
    source, mask, out, extra = sample / "frames", sample / "reference_mask.png", bad / "out", []
    reference = ["--reference-frame", "0"]
    if case == "missing input":
        source = bad / "missing.mp4"
    elif case == "text .mp4":
        source = bad / "not_a_video.mp4"
    elif case == "mask of wrong size":
        mask = bad / "small.png"
    elif case == "empty mask":
        mask = bad / "empty.png"
    elif case == "full mask":
        mask = bad / "full.png"
    elif case == "reference out of range":
        reference = ["--reference-frame", "60"]
    elif case == "out is a file":
        out = bad / "a_file"
    elif case == "unknown engine":
        extra = ["--engine", "nope"]
    elif case == "bad range":
        extra = ["--range", "1-3"]
    elif case == "empty range":
        extra = ["--range", "4:2"]
    elif case == "bad format":
        extra = ["--format", "png,gif"]
    elif case == "no reference":
        reference = []
    code = main(["matte", str(source), *reference, "--mask", str(mask), "--out", str(out), *extra])
    captured = capsys.readouterr()
    assert code == 2
    line = _one_line_error(captured.err)
    assert expected in line and "error" in line
    assert captured.out == ""
    assert not _complete(out if out.is_dir() else bad)
    assert not (bad / "out").exists()


def test_bad_input_in_a_subprocess(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "napari_iconmat.cli", "matte", str(tmp_path / "missing.mp4"),
         "--reference-frame", "0", "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "out")],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert _one_line_error(result.stderr) == f"iconmat: error: input not found: {tmp_path / 'missing.mp4'}"
    assert result.stdout == ""


def test_interrupt_exits_130(monkeypatch, tmp_path, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(core_run, "matte_sequence", interrupted)
    assert main(["matte", "x", "--reference-frame", "0", "--mask", "m", "--out", str(tmp_path)]) == 130
    assert _one_line_error(capsys.readouterr().err) == "iconmat: interrupted"


def test_unexpected_errors_keep_their_traceback(monkeypatch, tmp_path):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(core_run, "matte_sequence", bug)
    with pytest.raises(ZeroDivisionError):
        main(["matte", "x", "--reference-frame", "0", "--mask", "m", "--out", str(tmp_path)])


@pytest.mark.parametrize("command", ["matte", "demo", "engines", "synth", "eval", "bench"])
def test_every_command_has_help_with_examples(command, capsys):
    assert main([command, "--help"]) == 0
    assert "examples:" in capsys.readouterr().out


def test_no_command_is_a_usage_error(capsys):
    assert main([]) == 2
    _one_line_error(capsys.readouterr().err)


def test_engines_lists_classical_as_ready(capsys):
    assert main(["engines"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["name", "needs", "ready"]
    classical = next(line for line in lines if line.startswith("classical"))
    assert classical.split()[1:3] == ["nothing", "yes"]


def test_demo_writes_the_contact_sheet(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path / "demo"), "--frames", "4", "--size", "96x64"]) == 0
    out = capsys.readouterr().out
    sheet = cv2.imread(str(tmp_path / "demo" / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > sheet.shape[1] / 3  # rows of frame | alpha | composite
    assert len(list((tmp_path / "demo" / "matte" / "alpha").iterdir())) == 4
    assert "mean SAD" in out and "mean IoU" in out and "4 frames" in out
    # a shorter demo in the same folder neither reads nor scores the earlier frames
    assert main(["demo", "--out", str(tmp_path / "demo"), "--frames", "3", "--size", "80x48", "--quiet"]) == 0
    assert "3 frames" in capsys.readouterr().out
    assert len(list((tmp_path / "demo" / "sample" / "frames").iterdir())) == 3


def test_synth_writes_the_layout(tmp_path, capsys):
    assert main(["synth", "collection", "--out", str(tmp_path), "--frames", "3", "--size", "64x48", "--seed", "1"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["alpha", "fg", "frames", "reference.json", "reference_mask.png"]
    assert len(list((tmp_path / "frames").iterdir())) == 3
    assert cv2.imread(str(tmp_path / "frames" / "00000.png")).shape == (48, 64, 3)
    assert str(tmp_path) in capsys.readouterr().out


def test_synth_bad_size_is_a_usage_error(tmp_path, capsys):
    assert main(["synth", "video", "--out", str(tmp_path), "--size", "big"]) == 2
    assert "WxH" in _one_line_error(capsys.readouterr().err)


def test_eval_gt_against_itself_scores_zero(sample, tmp_path, capsys):
    report = tmp_path / "sub" / "eval.json"
    code = main(["eval", "--pred", str(sample / "alpha"), "--gt", str(sample / "alpha"), "--json", str(report), "--per-frame"])
    assert code == 0
    out = capsys.readouterr().out
    assert "SAD" in out and "mean" in out
    data = json.loads(report.read_text())
    assert data["summary"]["SAD"] == 0.0 and data["n_frames"] == N
    assert not list(report.parent.glob(".*"))  # written atomically, no temporary left


def test_eval_missing_folder_is_one_line(tmp_path, capsys):
    assert main(["eval", "--pred", str(tmp_path / "nope"), "--gt", str(tmp_path)]) == 2
    assert "nope" in _one_line_error(capsys.readouterr().err)


def test_bench_writes_report_files(sample, tmp_path, capsys):
    files = [tmp_path / "bench.json", tmp_path / "drift.png", tmp_path / "worst.png"]
    code = main(["bench", str(sample), "--engines", "classical", "--max-frames", "2", "--check",
                 "--json", str(files[0]), "--plot", str(files[1]), "--sheet", str(files[2])])  # fmt: skip
    out = capsys.readouterr().out
    assert code == (1 if "MISS" in out else 0)
    assert all(path.is_file() for path in files)
    assert "classical" in out and "copy-reference" in out
    assert any(line.startswith(("PASS", "MISS")) for line in out.splitlines())
    assert json.loads(files[0].read_text())["engines"] == ["classical"]


def test_bench_unknown_engine_is_one_line(sample, capsys):
    assert main(["bench", str(sample), "--engines", "classical,nope"]) == 2
    assert "unknown engine 'nope'" in _one_line_error(capsys.readouterr().err)



def test_order_choices_match_the_core():
    from napari_iconmat import cli

    assert cli._ORDERS == core_run.ORDERS


def test_matte_alpha_videos_and_colour(sample, tmp_path, capsys):
    assert _matte(sample, tmp_path, "--format", "prores,webm,matte", "--colour", "premultiplied", "--quiet") == 0
    out = capsys.readouterr().out
    for name in ("matte.mov", "matte.webm", "alpha.mov"):
        assert (tmp_path / name).is_file() and name in out
    record = json.loads((tmp_path / "iconmat-run.json").read_text())
    assert record["colour"] == "premultiplied" and record["complete"] is True
    assert main(["matte", "x.mp4", "--reference-frame", "0", "--mask", "m.png", "--out", "o", "--colour", "linear"]) == 2
    assert "invalid choice: 'linear'" in _one_line_error(capsys.readouterr().err)


def test_matte_into_a_folder_in_use(sample, tmp_path, capsys):
    from napari_iconmat.core.io import FolderLock

    with FolderLock(tmp_path):
        assert _matte(sample, tmp_path, "--quiet") == 2
    assert "is in use by another iconmat run" in _one_line_error(capsys.readouterr().err)
    assert not (tmp_path / "alpha").exists()


def test_an_unquoted_glob_of_one_sequence_is_refused(sample, tmp_path, capsys):
    frames = sorted(str(p) for p in (sample / "frames").iterdir())  # what the shell makes of frames/*.png
    code = main(["matte", *frames, "--reference-frame", "0", "--mask", str(sample / "reference_mask.png"), "--out", str(tmp_path / "o")])
    line = _one_line_error(capsys.readouterr().err)
    assert code == 2 and f"{N} images of {sample / 'frames'}" in line and f"pass the folder {sample / 'frames'}" in line
    assert not (tmp_path / "o").exists()


def test_single_images_that_are_no_sequence_still_run(sample, tmp_path, capsys):
    a, b = tmp_path / "cat.png", tmp_path / "dog.png"
    for path in (a, b):
        cv2.imwrite(str(path), cv2.imread(str(sample / "frames" / "00000.png")))
    code = main(["matte", str(a), str(b), "--reference", str(sample / "frames" / "00000.png"),
                 "--mask", str(sample / "reference_mask.png"), "--out", str(tmp_path / "o"), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
