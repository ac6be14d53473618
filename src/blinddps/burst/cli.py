"""The burst parts of the ``blinddps`` command.

* ``blinddps turbulence frames/ --out DIR --burst`` (or ``--frames 'GLOB'``): every
  input is one frame of the same static scene; one restored image for all of them.
* ``blinddps simulate sharp.png --out DIR --blur turbulence --frames N``: N frames of
  each sharp image, each with its own seeded tilt map (the paper's recipe).

``blinddps.cli`` hands these runs here; the output folder conventions (lock, resume,
incomplete marker, summary.json written last) are the command's own.
"""
from __future__ import annotations

import argparse
import glob
import time
from pathlib import Path
from typing import Any

__all__ = ["run_burst", "run_simulate_burst", "BURST_OUTPUTS", "SIMULATE_BURST_OUTPUTS", "burst_frame_paths"]

BURST_OUTPUTS = ("restored.png", "restored.npy", "restored.tif", "kernel.npy", "kernel.png", "tilt.npy",
                 "tilts.png", "average.png", "comparison.png", "summary.json")
SIMULATE_BURST_OUTPUTS = ("frames/frame_000.png", "average.png", "sharp.png", "kernel.npy", "kernel.png", "tilt.npy", "tilts.png",
                          "comparison.png", "summary.json")


def burst_frame_paths(args: argparse.Namespace) -> list[Path]:
    """The burst's frames: ``--frames GLOB`` (sorted matches) or the inputs (files and
    folders, sorted); a one-line CLIError when there are none."""
    from ..cli import CLIError, _collect_inputs

    pattern = getattr(args, "frames", None)
    if pattern:
        paths = sorted(Path(p) for p in glob.glob(str(Path(pattern).expanduser())) if Path(p).is_file())
        if not paths:
            raise CLIError(f"--frames {pattern!r} matches no files")
        paths += [p for p in _collect_inputs(args.inputs or []) if p not in paths] if args.inputs else []
        return sorted(dict.fromkeys(paths), key=str)
    if not args.inputs:
        raise CLIError("give the burst's frames: INPUT files or a folder, or --frames 'GLOB'")
    return _collect_inputs(args.inputs)


def _read_frames(paths: list[Path]):
    import torch

    from ..cli import CLIError
    from ..io import ImageReadError, read_image

    frames, info0 = [], None
    for p in paths:
        try:
            x, info = read_image(p)
        except ImageReadError as exc:
            raise CLIError(str(exc)) from None
        if info0 is None:
            info0 = info
        elif (info.height, info.width, info.channels) != (info0.height, info0.width, info0.channels):
            raise CLIError(f"{p} is {info.channels}x{info.height}x{info.width} but {paths[0]} is "
                           f"{info0.channels}x{info0.height}x{info0.width}: the frames of a burst must share a size")
        frames.append(x[0])
    return torch.stack(frames), info0


def burst_settings(cfg: dict, args: argparse.Namespace, paths: list[Path]) -> dict:
    """What decides a burst result (compared when a run resumes)."""
    return {"config": cfg, "seed": args.seed, "samples": args.samples,
            "frames": [str(p.resolve()) for p in paths]}


def _settings_of(summary: dict) -> dict:
    return {"config": summary.get("config"), "seed": summary.get("seed"),
            "samples": (summary.get("settings") or {}).get("samples_requested"),
            "frames": summary.get("frames")}


