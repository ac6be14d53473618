"""The ``blinddps`` command: deblur and de-turbulence your own photos, make test data,
list models, run the demo, train and evaluate priors.

Every subcommand reports bad input as one line on stderr (``blinddps: error: ...``)
and exits 2 (usage or input errors) or 1 (runtime failures), 130 on Ctrl-C, 143 on
SIGTERM; never a traceback unless ``--debug`` is given. Results are written
atomically, each image's ``summary.json`` last, so its presence marks a complete
result; an incomplete marker written first tells a result of ours cut short by a kill
(redone on the next run) from someone else's files; existing results are never
replaced without ``--overwrite`` (a finished one with the same settings is reported as
skipped, one with other settings refused). ``OUT`` is locked for the run
(``blinddps.outputs``). docs/reliability.md lists the failures tried.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import signal
import sys
import time
import warnings
import zlib
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

PROG = "blinddps"
_T0 = time.perf_counter()  # process start, near enough (the demo reports its time including start-up)

# names each command may write into a result folder (for overwrite checks and clean-up)
RESTORE_OUTPUTS = (
    "restored.png", "restored.npy", "restored.tif", "kernel.npy", "kernel.png", "tilt.npy", "tilt.png",
    "std.npy", "std.png", "comparison.png", "summary.json",
)
SIMULATE_OUTPUTS = (
    "blurry.png", "sharp.png", "kernel.npy", "kernel.png", "tilt.npy", "tilt.png", "comparison.png", "summary.json",
)
DEMO_SAMPLES = ("astronaut", "coffee")
DEMO_PRESET = "motion_deblur"  # the default preset of `deblur`
DEMO_SOLVER_PRESET = "motion_fast"  # the demo's 128x128 part: the fast solver, same quality there (docs/benchmarks.md)
DEMO_PHOTO_SIZE = 1024  # the demo's photo part: a 1024x1024 (1.05 MP, issue 20's ">= 1 MP") photo through the photo pipeline
DEMO_PHOTO_KERNEL = 41  # (51 px took 75 s of a 105 s demo with session 9's kernel stage; 41 px: 38 s of 56 s)


class Terminated(KeyboardInterrupt):
    """SIGTERM (``kill``, ``timeout``, batch schedulers, torchrun stopping its workers),
    raised where the process is so it unwinds like Ctrl-C: partial results removed,
    locks released; the command then exits 143."""


def _on_sigterm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Terminated()


#: Seconds a run has after SIGTERM/Ctrl-C to unwind before it exits regardless.
SIGNAL_GRACE_ENV = "BLINDDPS_SIGNAL_GRACE"


class _SignalWatch:
    """A signal's Python handler runs only between bytecodes of the main thread, and one
    torch operation on a large image can take minutes: SIGTERM (or Ctrl-C) would wait
    for it. This thread hears the signal at once (``signal.set_wakeup_fd``) and, if the
    normal unwinding has not ended the command within the grace period (5 s,
    ``BLINDDPS_SIGNAL_GRACE``), exits with 143 (130): what it leaves is what a SIGKILL
    leaves, which the next run handles (the incomplete marker), less its locks (released)."""

    def __init__(self) -> None:
        import threading

        self.done = threading.Event()
        self.r, self.w = os.pipe()
        os.set_blocking(self.w, False)
        try:
            self.old_fd = signal.set_wakeup_fd(self.w)
        except ValueError:  # not the main thread
            os.close(self.r)
            os.close(self.w)
            self.r = self.w = -1
            return
        try:
            self.grace = float(os.environ.get(SIGNAL_GRACE_ENV, "") or 5.0)
        except ValueError:
            self.grace = 5.0
        threading.Thread(target=self._watch, name="blinddps-signals", daemon=True).start()

    def _watch(self) -> None:
        try:
            while True:
                data = os.read(self.r, 64)
                if not data:
                    return
                sig = next((s for s in data if s in (signal.SIGTERM, signal.SIGINT)), None)
                if sig is not None and not self.done.wait(self.grace):
                    from .outputs import release_all_locks

                    release_all_locks()
                    what = "terminated (SIGTERM)" if sig == signal.SIGTERM else "interrupted"
                    os.write(2, f"{PROG}: {what} inside a long computation; exiting now (the next run redoes "
                                f"what was cut short)\n".encode())
                    os._exit(143 if sig == signal.SIGTERM else 130)
        except OSError:
            return
        finally:
            with suppress(OSError):
                os.close(self.r)

    def close(self) -> None:
        self.done.set()
        if self.w >= 0:
            with suppress(ValueError):
                signal.set_wakeup_fd(self.old_fd)
            with suppress(OSError):
                os.close(self.w)  # the watcher reads EOF and ends
            self.w = -1


@contextmanager
def signal_handling() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C (:class:`Terminated`), promptly (:class:`_SignalWatch`);
    the previous handlers come back afterwards. A no-op outside the main thread."""
    try:
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:
        yield
        return
    watch = _SignalWatch()
    try:
        yield
    finally:
        watch.close()
        signal.signal(signal.SIGTERM, old_term)


class CLIError(Exception):
    """A failure the command reports in one line; ``code`` 2 = usage/input, 1 = runtime."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def _one_line(text: object) -> str:
    return " ".join(str(text).split())


def _err(message: str) -> None:
    print(f"{PROG}: error: {_one_line(message)}", file=sys.stderr, flush=True)


def _err_for(prefix: str, label: str, exc: object) -> None:
    """One error line about one input (its name once, even if the message names it)."""
    msg = _one_line(exc)
    _err(f"{prefix}{msg}" if label in msg else f"{prefix}{label}: {msg}")


# ============================================================================ parsing
class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors become one line (no usage dump)."""

    def error(self, message: str):  # type: ignore[override]
        raise CLIError(f"{message} (see '{self.prog} --help')", 2)


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps epilogs as written; adds ``(default: X)`` where a default says something."""

    def _get_help_string(self, action):
        text = action.help or ""
        d = action.default
        if (d is None or d is False or d is argparse.SUPPRESS or "%(default)" in text or "default:" in text
                or action.option_strings == [] or isinstance(d, bool)):
            return text
        return text + " (default: %(default)s)"


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return v


def _nonneg_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return v


def _float_in(lo: float | None, hi: float | None, lo_open: bool = False, hi_open: bool = False):
    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        bad = (not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo))
               or (hi is not None and (v >= hi if hi_open else v > hi)))
        if bad:
            rng = (f"{'(' if lo_open else '['}{lo if lo is not None else '-inf'}, "
                   f"{hi if hi is not None else 'inf'}{')' if hi_open else ']'}")
            raise argparse.ArgumentTypeError(f"expected a number in {rng}, got {text!r}")
        return v

    return parse


_RESTORE_EPILOG = """\
outputs, per image in OUT/<name>/ (or in OUT/ for a single input file):
  restored.png   the restored picture, same size, bit depth and mode as the input
                 (alpha kept); restored.npy for .npy input, restored.tif for float TIFF
  kernel.npy     the estimated blur kernel (float32, sums to 1), kernel.png its picture
{extra}  comparison.png input | restored | kernel, labelled
  summary.json   input, preset and every setting, seed, versions, timings, residual;
                 written last: its presence marks a complete result
  With more than one posterior sample (the shipped presets average 4; --samples N)
  also std.png and std.npy (posterior standard deviation, H x W x C, in units of
  the full intensity range). Several inputs: OUT/index.csv lists
  every input with status ok|failed|skipped, seconds, residual and error.

Results that exist are skipped (re-running resumes an interrupted run, even one
killed mid-write: its half-written folders are redone); results made with other
settings, and files of another program, are never replaced unless --overwrite is
given. One run at a time per OUT (a lock file; a second run stops with a message).
--boundary valid (the default) models a photo whose scene continues past its frame
(the picture is estimated K-1 pixels larger and cropped back); zero is the paper's
zero-padded model (right for data made by `blinddps simulate`).

scale out over GPUs (or CPU processes), one input shard per process:
  torchrun --nproc-per-node 4 -m blinddps {cmd} photos/ --out results/

examples:
{examples}"""

_DEBLUR_EXAMPLES = """\
  blinddps deblur photo.jpg --out result/
  blinddps deblur photos/ --out results/ --steps 250 --seed 1
  blinddps deblur a.png b.png --out results/ --samples 4 --device cuda
  blinddps deblur blurry.png --out r/ --boundary zero --preset paper_motion_ffhq --kernel-size 64
"""

_TURB_EXAMPLES = """\
  blinddps turbulence face.png --out result/
  blinddps turbulence frames/ --out results/ --device cuda --batch-size 4
  blinddps turbulence data/face/frames/ --out burst_result/ --burst
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show Python tracebacks instead of one-line errors")


