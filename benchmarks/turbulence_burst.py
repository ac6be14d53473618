"""Turbulence bursts: N frames of one static scene, each with its own tilt, one blur.

Per image: a 32x32 Gaussian kernel of std 3.0, a burst of max(--frames) frames, each
warped by its own tilt map (the paper's recipe, clipped to ±2.5 px) then blurred,
σ = 0.02 noise; a burst of N is the first N frames. Methods, per N:

* ``burst``          ours, DPS solver: ``blinddps.burst.solve_burst`` (turbulence_burst,
                     the default of ``--burst``)
* ``burst_fast``     ours, fast proximal solver (turbulence_burst_fast):
                     tilts held at zero while the image is restored, each frame
                     registered to the result afterwards
* ``burst_fast_loop`` the same with the tilts registered inside the loop (a variant)
* ``avg_diffusion``  average the N frames, then blind-deblur the average with our
                     diffusion deblurring (preset gaussian_deblur)
* ``avg_l0``         average the N frames, then L0 blind deblurring (Pan et al.)
* ``avg_fast``       average the N frames, then our fast solver on the average (the
                     burst_fast preset with one frame: a blind Gaussian deblur)
* ``average``        the plain average (what the frames give without any work)
* ``single``         the single-frame BlindDPS turbulence preset on frame 0 (N = 1)
* ``true_tilt``      the fast burst solver with the true tilts fixed (an upper bound)
* ``tilt_prior``     solve_burst with the shipped diffusion tilt prior over the frames
                     instead of registration (a variant)

Tilt metrics: end-point error (mean over pixels and frames of the length of the error
vector, px) beside the error of predicting zero tilt, and the same after smoothing both
fields with a Gaussian of the blur's std (the part of the tilt the blurred frames can
show). Each finished (method, N, image) is a row of ``OUT/rows.jsonl``; a rerun skips
rows already there. ``OUT/summary.json`` holds the table, ``OUT/table.md`` prints it.

    python benchmarks/turbulence_burst.py --out runs/burst128 --limit 6 --threads 1
    python benchmarks/turbulence_burst.py --out runs/burst128 --methods burst --frames 16
    python benchmarks/turbulence_burst.py --out runs/burst128 --table-only --figure docs/figures/turbulence_burst.png
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

METHODS = ("average", "avg_l0", "avg_diffusion", "avg_fast", "single", "burst", "burst_fast", "burst_fast_loop",
           "true_tilt", "tilt_prior")
LABELS = {
    "average": "average of the frames",
    "avg_l0": "average, then L0 blind deblurring",
    "avg_diffusion": "average, then our diffusion deblurring (gaussian_deblur)",
    "single": "single-frame BlindDPS turbulence preset (frame 0)",
    "avg_fast": "average, then our fast diffusion deblurring (turbulence_burst_fast, N = 1)",
    "burst": "**burst, DPS solver (turbulence_burst: ours, the default)**",
    "burst_fast": "burst, fast solver (turbulence_burst_fast)",
    "burst_fast_loop": "burst, fast solver, tilts registered inside the loop",
    "true_tilt": "burst, fast solver, true tilts given (upper bound)",
    "tilt_prior": "burst, diffusion tilt prior over the frames",
}
IN_LOOP = {"operator": {"final_register": 0}, "priors": {"tilt": {"data_weight": 1.0, "data_start": 0.5}}}
TILT_PRIOR = {"priors": {"tilt": {"model": "shipped:tilt64", "data_weight": 0.0,
                                  "step": {"rule": "stride", "scale": 0.3, "size_power": 0.5, "ref_size": 49152}}}}


def smooth(t: torch.Tensor, std: float) -> torch.Tensor:
    """Fields (..., 2, H, W) smoothed by a Gaussian of ``std`` px ('same', zero padding)."""
    from blinddps.operators import conv_same, gaussian_kernel

    size = int(2 * round(3 * std) + 1)
    k = gaussian_kernel(size, std).view(1, 1, size, size)
    shape = t.shape
    return conv_same(t.reshape(-1, 1, *shape[-2:]), k).reshape(shape)


def tilt_scores(est: torch.Tensor | None, true: torch.Tensor, std: float) -> dict:
    """EPE of ``est`` (N, 2, H, W) against ``true``, raw and smoothed, with the zero-tilt
    references; None ``est`` scores as zero tilt."""
    est = torch.zeros_like(true) if est is None else est.reshape(true.shape).float()
    epe = float(torch.linalg.vector_norm(est - true, dim=1).mean())
    zero = float(torch.linalg.vector_norm(true, dim=1).mean())
    se, st = smooth(est, std), smooth(true, std)
    return {"epe": epe, "epe_zero": zero, "epe_smooth": float(torch.linalg.vector_norm(se - st, dim=1).mean()),
            "epe_smooth_zero": float(torch.linalg.vector_norm(st, dim=1).mean())}


def make_bursts(images, frames: int, size: int, std: float, noise: float, seed: int) -> dict:
    """The benchmark's data, per image: kernel, tilts and frames (drawn once, seeded)."""
    from blinddps.simulate import gaussian_kernels, turbulence_burst

    data = {}
    for j, im in enumerate(images):
        g = torch.Generator().manual_seed(int(np.random.SeedSequence([seed, j]).generate_state(1)[0]))
        k = gaussian_kernels(1, 32, std, generator=g)
        y, t = turbulence_burst(im.image, frames, k, noise, generator=g)
        data[im.name] = {"x": im.image, "k": k, "y": y, "tilt": t}
    return data


