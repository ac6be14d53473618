"""Synthetic ~1 MP camera photos with held-out camera shake through the photo pipeline.

    python benchmarks/photo_synthetic.py [--estimators l0 blinddps] [--size 64] [--upscale 1.35]

Scenes: the Lai et al. sharp images (never trained or tuned on), upscaled by
``--upscale`` (bicubic) to about 1 MP. Blur: one kernel per image from the held-out
camera-shake family (``blinddps.simulate.shake``, never trained or tuned on),
``--size`` px, applied in linear light with real borders (the frame is cut from a
larger scene, 'valid' model), sensor noise of std ``--noise`` on the recorded [0, 1]
scale, sRGB-encoded, 8-bit. Scores: PSNR after the best integer shift (up to 8 px,
on [0, 1]) against the sharp frame, the blurry input's PSNR beside it, kernel MNC,
seconds and peak resident memory. Cached per image in ``--out``.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch


def scenes(upscale: float) -> dict[str, np.ndarray]:
    from skimage.transform import rescale

    from blinddps.evaluation.levin import lai_sharp_images

    out = {}
    for name, im in lai_sharp_images().items():
        x = im.astype(np.float64) / 255.0
        if upscale != 1.0:
            x = np.clip(rescale(x, upscale, order=3, channel_axis=-1, anti_aliasing=False), 0, 1)
        out[name] = x.transpose(2, 0, 1)
    return out


def main(argv=None) -> int:
    from blinddps.evaluation.metrics import aligned_psnr, mnc
    from blinddps.photo import deblur_photo
    from blinddps.photo.simulate import simulate_photo
    from blinddps.simulate.shake import camera_shake_kernels

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--estimators", nargs="+", default=["l0", "blinddps"])
    ap.add_argument("--size", type=int, default=65, help="kernel box, px (odd)")
    ap.add_argument("--extent", type=float, nargs=2, default=[0.7, 0.95], help="shake path's extent / box")
    ap.add_argument("--noise", type=float, default=0.01)
    ap.add_argument("--upscale", type=float, default=1.35)
    ap.add_argument("--names", nargs="+", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/photo_synthetic")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--refine-iters", type=int, default=None, help="alternations per refinement level")
    ap.add_argument("--alt-floors", type=float, nargs="*", default=None,
                    help="further kernel floors (default: the pipeline's; none: one estimate)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sc = scenes(args.upscale)
    if not sc:
        print("the Lai sharp images were not found (../shared/benchmarks/lai.npz)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.names or list(sc)
    gen = torch.Generator().manual_seed(1234 + args.seed)
    ks = camera_shake_kernels(len(sc), size=args.size, extent=tuple(args.extent), generator=gen)[:, 0].double().numpy()
    rows = []
    for i, name in enumerate(sc):
        if name not in names:
            continue
        x, k = sc[name], ks[i]
        y = simulate_photo(x, k, noise=args.noise, seed=args.seed + i)
        m = (args.size - 1) // 2
        ref = x[:, m:m + y.shape[1], m:m + y.shape[2]]
        mp = y.shape[1] * y.shape[2] / 1e6
        for est in ["blurry"] + args.estimators:
            cache = out / f"{name}_{est}.json"
            if cache.is_file():
                rows.append(json.loads(cache.read_text()))
                continue
            t0 = time.perf_counter()
            if est == "blurry":
                xe, k_est, peak, cands = y, None, None, {}
            else:
                kw = {"refine_iters": args.refine_iters} if args.refine_iters else {}
                if args.alt_floors is not None:
                    kw["alt_floors"] = tuple(args.alt_floors)
                sol = deblur_photo(torch.from_numpy(2 * y - 1).float(), estimator=est, kernel_size=args.size,
                                   seed=args.seed, workers=args.threads, **kw)
                xe = (sol.image[0].numpy().astype(np.float64) + 1) / 2
                k_est = sol.params["kernel"][0, 0].numpy().astype(np.float64)
                peak = sol.timings["peak_rss_mb"]
                cands = {n.split(":", 1)[1]: float(mnc(c[0, 0].numpy().astype(np.float64), k))
                         for n, c in sol.param_samples.items() if n.startswith("kernel:")}
            r = {"image": name, "method": est, "megapixels": mp,
                 "psnr": float(aligned_psnr(xe, ref, max_shift=8, data_range=1.0)[0]),
                 "mnc": None if k_est is None else float(mnc(k_est, k)),
                 "seconds": time.perf_counter() - t0, "peak_rss_mb": peak, "candidate_mnc": cands}
            cache.write_text(json.dumps(r))
            rows.append(r)
            print(f"{name} {mp:.2f} MP {est:>9}: {r['psnr']:6.2f} dB  MNC {r['mnc']}  {r['seconds']:.1f} s", flush=True)
    print(f"\nheld-out camera shake {args.size} px (extent {args.extent}), real borders, noise {args.noise}, "
          f"8-bit sRGB; Lai sharp x{args.upscale}; {platform.machine()}, {args.threads} thread(s)")
    print("| method | PSNR (dB) | gain over blurry | MNC | s/image | peak MB |")
    print("|---|---|---|---|---|---|")
    blur = {r["image"]: r["psnr"] for r in rows if r["method"] == "blurry"}
    for m in dict.fromkeys(r["method"] for r in rows):
        rs = [r for r in rows if r["method"] == m]
        gain = np.mean([r["psnr"] - blur[r["image"]] for r in rs])
        mn = [r["mnc"] for r in rs if r["mnc"] is not None]
        pk = [r["peak_rss_mb"] for r in rs if r["peak_rss_mb"]]
        print(f"| {m} | {np.mean([r['psnr'] for r in rs]):.2f} | {gain:+.2f} | "
              + (f"{np.mean(mn):.3f}" if mn else "–") + f" | {np.mean([r['seconds'] for r in rs]):.1f} | "
              + (f"{max(pk):.0f}" if pk else "–") + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