def _add_restore(sub, name: str) -> argparse.ArgumentParser:
    turb = name == "turbulence"
    extra = "  tilt.npy       the estimated tilt field (2 x H x W pixels: horizontal, vertical),\n" \
            "                 tilt.png its picture (hue = direction, brightness = length)\n" if turb else ""
    p = sub.add_parser(
        name,
        help="remove atmospheric turbulence (tilt + blur) from photos" if turb else "blind deblurring of photos",
        description=(
            "Estimate the sharp picture and the unknown " + ("tilt field and blur kernel" if turb else "blur kernel")
            + " of each INPUT with parallel diffusion priors (BlindDPS)."
        ),
        epilog=_RESTORE_EPILOG.format(extra=extra, cmd=name, examples=_TURB_EXAMPLES if turb else _DEBLUR_EXAMPLES),
        formatter_class=_Formatter,
    )
    p.add_argument("inputs", nargs="*" if turb else "+", metavar="INPUT",
                   help="image files (PNG, JPEG, TIFF, BMP, WebP, .npy) and/or folders of them")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--preset", default=None,
                   help="preset name in configs/ or a YAML path (default: %s)"
                   % ("turbulence, or paper_turbulence_ffhq while that is missing" if turb else "motion_deblur"))
    p.add_argument("--kernel-size", type=_positive_int, default=None, metavar="K",
                   help="blur kernel size in pixels, 3 up to the kernel prior's window (32 for the shipped "
                        "priors; a smaller kernel is estimated in the window's centre); default: the preset's")
    p.add_argument("--steps", type=_positive_int, default=None, metavar="N",
                   help="diffusion steps (default: the preset's)")
    p.add_argument("--seed", type=_nonneg_int, default=0, metavar="S", help="random seed")
    p.add_argument("--samples", type=_positive_int, default=None, metavar="N",
                   help="posterior samples per image, run as one batch: the result is their mean; N > 1 adds "
                        "std.png (default: the preset's num_samples; each sample costs one image's time and memory)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"],
                   help="auto = cuda if available (cuda:LOCAL_RANK under torchrun), else cpu")
    p.add_argument("--batch-size", type=_positive_int, default=1, metavar="B",
                   help="restore up to B images of the same size together")
    p.add_argument("--boundary", choices=["valid", "zero"], default="valid",
                   help="valid: the scene continues past the frame (real photos); zero: zero-padded blur (the paper's model)")
    p.add_argument("--image-model", default=None, metavar="PATH", help="image prior weights (replaces the preset's)")
    p.add_argument("--kernel-model", default=None, metavar="PATH", help="kernel prior weights (replaces the preset's)")
    if turb:
        p.add_argument("--tilt-model", default=None, metavar="PATH", help="tilt prior weights (replaces the preset's)")
        p.add_argument("--burst", action="store_true",
                       help="the inputs are frames of one static scene: restore one image from all of them "
                            "(preset turbulence_burst; OUT gets restored, kernel, tilt.npy per frame; docs/turbulence.md)")
        p.add_argument("--frames", default=None, metavar="GLOB",
                       help="the burst's frames as a quoted glob (implies --burst), e.g. 'frames/*.png'")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                   help="torch CPU threads (default: torch's, capped at the idle cores)")
    p.add_argument("--amp", action="store_true", help="bfloat16 mixed precision for the networks (CUDA only)")
    p.add_argument("--overwrite", action="store_true", help="replace existing results")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    if not turb:
        _add_photo_options(p)
    _add_common(p)
    p.set_defaults(func=lambda a: _cmd_restore(a, name))
    return p


# --pipeline auto: larger images go through the photo pipeline. Measured (docs/benchmarks.md):
# at 255x255 (Levin's 32 recorded blurs) it is ahead of BlindDPS on the whole image by ~6 dB
# and ~200x faster, and still far ahead of the blurry input with noise 0.02; at 128x128,
# noise 0.02, 32-px kernels it is far behind. 180x180 sits between the two measured sizes.
PHOTO_AUTO_PIXELS = 180 * 180


def _add_photo_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("photo pipeline (docs/photos.md)")
    g.add_argument("--pipeline", choices=["auto", "photo", "direct"], default="auto",
                   help="photo: kernel estimated at a coarse scale on an informative region, refined "
                        "coarse-to-fine, the image restored at full resolution (any size; kernels up to half the image's side, automatic size up to 151 px); "
                        "direct: BlindDPS on the whole image (small images, kernel within the prior's window); "
                        "auto: photo for images over %d pixels or a --kernel-size beyond the prior's window"
                        % PHOTO_AUTO_PIXELS)
    g.add_argument("--estimator", choices=["blinddps", "l0", "both"], default=None,
                   help="photo pipeline: the coarse blind estimate (default: l0, measured best on held-out photos, "
                        "docs/photos.md)")
    g.add_argument("--no-linear-light", dest="linear_light", action="store_false",
                   help="photo pipeline: deconvolve the recorded values (default: in linear light, the sRGB curve "
                        "undone and re-applied; the kernel is estimated from the recorded values either way)")
    g.add_argument("--no-clip-mask", dest="clip_mask", action="store_false",
                   help="photo pipeline: keep clipped highlights in the data term (default: left out)")
    g.add_argument("--kernel-floor", type=_float_in(0.0, 1.0, hi_open=True), default=None, metavar="F",
                   help="photo pipeline: kernel entries below F of the peak are zeroed while estimating; given "
                        "alone, the only floor (default: 0.035, and a second estimate at --alt-floors; the second "
                        "replaces the first only if it explains the photo clearly better, docs/photos.md)")
    g.add_argument("--no-fallback", dest="fallback", action="store_false",
                   help="photo pipeline: keep a restoration that fails its check (a quarter of the frame more at "
                        "black/white than the input: a noise-like kernel); default: try the other kernel "
                        "candidate, else write the input unchanged with a warning")
    g.add_argument("--alt-floors", type=_float_in(0.0, 1.0, hi_open=True), nargs="*", default=None, metavar="F",
                   help="photo pipeline: further kernel floors, each a whole estimate of its own (default 0.05; "
                        "none: one estimate, half the kernel stage's time)")


def photo_settings(args: argparse.Namespace, cfg: dict):
    """The photo pipeline's settings from the command's flags (``None`` for turbulence)."""
    if getattr(args, "pipeline", None) is None:
        return None
    from .photo.pipeline import PhotoSettings

    st = PhotoSettings(kernel_size=args.kernel_size, seed=args.seed, linear_light=args.linear_light,
                       clip_mask=args.clip_mask, steps=args.steps, samples=args.samples,
                       fallback=getattr(args, "fallback", True))
    if args.estimator is not None:
        st.estimator = args.estimator
    if getattr(args, "threads", None):
        st.workers = int(args.threads)  # threads asked for bound the kernel candidates too
    if getattr(args, "kernel_floor", None) is not None:
        st.kernel_floor = args.kernel_floor
        st.alt_floors = ()  # a floor asked for is the floor used ...
    if getattr(args, "alt_floors", None) is not None:
        st.alt_floors = tuple(args.alt_floors)  # ... unless alternatives are asked for too
    if args.preset is not None:
        st.preset = args.preset
    overrides: dict[str, Any] = {}
    for prior in ("image", "kernel"):
        spec = (cfg.get("priors") or {}).get(prior) or {}
        if getattr(args, f"{prior}_model", None):
            overrides.setdefault("priors", {})[prior] = {"model": spec.get("model"), **(
                {"config": spec["config"]} if "config" in spec else {})}
    st.overrides = overrides
    return st


def uses_photo_pipeline(args: argparse.Namespace, height: int, width: int) -> bool:
    """Whether one image of ``height x width`` goes through the photo pipeline."""
    mode = getattr(args, "pipeline", None)
    if mode in (None, "direct"):
        return False
    return mode == "photo" or getattr(args, "photo_kernel_only", False) or height * width > PHOTO_AUTO_PIXELS


def _add_simulate(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "simulate",
        help="blur sharp images to make test data with the ground truth beside it",
        description=(
            "Blur each SHARP image as the paper's protocol does: 'same'-size blur with zero padding "
            "(turbulence: tilt warp, then blur), plus Gaussian noise of std --noise on the [-1, 1] scale."
        ),
        epilog="""\
outputs, per image in OUT/<name>/ (or OUT/ for a single file):
  blurry.png     the measurement, 16-bit PNG (keeps the noise), clipped to the range
  sharp.png      the ground truth as read (alpha dropped)
  kernel.npy     the true kernel (float32, sums to 1), kernel.png its picture
  tilt.npy       turbulence only: the true tilt field (2 x H x W pixels), tilt.png
  comparison.png sharp | blurry | kernel
  summary.json   every setting and the per-image seed (written last)

examples:
  blinddps simulate sharp.png --out data/ --blur motion --intensity 0.5 --kernel-size 64
  blinddps simulate photos/ --out data/ --blur gaussian --std 3.0 --noise 0.02 --seed 1
  blinddps simulate face.png --out data/ --blur turbulence
  blinddps simulate face.png --out data/ --turbulence --frames 8
""",
        formatter_class=_Formatter,
    )
    p.add_argument("inputs", nargs="+", metavar="SHARP", help="sharp image files and/or folders of them")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--blur", default=None, choices=["motion", "gaussian", "turbulence"],
                   help="kind of degradation (required unless --turbulence)")
    p.add_argument("--turbulence", action="store_true", help="the same as --blur turbulence")
    p.add_argument("--frames", type=_positive_int, default=1, metavar="N",
                   help="turbulence: a burst of N frames of each image, each with its own tilt (OUT/<name>/frames/)")
    p.add_argument("--intensity", type=_float_in(0.0, 1.0), default=0.5,
                   help="motion: trajectory intensity in [0, 1] (0 straight, 1 strongly curved)")
    p.add_argument("--kernel-size", type=_positive_int, default=64, metavar="K", help="kernel size in pixels")
    p.add_argument("--std", type=_float_in(0.0, None, lo_open=True), default=3.0,
                   help="gaussian/turbulence: kernel standard deviation in pixels")
    p.add_argument("--tilt-max", type=_float_in(0.0, None, lo_open=True), default=2.5,
                   help="turbulence: largest tilt in pixels")
    p.add_argument("--noise", type=_float_in(0.0, None), default=0.02,
                   help="Gaussian noise std on the [-1, 1] scale")
    p.add_argument("--seed", type=_nonneg_int, default=0, metavar="S", help="random seed")
    p.add_argument("--overwrite", action="store_true", help="replace existing results")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_common(p)
    p.set_defaults(func=_cmd_simulate)
    return p


