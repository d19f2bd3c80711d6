import dask.array as da
import numpy as np
import pytest

from napari_iconmat.core import make_engine, make_prompt, propagate
from napari_iconmat.core.errors import InputError
from napari_iconmat.core.pipeline.lazy_matte import matte_lazy
from napari_iconmat.core.evaluation.synth import write_synth
from napari_iconmat.core.io.readers import open_frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    folder = write_synth("video", tmp_path_factory.mktemp("lazy"), frames=5, size=(80, 56), seed=4)
    with open_frames(folder / "frames") as source:
        frames = np.stack([source[i] for i in range(len(source))])
    engine = make_engine("classical", working_size=80)
    from napari_iconmat.core.io.readers import read_image

    mask = read_image(folder / "reference_mask.png") > 0
    return frames, engine, engine.encode_reference(frames[2], make_prompt(mask))


def test_sequence_matches_the_streaming_propagation(clip):
    frames, engine, query = clip
    lazy = matte_lazy(da.from_array(frames, chunks=(2, -1, -1, -1)), query, engine, reference_index=2)
    assert lazy.shape == frames.shape[:3] and lazy.dtype == np.float32
    expected = dict(propagate(frames, query, engine, reference_index=2))
    got = lazy.compute(scheduler="synchronous")
    for i in range(len(frames)):
        np.testing.assert_array_equal(got[i], expected[i].alpha)


def test_sequence_computes_only_the_chain_it_needs(clip, encode_calls, monkeypatch):
    frames, engine, query = clip
    seen = []
    original = type(engine).matte_frame

    def counting(self, frame, *args, **kwargs):
        seen.append(int(frame.sum()))
        return original(self, frame, *args, **kwargs)

    monkeypatch.setattr(type(engine), "matte_frame", counting)
    lazy = matte_lazy(frames, query, engine, reference_index=2)
    lazy[3].compute(scheduler="synchronous")
    assert seen == [int(frames[3].sum())]  # frame 3 only: 4, 1 and 0 untouched
    assert encode_calls == []


def test_collection_is_one_independent_task_per_image(clip):
    frames, engine, query = clip
    lazy = matte_lazy(frames, query, engine, ordered=False)
    expected = dict(propagate(frames, query, engine, ordered=False))
    np.testing.assert_array_equal(lazy[4].compute(), expected[4].alpha)
    assert lazy.numblocks == (len(frames), 1, 1)


def test_direction_leaves_unreached_frames_nan(clip):
    frames, engine, query = clip
    lazy = matte_lazy(frames, query, engine, reference_index=2, direction="forward").compute()
    assert np.isnan(lazy[:2]).all() and np.isfinite(lazy[2:]).all()


@pytest.mark.parametrize("bad, message", [(np.zeros((3, 4)), "shape"), (np.zeros((0, 4, 4)), "no frame")])
def test_bad_frames(clip, bad, message):
    _, engine, query = clip
    with pytest.raises(InputError, match=message):
        matte_lazy(bad, query, engine)
