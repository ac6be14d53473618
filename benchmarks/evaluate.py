"""The evaluation harness on the fast motion benchmark (``configs/eval/motion128.yaml``):
128x128 held-out photographs (scikit-image samples, never trained on), 32x32 motion
kernels at intensity 0.5, noise 0.02 on [-1, 1]; blurry input, Wiener and TV with the
true kernel, L0 blind (Pan et al.), BlindDPS with the shipped priors (default preset
``motion_deblur``) and non-blind DPS (true kernel).

Resumable (rows in OUT/results.csv are kept). With ``--docs docs/benchmarks.md`` the
table is written into that file's section ``## Blind deblurring (evaluation harness)``
(replaced if present, appended otherwise; the rest of the file is left as it is).

    .venv/bin/python benchmarks/evaluate.py --limit 6 --out runs/eval_motion128 --docs docs/benchmarks.md

Without the shipped priors (``src/blinddps/weights/kernel_motion32.safetensors`` and
``image_photo64.safetensors``) the diffusion methods are left out and the section says so.
"""
from __future__ import annotations

import argparse
import datetime
import platform
import re
import subprocess
import sys
from pathlib import Path

import torch

from blinddps.evaluation.cli import load_eval_config
from blinddps.evaluation.runner import evaluate
from blinddps.models.checkpoints import SHIPPED_DIR

SECTION = "## Blind deblurring (evaluation harness)"
PRIORS = ("image_photo64", "kernel_motion32")


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return platform.processor() or "unknown CPU"


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "n/a"


def priors_present() -> list[str]:
    return [n for n in PRIORS if not (SHIPPED_DIR / f"{n}.safetensors").is_file()]


def write_section(doc: Path, text: str) -> None:
    """Replace (or append) this benchmark's section of ``doc``; other sections stay."""
    body = doc.read_text() if doc.is_file() else "# Benchmarks\n"
    block = text.rstrip() + "\n"
    pat = re.compile(r"^" + re.escape(SECTION) + r"[^\n]*\n.*?(?=^## |\Z)", re.S | re.M)
    if pat.search(body):
        body = pat.sub(lambda _m: block + "\n", body, count=1)
    else:
        body = body.rstrip() + "\n\n" + block
    doc.write_text(body.rstrip() + "\n")


def section_text(res, cfg: dict, args, missing: list[str], wall_s: float, load_before: str) -> str:
    s = res.summary["settings"]
    n = len(s["images"])
    ms = s["max_shift"]
    lines = [
        SECTION,
        "",
        f"`benchmarks/evaluate.py` (the runner `blinddps.evaluation.evaluate`, config `configs/eval/motion128.yaml`;"
        f" CLI: `blinddps evaluate --config motion128 --limit {n} --out DIR`): {n} held-out photographs "
        f"({', '.join(s['images'])}; scikit-image's bundled samples, never trained on), centre-cropped and resized "
        f"to {s['size']}×{s['size']}, blurred by {s['kernel_size']}×{s['kernel_size']} random-trajectory motion "
        f"kernels at intensity {s.get('intensity')} (seeded per image, seed {s['seed']}), zero-padded 'same' blur, "
        f"plus Gaussian noise σ = {s['noise']} on [-1, 1].",
    ]
    if missing:
        lines += ["", f"**Baselines only**: the shipped priors ({', '.join(m + '.safetensors' for m in missing)}) "
                      "were not in `src/blinddps/weights/` when this ran, so BlindDPS and DPS rows are missing."]
    else:
        lines += ["", f"Diffusion methods: preset `{s['preset']}` (shipped `image_photo64` + `kernel_motion32` priors), "
                      f"{s['steps']} steps, one posterior sample, per-image sampler seed; `dps_true` is the same image "
                      "prior with the true kernel fixed (non-blind)."]
    lines += ["", res.table, "",
              f"Means over the {n} images. **† = shift-aligned**: PSNR/SSIM at the best integer shift within "
              f"±{ms} px, scored on the crop [{ms}:H−{ms}, {ms}:W−{ms}]. A blind method recovers the image only up "
              "to a translation (the kernel absorbs it), so raw PSNR penalises a correct but shifted estimate; for "
              "non-blind rows the two differ only by the border crop. Restored images are clipped to [-1, 1]; the "
              "blurry row is the measurement itself. Kernel MNC: maximum normalised cross-correlation with the true "
              "kernel over all shifts; **blob-floor MNC**: the best MNC that a centred Gaussian blob reaches against "
              "the same true kernels — a kernel estimate that does not clear it recovers no more than the blur's size. "
              "Kernel MSE†: per-pixel MSE after the best-MNC translation. LPIPS is not computed "
              f"({res.summary['lpips']['reason']}). s / image: wall-clock seconds of the method alone.",
              "",
              f"Machine: {cpu_model()} (`lscpu` model name), {torch.get_num_threads() if not args.threads else args.threads}"
              f" torch thread(s) on 2 cores, torch {torch.__version__}, Python {platform.python_version()}, "
              f"{datetime.date.today().isoformat()}. Shared machine: load average {load_before} at the start "
              f"(other jobs running), so the seconds are indicative. Sum of the method times: "
              f"{sum(float(r['seconds']) for r in res.rows) / 60:.1f} min. "
              f"Per-image rows: OUT/results.csv, figure: OUT/grid.png, settings and versions: OUT/summary.json."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="motion128")
    ap.add_argument("--limit", type=int, default=6)
    ap.add_argument("--steps", type=int, default=None, help="diffusion steps (default: the config's)")
    ap.add_argument("--out", default="runs/eval_motion128")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    ap.add_argument("--methods", default=None, help="comma-separated (default: the config's)")
    ap.add_argument("--docs", default=None, help="write the section into this Markdown file")
    ap.add_argument("--notes", default=None, help="a Markdown file whose text is added to the section (a reading)")
    args = ap.parse_args(argv)

    cfg = load_eval_config(args.config)
    cfg.pop("description", None)
    name = cfg.pop("name", args.config)
    if args.methods:
        cfg["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    if args.steps:
        cfg["steps"] = args.steps
    missing = priors_present()
    if missing:
        print(f"shipped priors missing ({', '.join(missing)}): running the baselines only", file=sys.stderr)
        cfg["methods"] = [m for m in cfg["methods"] if m not in ("dps_true", "blinddps")]
    # BlindDPS before non-blind DPS in the table
    order = ["blurry", "wiener_true", "tv_true", "l0_blind", "blinddps", "dps_true"]
    cfg["methods"] = sorted(cfg["methods"], key=lambda m: order.index(m) if m in order else len(order))
    load_before = load_average()
    t0 = datetime.datetime.now()
    res = evaluate(out_dir=args.out, limit=args.limit, threads=args.threads, name=name, **cfg)
    wall = (datetime.datetime.now() - t0).total_seconds()
    print(res.table)
    if args.docs:
        text = section_text(res, cfg, args, missing, wall, load_before)
        if args.notes:
            text += "\n\n" + Path(args.notes).read_text().strip()
        write_section(Path(args.docs), text)
        print(f"wrote section {SECTION!r} into {args.docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