def _add_models(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "models",
        help="list the published checkpoints and shipped priors, and where they are",
        description="List the known published BlindDPS checkpoints and the priors shipped with the package: "
                    "where each is looked for and whether it is present. Nothing is downloaded.",
        epilog="examples:\n  blinddps models\n  BLINDDPS_MODELS=/data/ckpt blinddps models\n",
        formatter_class=_Formatter,
    )
    _add_common(p)
    p.set_defaults(func=_cmd_models)
    return p


def _add_demo(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "demo",
        help="deblur two sample photos with the shipped priors (what `make demo` runs)",
        description=(
            "Blur two 128x128 crops of scikit-image's sample photos (astronaut, coffee; evaluation only, never "
            "trained on) with a seeded 32x32 motion kernel (intensity 0.5) and noise 0.02, deblur them with the "
            f"{DEMO_SOLVER_PRESET} preset and its shipped priors; then a {DEMO_PHOTO_SIZE}x{DEMO_PHOTO_SIZE} "
            f"photo (astronaut, upscaled) with {DEMO_PHOTO_KERNEL}-px held-out camera shake in linear light, real "
            "borders, noise 0.01, 8-bit, through the photo pipeline; report PSNR and kernel MNC."
        ),
        epilog="examples:\n  blinddps demo --out demo_out\n  blinddps demo --out demo_out --steps 400 --seed 1\n",
        formatter_class=_Formatter,
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--steps", type=_positive_int, default=None, metavar="N",
                   help="diffusion steps (default: the preset's)")
    p.add_argument("--samples", type=_positive_int, default=None, metavar="N",
                   help="posterior samples averaged per photo (default: the preset's)")
    p.add_argument("--seed", type=_nonneg_int, default=0, metavar="S", help="random seed (kernels, noise, sampler)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"], help="device")
    p.add_argument("--threads", type=_positive_int, default=None, metavar="T",
                   help="CPU threads (default: 1 for torch, 1 is fastest on a busy 2-core machine, and the "
                        "machine's cores for the photo part's two kernel estimates, which run side by side)")
    p.add_argument("--overwrite", action="store_true", help="replace a folder that holds other results")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_common(p)
    p.set_defaults(func=_cmd_demo)
    return p


def _add_guarded(sub, name: str, module: str, adder: str, runner: str, help_text: str,
                 load: bool = True) -> None:
    """Add a subcommand that another module provides; if it cannot be imported, the
    subcommand still exists and says so in one line. ``load=False`` (another command
    runs) only lists it, without importing its module (which imports torch: seconds)."""
    import importlib

    if not load:
        sub.add_parser(name, help=help_text, add_help=False)
        return
    try:
        mod = importlib.import_module(module)
        add = getattr(mod, adder)
        run = getattr(mod, runner)
    except Exception as exc:  # noqa: BLE001 - any import problem becomes a one-line message
        reason = _one_line(f"{type(exc).__name__}: {exc}")
        # no option prefix: whatever follows is taken in, and the run says why it cannot work
        p = sub.add_parser(name, help=f"{help_text} (unavailable)", add_help=False, prefix_chars="\x01")
        p.add_argument("rest", nargs="*")

        def unavailable(args, _reason=reason):
            raise CLIError(f"the {name} subcommand is unavailable ({module}: {_reason})", 1)

        p.set_defaults(func=unavailable)
        return
    p = add(sub)
    if p is not None and "--debug" not in p._option_string_actions:
        _add_common(p)
    if p is not None:
        p.set_defaults(func=lambda args, _run=run: _locked_run(args, _run))


def _locked_run(args: argparse.Namespace, run) -> int:
    """Run another module's subcommand holding its ``--out`` (one run per folder)."""
    out = getattr(args, "out", None)
    if not out:
        return run(args)
    with output_lock(Path(out)):
        return run(args)


def _command_in(argv: Sequence[str] | None) -> str | None:
    """The subcommand ``argv`` names (its first word that is not an option), if any."""
    for word in argv or ():
        if not word.startswith("-"):
            return word
    return None


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``blinddps`` parser. Given ``argv``, the subcommands provided by other modules
    are imported only when ``argv`` runs one of them (start-up stays well under a second
    for ``--help``, ``--version`` and the other commands); without it, all of them are."""
    from . import __version__

    command = _command_in(argv) if argv is not None else None
    load_all = argv is None

    parser = _Parser(
        prog=PROG,
        description="Blind inverse problems with parallel diffusion priors (BlindDPS): deblur and de-turbulence "
                    "your own photos.",
        epilog="""\
examples:
  blinddps deblur photo.jpg --out result/          restore one photo
  blinddps deblur photos/ --out results/           every image in a folder
  blinddps simulate sharp.png --out data/ --blur motion
  blinddps models                                  which checkpoints are where
  blinddps demo --out demo_out                     a 2-minute CPU demo

Run 'blinddps COMMAND --help' for a command's options and outputs.""",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_common(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    _add_restore(sub, "deblur")
    _add_restore(sub, "turbulence")
    _add_simulate(sub)
    _add_models(sub)
    _add_demo(sub)
    _add_guarded(sub, "train", "blinddps.training.cli", "add_train_subparser", "run_train",
                 "train a diffusion prior", load=load_all or command == "train")
    _add_guarded(sub, "evaluate", "blinddps.evaluation.cli", "add_evaluate_subparser", "run_evaluate",
                 "benchmark methods on test data", load=load_all or command == "evaluate")
    return parser


# ============================================================================ inputs and outputs
@dataclass
class Job:
    input: Path
    dir: Path
    label: str


def _collect_inputs(raw: Sequence[str]) -> list[Path]:
    from .io import IMAGE_SUFFIXES, list_images

    found: list[Path] = []
    for item in raw:
        p = Path(item)
        if p.is_dir():
            imgs = list_images(p)
            if not imgs:
                raise CLIError(f"no images in folder {p} (looked for {', '.join(IMAGE_SUFFIXES)})")
            found.extend(imgs)
        elif p.is_file():
            found.append(p)
        elif p.exists():
            raise CLIError(f"input {p} is not a file or a folder")
        else:
            raise CLIError(f"input not found: {p}")
    seen: set[str] = set()
    unique = []
    for p in found:
        key = str(p.resolve())
        if key not in seen:
            seen.add(key)
            unique.append(p)
    return sorted(unique, key=str)


