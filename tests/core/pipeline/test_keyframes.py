"""Tests of napari_iconmat.core.pipeline.keyframes: the nearest-keyframe rule, re-propagation, the query cache."""

from __future__ import annotations

import numpy as np
import pytest

from napari_iconmat.core import make_engine, make_prompt, propagate
from napari_iconmat.core.errors import InputError
from napari_iconmat.core.pipeline.keyframes import Keyframes, QueryCache, matte_keyframes
from napari_iconmat.core.evaluation.metrics import sad
from napari_iconmat.core.reference import ReferenceQuery
from napari_iconmat.core.evaluation.synth import synth_video

N = 8


@pytest.fixture(scope="module")
def video():
    """8 frames of 96x64 with exact alpha: (frames (T, H, W, 3) uint8, alpha (T, H, W) float32)."""
    frames = list(synth_video(N, size=(96, 64), seed=3))
    return np.stack([f.image for f in frames]), np.stack([f.alpha for f in frames])


def _engine():
    return make_engine("classical", working_size=96)


class _Recorder:
    """Wraps an engine: records which frames matte_frame is called on."""

    def __init__(self, engine, frames):
        self.engine, self.frames, self.calls = engine, frames, []
        original = engine.matte_frame

        def spy(frame, query, **options):
            matches = [i for i in range(len(frames)) if np.array_equal(frames[i], frame)]
            self.calls.append(matches[0])
            return original(frame, query, **options)

        engine.matte_frame = spy


def _run(frames, engine, keys, cache=None, **plan_options):
    plan = keys.plan(engine, **plan_options)
    return plan, dict(matte_keyframes(frames, engine, keys, plan, cache=cache))


# ---------------------------------------------------------------- the rule


def _keys(indices, n=10, direction="both"):
    keys = Keyframes(n, direction=direction)
    image = np.zeros((8, 8), np.uint8)
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    for i in indices:
        keys.set(i, image, make_prompt(mask))
    return keys


@pytest.mark.parametrize(
    "direction, owners",
    [
        ("both", [2, 2, 2, 2, 2, 7, 7, 7, 7, 7]),
        ("forward", [None, None, 2, 2, 2, 2, 2, 7, 7, 7]),
        ("backward", [2, 2, 2, 7, 7, 7, 7, 7, None, None]),
    ],
)
def test_each_frame_belongs_to_its_nearest_allowed_keyframe(direction, owners):
    keys = _keys([2, 7], direction=direction)
    assert [keys.owner(i) for i in range(10)] == owners


def test_a_tie_goes_to_the_earlier_keyframe():
    keys = _keys([2, 6])
    assert [keys.owner(i) for i in range(2, 7)] == [2, 2, 2, 6, 6]
    assert keys.segment(2) == (0, 4) and keys.segment(6) == (5, 9)


def test_bad_keyframes_are_refused():
    keys = _keys([1])
    with pytest.raises(InputError, match="keyframe 10 is out of range"):
        keys.set(10, np.zeros((8, 8), np.uint8), make_prompt(np.eye(8, dtype=bool)))
    with pytest.raises(InputError, match="prompt of keyframe 3 must have the frame's shape"):
        keys.set(3, np.zeros((9, 8), np.uint8), make_prompt(np.eye(8, dtype=bool)))
    with pytest.raises(InputError, match="frame 4 is not a keyframe"):
        keys.remove(4)
    with pytest.raises(InputError, match="direction must be one of"):
        keys.direction = "sideways"
    with pytest.raises(InputError, match="no keyframe"):
        Keyframes(3).plan(_engine())


# ---------------------------------------------------------------- propagation


