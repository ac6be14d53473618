"""Fault injection (issue 18): kills at each write stage, SIGTERM, concurrent runs on one
--out, settings changed between runs, read-only outputs, decompression bombs, bad
presets, bad API input, memory estimates, start-up time. Flat priors (no network) keep
every solve to milliseconds; kills run in a forked copy of this process (no start-up)."""
from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from blinddps import outputs
from blinddps.cli import main
from blinddps.io import ImageReadError, _chunk, _PNG_SIG, decode_png, read_image
from blinddps.memory import InsufficientMemoryError, check_memory, estimate_bytes
from blinddps.presets import PresetError, check_override_keys, load_preset, merge, validate_preset

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)
fork_only = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")


@pytest.fixture(scope="module")
def FLAT(tmp_path_factory) -> dict:
    """A tiny preset: a tiny random-weight image prior, a flat kernel prior, 3 steps."""
    from _tiny import TINY
    from blinddps.models.checkpoints import save_model
    from blinddps.models.unet import create_model

    torch.manual_seed(0)
    img = save_model(create_model(image_size=16, in_channels=3, **TINY), tmp_path_factory.mktemp("m") / "img")
    return {"name": "tiny", "operator": {"name": "blind_blur", "kernel_size": 5}, "steps": 3,
            "priors": {"image": {"model": str(img), "step": {"rule": "stride", "scale": 0.1}},
                       "kernel": {"model": "flat", "transform": "kernel_simplex",
                                  "step": {"rule": "stride", "scale": 0.05}}}}


