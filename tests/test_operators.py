"""Forward operators: exact agreement with the original's definitions (fixtures), the
FFT blur against direct conv2d, adjoints, the tilt warp, noise, gradients."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from blinddps.operators import (
    BlindBlur,
    GaussianNoise,
    Operator,
    Turbulence,
    Unknown,
    conv_same,
    conv_same_adjoint,
    conv_same_direct,
    conv_valid,
    conv_valid_adjoint,
    conv_valid_direct,
    gaussian_kernel,
    kernel_least_squares,
    tilt_warp,
    tilt_warp_adjoint,
)
from blinddps.transforms import Identity, KernelSimplex, Scale

FIXTURES = Path(os.environ.get("BLINDDPS_FIXTURES", Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "official"))


@pytest.fixture(scope="module")
def official():
    path = FIXTURES / "operators.pt"
    if not path.is_file():
        pytest.skip(f"official fixtures not found at {path}")
    return torch.load(path, weights_only=False)  # trusted local fixture


def _rand(*shape, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(*shape, generator=g, dtype=dtype) * 2 - 1


def _kernels(b, kh, kw, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    k = torch.rand(b, 1, kh, kw, generator=g, dtype=dtype)
    return k / k.flatten(1).sum(1).view(-1, 1, 1, 1)


# --------------------------------------------------------------------------- fixtures
def test_official_blind_blur(official):
    out = BlindBlur(15)(official["img"], kernel=official["kernel"])
    torch.testing.assert_close(out, official["blind_blur_out"], atol=1e-5, rtol=0)


def test_official_blind_blur_even_kernel64(official):
    out = BlindBlur(64)(official["img128"], kernel=official["kernel64"])
    torch.testing.assert_close(out, official["blind_blur_out_k64"], atol=1e-5, rtol=0)


def test_official_turbulence(official):
    img, tilt = official["img"], official["tilt"]
    img0, tilt0 = img.clone(), tilt.clone()
    out = Turbulence(15)(img, kernel=official["kernel"], tilt=tilt)
    torch.testing.assert_close(out, official["turbulence_out"], atol=1e-5, rtol=0)
    assert torch.equal(img, img0) and torch.equal(tilt, tilt0)


# --------------------------------------------------------------------------- FFT blur
@pytest.mark.parametrize(
    "hw,khw",
    [((16, 16), (5, 5)), ((17, 23), (4, 6)), ((20, 13), (7, 2)), ((12, 18), (12, 1)), ((9, 9), (9, 9))],
)
@pytest.mark.filterwarnings("ignore:Using padding=.same. with even kernel")
def test_conv_same_matches_conv2d_per_sample_kernels(hw, khw):
    x = _rand(2, 3, *hw, seed=1)
    k = _kernels(2, *khw, seed=2)
    torch.testing.assert_close(conv_same(x, k), conv_same_direct(x, k), atol=1e-5, rtol=0)
    # and the direct reference is the per-channel, per-sample conv2d(padding='same')
    for b in range(2):
        ref = torch.cat([F.conv2d(x[b : b + 1, c : c + 1], k[b : b + 1], padding="same") for c in range(3)], 1)
        torch.testing.assert_close(conv_same(x[b : b + 1], k[b : b + 1]), ref, atol=1e-5, rtol=0)


def test_conv_broadcasting_and_per_channel_kernels():
    x = _rand(3, 2, 14, 11, seed=3)
    k1 = _kernels(1, 4, 3, seed=4)  # (1, 1, ...) broadcast over the batch
    torch.testing.assert_close(conv_same(x, k1), conv_same_direct(x, k1), atol=1e-5, rtol=0)
    kc = torch.rand(3, 2, 5, 5, generator=torch.Generator().manual_seed(5))  # one kernel per channel
    torch.testing.assert_close(conv_same(x, kc), conv_same_direct(x, kc), atol=1e-5, rtol=0)
    torch.testing.assert_close(conv_valid(x, kc), conv_valid_direct(x, kc), atol=1e-5, rtol=0)


@pytest.mark.parametrize("khw", [(5, 5), (4, 7), (8, 2)])
def test_conv_valid_matches_conv2d(khw):
    x = _rand(2, 3, 19, 15, seed=6)
    k = _kernels(2, *khw, seed=7)
    out = conv_valid(x, k)
    assert out.shape == (2, 3, 19 - khw[0] + 1, 15 - khw[1] + 1)
    torch.testing.assert_close(out, conv_valid_direct(x, k), atol=1e-5, rtol=0)


def test_valid_is_the_interior_of_same():
    op = BlindBlur(6, mode="valid")
    x = _rand(1, 3, 30, 26, seed=8)
    k = _kernels(1, 6, 6, seed=9)
    y = op(x, kernel=k)
    assert tuple(y.shape[1:]) == op.measurement_shape(tuple(x.shape[1:]))
    assert op.image_shape(tuple(y.shape[1:])) == tuple(x.shape[1:])
    r, c = op.image_offset()
    same = conv_same(x, k)[..., r : r + y.shape[-2], c : c + y.shape[-1]]
    torch.testing.assert_close(y, same, atol=1e-6, rtol=0)


@pytest.mark.parametrize("khw", [(5, 5), (4, 4), (3, 6)])
def test_adjoints_same_and_valid(khw):
    d = torch.float64
    x = _rand(2, 3, 13, 17, seed=10, dtype=d)
    k = _kernels(2, *khw, seed=11, dtype=d)
    y = _rand(2, 3, 13, 17, seed=12, dtype=d)
    lhs, rhs = (conv_same(x, k) * y).sum(), (x * conv_same_adjoint(y, k)).sum()
    torch.testing.assert_close(lhs, rhs, atol=1e-12, rtol=1e-12)
    yv = _rand(2, 3, 13 - khw[0] + 1, 17 - khw[1] + 1, seed=13, dtype=d)
    lhs, rhs = (conv_valid(x, k) * yv).sum(), (x * conv_valid_adjoint(yv, k)).sum()
    torch.testing.assert_close(lhs, rhs, atol=1e-12, rtol=1e-12)


def test_operator_adjoints():
    d = torch.float64
    for op in (BlindBlur(4), BlindBlur(5, mode="valid"), Turbulence(3), Turbulence(4, mode="valid")):
        ish = op.image_shape((2, 12, 10))
        x = _rand(2, *ish, seed=14, dtype=d)
        params = {"kernel": _kernels(2, *op.kernel_size, seed=15, dtype=d)}
        if "tilt" in op.unknowns:
            params["tilt"] = 2.0 * _rand(2, *op.unknown_shapes(ish)["tilt"], seed=16, dtype=d)
        y = _rand(2, 2, 12, 10, seed=17, dtype=d)
        lhs = (op(x, **params) * y).sum()
        rhs = (x * op.adjoint(y, **params)).sum()
        torch.testing.assert_close(lhs, rhs, atol=1e-12, rtol=1e-10)


def test_blur_errors_are_one_line():
    with pytest.raises(ValueError, match="larger than the image") as e:
        BlindBlur(9)(torch.zeros(1, 1, 8, 12), kernel=torch.ones(1, 1, 9, 9) / 81)
    assert "\n" not in str(e.value)
    with pytest.raises(ValueError, match="missing parameter 'kernel'"):
        BlindBlur(3)(torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="unexpected parameter 'tilt'"):
        BlindBlur(3).check_params({"kernel": torch.zeros(1, 1, 3, 3), "tilt": torch.zeros(1, 2, 8, 8)})
    with pytest.raises(ValueError, match="has shape"):
        BlindBlur(3)(torch.zeros(2, 1, 8, 8), kernel=torch.zeros(3, 1, 3, 3))
    with pytest.raises(ValueError, match="mode"):
        BlindBlur(3, mode="full")


def test_fft_blur_gradients_match_direct():
    x = _rand(2, 3, 12, 10, seed=18).requires_grad_(True)
    k = _kernels(2, 4, 5, seed=19).requires_grad_(True)
    w = _rand(2, 3, 12, 10, seed=20)
    gx, gk = torch.autograd.grad((conv_same(x, k) * w).sum(), (x, k))
    rx, rk = torch.autograd.grad((conv_same_direct(x, k) * w).sum(), (x, k))
    torch.testing.assert_close(gx, rx, atol=1e-5, rtol=0)
    torch.testing.assert_close(gk, rk, atol=1e-4, rtol=0)


def test_half_precision_input_runs():
    x = _rand(1, 1, 8, 8, seed=21).to(torch.bfloat16)
    out = conv_same(x, gaussian_kernel(3, 1.0).to(torch.bfloat16))
    assert out.dtype == torch.bfloat16 and out.shape == x.shape


# --------------------------------------------------------------------------- tilt warp
def test_tilt_warp_zero_is_identity_and_does_not_mutate():
    x = _rand(2, 3, 9, 13, seed=22)
    tilt = 0.7 * _rand(2, 2, 9, 13, seed=23)
    x0, t0 = x.clone(), tilt.clone()
    tilt_warp(x, tilt)
    assert torch.equal(x, x0) and torch.equal(tilt, t0)
    torch.testing.assert_close(tilt_warp(x, torch.zeros(1, 2, 9, 13)), x, atol=1e-6, rtol=0)


def test_tilt_warp_integer_shift_axes():
    x = _rand(1, 1, 10, 12, seed=24)
    shift_w = torch.zeros(1, 2, 10, 12)
    shift_w[:, 0] = 2.0  # channel 0: width — out(i, j) = x(i, j + 2)
    out = tilt_warp(x, shift_w)
    torch.testing.assert_close(out[..., :, :-2], x[..., :, 2:], atol=1e-6, rtol=0)
    assert out[..., :, -2:].abs().max() < 1e-6  # zeros from outside
    shift_h = torch.zeros(1, 2, 10, 12)
    shift_h[:, 1] = -3.0  # channel 1: height — out(i, j) = x(i - 3, j)
    out = tilt_warp(x, shift_h)
    torch.testing.assert_close(out[..., 3:, :], x[..., :-3, :], atol=1e-6, rtol=0)
    assert out[..., :3, :].abs().max() < 1e-6


def test_tilt_warp_adjoint():
    d = torch.float64
    x, y = _rand(2, 3, 8, 11, seed=25, dtype=d), _rand(2, 3, 8, 11, seed=26, dtype=d)
    tilt = 1.5 * _rand(2, 2, 8, 11, seed=27, dtype=d)
    torch.testing.assert_close((tilt_warp(x, tilt) * y).sum(), (x * tilt_warp_adjoint(y, tilt)).sum(), atol=1e-12, rtol=1e-12)


def test_batch_of_two_equals_two_single_calls():
    op = Turbulence(5)
    x = _rand(2, 3, 16, 20, seed=28)
    k = _kernels(2, 5, 5, seed=29)
    tilt = 2.0 * _rand(2, 2, 16, 20, seed=30)
    both = op(x, kernel=k, tilt=tilt)
    for b in range(2):
        one = op(x[b : b + 1], kernel=k[b : b + 1], tilt=tilt[b : b + 1])
        torch.testing.assert_close(both[b : b + 1], one, atol=1e-6, rtol=0)
    blur = BlindBlur(5)
    both = blur(x, kernel=k)
    for b in range(2):
        torch.testing.assert_close(both[b : b + 1], blur(x[b : b + 1], kernel=k[b : b + 1]), atol=1e-6, rtol=0)


def test_gradients_flow_to_kernel_and_tilt():
    op = Turbulence(3)
    x = _rand(1, 3, 10, 10, seed=31).requires_grad_(True)
    k = _kernels(1, 3, 3, seed=32).requires_grad_(True)
    tilt = (0.3 * _rand(1, 2, 10, 10, seed=33)).requires_grad_(True)
    op(x, kernel=k, tilt=tilt).pow(2).sum().backward()
    for t in (x, k, tilt):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


# --------------------------------------------------------------------------- declarations
def test_unknown_declarations():
    op = Turbulence(7, tilt_scale=3.0)
    assert list(op.unknowns) == ["kernel", "tilt"]
    assert isinstance(op.unknowns["kernel"].transform, KernelSimplex)
    assert isinstance(op.unknowns["tilt"].transform, Scale) and op.unknowns["tilt"].transform.scale == 3.0
    assert op.unknown_shapes((3, 32, 48)) == {"kernel": (1, 7, 7), "tilt": (2, 32, 48)}
    assert BlindBlur((5, 3), mode="valid").image_shape((3, 20, 30)) == (3, 24, 32)
    assert op.initial_value("kernel").sum().item() == pytest.approx(1.0)
    assert torch.equal(op.initial_value("tilt"), torch.zeros(1, 2, 1, 1))
    with pytest.raises(ValueError, match="expected"):
        op(torch.zeros(1, 3, 16, 16), kernel=torch.zeros(1, 1, 7, 7), tilt=torch.zeros(1, 2, 16, 15))


def test_user_defined_operator():
    class Gain(Operator):
        def __init__(self):
            super().__init__()
            self.declare(Unknown("gain", (1, -1, -1), Identity()))

        def forward(self, x, gain):
            self.check_params({"gain": gain}, image_shape=tuple(x.shape[1:]))
            return x * gain

    op = Gain()
    assert op.unknown_shapes((3, 4, 5)) == {"gain": (1, 4, 5)}
    assert op(torch.ones(1, 3, 4, 5), gain=torch.full((1, 1, 4, 5), 2.0)).sum() == 120
    with pytest.raises(ValueError):
        op.declare(Unknown("gain", (1,), Identity()))


def test_kernel_least_squares_recovers_kernel():
    x = _rand(2, 2, 24, 24, seed=34)
    k = torch.cat([gaussian_kernel(5, 1.0), _kernels(1, 5, 5, seed=35)])
    y = conv_same(x, k)
    est = kernel_least_squares(x, y, (5, 5), reg=1e-6, iters=30)
    torch.testing.assert_close(est, k, atol=2e-3, rtol=0)
    est = BlindBlur(5).estimate("kernel", x, y, {})
    assert est.shape == (2, 1, 5, 5) and torch.allclose(est.flatten(1).sum(1), torch.ones(2))


# --------------------------------------------------------------------------- noise
def test_noise_is_reproducible_and_does_not_touch_global_rng():
    noise = GaussianNoise(0.02)
    y = torch.zeros(2, 3, 8, 8)
    state = torch.get_rng_state()
    a = noise(y, torch.Generator().manual_seed(5))
    b = noise(y, torch.Generator().manual_seed(5))
    c = noise(y, torch.Generator().manual_seed(6))
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert 0.015 < a.std().item() < 0.025 and torch.equal(y, torch.zeros_like(y))
    per_sample = noise(y, [torch.Generator().manual_seed(5), torch.Generator().manual_seed(7)])
    torch.testing.assert_close(per_sample[:1], noise(y[:1], torch.Generator().manual_seed(5)))
    assert torch.equal(GaussianNoise(0.0)(y, None), y)
