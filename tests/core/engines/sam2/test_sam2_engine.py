"""The ``sam2`` engine through the engine contract on a tiny random Sam2VideoConfig (CPU, offline).

The mattes of random weights are meaningless: these tests check the plumbing (query,
memory, state, resume, weights, CLI), not quality.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from napari_iconmat.cli import main  # noqa: E402
from napari_iconmat.core import InputError, WeightsNotFoundError, load_query, make_engine, make_prompt, propagate  # noqa: E402
from napari_iconmat.core.engines.sam2 import model as sam2_model  # noqa: E402
from napari_iconmat.core.engines.sam2.engine import Sam2Engine  # noqa: E402
from napari_iconmat.core.errors import CheckpointError  # noqa: E402
from napari_iconmat.core.evaluation.synth import synth_video, write_synth  # noqa: E402
from napari_iconmat.core.pipeline.run import RunInterrupted, matte_sequence  # noqa: E402
from napari_iconmat.core.registry import engine_names, engine_statuses  # noqa: E402

TINY = dict(random_init="tiny", refiner="closed-form")
N_FRAMES = 5


@pytest.fixture(scope="module")
def engine():
    return make_engine("sam2", **TINY)


@pytest.fixture(scope="module")
def video():
    frames = list(synth_video(n_frames=N_FRAMES, size=(64, 48), seed=0))
    return np.stack([f.image for f in frames]), frames[0].alpha > 0.5


def _check_matte(matte, shape):
    assert matte.alpha.shape == shape and matte.alpha.dtype == np.float32
    assert np.isfinite(matte.alpha).all() and 0 <= matte.alpha.min() and matte.alpha.max() <= 1
    assert matte.coarse.shape == shape and matte.coarse.dtype == bool
    assert isinstance(matte.confidence, float) and 0.0 <= matte.confidence <= 1.0


def test_contract_encode_save_load_and_a_sequence_both_ways(engine, video, tmp_path):
    frames, mask = video
    query = engine.encode_reference(frames[2], make_prompt(mask))
    assert query.signature["engine"] == "sam2" and query.signature["params"]["model"] == "random:tiny"
    # the conditioning memory: mask memory features + positional encoding (8x8 cells of 64), object pointer
    assert query.arrays["cond0.maskmem_features"].shape == (64, 1, 64)
    assert query.arrays["cond0.maskmem_pos_enc"].shape == (64, 1, 64)
    assert query.arrays["cond0.object_pointer"].shape == (1, 1, 128)
    assert query.arrays["cond0.object_score_logits"].item() == 10.0  # a mask prompt: the object is there
    path = query.save(tmp_path / "q.npz")
    loaded = load_query(path, expected=query.signature)
    for key, array in query.arrays.items():
        np.testing.assert_array_equal(loaded.arrays[key], array, err_msg=key)
    mattes = dict(propagate(frames, loaded, engine, reference_index=2))
    assert sorted(mattes) == list(range(N_FRAMES))
    for index, matte in mattes.items():
        _check_matte(matte, (48, 64))
    np.testing.assert_array_equal(mattes[2].coarse, mask)  # the reference's own matte is its prompt, matted
    # a fresh engine with a re-loaded query gives the same mattes: nothing hidden in the engine
    again = dict(propagate(frames, load_query(path), make_engine("sam2", **TINY), reference_index=2))
    for index, matte in mattes.items():
        np.testing.assert_array_equal(again[index].alpha, matte.alpha, err_msg=f"frame {index}")


def test_memory_is_bounded_and_frames_are_not_kept(engine, video):
    frames, mask = video
    query = engine.encode_reference(frames[0], make_prompt(mask))
    loaded = engine._loaded
    _, state = engine.reference_matte(query)
    for i in range(20):
        _, state = engine.matte_frame(frames[i % N_FRAMES], query, state=state)
    assert state.index == 20
    full = [t for t, e in state.memory.items() if "maskmem_features" in e]
    assert sorted(full) == list(range(20 - loaded.num_maskmem + 2, 21))  # the last num_maskmem - 1 frames
    assert sorted(state.memory) == list(range(20 - loaded.max_pointers + 2, 21))  # pointers of the last 15
    assert all(set(e) == {"object_pointer"} for t, e in state.memory.items() if t not in full)
    assert all(not any(k in e for k in ("high_res_masks", "pred_masks")) for e in state.memory.values())


def test_a_collection_is_matted_against_the_cached_memory_in_any_order(engine, video):
    frames, mask = video
    query = engine.encode_reference(frames[0], make_prompt(mask))
    first, state = engine.matte_frame(frames[3], query)
    assert state.index == 1  # a one-frame continuation from the reference
    engine.matte_frame(frames[1], query)
    second, _ = engine.matte_frame(frames[3], query, with_foreground=True)
    np.testing.assert_array_equal(first.alpha, second.alpha)
    assert second.foreground.shape == (48, 64, 3)


def test_object_absent_means_alpha_zero_and_confidence_zero(engine, video, monkeypatch):
    frames, mask = video
    query = engine.encode_reference(frames[0], make_prompt(mask))
    original = sam2_model.step

    def absent(*args, **kwargs):
        entry, logits, _ = original(*args, **kwargs)
        return entry, logits, -3.0

    monkeypatch.setattr(sam2_model, "step", absent)
    matte, state = engine.matte_frame(frames[1], query)
    assert matte.confidence == 0.0 and not matte.alpha.any() and not matte.coarse.any()
    assert state.index == 1  # the memory still moves on (SAM 2 encodes the occlusion)


def test_save_and_load_state_continue_identically(engine, video):
    frames, mask = video
    query = engine.encode_reference(frames[0], make_prompt(mask))
    _, state = engine.reference_matte(query)
    for i in range(1, 4):
        _, state = engine.matte_frame(frames[i], query, state=state)
    arrays = engine.save_state(state)
    assert all(isinstance(v, np.ndarray) and v.dtype != object for v in arrays.values())
    restored = make_engine("sam2", **TINY).load_state(arrays)
    direct, _ = engine.matte_frame(frames[4], query, state=state)
    resumed, _ = engine.matte_frame(frames[4], query, state=restored)
    np.testing.assert_array_equal(resumed.alpha, direct.alpha)
    with pytest.raises(ValueError, match="not a sam2 track state"):
        engine.load_state({"format": np.array([1])})


def test_scribble_and_alpha_prompts(engine, video):
    frames, mask = video
    scribble = np.zeros(mask.shape, np.uint8)
    rows, cols = np.nonzero(mask)
    scribble[rows[len(rows) // 2], cols[len(cols) // 2]] = 1
    scribble[0, 0] = 2
    query = engine.encode_reference(frames[0], make_prompt(scribble, kind="scribble"))
    assert query.meta["prompt_kind"] == "scribble"
    _check_matte(engine.matte_frame(frames[1], query)[0], (48, 64))
    soft = mask.astype(np.float32) * 0.8
    query = engine.encode_reference(frames[0], make_prompt(soft, kind="alpha"))
    np.testing.assert_array_equal(engine.reference_matte(query)[0].alpha, soft)  # a given alpha is kept


def test_resume_after_an_interrupt_equals_the_uninterrupted_run(tmp_path):
    sample = write_synth("video", tmp_path / "s", frames=6, size=(64, 48), seed=1)
    options = dict(mask=sample / "reference_mask.png", reference_frame=2, engine="sam2", engine_params=dict(TINY))
    matte_sequence(sample / "frames", out_dir=tmp_path / "whole", **options)

    def cancel(done, total):
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(RunInterrupted):
        matte_sequence(sample / "frames", out_dir=tmp_path / "cut", on_progress=cancel, **options)
    summary = matte_sequence(sample / "frames", out_dir=tmp_path / "cut", **options)
    assert summary.resumed == 4
    for name in sorted(p.name for p in (tmp_path / "whole" / "alpha").iterdir()):
        assert (tmp_path / "cut" / "alpha" / name).read_bytes() == (tmp_path / "whole" / "alpha" / name).read_bytes(), name


def test_a_folder_with_only_the_model_loads_and_hub_ids_come_from_the_cache(tmp_path, monkeypatch):
    folder = tmp_path / "tiny-sam2"
    sam2_model.random_model("tiny", device=torch.device("cpu"), dtype=torch.float32).save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]  # no processor files
    engine = make_engine("sam2", model=str(folder), refiner="closed-form")
    assert engine.params["model"] == str(folder) and engine._loaded.size == 128
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    status = Sam2Engine.status()
    assert not status.ready and "'facebook/sam2.1-hiera-tiny' is not in the Hugging Face cache" in status.detail
    assert "huggingface-cli download facebook/sam2.1-hiera-tiny" in status.detail and "model=DIR" in status.detail
    with pytest.raises(WeightsNotFoundError, match="not in the local Hugging Face cache"):
        make_engine("sam2")
    repo = tmp_path / "cache" / "models--facebook--sam2.1-hiera-tiny"
    shutil.copytree(folder, repo / "snapshots" / "0123abcd")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    assert Sam2Engine.status().ready
    assert make_engine("sam2", refiner="closed-form").params["model"] == "facebook/sam2.1-hiera-tiny"


def test_bad_options_and_folders(tmp_path):
    with pytest.raises(InputError, match="refiner must be one of"):
        make_engine("sam2", random_init="tiny", refiner="knn")
    with pytest.raises(InputError, match="dtype=bfloat16 needs a GPU"):
        make_engine("sam2", random_init="tiny", dtype="bfloat16", device="cpu")
    with pytest.raises(WeightsNotFoundError, match="no model folder at"):
        make_engine("sam2", model=str(tmp_path / "absent"))
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "vitmatte"}))
    with pytest.raises(CheckpointError, match="not a SAM 2 or EdgeTAM video model"):
        make_engine("sam2", model=str(other))


def test_out_of_memory_is_one_line_naming_what_to_change(engine, video, monkeypatch):
    frames, mask = video
    query = engine.encode_reference(frames[0], make_prompt(mask))

    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(sam2_model, "step", oom)
    with pytest.raises(Exception, match="sam2: out of memory on cpu .*smaller model.*dtype=bfloat16.*device=cpu") as info:
        engine.matte_frame(frames[1], query)
    assert "\n" not in str(info.value)


def test_engines_lists_sam2_with_its_readiness_without_loading_torch(tmp_path):
    assert "sam2" in engine_names() and "sam2" in engine_statuses()
    code = textwrap.dedent(
        f"""
        import contextlib, io, json, sys
        import huggingface_hub.constants
        huggingface_hub.constants.HF_HUB_CACHE = {str(tmp_path)!r}
        from napari_iconmat.cli import main
        from napari_iconmat.core.engines.sam2.engine import Sam2Engine
        status = Sam2Engine.status()
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["engines"])
        print(json.dumps({{"code": code, "out": out.getvalue(), "ready": status.ready, "torch": "torch" in sys.modules}}))
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["code"] == 0 and not report["torch"] and not report["ready"]
    (row,) = [line for line in report["out"].splitlines() if line.startswith("sam2")]
    assert " no " in row and "huggingface-cli download facebook/sam2.1-hiera-tiny" in row


