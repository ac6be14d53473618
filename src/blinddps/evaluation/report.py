"""Reports of an evaluation run: mean tables (Markdown) and a figure grid (Pillow)."""
from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Callable

import numpy as np

__all__ = ["mean_metrics", "markdown_table", "markdown_report", "make_grid", "METHOD_LABELS", "method_label",
           "output_file"]

METHOD_LABELS = {
    "blurry": "blurry input",
    "wiener_true": "Wiener (true kernel)",
    "tv_true": "TV (true kernel)",
    "l0_blind": "L0 blind (Pan et al.)",
    "dps_true": "DPS (true kernel)",
    "blinddps": "BlindDPS (ours)",
    "photo": "photo pipeline (ours)",
    "photo_true": "photo restoration (true kernel)",
}
SHORT_LABELS = {
    "blurry": "blurry", "wiener_true": "Wiener (true k)", "tv_true": "TV (true k)",
    "l0_blind": "L0 blind", "dps_true": "DPS (true k)", "blinddps": "BlindDPS",
    "photo": "photo", "photo_true": "photo (true k)",
}


def method_label(method: str, short: bool = False) -> str:
    """A method's name in tables and figures; a variant ``base:label`` gets ``[label]``."""
    base, _, variant = method.partition(":")
    name = (SHORT_LABELS if short else METHOD_LABELS).get(base, base)
    return f"{name} [{variant}]" if variant else name


_MEAN_KEYS = ["psnr", "ssim", "psnr_aligned", "ssim_aligned", "kernel_mnc", "kernel_mse",
              "blob_floor_mnc", "tilt_rmse", "tilt_rms_true", "residual_rms", "seconds"]


def output_file(method: str, config: str, safe: Callable[[str], str] = lambda s: s) -> str:
    """The file name (in ``outputs/<image>/``) of a method's stored result for one method
    config: ``<method>-<hash of the config>.npz``, so that the results of several configs
    of one method in one folder (other steps, presets, weights or sampler seeds) never
    overwrite each other."""
    return f"{safe(method)}-{hashlib.sha1(config.encode()).hexdigest()[:10]}.npz"


def _finite(vals) -> list[float]:
    out = []
    for v in vals:
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out.append(f)
    return out


def mean_metrics(rows: list[dict], methods: list[str]) -> dict[str, dict[str, float]]:
    """Per method: the mean of every metric over the images that have a finite value,
    the standard deviation of PSNR and aligned PSNR (``*_sd``) and ``n`` (images)."""
    out: dict[str, dict[str, float]] = {}
    for m in methods:
        rs = [r for r in rows if r.get("method") == m]
        if not rs:
            continue
        d: dict[str, float] = {"n": len(rs)}
        for k in _MEAN_KEYS:
            v = _finite(r.get(k) for r in rs)
            if v:
                d[k] = float(np.mean(v))
                if k in ("psnr", "psnr_aligned") and len(v) > 1:
                    d[k + "_sd"] = float(np.std(v, ddof=1))
        out[m] = d
    return out


def _f(v, fmt: str) -> str:
    return "—" if v is None or (isinstance(v, float) and not math.isfinite(v)) else format(v, fmt)


def markdown_table(means: dict[str, dict[str, float]], methods: list[str], degradation: str = "motion",
                   max_shift: int = 8) -> str:
    """The mean table. Columns with no value for any method are left out (e.g. tilt
    RMSE outside turbulence). † marks the shift-aligned metrics."""
    cols = [
        ("PSNR", "psnr", ".2f"), ("SSIM", "ssim", ".3f"),
        ("PSNR†", "psnr_aligned", ".2f"), ("SSIM†", "ssim_aligned", ".3f"),
        ("kernel MNC", "kernel_mnc", ".3f"), ("blob-floor MNC", "blob_floor_mnc", ".3f"),
        ("kernel MSE†", "kernel_mse", ".2e"),
        ("tilt RMSE (px)", "tilt_rmse", ".3f"), ("tilt RMSE of 0 (px)", "tilt_rms_true", ".3f"),
        ("s / image", "seconds", ".1f"),
    ]
    # floors are shown beside the estimates they qualify
    qualifies = {"blob_floor_mnc": "kernel_mnc", "tilt_rms_true": "tilt_rmse"}
    means = {m: {k: v for k, v in d.items() if k not in qualifies or qualifies[k] in d} for m, d in means.items()}
    present = [c for c in cols if any(c[1] in means.get(m, {}) for m in methods)]
    head = "| method | " + " | ".join(c[0] for c in present) + " | n |"
    sep = "|---|" + "---:|" * len(present) + "---:|"
    lines = [head, sep]
    for m in methods:
        d = means.get(m)
        if d is None:
            continue
        cells = [_f(d.get(k), fmt) for _, k, fmt in present]
        lines.append(f"| {method_label(m)} | " + " | ".join(cells) + f" | {int(d['n'])} |")
    return "\n".join(lines)


