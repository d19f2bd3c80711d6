"""Many inputs as one job, and the Dask path (core/cluster.py).

"Equal" means what tests/core/test_resume.py means: the PNGs of the Dask run are
byte-identical to those of a single-process run of the same call, the stacks too.
The Dask tests start real LocalClusters (2 processes, a few seconds each); every
run is bounded by a timeout so that a stuck cluster fails the test instead of
hanging it.
"""

from __future__ import annotations

import filecmp
import importlib.util
import json
import os
import signal
import threading
from pathlib import Path

import pytest

from napari_iconmat.cli import main
from napari_iconmat.core.pipeline.cluster import expand_inputs, input_dirs, local_cluster, matte_inputs
from napari_iconmat.core.errors import InputError
from napari_iconmat.core.pipeline.run import RUN_RECORD, matte_sequence
from napari_iconmat.core.evaluation.synth import write_synth

HAS_DISTRIBUTED = importlib.util.find_spec("distributed") is not None
needs_dask = pytest.mark.skipif(not HAS_DISTRIBUTED, reason="needs the distributed package")
PARAMS = {"working_size": 64}
TIMEOUT = 120  # seconds; a run on a healthy 2-process cluster takes a few


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    return write_synth("video", tmp_path_factory.mktemp("video"), frames=12, size=(64, 48), seed=3)


@pytest.fixture(scope="module")
def collection(tmp_path_factory):
    return write_synth("collection", tmp_path_factory.mktemp("collection"), frames=24, size=(64, 48), seed=4)


def _options(sample, **kwargs):
    options = dict(mask=sample / "reference_mask.png", reference_frame=0, engine_params=PARAMS)
    options.update(kwargs)
    return options


def _plain(sample, out, **kwargs):
    matte_sequence(sample / "frames", out_dir=out, **_options(sample, **kwargs))
    return out


def _visible_files(folder: Path) -> list[str]:
    return sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts) and p.name != RUN_RECORD
    )


def assert_same_outputs(a: Path, b: Path) -> None:
    names = _visible_files(a)
    assert names == _visible_files(b)
    assert names, "no output at all"
    match, mismatch, errors = filecmp.cmpfiles(a, b, names, shallow=False)
    assert mismatch == [] and errors == []
    assert not list(b.rglob(".*.tmp")), "temporary files left behind"


