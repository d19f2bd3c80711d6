"""The self-attention recorder: output unchanged, maps as the released code defines them."""

from __future__ import annotations

import pytest
import torch
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor

from napari_iconmat.core.engines.iconmat.attention import (
    AttentionRecorder,
    RecordingAttnProcessor,
    install_recorder,
    self_attention_probabilities,
)
from napari_iconmat.core.engines.iconmat.config import IconMattingConfig


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet2DConditionModel(**IconMattingConfig.tiny().unet_config).eval()


def _inputs(batch=4):
    generator = torch.Generator().manual_seed(3)
    sample = torch.randn(batch, 4, 8, 8, generator=generator)
    context = torch.randn(batch, 77, 16, generator=generator)
    return sample, context


def test_recorder_leaves_the_unet_output_unchanged(unet):
    sample, context = _inputs()
    with torch.no_grad():
        before = unet(sample, 200, encoder_hidden_states=context).sample
        original = dict(unet.attn_processors)
        recorder = AttentionRecorder((2, 4))
        wrapped = install_recorder(unet, recorder)
        recorder.start(ensemble_size=2)
        after = unet(sample, 200, encoder_hidden_states=context).sample
        recorder.stop()
    unet.set_attn_processor(original)
    assert wrapped == 10  # self-attention layers: 3 down blocks x 1 + mid 1 + 3 up blocks x 2
    assert torch.equal(before, after)
    assert recorder.counts() == {2: 3, 4: 3}


def test_recorded_maps_are_head_and_copy_averaged_softmaxes(unet):
    sample, context = _inputs(batch=4)  # 2 images x 2 copies
    layer = next(m for name, m in unet.named_modules() if name.endswith("attn1") and "down_blocks.1" in name)
    captured = {}
    hook = layer.register_forward_hook(lambda m, args, kwargs, out: captured.setdefault("x", args[0] if args else kwargs["hidden_states"]), with_kwargs=True)
    with torch.no_grad():
        unet(sample, 200, encoder_hidden_states=context)
    hook.remove()
    hidden = captured["x"]
    assert hidden.shape[1] == 16  # the 4x4 grid
    probs = self_attention_probabilities(layer, hidden, ensemble_size=2)
    # independent reference: diffusers' own score computation, per head, averaged by hand
    q = layer.head_to_batch_dim(layer.to_q(hidden))
    k = layer.head_to_batch_dim(layer.to_k(hidden))
    scores = layer.get_attention_scores(q, k).view(4, layer.heads, 16, 16)  # (B*E, heads, N, N)
    expected = scores.view(2, 2 * layer.heads, 16, 16).mean(dim=1)
    assert probs.shape == (2, 16, 16)
    assert torch.allclose(probs, expected, atol=1e-6)
    assert torch.allclose(probs.sum(-1), torch.ones(2, 16), atol=1e-5)


def test_cross_attention_is_not_wrapped(unet):
    original = dict(unet.attn_processors)
    install_recorder(unet, AttentionRecorder((4,)))
    try:
        for name, processor in unet.attn_processors.items():
            assert isinstance(processor, RecordingAttnProcessor) == name.endswith("attn1.processor"), name
    finally:
        unet.set_attn_processor(original)


def test_recorder_wraps_any_processor():
    recorder = AttentionRecorder((4,))
    processor = RecordingAttnProcessor(AttnProcessor(), recorder)
    assert processor.inner.__class__ is AttnProcessor
    with pytest.raises(RuntimeError, match="grid"):
        recorder.maps()
