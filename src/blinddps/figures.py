"""Pictures of results, drawn with Pillow only (no matplotlib).

* :func:`kernel_image` — a blur kernel, min-max scaled to grey, enlarged by an integer
  factor with nearest-neighbour sampling (pixels stay visible);
* :func:`tilt_image` — a tilt (displacement) field as a colour wheel: hue is the
  direction, brightness the length relative to ``max_px``; a legend wheel and the
  scale are drawn in a margin on the right;
* :func:`std_image` — a per-pixel posterior standard deviation map, grey, scaled to
  its maximum;
* :func:`comparison_image` — labelled panels side by side (input | restored | kernel …);
* ``save_*`` helpers write them as PNG atomically (:mod:`blinddps.io`). Kernel PNGs
  record their enlargement factor the way :func:`blinddps.simulate.save_kernel` does,
  so :func:`blinddps.simulate.load_kernel` reads them back at the original size.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from .io import save_pil_png

__all__ = [
    "to_pil",
    "kernel_image",
    "tilt_image",
    "tilt_wheel",
    "std_image",
    "comparison_image",
    "save_kernel_png",
    "save_tilt_png",
    "save_std_png",
    "save_comparison",
]

# the PNG text key simulate.save_kernel uses for its enlargement factor (load_kernel reads it)
_UPSCALE_KEY = "blinddps_upscale"
_BG = (255, 255, 255)
_FG = (0, 0, 0)


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def to_pil(image) -> Image.Image:
    """An image in [-1, 1] — ``(1, C, H, W)``, ``(C, H, W)`` or ``(H, W)`` with C = 1 or 3
    — as an 8-bit RGB Pillow image."""
    a = _np(image)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    if a.shape[0] == 1:
        a = np.repeat(a, 3, axis=0)
    if a.shape[0] != 3:
        raise ValueError(f"expected 1 or 3 channels, got shape {a.shape}")
    u = np.round((np.clip(a, -1, 1) + 1) * 127.5).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(u.transpose(1, 2, 0)), mode="RGB")


def _kernel2d(k) -> np.ndarray:
    a = np.squeeze(_np(k))
    if a.ndim != 2:
        raise ValueError(f"expected a single 2-D kernel, got shape {np.shape(k)}")
    return a


def kernel_image(kernel, size: int | None = 256) -> tuple[Image.Image, int]:
    """A kernel as a grey image (min-max scaled), enlarged by the integer factor that
    brings its longer side closest to ``size`` without exceeding it (at least 1).
    Returns the image and the factor."""
    a = _kernel2d(kernel)
    lo, hi = float(a.min()), float(a.max())
    g = np.zeros_like(a) if hi <= lo else (a - lo) / (hi - lo)
    u = np.round(g * 255).astype(np.uint8)
    factor = max(1, int(size) // max(a.shape)) if size else 1
    img = Image.fromarray(u, mode="L")
    if factor > 1:
        img = img.resize((a.shape[1] * factor, a.shape[0] * factor), Image.NEAREST)
    return img, factor


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (all in [0, 1]) → RGB uint8 ``H×W×3``."""
    i = np.floor(h * 6.0).astype(int) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = np.zeros(h.shape + (3,))
    for k, (r, g, b) in enumerate(choices):
        m = i == k
        rgb[m, 0], rgb[m, 1], rgb[m, 2] = r[m], g[m], b[m]
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def _tilt_colours(dx: np.ndarray, dy: np.ndarray, max_px: float) -> np.ndarray:
    mag = np.hypot(dx, dy)
    hue = (np.arctan2(dy, dx) / (2 * math.pi)) % 1.0
    val = np.clip(mag / max(max_px, 1e-12), 0, 1)
    return _hsv_to_rgb(hue, np.ones_like(hue), val)


def tilt_wheel(size: int = 64) -> Image.Image:
    """The colour key of :func:`tilt_image`: direction → hue, length → brightness
    (rows grow downwards, as image rows do)."""
    r = np.linspace(-1, 1, size)
    dx, dy = np.meshgrid(r, r)
    rgb = _tilt_colours(dx, dy, 1.0)
    rgb[np.hypot(dx, dy) > 1] = _BG
    return Image.fromarray(rgb, mode="RGB")


def _font(size: int = 14):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow without FreeType sizing
        return ImageFont.load_default()


