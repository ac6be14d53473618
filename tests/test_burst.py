"""Turbulence bursts: the multi-frame operator, tilt registration, burst simulation, the
frame-batched prior, ``solve_burst`` and the command's ``--burst`` / ``--frames``."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from blinddps.burst import FramePrior, FrameTransform, as_burst, solve_burst
from blinddps.cli import main
from blinddps.io import encode_png, to_uint
from blinddps.models.unet import create_model
from blinddps.operators import conv_same, gaussian_kernel, tilt_warp
from blinddps.operators.burst import BurstTurbulence, frame_mean_zero, register_tilts
from blinddps.priors import DiffusionPrior
from blinddps.diffusion import DiffusionSchedule
from blinddps.simulate import tilt_maps, turbulence_burst
from blinddps.transforms import KernelSimplex

sys.path.insert(0, str(Path(__file__).parent))
from _tiny import TINY, save_tiny_priors  # noqa: E402


def _scene(h: int = 32, w: int = 32, seed: int = 0) -> torch.Tensor:
    """A smooth random colour scene (1, 3, h, w) in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    return conv_same(x, gaussian_kernel(7, 1.5).view(1, 1, 7, 7)).clamp(-1, 1) * 2


# ----------------------------------------------------------------------------- operator
def test_forward_is_each_frame_through_the_single_frame_model():
    x = _scene()
    k = gaussian_kernel(5, 1.0).view(1, 1, 5, 5)
    t = tilt_maps(3, 32, 32, generator=1, num_patches=20, patch_size=16)
    op = BurstTurbulence(3, kernel_size=5)
    y = op(x, kernel=k, tilt=t[None])
    assert y.shape == (1, 3, 3, 32, 32)
    for f in range(3):
        ref = conv_same(tilt_warp(x, t[f : f + 1]), k)
        assert torch.allclose(y[0, f], ref[0], atol=1e-6)
    assert op.image_shape((3, 3, 32, 32)) == (3, 32, 32)
    assert op.unknown_shapes((3, 32, 32)) == {"kernel": (1, 5, 5), "tilt": (3, 2, 32, 32)}
    assert op.residual_groups == 3 and op.frame_unknowns == ("tilt",)


def test_adjoint_is_exact():
    g = torch.Generator().manual_seed(3)
    op = BurstTurbulence(2, kernel_size=5)
    x = torch.randn(2, 3, 16, 16, generator=g, dtype=torch.float64)
    r = torch.randn(2, 2, 3, 16, 16, generator=g, dtype=torch.float64)
    k = torch.rand(2, 1, 5, 5, generator=g, dtype=torch.float64)
    t = torch.randn(2, 2, 2, 16, 16, generator=g, dtype=torch.float64)
    lhs = (op.forward(x, kernel=k, tilt=t) * r).sum()
    rhs = (x * op.adjoint(r, kernel=k, tilt=t)).sum()
    assert torch.allclose(lhs, rhs, rtol=1e-10)


def test_bad_burst_shapes_are_one_line_errors():
    op = BurstTurbulence(3, kernel_size=5)
    with pytest.raises(ValueError, match=r"\(3, C, H, W\)"):
        op.image_shape((2, 3, 16, 16))
    with pytest.raises(ValueError, match="frames must be a positive int"):
        BurstTurbulence(0)
    with pytest.raises(ValueError, match="unknown register setting"):
        BurstTurbulence(2, register={"wieght": 1.0})
    with pytest.raises(ValueError, match="a burst is"):
        as_burst(torch.zeros(2, 2, 2, 3, 8, 8) - 0.5)


# ----------------------------------------------------------------------------- registration
def test_registration_recovers_a_smooth_shift_and_lowers_the_residual():
    x = _scene(48, 48)
    k = gaussian_kernel(5, 1.0).view(1, 1, 5, 5)
    t = torch.zeros(2, 2, 48, 48)
    t[0, 0], t[1, 1] = 0.8, -0.6  # frame 0 shifted in x, frame 1 in y
    y = conv_same(tilt_warp(x.expand(2, -1, -1, -1), t), k)
    est = register_tilts(y, x, k, weight=1e-4, smooth=1e-2, gn_steps=4, cg_iters=20)
    inner = (slice(None), slice(None), slice(8, -8), slice(8, -8))  # zero padding at the borders
    assert (est - t)[inner].abs().mean() < 0.05
    before = (y - conv_same(x, k)).pow(2).mean()
    after = (y - conv_same(tilt_warp(x.expand(2, -1, -1, -1), est), k)).pow(2).mean()
    assert after < 0.02 * before


