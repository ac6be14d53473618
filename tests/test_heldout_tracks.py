"""Held-out measurement: real-border ('scene') degradations, kernel families, tracks side
by side, and the Levin et al. 2009 benchmark's scoring."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from blinddps.evaluation import runner as R
from blinddps.evaluation.cli import add_evaluate_subparser, load_eval_config, run_evaluate
from blinddps.evaluation.levin import benchmarks_dir, levin_kernels, ssd_upto_shift
from blinddps.evaluation.levin_runner import levin_report
from blinddps.evaluation.tracks import evaluate_tracks, track_label
from blinddps.operators import BlindBlur, conv_valid

HAVE_LEVIN = benchmarks_dir() is not None and (benchmarks_dir() / "levin.npz").is_file()


def _parse(argv):
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command")
    add_evaluate_subparser(sub)
    return p.parse_args([str(a) for a in argv])


def test_scene_border_is_the_valid_model_of_a_larger_scene():
    g = torch.Generator().manual_seed(0)
    scene = torch.rand(1, 3, 40, 40, generator=g) * 2 - 1
    y, k, _ = R.degrade(scene, "img", "motion", 9, noise=0.0, seed=1, kernels="shake", border="scene")
    assert y.shape == (1, 3, 32, 32)
    assert torch.allclose(y, conv_valid(scene, k), atol=1e-5)
    # the scored frame is where BlindBlur('valid') puts the measurement inside its image
    frame = R.scene_crop(scene, 9)
    assert frame.shape == y.shape
    off = BlindBlur(9, mode="valid").image_offset()
    assert torch.equal(frame, scene[..., off[0] : off[0] + 32, off[1] : off[1] + 32])
    # a delta kernel reproduces the frame exactly
    delta = torch.zeros(1, 1, 9, 9)
    delta[..., 4, 4] = 1
    assert torch.allclose(conv_valid(scene, delta), frame, atol=1e-6)
    # zero border: the old protocol, unchanged
    y0, k0, _ = R.degrade(scene, "img", "motion", 9, noise=0.0, seed=1)
    assert y0.shape == scene.shape and not torch.equal(k0, k)
    with pytest.raises(ValueError, match="unknown border"):
        R.degrade(scene, "img", border="mirror")
    with pytest.raises(ValueError, match="unknown kernel family"):
        R.degrade(scene, "img", kernel_size=9, kernels="nope")


def test_centre_in_window_moves_the_centroid_to_the_centre():
    k = np.zeros((5, 5))
    k[0, 0], k[0, 4] = 0.5, 0.5  # centroid (0, 2)
    w = R.centre_in_window(k, 9)
    assert w.shape == (9, 9) and abs(w.sum() - 1) < 1e-12
    rows, cols = np.indices(w.shape)
    assert abs((rows * w).sum() - 4) <= 0.5 and abs((cols * w).sum() - 4) <= 0.5
    with pytest.raises(ValueError, match="does not fit"):
        R.centre_in_window(np.ones((11, 11)) / 121, 9)


def test_ssd_upto_shift_finds_a_subpixel_shift():
    g = np.random.default_rng(0)
    from scipy.ndimage import gaussian_filter, shift

    gt = gaussian_filter(g.random((80, 80)), 2.0)
    moved = shift(gt, (1.5, -2.25), order=1, mode="nearest")
    ssd, (dy, dx) = ssd_upto_shift(moved, gt, crop=15, max_shift=5)
    unshifted = ssd_upto_shift(moved, gt, crop=15, max_shift=0)[0]
    assert (dy, dx) == (1.5, -2.25) and ssd < 0.05 * unshifted
    exact, at = ssd_upto_shift(np.roll(gt, (2, -3), axis=(0, 1)), gt, crop=15)
    assert at == (2.0, -3.0) and exact < 1e-20
    far, _ = ssd_upto_shift(shift(gt, (0, 0), order=1), gt[::-1].copy(), crop=15)
    assert far > 1.0
    with pytest.raises(ValueError, match="two 2-D images"):
        ssd_upto_shift(gt, gt[:-1])


def test_levin_report_ratios_and_success_counts():
    rows = []
    for n, (tv, l0, l0tv) in {"im1_k1": (10.0, 15.0, 30.0), "im2_k1": (20.0, 50.0, 30.0)}.items():
        rows.append({"image": n, "method": "tv_true", "ssd": tv, "psnr": 10 * np.log10(225**2 / tv),
                     "kernel_mnc": np.nan, "tv_ssd": np.nan, "seconds": 1.0})
        rows.append({"image": n, "method": "l0_blind", "ssd": l0, "psnr": 10 * np.log10(225**2 / l0),
                     "kernel_mnc": 0.8, "tv_ssd": l0tv, "seconds": 2.0})
    text, stats = levin_report(rows, ["tv_true", "l0_blind"])
    s = stats["l0_blind"]
    assert s["error_ratio"] == pytest.approx((1.5 + 2.5) / 2) and s["ratio_le2"] == 1
    assert s["kernel_ratio"] == pytest.approx((3.0 + 1.5) / 2) and s["kernel_ratio_le2"] == 1
    assert "| L0 blind" in text and "k1" in text


def test_tracks_run_side_by_side_and_cli_selects(tmp_path, capsys):
    from scipy.ndimage import gaussian_filter

    g = np.random.default_rng(1)
    smooth = [np.clip(gaussian_filter(g.random((3, 40, 40)), (0, 2, 2)) * 6 - 3, -1, 1) for _ in range(2)]
    imgs = {"a": torch.tensor(smooth[0], dtype=torch.float32), "b": torch.tensor(smooth[1], dtype=torch.float32)}
    tracks = [{"border": "scene", "kernels": "shake"}, {"border": "zero", "kernels": "trajectory"}]
    res = evaluate_tracks(tracks, tmp_path / "t", images=imgs, size=32, kernel_size=9,
                          methods=["blurry", "tv_true"], progress=False, grid=False)
    assert set(res.results) == {"scene-shake", "zero-trajectory"}
    scene = res.results["scene-shake"]
    assert json.loads((tmp_path / "t" / "scene-shake" / "run.json").read_text())["border"] == "scene"
    # the scene track scores the 32x32 frame of the 40x40 scene
    inputs = np.load(tmp_path / "t" / "scene-shake" / "outputs" / "a" / "inputs.npz")
    assert inputs["x"].shape == (3, 32, 32) and inputs["y"].shape == (3, 32, 32)
    assert "zero-padded, trajectory kernels" in res.table and "real borders, shake kernels" in res.table
    assert scene.means["tv_true"]["psnr_aligned"] > scene.means["blurry"]["psnr_aligned"]
    assert track_label({"name": "x"}) == "x"
    with pytest.raises(ValueError, match="two tracks"):
        evaluate_tracks([tracks[0], tracks[0]], tmp_path / "u", images=imgs)
    # the shipped config: the headline track first; the CLI runs a chosen track only
    cfg = load_eval_config("heldout128")
    assert track_label(cfg["tracks"][0]) == "scene-shake"
    yml = tmp_path / "tr.yaml"
    yml.write_text("images: astronaut\nsize: 32\nkernel_size: 7\nmethods: [blurry]\n"
                   "tracks: [{border: scene, kernels: shake}, {border: zero, kernels: shake}]\n")
    assert run_evaluate(_parse(["evaluate", "--config", yml, "--tracks", "zero-shake", "--out", tmp_path / "c",
                                "--quiet", "--no-grid"])) == 0
    assert (tmp_path / "c" / "zero-shake" / "results.csv").is_file() and not (tmp_path / "c" / "scene-shake").exists()
    # a --kernels flag applies to every track of the config
    assert run_evaluate(_parse(["evaluate", "--config", yml, "--kernels", "trajectory", "--out", tmp_path / "e",
                                "--quiet", "--no-grid"])) == 0
    for lab in ("scene-trajectory", "zero-trajectory"):
        assert "kernels" not in json.loads((tmp_path / "e" / lab / "run.json").read_text())
    with pytest.raises(ValueError, match="unknown track"):
        run_evaluate(_parse(["evaluate", "--config", yml, "--tracks", "nope", "--out", tmp_path / "d"]))


@pytest.mark.skipif(not HAVE_LEVIN, reason="shared/benchmarks/levin.npz not present")
def test_levin_data_and_baseline_rows(tmp_path, capsys):
    ks = levin_kernels()
    assert [k.shape[0] for k in ks] == [19, 17, 15, 27, 13, 21, 23, 23]
    assert all(abs(k.sum() - 1) < 1e-9 for k in ks)
    assert run_evaluate(_parse(["evaluate", "--config", "levin", "--methods", "blurry,tv_true", "--limit", "1",
                                "--out", tmp_path / "lv", "--quiet"])) == 0
    out = capsys.readouterr().out
    # the blurry im1_k1 under Levin's protocol: SSD 216.6, 23.69 dB (measured once by hand)
    assert "| blurry input | 1 | 23.69 |" in out
    summ = json.loads((tmp_path / "lv" / "summary.json").read_text())
    assert summ["images"] == ["im1_k1"] and summ["stats"]["tv_true"]["psnr"] > 30


def test_blind_methods_estimate_the_problem_s_kernel_size():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    y, k, _ = R.degrade(x, "img", "motion", 9, noise=0.0, seed=1)
    p = R.Problem("img", x, y, k, None, 0, {}, estimate_size=7)
    assert p.blind_kernel_size == 7 and R.Problem("img", x, y, k, None, 0, {}).blind_kernel_size == 9
    assert R.METHOD_FUNCS["l0_blind"](p, {}).kernel.shape == (1, 1, 7, 7)
