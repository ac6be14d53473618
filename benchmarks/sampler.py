"""Seconds per image and peak memory of the blind sampler, ours vs the original's
choices ("reference"), for the published image+kernel configs with random weights.

Per-step cost is constant, so each configuration runs a few steps after a warm-up and
the time is extrapolated to the full step count (printed as such). Prints a Markdown
table; run on a GPU with --device cuda.

    python benchmarks/sampler.py --size 256 --batches 1,4 --steps 1000,100 --timed-steps 2
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from blinddps.diffusion import DiffusionSchedule
from blinddps.models.checkpoints import KNOWN_CHECKPOINTS
from blinddps.models.unet import create_model
from blinddps.operators import BlindBlur
from blinddps.priors import DiffusionPrior
from blinddps.sampling import StepRule, Variable, sample
from blinddps.transforms import KernelSimplex


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the peak resident set size (Linux)
        except OSError:
            pass


def _peak_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _cpu_name() -> str:
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "CPU"


def build_models(device, image_size: int, small: bool):
    icfg = dict(KNOWN_CHECKPOINTS["image_ffhq256"].config)
    kcfg = dict(KNOWN_CHECKPOINTS["kernel64"].config)
    if small:  # a quick smoke configuration, not the published one
        icfg.update(num_channels=32, channel_mult="1,2,2,4", attention_resolutions="16", num_head_channels=16)
        kcfg.update(num_channels=32, num_head_channels=16)
    icfg["image_size"] = image_size
    torch.manual_seed(0)
    return create_model(**icfg).to(device), create_model(**kcfg).to(device)


def time_config(models, *, size, batch, steps, timed_steps, reference, dtype, device, channels_last):
    img_model, ker_model = models
    if channels_last:
        img_model = img_model.to(memory_format=torch.channels_last)
    autocast = dtype if (dtype != torch.float32 and device.type == "cuda") else None
    sched = DiffusionSchedule.create(1000)
    # run only `timed_steps + 1` steps (the first is a warm-up); the cost per step is
    # the same at every t, so this times any step count
    short = DiffusionSchedule(sched.betas[: timed_steps + 1], sched.timestep_map[: timed_steps + 1], 1000)
    op = BlindBlur(64, backend="direct" if reference else "fft")
    variables = {
        "image": Variable(DiffusionPrior(img_model, short, autocast_dtype=autocast), StepRule("original")),
        "kernel": Variable(DiffusionPrior(ker_model, short, KernelSimplex(), autocast_dtype=autocast), StepRule("original")),
    }
    b = 1 if reference else batch
    y = torch.rand(b, 3, size, size, device=device) * 2 - 1
    per_step = []

    def cb(info):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        per_step.append(time.perf_counter())

    _reset_peak(device)
    start = time.perf_counter()
    sample(op, y, variables, loss_reduction="batch" if reference else "sample",
           generator=torch.Generator(device="cpu").manual_seed(0), callback=cb)
    times = [t1 - t0 for t0, t1 in zip([start] + per_step[:-1], per_step)][1:]  # drop the warm-up step
    step_s = sorted(times)[len(times) // 2]
    return step_s / b, _peak_gib(device)


def main(argv=None, defaults=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batches", default="1,2")
    ap.add_argument("--steps", default="1000,100")
    ap.add_argument("--dtypes", default="float32", help="float32,bfloat16,float16 (autocast; GPU only)")
    ap.add_argument("--timed-steps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--small", action="store_true", help="a small UNet instead of the published configs")
    ap.add_argument("--channels-last", action="store_true")
    if defaults:
        ap.set_defaults(**defaults)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    models = build_models(device, a.size, a.small)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    print(f"device: {name}; torch {torch.__version__}; threads {torch.get_num_threads()}; "
          f"cpus {os.cpu_count()}; image {a.size}x{a.size}, kernel 64x64; "
          f"{'small UNets' if a.small else 'published configs'} with random weights; "
          f"time per image extrapolated from {a.timed_steps} timed steps")
    print()
    print("| mode | dtype | batch | steps | s / image | images / s | peak memory (GiB) | throughput vs reference at 1000 steps |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    step_counts = [int(s) for s in a.steps.split(",")]
    # the per-step cost does not depend on the step count: time each configuration once
    ref_s, ref_mem = time_config(models, size=a.size, batch=1, steps=1, timed_steps=a.timed_steps,
                                 reference=True, dtype=torch.float32, device=device, channels_last=False)
    rows = [("reference", "float32", 1, ref_s, ref_mem)]
    for dname in a.dtypes.split(","):
        for batch in [int(b) for b in a.batches.split(",")]:
            s, mem = time_config(models, size=a.size, batch=batch, steps=1, timed_steps=a.timed_steps,
                                 reference=False, dtype=getattr(torch, dname), device=device,
                                 channels_last=a.channels_last)
            rows.append(("ours", dname, batch, s, mem))
    for steps in step_counts:
        for mode, dname, batch, s, mem in rows:
            per_image = s * steps
            print(f"| {mode} | {dname} | {batch} | {steps} | {per_image:.1f} | {1 / per_image:.4f} | {mem:.2f} "
                  f"| {ref_s * 1000 / per_image:.1f}× |")

if __name__ == "__main__":
    main()
