"""Task presets: YAML files in ``configs/`` that say which operator, which priors and
which sampler settings a task uses. Flags and keyword arguments override them.

The one place where a preset turns into objects: operators and priors are built here,
and handed to the sampler, which never reads a preset.
"""
from __future__ import annotations

import copy
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any

import torch
import yaml

from .diffusion import DiffusionSchedule
from .priors import DiffusionPrior, FlatPrior, Prior
from .sampling import Regularizer, StepRule, Variable
from .transforms import build_transform

PRESET_DIRS_ENV = "BLINDDPS_CONFIGS"
_REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


class PresetError(ValueError):
    """A preset that cannot be found or makes no sense (one-line message)."""


def preset_dirs() -> list[Path]:
    dirs = [Path(p) for p in os.environ.get(PRESET_DIRS_ENV, "").split(os.pathsep) if p]
    return dirs + [_REPO_CONFIGS]


def list_presets() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for d in preset_dirs():
        if d.is_dir():
            for p in sorted(d.glob("*.yaml")):
                found.setdefault(p.stem, p)
    return found


def read_yaml_mapping(path: Path, what: str, error: type[Exception] = ValueError,
                      expect: str = "a mapping") -> dict[str, Any]:
    """The mapping a YAML file holds (``what`` names the file in messages); ``error``
    with a one-line message when the file cannot be read or holds something else."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read {what} {path}: {exc}".splitlines()[0]) from None
    if not isinstance(data, dict):
        raise error(f"{what} {path} must be {expect}")
    return data


def load_preset(name_or_path: str | Path | dict) -> dict[str, Any]:
    """A preset as a dict, from a name in ``configs/``, a YAML path, or a dict.

    A preset may start from another: ``base: NAME`` (a preset name, or a YAML path
    relative to the file) loads that one and deep-merges this one's keys over it, so
    a variant states only what it changes."""
    return _load_preset(name_or_path, ())


def _find_preset(name_or_path: str | Path, relative_to: Path | None = None) -> Path:
    path = Path(name_or_path).expanduser()
    # a base's YAML path is looked for beside the file that names it first
    near = [relative_to / path] if relative_to is not None and not path.is_absolute() else []
    for candidate in near + [path]:
        if candidate.suffix in (".yaml", ".yml") and candidate.is_file():
            return candidate
    known = list_presets()
    if str(name_or_path) not in known:
        raise PresetError(
            f"unknown preset {str(name_or_path)!r}; known presets: {', '.join(sorted(known)) or 'none'}"
        )
    return known[str(name_or_path)]


def _load_preset(name_or_path: str | Path | dict, seen: tuple[str, ...]) -> dict[str, Any]:
    if isinstance(name_or_path, dict):
        data, path = copy.deepcopy(name_or_path), None
        where = "the preset"
    else:
        path = _find_preset(name_or_path, Path(seen[-1]).parent if seen else None)
        where = f"preset {path}"
        data = read_yaml_mapping(path, "preset", PresetError, "a mapping with 'operator' and 'priors'")
    base = data.pop("base", None)
    if base is not None:
        if not isinstance(base, str) or not base:
            raise PresetError(f"{where}: 'base' must be a preset name or a YAML path, got {base!r}")
        key = str(path.resolve()) if path is not None else "<dict>"
        if key in seen:
            raise PresetError(f"{where}: its 'base' chain comes back to itself")
        parent = _load_preset(base, seen + (key,))
        parent.pop("name", None)
        data = merge(parent, data)
    if "operator" not in data or "priors" not in data:
        raise PresetError(f"{where} must be a mapping with 'operator' and 'priors'")
    if path is not None:
        data.setdefault("name", path.stem)
    return data


DEFAULT_STEPS = 1000
DEFAULT_NUM_SAMPLES = 1


def sampling_counts(preset: dict) -> tuple[Any, int]:
    """``(steps, num_samples)`` a loaded preset runs with: its own values, else the
    defaults (1000 steps, one posterior sample). ``steps`` may be a respacing string."""
    return preset.get("steps", DEFAULT_STEPS), preset.get("num_samples", DEFAULT_NUM_SAMPLES)


def merge(base: dict, overrides: dict) -> dict:
    """Deep-merge ``overrides`` into a copy of ``base`` (None values are ignored)."""
    out = copy.deepcopy(base)
    for key, val in overrides.items():
        if val is None:
            continue
        if isinstance(val, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], val)
        else:
            out[key] = copy.deepcopy(val)
    return out


# --------------------------------------------------------------------------- operators
def build_operator(spec: dict) -> Any:
    from .operators.blur import BlindBlur
    from .operators.turbulence import Turbulence

    table = {"blind_blur": BlindBlur, "turbulence": Turbulence}
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in table:
        raise PresetError(f"unknown operator {name!r}; choose one of {', '.join(sorted(table))}")
    try:
        return table[name](**spec)
    except TypeError as exc:
        raise PresetError(f"bad settings for operator {name!r}: {exc}") from None


# --------------------------------------------------------------------------- models
def shipped_model_file(name: str) -> Path:
    """Where the shipped prior ``shipped:NAME`` lives (it may not exist)."""
    from .models import checkpoints as ck

    return ck.SHIPPED_DIR / f"{name}.safetensors"


def model_file(spec: str | Path, published: bool = True) -> Path | None:
    """The local weight file a prior's ``model`` spec names: ``shipped:NAME``, a path, or
    (``published``) a registered checkpoint found on disk; ``None`` for ``flat`` or
    when it cannot be resolved (the loader then raises its one-line error)."""
    from .models import checkpoints as ck

    spec = str(spec)
    if spec == "flat":
        return None
    if spec.startswith("shipped:"):
        return shipped_model_file(spec.split(":", 1)[1])
    if spec.startswith("published:"):
        info = ck.KNOWN_CHECKPOINTS.get(spec.split(":", 1)[1])
        if not published or info is None:
            return None
        try:
            return ck.find_checkpoint(info.filename)
        except (OSError, ValueError):
            return None
    return Path(spec).expanduser()


def load_prior_model(spec: str | Path, config: dict | None = None) -> torch.nn.Module:
    """A prior's network from ``shipped:NAME``, ``published:NAME`` or a file path."""
    from .models import checkpoints as ck
    from .models.wrappers import load_saved

    spec = str(spec)
    if spec.startswith("shipped:"):
        name = spec.split(":", 1)[1]
        path = shipped_model_file(name)
        if not path.is_file():
            shipped = sorted(p.stem for p in ck.list_shipped())
            raise PresetError(f"no shipped prior named {name!r}; shipped: {', '.join(shipped) or 'none'}")
        return load_saved(path)
    if spec.startswith("published:"):
        name = spec.split(":", 1)[1]
        if name not in ck.KNOWN_CHECKPOINTS:
            raise PresetError(f"unknown published checkpoint {name!r}; known: {', '.join(ck.KNOWN_CHECKPOINTS)}")
        info = ck.KNOWN_CHECKPOINTS[name]
        return ck.load_model(ck.find_checkpoint(info.filename), info.config)
    path = Path(spec).expanduser()
    if path.suffix == ".safetensors" and path.with_suffix(".yaml").is_file() and config is None:
        return load_saved(path)
    if config is None:
        raise PresetError(f"model {spec}: give its config (a YAML beside a .safetensors, or `config:` in the preset)")
    return ck.load_model(ck.find_checkpoint(str(path)), config)


