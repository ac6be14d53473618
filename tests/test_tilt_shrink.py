"""The single-frame turbulence preset's tilt: only what its posterior samples agree on
(issue #17 item 3; sampling/combine.py)."""
import pytest
import torch

from blinddps.presets import build_variables, load_preset
from blinddps.sampling import Variable, agreement_factor, combine_samples


def test_independent_draws_give_zero():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(3, 4, 2, 16, 16, generator=g)  # 3 measurements, 4 samples around zero
    assert torch.equal(agreement_factor(s), torch.zeros(3))
    assert torch.count_nonzero(combine_samples(s, "agreement")) == 0
    # the plain mean is not zero: this is what the rule removes
    assert combine_samples(s, "mean").abs().max() > 0.1


def test_shared_component_is_kept_and_its_noise_shrunk():
    g = torch.Generator().manual_seed(1)
    mu = torch.randn(1, 1, 2, 32, 32, generator=g)
    s = mu + 0.5 * torch.randn(2, 4, 2, 32, 32, generator=g)
    alpha = agreement_factor(s)
    m = s.mean(1)
    target = mu.pow(2).sum() / m.pow(2).flatten(1).sum(1)  # the James–Stein factor
    assert torch.all(alpha > 0.8) and torch.all(alpha < 1)
    assert torch.allclose(alpha, target, atol=0.05)
    est = combine_samples(s, "agreement")
    # closer to the shared component than the plain mean is
    assert (est - mu[:, 0]).pow(2).sum() < (m - mu[:, 0]).pow(2).sum()


def test_one_sample_is_no_evidence():
    s = torch.ones(2, 1, 2, 8, 8)
    assert torch.count_nonzero(combine_samples(s, "agreement")) == 0
    assert torch.equal(combine_samples(s, "mean"), s[:, 0])


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="combine"):
        combine_samples(torch.zeros(1, 2, 3), "median")
    with pytest.raises(ValueError, match="combine"):
        Variable(prior=None, combine="median")


def test_turbulence_preset_combines_tilt_by_agreement():
    cfg = load_preset("turbulence")
    assert cfg["priors"]["tilt"]["combine"] == "agreement"
    variables = build_variables(cfg, device="cpu")
    assert variables["tilt"].combine == "agreement"
    assert variables["image"].combine == "mean" and variables["kernel"].combine == "mean"


def test_solve_returns_the_agreed_tilt():
    from blinddps import solve

    torch.manual_seed(0)
    y = (torch.rand(1, 3, 32, 32) * 2 - 1) * 0.5
    sol = solve(y, "turbulence", steps=2, num_samples=3, seed=0, operator={"kernel_size": 8})
    samples = sol.param_samples["tilt"]
    assert samples.shape == (1, 3, 2, 32, 32)
    assert torch.allclose(sol.params["tilt"], combine_samples(samples, "agreement"))
    # the kernel is still the plain mean of its samples
    assert torch.allclose(sol.params["kernel"], sol.param_samples["kernel"].mean(1))
    # with the rule off (combine: mean) the same samples give their plain mean, which differs
    plain = solve(y, "turbulence", steps=2, num_samples=3, seed=0, operator={"kernel_size": 8},
                  priors={"tilt": {"combine": "mean"}})
    assert torch.allclose(plain.param_samples["tilt"], samples)
    assert not torch.allclose(plain.params["tilt"], sol.params["tilt"])
