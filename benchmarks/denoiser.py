"""The image prior's one-step Tweedie denoiser vs a Gaussian filter tuned per noise level.

For each σ, pick the diffusion step t whose noise level √(1−ᾱ_t)/√ᾱ_t is nearest σ,
add exactly that noise to held-out photos (scikit-image samples, never trained on),
and denoise with x̂0 = (x_t − √(1−ᾱ_t) ε̂)/√ᾱ_t. The Gaussian filter's std is chosen per
σ by oracle (best mean PSNR over a grid), so the baseline is as strong as it gets.

    python benchmarks/denoiser.py --images photos --size 128
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from scipy.ndimage import gaussian_filter

from blinddps.diffusion import DiffusionSchedule
from blinddps.evaluation.datasets import load_images
from blinddps.evaluation.metrics import psnr
from blinddps.models.checkpoints import SHIPPED_DIR
from blinddps.models.wrappers import load_saved


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default="photos")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--model", default=str(SHIPPED_DIR / "image_photo64.safetensors"))
    ap.add_argument("--sigmas", default="0.05,0.1,0.2")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    x = torch.stack([im.image for im in load_images(a.images, a.size)])
    model = load_saved(a.model).eval()
    sched = DiffusionSchedule.create(None)
    levels = np.sqrt(1 - sched.alphas_cumprod) / np.sqrt(sched.alphas_cumprod)
    g = torch.Generator().manual_seed(a.seed)
    print(f"{len(x)} images {a.size}², model {a.model.split('/')[-1]}; noise std on the [-1, 1] scale")
    print()
    print("| σ | step t | noisy PSNR | Gaussian filter (best std) | Tweedie denoiser | gain over filter |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for sigma in [float(s) for s in a.sigmas.split(",")]:
        t = int(np.abs(levels - sigma).argmin())
        s_t = float(levels[t])
        noisy = x + s_t * torch.randn(x.shape, generator=g)
        idx = torch.full((len(x),), t)
        with torch.no_grad():
            x_t = noisy * float(np.sqrt(sched.alphas_cumprod[t]))
            eps = model(x_t, idx)[:, :3]
            den = sched.predict_x0(x_t, idx, eps).clamp(-1, 1)
        best = max(
            ((np.mean(psnr(torch.from_numpy(gaussian_filter(noisy.numpy(), (0, 0, s, s))).clamp(-1, 1), x)), s)
             for s in np.arange(0.3, 3.01, 0.1)),
        )
        p_noisy, p_den = np.mean(psnr(noisy.clamp(-1, 1), x)), np.mean(psnr(den, x))
        print(f"| {s_t:.3f} | {t} | {p_noisy:.2f} | {best[0]:.2f} ({best[1]:.1f} px) | {p_den:.2f} | {p_den - best[0]:+.2f} dB |")


if __name__ == "__main__":
    main()