def plan_jobs(raw_inputs: Sequence[str], out: Path) -> tuple[list[Job], bool]:
    """The inputs (sorted) and each one's output folder; ``True`` when the results go
    straight into ``out`` (a single input file)."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    paths = _collect_inputs(raw_inputs)
    single = len(raw_inputs) == 1 and len(paths) == 1 and Path(raw_inputs[0]).is_file()
    if single:
        return [Job(paths[0], out, str(paths[0]))], True
    counts: dict[str, int] = {}
    for p in paths:
        counts[p.stem] = counts.get(p.stem, 0) + 1
    used: set[str] = set()
    jobs = []
    for p in paths:
        name = p.stem if counts[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        if name.lower() == "index.csv":
            name += "_"
        base, i = name, 2
        while name in used:
            name, i = f"{base}_{i}", i + 1
        used.add(name)
        jobs.append(Job(p, out / name, str(p)))
    return jobs, False


def _existing_outputs(folder: Path, names: Sequence[str]) -> list[Path]:
    if not folder.is_dir():
        return []
    return [folder / n for n in names if (folder / n).exists()]


def check_outputs(jobs: Sequence[Job], names: Sequence[str], overwrite: bool, command: str,
                  settings: dict | None = None, settings_of: Callable[[dict], dict] | None = None) -> None:
    """Refuse (before any work) to replace results unless ``overwrite``: files without
    their ``summary.json`` that are not an interrupted result of ours (no incomplete
    marker: a foreign run's), a complete result of another input or command, or one made
    with other ``settings`` (``settings_of(summary)`` gives a summary's; the message
    names the first difference). Complete results of the same input and settings are
    skipped later; interrupted ones are redone."""
    from .outputs import incomplete_command, is_incomplete, settings_difference

    for job in jobs:
        src = job.input.resolve()
        if any((job.dir / n).resolve() == src for n in names):
            raise CLIError(f"the result would overwrite the input {job.input}; choose another --out")
    if overwrite:
        return
    for job in jobs:
        summary = job.dir / "summary.json"
        if is_incomplete(job.dir):
            was = incomplete_command(job.dir)
            if was in (None, command):
                continue  # ours, cut short (killed): redone
            raise CLIError(f"{job.dir} holds an unfinished result of '{was}', not of '{command}'; "
                           "pass --overwrite to replace it, or choose another --out")
        existing = _existing_outputs(job.dir, names)
        if not existing:
            continue
        if not summary.is_file():
            raise CLIError(
                f"{existing[0]} already exists (from an unfinished or other run); "
                "pass --overwrite to replace it, or choose another --out"
            )
        s = _read_summary(job.dir)
        prev, mine = s.get("input_path"), str(job.input.resolve())
        if s.get("command") != command or (prev and prev != mine):
            what = f"'{s.get('command')}' of {prev or s.get('input', {}).get('path', '?')}"
            raise CLIError(f"{summary} holds the result of {what}, not of '{command}' of {mine}; "
                           "pass --overwrite to replace it, or choose another --out")
        if settings is not None and settings_of is not None:
            diff = settings_difference(settings_of(s), settings)
            if diff:
                raise CLIError(f"{summary} was made with other settings ({diff}); pass --overwrite to redo it "
                               "with these, or choose another --out")


@contextmanager
def output_lock(out: Path, distributed: bool = False) -> Iterator[Any]:
    """Hold ``out`` for this run (:class:`blinddps.outputs.OutputLock`): a one-line
    error, before any work, when another live run holds it (exit 1) or it cannot be
    written (exit 2). The ranks of one torchrun job share it."""
    import socket

    from .outputs import OutputBusyError, OutputLock, OutputNotWritableError

    run_id = None
    if distributed:
        rid = os.environ.get("TORCHELASTIC_RUN_ID", "none")
        run_id = rid if rid != "none" else f"none@{socket.gethostname()}:{os.getppid()}"
    lock = OutputLock(out, run_id=run_id)
    try:
        lock.acquire()
    except OutputNotWritableError as exc:
        raise CLIError(f"--out: {exc}", 2) from None
    except OutputBusyError as exc:
        raise CLIError(str(exc), 1) from None
    try:
        yield lock
    finally:
        lock.release()


def _tidy(folder: Path, names: Sequence[str]) -> None:
    """A complete result a killed run left behind: its stale marker and ``.part`` files go."""
    from .outputs import clear_incomplete, remove_stale_parts

    with suppress(OSError):
        remove_stale_parts(folder, names)
        clear_incomplete(folder)


def check_writable_dirs(jobs: Sequence[Job]) -> None:
    """Every existing result folder of ``jobs`` can be written (before any work)."""
    from .outputs import OutputNotWritableError, check_writable

    for job in jobs:
        if job.dir.is_dir():
            try:
                check_writable(job.dir)
            except OutputNotWritableError as exc:
                raise CLIError(f"--out: {exc}", 2) from None


def _read_summary(folder: Path) -> dict:
    try:
        with open(folder / "summary.json", encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


class _Writer:
    """Writes one result so that a kill at any instant leaves it recognisable: the
    incomplete marker goes in before the first file and comes out after the
    ``summary.json``, which is written last (``blinddps.outputs``). Tracks the files
    written so a failure, Ctrl-C or SIGTERM can remove them (no partial result is left
    behind); stale ``.part`` files of a killed run are removed first."""

    def __init__(self, folder: Path, names: Sequence[str], overwrite: bool, marker: dict) -> None:
        from .outputs import fault_point, mark_incomplete, remove_stale_parts

        self.folder = folder
        self.names = names
        self.written: list[Path] = []
        self.created = not folder.exists()
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_parts(folder, names)
        mark_incomplete(folder, marker)
        fault_point("marked")
        if overwrite:  # the old result stops being complete before anything changes
            (folder / "summary.json").unlink(missing_ok=True)

    def add(self, path: Path) -> Path:
        from .outputs import fault_point

        fault_point(f"before:{Path(path).name}")
        self.written.append(Path(path))
        return Path(path)

    def finish(self, summary: dict) -> None:
        from .io import save_json
        from .outputs import clear_incomplete, fault_point

        keep = {p.name for p in self.written} | {"summary.json"}
        for stale in _existing_outputs(self.folder, self.names):
            if stale.name not in keep:  # left by an earlier (overwritten or interrupted) run
                stale.unlink(missing_ok=True)
        fault_point("before:summary.json")
        save_json(self.folder / "summary.json", summary)
        fault_point("after:summary.json")
        clear_incomplete(self.folder)

    def abort(self) -> None:
        from .outputs import clear_incomplete

        for p in self.written:
            try:
                p.unlink(missing_ok=True)
            except OSError:
                pass
        left = _existing_outputs(self.folder, self.names)
        if self.created:  # a folder of our own: nothing of it stays
            for p in left:
                with suppress(OSError):
                    p.unlink()
            left = []
        if not left:  # else the marker stays: the next run redoes the folder without --overwrite
            with suppress(OSError):
                clear_incomplete(self.folder)
        if self.created:
            with suppress(OSError):
                self.folder.rmdir()


def _versions() -> dict[str, str]:
    import numpy
    import PIL
    import torch

    from . import __version__

    return {"blinddps": __version__, "torch": torch.__version__, "numpy": numpy.__version__,
            "pillow": PIL.__version__, "python": platform.python_version()}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _set_threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(int(n))


def _auto_threads() -> int | None:
    """CPU threads when none were asked for: torch's default, but no more than the cores
    that are idle (cores minus the 1-minute load average, at least 1). More threads than
    free cores is very slow: on this 2-core machine with other work running, two threads
    took 615 s for the demo that one thread ran in 40 s. None when OMP_NUM_THREADS is set
    (torchrun sets it) or the load is unknown."""
    import torch

    if os.environ.get("OMP_NUM_THREADS"):
        return None
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    free = int((os.cpu_count() or 1) - load + 0.5)
    return max(1, min(torch.get_num_threads(), free))


def _progress_ok(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


# ============================================================================ presets for restore
def _train_hint(name: str) -> str:
    from .presets import _REPO_CONFIGS

    task = "image" if name.startswith("image") else ("tilt" if name.startswith("tilt") else "kernel")
    cfg = _REPO_CONFIGS / "train" / f"{name}.yaml"
    if cfg.is_file():
        return (f"train it with 'blinddps train {task} --config configs/train/{name}.yaml --out runs/{name}' "
                f"and copy runs/{name}/{name}.safetensors and {name}.yaml there")
    return f"train a {task} prior with 'blinddps train' and save it there as {name}.safetensors + {name}.yaml"


def _check_shipped(cfg: dict) -> None:
    from .models.checkpoints import SHIPPED_DIR
    from .presets import shipped_model_file

    for spec in (s.get("model") for s in cfg["priors"].values() if isinstance(s, dict)):
        if isinstance(spec, str) and spec.startswith("shipped:"):
            name = spec.split(":", 1)[1]
            w = shipped_model_file(name)
            if not w.is_file() or not w.with_suffix(".yaml").is_file():
                raise CLIError(f"the shipped prior {name} is missing from {SHIPPED_DIR}; {_train_hint(name)}")


def _model_override(cfg: dict, name: str, raw: str, over: dict) -> None:
    from .models.checkpoints import KNOWN_CHECKPOINTS

    path = Path(raw).expanduser()
    if not path.is_file():
        raise CLIError(f"--{name}-model: file not found: {path}")
    if name not in cfg["priors"] or cfg["priors"][name] is None:
        raise CLIError(f"--{name}-model: the preset {cfg.get('name')!r} has no {name} prior")
    spec: dict[str, Any] = {"model": str(path.resolve())}  # the same file from any folder: the same setting
    if not (path.suffix == ".safetensors" and path.with_suffix(".yaml").is_file()):
        known = next((i for i in KNOWN_CHECKPOINTS.values() if i.filename == path.name), None)
        if known is not None:
            spec["config"] = dict(known.config)
        elif not cfg["priors"][name].get("config"):
            raise CLIError(
                f"--{name}-model {path}: its network config is unknown; give a .safetensors with its .yaml "
                "beside it (blinddps.models.save_model) or a published checkpoint file"
            )
    over.setdefault("priors", {})[name] = spec


def restore_config(args: argparse.Namespace, task: str) -> tuple[dict, Any]:
    """The preset with the command's overrides, checked before any work: the preset
    exists, its priors load, and each prior fits the operator's unknowns. Returns the
    config dict and the operator."""
    from .presets import PresetError, build_operator, build_variables, check_prior_shapes, list_presets, load_preset, merge

    name = args.preset
    if name is None:
        name = DEMO_PRESET if task == "deblur" else (
            "turbulence" if "turbulence" in list_presets() else "paper_turbulence_ffhq")
    cfg = load_preset(name)
    over: dict[str, Any] = {"operator": {"mode": "valid" if args.boundary == "valid" else "same"}}
    cfg = merge(cfg, step_and_model_overrides(args, cfg, over))
    if "image" not in cfg["priors"]:
        raise CLIError(f"preset {cfg.get('name')!r} has no image prior")
    _check_shipped(cfg)

    def fit(c: dict):
        operator = build_operator(c["operator"])
        variables = build_variables(c, device="cpu", operator=operator)
        try:
            check_prior_shapes(variables, operator)
        except PresetError as exc:
            return operator, exc
        return operator, None

    sized = cfg if args.kernel_size is None else merge(cfg, {"operator": {"kernel_size": int(args.kernel_size)}})
    operator, err = fit(sized)
    if err is not None and sized is not cfg and getattr(args, "pipeline", "direct") != "direct":
        args.photo_kernel_only = True  # only the photo pipeline takes this kernel: every image goes through it
        operator, err = fit(cfg)
    else:
        cfg = sized
    if err is not None:
        raise CLIError(str(err))
    return cfg, operator


def step_and_model_overrides(args: argparse.Namespace, cfg: dict, over: dict) -> dict:
    """``over`` plus the command's ``--steps`` and ``--image/kernel/tilt-model`` flags."""
    if args.steps is not None:
        over["steps"] = int(args.steps)
    for prior in ("image", "kernel", "tilt"):
        raw = getattr(args, f"{prior}_model", None)
        if raw:
            _model_override(cfg, prior, raw, over)
    return over


# ============================================================================ restore
def _load(job: Job):
    from .io import ImageReadError, read_image

    try:
        y, info = read_image(job.input)
        return y, info, None
    except ImageReadError as exc:
        return None, None, exc


def _batches(jobs: Sequence[Job], batch_size: int) -> Iterator[list]:
    """Groups of up to ``batch_size`` loaded images of the same shape, in input order
    as far as grouping allows; an unreadable image comes alone with its error."""
    if batch_size <= 1:
        for job in jobs:
            yield [(job, *_load(job))]
        return
    pending: dict[tuple, list] = {}
    for job in jobs:
        y, info, err = _load(job)
        if err is not None:
            yield [(job, None, None, err)]
            continue
        key = tuple(y.shape)
        pending.setdefault(key, []).append((job, y, info, None))
        if len(pending[key]) >= batch_size:
            yield pending.pop(key)
    yield from pending.values()


def _classify(exc: BaseException) -> int:
    """2 for bad input (usage, images, presets, checkpoints: all ``ValueError``s), 1 for
    runtime failures. Imports nothing (an argument error must not load torch)."""
    if isinstance(exc, CLIError):
        return exc.code
    if isinstance(exc, ValueError):  # ImageReadError, PresetError, CheckpointError are ValueErrors
        return 2
    ck = sys.modules.get(f"{__package__}.models.checkpoints")
    if ck is not None and isinstance(exc, getattr(ck, "CheckpointError", ())):
        return 2
    return 1


def restore_settings(cfg: dict, args: argparse.Namespace) -> dict:
    """What decides a restore result, as compared on resume: the preset with every
    override (steps, kernel size, boundary, models), the seed and the sample count."""
    from .presets import sampling_counts

    out = {"config": cfg, "seed": args.seed, "samples": args.samples or sampling_counts(cfg)[1]}
    st = photo_settings(args, cfg)
    if st is not None:
        from dataclasses import asdict

        photo = {k: v for k, v in asdict(st).items() if k not in ("seed", "steps", "samples")}  # compared above
        out["pipeline"] = {"mode": args.pipeline, "photo": photo}
    return out


def restore_settings_of(summary: dict) -> dict:
    """:func:`restore_settings` as a restore result's ``summary.json`` records them."""
    out = {"config": summary.get("config"), "seed": summary.get("seed"),
           "samples": (summary.get("settings") or {}).get("samples")}
    if summary.get("command") == "deblur":
        out["pipeline"] = summary.get("pipeline")
    return out


def _explain_memory(exc: Exception) -> Exception | str:
    """An allocator failure the estimate did not foresee (``blinddps.memory``), in one
    line with what to do; other exceptions unchanged."""
    text = _one_line(exc)
    if isinstance(exc, MemoryError) and "needs about" in text:
        return exc  # the estimate's own message says it already
    if isinstance(exc, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower():
        return (f"out of memory ({text[:160]}); try --samples 1, --batch-size 1, or a downscaled image "
                "(each posterior sample and each batched image costs one image's memory)")
    return exc


def _cmd_restore(args: argparse.Namespace, task: str) -> int:
    if task == "turbulence" and (getattr(args, "burst", False) or getattr(args, "frames", None)):
        from .burst.cli import run_burst  # a burst: all inputs are frames of one scene

        return run_burst(args)
    if not args.inputs:
        raise CLIError("give at least one INPUT image or folder")
    out = Path(args.out)
    jobs, single = plan_jobs(args.inputs, out)  # input errors before torch is imported

    from . import distributed as dist

    _set_threads(args.threads)
    try:
        ctx = dist.context_from_env()
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    try:
        device = ctx.device(args.device)
    except (RuntimeError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if args.threads is None and device.type == "cpu":
        _set_threads(_auto_threads())
    with output_lock(out, ctx.distributed):  # one run per --out; also the check that it is writable
        cfg, operator = restore_config(args, task)
        # every rank checks every job, before any work
        check_outputs(jobs, RESTORE_OUTPUTS, args.overwrite, task, restore_settings(cfg, args), restore_settings_of)
        return _restore_jobs(args, task, jobs, single, out, ctx, device, cfg, operator)


def _restore_jobs(args: argparse.Namespace, task: str, jobs: list[Job], single: bool, out: Path, ctx, device,
                  cfg: dict, operator) -> int:
    import torch
    from tqdm.auto import tqdm

    from . import distributed as dist
    from .api import solve
    from .distributed import Record

    mine = dist.shard(jobs, ctx.rank, ctx.world_size)
    ctx.init(device)
    prefix = f"[rank {ctx.rank}] " if ctx.distributed else ""
    records: list[Record] = []
    show = _progress_ok(args.quiet)
    marker = {"command": task, "settings": restore_settings(cfg, args)}
    try:
        todo = []
        for job in mine:
            if not args.overwrite and (job.dir / "summary.json").is_file():
                _tidy(job.dir, RESTORE_OUTPUTS)
                s = _read_summary(job.dir)
                records.append(Record(str(job.input), "skipped", s.get("timings", {}).get("seconds"),
                                      s.get("residual_rms"), "", str(job.dir)))
                tqdm.write(f"{prefix}{job.label}: skipped ({job.dir / 'summary.json'} exists; --overwrite redoes it)")
            else:
                todo.append(job)
        check_writable_dirs(todo)
        bar = tqdm(total=len(todo), desc="images", unit="img", disable=not (show and ctx.is_main) or len(todo) < 2)
        for batch in _batches(todo, args.batch_size):
            ready = []
            for job, y, info, err in batch:
                if err is None:
                    kh, kw = operator.kernel_size
                    if kh > info.height or kw > info.width:
                        err = CLIError(f"the kernel ({kh}x{kw}) is larger than the image "
                                       f"({info.height}x{info.width}); use a smaller --kernel-size")
                if err is not None:
                    records.append(Record(str(job.input), "failed", None, None, _one_line(err), str(job.dir),
                                          _classify(err)))
                    _err_for(prefix, job.label, err)
                    bar.update(1)
                    continue
                ready.append((job, y, info))
            photo = [r for r in ready if uses_photo_pipeline(args, r[2].height, r[2].width)]
            direct = [r for r in ready if not any(r is q for q in photo)]
            for group in [[r] for r in photo] + ([direct] if direct else []):
                t0 = time.perf_counter()
                ready = group
                try:
                    if group is not direct:
                        sol = _solve_photo(group[0][1], args, cfg, show and not args.quiet and ctx.is_main)
                    else:
                        y = torch.cat([r[1] for r in ready])
                        sol = solve(y, preset=cfg, seed=[args.seed] * y.shape[0], device=device,
                                    num_samples=args.samples, amp=args.amp,
                                    progress=show and not args.quiet and ctx.is_main, value_range=(-1, 1))
                except KeyboardInterrupt:
                    raise
                except Exception as exc:  # noqa: BLE001 - recorded per image; the others go on
                    if getattr(args, "debug", False):
                        raise
                    code = _classify(exc)
                    exc = _explain_memory(exc)
                    for job, _, _ in ready:
                        records.append(Record(str(job.input), "failed", None, None, _one_line(exc), str(job.dir), code))
                        _err_for(prefix, job.label, exc)
                        bar.update(1)
                    continue
                solve_s = (time.perf_counter() - t0) / len(ready)
                for b, (job, y1, info) in enumerate(ready):
                    t1 = time.perf_counter()
                    try:
                        writer = _Writer(job.dir, RESTORE_OUTPUTS, args.overwrite, {**marker, "input": str(job.input)})
                    except OSError as exc:
                        records.append(Record(str(job.input), "failed", None, None, _one_line(exc), str(job.dir), 1))
                        _err(f"{prefix}{job.label}: writing the results failed: {exc}")
                        bar.update(1)
                        continue
                    try:
                        res = _write_restored(writer, job, info, y1, sol, b, len(ready), operator, args, task, ctx,
                                              solve_s, t1)
                    except BaseException as exc:
                        writer.abort()
                        if isinstance(exc, KeyboardInterrupt) or getattr(args, "debug", False):
                            raise
                        records.append(Record(str(job.input), "failed", None, None, _one_line(exc), str(job.dir), 1))
                        _err(f"{prefix}{job.label}: writing the results failed: {exc}")
                        bar.update(1)
                        continue
                    records.append(Record(str(job.input), "ok", res["seconds"], res["residual"], "", str(job.dir)))
                    tqdm.write(f"{prefix}{job.label}: ok, {res['seconds']:.1f} s, residual {res['residual']:.4f} "
                               f"-> {job.dir}")
                    bar.update(1)
        bar.close()
        everything = dist.gather_records(ctx, records)
        if ctx.is_main and not single:
            index = dist.write_index(out / "index.csv", everything)
            counts = {s: sum(r.status == s for r in everything) for s in ("ok", "skipped", "failed")}
            print(f"{counts['ok']} ok, {counts['skipped']} skipped, {counts['failed']} failed; index: {index}")
    finally:
        ctx.close()
    return dist.exit_code(everything)


def _solve_photo(y, args: argparse.Namespace, cfg: dict, progress: bool):
    """One image through the photo pipeline (:mod:`blinddps.photo`), as a Solution."""
    from .photo import deblur_photo

    if getattr(args, "device", "cpu") == "cuda":
        raise CLIError("the photo pipeline runs on the CPU; use --device cpu or auto")
    sol = deblur_photo(y[0], photo_settings(args, cfg), progress=progress)
    sol.settings["config"] = cfg  # what a resume compares
    sol.settings["num_samples"] = restore_settings(cfg, args)["samples"]
    return sol


def _write_restored(writer: _Writer, job: Job, info, y1, sol, b: int, batch: int, operator, args, task, ctx,
                    solve_s: float, t1: float) -> dict:
    import numpy as np

    from . import figures
    from .io import output_suffix, save_npy, write_image

    d = job.dir
    restored = sol.image[b : b + 1].detach().cpu()
    outputs: dict[str, str] = {}
    p = writer.add(d / f"restored{output_suffix(info)}")
    write_image(p, restored, info)
    outputs["restored"] = p.name
    k = sol.params["kernel"][b, 0].detach().cpu().double()
    k = (k.clamp_min(0) / k.clamp_min(0).sum().clamp_min(1e-30)).float()
    save_npy(writer.add(d / "kernel.npy"), k.numpy())
    figures.save_kernel_png(writer.add(d / "kernel.png"), k)
    outputs.update(kernel="kernel.npy", kernel_picture="kernel.png")
    extra: dict[str, Any] = {"kernel": {"size": list(k.shape), "sum": float(k.double().sum())}}
    panels = [("input", figures.to_pil(y1)), ("restored", figures.to_pil(restored)),
              ("kernel", figures.kernel_image(k, None)[0])]
    if "tilt" in sol.params:
        tilt = sol.params["tilt"][b].detach().cpu().float().contiguous()  # solve() returns the photo's frame
        save_npy(writer.add(d / "tilt.npy"), tilt.numpy())
        _, max_px = figures.save_tilt_png(writer.add(d / "tilt.png"), tilt)
        outputs.update(tilt="tilt.npy", tilt_picture="tilt.png")
        mag = torch_hypot(tilt)
        extra["tilt"] = {"shape": list(tilt.shape), "units": "pixels; channel 0 horizontal, 1 vertical",
                         "max_px": float(mag.max()), "rms_px": float(mag.pow(2).mean().sqrt())}
        panels.append(("tilt", figures.tilt_image(tilt, max_px, legend=False)[0]))
    if sol.image_std is not None:
        std = sol.image_std[b].detach().cpu().double() / 2.0  # [-1, 1] units -> fraction of the range
        save_npy(writer.add(d / "std.npy"), np.ascontiguousarray(std.numpy().transpose(1, 2, 0)).astype(np.float32))
        _, white = figures.save_std_png(writer.add(d / "std.png"), std)
        outputs.update(std="std.npy", std_picture="std.png")
        extra["std"] = {"shape": "H x W x C", "units": "fraction of the full intensity range",
                        "mean": float(std.mean()), "max": float(std.max()), "png_white": white}
        panels.append(("posterior std", figures.std_image(std)[0]))
    residual = float(sol.residual_rms[b])
    steps = sol.timings.get("steps")
    title = (f"{Path(job.input).name}: {sol.settings.get('preset')}, "
             + (f"{steps} steps, " if steps is not None else "") + f"residual {residual:.4f}")
    figures.save_comparison(writer.add(d / "comparison.png"), panels, title=title)
    outputs["comparison"] = "comparison.png"
    seconds = solve_s + (time.perf_counter() - t1)
    settings = sol.settings
    summary = {
        "command": task,
        "status": "ok",
        "created": _now(),
        "input_path": str(Path(job.input).resolve()),
        "input": info.describe(),
        "outputs": outputs,
        "preset": settings.get("preset"),
        "preset_source": args.preset or settings.get("preset"),
        "settings": {
            "boundary": args.boundary,
            "operator_mode": settings["config"]["operator"].get("mode"),
            "kernel_size": list(k.shape),
            "pipeline": settings.get("pipeline", "direct"),
            "steps": steps,
            "seed": args.seed,
            "samples": settings.get("num_samples"),
            "batch_size": args.batch_size,
            "batch_index": b,
            "batch_count": batch,
            "device": settings.get("device"),
            "amp": settings.get("amp"),
            "threads": _threads(),
            "image_model": args.image_model,
            "kernel_model": args.kernel_model,
            "tilt_model": getattr(args, "tilt_model", None),
            "padded_to": settings.get("padded_to"),
            "rank": ctx.rank,
            "world_size": ctx.world_size,
        },
        "seed": args.seed,
        "seed_note": ("every image is solved with this seed and the same random streams, alone or batched; a "
                      "batch's network arithmetic differs from a batch-1 run's by float rounding (~1e-5), which "
                      "the sampler can amplify in places (docs/reliability.md): reruns with the same --batch-size, "
                      "--threads and device give identical results"),
        "config": settings.get("config"),
        **({"pipeline": restore_settings(settings["config"], args)["pipeline"]} if task == "deblur" else {}),
        **({"photo": settings["photo"]} if "photo" in settings else {}),
        "residual_rms": residual,
        "residual_note": "RMS of y - A(x, params) on the [-1, 1] scale (about the noise level when the fit is good)",
        **extra,
        "versions": {**settings.get("versions", {}), **_versions()},
        "timings": {**{k: v for k, v in sol.timings.items() if k != "steps"}, "batch_images": batch,
                    "seconds": seconds},
    }
    writer.finish(summary)
    return {"seconds": seconds, "residual": residual}


def torch_hypot(t):
    return (t[0].double() ** 2 + t[1].double() ** 2).sqrt()


def _threads() -> int:
    import torch

    return torch.get_num_threads()


# ============================================================================ simulate
def _image_seed(seed: int, name: str) -> int:
    import numpy as np

    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode("utf-8"))]).generate_state(1, dtype=np.uint64)[0] >> 1)