@pytest.fixture()
def setup(tmp_path, FLAT):
    (tmp_path / "flat.yaml").write_text(yaml.safe_dump(FLAT))
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):
        Image.fromarray((RNG.random((12, 14, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    return {"preset": str(tmp_path / "flat.yaml"), "in": folder, "out": tmp_path / "out"}


def deblur(s, *extra) -> list[str]:
    return ["deblur", str(s["in"]), "--out", str(s["out"]), "--preset", s["preset"], "--quiet", *map(str, extra)]


def one_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("blinddps: error: ") and "Traceback" not in err, err
    return lines[0]


def forked(argv: list[str], env: dict[str, str], stop: bool = False) -> int:
    """Run ``main(argv)`` in a fork with ``env``; its exit status (-N: killed by signal N).
    ``stop``: return as soon as the child is stopped (SIGSTOP), its pid as a negative."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.environ.update(env)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
            os.dup2(devnull, 2)
            rc = main(argv)
        except BaseException:  # noqa: BLE001
            rc = 99
        os._exit(rc)
    _, status = os.waitpid(pid, os.WUNTRACED if stop else 0)
    if stop and os.WIFSTOPPED(status):
        return -pid
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def results(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and p.name not in ("summary.json", "index.csv", "comparison.png")}


def leftovers(out: Path) -> list[str]:
    return sorted(str(p.relative_to(out)) for p in out.rglob(".*")
                  if p.name.endswith(".part") or p.name in (outputs.LOCK_NAME, outputs.INCOMPLETE_NAME))


# ----------------------------------------------------------------------------- kills
STAGES = ["marked", "before:restored.png", "part:restored.png", "before:kernel.npy", "part:kernel.npy",
          "before:summary.json", "part:summary.json", "after:summary.json"]


@fork_only
@pytest.mark.parametrize("stage", STAGES)
def test_sigkill_at_each_write_stage_resumes_without_overwrite(setup, tmp_path, capsys, stage):
    ref = dict(setup, out=tmp_path / "ref")
    assert main(deblur(ref)) == 0
    capsys.readouterr()
    assert forked(deblur(setup), {outputs.KILL_ENV: stage}) == -signal.SIGKILL
    first = setup["out"] / "im0"
    assert first.is_dir() and (outputs.LOCK_NAME in os.listdir(setup["out"]))  # the dead run's lock stays
    rc = main(deblur(setup))  # no --overwrite: the stale lock is recovered, the cut-short folder redone
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert (first / "summary.json").is_file() and leftovers(setup["out"]) == []
    assert results(setup["out"]) == results(ref["out"])  # the same files, bit for bit, as an uninterrupted run
    assert out.count(": ok,") + out.count(": skipped") == 3


@fork_only
def test_sigterm_cleans_the_partial_folder_and_releases_the_lock(setup, capsys):
    single = ["deblur", str(setup["in"] / "im0.png"), "--out", str(setup["out"]), "--preset", setup["preset"]]
    rc = forked(single, {outputs.KILL_ENV: "before:kernel.npy", outputs.SIGNAL_ENV: "TERM"})
    assert rc == 143
    assert not setup["out"].exists()  # a folder of its own: removed with everything in it, lock included
    rc = forked(deblur(setup), {outputs.KILL_ENV: "part:kernel.npy", outputs.SIGNAL_ENV: "TERM"})
    assert rc == 143 and leftovers(setup["out"]) == [] and not (setup["out"] / "im0").exists()
    assert main(deblur(setup)) == 0


def test_sigterm_message_and_exit_code_in_process(setup, capsys, monkeypatch):
    from blinddps import figures

    def term(*a, **k):
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(figures, "save_comparison", term)
    rc = main(deblur(setup))
    err = capsys.readouterr().err
    assert rc == 143 and "terminated" in err and "Traceback" not in err
    assert leftovers(setup["out"]) == [] and not any((setup["out"] / f"im{i}").exists() for i in range(3))
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler was put back


@fork_only
def test_sigterm_inside_one_long_torch_operation_still_exits_promptly():
    """The Python handler cannot run while the main thread is inside one C++ op (minutes
    on a large photo); the watcher thread exits after the grace period anyway."""
    import threading

    from blinddps import cli

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.environ[cli.SIGNAL_GRACE_ENV] = "0.3"
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        try:
            with cli.signal_handling():
                a = torch.randn(6000, 6000)
                threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
                torch.mm(a, a)  # several seconds in one call
        except cli.Terminated:
            os._exit(77)  # the handler ran only after the op: the watcher did not act
        os._exit(0)
    t0 = time.perf_counter()
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 143
    assert time.perf_counter() - t0 < 5


# ----------------------------------------------------------------------------- concurrency
@fork_only
def test_second_run_on_a_held_folder_is_refused_and_a_dead_holders_lock_recovered(setup, capsys):
    pid = -forked(deblur(setup), {outputs.KILL_ENV: "marked", outputs.SIGNAL_ENV: "STOP"}, stop=True)
    assert pid > 0
    try:
        rc = main(deblur(setup))  # the first run is alive (stopped) and holds --out
        line = one_line(capsys.readouterr().err)
        assert rc == 1 and f"pid {pid}" in line and "in use" in line
        assert not (setup["out"] / "im0" / "summary.json").exists()
    finally:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    assert main(deblur(setup)) == 0  # its lock is stale now
    assert all((setup["out"] / f"im{i}" / "summary.json").is_file() for i in range(3))
    assert leftovers(setup["out"]) == []


def test_lock_of_a_live_process_and_of_a_dead_one(tmp_path):
    (tmp_path / "o").mkdir()  # (a folder the lock creates goes again with it when left empty)
    held = outputs.OutputLock(tmp_path / "o").acquire()
    with pytest.raises(outputs.OutputBusyError, match=f"pid {os.getpid()}"):
        outputs.OutputLock(tmp_path / "o").acquire()
    held.release()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "o" / outputs.LOCK_NAME).write_text(json.dumps({"pid": dead.pid, "host": os.uname().nodename}))
    lock = outputs.OutputLock(tmp_path / "o").acquire()  # stale: taken over
    assert json.loads((tmp_path / "o" / outputs.LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / "o" / outputs.LOCK_NAME).exists()
    if Path("/proc/self/stat").is_file():  # a reused pid is told by its start time (Linux)
        (tmp_path / "o" / outputs.LOCK_NAME).write_text(json.dumps(
            {"pid": os.getpid(), "host": os.uname().nodename, "proc_start": "1"}))  # this pid, another process
        outputs.OutputLock(tmp_path / "o").acquire().release()
    (tmp_path / "o" / outputs.LOCK_NAME).write_text("")  # its writer died between creating and writing it
    with pytest.raises(outputs.OutputBusyError, match="unreadable"):
        outputs.OutputLock(tmp_path / "o").acquire()
    os.utime(tmp_path / "o" / outputs.LOCK_NAME, (time.time() - 60, time.time() - 60))
    outputs.OutputLock(tmp_path / "o").acquire().release()
    shared = outputs.OutputLock(tmp_path / "o", run_id="job1").acquire()
    outputs.OutputLock(tmp_path / "o", run_id="job1").acquire()  # another rank of the same torchrun job
    with pytest.raises(outputs.OutputBusyError):
        outputs.OutputLock(tmp_path / "o", run_id="job2").acquire()
    shared.release()


@pytest.mark.parametrize("argv", [["train", "kernel", "--config", "none.yaml"], ["evaluate", "--config", "motion128"],
                                  ["simulate", "x.png", "--blur", "motion"], ["demo"]])
def test_every_command_that_writes_a_folder_holds_its_lock(tmp_path, capsys, argv):
    (tmp_path / "x.png").write_bytes(b"")
    held = outputs.OutputLock(tmp_path / "o").acquire()
    try:
        argv = [a.replace("x.png", str(tmp_path / "x.png")) for a in argv]
        rc = main([*argv, "--out", str(tmp_path / "o")])
        assert rc == 1 and "in use by another blinddps run" in one_line(capsys.readouterr().err)
    finally:
        held.release()


# ----------------------------------------------------------------------------- resume and settings
def test_resume_refuses_results_of_other_settings_and_names_the_difference(setup, capsys):
    assert main(deblur(setup)) == 0
    capsys.readouterr()
    for extra, text in ((["--steps", 4], "steps: 3 there, 4 now"), (["--samples", 2], "samples: 1 there, 2 now"),
                        (["--seed", 1], "seed: 0 there, 1 now"), (["--boundary", "zero"], "config.operator.mode"),
                        (["--kernel-size", 3], "config.operator.kernel_size: 5 there, 3 now")):
        rc = main(deblur(setup, *extra))
        line = one_line(capsys.readouterr().err)
        assert rc == 2 and text in line and "--overwrite" in line, (extra, line)
    before = (setup["out"] / "im0" / "kernel.npy").read_bytes()
    assert main(deblur(setup)) == 0 and "skipped" in capsys.readouterr().out  # same settings: skipped
    assert main(deblur(setup, "--steps", 4, "--overwrite")) == 0
    assert json.loads((setup["out"] / "im0" / "summary.json").read_text())["settings"]["steps"] == 4
    assert (setup["out"] / "im0" / "kernel.npy").read_bytes() != before


def test_simulate_resume_checks_settings_too(setup, capsys):
    args = ["simulate", str(setup["in"]), "--out", str(setup["out"]), "--blur", "motion", "--kernel-size", "5"]
    assert main(args) == 0
    capsys.readouterr()
    rc = main([*args, "--noise", "0.05"])
    assert rc == 2 and "noise: 0.02 there, 0.05 now" in one_line(capsys.readouterr().err)


@fork_only
def test_a_cut_short_result_of_another_command_is_not_taken_over(setup, capsys):
    assert forked(deblur(setup), {outputs.KILL_ENV: "before:kernel.npy"}) == -signal.SIGKILL
    rc = main(["simulate", str(setup["in"]), "--out", str(setup["out"]), "--blur", "motion", "--kernel-size", "5"])
    assert rc == 2 and "unfinished result of 'deblur'" in one_line(capsys.readouterr().err)
    assert main(deblur(setup)) == 0


def test_foreign_files_are_still_never_replaced(setup, capsys):
    (setup["out"] / "im1").mkdir(parents=True)
    (setup["out"] / "im1" / "restored.png").write_bytes(b"the user's own file")
    rc = main(deblur(setup))
    assert rc == 2 and "--overwrite" in one_line(capsys.readouterr().err)
    assert (setup["out"] / "im1" / "restored.png").read_bytes() == b"the user's own file"
    assert not (setup["out"] / outputs.LOCK_NAME).exists()


# ----------------------------------------------------------------------------- unwritable output
def test_unwritable_out_is_found_before_any_solve(setup, tmp_path, capsys, monkeypatch):
    import blinddps.api

    def never(*a, **k):
        raise AssertionError("solve ran")

    monkeypatch.setattr(blinddps.api, "solve", never)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["deblur", str(setup["in"]), "--out", str(blocker / "out"), "--preset", setup["preset"]])
    assert rc == 2 and "cannot create the output folder" in one_line(capsys.readouterr().err)
    if os.geteuid() != 0:  # root writes anywhere: the permission case needs another user
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        try:
            rc = main(["deblur", str(setup["in"]), "--out", str(ro), "--preset", setup["preset"]])
            assert rc == 2 and "cannot write" in one_line(capsys.readouterr().err)
        finally:
            ro.chmod(0o700)


def test_a_full_disk_while_locking_is_one_line_and_leaves_no_lock(setup, capsys, monkeypatch):
    import errno

    real = os.write

    def full(fd, data):
        if b'"pid"' in bytes(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data)

    setup["out"].mkdir()
    monkeypatch.setattr(os, "write", full)
    rc = main(deblur(setup))
    monkeypatch.undo()
    assert rc == 2 and "No space left on device" in one_line(capsys.readouterr().err)
    assert list(setup["out"].iterdir()) == []


def test_check_writable_reports_in_one_line(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(outputs.OutputNotWritableError, match="cannot write to"):
        outputs.check_writable(tmp_path / "f" / "sub")


# ----------------------------------------------------------------------------- bombs
def _png(w: int, h: int, depth: int, ctype: int, idat: bytes) -> bytes:
    return (_PNG_SIG + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, 0))
            + _chunk(b"IDAT", idat) + _chunk(b"IEND", b""))


def test_16bit_png_bomb_is_refused_from_its_header(tmp_path, capsys):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png(40000, 40000, 16, 2, zlib.compress(b"\0" * (1 << 20), 9)))
    t0 = time.perf_counter()
    with pytest.raises(ImageReadError, match="decompression bomb"):
        read_image(bomb)
    with pytest.raises(ValueError, match="decompression bomb"):
        decode_png(bomb.read_bytes())
    assert time.perf_counter() - t0 < 1.0
    rc = main(["simulate", str(bomb), "--out", str(tmp_path / "o"), "--blur", "motion"])
    assert rc == 2 and "40000x40000" in one_line(capsys.readouterr().err)


def test_inflate_stops_at_the_declared_size(tmp_path):
    rows = b"".join(b"\0" + bytes(4 * 6) for _ in range(4))  # 4x4 16-bit RGB, filter 0
    stream = zlib.compress(rows + b"\0" * (64 << 20), 9)  # and 64 MB more that nobody asked for
    arr, _ = decode_png(_png(4, 4, 16, 2, stream))
    assert arr.shape == (4, 4, 3) and arr.dtype == np.uint16 and not arr.any()


@pytest.mark.parametrize("kind", ["png8", "png16", "tiff", "npy", "jpeg"])
def test_every_decoder_honours_the_pixel_limit(tmp_path, monkeypatch, kind):
    a8 = (RNG.random((20, 30, 3)) * 255).astype(np.uint8)
    path = tmp_path / f"x.{ {'png8': 'png', 'png16': 'png', 'tiff': 'tif', 'npy': 'npy', 'jpeg': 'jpg'}[kind]}"
    if kind == "png16":
        from blinddps.io import encode_png

        path.write_bytes(encode_png(a8.astype(np.uint16) * 257))
    elif kind == "tiff":
        import tifffile

        tifffile.imwrite(path, a8)
    elif kind == "npy":
        np.save(path, a8.astype(np.float32) / 255)
    else:
        Image.fromarray(a8).save(path)
    assert read_image(path)[0].shape == (1, 3, 20, 30)
    monkeypatch.setenv("BLINDDPS_MAX_PIXELS", "599")
    with pytest.raises(ImageReadError, match="30x20 pixels"):
        read_image(path)


def test_npy_declaring_more_than_it_holds(tmp_path):
    p = tmp_path / "short.npy"
    with open(p, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": "<f4", "fortran_order": False, "shape": (9000, 9000)})
        f.write(b"\0" * 64)
    with pytest.raises(ImageReadError, match="truncated"):
        read_image(p)


# ----------------------------------------------------------------------------- presets
@pytest.mark.parametrize("text,key", [
    ("stepz: 3", "stepz"), ("num_sampels: 2", "num_sampels"), ("steps: lots", "steps"), ("steps: -3", "steps"),
    ("steps: 0", "steps"), ("num_samples: 1.5", "num_samples"), ("method: ddmp", "method"),
    ("priors: {kernel: {data_wieght: 0.3}}", "data_wieght"), ("priors: {kernel: {step: {scael: 1}}}", "scael"),
    ("operator: {kernel_sise: 9}", "kernel_sise"), ("priors: {kernal: {model: flat}}", "kernal"),
    ("priors: {kernel: {transform: {name: kernel_simplex, floor: 3}}}", "floor"),
    ("runtime: {compiel: true}", "compiel"), ("eta: fast", "eta"),
])
def test_bad_preset_keys_and_values_are_one_line_errors_naming_key_and_file(setup, tmp_path, capsys, text, key):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"base: {setup['preset']}\n{text}\n")
    with pytest.raises(PresetError) as err:
        load_preset(str(bad))
    assert str(bad) in str(err.value) and key in str(err.value) and "\n" not in str(err.value)
    rc = main(["deblur", str(setup["in"]), "--out", str(setup["out"]), "--preset", str(bad)])
    line = one_line(capsys.readouterr().err)
    assert rc == 2 and str(bad) in line and key in line
    assert not setup["out"].exists()


def test_typos_get_a_suggestion(FLAT):
    with pytest.raises(PresetError, match="did you mean 'num_samples'"):
        validate_preset(merge(FLAT, {"num_sampels": 2}))


def _eval_configs() -> list[Path]:
    return sorted((ROOT / "configs" / "eval").glob("*.yaml"))


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_preset_passes_the_schema(path):
    validate_preset(load_preset(path), str(path))


@pytest.mark.parametrize("path", _eval_configs(), ids=lambda p: p.name)
def test_every_evaluation_config_names_a_valid_preset_and_valid_overrides(path):
    cfg = yaml.safe_load(path.read_text())
    if "preset" not in cfg:
        pytest.skip("no preset named (the benchmark's default)")
    preset = load_preset(cfg["preset"])
    for method, opts in {"": {}, **(cfg.get("method_options") or {})}.items():
        over = {k: v for k, v in opts.items() if k in ("steps", "num_samples") or k not in ("seed", "device")}
        check_override_keys(over, f"{path} {method}")
        validate_preset(merge(preset, over), f"{path} {method}")


# ----------------------------------------------------------------------------- the Python API
@pytest.mark.parametrize("bad,text", [
    (lambda y: ((y + 1) * 127.5).to(torch.uint8), "value_range=(0, 255)"),
    (lambda y: (y + 1) / 2, "value_range=(0, 1)"),
    (lambda y: y * 100, "far outside"),
    (lambda y: y.masked_fill(y > 0.9, float("nan")), "NaN"),
    (lambda y: y.masked_fill(y > 0.9, float("inf")), "NaN or infinite"),
    (lambda y: y > 0, "real numbers"),
])
def test_solve_refuses_data_on_another_scale(FLAT, bad, text):
    from blinddps import solve

    y = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with pytest.raises(ValueError, match=text.replace("(", r"\(").replace(")", r"\)")):
        solve(bad(y), FLAT)


def test_solve_maps_an_explicit_value_range(FLAT):
    from blinddps import solve

    y = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0)) * 2 - 1
    ref = solve(y, FLAT, seed=1)
    u8 = np.round((y.numpy() + 1) * 127.5).astype(np.uint8)
    as_u8 = solve(u8, FLAT, seed=1, value_range=(0, 255))
    unit = solve((y + 1) / 2, FLAT, seed=1, value_range=(0, 1))
    torch.testing.assert_close(unit.image, ref.image, atol=1e-5, rtol=0)
    assert (as_u8.image - ref.image).abs().max() < 0.05  # 8-bit quantisation
    bright = solve(y.abs(), FLAT, seed=1, value_range=(-1, 1))  # no negatives, but said to be [-1, 1]
    assert bright.image.shape == (1, 3, 12, 12)


@pytest.mark.parametrize("kwargs,text", [
    ({"steps": 0}, "steps"), ({"steps": -3}, "steps"), ({"steps": "lots"}, "steps"),
    ({"stepz": 3}, "did you mean 'steps'"), ({"num_sampels": 2}, "unknown keyword argument 'num_sampels'"),
    ({"priors": {"kernel": {"data_wieght": 0.3}}}, "data_wieght"), ({"value_range": (1, 0)}, "hi > lo"),
])
def test_solve_refuses_bad_keywords(FLAT, kwargs, text):
    from blinddps import solve

    y = torch.rand(1, 3, 12, 12) * 2 - 1
    with pytest.raises(ValueError, match=text) as err:
        solve(y, FLAT, **kwargs)
    assert "\n" not in str(err.value)


# ----------------------------------------------------------------------------- memory
def test_memory_estimate_refuses_before_sampling_with_a_suggestion(FLAT, monkeypatch):
    import blinddps.api
    import blinddps.memory

    class Net:  # the calibrated width: 64 channels at pixel_unshuffle 4
        config = {"num_channels": 64, "pixel_unshuffle": 4}

    need = estimate_bytes({"image": (Net(), 1000 * 1000)}, 4)
    assert 5.5e9 < need < 6.5e9  # 150 MB + 1.5 kB x 1 MP x 4 samples
    with pytest.raises(InsufficientMemoryError) as err:
        check_memory({"image": (Net(), 1000 * 1000)}, 1, 4, (1000, 1000), available=2 * 2**30)
    msg = str(err.value)
    assert "--samples 1" in msg and "downscaling the image to about" in msg and "\n" not in msg
    monkeypatch.setenv("BLINDDPS_MEMORY_CHECK", "0")
    assert check_memory({"image": (Net(), 10**9)}, 1, 4, (1, 1), available=1) == 0
    monkeypatch.delenv("BLINDDPS_MEMORY_CHECK")

    monkeypatch.setattr(blinddps.memory, "available_bytes", lambda device: 1)

    def never(*a, **k):
        raise AssertionError("sampling started")

    monkeypatch.setattr(blinddps.api, "sample", never)
    with pytest.raises(MemoryError, match="free on cpu"):
        blinddps.api.solve(torch.rand(1, 3, 16, 16) * 2 - 1, FLAT)


def test_cli_reports_insufficient_memory_in_one_line(setup, capsys, monkeypatch):
    import blinddps.memory

    monkeypatch.setattr(blinddps.memory, "available_bytes", lambda device: 1)
    rc = main(deblur(setup))
    err = capsys.readouterr().err
    assert rc == 1 and err.count("needs about") == 3 and "Traceback" not in err
    assert not any((setup["out"] / f"im{i}").exists() for i in range(3))


# ----------------------------------------------------------------------------- start-up
def test_help_version_and_argument_errors_do_not_import_torch():
    code = ("import sys\nfrom blinddps.cli import main\n"
            "for argv in (['--version'], ['--help'], ['deblur', '--help'], ['frobnicate'], ['deblur', 'x', '--out', "
            "'o', '--steps', '0'], ['deblur', 'missing.png', '--out', 'o'], ['train', '--help'], ['train', 'x']):\n"
            "    main(argv)\n    assert 'torch' not in sys.modules, argv\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- launcher
def test_launch_splits_torchrun_options_and_maps_exit_codes():
    from blinddps.launch import _status, split_argv

    assert split_argv(["--standalone", "--nproc-per-node", "2", "deblur", "a", "--out", "o"]) == (
        ["--standalone", "--nproc-per-node", "2"], ["deblur", "a", "--out", "o"])
    with pytest.raises(ValueError):
        split_argv(["--standalone"])
    assert _status([2, 2]) == 2 and _status([2, 1]) == 1 and _status([-15]) == 143 and _status([-9]) == 1
    assert _status([2, -15]) == 2 and _status([-2, 130]) == 130 and _status([]) == 1


def test_launch_reports_a_failed_worker_in_one_line(setup, tmp_path):
    (setup["in"] / "zz.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "blinddps.launch", "--standalone", "--nproc-per-node", "1",
                        *deblur(setup), "--device", "cpu"], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "ChildFailedError" not in r.stderr, r.stderr
    assert "blinddps.launch: 1 worker(s) failed (rank 0: exit 2)" in r.stderr
    assert "1 failed" in r.stdout and (setup["out"] / "index.csv").is_file()
