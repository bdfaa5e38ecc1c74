"""Official V-JEPA `.pt` checkpoints: written here in the released training-checkpoint format from
our models, they load with the architecture inferred from shapes and give identical features;
a wrong architecture fails listing every mismatch; a pickle carrying code is refused."""

import io
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from jepa.export.load import load_encoder, load_models, load_predictor
from jepa.export.official import strip_prefixes
from jepa.export.state import CheckpointMismatchError, UnsafeCheckpointError
from jepa.models.predictor import VisionTransformerPredictor
from jepa.models.vit import VisionTransformer

ARCH = dict(img_size=32, patch_size=8, num_frames=4, tubelet_size=2)
# Width 192 and depth 2 match no registered size, so num_heads = 192 / 64 = 3 is the guess.
ENC = dict(embed_dim=192, depth=2, num_heads=3)


def _prefixed(module: torch.nn.Module, prefix: str) -> dict[str, torch.Tensor]:
    return {prefix + k: v.clone() for k, v in module.state_dict().items()}


def _official_checkpoint(path: Path, encoder: torch.nn.Module, target: torch.nn.Module, predictor: torch.nn.Module,
                         prefix: str = "module.backbone.") -> Path:  # fmt: skip
    """The dict `torch.save`d by the released training loop, optimizer state included."""
    params = list(encoder.parameters()) + list(predictor.parameters())
    opt = torch.optim.AdamW(params, lr=1e-3)
    with torch.enable_grad():
        encoder(torch.randn(1, 3, 4, 32, 32)).sum().backward()
        opt.step()
    ckpt = {
        "encoder": _prefixed(encoder, prefix),
        "predictor": _prefixed(predictor, prefix),
        "target_encoder": _prefixed(target, prefix),
        "opt": opt.state_dict(),
        "scaler": None,
        "epoch": 3,
        "loss": 0.42,
        "batch_size": 24,
        "world_size": 128,
        "lr": 5.25e-4,
    }
    torch.save(ckpt, path)
    return path


def _models(
    pos_embed: str = "rope", num_frames: int = 4
) -> tuple[VisionTransformer, VisionTransformer, VisionTransformerPredictor]:
    arch = {**ARCH, "num_frames": num_frames}
    encoder = VisionTransformer(**arch, **ENC, pos_embed=pos_embed)
    target = VisionTransformer(**arch, **ENC, pos_embed=pos_embed)  # differs from encoder: EMA copy
    heads = 3 if pos_embed == "sincos" else 12  # V-JEPA 1 used the encoder's heads, V-JEPA 2 twelve
    predictor = VisionTransformerPredictor(
        **arch, embed_dim=192, predictor_embed_dim=96, depth=2, num_heads=heads, num_mask_tokens=2,
        zero_init_mask_tokens=False, pos_embed=pos_embed,
    )  # fmt: skip
    return encoder, target, predictor


@torch.no_grad()
def test_vjepa2_training_checkpoint_loads_with_inferred_architecture(tmp_path: Path) -> None:
    encoder, target, predictor = _models()
    path = _official_checkpoint(tmp_path / "vjepa2.pt", encoder, target, predictor)
    clip = torch.randn(2, 3, 4, 32, 32)

    loaded = load_encoder(path, img_size=32, num_frames=4)  # target_encoder by default
    assert isinstance(loaded, VisionTransformer) and not loaded.training
    assert loaded.config["num_heads"] == 3 and loaded.pos_embed_type == "rope"
    assert torch.equal(loaded(clip), target.eval()(clip))

    context = load_encoder(path, which="encoder")  # build size defaults to 256 px; RoPE runs at any size
    assert torch.equal(context(clip), encoder.eval()(clip))
    assert not torch.equal(context(clip), loaded(clip))

    pred = load_predictor(path)
    assert pred.config["num_heads"] == 12 and pred.num_mask_tokens == 2
    ctx, tgt = torch.tensor([[0, 3, 5, 9]]), torch.tensor([[1, 2, 30]])
    feats = target(clip[:1])
    assert torch.equal(pred(feats[:, ctx[0]], ctx, tgt, grid=(2, 4, 4)), predictor.eval()(feats[:, ctx[0]], ctx, tgt))


