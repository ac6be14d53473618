"""Quality against cost of blind motion deblurring, several solver settings side by side.

Each image is blurred by the evaluation harness's ``degrade`` (its kernel for the image:
32×32, our generator at intensity 0.5 or a held-out family with ``--kernels``; σ = 0.02;
seed 0), once with the zero border ('same' model, the original's protocol) and once
with the scene border ('valid' model of a real photo: the scene is larger than the
measurement by k − 1, no zeros enter; scored on the measurement's frame). Every setting then solves every measurement; PSNR (plain and shift-aligned),
kernel MNC, CPU-seconds and wall seconds per image are printed as a Markdown table.

    python benchmarks/fast_solver.py --settings motion_deblur,motion_fast --images astronaut,coffee
    python benchmarks/fast_solver.py --settings "motion_fast;steps=100" --modes same

A setting is a preset name, optionally followed by ``;key=value`` overrides (dotted
keys, YAML values): ``motion_fast;proximal.lam.image=4;steps=25``.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import yaml

from blinddps import solve
from blinddps.evaluation.datasets import load_images
from blinddps.evaluation.metrics import aligned_psnr, mnc, psnr
from blinddps.evaluation.runner import _seed, degrade, scene_crop


def parse_setting(text: str) -> tuple[str, dict]:
    """``preset;a.b=1;c=x`` -> ("preset", {"a": {"b": 1}, "c": "x"})."""
    name, *pairs = [t.strip() for t in text.split(";") if t.strip()]
    over: dict = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        node = over
        *path, last = key.strip().split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = yaml.safe_load(value)
    return name, over


def measurements(names: list[str], modes: list[str], size: int, kernel_size: int, intensity: float,
                 noise: float, seed: int, kernels: str = "trajectory") -> list[dict]:
    """One problem per (image, mode), made by the harness's ``degrade`` (its kernels, noise
    and seeds): 'same' is its zero border, 'valid' its scene border (the measurement the
    'valid' blur of a larger crop; the truth its frame)."""
    out = []
    for mode in modes:
        border = "zero" if mode == "same" else "scene"
        scene = {im.name: im.image for im in
                 load_images(names, size=size + (kernel_size - 1 if border == "scene" else 0))}
        for name in names:
            y, k, _ = degrade(scene[name], name, "motion", kernel_size, intensity, noise=noise, seed=seed,
                              kernels=kernels, border=border)
            x = scene[name][None]
            truth = scene_crop(x, kernel_size) if border == "scene" else x
            out.append(dict(image=name, mode=mode, y=y, x=truth, kernel=k, kernels=kernels))
    return out


def run(setting: str, problem: dict, kernel_size: int, seed: int) -> dict:
    preset, over = parse_setting(setting)
    over.setdefault("operator", {}).update({"kernel_size": kernel_size, "mode": problem["mode"]})
    cpu, wall = time.process_time(), time.perf_counter()
    sol = solve(problem["y"], preset, seed=_seed(seed, problem["image"], 1), **over)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    img = sol.image.clamp(-1, 1)
    return dict(setting=setting, image=problem["image"], mode=problem["mode"], kernels=problem["kernels"],
                psnr=float(psnr(img[0], problem["x"][0])), psnr_aligned=float(aligned_psnr(img[0], problem["x"][0])[0]),
                mnc=float(mnc(sol.params["kernel"][0], problem["kernel"][0])), cpu_s=cpu, wall_s=wall)


def table(rows: list[dict], settings: list[str], modes: list[str]) -> str:
    lines = ["| setting | mode | PSNR | PSNR† | kernel MNC | CPU s / image | wall s / image | n |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in settings:
        for m in modes:
            sel = [r for r in rows if r["setting"] == s and r["mode"] == m]
            if not sel:
                continue
            mean = {k: sum(r[k] for r in sel) / len(sel) for k in ("psnr", "psnr_aligned", "mnc", "cpu_s", "wall_s")}
            lines.append(f"| {s} | {m} | {mean['psnr']:.2f} | {mean['psnr_aligned']:.2f} | {mean['mnc']:.3f} | "
                         f"{mean['cpu_s']:.1f} | {mean['wall_s']:.1f} | {len(sel)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--settings", default="motion_deblur,motion_fast",
                    help="comma-separated settings (preset[;key=value...])")
    ap.add_argument("--images", default="astronaut,coffee,chelsea,rocket,motorcycle,camera")
    ap.add_argument("--modes", default="same,valid")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--kernel-size", type=int, default=32)
    ap.add_argument("--intensity", type=float, default=0.5)
    ap.add_argument("--noise", type=float, default=0.02)
    ap.add_argument("--kernels", default="trajectory", choices=["trajectory", "shake", "levin"],
                    help="kernel family (the harness's: our generator, held-out camera shake, Levin's)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="append each row as a JSON line to this file")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    settings = [s.strip() for s in args.settings.split(",") if s.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    names = [n.strip() for n in args.images.split(",") if n.strip()]
    problems = measurements(names, modes, args.size, args.kernel_size, args.intensity, args.noise, args.seed,
                            args.kernels)
    rows = []
    for setting in settings:
        for p in problems:
            row = run(setting, p, args.kernel_size, args.seed)
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.out:
                with Path(args.out).open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
    print(table(rows, settings, modes))


if __name__ == "__main__":
    main()
