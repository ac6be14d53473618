"""Reading a user's images into the library's convention and writing results back.

:func:`read_image` returns a float32 tensor ``(1, C, H, W)`` in [-1, 1] (C = 1 for
greyscale, 3 for colour) and an :class:`ImageInfo` that records how the file stored
its pixels; :func:`write_image` writes a result back **with the same size, bit depth and
mode** (an alpha channel is kept aside on reading and written back unchanged).

Supported inputs
----------------
* PNG (8- and 16-bit greyscale, grey+alpha, RGB, RGBA; palette images), JPEG, BMP,
  WebP, GIF (first frame) via Pillow. 16-bit colour PNGs, which Pillow reduces to
  8 bits, are decoded here (non-interlaced only). EXIF orientation is applied, so the
  picture is processed (and written) the way viewers show it.
* TIFF via ``tifffile`` (8/16-bit integer and 32/64-bit float, greyscale or colour,
  first page), falling back to Pillow for what tifffile cannot decode.
* ``.npy``: a float or integer array ``H×W`` or ``H×W×C`` (C = 1, 2, 3 or 4; the last
  channel of C = 2 or 4 is alpha). Value range, in this order:
  ``uint8`` → [0, 255], ``uint16`` → [0, 65535]; values inside [0, 1] → [0, 1] (the
  default assumption); values inside [-1, 1] with negatives → [-1, 1]; anything else
  (values exceed) → the array's own [min, max]. The result is mapped back to the same
  range and dtype (shape ``H×W`` stays ``H×W``).

Modes that cannot hold a restored picture faithfully are written in the nearest one:
palette (``P``) → RGB or RGBA, bilevel (``1``) → L, CMYK/YCbCr/LAB → RGB;
``ImageInfo.notes`` says so. Float TIFFs are written back as float32 TIFFs.

Every file is written atomically: to a temporary name in the same folder, then
``os.replace``; an interrupted write never leaves a complete-looking file.
"""
from __future__ import annotations

import io as _io
import json
import os
import struct
import sys
import tempfile
import zlib
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "ImageReadError",
    "ImageInfo",
    "IMAGE_SUFFIXES",
    "read_image",
    "write_image",
    "output_suffix",
    "list_images",
    "atomic_path",
    "atomic_write_bytes",
    "save_npy",
    "save_json",
    "save_text",
    "save_pil_png",
    "to_uint",
    "encode_png",
    "decode_png",
]

#: File suffixes taken as images when a folder is given.
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".npy")

_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_NPY_SIG = b"\x93NUMPY"
_TIFF_SIGS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class ImageReadError(ValueError):
    """An input image is missing, unreadable or corrupt. The message is one line."""


#: Environment variable that sets the largest image (in pixels) any decoder here reads.
MAX_PIXELS_ENV = "BLINDDPS_MAX_PIXELS"