def test_zero_mean_gauge_and_a_single_frame_estimates_zero():
    t = torch.randn(2, 4, 2, 8, 8)
    assert frame_mean_zero(t).mean(1).abs().max() < 1e-6
    op = BurstTurbulence(1, kernel_size=3)
    y = torch.randn(1, 1, 3, 8, 8)
    est = op.estimate("tilt", torch.randn(1, 3, 8, 8), y, {"kernel": torch.ones(1, 1, 3, 3) / 9,
                                                          "tilt": torch.ones(1, 1, 2, 8, 8)})
    assert est.shape == (1, 1, 2, 8, 8) and est.abs().max() == 0


# ----------------------------------------------------------------------------- simulation
def test_burst_simulation_is_seeded_and_frames_have_their_own_tilt():
    x = _scene(32, 32)[0]
    k = gaussian_kernel(5, 1.0).view(1, 1, 5, 5)
    y1, t1 = turbulence_burst(x, 4, k, 0.02, generator=7, num_patches=30, patch_size=16)
    y2, t2 = turbulence_burst(x, 4, k, 0.02, generator=7, num_patches=30, patch_size=16)
    assert torch.equal(y1, y2) and torch.equal(t1, t2)
    assert y1.shape == (4, 3, 32, 32) and t1.shape == (4, 2, 32, 32)
    assert t1.abs().max() <= 2.5
    corr = np.corrcoef(t1[0].flatten().numpy(), t1[1].flatten().numpy())[0, 1]
    assert abs(corr) < 0.5  # independent maps
    clean = conv_same(tilt_warp(x[None].expand(4, -1, -1, -1), t1), k)
    assert abs(float((y1 - clean).std()) - 0.02) < 0.003


# ----------------------------------------------------------------------------- frame prior
def test_frame_transform_normalises_each_frame_kernel():
    x = torch.rand(2, 3, 1, 5, 5) * 2 - 1
    k = FrameTransform(KernelSimplex()).to_physical(x)
    assert torch.allclose(k.sum((-1, -2, -3)), torch.ones(2, 3), atol=1e-6)


def test_frame_prior_is_the_inner_prior_on_the_folded_batch():
    torch.manual_seed(0)
    net = create_model(image_size=16, in_channels=2, **TINY)
    inner = DiffusionPrior(net, DiffusionSchedule.create(4))
    fp = FramePrior(inner)
    x = torch.randn(2, 3, 2, 16, 16)
    idx = torch.tensor([3, 1])
    out = fp.denoise(x, idx)
    ref = inner.denoise(x.reshape(6, 2, 16, 16), idx.repeat_interleave(3))
    assert torch.allclose(out.x0.reshape(6, 2, 16, 16), ref.x0, atol=1e-6)
    z = torch.randn_like(x)
    nxt = fp.propose(out, x, idx, z)
    assert torch.allclose(nxt.reshape(6, 2, 16, 16), inner.propose(ref, x.reshape(6, 2, 16, 16),
                                                                    idx.repeat_interleave(3), z.reshape(6, 2, 16, 16)),
                          atol=1e-6)


# ----------------------------------------------------------------------------- solve_burst and the CLI
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("tinyburst")
    img, ker, tilt = save_tiny_priors(d)
    preset = {
        "name": "tinyburst", "steps": 3,
        "operator": {"name": "turbulence_burst", "kernel_size": 8, "tilt_scale": 2.5,
                     "register": {"gn_steps": 1, "cg_iters": 3}},
        "priors": {
            "image": {"model": str(img), "step": {"rule": "stride", "scale": 0.1}},
            "kernel": {"model": str(ker), "transform": "kernel_simplex", "step": {"rule": "stride", "scale": 0.05}},
            "tilt": {"model": "flat", "transform": {"name": "scale", "scale": 2.5}, "data_weight": 1.0,
                     "step": {"rule": "constant", "scale": 0.0}},
        },
    }
    (d / "tinyburst.yaml").write_text(yaml.safe_dump(preset))
    prior_tilt = yaml.safe_load(yaml.safe_dump(preset))
    prior_tilt["priors"]["tilt"] = {"model": str(tilt), "transform": {"name": "scale", "scale": 2.5},
                                    "step": {"rule": "stride", "scale": 0.05}}
    (d / "tinyburst_prior.yaml").write_text(yaml.safe_dump(prior_tilt))
    return {"dir": d, "preset": str(d / "tinyburst.yaml"), "prior": str(d / "tinyburst_prior.yaml")}


