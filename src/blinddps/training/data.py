"""Infinite, seeded sources of training batches in diffusion space (values in [-1, 1]).

Every source has ``channels``, ``height``, ``width``, a ``generator`` (a
``torch.Generator``: all its randomness comes from it, so a source is reproducible
and its state can be checkpointed) and ``sample(n) -> (n, C, H, W)`` float32 tensor.
Iterating a source with ``source.batches(n)`` never ends.

* :class:`KernelSource`: blur kernels from :mod:`blinddps.simulate.kernels`, mapped by
  :class:`~blinddps.transforms.KernelSimplex` (peak → 1, then [0, 1] → [-1, 1]);
* :class:`TiltSource`: turbulence tilt maps from :mod:`blinddps.simulate.tilt`, mapped
  by ``Scale(2.5)`` (±2.5 px → ±1);
* :class:`ImageFolderSource`: random crops of the photographs in a folder, over scales,
  with random flips.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from ..transforms import KernelSimplex, Scale

__all__ = [
    "BatchSource",
    "KernelSource",
    "TiltSource",
    "ImageFolderSource",
    "DataError",
    "IMAGE_SUFFIXES",
    "build_source",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


class DataError(ValueError):
    """Training data cannot be read. The message is one line."""


def _generator(generator: torch.Generator | int | None) -> torch.Generator:
    if isinstance(generator, torch.Generator):
        return generator
    g = torch.Generator()
    if generator is None:
        g.seed()
    else:
        g.manual_seed(int(generator))
    return g


class BatchSource:
    """Base class: an endless, seeded stream of ``(n, C, H, W)`` batches in [-1, 1]."""

    channels: int = 1
    height: int = 0
    width: int = 0
    generator: torch.Generator

    def sample(self, n: int) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def batches(self, n: int) -> Iterator[torch.Tensor]:
        while True:
            yield self.sample(n)

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    def describe(self) -> dict[str, Any]:
        """Plain values describing the data (stored in the exported model's YAML)."""
        return {"source": type(self).__name__, "shape": list(self.shape)}


class KernelSource(BatchSource):
    """Blur kernels ``(n, 1, size, size)`` in diffusion space.

    ``kind='motion'``: random-trajectory kernels at ``intensity`` (a float or a (lo, hi)
    range); ``kind='gaussian'``: Gaussian kernels of ``std`` (float or range) and
    ``anisotropy``; ``kind='mixture'``: :func:`blinddps.simulate.mixture.mixed_kernels`
    (trajectories of every intensity with speed and thickness variation, and Gaussians).
    """

    def __init__(
        self,
        size: int = 64,
        kind: str = "motion",
        intensity: float | Sequence[float] = 0.5,
        std: float | Sequence[float] = 3.0,
        anisotropy: float | Sequence[float] = 1.0,
        generator: torch.Generator | int | None = None,
    ) -> None:
        if kind not in ("motion", "gaussian", "mixture"):
            raise ValueError(f"kernel kind must be 'motion', 'gaussian' or 'mixture', got {kind!r}")
        self.size = self.height = self.width = int(size)
        self.channels = 1
        self.kind = kind
        self.intensity = tuple(intensity) if isinstance(intensity, (list, tuple)) else float(intensity)
        self.std = tuple(std) if isinstance(std, (list, tuple)) else float(std)
        self.anisotropy = tuple(anisotropy) if isinstance(anisotropy, (list, tuple)) else float(anisotropy)
        self.generator = _generator(generator)
        self.transform = KernelSimplex()

    def physical(self, n: int) -> torch.Tensor:
        """``n`` kernels summing to 1 (the operator's form)."""
        from ..simulate.kernels import gaussian_kernels, motion_kernels

        if self.kind == "motion":
            return motion_kernels(n, self.size, self.intensity, self.generator)
        if self.kind == "mixture":
            from ..simulate.mixture import mixed_kernels

            return mixed_kernels(n, self.size, self.generator)
        return gaussian_kernels(n, self.size, self.std, self.anisotropy, generator=self.generator)

    def sample(self, n: int) -> torch.Tensor:
        return self.transform.from_physical(self.physical(n)).float()

    def describe(self) -> dict[str, Any]:
        d = {**super().describe(), "kind": self.kind, "size": self.size}
        if self.kind == "motion":
            d["intensity"] = list(self.intensity) if isinstance(self.intensity, tuple) else self.intensity
        elif self.kind == "gaussian":
            d["std"] = list(self.std) if isinstance(self.std, tuple) else self.std
            d["anisotropy"] = list(self.anisotropy) if isinstance(self.anisotropy, tuple) else self.anisotropy
        d["transform"] = "kernel_simplex"
        return d


class TiltSource(BatchSource):
    """Turbulence tilt maps ``(n, 2, height, width)`` (pixels) divided by ``scale``
    (2.5: the simulator's clip) so that they lie in [-1, 1].

    ``map_size`` (an int or ``(H, W)``): draw maps of that size and keep a random
    ``height × width`` window of each. The tilt statistics depend on the map size (a
    fixed number of 64×64 patches is spread over the map), so to learn the paper's
    256×256 statistics with a small fully convolutional prior use ``map_size=256``.
    Other keywords go to :func:`blinddps.simulate.tilt.tilt_maps` (``num_patches``,
    ``method='fast'`` …).
    """

    def __init__(
        self,
        height: int = 64,
        width: int | None = None,
        scale: float = 2.5,
        map_size: int | Sequence[int] | None = None,
        generator: torch.Generator | int | None = None,
        **tilt_options: Any,
    ) -> None:
        self.height = int(height)
        self.width = int(width if width is not None else height)
        self.channels = 2
        self.scale = float(scale)
        if map_size is None:
            self.map_size = (self.height, self.width)
        elif isinstance(map_size, (int, float)):
            self.map_size = (int(map_size), int(map_size))
        else:
            self.map_size = tuple(int(v) for v in map_size)  # type: ignore[assignment]
        if self.map_size[0] < self.height or self.map_size[1] < self.width:
            raise ValueError(f"map_size {self.map_size} is smaller than the crop {self.height}x{self.width}")
        self.tilt_options = dict(tilt_options)
        self.generator = _generator(generator)
        self.transform = Scale(self.scale)

    def physical(self, n: int) -> torch.Tensor:
        from ..simulate.tilt import tilt_maps

        mh, mw = self.map_size
        maps = tilt_maps(n, mh, mw, generator=self.generator, **self.tilt_options)
        if (mh, mw) == (self.height, self.width):
            return maps
        ys = torch.randint(0, mh - self.height + 1, (n,), generator=self.generator).tolist()
        xs = torch.randint(0, mw - self.width + 1, (n,), generator=self.generator).tolist()
        return torch.stack([m[:, y : y + self.height, x : x + self.width] for m, y, x in zip(maps, ys, xs)])

    def sample(self, n: int) -> torch.Tensor:
        return self.transform.from_physical(self.physical(n)).float().clamp(-1, 1)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "scale": self.scale, "map_size": list(self.map_size), **self.tilt_options,
                "transform": {"name": "scale", "scale": self.scale}}


