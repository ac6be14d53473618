"""The photo pipeline (issue 20): linear light, clipped pixels, region choice,
tiled restoration, coarse-to-fine kernels, and the command line on large kernels."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from blinddps.cli import main
from blinddps.evaluation.metrics import mnc
from blinddps.photo import (clipped_mask, deblur_photo, deconvolve, estimate_kernel, informative_region,
                            linear_to_srgb, srgb_to_linear)
from blinddps.photo.deconvolve import tile_grid
from blinddps.photo.kernel import levels_for, odd, trim_kernel, trim_mass
from blinddps.photo.pipeline import PhotoSettings, valid_residual_rms
from blinddps.photo.simulate import simulate_photo


def scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A piecewise-smooth RGB scene in [0, 1] with edges in every direction."""
    rng = np.random.default_rng(seed)
    img = np.zeros((3, h, w))
    yy, xx = np.mgrid[0:h, 0:w]
    for _ in range(40):
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(4, min(h, w) / 5)
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 < r * r
        img[:, disk] = rng.uniform(0.05, 0.95, (3, 1))
    for _ in range(12):
        t0, l0 = int(rng.integers(0, h - 10)), int(rng.integers(0, w - 10))
        img[:, t0:t0 + int(rng.integers(4, 30)), l0:l0 + int(rng.integers(4, 30))] = rng.uniform(0, 1, (3, 1, 1))
    return ndimage.gaussian_filter(img, (0, 0.7, 0.7))


def line_kernel(size: int, angle: float, length: float) -> np.ndarray:
    k = np.zeros((size, size))
    c = (size - 1) / 2
    for t in np.linspace(-length / 2, length / 2, 4 * size):
        y, x = c + t * np.sin(angle), c + t * np.cos(angle) + 0.15 * t * t / size
        k[int(round(y)), int(round(x))] += 1
    k = ndimage.gaussian_filter(k, 0.5)
    return k / k.sum()


def test_srgb_round_trip_and_known_values():
    v = np.linspace(0, 1, 101)
    assert np.allclose(linear_to_srgb(srgb_to_linear(v)), v, atol=1e-12)
    assert srgb_to_linear(np.array([0.5]))[0] == pytest.approx(0.21404, abs=1e-5)
    assert linear_to_srgb(np.array([0.18]))[0] == pytest.approx(0.46135, abs=1e-5)


def test_clipped_mask_grows_and_uses_any_channel():
    y = np.zeros((3, 20, 20))
    y[1, 10, 10] = 1.0
    m = clipped_mask(y, 0.98, grow=1)
    assert m.sum() == 9 and m[9:12, 9:12].all()
    assert not clipped_mask(y, 0.98, grow=0)[0, 0]


def test_informative_region_prefers_texture_and_avoids_excluded():
    g = np.zeros((200, 300))
    g[120:190, 200:290] = scene(70, 90)[0]  # texture bottom right
    t, l, h, w = informative_region(g, 64)
    assert (h, w) == (64, 64) and t >= 110 and l >= 190
    ex = np.zeros_like(g, bool)
    ex[100:200, 180:300] = True  # ... now clipped: another window
    g[10:80, 10:100] = scene(70, 90, seed=1)[0]
    t2, l2, _, _ = informative_region(g, 64, ex)
    assert t2 < 60 and l2 < 60
    assert informative_region(g, 500) == (0, 0, 200, 300)


def test_levels_odd_and_trim():
    assert odd(4) == 5 and odd(5) == 5 and odd(1) == 3
    s = levels_for(31 / 75)
    assert s[0] == pytest.approx(31 / 75) and s[-1] == pytest.approx(1.0)
    assert all(b / a < 1.42 for a, b in zip(s, s[1:]))
    assert levels_for(1.0) == [1.0]
    k = np.zeros((41, 41))
    k[18:23, 15:26] = 1
    t = trim_kernel(k)
    assert t.shape == (15, 15) and t.sum() == pytest.approx(1.0)
    assert levels_for(15 / 51)[-1] == 1.0  # exactly: the last level is full resolution
    # the margin's trim: back to the size asked for unless mass lies beyond it
    assert trim_mass(k, 7).shape == (11, 11) and trim_mass(k, 21).shape == (21, 21)
    k2 = np.zeros((41, 41))
    k2[20, 20] = 1.0
    assert trim_mass(k2, 9).shape == (9, 9)