@torch.no_grad()
def test_vjepa1_sincos_checkpoint_infers_grid(tmp_path: Path) -> None:
    encoder, target, predictor = _models("sincos", num_frames=16)
    path = _official_checkpoint(tmp_path / "vjepa1.pth.tar", encoder, target, predictor, prefix="module.")
    models = load_models(path)
    assert models.format == "official"
    assert models.target_encoder is not None and models.encoder is not None and models.predictor is not None
    # 128 rows of sin-cos table: read as 16 frames (8 tubelets) of 4 x 4 patches = 32 px.
    assert models.target_encoder.config["img_size"] == (32, 32) and models.target_encoder.num_frames == 16
    clip = torch.randn(1, 3, 16, 32, 32)
    assert torch.equal(models.target_encoder(clip), target.eval()(clip))
    assert models.predictor.config["num_heads"] == 3
    assert any("num_heads" in note for note in models.notes)


def test_bare_state_dict_and_encoder_only_fallback(tmp_path: Path) -> None:
    encoder, _, _ = _models()
    torch.save({"encoder": _prefixed(encoder, "backbone.module.")}, tmp_path / "enc_only.pt")
    torch.save(encoder.state_dict(), tmp_path / "bare.pt")
    clip = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        expected = encoder.eval()(clip)
        assert torch.equal(load_encoder(tmp_path / "enc_only.pt")(clip), expected)  # no target_encoder: falls back
        assert torch.equal(load_encoder(tmp_path / "bare.pt")(clip), expected)
        # safetensors is recognised by its contents, not its suffix
        save_file(encoder.state_dict(), str(tmp_path / "bare.safetensors"))
        (tmp_path / "bare_safetensors.bin").write_bytes((tmp_path / "bare.safetensors").read_bytes())
        for name in ("bare.safetensors", "bare_safetensors.bin"):
            assert torch.equal(load_encoder(tmp_path / name)(clip), expected)
    with pytest.raises(KeyError, match="predictor"):
        load_predictor(tmp_path / "bare.pt")


def test_strip_prefixes() -> None:
    t = torch.zeros(1)
    assert list(strip_prefixes({"module.backbone.norm.weight": t, "backbone.blocks.0.x": t, "norm.bias": t})) == [
        "norm.weight", "blocks.0.x", "norm.bias"
    ]  # fmt: skip
    with pytest.raises(CheckpointMismatchError, match="two checkpoint keys"):
        strip_prefixes({"module.norm.weight": t, "norm.weight": t})


def test_wrong_architecture_lists_every_mismatch(tmp_path: Path) -> None:
    encoder, target, predictor = _models()
    path = _official_checkpoint(tmp_path / "ckpt.pt", encoder, target, predictor)
    with pytest.raises(CheckpointMismatchError) as err:
        load_encoder(path, depth=3, mlp_ratio=2.0)
    message = str(err.value)
    assert "missing in checkpoint (12)" in message and "blocks.2.mlp.fc2.bias" in message
    assert "shape mismatch (checkpoint vs model) (6)" in message
    assert "blocks.0.mlp.fc1.weight: (768, 192) vs (384, 192)" in message
    with pytest.warns(UserWarning, match="NON-STRICT LOAD"):
        partial = load_encoder(path, depth=3, strict=False)
    assert torch.equal(partial.blocks[1].attn.qkv.weight, target.blocks[1].attn.qkv.weight)

    state = target.state_dict()
    state["blocks.1.extra.weight"] = torch.zeros(3)
    del state["norm.bias"]
    torch.save({"target_encoder": state}, tmp_path / "odd.pt")
    with pytest.raises(
        CheckpointMismatchError, match=r"(?s)missing in checkpoint \(1\).*norm\.bias.*unexpected.*extra"
    ):
        load_encoder(tmp_path / "odd.pt")


class _Payload:
    """Unpickling this would call `_touch` (standing in for arbitrary code)."""

    def __init__(self, flag: Path) -> None:
        self.flag = flag

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (_touch, (str(self.flag),))


def _touch(path: str) -> None:
    Path(path).write_text("code ran")