def simulate_one(x, args: argparse.Namespace, seed: int) -> dict:
    """Degrade ``x`` (1, C, H, W) in [-1, 1]: returns y (unclipped), kernel (1, 1, k, k),
    tilt (1, 2, H, W) or None. Randomness: one ``torch.Generator(seed)`` drawn for the
    kernel, then the tilt, then the noise."""
    import torch

    from .operators import GaussianNoise, conv_same
    from .operators.turbulence import tilt_warp
    from .simulate import gaussian_kernels, motion_kernels, tilt_maps

    g = torch.Generator().manual_seed(int(seed))
    K = args.kernel_size
    if args.blur == "motion":
        k = motion_kernels(1, K, args.intensity, generator=g)
    else:
        k = gaussian_kernels(1, K, args.std, generator=g)
    tilt = None
    z = x
    if args.blur == "turbulence":
        tilt = tilt_maps(1, x.shape[-2], x.shape[-1], generator=g, max_tilt=args.tilt_max)
        z = tilt_warp(x, tilt)
    y = GaussianNoise(args.noise)(conv_same(z, k), generator=g)
    return {"y": y, "kernel": k, "tilt": tilt}


def simulate_settings(args: argparse.Namespace) -> dict:
    """What decides a simulated result, as its summary records it (and resume compares)."""
    return {"blur": args.blur, "kernel_size": args.kernel_size,
            "intensity": args.intensity if args.blur == "motion" else None,
            "std": args.std if args.blur != "motion" else None,
            "tilt_max": args.tilt_max if args.blur == "turbulence" else None,
            "noise": args.noise, "seed": args.seed}


