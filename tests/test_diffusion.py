"""Noise schedules and diffusion formulas, against the original's arrays."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from blinddps.diffusion import DiffusionSchedule, cosine_betas, space_timesteps

FIXTURES = Path(os.environ.get("BLINDDPS_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "official"))
ARRAYS = [
    "betas",
    "alphas_cumprod",
    "posterior_variance",
    "posterior_log_variance_clipped",
    "posterior_mean_coef1",
    "posterior_mean_coef2",
]


@pytest.fixture(scope="module")
def official_schedule():
    path = FIXTURES / "schedule_linear1000.pt"
    if not path.exists():
        pytest.skip(f"fixture {path} not present")
    return torch.load(path, weights_only=False)


@pytest.mark.parametrize("steps", ["1000", "100", "50"])
def test_official_schedule_matches(official_schedule, steps):
    ref = official_schedule[steps]
    ours = DiffusionSchedule.create(int(steps))
    np.testing.assert_array_equal(ours.timestep_map, ref["timestep_map"].numpy())
    for name in ARRAYS:
        np.testing.assert_allclose(getattr(ours, name), ref[name].numpy(), rtol=0, atol=1e-12, err_msg=name)


def test_space_timesteps_sections_and_ddim():
    assert space_timesteps(100, "10") == set(range(0, 100, 11))
    steps = sorted(space_timesteps(1000, "ddim50"))
    assert steps == list(range(0, 1000, 20))
    # guided-diffusion's docstring example: 300 steps, sections 10,15,20
    s = sorted(space_timesteps(300, [10, 15, 20]))
    assert len(s) == 45 and s[:2] == [0, 11] and s[9] == 99 and s[10] == 100 and s[-1] == 299
    with pytest.raises(ValueError):
        space_timesteps(10, [20])
    with pytest.raises(ValueError):
        space_timesteps(1000, "ddim999")


def test_respaced_schedule_keeps_alpha_bar():
    full = DiffusionSchedule.create(None)
    for steps in (250, 25, "ddim10"):
        sp = DiffusionSchedule.create(steps)
        np.testing.assert_allclose(sp.alphas_cumprod, full.alphas_cumprod[sp.timestep_map], rtol=1e-12)


def test_cosine_schedule_properties():
    b = cosine_betas(1000)
    assert b.shape == (1000,) and (b > 0).all() and b.max() <= 0.999
    ac = np.cumprod(1 - b)
    assert ac[0] > 0.9999 and ac[-1] < 1e-4
    with pytest.raises(ValueError):
        DiffusionSchedule.create(noise_schedule="quadratic")


def test_tweedie_inverts_q_sample():
    sched = DiffusionSchedule.create(100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 2, 5, 5, generator=g, dtype=torch.float64) * 2 - 1
    noise = torch.randn(3, 2, 5, 5, generator=g, dtype=torch.float64)
    idx = torch.tensor([0, 50, 99])
    xt = sched.q_sample(x0, idx, noise)
    torch.testing.assert_close(sched.predict_x0(xt, idx, noise), x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(sched.predict_eps(xt, idx, x0), noise, rtol=0, atol=1e-8)


def test_posterior_mean_is_gaussian_conditional():
    """μ̃ and β̃ must be the exact moments of q(x_{t-1} | x_t, x_0): check by Monte Carlo."""
    sched = DiffusionSchedule.create(20)
    i = 7
    ac, ac_prev, beta = sched.alphas_cumprod[i], sched.alphas_cumprod_prev[i], sched.betas[i]
    g = torch.Generator().manual_seed(1)
    n = 400_000
    x0 = torch.full((n, 1), 0.3, dtype=torch.float64)
    x_prev = np.sqrt(ac_prev) * x0 + np.sqrt(1 - ac_prev) * torch.randn(n, 1, generator=g, dtype=torch.float64)
    x_t = np.sqrt(1 - beta) * x_prev + np.sqrt(beta) * torch.randn(n, 1, generator=g, dtype=torch.float64)
    # regress x_prev on x_t: slope/intercept/residual variance are the posterior's
    A = torch.cat([x_t, torch.ones_like(x_t)], 1)
    coef = torch.linalg.lstsq(A, x_prev).solution.squeeze()
    resid = (x_prev - A @ coef.unsqueeze(1)).var().item()
    assert abs(coef[0].item() - sched.posterior_mean_coef2[i]) < 5e-3
    assert abs(coef[1].item() - sched.posterior_mean_coef1[i] * 0.3) < 5e-3
    assert abs(resid - sched.posterior_variance[i]) / sched.posterior_variance[i] < 1e-2


def test_learned_range_variance_endpoints():
    sched = DiffusionSchedule.create(100)
    idx = torch.tensor([10, 60])
    like = torch.zeros(2, 1, 2, 2, dtype=torch.float64)
    lo = sched.posterior_log_variance(idx, like, -torch.ones_like(like))
    hi = sched.posterior_log_variance(idx, like, torch.ones_like(like))
    torch.testing.assert_close(lo[:, 0, 0, 0], torch.tensor(sched.posterior_log_variance_clipped[[10, 60]]))
    torch.testing.assert_close(hi[:, 0, 0, 0], torch.tensor(np.log(sched.betas[[10, 60]])))
    fixed = sched.posterior_log_variance(idx, like)
    torch.testing.assert_close(fixed, lo)


def test_ddim_eta0_is_deterministic_and_exact_on_consistent_x0():
    sched = DiffusionSchedule.create(50)
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(2, 1, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(2, 1, 4, 4, generator=g, dtype=torch.float64)
    idx = torch.tensor([30, 30])
    xt = sched.q_sample(x0, idx, eps)
    prev = sched.ddim_step(x0, xt, idx, eta=0.0, noise=None)
    expected = sched.q_sample(x0, idx - 1, eps)  # same ε, one step earlier
    torch.testing.assert_close(prev, expected, rtol=0, atol=1e-10)