def test_one_keyframe_gives_the_same_mattes_as_propagate(video):
    frames, alpha = video
    engine = _engine()
    keys = Keyframes(N)
    keys.set(0, frames[0], make_prompt(alpha[0] > 0.5))
    plan, mattes = _run(frames, engine, keys)
    assert plan.indices == list(range(N)) and plan.total == N
    query = engine.encode_reference(frames[0], make_prompt(alpha[0] > 0.5))
    expected = dict(propagate(frames, query, engine, reference_index=0))
    for i in range(N):
        np.testing.assert_array_equal(mattes[i].alpha, expected[i].alpha)
    assert sorted(keys.done) == list(range(N))


def test_a_new_keyframe_rematting_only_the_frames_it_takes_over(video, encode_calls):
    frames, alpha = video
    engine = _engine()
    recorder = _Recorder(engine, frames)
    cache = QueryCache()
    keys = Keyframes(N)
    keys.set(0, frames[0], make_prompt(alpha[0] > 0.5))
    _, first = _run(frames, engine, keys, cache)
    assert sorted(recorder.calls) == list(range(1, N))

    # a correction on frame 6: frames 4..7 are nearer to 6 than to 0 (3 is a tie: it stays with 0)
    recorder.calls.clear()
    keys.set(6, frames[6], make_prompt(alpha[6] > 0.5))
    plan, second = _run(frames, engine, keys, cache)
    assert plan.indices == [4, 5, 6, 7]
    assert recorder.calls == [7, 5, 4]  # forward from 6, then backward; frames 0..3 are not recomputed
    assert sorted(second) == [4, 5, 6, 7]
    assert keys.done[3] == (0, keys.done[0][1]) and keys.done[4][0] == 6
    # the keyframe's matte is its prompt's; the frames it took over got closer to the truth
    assert sad(second[6].alpha, alpha[6]) < sad(first[6].alpha, alpha[6])
    assert encode_calls == [1, 1]  # frame 0 once, frame 6 once

    # nothing changed: a second Propagate mattes nothing and encodes nothing
    recorder.calls.clear()
    plan, third = _run(frames, engine, keys, cache)
    assert plan.total == 0 and third == {} and recorder.calls == [] and encode_calls == [1, 1]


def test_repainting_a_keyframe_rematting_its_segment_and_removing_it_hands_frames_back(video):
    frames, alpha = video
    engine = _engine()
    recorder = _Recorder(engine, frames)
    keys = Keyframes(N)
    keys.set(0, frames[0], make_prompt(alpha[0] > 0.5))
    keys.set(6, frames[6], make_prompt(alpha[6] > 0.5))
    _run(frames, engine, keys)

    recorder.calls.clear()
    keys.set(6, frames[6], make_prompt(alpha[6], kind="alpha"))  # another prompt: another signature
    plan, _ = _run(frames, engine, keys)
    assert plan.indices == [4, 5, 6, 7] and recorder.calls == [7, 5, 4]

    recorder.calls.clear()
    keys.remove(6)
    plan, _ = _run(frames, engine, keys)
    # frame 0 takes 4..7 back; its chain continues from the track state it kept at frame 3
    assert plan.indices == [4, 5, 6, 7] and recorder.calls == [4, 5, 6, 7]


def test_range_and_direction(video):
    frames, alpha = video
    engine = _engine()
    recorder = _Recorder(engine, frames)
    keys = Keyframes(N)
    keys.set(3, frames[3], make_prompt(alpha[3] > 0.5))
    plan, mattes = _run(frames, engine, keys, frame_range=(4, 6))
    assert plan.indices == [4, 5] and recorder.calls == [4, 5]

    recorder.calls.clear()
    keys.direction = "forward"
    plan, mattes = _run(frames, engine, keys)
    assert plan.indices == [3, 6, 7] and recorder.calls == [6, 7]  # the chain goes on from frame 5's track state

    keys.direction = "both"
    _run(frames, engine, keys)
    keys.direction = "backward"
    plan = keys.plan(engine)
    assert plan.total == 0 and plan.stale == (4, 5, 6, 7)
    keys.forget(plan.stale)
    assert sorted(keys.done) == [0, 1, 2, 3]