def max_pixels() -> int | None:
    """The largest image, in pixels, that is read: ``BLINDDPS_MAX_PIXELS`` if set, else
    Pillow's ``Image.MAX_IMAGE_PIXELS`` (89 million by default; None = no limit). Every
    decoder checks it from the file's header, before decoding anything: Pillow's own
    formats, our 16-bit PNG decoder, TIFF and ``.npy`` (a small compressed file can
    declare an image of many gigabytes)."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if raw:
        try:
            return max(int(raw), 1)
        except ValueError:
            raise ImageReadError(f"{MAX_PIXELS_ENV}={raw!r} is not an integer") from None
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else None


def check_pixels(path: str | os.PathLike, height: int, width: int) -> None:
    """Refuse (one line) an image larger than :func:`max_pixels`, before it is decoded."""
    limit = max_pixels()
    if limit is not None and int(height) * int(width) > limit:
        raise ImageReadError(
            f"{path}: the image declares {width}x{height} pixels ({int(height) * int(width) / 1e6:.0f} MP), more than "
            f"the limit of {limit / 1e6:.0f} MP (a decompression bomb?); set {MAX_PIXELS_ENV} to allow larger images"
        )


def _one_line(text: object) -> str:
    s = " ".join(str(text).split())
    return s if len(s) <= 300 else s[:297] + "..."


# ----------------------------------------------------------------------------- info
@dataclass
class ImageInfo:
    """How an input stored its pixels, so a result can be written back the same way.

    ``mode``: Pillow-style mode of the written file (``L``, ``LA``, ``RGB``, ``RGBA``,
    ``I;16`` for 16-bit grey, ``RGB;16``/``RGBA;16``/``LA;16`` for 16-bit colour, or
    ``array`` for ``.npy``/float TIFF). ``bit_depth``: bits per sample (8, 16, or 32/64
    for floats). ``value_range``: the stored values that map to -1 and +1.
    """

    path: str
    format: str
    mode: str
    bit_depth: int
    channels: int
    height: int
    width: int
    dtype: str
    value_range: tuple[float, float]
    has_alpha: bool = False
    alpha: np.ndarray | None = field(default=None, repr=False)
    squeeze: bool = False  # .npy stored as H×W
    icc_profile: bytes | None = field(default=None, repr=False)
    notes: list[str] = field(default_factory=list)

    @property
    def size(self) -> tuple[int, int]:
        return (self.height, self.width)

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (no pixel data)."""
        return {
            "path": self.path,
            "format": self.format,
            "mode": self.mode,
            "bit_depth": self.bit_depth,
            "channels": self.channels,
            "alpha": self.has_alpha,
            "height": self.height,
            "width": self.width,
            "dtype": self.dtype,
            "value_range": [float(self.value_range[0]), float(self.value_range[1])],
            "icc_profile": self.icc_profile is not None,
            "notes": list(self.notes),
        }


def output_suffix(info: ImageInfo) -> str:
    """``.npy`` for ``.npy`` inputs, ``.tif`` for float TIFFs, else ``.png``."""
    if info.format == "NPY":
        return ".npy"
    if info.format == "TIFF" and info.mode == "array":
        return ".tif"
    return ".png"


# ----------------------------------------------------------------------------- atomic writes
def _umask() -> int:
    old = os.umask(0o022)
    os.umask(old)
    return old


_UMASK = _umask()


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``
    (``os.replace``, atomic on one file system), on any exception — Ctrl-C included —
    it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        if os.environ.get("BLINDDPS_TEST_KILL_AT"):  # fault injection (blinddps.outputs.fault_point)
            from .outputs import fault_point

            fault_point(f"part:{path.name}")
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
    return Path(path)


def _write_with(path: str | os.PathLike, writer: Callable[[Any], None]) -> Path:
    buf = _io.BytesIO()
    writer(buf)
    return atomic_write_bytes(path, buf.getvalue())


