"""Time and peak memory of the photo pipeline against image size (issue 20).

    python benchmarks/photo_scaling.py [--megapixels 0.25 1 4 12] [--estimator l0]

Each size is one synthetic photo (a Lai sharp image tiled by mirroring to the size,
a 65-px held-out camera-shake kernel, noise 0.01, 8-bit), run with the default
settings in a fresh process (so each peak resident memory is that run's own).
Prints seconds per stage and in total, peak resident memory, and seconds per
megapixel.
"""
from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys

import numpy as np


def one(mp: float, estimator: str, threads: int) -> dict:
    import torch

    from blinddps.evaluation.levin import lai_sharp_images
    from blinddps.photo import deblur_photo
    from blinddps.photo.simulate import simulate_photo
    from blinddps.simulate.shake import camera_shake_kernels

    torch.set_num_threads(threads)
    base = lai_sharp_images()["lai_natural_03"].astype(np.float64).transpose(2, 0, 1) / 255.0
    side_w = int(round(np.sqrt(mp * 1e6 * 4 / 3)))
    side_h = int(round(mp * 1e6 / side_w))
    K = 65
    reps = (1, side_h // base.shape[1] + 2, side_w // base.shape[2] + 2)
    tiled = np.concatenate([base, base[:, ::-1]], axis=1)
    tiled = np.concatenate([tiled, tiled[:, :, ::-1]], axis=2)
    tiled = np.tile(tiled, (1, reps[1] // 2 + 1, reps[2] // 2 + 1))[:, :side_h + K - 1, :side_w + K - 1]
    k = camera_shake_kernels(1, size=K, extent=(0.8, 0.9), generator=torch.Generator().manual_seed(7))[0, 0]
    y = simulate_photo(tiled, k.double().numpy(), noise=0.01)
    del tiled
    sol = deblur_photo(torch.from_numpy(2 * y - 1).float(), estimator=estimator, kernel_size=K, workers=threads)
    st = sol.timings["stages"]
    return {"megapixels": y.shape[1] * y.shape[2] / 1e6, "shape": list(y.shape[1:]), "total_s": sol.timings["total_s"],
            "kernel_s": st["kernel"]["seconds"], "restore_s": st["restore"]["seconds"],
            "peak_rss_mb": sol.timings["peak_rss_mb"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--megapixels", type=float, nargs="+", default=[0.25, 1.0, 4.0, 12.0])
    ap.add_argument("--estimator", default="l0", help="the pipeline's default")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--one", type=float, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one is not None:
        print("RESULT " + json.dumps(one(args.one, args.estimator, args.threads)))
        return 0
    rows = []
    for mp in args.megapixels:
        p = subprocess.run([sys.executable, __file__, "--one", str(mp), "--estimator", args.estimator,
                            "--threads", str(args.threads)], capture_output=True, text=True)
        line = next((ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")), None)
        if line is None:
            print(f"{mp} MP failed: {p.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            continue
        r = json.loads(line[7:])
        rows.append(r)
        print(f"{r['megapixels']:.2f} MP: {r['total_s']:.1f} s, peak {r['peak_rss_mb']:.0f} MB", flush=True)
    print(f"\nphoto pipeline, estimator {args.estimator}, 65-px kernel, default settings; "
          f"{platform.machine()}, {args.threads} thread(s)")
    print("| megapixels | size | kernel (s) | restore (s) | total (s) | s / MP | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['megapixels']:.2f} | {r['shape'][1]}x{r['shape'][0]} | {r['kernel_s']:.1f} | {r['restore_s']:.1f} | "
              f"{r['total_s']:.1f} | {r['total_s'] / r['megapixels']:.1f} | {r['peak_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
