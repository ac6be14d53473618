"""The Levin et al. 2009 benchmark, scored as the field scores it.

32 recorded blurred images (4 sharp scenes × 8 camera-shake kernels, 13–27 px, grey,
255 × 255, real borders). Every method gets the recorded ``y`` (mapped to [-1, 1]);
the diffusion methods run the 'valid' model (what ``blinddps deblur`` runs on a photo)
with the kernel size ``kernel_size`` (``"true"``: each kernel's own size, the usual
protocol; or one int for all). Scores (images on [0, 1]):

* ``ssd``: Levin's :func:`~blinddps.evaluation.levin.ssd_upto_shift` (crop 15 px, best
  shift within ±5 px in 0.25 px steps), and ``psnr`` = 10·log10(225² / ssd);
* ``kernel_mnc`` for blind methods;
* ``tv_ssd``: the SSD of TV deconvolution with the method's kernel, and
  ``kernel_ratio`` = tv_ssd / SSD(TV with the true kernel) — the error ratio with one
  fixed non-blind method, which measures the kernel alone;
* ``error_ratio`` = ssd / SSD(the same image stage with the true kernel): ``blinddps``
  against ``dps_true``, ``l0_blind`` and the ``tv`` image against ``tv_true``, ``photo``
  (the photo pipeline) against ``photo_true`` (its restoration with the true kernel).
  The success rate is the share of images with a ratio ≤ 2 (Levin et al.'s threshold).

Resumable: rows go to ``levin.csv`` as they finish; ``report.md`` and ``summary.json``
are rewritten at the end of every run.
"""
from __future__ import annotations

import csv
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import metrics as M
from . import report as R
from .levin import levin_pairs, ssd_upto_shift
from .runner import (
    METHOD_FUNCS,
    Problem,
    _append_row,
    _check_method_name,
    _method_config,
    _preflight,
    _preset_id,
    _preset_models,
    _seed,
    _threads,
    _versions,
    _weights_id,
    method_base,
)

__all__ = ["evaluate_levin", "LEVIN_COLUMNS", "levin_report"]

LEVIN_COLUMNS = ["image", "method", "config", "ssd", "psnr", "shift_dy", "shift_dx", "kernel_mnc",
                 "tv_ssd", "seconds", "timestamp"]
# the non-blind method with the true kernel that each blind image stage is compared with
_REFERENCE = {"blinddps": "dps_true", "l0_blind": "tv_true", "photo": "photo_true"}


def _to01(t: torch.Tensor) -> np.ndarray:
    """(1, C, H, W) on [-1, 1] -> (H, W) on [0, 1] (channel mean)."""
    a = t.detach().cpu().double().numpy()[0]
    return (a.mean(0) + 1.0) / 2.0


