"""Clipped highlights: ringing with and without the clipped-pixel mask (issue 20).

    python benchmarks/photo_saturation.py [--figure docs/figures/photo_saturation.png]

The Lai et al. ``saturated_03`` sharp image (light sources at night), its clipped
lights given ``--highlights`` times the sensor's range of radiance (so they clip after
the blur, as real lights do), blurred by a held-out
camera-shake kernel with real borders, noise 0.005, 8-bit sRGB. Restored (a) with the
true kernel and (b) through the whole pipeline, each with and without leaving the
clipped pixels out of the data term. Ringing = RMS error (sRGB, [0, 1]) in the band
of ``--band`` px around the clipped pixels (not on them; the truth there is clipped
too). Also whole-frame shift-aligned PSNR. Prints a table and writes a figure.
"""
from __future__ import annotations

import argparse
import platform
import sys

import numpy as np
import torch
from scipy import ndimage


def main(argv=None) -> int:
    from PIL import Image

    from blinddps.evaluation.levin import lai_sharp_images
    from blinddps.evaluation.metrics import aligned_psnr, mnc
    from blinddps.photo import clipped_mask, deblur_photo, deconvolve, linear_to_srgb, srgb_to_linear
    from blinddps.photo.simulate import simulate_photo
    from blinddps.simulate.shake import camera_shake_kernels

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gain", type=float, default=1.0)
    ap.add_argument("--highlights", type=float, default=8.0, help="radiance of the scene's clipped lights")
    ap.add_argument("--size", type=int, default=31)
    ap.add_argument("--band", type=int, default=15)
    ap.add_argument("--estimator", default="l0")
    ap.add_argument("--figure", default=None)
    ap.add_argument("--no-mask-kernel", dest="mask_kernel", action="store_false",
                    help="the mask in the restoration only, not in the kernel estimate")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    imgs = lai_sharp_images()
    if "lai_saturated_03" not in imgs:
        print("lai.npz not found", file=sys.stderr)
        return 2
    scene = imgs["lai_saturated_03"].astype(np.float64).transpose(2, 0, 1) / 255.0
    K = args.size
    k = camera_shake_kernels(1, size=K, extent=(0.7, 0.9), generator=torch.Generator().manual_seed(11))[0, 0]
    k = k.double().numpy()
    y = simulate_photo(scene, k, noise=0.005, gain=args.gain, highlights=args.highlights)
    m = (K - 1) // 2
    truth = linear_to_srgb(np.clip(srgb_to_linear(scene[:, m:m + y.shape[1], m:m + y.shape[2]]) * args.gain, 0, 1))
    # (the lights' extra radiance clips in the truth too: a sharp photo records them at 1)
    clipped_c = clipped_mask(y, per_channel=True)
    clipped = clipped_c.any(axis=0)
    band = ndimage.binary_dilation(clipped, iterations=args.band) & ~clipped
    band[:K, :] = band[-K:, :] = False
    band[:, :K] = band[:, -K:] = False
    lin = srgb_to_linear(y)
    out = {}
    for use_mask in (False, True):
        w = (~clipped_c).astype(np.float32) if use_mask else None
        out[("true kernel", use_mask)] = (linear_to_srgb(np.clip(deconvolve(lin, k, weight=w), 0, 1)), None)
        sol = deblur_photo(torch.from_numpy(2 * y - 1).float(), kernel_size=K, estimator=args.estimator,
                           clip_mask=use_mask, clip_mask_kernel=use_mask and args.mask_kernel, workers=1)
        out[("pipeline", use_mask)] = ((sol.image[0].numpy().astype(np.float64) + 1) / 2,
                                       float(mnc(sol.params["kernel"][0, 0].numpy().astype(np.float64), k)))
    print(f"saturated_03, gain {args.gain}, lights x{args.highlights}: {clipped_c.mean() * 100:.2f} % of values clipped "
          f"({clipped.mean() * 100:.2f} % of pixels in some channel); {K}-px held-out shake; "
          f"band {args.band} px ({band.sum()} px); {platform.machine()}, 1 thread")
    print("| restoration | clipped mask | ringing RMS in band | PSNR (dB) | kernel MNC |")
    print("|---|---|---|---|---|")
    print(f"| blurry input | – | {np.sqrt(np.mean((y[:, band] - truth[:, band]) ** 2)):.4f} | "
          f"{aligned_psnr(y, truth, 8, 1.0)[0]:.2f} | – |")
    for (what, use_mask), (x, mn) in out.items():
        ring = np.sqrt(np.mean((x[:, band] - truth[:, band]) ** 2))
        print(f"| {what} ({args.estimator if what == 'pipeline' else 'TV'}) | {'yes' if use_mask else 'no'} | "
              f"{ring:.4f} | {aligned_psnr(x, truth, 8, 1.0)[0]:.2f} | {'–' if mn is None else f'{mn:.3f}'} |")
    if args.figure:
        lab, n = ndimage.label(clipped)
        sizes = ndimage.sum(clipped, lab, range(1, n + 1))
        cy, cx = ndimage.center_of_mass(clipped, lab, int(np.argmax(sizes)) + 1)
        h = 90
        t = int(np.clip(cy - h, 0, y.shape[1] - 2 * h))
        l_ = int(np.clip(cx - h, 0, y.shape[2] - 2 * h))
        panels = [y, out[("true kernel", False)][0], out[("true kernel", True)][0], truth]
        crops = [(np.clip(p[:, t:t + 2 * h, l_:l_ + 2 * h], 0, 1).transpose(1, 2, 0) * 255).astype(np.uint8)
                 for p in panels]
        gap = np.full((2 * h, 6, 3), 255, np.uint8)
        row = np.concatenate(sum([[c, gap] for c in crops], [])[:-1], axis=1)
        Image.fromarray(row).resize((row.shape[1] * 2, row.shape[0] * 2), Image.NEAREST).save(args.figure)
        print(f"figure (blurry | TV, no mask | TV, clipped pixels masked | truth): {args.figure}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
