"""Resumable runs (core/run.py + core/io/manifest.py): killed, interrupted, disk full, changed input.

The reference for "equal" is always an uninterrupted run of the same call: the
alpha and RGBA PNGs must be byte-identical, the stacks and lossless videos
array-identical, the lossy videos identical once decoded.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import warnings

import numpy as np
import pytest
import tifffile

from napari_iconmat.core.engines.classical.engine import ClassicalEngine
from napari_iconmat.core.errors import InputError
from napari_iconmat.core.io import open_frames
from napari_iconmat.core.io import writers as writers_module
from napari_iconmat.core.io.lock import FolderLock
from napari_iconmat.core.io.manifest import expand_ranges, to_ranges
from napari_iconmat.core.pipeline.run import RUN_RECORD, RunInterrupted, matte_sequence
from napari_iconmat.core.evaluation.synth import write_synth

N = 10
REFERENCE = 4  # propagation runs forward (5..9) and backward (3..0): two chains
HAS_ZARR = importlib.util.find_spec("zarr") is not None
FORMATS = "png16,rgba,tiff,prores,matte" + (",zarr" if HAS_ZARR else "")
OPTIONS = ["--engine-option", "working_size=64"]


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    return write_synth("video", tmp_path_factory.mktemp("synth"), frames=N, size=(96, 64), seed=2)


@pytest.fixture(scope="module")
def uninterrupted(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("reference")
    _run(sample, out)
    return out


def _run(sample, out, **kwargs):
    source = kwargs.pop("input", sample / "frames")
    options = dict(
        out_dir=out,
        mask=sample / "reference_mask.png",
        reference_frame=REFERENCE,
        formats=FORMATS,
        engine_params={"working_size": 64},
    )
    options.update(kwargs)
    return matte_sequence(source, **options)


def _record(out) -> dict:
    return json.loads((out / RUN_RECORD).read_text())


def _done(out) -> int:
    try:
        return len(expand_ranges(_record(out)["progress"]["done"]))
    except (OSError, ValueError, KeyError):
        return -1


def _assert_same_outputs(out, expected):
    for folder in ("alpha", "rgba"):
        names = sorted(p.name for p in (expected / folder).iterdir())
        assert sorted(p.name for p in (out / folder).iterdir()) == names
        for name in names:
            assert (out / folder / name).read_bytes() == (expected / folder / name).read_bytes(), f"{folder}/{name}"
    np.testing.assert_array_equal(tifffile.imread(out / "alpha.tif"), tifffile.imread(expected / "alpha.tif"))
    if HAS_ZARR:
        import zarr

        np.testing.assert_array_equal(
            zarr.open_group(str(out / "alpha.zarr"), mode="r")["alpha"][:],
            zarr.open_group(str(expected / "alpha.zarr"), mode="r")["alpha"][:],
        )
    for name in ("alpha.mov", "matte.mov"):
        with open_frames(out / name) as got, open_frames(expected / name) as want:
            assert len(got) == len(want) == N
            for i in range(N):
                np.testing.assert_array_equal(got[i], want[i])
    record = _record(out)
    assert record["complete"] is True and record["frames_written"] == N
    assert not (out / ".iconmat").exists()  # no parts, checkpoints or lock left


def _cli(sample, out) -> list[str]:
    return [
        sys.executable, "-m", "napari_iconmat.cli", "matte", str(sample / "frames"),
        "--reference-frame", str(REFERENCE), "--mask", str(sample / "reference_mask.png"),
        "--out", str(out), "--format", FORMATS, "--quiet", *OPTIONS,
    ]  # fmt: skip


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))


def test_killed_runs_resume_to_the_uninterrupted_output(sample, uninterrupted, tmp_path):
    """SIGKILL a real `iconmat matte` at several points (before, between and during frames), then resume."""
    out = tmp_path / "out"
    kills = []
    for after in (0, 3, 7):  # before anything is written, then between and during frames
        process = subprocess.Popen(_cli(sample, out), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while process.poll() is None and _done(out) < after and time.monotonic() < deadline:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills.append(_done(out))
    assert kills[-1] < N, f"the run finished before it could be killed: {kills}"
    assert _record(out)["complete"] is False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "took over the lock" of the killed process
        summary = _run(sample, out)
    assert summary.resumed == kills[-1] and summary.frames == N - kills[-1]
    assert summary.query_source == "resumed"
    _assert_same_outputs(out, uninterrupted)


def test_interrupt_resumes_from_checkpoints(sample, uninterrupted, tmp_path, monkeypatch):
    def cancel(done, total):
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted, match=rf"7 of {N} frames are done and kept in .*run the same command again"):
        _run(sample, tmp_path, on_progress=cancel)
    record = _record(tmp_path)
    assert record["complete"] is False and record["frames_written"] == 7
    checkpoints = [c["state"] for c in record["progress"]["chains"].values() if c["state"]]
    assert checkpoints and all((tmp_path / ".iconmat" / name).is_file() for name in checkpoints)
    assert not (tmp_path / "alpha.tif").exists()  # nothing assembled from a partial run
    # What a write killed mid-file leaves (SIGKILL cannot be cleaned up after), and a user's own dot-file.
    stale = [tmp_path / "alpha" / ".00008.png.0123456789ab.tmp", tmp_path / "rgba" / ".00009.png.ba9876543210.tmp"]
    for path in stale:
        path.write_bytes(b"half a png")
    (tmp_path / ".notes.tmp").write_text("not ours")

    matted = []
    original = ClassicalEngine.matte_frame

    def counting(self, frame, query, **kwargs):
        matted.append(1)
        return original(self, frame, query, **kwargs)

    monkeypatch.setattr(ClassicalEngine, "matte_frame", counting)
    progress = []
    summary = _run(sample, tmp_path, on_progress=lambda d, t: progress.append(d))
    assert len(matted) == N - 7  # only the missing frames: the chain restarts from its checkpoint
    assert progress[0] == 7 and progress[-1] == N and summary.resumed == 7
    assert not any(path.exists() for path in stale)
    assert (tmp_path / ".notes.tmp").read_text() == "not ours"
    _assert_same_outputs(tmp_path, uninterrupted)


def test_engine_without_checkpoints_remattes_the_chain(sample, uninterrupted, tmp_path, monkeypatch):
    monkeypatch.setattr(ClassicalEngine, "save_state", lambda self, state: None)

    def cancel(done, total):
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(sample, tmp_path, on_progress=cancel)
    assert list((tmp_path / ".iconmat").glob("state-*")) == []
    _run(sample, tmp_path)
    _assert_same_outputs(tmp_path, uninterrupted)


def test_damaged_checkpoint_and_manifest(sample, uninterrupted, tmp_path):
    def cancel(done, total):
        if done == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(sample, tmp_path, on_progress=cancel)
    for path in (tmp_path / ".iconmat").glob("state-*.npz"):
        path.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.warns(UserWarning, match="cannot use the saved track state"):
        _run(sample, tmp_path)
    _assert_same_outputs(tmp_path, uninterrupted)

    with pytest.raises(KeyboardInterrupt):
        _run(sample, tmp_path, on_progress=cancel)
    (tmp_path / RUN_RECORD).write_text('{"format": "napari-iconmat-run/2", "progress": {"done": [[0, 99999')
    with pytest.warns(UserWarning, match="cannot resume: .*unreadable.*starting over"):
        _run(sample, tmp_path)
    _assert_same_outputs(tmp_path, uninterrupted)


def test_changed_input_or_reference_starts_over(sample, tmp_path):
    import shutil

    frames = tmp_path / "frames"
    shutil.copytree(sample / "frames", frames)
    out = tmp_path / "out"

    def cancel(done, total):
        if done == 6:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(sample, out, input=frames, on_progress=cancel, formats="png")
    # the input changes: one frame is replaced, and the last one removed
    shutil.copy(frames / "00000.png", frames / "00001.png")
    (frames / f"{N - 1:05d}.png").unlink()
    with pytest.warns(UserWarning, match="unfinished run of another input .*starting over"):
        summary = _run(sample, out, input=frames, formats="png")
    assert summary.resumed == 0 and summary.frames == N - 1
    assert sorted(p.name for p in (out / "alpha").iterdir()) == [f"{i:05d}.png" for i in range(N - 1)]
    fresh = tmp_path / "fresh"
    _run(sample, fresh, input=frames, formats="png")
    for i in range(N - 1):
        assert (out / "alpha" / f"{i:05d}.png").read_bytes() == (fresh / "alpha" / f"{i:05d}.png").read_bytes()

    with pytest.raises(KeyboardInterrupt):
        _run(sample, out, input=frames, on_progress=cancel, formats="png")
    with pytest.warns(UserWarning, match="another reference, mask or engine setting"):
        _run(sample, out, input=frames, formats="png", engine_params={"working_size": 80})


def test_disk_full_stops_with_a_clear_message_and_resumes(sample, uninterrupted, tmp_path, monkeypatch):
    original = writers_module.atomic_write_png
    calls = []

    def fills_up(path, array):
        calls.append(path)
        if len(calls) > 9:  # alpha + rgba + foreground part per frame: the disk fills during frame 4
            full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            raise InputError(f"cannot write {path}: {full.strerror}") from full
        return original(path, array)

    monkeypatch.setattr(writers_module, "atomic_write_png", fills_up)
    with pytest.raises(InputError, match=r"No space left on device; 3 of 10 frames are done and kept in .*resume"):
        _run(sample, tmp_path)
    record = _record(tmp_path)
    assert record["complete"] is False and "No space left" in record["error"]
    monkeypatch.setattr(writers_module, "atomic_write_png", original)
    summary = _run(sample, tmp_path)
    assert summary.resumed == 3
    _assert_same_outputs(tmp_path, uninterrupted)


def test_disk_full_at_the_os_level(sample, tmp_path, monkeypatch):
    """os.write failing with ENOSPC (what a full disk does) mid-run: a clear error, no temporary file, resumable."""
    real_write = os.write
    writes = []

    def full(fd, data):
        writes.append(1)
        if len(writes) > 12:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(InputError, match=r"No space left on device \(the disk is full\); \d of 10 frames are done"):
        _run(sample, tmp_path, formats="png,tiff")
    monkeypatch.undo()
    assert [p for p in tmp_path.rglob("*") if ".tmp" in p.name] == []
    assert _run(sample, tmp_path, formats="png,tiff").resumed > 0


@pytest.mark.skipif(not sys.platform.startswith("linux") or os.geteuid() != 0, reason="mounting a tmpfs needs root on Linux")
def test_disk_full_on_a_real_tmpfs(sample, uninterrupted, tmp_path, capsys):
    """A real 400 KiB tmpfs (the reference query alone takes 330 KiB here) fills up mid-run: exit 2 with one line; grown, the same command finishes the run."""
    from napari_iconmat.cli import main

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=400k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        argv = _cli(sample, disk / "out")[3:]
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "No space left on device (the disk is full)" in err[0], err
        record = _record(disk / "out")
        assert record["complete"] is False
        subprocess.run(["mount", "-o", "remount,size=64m", str(disk)], check=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert main(argv) == 0
        _assert_same_outputs(disk / "out", uninterrupted)
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_second_run_into_a_held_folder_is_refused(sample, tmp_path):
    with FolderLock(tmp_path):
        with pytest.raises(InputError, match="in use by another iconmat run"):
            _run(sample, tmp_path)
    assert not (tmp_path / "alpha").exists()


def test_sigint_to_the_cli_says_what_is_kept(sample, tmp_path):
    out = tmp_path / "out"
    process = subprocess.Popen(_cli(sample, out), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while process.poll() is None and _done(out) < 3 and time.monotonic() < deadline:
        time.sleep(0.002)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    if process.returncode == 0 or _record(out).get("complete") is True:
        pytest.skip("the run finished before the interrupt arrived")  # a loaded machine can be that slow to signal
    assert process.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("iconmat: interrupted: ") and "run the same command again to resume" in lines[0]


def test_ranges_round_trip():
    indices = {0, 1, 2, 7, 9, 10}
    assert to_ranges(indices) == [[0, 2], [7, 7], [9, 10]]
    assert expand_ranges(to_ranges(indices)) == indices
    for bad in ([[3, 1]], [[0, "2"]], "0-3", [[-1, 2]], [[0, 1, 2]]):
        with pytest.raises(ValueError):
            expand_ranges(bad)


def test_sigint_anywhere_in_video_format_runs_is_one_line_and_resumes(tmp_path_factory, tmp_path):
    """SIGINT at random moments of real runs (inside numba's solver, OpenCV, PyAV, the assembly):
    always the one "interrupted" line and exit 130 (or a finished run), and the resume completes."""
    big = write_synth("video", tmp_path_factory.mktemp("big"), frames=6, size=(320, 240), seed=4)
    formats = "png,prores,webm"
    expected = tmp_path / "expected"
    matte_sequence(big / "frames", out_dir=expected, mask=big / "reference_mask.png", reference_frame=0, formats=formats)
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "napari_iconmat.cli", "matte", str(big / "frames"), "--reference-frame", "0",
        "--mask", str(big / "reference_mask.png"), "--out", str(out), "--format", formats, "--quiet",
    ]  # fmt: skip
    rng = np.random.default_rng(0)
    codes = []
    for attempt in range(4):
        process = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        start = _done(out)
        deadline = time.monotonic() + 60
        while process.poll() is None and _done(out) <= start and time.monotonic() < deadline:
            time.sleep(0.002)  # one more frame done: the matting code is warm
        time.sleep(float(rng.uniform(0.0, 0.4)))  # somewhere inside the next frame
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
        codes.append(process.returncode)
        assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
        if process.returncode == 0:
            break
        assert process.returncode == 130, err
        assert err.startswith("iconmat: interrupted"), err
    assert 130 in codes, f"no run was interrupted: {codes}"
    if codes[-1] == 130:
        subprocess.run(command, env=_env(), check=True, capture_output=True)
    assert _record(out)["complete"] is True
    for name in sorted(p.name for p in (expected / "alpha").iterdir()):
        assert (out / "alpha" / name).read_bytes() == (expected / "alpha" / name).read_bytes(), name
    with open_frames(out / "matte.mov") as got, open_frames(expected / "matte.mov") as want:
        for i in range(len(want)):
            np.testing.assert_array_equal(got[i], want[i])


def test_disk_full_at_start_says_it_once(sample, tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(InputError) as caught:
        _run(sample, tmp_path, formats="png")
    message = str(caught.value)
    assert message.count("cannot write") == 1 and "No space left on device" in message, message


def test_a_damaged_frame_file_is_named_without_a_resume_hint(sample, tmp_path):
    import shutil

    frames = tmp_path / "frames"
    shutil.copytree(sample / "frames", frames)
    damaged = frames / "00007.png"
    damaged.write_bytes(damaged.read_bytes()[:200])
    with pytest.raises(InputError) as caught:
        _run(sample, tmp_path / "out", input=frames, formats="png")
    message = str(caught.value)
    assert str(damaged) in message and "fix or remove that file" in message and "resume" not in message, message
