"""The decoder: the released checkpoint layout, query selection, inter-similarity."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from napari_iconmat.core.engines.iconmat.config import IconMattingConfig
from napari_iconmat.core.engines.iconmat.decoder import (
    InContextDecoder,
    QueryTokens,
    ThinMaskWarning,
    TrimapDecoder,
    select_query_cells,
)

TSV = Path(__file__).resolve().parents[4] / ".." / "shared" / "reference" / "iconmatting-checkpoint-keys.tsv"
RELEASED_PARAMETERS = 21_101_585


def _tsv_layout():
    path = TSV if TSV.is_file() else Path("/work/shared/reference/iconmatting-checkpoint-keys.tsv")
    if not path.is_file():
        pytest.skip("the checkpoint key list (shared/reference/iconmatting-checkpoint-keys.tsv) is not here")
    layout = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        key, shape, dtype = line.split("\t")
        layout[key] = (() if shape == "scalar" else tuple(int(s) for s in shape.split("x")), dtype)
    return layout


def test_full_size_decoder_matches_the_released_checkpoint_layout():
    released = _tsv_layout()
    decoder = InContextDecoder(IconMattingConfig())
    state = decoder.state_dict()
    expected = {key.removeprefix("in_context_decoder."): value for key, value in released.items()}
    assert list(state) == list(expected)  # same names, same order
    for key, value in state.items():
        shape, dtype = expected[key]
        assert tuple(value.shape) == shape, key
        assert str(value.dtype).removeprefix("torch.") == dtype, key
    assert len(state) == 89
    assert sum(p.numel() for p in decoder.parameters() if p.requires_grad) == RELEASED_PARAMETERS


def test_min_pooling_takes_only_fully_covered_cells():
    mask = torch.zeros(64, 64)
    mask[0:16, 0:16] = 1  # cell (0, 0) full
    mask[16:32, 16:31] = 1  # cell (1, 1) misses one column
    cells, fallback = select_query_cells(mask, 4)
    assert not fallback
    assert cells.nonzero().flatten().tolist() == [0]


def test_mask_is_binarised_at_one_half():
    mask = torch.full((64, 64), 0.6)
    assert select_query_cells(mask, 4)[0].all()
    assert not select_query_cells(torch.full((64, 64), 0.5), 4)[0].any()


def test_thin_mask_falls_back_to_the_best_covered_cells():
    mask = torch.zeros(64, 64)
    mask[:, 20:22] = 1  # a 2-pixel line through column 1 of the 4x4 grid
    mask[40, 50] = 1  # a speck: far less coverage, not used
    cells, fallback = select_query_cells(mask, 4)
    assert fallback
    assert cells.view(4, 4)[:, 1].all() and cells.sum() == 4


def test_empty_mask_selects_nothing():
    cells, fallback = select_query_cells(torch.zeros(64, 64), 4)
    assert fallback and not cells.any()


def test_inter_similarity_is_the_sum_of_per_token_softmaxes():
    config = IconMattingConfig.tiny()
    torch.manual_seed(0)
    fusion = InContextDecoder(config).in_context_fusion
    target = torch.randn(1, 16, 4, 4)
    tokens = torch.randn(3, 16)
    s = fusion.inter_similarity(QueryTokens([tokens], [False]), target)
    assert s.shape == (1, 1, 4, 4)
    normed = torch.nn.functional.layer_norm(target.flatten(2).transpose(1, 2)[0], (16,), fusion.attn_module.norm.weight, fusion.attn_module.norm.bias)
    manual = torch.softmax(tokens @ normed.T / 4.0, dim=-1).sum(0)  # scale 1/sqrt(16)
    assert torch.allclose(s.flatten(), manual, atol=1e-6)
    assert s.sum().item() == pytest.approx(3.0, abs=1e-5)  # K softmaxes, each summing to 1
    empty = fusion.inter_similarity(QueryTokens([tokens[:0]], [True]), target)
    assert torch.count_nonzero(empty) == 0


def test_encode_query_warns_on_a_thin_mask():
    config = IconMattingConfig.tiny()
    fusion = InContextDecoder(config).in_context_fusion
    features = torch.randn(1, 16, 4, 4)
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 20:23, :] = 1  # inside the second row of 16x16 cells
    with pytest.warns(ThinMaskWarning, match="best-covered"):
        query = fusion.encode_query(features, mask)
    assert query.fallback == [True] and query.tokens[0].shape == (4, 16)


def test_trimap_decoder_takes_the_trimap_in_the_image_input():
    config = IconMattingConfig.tiny()
    decoder = TrimapDecoder(config)
    assert decoder.detail_decoder.convstream.convs[0].conv.in_channels == 4
    assert not any(name.startswith("attn_module") for name in decoder.state_dict())
    features = (torch.randn(2, 16, 2, 2), torch.randn(2, 16, 4, 4))
    alpha = decoder(features, torch.rand(2, 3, 64, 64) * 2 - 1, torch.full((2, 1, 64, 64), 0.5))
    assert alpha.shape == (2, 1, 64, 64) and 0 <= alpha.min() and alpha.max() <= 1
