"""The decoder trainer on the tiny random config: loss falls, resume is exact, checkpoints load."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from safetensors.torch import load_file  # noqa: E402

from napari_iconmat.core.engines.iconmat import losses as losses_module  # noqa: E402
from napari_iconmat.core.engines.iconmat import training as training_module  # noqa: E402
from napari_iconmat.core.engines.iconmat.losses import LossExplosionError  # noqa: E402
from napari_iconmat.core.engines.iconmat.training import (  # noqa: E402
    CHECKPOINT_PREFIX,
    latest_checkpoint,
    train_decoder,
    warmup_factor,
)
from napari_iconmat.cli import main  # noqa: E402
from napari_iconmat.core.errors import InputError  # noqa: E402

from test_training_data import _write_dataset  # noqa: E402  (pytest puts this folder on sys.path)

FAST = {"ensemble_size": 1}  # one noisy copy: the tiny steps take a fraction of a second


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    _write_dataset(root, "toy", {"a": 2, "b": 1}, radius=28)
    _write_dataset(root, "single", {"c": 1}, radius=28)
    return root


def _train(data_root, out, **options):
    settings = dict(datasets=["toy"], out_dir=out, tiny=True, model_options=FAST, batch_size=1, save_every=2)
    settings.update(options)
    return train_decoder(data_root, **settings)


def _weights(path):
    return load_file(str(path))


def test_warmup_factor_is_the_released_linear_schedule():
    assert warmup_factor(0, 250) == 1e-6
    assert warmup_factor(1, 250) == pytest.approx(1e-6 + (1 - 1e-6) / 250)
    assert warmup_factor(249, 250) == pytest.approx(1e-6 + (1 - 1e-6) * 249 / 250)
    assert warmup_factor(250, 250) == warmup_factor(10**6, 250) == 1.0
    assert warmup_factor(0, 0) == 1.0


def test_a_tiny_overfit_run_lowers_the_loss(data_root, tmp_path):
    # one image, its own reference: the decoder can only learn to reproduce its alpha
    summary = _train(data_root, tmp_path / "out", datasets=["single"], steps=12, warmup=0, lr=1e-2, save_every=100)
    first, last = np.mean(summary.losses[:3]), np.mean(summary.losses[-3:])
    assert last < 0.8 * first, summary.losses
    log = [json.loads(line) for line in (tmp_path / "out" / "train-log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13))
    assert [r["total"] for r in log] == pytest.approx(list(summary.losses))
    assert summary.checkpoint.name == "step-00000012"  # the last step is always saved


def test_learning_rate_follows_the_warm_up(data_root, tmp_path):
    _train(data_root, tmp_path / "out", steps=3, warmup=250)
    log = [json.loads(line) for line in (tmp_path / "out" / "train-log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == pytest.approx([4e-4 * warmup_factor(i, 250) for i in range(3)])


def test_checkpoint_holds_the_decoder_in_the_released_key_layout(data_root, tmp_path):
    from napari_iconmat.core.engines.iconmat.config import IconMattingConfig
    from napari_iconmat.core.engines.iconmat.model import InContextMatting

    summary = _train(data_root, tmp_path / "out", steps=2)
    weights = _weights(summary.decoder)
    model = InContextMatting(IconMattingConfig.tiny(**FAST))
    expected = model.decoder.state_dict()
    assert all(k.startswith(CHECKPOINT_PREFIX) for k in weights)
    assert {k[len(CHECKPOINT_PREFIX):] for k in weights} == set(expected)
    stripped = {k[len(CHECKPOINT_PREFIX):]: v for k, v in weights.items()}
    model.decoder.load_state_dict(stripped, strict=True)
    assert weights[CHECKPOINT_PREFIX + "detail_decoder.matting_head.matting_convs.1.num_batches_tracked"].item() == 2
    # the checkpoint folder's copy is the same file content
    assert _weights(summary.checkpoint / "decoder.safetensors").keys() == weights.keys()


def test_kill_and_resume_gives_the_uninterrupted_weights(data_root, tmp_path):
    straight = _train(data_root, tmp_path / "straight", steps=4, warmup=2)

    class Killed(Exception):
        pass

    def kill_at_step_3(step, losses):
        if step == 3:  # after the checkpoint of step 2, before the one of step 4
            raise Killed

    with pytest.raises(Killed):
        _train(data_root, tmp_path / "resumed", steps=4, warmup=2, on_step=kill_at_step_3)
    assert latest_checkpoint(tmp_path / "resumed").name == "step-00000002"
    resumed = train_decoder(data_root, datasets=["toy"], out_dir=tmp_path / "resumed", steps=4, resume=True)  # saved settings
    assert resumed.start_step == 2
    assert resumed.losses == pytest.approx(straight.losses[2:], rel=0, abs=0)
    a, b = _weights(straight.decoder), _weights(resumed.decoder)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    sa = load_file(str(straight.checkpoint / "state.safetensors"))
    sb = load_file(str(resumed.checkpoint / "state.safetensors"))
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    # the log of the killed steps was replaced by the resumed run's
    log = [json.loads(line) for line in (tmp_path / "resumed" / "train-log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == ["step-00000002", "step-00000004"]


def test_resume_refuses_other_settings_and_new_runs_refuse_a_used_folder(data_root, tmp_path):
    _train(data_root, tmp_path / "out", steps=2)
    with pytest.raises(InputError, match="--resume to continue"):
        _train(data_root, tmp_path / "out", steps=4)
    with pytest.raises(InputError, match="was trained with --batch-size 1, got 2"):
        _train(data_root, tmp_path / "out", steps=4, resume=True, batch_size=2)
    summary = _train(data_root, tmp_path / "out", steps=2, resume=True)
    assert "Nothing to do" in summary.describe()


def test_a_damaged_training_state_is_named_on_resume(data_root, tmp_path):
    from safetensors.torch import load_file as load, save_file

    out = tmp_path / "out"
    _train(data_root, out, steps=2)
    state = latest_checkpoint(out) / "state.safetensors"
    tensors = load(str(state))
    from safetensors import safe_open

    with safe_open(str(state), framework="pt") as handle:
        metadata = dict(handle.metadata())
    for damage in ({"settings": "[1, 2]"}, {"optimizer": "not json"}, {"step": "abc"}, {"step": "-5"}):
        save_file(tensors, str(state), metadata={**metadata, **damage})
        with pytest.raises(InputError, match="is damaged .*delete that folder"):
            _train(data_root, out, steps=4, resume=True)


def test_the_loss_limit_grows_with_the_batch():
    from napari_iconmat.core.engines.iconmat.losses import check_loss

    assert check_loss(9000.0, batch_size=2) == 9000.0
    with pytest.raises(LossExplosionError, match="limit 10000"):
        check_loss(12000.0, batch_size=2)
    assert check_loss(12000.0, batch_size=70) == 12000.0  # a sum over 70 samples, not 2
    with pytest.raises(LossExplosionError, match="limit 350000"):
        check_loss(float("inf"), batch_size=70)


def test_decoder_files_are_byte_identical_across_processes(data_root, tmp_path):
    """safetensors orders its metadata from a hash map: sorted here, equal weights give equal files."""
    import subprocess
    import sys

    script = (
        "import sys, torch; from napari_iconmat.core.engines.iconmat.training import _safetensors_bytes; "
        "sys.stdout.buffer.write(_safetensors_bytes({'w': torch.arange(6.0)}, {'format': 'pt', 'step': '40', 'seed': '0'}))"
    )
    files = {subprocess.run([sys.executable, "-c", script], capture_output=True, check=True).stdout for _ in range(4)}
    assert len(files) == 1
    assert b'"__metadata__":{"format":"pt","seed":"0","step":"40"}' in files.pop()


def test_trimap_variant_trains_and_saves(data_root, tmp_path):
    summary = _train(data_root, tmp_path / "out", steps=2, variant="trimap")
    weights = _weights(summary.decoder)
    assert summary.variant == "trimap" and len(summary.losses) == 2
    assert all(k.startswith(CHECKPOINT_PREFIX) for k in weights)
    assert not any("in_context_fusion" in k for k in weights)  # no in-context module
    assert weights[CHECKPOINT_PREFIX + "detail_decoder.convstream.convs.0.conv.weight"].shape[1] == 4  # RGB + trimap


def test_an_exploding_loss_stops_training_with_a_clear_error(data_root, tmp_path, monkeypatch):
    real = losses_module.matting_losses

    def nan_losses(*args, **kwargs):
        out = real(*args, **kwargs)
        out["total"] = out["total"] * float("nan")
        return out

    monkeypatch.setattr(losses_module, "matting_losses", nan_losses)
    with pytest.raises(LossExplosionError, match="step 1: nan"):
        _train(data_root, tmp_path / "out", steps=2)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"variant": "bogus"}, "variant must be one of"),
        ({"steps": 0}, "steps must be an integer >= 1"),
        ({"lr": -1.0}, "lr must be a positive number"),
        ({"model_options": {"bogus": 1}}, "unknown model option 'bogus'"),
        ({"resolution": 100}, "multiple of 64"),
        ({"datasets": ["nope"]}, "no folder"),
        ({"device": "bogus"}, "device must be"),
        ({"device": "meta"}, "device must be"),
        ({"seed": -1}, "seed must be an integer from 0"),
        ({"seed": 2**64}, "seed must be an integer from 0"),
        ({"lr": 1e308}, "lr must be a positive number of at most 1"),
        ({"model_options": {"img_chans": 4}}, "unknown model option 'img_chans'"),
        ({"resume": True}, "does not exist; leave out --resume"),
        ({"model_options": {"ensemble_size": 1.5}}, "ensemble_size must be an integer"),
        ({"model_options": {"mask_threshold": "abc"}}, "mask_threshold must be a number"),
        ({"model_options": {"fusion_out": [8, 8, 8, 0]}}, "fusion_out must hold positive integers"),
    ],
)
def test_bad_settings_fail_before_training(data_root, tmp_path, options, message):
    with pytest.raises(InputError, match=message):
        _train(data_root, tmp_path / "out", **{"steps": 2, **options})


def test_unusable_output_folders_and_full_disks_are_one_line_errors(data_root, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot create --out"):
        _train(data_root, blocker / "out", steps=1)
    assert main(["train", str(data_root), "--dataset", "toy", "--tiny", "--out", str(blocker / "out"), "--steps", "1"]) == 2

    def full_disk(step, losses):  # called inside the loop, as a log write is
        raise OSError(28, "No space left on device", "train-log.jsonl")

    with pytest.raises(InputError, match="No space left on device.*last checkpoint is kept"):
        _train(data_root, tmp_path / "out", steps=1, on_step=full_disk)


def test_a_killed_cli_run_resumes_to_the_uninterrupted_weights(data_root, tmp_path):
    """SIGKILL a real ``iconmat train`` process, resume its folder, compare with a run never stopped."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "killed"
    command = [
        sys.executable, "-m", "napari_iconmat.cli", "train", str(data_root), "--dataset", "toy", "--out", str(out),
        "--tiny", "--model-option", "ensemble_size=1", "--batch-size", "1", "--steps", "1000", "--save-every", "1",
        "--warmup", "3", "--quiet",
    ]  # fmt: skip
    # the same intra-op thread count as this process: float sums depend on it, and the weights are compared bit for bit
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(p) for p in sys.path if p]), OMP_NUM_THREADS=str(torch.get_num_threads()))
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            found = latest_checkpoint(out)
            if found is not None and int(found.name[5:]) >= 2:
                break
            time.sleep(0.05)
        assert process.poll() is None, process.stderr.read().decode()
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.communicate()
    reached = int(latest_checkpoint(out).name[5:])
    resumed = train_decoder(data_root, datasets=["toy"], out_dir=out, steps=reached + 1, resume=True)
    straight = _train(data_root, tmp_path / "straight", steps=reached + 1, warmup=3)
    assert resumed.start_step == reached
    a, b = _weights(straight.decoder), _weights(resumed.decoder)
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed weights differ from the uninterrupted run"
    log = [json.loads(line) for line in (out / "train-log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, reached + 2))
    # keep=2: the newest two checkpoints survive, and no half-written one
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [f"step-{reached:08d}", f"step-{reached + 1:08d}"]


def test_ctrl_c_says_how_to_continue(data_root, tmp_path, capsys, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(training_module, "train_decoder", interrupted)
    code = main(["train", str(data_root), "--dataset", "toy", "--tiny", "--out", str(tmp_path / "out"), "--steps", "1"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and len(err) == 1
    assert err[0].startswith("iconmat: interrupted: the newest checkpoint in") and "--resume" in err[0]
