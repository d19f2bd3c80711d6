"""The trainable part of IconMatting: in-context fusion + detail-capture matting head.

Module and parameter names follow the released checkpoint exactly (its keys
minus the ``in_context_decoder.`` prefix; ``shared/reference/iconmatting-checkpoint-keys.tsv``).
Index 0 is always the coarse scale (24×24 at 768), index 1 the fine one (48×48).

Reading order (paper §3, released ``SemiTrainingAttentionBlocks`` + ``DetailCapture``):

1. :meth:`InContextFusion.encode_query`: reference features inside the min-pooled
   reference mask → K query tokens, LayerNorm-ed (the cacheable part);
2. :meth:`InContextFusion.inter_similarity`: each query token's softmax over the
   target positions, summed over the K tokens → S;
3. :meth:`InContextFusion.forward`: the target's self-attention rows weighted by S
   at the key position (intra-similarity), LayerNorm + ReLU + conv, fused with the
   target's own features at both scales, then the two scales merged;
4. :class:`DetailCapture`: ViTMatte's conv stream on the image and four fusion
   blocks up to full resolution, matting head, sigmoid.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .config import IconMattingConfig

__all__ = [
    "ConvBNReLU",
    "FusionBlock",
    "DetailCapture",
    "InContextFusion",
    "InContextDecoder",
    "TrimapDecoder",
    "QueryTokens",
    "ThinMaskWarning",
]


class ThinMaskWarning(UserWarning):
    """The reference mask fills no feature cell completely; a fallback selection was used."""


class ConvBNReLU(nn.Module):
    """Conv 3×3 (no bias) + BatchNorm + ReLU (the released ``Basic_Conv3x3``)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class FusionBlock(nn.Module):
    """Upsample ``x`` ×2 (bilinear), concatenate ``[detail, x]``, ConvBNReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels)

    def forward(self, x: torch.Tensor, detail: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return self.conv(torch.cat([detail, x], dim=1))


class _ConvStream(nn.Module):
    def __init__(self, in_channels: int, widths) -> None:
        super().__init__()
        chans = [in_channels, *widths]
        self.convs = nn.ModuleList(ConvBNReLU(chans[i], chans[i + 1], stride=2) for i in range(len(widths)))

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        details = [image]
        for conv in self.convs:
            details.append(conv(details[-1]))
        return details


class _MattingHead(nn.Module):
    def __init__(self, in_channels: int, hidden: int) -> None:
        super().__init__()
        self.matting_convs = nn.Sequential(
            nn.Conv2d(in_channels, hidden, 3, 1, 1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(True),
            nn.Conv2d(hidden, 1, 1, 1, 0),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.matting_convs(x)


class DetailCapture(nn.Module):
    """ViTMatte's detail-capture head: features at ``S/16`` + image at ``S`` → alpha at ``S``.

    Parameters
    ----------
    in_chans : int
        Channels of the incoming feature map (320).
    img_chans : int
        Channels of the image input (3; 4 with a trimap).
    convstream_out, fusion_out, head_hidden, use_sigmoid
        See :class:`IconMattingConfig`.
    """

    def __init__(self, in_chans=320, img_chans=3, convstream_out=(48, 96, 192), fusion_out=(256, 128, 64, 32), head_hidden=16, use_sigmoid=True):
        super().__init__()
        self.convstream = _ConvStream(img_chans, convstream_out)
        detail_chans = [img_chans, *convstream_out][::-1]  # D3, D2, D1, D0
        ins = [in_chans, *fusion_out[:-1]]
        self.fusion_blks = nn.ModuleList(FusionBlock(ins[i] + detail_chans[i], fusion_out[i]) for i in range(len(fusion_out)))
        self.matting_head = _MattingHead(fusion_out[-1], head_hidden)
        self.use_sigmoid = use_sigmoid

    def forward(self, features: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        """``features`` (B, in_chans, S/16, S/16), ``image`` (B, img_chans, S, S) → (B, 1, S, S)."""
        details = self.convstream(image)
        x = features
        for i, block in enumerate(self.fusion_blks):
            x = block(x, details[-(i + 1)])
        x = self.matting_head(x)
        return torch.sigmoid(x) if self.use_sigmoid else x


class _QueryNorm(nn.Module):
    """The shared LayerNorm of query and target tokens (released ``attn_module.norm``)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(channels)


