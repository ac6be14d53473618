"""blinddps.solve end to end on tiny random-weight priors, and a blind toy with
analytic priors whose kernel estimate must improve."""
from __future__ import annotations

import pytest
import torch

from blinddps import solve
from blinddps.diffusion import DiffusionSchedule
from blinddps.models.checkpoints import save_model
from blinddps.models.unet import create_model
from blinddps.operators import BlindBlur, gaussian_kernel
from blinddps.presets import PresetError, load_preset
from blinddps.priors import DiffusionPrior
from blinddps.priors.analytic import GaussianEpsModel, smooth_covariance
from blinddps.sampling import StepRule, Variable, sample
from blinddps.transforms import KernelSimplex

from _tiny import TINY  # noqa: E402


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("models")
    img = create_model(image_size=16, in_channels=3, **TINY)
    ker = create_model(image_size=8, grayscale=True, **TINY)
    return str(save_model(img, d / "img")), str(save_model(ker, d / "ker"))


def preset(models, kernel_size=8, steps=4):
    img, ker = models
    return {
        "name": "tiny",
        "operator": {"name": "blind_blur", "kernel_size": kernel_size},
        "steps": steps,
        "priors": {
            "image": {"model": img, "step": {"rule": "stride", "scale": 0.1}},
            "kernel": {"model": ker, "transform": "kernel_simplex", "step": {"rule": "stride", "scale": 0.05}},
        },
    }


def test_solve_shapes_kernel_simplex_and_settings(tiny_models):
    y = torch.rand(2, 3, 16, 24) * 2 - 1
    sol = solve(y, preset(tiny_models, kernel_size=8), seed=3)
    assert sol.image.shape == (2, 3, 16, 24)
    assert sol.image.abs().max() <= 1
    k = sol.params["kernel"]
    assert k.shape == (2, 1, 8, 8) and (k >= 0).all()
    torch.testing.assert_close(k.sum((1, 2, 3)), torch.ones(2))
    assert sol.settings["seed"] == 3 and sol.timings["steps"] == 4
    assert sol.residual_rms.shape == (2,)


def test_solve_pads_odd_sizes_and_handles_grayscale(tiny_models):
    y = torch.rand(1, 1, 13, 19) * 2 - 1  # odd sizes, 1 channel for a 3-channel prior
    sol = solve(y, preset(tiny_models), seed=0)
    assert sol.image.shape == (1, 1, 13, 19)


def test_solve_valid_mode_returns_measurement_frame(tiny_models):
    p = preset(tiny_models)
    p["operator"]["mode"] = "valid"
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    sol = solve(y, p, seed=0)
    assert sol.image.shape == (1, 3, 16, 16)


def test_batched_solve_equals_single_solves(tiny_models):
    y = torch.rand(2, 3, 16, 16) * 2 - 1
    both = solve(y, preset(tiny_models), seed=5)
    first = solve(y[:1], preset(tiny_models), seed=5)
    torch.testing.assert_close(both.image[:1], first.image, atol=1e-5, rtol=0)
    torch.testing.assert_close(both.params["kernel"][:1], first.params["kernel"], atol=1e-5, rtol=0)


def test_several_samples_give_mean_and_std(tiny_models):
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    sol = solve(y, preset(tiny_models), seed=1, num_samples=3)
    assert sol.samples.shape == (1, 3, 3, 16, 16)
    torch.testing.assert_close(sol.image, sol.samples.mean(1))
    assert sol.image_std.shape == (1, 3, 16, 16) and (sol.image_std > 0).any()
    # the kernel is the posterior mean too (still a kernel), each sample's kept
    ks = sol.param_samples["kernel"]
    assert ks.shape == (1, 3, 1, 8, 8) and not torch.allclose(ks[:, 0], ks[:, 1])
    torch.testing.assert_close(sol.params["kernel"], ks.mean(1))
    torch.testing.assert_close(sol.params["kernel"].sum((-2, -1)), torch.ones(1, 1))
    # sample j of a multi-sample run is not tied to the one-sample run, but sample 0 is
    one = solve(y, preset(tiny_models), seed=1)
    torch.testing.assert_close(one.params["kernel"], ks[:, 0], atol=1e-5, rtol=0)
    assert one.param_samples == {}
    # a preset may set its own sample count; the argument wins
    p = preset(tiny_models)
    p["num_samples"] = 3
    torch.testing.assert_close(solve(y, p, seed=1).image, sol.image)
    assert solve(y, p, seed=1, num_samples=1).samples is None
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="num_samples must be a positive int"):
            solve(y, preset(tiny_models), num_samples=bad)


