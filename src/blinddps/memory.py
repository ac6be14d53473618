"""How much memory a solve needs, checked against what the machine has before it starts.

A solve keeps each diffusion network's activations for the guidance gradient, for
every batch entry (measurement × posterior sample), at the size of its variable: its
peak grows linearly with pixels × samples × batch. Measured (peak RSS over the
process's own after ``import torch``; torch 2.13 CPU, fp32, the ``motion_deblur``
preset with the shipped 64-channel, pixel-unshuffle-4 photo prior, 'valid' boundary):

============  =======  ==============  ==========
image         samples  padded pixels   peak (MB)
============  =======  ==============  ==========
64×64         1        96×96           126
128×128       1        160×160         148
128×128       4        4 × 160×160     268
256×256       1        288×288         231
192×256       2        2 × 224×288     302
512×512       1        544×544         553
768×768       1        800×800         1037
============  =======  ==============  ==========

— about 150 MB plus 1.5 kB per padded pixel and batch entry (the fit's 1.41 kB,
rounded up). Other networks are scaled by their full-resolution width
(``num_channels / pixel_unshuffle²``, 4 for the calibrated prior); that is a rougher
guess, so the check only refuses what the estimate says cannot fit, and
``BLINDDPS_MEMORY_CHECK=0`` turns it off.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["InsufficientMemoryError", "estimate_bytes", "available_bytes", "check_memory", "MEMORY_CHECK_ENV"]

MEMORY_CHECK_ENV = "BLINDDPS_MEMORY_CHECK"
BASE_BYTES = 150 * 2**20
BYTES_PER_PIXEL = 1536  # per padded pixel and batch entry, for the calibrated width
CALIBRATED_WIDTH = 4.0  # num_channels / pixel_unshuffle**2 of the shipped photo prior (64 / 4**2)


class InsufficientMemoryError(MemoryError):
    """A solve that cannot fit in the free memory (one-line message with what to do)."""


def _width(model: Any) -> float:
    cfg = getattr(model, "config", None) or {}
    channels = cfg.get("num_channels") or getattr(getattr(model, "net", model), "model_channels", None)
    if not channels:
        return CALIBRATED_WIDTH
    factor = int(cfg.get("pixel_unshuffle") or 1)
    return float(channels) / factor**2


def estimate_bytes(networks: dict[str, tuple[Any, int]], entries: int) -> int:
    """Peak bytes of a solve: ``networks`` maps each variable with a diffusion network
    to ``(network, pixels of its variable)``; ``entries`` = measurements × samples."""
    per_entry = sum(BYTES_PER_PIXEL * _width(m) / CALIBRATED_WIDTH * px for m, px in networks.values())
    return int(BASE_BYTES + per_entry * entries)


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_room() -> int | None:
    """What the process's cgroup limit leaves (v2, then v1), if there is one."""
    for limit, usage in (("memory.max", "memory.current"), ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        lim, use = _read_int(Path("/sys/fs/cgroup") / limit), _read_int(Path("/sys/fs/cgroup") / usage)
        if lim is not None and use is not None and lim < 2**60:
            return max(lim - use, 0)
    return None


def available_bytes(device: Any = "cpu") -> int | None:
    """Free memory for a new allocation on ``device``: for CUDA what the driver reports
    free plus torch's cached blocks; for the CPU ``MemAvailable`` (``/proc/meminfo``),
    capped by a cgroup limit. None when unknown (other systems)."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type != "cpu":
        return None
    avail = None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        return None
    room = _cgroup_room()
    return avail if room is None or avail is None else min(avail, room)


def _gb(n: float) -> str:
    return f"{n / 2**30:.1f} GB"


def check_memory(networks: dict[str, tuple[Any, int]], batch: int, samples: int, image_hw: tuple[int, int],
                 device: Any = "cpu", available: int | None = None) -> int:
    """Raise :class:`InsufficientMemoryError` when :func:`estimate_bytes` exceeds the free
    memory, with what would fit (fewer samples, a smaller batch, a downscaled image);
    returns the estimate. Skipped (returns 0) when ``BLINDDPS_MEMORY_CHECK=0``."""
    if os.environ.get(MEMORY_CHECK_ENV, "1").strip() in ("0", "false", "no", "off"):
        return 0
    need = estimate_bytes(networks, batch * samples)
    room = available if available is not None else available_bytes(device)
    if room is None or need <= room:
        return need
    tips = []
    if samples > 1 and estimate_bytes(networks, batch) <= room:
        tips.append("fewer posterior samples (--samples 1 / num_samples=1)")
    if batch > 1 and estimate_bytes(networks, samples) <= room:
        tips.append("a smaller batch (--batch-size 1)")
    per_entry = max(need - BASE_BYTES, 1) / (batch * samples)
    fit = (room - BASE_BYTES) / per_entry if room > BASE_BYTES else 0.0  # entries of this size that fit
    scale = (fit / samples) ** 0.5 if fit > 0 else 0.0  # one image of `samples` samples, downscaled
    if 0 < scale < 1:
        h, w = image_hw
        tips.append(f"downscaling the image to about {int(w * scale)}x{int(h * scale)}")
    tip = "; try " + " or ".join(tips) if tips else ""
    raise InsufficientMemoryError(
        f"this solve needs about {_gb(need)} of memory ({batch} image(s) of {image_hw[0]}x{image_hw[1]} x {samples} "
        f"sample(s)) but {_gb(room)} is free on {device}{tip} (the estimate can be skipped with "
        f"{MEMORY_CHECK_ENV}=0)"
    )
