"""``python -m blinddps.launch [torchrun options] COMMAND [options]``: torchrun without
its traceback.

``torchrun -m blinddps deblur ...`` works, but whenever one worker exits non-zero (one
image failed: index.csv and the exit status already say so) torchrun's own launcher
prints a ``ChildFailedError`` traceback of its internals. This wrapper runs the same
launcher (``torch.distributed.run``) with ``-m blinddps`` filled in, and reports a failed
worker in one line instead, exiting with the workers' status (1 if any failed at run
time, else 2 for bad input; 130/143 when they were interrupted/terminated)::

    python -m blinddps.launch --standalone --nproc-per-node 4 deblur photos/ --out results/

Everything before the first blinddps command word is a torchrun option (e.g.
``--redirects 3 --log-dir logs`` to send each worker's output to its own file).
"""
from __future__ import annotations

import sys
from typing import Sequence

COMMANDS = ("deblur", "turbulence", "simulate", "evaluate", "train", "models", "demo")
PROG = "blinddps.launch"


def split_argv(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """(torchrun options, blinddps command line): split at the first command word."""
    for i, word in enumerate(argv):
        if word in COMMANDS:
            return list(argv[:i]), list(argv[i:])
    raise ValueError(f"no blinddps command ({', '.join(COMMANDS)}) in the arguments")


def _status(codes: list[int]) -> int:
    """The exit status for the workers' exit codes (negative: killed by that signal).
    A worker's own status wins over a signal: when one worker exits non-zero after the
    work is done (an image failed), torchrun SIGTERMs the others as they finish."""
    own = [c for c in codes if c > 0 and c not in (130, 143)]
    if own:
        return 2 if all(c == 2 for c in own) else 1
    if codes and all(c in (130, -2) for c in codes):
        return 130
    if any(c in (143, -15) for c in codes):
        return 143
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip())
        return 0
    try:
        torchrun_opts, command = split_argv(argv)
    except ValueError as exc:
        print(f"{PROG}: error: {exc} (see 'python -m {PROG} --help')", file=sys.stderr)
        return 2
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    import logging

    # its "failed (exitcode: N) local_rank: ..." line: said below in our words
    logging.getLogger("torch.distributed.elastic.multiprocessing.api").setLevel(logging.CRITICAL)
    args = parse_args([*torchrun_opts, "-m", "blinddps", *command])
    try:
        run(args)
    except ChildFailedError as exc:
        failures = sorted(exc.failures.items())
        codes = [int(f.exitcode) for _, f in failures]
        which = ", ".join(f"rank {rank}: exit {f.exitcode}" for rank, f in failures)
        print(f"{PROG}: {len(failures)} worker(s) failed ({which}); their messages are above"
              + ("" if command[0] in ("train", "models", "demo") else ", and the output folder's index.csv lists "
                 "every input"), file=sys.stderr)
        return _status(codes)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
