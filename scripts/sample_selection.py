#!/usr/bin/env python
"""Would picking posterior samples beat averaging them? (the table in docs/benchmarks.md)

    python scripts/sample_selection.py runs/eval_motion128_all [--images coffee,camera]
        [--seed 0] [--threads 1]

Reads the measurements a ``blinddps evaluate`` run stored (``OUT/outputs/NAME/inputs.npz``)
and its ``summary.json`` (preset, seed), redraws BlindDPS's posterior samples for each
image with the harness's per-image seed (so the plain mean reproduces the harness's
``blinddps`` row exactly), and scores several ways of combining them:

* ``mean``: the mean of all samples (what the presets do);
* ``drop_resid``: drop the sample whose final measurement residual is largest;
* ``drop_agree``: drop the kernel whose mean NCC (no shift) with the others is lowest;
* ``medoid``: keep only the kernel that agrees most with the others.

Prints per-image PSNR / kernel MNC for each rule, their means, and the mean per-image
correlation of a sample's kernel MNC with its agreement and with minus its residual.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

RULES = ("mean", "drop_resid", "drop_agree", "medoid")


def _ncc(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a * b).sum() / (a.norm() * b.norm() + 1e-12))


def choose(rule: str, agree: np.ndarray, resid: np.ndarray) -> list[int]:
    """Indices of the samples that ``rule`` keeps."""
    n = len(agree)
    if rule == "mean":
        return list(range(n))
    if rule == "drop_resid":
        return [j for j in range(n) if j != int(resid.argmax())]
    if rule == "drop_agree":
        return [j for j in range(n) if j != int(agree.argmin())]
    if rule == "medoid":
        return [int(agree.argmax())]
    raise ValueError(f"unknown rule {rule!r}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="a blinddps evaluate output folder (motion or Gaussian blur)")
    ap.add_argument("--images", default=None, help="comma-separated subset of the run's images")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    from blinddps.api import solve
    from blinddps.evaluation import metrics as M
    from blinddps.evaluation.runner import _seed
    from blinddps.operators import conv_same

    torch.set_num_threads(args.threads)
    summary_path = args.run / "summary.json"
    if not summary_path.is_file():
        print(f"sample_selection: {summary_path} not found (is {args.run} a blinddps evaluate folder?)", file=sys.stderr)
        return 2
    summary = json.loads(summary_path.read_text())
    settings = summary.get("settings", summary)
    preset = str(settings.get("preset", "motion_deblur")).split("#")[0]   # 'name#hash' when overridden
    overrides = settings.get("overrides") or {}
    seed = int(settings.get("seed", 0))
    names = sorted(p.parent.name for p in (args.run / "outputs").glob("*/inputs.npz"))
    if args.images:
        wanted = args.images.split(",")
        missing = sorted(set(wanted) - set(names))
        if missing:
            print(f"sample_selection: not in {args.run}: {', '.join(missing)}", file=sys.stderr)
            return 2
        names = wanted

    scores = {r: [] for r in RULES}
    corr_agree, corr_resid = [], []
    for name in names:
        d = np.load(args.run / "outputs" / name / "inputs.npz")
        x, y, k_true = (torch.from_numpy(d[key]) for key in ("x", "y", "kernel"))
        y = y[None]
        operator = {**overrides.get("operator", {}), "kernel_size": int(k_true.shape[-1]), "mode": "same"}
        sol = solve(y, preset, seed=_seed(seed, name, 1), **{**overrides, "operator": operator})
        if sol.samples is None or "kernel" not in sol.param_samples:
            print(f"sample_selection: preset {preset!r} draws one sample or estimates no kernel", file=sys.stderr)
            return 2
        ks, imgs = sol.param_samples["kernel"][0], sol.samples[0]   # (S, 1, k, k), (S, C, H, W)
        n = ks.shape[0]
        agree = np.array([np.mean([_ncc(ks[i], ks[j]) for j in range(n) if j != i]) for i in range(n)])
        resid = np.array([float((conv_same(imgs[j : j + 1], ks[j : j + 1]) - y).pow(2).mean().sqrt())
                          for j in range(n)])
        per = np.array([float(M.mnc(ks[j, 0], k_true)) for j in range(n)])
        corr_agree.append(np.corrcoef(agree, per)[0, 1])
        corr_resid.append(np.corrcoef(-resid, per)[0, 1])
        cells = []
        for rule in RULES:
            keep = choose(rule, agree, resid)
            psnr = float(M.psnr(imgs[keep].mean(0), x))
            mnc = float(M.mnc(ks[keep].mean(0)[0], k_true))
            scores[rule].append((psnr, mnc))
            cells.append(f"{rule} {psnr:.2f}/{mnc:.3f}")
        print(f"{name:12s} " + " | ".join(cells) + " | samples' MNC " + " ".join(f"{v:.2f}" for v in per), flush=True)

    print("\n| rule | PSNR | kernel MNC |\n|---|---:|---:|")
    for rule in RULES:
        a = np.array(scores[rule])
        print(f"| {rule} | {a[:, 0].mean():.2f} | {a[:, 1].mean():.4f} |")
    print(f"\nn = {len(names)}; mean correlation of a sample's MNC with its agreement "
          f"{np.nanmean(corr_agree):.2f}, with minus its residual {np.nanmean(corr_resid):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
