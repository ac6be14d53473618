"""The evaluation harness: built-in images, the seeded degradation, the resumable
runner (CSV / Markdown / grid / summary), and the `evaluate` subcommand."""
from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from blinddps.evaluation import datasets as D
from blinddps.evaluation import runner as R
from blinddps.evaluation.report import output_file
from blinddps.evaluation.cli import add_evaluate_subparser, load_eval_config, run_evaluate
from blinddps.evaluation.metrics import psnr
from blinddps.models.checkpoints import save_model
from blinddps.models.unet import create_model
from blinddps.operators import conv_same

from _tiny import TINY  # noqa: E402


@pytest.fixture(scope="module")
def tiny_preset(tmp_path_factory):
    """A random-weight image prior and a flat kernel prior (kernel 7 fits any size)."""
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("models")
    img = save_model(create_model(image_size=16, in_channels=3, **TINY), d / "img")
    return {
        "name": "tiny_eval",
        "operator": {"name": "blind_blur", "kernel_size": 7},
        "steps": 3,
        "priors": {
            "image": {"model": str(img), "step": {"rule": "stride", "scale": 0.1}},
            "kernel": {"model": "flat", "transform": "kernel_simplex", "step": {"rule": "stride", "scale": 0.05}},
        },
    }


def _counting(monkeypatch) -> dict[str, int]:
    calls: dict[str, int] = {}
    for name, fn in list(R.METHOD_FUNCS.items()):
        def wrapped(p, opts, _fn=fn, _name=name):
            calls[_name] = calls.get(_name, 0) + 1
            return _fn(p, opts)
        monkeypatch.setitem(R.METHOD_FUNCS, name, wrapped)
    return calls


# --------------------------------------------------------------------------- datasets
def test_builtin_photos_load_offline_square_in_range():
    imgs = D.load_images("photos", size=32)
    assert [i.name for i in imgs] == D.IMAGE_SETS["photos"]
    for it in imgs:
        assert it.image.shape == (3, 32, 32) and it.image.dtype == torch.float32
        assert -1.0 <= float(it.image.min()) and float(it.image.max()) <= 1.0
    assert len(D.load_images("astronaut,camera", size=16, limit=1)) == 1


def test_folder_of_images_drops_alpha_and_crops(tmp_path):
    from PIL import Image

    rgba = np.zeros((20, 40, 4), np.uint8)
    rgba[..., 0] = 255          # red, half transparent
    rgba[..., 3] = 128
    Image.fromarray(rgba, "RGBA").save(tmp_path / "b.png")
    Image.fromarray(np.full((30, 30), 0, np.uint8), "L").save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    imgs = D.load_images(str(tmp_path), size=16)
    assert [i.name for i in imgs] == ["a", "b"]
    torch.testing.assert_close(imgs[1].image[0], torch.ones(16, 16))   # red channel, alpha ignored
    torch.testing.assert_close(imgs[1].image[1:], -torch.ones(2, 16, 16))
    assert imgs[0].image.shape == (3, 16, 16)


def test_ffhq_samples_when_present():
    if D.ffhq_dir() is None:
        pytest.skip("no shared FFHQ samples here")
    imgs = D.load_images("ffhq", size=32, limit=2)
    assert all(i.name.startswith("ffhq_") and i.image.shape == (3, 32, 32) for i in imgs)


def test_unknown_images_one_line_error():
    with pytest.raises(ValueError, match="unknown images 'no_such_image'") as e:
        D.load_images("no_such_image", size=32)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- degradation
def test_degrade_is_seeded_same_blur_plus_noise():
    x = D.load_images("coffee", size=32)[0].image
    y1, k1, t1 = R.degrade(x, "coffee", "motion", 7, noise=0.02, seed=3)
    y2, k2, _ = R.degrade(x, "coffee", "motion", 7, noise=0.02, seed=3)
    y3, k3, _ = R.degrade(x, "other", "motion", 7, noise=0.02, seed=3)
    assert t1 is None and k1.shape == (1, 1, 7, 7)
    torch.testing.assert_close(k1.sum(), torch.tensor(1.0))
    assert torch.equal(y1, y2) and torch.equal(k1, k2) and not torch.equal(k1, k3)
    clean, _, _ = R.degrade(x, "coffee", "motion", 7, noise=0.0, seed=3)
    torch.testing.assert_close(clean, conv_same(x[None], k1))
    assert 0.015 < float((y1 - clean).std()) < 0.025
    yt, kt, tt = R.degrade(x, "coffee", "turbulence", 7, std=1.0, seed=3)
    assert tt.shape == (1, 2, 32, 32) and float(tt.abs().max()) <= 2.5


