"""Encoder, predictor, pooler and registry: official key layouts (built on the meta device),
shapes on tiny inputs, masking semantics, initialisation, parity with HF VJEPA2 and errors."""

import getpass
import math
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from layouts import official_layout
from torch import nn

from jepa.masks.ops import check_indices, gather_tokens
from jepa.models import (
    AttentivePooler,
    EncoderArgs,
    VisionTransformer,
    VisionTransformerPredictor,
    compile_blocks,
    create_encoder,
    create_predictor,
    index_to_position,
    interpolate_pos_embed,
    list_models,
    register_model,
    run_blocks,
    sincos_3d,
)

TINY = dict(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=64, depth=2, num_heads=4)


def tiny_encoder(**kw) -> VisionTransformer:
    return VisionTransformer(**{**TINY, **kw}).eval()


def tiny_predictor(**kw) -> VisionTransformerPredictor:
    args = dict(img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=64, predictor_embed_dim=48)
    args.update(depth=2, num_heads=4, num_mask_tokens=3)
    return VisionTransformerPredictor(**{**args, **kw}).eval()


def shapes(model: nn.Module) -> dict[str, list[int]]:
    return {k: list(v.shape) for k, v in model.state_dict().items()}


def block_keys(sd: dict[str, list[int]], prefix: str) -> dict[str, list[int]]:
    return {k: v for k, v in sd.items() if k.startswith(prefix + "0.")}


def encoder_block(dim: int, hidden: int, prefix: str = "blocks.0.") -> dict[str, list[int]]:
    spec = {"norm1.weight": [dim], "norm1.bias": [dim], "attn.qkv.weight": [3 * dim, dim], "attn.qkv.bias": [3 * dim]}
    spec.update({"attn.proj.weight": [dim, dim], "attn.proj.bias": [dim], "norm2.weight": [dim], "norm2.bias": [dim]})
    spec.update({"mlp.fc1.weight": [hidden, dim], "mlp.fc1.bias": [hidden], "mlp.fc2.weight": [dim, hidden]})
    spec["mlp.fc2.bias"] = [dim]
    return {prefix + k: v for k, v in spec.items()}


# Official V-JEPA 2 / V-JEPA 1 layouts: (embed dim, blocks, MLP hidden, number of state-dict keys).
OFFICIAL_ENCODERS = {
    "vjepa2_vitl.encoder": (lambda: create_encoder("vit_large"), 1024, 24, 4096, 292),
    "vjepa2_vith.encoder": (lambda: create_encoder("vit_huge"), 1280, 32, 5120, 388),
    "vjepa2_vitg.encoder": (lambda: create_encoder("vit_giant"), 1408, 40, 6144, 484),
    "vjepa1_vitl_sincos.encoder": (lambda: create_encoder("vit_large", pos_embed="sincos"), 1024, 24, 4096, 293),
}


@pytest.mark.parametrize("name", sorted(OFFICIAL_ENCODERS))
def test_official_encoder_layouts(name: str) -> None:
    build, dim, depth, hidden, num_keys = OFFICIAL_ENCODERS[name]
    with torch.device("meta"):
        sd = shapes(build())
    expected = {"patch_embed.proj.weight": [dim, 3, 2, 16, 16], "patch_embed.proj.bias": [dim]}
    expected.update({"norm.weight": [dim], "norm.bias": [dim]})
    if "sincos" in name:
        expected["pos_embed"] = [1, 8 * 14 * 14, dim]
    assert {k: v for k, v in sd.items() if not k.startswith("blocks.")} == expected
    assert block_keys(sd, "blocks.") == encoder_block(dim, hidden)
    assert len(sd) == num_keys
    assert len({k.split(".")[1] for k in sd if k.startswith("blocks.")}) == depth


def test_official_predictor_layout() -> None:
    with torch.device("meta"):
        sd = shapes(create_predictor(embed_dim=1024))
    expected = {"predictor_embed.weight": [384, 1024], "predictor_embed.bias": [384]}
    expected.update({f"mask_tokens.{i}": [1, 1, 384] for i in range(10)})
    expected.update({"predictor_norm.weight": [384], "predictor_norm.bias": [384]})
    expected.update({"predictor_proj.weight": [1024, 384], "predictor_proj.bias": [1024]})
    assert {k: v for k, v in sd.items() if not k.startswith("predictor_blocks.")} == expected
    assert block_keys(sd, "predictor_blocks.") == encoder_block(384, 1536, "predictor_blocks.0.")
    assert len(sd) == 160


