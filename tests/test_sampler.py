"""The parallel sampler on problems with known answers."""
from __future__ import annotations

import pytest
import torch

from blinddps.diffusion import DiffusionSchedule
from blinddps.priors import DiffusionPrior, FlatPrior
from blinddps.priors.analytic import GaussianEpsModel, smooth_covariance
from blinddps.sampling import StepRule, Variable, sample


class MaskOperator:
    """y = x on observed pixels, 0 elsewhere: a linear problem without unknowns."""

    unknowns: dict = {}

    def __init__(self, mask: torch.Tensor) -> None:
        self.mask = mask

    def image_shape(self, measurement_shape):
        return measurement_shape

    def unknown_shapes(self, image_shape):
        return {}

    def forward(self, x, **params):
        return x * self.mask


class GainOperator:
    """y = g·x with an unknown scalar-per-pixel-free gain g (one number per sample)."""

    unknowns = {"gain": None}

    def image_shape(self, measurement_shape):
        return measurement_shape

    def unknown_shapes(self, image_shape):
        return {"gain": (1, 1, 1)}

    def forward(self, x, gain):
        return x * gain


def gaussian_posterior_mean(mu, cov, mask_flat, y_flat, sigma):
    """E[x | y] for x ~ N(mu, cov), y = Mx + n, n ~ N(0, σ²I) on observed entries."""
    o = mask_flat.bool()
    s_oo = cov[o][:, o] + sigma**2 * torch.eye(int(o.sum()), dtype=cov.dtype)
    gain = cov[:, o] @ torch.linalg.inv(s_oo)
    return mu + gain @ (y_flat[o] - mu[o])


def test_ddpm_with_exact_predictor_reproduces_data_moments():
    mean = torch.tensor([[[0.3, -0.2]]], dtype=torch.float64)  # (1, 1, 2)
    cov = torch.tensor([[0.04, 0.02], [0.02, 0.09]], dtype=torch.float64)
    model = GaussianEpsModel(mean, cov)
    # all 1000 steps: with the fixed-small variance β̃, respacing biases the variance low
    prior = DiffusionPrior(model, DiffusionSchedule.create(1000), clip=False)
    g = torch.Generator().manual_seed(0)
    n = 8000
    x = torch.randn(n, 1, 1, 2, generator=g, dtype=torch.float64)
    for i in reversed(range(1000)):
        idx = torch.full((n,), i)
        out = prior.denoise(x, idx)
        x = prior.propose(out, x, idx, torch.randn(x.shape, generator=g, dtype=torch.float64))
    flat = x.reshape(n, 2)
    torch.testing.assert_close(flat.mean(0), mean.reshape(2), atol=0.01, rtol=0)
    emp_cov = torch.cov(flat.T)
    torch.testing.assert_close(emp_cov, cov, atol=0.0, rtol=0.06)


