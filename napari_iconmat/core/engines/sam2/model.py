"""Loading SAM 2 / EdgeTAM video models, and running one frame against a bounded memory.

The model is transformers' ``Sam2VideoModel`` (or ``EdgeTamVideoModel``, chosen by
the folder's ``config.json`` ``model_type``), loaded from a local folder or the
local Hugging Face cache only (:mod:`napari_iconmat.core.weights`). No processor
files are needed: the preprocessing is :mod:`.preprocess`.

Memory. One frame is one call of the model in its streaming mode on a fresh
``Sam2VideoInferenceSession`` that holds only what the model reads for that
frame: the conditioning frames (the reference, at time 0) and the outputs of the
previous frames it attends to (mask memories of the last ``num_maskmem - 1``
frames, object pointers of the last ``max_object_pointers_in_encoder - 1``).
:func:`step` returns the new frame's memory entry; the caller keeps the
bounded window (:func:`prune`), so memory does not grow with the video, and
no frame pixels are kept (the session's own video store is dropped with it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import CheckpointError, InputError
from ...weights import load_pretrained, resolve_pretrained

__all__ = [
    "DEFAULT_MODEL",
    "SAM2_WHAT",
    "MEMORY_KEYS",
    "LoadedModel",
    "load_model",
    "random_model",
    "tiny_config",
    "pick_device",
    "pick_dtype",
    "step",
    "prune",
]

DEFAULT_MODEL = "facebook/sam2.1-hiera-tiny"
SAM2_WHAT = "SAM 2 video model"
#: what one frame's entry of the memory holds (as saved in queries and track states)
MEMORY_KEYS = ("maskmem_features", "maskmem_pos_enc", "object_pointer", "object_score_logits")

_CLASSES = {"sam2_video": "Sam2VideoModel", "sam2": "Sam2VideoModel", "edgetam_video": "EdgeTamVideoModel"}


@dataclass
class LoadedModel:
    model: object
    device: object
    dtype: object
    size: int  # the model's square input side
    num_maskmem: int
    max_pointers: int


def pick_device(device: str | None):
    """``device``, else CUDA, else Apple MPS, else the CPU (as a torch.device)."""
    import torch

    if not device:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        chosen = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"sam2: device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from None
    if chosen.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"sam2: device {device!r} asked for, but CUDA is not available here")
    return chosen


def pick_dtype(dtype: str, device):
    """'auto' is bfloat16 on a CUDA GPU, float32 elsewhere."""
    import torch

    if dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if dtype != "float32" and device.type == "cpu":
        raise InputError(f"sam2: dtype={dtype} needs a GPU; use dtype=float32 (or auto) on the CPU")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]


def model_class_name(folder: Path) -> str:
    """The transformers class for a model folder, from its config.json ``model_type``."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{SAM2_WHAT}: cannot read {folder / 'config.json'} ({exc})") from None
    model_type = config.get("model_type") if isinstance(config, dict) else None
    if model_type not in _CLASSES:
        raise CheckpointError(
            f"{SAM2_WHAT}: {folder} holds a {model_type!r} model, not a SAM 2 or EdgeTAM video model "
            f"(model_type one of {', '.join(sorted(_CLASSES))})"
        )
    return _CLASSES[model_type]


def load_model(model: str, *, device, dtype):
    """The video model of a folder or cached hub id, on ``device`` in ``dtype`` (never downloads)."""
    import transformers

    folder = resolve_pretrained(model, what=SAM2_WHAT, required=("config.json",))
    cls = getattr(transformers, model_class_name(folder))
    return load_pretrained(cls, folder, SAM2_WHAT).to(device=device, dtype=dtype)


