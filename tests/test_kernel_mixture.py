"""The kernel-prior training mixture and fine-tuning from saved weights (init_from)."""
from __future__ import annotations

import pytest
import torch

from blinddps.simulate import kernel_centroid
from blinddps.simulate.mixture import mixed_kernels
from blinddps.training.data import KernelSource
from blinddps.training.trainer import TrainConfigError, train

from test_training import tiny_config  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:GroupNorm32")


def test_mixture_kernels_are_centred_kernels_and_seeded():
    k = mixed_kernels(40, 16, generator=2)
    assert k.shape == (40, 1, 16, 16) and bool((k >= 0).all())
    assert torch.allclose(k.sum((1, 2, 3)), torch.ones(40), atol=1e-5)
    assert float((kernel_centroid(k) - 7.5).abs().max()) < 0.1
    assert torch.equal(k, mixed_kernels(40, 16, generator=2))
    # the variations act: without them (and no Gaussians) the kernels are our generator's
    plain = mixed_kernels(40, 16, generator=2, p_speed=0, p_thick=0, p_gauss=0)
    assert not torch.allclose(plain, k)
    gauss = mixed_kernels(6, 16, generator=0, p_gauss=1.0)
    assert float((gauss > 1e-3).float().sum((1, 2, 3)).min()) > 4  # blobs, not strokes
    with pytest.raises(ValueError, match="p_speed"):
        mixed_kernels(2, 16, p_speed=2)
    s = KernelSource(16, kind="mixture", generator=1).sample(3)
    assert s.shape == (3, 1, 16, 16) and float(s.max()) == pytest.approx(1.0) and float(s.min()) >= -1


def test_init_from_starts_from_saved_weights(tmp_path):
    first = train(tiny_config(steps=30, lr=2e-3, warmup_steps=5), tmp_path / "a", progress=False)
    fresh = train(tiny_config(steps=1), tmp_path / "b", progress=False, export=False)
    tuned = train(tiny_config(steps=1, init_from=str(first.weights), data=dict(size=8, kind="mixture")),
                  tmp_path / "c", progress=False, export=False)
    sa = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["losses"][0]
    sc = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)["losses"][0]
    assert float(sc) < 0.7 * float(sa)  # a trained start, not a random one
    assert fresh.step == tuned.step == 1
    with pytest.raises(TrainConfigError, match="init_from"):
        train(tiny_config(steps=1, init_from=str(tmp_path / "none.safetensors")), tmp_path / "d", progress=False)