def _inpainting_problem(seed=0):
    h = w = 4
    cov = smooth_covariance(h, w, length=1.5, variance=0.09)
    mu = torch.zeros(h * w, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    x_true = (torch.linalg.cholesky(cov) @ torch.randn(h * w, generator=g, dtype=torch.float64)).reshape(1, 1, h, w)
    mask = (torch.rand(1, 1, h, w, generator=g) < 0.5).double()
    sigma = 0.05
    y = (x_true + sigma * torch.randn(x_true.shape, generator=g, dtype=torch.float64)) * mask
    return cov, mu, mask, y, sigma


def test_nonblind_dps_lands_near_known_posterior_mean():
    cov, mu, mask, y, sigma = _inpainting_problem()
    post = gaussian_posterior_mean(mu, cov, mask.flatten(), y.flatten(), sigma).reshape(y.shape)
    model = GaussianEpsModel(mu.reshape(1, 4, 4), cov)
    prior = DiffusionPrior(model, DiffusionSchedule.create(200), clip=False)
    n = 256
    yb = y.expand(n, -1, -1, -1).contiguous()
    res = sample(
        MaskOperator(mask),
        yb,
        {"image": Variable(prior, StepRule("stride", 0.5))},
        generator=torch.Generator().manual_seed(1),
    )
    dps_mean = res.estimates["image"].mean(0, keepdim=True)
    err_dps = (dps_mean - post).norm()
    err_prior = (mu.reshape(post.shape) - post).norm()
    err_y = (y - post).norm()
    assert err_dps < 0.35 * min(err_prior, err_y), (err_dps, err_prior, err_y)


def test_batch_equals_separate_runs():
    cov, mu, mask, y, sigma = _inpainting_problem(3)
    model = GaussianEpsModel(mu.reshape(1, 4, 4), cov)
    prior = DiffusionPrior(model, DiffusionSchedule.create(20))
    variables = {
        "image": Variable(prior, StepRule("stride", 0.5)),
        "gain": Variable(FlatPrior(), StepRule("constant", 0.01), init=torch.full((1, 1, 1), 0.5, dtype=torch.float64)),
    }
    ys = torch.cat([y, 0.5 * y, -y])
    op = GainOperator()
    batch = sample(op, ys, variables, generator=[torch.Generator().manual_seed(s) for s in (5, 6, 7)])
    for b, s in enumerate((5, 6, 7)):
        single = sample(op, ys[b : b + 1], variables, generator=[torch.Generator().manual_seed(s)])
        for name in ("image", "gain"):
            torch.testing.assert_close(batch.estimates[name][b : b + 1], single.estimates[name], atol=1e-5, rtol=0)


def test_seeded_run_is_bitwise_reproducible_and_seed_matters():
    cov, mu, mask, y, sigma = _inpainting_problem(4)
    model = GaussianEpsModel(mu.reshape(1, 4, 4), cov)
    variables = {"image": Variable(DiffusionPrior(model, DiffusionSchedule.create(15)))}
    a = sample(MaskOperator(mask), y, variables, generator=torch.Generator().manual_seed(9))
    b = sample(MaskOperator(mask), y, variables, generator=torch.Generator().manual_seed(9))
    c = sample(MaskOperator(mask), y, variables, generator=torch.Generator().manual_seed(10))
    assert torch.equal(a.estimates["image"], b.estimates["image"])
    assert not torch.equal(a.estimates["image"], c.estimates["image"])


def test_ddim_eta0_is_deterministic_given_initial_noise():
    cov, mu, mask, y, sigma = _inpainting_problem(5)
    model = GaussianEpsModel(mu.reshape(1, 4, 4), cov)
    variables = {"image": Variable(DiffusionPrior(model, DiffusionSchedule.create("ddim10")), StepRule("stride", 0.01))}
    calls = []
    res = sample(MaskOperator(mask), y, variables, method="ddim", eta=0.0,
                 generator=torch.Generator().manual_seed(1), callback=calls.append, trajectory_every=3)
    assert len(calls) == 10 and calls[-1]["i"] == 0
    assert len(res.trajectory) == 4  # steps 0, 3, 6 and 9 (the last)
    assert res.estimates["image"].abs().max() < 0.9
    # η = 0 draws noise only for x_T: a second generator state after the run proves it
    g = torch.Generator().manual_seed(1)
    torch.randn(1, 1, 4, 4, generator=g, dtype=torch.float64)
    g2 = torch.Generator().manual_seed(1)
    sample(MaskOperator(mask), y, variables, method="ddim", eta=0.0, generator=g2)
    assert torch.equal(g.get_state(), g2.get_state())


def test_flat_prior_alone_fits_the_data_by_gradient_steps():
    """A variable without a learned prior must work (the original crashes there)."""
    g = torch.Generator().manual_seed(0)
    x_true = torch.rand(2, 1, 3, 3, generator=g, dtype=torch.float64) - 0.5
    op = GainOperator()
    y = op.forward(x_true, gain=torch.tensor([0.8, 0.6], dtype=torch.float64).view(2, 1, 1, 1))
    # gain held fixed: pure flat-prior least squares on the image
    res = sample(op, y, {"image": Variable(FlatPrior(), StepRule("constant", 0.02))},
                 fixed={"gain": torch.tensor([0.8, 0.6], dtype=torch.float64).view(2, 1, 1, 1)},
                 schedule=DiffusionSchedule.create(300), generator=g)
    assert res.residual_rms.max() < 0.02
    torch.testing.assert_close(res.estimates["image"], x_true, atol=0.03, rtol=0)


def test_step_rule_size_scaling_cancels_the_norm_loss_size_dependence():
    """With the loss ‖y − k⋆x‖ the per-value gradient on the image shrinks as M^-1/2 and
    on the kernel grows as M^1/2 (M measurement values): size_power ±1/2 undoes both."""
    from blinddps.operators import conv_same

    sched = DiffusionSchedule.create(10)
    idx = torch.tensor([5])
    img_rule, k_rule = StepRule("stride", 1.0, 0.5, 3 * 64 * 64), StepRule("stride", 0.3, -0.5, 3 * 64 * 64)
    steps = {}
    for n in (64, 128, 256):
        g = torch.Generator().manual_seed(n)
        # a smooth random image (white noise blurred) and a kernel off by a shift
        x = conv_same(torch.randn(1, 3, n, n, generator=g), torch.full((1, 1, 5, 5), 1 / 25)) * 3
        k_true = torch.zeros(1, 1, 7, 7)
        k_true[..., 3, 1:6] = 0.2
        y = conv_same(x, k_true) + 0.02 * torch.randn(1, 3, n, n, generator=g)
        k = torch.roll(k_true, 1, -1).requires_grad_(True)
        xe = x.clone().requires_grad_(True)
        gx, gk = torch.autograd.grad((y - conv_same(xe, k)).flatten().norm(), [xe, k])
        m = y[0].numel()
        steps[n] = ((img_rule(sched, idx, xe, m) * gx).pow(2).mean().sqrt().item(),
                    (k_rule(sched, idx, k, m) * gk).pow(2).mean().sqrt().item(),
                    gx.pow(2).mean().sqrt().item(), gk.pow(2).mean().sqrt().item())
    for n in (128, 256):
        f = n // 64  # sqrt of the size ratio
        # raw gradients follow the power laws ...
        assert abs(steps[n][2] / steps[64][2] * f - 1) < 0.15
        assert abs(steps[n][3] / steps[64][3] / f - 1) < 0.15
        # ... and the scaled steps do not depend on the size
        assert abs(steps[n][0] / steps[64][0] - 1) < 0.15 and abs(steps[n][1] / steps[64][1] - 1) < 0.15
    # size_power 0 (the default) ignores the size; ζ scales exactly as (M/ref)^p
    plain = StepRule("stride", 1.0)
    assert torch.equal(plain(sched, idx, x, 10**6), plain(sched, idx, x))
    assert img_rule(sched, idx, x, 4 * 3 * 64 * 64).item() == pytest.approx(2 * img_rule(sched, idx, x, 3 * 64 * 64).item())


class GainWithEstimate(GainOperator):
    """GainOperator that also offers the least-squares gain given the image."""

    def estimate(self, name, x, y, params):
        assert name == "gain"
        return ((x * y).flatten(1).sum(1) / x.flatten(1).pow(2).sum(1)).view(-1, 1, 1, 1)


def test_data_weight_blends_the_operator_estimate_into_x0():
    """EM-style blend: with a flat gain prior and no gradient step the state moves as
    g ← (1−w)·g + w·ĝ, ĝ the least-squares gain, on the steps i < data_start·N only."""
    g = torch.Generator().manual_seed(0)
    x_true = 0.8 * torch.rand(1, 1, 3, 3, generator=g, dtype=torch.float64) + 0.1  # inside the clip
    op = GainWithEstimate()
    y = op.forward(x_true, gain=torch.tensor(0.8, dtype=torch.float64))
    sched = DiffusionSchedule.create(10)

    def run(w, start=1.0, operator=op):
        variables = {
            "image": Variable(FlatPrior(), StepRule("constant", 0.0), init=x_true[0]),
            "gain": Variable(FlatPrior(), StepRule("constant", 0.0), init=torch.full((1, 1, 1), 0.5, dtype=torch.float64),
                             data_weight=w, data_start=start),
        }
        return sample(operator, y, variables, schedule=sched, generator=g).estimates["gain"].item()

    assert run(0.0) == pytest.approx(0.5)  # no gradient, no blend: the gain never moves
    # the result is x̂0 of the last step: the state after 9 of the 10 blends
    assert run(0.5) == pytest.approx(0.8 - 0.3 * 0.5**9, abs=1e-12)
    assert run(1.0) == pytest.approx(0.8, abs=1e-12)
    # data_start 0.5: blends on steps i = 4..0 only, 4 of them before the last x̂0
    assert run(0.5, start=0.5) == pytest.approx(0.8 - 0.3 * 0.5**4, abs=1e-12)
    with pytest.raises(ValueError, match="offers no data estimate"):
        run(0.5, operator=GainOperator())
    with pytest.raises(ValueError, match=r"data_weight must be in \[0, 1\]"):
        Variable(FlatPrior(), data_weight=1.5)
