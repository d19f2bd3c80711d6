"""Bad input, tried systematically (hypothesis): the readers and ``iconmat matte`` on malformed inputs.

Each case must end in a correct result or a clear error: for the readers an
ndarray per frame or an :class:`InputError`; for the command line exit 0 with a
complete output, or exit 2 with one line on stderr and no output that claims
to be complete. Never another exception, a traceback or a hang (``deadline``).

Inputs: truncated, zero-length, byte-flipped and garbage-prefixed videos and
images, wrong extensions, a text file named .mp4, frames of odd sizes (1x1 to
4097x3), a video whose frame size changes midway, NaN and Inf in float TIFFs,
masks of the wrong size or dtype, and damaged reference-query caches and run
manifests (after which the output must equal an uninterrupted run's), random
``--engine-option`` values (any name of any engine's ``option_specs``, any JSON or
text value), and SIGINT at random moments of runs with video formats (then the one
"interrupted" line and exit 130, and the same command finishes the run).
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, Phase, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from napari_iconmat.cli import main  # noqa: E402
from napari_iconmat.core.errors import InputError  # noqa: E402
from napari_iconmat.core.io import OutputWriter, open_frames  # noqa: E402
from napari_iconmat.core.pipeline.run import RUN_RECORD, matte_sequence  # noqa: E402

# ICONMAT_FUZZ_EXAMPLES=300 runs a longer, randomised campaign; the suite runs 25 fixed cases per test.
_CAMPAIGN = int(os.environ.get("ICONMAT_FUZZ_EXAMPLES", "0"))
FAST = settings(
    max_examples=_CAMPAIGN or 25,
    deadline=20_000,  # ms per case: a hang fails the test
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    derandomize=not _CAMPAIGN,  # the same cases on every run: the suite stays deterministic
    phases=[Phase.explicit, Phase.generate, Phase.shrink],
)
H, W, T = 32, 48, 5
ENGINE = ["--engine-option", "working_size=64"]


@lru_cache(maxsize=None)
def _workdir() -> Path:
    path = Path(tempfile.mkdtemp(prefix="iconmat-fuzz-"))
    atexit.register(shutil.rmtree, path, True)
    return path


def _frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    frames = []
    for t in range(T):
        frame = np.full((H, W, 3), (40, 90, 60), np.uint8) + rng.integers(0, 20, (H, W, 3), dtype=np.uint8)
        frame[8:24, 10 + t : 30 + t] = (220, 180, 60)
        frames.append(frame)
    return frames


def _encode(path: Path, frames, codec: str, pix_fmt: str, fmt: str | None = None) -> Path:
    import av

    with av.open(str(path), "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=25)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = pix_fmt
        for i, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = i
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@lru_cache(maxsize=None)
def _originals() -> dict[str, Path]:
    """Valid files of every kind the readers take, made once."""
    root = _workdir() / "originals"
    root.mkdir()
    frames = _frames()
    files = {
        "mp4": _encode(root / "clip.mp4", frames, "libx264", "yuv420p"),
        "mkv": _encode(root / "clip.mkv", frames, "ffv1", "yuv444p"),
        "avi": _encode(root / "clip.avi", frames, "mjpeg", "yuvj420p"),
        "mov": _encode(root / "clip.mov", frames, "prores_ks", "yuv422p10le"),
    }
    rng = np.random.default_rng(1)
    with OutputWriter(root / "webm", ["webm"]) as writer:  # VP9 with alpha, as we write it
        for i, frame in enumerate(frames):
            writer.write(i, rng.random((H, W)), foreground=frame / 255.0)
    files["webm"] = root / "webm" / "matte.webm"
    # a splice of two streams of different frame sizes (the size changes midway)
    first = _encode(root / "a.ts", frames[:3], "mpeg2video", "yuv420p", "mpegts")
    second = _encode(root / "b.ts", [cv2.resize(f, (64, 40)) for f in frames[3:]], "mpeg2video", "yuv420p", "mpegts")
    (root / "spliced.mp4").write_bytes(first.read_bytes() + second.read_bytes())
    files["spliced"] = root / "spliced.mp4"
    cv2.imwrite(str(root / "frame.png"), frames[0][..., ::-1])
    cv2.imwrite(str(root / "frame.jpg"), frames[0][..., ::-1])
    files["png"], files["jpg"] = root / "frame.png", root / "frame.jpg"
    tifffile.imwrite(root / "stack.tif", np.stack(frames), photometric="rgb")
    tifffile.imwrite(root / "float.tif", np.stack(frames).astype(np.float32) / 255, photometric="rgb")
    files["tif"], files["float_tif"] = root / "stack.tif", root / "float.tif"
    mask = np.zeros((H, W), np.uint8)
    mask[8:24, 10:30] = 255
    cv2.imwrite(str(root / "mask.png"), mask)
    files["mask"] = root / "mask.png"
    return files


_SUFFIXES = [".mp4", ".mov", ".mkv", ".webm", ".avi", ".png", ".jpg", ".tif", ".txt", ""]


@st.composite
def damaged_files(draw) -> tuple[Path, str]:
    """A file made from a valid one by one mutation; returns (path, what was done)."""
    kind = draw(st.sampled_from(["mp4", "mkv", "avi", "mov", "webm", "spliced", "png", "jpg", "tif", "float_tif"]))
    original = _originals()[kind]
    data = original.read_bytes()
    mutation = draw(st.sampled_from(["keep", "truncate", "empty", "flip", "prefix", "text", "rename"]))
    suffix = original.suffix
    if mutation == "truncate":
        data = data[: draw(st.integers(1, max(1, len(data) - 1)))]
    elif mutation == "empty":
        data = b""
    elif mutation == "flip":
        data = bytearray(data)
        for position in draw(st.lists(st.integers(0, len(data) - 1), min_size=1, max_size=8)):
            data[position] ^= draw(st.integers(1, 255))
        data = bytes(data)
    elif mutation == "prefix":
        data = draw(st.binary(min_size=1, max_size=64)) + data
    elif mutation == "text":
        data = b"this is a text file, not a video\n" * draw(st.integers(1, 50))
    elif mutation == "rename":
        suffix = draw(st.sampled_from(_SUFFIXES))
    folder = Path(tempfile.mkdtemp(dir=_workdir()))
    path = folder / f"input{suffix}"
    path.write_bytes(data)
    return path, f"{kind}/{mutation}{suffix}"


def _read_all(path: Path) -> list[np.ndarray]:
    with open_frames(path) as frames:
        n = len(frames)
        forward = [frames[i] for i in range(n)]
        backward = [frame for _, frame in frames.iter_frames(range(n - 1, -1, -1))]
    for frame in forward + backward:
        assert isinstance(frame, np.ndarray) and frame.ndim in (2, 3) and frame.size > 0
    return forward


@FAST
@given(damaged_files())
def test_readers_end_in_frames_or_an_input_error(case):
    path, what = case
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # damaged-file warnings are allowed
        try:
            _read_all(path)
        except InputError as exc:
            assert str(exc) and "\n" not in str(exc).strip(), what


def _cli(argv: list[str]) -> tuple[int, str]:
    """Exit status and everything written to stderr: by Python, and by C libraries straight to fd 2."""
    err = io.StringIO()
    with tempfile.TemporaryFile() as native:
        saved = os.dup(2)
        os.dup2(native.fileno(), 2)
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                code = main(argv)
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        native.seek(0)
        printed = native.read().decode(errors="replace")
    return code, printed + err.getvalue()


def _check_outcome(code: int, err: str, out: Path, what: str) -> None:
    lines = [line for line in err.splitlines() if not line.startswith(("iconmat: warning:", "iconmat: note:"))]
    assert "Traceback" not in err, (what, err)
    record = out / RUN_RECORD
    complete = record.is_file() and json.loads(record.read_text()).get("complete") is True
    if code == 0:
        assert complete and lines == [], (what, err)
        frames = json.loads(record.read_text())["frames_written"]
        assert len(list((out / "alpha").glob("*.png"))) == frames
    else:
        assert code == 2, (what, code, err)
        assert len(lines) == 1 and lines[0].startswith("iconmat: error: "), (what, err)
        assert not complete, what


@FAST
@given(damaged_files(), st.sampled_from(["png", "png16,tiff", "rgba,prores", "webm,matte", "tiff16,zarr"]))
def test_cli_on_damaged_inputs(case, formats):
    path, what = case
    out = path.parent / "out"
    code, err = _cli(["matte", str(path), "--reference-frame", "0", "--mask", str(_originals()["mask"]),
                      "--out", str(out), "--format", formats, "--quiet", *ENGINE])  # fmt: skip
    _check_outcome(code, err, out, what)


def _option_values():
    return st.one_of(
        st.integers(-10**6, 10**6), st.sampled_from([0, 1, 63, 64, 8192, 8193, 2**31, -1]),
        st.floats(allow_nan=True, allow_infinity=True), st.sampled_from([0.0, 0.001, 0.5, 1.0, 1.5, 1e-9, 1e9]),
        st.booleans(), st.none(), st.sampled_from(["big", "wide", "", "closed-form", "vitmatte", "auto", "[1, 2]", "{}"]),
        st.text(max_size=8),
    )  # fmt: skip


def _option_text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value)


@FAST
@given(st.data())
def test_cli_with_random_engine_options(data):
    """Random values for random options of the classical engine (and names it does not have): a run or one line."""
    from napari_iconmat.core.engines.classical.engine import ClassicalEngine

    names = sorted(ClassicalEngine.option_specs) + ["no_such_option", "Working-Size"]
    chosen = data.draw(st.lists(st.sampled_from(names), min_size=1, max_size=3, unique=True))
    options = []
    for name in chosen:
        value = data.draw(_option_values())
        if name == "refiner" and value == "vitmatte":
            value = "closed-form"  # ViTMatte's weights: not a fuzz case
        options += ["--engine-option", f"{name}={_option_text(value)}"]
    if not any(o.startswith("working_size=") for o in options):
        options += ENGINE
    out = Path(tempfile.mkdtemp(dir=_workdir())) / "out"
    code, err = _cli(["matte", str(_originals()["mp4"]), "--reference-frame", "0", "--mask", str(_originals()["mask"]),
                      "--out", str(out), "--format", "png", "--quiet", *options])  # fmt: skip
    _check_outcome(code, err, out, " ".join(options))
    if code == 2:
        assert "engine classical" in err or "has no option" in err or "KEY=VALUE" in err, (options, err)


@FAST
@given(st.sampled_from(["icmp", "iconmat"]), st.data())
def test_cli_engine_options_of_other_engines_are_checked_first(engine, data):
    """A bad value for an ICMP or IconMatting option: one line naming it, before any weights are looked for."""
    from napari_iconmat.core.registry import get_engine_class

    specs = get_engine_class(engine).option_specs
    name = data.draw(st.sampled_from(sorted(n for n, o in specs.items() if o.kind in ("int", "float") or o.choices)))
    spec = specs[name]
    bad = "nonsense" if spec.choices else data.draw(st.sampled_from(["big", -10**9, 10**20, "nan", True]))  # outside every range
    out = Path(tempfile.mkdtemp(dir=_workdir())) / "out"
    code, err = _cli(["matte", str(_originals()["mp4"]), "--reference-frame", "0", "--mask", str(_originals()["mask"]),
                      "--out", str(out), "--engine", engine, "--engine-option", f"{name}={_option_text(bad)}"])  # fmt: skip
    assert code == 2 and err.strip().startswith(f"iconmat: error: engine {engine}: {name} must be"), (name, bad, err)
    assert not out.exists()


_SIGINT_EXAMPLES = max(2, _CAMPAIGN // 10)


@settings(FAST, max_examples=_SIGINT_EXAMPLES, deadline=None)
@given(st.floats(0.0, 1.0), st.sampled_from(["png,prores", "png,webm", "prores,webm,matte", "rgba,prores,webm"]))
def test_cli_sigint_at_random_moments_of_video_runs(fraction, formats):
    """A real `iconmat matte` with video formats gets SIGINT at a random moment (importing, matting,
    assembling): the one "interrupted" line and exit 130, or a finished run; the same command then finishes."""
    folder = Path(tempfile.mkdtemp(dir=_workdir()))
    command = [sys.executable, "-m", "napari_iconmat.cli", "matte", str(_sigint_sample() / "frames"), "--reference-frame", "0",
               "--mask", str(_sigint_sample() / "reference_mask.png"), "--out", str(folder / "out"), "--format", formats, "--quiet"]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    seconds = _sigint_run_seconds()  # measured first, alone
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # From the moment the run has its output folder (the interpreter's start-up and imports are
    # Python's, not iconmat's: a SIGINT then kills it before any handler exists) to its end.
    deadline = time.monotonic() + 120
    while process.poll() is None and not (folder / "out").exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    time.sleep(fraction * seconds)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    lines = [line for line in err.splitlines() if not line.startswith(("iconmat: warning:", "iconmat: note:"))]
    assert "Traceback" not in err, err
    assert process.returncode in (0, 130), (process.returncode, err)
    if process.returncode == 130:
        assert len(lines) == 1 and lines[0].startswith("iconmat: interrupted"), err
        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert again.returncode == 0 and "Traceback" not in again.stderr, again.stderr
    record = json.loads((folder / "out" / RUN_RECORD).read_text())
    assert record["complete"] is True


@lru_cache(maxsize=None)
def _sigint_sample() -> Path:
    from napari_iconmat.core.evaluation.synth import write_synth

    return write_synth("video", _workdir() / "sigint", frames=5, size=(160, 120), seed=5)


@lru_cache(maxsize=None)
def _sigint_run_seconds() -> float:
    """How long an uninterrupted run takes here (start-up included, so SIGINT can also land after the end)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "napari_iconmat.cli", "matte", str(_sigint_sample() / "frames"), "--reference-frame", "0",
                    "--mask", str(_sigint_sample() / "reference_mask.png"), "--out", str(_workdir() / "sigint-whole"),
                    "--format", "png,prores,webm", "--quiet"], env=dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path)),
                   check=True, capture_output=True, timeout=300)  # fmt: skip
    return time.monotonic() - started


