"""Sharding, index merging and a real 2-process ``torchrun`` run on the CPU (gloo)."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from blinddps import distributed as dist
from blinddps.distributed import Record

TINY = dict(num_channels=32, num_res_blocks=1, channel_mult="1,2", learn_sigma=True,
            attention_resolutions="", num_heads=1, num_head_channels=-1,
            use_scale_shift_norm=True, resblock_updown=True, dropout=0.0)


def test_shard_is_a_deterministic_partition():
    items = [f"img{i:02d}" for i in range(11)]
    for world in (1, 2, 3, 4):
        parts = [dist.shard(items, r, world) for r in range(world)]
        assert sorted(sum(parts, [])) == items
        assert parts[0][0] == "img00" and all(len(p) in (11 // world, 11 // world + 1) for p in parts)
        assert parts == [dist.shard(items, r, world) for r in range(world)]
    assert dist.shard(items, 1, 2) == items[1::2]
    with pytest.raises(ValueError):
        dist.shard(items, 2, 2)


def test_context_from_env(monkeypatch):
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(k, raising=False)
    ctx = dist.context_from_env()
    assert (ctx.rank, ctx.world_size, ctx.is_main, ctx.distributed) == (0, 1, True, False)
    assert ctx.device("auto").type in ("cpu", "cuda") and ctx.device("cpu").type == "cpu"
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("LOCAL_RANK", "1")
    ctx = dist.context_from_env()
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.is_main) == (3, 4, 1, False)
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(ValueError, match="RANK"):
        dist.context_from_env()
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            dist.Context().device("cuda")


def test_index_and_exit_code(tmp_path):
    recs = [Record("b.png", "failed", error="corrupt", code=2), Record("a.png", "ok", 1.23456, 0.0213, output="o/a"),
            Record("c.png", "skipped", 2.0, 0.03)]
    path = dist.write_index(tmp_path / "index.csv", recs)
    rows = list(csv.DictReader(open(path)))
    assert [r["input"] for r in rows] == ["a.png", "b.png", "c.png"]
    assert rows[0]["seconds"] == "1.235" and rows[0]["residual"] == "0.0213" and rows[1]["error"] == "corrupt"
    assert list(rows[0]) == list(dist.INDEX_COLUMNS)
    assert dist.exit_code(recs) == 2
    assert dist.exit_code(recs + [Record("d.png", "failed", code=1)]) == 1
    assert dist.exit_code([r for r in recs if r.status != "failed"]) == 0
    assert dist.gather_records(dist.Context(), recs) == recs


@pytest.fixture()
def tiny_run(tmp_path):
    torch.manual_seed(0)
    from blinddps.models.checkpoints import save_model
    from blinddps.models.unet import create_model

    img = save_model(create_model(image_size=16, in_channels=3, **TINY), tmp_path / "m" / "img")
    ker = save_model(create_model(image_size=8, grayscale=True, **TINY), tmp_path / "m" / "ker")
    preset = {"name": "tiny", "operator": {"name": "blind_blur", "kernel_size": 8}, "steps": 2,
              "priors": {"image": {"model": "flat", "step": {"rule": "stride", "scale": 0.1}},
                         "kernel": {"model": "flat", "transform": "kernel_simplex",
                                    "step": {"rule": "stride", "scale": 0.05}}}}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(preset))
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(5):
        Image.fromarray((rng.random((16, 20 + i, 3)) * 255).astype(np.uint8)).save(folder / f"im{i}.png")
    (folder / "im5.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    return {"folder": folder, "preset": tmp_path / "tiny.yaml", "img": img, "ker": ker, "out": tmp_path / "out"}


def _torchrun() -> list[str] | None:
    exe = Path(sys.executable).with_name("torchrun")
    if exe.is_file():
        return [str(exe)]
    if shutil.which("torchrun"):
        return ["torchrun"]
    return None


def test_torchrun_two_gloo_processes_shard_merge_and_resume(tiny_run, capsys):
    """``torchrun --nproc-per-node 2 -m blinddps deblur FOLDER``: each rank restores its
    shard, a broken image is recorded and the others go on, rank 0 writes index.csv;
    a second (single-process) run skips what is done."""
    runner = _torchrun()
    if runner is None:
        pytest.skip("torchrun not found")
    t = tiny_run
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    args = ["deblur", str(t["folder"]), "--out", str(t["out"]), "--preset", str(t["preset"]),
            "--image-model", str(t["img"]), "--kernel-model", str(t["ker"]), "--device", "cpu", "--quiet"]
    r = subprocess.run([*runner, "--standalone", "--nproc-per-node", "2", "-m", "blinddps", *args],
                       capture_output=True, text=True, env=env, timeout=300, cwd=str(t["out"].parent))
    out = t["out"]
    rows = {Path(row["input"]).name: row for row in csv.DictReader(open(out / "index.csv"))}
    assert set(rows) == {f"im{i}.png" for i in range(6)}, r.stdout + r.stderr
    assert rows["im5.png"]["status"] == "failed" and "corrupt" in rows["im5.png"]["error"]
    for i in range(5):
        assert rows[f"im{i}.png"]["status"] == "ok", r.stderr
        s = json.loads((out / f"im{i}" / "summary.json").read_text())
        assert s["settings"]["world_size"] == 2 and s["settings"]["rank"] == i % 2  # sorted inputs, i % 2
        assert Image.open(out / f"im{i}" / "restored.png").size == (20 + i, 16)
    assert r.returncode != 0  # one input failed
    assert "Traceback" not in r.stdout

    from blinddps.cli import main

    (out / "im3" / "summary.json").unlink()  # pretend im3 was interrupted: files without summary
    rc = main(args)
    captured = capsys.readouterr()
    assert rc == 2 and "--overwrite" in captured.err  # an incomplete result is not silently replaced
    shutil.rmtree(out / "im3")
    rc = main(args)
    captured = capsys.readouterr()
    rows = {Path(row["input"]).name: row["status"] for row in csv.DictReader(open(out / "index.csv"))}
    assert rows == {"im0.png": "skipped", "im1.png": "skipped", "im2.png": "skipped", "im3.png": "ok",
                    "im4.png": "skipped", "im5.png": "failed"}
    assert rc == 2 and captured.out.count(": skipped (") == 4 and "1 ok, 4 skipped, 1 failed" in captured.out