def test_cli_matte_and_bench_with_sam2(tmp_path, capsys):
    sample = write_synth("video", tmp_path / "s", frames=3, size=(64, 48), seed=0)
    options = [arg for key, value in TINY.items() for arg in ("--engine-option", f"{key}={value}")]
    args = ["matte", str(sample / "frames"), "--reference-frame", "0", "--mask", str(sample / "reference_mask.png")]
    assert main([*args, "--out", str(tmp_path / "out"), "--engine", "sam2", *options, "--quiet"]) == 0
    assert sorted(p.name for p in (tmp_path / "out" / "alpha").iterdir()) == ["00000.png", "00001.png", "00002.png"]
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "bad"), "--engine", "sam2", "--engine-option", "model=/nonexistent/sam2"]) == 2
    assert capsys.readouterr().err == "iconmat: error: SAM 2 video model: no model folder at /nonexistent/sam2\n"
    report = tmp_path / "bench.json"
    bench = ["bench", str(sample), "--engines", "classical,sam2", *[a.replace("random_init", "sam2.random_init").replace("refiner=", "sam2.refiner=") for a in options]]
    assert main([*bench, "--json", str(report), "--quiet"]) == 0
    methods = {row["method"] for row in json.loads(report.read_text())["rows"]}
    assert {"classical", "sam2"} <= methods