class ImageFolderSource(BatchSource):
    """Random ``crop × crop`` RGB (or grayscale) crops of the photographs in ``folder``.

    Per sample: a uniformly chosen image, a downscale factor ``s`` drawn log-uniformly
    from ``scales = (lo, hi)`` (the crop covers ``crop / s`` original pixels, resampled
    with an antialiasing filter), a uniform position, and flips (``flips``:
    ``'horizontal'`` (default), ``'both'`` or ``'none'``). Images smaller than a crop at
    the drawn scale are upscaled to fit. Decoded images are cached in memory, already
    reduced to the largest scale needed, as 8-bit Pillow images.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        crop: int = 64,
        scales: float | Sequence[float] = (0.1, 0.5),
        flips: str | bool = "horizontal",
        grayscale: bool = False,
        generator: torch.Generator | int | None = None,
        recursive: bool = True,
    ) -> None:
        from PIL import Image

        self.folder = Path(folder).expanduser()
        if not self.folder.exists():
            raise DataError(f"image folder {self.folder} does not exist (for the default photos run `make photos`)")
        if not self.folder.is_dir():
            raise DataError(f"{self.folder} is not a folder")
        pattern = "**/*" if recursive else "*"
        files = sorted(p for p in self.folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(
                f"no PNG or JPEG images in {self.folder} (for the default photos run `make photos`)"
            )
        self.files = files
        self.crop = self.height = self.width = int(crop)
        if isinstance(scales, (int, float)):
            scales = (float(scales), float(scales))
        lo, hi = (float(s) for s in scales)
        if not (0 < lo <= hi):
            raise ValueError(f"scales must be 0 < lo <= hi, got {scales!r}")
        self.scales = (lo, hi)
        if flips is True:
            flips = "horizontal"
        elif flips is False or flips is None:
            flips = "none"
        if flips not in ("horizontal", "both", "none"):
            raise ValueError(f"flips must be 'horizontal', 'both' or 'none', got {flips!r}")
        self.flips = flips
        self.grayscale = bool(grayscale)
        self.channels = 1 if grayscale else 3
        self.generator = _generator(generator)
        mode = "L" if grayscale else "RGB"
        keep = min(1.0, hi * 1.25)  # cache at the largest scale a crop can use (+ margin)
        self.images: list[tuple[Any, float]] = []  # (decoded image, its scale vs the file)
        for p in files:
            try:
                with Image.open(p) as f:
                    im = f.convert(mode)
            except Exception as exc:  # noqa: BLE001 - one clear line per unreadable file
                raise DataError(f"cannot read image {p}: {exc}") from None
            factor = 1.0
            w, h = im.size
            if keep < 1.0 and min(w, h) * keep >= self.crop:
                im = im.resize((max(1, round(w * keep)), max(1, round(h * keep))), Image.Resampling.LANCZOS)
                factor = keep
            self.images.append((im, factor))

    def _rand(self) -> float:
        return float(torch.rand((), generator=self.generator))

    def sample(self, n: int) -> torch.Tensor:
        from PIL import Image

        lo, hi = self.scales
        out = np.empty((n, self.crop, self.crop, self.channels), dtype=np.uint8)
        for i in range(n):
            im, cached = self.images[int(torch.randint(len(self.images), (), generator=self.generator))]
            s = math.exp(math.log(lo) + self._rand() * (math.log(hi) - math.log(lo)))
            side = self.crop / s * cached  # crop side in cached-image pixels
            w, h = im.size
            side = min(side, w, h)
            x0 = self._rand() * (w - side)
            y0 = self._rand() * (h - side)
            patch = im.resize((self.crop, self.crop), Image.Resampling.LANCZOS, box=(x0, y0, x0 + side, y0 + side))
            if self.flips in ("horizontal", "both") and self._rand() < 0.5:
                patch = patch.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            if self.flips == "both" and self._rand() < 0.5:
                patch = patch.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
            a = np.asarray(patch, dtype=np.uint8)
            out[i] = a[..., None] if a.ndim == 2 else a
        x = torch.from_numpy(out).permute(0, 3, 1, 2).float()
        return (x / 127.5 - 1.0).contiguous()

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "folder": str(self.folder),
            "images": len(self.files),
            "crop": self.crop,
            "scales": list(self.scales),
            "flips": self.flips,
            "transform": "identity",
        }


def build_source(task: str, options: dict[str, Any], generator: torch.Generator | int | None = None,
                 data_folder: str | os.PathLike | None = None) -> BatchSource:
    """The source for a training ``task`` (``'kernel'``, ``'tilt'`` or ``'image'``) from
    the ``data:`` section of a training config; ``data_folder`` overrides ``folder``."""
    opts = dict(options or {})
    if task == "kernel":
        return KernelSource(generator=generator, **opts)
    if task == "tilt":
        return TiltSource(generator=generator, **opts)
    if task == "image":
        if data_folder is not None:
            opts["folder"] = data_folder
        if "folder" not in opts:
            raise DataError("image training needs a folder of photos: set data.folder in the config or pass --data")
        return ImageFolderSource(generator=generator, **opts)
    raise ValueError(f"unknown training task {task!r}; choose 'kernel', 'tilt' or 'image'")