class _IntraSimilarity(nn.Module):
    """LayerNorm over the key axis, ReLU, conv 3×3 (no bias): (B, g, g, g²) → (B, out, g, g)."""

    def __init__(self, tokens: int, out_channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(tokens, out_channels, 3, 1, 1, bias=False)
        self.ln = nn.LayerNorm(tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln(x).permute(0, 3, 1, 2)
        return self.conv(F.relu(x))


class _ScaleFusion(nn.Module):
    """Merge the coarse map into the fine one (released ``MultiScaleFeatureFusion``)."""

    def __init__(self, coarse: int, fine: int, out: int) -> None:
        super().__init__()
        self.module_list = nn.ModuleList([FusionBlock(coarse + fine, out)])

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        return self.module_list[0](coarse, fine)


@dataclass
class QueryTokens:
    """LayerNorm-ed query tokens of a batch of references.

    Attributes
    ----------
    tokens : list of (K_b, C) tensors
        One entry per reference; K_b varies.
    fallback : list of bool
        True where the min-pooled mask was empty and the best-covered cells were used.
    """

    tokens: list
    fallback: list = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tokens)

    def detach(self) -> "QueryTokens":
        return QueryTokens([t.detach() for t in self.tokens], list(self.fallback))

    def to(self, *args, **kwargs) -> "QueryTokens":
        return QueryTokens([t.to(*args, **kwargs) for t in self.tokens], list(self.fallback))


def select_query_cells(mask: torch.Tensor, grid: int, threshold: float = 0.5) -> tuple[torch.Tensor, bool]:
    """Which feature cells of one reference are query cells.

    Parameters
    ----------
    mask : (S, S) tensor in [0, 1]
        The reference mask at the network resolution.
    grid : int
        Feature grid side; each cell covers ``S/grid`` pixels square.
    threshold : float
        Binarisation threshold (pixels ``> threshold`` are foreground).

    Returns
    -------
    cells : (grid²,) bool tensor
        Row-major. Released rule: cells that are foreground in *every* pixel
        (min-pooling). When none is, the cells covered at least half as much as
        the best-covered cell (a thin object), with ``fallback`` True; when the
        mask is empty, no cell.
    fallback : bool
    """
    binary = (mask > threshold).to(torch.float32)[None, None]
    kernel = mask.shape[-1] // grid
    full = -F.max_pool2d(-binary, kernel, kernel)
    cells = full.flatten() > 0
    if cells.any():
        return cells, False
    coverage = F.avg_pool2d(binary, kernel, kernel).flatten()
    best = coverage.max()
    if best <= 0:
        return cells, True
    return coverage >= 0.5 * best, True


class InContextFusion(nn.Module):
    """In-context similarity (inter + intra) fused with the target's features.

    Parameter names follow the released ``in_context_fusion`` module.
    """

    def __init__(self, config: IconMattingConfig) -> None:
        super().__init__()
        self.config = config
        coarse_tokens, fine_tokens = config.attention_dims
        c_ft, f_ft = config.feature_channels
        self.attn_module = _QueryNorm(f_ft)
        self.attn_module_list = nn.ModuleList(
            [_IntraSimilarity(coarse_tokens, config.attn_out_dim), _IntraSimilarity(fine_tokens, config.attn_out_dim)]
        )
        self.ft_attn_module_list = nn.ModuleList(
            [ConvBNReLU(config.ft_out_dim[i] + config.attn_out_dim, config.ft_out_dim[i]) for i in range(2)]
        )
        self.ft_module_list = nn.ModuleList([ConvBNReLU(c_ft, config.ft_out_dim[0]), ConvBNReLU(f_ft, config.ft_out_dim[1])])
        self.fusion = _ScaleFusion(config.ft_out_dim[0], config.ft_out_dim[1], config.ft_out_dim[1])

    # ------------------------------------------------------------------ reference side
    def encode_query(self, reference_features: torch.Tensor, reference_mask: torch.Tensor, *, warn: bool = True) -> QueryTokens:
        """Query tokens from reference features inside the reference mask.

        Parameters
        ----------
        reference_features : (B, C, g, g) tensor
            Fine-grid UNet features of the references.
        reference_mask : (B, 1, S, S) tensor in [0, 1]
            Binarised at ``config.mask_threshold``.
        warn : bool
            Warn (:class:`ThinMaskWarning`) when a mask fills no cell.

        Returns
        -------
        QueryTokens
            ``LN(features[:, :, cell])`` for each selected cell, (K_b, C) per reference.
        """
        batch, channels, grid, _ = reference_features.shape
        tokens, fallback = [], []
        for b in range(batch):
            cells, used_fallback = select_query_cells(reference_mask[b, 0], grid, self.config.mask_threshold)
            if used_fallback and warn:
                kernel = reference_mask.shape[-1] // grid
                if cells.any():
                    warnings.warn(
                        f"the reference mask fills no {kernel}x{kernel} feature cell completely; using the "
                        f"{int(cells.sum())} best-covered cell(s) as the query instead",
                        ThinMaskWarning,
                        stacklevel=2,
                    )
                else:
                    warnings.warn("the reference mask is empty: the in-context guidance is all zero", ThinMaskWarning, stacklevel=2)
            flat = reference_features[b].flatten(1).transpose(0, 1)  # (g², C)
            tokens.append(self.attn_module.norm(flat[cells.to(flat.device)]))
            fallback.append(used_fallback)
        return QueryTokens(tokens, fallback)

    # ------------------------------------------------------------------ target side
    def inter_similarity(self, query: QueryTokens, target_features: torch.Tensor) -> torch.Tensor:
        """S: the sum over query tokens of each token's softmax over target positions.

        ``target_features`` (B, C, g, g) → (B, 1, g, g); a reference with no token gives zeros.
        """
        batch, channels, grid, _ = target_features.shape
        if len(query) != batch:
            raise ValueError(f"{len(query)} reference queries for {batch} targets")
        target = self.attn_module.norm(target_features.flatten(2).transpose(1, 2))  # (B, g², C)
        maps = []
        for b in range(batch):
            q = query.tokens[b].to(target.dtype)
            if q.shape[0] == 0:
                maps.append(target.new_zeros(grid * grid))
                continue
            logits = q @ target[b].transpose(0, 1) / math.sqrt(channels)  # (K, g²)
            maps.append(torch.softmax(logits, dim=-1).sum(dim=0))
        return torch.stack(maps).view(batch, 1, grid, grid)

    def forward(self, query: QueryTokens, features, attention, *, return_maps: bool = False):
        """Fused (B, ft_out, g, g) map from the target's features and self-attention.

        Parameters
        ----------
        query : QueryTokens
        features : (coarse (B, C0, g/2, g/2), fine (B, C1, g, g)) tensors
        attention : (coarse (B, (g/2)², (g/2)²), fine (B, g², g²)) tensors
            Self-attention maps, rows = query positions.
        return_maps : bool
            Also return ``{'inter': S (B,1,g,g), 'intra': [(B,1,gc,gc), (B,1,g,g)]}``
            (the channel means of the intra-similarity branches), for explain mode.
        """
        similarity = self.inter_similarity(query, features[1])
        branches, intra_means = [], []
        for i in range(2):
            grid = features[i].shape[-1]
            s = F.interpolate(similarity, size=(grid, grid), mode="bilinear", align_corners=True)
            weighted = attention[i] * s.flatten(1)[:, None, :].to(attention[i].dtype)  # weight the key axis
            guide = self.attn_module_list[i](weighted.view(-1, grid, grid, grid * grid).to(features[i].dtype))
            own = self.ft_module_list[i](features[i])
            branches.append(self.ft_attn_module_list[i](torch.cat([own, guide], dim=1)))
            if return_maps:
                intra_means.append(guide.detach().mean(dim=1, keepdim=True))
        fused = self.fusion(branches[0], branches[1])
        if return_maps:
            return fused, {"inter": similarity.detach(), "intra": intra_means}
        return fused


class InContextDecoder(nn.Module):
    """Everything trainable in IconMatting: ``in_context_fusion`` + ``detail_decoder``.

    ``state_dict()`` keys are the released checkpoint's without ``in_context_decoder.``.
    """

    def __init__(self, config: IconMattingConfig) -> None:
        super().__init__()
        self.config = config
        self.in_context_fusion = InContextFusion(config)
        self.detail_decoder = DetailCapture(
            config.ft_out_dim[1], config.img_chans, config.convstream_out, config.fusion_out, config.head_hidden, config.use_sigmoid
        )

    def forward(self, query: QueryTokens, features, attention, image: torch.Tensor, *, return_maps: bool = False):
        """Alpha (B, 1, S, S) in [0, 1] from the query, target features/attention and the target image (B, 3, S, S)."""
        out = self.in_context_fusion(query, features, attention, return_maps=return_maps)
        fused, maps = out if return_maps else (out, None)
        alpha = self.detail_decoder(fused, image.to(fused.dtype))
        return (alpha, maps) if return_maps else alpha


class TrimapDecoder(nn.Module):
    """The trimap-based variant (supplement Table 1): no in-context module.

    The target's own features at both scales are reduced and merged as in the
    full model, and the trimap is concatenated to the head's image input
    (``img_chans = 4``).
    """

    def __init__(self, config: IconMattingConfig) -> None:
        super().__init__()
        if config.img_chans != 4:
            config = config.replace(img_chans=4)
        self.config = config
        c_ft, f_ft = config.feature_channels
        self.ft_module_list = nn.ModuleList([ConvBNReLU(c_ft, config.ft_out_dim[0]), ConvBNReLU(f_ft, config.ft_out_dim[1])])
        self.fusion = _ScaleFusion(config.ft_out_dim[0], config.ft_out_dim[1], config.ft_out_dim[1])
        self.detail_decoder = DetailCapture(
            config.ft_out_dim[1], 4, config.convstream_out, config.fusion_out, config.head_hidden, config.use_sigmoid
        )

    def forward(self, features, image: torch.Tensor, trimap: torch.Tensor) -> torch.Tensor:
        """``features`` (coarse, fine), ``image`` (B, 3, S, S) in [-1, 1], ``trimap`` (B, 1, S, S) in {0, .5, 1} → alpha."""
        coarse = self.ft_module_list[0](features[0])
        fine = self.ft_module_list[1](features[1])
        fused = self.fusion(coarse, fine)
        return self.detail_decoder(fused, torch.cat([image, trimap], dim=1).to(fused.dtype))