def test_cancel_between_frames_keeps_what_was_done(video):
    frames, alpha = video
    engine = _engine()
    keys = Keyframes(N)
    keys.set(0, frames[0], make_prompt(alpha[0] > 0.5))
    steps = matte_keyframes(frames, engine, keys, keys.plan(engine))
    got = [next(steps)[0] for _ in range(3)]
    steps.close()
    assert got == [0, 1, 2] and sorted(keys.done) == [0, 1, 2]
    # the next Propagate mattes only 3..7, continuing the chain from the track state kept at frame 2
    plan = keys.plan(engine)
    assert plan.indices == list(range(3, N))
    resumed = dict(matte_keyframes(frames, engine, keys, plan))
    fresh = Keyframes(N)
    fresh.set(0, frames[0], make_prompt(alpha[0] > 0.5))
    whole = dict(matte_keyframes(frames, engine, fresh, fresh.plan(engine)))
    for i in range(3, N):  # the same mattes as one uninterrupted job
        np.testing.assert_allclose(resumed[i].alpha, whole[i].alpha, atol=1e-6)


def test_engine_change_rematting_everything(video, encode_calls):
    frames, alpha = video
    keys = Keyframes(N)
    keys.set(0, frames[0], make_prompt(alpha[0] > 0.5))
    cache = QueryCache()
    _run(frames, _engine(), keys, cache)
    other = make_engine("classical", working_size=64)
    assert keys.plan(other).total == N  # another parameter, another signature: nothing is up to date
    _run(frames, other, keys, cache)
    assert len(encode_calls) == 2 and len(cache) == 2


# ---------------------------------------------------------------- the query cache


def test_query_cache_in_a_folder_checks_signatures(video, tmp_path, encode_calls):
    frames, alpha = video
    engine = _engine()
    prompt = make_prompt(alpha[0] > 0.5)
    first = QueryCache(tmp_path).get(engine, frames[0], prompt)
    assert len(encode_calls) == 1 and len(list(tmp_path.glob("classical-*.npz"))) == 1

    again = QueryCache(tmp_path)  # a new session: found on disk, not encoded
    query = again.get(engine, frames[0], prompt)
    assert len(encode_calls) == 1 and again.encoded == 0 and query.signature == first.signature
    assert again.get(engine, frames[0], prompt) is query  # then from memory

    # a file whose signature does not match its name is not trusted
    (path,) = tmp_path.glob("classical-*.npz")
    other = make_engine("classical", working_size=64).encode_reference(frames[0], prompt)
    other.save(path)
    encode_calls.clear()
    fresh = QueryCache(tmp_path)
    assert fresh.get(engine, frames[0], prompt).signature == first.signature
    assert fresh.encoded == 1 and len(encode_calls) == 1
    assert ReferenceQuery.load(path).signature == first.signature  # and the file is replaced


def test_memory_cache_is_bounded(video):
    frames, alpha = video
    engine = _engine()
    cache = QueryCache(max_items=2)
    for i in range(3):
        cache.get(engine, frames[i], make_prompt(alpha[i] > 0.5))
    assert len(cache) == 2 and cache.encoded == 3


# ---------------------------------------------------------------- blending two keyframes
def test_blending_between_two_keyframes_weights_closeness_and_confidence(video):
    from napari_iconmat.core.engine import FrameMatte

    frames, alpha = video
    keys = Keyframes(N, blend=True)
    for k in (0, 6):
        keys.set(k, frames[k], make_prompt(alpha[k] > 0.5))
    assert [keys.sources(i) for i in (0, 2, 6, 7)] == [[0], [0, 6], [6], [6]]
    one, zero = FrameMatte(np.ones((2, 2), np.float32)), FrameMatte(np.zeros((2, 2), np.float32))
    assert keys.blend_weights(2, {0: one, 6: zero}) == pytest.approx({0: 4 / 6, 6: 2 / 6})
    unsure = FrameMatte(np.zeros((2, 2), np.float32), confidence=0.0)
    assert keys.blend_weights(2, {0: one, 6: unsure}) == pytest.approx({0: 1.0, 6: 0.0})