def test_tiled_restoration_matches_whole_and_restores():
    x = scene(140, 150)
    k = line_kernel(9, 0.3, 7)
    y = simulate_photo(x, k, noise=0.005, bits=None, linear_light=False)
    assert tile_grid(100, 30) == [(0, 25), (25, 50), (50, 75), (75, 100)]
    whole = deconvolve(y, k, iters=60)
    tiled = deconvolve(y, k, iters=60, tile_pixels=50 * 50)
    d = np.abs(whole - tiled)
    assert d[:, 9:-9, 9:-9].max() < 0.03 and d.mean() < 2e-3  # margins of 2 kernel sizes: no seams
    ref = x[:, 4:-4, 4:-4]
    err_blur = np.sqrt(np.mean((y - ref) ** 2))
    err_tv = np.sqrt(np.mean((whole - ref) ** 2))
    assert err_tv < 0.6 * err_blur
    assert valid_residual_rms(y, whole, k) < 0.02


def test_clipped_pixels_out_of_the_data_term_ring_less():
    x = scene(120, 120) * 0.5
    x[:, 50:58, 60:68] = 1.0  # a light source, 8x brighter in linear light than it can record
    k = line_kernel(15, 0.0, 12)
    y = simulate_photo(x, k, noise=0.002, gain=4.0, bits=8)
    lin = srgb_to_linear(y)
    m = clipped_mask(y)
    assert m.any()
    ref = np.clip(srgb_to_linear(x[:, 7:-7, 7:-7]) * 4.0, 0, 1)
    plain = deconvolve(lin, k, iters=80)
    masked = deconvolve(lin, k, weight=(~m).astype(np.float32), iters=80)
    ring = ndimage.binary_dilation(m, iterations=12) & ~m  # around the highlight
    e_plain = np.sqrt(np.mean((plain[:, ring] - ref[:, ring]) ** 2))
    e_mask = np.sqrt(np.mean((masked[:, ring] - ref[:, ring]) ** 2))
    assert e_mask < 0.8 * e_plain


def test_l0_kernel_coarse_to_fine_recovers_a_large_kernel():
    x = scene(260, 260, seed=2)
    k = line_kernel(41, 0.6, 30)
    y = simulate_photo(x, k, noise=0.003, bits=8)
    est = estimate_kernel(srgb_to_linear(y), 41, estimator="l0", coarse_kernel=15, region=200)
    # estimated at 41 + 25 %, trimmed back to 99 % of its mass
    assert 41 <= est.kernel.shape[0] <= 53 and est.kernel.min() >= 0 and est.kernel.sum() == pytest.approx(1.0)
    assert [lv["stage"] for lv in est.levels][0] == "l0" and est.levels[-1]["scale"] == 1.0
    assert len(est.levels) >= 3
    assert mnc(est.kernel, k) > 0.75


def test_kernel_margin_and_border_band():
    """An off-centre kernel whose mass reaches past the size given: the margin finds it
    (and 0 keeps the exact size); the kernel's data term without the window's edge band
    (the scene past the window reaches in there) is at least as good."""
    x = scene(200, 200, seed=6)
    k = np.zeros((21, 21))
    k[2, 2:14] = 1.0  # a stroke in the top left: its centroid 8 px off the centre
    k[2:9, 13] = 1.0
    k /= k.sum()
    y = simulate_photo(x, k, noise=0.002, bits=8)
    wide = estimate_kernel(y, 21, estimator="l0", coarse_kernel=21)
    exact = estimate_kernel(y, 21, estimator="l0", coarse_kernel=21, kernel_margin=0.0)
    circular = estimate_kernel(y, 21, estimator="l0", coarse_kernel=21, border_band=False)
    assert exact.kernel.shape == (21, 21) and 21 <= wide.kernel.shape[0] <= 27
    m_wide, m_exact, m_circ = mnc(wide.kernel, k), mnc(exact.kernel, k), mnc(circular.kernel, k)
    assert m_wide > 0.8 and m_wide > m_exact + 0.02 and m_wide >= m_circ - 0.02


