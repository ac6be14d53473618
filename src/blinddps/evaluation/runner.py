"""The benchmark runner: simulate degradations of evaluation images, run methods, and
record image, kernel and tilt metrics.

Protocol (the paper's): for each image a kernel (and for turbulence a tilt map) is
drawn from a generator seeded by ``(seed, image name)``; the measurement is the
zero-padded 'same' blur ``y = k ⋆ x`` (turbulence: ``y = k ⋆ T_φ(x)``) plus white
Gaussian noise of std ``noise`` (images in [-1, 1]). ``y`` is not clipped. With
``border="scene"`` the blur is 'valid' instead, of an image ``kernel_size − 1`` larger
than the scored frame (the scene goes on past it), and ``kernels`` picks the kernel
family (our generator, the held-out camera-shake model, Levin's recorded kernels).

Methods (:data:`METHODS`):

* ``blurry``: the measurement itself (not clipped);
* ``wiener_true``, ``tv_true``: non-blind Wiener / TV deconvolution with the true kernel
  (for turbulence they ignore the tilt);
* ``l0_blind``: blind L0 intensity+gradient deblurring (Pan et al.);
* ``dps_true``: non-blind DPS, ``solve(y, preset, fixed={kernel (, tilt)})``;
* ``blinddps``: ``solve(y, preset)`` (the preset's priors estimate everything);
* ``photo``: the photo pipeline (:func:`blinddps.photo.deblur_photo`; options are
  :class:`~blinddps.photo.PhotoSettings` fields, e.g. ``{"estimator": "l0"}``; the
  harness blurs the recorded values, so ``linear_light`` defaults to false here).

A method name may carry a variant label, ``method:label`` (e.g. ``blinddps:mean4``
with ``method_options={"blinddps:mean4": {"num_samples": 4}}``): it runs ``method``
with its own options, so that one report holds several configurations of a method.

Restored images are clipped to [-1, 1] before the metrics (the blurry row is not).
PSNR/SSIM are reported raw and *aligned*: at the best integer shift within
``±max_shift`` px, on the crop ``[m:H-m, m:W-m]`` (a blind method recovers the image
only up to a translation, which the kernel absorbs). Kernel MNC and aligned MSE are
reported for methods that estimate a kernel, beside the blob floor (the best MNC a
centred Gaussian blob reaches against the true kernel).

Resumable: each (image, method, method config) result is appended to
``results.csv`` as soon as it exists; rows already there are skipped on the next run.
Outputs in ``out_dir``: ``results.csv``, ``report.md``, ``grid.png``,
``summary.json``, ``run.json`` (the degradation settings a resumed run must match)
and ``outputs/<image>/``: ``inputs.npz`` (x, y, the true kernel or tilt) and one
``<method>-<config hash>.npz`` per method config (image, kernel, tilt;
:func:`blinddps.evaluation.report.output_file` names it), so that results of
several configs in one folder never overwrite each other.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import sys
import time
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from . import metrics as M
from . import report as R
from .datasets import EvalImage, load_images

__all__ = [
    "METHODS",
    "BLIND_METHODS",
    "DEGRADATIONS",
    "CSV_COLUMNS",
    "MethodOutput",
    "EvalResult",
    "evaluate",
    "degrade",
    "scene_crop",
    "KERNEL_FAMILIES",
    "BORDERS",
    "read_results",
    "method_base",
]

METHODS = ("blurry", "wiener_true", "tv_true", "l0_blind", "dps_true", "blinddps", "photo", "photo_true")
BLIND_METHODS = ("l0_blind", "blinddps", "photo")
DEGRADATIONS = ("motion", "gaussian", "turbulence")
DIFFUSION_METHODS = ("dps_true", "blinddps")
DEFAULT_PRESETS = {"motion": "motion_deblur", "gaussian": "gaussian_deblur", "turbulence": "turbulence"}
#: motion-kernel families: our generator (the priors' training family), the held-out
#: camera-shake model (nothing trained or tuned on it), Levin et al.'s 8 recorded kernels
KERNEL_FAMILIES = ("trajectory", "shake", "levin")
#: "zero": zero-padded 'same' blur (the original's protocol); "scene": the scene goes on
#: past the frame ('valid' blur of a larger crop, what a photo is)
BORDERS = ("zero", "scene")

CSV_COLUMNS = [
    "image", "method", "config",
    "psnr", "ssim", "psnr_aligned", "ssim_aligned", "shift_dy", "shift_dx",
    "kernel_mnc", "kernel_mse", "blob_floor_mnc", "tilt_rmse", "tilt_rms_true",
    "residual_rms", "seconds", "steps", "timestamp",
]
METRIC_COLUMNS = ["psnr", "ssim", "psnr_aligned", "ssim_aligned", "kernel_mnc", "kernel_mse",
                  "blob_floor_mnc", "tilt_rmse", "tilt_rms_true", "residual_rms", "seconds"]


@dataclass
class MethodOutput:
    """What a method returns: the image ``(1, C, H, W)`` and, for blind methods, the
    estimated kernel ``(1, 1, k, k)`` / tilt ``(1, 2, H, W)``."""

    image: torch.Tensor
    kernel: torch.Tensor | None = None
    tilt: torch.Tensor | None = None
    residual_rms: float | None = None
    steps: int | None = None


@dataclass
class Problem:
    """One simulated degradation, handed to every method."""

    name: str
    x: torch.Tensor          # (1, C, H, W) ground truth
    y: torch.Tensor          # (1, C, H, W) measurement
    kernel: torch.Tensor     # (1, 1, k, k) true kernel
    tilt: torch.Tensor | None
    seed: int                # per-image seed for stochastic methods
    settings: dict
    estimate_size: int | None = None  # the kernel size blind methods estimate (None: the true kernel's)

    @property
    def blind_kernel_size(self) -> int:
        return int(self.estimate_size or self.kernel.shape[-1])


@dataclass
class EvalResult:
    rows: list[dict]                     # the current settings' rows, CSV order
    means: dict[str, dict[str, float]]   # method -> metric -> mean over images
    table: str                           # the Markdown mean table
    paths: dict[str, Path]
    summary: dict = field(default_factory=dict)
    ran: list[tuple[str, str]] = field(default_factory=list)      # (image, method) computed now
    skipped: list[tuple[str, str]] = field(default_factory=list)  # found in the CSV


# --------------------------------------------------------------------------- seeds
def _seed(seed: int, name: str, stream: int) -> int:
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(name.encode()), int(stream)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


# --------------------------------------------------------------------------- degradation
def degrade(x: torch.Tensor, name: str, degradation: str = "motion", kernel_size: int = 32,
            intensity: float = 0.5, std: float = 3.0, noise: float = 0.02, seed: int = 0,
            tilt_options: dict | None = None, kernels: str = "trajectory", border: str = "zero"):
    """The measurement of image ``x`` (C, H, W) or (1, C, H, W): returns
    ``(y (1,C,h,w), kernel (1,1,k,k), tilt (1,2,h,w) or None)``. Deterministic in
    ``(seed, name)`` and the settings.

    ``kernels`` (motion): the family the kernel is drawn from (:data:`KERNEL_FAMILIES`).
    ``border``: ``"zero"`` blurs with zero padding ('same', y the size of x: the
    original's synthetic protocol); ``"scene"`` treats ``x`` as a scene larger than the
    frame: y is the 'valid' blur, smaller than x by k − 1 (a real photo's borders), and
    the ground truth is :func:`scene_crop` of x."""
    from ..operators import GaussianNoise, conv_same, conv_valid, tilt_warp
    from ..simulate import gaussian_kernels, tilt_maps

    if degradation not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {degradation!r}; choose one of {', '.join(DEGRADATIONS)}")
    if border not in BORDERS:
        raise ValueError(f"unknown border {border!r}; choose one of {', '.join(BORDERS)}")
    x = x[None] if x.dim() == 3 else x
    H, W = x.shape[-2:]
    if kernel_size > min(H, W):
        raise ValueError(f"kernel size {kernel_size} exceeds the image size {H}x{W}")
    gen = torch.Generator().manual_seed(_seed(seed, name, 0))
    if degradation == "motion":
        k = draw_kernel(kernels, int(kernel_size), float(intensity), gen)
    else:
        k = gaussian_kernels(1, int(kernel_size), float(std), generator=gen)
    tilt = None
    z = x
    if degradation == "turbulence":
        tilt = tilt_maps(1, int(H), int(W), generator=gen, **(tilt_options or {}))
        z = tilt_warp(x, tilt)
    blurred = conv_same(z, k) if border == "zero" else conv_valid(z, k)
    y = GaussianNoise(float(noise))(blurred, generator=gen)
    if tilt is not None and border == "scene":
        tilt = scene_crop(tilt, int(kernel_size))
    return y, k, tilt


def scene_crop(x: torch.Tensor, kernel_size: int) -> torch.Tensor:
    """The frame of a 'valid' measurement inside its scene ``x`` (…, H, W): the
    (H − k + 1) × (W − k + 1) window at offset ``(k − 1) // 2`` (where ``conv_valid``
    puts a centred kernel's origin, and where :class:`BlindBlur` crops its image)."""
    c = (int(kernel_size) - 1) // 2
    h, w = x.shape[-2] - kernel_size + 1, x.shape[-1] - kernel_size + 1
    return x[..., c : c + h, c : c + w]


def draw_kernel(family: str, size: int, intensity: float, gen: torch.Generator) -> torch.Tensor:
    """One (1, 1, size, size) motion kernel of ``family`` (:data:`KERNEL_FAMILIES`)."""
    from ..simulate import camera_shake_kernels, motion_kernels

    if family == "trajectory":
        return motion_kernels(1, size, intensity, generator=gen)
    if family == "shake":
        return camera_shake_kernels(1, size, generator=gen)
    if family == "levin":
        from .levin import levin_kernels

        bank = levin_kernels()
        j = int(torch.randint(0, len(bank), (1,), generator=gen).item())
        return torch.from_numpy(centre_in_window(bank[j], size)).float()[None, None]
    raise ValueError(f"unknown kernel family {family!r}; choose one of {', '.join(KERNEL_FAMILIES)}")


def centre_in_window(k: np.ndarray, size: int) -> np.ndarray:
    """Kernel ``k`` (h, w) placed in a size × size window with its centroid as near
    the window centre as whole pixels allow (renormalised to sum 1)."""
    h, w = k.shape
    if h > size or w > size:
        raise ValueError(f"a {h}x{w} kernel does not fit a {size}x{size} window; use kernel_size >= {max(h, w)}")
    rows, cols = np.indices(k.shape)
    cr, cc = (rows * k).sum() / k.sum(), (cols * k).sum() / k.sum()
    centre = (size - 1) / 2.0
    r0 = int(np.clip(round(centre - cr), 0, size - h))
    c0 = int(np.clip(round(centre - cc), 0, size - w))
    out = np.zeros((size, size))
    out[r0 : r0 + h, c0 : c0 + w] = k
    return out / out.sum()


# --------------------------------------------------------------------------- methods
def _blurry(p: Problem, opts: dict) -> MethodOutput:
    return MethodOutput(p.y.clone())


def _wiener(p: Problem, opts: dict) -> MethodOutput:
    from ..baselines import wiener_deconvolve

    return MethodOutput(wiener_deconvolve(p.y, p.kernel, **opts))


def _tv(p: Problem, opts: dict) -> MethodOutput:
    from ..baselines import tv_deconvolve

    return MethodOutput(tv_deconvolve(p.y, p.kernel, **opts))


def _l0(p: Problem, opts: dict) -> MethodOutput:
    from ..baselines import l0_blind_deblur

    img, k = l0_blind_deblur(p.y, p.blind_kernel_size, **opts)
    return MethodOutput(img, kernel=torch.as_tensor(k).reshape(1, 1, *k.shape[-2:]))


def _solve(p: Problem, opts: dict, nonblind: bool) -> MethodOutput:
    from ..api import solve

    s = p.settings
    fixed = None
    if nonblind:
        fixed = {"kernel": p.kernel}
        if p.tilt is not None:
            fixed["tilt"] = p.tilt
    over = dict(s.get("overrides") or {})
    # the solver uses the model the measurement was simulated with: 'same' for zero
    # borders, 'valid' for a scene that goes on past the frame (what the CLI runs on photos)
    size = int(p.kernel.shape[-1]) if nonblind else p.blind_kernel_size
    over = _merge(over, {"operator": {"kernel_size": size, "mode": s.get("mode", "same")}})
    over = _merge(over, opts)
    sol = solve(p.y, s["preset"], steps=s.get("steps"), seed=p.seed, device=s.get("device", "cpu"),
                fixed=fixed, models=s.get("models"), **over)
    return MethodOutput(
        sol.image.detach().cpu(),
        kernel=None if nonblind else sol.params.get("kernel", None),
        tilt=None if nonblind else sol.params.get("tilt", None),
        residual_rms=float(sol.residual_rms.mean()),
        steps=int(sol.timings.get("steps", 0)) or None,
    )


def _dps_true(p: Problem, opts: dict) -> MethodOutput:
    return _solve(p, opts, nonblind=True)


def _blinddps(p: Problem, opts: dict) -> MethodOutput:
    return _solve(p, opts, nonblind=False)


def _photo(p: Problem, opts: dict) -> MethodOutput:
    from ..photo import deblur_photo

    if p.y.shape[0] != 1:
        raise ValueError("the photo method takes one image at a time")
    # the harness's thread count bounds the kernel candidates too (its timings are per thread count)
    opts = {"linear_light": False, "seed": p.seed, "workers": torch.get_num_threads(), **opts}
    sol = deblur_photo(p.y[0], kernel_size=p.blind_kernel_size, **opts)
    return MethodOutput(sol.image, kernel=sol.params["kernel"], residual_rms=float(sol.residual_rms.mean()))


def _photo_true(p: Problem, opts: dict) -> MethodOutput:
    """The photo pipeline's restoration with the true kernel (its error ratio's reference)."""
    from ..photo import deblur_photo

    opts = {"linear_light": False, **opts}
    sol = deblur_photo(p.y[0], kernel=p.kernel[0, 0], **opts)
    return MethodOutput(sol.image, residual_rms=float(sol.residual_rms.mean()))


#: name -> function(problem, options) -> MethodOutput. Add entries to evaluate more.
METHOD_FUNCS: dict[str, Callable[[Problem, dict], MethodOutput]] = {
    "blurry": _blurry,
    "wiener_true": _wiener,
    "tv_true": _tv,
    "l0_blind": _l0,
    "dps_true": _dps_true,
    "blinddps": _blinddps,
    "photo": _photo,
    "photo_true": _photo_true,
}


def method_base(method: str) -> str:
    """The method a name runs: ``blinddps:mean4`` -> ``blinddps`` (see the module doc)."""
    return method.split(":", 1)[0]


def _check_method_name(method: str) -> None:
    base, _, label = method.partition(":")
    if base not in METHOD_FUNCS:
        raise ValueError(f"unknown method {base!r}; choose from {', '.join(METHOD_FUNCS)}")
    if ":" in method and (not label or not all(c.isalnum() or c in "-_." for c in label)):
        raise ValueError(f"bad method variant {method!r}: write method:label, the label of letters, digits, '-', '_' or '.'")


def _merge(a: dict, b: dict) -> dict:
    from ..presets import merge

    return merge(a, b)


# --------------------------------------------------------------------------- CSV
def read_results(path: str | Path) -> list[dict]:
    """Rows of a results CSV as dicts (numbers as floats, empty cells as NaN)."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            r: dict[str, Any] = dict(row)
            for c in METRIC_COLUMNS + ["shift_dy", "shift_dx", "steps"]:
                v = r.get(c, "")
                try:
                    r[c] = float(v) if v not in ("", None) else math.nan
                except ValueError:
                    r[c] = math.nan
            out.append(r)
    return out


def _append_row(path: Path, row: dict, columns: list[str] | None = None) -> None:
    columns = columns or CSV_COLUMNS
    new = not path.is_file() or path.stat().st_size == 0
    with path.open("a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerow({c: _fmt(row.get(c)) for c in columns})
        fh.flush()


def _fmt(v) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return repr(v) if math.isinf(v) else f"{v:.6g}"
    return str(v)


# --------------------------------------------------------------------------- helpers
@contextmanager
def _threads(n: int | None):
    if not n:
        yield
        return
    old = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _preset_name(preset) -> str:
    return str(preset.get("name", "dict") if isinstance(preset, dict) else preset)


def _preset_id(preset, cfg: dict) -> str:
    """The preset's name and a digest of its content ``cfg`` (as loaded), so that
    results of an edited preset file are not taken for the current ones on resume."""
    blob = json.dumps(cfg, sort_keys=True, default=str).encode()
    return f"{_preset_name(preset)}#{hashlib.sha1(blob).hexdigest()[:8]}"


def _method_config(method: str, settings: dict, opts: dict) -> str:
    cfg: dict[str, Any] = {}
    if method_base(method) in DIFFUSION_METHODS:
        cfg = {"preset": settings["preset_id"], "steps": settings.get("steps")}
        if settings.get("overrides"):
            cfg["overrides"] = settings["overrides"]
        if settings.get("models"):
            cfg["models"] = settings["models"]
        cfg["weights"] = settings["weights"]
        if settings.get("sampler_seed") is not None:
            cfg["sampler_seed"] = settings["sampler_seed"]
    if opts:
        cfg["options"] = opts
    return json.dumps(cfg, sort_keys=True, separators=(",", ":"), default=str) if cfg else ""


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


def _preset_models(cfg: dict) -> dict[str, str]:
    """The (loaded) preset's prior models with a digest of each shipped/local weight file."""
    from ..presets import model_file

    out = {}
    for name, spec in (cfg.get("priors") or {}).items():
        model = str((spec or {}).get("model", "flat"))
        path = model_file(model, published=False)  # published checkpoints: GBs, named by their registry entry
        digest = f" sha256:{_file_digest(path)}" if path is not None and path.is_file() else ""
        out[name] = model + digest
    return out


def _weights_id(preset_models: dict[str, str], models: dict | None) -> str:
    """A digest of the weight files the diffusion methods use (``preset_models`` from
    :func:`_preset_models`, plus the ``models`` overrides), so that a resumed run redoes
    their rows when a prior's weights change under the same name."""
    digests = dict(preset_models)
    for name, path in (models or {}).items():
        p = Path(str(path)).expanduser()
        digests[name] = f"{path} sha256:{_file_digest(p)}" if p.is_file() else str(path)
    blob = json.dumps(digests, sort_keys=True).encode()
    return hashlib.sha1(blob).hexdigest()[:12]


def _preflight(cfg: dict, steps, models, overrides, kernel_size: int, mode: str = "same") -> dict:
    """Build the (loaded) preset's operator and priors once, so that a missing checkpoint
    or a prior that does not fit the kernel size fails with one line before anything
    runs. Returns the preset as the diffusion methods will run it (overrides merged)."""
    from ..models.checkpoints import CheckpointError
    from ..presets import build_operator, build_variables, check_prior_shapes, merge

    over: dict[str, Any] = merge(dict(overrides or {}), {"operator": {"kernel_size": int(kernel_size), "mode": mode}})
    if steps is not None:
        over["steps"] = int(steps)
    for nm, path in (models or {}).items():
        over.setdefault("priors", {}).setdefault(nm, {})["model"] = str(path)
    cfg = merge(cfg, over)
    try:
        operator = build_operator(cfg["operator"])
        check_prior_shapes(build_variables(cfg, device="cpu", operator=operator), operator)
    except CheckpointError as exc:
        raise ValueError(str(exc).splitlines()[0]) from None
    return cfg


def _versions() -> dict[str, str]:
    import platform

    import PIL
    import scipy
    import skimage

    from .. import __version__

    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"blinddps": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "scipy": scipy.__version__, "scikit-image": skimage.__version__, "pillow": PIL.__version__,
            "python": platform.python_version(), "platform": platform.platform(), "cpu": cpu,
            "torch_threads": str(torch.get_num_threads())}


def _float(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _metrics(out: MethodOutput, p: Problem, method: str, max_shift: int, floor: float,
             tilt_rms: float | None) -> dict:
    est = out.image.detach().cpu().float()
    est = est[None] if est.dim() == 3 else est
    if method != "blurry":
        est = est.clamp(-1.0, 1.0)
    x = p.x
    if est.shape != x.shape:
        raise ValueError(f"method {method!r} returned shape {tuple(est.shape)}, expected {tuple(x.shape)}")
    row: dict[str, Any] = {
        "psnr": M.psnr(est[0], x[0]),
        "ssim": M.ssim(est[0], x[0]),
    }
    ap, (dy, dx) = M.aligned_psnr(est[0], x[0], max_shift=max_shift)
    row["psnr_aligned"], row["shift_dy"], row["shift_dx"] = ap, dy, dx
    row["ssim_aligned"] = M.aligned_ssim(est[0], x[0], max_shift=max_shift)[0]
    if out.kernel is not None:
        k = out.kernel.detach().cpu().double().reshape(out.kernel.shape[-2:])
        kt = p.kernel.double().reshape(p.kernel.shape[-2:])
        row["kernel_mnc"] = M.mnc(k, kt)
        row["kernel_mse"] = M.kernel_mse_aligned(k, kt)
        row["blob_floor_mnc"] = floor
    if out.tilt is not None and p.tilt is not None:
        row["tilt_rmse"] = M.tilt_rmse(out.tilt.detach().cpu()[0], p.tilt[0])
    if p.tilt is not None:
        row["tilt_rms_true"] = tilt_rms
    if out.residual_rms is not None:
        row["residual_rms"] = out.residual_rms
    if out.steps is not None:
        row["steps"] = out.steps
    return row


def _save_npz(path: Path, **arrays) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    clean = {k: np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float32)
             for k, v in arrays.items() if v is not None}
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez_compressed(tmp, **clean)
    tmp.replace(path)


def _safe(name: str) -> str:
    return "".join(c if (c.isalnum() or c in "-_.") else "_" for c in name)


# --------------------------------------------------------------------------- the runner
def evaluate(
    images: str | list | dict = "photos",
    degradation: str = "motion",
    size: int = 128,
    kernel_size: int = 32,
    intensity: float = 0.5,
    std: float = 3.0,
    noise: float = 0.02,
    methods: list[str] | tuple[str, ...] | str = ("blurry", "wiener_true", "tv_true", "l0_blind", "blinddps"),
    seed: int = 0,
    sampler_seed: int | None = None,
    out_dir: str | Path = "eval_out",
    resume: bool = True,
    progress: bool = True,
    preset: str | dict | None = None,
    steps: int | None = None,
    device: str = "cpu",
    limit: int | None = None,
    models: dict[str, str] | None = None,
    overrides: dict | None = None,
    method_options: dict[str, dict] | None = None,
    max_shift: int | None = None,
    tilt_options: dict | None = None,
    threads: int | None = None,
    grid: bool = True,
    grid_rows: int = 8,
    name: str | None = None,
    kernels: str = "trajectory",
    border: str = "zero",
) -> EvalResult:
    """Run the benchmark; see the module docstring for the protocol and the outputs.

    ``images``: anything :func:`~blinddps.evaluation.datasets.load_images` takes (a set
    name such as ``photos``/``ffhq``, image names, a folder, or ``{name: tensor}``).
    ``preset``/``steps``/``models``/``overrides``: how ``dps_true`` and ``blinddps``
    call :func:`blinddps.solve` (default preset per degradation: ``motion_deblur``,
    ``gaussian_deblur``, ``turbulence``); the operator's kernel size
    is always set to ``kernel_size`` and its mode to the simulated model's ('same', or 'valid' for ``border='scene'``). ``method_options``: keyword arguments per method (e.g.
    ``{"tv_true": {"iters": 300}}``). ``max_shift``: the aligned metrics' search
    radius (default ``min(8, size // 8)``). ``threads``: torch threads while running.
    ``sampler_seed``: base of the diffusion methods' per-image sampler seeds (default
    ``seed``); another value redraws their samples for the same measurements, to measure
    the seed-to-seed spread (their rows are keyed on it).
    ``kernels``: the motion-kernel family (:data:`KERNEL_FAMILIES`; ``shake`` and
    ``levin`` are held out from every prior and setting). ``border``: ``zero`` (the
    zero-padded 'same' blur) or ``scene`` (images are loaded ``kernel_size − 1`` larger,
    blurred 'valid' and scored on the frame; the diffusion methods run the 'valid'
    model, as ``blinddps deblur`` does on a photo).
    """
    t_start = time.perf_counter()
    if isinstance(methods, str):
        methods = [m.strip() for m in methods.split(",") if m.strip()]
    methods = list(dict.fromkeys(methods))
    if not methods:
        raise ValueError("no methods given")
    for m in methods:
        _check_method_name(m)
    if degradation not in DEGRADATIONS:
        raise ValueError(f"unknown degradation {degradation!r}; choose one of {', '.join(DEGRADATIONS)}")
    if kernels not in KERNEL_FAMILIES:
        raise ValueError(f"unknown kernel family {kernels!r}; choose one of {', '.join(KERNEL_FAMILIES)}")
    if kernels != "trajectory" and degradation != "motion":
        raise ValueError(f"kernels={kernels!r} is a motion-kernel family; {degradation} draws its own kernels")
    if border not in BORDERS:
        raise ValueError(f"unknown border {border!r}; choose one of {', '.join(BORDERS)}")
    mode = "same" if border == "zero" else "valid"
    for nm, v, lo in (("size", size, 8), ("kernel_size", kernel_size, 3)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
            raise ValueError(f"{nm} must be an int >= {lo}, got {v!r}")
    if kernel_size > size:
        raise ValueError(f"kernel_size {kernel_size} exceeds the image size {size}")
    if not (noise >= 0):
        raise ValueError(f"noise must be >= 0, got {noise!r}")
    if degradation == "motion" and not 0.0 <= float(intensity) <= 1.0:
        raise ValueError(f"intensity must be in [0, 1], got {intensity!r}")
    if degradation != "motion" and not float(std) > 0:
        raise ValueError(f"std must be > 0, got {std!r}")
    if steps is not None and (isinstance(steps, bool) or int(steps) < 1):
        raise ValueError(f"steps must be a positive int, got {steps!r}")
    max_shift = int(max_shift) if max_shift is not None else max(1, min(8, size // 8))
    if sampler_seed is None:
        sampler_seed = seed
    if isinstance(sampler_seed, bool) or not isinstance(sampler_seed, (int, np.integer)):
        raise ValueError(f"sampler_seed must be an int, got {sampler_seed!r}")
    method_options = dict(method_options or {})
    for m in method_options:
        _check_method_name(m)
    preset = preset if preset is not None else DEFAULT_PRESETS[degradation]
    # a scene border: the image is the scene, kernel_size - 1 larger than the scored frame
    items: list[EvalImage] = load_images(images, size=size + (kernel_size - 1 if border == "scene" else 0), limit=limit)
    diffusion = any(method_base(m) in DIFFUSION_METHODS for m in methods)
    num_samples = None
    preset_cfg: dict = {}
    if diffusion:
        from ..presets import load_preset, sampling_counts

        preset_cfg = load_preset(preset)
        run_cfg = _preflight(preset_cfg, steps, models, overrides, kernel_size, mode)  # fail now, not after the baselines
        # record (and key the results on) the step count the preset runs with
        steps, num_samples = sampling_counts(run_cfg)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "results.csv"

    degr = {"degradation": degradation, "size": int(size), "kernel_size": int(kernel_size),
            "noise": float(noise), "seed": int(seed)}
    if degradation == "motion":
        degr["intensity"] = float(intensity)
    else:
        degr["std"] = float(std)
    if degradation == "turbulence":
        degr["tilt_options"] = dict(tilt_options or {})
    # recorded only when not the defaults, so folders from before these options still resume
    if kernels != "trajectory":
        degr["kernels"] = kernels
    if border != "zero":
        degr["border"] = border
    run_json = out / "run.json"
    if not resume:
        for pth in (csv_path, run_json):
            if pth.exists():
                pth.unlink()
    if run_json.is_file():
        try:
            prev = json.loads(run_json.read_text())
        except (OSError, ValueError):
            prev = None
        if prev is not None and prev != json.loads(json.dumps(degr)):
            diff = sorted(k for k in set(prev) | set(degr) if prev.get(k) != degr.get(k))
            raise ValueError(
                f"{out} holds results for other settings ({', '.join(diff)} differ); "
                "use another output folder or resume=False (--no-resume)"
            )
    run_json.write_text(json.dumps(degr, indent=1) + "\n")

    preset_models = _preset_models(preset_cfg) if diffusion else {}
    # only the diffusion methods use the preset: only they are keyed on its content
    preset_id = _preset_id(preset, preset_cfg) if diffusion else _preset_name(preset)
    settings = {"preset": preset, "preset_id": preset_id, "steps": steps, "device": device, "models": models,
                "mode": mode,
                "overrides": overrides,
                "weights": _weights_id(preset_models, models),
                # keyed only when it differs, so rows computed before the option still match
                "sampler_seed": None if int(sampler_seed) == int(seed) else int(sampler_seed)}
    configs = {m: _method_config(m, settings, method_options.get(m, {})) for m in methods}
    done = {(r["image"], r["method"], r.get("config", "")) for r in read_results(csv_path)}
    names = [it.name for it in items]
    todo = [(it, m) for it in items for m in methods if (it.name, m, configs[m]) not in done]
    skipped = [(it.name, m) for it in items for m in methods if (it.name, m, configs[m]) in done]
    ran: list[tuple[str, str]] = []
    n_total = len(items) * len(methods)

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    say(f"evaluate: {len(items)} images x {len(methods)} methods ({degradation}, {size}px, kernel {kernel_size}); "
        f"{len(skipped)} done before, {len(todo)} to run -> {out}")
    counter = len(skipped)
    with _threads(threads):
        for it in items:
            pending = [m for m in methods if (it.name, m, configs[m]) not in done]
            if not pending and (out / "outputs" / _safe(it.name) / "inputs.npz").is_file():
                continue
            x = it.image[None].float()
            y, k, tilt = degrade(x, it.name, degradation, kernel_size, intensity, std, noise, seed, tilt_options,
                                 kernels, border)
            if border == "scene":
                x = scene_crop(x, kernel_size)
            prob = Problem(it.name, x, y, k, tilt, _seed(sampler_seed, it.name, 1), settings)
            img_dir = out / "outputs" / _safe(it.name)
            _save_npz(img_dir / "inputs.npz", x=x[0], y=y[0], kernel=k[0, 0], tilt=None if tilt is None else tilt[0])
            floor = float(M.blob_floor_mnc(k[0, 0]))
            tilt_rms = float(M.tilt_rmse(torch.zeros_like(tilt[0]), tilt[0])) if tilt is not None else None
            for m in pending:
                counter += 1
                t0 = time.perf_counter()
                res = METHOD_FUNCS[method_base(m)](prob, dict(method_options.get(m, {})))
                secs = time.perf_counter() - t0
                row = {"image": it.name, "method": m, "config": configs[m], "seconds": secs,
                       "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S")}
                row.update(_metrics(res, prob, m, max_shift, floor, tilt_rms))
                _save_npz(img_dir / R.output_file(m, configs[m], _safe), image=res.image.detach().cpu()[0].float(),
                          kernel=None if res.kernel is None else res.kernel.detach().cpu().reshape(res.kernel.shape[-2:]),
                          tilt=None if res.tilt is None else res.tilt.detach().cpu()[0])
                _append_row(csv_path, row)
                ran.append((it.name, m))
                extra = f" MNC {row['kernel_mnc']:.3f} (floor {floor:.3f})" if "kernel_mnc" in row else ""
                say(f"[{counter}/{n_total}] {it.name} {m}: PSNR {row['psnr']:.2f} "
                    f"(aligned {row['psnr_aligned']:.2f}) SSIM {row['ssim']:.3f}{extra}  {secs:.1f} s")

    # ---- collect the current rows (last one wins per image/method)
    latest: dict[tuple[str, str], dict] = {}
    for r in read_results(csv_path):
        key = (r["image"], r["method"])
        if r["image"] in names and r["method"] in methods and r.get("config", "") == configs[r["method"]]:
            latest[key] = r
    rows = [latest[(n, m)] for n in names for m in methods if (n, m) in latest]

    means = R.mean_metrics(rows, methods)
    table = R.markdown_table(means, methods, degradation=degradation, max_shift=max_shift)
    lp_ok, lp_reason = M.lpips_available()
    header = {
        "title": name or (f"{degradation} deblurring, {size}x{size}, kernel {kernel_size}"
                          + (f", {kernels} kernels" if kernels != "trajectory" else "")
                          + (", scene borders" if border == "scene" else "")),
        "settings": {**degr, "kernels": kernels, "border": border, "sampler_seed": int(sampler_seed), "methods": methods, "preset": preset_id, "steps": steps,
                     "num_samples": num_samples,
                     "max_shift": max_shift, "device": device, "images": names},
    }
    paths = {"csv": csv_path, "report": out / "report.md", "summary": out / "summary.json",
             "run": run_json}
    (out / "report.md").write_text(R.markdown_report(header, table, rows, methods, max_shift, lpips=(lp_ok, lp_reason)))
    if grid:
        try:
            R.make_grid(out, names[:grid_rows], methods, rows, out / "grid.png", safe=_safe)
            paths["grid"] = out / "grid.png"
        except Exception as exc:  # noqa: BLE001 - the figure is a convenience
            say(f"evaluate: could not draw the grid: {exc}")
    summary = {
        "title": header["title"],
        "inputs": [{"name": it.name, "source": it.source, "shape": list(it.image.shape),
                    "seed": _seed(seed, it.name, 0)} for it in items],
        "settings": {**header["settings"],
                     "noise_model": ("y = k * x (same, zero padding) + N(0, noise^2)" if border == "zero" else
                                     "y = k * x (valid: the scene is kernel_size-1 larger than the scored frame)"
                                     " + N(0, noise^2)"),
                     "method_configs": configs, "method_options": method_options,
                     "overrides": overrides, "models": models, "threads": threads,
                     "metrics": (f"PSNR/SSIM (scikit-image, data range 2) on outputs clipped to [-1,1] "
                                 f"(blurry: y as is); aligned = best integer shift within +-{max_shift} px "
                                 f"on the crop [m:H-m, m:W-m], m={max_shift}")},
        "preset_models": preset_models,
        "versions": _versions(),
        "lpips": {"available": lp_ok, "reason": lp_reason, "computed": False},
        "timings": {"this_run_s": time.perf_counter() - t_start,
                    "ran": len(ran), "skipped": len(skipped),
                    "mean_seconds_per_image": {m: v.get("seconds") for m, v in means.items()}},
        "means": means,
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "files": {k: str(v.name) for k, v in paths.items()},
    }
    paths["summary"].write_text(json.dumps(summary, indent=1, default=_json_default, allow_nan=False) + "\n")
    return EvalResult(rows=rows, means=means, table=table, paths=paths, summary=summary, ran=ran, skipped=skipped)


def _json_default(o):
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    return str(o)
