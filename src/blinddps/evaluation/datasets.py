"""Built-in evaluation images: photographs that ship inside Python packages (and the
shared FFHQ samples when present), or any folder of images.

None of these are used to train the project's priors (see docs/architecture.md).

* scikit-image's sample data: the image files that ship in ``skimage/data`` are read
  directly with Pillow; ``skimage.data.<name>()`` is not called, because it needs the
  optional ``pooch`` package even for the bundled files (and downloads the others).
  Only photographs of natural scenes are listed; grayscale ones are replicated to RGB.
* ``ffhq``: 256x256 FFHQ face samples in ``shared/data/ffhq_samples/*.png`` beside the
  repository (RGBA; the alpha channel is dropped), when that folder exists.
* any folder: every ``*.png``, ``*.jpg``, ``*.jpeg``, ``*.bmp``, ``*.tif``, ``*.tiff``,
  ``*.webp`` in it (not recursive), sorted by name.

Every image is centre-cropped to a square, resized to ``size`` (Pillow's antialiased
Lanczos) and returned as a float32 tensor ``(3, size, size)`` in [-1, 1].
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = [
    "EvalImage",
    "SKIMAGE_PHOTOS",
    "IMAGE_SETS",
    "load_images",
    "available_images",
    "ffhq_dir",
    "load_image_file",
    "to_square",
]

# Photographs among scikit-image's bundled files (name -> file in skimage/data).
# Left out: drawings/graphics (logo, colorwheel, horse, text, page, phantom), the
# already motion-blurred clock_motion, microscopy and medical images, textures
# (brick, grass, gravel) and the astronomical image.
SKIMAGE_PHOTOS: dict[str, str] = {
    "astronaut": "astronaut.png",
    "coffee": "coffee.png",
    "chelsea": "chelsea.png",
    "rocket": "rocket.jpg",
    "motorcycle": "motorcycle_left.png",
    "camera": "camera.png",
    "coins": "coins.png",
    "moon": "moon.png",
}
# Extra bundled files addressable by name (not in any default set).
SKIMAGE_OTHER: dict[str, str] = {
    "grass": "grass.png",
    "gravel": "gravel.png",
    "brick": "brick.png",
    "hubble": "hubble_deep_field.jpg",
    "retina": "retina.jpg",
    "ihc": "ihc.png",
}

# Named sets. "photos": the colour photographs first (the natural test set; the
# presets' guidance was chosen on it). "heldout": photographs no setting was tuned on —
# the Lai et al. 2016 sharp images and the FFHQ samples from the shared folder.
IMAGE_SETS: dict[str, list[str]] = {
    "photos": ["astronaut", "coffee", "chelsea", "rocket", "motorcycle", "camera"],
    "skimage": list(SKIMAGE_PHOTOS),
    "lai": ["lai_manmade_03", "lai_natural_03", "lai_people_02", "lai_saturated_03", "lai_text_05"],
    "heldout": ["lai_manmade_03", "lai_natural_03", "lai_people_02", "lai_saturated_03", "lai_text_05",
                "ffhq_00000", "ffhq_00001", "ffhq_00002"],
}

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
FFHQ_ENV = "BLINDDPS_FFHQ_SAMPLES"
_REPO = Path(__file__).resolve().parents[3]


@dataclass
class EvalImage:
    """One evaluation image: ``image`` (3, size, size) float32 in [-1, 1]."""

    name: str
    image: torch.Tensor
    source: str


# --------------------------------------------------------------------------- sources
def _skimage_dir() -> Path | None:
    try:
        import skimage
    except ImportError:  # pragma: no cover - scikit-image is a dependency
        return None
    return Path(skimage.__file__).resolve().parent / "data"


def ffhq_dir() -> Path | None:
    """The shared FFHQ sample folder, if present (``$BLINDDPS_FFHQ_SAMPLES`` first)."""
    cands = [os.environ.get(FFHQ_ENV, "")]
    cands += [str(_REPO.parent / "shared" / "data" / "ffhq_samples"),
              str(_REPO / "shared" / "data" / "ffhq_samples"),
              str(Path.cwd().parent / "shared" / "data" / "ffhq_samples")]
    for c in cands:
        if c and Path(c).is_dir() and any(Path(c).glob("*.png")):
            return Path(c)
    return None


def _folder_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def available_images() -> dict[str, Path]:
    """Every single image addressable by name: scikit-image photos (and the extra
    bundled files) whose file is present, and ``ffhq_NNNNN`` for the FFHQ samples."""
    out: dict[str, Path] = {}
    d = _skimage_dir()
    if d is not None:
        for name, fn in {**SKIMAGE_PHOTOS, **SKIMAGE_OTHER}.items():
            if (d / fn).is_file():
                out[name] = d / fn
    f = ffhq_dir()
    if f is not None:
        for p in sorted(f.glob("*.png")):
            out[f"ffhq_{p.stem}"] = p
    return out


# --------------------------------------------------------------------------- loading
def to_square(arr: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop an ``(H, W, 3)`` uint8/float image to a square and resize it to
    ``size`` (Lanczos, antialiased). Returns float32 ``(H, W, 3)`` in [0, 1]."""
    from PIL import Image

    a = np.asarray(arr)
    if a.dtype != np.uint8:
        a = np.clip(np.round(a.astype(np.float64) * (255.0 if a.max() <= 1.0 else 1.0)), 0, 255).astype(np.uint8)
    h, w = a.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    im = Image.fromarray(np.ascontiguousarray(a[top:top + s, left:left + s]))
    if s != size:
        im = im.resize((size, size), Image.Resampling.LANCZOS)
    return np.asarray(im, dtype=np.float32) / 255.0