def _frames(n: int = 3, size: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    x = _scene(size, size)[0].clamp(-0.9, 0.9)
    return turbulence_burst(x, n, gaussian_kernel(5, 1.0).view(1, 1, 5, 5), 0.02, generator=0,
                            num_patches=10, patch_size=8)


def test_solve_burst_shapes_seed_and_zero_mean(tiny):
    y, _ = _frames(3)
    a = solve_burst(y, tiny["preset"], seed=1)
    b = solve_burst(y, tiny["preset"], seed=1)
    assert a.image.shape == (1, 3, 16, 16) and a.params["tilt"].shape == (1, 3, 2, 16, 16)
    assert a.params["kernel"].shape == (1, 1, 8, 8)
    assert torch.equal(a.image, b.image) and torch.equal(a.params["tilt"], b.params["tilt"])
    assert a.params["tilt"].abs().max() > 0  # registered
    assert a.params["tilt"].mean(1).abs().max() < 1e-5
    assert a.settings["frames"] == 3 and a.timings["per_frame_s"] > 0
    one = solve_burst(y[:1], tiny["preset"], seed=1)  # one frame: no tilt to find
    assert one.params["tilt"].abs().max() == 0


def test_solve_burst_with_the_tilt_prior_over_frames_and_odd_sizes(tiny):
    y, _ = _frames(2, 12)  # padded to the UNet's multiple, cropped back
    sol = solve_burst(y, tiny["prior"], num_samples=2)
    assert sol.image.shape == (1, 3, 12, 12) and sol.params["tilt"].shape == (1, 2, 2, 12, 12)
    assert sol.samples.shape == (1, 2, 3, 12, 12)


def test_solve_burst_refuses_a_single_frame_preset(tiny):
    from blinddps.presets import PresetError

    y, _ = _frames(2)
    with pytest.raises(PresetError, match="turbulence_burst preset"):
        solve_burst(y, "motion_deblur")


def _run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_cli_simulate_then_restore_a_burst(tiny, tmp_path, capsys):
    x = (_scene(16, 16)[0].clamp(-1, 1) + 1) / 2
    (tmp_path / "sharp.png").write_bytes(encode_png(to_uint(x * 2 - 1, 8)))
    rc, out, err = _run(["simulate", tmp_path / "sharp.png", "--out", tmp_path / "sim", "--turbulence",
                         "--frames", "3", "--kernel-size", "5", "--std", "1.0"], capsys)
    assert rc == 0, err
    sim = tmp_path / "sim"
    frames = sorted((sim / "frames").glob("frame_*.png"))
    assert len(frames) == 3 and np.load(sim / "tilt.npy").shape == (3, 2, 16, 16)
    s = json.loads((sim / "summary.json").read_text())
    assert s["frames"] == 3 and len(s["outputs"]["frames"]) == 3

    rc, out, err = _run(["turbulence", sim / "frames", "--out", tmp_path / "r", "--burst", "--preset",
                         tiny["preset"], "--quiet"], capsys)
    assert rc == 0, err
    r = tmp_path / "r"
    assert (r / "restored.png").is_file() and np.load(r / "tilt.npy").shape == (3, 2, 16, 16)
    s = json.loads((r / "summary.json").read_text())
    assert s["num_frames"] == 3 and s["command"] == "turbulence-burst"
    rc, out, err = _run(["turbulence", "--frames", str(sim / "frames" / "*.png"), "--out", r, "--preset",
                         tiny["preset"], "--quiet"], capsys)
    assert rc == 0 and "skipped" in out  # resume: the same frames and settings


def test_cli_burst_bad_inputs_are_one_line_errors(tiny, tmp_path, capsys):
    (tmp_path / "a.png").write_bytes(encode_png(np.zeros((16, 16, 3), np.uint8)))
    (tmp_path / "b.png").write_bytes(encode_png(np.zeros((20, 16, 3), np.uint8)))
    for argv in (["turbulence", tmp_path / "a.png", tmp_path / "b.png", "--burst"],
                 ["turbulence", "--frames", str(tmp_path / "none*.png")],
                 ["turbulence", tmp_path / "a.png", "--burst", "--preset", "motion_deblur"]):
        rc, out, err = _run([*argv, "--out", tmp_path / "o", "--preset", tiny["preset"]]
                            if "--preset" not in argv else [*argv, "--out", tmp_path / "o"], capsys)
        lines = [ln for ln in err.splitlines() if ln.strip()]
        assert rc == 2 and len(lines) == 1 and "Traceback" not in err, err
    rc, out, err = _run(["simulate", tmp_path / "a.png", "--out", tmp_path / "s", "--blur", "motion",
                         "--frames", "2"], capsys)
    assert rc == 2 and "--blur turbulence" in err


def test_image_proximal_solves_the_mean_frame_normal_equations():
    torch.manual_seed(0)
    x = _scene(16, 16)
    k = gaussian_kernel(5, 1.0).view(1, 1, 5, 5)
    t = tilt_maps(2, 16, 16, generator=2, num_patches=10, patch_size=8)[None]
    op = BurstTurbulence(2, kernel_size=5)
    y = op.forward(x, kernel=k, tilt=t) + 0.02 * torch.randn(1, 2, 3, 16, 16)
    v = torch.zeros_like(x)
    rho = 0.05

    def objective(u):
        return 0.5 * (y - op.forward(u, kernel=k, tilt=t)).pow(2).flatten(2).sum(2).mean() + 0.5 * rho * (u - v).pow(2).sum()

    few = op.proximal("image", v, y, {"kernel": k, "tilt": t}, rho, 4)
    many = op.proximal("image", v, y, {"kernel": k, "tilt": t}, rho, 60)
    assert objective(few) < 0.2 * objective(v)
    # the minimiser: gradient (AᵀA/N + ρ)u − (Aᵀy/N + ρv) vanishes
    g = op.adjoint(op.forward(many, kernel=k, tilt=t) - y, kernel=k, tilt=t) / 2 + rho * (many - v)
    assert g.abs().max() < 1e-4


def test_fast_burst_preset_runs_and_is_seeded(tiny):
    y, _ = _frames(3)
    fast = yaml.safe_load(Path(tiny["preset"]).read_text())
    fast.update(solver="proximal", proximal={"lam": {"image": [7, 1], "kernel": 0.0}, "blend": {"kernel": 0.5},
                                             "iters": {"image": 2, "kernel": 3}, "order": ["kernel", "image", "tilt"],
                                             "guide": ["kernel"]})
    a = solve_burst(y, fast, seed=2)
    b = solve_burst(y, fast, seed=2)
    assert torch.equal(a.image, b.image) and a.params["tilt"].shape == (1, 3, 2, 16, 16)
    assert a.params["tilt"].abs().max() > 0 and a.params["tilt"].mean(1).abs().max() < 1e-5


def test_final_registration_gives_the_tilt_output_of_held_tilts(tiny):
    y, t = _frames(3)
    held = yaml.safe_load(Path(tiny["preset"]).read_text())
    held["priors"]["tilt"]["data_weight"] = 0.0
    none = solve_burst(y, held, seed=0)
    assert none.params["tilt"].abs().max() == 0  # held at zero throughout
    held["operator"]["final_register"] = 3
    after = solve_burst(y, held, seed=0)
    assert torch.equal(after.image, none.image)  # the image does not see the final registration
    assert after.params["tilt"].abs().max() > 0 and after.params["tilt"].mean(1).abs().max() < 1e-5
    with pytest.raises(ValueError, match="final_register"):
        BurstTurbulence(2, final_register=-1)


def test_per_frame_kernels_run_through_the_kernel_prior_frame_by_frame(tiny):
    y, _ = _frames(2)
    cfg = yaml.safe_load(Path(tiny["preset"]).read_text())
    cfg["operator"]["per_frame_kernel"] = True
    sol = solve_burst(y, cfg, seed=0)
    k = sol.params["kernel"]
    assert k.shape == (1, 2, 1, 8, 8) and torch.allclose(k.sum((-1, -2, -3)), torch.ones(1, 2), atol=1e-5)
    assert not torch.allclose(k[0, 0], k[0, 1])  # one kernel per frame
