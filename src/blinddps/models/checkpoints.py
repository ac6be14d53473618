"""Loading and saving UNet weights safely; the published BlindDPS checkpoints.

* :func:`load_state_dict` reads ``.safetensors`` (no code execution) or ``.pt``/``.pth``
  with ``torch.load(..., weights_only=True)``; arbitrary pickles are refused unless the
  caller explicitly passes ``trust_pickle=True`` for a file they trust.
* :func:`load_model` builds the UNet from its config and loads the weights strictly.
* :func:`save_model` / :func:`load_saved_model` keep a network as ``NAME.safetensors``
  plus ``NAME.yaml`` (its ``create_model`` config).
* :data:`KNOWN_CHECKPOINTS` describes the three published BlindDPS checkpoints;
  :func:`find_checkpoint` looks for them locally. Nothing here ever downloads.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from .unet import UNetModel, create_model

__all__ = [
    "SHIPPED_DIR",
    "MODELS_ENV",
    "CheckpointInfo",
    "KNOWN_CHECKPOINTS",
    "CheckpointError",
    "CheckpointNotFoundError",
    "CheckpointMismatchError",
    "load_state_dict",
    "load_model",
    "save_model",
    "load_saved_model",
    "read_saved_config",
    "default_search_dirs",
    "find_checkpoint",
    "list_shipped",
]

#: Priors shipped inside the package (``NAME.safetensors`` + ``NAME.yaml``).
SHIPPED_DIR = Path(__file__).parent.parent / "weights"
#: Environment variable naming extra folders (``os.pathsep``-separated) to search.
MODELS_ENV = "BLINDDPS_MODELS"

_WRAPPER_KEYS = ("state_dict", "model", "ema")
_PREFIXES = ("module.", "_orig_mod.")


class CheckpointError(Exception):
    """A checkpoint could not be read or does not fit its model."""


class CheckpointNotFoundError(CheckpointError):
    """A checkpoint file is not where we looked. The message is one line."""


class CheckpointMismatchError(CheckpointError, ValueError):
    """A state dict's keys or shapes differ from the model's."""


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class CheckpointInfo:
    """A published checkpoint: its file name, UNet config and where to get it."""

    name: str
    filename: str
    config: dict[str, Any]
    description: str
    url: str
    num_parameters: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


_BLINDDPS_DRIVE = "https://drive.google.com/drive/folders/1K_CG24xePSGeSdTGmcPfOAliHdY-nUsC"
_BLINDDPS_REPO = "https://github.com/BlindDPS/blind-dps"


def _published_config(**extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "image_size": 256,
        "num_channels": 128,
        "num_res_blocks": 1,
        "channel_mult": "",
        "learn_sigma": True,
        "class_cond": False,
        "use_checkpoint": False,
        "attention_resolutions": 16,
        "num_heads": 4,
        "num_head_channels": 64,
        "num_heads_upsample": -1,
        "use_scale_shift_norm": True,
        "dropout": 0.0,
        "resblock_updown": True,
        "use_fp16": False,
        "use_new_attention_order": False,
    }
    cfg.update(extra)
    return cfg


KNOWN_CHECKPOINTS: dict[str, CheckpointInfo] = {
    "image_ffhq256": CheckpointInfo(
        name="image_ffhq256",
        filename="ffhq_10m.pt",
        config=_published_config(),
        description="FFHQ 256x256 face image prior (guided-diffusion UNet, 93.6M parameters) used by DPS and BlindDPS",
        url=_BLINDDPS_DRIVE,
        num_parameters=93563910,
        extra={"also_from": "https://github.com/DPS2022/diffusion-posterior-sampling (README link)"},
    ),
    "kernel64": CheckpointInfo(
        name="kernel64",
        filename="kernel_checkpoint.pt",
        config=_published_config(image_size=64, num_channels=64, grayscale=True),
        description="BlindDPS 64x64 blur-kernel prior (1 channel, 17.1M parameters)",
        url=_BLINDDPS_DRIVE,
        num_parameters=17057474,
    ),
    "tilt256": CheckpointInfo(
        name="tilt256",
        filename="tilt_checkpoint.pt",
        config=_published_config(num_channels=64, grayscale=False, twochan=True),
        description="BlindDPS 256x256 turbulence tilt-map prior (2 channels, 23.4M parameters)",
        url=_BLINDDPS_DRIVE,
        num_parameters=23416644,
    ),
}


# --------------------------------------------------------------------------- reading
def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(4):  # nested wrappers like {'model': {'state_dict': ...}}
        if not isinstance(obj, Mapping):
            break
        if any(isinstance(v, torch.Tensor) for v in obj.values()):
            break
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], Mapping)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (a mapping of names to tensors), got {type(obj).__name__}")
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(f"{path}: no tensors found (keys: {', '.join(map(str, list(obj)[:8]))})")
    for prefix in _PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def load_state_dict(path: str | os.PathLike, *, trust_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` or ``.pt``/``.pth`` file, on the CPU.

    ``.pt`` files are read with ``weights_only=True`` (plain tensors and containers
    only). A file holding other Python objects is refused; pass ``trust_pickle=True``
    to unpickle it anyway, for a file from a source you trust. Wrappers
    (``{'state_dict' | 'model' | 'ema': ...}``) and a ``module.`` prefix are removed.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointNotFoundError(f"checkpoint file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return _unwrap(load_file(str(path), device="cpu"), path)
        except CheckpointError:
            raise
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_pickle)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: refused to unpickle: the file holds more than tensors ({first}). "
            "Convert it to .safetensors, or pass trust_pickle=True if you trust its source."
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint ({exc})") from None
    return _unwrap(obj, path)


def _check_keys(model: torch.nn.Module, sd: Mapping[str, torch.Tensor], source: str) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in sd and tuple(sd[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or wrong):
        return

    def few(items: list[str]) -> str:
        more = f", … ({len(items) - 4} more)" if len(items) > 4 else ""
        return ", ".join(items[:4]) + more

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {few(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {few(unexpected)}")
    if wrong:
        parts.append(f"{len(wrong)} with wrong shape (file vs model): {few(wrong)}")
    raise CheckpointMismatchError(
        f"{source} does not fit the UNet config (wrong config for this checkpoint?): " + "; ".join(parts)
    )


def _clean_config(config: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(config)
    cfg.pop("model_path", None)  # DPS/BlindDPS YAML configs carry the file name too
    return cfg


def load_model(
    path: str | os.PathLike,
    config: Mapping[str, Any],
    *,
    device: torch.device | str = "cpu",
    trust_pickle: bool = False,
) -> UNetModel:
    """Build ``create_model(**config)`` and load the weights at ``path`` strictly, in eval mode."""
    sd = load_state_dict(path, trust_pickle=trust_pickle)
    cfg = _clean_config(config)
    with torch.device("meta"):
        model = create_model(**cfg)
    _check_keys(model, sd, str(path))
    model = model.to_empty(device=device)
    model.load_state_dict(sd, strict=True)
    return model.eval()


# --------------------------------------------------------------------------- saving
def _pair(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path).expanduser()
    if p.suffix in (".safetensors", ".yaml", ".yml"):
        p = p.with_suffix("")
    return p.with_name(p.name + ".safetensors"), p.with_name(p.name + ".yaml")


def save_model(model: UNetModel, path: str | os.PathLike, metadata: Mapping[str, Any] | None = None) -> Path:
    """Write ``NAME.safetensors`` (weights) and ``NAME.yaml`` (config); returns the weights path.

    ``metadata`` (plain YAML values: training notes, transforms, …) is stored beside
    the config in the YAML file.
    """
    import yaml
    from safetensors.torch import save_file

    config = getattr(model, "config", None)
    if not config:
        raise ValueError("model has no config; build it with blinddps.models.create_model")
    weights, cfg_path = _pair(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()}
    save_file(sd, str(weights), metadata={"format": "pt", "blinddps": "unet"})
    doc: dict[str, Any] = {"config": dict(config)}
    if metadata:
        doc["metadata"] = dict(metadata)
    with open(cfg_path, "w", encoding="utf-8") as f:
        f.write("# blinddps UNet: guided-diffusion create_model keywords; weights in the .safetensors beside this file\n")
        yaml.safe_dump(doc, f, sort_keys=False)
    return weights


def read_saved_config(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(config, metadata)`` from the YAML beside ``NAME.safetensors`` (or the YAML itself)."""
    import yaml

    _, cfg_path = _pair(path)
    if not cfg_path.is_file():
        raise CheckpointNotFoundError(f"no config {cfg_path.name} beside {cfg_path.with_suffix('.safetensors')}")
    with open(cfg_path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    if not isinstance(doc, dict):
        raise CheckpointError(f"{cfg_path}: expected a mapping")
    if isinstance(doc.get("config"), dict):
        return dict(doc["config"]), dict(doc.get("metadata") or {})
    return doc, {}  # a flat config file


def load_saved_model(path: str | os.PathLike, *, device: torch.device | str = "cpu") -> UNetModel:
    """Read back a network written by :func:`save_model` (``path`` with or without suffix).
    A config with wrapper keys (``pixel_unshuffle``, ``dc_prior``: the shipped priors) is
    handed to :func:`blinddps.models.wrappers.load_saved`."""
    from .wrappers import WRAPPER_KEYS, load_saved

    weights, _ = _pair(path)
    config, metadata = read_saved_config(path)
    if any(k in config for k in WRAPPER_KEYS):
        return load_saved(path, device=device)
    model = load_model(weights, config, device=device)
    model.metadata = metadata  # type: ignore[attr-defined]
    return model


# --------------------------------------------------------------------------- finding
def default_search_dirs() -> list[Path]:
    """``$BLINDDPS_MODELS`` (may list several), ``~/.cache/blinddps/models``, ``./models``."""
    dirs = [Path(d).expanduser() for d in os.environ.get(MODELS_ENV, "").split(os.pathsep) if d.strip()]
    dirs += [Path("~/.cache/blinddps/models").expanduser(), Path.cwd() / "models"]
    return dirs


def find_checkpoint(name_or_path: str | os.PathLike, search_dirs: Iterable[str | os.PathLike] | None = None) -> Path:
    """The local path of a checkpoint file. Never downloads.

    ``name_or_path`` is a path, a file name (``ffhq_10m.pt``) or a registry name
    (``image_ffhq256``). An existing path is returned as is; otherwise the file name is
    looked for in ``search_dirs`` (default: :func:`default_search_dirs`).
    """
    raw = str(name_or_path)
    info = KNOWN_CHECKPOINTS.get(raw)
    looked: list[str] = []
    if info is not None:
        filename = info.filename
    else:
        candidate = Path(raw).expanduser()
        if candidate.is_file():
            return candidate
        filename = candidate.name
        if str(candidate) != filename:
            looked.append(str(candidate))
        info = next((i for i in KNOWN_CHECKPOINTS.values() if i.filename == filename), None)
    dirs = [Path(d).expanduser() for d in search_dirs] if search_dirs is not None else default_search_dirs()
    for d in dirs:
        p = d / filename
        if p.is_file():
            return p
    looked += [str(d) for d in dirs]
    where = f"get it from {info.url} (BlindDPS README)" if info is not None else "check the path"
    msg = (
        f"checkpoint {filename} not found (looked in: {', '.join(looked) or 'nowhere'}); "
        f"put it in ~/.cache/blinddps/models or ./models, or set {MODELS_ENV} to its folder; {where}"
    )
    raise CheckpointNotFoundError(msg.replace("\r", " ").replace("\n", " "))


def list_shipped() -> list[Path]:
    """The ``*.safetensors`` in :data:`SHIPPED_DIR` that have a YAML config beside them."""
    if not SHIPPED_DIR.is_dir():
        return []
    return sorted(p for p in SHIPPED_DIR.glob("*.safetensors") if p.with_suffix(".yaml").is_file())