def test_known_kernel_restoration_and_photo_true_reference():
    x = scene(120, 120, seed=7)
    k = line_kernel(9, 0.4, 7)
    y = simulate_photo(x, k, noise=0.002, linear_light=False)
    yt = torch.from_numpy(2 * y - 1).float()
    sol = deblur_photo(yt, kernel=torch.from_numpy(k), linear_light=False)
    assert sol.settings["photo"]["levels"] == [{"stage": "given"}]
    assert np.allclose(sol.params["kernel"][0, 0].numpy(), k / k.sum(), atol=1e-6)
    crop = (slice(None), slice(10, -10), slice(10, -10))
    err_blur = np.sqrt(np.mean((y - x[:, 4:-4, 4:-4])[crop] ** 2))
    est = (sol.image[0].numpy() + 1) / 2
    err = np.sqrt(np.mean((est - x[:, 4:-4, 4:-4])[crop] ** 2))
    assert err < 0.7 * err_blur
    with pytest.raises(ValueError, match="non-negative"):
        deblur_photo(yt, kernel=-torch.from_numpy(k))


def test_deblur_photo_solution_and_errors():
    x = scene(150, 170, seed=3)
    k = line_kernel(11, 1.2, 8)
    y = simulate_photo(x, k, noise=0.005)
    sol = deblur_photo(torch.from_numpy(2 * y - 1).float(), kernel_size=11, estimator="l0", coarse_kernel=11)
    assert sol.image.shape == (1, 3) + y.shape[1:] and sol.image.abs().max() <= 1.0
    assert sol.params["kernel"].shape[-1] in (11, 13, 15)
    assert set(sol.timings["stages"]) == {"prepare", "kernel", "restore", "finish"}
    assert all(v["peak_rss_mb"] > 0 for v in sol.timings["stages"].values())
    assert sol.settings["photo"]["estimator"] == "l0" and sol.settings["pipeline"] == "photo"
    assert float(sol.residual_rms[0]) < 0.05
    with pytest.raises(ValueError, match="estimator"):
        deblur_photo(torch.zeros(3, 64, 64), estimator="nope")
    with pytest.raises(ValueError, match="needs an image"):
        deblur_photo(torch.zeros(3, 64, 64), kernel_size=61)
    with pytest.raises(ValueError, match="finite"):
        deblur_photo(torch.full((3, 64, 64), float("nan")))
    with pytest.raises(TypeError):
        PhotoSettings(nonsense=1)


def test_blinddps_coarse_estimate_runs_through_solve():
    x = scene(120, 120, seed=4)
    k = line_kernel(21, 0.2, 14)
    y = simulate_photo(x, k, noise=0.005)
    est = estimate_kernel(y, 21, estimator="blinddps", preset="motion_fast", steps=3, coarse_kernel=15,
                          coarse_region=64, region=96)
    assert 21 <= est.kernel.shape[0] <= 27 and est.kernel.shape[0] % 2 == 1 and est.coarse.shape == (15, 15)
    assert est.levels[0]["stage"] == "blinddps" and np.isfinite(est.kernel).all()


