"""Statistical checks of the kernel and tilt-map generators (blinddps.simulate)."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch

from blinddps.simulate import (
    gaussian_kernels,
    kernel_centroid,
    kernel_covariance,
    kernel_support,
    load_kernel,
    motion_kernels,
    save_kernel,
    tilt_maps,
    trajectory_length,
)

INTENSITIES = (0.0, 0.5, 1.0)


@pytest.fixture(scope="module")
def motion():
    """500 kernels of 64² per intensity, one fixed seed each."""
    return {i: motion_kernels(500, 64, i, generator=100 + k) for k, i in enumerate(INTENSITIES)}


def _eig(k):
    return torch.linalg.eigvalsh(kernel_covariance(k))  # ascending: (λ2, λ1)


# ---------------------------------------------------------------- motion kernels


@pytest.mark.parametrize("intensity", INTENSITIES)
def test_motion_kernels_are_normalised_and_centred(motion, intensity):
    k = motion[intensity]
    assert k.shape == (500, 1, 64, 64) and k.dtype == torch.float32
    assert float(k.min()) >= 0.0
    assert torch.allclose(k.sum((1, 2, 3)), torch.ones(500), atol=1e-5)
    off = kernel_centroid(k) - 31.5
    assert float(off.abs().max()) < 0.5
    assert float(off.abs().max()) < 0.05  # our construction is much tighter than required


def test_motion_kernels_other_sizes_and_intensity_range():
    for size in (16, 33):
        k = motion_kernels(50, size, (0.2, 0.8), generator=3)
        assert k.shape == (50, 1, size, size)
        assert torch.allclose(k.sum((1, 2, 3)), torch.ones(50), atol=1e-5)
        assert float((kernel_centroid(k) - (size - 1) / 2).abs().max()) < 0.5


def test_support_and_curvature_grow_with_intensity(motion):
    support = [kernel_support(motion[i]).float().mean().item() for i in INTENSITIES]
    assert support[0] < support[1] < support[2], support
    length = [trajectory_length(motion[i]).mean().item() for i in INTENSITIES]
    assert length[0] < length[1] < length[2], length
    # spread across the path (second eigenvalue of the mass covariance) grows too
    lam2 = [_eig(motion[i])[:, 0].median().item() for i in INTENSITIES]
    assert lam2[0] < lam2[1] < lam2[2], lam2


def test_intensity_zero_kernels_are_straight_lines(motion):
    ev = _eig(motion[0.0])
    lam2, lam1 = ev[:, 0], ev[:, 1]
    # the width across the line is the rendering blur only (< 0.5 px²) for every kernel
    assert float(lam2.max()) < 0.5
    long = lam1 > 10.0  # longer than about 11 px
    assert int(long.sum()) > 300
    assert float((lam2[long] / lam1[long]).max()) < 0.04
    assert float((lam2 / lam1).median()) < 0.01
    # curved kernels are not: at intensity 1 most are wider than any straight one
    ev1 = _eig(motion[1.0])
    assert float((ev1[:, 0] > 0.5).float().mean()) > 0.5


def test_motion_path_lengths_follow_the_model(motion):
    """Straight kernels: length L = 0.75·D·U(0,1) on the 2× canvas, i.e. up to
    0.75·√2·64 ≈ 68 px at kernel scale (clipped by the 64-px box). Estimate the
    length of each straight kernel as √(12·λ1) and check the spread of lengths."""
    ev = _eig(motion[0.0])
    est = torch.sqrt(12.0 * (ev[:, 1] - ev[:, 0]).clamp_min(0))
    assert 0.0 <= float(est.min()) < 5.0
    assert 55.0 < float(est.max()) < 75.0
    assert 25.0 < float(est.median()) < 40.0  # U(0,1)·68 has median 34


def test_seeding_is_explicit_and_reproducible():
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state = torch.random.get_rng_state().clone()
    np_state = np.random.get_state()[1].copy()
    a = motion_kernels(20, 32, 0.5, generator=7)
    b = motion_kernels(20, 32, 0.5, generator=7)
    c = motion_kernels(20, 32, 0.5, generator=8)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    d, e = motion_kernels(5, 32, 1.0, generator=g1), motion_kernels(5, 32, 1.0, generator=g2)
    f = motion_kernels(5, 32, 1.0, generator=g1)  # the generator advanced
    ga = gaussian_kernels(4, 32, (1.0, 3.0), (1.0, 2.0), generator=1)
    gb = gaussian_kernels(4, 32, (1.0, 3.0), (1.0, 2.0), generator=1)
    ta, tb = tilt_maps(2, 48, 40, generator=9, num_patches=30), tilt_maps(2, 48, 40, generator=9, num_patches=30)
    tc = tilt_maps(2, 48, 40, generator=10, num_patches=30)
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        motion_kernels(3, 16, 0.5)  # generator=None: fresh seed, still no global RNG
        assert torch.get_num_threads() == 2  # the temporary thread setting is restored
    finally:
        torch.set_num_threads(threads)
    k_default = motion_kernels(3, 16, 0.5, generator=1)
    assert torch.allclose(motion_kernels(3, 16, 0.5, generator=1, threads=None), k_default, atol=1e-6)
    tilt_maps(1, 32, 32, num_patches=5, patch_size=8, method="fast")
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    assert np.array_equal(np.random.get_state()[1], np_state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(d, e) and not torch.equal(d, f)
    assert torch.equal(ga, gb)
    assert torch.equal(ta, tb) and not torch.equal(ta, tc)


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        motion_kernels(2, 64, 1.5)
    with pytest.raises(ValueError):
        motion_kernels(-1)
    with pytest.raises(TypeError):
        motion_kernels(2, 16, 0.5, generator="seed")
    with pytest.raises(ValueError):
        gaussian_kernels(2, 16, std=-1.0)
    with pytest.raises(ValueError):
        gaussian_kernels(2, 16, anisotropy=0.5)
    with pytest.raises(ValueError):
        tilt_maps(1, 32, 32, smooth_kernel=6)
    with pytest.raises(ValueError):
        tilt_maps(1, 32, 32, method="magic")


# -------------------------------------------------------------- Gaussian kernels


def test_gaussian_kernel_isotropic_std():
    k = gaussian_kernels(3, 64, 3.0, generator=0)
    assert k.shape == (3, 1, 64, 64) and float(k.min()) >= 0
    assert torch.allclose(k.sum((1, 2, 3)), torch.ones(3), atol=1e-5)
    assert float((kernel_centroid(k) - 31.5).abs().max()) < 1e-4
    cov = kernel_covariance(k)
    assert torch.allclose(cov, torch.diag(torch.tensor([9.0, 9.0], dtype=cov.dtype)).expand(3, 2, 2), atol=0.02)
    assert torch.equal(k[0], k[1])


def test_gaussian_kernel_anisotropy_and_angle():
    k = gaussian_kernels(2, 64, std=4.0, anisotropy=2.0, angle=0.3)
    ev, vec = torch.linalg.eigh(kernel_covariance(k))
    assert torch.allclose(ev, torch.tensor([[4.0, 16.0]] * 2, dtype=ev.dtype), rtol=0.01)
    major = vec[0, :, 1]
    assert abs(abs(float(major[0] * math.cos(0.3) + major[1] * math.sin(0.3))) - 1.0) < 1e-4


def test_gaussian_kernel_random_ranges():
    # (minor std >= 1 px: sampled Gaussians narrower than a pixel are not Gaussian)
    k = gaussian_kernels(200, 48, std=(2.0, 4.0), anisotropy=(1.0, 2.0), generator=4)
    ev = torch.linalg.eigvalsh(kernel_covariance(k))
    major, minor = ev[:, 1].sqrt(), ev[:, 0].sqrt()
    assert float(major.min()) > 1.99 and float(major.max()) < 4.01
    ratio = major / minor
    assert float(ratio.min()) > 0.999 and float(ratio.max()) < 2.001
    assert float(major.std()) > 0.4 and float(ratio.std()) > 0.2
    # orientations are spread (not all along one axis)
    _, vec = torch.linalg.eigh(kernel_covariance(k))
    ang = torch.atan2(vec[:, 1, 1], vec[:, 0, 1]) % math.pi
    assert float(ang[ratio > 1.2].std()) > 0.6


# ------------------------------------------------------------------- statistics


def test_kernel_statistics_on_known_shapes():
    delta = torch.zeros(1, 1, 9, 9)
    delta[0, 0, 4, 4] = 1.0
    assert kernel_support(delta).tolist() == [1]
    box = torch.zeros(9, 9)
    box[2:7, 2:7] = 1 / 25
    assert kernel_support(box, 0.95).tolist() == [24]
    assert kernel_support(box, 1.0).tolist() == [25]
    line = torch.zeros(1, 32, 32)
    line[0, 10, 5:25] = 1 / 20
    assert trajectory_length(line).tolist() == [20.0]
    assert torch.allclose(kernel_centroid(line), torch.tensor([[14.5, 10.0]], dtype=torch.float64))
    cov = kernel_covariance(line)[0]
    assert abs(float(cov[0, 0]) - (20**2 - 1) / 12) < 1e-9 and abs(float(cov[1, 1])) < 1e-12


# ---------------------------------------------------------------------- tilt maps


@pytest.fixture(scope="module")
def tilts():
    return tilt_maps(3, 256, 256, generator=0)  # the paper's setting


def test_tilt_maps_paper_setting(tilts):
    t = tilts
    assert t.shape == (3, 2, 256, 256) and t.dtype == torch.float32
    assert float(t.abs().max()) <= 2.5
    # 500 patches of 64² on 256²: ~31 patches per pixel, strengths U(0.1, 0.4), filtered
    # N(0,1) (variance Σg² ≈ 1/(4π)): std ≈ √(31·0.07/(4π)) ≈ 0.42 in the interior
    interior = t[..., 64:192, 64:192]
    assert 0.33 < float(interior.std()) < 0.5
    assert float(t.abs().mean()) > 0.2  # non-trivial
    # smooth: a 7×7 std-1 Gaussian gives neighbour differences ≈ 0.68× the values
    # (white noise: √2 ≈ 1.41×)
    mag = float(t.abs().mean())
    dx = float((t[..., 1:] - t[..., :-1]).abs().mean())
    dy = float((t[..., 1:, :] - t[..., :-1, :]).abs().mean())
    assert dx / mag < 0.8 and dy / mag < 0.8
    assert dx / mag > 0.55 and dy / mag > 0.55
    # the two channels are independent, the maps differ
    corr = float((t[:, 0] * t[:, 1]).mean() / (t[:, 0].std() * t[:, 1].std()))
    assert abs(corr) < 0.05
    assert not torch.equal(t[0], t[1])


def test_tilt_clip_and_small_shapes():
    t = tilt_maps(2, 40, 56, generator=1, num_patches=200, patch_size=16, max_tilt=0.3)
    assert t.shape == (2, 2, 40, 56)
    assert float(t.abs().max()) <= 0.3 + 1e-7
    assert float((t.abs() >= 0.3 - 1e-6).float().mean()) > 0.05  # the clip is active
    z = tilt_maps(1, 16, 16, generator=1, num_patches=0)
    assert torch.equal(z, torch.zeros(1, 2, 16, 16))


def test_tilt_fast_method_matches_the_recipe_statistics():
    a = tilt_maps(6, 128, 128, generator=2, num_patches=125)
    b = tilt_maps(6, 128, 128, generator=3, num_patches=125, method="fast")
    assert b.shape == a.shape and float(b.abs().max()) <= 2.5
    assert abs(float(a.std()) / float(b.std()) - 1.0) < 0.08
    ra = float((a[..., 1:] - a[..., :-1]).abs().mean() / a.abs().mean())
    rb = float((b[..., 1:] - b[..., :-1]).abs().mean() / b.abs().mean())
    assert abs(ra - rb) < 0.05
    # same patch layout for the same seed: the local variance follows the same patches
    c = tilt_maps(6, 128, 128, generator=2, num_patches=125, method="fast")
    va = torch.nn.functional.avg_pool2d(a.pow(2), 16).flatten()
    vc = torch.nn.functional.avg_pool2d(c.pow(2), 16).flatten()
    assert float(torch.corrcoef(torch.stack([va, vc]))[0, 1]) > 0.6


# --------------------------------------------------------------------------- I/O


def test_save_load_round_trip(tmp_path):
    k = motion_kernels(1, 32, 0.5, generator=11)
    npy, png = save_kernel(k, tmp_path / "sub" / "kernel")
    assert npy.name == "kernel.npy" and png.name == "kernel.png"
    raw = np.load(npy)
    assert raw.dtype == np.float32 and raw.shape == (32, 32)
    back = load_kernel(npy)
    assert back.shape == (1, 1, 32, 32) and torch.allclose(back, k, atol=1e-7)
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (128, 128)  # nearest ×4 for viewing
    from_png = load_kernel(png)
    assert from_png.shape == (1, 1, 32, 32)
    assert abs(float(from_png.sum()) - 1.0) < 1e-5
    assert float((from_png - k).abs().sum()) < 0.05  # 8-bit quantisation only
    # a foreign image (no upscale record, RGB) loads as is
    Image.fromarray(np.full((7, 5, 3), 40, np.uint8)).save(tmp_path / "rgb.png")
    assert load_kernel(tmp_path / "rgb.png").shape == (1, 1, 7, 5)
    # tiny float noise below zero is clamped, scale is normalised
    arr = np.zeros((5, 5), np.float64)
    arr[2, 1:4] = 3.0
    arr[0, 0] = -1e-6
    np.save(tmp_path / "noisy.npy", arr)
    k2 = load_kernel(tmp_path / "noisy.npy")
    assert float(k2.min()) == 0.0 and abs(float(k2.sum()) - 1) < 1e-6


@pytest.mark.parametrize(
    "name, content",
    [
        ("cube.npy", np.ones((2, 3, 3), np.float32)),
        ("neg.npy", np.array([[0.5, -0.5], [0.5, 0.5]], np.float32)),
        ("nan.npy", np.array([[np.nan, 1.0], [1.0, 1.0]], np.float32)),
        ("zero.npy", np.zeros((4, 4), np.float32)),
        ("text.npy", np.array([["a", "b"]])),
        ("junk.png", b"not an image"),
        ("junk.npy", b"not numpy"),
        ("missing.npy", None),
    ],
)
def test_load_bad_kernel_raises_one_line_value_error(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, np.ndarray):
        np.save(path, content)
    elif isinstance(content, bytes):
        path.write_bytes(content)
    with pytest.raises(ValueError) as err:
        load_kernel(path)
    assert "\n" not in str(err.value)


# -------------------------------------------------------------------------- speed


@pytest.mark.slow
def test_sixty_thousand_motion_kernels_in_a_minute():
    t0 = time.perf_counter()
    k = motion_kernels(60_000, 64, 0.5, generator=0)
    elapsed = time.perf_counter() - t0
    assert k.shape == (60_000, 1, 64, 64)
    assert torch.allclose(k.sum((1, 2, 3)), torch.ones(60_000), atol=1e-5)
    print(f"60000 motion kernels (64², intensity 0.5): {elapsed:.1f} s (generator default threads=1)")
    assert elapsed < 60.0