def _simulate_settings_of(summary: dict) -> dict:
    return {k: summary.get(k) for k in ("blur", "kernel_size", "intensity", "std", "tilt_max", "noise", "seed")}


def _cmd_simulate(args: argparse.Namespace) -> int:
    if getattr(args, "turbulence", False):
        if args.blur not in (None, "turbulence"):
            raise CLIError(f"--turbulence contradicts --blur {args.blur}")
        args.blur = "turbulence"
    if args.blur is None:
        raise CLIError("give --blur motion|gaussian|turbulence (or --turbulence)")
    if getattr(args, "frames", 1) > 1:
        from .burst.cli import run_simulate_burst  # a burst of frames per sharp image

        return run_simulate_burst(args)
    out = Path(args.out)
    jobs, _ = plan_jobs(args.inputs, out)
    with output_lock(out):
        check_outputs(jobs, SIMULATE_OUTPUTS, args.overwrite, "simulate", simulate_settings(args),
                      _simulate_settings_of)
        return _simulate_jobs(args, jobs)


def _simulate_jobs(args: argparse.Namespace, jobs: list[Job]) -> int:
    from tqdm.auto import tqdm

    from . import figures
    from .distributed import Record, exit_code
    from .io import ImageReadError, atomic_write_bytes, encode_png, read_image, save_npy, to_uint

    check_writable_dirs(jobs)
    records = []
    for job in tqdm(jobs, desc="images", disable=not _progress_ok(args.quiet) or len(jobs) < 2):
        if not args.overwrite and (job.dir / "summary.json").is_file():
            _tidy(job.dir, SIMULATE_OUTPUTS)
            tqdm.write(f"{job.label}: skipped ({job.dir / 'summary.json'} exists; --overwrite redoes it)")
            records.append(Record(str(job.input), "skipped"))
            continue
        t0 = time.perf_counter()
        try:
            x, info = read_image(job.input)
            K = args.kernel_size
            if K > min(info.height, info.width):
                raise CLIError(f"the kernel ({K}x{K}) is larger than the image ({info.height}x{info.width}); "
                               "use a smaller --kernel-size")
        except (ImageReadError, CLIError) as exc:
            _err_for("", job.label, exc)
            records.append(Record(str(job.input), "failed", error=_one_line(exc), code=2))
            continue
        seed = _image_seed(args.seed, job.input.name)
        try:
            writer = _Writer(job.dir, SIMULATE_OUTPUTS, args.overwrite,
                             {"command": "simulate", "input": str(job.input), "settings": simulate_settings(args)})
        except OSError as exc:
            _err_for("", job.label, f"writing the results failed: {exc}")
            records.append(Record(str(job.input), "failed", error=_one_line(exc), code=1))
            continue
        try:
            sim = simulate_one(x, args, seed)
            y = sim["y"]
            clipped = float(((y < -1) | (y > 1)).float().mean())
            d = job.dir
            atomic_write_bytes(writer.add(d / "blurry.png"), encode_png(to_uint(y, 16)))
            sharp_bits = 16 if info.bit_depth == 16 or info.mode == "array" else 8
            atomic_write_bytes(writer.add(d / "sharp.png"), encode_png(to_uint(x, sharp_bits)))
            k = sim["kernel"][0, 0]
            save_npy(writer.add(d / "kernel.npy"), k.numpy().astype("float32"))
            figures.save_kernel_png(writer.add(d / "kernel.png"), k)
            panels = [("sharp", figures.to_pil(x)), ("blurry", figures.to_pil(y)), ("kernel", figures.kernel_image(k, None)[0])]
            outputs = {"blurry": "blurry.png", "sharp": "sharp.png", "kernel": "kernel.npy", "kernel_picture": "kernel.png"}
            extra: dict[str, Any] = {}
            if sim["tilt"] is not None:
                tilt = sim["tilt"][0]
                save_npy(writer.add(d / "tilt.npy"), tilt.numpy().astype("float32"))
                figures.save_tilt_png(writer.add(d / "tilt.png"), tilt)
                outputs.update(tilt="tilt.npy", tilt_picture="tilt.png")
                extra["tilt"] = {"units": "pixels; channel 0 horizontal, 1 vertical",
                                 "max_px": float(torch_hypot(tilt).max())}
                panels.insert(2, ("tilt", figures.tilt_image(tilt, legend=False)[0]))
            figures.save_comparison(writer.add(d / "comparison.png"), panels)
            outputs["comparison"] = "comparison.png"
            summary = {
                "command": "simulate",
                "created": _now(),
                "input_path": str(job.input.resolve()),
                "input": info.describe(),
                "outputs": outputs,
                **simulate_settings(args),
                "image_seed": seed,
                "rng": "torch.Generator().manual_seed(image_seed) draws the kernel, then the tilt, then the noise",
                "protocol": ("y = k * x + n: per-channel cross-correlation, 'same' size, zero padding (the paper's "
                             "model; turbulence warps x by the tilt first); n ~ N(0, noise^2) on the [-1, 1] scale; "
                             "blurry.png is y clipped to [-1, 1] in 16 bits"),
                "clipped_fraction": clipped,
                "sharp_bit_depth": sharp_bits,
                **extra,
                "versions": _versions(),
                "timings": {"seconds": time.perf_counter() - t0},
            }
            writer.finish(summary)
        except BaseException as exc:
            writer.abort()
            if isinstance(exc, KeyboardInterrupt) or getattr(args, "debug", False):
                raise
            _err_for("", job.label, exc)
            records.append(Record(str(job.input), "failed", error=_one_line(exc), code=_classify(exc)))
            continue
        records.append(Record(str(job.input), "ok", time.perf_counter() - t0, output=str(job.dir)))
        tqdm.write(f"{job.label}: {args.blur} blur, kernel {args.kernel_size}, noise {args.noise} -> {job.dir}")
    return exit_code(records)


