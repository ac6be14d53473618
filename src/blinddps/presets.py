"""Task presets: YAML files in ``configs/`` that say which operator, which priors and
which sampler settings a task uses. Flags and keyword arguments override them.

The one place where a preset turns into objects: operators and priors are built here,
and handed to the sampler, which never reads a preset.
"""
from __future__ import annotations

import copy
import dataclasses
import difflib
import inspect
import json
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

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
    validate_preset(data, where)
    return data


DEFAULT_STEPS = 1000
DEFAULT_NUM_SAMPLES = 1


def sampling_counts(preset: dict) -> tuple[Any, int]:
    """``(steps, num_samples)`` a loaded preset runs with: its own values, else the
    defaults (1000 steps, one posterior sample). ``steps`` may be a respacing string."""
    return preset.get("steps", DEFAULT_STEPS), preset.get("num_samples", DEFAULT_NUM_SAMPLES)


# --------------------------------------------------------------------------- schema
# What a preset may hold. PRESET_KEYS is the one list of top-level keys: a new setting
# is added there (or with register_preset_key) as name -> check(value, preset), which
# returns None when the value is fine and otherwise says what is wrong. The keys inside
# `operator`, `priors.*`, `step`, `regularizer` and `transform` are not listed: they are
# read from the code they configure (constructor signatures and dataclass fields), so a
# new operator or transform argument is allowed the moment it exists.
Check = Callable[[Any, dict], "str | None"]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _string(v: Any, _: dict) -> str | None:
    return None if isinstance(v, str) else f"expected a string, got {v!r}"


def _mapping(v: Any, _: dict) -> str | None:
    return None if isinstance(v, dict) else f"expected a mapping, got {v!r}"


def _positive_int(v: Any, _: dict) -> str | None:
    return None if _is_int(v) and v >= 1 else f"expected a positive integer, got {v!r}"


def _non_negative(v: Any, _: dict) -> str | None:
    return None if _is_number(v) and v >= 0 else f"expected a number >= 0, got {v!r}"


def _unit_interval(v: Any, _: dict) -> str | None:
    return None if _is_number(v) and 0 <= v <= 1 else f"expected a number in [0, 1], got {v!r}"


def _boolean(v: Any, _: dict) -> str | None:
    return None if isinstance(v, bool) else f"expected true or false, got {v!r}"


def _one_of(*choices: str) -> Check:
    def check(v: Any, _: dict) -> str | None:
        return None if v in choices else f"expected one of {', '.join(choices)}, got {v!r}"

    return check


def _steps(v: Any, preset: dict) -> str | None:
    from .diffusion.schedule import space_timesteps

    total = preset.get("num_timesteps", 1000)
    bad = (f"expected a positive integer (at most num_timesteps, {total}) or a respacing string "
           f"such as '50,50' or 'ddim100', got {v!r}")
    if isinstance(v, bool) or not isinstance(v, (int, str)) or (_is_int(v) and not 1 <= v <= total):
        return bad
    if isinstance(v, str):
        if not v.strip():
            return bad
        try:
            if not space_timesteps(int(total), v):
                return bad
        except (TypeError, ValueError):
            return bad
    return None


def _noise_schedule(v: Any, _: dict) -> str | None:
    from .diffusion.schedule import named_betas

    try:
        named_betas(v, 10)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


def _runtime(v: Any, _: dict) -> str | None:
    if not isinstance(v, dict):
        return f"expected a mapping of {', '.join(RUNTIME_OPTIONS)}, got {v!r}"
    for key, val in v.items():
        if key not in RUNTIME_OPTIONS:
            return _unknown(key, RUNTIME_OPTIONS).replace("key", "runtime option", 1)
        if not isinstance(val, bool):
            return f"{key}: expected true or false, got {val!r}"
    return None


def _proximal(v: Any, _: dict) -> str | None:
    from .sampling import proximal_options

    try:
        proximal_options(v)
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


