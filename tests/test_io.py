"""blinddps.io (reading/writing a user's images) and blinddps.figures."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from blinddps import figures, io
from blinddps.io import ImageReadError, decode_png, encode_png, read_image, write_image

RNG = np.random.default_rng(0)


def _roundtrip(tmp_path, src, name="out"):
    x, info = read_image(src)
    out = tmp_path / f"{name}{io.output_suffix(info)}"
    write_image(out, x, info)
    return x, info, out


def test_rgb8_roundtrip_is_exact(tmp_path):
    a = (RNG.random((20, 31, 3)) * 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    x, info, out = _roundtrip(tmp_path, tmp_path / "a.png")
    assert x.shape == (1, 3, 20, 31) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert (info.mode, info.bit_depth, info.channels, info.has_alpha) == ("RGB", 8, 3, False)
    im = Image.open(out)
    assert im.mode == "RGB" and im.size == (31, 20)
    assert np.array_equal(np.asarray(im), a)


def test_rgba_keeps_alpha_unchanged(tmp_path):
    a = (RNG.random((12, 9, 4)) * 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    x, info = read_image(tmp_path / "a.png")
    assert x.shape == (1, 3, 12, 9) and info.has_alpha
    write_image(tmp_path / "o.png", -x, info)  # different colours, same alpha
    b = np.asarray(Image.open(tmp_path / "o.png"))
    assert Image.open(tmp_path / "o.png").mode == "RGBA"
    assert np.array_equal(b[..., 3], a[..., 3])
    assert np.array_equal(b[..., :3], 255 - a[..., :3])


def test_grey_alpha_and_grey16(tmp_path):
    la = (RNG.random((8, 10, 2)) * 255).astype(np.uint8)
    Image.fromarray(la, mode="LA").save(tmp_path / "la.png")
    x, info, out = _roundtrip(tmp_path, tmp_path / "la.png", "la_out")
    assert x.shape == (1, 1, 8, 10) and info.mode == "LA"
    assert Image.open(out).mode == "LA" and np.array_equal(np.asarray(Image.open(out)), la)

    g = (RNG.random((7, 13)) * 65535).astype(np.uint16)
    Image.fromarray(g).save(tmp_path / "g.png")
    x, info, out = _roundtrip(tmp_path, tmp_path / "g.png", "g_out")
    assert (info.mode, info.bit_depth, info.channels) == ("I;16", 16, 1)
    im = Image.open(out)
    assert im.mode.startswith("I;16") and np.array_equal(np.asarray(im), g)


@pytest.mark.parametrize("channels", [3, 4])
def test_rgb16_png_keeps_16_bits(tmp_path, channels):
    a = (RNG.random((9, 14, channels)) * 65535).astype(np.uint16)
    (tmp_path / "a.png").write_bytes(encode_png(a))
    x, info, out = _roundtrip(tmp_path, tmp_path / "a.png")
    assert info.bit_depth == 16 and info.mode == ("RGB;16" if channels == 3 else "RGBA;16")
    b, _ = decode_png(out.read_bytes())
    assert b.dtype == np.uint16 and np.array_equal(b, a)  # float32 holds 16 bits exactly enough


def _png_with_filters(arr16: np.ndarray, filters) -> bytes:
    """A 16-bit PNG whose rows use the given filter types (reference encoder)."""
    h, w, c = arr16.shape
    bpp = 2 * c
    rows = arr16.astype(">u2").view(np.uint8).reshape(h, -1).astype(int)
    out = bytearray()
    prev = np.zeros(rows.shape[1], dtype=int)
    for r in range(h):
        cur, f = rows[r], filters[r % len(filters)]
        left = np.concatenate([np.zeros(bpp, int), cur[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, int), prev[:-bpp]])
        if f == 0:
            pred = np.zeros_like(cur)
        elif f == 1:
            pred = left
        elif f == 2:
            pred = prev
        elif f == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = abs(p - left), abs(p - prev), abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        out.append(f)
        out += bytes(((cur - pred) % 256).astype(np.uint8))
        prev = cur

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)

    ctype = {3: 2, 4: 6}[c]
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(bytes(out))) + chunk(b"IEND", b""))


def test_png_decoder_handles_every_filter_type():
    a = (RNG.random((10, 7, 3)) * 65535).astype(np.uint16)
    a[:, :, 1] = np.cumsum(a[:, :, 1] // 16, axis=1).astype(np.uint16)
    data = _png_with_filters(a, [0, 1, 2, 3, 4])
    b, _ = decode_png(data)
    assert np.array_equal(b, a)
    # and Pillow's adaptive filters (8-bit) agree with Pillow's own decoder
    c = (RNG.random((16, 20, 4)) * 255).astype(np.uint8)
    c[..., :3] = np.cumsum(c[..., :3], axis=1) // 20
    buf = __import__("io").BytesIO()
    Image.fromarray(c).save(buf, format="PNG")
    d, _ = decode_png(buf.getvalue())
    assert np.array_equal(d, c)


def test_palette_jpeg_and_exif_orientation(tmp_path):
    p = Image.fromarray((RNG.random((6, 8, 3)) * 255).astype(np.uint8)).convert("P")
    p.save(tmp_path / "p.png")
    x, info, out = _roundtrip(tmp_path, tmp_path / "p.png", "p_out")
    assert info.mode == "RGB" and any("palette" in n for n in info.notes)
    assert Image.open(out).mode == "RGB"

    im = Image.fromarray((RNG.random((10, 16, 3)) * 255).astype(np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    im.save(tmp_path / "r.jpg", exif=exif)
    x, info = read_image(tmp_path / "r.jpg")
    assert info.format == "JPEG" and (info.height, info.width) == (16, 10)
    assert io.output_suffix(info) == ".png"


def test_tiff_16bit_and_float(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    a = (RNG.random((8, 9, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "a.tif", a)
    x, info, out = _roundtrip(tmp_path, tmp_path / "a.tif")
    assert info.bit_depth == 16 and out.suffix == ".png"
    assert np.array_equal(decode_png(out.read_bytes())[0], a)
    f = RNG.random((5, 6)).astype(np.float32) * 3
    tifffile.imwrite(tmp_path / "f.tif", f)
    x, info, out = _roundtrip(tmp_path, tmp_path / "f.tif", "f_out")
    assert out.suffix == ".tif"
    np.testing.assert_allclose(tifffile.imread(out), f, atol=1e-5)


@pytest.mark.parametrize(
    "array, expected_range",
    [
        (RNG.random((6, 7)).astype(np.float32), (0.0, 1.0)),
        ((RNG.random((6, 7, 3)) * 2 - 1).astype(np.float64), (-1.0, 1.0)),
        ((RNG.random((6, 7, 3)) * 300 - 5), None),  # values exceed: own min/max
        ((RNG.random((6, 7, 4)) * 255).astype(np.uint8), (0.0, 255.0)),
    ],
)
def test_npy_ranges_and_roundtrip(tmp_path, array, expected_range):
    np.save(tmp_path / "a.npy", array)
    x, info, out = _roundtrip(tmp_path, tmp_path / "a.npy")
    assert out.suffix == ".npy"
    if expected_range is not None:
        assert info.value_range == expected_range
    else:
        assert info.value_range == (float(array[..., :3].min()), float(array[..., :3].max()))
    b = np.load(out)
    assert b.shape == array.shape and b.dtype == array.dtype
    tol = 0 if array.dtype == np.uint8 else 1e-5 * max(1.0, float(np.abs(array).max()))
    np.testing.assert_allclose(b.astype(np.float64), array.astype(np.float64), atol=tol)
    if array.ndim == 3 and array.shape[2] == 4:
        assert info.has_alpha and np.array_equal(b[..., 3], array[..., 3])


@pytest.mark.parametrize("kind", ["missing", "truncated", "text", "npy_shape", "npy_nan", "folder"])
def test_bad_files_raise_one_line_errors(tmp_path, kind):
    good = tmp_path / "good.png"
    Image.fromarray((RNG.random((20, 20, 3)) * 255).astype(np.uint8)).save(good)
    path = tmp_path / "bad.png"
    if kind == "truncated":
        path.write_bytes(good.read_bytes()[:80])
    elif kind == "text":
        path.write_text("not an image")
    elif kind == "npy_shape":
        path = tmp_path / "bad.npy"
        np.save(path, np.zeros((3, 8, 8, 2)))
    elif kind == "npy_nan":
        path = tmp_path / "bad.npy"
        np.save(path, np.full((4, 4), np.nan))
    elif kind == "folder":
        path = tmp_path
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    msg = str(err.value)
    assert "\n" not in msg and str(path) in msg


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "r.png"
    target.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(b"half-writ")
            raise KeyboardInterrupt
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.png"]
    io.save_json(tmp_path / "s.json", {"a": np.float32(1.5), "t": torch.tensor([1, 2])})
    assert (tmp_path / "s.json").read_text().count("1.5") == 1


def test_list_images_skips_other_files(tmp_path):
    for n in ("b.png", "a.JPG", ".hidden.png", "notes.txt", "c.npy"):
        (tmp_path / n).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in io.list_images(tmp_path)] == ["a.JPG", "b.png", "c.npy"]


def test_figures(tmp_path):
    from blinddps.simulate import load_kernel, motion_kernels

    k = motion_kernels(1, 16, 0.5, generator=0)[0, 0]
    figures.save_kernel_png(tmp_path / "k.png", k)
    back = load_kernel(tmp_path / "k.png")  # the enlargement factor is undone
    assert back.shape == (1, 1, 16, 16)
    tilt = torch.randn(2, 20, 30)
    img, m = figures.tilt_image(tilt)
    assert img.size[1] >= 20 and img.size[0] > 30 and m == pytest.approx(float(tilt.norm(dim=0).max()), rel=1e-5)
    assert figures.tilt_image(tilt, legend=False)[0].size == (30, 20)
    std, top = figures.std_image(torch.rand(3, 20, 30))
    assert std.size == (30, 20) and top > 0
    x = torch.rand(1, 3, 20, 30) * 2 - 1
    comp = figures.comparison_image(
        [("input", figures.to_pil(x)), ("restored", figures.to_pil(x[:, :1])), ("kernel", figures.kernel_image(k, None)[0])],
        title="t")
    assert comp.mode == "RGB" and comp.size[1] >= 192 and comp.size[0] > 3 * 192


def test_whole_image_unfilter_equals_the_byte_loop_for_every_filter():
    """Average/Paeth rows are undone one anti-diagonal at a time (a 6 MP 16-bit photo in
    seconds, not minutes); the result is the byte-by-byte definition's."""
    from blinddps.io import _unfilter_row, _unfilter_wavefront

    rng = np.random.default_rng(3)
    for h, w, bpp in [(7, 9, 6), (13, 5, 3), (1, 11, 8), (9, 1, 2), (20, 17, 4), (4, 4, 1)]:
        f = rng.integers(0, 256, (h, w * bpp), dtype=np.uint8)
        ft = rng.integers(0, 5, h).astype(np.uint8)
        ref, prev = np.empty_like(f), np.zeros(w * bpp, np.uint8)
        for r in range(h):
            prev = ref[r] = _unfilter_row(int(ft[r]), f[r], prev, bpp)
        assert np.array_equal(_unfilter_wavefront(f.reshape(h, w, bpp), ft).reshape(h, -1), ref)
