"""Output folders that survive kills, concurrent runs and read-only disks.

* :class:`OutputLock` — one run per output folder: ``OUT/.blinddps.lock`` holds the
  owner's pid, host and start time, created with ``O_EXCL``. A second run finds it and
  stops with :class:`OutputBusyError`; a lock whose process is gone (same host, pid not
  alive) is stale and taken over. The ranks of one ``torchrun`` job share the lock
  (same ``TORCHELASTIC_RUN_ID``). Creating it is also the check that ``OUT`` is
  writable, before any work.
* The incomplete marker ``.blinddps-incomplete``: written into a result folder
  *before* its first file, removed *after* its ``summary.json``. A folder with the
  marker and no summary is a result of ours that was cut short (SIGKILL, power loss):
  the next run redoes it without ``--overwrite``; a folder with files but neither
  marker nor summary is someone else's and is never replaced without ``--overwrite``.
* :func:`remove_stale_parts` — the ``.NAME.*.part`` temporaries of atomic writes a
  killed run leaves behind.
* :func:`settings_difference` — the first setting in which an existing result differs
  from what this run would make (so resuming never reuses results of other settings).
* :func:`fault_point` — the test hook: ``BLINDDPS_TEST_KILL_AT=STAGE`` makes the process
  SIGKILL itself at that stage (``BLINDDPS_TEST_SIGNAL`` another signal) — stages
  ``marked``, ``before:FILE``, ``part:FILE`` (the temporary written, not yet renamed),
  ``after:summary.json`` (the fault-injection tests; nothing else sets it).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

__all__ = [
    "LOCK_NAME",
    "INCOMPLETE_NAME",
    "OutputBusyError",
    "OutputNotWritableError",
    "OutputLock",
    "release_all_locks",
    "check_writable",
    "mark_incomplete",
    "is_incomplete",
    "incomplete_command",
    "clear_incomplete",
    "remove_stale_parts",
    "settings_difference",
    "fault_point",
    "KILL_ENV",
]

LOCK_NAME = ".blinddps.lock"
INCOMPLETE_NAME = ".blinddps-incomplete"
KILL_ENV = "BLINDDPS_TEST_KILL_AT"
SIGNAL_ENV = "BLINDDPS_TEST_SIGNAL"
_RUN_ID_ENV = "TORCHELASTIC_RUN_ID"
#: An unreadable (empty) lock file older than this is a writer's that died creating it.
UNREADABLE_STALE_S = 10.0


class OutputBusyError(RuntimeError):
    """Another live process holds the output folder (one-line message)."""


class OutputNotWritableError(OSError):
    """The output folder cannot be created or written (one-line message)."""


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and write and remove a probe file in it; raises
    :class:`OutputNotWritableError` (read-only disk, permissions, a file in the way)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".blinddps-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputNotWritableError(f"cannot write to {folder}: {_reason(exc)}") from None


def _proc_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, Linux), to tell a reused pid."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _pid_alive(pid: int, start: str | None = None) -> bool:
    """Whether the process that wrote a lock still runs: ``pid`` exists and, when both
    are known, started when the lock says (else the pid was reused)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        pass
    now = _proc_start(pid)
    return not (start and now and start != now)


