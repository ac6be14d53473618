"""The UNet and checkpoint handling, on tiny networks (no fixtures needed)."""
from __future__ import annotations

import math

import pytest
import torch

from blinddps.models import (
    CheckpointError,
    CheckpointMismatchError,
    CheckpointNotFoundError,
    KNOWN_CHECKPOINTS,
    create_model,
    find_checkpoint,
    load_model,
    load_saved_model,
    load_state_dict,
    save_model,
    timestep_embedding,
)
from blinddps.models import checkpoints as ck
from blinddps.models.unet import AttentionBlock


TINY = dict(
    image_size=16,
    num_channels=32,
    num_res_blocks=1,
    channel_mult="1,2",
    learn_sigma=True,
    attention_resolutions="8",
    num_heads=2,
    use_scale_shift_norm=True,
    resblock_updown=True,
)


def _randomise(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def _tiny(**kw) -> torch.nn.Module:
    return _randomise(create_model(**{**TINY, **kw})).eval()


def _inputs(c: int = 3, h: int = 16, w: int = 16, b: int = 2):
    g = torch.Generator().manual_seed(1)
    return torch.randn(b, c, h, w, generator=g), torch.tensor([3, 700])


# --------------------------------------------------------------------------- create_model
def test_create_model_channels_and_attributes():
    assert create_model(**TINY).in_channels == 3
    m = create_model(**{**TINY, "grayscale": True})
    assert (m.in_channels, m.out_channels, m.learn_sigma) == (1, 2, True)
    m = create_model(**{**TINY, "twochan": True, "learn_sigma": False})
    assert (m.in_channels, m.out_channels, m.learn_sigma) == (2, 2, False)
    m = create_model(**{**TINY, "in_channels": 4})
    assert (m.in_channels, m.out_channels) == (4, 8)
    assert m.image_size == 16 and m.config["channel_mult"] == "1,2" and m.config["in_channels"] == 4


def test_create_model_channel_mult_and_attention_forms():
    a = create_model(**{**TINY, "channel_mult": (1, 2), "attention_resolutions": 8})
    b = create_model(**TINY)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    with torch.device("meta"):
        assert create_model(image_size=64, num_channels=32, num_res_blocks=1).channel_mult == (1, 2, 3, 4)
        assert create_model(image_size=512, num_channels=64, num_res_blocks=1).channel_mult[0] == 0.5
    with pytest.raises(ValueError, match="channel_mult"):
        create_model(image_size=48, num_channels=32, num_res_blocks=1)


def test_create_model_rejects_unknown_keywords():
    with pytest.raises(ValueError, match="unknown UNet config keyword.*num_chanels"):
        create_model(**TINY, num_chanels=3)
    with pytest.raises(ValueError, match="load_model"):
        create_model(**TINY, model_path="x.pt")
    with pytest.raises(ValueError, match="missing"):
        create_model(image_size=16)


def test_output_convs_start_at_zero():
    m = create_model(**TINY)
    assert torch.count_nonzero(m.out[2].weight) == 0
    assert torch.count_nonzero(m.input_blocks[1][0].out_layers[3].weight) == 0


def test_timestep_embedding_cos_then_sin():
    t = torch.tensor([0.0, 5.0])
    e = timestep_embedding(t, 8)
    freqs = torch.exp(-math.log(10000) * torch.arange(4) / 4)
    assert torch.allclose(e[1, :4], torch.cos(5 * freqs)) and torch.allclose(e[1, 4:], torch.sin(5 * freqs))
    assert torch.equal(e[0], torch.cat([torch.ones(4), torch.zeros(4)]))


# --------------------------------------------------------------------------- forward
def test_non_square_input_and_timestep_forms():
    m = _tiny()
    x, _ = _inputs(h=32, w=48)
    with torch.no_grad():
        out = m(x, torch.tensor([10, 10]))
        assert out.shape == (2, 6, 32, 48)
        assert torch.equal(out, m(x, torch.tensor([10.0, 10.0])))
        assert torch.equal(out, m(x, 10))
    with pytest.raises(ValueError, match="multiples of 2"):
        m(torch.zeros(1, 3, 15, 16), torch.zeros(1))


@pytest.mark.parametrize("new_order", [False, True])
def test_attention_matches_explicit_formula(new_order):
    torch.manual_seed(0)
    blk = AttentionBlock(64, num_heads=2, use_new_attention_order=new_order)
    _randomise(blk)
    x = torch.randn(2, 64, 4, 6)
    b, c, T, heads, ch = 2, 64, 24, 2, 32
    qkv = blk.qkv(blk.norm(x.reshape(b, c, T)))
    if new_order:
        q, k, v = (t.reshape(b * heads, ch, T) for t in qkv.chunk(3, dim=1))
    else:
        q, k, v = qkv.reshape(b * heads, 3 * ch, T).split(ch, dim=1)
    s = ch ** -0.25
    w = torch.softmax(torch.einsum("bct,bcs->bts", q * s, k * s), dim=-1)
    ref = x.reshape(b, c, T) + blk.proj_out(torch.einsum("bts,bcs->bct", w, v).reshape(b, -1, T))
    assert torch.allclose(blk(x), ref.reshape(x.shape), atol=1e-5)


def test_gradient_checkpointing_same_output_and_gradients():
    m = _tiny()
    x, t = _inputs()
    results = []
    for flag in (False, True):
        m.set_gradient_checkpointing(flag)
        m.zero_grad()
        xi = x.clone().requires_grad_(True)
        out = m(xi, t)
        out.square().mean().backward()
        results.append((out.detach(), xi.grad, [p.grad.clone() for p in m.parameters()]))
    assert m.config["use_checkpoint"] is True
    (o0, gx0, gp0), (o1, gx1, gp1) = results
    assert torch.allclose(o0, o1, rtol=0, atol=1e-6)
    assert torch.allclose(gx0, gx1, rtol=1e-5, atol=1e-7)
    assert all(torch.allclose(a, b, rtol=1e-5, atol=1e-7) for a, b in zip(gp0, gp1))
    assert all(blk.use_checkpoint for blk in m.modules() if isinstance(blk, AttentionBlock))


# --------------------------------------------------------------------------- files
def test_safetensors_round_trip(tmp_path):
    m = _tiny(grayscale=True)
    path = save_model(m, tmp_path / "prior", metadata={"note": "tiny"})
    assert path.name == "prior.safetensors" and (tmp_path / "prior.yaml").is_file()
    again = load_saved_model(tmp_path / "prior.safetensors")
    assert again.config == m.config and again.metadata == {"note": "tiny"}
    x, t = _inputs(c=1)
    with torch.no_grad():
        assert torch.equal(m(x, t), again(x, t))


def test_pt_loading_weights_only_and_unwrapping(tmp_path):
    m = _tiny()
    sd = m.state_dict()
    for i, obj in enumerate([sd, {"state_dict": sd}, {"model": {f"module.{k}": v for k, v in sd.items()}}]):
        p = tmp_path / f"w{i}.pth"
        torch.save(obj, p)
        got = load_state_dict(p)
        assert list(got) == list(sd) and all(torch.equal(got[k], sd[k]) for k in sd)
    loaded = load_model(tmp_path / "w2.pth", TINY)
    x, t = _inputs()
    with torch.no_grad():
        assert torch.equal(loaded(x, t), m(x, t))


_UNPICKLED = []


def _mark():
    _UNPICKLED.append(True)
    return "ran"


class _Payload:
    def __reduce__(self):
        return (_mark, ())


def test_arbitrary_pickle_is_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "payload": _Payload()}, p)
    with pytest.raises(CheckpointError, match="refused to unpickle"):
        load_state_dict(p)
    assert not _UNPICKLED  # nothing ran
    assert set(load_state_dict(p, trust_pickle=True)) == {"w"}  # explicit opt-in only
    assert _UNPICKLED