def test_blending_a_new_keyframe_runs_only_its_chains_and_resumes_after_a_stop(video, monkeypatch):
    from napari_iconmat.core.pipeline import keyframes as keyframes_module

    monkeypatch.setattr(keyframes_module, "MEET_AGREEMENT", np.inf)  # chains never stop where they agree
    frames, alpha = video
    engine = _engine()
    recorder = _Recorder(engine, frames)
    keys = Keyframes(N, blend=True)
    keys.set(0, frames[0], make_prompt(alpha[0] > 0.5))
    _run(frames, engine, keys)
    recorder.calls.clear()
    keys.set(5, frames[5], make_prompt(alpha[5] > 0.5))
    plan = keys.plan(engine)
    assert plan.indices == list(range(1, N))  # 1..4 are blends now, 5..7 from 5
    steps = matte_keyframes(frames, engine, keys, plan)
    got = [next(steps)[0] for _ in range(3)]
    steps.close()
    assert got == [5, 6, 7] and recorder.calls == [6, 7]  # 0's mattes are kept: only 5's chains run
    resumed = dict(matte_keyframes(frames, engine, keys, keys.plan(engine)))
    assert sorted(resumed) == [1, 2, 3, 4] and recorder.calls == [6, 7, 4, 3, 2, 1]
    assert keys.plan(engine).total == 0


def _marked_on_frame_0(frames, alpha):
    """Blending keyframes with one keyframe at 0, propagated; the engine's frame calls recorded from here on."""
    engine = _engine()
    recorder = _Recorder(engine, frames)
    keys = Keyframes(N, blend=True)
    keys.set(0, frames[0], make_prompt(alpha[0] > 0.5))
    _, mattes = _run(frames, engine, keys)
    recorder.calls.clear()
    return engine, recorder, keys, mattes


def test_a_correction_stops_where_it_meets_the_old_mattes(video):
    # the new keyframe's backward chain agrees with the old mattes at once on this easy video: the frames
    # beyond keep their old mattes untouched, and only the meeting frame is blended
    frames, alpha = video
    engine, recorder, keys, before = _marked_on_frame_0(frames, alpha)
    keys.set(5, frames[5], make_prompt(alpha[5] > 0.5))
    plan, after = _run(frames, engine, keys)
    assert sorted(after) == plan.indices == list(range(1, N))  # every frame of the plan still arrives
    assert recorder.calls == [6, 7, 4]  # 5's backward chain stopped at 4
    for i in (1, 2, 3):
        assert keys.sources(i) == [0]
        np.testing.assert_array_equal(after[i].alpha, before[i].alpha)
    assert keys.sources(4) == [0, 5]
    assert keys.plan(engine).total == 0


def test_a_correction_that_disagrees_remattes_up_to_the_other_keyframe(video):
    from napari_iconmat.core.evaluation.metrics import iou
    from napari_iconmat.core.pipeline.keyframes import MEET_AGREEMENT

    frames, alpha = video
    engine, recorder, keys, _ = _marked_on_frame_0(frames, alpha)
    # the "correction" marks a patch of background: its chain never agrees with the old mattes
    half = np.zeros(alpha[5].shape, bool)
    half[2:18, 2:18] = True
    assert not (alpha[5][half] > 0.5).any()
    keys.set(5, frames[5], make_prompt(half))
    plan, after = _run(frames, engine, keys)
    assert recorder.calls == [6, 7, 4, 3, 2, 1]
    assert all(keys.sources(i) == [0, 5] for i in (1, 2, 3, 4))
    assert iou(after[4].alpha, half) < MEET_AGREEMENT
    # the meeting of an earlier plan is forgotten when a keyframe's prompt changes
    keys.set(5, frames[5], make_prompt(alpha[5] > 0.5))
    keys.plan(engine)
    assert keys.sources(2) == [0, 5]