def run_one(method: str, n: int, d: dict, a: argparse.Namespace) -> tuple[dict, dict]:
    """One (method, N, image): its scores and arrays (image, tilt) for the figure."""
    from blinddps import solve
    from blinddps.baselines import l0_blind_deblur
    from blinddps.burst import solve_burst
    from blinddps.evaluation.metrics import mnc, psnr, ssim

    y, x, tt = d["y"][:n], d["x"], d["tilt"][:n]
    avg = y.mean(0, keepdim=True)
    t0 = time.perf_counter()
    tilt, kern = None, None
    common = dict(steps=a.steps, seed=a.seed, num_samples=a.samples)
    if method == "average":
        img = avg[0]
    elif method == "avg_l0":
        img, kern = l0_blind_deblur(avg.clamp(-1, 1), 32)
        img, kern = img[0], torch.as_tensor(kern).reshape(1, 1, 32, 32)
    elif method == "avg_diffusion":
        sol = solve(avg.clamp(-1, 1), "gaussian_deblur", **common)
        img, kern = sol.image[0], sol.params["kernel"]
    elif method == "single":
        sol = solve(y[:1].clamp(-1, 1), "turbulence", **common)
        img, kern, tilt = sol.image[0], sol.params["kernel"], sol.params["tilt"]
    elif method == "avg_fast":
        sol = solve_burst(avg, a.fast_preset, **common)
        img, kern = sol.image[0], sol.params["kernel"]
    elif method in ("burst", "burst_fast", "burst_fast_loop", "true_tilt", "tilt_prior"):
        over = {"tilt_prior": TILT_PRIOR, "burst_fast_loop": IN_LOOP}.get(method, {})
        fixed = {"tilt": tt[None]} if method == "true_tilt" else None
        preset = a.fast_preset if method in ("burst_fast", "burst_fast_loop", "true_tilt") else a.preset
        sol = solve_burst(y, preset, fixed=fixed, **common, **over)
        img, kern = sol.image[0], sol.params["kernel"]
        tilt = None if method == "true_tilt" else sol.params["tilt"][0]
    else:
        raise ValueError(method)
    secs = time.perf_counter() - t0
    img = img.float().clamp(-1, 1)
    row = {"method": method, "frames": n, "psnr": float(psnr(img, x)), "ssim": float(ssim(img, x)),
           "seconds": secs, "seconds_per_frame": secs / n}
    row.update(tilt_scores(tilt if method != "true_tilt" else tt, tt, a.std))
    if kern is not None:
        row["kernel_mnc"] = float(mnc(kern.reshape(-1, *kern.shape[-2:])[0].numpy(), d["k"][0, 0].numpy()))
    arrays = {"image": img.numpy().astype(np.float32)}
    if tilt is not None:
        arrays["tilt"] = tilt.reshape(-1, 2, *tilt.shape[-2:])[:1].numpy().astype(np.float32)
    return row, arrays