def markdown_report(header: dict, table: str, rows: list[dict], methods: list[str], max_shift: int,
                    lpips: tuple[bool, str] | None = None) -> str:
    s = header["settings"]
    family = {"shake": "held-out camera-shake kernels", "levin": "Levin et al.'s recorded kernels"}
    what = (family.get(s.get("kernels", "trajectory"), f"motion kernels (intensity {s.get('intensity')})")
            if s["degradation"] == "motion"
            else f"Gaussian kernels (std {s.get('std')})" if s["degradation"] == "gaussian"
            else f"turbulence: Gaussian kernel (std {s.get('std')}) + tilt map")
    lines = [
        f"# Evaluation: {header['title']}",
        "",
        f"{len(s['images'])} images ({', '.join(s['images'])}), {s['size']}x{s['size']}, "
        f"{s['kernel_size']}x{s['kernel_size']} {what}, "
        + ("real borders (the scene goes on past the frame; 'valid' blur, solved with the 'valid' model), "
           if s.get("border") == "scene" else "zero-padded blur, ")
        + f"noise σ = {s['noise']} on [-1, 1], seed {s['seed']}; "
        f"diffusion methods: preset `{s['preset']}`"
        + (f", {s['steps']} steps" if s.get("steps") else "")
        + (f", mean of {s['num_samples']} posterior samples" if (s.get("num_samples") or 1) > 1 else "")
        + (f", sampler seed {s['sampler_seed']}" if s.get("sampler_seed", s["seed"]) != s["seed"] else "")
        + f", device {s['device']}.",
        "",
        table,
        "",
        f"Means over images. † = aligned: the best integer shift within ±{max_shift} px, scored on the crop "
        f"[{max_shift}:H-{max_shift}, {max_shift}:W-{max_shift}] (a blind method recovers the image only up "
        "to a translation, which the kernel absorbs; non-blind rows change only by the crop). "
        "Restored images are clipped to [-1, 1]; the blurry row is the measurement as is. "
        "Kernel MNC: max normalised cross-correlation with the true kernel over all shifts; "
        "blob-floor MNC: the best MNC a centred Gaussian blob reaches against the true kernel "
        "(an estimate below it carries no shape information). "
        "Kernel MSE†: per-pixel MSE after the best-MNC translation.",
    ]
    if lpips is not None:
        lines += ["", f"LPIPS: not computed ({lpips[1]})." if not lpips[0] else
                  f"LPIPS: available ({lpips[1]}) but not computed by this runner."]
    lines += ["", "## Per image", "",
              "| image | method | PSNR | SSIM | PSNR† | SSIM† | shift | kernel MNC | blob floor | s |",
              "|---|---|---:|---:|---:|---:|---|---:|---:|---:|"]
    for r in rows:
        shift = "—" if not math.isfinite(float(r.get("shift_dy", math.nan))) else \
            f"({int(r['shift_dy'])}, {int(r['shift_dx'])})"
        lines.append(
            f"| {r['image']} | {r['method']} | {_f(r.get('psnr'), '.2f')} | {_f(r.get('ssim'), '.3f')} | "
            f"{_f(r.get('psnr_aligned'), '.2f')} | {_f(r.get('ssim_aligned'), '.3f')} | {shift} | "
            f"{_f(r.get('kernel_mnc'), '.3f')} | {_f(r.get('blob_floor_mnc'), '.3f')} | {_f(r.get('seconds'), '.1f')} |"
        )
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- figure
def _to_u8(img: np.ndarray) -> np.ndarray:
    """(C, H, W) in [-1, 1] -> (H, W, 3) uint8."""
    a = np.clip((np.asarray(img, dtype=np.float64) + 1.0) / 2.0, 0.0, 1.0)
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    return np.round(a.transpose(1, 2, 0) * 255).astype(np.uint8)