def tilt_image(tilt, max_px: float | None = None, legend: bool = True) -> tuple[Image.Image, float]:
    """A tilt field ``(2, H, W)`` or ``(1, 2, H, W)`` (channel 0 horizontal, 1 vertical,
    pixels) as a colour picture the size of the field; with ``legend`` a margin on the
    right holds the colour wheel and the length that full brightness stands for
    (``max_px``, default the field's largest length). Returns the image and ``max_px``."""
    t = _np(tilt)
    if t.ndim == 4:
        t = t[0]
    if t.ndim != 3 or t.shape[0] != 2:
        raise ValueError(f"tilt must be (2, H, W), got shape {np.shape(tilt)}")
    mag = np.hypot(t[0], t[1])
    if max_px is None:
        max_px = float(mag.max()) if mag.size else 1.0
    max_px = max(float(max_px), 1e-6)
    field = Image.fromarray(_tilt_colours(t[0], t[1], max_px), mode="RGB")
    if not legend:
        return field, max_px
    H, W = t.shape[1:]
    wheel = max(32, min(96, H // 2))
    text = f"max {max_px:.2f} px"
    font = _font(12)
    tw = int(ImageDraw.Draw(field).textlength(text, font=font)) + 8
    margin = max(wheel + 8, tw)
    canvas = Image.new("RGB", (W + margin, max(H, wheel + 24)), _BG)
    canvas.paste(field, (0, 0))
    canvas.paste(tilt_wheel(wheel), (W + (margin - wheel) // 2, 4))
    ImageDraw.Draw(canvas).text((W + 4, wheel + 8), text, fill=_FG, font=font)
    return canvas, max_px


def std_image(std) -> tuple[Image.Image, float]:
    """A standard-deviation map ``(C, H, W)``/``(1, C, H, W)``/``(H, W)`` as grey
    (channel mean, 0 = black, the map's maximum = white). Returns the image and the
    value white stands for."""
    a = _np(std)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3:
        a = a.mean(0)
    top = float(a.max()) if a.size else 0.0
    g = np.zeros_like(a) if top <= 0 else a / top
    return Image.fromarray(np.round(np.clip(g, 0, 1) * 255).astype(np.uint8), mode="L"), top


def _to_height(img: Image.Image, height: int) -> Image.Image:
    """Scale to ``height`` keeping the aspect ratio: nearest-neighbour when enlarging
    (kernels and small images keep visible pixels), Lanczos when shrinking."""
    if img.size[1] == height:
        return img
    width = max(1, round(img.size[0] * height / img.size[1]))
    return img.resize((width, height), Image.NEAREST if height > img.size[1] else Image.LANCZOS)


def comparison_image(
    panels: Sequence[tuple[str, Image.Image]],
    max_side: int | None = 512,
    min_height: int = 192,
    title: str | None = None,
) -> Image.Image:
    """Labelled panels side by side on white, all shown at one height: the first
    panel's, shrunk to fit ``max_side`` or enlarged by an integer factor to at least
    ``min_height``. Enlarging is nearest-neighbour (kernel pixels stay visible)."""
    if not panels:
        raise ValueError("no panels")
    font = _font(14)
    w0, h0 = panels[0][1].size
    if max_side and max(w0, h0) > max_side:
        height = max(1, round(h0 * max_side / max(w0, h0)))
    elif h0 < min_height:
        height = h0 * math.ceil(min_height / h0)
    else:
        height = h0
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    cols = []
    for label, img in panels:
        pic = _to_height(img.convert("RGB"), height)
        width = max(pic.size[0], int(measure.textlength(label, font=font)) + 4)
        cols.append((label, pic, width))
    pad, label_h = 8, 22
    title_h = label_h if title else 0
    W = sum(c[2] for c in cols) + pad * (len(cols) + 1)
    if title:
        W = max(W, int(measure.textlength(title, font=font)) + 2 * pad)
    H = height + label_h + title_h + pad
    canvas = Image.new("RGB", (W, H), _BG)
    draw = ImageDraw.Draw(canvas)
    if title:
        draw.text((pad, pad // 2), title, fill=_FG, font=font)
    x = pad
    for label, pic, width in cols:
        draw.text((x, pad // 2 + title_h), label, fill=_FG, font=font)
        canvas.paste(pic, (x, title_h + label_h + pad // 2))
        x += width + pad
    return canvas


# ----------------------------------------------------------------------------- saving
def save_kernel_png(path: str | os.PathLike, kernel, size: int | None = 256) -> Path:
    """``kernel.png``: :func:`kernel_image`, with the factor recorded for ``load_kernel``."""
    img, factor = kernel_image(kernel, size)
    info = PngImagePlugin.PngInfo()
    info.add_text(_UPSCALE_KEY, str(factor))
    return save_pil_png(path, img, pnginfo=info)


def save_tilt_png(path: str | os.PathLike, tilt, max_px: float | None = None) -> tuple[Path, float]:
    img, m = tilt_image(tilt, max_px)
    info = PngImagePlugin.PngInfo()
    info.add_text("blinddps_tilt_max_px", f"{m:.6g}")
    return save_pil_png(path, img, pnginfo=info), m


def save_std_png(path: str | os.PathLike, std) -> tuple[Path, float]:
    img, top = std_image(std)
    info = PngImagePlugin.PngInfo()
    info.add_text("blinddps_std_white", f"{top:.6g}")
    return save_pil_png(path, img, pnginfo=info), top


def save_comparison(path: str | os.PathLike, panels: Sequence[tuple[str, Image.Image]], **kw) -> Path:
    return save_pil_png(path, comparison_image(panels, **kw))
