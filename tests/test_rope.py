"""3D RoPE: released-layout compatibility, the rotation properties of the interleaved
layout, untouched remainder channels, per-axis masking, and the position helpers."""

import pytest
import torch

from jepa.models.rope import RoPE3D, grid_positions, index_to_position


def _dot(rope: RoPE3D, q: torch.Tensor, k: torch.Tensor, pq: torch.Tensor, pk: torch.Tensor) -> torch.Tensor:
    return (rope.apply(q, pq) * rope.apply(k, pk)).sum(-1)


def test_index_to_position_is_t_major() -> None:
    grid = (2, 3, 4)
    pos = grid_positions(grid)
    assert pos.shape == (24, 3)
    t, h, w = pos.long().unbind(-1)
    assert torch.equal(t * 12 + h * 4 + w, torch.arange(24))
    assert pos[13].tolist() == [1.0, 0.0, 1.0]
    idx = torch.tensor([[23, 5], [0, 12]])
    assert index_to_position(idx, grid).shape == (2, 2, 3)
    assert index_to_position(idx, grid)[0, 0].tolist() == [1.0, 2.0, 3.0]


def test_axis_split_sizes() -> None:
    rope = RoPE3D(64)  # ViT-L / ViT-g head dim
    assert (rope.axis_dim, rope.rotated_dim) == (20, 60)
    rope = RoPE3D(80)  # ViT-H head dim
    assert (rope.axis_dim, rope.rotated_dim) == (26, 78)


def test_interleaved_is_relative_and_norm_preserving() -> None:
    rope = RoPE3D(24, layout="interleaved")
    q, k = torch.randn(2, 3, 5, 24, dtype=torch.float64), torch.randn(2, 3, 5, 24, dtype=torch.float64)
    pq, pk = torch.randint(0, 8, (5, 3)).double(), torch.randint(0, 8, (5, 3)).double()
    shift = torch.tensor([3.0, -2.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(_dot(rope, q, k, pq, pk), _dot(rope, q, k, pq + shift, pk + shift))
    torch.testing.assert_close(rope.apply(q, pq).norm(dim=-1), q.norm(dim=-1))


def test_released_layout_matches_transformers_reference() -> None:
    """HF `rotate_queries_or_keys` is a faithful port of the released code; match it bit for bit."""
    modeling = pytest.importorskip("transformers.models.vjepa2.modeling_vjepa2")
    rope = RoPE3D(26)  # axis_dim 8, 2 remainder channels
    x = torch.randn(2, 3, 7, 26)
    for pos in (torch.randint(0, 9, (7, 3)).float(), torch.randint(0, 9, (2, 7, 3)).float()):
        d = rope.axis_dim
        pos_h = pos if pos.ndim == 2 else pos.unsqueeze(1).expand(-1, 3, -1, -1)
        parts = [modeling.rotate_queries_or_keys(x[..., a * d : (a + 1) * d], pos_h[..., a]) for a in range(3)]
        expected = torch.cat(parts + [x[..., 3 * d :]], dim=-1)
        assert torch.equal(rope.apply(x, pos), expected)


def test_layouts_differ_except_with_one_frequency() -> None:
    x, pos = torch.randn(1, 2, 6, 24), torch.randint(1, 9, (6, 3)).float()
    released, interleaved = RoPE3D(24, "released"), RoPE3D(24, "interleaved")
    assert not torch.allclose(released.apply(x, pos), interleaved.apply(x, pos))
    # The released table pairs channels 2i, 2i+1 with different frequencies: not a rotation.
    assert not torch.allclose(released.apply(x, pos).norm(dim=-1), x.norm(dim=-1))
    # With d = 2 there is a single frequency, and both tables are [f_0, f_0].
    x6 = torch.randn(1, 2, 6, 7)
    torch.testing.assert_close(RoPE3D(7, "released").apply(x6, pos), RoPE3D(7, "interleaved").apply(x6, pos))


@pytest.mark.parametrize("layout", ["released", "interleaved"])
def test_remainder_untouched_and_zero_position_is_identity(layout: str) -> None:
    rope = RoPE3D(26, layout)
    x, pos = torch.randn(2, 2, 5, 26), torch.randint(1, 9, (2, 5, 3)).float()
    out = rope.apply(x, pos)
    assert torch.equal(out[..., 24:], x[..., 24:])
    assert not torch.allclose(out[..., :24], x[..., :24])
    assert torch.equal(rope.apply(x, torch.zeros(5, 3)), x)


@pytest.mark.parametrize("layout", ["released", "interleaved"])
def test_axis_mask_leaves_masked_axes_unrotated(layout: str) -> None:
    rope = RoPE3D(24, layout)
    d = rope.axis_dim
    x, pos = torch.randn(1, 2, 4, 24), torch.randint(1, 9, (4, 3)).float()
    frame_only = torch.tensor([[True, False, False]] * 4)
    out = rope.apply(x, pos, axis_mask=frame_only)
    assert torch.equal(out[..., d:], x[..., d:])
    assert torch.equal(out[..., :d], rope.apply(x, pos)[..., :d])
    # Per-token masks: token 0 unrotated, the rest fully rotated.
    mask = torch.ones(4, 3, dtype=torch.bool)
    mask[0] = False
    out = rope.apply(x, pos, axis_mask=mask)
    assert torch.equal(out[..., 0, :], x[..., 0, :])
    assert torch.equal(out[..., 1:, :], rope.apply(x, pos)[..., 1:, :])


def test_rope_errors() -> None:
    with pytest.raises(ValueError, match="head_dim >= 6"):
        RoPE3D(5)
    with pytest.raises(ValueError, match="layout"):
        RoPE3D(24, layout="rotate_half")  # type: ignore[arg-type]
    rope = RoPE3D(24)
    with pytest.raises(ValueError, match="positions"):
        rope.apply(torch.randn(1, 1, 4, 24), torch.zeros(5, 3))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        rope.apply(torch.randn(1, 1, 4, 24), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="head_dim"):
        rope.apply(torch.randn(1, 1, 4, 12), torch.zeros(4, 3))