def burst_config(args: argparse.Namespace) -> dict:
    """The burst preset with the command's overrides (kernel size, steps, models)."""
    from ..cli import CLIError, _check_shipped, step_and_model_overrides
    from ..presets import PresetError, load_preset, merge

    from .solve import DEFAULT_PRESET

    try:
        cfg = load_preset(args.preset or DEFAULT_PRESET)
    except (PresetError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if (cfg.get("operator") or {}).get("name") != "turbulence_burst":
        raise CLIError(f"--burst needs a turbulence_burst preset; {args.preset!r} has operator "
                       f"{(cfg.get('operator') or {}).get('name')!r} (default: {DEFAULT_PRESET})")
    over: dict[str, Any] = {}
    if args.kernel_size is not None:
        over["operator"] = {"kernel_size": int(args.kernel_size)}
    cfg = merge(cfg, step_and_model_overrides(args, cfg, over))
    _check_shipped(cfg)
    return cfg


def run_burst(args: argparse.Namespace) -> int:
    """``blinddps turbulence ... --burst``: restore one image from all the frames."""
    from .. import figures
    from ..cli import CLIError, Job, _now, _set_threads, _versions, _Writer, check_outputs, output_lock
    from ..io import atomic_write_bytes, encode_png, output_suffix, save_npy, to_uint, write_image

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    if getattr(args, "boundary", "valid") == "valid" and getattr(args, "boundary_given", False):
        raise CLIError("--burst models the paper's zero-padded blur; --boundary valid is not available for bursts")
    paths = burst_frame_paths(args)
    cfg = burst_config(args)
    _set_threads(args.threads)
    job = Job(paths[0], out, f"burst of {len(paths)} frame(s)")
    settings = burst_settings(cfg, args, paths)
    with output_lock(out):
        check_outputs([job], BURST_OUTPUTS, args.overwrite, "turbulence-burst", settings, _settings_of)
        if not args.overwrite and (out / "summary.json").is_file():
            print(f"{job.label}: skipped ({out / 'summary.json'} exists; --overwrite redoes it)")
            return 0
        frames, info = _read_frames(paths)
        kh = int(cfg["operator"].get("kernel_size", 32))
        if kh > min(info.height, info.width):
            raise CLIError(f"the kernel ({kh}x{kh}) is larger than the frames ({info.height}x{info.width}); "
                           "use a smaller --kernel-size")
        import torch

        from .solve import solve_burst

        device = "cuda" if args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available()) else "cpu"
        t0 = time.perf_counter()
        writer = _Writer(out, BURST_OUTPUTS, args.overwrite,
                         {"command": "turbulence-burst", "input": str(paths[0])})
        try:
            sol = solve_burst(frames, cfg, seed=args.seed, num_samples=args.samples, device=device,
                              progress=not args.quiet, value_range=(-1, 1))
            img = sol.image[:1].cpu().clamp(-1, 1)
            if img.shape[1] != info.channels:
                img = img.mean(1, keepdim=True) if info.channels == 1 else img
            name = "restored" + output_suffix(info)
            write_image(writer.add(out / name), img, info)
            k = sol.params["kernel"][0].reshape(-1, *sol.params["kernel"].shape[-2:])[0].cpu()
            save_npy(writer.add(out / "kernel.npy"), k.numpy().astype("float32"))
            figures.save_kernel_png(writer.add(out / "kernel.png"), k)
            tilt = sol.params["tilt"][0].cpu()
            save_npy(writer.add(out / "tilt.npy"), tilt.numpy().astype("float32"))
            peak = float(torch.linalg.vector_norm(tilt, dim=1).max().clamp_min(1e-6))
            figures.save_comparison(writer.add(out / "tilts.png"),
                                    [(f"tilt {i}", figures.tilt_image(t, max_px=peak, legend=False)[0])
                                     for i, t in enumerate(tilt[:8])])
            avg = frames.mean(0, keepdim=True)
            atomic_write_bytes(writer.add(out / "average.png"), encode_png(to_uint(avg.clamp(-1, 1), 8)))
            figures.save_comparison(writer.add(out / "comparison.png"), [
                ("frame 0", figures.to_pil(frames[:1])), ("average", figures.to_pil(avg)),
                ("restored", figures.to_pil(img)), ("kernel", figures.kernel_image(k, None)[0])])
            summary = {
                "command": "turbulence-burst", "created": _now(), "input_path": str(paths[0].resolve()),
                "frames": settings["frames"], "num_frames": len(paths), "input": info.describe(),
                "config": cfg, "seed": args.seed, "preset": cfg.get("name"),
                "settings": {"samples_requested": args.samples, "samples": sol.settings["num_samples"],
                             "device": device},
                "outputs": {"restored": name, "kernel": "kernel.npy", "tilt": "tilt.npy (frames x 2 x H x W px)",
                            "average": "average.png", "comparison": "comparison.png", "tilts": "tilts.png"},
                "residual_rms": float(sol.residual_rms[0]),
                "tilt_max_px": peak,
                "versions": _versions(),
                "timings": {**sol.timings, "seconds": time.perf_counter() - t0},
            }
            writer.finish(summary)
        except BaseException:
            writer.abort()
            raise
    print(f"{job.label}: restored -> {out / name} ({time.perf_counter() - t0:.1f} s)")
    return 0


