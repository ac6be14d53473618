"""Several measurement *tracks* of one benchmark side by side: the same images and
methods under different borders (zero-padded blur, or a scene that goes on past the
frame) and kernel families (our generator, the held-out camera-shake model, Levin's
recorded kernels). Each track is an ordinary :func:`~blinddps.evaluation.runner.evaluate`
run in ``out_dir/<track>``; this module runs them in order and writes one table.

A config's ``tracks`` is a list of mappings, each with ``border`` and ``kernels`` (and
optionally ``name`` and any other ``evaluate`` keyword that differs per track). The
first track is the headline: the one closest to what a user gets.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import report as R
from .runner import BORDERS, KERNEL_FAMILIES, EvalResult, evaluate

__all__ = ["evaluate_tracks", "track_label", "tracks_table", "TracksResult", "TRACK_KEYS"]

#: per-track keys besides any ``evaluate`` keyword
TRACK_KEYS = {"name", "border", "kernels"}
_BORDER_TEXT = {"zero": "zero-padded", "scene": "real borders"}


@dataclass
class TracksResult:
    results: dict[str, EvalResult]
    table: str
    paths: dict[str, Path]


def track_label(track: dict) -> str:
    """A track's folder name: its ``name``, else ``<border>-<kernels>``."""
    if track.get("name"):
        return str(track["name"])
    return f"{track.get('border', 'zero')}-{track.get('kernels', 'trajectory')}"


def _check(tracks: list[dict]) -> list[dict]:
    if not isinstance(tracks, list) or not tracks:
        raise ValueError("tracks must be a non-empty list of mappings with 'border' and 'kernels'")
    seen = set()
    for t in tracks:
        if not isinstance(t, dict):
            raise ValueError(f"a track must be a mapping, got {t!r}")
        if t.get("border", "zero") not in BORDERS:
            raise ValueError(f"track {t!r}: border must be one of {', '.join(BORDERS)}")
        if t.get("kernels", "trajectory") not in KERNEL_FAMILIES:
            raise ValueError(f"track {t!r}: kernels must be one of {', '.join(KERNEL_FAMILIES)}")
        label = track_label(t)
        if label in seen:
            raise ValueError(f"two tracks named {label!r}")
        seen.add(label)
    return tracks


def tracks_table(results: dict[str, EvalResult], tracks: list[dict], methods: list[str]) -> str:
    """Markdown: one row per method, per track its aligned PSNR and kernel MNC (with the
    track's blob floor in the header)."""
    head = ["method"]
    for t in tracks:
        lab = track_label(t)
        floors = [m["blob_floor_mnc"] for m in results[lab].means.values()
                  if isinstance(m.get("blob_floor_mnc"), float) and math.isfinite(m["blob_floor_mnc"])]
        what = f"{_BORDER_TEXT.get(t.get('border', 'zero'), '?')}, {t.get('kernels', 'trajectory')} kernels"
        fl = f", floor {floors[0]:.3f}" if floors else ""
        head += [f"{what}: PSNR†", f"MNC{fl}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for m in methods:
        cells = [R.method_label(m)]
        for t in tracks:
            v = results[track_label(t)].means.get(m, {})
            p, k = v.get("psnr_aligned"), v.get("kernel_mnc")
            cells.append("—" if p is None or p != p else f"{p:.2f}")
            cells.append("—" if k is None or k != k else f"{k:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def evaluate_tracks(tracks: list[dict], out_dir: str | Path, **common: Any) -> TracksResult:
    """Run :func:`evaluate` once per track (``common`` keywords, the track's own on
    top) into ``out_dir/<track>``; write ``tracks.md`` and ``tracks.json`` there."""
    tracks = _check(list(tracks))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, EvalResult] = {}
    for t in tracks:
        kw = {**common, **{k: v for k, v in t.items() if k != "name"}}
        results[track_label(t)] = evaluate(out_dir=out / track_label(t), **kw)
    methods = list(next(iter(results.values())).means) or list(common.get("methods") or [])
    table = tracks_table(results, tracks, methods)
    title = common.get("name") or "tracks"
    (out / "tracks.md").write_text(
        f"# {title}\n\nAligned PSNR (dB, PSNR†) and kernel MNC per track; each track's full report is "
        f"in its folder.\n\n{table}\n")
    (out / "tracks.json").write_text(json.dumps(
        {"tracks": tracks, "means": {lab: r.means for lab, r in results.items()}}, indent=1, default=str,
        allow_nan=True) + "\n")
    return TracksResult(results, table, {"table": out / "tracks.md", "json": out / "tracks.json"})