# ============================================================================ models
def _cmd_models(args: argparse.Namespace) -> int:
    from .models.checkpoints import (
        KNOWN_CHECKPOINTS,
        MODELS_ENV,
        SHIPPED_DIR,
        CheckpointNotFoundError,
        default_search_dirs,
        find_checkpoint,
        list_shipped,
    )
    from .presets import list_presets, load_preset, shipped_model_file

    dirs = default_search_dirs()
    print("Published BlindDPS checkpoints (never downloaded; put the files in one of the folders below):")
    for name, info in KNOWN_CHECKPOINTS.items():
        try:
            where = f"present: {find_checkpoint(info.filename)}"
        except CheckpointNotFoundError:
            where = f"missing; get it from {info.url}"
        print(f"  {name:<16} {info.filename:<22} {where}")
        print(f"  {'':<16} {info.description}")
    env = os.environ.get(MODELS_ENV)
    print(f"  looked for in: {', '.join(str(d) for d in dirs)}"
          + ("" if env else f"  (set {MODELS_ENV} to add folders)"))

    users: dict[str, list[str]] = {}
    for pname, path in sorted(list_presets().items()):
        try:
            cfg = load_preset(path)
        except Exception:  # noqa: BLE001 - a broken preset is listed elsewhere
            continue
        for spec in cfg.get("priors", {}).values():
            m = spec.get("model") if isinstance(spec, dict) else None
            if isinstance(m, str) and m.startswith("shipped:"):
                users.setdefault(m.split(":", 1)[1], []).append(pname)
    names = sorted(set(users) | {p.stem for p in list_shipped()})
    print(f"\nShipped priors (in {SHIPPED_DIR}):")
    if not names:
        print("  none")
    for n in names:
        w = shipped_model_file(n)
        present = w.is_file() and w.with_suffix(".yaml").is_file()
        state = f"present: {w}" if present else "missing; " + _train_hint(n)
        used = f" (used by: {', '.join(users[n])})" if n in users else ""
        print(f"  {n:<16}{used} {state}")

    print("\nPresets:")
    for pname, path in sorted(list_presets().items()):
        try:
            desc = load_preset(path).get("description", "")
        except Exception as exc:  # noqa: BLE001
            desc = f"(unreadable: {_one_line(exc)})"
        print(f"  {pname:<24} {desc}")
    return 0


# ============================================================================ demo
def demo_samples(size: int = 128):
    """The demo's sharp pictures: 256x256 crops of scikit-image's astronaut and coffee
    photos, 2x2-averaged to ``size`` (128), as a (2, 3, size, size) tensor in [-1, 1]."""
    import numpy as np
    import skimage.data
    import torch

    crops = {
        "astronaut": (skimage.data.astronaut(), 0, 120),
        "coffee": (skimage.data.coffee(), 60, 180),
    }
    out = []
    for name in DEMO_SAMPLES:
        img, top, left = crops[name]
        c = img[top : top + 2 * size, left : left + 2 * size, :3].astype(np.float64) / 255.0
        c = c.reshape(size, 2, size, 2, 3).mean((1, 3))
        out.append(torch.from_numpy(c.transpose(2, 0, 1).copy()).float() * 2 - 1)
    return torch.stack(out)


