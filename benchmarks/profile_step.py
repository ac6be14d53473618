"""Time and peak memory of one sampler step, per component, at 128², 256², 512² with the
shipped motion priors, 'same' and 'valid' (issue 19). Each (size, mode, attention)
runs in its own process, so its peak RSS is its own.

    python benchmarks/profile_step.py                       # the table, attention as shipped and as before
    python benchmarks/profile_step.py --sizes 128 --modes valid --attention new

``--attention old`` swaps in the former ``_attend`` (3-D transposed q/k/v, which sends
``scaled_dot_product_attention`` down its reference path: a T×T score matrix).
Components: the gradient-guided BlindDPS step of ``motion_deblur`` (4 samples: image UNet
forward and backward, kernel UNet forward+backward, FFT blur forward+backward, the
30-iteration least-squares kernel as shipped and cached) and the proximal step of
``motion_fast`` (1 sample: image UNet forward without autograd, the image data step, the
kernel data step, the kernel UNet forward+backward).
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
import torch.nn.functional as F


def _old_attend(q, k, v):
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def _timed(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        fn()
        best = min(best, time.process_time() - t)
    return best


def measure(size: int, mode: str, attention: str, samples: int) -> dict:
    from blinddps.models import unet
    from blinddps.operators.blur import gradient_pair, image_proximal, kernel_least_squares, \
        kernel_least_squares_cached
    from blinddps.presets import build_operator, build_variables, load_preset

    if attention == "old":
        unet._attend = _old_attend
    torch.set_num_threads(1)
    cfg = load_preset("motion_deblur")
    op = build_operator({**cfg["operator"], "mode": mode})
    var = build_variables(cfg, operator=op)
    img, ker = var["image"].prior, var["kernel"].prior
    H = size + (31 if mode == "valid" else 0)
    H += (-H) % 8
    g = torch.Generator().manual_seed(0)
    repeat = 2 if size <= 256 else 1
    idx = torch.full((samples,), 100)
    x = torch.randn(samples, 3, H, H, generator=g)
    kx = torch.randn(samples, 1, 32, 32, generator=g)
    k = torch.rand(samples, 1, 32, 32, generator=g)
    k = k / k.sum((1, 2, 3), keepdim=True)
    y = op.forward(x.clamp(-1, 1), kernel=k)
    row = {"size": size, "mode": mode, "attention": attention}

    leaf = x.clone().requires_grad_(True)
    out = {}

    def image_fwd():
        out["x0"] = img.denoise(leaf, idx).x0

    row["image_fwd"] = _timed(image_fwd, repeat)
    row["image_bwd"] = _timed(lambda: torch.autograd.grad(out["x0"].sum(), leaf, retain_graph=True), repeat)

    def kernel_fwd_bwd():
        kl = kx.clone().requires_grad_(True)
        torch.autograd.grad(ker.denoise(kl, idx).x0.sum(), kl)

    row["kernel_fwd_bwd"] = _timed(kernel_fwd_bwd, repeat)

    def blur_fwd_bwd():
        xl = x.clone().requires_grad_(True)
        torch.autograd.grad(op.forward(xl, kernel=k).sum(), xl)

    row["blur_fwd_bwd"] = _timed(blur_fwd_bwd, repeat)
    row["ls_kernel_30"] = _timed(lambda: kernel_least_squares(x, y, (32, 32), mode), repeat)
    row["ls_kernel_30_cached"] = _timed(lambda: kernel_least_squares_cached(x, y, (32, 32), mode), repeat)
    row["dps_step"] = row["image_fwd"] + row["image_bwd"] + row["kernel_fwd_bwd"] + row["blur_fwd_bwd"] \
        + row["ls_kernel_30"]
    # the proximal step, one sample
    x1, y1, k1, kx1, idx1 = x[:1], y[:1], k[:1], kx[:1], idx[:1]
    with torch.no_grad():
        row["prox_image_fwd"] = _timed(lambda: img.denoise(x1, idx1), repeat)
        row["prox_image_step"] = _timed(lambda: image_proximal(x1, y1, k1, 0.01, mode, iters=4), repeat)
        xg, yg = gradient_pair(x1, y1, mode, (32, 32))
        row["prox_kernel_step"] = _timed(
            lambda: kernel_least_squares_cached(xg, yg, (32, 32), "valid", iters=10, init=k1), repeat)

    def kernel_fwd_bwd1():
        kl = kx1.clone().requires_grad_(True)
        torch.autograd.grad(ker.denoise(kl, idx1).x0.sum(), kl)

    row["prox_kernel_unet"] = _timed(kernel_fwd_bwd1, repeat)
    row["prox_step"] = row["prox_image_fwd"] + row["prox_image_step"] + row["prox_kernel_step"] \
        + row["prox_kernel_unet"]
    row["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,256,512")
    ap.add_argument("--modes", default="same,valid")
    ap.add_argument("--attention", default="new,old", help="new (as shipped), old (the former _attend), or both")
    ap.add_argument("--samples", type=int, default=4, help="batch of the BlindDPS step (the preset's samples)")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(measure(int(args.sizes), args.modes, args.attention, args.samples)))
        return
    rows = []
    for att in args.attention.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            for mode in args.modes.split(","):
                res = subprocess.run([sys.executable, __file__, "--one", "--sizes", str(size), "--modes", mode,
                                      "--attention", att, "--samples", str(args.samples)],
                                     capture_output=True, text=True, check=True)
                rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
                print(json.dumps(rows[-1]), flush=True)
    cols = ["image_fwd", "image_bwd", "kernel_fwd_bwd", "blur_fwd_bwd", "ls_kernel_30", "ls_kernel_30_cached",
            "dps_step", "prox_image_fwd", "prox_image_step", "prox_kernel_step", "prox_kernel_unet", "prox_step",
            "peak_rss_gib"]
    print("| attention | size | mode | " + " | ".join(cols) + " |")
    print("|---|---:|---|" + "---:|" * len(cols))
    for r in rows:
        print(f"| {r['attention']} | {r['size']} | {r['mode']} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |")


if __name__ == "__main__":
    main()
