"""The fast solver (issue 19): attention on the fused path, the cached least-squares
kernel, the image data step, and the proximal sampler on tiny or analytic priors."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from blinddps import solve
from blinddps.diffusion import DiffusionSchedule
from blinddps.evaluation.metrics import mnc
from blinddps.models.checkpoints import save_model
from blinddps.models.unet import _attend, create_model
from blinddps.operators import BlindBlur, conv_same, conv_same_adjoint, conv_valid, conv_valid_adjoint, gaussian_kernel
from blinddps.operators.blur import gradient_pair, image_proximal, kernel_least_squares, kernel_least_squares_cached, \
    recentre_kernel
from blinddps.priors import DiffusionPrior, FlatPrior
from blinddps.priors.analytic import GaussianEpsModel, smooth_covariance
from blinddps.sampling import Variable, proximal_options, sample_proximal
from blinddps.simulate import motion_kernels
from blinddps.transforms import KernelSimplex

from _tiny import TINY  # noqa: E402

BLURS = {"same": (conv_same, conv_same_adjoint), "valid": (conv_valid, conv_valid_adjoint)}


def _problem(mode: str, size: int = 24, ksize: int = 7, seed: int = 0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(2, 3, size, size, generator=g) * 2 - 1).to(dtype)
    k = motion_kernels(2, ksize, 0.5, generator=g).to(dtype)
    blur = BLURS[mode][0]
    clean = blur(x, k)
    return x, k, clean + 0.02 * torch.randn(clean.shape, generator=g).to(dtype)


# --------------------------------------------------------------------------- attention
def test_attend_matches_explicit_softmax_and_the_old_call():
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(3, 16, 50, generator=g) for _ in range(3))
    weights = torch.softmax(torch.einsum("nct,ncs->nts", q, k) / 16**0.5, dim=-1)
    explicit = torch.einsum("nts,ncs->nct", weights, v)
    old = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)).transpose(1, 2)
    out = _attend(q, k, v)
    assert out.shape == (3, 16, 50)
    torch.testing.assert_close(out, explicit, atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(out, old, atol=2e-6, rtol=1e-5)


# --------------------------------------------------------------------------- kernel step
@pytest.mark.parametrize("mode", ["same", "valid"])
def test_cached_least_squares_equals_the_original(mode):
    x, k, y = _problem(mode)
    ref = kernel_least_squares(x, y, (7, 7), mode)
    got = kernel_least_squares_cached(x, y, (7, 7), mode)
    torch.testing.assert_close(got, ref, atol=1e-6, rtol=1e-4)
    assert mnc(got[0], k[0]) > 0.95  # and it does find the kernel from the true image


@pytest.mark.parametrize("mode", ["same", "valid"])
def test_gradient_pair_commutes_with_the_blur(mode):
    x, k, _ = _problem(mode, dtype=torch.float64)
    y = BLURS[mode][0](x, k)
    dx, dy = gradient_pair(x, y, mode, (7, 7))
    assert dx.shape[1] == 6 and dy.shape[1] == 6
    torch.testing.assert_close(conv_valid(dx, k), dy, atol=1e-10, rtol=0)


def test_kernel_proximal_warm_start_and_pull():
    x, k, y = _problem("same", size=32)
    op = BlindBlur(7, mode="same")
    blob = gaussian_kernel(7, 1.5).expand(2, 1, 7, 7)
    est = op.proximal("kernel", blob, y, {"image": x}, 0.0, iters=30)
    assert est.shape == (2, 1, 7, 7) and (est >= 0).all()
    torch.testing.assert_close(est.sum((1, 2, 3)), torch.ones(2))
    assert min(mnc(est, k)) > 0.95 > max(mnc(blob, k))
    held = op.proximal("kernel", blob, y, {"image": x}, 1e8, iters=30)  # a huge pull keeps the start
    torch.testing.assert_close(held, blob, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- image step
def _dense(mode: str, k: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """The blur as a matrix (one sample): columns are the blurs of the unit images."""
    n = shape[0] * shape[1] * shape[2]
    eye = torch.eye(n, dtype=torch.float64).reshape(n, *shape)
    return BLURS[mode][0](eye, k).reshape(n, -1).T


@pytest.mark.parametrize("mode", ["same", "valid"])
def test_image_proximal_solves_its_quadratic_exactly(mode):
    x, k, y = _problem(mode, size=12, ksize=5, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    x0 = x + 0.3 * torch.randn(x.shape, generator=g, dtype=torch.float64)
    rho = torch.tensor([0.05, 0.7], dtype=torch.float64)
    got = image_proximal(x0, y, k, rho, mode, iters=80)
    for b in range(2):
        A = _dense(mode, k[b : b + 1], tuple(x.shape[1:]))
        lhs = A.T @ A + rho[b] * torch.eye(A.shape[1], dtype=torch.float64)
        want = torch.linalg.solve(lhs, A.T @ y[b].flatten() + rho[b] * x0[b].flatten())
        torch.testing.assert_close(got[b].flatten(), want, atol=1e-8, rtol=0)
    # and the preconditioned few-step solve is already close: 8 steps beat 8 plain ones
    def gap(u):
        blur, adj = BLURS[mode]
        return (adj(blur(u, k) - y, k) + rho.view(-1, 1, 1, 1) * (u - x0)).abs().max()
    assert gap(image_proximal(x0, y, k, rho, mode, iters=8)) < gap(image_proximal(x0, y, k, rho, mode, 8, False))


# --------------------------------------------------------------------------- the sampler
class _NoGrad(torch.nn.Module):
    """Wraps a network and records whether autograd was on at each call."""

    def __init__(self, net):
        super().__init__()
        self.net, self.grad_on = net, []
        self.in_channels = getattr(net, "in_channels", None)

    def forward(self, x, t):
        self.grad_on.append(torch.is_grad_enabled() or x.requires_grad)
        return self.net(x, t)


def _tiny_priors(steps: int, dtype=torch.float32):
    torch.manual_seed(0)
    sched = DiffusionSchedule.create(steps)
    img = _NoGrad(create_model(image_size=16, in_channels=3, **TINY)).to(dtype)
    ker = _NoGrad(create_model(image_size=8, grayscale=True, **TINY)).to(dtype)
    return {"image": Variable(DiffusionPrior(img, sched)),
            "kernel": Variable(DiffusionPrior(ker, sched, KernelSimplex()))}, img, ker


def test_proximal_sampler_runs_no_backward_pass_and_is_batch_invariant():
    # float64: random weights and a weak prior amplify float32 rounding across batch sizes
    variables, img, ker = _tiny_priors(steps=4, dtype=torch.float64)
    op = BlindBlur(8, mode="same")
    y = torch.rand(2, 3, 16, 16, dtype=torch.float64) * 2 - 1
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    kw = dict(lam={"image": 7.0, "kernel": 0.0}, blend={"kernel": 0.5}, adapt_noise=True, order=["kernel", "image"])
    res = sample_proximal(op, y, variables, generator=gens, **kw)
    assert img.grad_on and not any(img.grad_on) and not any(ker.grad_on)
    assert all(p.grad is None for p in img.parameters())
    assert res.estimates["image"].shape == (2, 3, 16, 16) and res.steps == 4
    k = res.estimates["kernel"]
    assert k.shape == (2, 1, 8, 8) and (k >= 0).all()
    torch.testing.assert_close(k.sum((1, 2, 3)), torch.ones(2, dtype=torch.float64))
    one = sample_proximal(op, y[1:], variables, generator=[torch.Generator().manual_seed(6)], **kw)
    torch.testing.assert_close(one.estimates["image"], res.estimates["image"][1:], atol=1e-8, rtol=0)
    torch.testing.assert_close(one.estimates["kernel"], res.estimates["kernel"][1:], atol=1e-10, rtol=0)


def test_guide_backpropagates_through_the_kernel_network_only_and_freeze_holds_it():
    variables, img, ker = _tiny_priors(steps=4)
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    res = sample_proximal(BlindBlur(8), y, variables, lam={"image": 7.0, "kernel": 0.0}, guide=["kernel"],
                          freeze=0.5, generator=torch.Generator().manual_seed(0))
    assert len(img.grad_on) == 4 and not any(img.grad_on)
    assert ker.grad_on == [True, True]  # guided, and only for the steps before the freeze
    assert res.steps == 4 and res.estimates["kernel"].shape == (1, 1, 8, 8)


def test_recentre_kernel_moves_the_centre_of_mass_to_the_middle():
    k = torch.zeros(2, 1, 7, 7)
    k[0, 0, 1, 1] = 1.0
    k[1, 0, 5, 4] = k[1, 0, 5, 5] = 0.5
    out = recentre_kernel(k)
    assert out[0, 0, 3, 3] == 1.0
    assert out[1, 0, 3, 2] == out[1, 0, 3, 3] == 0.5  # an even extent: the nearer whole-pixel shift
    torch.testing.assert_close(out.sum((1, 2, 3)), torch.ones(2))


def _gaussian_image_prior(size: int, steps: int) -> DiffusionPrior:
    cov = smooth_covariance(size, size, length=2.0, variance=0.25)
    model = GaussianEpsModel(torch.zeros(1, size, size), cov)
    return DiffusionPrior(model, DiffusionSchedule.create(steps), clip=False)


def test_proximal_sampler_fits_a_blurred_measurement_without_gradients():
    size, steps, sigma = 10, 20, 0.02
    prior = _gaussian_image_prior(size, steps)
    g = torch.Generator().manual_seed(0)
    cov = smooth_covariance(size, size, length=2.0, variance=0.25).float()
    x = (torch.linalg.cholesky(cov) @ torch.randn(size * size, generator=g)).reshape(1, 1, size, size)
    k = gaussian_kernel(3, 0.8)
    op = BlindBlur(3, mode="same")
    y = conv_same(x, k) + sigma * torch.randn(1, 1, size, size, generator=g)
    seen = []
    res = sample_proximal(op, y, {"image": Variable(prior)}, fixed={"kernel": k}, zeta=1.0, noise_level=sigma,
                          generator=torch.Generator().manual_seed(1),
                          callback=lambda info: seen.append(float(info["residual"][0])))
    assert len(seen) == steps
    assert max(seen) < 2 * sigma  # every step's estimate fits the measurement to its noise
    free = sample_proximal(op, y, {"image": Variable(prior)}, fixed={"kernel": k}, lam={}, zeta=1.0,
                           generator=torch.Generator().manual_seed(1))
    assert float(free.residual_rms[0]) > 5 * sigma  # without the data step: a sample of the prior
    err = (res.estimates["image"] - x).pow(2).mean().sqrt()
    assert err < (y - x).pow(2).mean().sqrt()  # closer to the truth than the measurement


def test_blind_toy_kernel_found_through_the_operator_hooks():
    # an image prior that knows the scene up to a little texture, a flat kernel prior
    # from a blob: the kernel can only come from the measurement, via operator.proximal
    size, steps, ks = 24, 10, 7  # a 'valid' blur: the 24x24 image seen through an 18x18 frame
    g = torch.Generator().manual_seed(2)
    cov = smooth_covariance(size, size, length=0.7, variance=0.25)
    x = (torch.linalg.cholesky(cov.float()) @ torch.randn(size * size, generator=g)).reshape(1, 1, size, size)
    prior = DiffusionPrior(GaussianEpsModel(x[0].double(), 1e-4 * cov), DiffusionSchedule.create(steps), clip=False)
    k = motion_kernels(1, ks, 0.5, generator=g)
    op = BlindBlur(ks, mode="valid")
    y = conv_valid(x, k)
    y = y + 0.01 * torch.randn(y.shape, generator=g)
    start = gaussian_kernel(ks, 1.0)
    variables = {"image": Variable(prior), "kernel": Variable(FlatPrior(KernelSimplex()), init=start)}
    res = sample_proximal(op, y, variables, lam={"image": 7.0, "kernel": 0.0}, adapt_noise=True, zeta=1.0,
                          iters={"image": 8, "kernel": 20}, order=["kernel", "image"], noise_level=0.01,
                          generator=torch.Generator().manual_seed(3))
    assert mnc(start[0], k[0]) < 0.9
    assert mnc(res.estimates["kernel"][0], k[0]) > 0.97
    assert float(res.residual_rms[0]) < 0.015


def test_proximal_options_and_errors():
    opts = proximal_options({"noise": 0.03, "lam": {"image": [100, 7]}, "iters": {"image": 4}, "freeze": 0.5,
                             "guide": ["kernel"]})
    assert opts == {"noise_level": 0.03, "lam": {"image": (100.0, 7.0)}, "iters": {"image": 4}, "freeze": 0.5,
                    "guide": ["kernel"]}
    with pytest.raises(ValueError, match="unknown proximal option 'lamda'"):
        proximal_options({"lamda": 1})
    variables, _, _ = _tiny_priors(steps=2)
    y = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="not a sampled variable"):
        sample_proximal(BlindBlur(8), y, variables, lam={"tilt": 1.0})
    with pytest.raises(ValueError, match="zeta"):
        sample_proximal(BlindBlur(8), y, variables, zeta=1.5)


# --------------------------------------------------------------------------- the preset
@pytest.mark.parametrize("mode", ["same", "valid"])
def test_solve_with_the_motion_fast_preset(mode, tmp_path):
    torch.manual_seed(0)
    d = tmp_path
    img = save_model(create_model(image_size=16, in_channels=3, **TINY), d / "img")
    ker = save_model(create_model(image_size=8, grayscale=True, **TINY), d / "ker")
    y = torch.rand(1, 3, 16, 16) * 2 - 1
    sol = solve(y, "motion_fast", steps=3, seed=0, models={"image": str(img), "kernel": str(ker)},
                operator={"kernel_size": 8, "mode": mode})
    assert sol.settings["config"]["solver"] == "proximal" and sol.settings["num_samples"] == 1
    assert sol.image.shape == (1, 3, 16, 16) and sol.timings["steps"] == 3
    torch.testing.assert_close(sol.params["kernel"].sum(), torch.tensor(1.0))
    with pytest.raises(ValueError, match="solver"):
        solve(y, "motion_fast", steps=2, models={"image": str(img), "kernel": str(ker)}, solver="admm",
              operator={"kernel_size": 8, "mode": mode})