@FAST
@given(
    st.sampled_from([(1, 1), (1, 7), (2, 2), (3, 4097), (4097, 3), (5, 13), (11, 11), (12, 12), (37, 3), (64, 2)]),
    st.integers(2, 3),
    st.booleans(),
)
def test_cli_on_frames_of_odd_sizes(shape, count, change_size):
    """Folders of tiny, thin and odd-sized images, optionally with one image of another size."""
    rng = np.random.default_rng(shape[0] * 7919 + shape[1])
    folder = Path(tempfile.mkdtemp(dir=_workdir()))
    (folder / "frames").mkdir()
    for i in range(count):
        size = (shape[0] + 3, shape[1] + 2) if change_size and i == count - 1 else shape
        cv2.imwrite(str(folder / "frames" / f"{i}.png"), rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    mask = np.zeros(shape, np.uint8)
    mask[: max(1, shape[0] // 2), : max(1, shape[1] // 2)] = 255
    cv2.imwrite(str(folder / "mask.png"), mask)
    out = folder / "out"
    code, err = _cli(["matte", str(folder / "frames"), "--reference-frame", "0", "--mask", str(folder / "mask.png"),
                      "--out", str(out), "--format", "tiff,matte", "--quiet", *ENGINE])  # fmt: skip
    _check_outcome(code, err, out, f"{shape} x{count} change={change_size}")
    if code == 0:
        alpha = cv2.imread(str(out / "alpha" / "00000.png"), cv2.IMREAD_UNCHANGED)
        assert alpha.shape == shape


@FAST
@given(
    st.lists(st.tuples(st.integers(0, T - 1), st.integers(0, H - 1), st.integers(0, W - 1),
                       st.sampled_from([np.nan, np.inf, -np.inf, 1e30, -1e30])), max_size=40),  # fmt: skip
    st.sampled_from([1.0, 255.0, 4095.0]),
    st.booleans(),
)
def test_cli_on_float_frames_with_nan_and_inf(bad_pixels, scale, poison_reference):
    stack = np.stack(_frames()).astype(np.float32) / 255 * scale
    for t, y, x, value in bad_pixels:
        stack[t, y, x] = value
    if poison_reference:
        stack[0] = np.nan
    folder = Path(tempfile.mkdtemp(dir=_workdir()))
    tifffile.imwrite(folder / "stack.tif", stack, photometric="rgb")
    out = folder / "out"
    code, err = _cli(["matte", str(folder / "stack.tif"), "--reference-frame", "0", "--mask",
                      str(_originals()["mask"]), "--out", str(out), "--format", "tiff", "--quiet", *ENGINE])  # fmt: skip
    _check_outcome(code, err, out, f"{len(bad_pixels)} bad pixels, poisoned={poison_reference}")
    if code == 0:
        alphas = tifffile.imread(out / "alpha.tif")
        assert np.isfinite(alphas).all() and alphas.min() >= 0 and alphas.max() <= 1
    assert (code == 2) == poison_reference  # an all-NaN reference is refused, anything else mattes


@FAST
@given(
    st.one_of(st.just((H, W)), st.tuples(st.integers(1, 70), st.integers(1, 70))),
    st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64, np.bool_]),
    st.sampled_from([None, 3, 4]),
    st.sampled_from(["rectangle", "empty", "full", "nan", "noise"]),
    st.sampled_from([".png", ".tif"]),
)
def test_cli_on_masks_of_any_size_and_dtype(shape, dtype, channels, content, suffix):
    rng = np.random.default_rng(0)
    mask = np.zeros(shape, np.float64)
    if content == "rectangle":
        mask[shape[0] // 4 : 3 * shape[0] // 4 + 1, shape[1] // 4 : 3 * shape[1] // 4 + 1] = 1
    elif content == "full":
        mask[:] = 1
    elif content == "noise":
        mask = rng.random(shape)
    elif content == "nan":
        mask[:] = np.nan
    if np.issubdtype(dtype, np.integer):
        mask = np.nan_to_num(mask) * np.iinfo(dtype).max
    mask = mask.astype(dtype)
    if channels:
        mask = np.repeat(mask[..., None], channels, axis=2)
    folder = Path(tempfile.mkdtemp(dir=_workdir()))
    path = folder / f"mask{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, mask, photometric="rgb" if channels else "minisblack")
    elif not cv2.imwrite(str(path), mask if mask.dtype in (np.uint8, np.uint16) else np.nan_to_num(mask).astype(np.uint8)):
        return  # a PNG cannot hold this (e.g. 4-channel 1x1 float): nothing to test
    out = folder / "out"
    code, err = _cli(["matte", str(_originals()["mp4"]), "--reference-frame", "0", "--mask", str(path),
                      "--out", str(out), "--quiet", *ENGINE])  # fmt: skip
    _check_outcome(code, err, out, f"mask {shape} {np.dtype(dtype)} {channels} {content}{suffix}")
    if shape != (H, W):
        assert code == 2 and "mask" in err


# ---------------------------------------------------------------- damaged cache and manifest


@lru_cache(maxsize=None)
def _interrupted_run() -> tuple[Path, Path, Path]:
    """(an uninterrupted output, an interrupted one, a filled query cache), made once."""
    root = _workdir() / "runs"
    options = dict(mask=_originals()["mask"], reference_frame=2, formats="png,tiff", engine_params={"working_size": 64})
    matte_sequence(_originals()["tif"], out_dir=root / "whole", cache_dir=root / "cache", **options)

    def cancel(done, total):
        if done == 3:
            raise KeyboardInterrupt

    with contextlib.suppress(KeyboardInterrupt):
        matte_sequence(_originals()["tif"], out_dir=root / "stopped", on_progress=cancel, **options)
    return root / "whole", root / "stopped", root / "cache"


def _json_values():
    scalars = st.none() | st.booleans() | st.integers(-3, 10**9) | st.text(max_size=12)
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


@st.composite
def damaged_manifests(draw, text: str) -> bytes:
    how = draw(st.sampled_from(["truncate", "flip", "replace", "delete"]))
    if how == "truncate":
        return text.encode()[: draw(st.integers(0, len(text) - 1))]
    if how == "flip":
        data = bytearray(text.encode())
        position = draw(st.integers(0, len(data) - 1))
        data[position] ^= draw(st.integers(1, 255))
        return bytes(data)
    manifest = json.loads(text)
    path = draw(st.sampled_from([p for p in _paths(manifest) if p]))
    parent = manifest
    for key in path[:-1]:
        parent = parent[key]
    if how == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = draw(_json_values())
    return json.dumps(manifest).encode()


def _matte_again(out: Path, cache: Path | None = None) -> tuple[int, str]:
    argv = ["matte", str(_originals()["tif"]), "--reference-frame", "2", "--mask", str(_originals()["mask"]),
            "--out", str(out), "--format", "png,tiff", "--quiet", *ENGINE]  # fmt: skip
    if cache is not None:
        argv += ["--cache-dir", str(cache)]
    return _cli(argv)


def _assert_equal_outputs(out: Path, whole: Path) -> None:
    names = sorted(p.name for p in (whole / "alpha").iterdir())
    assert sorted(p.name for p in (out / "alpha").iterdir()) == names
    for name in names:
        assert (out / "alpha" / name).read_bytes() == (whole / "alpha" / name).read_bytes(), name
    np.testing.assert_array_equal(tifffile.imread(out / "alpha.tif"), tifffile.imread(whole / "alpha.tif"))


@FAST
@given(st.data())
def test_damaged_manifest_never_mixes_runs(data):
    whole, stopped, _ = _interrupted_run()
    out = Path(tempfile.mkdtemp(dir=_workdir())) / "out"
    shutil.copytree(stopped, out)
    manifest = out / RUN_RECORD
    manifest.write_bytes(data.draw(damaged_manifests(manifest.read_text())))
    code, err = _matte_again(out)
    assert code == 0 and "Traceback" not in err, err
    _assert_equal_outputs(out, whole)


@FAST
@given(st.sampled_from(["truncate", "flip", "empty", "text", "other_npz"]), st.integers(0, 10**6))
def test_damaged_query_cache_is_ignored(how, seed):
    whole, _, cache = _interrupted_run()
    folder = Path(tempfile.mkdtemp(dir=_workdir()))
    shutil.copytree(cache, folder / "cache")
    (path,) = (folder / "cache").glob("*.npz")
    data = path.read_bytes()
    rng = np.random.default_rng(seed)
    if how == "truncate":
        data = data[: int(rng.integers(0, len(data)))]
    elif how == "flip":
        data = bytearray(data)
        for position in rng.integers(0, len(data), 4):
            data[position] ^= 0xFF
        data = bytes(data)
    elif how == "empty":
        data = b""
    elif how == "text":
        data = b"not a query"
    else:
        buffer = io.BytesIO()
        np.savez(buffer, something=np.zeros(3))
        data = buffer.getvalue()
    path.write_bytes(data)
    code, err = _matte_again(folder / "out", folder / "cache")
    assert code == 0 and "Traceback" not in err, err
    _assert_equal_outputs(folder / "out", whole)
