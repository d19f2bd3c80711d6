"""Tests of napari_iconmat.core.pipeline.run: the main job, its cache, its run record, the contact sheet."""

from __future__ import annotations

import json
import warnings

import cv2
import numpy as np
import pytest
import tifffile

from napari_iconmat.core.engines.classical.engine import ClassicalEngine
from napari_iconmat.core.errors import InputError
from napari_iconmat.core.io.readers import read_image
from napari_iconmat.core.pipeline.run import (
    RUN_RECORD,
    RunSummary,
    matte_sequence,
    query_cache_path,
)
from napari_iconmat.core.evaluation.sheet import make_contact_sheet
from napari_iconmat.core.evaluation.synth import write_synth

SIZE = (96, 64)  # (W, H)
N = 5


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """A 5-frame synthetic video: frames/00000.png.., reference_mask.png, ground-truth alpha/."""
    return write_synth("video", tmp_path_factory.mktemp("synth"), frames=N, size=SIZE, seed=1)


def _run(sample, out, **kwargs):
    options = dict(out_dir=out, mask=sample / "reference_mask.png", reference_frame=0)
    options.update(kwargs)
    return matte_sequence(sample / "frames", **options)


def _record(out):
    return json.loads((out / RUN_RECORD).read_text())


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_writes_one_alpha_per_frame_and_a_complete_record(sample, tmp_path):
    calls = []
    summary = _run(sample, tmp_path / "out", on_progress=lambda done, total: calls.append((done, total)))

    assert isinstance(summary, RunSummary)
    assert summary.frames == N and summary.engine == "classical"
    assert summary.fps > 0 and summary.seconds > 0
    assert _names(tmp_path / "out" / "alpha") == [f"{i:05d}.png" for i in range(N)]
    alpha = cv2.imread(str(tmp_path / "out" / "alpha" / "00003.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.shape == (SIZE[1], SIZE[0]) and alpha.dtype == np.uint8
    assert calls == [(i, N) for i in range(N + 1)]
    record = _record(tmp_path / "out")
    assert record["complete"] is True and record["frames_written"] == N
    assert record["engine"]["name"] == "classical" and record["engine"]["params"]
    assert record["reference"] == {"frame": 0} and record["formats"] == ["png"]
    assert record["order"] == "sequence"
    assert "5 frames" in summary.describe() and "frames/s" in summary.describe()
    assert not list((tmp_path / "out").glob(".*"))  # no temporary files left


def test_formats_png16_rgba_tiff(sample, tmp_path):
    summary = _run(sample, tmp_path, formats="png16,rgba,tiff")
    assert set(summary.outputs) == {"alpha", "rgba", "tiff"}
    alpha = cv2.imread(str(tmp_path / "alpha" / "00000.png"), cv2.IMREAD_UNCHANGED)
    assert alpha.dtype == np.uint16 and alpha.shape == (SIZE[1], SIZE[0])
    rgba = cv2.imread(str(tmp_path / "rgba" / "00004.png"), cv2.IMREAD_UNCHANGED)
    assert rgba.shape == (SIZE[1], SIZE[0], 4) and rgba.dtype == np.uint8
    stack = tifffile.imread(tmp_path / "alpha.tif")
    assert stack.shape == (N, SIZE[1], SIZE[0]) and stack.dtype == np.float32
    assert 0.0 <= stack.min() and stack.max() <= 1.0
    # the TIFF and the 16-bit PNG hold the same mattes
    np.testing.assert_allclose(stack[0], alpha / 65535.0, atol=1e-4)


@pytest.mark.parametrize("frame_range", ["1:3", (1, 3)])
def test_range_writes_only_the_range(sample, tmp_path, frame_range):
    summary = _run(sample, tmp_path, frame_range=frame_range)
    assert summary.frames == 2
    assert _names(tmp_path / "alpha") == ["00001.png", "00002.png"]
    assert _record(tmp_path)["range"] == [1, 3]


def test_forward_direction_from_a_middle_reference(sample, tmp_path):
    _run(sample, tmp_path, reference_frame=2, direction="forward", mask=_mask_of(sample, 2))
    assert _names(tmp_path / "alpha") == ["00002.png", "00003.png", "00004.png"]


def _mask_of(sample, index):
    gt = cv2.imread(str(sample / "alpha" / f"{index:05d}.png"), cv2.IMREAD_UNCHANGED)
    return gt > 32767


@pytest.mark.parametrize("as_array", [False, True])
def test_external_reference_image(sample, tmp_path, as_array):
    reference = sample / "frames" / "00000.png"
    if as_array:
        reference = read_image(reference)
    summary = _run(sample, tmp_path, reference_frame=None, reference_image=reference)
    assert summary.frames == N
    assert "image" in _record(tmp_path)["reference"]


def test_collection_order_and_arrays(sample, tmp_path):
    frames = np.stack([read_image(sample / "frames" / f"{i:05d}.png") for i in range(3)])
    summary = matte_sequence(frames, out_dir=tmp_path, mask=_mask_of(sample, 0), reference_frame=0, order="collection")
    assert summary.frames == 3
    assert _record(tmp_path)["order"] == "collection"


def test_sequence_order_needs_one_frame_size(tmp_path):
    frames = [np.zeros((40, 50, 3), np.uint8), np.zeros((30, 50, 3), np.uint8)]
    mask = np.zeros((40, 50), bool)
    mask[10:20, 10:20] = True
    with pytest.raises(InputError, match="order 'sequence' needs frames of one size"):
        matte_sequence(frames, out_dir=tmp_path / "out", mask=mask, reference_frame=0, order="sequence")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- cache


def test_cache_is_saved_then_loaded(sample, tmp_path, encode_calls):
    calls = encode_calls
    first = _run(sample, tmp_path / "a", cache_dir=tmp_path / "cache")
    assert calls == [1] and first.query_source == "encoded"
    cached = list((tmp_path / "cache").iterdir())
    assert [p.name for p in cached] == [first.query_path.name]
    assert first.query_path.name.startswith("classical-") and first.query_path.suffix == ".npz"

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        second = _run(sample, tmp_path / "b", cache_dir=tmp_path / "cache")
    assert calls == [1] and second.query_source == "cache"
    assert "cache" in second.describe()
    for name in _names(tmp_path / "a" / "alpha"):  # same query, same mattes
        a = cv2.imread(str(tmp_path / "a" / "alpha" / name), cv2.IMREAD_UNCHANGED)
        b = cv2.imread(str(tmp_path / "b" / "alpha" / name), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(a, b)


def test_cache_name_matches_the_query_key(sample):
    from napari_iconmat.core.prompt import make_prompt
    from napari_iconmat.core.reference import reference_signature

    engine = ClassicalEngine()
    image = read_image(sample / "frames" / "00000.png")
    prompt = make_prompt(read_image(sample / "reference_mask.png"))
    signature = reference_signature(image, prompt, engine=engine.name, version=engine.version, params=engine.params)
    query = engine.encode_reference(image, prompt)
    assert query_cache_path("c", signature).name == f"classical-{query.key}.npz"


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other-params"])
def test_bad_cache_file_is_ignored_and_replaced(sample, tmp_path, request, damage):
    first = _run(sample, tmp_path / "a", cache_dir=tmp_path / "cache")
    path = first.query_path
    if damage == "garbage":
        path.write_bytes(b"not a query")
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:1000])
    else:  # a valid query of other parameters under this name
        other = _run(sample, tmp_path / "x", cache_dir=tmp_path / "other", engine_params={"smoothness": 5.0})
        path.write_bytes(other.query_path.read_bytes())
    calls = request.getfixturevalue("encode_calls")
    with pytest.warns(UserWarning, match="ignoring cached reference query"):
        summary = _run(sample, tmp_path / "b", cache_dir=tmp_path / "cache")
    assert calls == [1] and summary.frames == N and summary.query_source == "encoded"
    third = _run(sample, tmp_path / "c", cache_dir=tmp_path / "cache")  # the file was replaced
    assert calls == [1] and third.query_source == "cache"


# ---------------------------------------------------------------- validation


def _write(path, array):
    cv2.imwrite(str(path), array)
    return path


@pytest.fixture
def bad_files(tmp_path):
    h, w = SIZE[1], SIZE[0]
    (tmp_path / "not_a_video.mp4").write_text("hello")
    (tmp_path / "a_file").write_text("x")
    return {
        "small": _write(tmp_path / "small.png", np.full((10, 10), 255, np.uint8)),
        "empty": _write(tmp_path / "empty.png", np.zeros((h, w), np.uint8)),
        "full": _write(tmp_path / "full.png", np.full((h, w), 255, np.uint8)),
        "text_video": tmp_path / "not_a_video.mp4",
        "file": tmp_path / "a_file",
    }


@pytest.mark.parametrize(
    "case, match",
    [
        ("missing input", "input not found"),
        ("text video", "cannot open video"),
        ("small mask", r"shape of the reference frame \(64, 96\), got \(10, 10\)"),
        ("empty mask", "marks no foreground"),
        ("full mask", "covers the whole frame"),
        ("missing mask", "mask not found"),
        ("frame out of range", r"reference frame 60 is out of range: the input has 5 frames \(0..4\)"),
        ("negative frame", "reference frame -1 is out of range"),
        ("out is a file", "is a file"),
        ("out under a file", "is a file"),
        ("unknown engine", "unknown engine 'nope'"),
        ("bad range", "range"),
        ("empty range", "selects no frame"),
        ("tuple range", "frame range"),
        ("bad format", "unknown output format 'jpg'"),
        ("bad direction", "direction"),
        ("bad order", "order"),
        ("bad prompt kind", "prompt kind"),
        ("two references", "exactly one reference"),
        ("no reference", "exactly one reference"),
        ("nothing to matte", "nothing to matte"),
    ],
)
def test_bad_arguments_raise_before_writing(sample, tmp_path, bad_files, case, match):
    out = tmp_path / "out"
    kwargs = {}
    source = sample / "frames"
    mask = sample / "reference_mask.png"
    if case == "missing input":
        source = tmp_path / "nope"
    elif case == "text video":
        source = bad_files["text_video"]
    elif case.endswith("mask") and case != "missing mask":
        mask = bad_files[case.split()[0]]
    elif case == "missing mask":
        mask = tmp_path / "nomask.png"
    elif case == "frame out of range":
        kwargs["reference_frame"] = 60
    elif case == "negative frame":
        kwargs["reference_frame"] = -1
    elif case == "out is a file":
        out = bad_files["file"]
    elif case == "out under a file":
        out = bad_files["file"] / "sub"
    elif case == "unknown engine":
        kwargs["engine"] = "nope"
    elif case == "bad range":
        kwargs["frame_range"] = "abc"
    elif case == "empty range":
        kwargs["frame_range"] = "3:1"
    elif case == "tuple range":
        kwargs["frame_range"] = (2, 9)
    elif case == "bad format":
        kwargs["formats"] = ("png", "jpg")
    elif case == "bad direction":
        kwargs["direction"] = "sideways"
    elif case == "bad order":
        kwargs["order"] = "random"
    elif case == "bad prompt kind":
        kwargs["prompt_kind"] = "lasso"
    elif case == "two references":
        kwargs["reference_image"] = sample / "frames" / "00000.png"
    elif case == "no reference":
        kwargs["reference_frame"] = None
    elif case == "nothing to matte":
        kwargs.update(direction="backward", frame_range="1:3")
    options = dict(out_dir=out, mask=mask, reference_frame=0)
    options.update(kwargs)
    with pytest.raises(InputError, match=match):
        matte_sequence(source, **options)
    if out.is_dir() or not out.exists():
        assert not out.exists() or not any(out.iterdir())


# ---------------------------------------------------------------- failures midway


def test_failure_midway_keeps_frames_but_no_tiff_and_no_complete_record(sample, tmp_path, monkeypatch):
    _run(sample, tmp_path, formats="tiff")
    assert _record(tmp_path)["complete"] is True
    (tmp_path / "alpha.tif").unlink()
    original = ClassicalEngine.matte_frame

    def failing(self, frame, query, **kwargs):
        if failing.calls == 2:
            raise RuntimeError("engine crashed")
        failing.calls += 1
        return original(self, frame, query, **kwargs)

    failing.calls = 0
    monkeypatch.setattr(ClassicalEngine, "matte_frame", failing)
    with pytest.raises(RuntimeError, match="engine crashed"):
        _run(sample, tmp_path, formats="tiff")
    record = _record(tmp_path)
    assert record["complete"] is False
    assert record["frames_written"] == 3  # the reference and two frames
    assert "engine crashed" in record["error"]
    assert not (tmp_path / "alpha.tif").exists()  # nothing assembled from a partial run ...
    parts = sorted(p.name for p in (tmp_path / ".iconmat" / "parts" / "alpha").iterdir())
    assert len(parts) == 3  # ... but its parts are kept, so that the same call resumes it
    for name in _names(tmp_path / "alpha"):  # every file left is a complete PNG
        assert cv2.imread(str(tmp_path / "alpha" / name), cv2.IMREAD_UNCHANGED).shape == (SIZE[1], SIZE[0])


def test_interrupt_from_progress_callback_stops_the_run(sample, tmp_path):
    def cancel(done, total):
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(sample, tmp_path, formats="tiff", on_progress=cancel)
    assert _record(tmp_path)["complete"] is False
    assert len(_names(tmp_path / "alpha")) == 2
    assert not (tmp_path / "alpha.tif").exists()


# ---------------------------------------------------------------- contact sheet (core/sheet.py, drawn by run_demo)


def test_contact_sheet_rows_of_frame_alpha_composite(tmp_path):
    frames = [np.full((40, 60, 3), 200, np.uint8), np.zeros((40, 60), np.uint16)]
    alphas = [np.ones((40, 60), np.float32), np.zeros((40, 60), np.float32)]
    path = make_contact_sheet(frames, alphas, tmp_path / "sub" / "sheet.png", height=30)
    sheet = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert sheet.shape == (2 * 30 + 4, 3 * 45 + 2 * 4, 3)
    # row 1: the frame, a white alpha, the composite equal to the frame
    assert np.all(sheet[:30, :45] == 200) and np.all(sheet[:30, 49:94] == 255)
    assert np.all(sheet[:30, 98:] == 200)
    # row 2: a transparent frame shows the checkerboard
    assert len(np.unique(sheet[34:, 98:])) == 2


def test_contact_sheet_rejects_mismatched_inputs(tmp_path):
    with pytest.raises(InputError, match="as many alphas as frames"):
        make_contact_sheet([np.zeros((4, 4))], [], tmp_path / "s.png")
    with pytest.raises(InputError, match="alpha 0"):
        make_contact_sheet([np.zeros((4, 4))], [np.zeros((4, 5))], tmp_path / "s.png")


def test_the_run_records_each_frames_confidence_and_lists_where_the_object_is_not(tmp_path):
    from napari_iconmat.core.evaluation.synth import synth_collection, synth_video

    images = list(synth_collection(3, size=(256, 192), seed=0))  # 0, 1: the same creature
    scene = list(synth_video(2, size=(256, 192), seed=5))[1]
    other = cv2.inpaint(scene.image, (scene.alpha > 0.02).astype(np.uint8) * 255, 5, cv2.INPAINT_TELEA)
    frames = np.stack([images[0].image, other, images[1].image])
    summary = matte_sequence(frames, out_dir=tmp_path, mask=images[0].alpha > 0.5, reference_frame=0, order="collection")
    assert set(summary.confidence) == {0, 1, 2} and summary.not_found == [1]
    assert summary.confidence[0] == 1.0 and summary.confidence[2] >= 0.5
    assert "object not found in 1 frame (frame 1: alpha all zero)" in summary.describe()
    record = _record(tmp_path)
    assert record["not_found"] == [[1, 1]] and record["confidence"]["1"] == 0.0 and set(record["confidence"]) == {"0", "1", "2"}
    assert cv2.imread(str(tmp_path / "alpha" / "00001.png"), cv2.IMREAD_UNCHANGED).max() == 0


# ---------------------------------------------------------------- runs that silently did the wrong thing


@pytest.mark.parametrize("formats", ["prores", "png,webm", "matte"])
def test_video_formats_refuse_frames_of_different_sizes_before_any_frame(tmp_path, formats):
    frames = [np.zeros((40, 50, 3), np.uint8), np.zeros((30, 50, 3), np.uint8)]
    mask = np.zeros((40, 50), bool)
    mask[10:20, 10:20] = True
    with pytest.raises(InputError, match="needs frames of one size, but the images of .* differ in size"):
        matte_sequence(frames, out_dir=tmp_path / "out", mask=mask, reference_frame=0, formats=formats)
    assert not (tmp_path / "out").exists()


def test_a_finished_run_replaced_warns_and_deletes_only_what_it_wrote(sample, tmp_path):
    out = tmp_path / "out"
    _run(sample, out, formats="png,tiff")
    own = out / "alpha" / "00099.png"  # a user's file among iconmat's
    cv2.imwrite(str(own), np.zeros((4, 4), np.uint8))
    (out / "notes.txt").write_text("mine")
    mask = read_image(sample / "reference_mask.png") > 0
    mask = np.roll(mask, 2, axis=1)  # a changed mask
    with pytest.warns(UserWarning, match="holds a finished run of another reference, mask or engine setting: replacing it"):
        _run(sample, out, mask=mask, formats="png", frame_range="0:3")
    assert _names(out / "alpha") == ["00000.png", "00001.png", "00002.png", "00099.png"]
    assert own.is_file() and (out / "notes.txt").read_text() == "mine"
    assert not (out / "alpha.tif").exists()  # the earlier run's tiff was its own
    with pytest.warns(UserWarning, match="holds a finished run of the same command: replacing it"):
        _run(sample, out, mask=mask, formats="png", frame_range="0:3")