def table(rows: list[dict]) -> str:
    """Mean over images per (method, N), as Markdown."""
    keys = sorted({(r["method"], r["frames"]) for r in rows}, key=lambda k: (METHODS.index(k[0]), k[1]))
    out = ["| method | N | PSNR | SSIM | tilt EPE (px) | zero-tilt EPE | smoothed EPE | smoothed zero | "
           "kernel MNC | s / burst | s / frame | n |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, n in keys:
        rs = [r for r in rows if r["method"] == m and r["frames"] == n]

        def mean(k, fmt):
            v = [r[k] for r in rs if r.get(k) is not None]
            return fmt.format(np.mean(v)) if v else "—"
        has_tilt = m in ("single", "burst", "burst_fast", "burst_fast_loop", "tilt_prior")
        out.append(f"| {LABELS[m]} | {n} | {mean('psnr', '{:.2f}')} | {mean('ssim', '{:.3f}')} | "
                   f"{mean('epe', '{:.3f}') if has_tilt else '—'} | {mean('epe_zero', '{:.3f}')} | "
                   f"{mean('epe_smooth', '{:.3f}') if has_tilt else '—'} | {mean('epe_smooth_zero', '{:.3f}')} | "
                   f"{mean('kernel_mnc', '{:.3f}')} | {mean('seconds', '{:.1f}')} | "
                   f"{mean('seconds_per_frame', '{:.1f}')} | {len(rs)} |")
    return "\n".join(out)


def figure(out: Path, data: dict, name: str, n: int, path: Path) -> None:
    """Frames, average, average-then-deblur, ours, sharp, and tilt fields (true, ours) of frame 0."""
    from blinddps import figures

    d = data[name]
    arr = {}
    for m in ("avg_fast", "avg_diffusion", "burst_fast", "burst"):
        f = out / "arrays" / f"{m}_{n}_{name}.npz"
        if f.is_file():
            arr[m] = dict(np.load(f))
    y = d["y"][:n]
    peak = float(torch.linalg.vector_norm(d["tilt"][0], dim=0).max())
    panels = [(f"frame {i}", figures.to_pil(y[i : i + 1].clamp(-1, 1))) for i in range(min(3, n))]
    panels.append((f"average of {n}", figures.to_pil(y.mean(0, keepdim=True).clamp(-1, 1))))
    base = "avg_diffusion" if "avg_diffusion" in arr else "avg_fast"
    ours = "burst" if "burst" in arr else "burst_fast"
    if base in arr:
        panels.append(("average + deblur", figures.to_pil(torch.as_tensor(arr[base]["image"])[None])))
    if ours in arr:
        panels.append(("ours (burst)", figures.to_pil(torch.as_tensor(arr[ours]["image"])[None])))
    panels.append(("sharp", figures.to_pil(d["x"][None])))
    panels.append(("true tilt, frame 0", figures.tilt_image(d["tilt"][0], max_px=peak, legend=False)[0]))
    if ours in arr and "tilt" in arr[ours]:
        panels.append(("our tilt, frame 0", figures.tilt_image(torch.as_tensor(arr[ours]["tilt"][0]),
                                                              max_px=peak, legend=True)[0]))
    path.parent.mkdir(parents=True, exist_ok=True)
    figures.save_comparison(path, panels, max_side=None, min_height=128,
                            title=f"{name}, {n} frames, tilt +-2.5 px, Gaussian blur std 3, noise 0.02")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, help="folder for rows.jsonl, arrays/, summary.json, table.md")
    ap.add_argument("--images", default="photos")
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--frames", default="1,2,4,8", help="burst lengths N (comma-separated)")
    ap.add_argument("--max-frames", type=int, default=16, help="frames simulated per image (N ≤ this)")
    ap.add_argument("--methods", default="average,avg_l0,avg_fast,burst_fast,true_tilt,avg_diffusion,single,burst",
                    help=f"comma-separated, of {', '.join(METHODS)}")
    ap.add_argument("--single-frames", default="1", help="N values the single-frame rows run at ('single': 1)")
    ap.add_argument("--preset", default="turbulence_burst", help="the DPS burst preset ('burst', 'tilt_prior')")
    ap.add_argument("--fast-preset", default="turbulence_burst_fast",
                    help="the fast burst preset ('burst_fast', 'avg_fast', 'true_tilt')")
    ap.add_argument("--steps", type=int, default=None, help="default: each preset's")
    ap.add_argument("--samples", type=int, default=None, help="default: each preset's")
    ap.add_argument("--std", type=float, default=3.0)
    ap.add_argument("--noise", type=float, default=0.02)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--table-only", action="store_true", help="print the table of the rows there, run nothing")
    ap.add_argument("--figure", default=None, help="also write the figure (first image, largest N) to this PNG")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    from blinddps.evaluation.datasets import load_images

    out = Path(a.out)
    (out / "arrays").mkdir(parents=True, exist_ok=True)
    images = load_images(a.images, a.size, limit=a.limit)
    frames = [int(s) for s in a.frames.split(",") if s.strip()]
    if max(frames) > a.max_frames:
        raise SystemExit(f"--frames {max(frames)} > --max-frames {a.max_frames}")
    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown method {bad[0]!r}; choose from {', '.join(METHODS)}")
    data = make_bursts(images, a.max_frames, a.size, a.std, a.noise, a.seed)
    rows_path = out / "rows.jsonl"
    rows = [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()] \
        if rows_path.is_file() else []
    done = {(r["method"], r["frames"], r["image"]) for r in rows}
    singles = [int(s) for s in a.single_frames.split(",") if s.strip()]
    if not a.table_only:
        for n in frames:
            for m in methods:
                if m == "single" and n not in singles:
                    continue
                for im in images:
                    if (m, n, im.name) in done:
                        continue
                    row, arrays = run_one(m, n, data[im.name], a)
                    row["image"] = im.name
                    np.savez_compressed(out / "arrays" / f"{m}_{n}_{im.name}.npz", **arrays)
                    with open(rows_path, "a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
                    rows.append(row)
                    print(f"{m} N={n} {im.name}: PSNR {row['psnr']:.2f} EPE {row['epe']:.3f} "
                          f"(zero {row['epe_zero']:.3f}) {row['seconds']:.1f} s", flush=True)
    text = table(rows)
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, {a.threads} torch thread(s)"
    header = (f"{len(images)} images ({', '.join(im.name for im in images)}), {a.size}², Gaussian blur std {a.std}, "
              f"tilt ±2.5 px (paper's recipe), σ = {a.noise}, seed {a.seed}; torch {torch.__version__}; {machine}")
    print(header + "\n\n" + text)
    (out / "table.md").write_text(header + "\n\n" + text + "\n")
    with open(out / "summary.json", "w", encoding="utf-8") as f:
        json.dump({"settings": vars(a), "images": [im.name for im in images], "header": header,
                   "rows": rows, "table": text}, f, indent=1)
    if a.figure:
        figure(out, data, images[0].name, max(frames), Path(a.figure))


if __name__ == "__main__":
    main()