def prepare_model(model: torch.nn.Module, device, dtype, runtime: dict) -> torch.nn.Module:
    """Put a prior's network on its device, with the preset's ``runtime`` speed options:
    ``channels_last`` (GPU convolutions), ``gradient_checkpointing`` (memory for large
    images or batches, at ~30% more time) and ``compile`` (``torch.compile``)."""
    unknown = set(runtime) - {"channels_last", "gradient_checkpointing", "compile"}
    if unknown:
        raise PresetError(f"unknown runtime option {sorted(unknown)[0]!r}")
    model = model.to(device=device)
    if dtype != torch.float32:  # weights are float32; keep float64 buffers (schedules) as they are
        model = model.to(dtype=dtype)
    if runtime.get("channels_last"):
        model = model.to(memory_format=torch.channels_last)
    if runtime.get("gradient_checkpointing"):
        inner = getattr(model, "net", model)
        if hasattr(inner, "set_gradient_checkpointing"):
            inner.set_gradient_checkpointing(True)
    if runtime.get("compile"):
        model = torch.compile(model)
    return model


# Prepared networks, reused across solves (a batch CLI run, reference mode, an evaluation
# over many images would otherwise re-read and re-prepare them per call). Keyed by what
# determines the prepared module: the spec, the file's identity (path, size, mtime), the
# config, device, dtype and runtime options. Priors never modify their network (eval
# mode, frozen parameters), so sharing one is safe.
MODEL_CACHE_SIZE = 6
_MODEL_CACHE: "OrderedDict[tuple, torch.nn.Module]" = OrderedDict()


def _cache_key(spec: str, config: dict | None, device, dtype, runtime: dict) -> tuple:
    path = model_file(spec)
    ident: tuple = ()
    if path is not None and path.is_file():
        st = path.stat()
        ident = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    return (spec, ident, json.dumps(config, sort_keys=True, default=str), str(torch.device(device)), str(dtype),
            json.dumps(runtime, sort_keys=True, default=str))


def cached_prior_model(spec: str | Path, config: dict | None, device, dtype, runtime: dict) -> torch.nn.Module:
    """:func:`load_prior_model` + :func:`prepare_model`, remembered for the last
    :data:`MODEL_CACHE_SIZE` distinct models; a changed file is read again."""
    key = _cache_key(str(spec), config, device, dtype, runtime)
    model = _MODEL_CACHE.get(key)
    if model is None:
        model = prepare_model(load_prior_model(spec, config), device, dtype, runtime)
        _MODEL_CACHE[key] = model
        while len(_MODEL_CACHE) > MODEL_CACHE_SIZE:
            _MODEL_CACHE.popitem(last=False)
    else:
        _MODEL_CACHE.move_to_end(key)
    return model


