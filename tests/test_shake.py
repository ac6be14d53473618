"""The held-out camera-shake kernel family."""
import numpy as np
import pytest
import torch

from blinddps.evaluation.metrics import blob_floor_mnc, mnc
from blinddps.simulate import camera_shake_kernels, kernel_centroid, motion_kernels


def test_kernels_are_kernels_and_seeded():
    k = camera_shake_kernels(24, 32, generator=3)
    assert k.shape == (24, 1, 32, 32) and k.dtype == torch.float32
    assert bool((k >= 0).all())
    assert torch.allclose(k.sum((1, 2, 3)), torch.ones(24), atol=1e-5)
    assert float((kernel_centroid(k) - 15.5).abs().max()) < 0.05
    assert torch.equal(k, camera_shake_kernels(24, 32, generator=3))
    assert not torch.equal(k, camera_shake_kernels(24, 32, generator=4))
    # extent: the longer side of the support follows the requested fraction
    small = camera_shake_kernels(8, 32, extent=0.2, optics=0.0, generator=0)
    rows = (small[:, 0] > 0).any(2).sum(1)
    cols = (small[:, 0] > 0).any(1).sum(1)
    assert int(torch.maximum(rows, cols).max()) <= 0.2 * 31 + 3


def test_a_different_family_from_ours():
    """Not our generator: thin strokes whose brightness varies along the path
    (exposure integration), and no shake kernel is close to any of ours."""
    shake = camera_shake_kernels(16, 32, optics=0.0, generator=0)
    ours = motion_kernels(64, 32, 0.5, generator=0)
    # brightness along the stroke: the brightest pixel is several times the median lit one
    ratio = [float(s.max() / s[s > s.max() * 0.05].median()) for s in shake[:, 0]]
    ratio_ours = [float(s.max() / s[s > s.max() * 0.05].median()) for s in ours[:16, 0]]
    assert np.median(ratio) > 1.5 * np.median(ratio_ours)
    best = [max(mnc(s, o) for o in ours[:, 0]) for s in shake[:4, 0]]
    assert max(best) < 0.9
    assert 0.3 < np.mean([blob_floor_mnc(s) for s in shake[:8, 0]]) < 0.9


@pytest.mark.parametrize("bad", [dict(n=-1), dict(size=2), dict(extent=(0.5, 0.2)), dict(optics=-1.0), dict(steps=3)])
def test_bad_arguments(bad):
    args = dict(n=2, size=16, generator=0) | bad
    with pytest.raises(ValueError):
        camera_shake_kernels(**args)