def test_fixed_kernel_is_non_blind(tiny_models):
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    k = gaussian_kernel(8, 1.0).view(1, 1, 8, 8)
    sol = solve(y, preset(tiny_models), fixed={"kernel": k})
    assert torch.equal(sol.params["kernel"], k)


def test_overrides_and_bad_presets(tiny_models):
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    p = preset(tiny_models)
    p["priors"]["kernel"]["model"] = "flat"
    sol = solve(y, p, steps=2, operator={"kernel_size": 5})
    assert sol.params["kernel"].shape[-1] == 5 and sol.timings["steps"] == 2
    with pytest.raises(ValueError, match="window is 8x8 but the kernel is 9x9"):
        solve(y, preset(tiny_models), operator={"kernel_size": 9})
    with pytest.raises(PresetError, match="unknown preset"):
        load_preset("no_such_preset")
    bad = preset(tiny_models)
    bad["priors"]["kernel"]["step"] = {"rule": "bogus"}
    with pytest.raises(PresetError, match="step rule"):
        solve(y, bad)
    for step, msg in (({"rule": "stride", "sacle": 1.0}, "sacle"), ({"ref_size": 0}, "ref_size"),
                      ({"scale": "big"}, "big")):
        bad["priors"]["kernel"]["step"] = step
        with pytest.raises(PresetError, match=msg) as err:
            solve(y, bad)
        assert "\n" not in str(err.value)
    bad = preset(tiny_models)
    bad["priors"]["kernel"]["data_weight"] = 2
    with pytest.raises(PresetError, match=r"priors\.kernel\.data_weight: expected a number in \[0, 1\]"):
        solve(y, bad)


def test_shipped_presets_parse_and_name_shipped_models():
    from blinddps.models.checkpoints import list_shipped

    shipped = {p.stem for p in list_shipped()}
    for name in ("motion_deblur", "gaussian_deblur", "turbulence", "paper_motion_ffhq", "paper_gaussian_ffhq",
                 "paper_turbulence_ffhq"):
        cfg = load_preset(name)
        assert "image" in cfg["priors"] and cfg["operator"]["name"] in ("blind_blur", "turbulence")
        for spec in cfg["priors"].values():
            model = str(spec.get("model", "flat"))
            if model.startswith("shipped:"):
                assert model.split(":", 1)[1] in shipped, (name, model)
            StepRule(**spec.get("step", {}))  # every step mapping is a valid rule
    # the shipped-prior presets: guidance tuned at 128x128 and size-scaled, mean of 4
    for name in ("motion_deblur", "gaussian_deblur", "turbulence"):
        cfg = load_preset(name)
        assert cfg["num_samples"] == 4
        powers = {k: StepRule(**v["step"]).size_power for k, v in cfg["priors"].items()}
        assert powers["image"] == 0.5 and powers["kernel"] == -0.5 and powers.get("tilt", 0.5) == 0.5
    # motion: the EM-style least-squares kernel blend the motion tables measured
    assert load_preset("motion_deblur")["priors"]["kernel"]["data_weight"] == 0.3
    # the 1000-step variant differs from the default in its step count alone
    hq, base = load_preset("motion_deblur_hq"), load_preset("motion_deblur")
    assert hq["steps"] == 1000 and {k: v for k, v in hq.items() if k not in ("steps", "name", "description")} == \
        {k: v for k, v in base.items() if k not in ("steps", "name", "description")}


