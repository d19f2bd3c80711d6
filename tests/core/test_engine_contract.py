"""The engine contract, checked once for every registered engine; and the run planner.

One test walks each ready engine through the whole life of a reference query on
a tiny synthetic video: encode -> save -> load (signature checked) -> propagate.
A new engine registered in :mod:`napari_iconmat.core.registry` is picked up here
automatically; engines not ready on this machine (no weights) are skipped with
the reason their ``status()`` gives.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from napari_iconmat.core.engine import looks_ahead
from napari_iconmat.core import (
    InputError,
    QueryMismatchError,
    engine_names,
    engine_statuses,
    load_query,
    make_engine,
    make_prompt,
    plan_runs,
    propagate,
)
from napari_iconmat.core.evaluation.synth import synth_video

N_FRAMES = 4
SIZE = (64, 48)  # (W, H)


def _engine_params():
    statuses = engine_statuses()
    params = []
    for name in engine_names():
        status = statuses[name]
        marks = () if status.ready else pytest.mark.skip(reason=f"engine {name!r} not ready: needs {status.needs}; {status.detail}")
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(scope="module")
def video():
    frames = list(synth_video(n_frames=N_FRAMES, size=SIZE, seed=0))
    return np.stack([f.image for f in frames]), frames[0].alpha > 0.5


class CountingSource:
    """A frame sequence that records which frames were read, and when."""

    def __init__(self, frames):
        self._frames = frames
        self.reads: list[int] = []

    def __len__(self):
        return len(self._frames)

    def __getitem__(self, index):
        self.reads.append(int(index))
        return self._frames[index]

    def iter_frames(self, indices):
        for i in indices:
            yield i, self[i]


def _matte(name, frames, mask, path):
    """encode -> save -> load with the expected signature -> propagate from frame 0."""
    engine = make_engine(name)
    query = engine.encode_reference(frames[0], make_prompt(mask))
    query.save(path)
    loaded = load_query(path, expected=query.signature)
    return query, loaded, dict(propagate(frames, loaded, make_engine(name), reference_index=0))


@pytest.mark.parametrize("name", _engine_params())
def test_engine_contract(name, video, tmp_path):
    frames, mask = video
    height, width = frames.shape[1:3]

    # 1. encode, save, load: the loaded query is the saved one
    query, loaded, mattes = _matte(name, frames, mask, tmp_path / "query.npz")
    assert loaded.signature == query.signature and loaded.key == query.key
    assert loaded.signature["engine"] == name
    assert loaded.meta == query.meta
    assert loaded.arrays.keys() == query.arrays.keys()
    for key, array in query.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[key], array, err_msg=key)

    # 2. every frame matted once: (H, W) float32 alpha in [0, 1]
    assert sorted(mattes) == list(range(N_FRAMES))
    for index, matte in mattes.items():
        alpha = matte.alpha
        assert alpha.dtype == np.float32, index
        assert alpha.shape == (height, width), index
        assert np.isfinite(alpha).all(), index
        assert alpha.min() >= 0.0 and alpha.max() <= 1.0, index

    # 3. determinism: a second run with fresh engines gives identical alphas
    _, _, again = _matte(name, frames, mask, tmp_path / "again.npz")
    for index, matte in mattes.items():
        np.testing.assert_array_equal(again[index].alpha, matte.alpha, err_msg=f"frame {index}")

    # 4. a query loaded for something else is refused, naming what differs
    saved = tmp_path / "query.npz"
    signature = query.signature
    for key, value in [
        ("engine", name + "-other"),
        ("engine_version", str(signature["engine_version"]) + ".1"),
        ("params", {**signature["params"], "unknown_param": 1}),
    ]:
        with pytest.raises(QueryMismatchError, match=key):
            load_query(saved, expected={**signature, key: value})
    with pytest.raises(QueryMismatchError, match="reference"):
        load_query(saved, expected={**signature, "reference_sha1": "0" * 40})

    # 5. a damaged query file is an InputError naming the file
    data = saved.read_bytes()
    for label, content in [("truncated", data[: len(data) // 2]), ("garbage", b"not a query" * 10)]:
        damaged = tmp_path / f"{label}.npz"
        damaged.write_bytes(content)
        with pytest.raises(InputError, match=label):
            load_query(damaged, expected=signature)

    # 6. streaming: propagate is a generator that reads a frame only when it mattes it (an engine that
    # looks ahead, also the next one)
    source = CountingSource(frames)
    stream = propagate(source, loaded, make_engine(name), reference_index=0, direction="forward")
    assert inspect.isgenerator(stream)
    assert source.reads == []  # nothing read before the first next()
    reads_at_yield = []
    for index, _ in stream:
        reads_at_yield.append((index, len(source.reads)))
        if len(reads_at_yield) == 2:
            assert len(source.reads) < len(source)  # a result arrived before the source was exhausted
    # the reference matte needs no read; frame i is the i-th read (and the (i+1)-th with a look-ahead)
    ahead = 1 if looks_ahead(make_engine(name)) else 0
    assert reads_at_yield == [(i, min(i + ahead, N_FRAMES - 1) if i else 0) for i in range(N_FRAMES)]
    assert source.reads == list(range(1, N_FRAMES))


# ---------------------------------------------------------------- plan_runs


def _emitted(runs):
    out = [i for run in runs for i in sorted(run.emit)]
    assert len(out) == len(set(out)), "a frame is output twice"
    return set(out)


def _walks_from(run, reference):
    """The chain starts next to the reference and steps by one frame."""
    steps = np.diff((reference, *run.indices))
    return len(run.indices) > 0 and (np.all(steps == 1) or np.all(steps == -1))


def test_plan_runs_forward_and_backward_from_a_middle_reference():
    runs = plan_runs(10, reference_index=4, ordered=True)
    assert _emitted(runs) == set(range(10))
    assert all(run.start == "reference" for run in runs)
    reference, forward, backward = runs
    assert reference.indices == () and reference.emit == {4}
    assert forward.indices == (5, 6, 7, 8, 9) and _walks_from(forward, 4)
    assert backward.indices == (3, 2, 1, 0) and _walks_from(backward, 4)

    only_forward = plan_runs(10, reference_index=4, ordered=True, direction="forward")
    assert _emitted(only_forward) == set(range(4, 10))
    only_backward = plan_runs(10, reference_index=4, ordered=True, direction="backward")
    assert _emitted(only_backward) == set(range(0, 5))


def test_plan_runs_unordered_collection():
    runs = plan_runs(5, reference_index=2, ordered=False)
    assert _emitted(runs) == set(range(5))
    # every image on its own: no state travels from one image to the next
    assert all(run.start == "fresh" and len(run.indices) == 1 and run.emit == set(run.indices) for run in runs)


@pytest.mark.parametrize(
    ("reference", "frame_range", "chain"),
    [
        (2, (10, 15), tuple(range(3, 15))),  # reference before the range: walk forward through 3..9
        (17, (5, 10), tuple(range(16, 4, -1))),  # reference after the range: walk backward through 16..10
    ],
)
def test_plan_runs_range_outside_the_reference_walks_from_the_reference(reference, frame_range, chain):
    runs = plan_runs(20, reference_index=reference, ordered=True, frame_range=frame_range)
    assert len(runs) == 1
    (run,) = runs
    assert run.start == "reference" and run.indices == chain and _walks_from(run, reference)
    assert _emitted(runs) == set(range(*frame_range))  # the frames walked through are matted, not output


def test_plan_runs_external_reference_and_bad_direction():
    (run,) = plan_runs(6, reference_index=None, ordered=True, frame_range=(1, 4))
    assert run.start == "fresh" and run.indices == (1, 2, 3) and run.emit == {1, 2, 3}
    with pytest.raises(InputError, match="sideways"):
        plan_runs(6, reference_index=0, ordered=True, direction="sideways")


def test_a_bad_frame_is_named_by_its_index():
    from napari_iconmat.core import InputError, make_engine, make_prompt, propagate

    engine = make_engine("classical")
    reference = np.zeros((40, 40, 3), np.uint8)
    reference[10:30, 10:30] = 200
    query = engine.encode_reference(reference, make_prompt(reference[..., 0] > 100))
    frames = [reference, reference, np.zeros((1, 1, 3), np.uint8)]
    with pytest.raises(InputError, match=r"^frame 2: frame is too small to matte: 1x1 pixels$"):
        list(propagate(frames, query, engine, reference_index=0))