class _Memory:
    """Records, per model call of the engine, what SAM 2's memory attention reads: the times of the
    conditioning frames in the session, how many mask memories it concatenates (conditioning + previous
    frames), the temporal offsets of the object pointers, and the low-res logits."""

    def __init__(self, engine, monkeypatch):
        self.calls = []
        model, original_step = engine._loaded.model, sam2_model.step
        gather, pointers = model._gather_memory_frame_outputs, model._get_object_pointers

        def step(*args, conditioning, **kwargs):
            self.calls.append({"cond": sorted(conditioning), "index": kwargs["index"]})
            entry, logits, score = original_step(*args, conditioning=conditioning, **kwargs)
            self.calls[-1]["logits"] = logits.float().numpy().copy()
            return entry, logits, score

        def gather_spy(*args, **kwargs):
            out = gather(*args, **kwargs)
            self.calls[-1]["cond_memories"] = sum(1 for t, o in out if t == 0 and o is not None)
            return out

        def pointers_spy(*args, **kwargs):
            out = pointers(*args, **kwargs)
            self.calls[-1]["pointer_offsets"] = sorted(out[0])
            return out

        monkeypatch.setattr(sam2_model, "step", step)
        monkeypatch.setattr(model, "_gather_memory_frame_outputs", gather_spy)
        monkeypatch.setattr(model, "_get_object_pointers", pointers_spy)