class OutputLock:
    """``with OutputLock(folder):`` — hold ``folder`` for this run (see the module doc).
    Creates ``folder`` if needed, and removes it again on release if this lock created
    it and it is still empty (a run that failed early leaves nothing behind)."""

    def __init__(self, folder: Path, run_id: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self.run_id = run_id if run_id is not None else (os.environ.get(_RUN_ID_ENV) or None)
        self.owner = False
        self.created = False

    def _info(self) -> dict[str, Any]:
        return {"pid": os.getpid(), "host": socket.gethostname(), "run_id": self.run_id,
                "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "proc_start": _proc_start(os.getpid())}

    def _holder(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            return data if isinstance(data, dict) else {}
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # being written, or garbage: treated as held by an unknown process

    def acquire(self) -> "OutputLock":
        try:
            self.created = not self.folder.exists()
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputNotWritableError(f"cannot create the output folder {self.folder}: {_reason(exc)}") from None
        for _ in range(20):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    continue  # released meanwhile: try again
                if self.run_id and holder.get("run_id") == self.run_id:
                    return self  # another rank of this torchrun job holds it for all of us
                pid = int(holder.get("pid") or 0) if str(holder.get("pid", "")).isdigit() else 0
                same_host = holder.get("host") == socket.gethostname()
                if holder and same_host and not _pid_alive(pid, holder.get("proc_start")):
                    try:  # stale: its process is gone
                        self.path.unlink()
                    except FileNotFoundError:
                        pass
                    continue
                if not holder:  # being written right now, or its writer died in between
                    time.sleep(0.05)
                    if self._holder() == {}:
                        if time.time() - self.path.stat().st_mtime > UNREADABLE_STALE_S:
                            self.path.unlink(missing_ok=True)
                            continue
                        raise OutputBusyError(f"{self.folder} is locked ({self.path} is unreadable); if no blinddps "
                                              f"run is using it, delete {self.path}")
                    continue
                where = f"pid {pid}" + ("" if same_host else f" on {holder.get('host')}")
                raise OutputBusyError(
                    f"{self.folder} is in use by another blinddps run ({where}, started {holder.get('started', '?')}); "
                    f"wait for it to finish or choose another --out"
                    + ("" if same_host else f" (delete {self.path} if that run is gone)")
                )
            except OSError as exc:
                raise OutputNotWritableError(f"cannot write to {self.folder}: {_reason(exc)}") from None
            try:
                os.write(fd, json.dumps(self._info()).encode("utf-8"))
            except OSError as exc:  # a full disk
                os.close(fd)
                self.path.unlink(missing_ok=True)
                raise OutputNotWritableError(f"cannot write to {self.folder}: {_reason(exc)}") from None
            os.close(fd)
            self.owner = True
            _HELD.append(self)
            return self
        raise OutputBusyError(f"could not lock {self.folder} (its lock file keeps changing)")

    def release(self) -> None:
        if self in _HELD:
            _HELD.remove(self)
        if self.owner:
            holder = self._holder()
            if holder is not None and holder.get("pid") == os.getpid():
                try:
                    self.path.unlink()
                except OSError:
                    pass
            self.owner = False
        if self.created:
            try:
                self.folder.rmdir()  # only if empty
            except OSError:
                pass

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


_HELD: list[OutputLock] = []


def release_all_locks() -> None:
    """Release every lock this process holds (an emergency exit that skips ``finally``)."""
    for lock in list(_HELD):
        try:
            lock.release()
        except OSError:
            pass


# ----------------------------------------------------------------------------- markers
def mark_incomplete(folder: Path, info: dict[str, Any]) -> None:
    """Write the incomplete marker (atomically) before a result's first file."""
    from .io import save_json

    save_json(Path(folder) / INCOMPLETE_NAME, {**info, "pid": os.getpid()})


def is_incomplete(folder: Path) -> bool:
    """Whether ``folder`` holds a result of ours that was cut short (marker, no summary)."""
    folder = Path(folder)
    return (folder / INCOMPLETE_NAME).is_file() and not (folder / "summary.json").is_file()


def incomplete_command(folder: Path) -> str | None:
    """The command whose cut-short result the marker records (None if unreadable)."""
    try:
        data = json.loads((Path(folder) / INCOMPLETE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data.get("command") if isinstance(data, dict) else None


def clear_incomplete(folder: Path) -> None:
    try:
        (Path(folder) / INCOMPLETE_NAME).unlink()
    except FileNotFoundError:
        pass


def remove_stale_parts(folder: Path, names: Sequence[str]) -> list[Path]:
    """Remove the ``.NAME.*.part`` temporaries (of :func:`blinddps.io.atomic_path`) of
    ``names`` and of the marker; call only while holding the folder's lock."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for name in (*names, INCOMPLETE_NAME):
        for p in folder.glob(f".{name}.*.part"):
            try:
                p.unlink()
                removed.append(p)
            except OSError:
                pass
    return removed


# ----------------------------------------------------------------------------- settings
def _plain(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))


def settings_difference(before: dict[str, Any], now: dict[str, Any]) -> str | None:
    """The first difference between two settings dicts as ``"KEY: A there, B now"``
    (nested keys joined with '.'), or None when they agree (compared as JSON values)."""
    return _diff(_plain(before), _plain(now), "")


def _diff(a: Any, b: Any, path: str) -> str | None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a:
                return f"{sub}: not set there, {json.dumps(b[key])} now"
            if key not in b:
                return f"{sub}: {json.dumps(a[key])} there, not set now"
            found = _diff(a[key], b[key], sub)
            if found:
                return found
        return None
    if a != b:
        return f"{path or 'value'}: {json.dumps(a)} there, {json.dumps(b)} now"
    return None


# ----------------------------------------------------------------------------- fault injection
def fault_point(stage: str) -> None:
    """The fault-injection hook: send this process a signal at ``stage`` when
    ``BLINDDPS_TEST_KILL_AT`` names it — ``BLINDDPS_TEST_SIGNAL`` (KILL by default; TERM,
    INT, STOP) — for the reliability tests; a no-op otherwise."""
    if os.environ.get(KILL_ENV) == stage:
        name = os.environ.get(SIGNAL_ENV, "KILL").upper().removeprefix("SIG")
        os.kill(os.getpid(), getattr(signal, f"SIG{name}"))