# --------------------------------------------------------------------------- runner
def test_runner_writes_outputs_and_resumes(tmp_path, tiny_preset, monkeypatch):
    calls = _counting(monkeypatch)
    methods = ["blurry", "wiener_true", "tv_true", "blinddps"]
    kw = dict(images="astronaut,coffee", degradation="motion", size=32, kernel_size=7, noise=0.02,
              methods=methods, seed=1, out_dir=tmp_path / "ev", preset=tiny_preset, steps=3,
              progress=False, method_options={"tv_true": {"iters": 30}})
    res = R.evaluate(**kw)
    assert calls == {m: 2 for m in methods}
    out = tmp_path / "ev"
    for f in ("results.csv", "report.md", "grid.png", "summary.json", "run.json"):
        assert (out / f).is_file(), f
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["image"], r["method"]) for r in rows] == [(i, m) for i in ("astronaut", "coffee") for m in methods]
    for r in rows:
        for c in ("psnr", "ssim", "psnr_aligned", "ssim_aligned", "seconds"):
            assert math.isfinite(float(r[c])), (r["method"], c)
        blind = r["method"] == "blinddps"
        assert (r["kernel_mnc"] != "") == blind and (r["blob_floor_mnc"] != "") == blind
        if blind:
            assert 0 < float(r["kernel_mnc"]) <= 1 and math.isfinite(float(r["kernel_mse"]))
            assert 0 < float(r["blob_floor_mnc"]) <= 1 and float(r["steps"]) == 3
            assert json.loads(r["config"])["steps"] == 3
    # the blurry row is the measurement itself: its PSNR is psnr(y, x)
    x = D.load_images("astronaut", size=32)[0].image
    y, _, _ = R.degrade(x, "astronaut", "motion", 7, noise=0.02, seed=1)
    assert float(rows[0]["psnr"]) == pytest.approx(psnr(y[0], x), abs=1e-4)
    saved = np.load(out / "outputs" / "astronaut" / "inputs.npz")
    np.testing.assert_array_equal(saved["y"], y[0].numpy())

    md = (out / "report.md").read_text()
    assert "| method | PSNR | SSIM | PSNR† | SSIM† | kernel MNC | blob-floor MNC" in md
    assert "aligned" in md and md.count("| BlindDPS (ours) |") == 1
    summ = json.loads((out / "summary.json").read_text())
    assert summ["settings"]["seed"] == 1 and summ["settings"]["images"] == ["astronaut", "coffee"]
    assert set(summ["means"]) == set(methods) and summ["means"]["blurry"]["n"] == 2
    assert summ["versions"]["torch"] == torch.__version__ and "blinddps" in summ["versions"]
    assert summ["means"]["blurry"]["psnr"] == pytest.approx(np.mean([r.get("psnr") for r in res.rows[::4]]))
    from PIL import Image

    with Image.open(out / "grid.png") as g:
        assert g.width > 5 * 32 and g.height > 2 * 32

    # resume: nothing is recomputed; a new method runs alone
    res2 = R.evaluate(**kw)
    assert calls == {m: 2 for m in methods} and len(res2.ran) == 0 and len(res2.skipped) == 8
    assert res2.means["blurry"]["psnr"] == pytest.approx(res.means["blurry"]["psnr"])
    R.evaluate(**{**kw, "methods": methods + ["dps_true"]})
    assert calls["dps_true"] == 2 and calls["blurry"] == 2
    # other sampler settings: only the diffusion rows are redone, and their outputs go
    # beside the first ones instead of over them
    first_cfg = next(r["config"] for r in rows if r["method"] == "blinddps" and r["image"] == "astronaut")
    first_file = out / "outputs" / "astronaut" / output_file("blinddps", first_cfg)
    first = dict(np.load(first_file))
    res3 = R.evaluate(**{**kw, "steps": 2})
    assert calls["blinddps"] == 4 and calls["tv_true"] == 2
    new_cfg = next(r["config"] for r in res3.rows if r["method"] == "blinddps" and r["image"] == "astronaut")
    assert new_cfg != first_cfg
    new_out = np.load(out / "outputs" / "astronaut" / output_file("blinddps", new_cfg))
    again = np.load(first_file)
    for key in ("image", "kernel"):
        np.testing.assert_array_equal(again[key], first[key])
    assert not np.array_equal(new_out["image"], first["image"])
    # new weights under the same file name: only the diffusion rows are redone
    img = Path(tiny_preset["priors"]["image"]["model"])
    saved = img.read_bytes()
    try:
        torch.manual_seed(1)
        save_model(create_model(image_size=16, in_channels=3, **TINY), img.with_suffix(""))
        R.evaluate(**{**kw, "steps": 2})
        assert calls["blinddps"] == 6 and calls["tv_true"] == 2
    finally:
        img.write_bytes(saved)
    # a different degradation in the same folder is refused
    with pytest.raises(ValueError, match="other settings"):
        R.evaluate(**{**kw, "noise": 0.05})
    # resume=False starts afresh
    R.evaluate(**{**kw, "methods": ["blurry"], "resume": False})
    assert calls["blurry"] == 4
    with (out / "results.csv").open() as fh:
        assert len(list(csv.DictReader(fh))) == 2


