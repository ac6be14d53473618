"""A kernel smaller than the kernel prior's window: the prior samples its window, the
operator sees the central support (issue: any --kernel-size with the shipped priors)."""
import pytest
import torch

from blinddps.api import solve
from blinddps.operators import BlindBlur
from blinddps.presets import build_variables
from blinddps.transforms import KernelSimplex

from test_api import preset, tiny_models  # noqa: F401  (the tiny priors: image 16x16, kernel 8x8)


def test_window_round_trip_and_placement():
    t = KernelSimplex(floor=0.0).with_window((8, 8), (5, 5))
    assert t.diffusion_shape((1, 5, 5)) == (1, 8, 8)
    k = torch.rand(2, 1, 5, 5)
    k = k / k.sum((-2, -1), keepdim=True)
    x = t.from_physical(k)
    assert x.shape == (2, 1, 8, 8)
    # the support's origin pixel (5-1)//2 = 2 sits on the window's origin (8-1)//2 = 3
    assert torch.equal(x[..., 1:6, 1:6], KernelSimplex().from_physical(k))
    assert bool((x[..., 0, :] == -1).all()) and bool((x[..., 6:, :] == -1).all())
    assert torch.allclose(t.to_physical(x), k, atol=1e-6)
    # mass outside the support is dropped, the rest renormalised
    x2 = x.clone()
    x2[..., 0, 0] = 1.0
    assert torch.allclose(t.to_physical(x2), k, atol=1e-6)
    with pytest.raises(ValueError, match="larger than the prior"):
        KernelSimplex().with_window((8, 8), (9, 9))


def test_build_variables_fits_the_window(tiny_models):
    p = preset(tiny_models)
    p["operator"]["kernel_size"] = 5
    v = build_variables(p, operator=BlindBlur(5))
    assert v["kernel"].prior.transform.window == (8, 8) and v["kernel"].prior.transform.support == (5, 5)
    p["operator"]["kernel_size"] = 8
    assert build_variables(p, operator=BlindBlur(8))["kernel"].prior.transform.window is None


@pytest.mark.parametrize("mode", ["same", "valid"])
def test_solve_small_kernel_with_window_prior(tiny_models, mode):
    g = torch.Generator().manual_seed(0)
    y = torch.rand(1, 3, 16, 16, generator=g) * 2 - 1
    p = preset(tiny_models)
    p["priors"]["kernel"]["data_weight"] = 0.3  # the EM blend maps the 5x5 estimate into the window
    sol = solve(y, p, steps=3, operator={"kernel_size": 5, "mode": mode})
    k = sol.params["kernel"]
    assert k.shape == (1, 1, 5, 5)
    assert torch.allclose(k.sum(), torch.tensor(1.0), atol=1e-5) and bool((k >= 0).all())
    assert sol.image.shape == y.shape


@pytest.mark.parametrize("size", [15, 27])
def test_shipped_priors_take_any_kernel_size(size):
    """--kernel-size 15 and 27 with the shipped 32x32 motion prior (two steps)."""
    g = torch.Generator().manual_seed(1)
    y = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    sol = solve(y, "motion_deblur", steps=2, num_samples=1, operator={"kernel_size": size, "mode": "valid"})
    k = sol.params["kernel"]
    assert k.shape == (1, 1, size, size) and abs(float(k.sum()) - 1) < 1e-5
    with pytest.raises(ValueError, match="--kernel-size 32 or less"):
        solve(y, "motion_deblur", steps=2, num_samples=1, operator={"kernel_size": 33})


def test_cli_writes_the_kernel_at_the_asked_size(tmp_path, capsys):
    import numpy as np
    from PIL import Image

    from blinddps import cli

    g = np.random.default_rng(0)
    Image.fromarray((g.random((40, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / "in.png")
    code = cli.main(["deblur", str(tmp_path / "in.png"), "--out", str(tmp_path / "o"), "--kernel-size", "15",
                     "--steps", "2", "--samples", "1", "--quiet"])
    assert code == 0
    k = np.load(tmp_path / "o" / "kernel.npy")
    assert k.shape == (15, 15) and abs(k.sum() - 1) < 1e-5
    assert (tmp_path / "o" / "restored.png").is_file()
    capsys.readouterr()
    assert cli.main(["deblur", str(tmp_path / "in.png"), "--out", str(tmp_path / "p"), "--kernel-size", "33",
                     "--steps", "2", "--quiet", "--pipeline", "direct"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--kernel-size 32 or less" in err[0]
    # the default pipeline takes a kernel beyond the window to the photo pipeline, which needs 2K px a side
    assert cli.main(["deblur", str(tmp_path / "in.png"), "--out", str(tmp_path / "q"), "--kernel-size", "33",
                     "--steps", "2", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "needs an image of at least 66 px" in err[0]


def test_image_window_pads_the_image_not_the_measurement():
    """A 'valid' measurement whose image size the UNet does not accept: the image grows by
    unseen rows/columns, the measurement is left as it is."""
    from blinddps.operators import ImageWindow, conv_valid

    op = BlindBlur(5, mode="valid")
    win = ImageWindow(op, (20, 21), (24, 24))
    assert win.image_shape((3, 16, 17)) == (3, 24, 24) and win.image_offset() == op.image_offset()
    assert win.unknown_shapes((3, 24, 24)) == {"kernel": (1, 5, 5)}
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 24, 24, generator=g)
    k = torch.rand(2, 1, 5, 5, generator=g)
    y = win.forward(x, kernel=k)
    assert y.shape == (2, 3, 16, 17) and torch.allclose(y, conv_valid(x[..., :20, :21], k))
    # the unseen part has no influence, and the adjoint is exact
    x2 = x.clone()
    x2[..., 20:, :] = 5.0
    assert torch.equal(win.forward(x2, kernel=k), y)
    r = torch.rand_like(y)
    assert torch.allclose((win.forward(x, kernel=k) * r).sum(), (x * win.adjoint(r, kernel=k)).sum(), rtol=1e-4)
    with pytest.raises(ValueError, match="does not allow"):
        ImageWindow(BlindBlur(5), (20, 20), (24, 24))


def test_solve_valid_does_not_invent_measurement_rows(tiny_models, monkeypatch):
    from blinddps import api

    seen = {}
    real = api.sample

    def spy(operator, y, *a, **k):
        seen["y"], seen["op"] = y.shape, operator
        return real(operator, y, *a, **k)

    monkeypatch.setattr(api, "sample", spy)
    y = torch.rand(1, 3, 13, 13) * 2 - 1  # valid with a 5x5 kernel: image 17x17 -> 32x32 for the UNet
    p = preset(tiny_models)
    sol = solve(y, p, steps=2, operator={"kernel_size": 5, "mode": "valid"})
    assert seen["y"] == (1, 3, 13, 13) and "ImageWindow" in repr(seen["op"])
    assert sol.image.shape == y.shape and sol.params["kernel"].shape == (1, 1, 5, 5)