#: Every key a preset may hold at its top level: name -> check(value, preset).
PRESET_KEYS: dict[str, Check] = {
    "name": _string,
    "description": _string,
    "base": _string,
    "operator": lambda v, p: _check_operator(v),
    "priors": lambda v, p: _check_priors(v, p),
    "steps": _steps,
    "num_samples": _positive_int,
    "num_timesteps": _positive_int,
    "noise_schedule": _noise_schedule,
    "solver": _one_of("dps", "proximal"),
    "proximal": _proximal,
    "method": _one_of("ddpm", "ddim"),
    "eta": _non_negative,
    "loss_reduction": _one_of("sample", "batch"),
    "loss": _one_of("norm", "squared"),
    "result": _one_of("x0", "update"),
    "runtime": _runtime,
    "simulate": _mapping,  # the degradation the preset is meant for (documentation; not read by the solver)
}


def register_preset_key(name: str, check: Check | None = None) -> None:
    """Allow top-level preset key ``name`` (``check(value, preset)`` returns None or
    what is wrong with the value; without one any value is accepted)."""
    PRESET_KEYS[name] = check or (lambda v, p: None)


#: Keys of one prior's entry besides the fields of ``Variable`` it sets.
PRIOR_SPEC_KEYS: dict[str, Check] = {
    "model": _string,
    "config": _mapping,
    "transform": lambda v, p: _check_transform(v),
    "clip": _boolean,
    "fixed": _boolean,
    "step": lambda v, p: _check_dataclass(v, StepRule),
    "regularizer": lambda v, p: _check_dataclass(v, Regularizer),
    "data_weight": _unit_interval,
    "data_start": _unit_interval,
}


def prior_keys() -> tuple[str, ...]:
    """The keys a prior's entry may hold: ``PRIOR_SPEC_KEYS`` and ``Variable``'s
    fields (less the prior and its initial value, which the preset does not give)."""
    fields = [f.name for f in dataclasses.fields(Variable) if f.name not in ("prior", "init")]
    return tuple(dict.fromkeys([*PRIOR_SPEC_KEYS, *fields]))


