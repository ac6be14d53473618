"""Training: the hybrid loss, data sources, the trainer (resume, export) and the CLI.

Everything here uses tiny UNets and a handful of steps so the file runs in seconds.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from blinddps.diffusion.losses import (
    discretized_gaussian_log_likelihood,
    normal_kl,
    training_losses,
    vb_terms_bpd,
)
from blinddps.diffusion.schedule import DiffusionSchedule
from blinddps.models.checkpoints import load_saved_model, read_saved_config
from blinddps.models.unet import create_model
from blinddps.models.wrappers import DCPriorUNet, PixelUnshuffleUNet, estimate_dc_prior, load_saved, split_config
from blinddps.training.data import DataError, ImageFolderSource, KernelSource, TiltSource
from blinddps.training.trainer import TrainConfig, TrainConfigError, train

# tiny test networks have 32 top-level channels; the trainer warns about that (rightly)
pytestmark = pytest.mark.filterwarnings("ignore:GroupNorm32")

TINY = dict(
    image_size=8, num_channels=32, num_res_blocks=1, channel_mult="1,2", attention_resolutions="",
    use_scale_shift_norm=True, resblock_updown=True,
)


def tiny_model(channels=1, learn_sigma=True, seed=0):
    torch.manual_seed(seed)
    return create_model(**TINY, in_channels=channels, learn_sigma=learn_sigma)


def tiny_config(**over):
    cfg = dict(
        name="tiny", task="kernel", model=dict(TINY, learn_sigma=True),
        data=dict(size=8, kind="motion", intensity=0.5), batch_size=8, steps=6, lr=1e-3,
        warmup_steps=2, lr_schedule="constant", checkpoint_every=1000, sample_count=4, sample_steps=4,
        seed=3,
    )
    cfg.update(over)
    return cfg


@pytest.fixture(scope="module")
def schedule():
    return DiffusionSchedule.create()


# ----------------------------------------------------------------------------- losses
def test_normal_kl_closed_form():
    m1, m2 = torch.tensor([0.3, -1.0]), torch.tensor([0.3, 0.5])
    lv1, lv2 = torch.tensor([0.0, math.log(2.0)]), torch.tensor([0.0, math.log(0.5)])
    kl = normal_kl(m1, lv1, m2, lv2)
    assert kl[0].item() == pytest.approx(0.0, abs=1e-7)
    # KL(N(-1, 2) || N(0.5, 0.5)) = log(s2/s1) + (s1² + (m1-m2)²)/(2 s2²) - 1/2
    s1, s2 = math.sqrt(2.0), math.sqrt(0.5)
    expected = math.log(s2 / s1) + (s1**2 + 1.5**2) / (2 * s2**2) - 0.5
    assert kl[1].item() == pytest.approx(expected, rel=1e-5)


def test_discretized_gaussian_is_a_distribution_over_8bit_values():
    levels = torch.linspace(-1, 1, 256)
    for mean, log_scale in ((0.1, math.log(0.05)), (-0.9, math.log(0.3)), (0.0, math.log(1e-3))):
        ll = discretized_gaussian_log_likelihood(
            levels, means=torch.full_like(levels, mean), log_scales=torch.full_like(levels, log_scale)
        )
        assert torch.isfinite(ll).all()
        assert ll.exp().sum().item() == pytest.approx(1.0, abs=2e-3)


def test_hybrid_loss_is_the_mse_without_learned_sigma(schedule):
    model = tiny_model(learn_sigma=False)
    with torch.no_grad():  # make the output non-zero (the last conv is zero-initialised)
        model.out[-1].weight.normal_(0, 0.1)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(4, 1, 8, 8, generator=g) * 2 - 1
    idx = torch.tensor([0, 10, 500, 999])
    noise = torch.randn(x0.shape, generator=g)
    terms = training_losses(model, schedule, x0, idx, noise)
    assert set(terms) == {"loss", "mse"}
    eps = model(schedule.q_sample(x0, idx, noise), schedule.model_timesteps(idx))
    expected = ((noise - eps) ** 2).flatten(1).mean(1)
    torch.testing.assert_close(terms["loss"], expected)
    torch.testing.assert_close(terms["loss"], terms["mse"])
    dc = training_losses(model, schedule, x0, idx, noise, dc_weight=64.0)
    err_mean = (noise - eps).mean(dim=(1, 2, 3))
    torch.testing.assert_close(dc["dc"], err_mean**2)
    torch.testing.assert_close(dc["loss"], expected + 64.0 * err_mean**2)


def test_hybrid_loss_adds_a_finite_vb_term_that_trains_only_the_variance(schedule):
    model = tiny_model(learn_sigma=True)
    with torch.no_grad():
        model.out[-1].weight.normal_(0, 0.1)
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(6, 1, 8, 8, generator=g) * 2 - 1
    idx = torch.tensor([0, 1, 5, 100, 600, 999])
    noise = torch.randn(x0.shape, generator=g)
    terms = training_losses(model, schedule, x0, idx, noise)
    assert set(terms) == {"loss", "mse", "vb"}
    assert torch.isfinite(terms["vb"]).all() and (terms["vb"] >= -1e-4).all()
    torch.testing.assert_close(terms["loss"], terms["mse"] + terms["vb"])

    # stop-gradient: d vb / d eps = 0, d mse / d var_values = 0
    out = torch.randn(2, 2, 8, 8, requires_grad=True)
    t = training_losses(lambda x, t: out, schedule, x0[:2], idx[2:4], noise[:2])
    (g_vb,) = torch.autograd.grad(t["vb"].sum(), out, retain_graph=True)
    (g_mse,) = torch.autograd.grad(t["mse"].sum(), out)
    assert g_vb[:, :1].abs().max() == 0 and g_vb[:, 1:].abs().max() > 0
    assert g_mse[:, 1:].abs().max() == 0 and g_mse[:, :1].abs().max() > 0


def test_vb_term_decreases_when_the_variance_is_trained(schedule):
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(16, 1, 8, 8, generator=g) * 2 - 1
    idx = torch.randint(1, 20, (16,), generator=g)  # small t: β_t and β̃_t differ most
    noise = torch.randn(x0.shape, generator=g)
    x_t = schedule.q_sample(x0, idx, noise)
    eps = noise + 0.3 * torch.randn(x0.shape, generator=g)  # an imperfect, fixed ε̂
    v = torch.full((16, 1, 8, 8), -1.0, requires_grad=True)  # fixed-small variance to start
    opt = torch.optim.Adam([v], lr=0.1)
    history = []
    for _ in range(8):
        vb = vb_terms_bpd(schedule, x0, x_t, idx, eps, v).mean()
        assert torch.isfinite(vb)
        history.append(vb.item())
        opt.zero_grad()
        vb.backward()
        opt.step()
    assert history[-1] < 0.97 * history[0]
    assert all(b <= a + 1e-6 for a, b in zip(history, history[1:]))


def test_learned_range_matches_guided_diffusion_endpoints(schedule):
    idx = torch.tensor([5])
    like = torch.zeros(1, 1, 2, 2)
    hi = schedule.posterior_log_variance(idx, like, torch.ones_like(like))
    lo = schedule.posterior_log_variance(idx, like, -torch.ones_like(like))
    assert hi.flatten()[0].item() == pytest.approx(math.log(schedule.betas[5]))
    assert lo.flatten()[0].item() == pytest.approx(schedule.posterior_log_variance_clipped[5])


# ----------------------------------------------------------------------------- pixel unshuffle
def test_pixel_unshuffle_wrapper_is_the_same_diffusion(schedule):
    net = tiny_model(channels=3 * 4, learn_sigma=True)
    with torch.no_grad():
        net.out[-1].weight.normal_(0, 0.1)
    wrapped = PixelUnshuffleUNet(net, 2)
    assert wrapped.in_channels == 3 and wrapped.size_multiple == 4 and wrapped.learn_sigma
    assert list(wrapped.state_dict()) == list(net.state_dict())  # no prefix
    g = torch.Generator().manual_seed(4)
    x0 = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    noise = torch.randn(x0.shape, generator=g)
    idx = torch.tensor([0, 300, 999])
    full = training_losses(wrapped, schedule, x0, idx, noise)
    small = training_losses(net, schedule, F.pixel_unshuffle(x0, 2), idx, F.pixel_unshuffle(noise, 2))
    for k in ("mse", "vb", "loss"):
        torch.testing.assert_close(full[k], small[k], rtol=1e-5, atol=1e-6)
    out = wrapped(x0, schedule.model_timesteps(idx))
    assert out.shape == (3, 6, 16, 16)
    cfg, wrap = split_config(wrapped.config)
    assert wrap == {"pixel_unshuffle": 2} and "pixel_unshuffle" not in cfg


def test_dc_prior_wrapper_gives_the_gaussian_posterior_mean_of_the_noise_mean(schedule):
    net = tiny_model(channels=2, learn_sigma=True)
    with torch.no_grad():
        net.out[-1].weight.normal_(0, 0.1)
    g = torch.Generator().manual_seed(5)
    mu = torch.tensor([-0.9, 0.2], dtype=torch.float64)
    a = torch.randn(2, 2, generator=g, dtype=torch.float64) * 0.1
    cov = a @ a.T + 1e-3 * torch.eye(2, dtype=torch.float64)
    model = DCPriorUNet(net, mu, cov, torch.as_tensor(schedule.alphas_cumprod))
    x = torch.randn(3, 2, 8, 8, generator=g)
    t = torch.tensor([0, 400, 999])
    out, raw = model(x, t), net(x, t)
    assert out.shape == raw.shape
    torch.testing.assert_close(out[:, 2:], raw[:, 2:])  # variance channels untouched
    torch.testing.assert_close(out[:, :2] - out[:, :2].mean((2, 3), keepdim=True),
                               raw[:, :2] - raw[:, :2].mean((2, 3), keepdim=True))
    # E[e | x̄] for x̄ = √ᾱ d + √(1−ᾱ) e, d ~ N(μ, Σ), e ~ N(0, I/HW), by the matrix formula
    hw = 64
    for i, ti in enumerate(t.tolist()):
        ab = float(schedule.alphas_cumprod[ti])
        xbar = x[i].double().mean((1, 2))
        cov_e = torch.eye(2, dtype=torch.float64) / hw
        cov_x = ab * cov + (1 - ab) * cov_e
        expected = math.sqrt(1 - ab) * cov_e @ torch.linalg.solve(cov_x, xbar - math.sqrt(ab) * mu)
        torch.testing.assert_close(out[i, :2].double().mean((1, 2)), expected, rtol=1e-4, atol=1e-6)
    # the estimate from data
    d = torch.randn(4000, 2, generator=g, dtype=torch.float64) @ a.T + mu
    m, c = estimate_dc_prior(d[:, :, None, None].expand(-1, -1, 3, 3))
    torch.testing.assert_close(m, mu, atol=0.01, rtol=0)
    torch.testing.assert_close(c, a @ a.T, atol=2e-3, rtol=0)


# ----------------------------------------------------------------------------- data
def test_kernel_source_is_seeded_and_in_range():
    a = KernelSource(16, generator=5).sample(6)
    b = KernelSource(16, generator=5).sample(6)
    c = KernelSource(16, generator=6).sample(6)
    assert a.shape == (6, 1, 16, 16) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)
    assert a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a.flatten(1).amax(1), torch.ones(6))  # peak → +1
    g = KernelSource(16, kind="gaussian", std=(1.0, 3.0), generator=0).sample(4)
    assert g.min() >= -1 and g.max() <= 1 and g.shape == (4, 1, 16, 16)
    with pytest.raises(ValueError):
        KernelSource(16, kind="box")


def test_tilt_source_is_seeded_and_in_range():
    a = TiltSource(16, generator=1, method="fast").sample(3)
    b = TiltSource(16, generator=1, method="fast").sample(3)
    assert a.shape == (3, 2, 16, 16)
    torch.testing.assert_close(a, b)
    assert a.abs().max() <= 1.0 and a.std() > 0.1
    crops = TiltSource(16, map_size=48, generator=2, method="fast", num_patches=40).sample(4)
    assert crops.shape == (4, 2, 16, 16) and crops.abs().max() <= 1.0
    torch.testing.assert_close(crops, TiltSource(16, map_size=48, generator=2, method="fast", num_patches=40).sample(4))
    with pytest.raises(ValueError, match="smaller than the crop"):
        TiltSource(16, map_size=8)


def _write_images(folder: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (80, 120, 3), dtype=np.uint8)).save(folder / "a.png")
    Image.fromarray(rng.integers(0, 256, (100, 70, 3), dtype=np.uint8)).save(folder / "b.jpg")
    (folder / "notes.txt").write_text("not an image")


def test_image_folder_source_is_seeded_and_in_range(tmp_path):
    _write_images(tmp_path / "photos")
    src = ImageFolderSource(tmp_path / "photos", crop=16, scales=(0.5, 1.0), flips="both", generator=3)
    assert len(src.files) == 2
    a = src.sample(5)
    b = ImageFolderSource(tmp_path / "photos", crop=16, scales=(0.5, 1.0), flips="both", generator=3).sample(5)
    assert a.shape == (5, 3, 16, 16) and a.dtype == torch.float32
    torch.testing.assert_close(a, b)
    assert a.min() >= -1 and a.max() <= 1 and a.std() > 0.1
    gray = ImageFolderSource(tmp_path / "photos", crop=16, grayscale=True, generator=0).sample(2)
    assert gray.shape == (2, 1, 16, 16)


def test_image_folder_source_errors_clearly(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match="no PNG or JPEG images") as e:
        ImageFolderSource(tmp_path / "empty")
    assert "\n" not in str(e.value)
    with pytest.raises(DataError, match="does not exist"):
        ImageFolderSource(tmp_path / "missing")


# ----------------------------------------------------------------------------- trainer
def test_config_validation():
    with pytest.raises(TrainConfigError, match="unknown training config key"):
        TrainConfig.from_dict(tiny_config(lerning_rate=1))
    with pytest.raises(TrainConfigError, match="task"):
        TrainConfig.from_dict(tiny_config(task="video"))
    with pytest.raises(TrainConfigError, match="in_channels"):
        TrainConfig.from_dict(tiny_config(model=dict(TINY, in_channels=3))).unet_config()
    with pytest.warns(UserWarning, match="instance norm"):
        TrainConfig.from_dict(tiny_config())


def test_a_few_steps_lower_the_loss(tmp_path):
    res = train(tiny_config(steps=40, lr=2e-3, warmup_steps=5), tmp_path / "run", progress=False, export=False)
    assert res.step == 40 and res.finished
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    losses = state["losses"]
    assert len(losses) == 40 and torch.isfinite(losses).all()
    assert losses[-10:].mean() < 0.7 * losses[:5].mean()


def test_resume_continues_bit_identically(tmp_path):
    cfg = tiny_config(steps=4)
    train(cfg, tmp_path / "a", progress=False, export=False)
    state4 = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    assert state4["step"] == 4
    res = train(tiny_config(steps=7), tmp_path / "a", resume=True, progress=False, export=False)
    assert res.step == 7
    resumed = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)
    train(tiny_config(steps=7), tmp_path / "b", resume=False, progress=False, export=False)
    straight = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)
    assert torch.equal(resumed["losses"], straight["losses"])
    assert torch.equal(resumed["losses"][:4], state4["losses"])
    for k in straight["model"]:
        assert torch.equal(resumed["model"][k], straight["model"][k]), k
        assert torch.equal(resumed["ema"][k], straight["ema"][k]), k
    so, ro = straight["optimizer"]["state"], resumed["optimizer"]["state"]
    assert so.keys() == ro.keys()
    for i in so:
        for k in so[i]:
            assert torch.equal(torch.as_tensor(so[i][k]), torch.as_tensor(ro[i][k]))
    # a different model config refuses to resume
    with pytest.raises(TrainConfigError, match="different"):
        train(tiny_config(steps=8, model=dict(TINY, num_channels=64, learn_sigma=True)), tmp_path / "a",
              progress=False, export=False)


def test_time_budget_stops_cleanly(tmp_path):
    res = train(tiny_config(steps=10_000, max_minutes=1e-4), tmp_path / "t", progress=False, export=False)
    assert not res.finished and res.step < 10_000
    assert (tmp_path / "t" / "checkpoint.pt").is_file()


def test_export_then_load_gives_the_same_outputs(tmp_path):
    res = train(tiny_config(steps=3), tmp_path / "e", progress=False)
    assert res.weights == tmp_path / "e" / "tiny.safetensors"
    for name in ("tiny.yaml", "loss.png", "samples.png", "data.png"):
        assert (tmp_path / "e" / name).is_file(), name
    config, meta = read_saved_config(res.weights)
    assert meta["task"] == "kernel" and meta["steps"] == 3 and meta["transform"] == "kernel_simplex"
    assert math.isfinite(meta["final_loss"]) and meta["training"]["lr"] == 1e-3
    loaded = load_saved_model(res.weights)
    state = torch.load(tmp_path / "e" / "checkpoint.pt", weights_only=True)
    ema = create_model(**config)
    ema.load_state_dict(state["ema"])
    ema.eval()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 700])
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, t), ema(x, t), rtol=0, atol=0)


def test_export_with_pixel_unshuffle_and_dc_prior_is_applied_at_full_resolution(tmp_path):
    cfg = tiny_config(name="pu", steps=3, pixel_unshuffle=2, data=dict(size=16, kind="motion"), dc_prior=True,
                      dc_samples=64)
    res = train(cfg, tmp_path / "p", progress=False)
    config, meta = read_saved_config(res.weights)
    assert config["pixel_unshuffle"] == 2 and config["in_channels"] == 4 and config["dc_prior"] is True
    assert meta["dc_prior"] is True
    model = load_saved(res.weights)
    assert isinstance(model, PixelUnshuffleUNet) and isinstance(model.net, DCPriorUNet)
    state = torch.load(tmp_path / "p" / "checkpoint.pt", weights_only=True)
    torch.testing.assert_close(model.net.dc_mean, state["dc_prior"]["mean"])
    assert (state["dc_prior"]["mean"] < -0.5).all()  # kernels: mostly background at -1
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([3, 700])
    with torch.no_grad():
        out = model(x, t)
    assert out.shape == (2, 2, 16, 16)
    ema = create_model(**split_config(config)[0])
    ema.load_state_dict(state["ema"])
    ref = PixelUnshuffleUNet(DCPriorUNet(ema.eval(), state["dc_prior"]["mean"], state["dc_prior"]["cov"],
                                         torch.as_tensor(DiffusionSchedule.create().alphas_cumprod)), 2)
    with torch.no_grad():
        torch.testing.assert_close(ref(x, t), out, rtol=0, atol=0)
    # resuming keeps the stored prior
    res2 = train(dict(cfg, steps=4), tmp_path / "p", progress=False, export=False)
    assert res2.step == 4
    torch.testing.assert_close(torch.load(tmp_path / "p" / "checkpoint.pt", weights_only=True)["dc_prior"]["cov"],
                               state["dc_prior"]["cov"])
    try:  # once checkpoints.load_saved_model understands wrapper keys, it must agree
        other = load_saved_model(res.weights)
    except ValueError:
        return
    with torch.no_grad():
        torch.testing.assert_close(other(x, t), out)


# ----------------------------------------------------------------------------- CLI
def test_cli_trains_and_reports_errors(tmp_path, capsys):
    import yaml

    from blinddps.training.cli import add_train_subparser

    cfg_path = tmp_path / "tiny.yaml"
    cfg_path.write_text(yaml.safe_dump(tiny_config(steps=2)))
    parser = argparse.ArgumentParser(prog="blinddps")
    add_train_subparser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["train", "kernel", "--config", str(cfg_path), "--out", str(tmp_path / "o"),
                              "--steps", "3", "--no-progress"])
    assert args.func(args) == 0
    assert "finished at step 3" in capsys.readouterr().out
    args = parser.parse_args(["train", "image", "--config", str(cfg_path), "--out", str(tmp_path / "o")])
    assert args.func(args) == 2
    assert "trains a 'kernel' prior" in capsys.readouterr().err
    img_cfg = tmp_path / "img.yaml"
    img_cfg.write_text(yaml.safe_dump(tiny_config(task="image", data=dict(crop=8), model=dict(TINY))))
    (tmp_path / "nothing").mkdir()
    args = parser.parse_args(["train", "image", "--config", str(img_cfg), "--out", str(tmp_path / "i"),
                              "--data", str(tmp_path / "nothing")])
    assert args.func(args) == 2
    assert "no PNG or JPEG images" in capsys.readouterr().err