def test_method_variants_run_with_their_own_options(tmp_path):
    out = tmp_path / "variants"
    kw = dict(images="astronaut", size=32, kernel_size=7, out_dir=out, progress=False,
              methods=["blurry", "tv_true", "tv_true:few"], method_options={"tv_true:few": {"iters": 2}})
    res = R.evaluate(**kw)
    by = {r["method"]: r for r in res.rows}
    assert set(by) == {"blurry", "tv_true", "tv_true:few"}
    # two iterations of TV leave the image much closer to the blurry input than 150 do
    assert abs(float(by["tv_true:few"]["psnr"]) - float(by["blurry"]["psnr"])) < \
        abs(float(by["tv_true"]["psnr"]) - float(by["blurry"]["psnr"]))
    assert json.loads(by["tv_true:few"]["config"]) == {"options": {"iters": 2}}
    cfg = by["tv_true:few"]["config"]
    assert output_file("tv_true:few", cfg, R._safe).startswith("tv_true_few-")
    assert (out / "outputs" / "astronaut" / output_file("tv_true:few", cfg, R._safe)).is_file()
    md = (out / "report.md").read_text()
    assert "| TV (true kernel) [few] |" in md and "| TV (true kernel) |" in md
    # resumed: the variant is found under its own name
    assert len(R.evaluate(**kw).ran) == 0


def test_an_edited_preset_file_redoes_the_diffusion_rows(tmp_path, tiny_preset, monkeypatch):
    import yaml

    calls = _counting(monkeypatch)
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump(tiny_preset))
    kw = dict(images="astronaut", size=32, kernel_size=7, out_dir=tmp_path / "o", progress=False, grid=False,
              methods=["blurry", "blinddps"], preset=str(path))
    R.evaluate(**kw)
    R.evaluate(**kw)
    assert calls == {"blurry": 1, "blinddps": 1}
    # same name, same step count, another guidance scale: the old rows are not reused
    edited = {**tiny_preset, "priors": {**tiny_preset["priors"], "image": {
        **tiny_preset["priors"]["image"], "step": {"rule": "stride", "scale": 0.2}}}, "num_samples": 2}
    path.write_text(yaml.safe_dump(edited))
    R.evaluate(**kw)
    assert calls == {"blurry": 1, "blinddps": 2}
    assert "3 steps, mean of 2 posterior samples" in (tmp_path / "o" / "report.md").read_text()


def test_runner_rejects_bad_input_in_one_line(tmp_path, tiny_preset):
    cases = [
        (dict(methods=["blurry", "magic"]), "unknown method 'magic'"),
        (dict(methods=["blurry", "magic:x"]), "unknown method 'magic'"),
        (dict(methods=["tv_true:"]), "bad method variant"),
        (dict(methods=["tv_true:a/b"]), "bad method variant"),
        (dict(methods=["blurry"], method_options={"nope": {}}), "unknown method 'nope'"),
        (dict(degradation="smear"), "unknown degradation"),
        (dict(kernel_size=64), "exceeds the image size"),
        (dict(methods=["blinddps"], preset="no_such_preset"), "unknown preset"),
        (dict(methods=["blinddps"], preset={**tiny_preset, "priors": {
            **tiny_preset["priors"], "image": {"model": str(tmp_path / "missing.pt"), "config": {"image_size": 16}}}}),
         "not found"),
    ]
    for kw, msg in cases:
        args = dict(images="astronaut", size=32, kernel_size=7, out_dir=tmp_path / "bad", progress=False)
        args.update(kw)
        with pytest.raises(ValueError, match=msg) as e:
            R.evaluate(**args)
        assert "\n" not in str(e.value)


# --------------------------------------------------------------------------- CLI
def _parse(argv):
    parser = argparse.ArgumentParser(prog="blinddps")
    add_evaluate_subparser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_cli_config_and_flags(tmp_path, capsys):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text("images: astronaut,coffee\nsize: 32\nkernel_size: 7\nmethods: [blurry, wiener_true]\nseed: 2\n")
    args = _parse(["evaluate", "--config", str(cfg), "--limit", "1", "--methods", "blurry", "--out",
                   str(tmp_path / "o"), "--quiet", "--no-grid"])
    assert run_evaluate(args) == 0
    assert "| blurry input |" in capsys.readouterr().out
    summ = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summ["settings"]["images"] == ["astronaut"] and summ["settings"]["methods"] == ["blurry"]
    assert summ["settings"]["seed"] == 2 and not (tmp_path / "o" / "grid.png").exists()
    with pytest.raises(ValueError, match="unknown evaluation config"):
        run_evaluate(_parse(["evaluate", "--config", "nope", "--out", str(tmp_path / "x")]))
    (tmp_path / "bad.yaml").write_text("sizes: 3\n")
    with pytest.raises(ValueError, match="unknown key 'sizes'"):
        run_evaluate(_parse(["evaluate", "--config", str(tmp_path / "bad.yaml"), "--out", str(tmp_path / "x")]))
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        run_evaluate(_parse(["evaluate", "--steps", "0", "--out", str(tmp_path / "x")]))