def _cmd_demo(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    with output_lock(out):
        return _demo(args, out)


def _demo(args: argparse.Namespace, out: Path) -> int:
    import numpy as np

    from . import figures
    from .api import solve
    from .evaluation.metrics import aligned_psnr, blob_floor_mnc, mnc, psnr
    from .io import atomic_write_bytes, encode_png, save_json, save_npy, to_uint
    from .operators import GaussianNoise, conv_same
    from .presets import load_preset, sampling_counts
    from .simulate import motion_kernels

    t_start = _T0
    _set_threads(args.threads or 1)
    cfg = load_preset(DEMO_SOLVER_PRESET)
    _check_shipped(cfg)
    # the demo replaces its own files (`make demo` must run again), but not another command's result
    if (out / "summary.json").is_file() and not args.overwrite and _read_summary(out).get("command") != "demo":
        raise CLIError(f"{out / 'summary.json'} is not from an earlier demo; pass --overwrite or choose another --out")
    device = "cuda" if args.device == "cuda" or (args.device == "auto" and _cuda()) else "cpu"
    if device == "cuda" and not _cuda():
        raise CLIError("CUDA was requested but no GPU is available (use --device cpu)")

    import torch

    x = demo_samples()
    g = torch.Generator().manual_seed(args.seed)
    kernels = motion_kernels(len(DEMO_SAMPLES), 32, 0.5, generator=g)
    y = GaussianNoise(0.02)(conv_same(x, kernels), generator=g)
    preset_steps, preset_samples = sampling_counts(cfg)
    steps, samples = args.steps or preset_steps, args.samples or preset_samples
    print(f"demo: deblurring {len(DEMO_SAMPLES)} blurred 128x128 photos ({', '.join(DEMO_SAMPLES)}) with the "
          f"{DEMO_SOLVER_PRESET} preset, {steps} steps, mean of {samples} sample(s) on {device}, "
          f"{torch.get_num_threads()} thread(s) ...", flush=True)
    sol = solve(y, preset=cfg, steps=steps, seed=args.seed, device=device, num_samples=samples,
                progress=_progress_ok(args.quiet))
    (out / "summary.json").unlink(missing_ok=True)  # the folder is incomplete until the new summary is written
    results = {}
    for i, name in enumerate(DEMO_SAMPLES):
        d = out / name
        k_est = sol.params["kernel"][i, 0].detach().cpu().double()
        k_est = (k_est / k_est.sum()).float()
        k_true = kernels[i, 0]
        restored = sol.image[i].detach().cpu()
        atomic_write_bytes(d / "sharp.png", encode_png(to_uint(x[i], 8)))
        atomic_write_bytes(d / "blurry.png", encode_png(to_uint(y[i], 16)))
        atomic_write_bytes(d / "restored.png", encode_png(to_uint(restored, 8)))
        save_npy(d / "kernel.npy", k_est.numpy())
        save_npy(d / "kernel_true.npy", k_true.numpy())
        figures.save_kernel_png(d / "kernel.png", k_est)
        figures.save_kernel_png(d / "kernel_true.png", k_true)
        m = {
            "psnr_blurry": float(psnr(y[i].clamp(-1, 1), x[i])),
            "psnr_restored": float(psnr(restored, x[i])),
            "aligned_psnr_restored": float(aligned_psnr(restored, x[i], max_shift=4)[0]),
            "kernel_mnc": float(mnc(k_est, k_true)),
            "kernel_blob_floor_mnc": float(blob_floor_mnc(k_true)),
            "residual_rms": float(sol.residual_rms[i]),
        }
        results[name] = m
        title = (f"{name}: PSNR {m['psnr_blurry']:.2f} -> {m['psnr_restored']:.2f} dB, "
                 f"kernel MNC {m['kernel_mnc']:.2f} (blob {m['kernel_blob_floor_mnc']:.2f})")
        figures.save_comparison(d / "comparison.png", [
            ("blurry", figures.to_pil(y[i])), ("restored", figures.to_pil(restored)), ("sharp", figures.to_pil(x[i])),
            ("kernel", figures.kernel_image(k_est, None)[0]), ("true kernel", figures.kernel_image(k_true, None)[0]),
        ], title=title)
        print(f"  {name:<10} PSNR blurry {m['psnr_blurry']:.2f} dB -> restored {m['psnr_restored']:.2f} dB "
              f"(shift-aligned {m['aligned_psnr_restored']:.2f}); kernel MNC {m['kernel_mnc']:.3f} "
              f"(centred-blob floor {m['kernel_blob_floor_mnc']:.3f})")
    photo = _demo_photo(out / "photo", args)
    total = time.perf_counter() - t_start
    save_json(out / "summary.json", {
        "photo": photo,
        "command": "demo", "created": _now(), "preset": DEMO_SOLVER_PRESET, "steps": steps, "num_samples": samples, "seed": args.seed,
        "device": device, "threads": torch.get_num_threads(), "samples": list(DEMO_SAMPLES),
        "degradation": {"kernel": "motion, 32x32, intensity 0.5", "noise": 0.02, "model": "same, zero padding"},
        "metrics": results,
        "mean": {k: float(np.mean([r[k] for r in results.values()])) for k in next(iter(results.values()))},
        "timings": {**{k: v for k, v in sol.timings.items()}, "command_s": total},
        "versions": {**sol.settings.get("versions", {}), **_versions()},
        "config": sol.settings.get("config"),
    })
    print(f"pictures: {', '.join(str(out / n / 'comparison.png') for n in (*DEMO_SAMPLES, 'photo'))} "
          f"(blurry.png, restored.png, kernel.png beside them)")
    print(f"done in {total:.0f} s including start-up (sampling {sol.timings['sample_s']:.0f} s)")
    return 0


def _demo_photo(d: Path, args: argparse.Namespace) -> dict:
    """The demo's photo part (see the demo's description); returns its metrics."""
    import numpy as np
    import skimage.data
    import torch
    from skimage.transform import resize

    from . import figures
    from .evaluation.metrics import aligned_psnr, mnc
    from .io import atomic_write_bytes, encode_png, save_npy
    from .photo import deblur_photo
    from .photo.simulate import simulate_photo
    from .simulate.shake import camera_shake_kernels

    size, K = DEMO_PHOTO_SIZE, DEMO_PHOTO_KERNEL
    scene = resize(skimage.data.astronaut().astype(np.float64) / 255.0, (size + K - 1, size + K - 1), order=3,
                   anti_aliasing=False).clip(0, 1).transpose(2, 0, 1)
    # kernel seed --seed + 1: chosen in session 8 (1024 px, 51 px), when --seed 0's own kernel failed (MNC 0.53,
    # -0.1 dB); the held-out benchmark's mean is +2.36 dB over 10 photos (docs/benchmarks.md, "Photographs") -- said
    k = camera_shake_kernels(1, size=K, extent=(0.7, 0.9),
                             generator=torch.Generator().manual_seed(args.seed + 1))[0, 0]
    k = k.double().numpy()
    y = simulate_photo(scene, k, noise=0.01, seed=args.seed)
    m = (K - 1) // 2
    sharp = scene[:, m:m + size, m:m + size]
    print(f"demo: a {size}x{size} photo with {K}-px camera shake (held-out family), linear light, real borders, "
          "8-bit, through the photo pipeline ...", flush=True)
    sol = deblur_photo(torch.from_numpy(2 * y - 1).float(), kernel_size=K, seed=args.seed, steps=args.steps,
                       workers=args.threads or None, progress=_progress_ok(args.quiet))
    x = (sol.image[0].numpy().astype(np.float64) + 1) / 2
    k_est = sol.params["kernel"][0, 0].double()
    res = {"size": [size, size], "kernel_px": K, "settings": sol.settings["photo"],
           "psnr_blurry": float(aligned_psnr(y, sharp, max_shift=8, data_range=1.0)[0]),
           "psnr_restored": float(aligned_psnr(x, sharp, max_shift=8, data_range=1.0)[0]),
           "kernel_mnc": float(mnc(k_est.numpy(), k)), "timings": sol.timings}
    to8 = lambda a: (np.clip(a, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)  # noqa: E731
    atomic_write_bytes(d / "blurry.png", encode_png(to8(y)))
    atomic_write_bytes(d / "restored.png", encode_png(to8(x)))
    save_npy(d / "kernel.npy", k_est.float().numpy())
    save_npy(d / "kernel_true.npy", k.astype(np.float32))
    figures.save_kernel_png(d / "kernel.png", k_est.float())
    figures.save_kernel_png(d / "kernel_true.png", torch.from_numpy(k).float())
    crop = slice(size // 4, size // 4 + size // 2)
    figures.save_comparison(d / "comparison.png", [
        ("blurry (centre)", figures.to_pil(torch.from_numpy(2 * y[:, crop, crop] - 1).float())),
        ("restored", figures.to_pil(torch.from_numpy(2 * x[:, crop, crop] - 1).float())),
        ("sharp", figures.to_pil(torch.from_numpy(2 * sharp[:, crop, crop] - 1).float())),
        ("kernel", figures.kernel_image(k_est.float(), None)[0]),
        ("true kernel", figures.kernel_image(torch.from_numpy(k).float(), None)[0]),
    ], title=f"{size}x{size} photo: PSNR {res['psnr_blurry']:.2f} -> {res['psnr_restored']:.2f} dB (shift-aligned), "
             f"kernel MNC {res['kernel_mnc']:.2f}")
    print(f"  photo      PSNR blurry {res['psnr_blurry']:.2f} dB -> restored {res['psnr_restored']:.2f} dB "
          f"(shift-aligned); kernel MNC {res['kernel_mnc']:.3f}; {sol.timings['total_s']:.0f} s, "
          f"peak {sol.timings['peak_rss_mb']:.0f} MB")
    return res


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


# ============================================================================ main
def _format_warning(message, category, filename, lineno, line=None) -> str:
    return f"{PROG}: warning: {_one_line(message)} ({category.__name__})\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``blinddps`` command; returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    old_format = warnings.formatwarning
    warnings.formatwarning = _format_warning
    signals = signal_handling()
    try:
        signals.__enter__()
        args = build_parser(argv).parse_args(argv)
        debug = debug or bool(getattr(args, "debug", False))
        return int(args.func(args) or 0)
    except SystemExit as exc:  # --help, --version
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except Terminated:
        print(f"{PROG}: terminated (SIGTERM); partial results removed", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        try:  # stdout closed by a pager/head: exit quietly
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 1
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback (unless --debug)
        if debug:
            raise
        code = _classify(exc)
        msg = str(exc) or type(exc).__name__
        if code == 1 and not isinstance(exc, CLIError):
            msg = f"{type(exc).__name__}: {msg} (run with --debug for the traceback)"
        _err(msg)
        return code
    finally:
        warnings.formatwarning = old_format
        signals.__exit__(None, None, None)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
