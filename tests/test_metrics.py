"""Image, kernel and tilt metrics: behaviour and known values."""
from __future__ import annotations

import importlib.util
import math

import numpy as np
import pytest
import torch

from blinddps.evaluation import (aligned_psnr, aligned_ssim, blob_floor_mnc, gaussian_blob,
                                 kernel_mse_aligned, lpips_available, mnc, psnr, ssim, tilt_rmse)


def _smooth_image(seed=0, c=3, n=48):
    rng = np.random.default_rng(seed)
    from scipy.ndimage import gaussian_filter

    x = gaussian_filter(rng.standard_normal((c, n, n)), sigma=(0, 2, 2))
    return np.clip(x / np.abs(x).max(), -1, 1)


def _line(size, length, vertical=False):
    k = np.zeros((size, size))
    c = size // 2
    if vertical:
        k[c - length // 2:c - length // 2 + length, c] = 1.0
    else:
        k[c, c - length // 2:c - length // 2 + length] = 1.0
    return k / k.sum()


def test_psnr_identical_is_inf_and_known_noise():
    x = _smooth_image()
    assert psnr(x, x) == math.inf
    # +-0.1 checkerboard error: MSE 0.01, data range 2 -> 10 log10(4 / 0.01)
    err = 0.1 * (np.indices(x.shape[1:]).sum(0) % 2 * 2 - 1)
    assert psnr(x + err, x) == pytest.approx(10 * math.log10(4 / 0.01), abs=1e-9)
    # data_range is honoured
    assert psnr(x + err, x, data_range=1.0) == pytest.approx(10 * math.log10(1 / 0.01), abs=1e-9)


def test_psnr_ssim_torch_batch_and_gray():
    x = _smooth_image()
    rng = np.random.default_rng(1)
    batch = np.stack([x, x + 0.05 * rng.standard_normal(x.shape)])
    ref = np.stack([x, x])
    vals = psnr(torch.tensor(batch), torch.tensor(ref))
    assert isinstance(vals, list) and len(vals) == 2
    assert vals[0] == math.inf and 31.5 < vals[1] < 32.6  # sigma 0.05: 10 log10(4 / 0.0025) = 32.04
    s = ssim(torch.tensor(batch), ref)
    assert s[0] == pytest.approx(1.0) and s[1] < 0.99
    assert ssim(x[0], x[0]) == pytest.approx(1.0)  # (H, W) grayscale
    assert isinstance(psnr(x[:1], x[:1] + 0.01), float)


def test_aligned_psnr_recovers_shift():
    x = _smooth_image(seed=2, n=64)
    est = np.roll(x, (2, -3), axis=(-2, -1))  # est[i+2, j-3] = x[i, j]
    val, shift = aligned_psnr(est, x, max_shift=5)
    assert shift == (2, -3)
    assert val == math.inf
    assert psnr(est, x) < 25  # unaligned it is poor
    rng = np.random.default_rng(3)
    noisy = est + 0.02 * rng.standard_normal(est.shape)
    val, shift = aligned_psnr(noisy, x, max_shift=5)
    assert shift == (2, -3)
    m = 5
    crop_err = (noisy[:, m + 2:64 - m + 2, m - 3:64 - m - 3] - x[:, m:64 - m, m:64 - m])
    assert val == pytest.approx(10 * math.log10(4 / np.mean(crop_err ** 2)), abs=1e-9)
    sv, sshift = aligned_ssim(est, x, max_shift=5)
    assert sshift == (2, -3) and sv == pytest.approx(1.0)
    sv2, sshift2 = aligned_ssim(est, x, max_shift=3, by="ssim")
    assert sshift2 == (2, -3) and sv2 == pytest.approx(1.0)
    # batch: list of (value, shift)
    res = aligned_psnr(np.stack([est, x]), np.stack([x, x]), max_shift=4)
    assert [r[1] for r in res] == [(2, -3), (0, 0)]


def test_mnc_self_shift_size_and_dissimilar():
    rng = np.random.default_rng(0)
    k = rng.random((9, 9)) ** 4
    k /= k.sum()
    assert mnc(k, k) == pytest.approx(1.0, abs=1e-9)
    big = np.zeros((15, 15))
    big[4:13, 1:10] = k  # shifted copy on a larger grid
    assert mnc(big, k) == pytest.approx(1.0, abs=1e-9)
    assert mnc(torch.tensor(big)[None, None], torch.tensor(k)) == pytest.approx(1.0, abs=1e-9)
    # orthogonal thin lines overlap in one pixel: 1/9
    assert mnc(_line(11, 9), _line(11, 9, vertical=True)) == pytest.approx(1 / 9, abs=1e-9)
    assert mnc(_line(11, 9), gaussian_blob(11, 0.5)) < 0.5
    # batch
    out = mnc(np.stack([k, k])[:, None], np.stack([k, _line(9, 7)])[:, None])
    assert out[0] == pytest.approx(1.0) and out[1] < 0.6


def test_kernel_mse_aligned():
    rng = np.random.default_rng(1)
    k = rng.random((7, 7))
    k /= k.sum()
    big = np.zeros((11, 11))
    big[3:10, 0:7] = k
    assert kernel_mse_aligned(big, k) == pytest.approx(0.0, abs=1e-20)
    # a delta against a 2-pixel kernel: best shift puts the delta on one of them
    d = np.zeros((5, 5))
    d[2, 2] = 1.0
    two = np.zeros((5, 5))
    two[2, 1:3] = 0.5
    assert kernel_mse_aligned(d, two) == pytest.approx((0.5 ** 2 + 0.5 ** 2) / 25)


def test_blob_floor():
    g = gaussian_blob(21, 2.3)
    assert blob_floor_mnc(g) > 0.995
    floor, std = blob_floor_mnc(g, return_std=True)
    assert abs(std - 2.3) < 0.2
    line = _line(21, 17)
    f = blob_floor_mnc(line)
    assert f < 0.7
    assert mnc(line, line) - f > 0.3


def test_tilt_rmse():
    t_true = np.zeros((2, 8, 8))
    t_est = np.zeros((2, 8, 8))
    t_est[0] = 3.0
    t_est[1] = 4.0
    assert tilt_rmse(t_est, t_true) == pytest.approx(5.0)
    t_est2 = t_est.copy()
    t_est2[:, :4] = 0.0  # half the pixels exact: sqrt(25 / 2)
    out = tilt_rmse(torch.tensor(np.stack([t_est, t_est2])), np.stack([t_true, t_true]))
    assert out == pytest.approx([5.0, math.sqrt(12.5)])


def test_lpips_available_reports_reason():
    ok, reason = lpips_available()
    assert isinstance(ok, bool) and isinstance(reason, str) and reason
    if importlib.util.find_spec("lpips") is None:
        assert not ok and "lpips" in reason


def _best_shift_direct(e, r, m):
    """Every shift compared pixel by pixel (what _best_shift must agree with)."""
    H, W = r.shape[:2]
    rc = r[m:H - m, m:W - m]
    best, best_mse = (0, 0), np.inf
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            mse = float(np.mean((e[m + dy:H - m + dy, m + dx:W - m + dx] - rc) ** 2))
            if mse < best_mse - 1e-15 or (abs(mse - best_mse) <= 1e-15 and abs(dy) + abs(dx) < abs(best[0]) + abs(best[1])):
                best, best_mse = (dy, dx), mse
    return best


def test_best_shift_agrees_with_the_direct_search():
    from blinddps.evaluation.metrics import _best_shift

    rng = np.random.default_rng(0)
    base = ndimage_smooth(rng.random((70, 80, 3)))
    for dy, dx in [(0, 0), (3, -2), (-5, 5), (1, 4)]:
        e = np.roll(base, (dy, dx), axis=(0, 1)) + 0.01 * rng.standard_normal(base.shape)
        assert _best_shift(e, base, 6) == _best_shift_direct(e, base, 6) == (dy, dx)
    flat = np.full((40, 40, 1), 0.3)
    assert _best_shift(flat, flat, 5) == _best_shift_direct(flat, flat, 5) == (0, 0)  # ties: the smallest shift
    for _ in range(5):  # unrelated images: whatever the best shift is, the same one
        a, b = rng.random((50, 60)), rng.random((50, 60))
        assert _best_shift(a, b, 4) == _best_shift_direct(a, b, 4)


def ndimage_smooth(a):
    from scipy import ndimage

    return ndimage.gaussian_filter(a, (1.5, 1.5, 0))