def load_image_file(path: str | Path, size: int) -> torch.Tensor:
    """An image file as ``(3, size, size)`` float32 in [-1, 1]: alpha dropped,
    grayscale replicated to RGB, centre-cropped and resized."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I", "F"):
                a = np.asarray(im, dtype=np.float64)
                a = (a - a.min()) / max(a.max() - a.min(), 1e-12)
                a = np.repeat(a[..., None], 3, axis=-1)
            else:
                a = np.asarray(im.convert("RGB"))  # drops alpha, replicates gray
    except (OSError, UnidentifiedImageError) as exc:
        raise ValueError(f"cannot read image {path}: {exc}".splitlines()[0]) from None
    sq = to_square(a, size)
    return torch.from_numpy(np.ascontiguousarray(sq.transpose(2, 0, 1))) * 2.0 - 1.0


def _shared_arrays() -> dict[str, np.ndarray]:
    """Images held in the shared benchmark folder's arrays (the Lai sharp images)."""
    from .levin import lai_sharp_images

    return lai_sharp_images()


def _array_image(a: np.ndarray, size: int) -> torch.Tensor:
    sq = to_square(a[..., :3], size)
    return torch.from_numpy(np.ascontiguousarray(sq.transpose(2, 0, 1))) * 2.0 - 1.0


def _resolve(spec: str) -> list[tuple[str, Path | np.ndarray]]:
    """A name, set name, comma list or folder -> [(name, path)]."""
    spec = str(spec).strip()
    if not spec:
        raise ValueError("empty image specification")
    p = Path(spec).expanduser()
    if p.is_dir():
        files = _folder_files(p)
        if not files:
            raise ValueError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {p}")
        return [(f.stem, f) for f in files]
    if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES:
        return [(p.stem, p)]
    out: list[tuple[str, Path | np.ndarray]] = []
    parts = [s.strip() for s in spec.split(",") if s.strip()]
    avail: dict[str, Path | np.ndarray] = dict(available_images())
    if {n for part in parts for n in IMAGE_SETS.get(part, [part])} - set(avail):
        avail.update(_shared_arrays())  # read only when a name is not a file (the Lai images)
    for part in parts:
        if part in IMAGE_SETS:
            missing = [n for n in IMAGE_SETS[part] if n not in avail]
            if missing:
                raise ValueError(f"image set {part!r}: images not available offline: {', '.join(missing)}")
            out += [(n, avail[n]) for n in IMAGE_SETS[part]]
        elif part == "ffhq":
            f = ffhq_dir()
            if f is None:
                raise ValueError(f"no FFHQ samples found (looked for shared/data/ffhq_samples; set ${FFHQ_ENV})")
            out += [(f"ffhq_{q.stem}", q) for q in sorted(f.glob("*.png"))]
        elif part == "all":
            out += [(n, avail[n]) for n in IMAGE_SETS["photos"] if n in avail]
            f = ffhq_dir()
            if f is not None:
                out += [(f"ffhq_{q.stem}", q) for q in sorted(f.glob("*.png"))]
        elif part in avail:
            out.append((part, avail[part]))
        else:
            sets = ", ".join(sorted([*IMAGE_SETS, "ffhq", "all"]))
            raise ValueError(
                f"unknown images {part!r}: not a folder, an image file, a set ({sets}) "
                f"or a built-in image ({', '.join(sorted(avail))})"
            )
    return out


def load_images(spec: str | list | tuple | dict = "photos", size: int = 128,
                limit: int | None = None) -> list[EvalImage]:
    """Evaluation images as :class:`EvalImage` (3, size, size) in [-1, 1].

    ``spec``: a set name (``photos``: astronaut, coffee, chelsea, rocket, motorcycle,
    camera; ``skimage``: all listed scikit-image photographs; ``ffhq``: the shared
    FFHQ samples; ``all``: photos + ffhq), a built-in image name, a comma-separated
    list of these, a folder or image file; or a list of such strings; or a dict
    ``{name: tensor (3,H,W) or (1,3,H,W) in [-1, 1]}`` taken as is (no resizing).
    ``limit`` keeps the first ``limit`` images. Names must be unique.
    """
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 8:
        raise ValueError(f"size must be an int >= 8, got {size!r}")
    if limit is not None and (isinstance(limit, bool) or int(limit) < 1):
        raise ValueError(f"limit must be a positive int, got {limit!r}")
    items: list[EvalImage] = []
    if isinstance(spec, dict):
        for name, t in spec.items():
            t = torch.as_tensor(t, dtype=torch.float32)
            t = t[0] if t.dim() == 4 else t
            if t.dim() != 3:
                raise ValueError(f"image {name!r}: expected (C, H, W), got shape {tuple(t.shape)}")
            items.append(EvalImage(str(name), t.contiguous(), "tensor"))
    else:
        specs = [spec] if isinstance(spec, (str, os.PathLike)) else list(spec)
        pairs: list[tuple[str, Path | np.ndarray]] = []
        for s in specs:
            pairs += _resolve(str(s))
        if limit is not None:
            pairs = pairs[: int(limit)]
        items = [EvalImage(n, load_image_file(p, int(size)), str(p)) if isinstance(p, Path) else
                 EvalImage(n, _array_image(p, int(size)), "shared/benchmarks/lai.npz") for n, p in pairs]
    if limit is not None:
        items = items[: int(limit)]
    names = [it.name for it in items]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"duplicate image names: {', '.join(dup)}")
    if not items:
        raise ValueError("no evaluation images")
    return items