def test_layouts_equal_reference_file() -> None:
    ref = official_layout()
    builders: dict[str, Callable[[], nn.Module]] = {k: v[0] for k, v in OFFICIAL_ENCODERS.items()}
    builders["vjepa2_vitl.predictor"] = lambda: create_predictor(embed_dim=1024)
    for name, build in builders.items():
        with torch.device("meta"):
            sd = shapes(build())
        entry = ref[name]
        prefix = "predictor_blocks." if "predictor" in name else "blocks."
        assert {k: v for k, v in sd.items() if not k.startswith(prefix)} == entry["non_block_keys"], name
        assert block_keys(sd, prefix) == entry["block_0_keys"], name
        assert len(sd) == entry["num_keys"], name
        assert len({k.split(".")[1] for k in sd if k.startswith(prefix)}) == entry["num_blocks"], name


@pytest.mark.parametrize(
    "name,dim,depth,heads,hidden",
    [
        ("vit_tiny", 192, 12, 3, 768),
        ("vit_small", 384, 12, 6, 1536),
        ("vit_base", 768, 12, 12, 3072),
        ("vit_gigantic", 1664, 48, 26, 6656),
    ],
)
def test_other_registered_sizes(name: str, dim: int, depth: int, heads: int, hidden: int) -> None:
    with torch.device("meta"):
        model = create_encoder(name)
    assert (model.embed_dim, model.num_heads, len(model.blocks)) == (dim, heads, depth)
    assert shapes(model)["blocks.0.mlp.fc1.weight"] == [hidden, dim]


def test_registry() -> None:
    assert set(list_models()) >= {f"vit_{s}" for s in ("tiny", "small", "base", "large", "huge", "giant", "gigantic")}
    assert list_models("vit_gi*") == ["vit_giant", "vit_gigantic"]
    with pytest.raises(ValueError, match="unknown encoder"):
        create_encoder("vit_colossal")
    with pytest.raises(ValueError, match="already registered"):
        register_model("vit_tiny", EncoderArgs())
    with pytest.raises(ValueError, match="no field"):
        create_encoder("vit_tiny", dept=1)
    model = create_encoder("vit_tiny", depth=1, img_size=32, patch_size=8, num_frames=2)
    assert (len(model.blocks), model.embed_dim, model.grid) == (1, 192, (1, 4, 4))


@pytest.mark.parametrize("pos_embed", ["rope", "sincos"])
def test_encoder_output_shapes(pos_embed: str) -> None:
    enc = tiny_encoder(pos_embed=pos_embed)
    assert enc.num_patches == 32 and enc.grid_size(4, 32, 32) == (2, 4, 4)
    with torch.no_grad():
        assert enc(torch.randn(2, 3, 4, 32, 32)).shape == (2, 32, 64)
        assert enc(torch.randn(2, 3, 8, 32, 48)).shape == (2, 4 * 4 * 6, 64)
        image = torch.randn(2, 3, 32, 32)
        out = enc(image)
        assert out.shape == (2, 16, 64)
        torch.testing.assert_close(out, enc(image.unsqueeze(2)))
        torch.testing.assert_close(out, enc(image.unsqueeze(2).repeat(1, 1, 2, 1, 1)))


