"""The ``blinddps`` command through its real entry point (``main([...])`` in-process, and
``python -m blinddps`` in a subprocess), on tiny random-weight priors."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from blinddps import cli
from blinddps.cli import main
from blinddps.io import decode_png, encode_png, read_image
from blinddps.models.checkpoints import save_model

from _tiny import save_tiny_priors  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny priors (image 3-channel, kernel 8x8, tilt 16x16) and presets using them."""
    d = tmp_path_factory.mktemp("tiny")
    img, ker, tilt = save_tiny_priors(d)
    deblur = {
        "name": "tiny", "operator": {"name": "blind_blur", "kernel_size": 8}, "steps": 2,
        "priors": {
            "image": {"model": str(img), "step": {"rule": "stride", "scale": 0.1}},
            "kernel": {"model": str(ker), "transform": "kernel_simplex", "step": {"rule": "stride", "scale": 0.05}},
        },
    }
    (d / "tiny.yaml").write_text(yaml.safe_dump(deblur))
    turb = yaml.safe_load(yaml.safe_dump(deblur))
    turb["name"] = "tinyturb"
    turb["operator"] = {"name": "turbulence", "kernel_size": 8, "tilt_scale": 2.5}
    turb["priors"]["tilt"] = {"model": str(tilt), "transform": {"name": "scale", "scale": 2.5},
                              "step": {"rule": "stride", "scale": 0.05}}
    (d / "tinyturb.yaml").write_text(yaml.safe_dump(turb))
    return {"dir": d, "preset": str(d / "tiny.yaml"), "turb": str(d / "tinyturb.yaml"),
            "img": str(img), "ker": str(ker)}


def run(argv, capsys):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("blinddps: error: ") and "Traceback" not in err
    return lines[0]


def make_inputs(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "rgb.png": (RNG.random((20, 30, 3)) * 255).astype(np.uint8),
        "rgba.png": (RNG.random((18, 22, 4)) * 255).astype(np.uint8),
        "grey16.png": (RNG.random((17, 23)) * 65535).astype(np.uint16),
        "arr.npy": RNG.random((19, 21)).astype(np.float32),
    }
    for name, a in arrays.items():
        if name.endswith(".npy"):
            np.save(folder / name, a)
        else:
            Image.fromarray(a).save(folder / name)
    return arrays


# ----------------------------------------------------------------------------- deblur
def test_deblur_folder_keeps_size_mode_bit_depth_and_alpha(tiny, tmp_path, capsys):
    arrays = make_inputs(tmp_path / "in")
    rc, out, err = run(["deblur", tmp_path / "in", "--out", tmp_path / "res", "--preset", tiny["preset"]], capsys)
    assert rc == 0, err
    assert out.count(": ok,") == 4 and "residual" in out
    res = tmp_path / "res"
    rgb = Image.open(res / "rgb" / "restored.png")
    assert (rgb.mode, rgb.size) == ("RGB", (30, 20))
    rgba = Image.open(res / "rgba" / "restored.png")
    assert (rgba.mode, rgba.size) == ("RGBA", (22, 18))
    assert np.array_equal(np.asarray(rgba)[..., 3], arrays["rgba.png"][..., 3])
    g = Image.open(res / "grey16" / "restored.png")
    assert g.mode.startswith("I;16") and g.size == (23, 17) and np.asarray(g).dtype == np.uint16
    a = np.load(res / "arr" / "restored.npy")
    assert a.shape == (19, 21) and a.dtype == np.float32
    for stem in ("rgb", "rgba", "grey16", "arr"):
        d = res / stem
        k = np.load(d / "kernel.npy")
        assert k.shape == (8, 8) and k.dtype == np.float32 and abs(float(k.sum()) - 1) < 1e-5 and k.min() >= 0
        assert (d / "kernel.png").is_file() and (d / "comparison.png").is_file()
        assert not (d / "std.png").exists()
        s = json.loads((d / "summary.json").read_text())
        assert s["status"] == "ok" and s["preset"] == "tiny" and s["seed"] == 0
        assert s["settings"]["boundary"] == "valid" and s["config"]["operator"]["mode"] == "valid"
        assert s["settings"]["steps"] == 2 and s["versions"]["blinddps"] and s["versions"]["torch"]
        assert s["residual_rms"] > 0 and s["timings"]["seconds"] > 0
        assert s["input"]["path"].endswith(stem + (".npy" if stem == "arr" else ".png"))
    assert json.loads((res / "grey16" / "summary.json").read_text())["input"]["bit_depth"] == 16
    rows = list(csv.DictReader(open(res / "index.csv")))
    assert [r["status"] for r in rows] == ["ok"] * 4
    assert set(rows[0]) == {"input", "status", "seconds", "residual", "error", "output"}