def save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` atomically (no pickles)."""
    return _write_with(path, lambda f: np.save(f, np.asarray(array), allow_pickle=False))


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def save_pil_png(path: str | os.PathLike, image, **params) -> Path:
    """Save a Pillow image as PNG atomically."""
    return _write_with(path, lambda f: image.save(f, format="PNG", **params))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.generic,)):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    torch = sys.modules.get("torch")  # (imported by whoever made a tensor)
    if torch is not None and isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, Path) or (torch is not None and isinstance(obj, (torch.device, torch.dtype))):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return repr(obj)


# ----------------------------------------------------------------------------- PNG codec
def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


_COLOR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # channels -> PNG colour type
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # PNG colour type -> samples per pixel


def encode_png(arr: np.ndarray, icc_profile: bytes | None = None, level: int = 6) -> bytes:
    """PNG bytes of an ``H×W`` or ``H×W×C`` (C = 1..4) ``uint8`` or ``uint16`` array.

    Pillow cannot write 16-bit colour PNGs; this small encoder writes any of them
    (non-interlaced, 'Up' filter)."""
    a = np.asarray(arr)
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in _COLOR_TYPES or a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"encode_png needs H×W×C (C=1..4) uint8/uint16, got {a.shape} {a.dtype}")
    h, w, c = a.shape
    depth = 16 if a.dtype == np.uint16 else 8
    rows = np.ascontiguousarray(a.astype(">u2") if depth == 16 else a).view(np.uint8).reshape(h, -1)
    filtered = np.empty((h, rows.shape[1] + 1), dtype=np.uint8)
    filtered[:, 0] = 2  # Up
    filtered[0, 0] = 0
    filtered[0, 1:] = rows[0]
    filtered[1:, 1:] = rows[1:] - rows[:-1]  # uint8 arithmetic wraps mod 256
    out = [_PNG_SIG, _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, _COLOR_TYPES[c], 0, 0, 0))]
    if icc_profile:
        out.append(_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile)))
    out.append(_chunk(b"IDAT", zlib.compress(filtered.tobytes(), level)))
    out.append(_chunk(b"IEND", b""))
    return b"".join(out)


def _png_header(data: bytes) -> tuple[int, int, int, int, int]:
    """(width, height, bit depth, colour type, interlace) from PNG bytes."""
    if len(data) < 33 or data[:8] != _PNG_SIG or data[12:16] != b"IHDR":
        raise ValueError("not a PNG file")
    w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", data[16:29])
    return w, h, depth, ctype, interlace


def _unfilter_row(ftype: int, line: np.ndarray, prev: np.ndarray, bpp: int) -> np.ndarray:
    if ftype == 0:
        return line
    if ftype == 1:  # Sub: running sum mod 256 along pixels
        return np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
    if ftype == 2:  # Up
        return line + prev
    if ftype not in (3, 4):
        raise ValueError(f"bad PNG filter type {ftype}")
    cur = bytearray(line.tobytes())
    up = prev.tobytes()
    n = len(cur)
    if ftype == 3:  # Average
        for i in range(n):
            left = cur[i - bpp] if i >= bpp else 0
            cur[i] = (cur[i] + ((left + up[i]) >> 1)) & 0xFF
    else:  # Paeth
        for i in range(n):
            if i >= bpp:
                a, c = cur[i - bpp], up[i - bpp]
            else:
                a = c = 0
            b = up[i]
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if (pa <= pb and pa <= pc) else (b if pb <= pc else c)
            cur[i] = (cur[i] + pred) & 0xFF
    return np.frombuffer(bytes(cur), dtype=np.uint8)


def _unfilter_wavefront(filtered: np.ndarray, ftypes: np.ndarray) -> np.ndarray:
    """Undo the PNG filters of a whole image at once: ``filtered`` (H, W, bpp) bytes,
    ``ftypes`` each row's filter. A pixel needs only its left, upper and upper-left
    neighbours, so each anti-diagonal (r + c = d) is one vectorised step: H + W − 1
    numpy steps instead of a Python loop over every byte (Paeth at 0.4 µs a byte)."""
    h, w, bpp = filtered.shape
    out = np.zeros((h + 1, w + 1, bpp), dtype=np.int16)  # a zero row and column before the image
    kind = ftypes.astype(np.int64)
    for d in range(h + w - 1):
        r = np.arange(max(0, d - w + 1), min(h, d + 1))
        c = d - r
        t = kind[r][:, None]
        left, up, ul = out[r + 1, c], out[r, c + 1], out[r, c]
        p = left + up - ul
        pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - ul)
        paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, ul))
        pred = np.select([t == 1, t == 2, t == 3, t == 4], [left, up, (left + up) >> 1, paeth], 0)
        out[r + 1, c + 1] = (filtered[r, c].astype(np.int16) + pred) & 0xFF
    return out[1:, 1:].astype(np.uint8)


def decode_png(data: bytes) -> tuple[np.ndarray, bytes | None]:
    """Decode a non-interlaced 8- or 16-bit greyscale/colour PNG (no palette) to
    ``H×W×C`` ``uint8``/``uint16`` and its ICC profile (or None). Used for 16-bit colour
    PNGs, which Pillow reduces to 8 bits. Raises ``ValueError`` on corrupt data."""
    w, h, depth, ctype, interlace = _png_header(data)
    if depth not in (8, 16) or ctype not in (0, 2, 4, 6):
        raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {ctype})")
    if interlace:
        raise ValueError("interlaced 16-bit colour PNGs are not supported; save it without interlacing")
    limit = max_pixels()
    if w < 1 or h < 1 or (limit is not None and w * h > limit):
        raise ValueError(f"the PNG declares {w}x{h} pixels, outside 1..{limit} (a decompression bomb?); "
                         f"set {MAX_PIXELS_ENV} to allow larger images")
    pos, idat, icc = 8, [], None
    while pos + 8 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        tag = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        crc = data[pos + 8 + length : pos + 12 + length]
        if len(body) != length or len(crc) != 4:
            raise ValueError("truncated PNG data")
        if struct.unpack(">I", crc)[0] != zlib.crc32(tag + body) & 0xFFFFFFFF:
            raise ValueError(f"PNG chunk {tag.decode('latin-1')} fails its CRC check")
        if tag == b"IDAT":
            idat.append(body)
        elif tag == b"iCCP":
            with suppress(Exception):
                icc = zlib.decompress(body[body.index(b"\x00") + 2 :])
        elif tag == b"IEND":
            break
        pos += 12 + length
    if not idat:
        raise ValueError("PNG has no image data")
    c = _CHANNELS[ctype]
    bpp = c * depth // 8
    stride = w * bpp
    try:  # never more than the declared size: a stream that inflates further is not read on
        raw = zlib.decompressobj().decompress(b"".join(idat), h * (stride + 1))
    except zlib.error as exc:
        raise ValueError(f"corrupt PNG image data ({exc})") from None
    if len(raw) < h * (stride + 1):
        raise ValueError("truncated PNG image data")
    rows = np.frombuffer(raw, dtype=np.uint8, count=h * (stride + 1)).reshape(h, stride + 1)
    ftypes = rows[:, 0]
    if int(ftypes.max(initial=0)) > 4:
        raise ValueError(f"bad PNG filter type {int(ftypes.max())}")
    if bool(np.isin(ftypes, (3, 4)).any()):  # Average/Paeth: a byte loop per row would take minutes
        out = _unfilter_wavefront(rows[:, 1:].reshape(h, w, bpp), ftypes).reshape(h, stride)
    else:
        out = np.empty((h, stride), dtype=np.uint8)
        prev = np.zeros(stride, dtype=np.uint8)
        for r in range(h):
            prev = out[r] = _unfilter_row(int(rows[r, 0]), rows[r, 1:], prev, bpp)
    if depth == 16:
        arr = out.view(">u2").reshape(h, w, c).astype(np.uint16)
    else:
        arr = out.reshape(h, w, c)
    return arr, icc


# ----------------------------------------------------------------------------- reading
def _sniff(path: Path) -> tuple[str, bytes]:
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(_PNG_SIG):
        return "PNG", head
    if head.startswith(_NPY_SIG):
        return "NPY", head
    if any(head.startswith(s) for s in _TIFF_SIGS):
        return "TIFF", head
    return "OTHER", head


def _range_for(arr: np.ndarray) -> tuple[float, float]:
    if arr.dtype == np.uint8:
        return (0.0, 255.0)
    if arr.dtype == np.uint16:
        return (0.0, 65535.0)
    if arr.dtype == np.bool_:
        return (0.0, 1.0)
    lo, hi = float(np.min(arr)), float(np.max(arr))
    if lo >= 0.0 and hi <= 1.0:
        return (0.0, 1.0)
    if lo >= -1.0 and hi <= 1.0:
        return (-1.0, 1.0)
    if hi <= lo:
        return (lo, lo + 1.0)
    return (lo, hi)


def _npy_header(path: Path) -> None:
    """Check a ``.npy`` header before loading: a declared shape within the pixel limit
    and data the file really holds."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = reader(f)
            offset = f.tell()
    except Exception:  # noqa: BLE001 - np.load below reports a bad file in its words
        return
    if len(shape) >= 2:
        check_pixels(path, shape[0], shape[1])
    need = int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if dtype.itemsize and path.stat().st_size - offset < need:
        raise ImageReadError(f"cannot read {path}: truncated .npy (its header declares {need} bytes of data)")


def _read_npy(path: Path) -> tuple[np.ndarray, dict]:
    _npy_header(path)
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets one line
        raise ImageReadError(f"cannot read {path}: not a valid .npy array ({_one_line(exc)})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        raise ImageReadError(f"{path}: .npy must hold a real-valued array, got dtype {getattr(arr, 'dtype', '?')}")
    squeeze = arr.ndim == 2
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        hint = " (channels first? save it as H×W×C)" if arr.ndim == 3 and arr.shape[0] in (1, 2, 3, 4) else ""
        raise ImageReadError(f"{path}: .npy image must be H×W or H×W×C with C in 1..4, got shape {arr.shape}{hint}")
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ImageReadError(f"{path}: .npy image holds NaN or infinite values")
    bits = arr.dtype.itemsize * 8
    c = arr.shape[2]
    return arr, {"format": "NPY", "mode": "array", "bit_depth": bits, "squeeze": squeeze,
                 "alpha": c in (2, 4)}


def _read_tiff(path: Path) -> tuple[np.ndarray, dict] | None:
    """Via tifffile; None if tifffile cannot decode it (then Pillow tries)."""
    try:
        import tifffile
    except ImportError:  # pragma: no cover - tifffile comes with scikit-image
        return None
    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            photometric = getattr(page.photometric, "name", str(page.photometric))
            if photometric not in ("MINISBLACK", "RGB"):
                return None
            ih, iw = int(getattr(page, "imagelength", 0) or 0), int(getattr(page, "imagewidth", 0) or 0)
            if ih and iw:
                check_pixels(path, ih, iw)
            arr = page.asarray()
            axes = page.axes
            extrasamples = tuple(getattr(page, "extrasamples", ()) or ())
    except ImageReadError:
        raise
    except Exception:  # noqa: BLE001 - compression tifffile cannot decode, etc.
        return None
    if "S" in axes and axes.index("S") == 0 and arr.ndim == 3:
        arr = np.moveaxis(arr, 0, -1)
    squeeze = arr.ndim == 2
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        return None
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ImageReadError(f"{path}: TIFF holds NaN or infinite values")
        mode, bits = "array", arr.dtype.itemsize * 8
    elif arr.dtype in (np.uint8, np.uint16):
        bits = arr.dtype.itemsize * 8
        base = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
        mode = base if bits == 8 else ("I;16" if base == "L" else base + ";16")
    else:
        return None
    has_alpha = arr.shape[2] in (2, 4) and (bool(extrasamples) or arr.shape[2] == 4)
    if arr.shape[2] == 2 and not has_alpha:
        return None
    return arr, {"format": "TIFF", "mode": mode, "bit_depth": bits, "alpha": has_alpha, "squeeze": squeeze}


def _read_pillow(path: Path, fmt_hint: str) -> tuple[np.ndarray, dict, list[str], bytes | None]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    notes: list[str] = []
    try:
        im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageReadError(f"cannot read {path}: not an image file Pillow recognises") from None
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: {_one_line(exc)} (set {MAX_PIXELS_ENV} to allow larger images)") from None
    except Exception as exc:  # noqa: BLE001
        raise ImageReadError(f"cannot read {path}: {_one_line(exc)}") from None
    with im:
        check_pixels(path, im.size[1], im.size[0])  # before any pixel is decoded
        fmt = im.format or fmt_hint
        try:
            im.load()
        except Exception as exc:  # noqa: BLE001 - truncated/corrupt data
            raise ImageReadError(f"cannot read {path}: corrupt or truncated {fmt} data ({_one_line(exc)})") from None
        if getattr(im, "n_frames", 1) > 1:
            notes.append(f"first of {im.n_frames} frames used")
        icc = im.info.get("icc_profile")
        try:
            orientation = im.getexif().get(0x0112, 1)
        except Exception:  # noqa: BLE001
            orientation = 1
        if orientation not in (None, 1):
            try:
                im = ImageOps.exif_transpose(im)
                notes.append(f"EXIF orientation {orientation} applied")
            except Exception:  # noqa: BLE001 - a broken EXIF block: keep the stored orientation
                notes.append(f"EXIF orientation {orientation} could not be applied")
        mode = im.mode
        if mode == "1":
            im, mode = im.convert("L"), "L"
            notes.append("bilevel image written as 8-bit greyscale")
        elif mode in ("P", "PA"):
            has_t = mode == "PA" or "transparency" in im.info
            mode = "RGBA" if has_t else "RGB"
            im = im.convert(mode)
            notes.append(f"palette image written as {mode}")
        elif mode in ("RGBa", "La"):  # premultiplied alpha
            mode = "LA" if mode == "La" else "RGBA"
            im = im.convert(mode)
        elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
            im = im.convert("RGB")
            notes.append(f"{mode} image written as RGB")
            if mode != "RGBX":
                icc = None  # a CMYK/LAB profile does not describe the RGB pixels
            mode = "RGB"
        if mode in ("L", "LA", "RGB", "RGBA"):
            arr = np.asarray(im, dtype=np.uint8)
            bits = 8
        elif mode.startswith("I;16") or mode == "I":
            arr = np.asarray(im)
            if arr.min() < 0 or arr.max() > 65535:
                arr = arr.astype(np.float64)
                mode, bits = "array", 32
            else:
                arr = arr.astype(np.uint16)
                mode, bits = "I;16", 16
        elif mode == "F":
            arr = np.asarray(im, dtype=np.float32)
            mode, bits = "array", 32
        else:
            raise ImageReadError(f"{path}: unsupported image mode {mode!r}")
    squeeze = arr.ndim == 2
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ImageReadError(f"{path}: image holds NaN or infinite values")
    meta = {"format": fmt, "mode": mode, "bit_depth": bits, "alpha": arr.shape[2] in (2, 4), "squeeze": squeeze}
    return arr, meta, notes, icc


def _load_array(path: Path) -> tuple[np.ndarray, dict, list[str], bytes | None]:
    if not path.exists():
        raise ImageReadError(f"input not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"{path} is a folder, not an image")
    try:
        kind, head = _sniff(path)
    except OSError as exc:
        raise ImageReadError(f"cannot read {path}: {_one_line(exc.strerror or exc)}") from None
    if kind == "NPY":
        arr, meta = _read_npy(path)
        return arr, meta, [], None
    if kind == "TIFF":
        got = _read_tiff(path)
        if got is not None:
            return got[0], got[1], [], None
    if kind == "PNG":
        try:
            w, h, depth, ctype, _ = _png_header(head)
        except ValueError:
            raise ImageReadError(f"cannot read {path}: corrupt PNG header") from None
        if depth == 16 and ctype in (2, 4, 6):
            check_pixels(path, h, w)
            try:
                arr, icc = decode_png(path.read_bytes())
            except (ValueError, OSError) as exc:
                raise ImageReadError(f"cannot read {path}: corrupt PNG ({_one_line(exc)})") from None
            mode = {2: "RGB;16", 4: "LA;16", 6: "RGBA;16"}[ctype]
            return arr, {"format": "PNG", "mode": mode, "bit_depth": 16, "alpha": ctype in (4, 6)}, [], icc
    if path.suffix.lower() == ".npy":
        raise ImageReadError(f"cannot read {path}: not a valid .npy file")
    return _read_pillow(path, kind)


def read_image(path: str | os.PathLike) -> tuple[torch.Tensor, ImageInfo]:
    """Read ``path`` into a float32 tensor ``(1, C, H, W)`` in [-1, 1] (C = 1 or 3;
    alpha is kept aside in the returned :class:`ImageInfo`). Raises
    :class:`ImageReadError` (one-line message) for a missing, unreadable or corrupt
    file."""
    path = Path(path)
    arr, meta, notes, icc = _load_array(path)
    has_alpha = bool(meta.get("alpha"))
    alpha = arr[..., -1].copy() if has_alpha else None
    colour = arr[..., :-1] if has_alpha else arr
    if colour.shape[2] not in (1, 3):
        raise ImageReadError(f"{path}: {colour.shape[2]} colour channels; expected 1 (grey) or 3 (RGB)")
    h, w = colour.shape[:2]
    if h < 1 or w < 1:
        raise ImageReadError(f"{path}: empty image ({h}x{w})")
    vr = _range_for(colour)
    x = (colour.astype(np.float64) - vr[0]) / (vr[1] - vr[0])
    x = np.clip(x, 0.0, 1.0) * 2.0 - 1.0
    import torch

    tensor = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32))[None]
    info = ImageInfo(
        path=str(path),
        format=str(meta["format"]),
        mode=str(meta["mode"]),
        bit_depth=int(meta["bit_depth"]),
        channels=int(colour.shape[2]),
        height=int(h),
        width=int(w),
        dtype=str(arr.dtype),
        value_range=vr,
        has_alpha=has_alpha,
        alpha=alpha,
        squeeze=bool(meta.get("squeeze", False)),
        icc_profile=icc,
        notes=notes,
    )
    return tensor, info


# ----------------------------------------------------------------------------- writing
def to_uint(x: torch.Tensor | np.ndarray, bits: int) -> np.ndarray:
    """``(C, H, W)`` or ``(1, C, H, W)`` values in [-1, 1] → ``H×W×C`` uint8/uint16."""
    a = x.detach().cpu().double().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=np.float64)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 2:
        a = a[None]
    top = 255 if bits == 8 else 65535
    u = np.round((np.clip(a, -1.0, 1.0) + 1.0) / 2.0 * top)
    return np.ascontiguousarray(u.transpose(1, 2, 0)).astype(np.uint8 if bits == 8 else np.uint16)


def _png_bytes_pillow(arr: np.ndarray, mode: str, icc: bytes | None) -> bytes:
    from PIL import Image

    im = Image.fromarray(arr[..., 0] if arr.shape[2] == 1 else arr, mode=mode)
    buf = _io.BytesIO()
    params = {"icc_profile": icc} if icc else {}
    im.save(buf, format="PNG", **params)
    return buf.getvalue()


def write_image(path: str | os.PathLike, image: torch.Tensor | np.ndarray, info: ImageInfo) -> Path:
    """Write ``image`` ((1, C, H, W) or (C, H, W) in [-1, 1], C = ``info.channels``)
    to ``path`` with the size, bit depth, mode, value range and alpha of ``info``,
    atomically. The suffix of ``path`` should be :func:`output_suffix` (``info``)."""
    import torch

    x = image.detach().cpu() if isinstance(image, torch.Tensor) else torch.as_tensor(np.asarray(image))
    if x.dim() == 4:
        x = x[0]
    if x.dim() == 2:
        x = x[None]
    c, h, w = x.shape
    if (h, w) != (info.height, info.width) or c != info.channels:
        raise ValueError(f"image {tuple(x.shape)} does not match the input {info.channels}x{info.height}x{info.width}")
    path = Path(path)
    if info.mode == "array":  # .npy or float TIFF: map back to the stored value range and dtype
        lo, hi = info.value_range
        a = (x.double().clamp(-1, 1).numpy().transpose(1, 2, 0) + 1.0) / 2.0 * (hi - lo) + lo
        dt = np.dtype(info.dtype)
        if dt.kind in "iub":
            info_lo, info_hi = (np.iinfo(dt).min, np.iinfo(dt).max) if dt.kind != "b" else (0, 1)
            a = np.clip(np.round(a), info_lo, info_hi)
        a = a.astype(dt if dt.kind != "f" else (np.float64 if dt == np.float64 else np.float32))
        if info.alpha is not None:
            a = np.concatenate([a, info.alpha[..., None].astype(a.dtype)], axis=2)
        if info.squeeze and a.shape[2] == 1:
            a = a[..., 0]
        if info.format == "TIFF":
            import tifffile

            return _write_with(path, lambda f: tifffile.imwrite(f, a))
        return save_npy(path, a)
    bits = 16 if info.bit_depth == 16 else 8
    arr = to_uint(x, bits)
    if info.alpha is not None:
        alpha = info.alpha
        if alpha.dtype != arr.dtype:  # keep alpha's values; only the container dtype follows the image
            alpha = alpha.astype(arr.dtype)
        arr = np.concatenate([arr, alpha[..., None]], axis=2)
    if bits == 16:
        return atomic_write_bytes(path, encode_png(arr, info.icc_profile))
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    return atomic_write_bytes(path, _png_bytes_pillow(arr, mode, info.icc_profile))


# ----------------------------------------------------------------------------- folders
def list_images(folder: str | os.PathLike) -> list[Path]:
    """The image files directly inside ``folder`` (by suffix, hidden files skipped), sorted."""
    folder = Path(folder)
    return sorted(
        p for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES
    )