def test_shipped_eval_configs_parse():
    from blinddps.presets import list_presets

    presets = list_presets()
    names = [f"{d}{s}" for d in ("motion", "gauss", "turb") for s in (128, 256)]
    for name in names + ["motion128_all", "motion128_variants", "paper_motion", "paper_gaussian", "paper_turbulence"]:
        cfg = load_eval_config(name)
        assert cfg["degradation"] in R.DEGRADATIONS and {R.method_base(m) for m in cfg["methods"]} <= set(R.METHODS)
        assert set(cfg.get("method_options", {})) <= set(cfg["methods"]), name
        assert cfg["preset"] in presets, name
    for name in names:
        cfg = load_eval_config(name)
        assert (cfg["size"], cfg["kernel_size"], cfg["noise"]) == (int(name[-3:]), 32, 0.02)
        assert cfg["degradation"] == "motion" or cfg["std"] == 3.0
    m = load_eval_config("motion128")
    assert (m["size"], m["kernel_size"], m["intensity"], m["noise"]) == (128, 32, 0.5, 0.02)
    p = load_eval_config("paper_motion")
    assert (p["size"], p["kernel_size"], p["intensity"], p["noise"]) == (256, 64, 0.5, 0.02)
    assert load_eval_config("paper_gaussian")["std"] == 3.0


def test_turbulence_rows_have_tilt_metrics(tmp_path, tiny_preset):
    flat_tilt = {"model": "flat", "transform": {"name": "scale", "scale": 2.5}, "step": {"rule": "stride", "scale": 0.05}}
    preset = {**tiny_preset, "operator": {"name": "turbulence", "kernel_size": 7},
              "priors": {**tiny_preset["priors"], "tilt": flat_tilt}}
    res = R.evaluate("astronaut", degradation="turbulence", size=32, kernel_size=7, std=1.5,
                     methods=["blurry", "dps_true", "blinddps"], preset=preset,
                     out_dir=tmp_path / "t", progress=False, grid=False)
    by = {r["method"]: r for r in res.rows}
    assert by["blinddps"]["steps"] == 3 and json.loads(by["blinddps"]["config"])["steps"] == 3  # the preset's
    assert math.isfinite(by["blinddps"]["tilt_rmse"]) and math.isnan(by["dps_true"]["tilt_rmse"])
    assert by["blurry"]["tilt_rms_true"] > 0
    assert "tilt RMSE (px)" in res.table and "tilt RMSE of 0 (px)" in res.table


def test_sampler_seed_redraws_only_the_diffusion_samples(tmp_path, tiny_preset, monkeypatch):
    kw = dict(images="astronaut", degradation="motion", size=32, kernel_size=7, noise=0.02, seed=1,
              out_dir=tmp_path / "s", preset=tiny_preset, steps=3, progress=False, grid=False,
              methods=["blurry", "blinddps"])
    base = {r["method"]: r for r in R.evaluate(**kw).rows}
    # the default equals the measurement seed: the very rows, keyed as before the option
    same = R.evaluate(**{**kw, "sampler_seed": 1})
    assert len(same.ran) == 0 and "sampler_seed" not in json.loads(base["blinddps"]["config"])
    calls = _counting(monkeypatch)
    other = R.evaluate(**{**kw, "sampler_seed": 5})
    assert calls == {"blinddps": 1}   # the measurement (and the blurry row) is unchanged
    by = {r["method"]: r for r in other.rows}
    assert by["blurry"]["psnr"] == base["blurry"]["psnr"]
    assert json.loads(by["blinddps"]["config"])["sampler_seed"] == 5
    assert "sampler seed 5" in (tmp_path / "s" / "report.md").read_text()
    summ = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summ["settings"]["seed"] == 1 and summ["settings"]["sampler_seed"] == 5
    monkeypatch.undo()
    # a real redraw: another seed gives another restoration
    again = R.evaluate(**{**kw, "sampler_seed": 6, "out_dir": tmp_path / "s6"})
    assert {r["method"]: r for r in again.rows}["blinddps"]["psnr"] != base["blinddps"]["psnr"]
    with pytest.raises(ValueError, match="sampler_seed must be an int"):
        R.evaluate(**{**kw, "sampler_seed": 1.5})