def _unknown(key: Any, allowed: Sequence[str]) -> str:
    close = difflib.get_close_matches(str(key), [str(a) for a in allowed], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{hint} (allowed: {', '.join(sorted(allowed))})"


def _call_problem(exc: Exception) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _parameters(cls: type) -> list[str]:
    return [n for n, p in inspect.signature(cls).parameters.items()
            if n != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _check_keys_then_build(spec: Any, allowed: Sequence[str], build: Callable[[Any], Any]) -> str | None:
    """What is wrong with ``spec``: a key outside ``allowed`` (a mapping's), else what
    ``build(spec)`` — the code the entry configures — objects to; None if nothing."""
    for key in spec if isinstance(spec, dict) else ():
        if key not in allowed:
            return _unknown(key, allowed)
    try:
        build(spec)
    except (TypeError, ValueError) as exc:
        return _call_problem(exc)
    return None


def _check_operator(spec: Any) -> str | None:
    if not isinstance(spec, dict):
        return f"expected a mapping with 'name', got {spec!r}"
    table = operator_classes()
    name = spec.get("name")
    if name not in table:
        return f"name: expected one of {', '.join(sorted(table))}, got {name!r}"
    return _check_keys_then_build(spec, ["name", *_parameters(table[name])], build_operator)


def transform_classes() -> dict[str, type]:
    """The transforms a prior's ``transform`` may name: every ``Transform`` subclass by
    its ``name``."""
    from .transforms import Transform

    found: dict[str, type] = {}
    todo = list(Transform.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        if not inspect.isabstract(cls) and isinstance(getattr(cls, "name", None), str):
            found.setdefault(cls.name, cls)
    return found


def _check_transform(spec: Any) -> str | None:
    table = transform_classes()
    name = spec if isinstance(spec, str) else (spec.get("name") if isinstance(spec, dict) else None)
    if name not in table:
        return f"expected one of {', '.join(sorted(table))} (or a mapping with 'name'), got {spec!r}"
    return _check_keys_then_build(spec, ["name", *_parameters(table[name])], build_transform)


def _check_dataclass(spec: Any, cls: type) -> str | None:
    if spec is None:
        return None
    allowed = [f.name for f in dataclasses.fields(cls)]
    if not isinstance(spec, dict):
        return f"expected a mapping of {', '.join(allowed)}, got {spec!r}"
    return _check_keys_then_build(spec, allowed, lambda kw: cls(**kw))


def _check_priors(priors: Any, preset: dict) -> str | None:
    if not isinstance(priors, dict):
        return f"expected a mapping of variable name -> prior, got {priors!r}"
    try:
        unknowns = list(getattr(build_operator(preset.get("operator") or {}), "unknowns", {}))
    except (PresetError, TypeError, ValueError):
        unknowns = None  # the operator's own check reports it
    names = ["image", *(unknowns or [])]
    allowed = prior_keys()
    for pname, spec in priors.items():
        if unknowns is not None and pname not in names:
            return f"{pname}: " + _unknown(pname, names).replace("key", "variable", 1)
        if spec is None:
            continue
        if not isinstance(spec, dict):
            return f"{pname}: expected a mapping (model, transform, step, ...), got {spec!r}"
        for key, val in spec.items():
            if key not in allowed:
                return f"{pname}: " + _unknown(key, allowed)
            check = PRIOR_SPEC_KEYS.get(key)
            problem = check(val, preset) if check is not None else None
            if problem:
                return f"{pname}.{key}: {problem}"
    return None


def validate_preset(preset: dict, where: str = "the preset") -> None:
    """Check a loaded preset against the schema (:data:`PRESET_KEYS` at the top level,
    the code's own signatures below it). Raises a one-line :class:`PresetError` naming
    ``where`` (the file) and the key: unknown keys (typos) and bad values alike."""
    for key, value in preset.items():
        check = PRESET_KEYS.get(key)
        if check is None:
            raise PresetError(f"{where}: " + _unknown(key, list(PRESET_KEYS)))
        problem = check(value, preset)
        if problem:
            sep = "." if key in ("operator", "priors") and not problem.startswith(("expected", "unknown")) else ": "
            raise PresetError(f"{where}: {key}{sep}{problem}")


def check_override_keys(overrides: dict, where: str) -> None:
    """Overrides (keyword arguments) may only name preset keys: a one-line
    :class:`PresetError` for any other (a typo must not be ignored)."""
    for key in overrides:
        if key not in PRESET_KEYS:
            raise PresetError(f"{where}: " + _unknown(key, list(PRESET_KEYS)).replace("key", "keyword argument", 1))


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
def operator_classes() -> dict[str, type]:
    """The operators a preset's ``operator: {name: ...}`` may name."""
    from .operators.blur import BlindBlur
    from .operators.burst import BurstTurbulence
    from .operators.turbulence import Turbulence

    return {"blind_blur": BlindBlur, "turbulence": Turbulence, "turbulence_burst": BurstTurbulence}


def build_operator(spec: dict) -> Any:
    table = operator_classes()
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


#: The switches of a preset's ``runtime:`` mapping (see :func:`prepare_model`).
RUNTIME_OPTIONS = ("channels_last", "gradient_checkpointing", "compile")


def prepare_model(model: torch.nn.Module, device, dtype, runtime: dict) -> torch.nn.Module:
    """Put a prior's network on its device, with the preset's ``runtime`` speed options:
    ``channels_last`` (GPU convolutions), ``gradient_checkpointing`` (memory for large
    images or batches, at ~30% more time) and ``compile`` (``torch.compile``)."""
    unknown = set(runtime) - set(RUNTIME_OPTIONS)
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
    shapes = operator.unknown_shapes(image_shape) if image_shape is not None else {}
    for name, var in variables.items():
        net = getattr(var.prior, "model", None)
        mult = getattr(net, "size_multiple", None)
        if name == "image" or mult is None:
            continue
        size = getattr(net, "image_size", None)
        hw = _fixed_unknown_hw(operator, name)
        if hw is None:
            if name in shapes:
                ihw = tuple(shapes[name][-2:])
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
                combine=spec.get("combine", "mean"),
            )
        except (TypeError, ValueError) as exc:
            raise PresetError(f"prior {name!r}: {exc}") from None
    return variables
