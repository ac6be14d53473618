"""The UNet against the original implementation's fixtures (``pytest -k official``)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from blinddps.models import KNOWN_CHECKPOINTS, create_model, load_model, save_model


def _fixture_dir() -> Path | None:
    here = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "official"
    if here.is_dir():
        return here
    env = os.environ.get("BLINDDPS_FIXTURES")
    if env and Path(env).is_dir():
        return Path(env)
    return None


FIXTURES = _fixture_dir()
needs_fixtures = pytest.mark.skipif(
    FIXTURES is None,
    reason="official fixtures not found (expected ../shared/fixtures/official beside the repo, or set BLINDDPS_FIXTURES)",
)


def _manifest() -> dict:
    return json.loads((FIXTURES / "official_unet_manifest.json").read_text())


def _small(name: str) -> dict:
    # trusted local fixture holding a config dict, hence weights_only=False
    return torch.load(FIXTURES / f"unet_small_{name}.pt", map_location="cpu", weights_only=False)


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


@needs_fixtures
@pytest.mark.parametrize("name", ["image_ffhq256", "kernel64", "tilt256"])
def test_official_published_config_layout(name):
    entry = _manifest()[name]
    with torch.device("meta"):
        model = create_model(**entry["config"])
    shapes = {k: list(v.shape) for k, v in model.state_dict().items()}
    assert list(shapes) == list(entry["state_dict"])  # same keys, same order
    assert shapes == entry["state_dict"]
    assert sum(p.numel() for p in model.parameters()) == entry["num_parameters"]


@needs_fixtures
def test_official_registry_matches_manifest():
    manifest = _manifest()
    assert set(KNOWN_CHECKPOINTS) == set(manifest)
    for name, info in KNOWN_CHECKPOINTS.items():
        assert info.name == name
        assert info.config == manifest[name]["config"]
        assert info.num_parameters == manifest[name]["num_parameters"]
    files = {n: i.filename for n, i in KNOWN_CHECKPOINTS.items()}
    assert files == {
        "image_ffhq256": "ffhq_10m.pt",
        "kernel64": "kernel_checkpoint.pt",
        "tilt256": "tilt_checkpoint.pt",
    }


@needs_fixtures
@pytest.mark.parametrize("name", ["rgb", "gray", "twochan"])
def test_official_small_unet_reproduces_output(name):
    fx = _small(name)
    model = create_model(**fx["config"]).eval()
    model.load_state_dict(fx["state_dict"], strict=True)
    assert model.in_channels == fx["x"].shape[1]
    assert model.out_channels == fx["out"].shape[1] == 2 * model.in_channels
    with torch.no_grad():
        out = model(fx["x"], fx["t"])
        out_float_t = model(fx["x"], fx["t"].float())
    assert out.shape == fx["out"].shape
    assert _rel_err(out, fx["out"]) <= 1e-5
    assert _rel_err(out_float_t, fx["out"]) <= 1e-5


@needs_fixtures
def test_official_small_unet_via_pt_and_safetensors_files(tmp_path):
    fx = _small("rgb")
    pt = tmp_path / "small.pt"
    torch.save({"ema": {f"module.{k}": v for k, v in fx["state_dict"].items()}}, pt)
    model = load_model(pt, fx["config"])  # weights_only load, unwrapped, prefix stripped
    saved = save_model(model, tmp_path / "small")
    from blinddps.models import load_saved_model

    again = load_saved_model(saved)
    with torch.no_grad():
        a = model(fx["x"], fx["t"])
        b = again(fx["x"], fx["t"])
    assert _rel_err(a, fx["out"]) <= 1e-5
    assert torch.equal(a, b)
