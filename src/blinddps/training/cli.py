"""``blinddps train kernel|tilt|image --config FILE --out DIR [...]``.

The main ``blinddps`` command adds this subcommand with :func:`add_train_subparser`
and dispatches to :func:`run_train`.
"""
from __future__ import annotations

import argparse
import sys

__all__ = ["add_train_subparser", "run_train"]


def add_train_subparser(subparsers: "argparse._SubParsersAction") -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "train",
        help="train a diffusion prior (kernel, tilt map or image)",
        description=(
            "Train a diffusion prior from a YAML config (see configs/train/). Resumable: "
            "checkpoints go to OUT/checkpoint.pt; at the end the EMA weights are exported "
            "to OUT/NAME.safetensors + NAME.yaml with a loss curve and a sample grid."
        ),
    )
    p.add_argument("task", choices=["kernel", "tilt", "image"], help="what the prior models")
    p.add_argument("--config", required=True, help="training config YAML (e.g. configs/train/kernel_motion32.yaml)")
    p.add_argument("--out", required=True, help="output folder (checkpoint, exported model, pictures)")
    p.add_argument("--steps", type=int, default=None, help="total training steps (overrides the config)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop cleanly after this many minutes of this run (resume later)")
    p.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    p.add_argument("--resume", dest="resume", action="store_true", default=True,
                   help="continue from OUT/checkpoint.pt if present (default)")
    p.add_argument("--no-resume", dest="resume", action="store_false", help="start afresh")
    p.add_argument("--data", default=None, help="image folder (image task; overrides data.folder)")
    p.add_argument("--batch-size", type=int, default=None, help="override the config's batch size")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (overrides the config)")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=True, help="no progress bar")
    p.set_defaults(func=run_train)
    return p


def run_train(args: argparse.Namespace) -> int:
    from .data import DataError
    from .trainer import TrainConfigError, load_config, train

    try:
        cfg = load_config(args.config)
        if cfg.task != args.task:
            raise TrainConfigError(f"{args.config} trains a {cfg.task!r} prior, not {args.task!r}")
        if args.steps is not None:
            cfg.steps = int(args.steps)
        if args.max_minutes is not None:
            cfg.max_minutes = float(args.max_minutes)
        if args.batch_size is not None:
            cfg.batch_size = int(args.batch_size)
        if args.threads is not None:
            cfg.threads = int(args.threads)
        cfg.validate()
        result = train(cfg, args.out, resume=args.resume, device=args.device, progress=args.progress,
                       data_folder=args.data)
    except (TrainConfigError, DataError, FileNotFoundError, RuntimeError) as exc:
        print(f"blinddps train: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("blinddps train: interrupted; the last checkpoint in OUT can be resumed", file=sys.stderr)
        return 130
    state = "finished" if result.finished else "stopped (time budget); run again to resume"
    print(
        f"{cfg.name}: {state} at step {result.step}, final loss {result.final_loss:.4f} "
        f"(eps-MSE {result.final_mse:.4f}), {result.wall_minutes:.1f} min in all"
    )
    if result.weights is not None:
        print(f"model: {result.weights} (+ .yaml); pictures: {result.out_dir}/samples.png, loss.png, data.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry (``python -m blinddps.training.cli train ...``)."""
    parser = argparse.ArgumentParser(prog="blinddps")
    sub = parser.add_subparsers(dest="command", required=True)
    add_train_subparser(sub)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