def test_single_file_writes_into_out_with_samples_and_zero_boundary(tiny, tmp_path, capsys):
    Image.fromarray((RNG.random((16, 24, 3)) * 255).astype(np.uint8)).save(tmp_path / "p.jpg")
    rc, out, err = run(["deblur", tmp_path / "p.jpg", "--out", tmp_path / "r", "--preset", tiny["preset"],
                        "--samples", 2, "--boundary", "zero", "--steps", 3, "--seed", 7], capsys)
    assert rc == 0, err
    r = tmp_path / "r"
    assert {p.name for p in r.iterdir()} == {"restored.png", "kernel.npy", "kernel.png", "comparison.png",
                                             "std.png", "std.npy", "summary.json"}
    assert np.load(r / "std.npy").shape == (16, 24, 3)
    s = json.loads((r / "summary.json").read_text())
    assert s["config"]["operator"]["mode"] == "same" and s["settings"]["samples"] == 2
    assert s["settings"]["steps"] == 3 and s["seed"] == 7 and s["input"]["format"] == "JPEG"
    assert Image.open(r / "restored.png").size == (24, 16)


def test_batches_of_same_size_images(tiny, tmp_path, capsys):
    for i in range(3):
        Image.fromarray((RNG.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / f"im{i}.png")
    rc, out, err = run(["deblur", *(tmp_path / f"im{i}.png" for i in range(3)), "--out", tmp_path / "r",
                        "--preset", tiny["preset"], "--batch-size", 2, "--image-model", tiny["img"],
                        "--kernel-model", tiny["ker"]], capsys)
    assert rc == 0, err
    idx = sorted(json.loads((tmp_path / "r" / f"im{i}" / "summary.json").read_text())["settings"]["batch_index"]
                 for i in range(3))
    assert idx == [0, 0, 1]
    s = json.loads((tmp_path / "r" / "im0" / "summary.json").read_text())
    assert s["settings"]["image_model"] == tiny["img"]


def test_turbulence_writes_tilt(tiny, tmp_path, capsys):
    Image.fromarray((RNG.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "t.png")
    rc, out, err = run(["turbulence", tmp_path / "t.png", "--out", tmp_path / "r", "--preset", tiny["turb"]], capsys)
    assert rc == 0, err
    tilt = np.load(tmp_path / "r" / "tilt.npy")
    assert tilt.shape == (2, 16, 16) and tilt.dtype == np.float32
    assert (tmp_path / "r" / "tilt.png").is_file()
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert s["command"] == "turbulence" and s["tilt"]["max_px"] >= 0


def test_existing_results_are_skipped_or_refused_and_overwrite_replaces(tiny, tmp_path, capsys):
    Image.fromarray((RNG.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    args = ["deblur", tmp_path / "a.png", "--out", tmp_path / "r", "--preset", tiny["preset"]]
    assert run(args, capsys)[0] == 0
    restored = tmp_path / "r" / "restored.png"
    before = restored.stat().st_mtime_ns
    rc, out, err = run(args, capsys)  # complete result: skipped, untouched
    assert rc == 0 and "skipped" in out and restored.stat().st_mtime_ns == before
    (tmp_path / "r" / "summary.json").unlink()  # now an incomplete result: refused before any work
    rc, out, err = run(args, capsys)
    assert rc == 2 and "--overwrite" in one_error_line(err) and restored.stat().st_mtime_ns == before
    (tmp_path / "r" / "std.png").write_bytes(b"stale")
    rc, out, err = run([*args, "--overwrite"], capsys)
    assert rc == 0 and (tmp_path / "r" / "summary.json").is_file()
    assert not (tmp_path / "r" / "std.png").exists()  # stale output of another run removed
    Image.fromarray((RNG.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "b.png")
    rc, out, err = run(["deblur", tmp_path / "b.png", "--out", tmp_path / "r", "--preset", tiny["preset"]], capsys)
    assert rc == 2 and "holds the result" in one_error_line(err)  # another input's result is not "skipped"
    rc, out, err = run(["simulate", tmp_path / "a.png", "--out", tmp_path / "r", "--blur", "motion",
                        "--kernel-size", 8], capsys)
    assert rc == 2 and "holds the result" in one_error_line(err)
    rc, out, err = run(["deblur", tmp_path / "r" / "restored.png", "--out", tmp_path / "r", "--overwrite",
                        "--preset", tiny["preset"]], capsys)
    assert rc == 2 and "overwrite the input" in one_error_line(err)


def _bad_inputs(tmp_path: Path, tiny) -> dict[str, tuple[list, int, str]]:
    good = tmp_path / "good.png"
    Image.fromarray((RNG.random((20, 20, 3)) * 255).astype(np.uint8)).save(good)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(good.read_bytes()[:70])
    small = tmp_path / "small.png"
    Image.fromarray((RNG.random((6, 6, 3)) * 255).astype(np.uint8)).save(small)
    (tmp_path / "empty").mkdir()
    p = ["--preset", tiny["preset"]]
    o = ["--out", tmp_path / "o"]
    return {
        "missing file": (["deblur", tmp_path / "nope.png", *o, *p], 2, "not found"),
        "corrupt png": (["deblur", corrupt, *o, *p], 2, "corrupt"),
        "kernel larger than image": (["deblur", small, *o, *p], 2, "larger than the image"),
        "kernel size vs prior": (["deblur", good, *o, *p, "--kernel-size", 9, "--pipeline", "direct"], 2,
                                 "--kernel-size 8 or less"),
        "unknown preset": (["deblur", good, *o, "--preset", "no_such_preset"], 2, "unknown preset"),
        "missing checkpoint": (["deblur", good, *o, "--preset", "paper_motion_ffhq"], 2, "not found"),
        "missing model file": (["deblur", good, *o, *p, "--image-model", tmp_path / "x.safetensors"], 2, "not found"),
        "bad steps": (["deblur", good, *o, *p, "--steps", "0"], 2, "--steps"),
        "bad samples": (["deblur", good, *o, *p, "--samples", "two"], 2, "--samples"),
        "bad device": (["deblur", good, *o, *p, "--device", "tpu"], 2, "--device"),
        "missing --out": (["deblur", good, *p], 2, "--out"),
        "empty folder": (["deblur", tmp_path / "empty", *o, *p], 2, "no images"),
        "out is a file": (["deblur", good, "--out", good, *p], 2, "not a folder"),
        "unknown command": (["frobnicate"], 2, "invalid choice"),
        "bad intensity": (["simulate", good, *o, "--blur", "motion", "--intensity", "2"], 2, "--intensity"),
        "simulate kernel too large": (["simulate", small, *o, "--blur", "motion", "--kernel-size", 9], 2, "larger"),
    }


CASES = ["missing file", "corrupt png", "kernel larger than image", "kernel size vs prior", "unknown preset",
         "missing checkpoint", "missing model file", "bad steps", "bad samples", "bad device", "missing --out",
         "empty folder", "out is a file", "unknown command", "bad intensity", "simulate kernel too large"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_gives_one_line_and_exit_code(tiny, tmp_path, capsys, case, monkeypatch):
    monkeypatch.chdir(tmp_path)  # ./models and ~/.cache/blinddps/models are searched for checkpoints
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("BLINDDPS_MODELS", raising=False)
    argv, code, text = _bad_inputs(tmp_path, tiny)[case]
    rc, out, err = run(argv, capsys)
    line = one_error_line(err)
    assert rc == code and text in line
    assert not (tmp_path / "o" / "summary.json").exists()


def test_missing_shipped_prior_says_how_to_train(tmp_path, capsys, monkeypatch):
    import blinddps.models.checkpoints as ck
    from blinddps.presets import load_preset
    from blinddps.presets import load_preset

    monkeypatch.setattr(ck, "SHIPPED_DIR", tmp_path / "weights")
    Image.fromarray((RNG.random((40, 40, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    for argv in (["deblur", tmp_path / "a.png", "--out", tmp_path / "o"], ["demo", "--out", tmp_path / "d"]):
        rc, out, err = run(argv, capsys)
        line = one_error_line(err)
        assert rc == 2 and "blinddps train" in line and "image_photo64" in line


def test_folder_with_a_bad_image_goes_on_and_records_it(tiny, tmp_path, capsys):
    make_inputs(tmp_path / "in")
    (tmp_path / "in" / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    rc, out, err = run(["deblur", tmp_path / "in", "--out", tmp_path / "r", "--preset", tiny["preset"]], capsys)
    assert rc == 2 and one_error_line(err)
    rows = {Path(r["input"]).name: r for r in csv.DictReader(open(tmp_path / "r" / "index.csv"))}
    assert rows["zz_broken.png"]["status"] == "failed" and rows["zz_broken.png"]["error"]
    assert [rows[n]["status"] for n in ("rgb.png", "rgba.png", "grey16.png", "arr.npy")] == ["ok"] * 4
    assert not (tmp_path / "r" / "zz_broken").exists()
    rc, out, err = run(["deblur", tmp_path / "in", "--out", tmp_path / "r", "--preset", tiny["preset"]], capsys)
    rows = {Path(r["input"]).name: r for r in csv.DictReader(open(tmp_path / "r" / "index.csv"))}
    assert rows["rgb.png"]["status"] == "skipped" and float(rows["rgb.png"]["residual"]) > 0


def test_interrupt_exits_130_and_leaves_no_partial_result(tiny, tmp_path, capsys, monkeypatch):
    from blinddps import figures

    Image.fromarray((RNG.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(figures, "save_comparison", boom)  # Ctrl-C after some files are written
    rc, out, err = run(["deblur", tmp_path / "a.png", "--out", tmp_path / "r", "--preset", tiny["preset"]], capsys)
    assert rc == 130 and "interrupted" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())


def test_runtime_failure_is_exit_1_without_traceback(tiny, tmp_path, capsys, monkeypatch):
    import blinddps.api

    def fail(*a, **k):
        raise RuntimeError("out of memory\nsecond line")

    monkeypatch.setattr(blinddps.api, "solve", fail)
    Image.fromarray((RNG.random((16, 16, 3)) * 255).astype(np.uint8)).save(tmp_path / "a.png")
    rc, out, err = run(["deblur", tmp_path / "a.png", "--out", tmp_path / "r", "--preset", tiny["preset"]], capsys)
    assert rc == 1 and "out of memory second line" in one_error_line(err)


# ----------------------------------------------------------------------------- simulate
@pytest.mark.parametrize("blur", ["motion", "gaussian", "turbulence"])
def test_simulate_writes_ground_truth(tmp_path, capsys, blur):
    a = (RNG.random((24, 20, 3)) * 255).astype(np.uint8)
    Image.fromarray(a).save(tmp_path / "s.png")
    rc, out, err = run(["simulate", tmp_path / "s.png", "--out", tmp_path / "d", "--blur", blur,
                        "--kernel-size", 9, "--seed", 3], capsys)
    assert rc == 0, err
    d = tmp_path / "d"
    blurry, _ = decode_png((d / "blurry.png").read_bytes())
    assert blurry.dtype == np.uint16 and blurry.shape == (24, 20, 3)
    assert np.array_equal(np.asarray(Image.open(d / "sharp.png")), a)
    k = np.load(d / "kernel.npy")
    assert k.shape == (9, 9) and abs(float(k.sum()) - 1) < 1e-5
    assert (d / "tilt.npy").is_file() == (blur == "turbulence")
    if blur == "turbulence":
        assert np.load(d / "tilt.npy").shape == (2, 24, 20)
    s = json.loads((d / "summary.json").read_text())
    assert s["blur"] == blur and s["noise"] == 0.02 and s["seed"] == 3 and "zero padding" in s["protocol"]
    # the blurry image is the blur of the sharp one plus noise of about the requested size
    from blinddps.cli import simulate_one

    x, _ = read_image(d / "sharp.png")
    args = cli.build_parser().parse_args(["simulate", "x", "--out", "o", "--blur", blur, "--kernel-size", "9"])
    y = simulate_one(x, args, s["image_seed"])["y"].clamp(-1, 1)
    yb, _ = read_image(d / "blurry.png")
    assert float((y - yb).abs().max()) < 1e-4


def test_simulate_then_deblur_with_zero_boundary(tiny, tmp_path, capsys):
    Image.fromarray((RNG.random((16, 16)) * 255).astype(np.uint8)).save(tmp_path / "g.png")
    assert run(["simulate", tmp_path / "g.png", "--out", tmp_path / "d", "--blur", "gaussian",
                "--kernel-size", 8, "--std", 1.5], capsys)[0] == 0
    rc, out, err = run(["deblur", tmp_path / "d" / "blurry.png", "--out", tmp_path / "r", "--preset",
                        tiny["preset"], "--boundary", "zero"], capsys)
    assert rc == 0, err
    im = Image.open(tmp_path / "r" / "restored.png")
    assert im.mode.startswith("I;16") and im.size == (16, 16)  # blurry.png is 16-bit grey


# ----------------------------------------------------------------------------- models, demo, guards
def test_models_lists_checkpoints_and_shipped_priors(capsys):
    rc, out, err = run(["models"], capsys)
    assert rc == 0 and not err
    for name in ("image_ffhq256", "ffhq_10m.pt", "kernel64", "tilt256", "image_photo64", "kernel_motion32",
                 "motion_deblur", "looked for in"):
        assert name in out
    assert "present" in out or "missing" in out


def test_demo_with_stand_in_priors(tmp_path, capsys, monkeypatch):
    """The demo's code path, with random weights of the shipped priors' shapes."""
    import blinddps.models.checkpoints as ck
    from blinddps.presets import load_preset
    from blinddps.models.wrappers import build_model

    load_config = pytest.importorskip("blinddps.training.trainer").load_config
    w = tmp_path / "weights"
    for name in ("image_photo64", "kernel_motion32"):
        tc = load_config(ROOT / "configs" / "train" / f"{name}.yaml")
        cfg = {**tc.unet_config(), "pixel_unshuffle": int(tc.pixel_unshuffle)}
        torch.manual_seed(0)
        save_model(build_model(cfg), w / name)
    monkeypatch.setattr(ck, "SHIPPED_DIR", w)
    monkeypatch.setattr(cli, "DEMO_PHOTO_SIZE", 200)  # the photo part's code path, small
    monkeypatch.setattr(cli, "DEMO_PHOTO_KERNEL", 21)
    rc, out, err = run(["demo", "--out", tmp_path / "demo", "--steps", 2], capsys)
    assert rc == 0, err
    assert "PSNR blurry" in out and "kernel MNC" in out and "comparison.png" in out
    for name in cli.DEMO_SAMPLES:
        d = tmp_path / "demo" / name
        for f in ("blurry.png", "restored.png", "sharp.png", "kernel.npy", "kernel_true.npy", "comparison.png"):
            assert (d / f).is_file()
        assert Image.open(d / "restored.png").size == (128, 128)
    s = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert s["command"] == "demo" and set(s["metrics"]) == set(cli.DEMO_SAMPLES)
    assert s["photo"]["size"] == [200, 200] and 0 <= s["photo"]["kernel_mnc"] <= 1
    assert (tmp_path / "demo" / "photo" / "comparison.png").is_file()
    assert np.load(tmp_path / "demo" / "photo" / "kernel.npy").shape == (21, 21)
    assert s["steps"] == 2 and s["num_samples"] == load_preset(cli.DEMO_SOLVER_PRESET)["num_samples"]
    # re-running replaces a demo
    assert run(["demo", "--out", tmp_path / "demo", "--steps", 2, "--samples", 2], capsys)[0] == 0
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["num_samples"] == 2
    (tmp_path / "demo" / "summary.json").write_text('{"command": "deblur"}')
    rc, out, err = run(["demo", "--out", tmp_path / "demo", "--steps", 2], capsys)
    assert rc == 2 and "not from an earlier demo" in one_error_line(err)


def test_unavailable_subcommand_says_so(capsys):
    parser = cli._Parser(prog="blinddps")
    sub = parser.add_subparsers(dest="command")
    cli._add_guarded(sub, "evaluate", "blinddps.no_such_module", "add", "run", "x")
    args = parser.parse_args(["evaluate", "--anything"])
    with pytest.raises(cli.CLIError, match="unavailable"):
        args.func(args)


def test_python_dash_m_entry_point(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "blinddps", "deblur", str(tmp_path / "nope.png"), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and one_error_line(r.stderr) and r.stdout == ""
    r = subprocess.run([sys.executable, "-m", "blinddps", "deblur", "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0 and "examples:" in r.stdout and "torchrun" in r.stdout
