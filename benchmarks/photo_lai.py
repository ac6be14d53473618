"""Lai et al. 2016 synthetic set through the photo pipeline (issue 20).

    python benchmarks/photo_lai.py [--estimators l0 blinddps] [--out runs/photo_lai] [--names ...]

Reads ``lai.npz`` from the benchmarks folder (``../shared/benchmarks`` or
$BLINDDPS_BENCHMARKS; never copied into the repo). Provenance: those blurred images
are circular *convolutions* of the 8-bit sRGB values (no linear light, no noise), so
the pipeline runs with ``linear_light=False`` here and the true kernel in our
correlation convention is the stored kernel rotated by 180 degrees. Scores: PSNR and
SSIM after the best integer shift (up to 8 px, a 8-px frame left out) on [0, 1],
and kernel MNC; per image a row per estimator, then means per kernel size, beside the
blurry input and TV deconvolution with the true kernel (the restoration's ceiling).
Per-image results are cached as JSON in ``--out`` (re-running resumes).
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


def main(argv=None) -> int:
    from blinddps.evaluation.levin import benchmarks_dir
    from blinddps.evaluation.metrics import aligned_psnr, aligned_ssim, mnc
    from blinddps.photo import deblur_photo, deconvolve

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--estimators", nargs="+", default=["l0", "blinddps"])
    ap.add_argument("--preset", default=None, help="BlindDPS preset of the coarse estimate (default: the pipeline's)")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--names", nargs="+", default=None)
    ap.add_argument("--kernels", nargs="+", type=int, default=[1, 2, 3, 4])
    ap.add_argument("--out", default="runs/photo_lai")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--refine-iters", type=int, default=None, help="alternations per refinement level")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    folder = benchmarks_dir()
    if folder is None or not (folder / "lai.npz").is_file():
        print("lai.npz not found (../shared/benchmarks or $BLINDDPS_BENCHMARKS)", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    z = np.load(folder / "lai.npz")
    names = args.names or [str(n) for n in z["names"]]
    rows = []
    for name in names:
        sharp = z[f"sharp_{name}"].astype(np.float64).transpose(2, 0, 1) / 255.0
        for j in args.kernels:
            k_true = z[f"kernel_{j}"][::-1, ::-1].copy()
            y = z[f"blurred_{name}_{j}"].astype(np.float64).transpose(2, 0, 1) / 255.0
            for est in ["blurry", "true_kernel_tv"] + args.estimators:
                tag = est if est != "blinddps" or not args.preset else f"blinddps-{args.preset}"
                cache = out / f"{name}_{j}_{tag}.json"
                if cache.is_file():
                    rows.append(json.loads(cache.read_text()))
                    continue
                t0 = time.perf_counter()
                k_est = None
                if est == "blurry":
                    x = y
                elif est == "true_kernel_tv":
                    x = np.clip(deconvolve(y, k_true), 0, 1)
                else:
                    kw = {"preset": args.preset} if args.preset else {}
                    if args.refine_iters:
                        kw["refine_iters"] = args.refine_iters
                    sol = deblur_photo(torch.from_numpy(2 * y - 1).float(), estimator=est, kernel_size=k_true.shape[0],
                                       linear_light=False, steps=args.steps, workers=args.threads, **kw)
                    x = (sol.image[0].numpy().astype(np.float64) + 1) / 2
                    k_est = sol.params["kernel"][0, 0].numpy().astype(np.float64)
                sec = time.perf_counter() - t0
                r = {"image": name, "kernel": j, "ksize": int(k_true.shape[0]), "method": tag,
                     "psnr": float(aligned_psnr(x, sharp, max_shift=8, data_range=1.0)[0]),
                     "ssim": float(aligned_ssim(x, sharp, max_shift=8, data_range=1.0)[0]),
                     "mnc": float(mnc(k_est, k_true)) if k_est is not None else None, "seconds": sec}
                if k_est is not None:
                    np.save(out / f"{name}_{j}_{tag}_kernel.npy", k_est)
                    if sol.settings["photo"].get("choice"):
                        r["choice"] = sol.settings["photo"]["choice"]
                        for n, c in sol.param_samples.items():
                            if n.startswith("kernel:"):
                                np.save(out / f"{name}_{j}_{tag}_kernel_{n.split(':', 1)[1]}.npy", c[0, 0].numpy())
                        r["candidate_mnc"] = {n.split(":", 1)[1]: float(mnc(c[0, 0].numpy().astype(np.float64), k_true))
                                              for n, c in sol.param_samples.items() if n.startswith("kernel:")}
                cache.write_text(json.dumps(r))
                rows.append(r)
                print(f"{name} k{j} {tag:>24}: {r['psnr']:6.2f} dB  SSIM {r['ssim']:.3f}  "
                      f"MNC {r['mnc'] if r['mnc'] is None else round(r['mnc'], 3)}  {sec:6.1f} s"
                      + (f"  chose {r['choice']['chosen']} of {r['candidate_mnc']}" if "choice" in r else ""), flush=True)
    methods = list(dict.fromkeys(r["method"] for r in rows))
    sizes = sorted({r["ksize"] for r in rows})
    print(f"\nLai et al. 2016 synthetic, {len(names)} images x {len(args.kernels)} kernels; "
          f"{platform.processor() or platform.machine()}, {args.threads} thread(s)")
    print("| method | " + " | ".join(f"{s} px: PSNR / SSIM / MNC" for s in sizes) + " | all: PSNR / MNC | s/image |")
    print("|---" * (len(sizes) + 3) + "|")
    for m in methods:
        cells = []
        for s in sizes:
            rs = [r for r in rows if r["method"] == m and r["ksize"] == s]
            mn = [r["mnc"] for r in rs if r["mnc"] is not None]
            cells.append(f"{np.mean([r['psnr'] for r in rs]):.2f} / {np.mean([r['ssim'] for r in rs]):.3f} / "
                         + (f"{np.mean(mn):.3f}" if mn else "–"))
        rs = [r for r in rows if r["method"] == m]
        mn = [r["mnc"] for r in rs if r["mnc"] is not None]
        cells.append(f"{np.mean([r['psnr'] for r in rs]):.2f} / " + (f"{np.mean(mn):.3f}" if mn else "–"))
        cells.append(f"{np.mean([r['seconds'] for r in rs]):.1f}")
        print(f"| {m} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