def test_pickle_carrying_code_is_refused(tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    encoder, _, _ = _models()
    buffer = io.BytesIO()
    torch.save({"target_encoder": encoder.state_dict(), "payload": _Payload(flag)}, buffer)
    (tmp_path / "evil.pt").write_bytes(buffer.getvalue())
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        load_encoder(tmp_path / "evil.pt")
    assert not flag.exists()
    # The payload is real: a plain unpickle would have run it.
    torch.load(tmp_path / "evil.pt", weights_only=False)
    assert flag.read_text() == "code ran"


def test_unreadable_files_are_named_not_a_bare_torch_error(tmp_path: Path) -> None:
    encoder, _, _ = _models()
    torch.save({"target_encoder": encoder.state_dict()}, tmp_path / "good.pt")
    whole = (tmp_path / "good.pt").read_bytes()
    (tmp_path / "truncated.pt").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "notes.pt").write_text("not a checkpoint")
    save_file(encoder.state_dict(), str(tmp_path / "good.safetensors"))
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "good.safetensors").read_bytes()[:100])
    for name in ("truncated.pt", "empty.pt", "notes.pt", "cut.safetensors"):
        with pytest.raises(
            CheckpointMismatchError,
            match=rf"{name} \(\d+ bytes\) is not a readable (torch checkpoint|safetensors file)",
        ):
            load_encoder(tmp_path / name)
    assert load_encoder(tmp_path / "good.pt") is not None
    assert isinstance(pickle.dumps(1), bytes)


# Released shapes (tests/data/official_checkpoint_layout.json): width, depth, MLP hidden.
RELEASED = {"vit_large": (1024, 24, 4096), "vit_huge": (1280, 32, 5120), "vit_giant": (1408, 40, 6144)}


def _meta_state(dim: int, depth: int, hidden: int, pos_rows: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the released key names and shapes, on the meta device (no memory)."""
    shapes = {"patch_embed.proj.weight": (dim, 3, 2, 16, 16), "patch_embed.proj.bias": (dim,)}
    shapes |= {"norm.weight": (dim,), "norm.bias": (dim,)}
    if pos_rows:
        shapes["pos_embed"] = (1, pos_rows, dim)
    for i in range(depth):
        b = f"blocks.{i}."
        shapes |= {b + "norm1.weight": (dim,), b + "norm1.bias": (dim,), b + "norm2.weight": (dim,)}
        shapes |= {b + "norm2.bias": (dim,), b + "attn.qkv.weight": (3 * dim, dim), b + "attn.qkv.bias": (3 * dim,)}
        shapes |= {b + "attn.proj.weight": (dim, dim), b + "attn.proj.bias": (dim,), b + "mlp.fc1.bias": (hidden,)}
        shapes |= {b + "mlp.fc1.weight": (hidden, dim), b + "mlp.fc2.weight": (dim, hidden), b + "mlp.fc2.bias": (dim,)}
    return {k: torch.empty(v, device="meta") for k, v in shapes.items()}


@pytest.mark.parametrize("size", sorted(RELEASED))
def test_released_shapes_infer_the_registered_architecture(size: str) -> None:
    from jepa.export.official import infer_encoder_args
    from jepa.export.state import compare_state
    from jepa.models.registry import ENCODERS, create_encoder

    notes: list[str] = []
    state = _meta_state(*RELEASED[size])
    args = infer_encoder_args(state, notes)
    ref = ENCODERS.args(size)
    assert (args.embed_dim, args.depth, args.num_heads, args.mlp_ratio) == (
        ref.embed_dim, ref.depth, ref.num_heads, ref.mlp_ratio
    )  # fmt: skip
    assert (args.img_size, args.num_frames, args.pos_embed) == ((256, 256), 16, "rope")
    with torch.device("meta"):
        model = VisionTransformer(args)
    assert compare_state(model.state_dict(), state, size).ok
    with torch.device("meta"):
        assert compare_state(create_encoder(size).state_dict(), state, size).ok


def test_released_vjepa1_table_reads_as_16_frames_at_224() -> None:
    from jepa.export.official import infer_encoder_args

    args = infer_encoder_args(_meta_state(1024, 24, 4096, pos_rows=1568), [])
    assert (args.pos_embed, args.num_frames, args.img_size, args.num_heads) == ("sincos", 16, (224, 224), 16)
