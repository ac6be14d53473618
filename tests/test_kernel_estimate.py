"""The operator's data estimate of the kernel (the EM blend's least-squares kernel), in
intensities or in gradients."""
import pytest
import torch

from blinddps.evaluation.metrics import mnc
from blinddps.operators import BlindBlur, conv_same, conv_valid
from blinddps.simulate import camera_shake_kernels


@pytest.mark.parametrize("mode", ["same", "valid"])
@pytest.mark.parametrize("domain", ["intensity", "gradient"])
def test_least_squares_kernel_recovers_the_kernel_from_the_true_image(mode, domain):
    g = torch.Generator().manual_seed(0)
    x = torch.nn.functional.avg_pool2d(torch.rand(1, 3, 96, 96, generator=g), 3, 1, 1) * 2 - 1
    k = camera_shake_kernels(1, 11, generator=1)
    y = (conv_same if mode == "same" else conv_valid)(x, k) + 0.005 * torch.randn(
        (1, 3, 96, 96) if mode == "same" else (1, 3, 86, 86), generator=g)
    est = BlindBlur(11, mode=mode, estimate_domain=domain).estimate("kernel", x, y, {})
    assert est.shape == (1, 1, 11, 11) and abs(float(est.sum()) - 1) < 1e-5
    assert mnc(est[0, 0].double(), k[0, 0].double()) > 0.95


def test_estimate_domain_is_checked():
    with pytest.raises(ValueError, match="estimate_domain"):
        BlindBlur(5, estimate_domain="edges")