def test_merge_queries_holds_every_reference_at_its_time(engine, video, tmp_path):
    from napari_iconmat.core.engine import merges_queries
    from napari_iconmat.core.engines.sam2.engine import conditioning_times
    from napari_iconmat.core.reference import merged_signature

    frames, mask = video
    first = engine.encode_reference(frames[0], make_prompt(mask))
    second = engine.encode_reference(frames[4], make_prompt(np.roll(mask, 3, axis=1)))
    assert merges_queries(engine) and not merges_queries(make_engine("classical"))
    assert engine.merge_queries([first], [0]) is first and conditioning_times(first) == [0]
    merged = engine.merge_queries([first, second], [0, 4])
    assert conditioning_times(merged) == [0, 4]
    for key in sam2_model.MEMORY_KEYS:
        np.testing.assert_array_equal(merged.arrays["cond0." + key], first.arrays["cond0." + key])
        np.testing.assert_array_equal(merged.arrays["cond1." + key], second.arrays["cond0." + key])
    np.testing.assert_array_equal(engine.reference_matte(merged)[0].alpha, first.arrays["alpha"])  # its own matte
    assert merged.signature == merged_signature([first.signature, second.signature], [0, 4])
    assert merged.key not in (first.key, second.key)
    assert merged.key != engine.merge_queries([first, second], [0, -4]).key  # positions are signed
    loaded = load_query(merged.save(tmp_path / "m.npz"), expected=merged.signature)
    assert conditioning_times(loaded) == [0, 4]
    for times in ([1, 4], [0, 0]):
        with pytest.raises(InputError, match="one distinct time per query"):
            engine.merge_queries([first, second], times)
    with pytest.raises(InputError, match="single-reference sam2 queries"):
        engine.merge_queries([merged, second], [0, 4])


