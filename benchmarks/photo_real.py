"""Real blurred photographs (no ground truth) through the photo pipeline (issue 20).

    python benchmarks/photo_real.py [--estimator l0] [--figures docs/figures/photo_real]

The 12 Lai et al. 2016 real photos and 4 Köhler et al. 2012 camera-shake photos in
``real_blurry/`` of the benchmarks folder (../shared/benchmarks or
$BLINDDPS_BENCHMARKS; never copied into the repo). Each is read as a user's photo
(``blinddps.io.read_image``: EXIF orientation, 8-bit sRGB), restored with the default
settings and an automatic kernel size (``--kernel-size`` to fix one), and written as a
before | after figure with the estimated kernel (JPEG, for the docs). Prints a table of
sizes, kernel sizes, seconds and peak memory.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

import numpy as np
import torch


def figure(y: np.ndarray, x: np.ndarray, k: np.ndarray, path: Path, width: int = 520) -> None:
    from PIL import Image

    def pil(a):
        return Image.fromarray((np.clip(a, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8))

    a, b = pil(y), pil(x)
    h = int(round(a.height * width / a.width))
    a, b = a.resize((width, h), Image.LANCZOS), b.resize((width, h), Image.LANCZOS)
    kk = (k / k.max() * 255).astype(np.uint8)
    side = max(48, min(h // 3, 4 * kk.shape[0]))
    kim = Image.fromarray(kk).resize((side, side), Image.NEAREST).convert("RGB")
    canvas = Image.new("RGB", (2 * width + 8, h), (255, 255, 255))
    canvas.paste(a, (0, 0))
    canvas.paste(b, (width + 8, 0))
    canvas.paste(kim, (2 * width + 8 - side, h - side))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path, quality=85)


def main(argv=None) -> int:
    from blinddps.evaluation.levin import benchmarks_dir
    from blinddps.io import read_image
    from blinddps.photo import deblur_photo

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--estimator", default=None)
    ap.add_argument("--kernel-size", type=int, default=None)
    ap.add_argument("--figures", default="runs/photo_real")
    ap.add_argument("--out", default="runs/photo_real")
    ap.add_argument("--names", nargs="+", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    folder = benchmarks_dir()
    if folder is None or not (folder / "real_blurry").is_dir():
        print("real_blurry/ not found (../shared/benchmarks or $BLINDDPS_BENCHMARKS)", file=sys.stderr)
        return 2
    files = sorted((folder / "real_blurry" / "lai_real").glob("*.jpg")) + sorted(
        (folder / "real_blurry" / "kohler").glob("*.png"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for f in files:
        if args.names and f.stem not in args.names:
            continue
        cache = out / f"{f.stem}.json"
        if cache.is_file():
            rows.append(json.loads(cache.read_text()))
            continue
        y, info = read_image(f)
        kw = {"estimator": args.estimator} if args.estimator else {}
        sol = deblur_photo(y[0], kernel_size=args.kernel_size, workers=1, **kw)
        k = sol.params["kernel"][0, 0].numpy()
        figure((y[0].numpy() + 1) / 2, (sol.image[0].numpy() + 1) / 2, k, Path(args.figures) / f"{f.stem}.jpg")
        r = {"name": f.stem, "set": f.parent.name, "size": [info.width, info.height], "kernel_px": int(k.shape[0]),
             "estimator": sol.settings["photo"]["estimator"], "choice": sol.settings["photo"].get("choice"),
             "seconds": sol.timings["total_s"], "peak_rss_mb": sol.timings["peak_rss_mb"],
             "residual_rms": float(sol.residual_rms[0])}
        cache.write_text(json.dumps(r))
        rows.append(r)
        print(f"{f.stem}: {info.width}x{info.height}, kernel {k.shape[0]} px, {r['seconds']:.1f} s", flush=True)
    print(f"\nreal blurred photos, photo pipeline defaults, automatic kernel size; {platform.machine()}, 1 thread")
    print("| photo | set | size | kernel (px) | chosen | s | peak MB |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ch = (r.get("choice") or {}).get("chosen", r["estimator"])
        print(f"| {r['name']} | {r['set']} | {r['size'][0]}x{r['size'][1]} | {r['kernel_px']} | {ch} | "
              f"{r['seconds']:.1f} | {r['peak_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