@pytest.mark.parametrize("pos_embed", ["rope", "sincos"])
def test_full_mask_equals_unmasked(pos_embed: str) -> None:
    enc = tiny_encoder(pos_embed=pos_embed)
    x = torch.randn(2, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(enc(x, masks=torch.arange(32).expand(2, -1)), enc(x))


@pytest.mark.parametrize("pos_embed", ["rope", "sincos"])
def test_masked_forward_equals_attention_restricted_to_kept_tokens(pos_embed: str) -> None:
    """Dropping tokens must equal running the full grid with attention limited to the kept keys."""
    enc = tiny_encoder(pos_embed=pos_embed)
    x = torch.randn(2, 3, 4, 32, 32)
    keep = torch.stack([torch.randperm(32)[:11].sort().values for _ in range(2)])
    allowed = torch.zeros(2, 32, dtype=torch.bool)
    allowed[torch.arange(2)[:, None], keep] = True
    with torch.no_grad():
        tokens = enc.patch_embed(x)
        if enc.pos_embed is not None:
            tokens = tokens + enc.pos_embed
        pos = index_to_position(torch.arange(32), enc.grid) if enc.pos_embed is None else None
        full = run_blocks(enc.blocks, tokens, pos=pos, attn_mask=allowed[:, None, None, :])
        expected = gather_tokens(enc.norm(full), keep)
        torch.testing.assert_close(enc(x, masks=keep), expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("pos_embed", ["rope", "sincos"])
def test_out_layers_are_normed_block_outputs_concatenated(pos_embed: str) -> None:
    """Layer k's features equal the output of the same encoder cut after k blocks."""
    enc = tiny_encoder(pos_embed=pos_embed, depth=3).eval()
    x = torch.randn(2, 3, 4, 32, 32)
    keep = torch.stack([torch.randperm(32)[:9].sort().values for _ in range(2)])
    with torch.no_grad():
        torch.testing.assert_close(enc(x, out_layers=[3]), enc(x))
        per_layer = []
        for k in (1, 2, 3):
            cut = tiny_encoder(pos_embed=pos_embed, depth=3).eval()
            cut.load_state_dict(enc.state_dict())
            cut.blocks = cut.blocks[:k]
            per_layer.append(cut(x, masks=keep))
        got = enc(x, masks=keep, out_layers=[2, 1, 3, 2])
        assert got.shape == (2, 9, 4 * 64)
        torch.testing.assert_close(got, torch.cat([per_layer[i] for i in (1, 0, 2, 1)], dim=-1))
    for bad in ([], [0], [4]):
        with pytest.raises(ValueError, match="out_layers"):
            enc(x, out_layers=bad)


def test_activation_checkpointing_matches() -> None:
    enc = tiny_encoder()
    ckpt = tiny_encoder(use_activation_checkpointing=True)
    ckpt.load_state_dict(enc.state_dict())
    x = torch.randn(1, 3, 4, 32, 32)
    enc(x).square().sum().backward()
    ckpt(x).square().sum().backward()
    for (name, a), b in zip(enc.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


def test_stochastic_depth_schedule() -> None:
    enc = tiny_encoder(depth=3, drop_path_rate=0.2)
    assert isinstance(enc.blocks[0].drop_path, nn.Identity)
    assert [blk.drop_path.drop_prob for blk in enc.blocks[1:]] == pytest.approx([0.1, 0.2])
    enc.train()
    x = torch.randn(4, 3, 4, 32, 32)
    assert not torch.allclose(enc(x), enc(x))  # paths are dropped at random in training
    enc.eval()
    torch.testing.assert_close(enc(x), enc(x))


def test_sincos_table_values_and_interpolation() -> None:
    table = sincos_3d(1024, (8, 14, 14))
    assert table.shape == (1568, 1024) and table.dtype == torch.float32
    d = 342  # uniform power: 2 * ceil(1024 / 6) channels per axis, the last one cut to 340
    omega = 1.0 / 10000 ** (torch.arange(d // 2, dtype=torch.float64) / (d / 2))
    t, h, w = 3, 5, 7
    row = table[t * 196 + h * 14 + w]
    for axis, p in enumerate((t, h, w)):
        expected = torch.cat([(p * omega).sin(), (p * omega).cos()]).float()[: 1024 - 2 * d if axis == 2 else d]
        torch.testing.assert_close(row[axis * d : axis * d + d], expected)
    pe = table.unsqueeze(0)
    assert interpolate_pos_embed(pe, (8, 14, 14), (8, 14, 14)) is pe
    torch.testing.assert_close(interpolate_pos_embed(pe, (8, 14, 14), (2, 14, 14)), pe[:, : 2 * 196])
    assert interpolate_pos_embed(pe, (8, 14, 14), (4, 16, 16)).shape == (1, 4 * 256, 1024)
    const = torch.ones(1, 2 * 3 * 3, 4)
    torch.testing.assert_close(interpolate_pos_embed(const, (2, 3, 3), (4, 5, 2)), torch.ones(1, 40, 4))


def test_released_init() -> None:
    torch.manual_seed(0)
    enc = VisionTransformer(img_size=32, patch_size=8, num_frames=2, embed_dim=128, depth=3, num_heads=4)
    assert enc.patch_embed.proj.weight.std().item() == pytest.approx(0.02, rel=0.05)
    for i, blk in enumerate(enc.blocks):
        assert blk.attn.qkv.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert blk.mlp.fc1.weight.std().item() == pytest.approx(0.02, rel=0.05)
        scaled = 0.02 / math.sqrt(2 * (i + 1))
        assert blk.attn.proj.weight.std().item() == pytest.approx(scaled, rel=0.05)
        assert blk.mlp.fc2.weight.std().item() == pytest.approx(scaled, rel=0.05)
        assert not blk.attn.qkv.bias.any() and not blk.mlp.fc2.bias.any()
        assert torch.equal(blk.norm1.weight, torch.ones(128)) and not blk.norm1.bias.any()
    pred = tiny_predictor()
    assert all(not t.any() for t in pred.mask_tokens)
    pred = tiny_predictor(zero_init_mask_tokens=False)
    assert all(t.abs().sum() > 0 for t in pred.mask_tokens)
    assert pred.predictor_blocks[1].mlp.fc2.weight.std().item() == pytest.approx(0.01, rel=0.1)


def _distinct_mask_tokens(pred: VisionTransformerPredictor) -> None:
    with torch.no_grad():
        for t in pred.mask_tokens:
            t.normal_()


@pytest.mark.parametrize("pos_embed", ["rope", "sincos"])
@pytest.mark.parametrize("kc,kt", [(20, 12), (5, 27), (31, 1)])
def test_predictor_shapes_and_target_order(pos_embed: str, kc: int, kt: int) -> None:
    pred = tiny_predictor(pos_embed=pos_embed)
    _distinct_mask_tokens(pred)
    perm = torch.stack([torch.randperm(32) for _ in range(2)])
    ctx_idx, tgt_idx = perm[:, :kc].sort(1).values, perm[:, kc : kc + kt].sort(1).values
    ctx = torch.randn(2, kc, 64)
    with torch.no_grad():
        out = pred(ctx, ctx_idx, tgt_idx)
        assert out.shape == (2, kt, 64)
        # The row predicted for a target position does not depend on the order targets are listed in,
        # nor on the order of the context tokens.
        shuffle_t, shuffle_c = torch.randperm(kt), torch.randperm(kc)
        shuffled = pred(ctx[:, shuffle_c], ctx_idx[:, shuffle_c], tgt_idx[:, shuffle_t])
        torch.testing.assert_close(shuffled, out[:, shuffle_t], rtol=1e-4, atol=1e-5)


def test_predictor_mask_index_and_grid() -> None:
    pred = tiny_predictor()
    _distinct_mask_tokens(pred)
    ctx, ctx_idx, tgt_idx = torch.randn(1, 6, 64), torch.arange(6)[None], torch.arange(6, 10)[None]
    with torch.no_grad():
        out0, out1, out3 = (pred(ctx, ctx_idx, tgt_idx, mask_index=i) for i in (0, 1, 3))
        assert not torch.allclose(out0, out1)
        torch.testing.assert_close(out0, out3)  # 3 % num_mask_tokens == 0
        # A larger clip grid (8 frames instead of 4) is handled by passing its grid.
        far = torch.tensor([[60, 63]])
        assert pred(ctx, ctx_idx, far, grid=(4, 4, 4)).shape == (1, 2, 64)
        with pytest.raises(ValueError, match=r"\[0, 32\)"):
            pred(ctx, ctx_idx, far)


def test_attentive_pooler() -> None:
    pool = AttentivePooler(64, num_queries=2, num_heads=4, depth=2)
    keys = set(pool.state_dict())
    assert {"query_tokens", "blocks.1.attn.qkv.weight", "cross_attention_block.xattn.q.weight"} <= keys
    assert "cross_attention_block.xattn.kv.weight" in keys
    assert not any(k.startswith("cross_attention_block.xattn.proj") for k in keys)
    assert pool(torch.randn(3, 10, 64)).shape == (3, 2, 64)
    assert AttentivePooler(64, num_heads=4, depth=0)(torch.randn(3, 10, 64)).shape == (3, 1, 64)
    with pytest.raises(ValueError, match="tokens"):
        pool(torch.randn(3, 10, 32))


def test_parity_with_transformers_vjepa2() -> None:
    """Released layout end to end: same weights give the same encoder and predictor outputs as HF VJEPA2."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.VJEPA2Config(
        patch_size=8,
        crop_size=32,
        frames_per_clip=4,
        tubelet_size=2,
        hidden_size=52,
        num_attention_heads=2,
        num_hidden_layers=2,
        pred_hidden_size=26,
        pred_num_attention_heads=1,
        pred_num_hidden_layers=2,
        pred_num_mask_tokens=3,
    )
    hf = transformers.VJEPA2Model(cfg).eval()
    enc = tiny_encoder(embed_dim=52, num_heads=2)
    pred = tiny_predictor(embed_dim=52, predictor_embed_dim=26, num_heads=1)
    hsd = hf.state_dict()

    def blocks(src: str, dst: str) -> dict[str, torch.Tensor]:
        out = {}
        for i in range(2):
            a, b = f"{src}.{i}.", f"{dst}.{i}."
            for name in ("norm1", "norm2", "mlp.fc1", "mlp.fc2", "attention.proj"):
                for p in ("weight", "bias"):
                    out[f"{b}{name.replace('attention', 'attn')}.{p}"] = hsd[f"{a}{name}.{p}"]
            for p in ("weight", "bias"):
                out[f"{b}attn.qkv.{p}"] = torch.cat([hsd[f"{a}attention.{n}.{p}"] for n in ("query", "key", "value")])
        return out

    enc_sd = blocks("encoder.layer", "blocks")
    for ours, theirs in (("patch_embed.proj", "embeddings.patch_embeddings.proj"), ("norm", "layernorm")):
        enc_sd.update({f"{ours}.{p}": hsd[f"encoder.{theirs}.{p}"] for p in ("weight", "bias")})
    enc.load_state_dict(enc_sd)
    pred_sd = blocks("predictor.layer", "predictor_blocks")
    for ours, theirs in (
        ("predictor_embed", "embeddings.predictor_embeddings"),
        ("predictor_norm", "layernorm"),
        ("predictor_proj", "proj"),
    ):
        pred_sd.update({f"{ours}.{p}": hsd[f"predictor.{theirs}.{p}"] for p in ("weight", "bias")})
    tokens = torch.randn(3, 1, 1, 26)
    pred_sd.update({f"mask_tokens.{i}": tokens[i] for i in range(3)})
    pred.load_state_dict(pred_sd)
    with torch.no_grad():
        hf.predictor.embeddings.mask_tokens.copy_(tokens)

    x = torch.randn(2, 3, 4, 32, 32)
    ctx_idx = torch.stack([torch.randperm(32)[:12].sort().values for _ in range(2)])
    tgt_idx = torch.stack([torch.randperm(32)[:9].sort().values for _ in range(2)])
    with torch.no_grad():
        ref = hf.get_vision_features(x.permute(0, 2, 1, 3, 4))
        ours = enc(x)
        torch.testing.assert_close(ours, ref, rtol=1e-5, atol=1e-5)
        ref_pred = hf.predictor(ref, [ctx_idx], [tgt_idx]).last_hidden_state  # HF uses mask token 1
        ours_pred = pred(gather_tokens(ours, ctx_idx), ctx_idx, tgt_idx, mask_index=1)
        torch.testing.assert_close(ours_pred, ref_pred, rtol=1e-5, atol=1e-5)


def test_encoder_errors() -> None:
    enc = tiny_encoder()
    with pytest.raises(ValueError, match="clip"):
        enc(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="channels"):
        enc(torch.randn(1, 1, 4, 32, 32))
    with pytest.raises(ValueError, match="tubelet_size"):
        enc(torch.randn(1, 3, 3, 32, 32))
    with pytest.raises(ValueError, match="patch_size"):
        enc(torch.randn(1, 3, 4, 30, 32))
    x = torch.randn(2, 3, 4, 32, 32)
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        enc(x, masks=torch.tensor([[0, 32], [1, 2]]))
    with pytest.raises(ValueError, match=r"\[0, 32\)"):
        enc(x, masks=torch.tensor([[-1, 3], [1, 2]]))
    with pytest.raises(ValueError, match="batch size"):
        enc(x, masks=torch.tensor([[0, 1]]))
    with pytest.raises(ValueError, match="integer"):
        enc(x, masks=torch.zeros(2, 3))
    with pytest.raises(ValueError, match="divisible by patch_size"):
        VisionTransformer(img_size=30, patch_size=16)
    with pytest.raises(ValueError, match="num_frames"):
        VisionTransformer(num_frames=3, tubelet_size=2)
    with pytest.raises(ValueError, match="pos_embed"):
        VisionTransformer(pos_embed="learned")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="rope_layout"):
        VisionTransformer(rope_layout="half")
    with pytest.raises(ValueError, match="num_heads"):
        VisionTransformer(embed_dim=64, num_heads=5)


def test_predictor_and_gather_errors() -> None:
    pred = tiny_predictor()
    ctx, ctx_idx, tgt_idx = torch.randn(2, 4, 64), torch.arange(4).expand(2, -1), torch.arange(4, 8).expand(2, -1)
    with pytest.raises(ValueError, match="context"):
        pred(torch.randn(2, 4, 32), ctx_idx, tgt_idx)
    with pytest.raises(ValueError, match="ctx_idx shape"):
        pred(ctx, ctx_idx[:, :3], tgt_idx)
    with pytest.raises(ValueError, match="batch size"):
        pred(ctx, ctx_idx, tgt_idx[:1])
    with pytest.raises(ValueError, match="num_mask_tokens"):
        tiny_predictor(num_mask_tokens=0)
    with pytest.raises(ValueError, match=r"\(B, K\)"):
        check_indices(torch.arange(3), 5)
    with pytest.raises(ValueError, match=r"\(B, N, D\)"):
        gather_tokens(torch.randn(4, 5), torch.zeros(4, 1, dtype=torch.long))
    x = torch.randn(2, 5, 3)
    idx = torch.tensor([[4, 0], [2, 2]])
    assert torch.equal(gather_tokens(x, idx), torch.stack([x[0, [4, 0]], x[1, [2, 2]]]))


def test_drop_path_zeroes_whole_samples_and_keeps_the_mean() -> None:
    from jepa.models.layers import DropPath

    layer = DropPath(0.25).train()
    torch.manual_seed(0)
    out = layer(torch.ones(4000, 3, 5))
    per_sample = out.flatten(1)
    assert per_sample.unique().tolist() == pytest.approx([0.0, 1 / 0.75])  # a sample is dropped or scaled, never mixed
    assert (per_sample == 0).all(dim=1).float().mean().item() == pytest.approx(0.25, abs=0.03)
    assert out.mean().item() == pytest.approx(1.0, abs=0.05)
    x = torch.randn(2, 3)
    assert layer.eval()(x) is x
    with pytest.raises(ValueError):
        DropPath(1.0)


def test_patch_embed_matmul_path_equals_the_convolution() -> None:
    # The CUDA path (unfolded tubelets @ flattened Conv3d weight) must be the same function,
    # including the dropped partial tubelet / patch at the edges.
    embed = tiny_encoder().patch_embed
    for shape in [(2, 3, 4, 32, 32), (1, 3, 5, 35, 41)]:
        x = torch.randn(*shape)
        conv = embed(x)
        embed.matmul = True
        torch.testing.assert_close(embed(x), conv, rtol=1e-5, atol=1e-5)
        embed.matmul = None


_COMPILE_ONE_BLOCK = """
import torch
import torch._dynamo  # imports inductor, which writes its default cache folder into the environment
from jepa.models.layers import Block, compile_blocks
torch.manual_seed(0)
block = Block(32, 2)
compile_blocks(block)
print(float(block(torch.ones(1, 4, 32)).sum()))
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="AVX2 is an x86-64 capability")
def test_compiled_code_for_one_cpu_capability_is_not_reused_under_another(tmp_path: Path) -> None:
    """A run under ATEN_CPU_CAPABILITY=avx2, then a plain one, with one inductor cache default:
    on an AVX-512 CPU the plain run reloaded AVX2 code and aborted (compile_blocks keeps them apart)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "ATEN_CPU_CAPABILITY")}
    env["TMPDIR"] = str(tmp_path)  # where inductor's default cache folder goes
    outputs = []
    for capability in ("avx2", None):
        run_env = {**env, "ATEN_CPU_CAPABILITY": capability} if capability else env
        done = subprocess.run([sys.executable, "-c", _COMPILE_ONE_BLOCK], env=run_env, capture_output=True, text=True)
        assert done.returncode == 0, f"capability {capability}: rc {done.returncode}\n{done.stderr[-2000:]}"
        outputs.append(float(done.stdout.split()[-1]))
    assert outputs[0] == pytest.approx(outputs[1], rel=1e-4)
    assert (tmp_path / f"torchinductor_{getpass.getuser()}" / "capability_avx2").is_dir()


def test_compile_blocks_keeps_names_and_outputs() -> None:
    enc, pred = tiny_encoder(), tiny_predictor()
    x = torch.randn(2, 3, 4, 32, 32)
    ctx_idx, tgt_idx = torch.arange(6).expand(2, -1), torch.arange(6, 16).expand(2, -1)
    ref = pred(enc(x, masks=ctx_idx), ctx_idx, tgt_idx)
    keys = list(enc.state_dict()) + list(pred.state_dict())
    assert compile_blocks(enc) == 2 and compile_blocks(pred) == 2
    assert list(enc.state_dict()) + list(pred.state_dict()) == keys  # checkpoints are unchanged
    torch.testing.assert_close(pred(enc(x, masks=ctx_idx), ctx_idx, tgt_idx), ref, rtol=1e-4, atol=1e-4)