def test_mismatch_names_the_keys(tmp_path):
    sd = _tiny().state_dict()
    sd.pop("out.2.weight")
    sd["extra.weight"] = torch.zeros(1)
    torch.save(sd, tmp_path / "bad.pt")
    with pytest.raises(CheckpointMismatchError, match=r"missing: out\.2\.weight.*unexpected: extra\.weight"):
        load_model(tmp_path / "bad.pt", TINY)
    torch.save(_tiny().state_dict(), tmp_path / "ok.pt")
    with pytest.raises(CheckpointMismatchError, match="wrong shape"):
        load_model(tmp_path / "ok.pt", {**TINY, "grayscale": True})


def test_find_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("BLINDDPS_MODELS", str(tmp_path / "env"))
    with pytest.raises(CheckpointNotFoundError) as info:
        find_checkpoint("image_ffhq256")
    msg = str(info.value)
    assert "\n" not in msg and "ffhq_10m.pt" in msg and str(tmp_path / "env") in msg
    assert KNOWN_CHECKPOINTS["image_ffhq256"].url in msg
    with pytest.raises(CheckpointNotFoundError, match="nope.pt"):
        find_checkpoint(tmp_path / "nope.pt", search_dirs=[])
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "kernel_checkpoint.pt").write_bytes(b"")
    assert find_checkpoint("kernel64") == tmp_path / "env" / "kernel_checkpoint.pt"
    assert find_checkpoint("kernel_checkpoint.pt") == tmp_path / "env" / "kernel_checkpoint.pt"
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "tilt_checkpoint.pt").write_bytes(b"")
    assert find_checkpoint("tilt256").samefile(tmp_path / "models" / "tilt_checkpoint.pt")
    explicit = tmp_path / "elsewhere.pt"
    explicit.write_bytes(b"")
    assert find_checkpoint(str(explicit)) == explicit


def test_list_shipped(tmp_path, monkeypatch):
    monkeypatch.setattr(ck, "SHIPPED_DIR", tmp_path / "absent")
    assert ck.list_shipped() == []
    monkeypatch.setattr(ck, "SHIPPED_DIR", tmp_path)
    save_model(create_model(**TINY), tmp_path / "a")
    (tmp_path / "b.safetensors").write_bytes(b"")
    assert ck.list_shipped() == [tmp_path / "a.safetensors"]


def test_load_saved_model_reads_the_shipped_priors():
    """Shipped priors carry wrapper keys (pixel_unshuffle, dc_prior): the plain loader
    must hand them over, and each must map a full-resolution input to ε and variance."""
    shipped = {p.stem: p for p in ck.list_shipped()}
    assert {"image_photo64", "kernel_motion32", "kernel_gauss32", "tilt64"} <= set(shipped)
    for name, channels, size in (("kernel_motion32", 1, 32), ("kernel_gauss32", 1, 32), ("tilt64", 2, 32),
                                 ("image_photo64", 3, 32)):
        model = ck.load_saved_model(shipped[name])
        assert model.metadata["name"] == name
        with torch.no_grad():
            out = model(torch.zeros(1, channels, size, size), torch.tensor([500]))
        assert out.shape == (1, 2 * channels, size, size) and torch.isfinite(out).all()
