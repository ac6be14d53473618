"""Scale-out for the ``blinddps`` command: one process per device under ``torchrun``.

``torchrun --nproc-per-node N -m blinddps deblur FOLDER --out DIR`` starts N copies of
the command. Each reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` from the
environment (:func:`context_from_env`), takes the inputs ``i`` with
``i % WORLD_SIZE == RANK`` of the *sorted* input list (:func:`shard`, deterministic),
runs on ``cuda:LOCAL_RANK`` (or the CPU) and records one :class:`Record` per input.
When ``WORLD_SIZE > 1`` a ``torch.distributed`` process group (NCCL on CUDA, Gloo on
the CPU) connects the copies; at the end the records are gathered and rank 0 writes
``DIR/index.csv`` (:func:`write_index`): a row per input with its status
(``ok``/``failed``/``skipped``), seconds, final residual and error. Without torchrun
the same code runs as a world of one.

Every image's result lives in its own folder and is complete only when its
``summary.json`` exists, so a run that was stopped can simply be started again:
finished inputs are reported as ``skipped``.
"""
from __future__ import annotations

import csv
import io as _io
import os
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Iterable, Sequence, TypeVar

import torch

from .io import save_text

__all__ = [
    "Context",
    "Record",
    "context_from_env",
    "shard",
    "gather_records",
    "write_index",
    "exit_code",
    "INDEX_COLUMNS",
]

T = TypeVar("T")

INDEX_COLUMNS = ("input", "status", "seconds", "residual", "error", "output")
#: How long ranks wait for each other at the end (one rank may have much more work).
GATHER_TIMEOUT = timedelta(days=7)


@dataclass
class Context:
    """Where this process stands: its rank, the world size and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    initialized: bool = False  # whether this module started a process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, requested: str = "auto") -> torch.device:
        """``cpu``, or ``cuda:LOCAL_RANK`` for ``cuda`` (and for ``auto`` when a GPU is
        there). Raises ``RuntimeError`` for ``cuda`` without a GPU."""
        req = (requested or "auto").lower()
        if req == "cpu":
            return torch.device("cpu")
        has_cuda = torch.cuda.is_available()
        if req.startswith("cuda"):
            if not has_cuda:
                raise RuntimeError("CUDA was requested but no GPU is available (use --device cpu)")
            if ":" in req and not self.distributed:
                return torch.device(req)
            return torch.device("cuda", self.local_rank % max(torch.cuda.device_count(), 1))
        if req != "auto":
            raise ValueError(f"unknown device {requested!r}; use cpu, cuda or auto")
        if has_cuda:
            return torch.device("cuda", self.local_rank % max(torch.cuda.device_count(), 1))
        return torch.device("cpu")

    def init(self, device: torch.device) -> "Context":
        """Start the process group when ``WORLD_SIZE > 1`` (env:// rendezvous, as
        torchrun sets it up). A no-op for a world of one or if one is already running."""
        if not self.distributed or not torch.distributed.is_available():
            return self
        if torch.distributed.is_initialized():
            return self
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        torch.distributed.init_process_group(backend=backend, timeout=GATHER_TIMEOUT)
        self.initialized = True
        return self

    def close(self) -> None:
        if self.initialized and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        self.initialized = False


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def context_from_env() -> Context:
    """The rank, world size and local rank torchrun sets (a world of one otherwise)."""
    world = _env_int("WORLD_SIZE", 1)
    rank = _env_int("RANK", 0)
    local = _env_int("LOCAL_RANK", rank)
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return Context(rank=rank, world_size=world, local_rank=local)


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """The items ``i`` with ``i % world_size == rank``: deterministic for a given
    (already sorted) order; every item goes to exactly one rank."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} outside a world of {world_size}")
    return [x for i, x in enumerate(items) if i % world_size == rank]


@dataclass
class Record:
    """The outcome for one input (a row of ``index.csv``)."""

    input: str
    status: str  # ok | failed | skipped
    seconds: float | None = None
    residual: float | None = None
    error: str = ""
    output: str = ""
    code: int = 0  # exit code class of a failure: 2 input/usage, 1 runtime
    extra: dict = field(default_factory=dict)

    def row(self) -> dict[str, str]:
        def num(v, fmt):
            return "" if v is None else format(v, fmt)

        return {
            "input": self.input,
            "status": self.status,
            "seconds": num(self.seconds, ".3f"),
            "residual": num(self.residual, ".6g"),
            "error": self.error,
            "output": self.output,
        }


def gather_records(ctx: Context, records: list[Record]) -> list[Record]:
    """Every rank's records, on every rank (the local list for a world of one)."""
    if not (ctx.distributed and torch.distributed.is_available() and torch.distributed.is_initialized()):
        return list(records)
    gathered: list[list[dict] | None] = [None] * ctx.world_size
    torch.distributed.all_gather_object(gathered, [asdict(r) for r in records])
    out: list[Record] = []
    for part in gathered:
        out.extend(Record(**d) for d in (part or []))
    return out


def write_index(path: str | os.PathLike, records: Iterable[Record]) -> Path:
    """``index.csv`` (columns :data:`INDEX_COLUMNS`), one row per input sorted by input,
    written atomically."""
    rows = sorted((r.row() for r in records), key=lambda r: r["input"])
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(INDEX_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return save_text(path, buf.getvalue())


def exit_code(records: Iterable[Record]) -> int:
    """0 when nothing failed; else 1 if any failure was a runtime failure, 2 if all
    failures were bad inputs."""
    codes = [r.code or 1 for r in records if r.status == "failed"]
    if not codes:
        return 0
    return 1 if 1 in codes else 2
