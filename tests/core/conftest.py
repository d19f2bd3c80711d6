"""Tiny random DINOv2, SAM and ViTMatte models saved into folders, as an engine finds real ones.

Built from configs (no download), seeded, saved once per test session with
``save_pretrained``; tests load them through the engines' weight resolution.
The configs are the small ones Hugging Face's own tests use.
"""

from __future__ import annotations

import pytest


def _save(model, folder):
    model.save_pretrained(str(folder))
    return str(folder)


@pytest.fixture(scope="session")
def tiny_vitmatte(tmp_path_factory):
    """Folder of a random ViTMatte (a 2-channel ViTDet backbone, 16-px patches)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers import VitDetConfig, VitMatteConfig, VitMatteForImageMatting

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    backbone = VitDetConfig(
        image_size=32, patch_size=16, num_channels=4, hidden_size=2, num_hidden_layers=2,
        num_attention_heads=2, out_features=["stage1"],
    )  # fmt: skip
    config = VitMatteConfig(backbone_config=backbone, backbone=None, hidden_size=2, fusion_hidden_sizes=[128, 64, 32, 16])
    return _save(VitMatteForImageMatting(config), tmp_path_factory.mktemp("tiny-vitmatte"))


@pytest.fixture(scope="session")
def tiny_dinov2(tmp_path_factory):
    """Folder of a random DINOv2 with 4-px patches and 32-d tokens."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers import Dinov2Config, Dinov2Model

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    config = Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=2, patch_size=4, image_size=32)
    return _save(Dinov2Model(config), tmp_path_factory.mktemp("tiny-dinov2"))


@pytest.fixture(scope="session")
def tiny_sam(tmp_path_factory):
    """Folder of a random SAM taking 24x24 inputs (a 12x12 image embedding)."""
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    from transformers import SamConfig, SamMaskDecoderConfig, SamModel, SamPromptEncoderConfig, SamVisionConfig

    transformers.utils.logging.disable_progress_bar()
    torch.manual_seed(0)
    vision = SamVisionConfig(
        image_size=24, patch_size=2, hidden_size=36, intermediate_size=72, projection_dim=62, output_channels=32,
        num_hidden_layers=2, num_attention_heads=4, window_size=14, global_attn_indexes=[2, 5, 8, 11], num_pos_feats=16,
    )  # fmt: skip
    prompt = SamPromptEncoderConfig(image_size=24, patch_size=2, hidden_size=32, mask_input_channels=4, num_point_embeddings=4)
    decoder = SamMaskDecoderConfig(
        hidden_size=32, mlp_dim=64, num_hidden_layers=2, num_attention_heads=4, num_multimask_outputs=3,
        iou_head_depth=3, iou_head_hidden_dim=32,
    )  # fmt: skip
    config = SamConfig(vision_config=vision, prompt_encoder_config=prompt, mask_decoder_config=decoder)
    return _save(SamModel(config), tmp_path_factory.mktemp("tiny-sam"))


@pytest.fixture(scope="session")
def tiny_icmp(tiny_dinov2, tiny_sam, tiny_vitmatte):
    """``icmp`` engine parameters naming the three tiny model folders."""
    return {"dinov2": tiny_dinov2, "sam": tiny_sam, "vitmatte": tiny_vitmatte, "feature_side": 32}