def test_cli_photo_pipeline_large_kernel(tmp_path, capsys):
    x = scene(200, 230, seed=5)
    k = line_kernel(41, 2.0, 26)
    y = simulate_photo(x, k, noise=0.003)
    src = tmp_path / "shake.png"
    Image.fromarray((y.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(src)
    out = tmp_path / "o"
    # --no-fallback: this photo's estimate fails the restoration check (7 dB against 17 blurry), and this test
    # is about the plumbing of a kernel larger than the prior's window
    argv = ["deblur", str(src), "--out", str(out), "--kernel-size", "41", "--estimator", "l0", "--threads", "1",
            "--no-fallback", "--quiet"]
    assert main(argv) == 0
    ker = np.load(out / "kernel.npy")
    # estimated with a 25 % margin (53 px), trimmed back to what holds 99 % of the mass
    assert 41 <= ker.shape[0] <= 53 and ker.shape[0] == ker.shape[1] and ker.sum() == pytest.approx(1.0, abs=1e-5)
    s = json.loads((out / "summary.json").read_text())
    assert s["settings"]["pipeline"] == "photo" and s["settings"]["kernel_size"] == list(ker.shape)
    assert s["pipeline"]["photo"]["estimator"] == "l0" and "stages" in s["timings"]
    restored = np.asarray(Image.open(out / "restored.png"))
    assert restored.shape == (200 - 40, 230 - 40, 3) and restored.dtype == np.uint8
    capsys.readouterr()
    assert main(argv) == 0  # resume: skipped
    assert "skipped" in capsys.readouterr().out
    other = [a if a != "l0" else "blinddps" for a in argv]
    rc = main(other)  # other settings: refused, named
    err = capsys.readouterr().err
    assert rc != 0 and "estimator" in err and "Traceback" not in err
    rc = main(["deblur", str(src), "--out", str(tmp_path / "o2"), "--kernel-size", "151", "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "needs an image" in err and "Traceback" not in err


def test_harness_runs_the_photo_pipeline(tmp_path):
    from blinddps.evaluation import runner as R

    res = R.evaluate(images="astronaut", degradation="motion", size=96, kernel_size=9, noise=0.01,
                     methods=["blurry", "photo"], seed=1, out_dir=tmp_path / "ev", progress=False,
                     method_options={"photo": {"estimator": "l0", "coarse_kernel": 9}})
    row = next(r for r in res.rows if r["method"] == "photo")
    assert 0 < float(row["kernel_mnc"]) <= 1
    blurry = next(r for r in res.rows if r["method"] == "blurry")
    assert float(row["psnr_aligned"]) > float(blurry["psnr_aligned"])


def test_levin_error_ratio_of_the_photo_pipeline(tmp_path):
    from blinddps.evaluation.levin_runner import levin_report

    rows = [{"image": "im1_k1", "method": m, "ssd": v, "psnr": 30.0, "kernel_mnc": float("nan"),
             "tv_ssd": float("nan"), "seconds": 1.0}
            for m, v in (("tv_true", 10.0), ("photo_true", 20.0), ("photo", 50.0))]
    text, stats = levin_report(rows, ["tv_true", "photo", "photo_true"])
    assert stats["photo"]["error_ratio"] == pytest.approx(2.5) and stats["photo"]["ratio_le2"] == 0
    assert "photo pipeline" in text


def test_every_candidate_gets_every_option():
    """Several candidates ('both', alt_floors) each run _estimate_one: every option of
    estimate_kernel but the selection's own must reach it."""
    import inspect

    from blinddps.photo import kernel as K

    outer = set(inspect.signature(K.estimate_kernel).parameters) - {"alt_floors", "select_margin", "workers"}
    inner = set(inspect.signature(K._estimate_one).parameters)
    assert outer == inner


def test_auto_pipeline_sends_levin_sized_images_to_the_photo_pipeline():
    import argparse

    from blinddps.cli import uses_photo_pipeline

    auto = argparse.Namespace(pipeline="auto")
    assert uses_photo_pipeline(auto, 255, 255)  # Levin et al.'s images: the photo pipeline measured far ahead
    assert not uses_photo_pipeline(auto, 128, 128)  # small noisy crops: BlindDPS on the whole image
    assert not uses_photo_pipeline(argparse.Namespace(pipeline="direct"), 1000, 1000)
    assert uses_photo_pipeline(argparse.Namespace(pipeline="photo"), 64, 64)
    assert uses_photo_pipeline(argparse.Namespace(pipeline="auto", photo_kernel_only=True), 128, 128)


def test_cli_kernel_floor_flag(tmp_path, capsys):
    x = scene(200, 200, seed=8)
    y = simulate_photo(x, line_kernel(9, 0.3, 7), noise=0.003)
    src = tmp_path / "p.png"
    Image.fromarray((y.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(src)
    assert main(["deblur", str(src), "--out", str(tmp_path / "bad"), "--kernel-floor", "2", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "--kernel-floor: expected a number in [0.0, 1.0)" in err and "Traceback" not in err
    assert not (tmp_path / "bad").exists()
    assert main(["deblur", str(src), "--out", str(tmp_path / "o"), "--kernel-floor", "0.05", "--kernel-size", "9",
                 "--threads", "1", "--quiet"]) == 0
    s = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert s["pipeline"]["photo"]["kernel_floor"] == 0.05
    assert s["pipeline"]["photo"]["alt_floors"] == [] and s["photo"]["choice"] is None  # one estimate
    assert main(["deblur", str(src), "--out", str(tmp_path / "d"), "--kernel-size", "9", "--threads", "1",
                 "--quiet"]) == 0
    photo = json.loads((tmp_path / "d" / "summary.json").read_text())["photo"]
    assert photo["alt_floors"] == [0.05]  # the default: two floors, the choice recorded
    ch = photo["choice"]
    assert ch["default"] == "l0@0.035" and set(ch["energies"]) == {"l0@0.035", "l0@0.05"}
    assert ch["chosen"] in ch["energies"]
    assert main(["deblur", str(src), "--out", str(tmp_path / "bad2"), "--alt-floors", "1.5", "--quiet"]) == 2
    assert "--alt-floors: expected a number in [0.0, 1.0)" in capsys.readouterr().err


def test_masked_kernel_step_padded_to_a_fast_size_is_exact():
    """With the edge band masked no product wraps around: zero padding to a fast FFT
    size changes nothing but the speed."""
    from blinddps.baselines._common import corr_otf, irfft2, rfft2
    from blinddps.baselines.l0_blind import estimate_psf

    rng = np.random.default_rng(0)
    n = 127  # a slow FFT length
    lx, ly = rng.normal(size=(n, n)), rng.normal(size=(n, n))
    k = rng.random((15, 15))
    k /= k.sum()
    bx = irfft2(corr_otf(k, lx.shape) * rfft2(lx), lx.shape) + 0.01 * rng.normal(size=lx.shape)
    by = irfft2(corr_otf(k, ly.shape) * rfft2(ly), ly.shape) + 0.01 * rng.normal(size=ly.shape)
    band = np.zeros((n, n))
    band[7:n - 7, 7:n - 7] = 1
    a = estimate_psf(bx, by, lx, ly, 2.0, (15, 15), mask=band)
    b = estimate_psf(bx, by, lx, ly, 2.0, (15, 15), mask=band, fast_pad=True)
    assert np.abs(a - b).max() < 1e-12 and mnc(a, k) > 0.9


def test_select_kernel_keeps_the_default_unless_another_is_clearly_better():
    from blinddps.photo.kernel import select_kernel

    spreads = {"a": 10.0, "b": 9.0}
    assert select_kernel({"a": 1.0, "b": 0.97}, spreads, "a", margin=0.05) == ("a", [])  # within the margin
    assert select_kernel({"a": 1.0, "b": 0.90}, spreads, "a", margin=0.05) == ("b", [])
    assert select_kernel({"a": 0.90, "b": 1.0}, spreads, "b", margin=0.05) == ("a", [])
    # a near-delta kernel explains a blurred photo with the lowest energy: never chosen
    assert select_kernel({"a": 1.0, "b": 0.5}, {"a": 10.0, "b": 2.0}, "a") == ("a", ["b"])
    # ... not even when it is the default
    assert select_kernel({"a": 0.5, "b": 1.0, "c": 0.9}, {"a": 2.0, "b": 10.0, "c": 9.0}, "a") == ("c", ["a"])


def test_kernel_spread():
    from blinddps.photo.kernel import kernel_spread

    d = np.zeros((9, 9))
    d[4, 4] = 1.0
    assert kernel_spread(d) == 0.0
    line = np.zeros((9, 9))
    line[4, 2:7] = 1.0  # offsets -2..2: RMS sqrt(2)
    assert kernel_spread(line) == pytest.approx(np.sqrt(2.0))


def test_kernel_candidates_in_threads_give_the_sequential_result():
    from blinddps.photo.pipeline import PhotoSettings, candidate_workers

    x = scene(200, 200, seed=8)
    y = torch.from_numpy(2 * simulate_photo(x, line_kernel(9, 0.3, 7), noise=0.003) - 1).float()
    one = deblur_photo(y, kernel_size=9, workers=1)
    two = deblur_photo(y, kernel_size=9, workers=2)
    assert torch.equal(one.params["kernel"], two.params["kernel"]) and torch.equal(one.image, two.image)
    assert set(one.param_samples) == {"kernel:l0@0.035", "kernel:l0@0.05"}
    assert one.settings["photo"]["choice"] == two.settings["photo"]["choice"]
    assert candidate_workers(PhotoSettings(workers=3)) == 3
    with pytest.raises(ValueError, match="workers"):
        deblur_photo(y, workers=0)


def test_saturation_gain():
    from blinddps.photo import saturation_gain

    y = np.full((1, 10, 10), 0.5)
    out = y.copy()
    out[0, :5] = 1.0  # half the frame blown out
    assert saturation_gain(y, out) == pytest.approx(0.5)
    assert saturation_gain(out, out) == 0.0


def test_a_restoration_that_fails_its_check_falls_back_to_the_input(tmp_path, capsys):
    """A 32-px kernel on a noisy 128x128 photo: the estimate is noise and the restoration
    blotches (measured: 0.28-0.57 of the frame newly clipped). The output is then the
    input, the kernel a delta, with a warning; --no-fallback keeps the restoration."""
    import warnings

    x = scene(159, 159, seed=3)
    y = simulate_photo(x, line_kernel(31, 0.7, 27), noise=0.04)
    yt = torch.from_numpy(2 * y - 1).float()
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        sol = deblur_photo(yt, kernel_size=31, workers=1)
    fb = sol.settings["photo"]["fallback"]
    assert fb is not None and fb["used"] == "input" and min(fb["saturation_gain"].values()) > 0.25
    assert any("input unchanged" in str(m.message) for m in w)
    assert torch.allclose(sol.image[0], yt.clamp(-1, 1), atol=1e-6)
    k = sol.params["kernel"][0, 0]
    assert k.sum() == 1 and k.max() == 1  # a delta
    with pytest.warns(RuntimeWarning, match="input unchanged"):  # one candidate: straight to the input
        single = deblur_photo(yt, kernel_size=31, workers=1, alt_floors=())
    assert single.settings["photo"]["fallback"]["used"] == "input" and single.settings["photo"]["choice"] is None
    kept = deblur_photo(yt, kernel_size=31, workers=1, fallback=False)
    assert kept.settings["photo"]["fallback"] is None and (kept.image[0] - yt).abs().max() > 0.5
    src = tmp_path / "p.png"
    Image.fromarray((y.transpose(1, 2, 0) * 255).round().astype(np.uint8)).save(src)
    with pytest.warns(RuntimeWarning, match="the output is the input unchanged"):
        assert main(["deblur", str(src), "--out", str(tmp_path / "o"), "--kernel-size", "31", "--pipeline", "photo",
                     "--threads", "1", "--quiet"]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["photo"]["fallback"]["used"] == "input"