def test_a_preset_can_start_from_another(tmp_path):
    (tmp_path / "fast.yaml").write_text(
        "base: motion_deblur\nsteps: 50\npriors:\n  kernel: {data_weight: 0.1}\n")
    (tmp_path / "faster.yaml").write_text("base: fast.yaml\nnum_samples: 1\n")
    cfg, ref = load_preset(tmp_path / "faster.yaml"), load_preset("motion_deblur")
    assert cfg["name"] == "faster" and cfg["steps"] == 50 and cfg["num_samples"] == 1
    # a deep merge: the kernel prior keeps its model, transform and step rule
    assert cfg["priors"]["kernel"] == {**ref["priors"]["kernel"], "data_weight": 0.1}
    assert cfg["priors"]["image"] == ref["priors"]["image"] and cfg["operator"] == ref["operator"]
    assert "base" not in cfg and load_preset({"base": "motion_deblur", "steps": 7})["steps"] == 7
    (tmp_path / "loop_a.yaml").write_text("base: loop_b.yaml\n")
    (tmp_path / "loop_b.yaml").write_text("base: loop_a.yaml\n")
    with pytest.raises(PresetError, match="comes back to itself"):
        load_preset(tmp_path / "loop_a.yaml")
    (tmp_path / "orphan.yaml").write_text("base: no_such_preset\n")
    with pytest.raises(PresetError, match="unknown preset 'no_such_preset'"):
        load_preset(tmp_path / "orphan.yaml")
    (tmp_path / "odd.yaml").write_text("base: [motion_deblur]\n")
    with pytest.raises(PresetError, match="'base' must be"):
        load_preset(tmp_path / "odd.yaml")


def test_reference_mode_matches_default_on_batch_one(tiny_models):
    """Batch 1: the original's choices (spatial conv2d, batch norm) compute the same
    function as our FFT/per-sample path."""
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    ours = solve(y, preset(tiny_models), seed=2, result="update")
    ref = solve(y, preset(tiny_models), seed=2, reference=True)
    assert ref.settings["reference"] and ref.settings["config"]["operator"]["backend"] == "direct"
    torch.testing.assert_close(ours.image, ref.image, atol=1e-4, rtol=0)
    torch.testing.assert_close(ours.params["kernel"], ref.params["kernel"], atol=1e-4, rtol=0)


def test_runtime_options_keep_results(tiny_models):
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    base = solve(y, preset(tiny_models), seed=4)
    p = preset(tiny_models)
    p["runtime"] = {"channels_last": True, "gradient_checkpointing": True}
    fast = solve(y, p, seed=4)
    torch.testing.assert_close(base.image, fast.image, atol=1e-4, rtol=0)
    p["runtime"] = {"bogus": True}
    with pytest.raises(PresetError, match="runtime option"):
        solve(y, p)


@pytest.mark.parametrize("seed", [1, 2])
def test_blind_toy_kernel_error_falls_and_residual_reaches_noise(seed):
    """Parallel diffusions with analytic priors (exact ε-predictors): a textured image
    known up to a small smooth field, and a Gaussian kernel prior in diffusion space
    (the true kernel is one of its samples). The kernel estimate must end well below
    its starting error, and the residual near the noise level."""
    h = w = 16
    ks = 5
    sigma = 0.02
    g = torch.Generator().manual_seed(seed)
    mean_img = torch.rand(1, h, w, generator=g, dtype=torch.float64) - 0.5
    img_cov = smooth_covariance(h, w, length=1.0, variance=1e-3)
    tf = KernelSimplex()
    mean_k = torch.full((1, ks, ks), -0.3, dtype=torch.float64)
    k_cov = smooth_covariance(ks, ks, length=1.2, variance=0.25)
    x_true = mean_img.unsqueeze(0) + (torch.linalg.cholesky(img_cov) @ torch.randn(h * w, generator=g, dtype=torch.float64)).view(1, 1, h, w)
    kx = mean_k.flatten() + torch.linalg.cholesky(k_cov) @ torch.randn(ks * ks, generator=g, dtype=torch.float64)
    k_true = tf.to_physical(kx.view(1, 1, ks, ks).clamp(-1, 1))
    op = BlindBlur(ks)
    y = op.forward(x_true, kernel=k_true) + sigma * torch.randn(1, 1, h, w, generator=g, dtype=torch.float64)
    sched = DiffusionSchedule.create(100)
    errors = []
    res = sample(
        op, y,
        {"image": Variable(DiffusionPrior(GaussianEpsModel(mean_img, img_cov), sched), StepRule("stride", 0.1)),
         "kernel": Variable(DiffusionPrior(GaussianEpsModel(mean_k, k_cov), sched, tf), StepRule("stride", 0.3))},
        generator=torch.Generator().manual_seed(2),
        callback=lambda info: errors.append((tf.to_physical(info["x0"]["kernel"]) - k_true).norm().item()),
    )
    final = (res.estimates["kernel"] - k_true).norm().item()
    assert final < 0.4 * errors[0], (errors[0], final)
    assert res.residual_rms.item() < 1.25 * sigma


