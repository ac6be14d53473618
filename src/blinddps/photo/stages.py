"""Per-stage wall time and peak resident memory of a pipeline run."""
from __future__ import annotations

import os
import resource
import threading
import time
from contextlib import contextmanager
from typing import Iterator

__all__ = ["StageMeter", "rss_bytes"]

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """The process's resident memory now (Linux /proc; else the peak so far)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:
        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


class StageMeter:
    """``with meter.stage("name"):`` records the stage's seconds and the peak resident
    memory seen while it ran (sampled every ``interval`` s by a thread), in
    ``meter.stages`` (name -> {"seconds", "peak_rss_mb"})."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.stages: dict[str, dict[str, float]] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        peak = [rss_bytes()]
        done = threading.Event()

        def watch() -> None:
            while not done.wait(self.interval):
                peak[0] = max(peak[0], rss_bytes())

        t = threading.Thread(target=watch, daemon=True)
        t.start()
        t0 = time.perf_counter()
        try:
            yield
        finally:
            done.set()
            t.join()
            peak[0] = max(peak[0], rss_bytes())
            prev = self.stages.get(name, {"seconds": 0.0, "peak_rss_mb": 0.0})
            self.stages[name] = {"seconds": prev["seconds"] + time.perf_counter() - t0,
                                 "peak_rss_mb": max(prev["peak_rss_mb"], peak[0] / 2**20)}

    @property
    def peak_rss_mb(self) -> float:
        return max((s["peak_rss_mb"] for s in self.stages.values()), default=rss_bytes() / 2**20)
