"""Recording the UNet's self-attention probabilities at chosen grids.

IconMatting's intra-similarity uses the target's self-attention maps: for every
self-attention layer that works on a grid of ``g × g`` tokens with ``g`` one of
the wanted grids, ``softmax(q kᵀ / sqrt(d))`` averaged over heads and over the
noisy copies of the ensemble, then averaged over the layers of that grid
(``shared/reference/iconmatting.md`` §1, "Self-attention capture").

:class:`RecordingAttnProcessor` wraps the processor a layer already has: the
layer's output is computed by that processor, untouched, and the probabilities
are computed next to it in float32 (as the released code does next to its
xFormers call). Layers are selected by the number of tokens they see, not by
their names, so any SD-shaped UNet works.
"""

from __future__ import annotations

import torch

__all__ = ["AttentionRecorder", "RecordingAttnProcessor", "install_recorder", "self_attention_probabilities"]


class AttentionRecorder:
    """Running sums of self-attention maps, one per wanted grid.

    Parameters
    ----------
    grids : sequence of int
        Grid sides ``g`` to record; a layer is recorded when it sees ``g*g`` tokens.
    head_chunk : int
        Heads whose probabilities are materialised at once (bounds the memory of
        one layer to ``batch × head_chunk × N²`` floats).
    """

    def __init__(self, grids, *, head_chunk: int = 1) -> None:
        self.grids = tuple(int(g) for g in grids)
        self._tokens = {g * g: g for g in self.grids}
        self.head_chunk = max(1, int(head_chunk))
        self.active = False
        self.ensemble_size = 1
        self.reset()

    def reset(self) -> None:
        self._sums: dict[int, torch.Tensor] = {}
        self._counts: dict[int, int] = {g: 0 for g in self.grids}

    def start(self, ensemble_size: int) -> None:
        """Start recording a forward pass whose batch is ``B × ensemble_size`` (b-major)."""
        self.reset()
        self.ensemble_size = int(ensemble_size)
        self.active = True

    def stop(self) -> None:
        self.active = False

    def wants(self, tokens: int) -> bool:
        return self.active and tokens in self._tokens

    def add(self, attn, hidden_states: torch.Tensor) -> None:
        """Add the head- and copy-averaged probabilities of one self-attention call."""
        grid = self._tokens[hidden_states.shape[1]]
        probs = self_attention_probabilities(attn, hidden_states, self.ensemble_size, head_chunk=self.head_chunk)
        if grid in self._sums:
            self._sums[grid] += probs
        else:
            self._sums[grid] = probs
        self._counts[grid] += 1

    def maps(self) -> dict[int, torch.Tensor]:
        """Layer-averaged maps by grid: ``{g: (B, g², g²) float32}``, rows = query tokens, summing to 1.

        Raises
        ------
        RuntimeError
            A wanted grid was seen by no self-attention layer.
        """
        missing = [g for g in self.grids if self._counts[g] == 0]
        if missing:
            raise RuntimeError(f"no self-attention layer of the UNet works at grid(s) {missing}")
        return {g: self._sums[g] / self._counts[g] for g in self.grids}

    def counts(self) -> dict[int, int]:
        """Number of layers recorded at each grid in the last pass."""
        return dict(self._counts)


def self_attention_probabilities(attn, hidden_states: torch.Tensor, ensemble_size: int = 1, *, head_chunk: int = 1) -> torch.Tensor:
    """``softmax(q kᵀ · attn.scale)`` of a diffusers ``Attention`` layer, averaged over heads and copies.

    Parameters
    ----------
    attn : diffusers.models.attention_processor.Attention
        A self-attention layer.
    hidden_states : (B·E, N, C) tensor
        The layer's input, ``E = ensemble_size`` copies per image, b-major.
    ensemble_size : int
    head_chunk : int
        Heads computed at once.

    Returns
    -------
    (B, N, N) float32 tensor
        Row ``i`` = query token ``i`` (row-major over the grid), summing to 1 over keys.
    """
    if attn.spatial_norm is not None:
        raise NotImplementedError("recording attention with a spatial norm is not supported")
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    batch, tokens, _ = hidden_states.shape
    heads = attn.heads
    query = attn.to_q(hidden_states)
    key = attn.to_k(hidden_states)
    if getattr(attn, "norm_q", None) is not None:
        query, key = attn.norm_q(query), attn.norm_k(key)
    head_dim = query.shape[-1] // heads
    query = query.view(batch, tokens, heads, head_dim).transpose(1, 2).float()
    key = key.view(batch, tokens, heads, head_dim).transpose(1, 2).float()
    images = batch // ensemble_size
    total = None
    for start in range(0, heads, head_chunk):
        q, k = query[:, start : start + head_chunk], key[:, start : start + head_chunk]
        probs = torch.softmax(torch.matmul(q, k.transpose(-1, -2)) * attn.scale, dim=-1)
        # (B·E, h, N, N) -> sum over copies and heads of each image
        part = probs.view(images, ensemble_size * probs.shape[1], tokens, tokens).sum(dim=1)
        total = part if total is None else total + part
        del probs
    return total / (ensemble_size * heads)


class RecordingAttnProcessor:
    """Wraps an attention processor; records the probabilities of wanted self-attention calls.

    The output is the wrapped processor's, unchanged.
    """

    def __init__(self, inner, recorder: AttentionRecorder) -> None:
        self.inner = inner
        self.recorder = recorder

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, *args, **kwargs):
        if (
            encoder_hidden_states is None
            and attention_mask is None
            and hidden_states.ndim == 3
            and self.recorder.wants(hidden_states.shape[1])
        ):
            with torch.no_grad():
                self.recorder.add(attn, hidden_states)
        return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, temb, *args, **kwargs)


def install_recorder(unet, recorder: AttentionRecorder) -> int:
    """Wrap the processor of every self-attention layer of ``unet``; returns how many were wrapped.

    Cross-attention layers keep their processor. Recording happens only while
    ``recorder.active`` and only at the recorder's grids.
    """
    processors = {}
    wrapped = 0
    modules = {name: module for name, module in unet.named_modules()}
    for name, processor in unet.attn_processors.items():
        module = modules[name.rsplit(".processor", 1)[0]]
        if isinstance(processor, RecordingAttnProcessor):
            processor = processor.inner
        if not module.is_cross_attention:
            processor = RecordingAttnProcessor(processor, recorder)
            wrapped += 1
        processors[name] = processor
    unet.set_attn_processor(processors)
    return wrapped
