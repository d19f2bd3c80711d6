"""Training losses against values worked out by hand (and one independent scipy pyramid)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from napari_iconmat.core.engines.iconmat.losses import (  # noqa: E402
    LOSS_LIMIT,
    LossExplosionError,
    check_loss,
    gradient_penalty,
    laplacian_loss,
    matting_losses,
    region_l1,
)


def t(array) -> torch.Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.float32))[None, None]


def test_region_l1_by_hand():
    # 4x4, unknown = top-left 2x2; error 0.2 there and 0.1 elsewhere.
    gt = np.zeros((4, 4))
    pred = np.full((4, 4), 0.1)
    pred[:2, :2] = 0.2
    unknown = np.zeros((4, 4))
    unknown[:2, :2] = 1
    # mean over 16 px of the masked error, times 512^2 / (pixels in the region)
    assert float(region_l1(t(pred), t(gt), t(unknown))) == pytest.approx(4 * 0.2 / 16 * 262144 / 4)  # 3276.8
    assert float(region_l1(t(pred), t(gt), t(1 - unknown))) == pytest.approx(12 * 0.1 / 16 * 262144 / 12)  # 1638.4
    # smooth L1 (beta 1) of 0.2 is 0.5 * 0.2^2 = 0.02
    assert float(region_l1(t(pred), t(gt), t(unknown), smooth=True)) == pytest.approx(4 * 0.02 / 16 * 262144 / 4)
    assert float(region_l1(t(pred), t(gt), t(np.zeros((4, 4))))) == 0.0  # an empty region weighs nothing


def test_gradient_penalty_by_hand():
    ramp = np.tile(0.1 * np.arange(4), (4, 1))  # p[i, j] = 0.1 j
    region = np.zeros((4, 4))
    region[1:3, 1:3] = 1
    # interior Sobel-x of the ramp: (1 + 2 + 1) * (0.1 * 2) = 0.8, Sobel-y 0;
    # mean over 16 px of |0.8| on 4 px = 0.2, plus 0.01 * 0.2; scale 512^2 / 4
    expected = (0.2 + 0.01 * 0.2) * 262144 / 4  # 13238.272
    assert float(gradient_penalty(t(ramp), t(np.zeros((4, 4))), t(region))) == pytest.approx(expected, rel=1e-5)
    # the transposed ramp exercises the Sobel-y kernel the same way
    assert float(gradient_penalty(t(ramp.T), t(np.zeros((4, 4))), t(region))) == pytest.approx(expected, rel=1e-5)
    # pred == gt: only the 0.01 penalty on the prediction's own gradient is left
    assert float(gradient_penalty(t(ramp), t(ramp), t(region))) == pytest.approx(0.01 * 0.2 * 262144 / 4, rel=1e-5)


def test_gradient_penalty_zero_padding_at_the_border():
    ones = np.ones((4, 4))
    corner = np.zeros((4, 4))
    corner[0, 0] = 1
    # zero padding: Sobel-x at (0, 0) = 2 * (1 - 0) + 1 * (1 - 0) = 3, Sobel-y likewise 3
    expected = 0.01 * (3 / 16 + 3 / 16) * 262144 / 1  # 983.04
    assert float(gradient_penalty(t(ones), t(ones), t(corner))) == pytest.approx(expected, rel=1e-5)


def test_laplacian_of_an_impulse_one_level_by_hand():
    # blur [1 4 6 4 1]/16, keep even samples, insert zeros (x2 per axis), blur again:
    # the impulse comes back as r (x) r with r = [1, 4, 12, 28, 38, 28, 12, 4, 1] / 128,
    # so the band is delta - r(x)r and its L1 is (1 - r0^2) + (1 - r0^2), r0 = 38/128.
    pred = np.zeros((16, 16))
    pred[8, 8] = 1
    expected = 2 * (1 - (38 / 128) ** 2) / 256
    value = float(laplacian_loss(t(pred), t(np.zeros((16, 16))), levels=1))
    assert value == pytest.approx(expected, rel=1e-5)


def test_laplacian_of_a_constant_offset_is_zero():
    rng = np.random.default_rng(0)
    gt = rng.random((64, 64))
    assert float(laplacian_loss(t(gt + 0.25), t(gt))) == pytest.approx(0.0, abs=1e-6)


def _scipy_laplacian(pred: np.ndarray, gt: np.ndarray, levels: int = 5) -> float:
    """An independent pyramid: separable scipy filters, 'mirror' = reflect without edge repeat."""
    from scipy.ndimage import correlate1d

    k = np.array([1, 4, 6, 4, 1], dtype=np.float64) / 16

    def blur(x):
        return correlate1d(correlate1d(x, k, axis=0, mode="mirror"), k, axis=1, mode="mirror")

    def bands(x):
        out = []
        for _ in range(levels):
            x = x[: x.shape[0] // 2 * 2, : x.shape[1] // 2 * 2]
            low = blur(x)[::2, ::2]
            up = np.zeros_like(x)
            up[::2, ::2] = 4 * low
            out.append(x - blur(up))
            x = low
        return out

    return sum(2**i * np.abs(a - b).mean() for i, (a, b) in enumerate(zip(bands(pred), bands(gt)))) / levels


def test_laplacian_matches_an_independent_pyramid():
    rng = np.random.default_rng(1)
    pred, gt = rng.random((70, 66)), rng.random((70, 66))  # odd halves exercise the even-size crop
    expected = _scipy_laplacian(pred, gt)
    assert float(laplacian_loss(t(pred), t(gt))) == pytest.approx(expected, rel=1e-5)


def test_laplacian_rejects_images_too_small_for_five_levels():
    with pytest.raises(ValueError, match="48x48"):
        laplacian_loss(t(np.zeros((32, 32))), t(np.zeros((32, 32))))


def test_matting_losses_batch_by_hand():
    h = w = 64
    trimap = np.zeros((h, w))
    trimap[:, 32:] = 1
    trimap[16:24, 16:24] = 0.5  # 64 unknown px, 4032 known px, away from the border
    # sample 0, matting: gt 0.5, pred 0.6 -> error 0.1 everywhere
    # sample 1, binary: gt left 1 / right 0, pred 0.5 -> error 0.5, smooth L1 0.125
    gt1 = np.zeros((h, w))
    gt1[:, :32] = 1
    pred = torch.cat([t(np.full((h, w), 0.6)), t(np.full((h, w), 0.5))])
    gt = torch.cat([t(np.full((h, w), 0.5)), t(gt1)])
    tri = torch.cat([t(trimap), t(trimap)])
    losses = matting_losses(pred, gt, tri)
    scale = 262144 / (h * w)  # a uniform error e over any region gives e * 512^2 / (H W) = 64 e
    assert float(losses["unknown_l1"]) == pytest.approx(0.1 * scale, rel=1e-5)  # 6.4
    assert float(losses["known_l1"]) == pytest.approx(0.1 * scale, rel=1e-5)  # 6.4
    assert float(losses["laplacian"]) == pytest.approx(0.0, abs=1e-5)  # a constant offset has no band
    assert float(losses["gradient"]) == pytest.approx(0.0, abs=1e-5)  # Sobel of a constant is 0 inside
    assert float(losses["known_smooth_l1"]) == pytest.approx(0.125 * scale, rel=1e-5)  # 8.0
    assert float(losses["total"]) == pytest.approx(6.4 + 6.4 + 8.0, rel=1e-5)


def test_matting_losses_sum_over_the_batch_and_honour_the_binary_flag():
    rng = np.random.default_rng(2)
    gt = torch.as_tensor(rng.random((3, 1, 64, 64)), dtype=torch.float32)
    pred = torch.as_tensor(rng.random((3, 1, 64, 64)), dtype=torch.float32)
    trimap = torch.full_like(gt, 0.5)
    trimap[:, :, :8] = 0
    whole = matting_losses(pred, gt, trimap)
    singles = [matting_losses(pred[i : i + 1], gt[i : i + 1], trimap[i : i + 1]) for i in range(3)]
    assert float(whole["total"]) == pytest.approx(sum(float(s["total"]) for s in singles), rel=1e-5)
    # flagging sample 1 as binary swaps its matting terms for the smooth L1 on the known region
    flagged = matting_losses(pred, gt, trimap, binary=torch.tensor([False, True, False]))
    known1 = (trimap[1:2] != 0.5).float()
    assert float(flagged["known_smooth_l1"]) == pytest.approx(
        float(region_l1(pred[1:2], gt[1:2], known1, smooth=True)), rel=1e-5)
    assert float(flagged["unknown_l1"]) == pytest.approx(
        float(singles[0]["unknown_l1"]) + float(singles[2]["unknown_l1"]), rel=1e-5)


def test_check_loss():
    assert check_loss(torch.tensor(LOSS_LIMIT)) == LOSS_LIMIT
    with pytest.raises(LossExplosionError, match="step 7: nan"):
        check_loss(torch.tensor(float("nan")), step=7)
    with pytest.raises(LossExplosionError, match="exploded"):
        check_loss(LOSS_LIMIT * 1.01)