def test_a_correction_conditions_every_chain_on_all_keyframes(engine, video, monkeypatch):
    """Keyframes 0 then 4 (nearest keyframe alone): every frame is matted again, each chain from one
    session holding both keyframes; removing 4 goes back to keyframe 0's own query and mattes."""
    from napari_iconmat.core import Keyframes, QueryCache, matte_keyframes
    from napari_iconmat.core.pipeline.keyframes import signature_key

    frames, mask = video
    memory = _Memory(engine, monkeypatch)
    keyframes, cache = Keyframes(N_FRAMES), QueryCache()
    keyframes.set(0, frames[0], make_prompt(mask))
    plan = keyframes.plan(engine)
    single_key = plan.runs[0].key
    assert plan.conditioning == () and single_key == signature_key(keyframes[0].signature(engine))  # as before
    first = dict(matte_keyframes(frames, engine, keyframes, plan, cache=cache))
    single = {c["index"]: c for c in memory.calls}
    assert all(c["cond"] == [0] and c["cond_memories"] == 1 for c in memory.calls)

    keyframes.set(4, frames[4], make_prompt(np.roll(mask, 3, axis=1)))
    plan = keyframes.plan(engine)
    assert plan.conditioning == (0, 4) and plan.indices == list(range(N_FRAMES))  # every chain again
    assert plan.runs[0].key != single_key
    memory.calls.clear()
    second = dict(matte_keyframes(frames, engine, keyframes, plan, cache=cache))
    assert sorted(second) == list(range(N_FRAMES)) and cache.encoded == 2
    # frames 1, 2: forward from 0 (keyframe 4 ahead at time 4); frame 3: backward from 4 (keyframe 0 ahead at 4)
    assert [(c["index"], c["cond"], c["cond_memories"]) for c in memory.calls] == [(1, [0, 4], 2), (2, [0, 4], 2), (1, [0, 4], 2)]
    # the keyframe ahead gives its mask memory, not its object pointer (SAM 2 reads only pointers behind)
    assert [c["pointer_offsets"] for c in memory.calls] == [[1], [1, 2], [1]]
    for call in memory.calls[:2]:  # the same frames as in the one-keyframe run, now read with keyframe 4 too
        assert np.abs(call["logits"] - single[call["index"]]["logits"]).max() > 0
    np.testing.assert_array_equal(second[0].alpha, first[0].alpha)
    np.testing.assert_array_equal(second[4].coarse, np.roll(mask, 3, axis=1))
    for index, matte in second.items():
        _check_matte(matte, (48, 64))
    assert keyframes.plan(engine).total == 0  # nothing changed: nothing to do

    keyframes.set(4, frames[4], make_prompt(np.roll(mask, 2, axis=1)))  # re-painting keyframe 4 changes 0's key too
    assert keyframes.plan(engine).runs[0].key not in (single_key, plan.runs[0].key)
    keyframes.remove(4)
    plan = keyframes.plan(engine)
    assert plan.conditioning == () and plan.runs[0].key == single_key and plan.indices == list(range(N_FRAMES))
    memory.calls.clear()
    third = dict(matte_keyframes(frames, engine, keyframes, plan, cache=cache))
    assert all(c["cond"] == [0] and c["cond_memories"] == 1 for c in memory.calls)
    for index, matte in third.items():  # single conditioning again: the one-keyframe mattes exactly
        np.testing.assert_array_equal(matte.alpha, first[index].alpha, err_msg=f"frame {index}")