def clear_model_cache() -> None:
    """Forget the prepared networks (frees their memory)."""
    _MODEL_CACHE.clear()


def _fixed_unknown_hw(operator: Any, name: str) -> tuple[int, int] | None:
    """The (h, w) of an operator unknown of fixed size (a kernel), None for image-sized
    unknowns (a tilt map) or names the operator does not declare."""
    unk = getattr(operator, "unknowns", {}).get(name) if operator is not None else None
    if unk is None or -1 in tuple(unk.shape)[-2:]:
        return None
    return tuple(int(s) for s in tuple(unk.shape)[-2:])  # type: ignore[return-value]


def _fit_window(name: str, transform: Any, model: Any, operator: Any) -> Any:
    """A fixed-size prior (e.g. a 32×32 kernel prior) for a smaller unknown: the
    transform's window, so the unknown lives in the central part of the prior's window.
    Larger unknowns, or transforms without a window, are left for
    :func:`check_prior_shapes` to report."""
    size = getattr(model, "image_size", None)
    hw = _fixed_unknown_hw(operator, name)
    if size is None or hw is None or hw == (size, size) or not hasattr(transform, "with_window"):
        return transform
    if hw[0] > size or hw[1] > size:
        return transform
    return transform.with_window((size, size), hw)


def check_prior_shapes(variables: dict, operator: Any, image_shape: tuple[int, int, int] | None = None) -> None:
    """Raise a one-line :class:`PresetError` if a prior's network cannot take its
    variable's shape: a fixed-size prior (kernel) larger than its window, or an
    image-sized unknown (tilt) whose size the UNet does not accept (``image_shape``
    (C, H, W), padded, to check those)."""
    for name, var in variables.items():
        net = getattr(var.prior, "model", None)
        mult = getattr(net, "size_multiple", None)
        if name == "image" or mult is None:
            continue
        size = getattr(net, "image_size", None)
        hw = _fixed_unknown_hw(operator, name)
        if hw is None:
            if image_shape is not None and name in operator.unknown_shapes(image_shape):
                ihw = tuple(operator.unknown_shapes(image_shape)[name][-2:])
                if any(s % mult for s in ihw):
                    raise PresetError(f"the {name} prior needs sizes divisible by {mult}, "
                                      f"the operator's {name} is {ihw[0]}x{ihw[1]}")
            continue
        dshape = tuple(var.prior.transform.diffusion_shape((1, *hw)))[-2:]
        if size and dshape != (size, size):
            if name == "kernel" and (hw[0] > size or hw[1] > size):
                raise PresetError(
                    f"the kernel prior's window is {size}x{size} but the kernel is {hw[0]}x{hw[1]}: use "
                    f"--kernel-size {size} or less (for a larger blur, downscale the image by about "
                    f"{max(hw) / size:.1f}x first)")
            raise PresetError(f"the {name} prior was trained on {size}x{size} values but the {name} is "
                              f"{hw[0]}x{hw[1]}; use a matching size or a flat prior (model: flat)")


def build_variables(
    preset: dict,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    autocast_dtype: torch.dtype | None = None,
    operator: Any = None,
) -> dict[str, Variable]:
    """The sampler's variables (image and unknowns) from a preset's ``priors``."""
    steps, _ = sampling_counts(preset)
    sched = DiffusionSchedule.create(
        steps,
        noise_schedule=preset.get("noise_schedule", "linear"),
        num_timesteps=preset.get("num_timesteps", 1000),
    )
    variables: dict[str, Variable] = {}
    for name, spec in preset["priors"].items():
        if spec is None or spec.get("fixed"):
            continue
        transform = build_transform(spec.get("transform", "identity"))
        model_spec = spec.get("model", "flat")
        prior: Prior
        if model_spec == "flat":
            prior = FlatPrior(transform)
        else:
            model = cached_prior_model(model_spec, spec.get("config"), device, dtype, preset.get("runtime") or {})
            transform = _fit_window(name, transform, model, operator)
            prior = DiffusionPrior(model, sched, transform, clip=spec.get("clip", True),
                                   autocast_dtype=autocast_dtype, name=str(model_spec))
        step = spec.get("step", {}) or {}
        reg = spec.get("regularizer")
        init = None
        if model_spec == "flat" and operator is not None and hasattr(operator, "initial_value"):
            init = operator.initial_value(name)
        try:
            variables[name] = Variable(
                prior=prior,
                step=StepRule(**step),
                regularizer=Regularizer(**reg) if reg else None,
                init=init,
                data_weight=spec.get("data_weight", 0.0),
                data_start=spec.get("data_start", 1.0),
            )
        except (TypeError, ValueError) as exc:
            raise PresetError(f"prior {name!r}: {exc}") from None
    return variables