def _kernel_u8(k: np.ndarray) -> np.ndarray:
    k = np.asarray(k, dtype=np.float64)
    k = k / k.max() if k.max() > 0 else k
    return np.round(np.clip(k, 0, 1) * 255).astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except Exception:  # noqa: BLE001 - old Pillow / no FreeType
        return ImageFont.load_default()


def _load(path: Path) -> dict | None:
    if not path.is_file():
        return None
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def make_grid(out_dir: Path, names: list[str], methods: list[str], rows: list[dict], path: Path,
              safe: Callable[[str], str] = lambda s: s, tile: int | None = None) -> Path:
    """A PNG grid: one row per image — ground truth | each method (the blurry input
    among them) — with the true kernel inset on the ground truth and the estimated
    kernel inset on blind methods (bottom right, scaled to its maximum), and each
    tile's PSNR (aligned PSNR in brackets) below it."""
    from PIL import Image, ImageDraw

    out_dir = Path(out_dir)
    metric = {(r["image"], r["method"]): r for r in rows}
    first = _load(out_dir / "outputs" / safe(names[0]) / "inputs.npz") if names else None
    if first is None:
        raise FileNotFoundError("no inputs to draw")
    size = first["x"].shape[-1]
    tile = tile or int(min(max(size, 96), 192))
    cap = 16
    head = 18
    cols = ["ground truth"] + [method_label(m, short=True) for m in methods]
    W = tile * len(cols) + 2 * (len(cols) + 1)
    foot = 16
    H = head + (tile + cap + 2) * len(names) + 2 + foot
    canvas = Image.new("RGB", (W, H), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = _font(11)
    for j, c in enumerate(cols):
        draw.text((2 + j * (tile + 2) + 2, 3), c, fill=(0, 0, 0), font=font)
    inset = max(tile // 3, 16)
    for i, n in enumerate(names):
        inp = _load(out_dir / "outputs" / safe(n) / "inputs.npz")
        top = head + i * (tile + cap + 2)
        cells = [("gt", inp["x"] if inp else None, inp["kernel"] if inp else None, n)]
        for m in methods:
            r = metric.get((n, m))
            o = None if r is None else _load(out_dir / "outputs" / safe(n) / output_file(m, r.get("config", ""), safe))
            if o is None and r is not None:  # a folder written before outputs were keyed on the config
                o = _load(out_dir / "outputs" / safe(n) / f"{safe(m)}.npz")
            txt = ""
            if r is not None:
                txt = f"{float(r['psnr']):.2f} [{float(r['psnr_aligned']):.2f}]"
                if math.isfinite(float(r.get("kernel_mnc", math.nan))):
                    txt += f" k{float(r['kernel_mnc']):.2f}"
            cells.append((m, None if o is None else o.get("image"), None if o is None else o.get("kernel"), txt))
        for j, (m, img, k, txt) in enumerate(cells):
            left = 2 + j * (tile + 2)
            if img is not None:
                im = Image.fromarray(_to_u8(img)).resize((tile, tile), Image.Resampling.LANCZOS
                                                         if img.shape[-1] > tile else Image.Resampling.NEAREST)
                if k is not None:
                    ki = Image.fromarray(_kernel_u8(k)).convert("RGB").resize((inset, inset), Image.Resampling.NEAREST)
                    bordered = Image.new("RGB", (inset + 2, inset + 2), (255, 255, 255))
                    bordered.paste(ki, (1, 1))
                    im.paste(bordered, (tile - inset - 2, tile - inset - 2))
                canvas.paste(im, (left, top))
            else:
                draw.rectangle([left, top, left + tile - 1, top + tile - 1], outline=(200, 200, 200))
            draw.text((left + 2, top + tile + 2), txt, fill=(0, 0, 0), font=font)
    draw.text((4, H - foot + 1), "PSNR [shift-aligned PSNR], k = kernel MNC; insets: true kernel (ground truth), "
              "estimated kernel (blind methods)", fill=(0, 0, 0), font=font)
    path = Path(path)
    canvas.save(path)
    return path
