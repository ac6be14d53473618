"""Classical baselines: Wiener, TV (non-blind) and Pan et al.'s L0 blind method,
on synthetic piecewise-constant scenes with known blur and noise."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from blinddps.baselines import l0_blind_deblur, same_correlate, tv_deconvolve, wiener_deconvolve
from blinddps.baselines._common import corr_otf, edgetaper, irfft2, rfft2, wrap_pad
from blinddps.baselines.wiener import estimate_noise_sigma
from blinddps.evaluation import aligned_psnr, blob_floor_mnc, mnc, psnr


def scene(n=96, c=3, seed=0):
    """Piecewise-constant shapes (discs, rectangles, diamonds) in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:n, 0:n]
    img = np.zeros((c, n, n)) + rng.uniform(-0.6, 0.6, (c, 1, 1))
    for _ in range(8):
        col = rng.uniform(-0.9, 0.9, (c, 1, 1))
        kind = rng.integers(3)
        cy, cx = rng.uniform(0.1 * n, 0.9 * n, 2)
        r = rng.uniform(0.08 * n, 0.22 * n)
        if kind == 0:
            m = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        elif kind == 1:
            m = (abs(yy - cy) < r) & (abs(xx - cx) < 0.6 * r)
        else:
            m = (abs(yy - cy) + abs(xx - cx)) < r
        img = np.where(m[None], col, img)
    return img


def line_kernel(size=15, length=11.0, angle=30.0):
    """Straight motion blur: a bilinearly drawn segment through the centre."""
    k = np.zeros((size, size))
    c = (size - 1) / 2
    a = np.deg2rad(angle)
    for t in np.linspace(-length / 2, length / 2, 200):
        y, x = c + t * np.sin(a), c + t * np.cos(a)
        iy, ix = int(np.floor(y)), int(np.floor(x))
        fy, fx = y - iy, x - ix
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                k[iy + dy, ix + dx] += wy * wx
    return k / k.sum()


def l_kernel(size=15):
    """An L-shaped (two-segment) motion path with a heavier end point."""
    k = np.zeros((size, size))
    c = size // 2
    k[c - 4, c - 4:c + 4] = 1.0
    k[c - 4:c + 3, c + 3] = 1.0
    k[c + 2, c + 3] = 2.0
    return k / k.sum()


@pytest.fixture(scope="module")
def blurred():
    x = scene()
    k = l_kernel()
    rng = np.random.default_rng(1)
    y = same_correlate(x, k) + 0.01 * rng.standard_normal(x.shape)
    return x, k, y


@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
@pytest.mark.parametrize("ksize", [(5, 5), (4, 4), (6, 3)])
def test_same_correlate_matches_torch_conv2d(ksize):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 20, 17))
    k = rng.random(ksize)
    ref = torch.nn.functional.conv2d(torch.tensor(x).reshape(6, 1, 20, 17),
                                     torch.tensor(k)[None, None], padding="same")
    assert np.allclose(same_correlate(x, k), ref.reshape(2, 3, 20, 17).numpy(), atol=1e-10)
    # the circular version on an extended domain agrees on the image window
    kh, kw = ksize
    H, W = 20 + kh - 1, 17 + kw - 1
    py, px = (kh - 1) // 2, (kw - 1) // 2
    xe = np.zeros((H, W))
    xe[py:py + 20, px:px + 17] = x[0, 0]
    ye = irfft2(rfft2(xe) * corr_otf(k, (H, W)), (H, W))[py:py + 20, px:px + 17]
    assert np.allclose(ye, ref[0, 0].numpy(), atol=1e-10)


def test_border_helpers():
    rng = np.random.default_rng(0)
    img = rng.random((2, 30, 40))
    k = l_kernel(7)
    t = edgetaper(img, k)
    assert t.shape == img.shape
    assert np.allclose(t[:, 10:20, 10:30], img[:, 10:20, 10:30], atol=0.2)  # interior kept
    w = wrap_pad(img, (37, 45))
    assert w.shape == (2, 37, 45) and np.array_equal(w[:, :30, :40], img)
    # periodic continuity: last row/col of the band close to first row/col
    assert np.abs(w[:, -1, :40] - img[:, 0, :]).max() < np.abs(img[:, -1] - img[:, 0]).max()


def test_noise_sigma_estimate(blurred):
    _, _, y = blurred
    assert estimate_noise_sigma(y) == pytest.approx(0.01, rel=0.25)


def test_wiener_recovers_scene(blurred):
    x, k, y = blurred
    base = psnr(y, x)
    est = wiener_deconvolve(y, k)
    assert est.shape == y.shape and est.min() >= -1 and est.max() <= 1
    assert psnr(est, x) > base + 3.0
    assert psnr(wiener_deconvolve(y, k, nsr=1e-2), x) > base + 3.0
    # torch batch with per-sample kernels keeps type, dtype and shape
    yt = torch.tensor(np.stack([y, y]), dtype=torch.float32)
    kt = torch.tensor(np.stack([k, k])[:, None], dtype=torch.float32)
    out = wiener_deconvolve(yt, kt)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == yt.shape
    assert np.allclose(out[1].numpy(), est, atol=1e-5)


def test_tv_recovers_scene(blurred):
    x, k, y = blurred
    base = psnr(y, x)
    est = tv_deconvolve(y, k)
    assert est.shape == y.shape
    v = psnr(est, x)
    assert v > base + 6.0
    assert v > psnr(wiener_deconvolve(y, k), x)  # TV suits piecewise-constant scenes
    est2 = tv_deconvolve(torch.tensor(y[0]), torch.tensor(k)[None, None], lam=2e-3, iters=100)
    assert isinstance(est2, torch.Tensor) and est2.shape == (96, 96)
    assert psnr(est2.numpy(), x[0]) > base + 6.0


def test_l0_blind_estimates_motion_kernel():
    x = scene(seed=0)
    k_true = line_kernel(15, 11.0, 30.0)
    rng = np.random.default_rng(1)
    y = same_correlate(x, k_true) + 0.01 * rng.standard_normal(x.shape)
    x_est, k_est = l0_blind_deblur(y, 15)
    assert x_est.shape == y.shape and k_est.shape == (15, 15)
    assert k_est.min() >= 0 and k_est.sum() == pytest.approx(1.0)
    floor = blob_floor_mnc(k_true)
    m = mnc(k_est, k_true)
    assert m > 0.75 and m > floor + 0.2, (m, floor)
    val, _ = aligned_psnr(x_est, x, max_shift=4)
    assert val > psnr(y, x) + 4.0


def test_l0_blind_even_kernel_batch_torch():
    x = scene(n=64, seed=1)
    k_true = np.zeros((16, 16))
    k_true[4:11, 4:11] = l_kernel(7)
    y = same_correlate(x, k_true) + 0.01 * np.random.default_rng(2).standard_normal(x.shape)
    yt = torch.tensor(y[None], dtype=torch.float32)
    x_est, k_est = l0_blind_deblur(yt, 16, final="tv", tv_iters=60)
    assert isinstance(x_est, torch.Tensor) and x_est.shape == (1, 3, 64, 64)
    assert isinstance(k_est, torch.Tensor) and k_est.shape == (1, 1, 16, 16)
    assert float(k_est.sum()) == pytest.approx(1.0, abs=1e-5)
    assert mnc(k_est, k_true) > blob_floor_mnc(k_true) + 0.05