def test_a_keyframe_behind_the_chain_gives_its_pointer_at_its_distance(engine, monkeypatch):
    """Keyframes 0, 4, 8 of 9 frames: the chains from 4 read keyframe 0 (or 8) behind them, as SAM 2
    propagating from 4 would: its object pointer 4 + n frames away; the one ahead gives its mask memory only."""
    from napari_iconmat.core import Keyframes, QueryCache, matte_keyframes

    sequence = list(synth_video(n_frames=9, size=(64, 48), seed=4))
    frames = np.stack([f.image for f in sequence])
    keyframes = Keyframes(9)
    for k in (0, 4, 8):
        keyframes.set(k, frames[k], make_prompt(sequence[k].alpha > 0.5))
    plan = keyframes.plan(engine, frame_range=(3, 7))
    assert plan.conditioning == (0, 4, 8)
    assert [(r.keyframe, r.forward, r.backward) for r in plan.runs] == [(4, (5, 6), (3,))]
    memory = _Memory(engine, monkeypatch)
    assert sorted(dict(matte_keyframes(frames, engine, keyframes, plan, cache=QueryCache()))) == [3, 4, 5, 6]
    forward_times, backward_times = [0, -4, 4], [0, 4, -4]  # keyframes 4, 0, 8 on each chain's axis
    assert [(c["index"], c["cond"], c["cond_memories"]) for c in memory.calls] == [
        (1, sorted(forward_times), 3), (2, sorted(forward_times), 3), (1, sorted(backward_times), 3)
    ]
    # frame 5: keyframe 4 at 1, keyframe 0 at 5; frame 6: + frame 5 at 1; frame 3 (backward): 4 at 1, 8 at 5
    assert [c["pointer_offsets"] for c in memory.calls] == [[1, 5], [1, 2, 6], [1, 5]]


def test_with_a_memory_sensitive_model_the_other_keyframe_changes_the_mattes(video):
    """The tiny random model barely reads its memory (logits ~1e-3): with larger random weights
    (std 0.1, seed 3) a second keyframe's conditioning changes the frames matted from the first."""
    from napari_iconmat.core import Keyframes, QueryCache, matte_keyframes

    frames, mask = video
    sensitive = make_engine("sam2", **TINY)
    torch.manual_seed(3)
    with torch.no_grad():
        for parameter in sensitive._loaded.model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.1)
    keyframes, cache = Keyframes(N_FRAMES), QueryCache()
    keyframes.set(0, frames[0], make_prompt(mask))
    alone = dict(matte_keyframes(frames, sensitive, keyframes, keyframes.plan(sensitive), cache=cache))
    keyframes.set(4, frames[4], make_prompt(np.roll(mask, 3, axis=1)))
    both = dict(matte_keyframes(frames, sensitive, keyframes, keyframes.plan(sensitive), cache=cache))
    for index in (1, 2):  # matted from keyframe 0 in both runs
        assert np.abs(both[index].alpha - alone[index].alpha).max() > 0.1, f"frame {index}"


@pytest.mark.dask
def test_runs_on_dask_workers_like_the_other_engines(tmp_path):
    pytest.importorskip("distributed")
    from distributed import Client

    from napari_iconmat.core.io import read_image
    from napari_iconmat.core.pipeline.cluster import local_cluster, matte_inputs

    sample = write_synth("video", tmp_path / "s", frames=4, size=(64, 48), seed=2)
    options = dict(mask=sample / "reference_mask.png", reference_frame=1, engine="sam2", engine_params=dict(TINY))
    matte_sequence(sample / "frames", out_dir=tmp_path / "plain", **options)
    cluster = local_cluster(1)
    try:
        with Client(cluster, timeout=60) as client:
            (result,) = matte_inputs([sample / "frames"], out_dir=tmp_path / "dask", client=client, **options)
    finally:
        cluster.close()
    assert result.error is None
    names = sorted(p.name for p in (tmp_path / "plain" / "alpha").iterdir())
    assert names == sorted(p.name for p in (result.out_dir / "alpha").iterdir()) and len(names) == 4
    for name in names:  # one worker thread vs this process's threads: equal up to one grey level
        a = read_image(tmp_path / "plain" / "alpha" / name).astype(int)
        b = read_image(result.out_dir / "alpha" / name).astype(int)
        assert np.abs(a - b).max() <= 1, name
