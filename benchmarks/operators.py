"""FFT blur vs direct conv2d: forward, and forward + backward (to image and kernel).

    .venv/bin/python benchmarks/operators.py [--batch 8] [--size 256] [--kernel 64]
        [--repeats 3] [--threads 2,1] [--skip-original]

Prints a Markdown table (median seconds over ``--repeats`` runs after one warm-up) and
the machine it ran on. Columns:

* *original conv2d*: the original's call, ``conv2d(x, k, padding='same')`` (one grouped
  call with the batch folded into the groups; PyTorch's own padding sends it to a slow
  path); timed once, without warm-up, for the first thread count only;
* *direct conv2d*: the same sums by explicit zero padding and an unpadded grouped
  ``conv2d`` (:func:`blinddps.operators.conv_same_direct`) — PyTorch's fast path, the
  fair reference;
* *FFT*: :func:`blinddps.operators.conv_same` / ``conv_valid``.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import statistics
import subprocess
import time
import warnings

import torch
import torch.nn.functional as F

from blinddps.operators import conv_same, conv_same_direct, conv_valid, conv_valid_direct


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or "unknown CPU"


def timeit(fn, repeats: int, warmup: bool = True) -> float:
    if warmup:
        fn()  # plans, allocations
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def original_conv(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    B, C, H, W = x.shape
    kh, kw = k.shape[-2:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # even kernel with padding='same'
        out = F.conv2d(x.reshape(1, B * C, H, W), k.expand(B, C, kh, kw).reshape(B * C, 1, kh, kw),
                       padding="same", groups=B * C)
    return out.reshape(B, C, H, W)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--kernel", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="", help="comma-separated torch thread counts (default: torch's)")
    ap.add_argument("--skip-original", action="store_true", help="skip the slow conv2d(padding='same') column")
    args = ap.parse_args()
    thread_counts = [int(t) for t in args.threads.split(",") if t] or [torch.get_num_threads()]

    g = torch.Generator().manual_seed(0)
    B, C, S, K = args.batch, args.channels, args.size, args.kernel
    x = torch.rand(B, C, S, S, generator=g) * 2 - 1
    k = torch.rand(B, 1, K, K, generator=g)
    k = k / k.flatten(1).sum(1).view(-1, 1, 1, 1)
    w = torch.randn(B, C, S, S, generator=g)
    wv = torch.randn(B, C, S - K + 1, S - K + 1, generator=g)

    def fwd(f, weight):
        def run():
            with torch.no_grad():
                f(x, k)
        return run

    def fwd_bwd(f, weight):
        def run():
            xx = x.clone().requires_grad_(True)
            kk = k.clone().requires_grad_(True)
            (f(xx, kk) * weight).sum().backward()
        return run

    with torch.no_grad():
        ref = conv_same_direct(x, k)
        err = (conv_same(x, k) - ref).abs().max().item()
        err_orig = (original_conv(x[:1], k[:1]) - ref[:1]).abs().max().item()

    rows = []
    for ti, threads in enumerate(thread_counts):
        torch.set_num_threads(threads)
        for label, fft, direct, weight in (
            ("same", conv_same, conv_same_direct, w),
            ("valid", conv_valid, conv_valid_direct, wv),
        ):
            for what, make in (("forward", fwd), ("forward+backward", fwd_bwd)):
                t_orig = None
                if label == "same" and ti == 0 and not args.skip_original:
                    t_orig = timeit(make(original_conv, weight), 1, warmup=False)
                t_ref = timeit(make(direct, weight), args.repeats)
                t_fft = timeit(make(fft, weight), max(args.repeats, 7))
                rows.append((threads, f"{label}, {what}", t_orig, t_ref, t_fft))

    print(
        f"Blur of a {B}×{C}×{S}×{S} float32 batch by {B} different {K}×{K} kernels; median of "
        f"{args.repeats} runs (FFT: {max(args.repeats, 7)}) after a warm-up. "
        f"max |FFT − direct| = {err:.1e}, max |direct − original| = {err_orig:.1e}.\n"
    )
    print("| threads | operation | original conv2d (s) | direct conv2d (s) | FFT (s) | FFT vs direct | FFT vs original |")
    print("| ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for threads, name, t_orig, t_ref, t_fft in rows:
        o = f"{t_orig:.2f}" if t_orig is not None else "—"
        ro = f"{t_orig / t_fft:.0f}×" if t_orig is not None else "—"
        print(f"| {threads} | {name} | {o} | {t_ref:.3f} | {t_fft:.4f} | {t_ref / t_fft:.1f}× | {ro} |")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"\nMachine: {cpu_model()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"Python {platform.python_version()}, {_dt.date.today().isoformat()}, "
        f"load average at the end {load:.1f}."
    )


if __name__ == "__main__":
    main()