def _within(seconds, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` in a thread; fail (instead of hanging) past ``seconds``."""
    box = {}

    def target():
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the test's thread
            box["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"did not finish within {seconds} s"
    if "error" in box:
        raise box["error"]
    return box["value"]


# ---------------------------------------------------------------- inputs and layout (no dask)


def test_expand_inputs_globs_in_order_without_repeats(tmp_path):
    for name in ("b.png", "a.png", "c.tif"):
        (tmp_path / name).write_bytes(b"")
    got = expand_inputs([tmp_path / "c.tif", str(tmp_path / "*.png"), tmp_path / "c.tif"])
    assert got == [str(tmp_path / n) for n in ("c.tif", "a.png", "b.png")]
    with pytest.raises(InputError, match="no input matches"):
        expand_inputs([str(tmp_path / "*.mp4")])
    with pytest.raises(InputError, match="input not found"):
        expand_inputs([tmp_path / "missing.mp4"])


def test_input_dirs_names_and_clashes(tmp_path):
    assert input_dirs(["x/clip.mp4"], tmp_path) == [tmp_path]  # one input: the folder itself
    assert input_dirs(["x/a.mp4", "x/b.mp4"], tmp_path) == [tmp_path / "a", tmp_path / "b"]
    for sub in ("p/frames", "q/frames"):
        (tmp_path / "in" / sub).mkdir(parents=True)
    got = input_dirs([str(tmp_path / "in/p/frames"), str(tmp_path / "in/q/frames")], tmp_path / "out")
    assert got == [tmp_path / "out/p-frames", tmp_path / "out/q-frames"]
    with pytest.raises(InputError, match="would both write"):
        input_dirs(["a/x.mp4", "a/x.mov"], tmp_path)


def test_several_inputs_in_process(video, collection, tmp_path):
    plain = _plain(video, tmp_path / "plain")
    seen = []
    results = matte_inputs(
        [video / "frames", collection / "frames"],
        out_dir=tmp_path / "job",
        on_progress=lambda done, total, status: seen.append((done, total, dict(status))),
        **_options(video),
    )
    assert [r.error for r in results] == [None, None]
    assert [r.out_dir.name for r in results] == [f"{video.name}-frames", f"{collection.name}-frames"]
    assert_same_outputs(plain, results[0].out_dir)
    assert seen[-1][0] == seen[-1][1] == 12 + 24
    assert set(seen[-1][2].values()) == {"done"}


def test_one_failing_input_does_not_stop_the_others(video, tmp_path):
    bad = tmp_path / "bad"
    write_synth("video", bad, frames=3, size=(80, 48), seed=1)  # another size than the mask
    results = matte_inputs([bad / "frames", video / "frames"], out_dir=tmp_path / "job", **_options(video))
    assert results[0].error and "mask" in results[0].error
    assert results[1].error is None and results[1].summary.frames == 12


def test_cli_several_inputs_and_a_summary_each(video, collection, tmp_path, capsys):
    status = main(["matte", str(video / "frames"), str(collection / "frames"), "--out", str(tmp_path / "o"),
                   "--reference-frame", "0", "--mask", str(video / "reference_mask.png"),
                   "--engine-option", "working_size=64", "--quiet"])  # fmt: skip
    out = capsys.readouterr().out
    assert status == 0
    assert "2 of 2 inputs done." in out
    assert out.count("Matted") == 2
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == sorted([f"{video.name}-frames", f"{collection.name}-frames"])


def test_cli_same_mistake_on_every_input_is_said_once(video, tmp_path, capsys):
    status = main(["matte", str(video / "frames"), str(video / "alpha"), "--out", str(tmp_path / "o"),
                   "--reference-frame", "99", "--mask", str(video / "reference_mask.png"), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and "every input failed" in err and "reference frame 99" in err


# ---------------------------------------------------------------- on a LocalCluster


@pytest.fixture(scope="module")
def client():
    if not HAS_DISTRIBUTED:
        pytest.skip("needs the distributed package")
    from distributed import Client

    cluster = local_cluster(2)  # what --workers 2 starts
    with Client(cluster, timeout=60) as c:
        yield c
    cluster.close()


@needs_dask
@pytest.mark.dask
def test_dask_collection_equals_plain_run(collection, client, tmp_path):
    options = _options(collection, order="collection", formats="png,tiff")
    plain = _plain(collection, tmp_path / "plain", order="collection", formats="png,tiff")
    seen = []
    (result,) = _within(TIMEOUT, matte_inputs, [collection / "frames"], out_dir=tmp_path / "dask", client=client,
                        batch=5, on_progress=lambda d, t, s: seen.append((d, t)), **options)  # fmt: skip
    assert result.error is None and result.out_dir == tmp_path / "dask"  # one input: today's layout
    assert_same_outputs(plain, tmp_path / "dask")
    record = json.loads((tmp_path / "dask" / RUN_RECORD).read_text())
    assert record["complete"] and record["frames_written"] == 24
    dones = [d for d, _ in seen]
    assert dones == sorted(dones) and dones[-1] == 24 and seen[-1][1] == 24
    assert len(set(dones)) >= 5  # a step per task of 5 images, not one jump at the end


@needs_dask
@pytest.mark.dask
def test_dask_video_chains_equal_plain_run(video, client, tmp_path):
    # reference in the middle: a forward and a backward chain, in segments of 16 frames at most
    kwargs = dict(reference_frame=5, formats="png,rgba,tiff")
    plain = _plain(video, tmp_path / "plain", **kwargs)
    (result,) = _within(TIMEOUT, matte_inputs, [video / "frames"], out_dir=tmp_path / "dask", client=client,
                        **_options(video, **kwargs))  # fmt: skip
    assert result.error is None
    assert_same_outputs(plain, tmp_path / "dask")


@needs_dask
@pytest.mark.dask
def test_dask_query_is_sent_once(collection, client, tmp_path, monkeypatch):
    from distributed import Client

    scattered = []
    original = Client.scatter

    def spy(self, data, **kwargs):
        scattered.append(kwargs.get("broadcast"))
        return original(self, data, **kwargs)

    monkeypatch.setattr(Client, "scatter", spy)
    _within(TIMEOUT, matte_inputs, [collection / "frames"], out_dir=tmp_path / "d", client=client, batch=2,
            **_options(collection, order="collection", reference_image=collection / "frames" / "00000.png",
                       reference_frame=None))  # fmt: skip
    assert scattered == [True]  # one broadcast for 12 tasks


class _Stop(Exception):
    pass


def _stop_after(n):
    def on_progress(done, total, *status):
        if done >= n:
            raise _Stop(f"stopped after {done} frames")

    return on_progress


@needs_dask
@pytest.mark.dask
def test_dask_run_resumed_by_plain_run_and_back(video, collection, client, tmp_path):
    plain = _plain(video, tmp_path / "plain", reference_frame=5, formats="png,tiff")
    options = _options(video, reference_frame=5, formats="png,tiff")
    # a Dask run stopped part-way, finished by a plain run
    with pytest.raises(_Stop):
        _within(TIMEOUT, matte_inputs, [video / "frames"], out_dir=tmp_path / "a", client=client,
                on_progress=_stop_after(1), **options)  # fmt: skip
    record = json.loads((tmp_path / "a" / RUN_RECORD).read_text())
    assert not record["complete"] and 0 < record["frames_written"] < 12
    summary = matte_sequence(video / "frames", out_dir=tmp_path / "a", **options)
    assert summary.resumed == record["frames_written"] and summary.frames == 12 - summary.resumed
    assert_same_outputs(plain, tmp_path / "a")
    # a plain run stopped part-way, finished by a Dask run
    with pytest.raises(_Stop):
        matte_sequence(video / "frames", out_dir=tmp_path / "b", on_progress=_stop_after(4), **options)
    (result,) = _within(TIMEOUT, matte_inputs, [video / "frames"], out_dir=tmp_path / "b", client=client, **options)
    assert result.summary.resumed == 4 and result.summary.frames == 8
    assert_same_outputs(plain, tmp_path / "b")


@needs_dask
@pytest.mark.dask
def test_cli_scheduler_address(collection, client, tmp_path, capsys):
    plain = _plain(collection, tmp_path / "plain", order="collection")
    address = client.scheduler.address
    status = _within(TIMEOUT, main, [
        "matte", str(collection / "frames"), "--out", str(tmp_path / "o"), "--order", "collection",
        "--reference-frame", "0", "--mask", str(collection / "reference_mask.png"),
        "--engine-option", "working_size=64", "--scheduler", address, "--quiet",
    ])  # fmt: skip
    assert status == 0, capsys.readouterr().err
    assert_same_outputs(plain, tmp_path / "o")


def test_unreachable_scheduler_is_one_clear_error(collection, tmp_path):
    if not HAS_DISTRIBUTED:
        pytest.skip("needs the distributed package")
    with pytest.raises(InputError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        _within(TIMEOUT, matte_inputs, [collection / "frames"], out_dir=tmp_path / "o", scheduler="tcp://127.0.0.1:9",
                connect_timeout=1, **_options(collection))  # fmt: skip
    assert not (tmp_path / "o").exists()


@needs_dask
@pytest.mark.dask
def test_worker_killed_mid_run_loses_and_duplicates_nothing(collection, tmp_path):
    from distributed import Client

    options = _options(collection, order="collection", formats="png,tiff")
    plain = _plain(collection, tmp_path / "plain", order="collection", formats="png,tiff")
    cluster = local_cluster(2)
    killed = []
    try:
        with Client(cluster, timeout=60) as c:
            pids = c.run(os.getpid)  # worker address -> pid

            def on_progress(done, total, status):
                if killed or done < 4:
                    return
                busy = [w for w, keys in c.processing().items() if keys]
                if busy:  # kill a worker while it runs a task: the task must run again
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])

            (result,) = _within(TIMEOUT, matte_inputs, [collection / "frames"], out_dir=tmp_path / "dask", client=c,
                                batch=1, on_progress=on_progress, **options)  # fmt: skip
    finally:
        cluster.close()
    assert killed, "no worker was busy to kill"
    assert result.error is None and result.summary.frames == 24
    record = json.loads((tmp_path / "dask" / RUN_RECORD).read_text())
    assert record["complete"] and record["frames_written"] == 24
    assert_same_outputs(plain, tmp_path / "dask")
