"""Embedding extraction over real H.264 files written here: one row per (window, crop), an index
consistent with the shard files and the videos, rows that match a direct encoder call, and a
rerun after an interruption that computes only the unfinished shards."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from tool_module import load_tool

from jepa.data.loader import default_num_workers
from jepa.data.manifest import read_manifest
from jepa.data.synthetic import write_video
from jepa.data.transforms import normalize_clip
from jepa.data.video import read_clips
from jepa.export.embed import EmbedConfig, ViewEncoder, crop_offsets, extract_embeddings, make_views, window_indices
from jepa.export.writers import export_encoder
from jepa.models.vit import VisionTransformer

FPS = 8
LENGTHS = (24, 40, 5)  # the last is shorter than one window (span 7): one window over it
SIZE = (48, 64)  # H, W: not square, so crops move along the width


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("videos")
    rng = np.random.default_rng(0)
    rows = []
    for i, n in enumerate(LENGTHS):
        # A bright bar that moves one column per frame: windows of one video differ.
        frames = (rng.integers(0, 60, (n, *SIZE, 3))).astype(np.uint8)
        for t in range(n):
            frames[t, :, (3 * t) % SIZE[1]] = 255
        write_video(root / f"v{i}.mp4", frames, FPS)
        rows.append(f"v{i}.mp4,{i}")
    (root / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    rows.insert(2, "broken.mp4,9")
    (root / "manifest.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    return root / "manifest.csv"


def _encoder() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(
        img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=32, depth=1, num_heads=2
    ).eval()


# fp32: these tests compare stored rows with a direct forward exactly (auto is bf16 on some CPUs).
CFG = dict(
    frames_per_clip=4,
    frame_step=2,
    stride_frames=4,
    crop_size=32,
    short_side=32,
    num_crops=2,
    batch_size=3,
    precision="fp32",
)


def _index(out: Path) -> list[dict[str, str]]:
    with open(out / "index.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_window_plan_and_crops() -> None:
    cfg = EmbedConfig(**CFG)
    windows = window_indices(24, FPS, cfg)
    assert windows.tolist() == [[s, s + 2, s + 4, s + 6] for s in (0, 4, 8, 12, 16)]
    assert window_indices(5, FPS, cfg).tolist() == [[0, 1, 3, 4]]  # one window spread over the short video
    assert len(window_indices(40, FPS, EmbedConfig(**{**CFG, "stride_frames": None, "stride_s": 1.0}))) == 5
    assert window_indices(40, FPS, EmbedConfig(**{**CFG, "stride_frames": None}))[:, 0].tolist() == [0, 7, 14, 21, 28]
    assert len(window_indices(40, FPS, EmbedConfig(**{**CFG, "stride_frames": None, "num_clips": 3}))) == 3
    assert crop_offsets(32, 42, 32, 2) == [(0, 0), (0, 10)] and crop_offsets(40, 32, 32, 1) == [(4, 0)]
    with pytest.raises(ValueError, match="exactly one"):
        EmbedConfig(frames_per_clip=4)
    with pytest.raises(ValueError, match="outputs"):
        EmbedConfig(frame_step=2, outputs=("logits",))


@torch.no_grad()
def test_rows_index_and_values(dataset: Path, tmp_path: Path) -> None:
    encoder = _encoder()
    entries = read_manifest(dataset)
    cfg = EmbedConfig(**CFG, outputs=("pooled", "tokens"), videos_per_shard=2)
    summary = extract_embeddings(encoder, entries, tmp_path / "emb", cfg, progress=False)

    windows = {0: 5, 1: 9, 3: 1}  # (n - 7) // 4 + 1 back-to-back windows; the 5-frame video gives one
    assert summary.num_rows == 2 * sum(windows.values()) and summary.num_shards == 2
    assert [Path(p).name for p, _ in summary.failed_videos] == ["broken.mp4"]
    index = _index(tmp_path / "emb")
    assert [int(r["row"]) for r in index] == list(range(summary.num_rows))
    assert {int(r["video"]): sum(1 for x in index if x["video"] == r["video"]) for r in index} == {
        v: 2 * n for v, n in windows.items()
    }  # fmt: skip
    shards = [load_file(str(tmp_path / "emb" / f"shard_{s:05d}.safetensors")) for s in range(2)]
    assert sum(len(s["pooled"]) for s in shards) == summary.num_rows
    assert shards[0]["tokens"].shape[1:] == (2, 4, 4, 32) and shards[0]["pooled"].dtype == np.float32
    for r in index:
        assert int(r["end_frame"]) - int(r["start_frame"]) == (7 if r["video"] != "3" else 5)
        assert float(r["start_s"]) == pytest.approx(int(r["start_frame"]) / FPS)
        assert r["label"] == {"0": "0", "1": "1", "3": "2"}[r["video"]] and r["path"].endswith(f"v{r['label']}.mp4")

    # A row's vector is the encoder's output on exactly that window and crop.
    for r in (index[3], index[-1]):
        # Frames are decoded straight at the resize size (short side 32), as the engine does.
        frames = read_clips(r["path"], window_indices(LENGTHS[int(r["label"])], FPS, cfg), target_short_side=32)
        view = make_views(frames, cfg)[int(r["window"]), int(r["crop"])]
        expected = encoder(normalize_clip(view[None]))
        got = shards[int(r["shard"])]
        assert np.allclose(got["pooled"][int(r["shard_row"])], expected.mean(1)[0].numpy(), atol=1e-5)
        assert np.allclose(got["tokens"][int(r["shard_row"])].reshape(-1, 32), expected[0].numpy(), atol=1e-5)


class _Interrupt(RuntimeError):
    pass


def test_resume_skips_finished_shards(dataset: Path, tmp_path: Path) -> None:
    encoder = _encoder()
    entries = read_manifest(dataset)
    cfg = EmbedConfig(**CFG, videos_per_shard=1)
    out = tmp_path / "emb"
    seen: list[int] = []

    def interrupt_on_fifth(module: torch.nn.Module, args: tuple, output: torch.Tensor) -> None:
        seen.append(len(output))
        if len(seen) == 5:  # shard 0 took batches of 3 + 3 + 3 + 1 views; this is inside shard 1
            raise _Interrupt

    handle = encoder.register_forward_hook(interrupt_on_fifth)
    with pytest.raises(_Interrupt):
        extract_embeddings(encoder, entries, out, cfg, progress=False)
    handle.remove()
    assert (out / "shard_00000.csv").is_file() and not (out / "shard_00001.csv").exists()
    assert not (out / "index.csv").exists()
    first_shard = (out / "shard_00000.safetensors").stat().st_mtime_ns

    seen.clear()
    encoder.register_forward_hook(lambda m, a, o: seen.append(len(o)))
    summary = extract_embeddings(encoder, entries, out, cfg, progress=False)
    assert summary.skipped_shards == [0] and summary.computed_shards == [1, 2, 3]
    assert sum(seen) == 2 * (9 + 1)  # only videos 1 and 3 (video 2 is the broken file)
    assert (out / "shard_00000.safetensors").stat().st_mtime_ns == first_shard
    index = _index(out)
    assert len(index) == summary.num_rows == 30 and [r["shard"] for r in index].count("0") == 10

    with pytest.raises(ValueError, match=r"other settings \(settings.crop_size: 32 -> 24; settings.short_side"):
        extract_embeddings(
            encoder, entries, out, EmbedConfig(**{**CFG, "crop_size": 24, "short_side": 24}), progress=False
        )
    # The worker count changes no value: a resume may change it, also against a file written
    # before it was left out of the record.
    config = out / "embed.json"
    record = json.loads(config.read_text())
    assert "num_workers" not in record["settings"]
    record["settings"]["num_workers"] = 3
    config.write_text(json.dumps(record))
    again = extract_embeddings(
        encoder, entries, out, EmbedConfig(**CFG, videos_per_shard=1, num_workers=1), progress=False
    )
    assert again.skipped_shards == [0, 1, 2, 3] and again.num_rows == 30


def test_decode_workers_default_by_device() -> None:
    cfg = EmbedConfig(**CFG)
    assert cfg.num_workers is None and cfg.workers(torch.device("cpu")) == 0
    assert cfg.workers(torch.device("cuda")) == default_num_workers()
    assert EmbedConfig(**{**CFG, "num_workers": 2}).workers(torch.device("cpu")) == 2
    with pytest.raises(ValueError, match="num_workers"):
        EmbedConfig(**{**CFG, "num_workers": -1})
    line = ViewEncoder(_encoder(), cfg, torch.device("cpu")).describe()
    assert line.startswith("setup: cpu, precision fp32, decode workers 0 (auto), decoder "), line


def test_tool_writes_npy_shards_from_an_exported_encoder(dataset: Path, tmp_path: Path) -> None:
    exported = export_encoder(_encoder(), tmp_path / "encoder")
    tool = load_tool("embed")
    argv = [
        "--checkpoint", str(exported), "--manifest", str(dataset), "--out", str(tmp_path / "emb"), "--frames", "4",
        "--frame-step", "2", "--num-clips", "2", "--crop", "32", "--format", "npy", "--save-dtype", "float16",
        "--no-progress", "--videos-per-shard", "3",
    ]  # fmt: skip
    assert tool.main(argv) == 0
    pooled = [np.load(tmp_path / "emb" / f"shard_{s:05d}.pooled.npy") for s in range(2)]
    assert [len(p) for p in pooled] == [4, 2] and pooled[0].dtype == np.float16  # 2 clips x 3 readable videos
    settings = json.loads((tmp_path / "emb" / "embed.json").read_text())["settings"]
    assert settings["num_clips"] == 2 and settings["fps"] is None
    assert len(_index(tmp_path / "emb")) == 6


def test_layers_concatenate_block_outputs_in_rows_and_on_the_fly(dataset: Path, tmp_path: Path) -> None:
    """Rows made with `layers` are the encoder's out_layers output; a wrong block number stops before decoding."""
    from jepa.eval.features import extract_features

    encoder = VisionTransformer(
        img_size=32, patch_size=8, num_frames=4, tubelet_size=2, embed_dim=32, depth=2, num_heads=2
    ).eval()
    entries = [e for e in read_manifest(dataset) if "broken" not in str(e.path)]
    cfg = EmbedConfig(
        **{**CFG, "stride_frames": None, "num_clips": 1, "num_crops": 1}, outputs=("pooled", "tokens"), layers=(1, 2)
    )
    extract_embeddings(encoder, entries, tmp_path / "emb", cfg, progress=False)
    shard = load_file(str(tmp_path / "emb" / "shard_00000.safetensors"))
    assert shard["tokens"].shape[1:] == (2, 4, 4, 64) and shard["pooled"].shape[1] == 64
    assert json.loads((tmp_path / "emb" / "embed.json").read_text())["settings"]["layers"] == [1, 2]
    features = extract_features(encoder, entries, cfg, device="cpu")
    assert features.dim == 64
    assert np.allclose(
        features.tokens.reshape(len(features.tokens), -1).numpy(),
        shard["tokens"].reshape(len(shard["tokens"]), -1),
        atol=1e-5,
    )
    r = _index(tmp_path / "emb")[0]
    frames = read_clips(r["path"], window_indices(LENGTHS[int(r["label"])], FPS, cfg), target_short_side=32)
    view = make_views(frames, cfg)[0, 0]
    with torch.no_grad():
        expected = encoder(normalize_clip(view[None]), out_layers=[1, 2])
    assert np.allclose(shard["tokens"][0].reshape(-1, 64), expected[0].numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="out_layers"):
        extract_embeddings(encoder, entries, tmp_path / "bad", EmbedConfig(**CFG, layers=(3,)), progress=False)
    assert not (tmp_path / "bad" / "shard_00000.csv").exists()
    with pytest.raises(ValueError, match="layers"):
        EmbedConfig(**CFG, layers=(0,))


def test_auto_precision_is_bf16_only_where_matmuls_are_native(monkeypatch: pytest.MonkeyPatch) -> None:
    from jepa.export.embed import resolve_precision

    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None and resolve_precision("bf16", cpu) is torch.bfloat16
    assert resolve_precision("auto", torch.device("cuda")) is torch.bfloat16
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert resolve_precision("auto", cpu) is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert resolve_precision("auto", cpu) is torch.bfloat16
