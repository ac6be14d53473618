"""The documented extension example keeps working: a new blind problem (colour cast +
blur) runs through the unchanged sampler and recovers the colour cast."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from blinddps.operators import gaussian_kernel
from blinddps.priors.analytic import GaussianEpsModel, smooth_covariance
from blinddps.transforms import KernelSimplex

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "new_blind_problem.py"


def load_example():
    spec = importlib.util.spec_from_file_location("new_blind_problem", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_colour_cast_example_recovers_gains():
    mod = load_example()
    h = w = 12
    ks = 3
    cov1 = smooth_covariance(h, w, length=1.5, variance=0.004)
    cov = torch.block_diag(cov1, cov1, cov1)  # three independent colour channels
    image_model = GaussianEpsModel(torch.full((3, h, w), 0.4, dtype=torch.float64), cov)
    k = gaussian_kernel(ks, 0.7, dtype=torch.float64).view(1, 1, ks, ks)
    mean_k = KernelSimplex().from_physical(k)[0]
    kernel_model = GaussianEpsModel(mean_k, 1e-4 * torch.eye(ks * ks, dtype=torch.float64))
    g = torch.Generator().manual_seed(0)
    x = (torch.linalg.cholesky(cov) @ torch.randn(3 * h * w, generator=g, dtype=torch.float64)).view(1, 3, h, w) + 0.4
    gain_true = torch.tensor([0.3, 0.0, -0.25], dtype=torch.float64).view(1, 3, 1, 1)
    op = mod.ColourCastBlur(ks)
    y = op.forward(x, gain=gain_true, kernel=k)
    res = mod.solve_colour_cast(y, image_model, kernel_model, steps=200, kernel_size=ks)
    # the image prior pins the scene's brightness (mean 0.4): only the right gains explain y
    est = res.estimates["gain"].view(3)
    assert (est - gain_true.view(3)).abs().max() < 0.1, est
    assert res.residual_rms.item() < 0.05
