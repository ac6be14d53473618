#!/usr/bin/env python
"""Compare samples of a trained prior with its training data (the numbers in docs/models.md).

    python scripts/prior_stats.py src/blinddps/weights/kernel_motion32 [--n 64] [--steps 100]
        [--data data/photos] [--grid OUT.png]

Draws ``n`` samples by ancestral DDPM sampling (respaced to ``steps``) and ``n`` training
examples from the source described in the model's YAML, and prints, for both:

* kernels (physical, summing to 1): 95 % support (pixels), trajectory-length proxy
  (pixels ≥ 0.1 × max), mass in faint pixels (< 5 % of the max: background haze);
* tilt maps (pixels): std, mean |horizontal difference|, lag-1 correlation;
* images: std, mean |horizontal difference|, mean channel spread (saturation).
"""
from __future__ import annotations

import argparse
import sys

import torch


def kernel_stats(x: torch.Tensor) -> dict[str, float]:
    from blinddps.simulate.kernels import kernel_support, trajectory_length
    from blinddps.transforms import KernelSimplex

    k = KernelSimplex().to_physical(x.clamp(-1, 1))
    peak = k.flatten(1).amax(1).view(-1, 1, 1, 1)
    faint = (k * (k < 0.05 * peak)).flatten(1).sum(1)
    return {
        "support95_px": kernel_support(k).double().mean().item(),
        "trajectory_px": trajectory_length(k).double().mean().item(),
        "faint_mass": faint.mean().item(),
    }


def field_stats(x: torch.Tensor, scale: float) -> dict[str, float]:
    p = x * scale
    dx = (p[..., 1:] - p[..., :-1]).abs().mean().item()
    a, b = p[..., 1:].flatten(), p[..., :-1].flatten()
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1].item()
    return {"std": p.std().item(), "mean_abs_dx": dx, "lag1_corr": corr}


def image_stats(x: torch.Tensor) -> dict[str, float]:
    v = (x.clamp(-1, 1) + 1) / 2
    return {
        "std": v.std().item(),
        "mean_abs_dx": (v[..., 1:] - v[..., :-1]).abs().mean().item(),
        "saturation": (v.amax(1) - v.amin(1)).mean().item(),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", help="NAME or NAME.safetensors written by blinddps train")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--seed", type=int, default=123)
    ap.add_argument("--data", default=None, help="image folder (image priors)")
    ap.add_argument("--grid", default=None, help="also save a sample grid PNG here")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    from blinddps.diffusion.schedule import DiffusionSchedule
    from blinddps.models.wrappers import load_saved
    from blinddps.training.data import build_source
    from blinddps.training.trainer import ddpm_sample, save_grid, to_display

    model = load_saved(args.model)
    meta = model.metadata
    task = meta["task"]
    training = meta["training"]
    data_opts = dict(training["data"])
    source = build_source(task, data_opts, generator=args.seed, data_folder=args.data)
    real = source.sample(args.n)
    sched = DiffusionSchedule.create(args.steps, noise_schedule=training.get("noise_schedule", "linear"),
                                     num_timesteps=int(training.get("num_timesteps", 1000)))
    shape = (args.n, source.channels, source.height, source.width)
    with torch.no_grad():
        fake = ddpm_sample(model, sched, shape, torch.Generator().manual_seed(args.seed))
    if args.grid:
        save_grid(to_display(fake, task), args.grid)
    if task == "kernel":
        fn = kernel_stats
    elif task == "tilt":
        scale = float(data_opts.get("scale", 2.5))
        fn = lambda x: field_stats(x, scale)  # noqa: E731
    else:
        fn = image_stats
    rs, fs = fn(real), fn(fake)
    print(f"{meta.get('name', args.model)} ({task}), {args.n} samples, {args.steps} DDPM steps")
    print(f"{'statistic':<16}{'data':>10}{'samples':>10}")
    for k in rs:
        print(f"{k:<16}{rs[k]:>10.4f}{fs[k]:>10.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