def tiny_config(size: int = 128):
    """A tiny random-weight ``Sam2VideoConfig`` (about 1 M parameters), for tests and smoke runs.

    The Hiera backbone has 5 blocks of width 8-64, the memory attention one layer,
    the decoder width 128 (the memory width stays 64, which the memory attention's
    cross-attention expects, and the object pointer must be wider than it).
    """
    from transformers import Sam2VideoConfig

    s = int(size)
    if s % 32:
        raise InputError(f"sam2: the tiny model's size must be a multiple of 32, got {size}")
    return Sam2VideoConfig(
        vision_config=dict(
            model_type="sam2_vision_model",
            backbone_config=dict(
                model_type="sam2_hiera_det_model",
                hidden_size=8,
                image_size=[s, s],
                embed_dim_per_stage=[8, 16, 32, 64],
                num_attention_heads_per_stage=[1, 1, 1, 1],
                blocks_per_stage=[1, 1, 2, 1],
                global_attention_blocks=[3],
                window_positional_embedding_background_size=[2, 2],
                window_size_per_stage=[4, 4, 4, 4],
            ),
            backbone_channel_list=[64, 32, 16, 8],
            backbone_feature_sizes=[[s // 4, s // 4], [s // 8, s // 8], [s // 16, s // 16]],
            fpn_hidden_size=128,
        ),
        prompt_encoder_config=dict(hidden_size=128, image_size=s, mask_input_channels=4),
        mask_decoder_config=dict(hidden_size=128, mlp_dim=32, num_attention_heads=2, iou_head_hidden_dim=16),
        image_size=s,
        memory_attention_hidden_size=128,
        memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=32,
        memory_attention_rope_feat_sizes=[s // 16, s // 16],
        memory_encoder_hidden_size=128,
        memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=128,
        memory_fuser_embed_dim=128,
        memory_fuser_intermediate_dim=32,
    )


def random_model(kind: str, *, device, dtype, seed: int = 0):
    """Random weights: 'tiny' (:func:`tiny_config`) or 'full' (the default ``Sam2VideoConfig``, the
    hiera-tiny architecture of ``facebook/sam2.1-hiera-tiny``; speed does not depend on the weights)."""
    import torch
    from transformers import Sam2VideoConfig, Sam2VideoModel

    config = tiny_config() if kind == "tiny" else Sam2VideoConfig()
    torch.manual_seed(seed)
    return Sam2VideoModel(config).eval().to(device=device, dtype=dtype)


def describe(model, device, dtype) -> LoadedModel:
    config = model.config
    return LoadedModel(
        model=model,
        device=device,
        dtype=dtype,
        size=int(config.image_size if isinstance(config.image_size, int) else config.image_size[0]),
        num_maskmem=int(model.num_maskmem),
        max_pointers=int(config.max_object_pointers_in_encoder),
    )


def _session(loaded: LoadedModel, shape):
    from transformers.models.sam2_video.modeling_sam2_video import Sam2VideoInferenceSession

    device = loaded.device
    return Sam2VideoInferenceSession(
        video_height=int(shape[0]),
        video_width=int(shape[1]),
        inference_device=device,
        inference_state_device=device,
        video_storage_device=device,
        dtype=loaded.dtype,
    )


def _entry(output: dict) -> dict:
    """The memory entry of one stored frame output (torch tensors, the keys of MEMORY_KEYS)."""
    return {key: output[key] for key in MEMORY_KEYS}


def encode_conditioning(loaded: LoadedModel, pixels, shape, *, mask_input=None, point_inputs=None):
    """Run the reference frame as the conditioning frame: (memory entry, low-res mask logits)."""
    import torch

    session = _session(loaded, shape)
    session.add_new_frame(pixels.to(loaded.dtype), 0)
    obj_idx = session.obj_id_to_idx(1)
    if mask_input is not None:
        session.add_mask_inputs(obj_idx, 0, mask_input)
    else:
        session.add_point_inputs(obj_idx, 0, point_inputs)
    session.obj_with_new_inputs = [1]
    with torch.inference_mode():
        out = loaded.model(inference_session=session, frame_idx=0)
    stored = session.output_dict_per_obj[obj_idx]["cond_frame_outputs"][0]
    return _entry(stored), out.pred_masks


def step(loaded: LoadedModel, pixels, shape, *, conditioning: dict, memory: dict, index: int):
    """Track one frame at time ``index`` (> 0) given the conditioning entries (time -> entry)
    and the memory of previous frames (time -> entry): (new entry, low-res logits, object logit)."""
    import torch

    session = _session(loaded, shape)
    obj_idx = session.obj_id_to_idx(1)
    outputs = session.output_dict_per_obj[obj_idx]
    outputs["cond_frame_outputs"].update({t: dict(e) for t, e in conditioning.items()})
    outputs["non_cond_frame_outputs"].update({t: dict(e) for t, e in memory.items()})
    with torch.inference_mode():
        out = loaded.model(inference_session=session, frame=pixels.to(loaded.dtype), frame_idx=index)
    stored = outputs["non_cond_frame_outputs"][index]
    return _entry(stored), out.pred_masks, float(out.object_score_logits.float().reshape(-1)[0])


def prune(loaded: LoadedModel, memory: dict, index: int) -> dict:
    """The entries the model still reads after frame ``index``: mask memories of the last
    ``num_maskmem - 1`` frames, object pointers (only) of the last ``max_pointers - 1``."""
    keep = {}
    for t, entry in memory.items():
        age = index - t  # 0 = the frame just matted
        if age < loaded.num_maskmem - 1:
            keep[t] = entry
        elif age < loaded.max_pointers - 1:
            keep[t] = {"object_pointer": entry["object_pointer"]}
    return keep


def entry_to_arrays(entry: dict, prefix: str) -> dict:
    """A memory entry as float32 numpy arrays named ``prefix + key``."""
    return {prefix + key: value.detach().float().cpu().numpy() for key, value in entry.items()}


def arrays_to_entry(arrays: dict, prefix: str, loaded: LoadedModel) -> dict:
    """The inverse of :func:`entry_to_arrays` on the model's device; mask memories in bfloat16 as
    the model keeps them, the rest in the model's dtype."""
    import torch

    entry = {}
    for key in MEMORY_KEYS:
        name = prefix + key
        if name not in arrays:
            continue
        dtype = torch.bfloat16 if key == "maskmem_features" else loaded.dtype
        entry[key] = torch.from_numpy(np.asarray(arrays[name], dtype=np.float32)).to(loaded.device, dtype=dtype)
    return entry
