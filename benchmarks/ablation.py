"""Ablations of the blind sampler with the shipped priors: step-size rules, the kernel
update (pure BlindDPS vs an EM-style blend with the least-squares kernel), a sparsity
regulariser, a flat kernel prior, and the step count; non-blind DPS as the upper bound.

Blind motion deblurring of held-out photographs (scikit-image samples, never trained
on): 128x128, 32x32 motion kernels at intensity 0.5, sigma = 0.02. Prints a Markdown
table of means: PSNR (raw and after the best integer shift), kernel MNC, and the MNC a
centred Gaussian blob scores against the same kernels (the floor).

    python benchmarks/ablation.py --images photos --limit 4 --threads 1
    python benchmarks/ablation.py --variants "preset,one posterior" --extra-steps 50,100
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from blinddps import solve
from blinddps.evaluation.datasets import load_images
from blinddps.evaluation.metrics import aligned_psnr, blob_floor_mnc, mnc, psnr
from blinddps.operators import BlindBlur
from blinddps.simulate import motion_kernels

VARIANTS: dict[str, dict] = {
    # relative to the preset (motion_deblur: stride rule, image 2.0 and kernel 0.3 with size
    # scaling, kernel floor 0.05, mean of 4 posterior samples)
    "preset as is": {},
    "one posterior sample": {"num_samples": 1},
    "mean of 8 posterior samples": {"num_samples": 8},
    "original rule (ζ=√ᾱ, scale 1)": {"priors": {"image": {"step": {"rule": "original", "scale": 1.0}},
                                                  "kernel": {"step": {"rule": "original", "scale": 1.0}}}},
    "constant ζ (image 2, kernel 0.3)": {"priors": {"image": {"step": {"rule": "constant", "scale": 2.0}},
                                                     "kernel": {"step": {"rule": "constant", "scale": 0.3}}}},
    "image guidance 1.0 (earlier preset)": {"priors": {"image": {"step": {"scale": 1.0}}}},
    "kernel guidance ×3": {"priors": {"kernel": {"step": {"scale": 0.9}}}},
    "kernel guidance ×1/3": {"priors": {"kernel": {"step": {"scale": 0.1}}}},
    "EM kernel blend w=0.3": {"priors": {"kernel": {"data_weight": 0.3}}},
    "ℓ0.5 kernel sparsity": {"priors": {"kernel": {"regularizer": {"name": "lp", "weight": 0.05, "power": 0.5}}}},
    "no kernel floor": {"priors": {"kernel": {"transform": {"name": "kernel_simplex", "floor": 0.0}}}},
    "flat kernel prior": {"priors": {"kernel": {"model": "flat"}}},
    "DDIM η=0 (deterministic)": {"method": "ddim", "eta": 0.0},
    "DDIM η=0.5": {"method": "ddim", "eta": 0.5},
}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", default="photos")
    ap.add_argument("--limit", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--kernel-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=None, help="default: the preset's")
    ap.add_argument("--preset", default="motion_deblur")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="", help="comma-separated substrings of variant names to run (default all)")
    ap.add_argument("--extra-steps", default="", help="also run the default at these step counts, e.g. 25,50,250")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    images = load_images(a.images, a.size, limit=a.limit)
    x = torch.stack([im.image for im in images])
    k = motion_kernels(len(images), a.kernel_size, 0.5, generator=a.seed)
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(a.seed + 1))
    y = BlindBlur(a.kernel_size).forward(x, kernel=k) + 0.02 * noise
    floor = np.mean([blob_floor_mnc(k[i, 0].numpy()) for i in range(len(images))])
    print(f"{len(images)} images ({', '.join(im.name for im in images)}), {a.size}², "
          f"{a.kernel_size}² motion kernels at intensity 0.5, σ=0.02, seed {a.seed}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} cpus")
    print()
    print(f"blurry input: PSNR {np.mean(psnr(y, x)):.2f} dB; blob-floor MNC {floor:.3f}")
    print()
    print("| variant | steps | PSNR | aligned PSNR | kernel MNC | s / image |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")

    def report(name, steps, **kw):
        t0 = time.perf_counter()
        sol = solve(y, a.preset, steps=steps, seed=a.seed, **kw)
        secs = (time.perf_counter() - t0) / len(images)
        p = np.mean(psnr(sol.image, x))
        ap_ = np.mean([aligned_psnr(sol.image[i], x[i])[0] for i in range(len(images))])
        m = (np.mean([mnc(sol.params["kernel"][i, 0].numpy(), k[i, 0].numpy()) for i in range(len(images))])
             if "kernel" in sol.params and "fixed" not in kw else float("nan"))
        print(f"| {name} | {sol.timings['steps']} | {p:.2f} | {ap_:.2f} | {m:.3f} | {secs:.1f} |", flush=True)

    wanted = [s.strip() for s in a.variants.split(",") if s.strip()]
    for name, over in VARIANTS.items():
        if wanted and not any(w in name for w in wanted):
            continue
        report(name, a.steps, **over)
    for steps in [int(s) for s in a.extra_steps.split(",") if s.strip()]:
        report("preset as is", steps)
    report("non-blind DPS (true kernel)", a.steps, fixed={"kernel": k})


if __name__ == "__main__":
    main()