def run_simulate_burst(args: argparse.Namespace) -> int:
    """``blinddps simulate ... --blur turbulence --frames N``: a burst per sharp image."""
    import torch

    from .. import figures
    from ..cli import (CLIError, _image_seed, _now, _tidy, _versions, _Writer, check_outputs, output_lock,
                       plan_jobs)
    from ..io import ImageReadError, atomic_write_bytes, encode_png, read_image, save_npy, to_uint
    from ..simulate import gaussian_kernels, turbulence_burst

    if args.blur != "turbulence":
        raise CLIError("--frames N simulates a turbulence burst: use it with --blur turbulence")
    out = Path(args.out)
    jobs, _ = plan_jobs(args.inputs, out)
    settings = {"blur": "turbulence", "frames": args.frames, "kernel_size": args.kernel_size, "std": args.std,
                "tilt_max": args.tilt_max, "noise": args.noise, "seed": args.seed}
    with output_lock(out):
        check_outputs(jobs, SIMULATE_BURST_OUTPUTS, args.overwrite, "simulate", settings,
                      lambda s: {k: s.get(k) for k in settings})
        for job in jobs:
            if not args.overwrite and (job.dir / "summary.json").is_file():
                _tidy(job.dir, SIMULATE_BURST_OUTPUTS)
                print(f"{job.label}: skipped ({job.dir / 'summary.json'} exists; --overwrite redoes it)")
                continue
            try:
                x, info = read_image(job.input)
            except ImageReadError as exc:
                raise CLIError(str(exc)) from None
            if args.kernel_size > min(info.height, info.width):
                raise CLIError(f"the kernel ({args.kernel_size}x{args.kernel_size}) is larger than the image "
                               f"({info.height}x{info.width}); use a smaller --kernel-size")
            t0 = time.perf_counter()
            seed = _image_seed(args.seed, job.input.name)
            g = torch.Generator().manual_seed(seed)
            k = gaussian_kernels(1, args.kernel_size, args.std, generator=g)
            y, tilt = turbulence_burst(x, args.frames, k, args.noise, generator=g, max_tilt=args.tilt_max)
            writer = _Writer(job.dir, SIMULATE_BURST_OUTPUTS, args.overwrite,
                             {"command": "simulate", "input": str(job.input)})
            try:
                (job.dir / "frames").mkdir(exist_ok=True)
                names = []
                for i in range(args.frames):
                    p = job.dir / "frames" / f"frame_{i:03d}.png"
                    atomic_write_bytes(writer.add(p), encode_png(to_uint(y[i : i + 1], 16)))
                    names.append(f"frames/{p.name}")
                avg = y.mean(0, keepdim=True)
                atomic_write_bytes(writer.add(job.dir / "average.png"), encode_png(to_uint(avg, 16)))
                bits = 16 if info.bit_depth == 16 or info.mode == "array" else 8
                atomic_write_bytes(writer.add(job.dir / "sharp.png"), encode_png(to_uint(x, bits)))
                save_npy(writer.add(job.dir / "kernel.npy"), k[0, 0].numpy().astype("float32"))
                figures.save_kernel_png(writer.add(job.dir / "kernel.png"), k[0, 0])
                save_npy(writer.add(job.dir / "tilt.npy"), tilt.numpy().astype("float32"))
                peak = float(torch.linalg.vector_norm(tilt, dim=1).max())
                figures.save_comparison(writer.add(job.dir / "tilts.png"),
                                        [(f"tilt {i}", figures.tilt_image(t, max_px=peak, legend=False)[0])
                                         for i, t in enumerate(tilt[:8])])
                figures.save_comparison(writer.add(job.dir / "comparison.png"), [
                    ("sharp", figures.to_pil(x)), ("frame 0", figures.to_pil(y[:1])),
                    ("average", figures.to_pil(avg)), ("kernel", figures.kernel_image(k[0, 0], None)[0])])
                writer.finish({
                    "command": "simulate", "created": _now(), "input_path": str(job.input.resolve()),
                    "input": info.describe(), **settings, "image_seed": seed,
                    "outputs": {"frames": names, "average": "average.png", "sharp": "sharp.png",
                                "kernel": "kernel.npy", "tilt": "tilt.npy (frames x 2 x H x W px)"},
                    "rng": "torch.Generator().manual_seed(image_seed) draws the kernel, then every frame's tilt, "
                           "then the noise",
                    "protocol": "frame f = k * T_f(x) + n_f ('same', zero padding), 16-bit PNG clipped to [-1, 1]",
                    "clipped_fraction": float(((y < -1) | (y > 1)).float().mean()),
                    "versions": _versions(), "timings": {"seconds": time.perf_counter() - t0}})
            except BaseException:
                writer.abort()
                raise
            print(f"{job.label}: turbulence burst of {args.frames} frames -> {job.dir / 'frames'}")
    return 0