def _read(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        for c in ("ssd", "psnr", "shift_dy", "shift_dx", "kernel_mnc", "tv_ssd", "seconds"):
            try:
                r[c] = float(r[c]) if r.get(c) not in ("", None) else math.nan
            except ValueError:
                r[c] = math.nan
    return rows


def _tv_ssd(y: torch.Tensor, k: torch.Tensor, x01: np.ndarray) -> float:
    from ..baselines import tv_deconvolve

    est = tv_deconvolve(y, k.reshape(1, 1, *k.shape[-2:]).double())
    return ssd_upto_shift(_to01(torch.as_tensor(est).clamp(-1, 1)), x01)[0]


def levin_report(rows: list[dict], methods: list[str], title: str = "Levin et al. 2009") -> tuple[str, dict]:
    """The Markdown report (means, success rates, per-kernel PSNR) and its numbers."""
    by = {(r["image"], r["method"]): r for r in rows}
    names = sorted({r["image"] for r in rows}, key=lambda n: (int(n.split("_k")[1]), n))
    stats: dict[str, dict[str, float]] = {}
    for m in methods:
        mine = [by[(n, m)] for n in names if (n, m) in by]
        if not mine:
            continue
        ref = _REFERENCE.get(method_base(m))
        ratios = [by[(r["image"], m)]["ssd"] / by[(r["image"], ref)]["ssd"] for r in mine
                  if ref and (r["image"], ref) in by]
        kr = [r["tv_ssd"] / by[(r["image"], "tv_true")]["ssd"] for r in mine
              if r["tv_ssd"] == r["tv_ssd"] and (r["image"], "tv_true") in by]
        stats[m] = {
            "n": len(mine), "psnr": float(np.mean([r["psnr"] for r in mine])),
            "ssd": float(np.mean([r["ssd"] for r in mine])),
            "kernel_mnc": float(np.nanmean([r["kernel_mnc"] for r in mine])) if any(
                r["kernel_mnc"] == r["kernel_mnc"] for r in mine) else math.nan,
            "error_ratio": float(np.mean(ratios)) if ratios else math.nan,
            "ratio_le2": int(sum(v <= 2 for v in ratios)) if ratios else -1, "n_ratio": len(ratios),
            "kernel_ratio": float(np.mean(kr)) if kr else math.nan,
            "kernel_ratio_le2": int(sum(v <= 2 for v in kr)) if kr else -1, "n_kernel_ratio": len(kr),
            "seconds": float(np.mean([r["seconds"] for r in mine])),
        }

    def f(v, fmt):
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    lines = [f"# {title}", "",
             "Levin's protocol: 15-px crop, best shift within ±5 px (0.25 px steps), SSD on [0, 1]; "
             "PSNR = 10·log10(225²/SSD). Error ratio: SSD over the same image stage with the true kernel "
             "(blinddps vs dps_true, l0_blind vs tv_true, photo vs photo_true); kernel ratio: TV deconvolution with the "
             "method's kernel vs with the true kernel. ≤ 2 counts a success.", "",
             "| method | n | PSNR | error ratio | ratio ≤ 2 | kernel ratio (TV) | ≤ 2 | kernel MNC | s / image |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m, s in stats.items():
        le2 = f"{s['ratio_le2']}/{s['n_ratio']}" if s["n_ratio"] else "—"
        kle2 = f"{s['kernel_ratio_le2']}/{s['n_kernel_ratio']}" if s["n_kernel_ratio"] else "—"
        lines.append(f"| {R.method_label(m)} | {s['n']} | {s['psnr']:.2f} | {f(s['error_ratio'], '.2f')} | {le2} | "
                     f"{f(s['kernel_ratio'], '.2f')} | {kle2} | {f(s['kernel_mnc'], '.3f')} | {s['seconds']:.1f} |")
    kern = sorted({int(n.split("_k")[1]) for n in names})
    lines += ["", "PSNR (dB) per kernel (mean over the images run):", "",
              "| method | " + " | ".join(f"k{j}" for j in kern) + " |", "|---|" + "---:|" * len(kern)]
    for m in stats:
        cells = []
        for j in kern:
            v = [by[(n, m)]["psnr"] for n in names if n.endswith(f"_k{j}") and (n, m) in by]
            cells.append(f"{np.mean(v):.2f}" if v else "—")
        lines.append(f"| {R.method_label(m)} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n", stats


def evaluate_levin(
    out_dir: str | Path,
    methods: list[str] | tuple[str, ...] = ("blurry", "tv_true", "l0_blind", "blinddps"),
    images: list[int] | None = None,
    kernels: list[int] | None = None,
    kernel_size: int | str = "true",
    preset: str | dict = "motion_deblur",
    steps: int | None = None,
    models: dict[str, str] | None = None,
    overrides: dict | None = None,
    method_options: dict[str, dict] | None = None,
    seed: int = 0,
    device: str = "cpu",
    threads: int | None = None,
    limit: int | None = None,
    progress: bool = True,
    resume: bool = True,
) -> tuple[str, dict]:
    """Run the benchmark (see the module docstring); returns the report and its numbers."""
    from ..presets import load_preset

    methods = list(dict.fromkeys(methods))
    for m in methods:
        _check_method_name(m)
    if "tv_true" not in methods:
        methods.insert(0, "tv_true")  # the kernel ratio's denominator
    method_options = dict(method_options or {})
    if kernel_size != "true" and (isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 3):
        raise ValueError(f"kernel_size must be 'true' or an int >= 3, got {kernel_size!r}")
    pairs = levin_pairs(images, kernels)
    if limit is not None:
        pairs = pairs[: int(limit)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "levin.csv"
    if not resume and csv_path.exists():
        csv_path.unlink()
    cfg = load_preset(preset)
    biggest = max(p["kernel"].shape[0] for p in pairs) if kernel_size == "true" else int(kernel_size)
    if any(method_base(m) in ("blinddps", "dps_true") for m in methods):
        _preflight(cfg, steps, models, overrides, biggest, "valid")
    settings = {"preset": preset, "preset_id": _preset_id(preset, cfg), "steps": steps, "device": device,
                "models": models, "overrides": overrides, "mode": "valid",
                "weights": _weights_id(_preset_models(cfg), models), "sampler_seed": None}
    configs = {m: _method_config(m, settings, method_options.get(m, {})) for m in methods}
    ks = json.dumps(kernel_size)
    configs = {m: (c + f"|kernel_size={ks}") for m, c in configs.items()}
    done = {(r["image"], r["method"], r.get("config", "")) for r in _read(csv_path)}

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    with _threads(threads):
        for p in pairs:
            x01 = p["x"].astype(np.float64)
            y = torch.from_numpy(p["y"]).float()[None, None] * 2 - 1
            x = torch.from_numpy(p["x"]).float()[None, None] * 2 - 1
            k_true = torch.from_numpy(p["kernel"]).float()[None, None]
            prob = Problem(p["name"], x, y, k_true, None, _seed(seed, p["name"], 1), settings,
                           estimate_size=None if kernel_size == "true" else int(kernel_size))
            for m in methods:
                if (p["name"], m, configs[m]) in done:
                    continue
                t0 = time.perf_counter()
                res = METHOD_FUNCS[method_base(m)](prob, dict(method_options.get(m, {})))
                secs = time.perf_counter() - t0
                est = _to01(res.image.clamp(-1, 1) if m != "blurry" else res.image)
                ssd, (dy, dx) = ssd_upto_shift(est, x01)
                row: dict[str, Any] = {"image": p["name"], "method": m, "config": configs[m], "ssd": ssd,
                                       "psnr": 10 * math.log10(225 * 225 / max(ssd, 1e-12)), "shift_dy": dy,
                                       "shift_dx": dx, "seconds": secs, "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
                if res.kernel is not None:
                    kk = res.kernel.detach().cpu().double().reshape(res.kernel.shape[-2:])
                    row["kernel_mnc"] = M.mnc(kk, k_true.double()[0, 0])
                    row["tv_ssd"] = _tv_ssd(y, kk, x01)
                _append_row(csv_path, row, LEVIN_COLUMNS)
                extra = f" MNC {row['kernel_mnc']:.3f}" if "kernel_mnc" in row else ""
                say(f"{p['name']} {m}: PSNR {row['psnr']:.2f} (SSD {ssd:.1f}){extra}  {secs:.1f} s")

    names = {p["name"] for p in pairs}
    rows = [r for r in _read(csv_path) if r["image"] in names and r.get("config") == configs.get(r["method"])]
    text, stats = levin_report(rows, methods)
    (out / "report.md").write_text(text)
    (out / "summary.json").write_text(json.dumps(
        {"benchmark": "levin2009", "methods": methods, "kernel_size": kernel_size, "preset": settings["preset_id"],
         "steps": steps, "overrides": overrides, "method_options": method_options, "seed": seed,
         "images": sorted(names), "stats": stats, "versions": _versions(),
         "date": time.strftime("%Y-%m-%d %H:%M:%S")}, indent=1, default=str) + "\n")
    return text, stats
