"""Tar shards: the writer, the same clips as the manifest source, webdataset-style streaming
that resumes mid-epoch without repeating or skipping, and training from shards."""

from __future__ import annotations

import itertools
import json
import tarfile
from pathlib import Path

import pytest
import torch
from test_train import compose_cfg, tiny_overrides
from tool_module import load_tool

from jepa.data.clips import ClipSampler
from jepa.data.dataset import VideoDataset
from jepa.data.manifest import ManifestEntry, read_manifest
from jepa.data.shards import (
    ShardDataset,
    ShardError,
    ShardStream,
    build_stream_loader,
    expand_shard_spec,
    index_path,
    read_shard,
    scan_shard,
    write_shards,
)
from jepa.data.synthetic import ensure_synthetic_dataset
from jepa.data.transforms import RandomResizedCropClip
from jepa.train.logging import read_metrics
from jepa.train.trainer import train

NUM_VIDEOS = 6


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("synthetic")
    return Path(ensure_synthetic_dataset(cache, num_videos=NUM_VIDEOS, num_frames=12, size=32, fps=8, seed=0))


@pytest.fixture(scope="module")
def shards(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    written = write_shards(read_manifest(manifest), out, samples_per_shard=4)
    assert [p.name for p in written] == ["shard-000000.tar", "shard-000001.tar"]
    return out


def datasets(manifest: Path, shards: Path, seed: int = 5) -> tuple[VideoDataset, ShardDataset]:
    sampler = ClipSampler(4, frame_step=2)
    transform = RandomResizedCropClip(32)
    return VideoDataset(read_manifest(manifest), sampler, transform, seed=seed), ShardDataset(
        shards, sampler, transform, seed=seed
    )


def test_writer_layout_is_webdataset(manifest: Path, shards: Path) -> None:
    entries = read_manifest(manifest)
    with tarfile.open(shards / "shard-000000.tar") as tar:
        names = tar.getnames()
        assert names[:4] == ["000000000.mp4", "000000000.json", "000000001.mp4", "000000001.json"]
        video = tar.extractfile("000000001.mp4").read()
        meta = json.loads(tar.extractfile("000000001.json").read())
    assert video == Path(entries[1].path).read_bytes(), "video bytes must be copied unchanged"
    assert meta == {"label": entries[1].label, "source": entries[1].path, "row": 1}
    assert index_path(shards / "shard-000000.tar").is_file()
    with pytest.raises(FileExistsError):
        write_shards(entries, shards)


def test_index_and_scan_agree_and_stale_index_is_ignored(shards: Path, tmp_path: Path) -> None:
    tar = shards / "shard-000001.tar"
    assert read_shard(tar) == scan_shard(tar)
    copy = tmp_path / "s.tar"
    copy.write_bytes(tar.read_bytes())
    index_path(copy).write_text(json.dumps({"format": "jepa-shard-index", "tar_size": 1, "samples": []}))
    assert [s.key for s in read_shard(copy)] == [s.key for s in scan_shard(tar)]


def test_shard_source_gives_the_manifest_clips(manifest: Path, shards: Path) -> None:
    by_manifest, by_shards = datasets(manifest, shards)
    assert len(by_shards) == len(by_manifest) == NUM_VIDEOS
    for sample_id in range(2 * NUM_VIDEOS):
        key = (sample_id, sample_id % NUM_VIDEOS)
        a, b = by_manifest[key], by_shards[key]
        assert torch.equal(a["video"], b["video"]), key
        assert torch.equal(a["clip_indices"], b["clip_indices"]) and a["label"] == b["label"]
    assert by_shards.num_failures == 0


def test_shuffled_shards_keep_each_file_with_its_clip(manifest: Path, tmp_path: Path) -> None:
    write_shards(read_manifest(manifest), tmp_path, samples_per_shard=4, shuffle_seed=1)
    by_manifest, by_shards = datasets(manifest, tmp_path)
    rows = []
    for tar in sorted(tmp_path.glob("*.tar")):
        with tarfile.open(tar) as t:
            rows += [json.loads(t.extractfile(m).read())["row"] for m in t if m.name.endswith(".json")]
    assert sorted(rows) == list(range(NUM_VIDEOS)) and rows != list(range(NUM_VIDEOS))
    for i, row in enumerate(rows):
        assert torch.equal(by_shards[(7, i)]["video"], by_manifest[(7, row)]["video"])


def test_truncated_shard_member_is_replaced_not_fatal(manifest: Path, shards: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    for tar in shards.glob("*.tar"):
        (broken / tar.name).write_bytes(tar.read_bytes())
        index_path(broken / tar.name).write_text(index_path(tar).read_text())
    last = read_shard(broken / "shard-000001.tar")[-1]
    with open(broken / "shard-000001.tar", "r+b") as f:  # keep the size, zero the video
        f.seek(last.offset)
        f.write(b"\0" * last.size)
    _, by_shards = datasets(manifest, broken)
    item = by_shards[(0, NUM_VIDEOS - 1)]
    assert item["num_failed"] == 1 and item["index"] != NUM_VIDEOS - 1
    assert last.name in by_shards.bad_paths


def test_expand_shard_spec(shards: Path) -> None:
    both = [str(shards / "shard-000000.tar"), str(shards / "shard-000001.tar")]
    assert expand_shard_spec(shards) == both
    assert expand_shard_spec(f"{shards}/shard-*.tar") == both
    assert expand_shard_spec(f"{shards}/shard-{{000000..000001}}.tar") == both
    assert expand_shard_spec(f"{shards}/shard-000001.tar,{shards}/shard-000000.tar") == both
    with pytest.raises(ShardError):
        expand_shard_spec(shards / "nope-*.tar")
    with pytest.raises(ShardError):
        expand_shard_spec(shards / "shard-000009.tar")


def test_stream_deals_each_shard_once_per_epoch(manifest: Path, tmp_path: Path) -> None:
    write_shards(read_manifest(manifest), tmp_path, samples_per_shard=1)  # 6 shards
    _, by_shards = datasets(manifest, tmp_path)
    for world, workers in [(1, 1), (2, 2), (4, 2)]:  # 8 slots > 6 shards too
        slots = world * workers
        streams = [ShardStream(by_shards, seed=3, rank=r, world_size=world) for r in range(world)]
        seen = [
            key
            for r in range(world)
            for w in range(workers)
            for key in itertools.islice(streams[r].slot_order(r * workers + w, slots), 2 * NUM_VIDEOS)
        ]
        first_epoch = sorted(sample_id for sample_id, _ in seen if sample_id < NUM_VIDEOS)
        assert first_epoch == list(range(NUM_VIDEOS)), (world, workers)
        assert len(set(seen)) == len(seen)


def batches(loader: torch.utils.data.DataLoader, count: int) -> list[list[tuple[int, int]]]:
    out = []
    for batch in itertools.islice(iter(loader), count):
        out.append(list(zip(batch["sample_id"].tolist(), batch["index"].tolist())))
    return out


def test_stream_resume_mid_epoch_neither_repeats_nor_skips(manifest: Path, shards: Path) -> None:
    _, by_shards = datasets(manifest, shards)
    kwargs = {"batch_size": 2, "num_workers": 2, "seed": 3, "rank": 1, "world_size": 2}
    full = batches(build_stream_loader(by_shards, **kwargs), 5)
    resumed = batches(build_stream_loader(by_shards, start_batch=3, **kwargs), 2)
    assert full[3:] == resumed
    flat = [key for batch in full for key in batch]
    assert len(set(flat)) == len(flat)
    other_rank = batches(build_stream_loader(by_shards, **{**kwargs, "rank": 0}), 3)
    assert not {k for b in other_rank for k in b} & set(flat[:6]), "ranks read different samples"


def test_stream_decodes_on_threads_to_the_same_batches(manifest: Path, shards: Path) -> None:
    _, one = datasets(manifest, shards)
    _, four = datasets(manifest, shards)
    four.decode_threads = 4
    kwargs = {"batch_size": 3, "num_workers": 0, "seed": 3}
    a, b = build_stream_loader(one, **kwargs), build_stream_loader(four, **kwargs)
    assert b.dataset.decode_threads == 4
    for x, y in itertools.islice(zip(a, b), 3):
        assert torch.equal(x["video"], y["video"]) and torch.equal(x["sample_id"], y["sample_id"])


def shard_run(tmp_path: Path, manifest: Path, name: str, dataset: str, *extra: str) -> list[float]:
    run = tmp_path / name
    overrides = tiny_overrides(run, tmp_path / "unused", steps=2) + [
        "data.synthetic.enabled=false",
        f"data.datasets=[{dataset}]",
        "trainer.tensorboard=false",
        "trainer.ckpt_every=0",
        *extra,
    ]
    train(compose_cfg(overrides))
    return [r["loss"] for r in read_metrics(run)]


def test_training_from_shards_matches_training_from_the_manifest(manifest: Path, shards: Path, tmp_path: Path) -> None:
    from_manifest = shard_run(tmp_path, manifest, "manifest", f"{{path: '{manifest}', kind: video}}")
    from_shards = shard_run(tmp_path, manifest, "shards", f"{{path: '{shards}', kind: shards}}")
    assert from_shards == from_manifest
    streamed = shard_run(tmp_path, manifest, "stream", f"{{path: '{shards}', kind: shards}}", "data.stream_shards=true")
    assert len(streamed) == 2 and all(torch.isfinite(torch.tensor(streamed)))


def test_stream_needs_a_single_shard_source(manifest: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="stream_shards"):
        shard_run(tmp_path, manifest, "bad", f"{{path: '{manifest}', kind: video}}", "data.stream_shards=true")


def test_make_shards_tool(manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    tool = load_tool("make_shards")
    assert tool.main([str(manifest), str(tmp_path / "out"), "--samples-per-shard", "5"]) == 0
    assert "wrote 6 videos into 2 shard(s)" in capsys.readouterr().out
    assert sum(len(read_shard(p)) for p in (tmp_path / "out").glob("*.tar")) == NUM_VIDEOS
    # Every synthetic video is over 1 kB, so a 1 kB cap closes a shard after each one.
    assert tool.main([str(manifest), str(tmp_path / "small"), "--max-shard-mb", str(1 / 1024)]) == 0
    assert [len(read_shard(p)) for p in sorted((tmp_path / "small").glob("*.tar"))] == [1] * NUM_VIDEOS
    # Class names: a val manifest missing a class keeps the train numbering with --classes.
    paths = [e.path for e in read_manifest(manifest)]
    (tmp_path / "train.csv").write_text(
        "path,label\n" + "".join(f"{p},{n}\n" for p, n in zip(paths, ["b", "a", "c"] * 2))
    )
    (tmp_path / "val.csv").write_text(f"path,label\n{paths[2]},c\n")
    assert tool.main([str(tmp_path / "val.csv"), str(tmp_path / "val"), "--classes", str(tmp_path / "train.csv")]) == 0
    assert "classes (3, numbered in this order): a, b, c" in capsys.readouterr().out
    assert [s.label for p in (tmp_path / "val").glob("*.tar") for s in read_shard(p)] == [2]


def test_writer_rejects_images_and_empty_input(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="images"):
        write_shards([ManifestEntry(str(tmp_path / "a.jpg"), 0)], tmp_path / "x")
    with pytest.raises(ValueError, match="no entries"):
        write_shards([], tmp_path / "y")
