"""``blinddps evaluate [--config NAME|FILE] [--images NAME|FOLDER] ... --out DIR``.

The main ``blinddps`` command adds this subcommand with :func:`add_evaluate_subparser`
and dispatches to :func:`run_evaluate`, which raises :class:`ValueError` with a
one-line message for bad input (the main command prints it, no traceback).

Configs (``configs/eval/*.yaml``) hold the keyword arguments of
:func:`blinddps.evaluation.runner.evaluate`; flags override them.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_evaluate_subparser", "run_evaluate", "load_eval_config", "list_eval_configs", "EVAL_CONFIG_KEYS"]

_EVAL_DIR = Path(__file__).resolve().parents[3] / "configs" / "eval"

#: keys an evaluation config may hold (``evaluate``'s keyword arguments, plus notes)
EVAL_CONFIG_KEYS = {
    "name", "description", "images", "degradation", "size", "kernel_size", "intensity", "std", "noise",
    "methods", "seed", "preset", "steps", "limit", "models", "overrides", "method_options", "max_shift",
    "tilt_options", "threads", "device", "kernels", "border", "tracks",
    "benchmark", "levin_images", "levin_kernels",
}
#: the keys a ``benchmark: levin`` config passes on to evaluate_levin
_LEVIN_KEYS = {"methods", "kernel_size", "preset", "steps", "models", "overrides", "method_options", "seed",
               "device", "threads", "limit", "levin_images", "levin_kernels"}


def list_eval_configs() -> dict[str, Path]:
    """Named evaluation configs in ``configs/eval``."""
    if not _EVAL_DIR.is_dir():
        return {}
    return {p.stem: p for p in sorted(_EVAL_DIR.glob("*.yaml"))}


def load_eval_config(name_or_path: str | Path) -> dict[str, Any]:
    """An evaluation config from a name in ``configs/eval`` or a YAML path."""
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        known = list_eval_configs()
        if str(name_or_path) not in known:
            raise ValueError(f"unknown evaluation config {str(name_or_path)!r}; "
                             f"known: {', '.join(known) or 'none'} (or give a YAML path)")
        path = known[str(name_or_path)]
    from ..presets import read_yaml_mapping  # imports torch: only when a config is read

    data = read_yaml_mapping(path, "evaluation config")
    bad = sorted(set(data) - EVAL_CONFIG_KEYS)
    if bad:
        raise ValueError(f"evaluation config {path}: unknown key {bad[0]!r}; "
                         f"allowed: {', '.join(sorted(EVAL_CONFIG_KEYS))}")
    data.setdefault("name", path.stem)
    return data


def add_evaluate_subparser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "evaluate",
        help="benchmark methods on simulated blur (PSNR/SSIM, kernel MNC, timings)",
        description=(
            "Blur evaluation images with seeded kernels (+ noise), run methods, and write "
            "OUT/results.csv (resumable: rows there are skipped), OUT/report.md, OUT/grid.png "
            "and OUT/summary.json. Configs: " + (", ".join(list_eval_configs()) or "none") + "."
        ),
    )
    p.add_argument("--config", default=None, help="evaluation config: a name in configs/eval (e.g. motion128) or a YAML file")
    p.add_argument("--images", default=None,
                   help="image set (photos, skimage, ffhq, all), built-in names (astronaut,coffee), a folder or a file")
    p.add_argument("--methods", default=None,
                   help="comma-separated: blurry,wiener_true,tv_true,l0_blind,dps_true,blinddps,photo,photo_true; "
                        "a variant method:label runs method with the config's method_options[method:label]")
    p.add_argument("--degradation", default=None, choices=["motion", "gaussian", "turbulence"])
    p.add_argument("--size", type=int, default=None, help="image size (centre crop + resize)")
    p.add_argument("--kernel-size", type=int, default=None, help="kernel size")
    p.add_argument("--intensity", type=float, default=None, help="motion-kernel intensity in [0, 1]")
    p.add_argument("--std", type=float, default=None, help="Gaussian kernel std (gaussian, turbulence)")
    p.add_argument("--noise", type=float, default=None, help="measurement noise std on [-1, 1] images")
    p.add_argument("--kernels", default=None, choices=["trajectory", "shake", "levin"],
                   help="motion-kernel family: our generator (the priors' training family), the held-out "
                        "camera-shake model, or Levin et al.'s 8 recorded kernels")
    p.add_argument("--border", default=None, choices=["zero", "scene"],
                   help="zero: zero-padded blur; scene: the scene goes on past the frame (a photo's borders)")
    p.add_argument("--tracks", default=None, metavar="NAMES",
                   help="with a config that has tracks: run only these (comma-separated, e.g. scene-shake)")
    p.add_argument("--preset", default=None, help="preset for dps_true and blinddps (default: the config's)")
    p.add_argument("--steps", type=int, default=None, help="diffusion steps for dps_true and blinddps")
    p.add_argument("--limit", type=int, default=None, help="use the first N images")
    p.add_argument("--seed", type=int, default=None, help="seed of kernels, noise and samplers (default 0)")
    p.add_argument("--sampler-seed", type=int, default=None,
                   help="another seed for the diffusion methods only: the same measurements, new samples "
                        "(default: --seed)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--device", default=None, help="cpu or cuda (diffusion methods; default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads while running")
    p.add_argument("--no-resume", dest="resume", action="store_false", default=True,
                   help="start afresh (drop OUT/results.csv)")
    p.add_argument("--no-grid", dest="grid", action="store_false", default=True, help="skip the figure grid")
    p.add_argument("--quiet", dest="progress", action="store_false", default=True, help="no progress lines")
    p.set_defaults(func=run_evaluate)
    return p


def _kwargs(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = load_eval_config(args.config) if getattr(args, "config", None) else {}
    cfg.pop("description", None)
    kw: dict[str, Any] = dict(cfg)
    flags = {
        "images": args.images, "degradation": args.degradation, "size": args.size,
        "kernel_size": args.kernel_size, "intensity": args.intensity, "std": args.std,
        "noise": args.noise, "kernels": args.kernels, "border": args.border, "preset": args.preset, "steps": args.steps, "limit": args.limit,
        "seed": args.seed, "sampler_seed": args.sampler_seed, "device": args.device, "threads": args.threads,
    }
    for k, v in flags.items():
        if v is not None:
            kw[k] = v
    if args.methods is not None:
        kw["methods"] = [m.strip() for m in args.methods.split(",") if m.strip()]
    for k in ("size", "kernel_size", "steps", "limit", "threads"):
        if k == "kernel_size" and kw.get("benchmark") and kw.get(k) == "true":
            continue  # a recorded benchmark: each kernel's own size
        if kw.get(k) is not None and (isinstance(kw[k], bool) or not isinstance(kw[k], int) or kw[k] < 1):
            raise ValueError(f"{k.replace('_', '-')} must be a positive integer, got {kw[k]!r}")
    return kw


def run_evaluate(args: argparse.Namespace) -> int:
    """Run ``blinddps evaluate``; returns the exit code. Bad input raises ValueError
    (one line)."""
    from .runner import evaluate

    kw = _kwargs(args)
    name = kw.pop("name", None)
    if kw.get("benchmark") is not None:
        return _run_benchmark(args, kw, name)
    if "tracks" in kw:
        return _run_tracks(args, kw, name)
    if getattr(args, "tracks", None):
        raise ValueError("--tracks needs a config with tracks")
    res = _interruptible(args, evaluate, out_dir=args.out, resume=args.resume,
                         progress=getattr(args, "progress", True), grid=getattr(args, "grid", True), name=name, **kw)
    if res is None:
        return 130
    _print_table(res)
    print(f"{len(res.ran)} results computed, {len(res.skipped)} taken from {res.paths['csv']}")
    return 0


def _interruptible(args: argparse.Namespace, fn, **kw):
    """``fn(**kw)``; a missing checkpoint becomes a one-line ValueError, Ctrl-C a
    message (and None: the caller exits 130)."""
    from ..models.checkpoints import CheckpointError

    try:
        return fn(**kw)
    except CheckpointError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None
    except KeyboardInterrupt:
        print(f"blinddps evaluate: interrupted; run again with --out {args.out} to resume", file=sys.stderr)
        return None


def _print_table(res) -> None:
    print(res.table)
    print()
    print("  ".join(f"{k}: {v}" for k, v in res.paths.items()))


def _run_benchmark(args: argparse.Namespace, kw: dict[str, Any], name: str | None) -> int:
    from .levin_runner import evaluate_levin

    bench = kw.pop("benchmark")
    if bench != "levin":
        raise ValueError(f"unknown benchmark {bench!r}; the one built in is 'levin'")
    extra = sorted(set(kw) - _LEVIN_KEYS)
    if extra:
        raise ValueError(f"the levin benchmark does not take {extra[0]!r}")
    for key in ("levin_images", "levin_kernels"):
        v = kw.get(key)
        if v is not None and (not isinstance(v, list) or not all(isinstance(i, int) for i in v)):
            raise ValueError(f"{key} must be a list of 1-based indices, got {v!r}")
    out = _interruptible(args, evaluate_levin, out_dir=args.out, images=kw.pop("levin_images", None),
                         kernels=kw.pop("levin_kernels", None), progress=getattr(args, "progress", True),
                         resume=args.resume, **kw)
    if out is None:
        return 130
    print(out[0])
    return 0


def _run_tracks(args: argparse.Namespace, kw: dict[str, Any], name: str | None) -> int:
    from .tracks import evaluate_tracks, track_label

    tracks = kw.pop("tracks")
    for k in ("border", "kernels"):  # a flag fixes it for every track
        if k in kw and isinstance(tracks, list):
            value = kw.pop(k)
            tracks = [{**t, k: value} for t in tracks]
    if getattr(args, "tracks", None):
        want = [w.strip() for w in args.tracks.split(",") if w.strip()]
        known = [track_label(t) for t in tracks] if isinstance(tracks, list) else []
        bad = [w for w in want if w not in known]
        if bad:
            raise ValueError(f"unknown track {bad[0]!r}; the config has {', '.join(known)}")
        tracks = [t for t in tracks if track_label(t) in want]
    res = _interruptible(args, evaluate_tracks, tracks=tracks, out_dir=args.out, resume=args.resume,
                         progress=getattr(args, "progress", True), grid=getattr(args, "grid", True), name=name, **kw)
    if res is None:
        return 130
    _print_table(res)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m blinddps.evaluation.cli evaluate ...``)."""
    parser = argparse.ArgumentParser(prog="blinddps")
    sub = parser.add_subparsers(dest="command", required=True)
    add_evaluate_subparser(sub)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as exc:
        print(f"blinddps evaluate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
