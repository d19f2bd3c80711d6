"""Trained decoders in the engine: released key layout, strict loading, ``iconmat bench`` on ICM-57 folders."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from safetensors.torch import load_file  # noqa: E402
from test_iconmat_model import tiny_sd_folder  # noqa: E402, F401  (a fixture: SD in the diffusers layout, tiny)
from test_training_data import _write_dataset  # noqa: E402  (pytest puts this folder on sys.path)

from napari_iconmat.core.engines.iconmat.checkpoint import inspect_checkpoint, load_decoder_weights  # noqa: E402
from napari_iconmat.core.engines.iconmat.training import save_decoder, train_decoder  # noqa: E402


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    _write_dataset(root, "toy", {"a": 3}, radius=28)
    return root


def test_a_full_size_decoder_is_saved_in_the_released_layout(tmp_path):
    from napari_iconmat.core.engines.iconmat.config import IconMattingConfig
    from napari_iconmat.core.engines.iconmat.decoder import InContextDecoder

    path = save_decoder(InContextDecoder(IconMattingConfig()), tmp_path / "decoder.safetensors")
    report = inspect_checkpoint(path)  # against the released checkpoint's 89 keys and shapes
    assert report.ok, report.format()
    assert len(report.matched) == 89


def test_a_trained_decoder_loads_strictly_and_changes_the_engine_output(data_root, tmp_path):
    from napari_iconmat.core.engines.iconmat.engine import IconMattingEngine
    from napari_iconmat.core.io.readers import read_image
    from napari_iconmat.core.prompt import make_prompt

    summary = train_decoder(
        data_root, datasets=["toy"], out_dir=tmp_path / "run", steps=1, tiny=True,
        model_options={"ensemble_size": 1}, batch_size=1, warmup=0, lr=1e-2,
    )  # fmt: skip
    report = load_decoder_weights(IconMattingEngine(random_init="tiny").model.decoder, summary.decoder)
    assert report.ok and not report.missing and not report.unexpected
    # as `iconmat bench ... --engine-option random_init=tiny --engine-option decoder=PATH` builds it
    trained = IconMattingEngine(random_init="tiny", ensemble_size=1, decoder=str(summary.decoder))
    untrained = IconMattingEngine(random_init="tiny", ensemble_size=1)
    assert trained.params["decoder"] != untrained.params["decoder"]
    image = read_image(data_root / "toy" / "image" / "a_00.jpg")
    mask = read_image(data_root / "toy" / "alpha" / "a_01.png") > 127
    target = read_image(data_root / "toy" / "image" / "a_01.jpg")
    alphas = []
    for engine in (trained, untrained):
        query = engine.encode_reference(image, make_prompt(mask))
        matte, _ = engine.matte_frame(target, query)
        assert matte.alpha.shape == target.shape[:2] and matte.alpha.dtype == np.float32
        alphas.append(matte.alpha)
    assert np.abs(alphas[0] - alphas[1]).max() > 1e-3


def test_bench_runs_the_engine_on_a_dataset_in_the_released_layout(data_root):
    from napari_iconmat.core.evaluation.bench import detect_layout, run_bench

    folder = data_root / "toy"  # toy.json lies beside the folder, as datasets/ICM57.json does
    assert detect_layout(folder) == "icm57"
    report = run_bench(
        [folder], engines=["iconmat"], engine_params={"iconmat": {"random_init": "tiny", "ensemble_size": 1}},
        max_frames=2, isolate=False,
    )  # fmt: skip
    rows = [r for r in report.rows if r["method"] == "iconmat"]
    assert rows and all(r["layout"] == "icm57" for r in rows)
    assert all(np.isfinite(r["SAD"]) for r in rows)


def test_training_on_a_stable_diffusion_folder_and_loading_the_result_with_from_pretrained(data_root, tmp_path, tiny_sd_folder):
    """The non-tiny path: SD from a diffusers folder (--sd-model), the decoder back through from_pretrained."""
    from napari_iconmat.core.engines.iconmat.config import IconMattingConfig
    from napari_iconmat.core.engines.iconmat.model import InContextMatting

    tiny = IconMattingConfig.tiny(ensemble_size=1)
    widths = {k: getattr(tiny, k) for k in ("feature_channels", "attn_out_dim", "ft_out_dim", "convstream_out", "fusion_out", "head_hidden", "ensemble_size")}
    summary = train_decoder(
        data_root, datasets=["toy"], out_dir=tmp_path / "run", steps=2, sd_model=str(tiny_sd_folder),
        resolution=64, model_options=widths, batch_size=1,
    )  # fmt: skip
    assert len(summary.losses) == 2 and all(np.isfinite(summary.losses))
    config = IconMattingConfig(resolution=64, **widths)
    model = InContextMatting.from_pretrained(tiny_sd_folder, summary.decoder, config=config)  # strict load
    weights = {k[len("in_context_decoder."):]: v for k, v in load_file(str(summary.decoder)).items()}
    assert all(torch.equal(model.decoder.state_dict()[k], v) for k, v in weights.items())
