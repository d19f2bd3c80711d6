"""Matting metrics against values worked out by hand (provenance in each test)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import ndimage

from napari_iconmat.core.errors import InputError
from napari_iconmat.core.evaluation.metrics import (
    METRIC_SCALES,
    _gaussian_derivative_kernel,
    connectivity_error,
    dtssd,
    gradient_error,
    image_metrics,
    iou,
    messddt,
    mse,
    sad,
    trimap_region,
)


def _dim_32x32_case(dtype):
    """metrics-and-icmp.md §1.5: pred 0, gt 1 everywhere; trimap 128 on the top-left
    16x16 block, 255 on the bottom-right block, 0 elsewhere."""
    top = 255 if dtype == np.uint8 else 1.0
    pred = np.zeros((32, 32), dtype=dtype)
    gt = np.full((32, 32), top, dtype=dtype)
    trimap = np.zeros((32, 32), dtype=np.uint8)
    trimap[:16, :16] = 128
    trimap[16:, 16:] = 255
    return pred, gt, trimap


@pytest.mark.parametrize("dtype", [np.uint8, np.float64, np.float32])
def test_dim_32x32_golden_case(dtype):
    pred, gt, trimap = _dim_32x32_case(dtype)
    region = trimap_region(trimap)
    assert region.sum() == 256 and region[:16, :16].all()
    # 256 unknown pixels, each |0 - 1| = 1: SAD = 256 / 1000.
    assert sad(pred, gt, region) == pytest.approx(0.256, abs=1e-12)
    # Every unknown pixel has squared error 1: the mean is 1.
    assert mse(pred, gt, region) == pytest.approx(1.0, abs=1e-12)
    # Both mattes are constant, so both gradient magnitudes are 0.
    assert gradient_error(pred, gt, region) == pytest.approx(0.0, abs=1e-12)
    # (a >= t) & (g >= t) is empty for every t >= 0.1, so there is no component and
    # every pixel drops at the first level: l_map = 0. phi_pred = 1 - 0 = 1,
    # d_gt = 1 >= 0.15 so phi_gt = 1 - 1 = 0: each unknown pixel adds 1 -> 0.256.
    # (The Python port that picks label 0 takes the whole background as omega,
    # keeps l_map = 1 everywhere and gets 0.0 here.)
    assert connectivity_error(pred, gt, region) == pytest.approx(0.256, abs=1e-12)
    metrics = image_metrics(pred, gt, region)
    assert list(metrics) == ["SAD", "MSE", "Grad", "Conn"]
    assert metrics == pytest.approx({"SAD": 0.256, "MSE": 1.0, "Grad": 0.0, "Conn": 0.256}, abs=1e-12)


def test_dim_32x32_whole_image():
    pred, gt, _ = _dim_32x32_case(np.uint8)
    # 1024 pixels, each off by 1.
    assert image_metrics(pred, gt) == pytest.approx(
        {"SAD": 1.024, "MSE": 1.0, "Grad": 0.0, "Conn": 1.024}, abs=1e-12
    )


def test_identical_pred_and_gt_score_zero():
    rng = np.random.default_rng(0)
    alpha = ndimage.gaussian_filter(rng.random((40, 50)), 2)
    alpha = (alpha - alpha.min()) / (alpha.max() - alpha.min())
    region = rng.random((40, 50)) > 0.5
    for r in (None, region):
        assert image_metrics(alpha, alpha, r) == {"SAD": 0.0, "MSE": 0.0, "Grad": 0.0, "Conn": 0.0}
    assert dtssd(alpha, alpha, alpha, alpha) == 0.0
    assert messddt(alpha, alpha, alpha, alpha) == 0.0


def test_uint_inputs_are_scaled_by_their_maximum():
    # uint8 128 -> 128/255, uint16 32768 -> 32768/65535; |diff| to 0 summed over 10 px.
    zeros = np.zeros((2, 5))
    assert sad(np.full((2, 5), 128, np.uint8), zeros) == pytest.approx(10 * 128 / 255 / 1000)
    assert sad(np.full((2, 5), 32768, np.uint16), zeros) == pytest.approx(10 * 32768 / 65535 / 1000)


def test_mse_of_empty_region_is_zero():
    assert mse(np.zeros((3, 3)), np.ones((3, 3)), np.zeros((3, 3), bool)) == 0.0


def test_connectivity_error_strip_with_isolated_blob():
    # One row, 4-connected left/right. The prediction has an isolated blob at
    # column 4 (0.7) and a faint speck at column 6 (0.2), both cut off from the main
    # component {0, 1, 2}.
    pred = np.array([[1.0, 0.95, 0.5, 0.0, 0.7, 0.0, 0.2, 0.0]])
    gt = np.array([[1.0, 1.00, 0.6, 0.0, 0.4, 0.0, 0.0, 0.0]])
    # Intersections (a >= t) & (g >= t) and their largest component omega:
    #   t = 0.1 .. 0.4: {0,1,2} and {4}   -> omega {0,1,2}; cols 3..7 drop, l = 0.0
    #   t = 0.5:        {0,1,2}           -> omega {0,1,2}
    #   t = 0.6 .. 0.9: {0,1} (pred[2]=0.5) -> col 2 drops, l = 0.5
    #   t = 1.0:        {0}  (pred[1]=0.95) -> col 1 drops, l = 0.9
    #   col 0 never drops -> l = 1.
    # l_map  = [1, 0.9, 0.5, 0, 0, 0, 0, 0]
    # d_pred = [0, 0.05, 0, 0, 0.7, 0, 0.2, 0] -> phi_pred = [1, 1, 1, 1, 0.3, 1, 0.8, 1]
    # d_gt   = [0, 0.1, 0.1, 0, 0.4, 0, 0, 0]  -> phi_gt   = [1, 1, 1, 1, 0.6, 1, 1,   1]
    #   (0.05 and 0.1 are below the 0.15 threshold, so phi = 1 there.)
    # |phi_pred - phi_gt| = 0.3 at col 4, 0.2 at col 6 -> Conn = 0.5 / 1000.
    # (The label-0 port takes the 4-pixel background as omega at t = 0.1 instead.)
    assert connectivity_error(pred, gt) == pytest.approx(0.5e-3, abs=1e-12)
    only_speck = np.zeros(pred.shape, bool)
    only_speck[0, 6] = True
    assert connectivity_error(pred, gt, only_speck) == pytest.approx(0.2e-3, abs=1e-12)
    # The same strip as a column: the metric does not depend on orientation.
    assert connectivity_error(pred.T, gt.T) == pytest.approx(0.5e-3, abs=1e-12)


def test_connectivity_uses_4_connectivity():
    # gt: the diagonal; pred: 1 at (0, 0), 0.12 at (1, 1).
    gt = np.array([[1.0, 0.0], [0.0, 1.0]])
    pred = np.array([[1.0, 0.0], [0.0, 0.12]])
    # 4-connected, the t = 0.1 intersection {(0,0), (1,1)} is two 1-pixel
    # components; the first, (0,0), is omega, so (1,1) drops at l = 0:
    # d_pred = 0.12 < 0.15 -> phi_pred = 1; d_gt = 1 -> phi_gt = 0; |1 - 0| = 1.
    # (8-connected, (1,1) would stay until t = 0.2, l = 0.1, giving 0.9.)
    assert connectivity_error(pred, gt) == pytest.approx(1e-3, abs=1e-12)


def test_connectivity_ties_follow_matlab_column_major_order():
    # gt: the anti-diagonal; pred: 0.12 at (0, 1), 1 at (1, 0).
    gt = np.array([[0.0, 1.0], [1.0, 0.0]])
    pred = np.array([[0.0, 0.12], [1.0, 0.0]])
    # t = 0.1: two 1-pixel components, (0,1) and (1,0). bwconncomp scans columns
    # first, so (1,0) (linear index 1) comes before (0,1) (index 2) and is omega.
    # (0,1) drops at l = 0: d_pred = 0.12 < 0.15 -> phi 1, d_gt = 1 -> phi 0: adds 1.
    # (1,0) is in every intersection, l = 1, phi 1 for both. Conn = 1 / 1000.
    # (A row-major choice would keep (0,1) until t = 0.2 and give 0.9 / 1000.)
    assert connectivity_error(pred, gt) == pytest.approx(1e-3, abs=1e-12)


def _hand_kernel(sigma):
    """hx of gaussgradient.m, built with explicit loops (independent of the module)."""
    half = math.ceil(sigma * math.sqrt(-2 * math.log(math.sqrt(2 * math.pi) * sigma * 1e-2)))
    size = 2 * half + 1
    hx = np.zeros((size, size))
    for i in range(size):
        for j in range(size):
            u, v = i - half, j - half
            gauss = math.exp(-u * u / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
            g_v = math.exp(-v * v / (2 * sigma**2)) / (sigma * math.sqrt(2 * math.pi))
            hx[i, j] = gauss * (-v * g_v / sigma**2)
    return hx / math.sqrt((hx**2).sum())


def test_gradient_kernel_shape_norm_and_symmetry():
    hx = _gaussian_derivative_kernel(1.4)
    # halfsize = ceil(1.4 * sqrt(-2 ln(sqrt(2 pi) * 1.4 * 0.01))) = ceil(3.62) = 4 -> 9x9.
    assert hx.shape == (9, 9)
    assert np.sum(hx**2) == pytest.approx(1.0)
    assert np.allclose(hx[:, ::-1], -hx)  # antisymmetric along columns (x)
    assert np.allclose(hx[::-1, :], hx)  # symmetric along rows
    assert np.allclose(hx, _hand_kernel(1.4))
    # dG(x) = -x G(x) / sigma^2 is negative right of the centre.
    assert hx[4, 5] < 0 < hx[4, 3]


def test_gradient_error_constant_vs_linear_ramp():
    # gt = c * column (a horizontal ramp), pred constant. Away from the border the
    # convolution of a linear ramp with hx is -c * sum_k kj hx[k] and with hy = hx^T
    # it is 0 (sum of dG over rows vanishes). With e(x) = exp(-x^2 / (2 sigma^2)),
    # the normalising constants cancel and
    #   |grad g| = c * (sum_j j^2 e(j)) * (sum_i e(i)) / sqrt(sum_i e(i)^2 * sum_j j^2 e(j)^2)
    sigma, c = 1.4, 0.01
    taps = range(-4, 5)
    e = {x: math.exp(-x * x / (2 * sigma**2)) for x in taps}
    amp = c * sum(j * j * e[j] for j in taps) * sum(e[i] for i in taps)
    amp /= math.sqrt(sum(e[i] ** 2 for i in taps) * sum(j * j * e[j] ** 2 for j in taps))
    gt = np.tile(c * np.arange(64.0), (20, 1))
    pred = np.full_like(gt, 0.3)
    interior = np.zeros(gt.shape, bool)
    interior[4:-4, 4:-4] = True  # the 9x9 kernel never reaches the border here
    n = interior.sum()  # 12 * 56 = 672 pixels
    assert n == 672
    # Each interior pixel adds (0 - amp)^2.
    assert gradient_error(pred, gt, interior) == pytest.approx(n * amp**2 / 1000, rel=1e-9)


def test_gradient_error_matches_scipy_convolution():
    # Independent path: the Python port's scipy.ndimage.convolve(mode='nearest')
    # with the loop-built kernel, on a random smooth pair.
    rng = np.random.default_rng(1)
    pred = np.clip(ndimage.gaussian_filter(rng.random((30, 40)), 1.5) * 2 - 0.5, 0, 1)
    gt = np.clip(ndimage.gaussian_filter(rng.random((30, 40)), 1.5) * 2 - 0.5, 0, 1)
    hx = _hand_kernel(1.4)

    def amp(x):
        return np.hypot(ndimage.convolve(x, hx, mode="nearest"), ndimage.convolve(x, hx.T, mode="nearest"))

    region = rng.random(pred.shape) > 0.3
    expected = np.sum(((amp(pred) - amp(gt)) ** 2)[region]) / 1000
    assert gradient_error(pred, gt, region) == pytest.approx(expected, rel=1e-9)


def test_dtssd_hand_example():
    # Frame t-1: pred and gt all 0. Frame t: pred has 0.5 at (0,0), gt 0.2 at (1,1).
    zeros = np.zeros((2, 2))
    pred_t = np.array([[0.5, 0.0], [0.0, 0.0]])
    gt_t = np.array([[0.0, 0.0], [0.0, 0.2]])
    # change = [[0.5, 0], [0, -0.2]] -> mean square = (0.25 + 0.04) / 4 = 0.0725
    # dtSSD = sqrt(0.0725) * 100 = 26.92582...
    assert dtssd(pred_t, zeros, gt_t, zeros) == pytest.approx(math.sqrt(0.0725) * 100, rel=1e-12)
    # A constant offset that follows the ground truth does not flicker: 0.
    gt_prev = np.array([[0.1, 0.2], [0.3, 0.4]])
    gt_now = np.array([[0.4, 0.3], [0.2, 0.1]])
    assert dtssd(gt_now + 0.1, gt_prev + 0.1, gt_now, gt_prev) == pytest.approx(0.0, abs=1e-12)


def _textured_gt(shape, seed=0):
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random(shape), 3, mode="wrap")
    return (field - field.min()) / (field.max() - field.min())


def test_messddt_static_ground_truth_hand_value():
    gt = _textured_gt((32, 32))
    # Identical GT frames: the flow is 0 after rounding, so
    # MESSDdt = sum |e_t - e_{t+1}| / N * 1000. e_t = 0.2^2 = 0.04 at one pixel,
    # e_{t+1} = 0 -> 0.04 / 1024 * 1000 = 0.0390625.
    pred_t = gt.copy()
    pred_t[10, 10] = np.clip(gt[10, 10] + 0.2, 0, 1)
    err = (pred_t[10, 10] - gt[10, 10]) ** 2
    assert err == pytest.approx(0.04)  # gt[10, 10] <= 0.8, so no clipping
    assert messddt(pred_t, gt, gt, gt) == pytest.approx(0.04 / 1024 * 1000, rel=1e-9)


def test_messddt_zero_when_exact_positive_otherwise_and_motion_compensated():
    gt_t = _textured_gt((48, 64), seed=3)
    gt_next = np.roll(gt_t, 3, axis=1)  # the matte moves 3 px to the right
    assert messddt(gt_t, gt_t, gt_next, gt_next) == 0.0
    rng = np.random.default_rng(4)
    noisy_next = np.clip(gt_next + rng.normal(0, 0.05, gt_next.shape), 0, 1)
    assert messddt(gt_t, gt_t, noisy_next, gt_next) > 0.0
    # An error that moves with the object is temporally coherent; the same error
    # left in place (so it slides over the object) is not.
    moving = np.zeros_like(gt_t)
    moving[20:28, 20:28] = 0.1
    coherent = messddt(np.clip(gt_t + moving, 0, 1), gt_t,
                       np.clip(gt_next + np.roll(moving, 3, axis=1), 0, 1), gt_next)
    flicker = messddt(np.clip(gt_t + moving, 0, 1), gt_t, np.clip(gt_next + moving, 0, 1), gt_next)
    assert coherent < flicker


def test_iou_cases():
    pred = np.array([[0.9, 0.9, 0.0, 0.0]])
    # P = {0, 1}, G = {0}: |P & G| = 1, |P | G| = 2.
    assert iou(pred, np.array([[True, False, False, False]])) == 0.5
    assert iou(pred, np.array([[255, 0, 0, 0]], np.uint8)) == 0.5
    assert iou(np.zeros((3, 3)), np.zeros((3, 3), bool)) == 1.0  # both empty
    assert iou(np.zeros((3, 3)), np.ones((3, 3), bool)) == 0.0
    # pred > threshold is strict: 0.5 is not foreground at the default threshold.
    assert iou(np.full((1, 2), 0.5), np.ones((1, 2), bool)) == 0.0
    assert iou(np.full((1, 2), 0.5), np.ones((1, 2), bool), threshold=0.4) == 1.0


def test_trimap_region_conventions():
    assert trimap_region(np.array([[0, 128, 255, 1, 254]], np.uint8)).tolist() == [
        [False, True, False, True, True]
    ]
    assert trimap_region(np.array([[0.0, 0.5, 1.0]])).tolist() == [[False, True, False]]
    assert trimap_region(np.array([[0, 32768, 65535]], np.uint16)).tolist() == [[False, True, False]]
    with pytest.raises(InputError, match="trimap"):
        trimap_region(np.zeros((2, 2, 3), np.uint8))


def test_errors_name_the_bad_value():
    with pytest.raises(InputError, match=r"same shape.*\(2, 2\).*\(2, 3\)"):
        sad(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(InputError, match=r"pred.*\[0, 1\].*1\.5"):
        mse(np.full((2, 2), 1.5), np.zeros((2, 2)))
    with pytest.raises(InputError, match="region.*uint8"):
        sad(np.zeros((2, 2)), np.zeros((2, 2)), np.zeros((2, 2), np.uint8))
    with pytest.raises(InputError, match="gt.*int64"):
        sad(np.zeros((2, 2)), np.zeros((2, 2), np.int64))
    with pytest.raises(InputError, match="step"):
        connectivity_error(np.zeros((2, 2)), np.zeros((2, 2)), step=0)
    with pytest.raises(InputError, match="sigma"):
        gradient_error(np.zeros((2, 2)), np.zeros((2, 2)), sigma=-1)


def test_metric_scales_cover_every_metric():
    assert set(METRIC_SCALES) == {"SAD", "MSE", "Grad", "Conn", "dtSSD", "MESSDdt"}


def test_full_hd_timing_sanity():
    # Not an assertion on speed: prints the time of one 1920x1080 image_metrics call.
    rows, cols = np.mgrid[:1080, :1920]
    gt = np.clip(1.5 - np.hypot(rows - 540, cols - 960) / 300, 0, 1)
    rng = np.random.default_rng(0)
    pred = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
    pred8, gt8 = np.round(pred * 255).astype(np.uint8), np.round(gt * 255).astype(np.uint8)
    start = time.perf_counter()
    result = image_metrics(pred8, gt8)
    elapsed = time.perf_counter() - start
    print(f"\nimage_metrics 1920x1080: {elapsed:.3f} s {result}")
    assert set(result) == {"SAD", "MSE", "Grad", "Conn"}


def _brute_boundary_f(pred: np.ndarray, gt: np.ndarray, radius: int) -> float:
    """DAVIS's F by its definition: boundary pixels within `radius` (Euclidean) of the other boundary."""
    from napari_iconmat.core.evaluation.metrics import _boundary_map

    pe, ge = np.argwhere(_boundary_map(pred)), np.argwhere(_boundary_map(gt))
    d = np.sqrt(((pe[:, None, :] - ge[None, :, :]) ** 2).sum(-1))
    precision = float(np.mean(d.min(1) <= radius))
    recall = float(np.mean(d.min(0) <= radius))
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def test_boundary_f_matches_its_definition_on_random_blobs():
    import cv2

    from napari_iconmat.core.evaluation.metrics import boundary_f, j_and_f

    rng = np.random.default_rng(0)
    for _ in range(5):
        gt = cv2.GaussianBlur(rng.random((60, 80)), (0, 0), 4) > 0.5
        pred = cv2.GaussianBlur(rng.random((60, 80)), (0, 0), 4) > 0.5
        pred |= gt & (rng.random(gt.shape) > 0.3)  # partly overlapping
        radius = int(np.ceil(0.008 * np.hypot(60, 80)))
        assert boundary_f(pred.astype(np.float32), gt) == pytest.approx(_brute_boundary_f(pred, gt, radius))
    gt = np.zeros((100, 100), bool)
    gt[20:60, 20:60] = True
    shifted = np.roll(gt, 2, axis=0).astype(np.float32)  # within the 2-px tolerance of a 100 x 100 image
    assert boundary_f(shifted, gt) == 1.0
    far = np.roll(gt, 30, axis=1).astype(np.float32)
    assert 0.0 < boundary_f(far, gt) < 0.6  # only the top and bottom edges partly match
    assert boundary_f(np.zeros((100, 100), np.float32), gt) == 0.0
    assert boundary_f(np.zeros((100, 100), np.float32), np.zeros((100, 100), bool)) == 1.0
    scores = j_and_f(shifted, gt)
    assert scores["J&F"] == pytest.approx((scores["J"] + scores["F"]) / 2) and scores["J"] < 1.0
