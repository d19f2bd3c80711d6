"""InContextMatting and TrimapMatting on the tiny random configuration."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_iconmat.core.engines.iconmat.decoder import ThinMaskWarning
from napari_iconmat.core.engines.iconmat.model import InContextMatting, TrimapMatting


def test_forward_gives_alpha_in_unit_range(tiny_model, tiny_inputs):
    with torch.no_grad():
        alpha = tiny_model(*tiny_inputs, seed=0)
    assert alpha.shape == (2, 1, 64, 64) and alpha.dtype == torch.float32
    assert 0.0 <= alpha.min().item() and alpha.max().item() <= 1.0


def test_cached_query_gives_the_same_alpha_as_the_full_forward(tiny_model, tiny_inputs):
    reference, mask, target = tiny_inputs
    with torch.no_grad():
        uncached = tiny_model(reference, mask, target, seed=7)
        query = tiny_model.encode_reference(reference, mask, seed=7)
        stored = [t.numpy().copy() for t in query.tokens]  # what a ReferenceQuery keeps
        from napari_iconmat.core.engines.iconmat.decoder import QueryTokens

        cached = tiny_model.matte(target, QueryTokens([torch.from_numpy(t) for t in stored], query.fallback), seed=7)
    assert torch.equal(uncached, cached)
    assert [t.shape for t in stored] == [(4, 16), (4, 16)]  # the 2x2 block of full 16x16 cells


def test_the_reference_changes_the_alpha(tiny_model, tiny_inputs):
    reference, mask, target = tiny_inputs
    other = torch.zeros_like(mask)
    other[:, :, 0:32, 32:64] = 1
    with torch.no_grad():
        a = tiny_model(reference, mask, target, seed=0)
        b = tiny_model(reference, other, target, seed=0)
    assert not torch.allclose(a, b)


def test_gradients_reach_the_decoder_only(tiny_model, tiny_inputs):
    tiny_model.train()
    try:
        tiny_model.zero_grad()
        alpha = tiny_model(*tiny_inputs)
        alpha.mean().backward()
        decoder_grads = [p.grad for p in tiny_model.decoder.parameters()]
        assert all(g is not None for g in decoder_grads)
        assert tiny_model.decoder.in_context_fusion.attn_module.norm.weight.grad.abs().sum() > 0  # the query LayerNorm learns
        assert all(p.grad is None for p in tiny_model.feature_extractor.parameters())
    finally:
        tiny_model.zero_grad()
        tiny_model.eval()


def test_thin_reference_mask_falls_back_with_a_warning(tiny_model, tiny_inputs):
    reference, _, target = tiny_inputs
    thin = torch.zeros(2, 1, 64, 64)
    thin[:, :, 8:56, 40:43] = 1  # 3 px wide: fills no 16x16 cell
    with pytest.warns(ThinMaskWarning, match="best-covered"):
        query = tiny_model.encode_reference(reference, thin, seed=0)
    assert query.fallback == [True, True]
    assert all(t.shape[0] > 0 for t in query.tokens)
    with torch.no_grad():
        alpha = tiny_model.matte(target, query, seed=0)
    assert torch.isfinite(alpha).all()


@pytest.mark.parametrize(
    "shapes, name",
    [(((2, 3, 32, 32), (2, 1, 64, 64), (2, 3, 64, 64)), "reference_image"), (((2, 3, 64, 64), (2, 3, 64, 64), (2, 3, 64, 64)), "reference_mask")],
)
def test_wrong_input_shapes_are_named(tiny_model, shapes, name):
    with pytest.raises(ValueError, match=name):
        tiny_model(*(torch.zeros(s) for s in shapes))


def test_trimap_variant_forward_and_predict(tiny_config):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = TrimapMatting(tiny_config).eval()
    assert model.config.img_chans == 4
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    trimap = torch.full((1, 1, 64, 64), 0.5)
    with torch.no_grad():
        alpha = model(image, trimap, seed=0)
    assert alpha.shape == (1, 1, 64, 64)

    rgb = (np.random.default_rng(0).random((40, 70, 3)) * 255).astype(np.uint8)
    tri = np.zeros((40, 70), np.uint8)
    tri[10:30, 20:50] = 128
    tri[15:25, 25:45] = 255
    out = model.predict(rgb, tri)
    assert out.shape == (40, 70) and out.dtype == np.float32
    assert (out[tri == 0] == 0).all() and (out[tri == 255] == 1).all()
    unknown = out[tri == 128]
    assert ((unknown > 0) & (unknown < 1)).all()
    assert np.array_equal(out, model.predict(rgb, tri))  # seeded: deterministic
    with pytest.raises(Exception, match="trimap must have the image's shape"):
        model.predict(rgb, tri[:, :10])


def test_from_pretrained_without_weights_says_what_is_missing(tmp_path):
    from napari_iconmat.core.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="Stable Diffusion 2.1"):
        InContextMatting.from_pretrained(tmp_path / "no-such-folder")
    (tmp_path / "sd").mkdir()
    with pytest.raises(WeightsNotFoundError, match="lacks unet/config.json"):
        InContextMatting.from_pretrained(tmp_path / "sd")


@pytest.fixture(scope="module")
def tiny_sd_folder(tmp_path_factory, tiny_config):
    """A Stable Diffusion folder in the diffusers layout with tiny random parts (text encoder included)."""
    import json

    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    folder = tmp_path_factory.mktemp("sd")
    torch.manual_seed(0)
    UNet2DConditionModel(**tiny_config.unet_config).save_pretrained(folder / "unet")
    AutoencoderKL(**tiny_config.vae_config).save_pretrained(folder / "vae")
    DDIMScheduler(**tiny_config.scheduler_config).save_pretrained(folder / "scheduler")
    text = CLIPTextConfig(vocab_size=4, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                          max_position_embeddings=77, projection_dim=16, bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
    CLIPTextModel(text).save_pretrained(folder / "text_encoder")
    (folder / "vocab.json").write_text(json.dumps({"<|startoftext|>": 0, "<|endoftext|>": 1, "a</w>": 2, "a": 3}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=77).save_pretrained(folder / "tokenizer")
    return folder


def test_from_pretrained_loads_a_local_diffusers_folder_and_a_decoder(tiny_sd_folder, tiny_config, tmp_path):
    from safetensors.torch import save_file

    from napari_iconmat.core.engines.iconmat.checkpoint import DECODER_PREFIX, load_decoder_weights
    from napari_iconmat.core.engines.iconmat.config import IconMattingConfig
    from napari_iconmat.core.engines.iconmat.decoder import InContextDecoder
    from napari_iconmat.core.errors import CheckpointError

    trained = InContextMatting(tiny_config).decoder
    path = tmp_path / "decoder.pth"
    torch.save({"state_dict": {DECODER_PREFIX + k: v for k, v in trained.state_dict().items()}}, path)
    model = InContextMatting.from_pretrained(tiny_sd_folder, path, config=tiny_config)
    assert not model.training
    assert model.feature_extractor.prompt_embeds.shape == (1, 77, 16)  # the empty prompt, encoded once
    assert not hasattr(model.feature_extractor, "text_encoder")
    for key, value in trained.state_dict().items():
        assert torch.equal(model.decoder.state_dict()[key], value), key
    side = tiny_config.resolution
    mask = torch.zeros(1, 1, side, side)
    mask[..., 16:48, 16:48] = 1
    with torch.no_grad():
        alpha = model(torch.zeros(1, 3, side, side), mask, torch.zeros(1, 3, side, side), seed=0)
    assert alpha.shape == (1, 1, side, side)
    # a released-size decoder does not load into the tiny layout: strict, with the reason
    big = tmp_path / "big.safetensors"
    save_file(InContextDecoder(IconMattingConfig()).state_dict(), str(big))
    with pytest.raises(CheckpointError, match="wrong shape"):
        load_decoder_weights(model.decoder, big)


def test_half_precision_features_feed_the_float32_decoder(tiny_config, tiny_inputs):
    """The GPU option dtype=bfloat16 (SD part only), run here on the CPU: same plumbing, close features."""
    reference, mask, target = tiny_inputs
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = InContextMatting(tiny_config).eval()
    extractor = model.feature_extractor
    with torch.no_grad():
        full = extractor.target_features(target, seed=3)
        query = model.encode_reference(reference, mask, seed=3)
        alpha_full = model.matte(target, query, seed=3)
        extractor.to(torch.bfloat16)
        half = extractor.target_features(target, seed=3)
        query_half = model.encode_reference(reference, mask, seed=3)
        alpha_half = model.matte(target, query_half, seed=3)
    assert extractor.dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in model.decoder.parameters())
    for a, b in zip(full.features + full.attention, half.features + half.attention):
        assert b.dtype == torch.float32  # averaged in float32
        relative = ((a - b).abs().max() / a.abs().max()).item()
        assert 0 < relative < 0.05  # bfloat16 really ran, and stayed close
    assert [t.dtype for t in query_half.tokens] == [torch.float32] * 2
    assert torch.isfinite(alpha_half).all() and (alpha_half - alpha_full).abs().max() < 0.05