def test_kernel_floor_removes_background_haze():
    tf0, tf = KernelSimplex(), KernelSimplex(floor=0.05)
    x = torch.full((2, 1, 9, 9), -0.97)
    x[:, :, 4, 2:7] = 1.0  # a line on a faint haze
    k0, k = tf0.to_physical(x), tf.to_physical(x)
    torch.testing.assert_close(k.sum((1, 2, 3)), torch.ones(2))
    assert k0[:, :, 0, 0].min() > 0 and (k[:, :, 0, 0] == 0).all()
    line, line0 = k[:, 0, 4, 2:7].sum(-1), k0[:, 0, 4, 2:7].sum(-1)
    assert (line > 0.999).all() and (line0 < 0.85).all()
    with pytest.raises(ValueError):
        KernelSimplex(floor=1.0)


def test_image_sized_unknowns_come_back_in_the_measurement_frame(tiny_models, tmp_path):
    torch.manual_seed(1)
    tilt = create_model(image_size=16, twochan=True, **TINY)
    path = str(save_model(tilt, tmp_path / "tilt"))
    p = preset(tiny_models)
    p["operator"] = {"name": "turbulence", "kernel_size": 8, "mode": "valid"}
    p["priors"]["tilt"] = {"model": path, "transform": {"name": "scale", "scale": 2.5}}
    y = torch.rand(1, 3, 13, 21) * 2 - 1
    sol = solve(y, p, steps=2)
    assert sol.image.shape == (1, 3, 13, 21) and sol.params["tilt"].shape == (1, 2, 13, 21)


def test_per_measurement_seeds_make_batching_irrelevant(tiny_models):
    y = torch.rand(2, 3, 16, 16) * 2 - 1
    both = solve(y, preset(tiny_models), seed=[7, 7])
    second = solve(y[1:], preset(tiny_models), seed=7)
    torch.testing.assert_close(both.image[1:], second.image, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="2 measurements"):
        solve(y, preset(tiny_models), seed=[1])


def test_models_are_loaded_once_and_reloaded_when_the_file_changes(tiny_models, monkeypatch, tmp_path):
    import os
    import shutil

    from blinddps import presets

    img = tmp_path / "img.safetensors"
    shutil.copy(tiny_models[0], img)
    shutil.copy(tiny_models[0].replace(".safetensors", ".yaml"), tmp_path / "img.yaml")
    presets.clear_model_cache()
    calls = []
    real = presets.load_prior_model
    monkeypatch.setattr(presets, "load_prior_model", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    models = {"image": str(img), "kernel": tiny_models[1]}
    y = torch.rand(2, 3, 16, 16) * 2 - 1
    first = solve(y, steps=3, models=models, operator={"kernel_size": 8})
    again = solve(y, steps=3, models=models, operator={"kernel_size": 8})
    assert sorted(calls) == sorted([str(img), tiny_models[1]])  # the second solve read no file
    assert torch.equal(first.image, again.image)
    solve(y, steps=3, models=models, operator={"kernel_size": 8}, reference=True)  # batch 1 twice: no reload
    assert len(calls) == 2
    st = img.stat()
    os.utime(img, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # the file changed: read it again
    solve(y, steps=3, models=models, operator={"kernel_size": 8})
    assert calls.count(str(img)) == 2 and calls.count(tiny_models[1]) == 1
    presets.clear_model_cache()
