"""The frozen SD feature extractor: layers found by grid, early stop, ensemble as one batch."""

from __future__ import annotations

import pytest
import torch

from napari_iconmat.core.engines.iconmat.features import DiffusionFeatures


def test_layers_are_found_by_their_grids(tiny_model, tiny_config):
    extractor = tiny_model.feature_extractor
    assert extractor.feature_blocks == (0, 1)  # up_blocks[0] -> 2x2, up_blocks[1] -> 4x4 at 64 px
    assert extractor.reference_stop == 1
    assert extractor.target_stop == 2  # the last 4x4 self-attention layers live in up_blocks[2]
    assert extractor.attention_layers == {2: 3, 4: 3}


def test_real_sd21_layout_is_found_without_weights():
    """The SD 2.1 UNet on the meta device: no memory, no download; probing needs real tensors, so
    the grids are checked on the layer plan the probe would find (resolution 768 -> latent 96)."""
    from diffusers import UNet2DConditionModel

    from napari_iconmat.core.engines.iconmat.config import SD21_UNET_CONFIG

    unet = UNet2DConditionModel(**dict(SD21_UNET_CONFIG, block_out_channels=(32, 64, 64, 64), attention_head_dim=(1, 2, 2, 2), cross_attention_dim=32, norm_num_groups=8))
    # the SD 2.1 block structure with narrow channels: same grids as the real one
    from diffusers import AutoencoderKL, DDIMScheduler

    from napari_iconmat.core.engines.iconmat.config import IconMattingConfig, SD21_SCHEDULER_CONFIG

    config = IconMattingConfig(feature_channels=(64, 64), unet_config={}, vae_config={})
    vae = AutoencoderKL(block_out_channels=(4, 4, 4, 4), down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=4, layers_per_block=1)
    extractor = DiffusionFeatures(vae, unet, DDIMScheduler(**SD21_SCHEDULER_CONFIG), torch.zeros(1, 77, 32), config)
    assert extractor.latent_side == 96
    assert extractor.feature_blocks == (0, 1)
    assert extractor.target_stop == 2
    assert extractor.attention_layers == {24: 5, 48: 5}  # down_blocks.2 + up_blocks.1, down_blocks.1 + up_blocks.2


def test_unet_stops_after_the_last_needed_block(tiny_model, tiny_inputs):
    extractor = tiny_model.feature_extractor
    calls = []
    # entered blocks (a pre-hook: the stop is raised by a forward hook at the end of the last needed one)
    hooks = [block.register_forward_pre_hook(lambda m, a, i=i: calls.append(i)) for i, block in enumerate(extractor.unet.up_blocks)]
    try:
        extractor.reference_features(tiny_inputs[0], seed=0)
        reference_calls = list(calls)
        calls.clear()
        extractor.target_features(tiny_inputs[2], seed=0)
    finally:
        for hook in hooks:
            hook.remove()
    assert reference_calls == [0, 1]
    assert calls == [0, 1, 2]


def test_ensemble_runs_as_one_batch(tiny_model, tiny_inputs, tiny_config):
    extractor = tiny_model.feature_extractor
    batches = []
    hook = extractor.unet.register_forward_pre_hook(lambda m, args: batches.append(args[0].shape[0]))
    try:
        target = extractor.target_features(tiny_inputs[2], seed=0)
    finally:
        hook.remove()
    assert batches == [2 * tiny_config.ensemble_size]
    coarse, fine = target.features
    assert coarse.shape == (2, 16, 2, 2) and fine.shape == (2, 16, 4, 4)
    assert target.attention[0].shape == (2, 4, 4) and target.attention[1].shape == (2, 16, 16)
    assert torch.allclose(target.attention[1].sum(-1), torch.ones(2, 16), atol=1e-5)


def test_seeded_features_are_reproducible_and_the_seed_matters(tiny_model, tiny_inputs):
    extractor = tiny_model.feature_extractor
    a = extractor.reference_features(tiny_inputs[0], seed=5)
    b = extractor.reference_features(tiny_inputs[0], seed=5)
    c = extractor.reference_features(tiny_inputs[0], seed=6)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_reference_and_target_never_share_their_noise(tiny_model, tiny_inputs):
    """The same image seeded alike gets different draws as a reference and as a target."""
    extractor = tiny_model.feature_extractor
    image = tiny_inputs[0][:1]
    as_reference = extractor.reference_features(image, seed=5)
    as_target = extractor.target_features(image, seed=5, attention=False).features[1]
    assert not torch.allclose(as_reference, as_target)
    with torch.no_grad():
        streams = [extractor.noisy_latents(image, seed=5, stream=s) for s in (0, 1, 0)]
    assert torch.equal(streams[0], streams[2]) and not torch.allclose(streams[0], streams[1])


def test_noise_level_is_the_timestep_of_the_config(tiny_model, tiny_inputs):
    extractor = tiny_model.feature_extractor
    alpha_bar = extractor.scheduler.alphas_cumprod[200].item()
    assert alpha_bar == pytest.approx(0.75369, abs=1e-4)  # SD 2.1's scaled-linear schedule at t=200


def test_extractor_is_frozen(tiny_model):
    assert not any(p.requires_grad for p in tiny_model.feature_extractor.parameters())
    tiny_model.train()
    try:
        assert not tiny_model.feature_extractor.training and tiny_model.decoder.training
    finally:
        tiny_model.eval()


def test_wrong_feature_width_is_reported(tiny_config):
    from napari_iconmat.core.engines.iconmat.model import InContextMatting

    with pytest.raises(ValueError, match="channels"):
        InContextMatting(tiny_config.replace(feature_channels=(32, 32)))
