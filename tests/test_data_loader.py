"""StreamSampler, weighted mixing and the multi-worker loader: coverage, resume, determinism."""

import copy

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from jepa.data.dataset import VideoDataset
from jepa.data.loader import build_pretrain_loader, default_decode_threads, default_num_workers, process_cores
from jepa.data.manifest import ManifestEntry
from jepa.data.mixing import MixedDataset
from jepa.data.sampler import StreamSampler
from jepa.data.synthetic import write_video
from jepa.data.transforms import RandomResizedCropClip
from jepa.data.video import ClipSampler


def take(iterable, n):
    it = iter(iterable)
    return [next(it) for _ in range(n)]


def test_stream_covers_each_epoch_once_and_splits_ranks():
    single = take(StreamSampler(10, seed=1), 30)
    assert [p for p, _ in single] == list(range(30))
    for epoch in range(3):
        assert sorted(i for _, i in single[epoch * 10 : (epoch + 1) * 10]) == list(range(10))
    assert [i for _, i in single[:10]] != [i for _, i in single[10:20]], "a new order each epoch"
    ranks = [take(StreamSampler(10, seed=1, rank=r, world_size=3), 10) for r in range(3)]
    merged = sorted(pair for rank in ranks for pair in rank)
    assert merged == single, "ranks interleave the one global stream"
    assert [i for _, i in take(StreamSampler(5, seed=0, shuffle=False), 7)] == [0, 1, 2, 3, 4, 0, 1]


def test_stream_resumes_exactly():
    full = take(StreamSampler(7, seed=3, rank=1, world_size=2), 20)
    resumed = take(StreamSampler(7, seed=3, rank=1, world_size=2, start=16), 12)
    assert resumed == full[8:]
    sampler = StreamSampler(7, seed=3)
    sampler.load_state_dict({"start": 5, "seed": 3, "num_samples": 7})
    assert take(sampler, 3) == take(StreamSampler(7, seed=3), 8)[5:]
    with pytest.raises(ValueError):
        sampler.load_state_dict({"start": 5, "seed": 3, "num_samples": 8})


class Constant(Dataset):
    def __init__(self, value, size):
        self.value, self.size = value, size

    def __len__(self):
        return self.size

    def __getitem__(self, key):
        sample_id, index = key
        return {"value": self.value, "index": index, "sample_id": sample_id}


def test_mixing_weights_within_tolerance():
    mixed = MixedDataset([Constant(0, 5), Constant(1, 50), Constant(2, 500)], [0.335, 0.100, 0.565], seed=0)
    draws = np.array([mixed[s]["value"] for s in range(20000)])
    freq = np.bincount(draws, minlength=3) / len(draws)
    # 4 standard deviations of a binomial proportion at n = 20000 is under 0.015.
    np.testing.assert_allclose(freq, [0.335, 0.100, 0.565], atol=0.015)
    assert mixed[(123, 0)] == mixed[123] and mixed[123]["dataset"] == mixed.choose(123)[0]
    indices = [mixed[s]["index"] for s in range(2000) if mixed[s]["value"] == 0]
    assert set(indices) == set(range(5)), "entries of a dataset are drawn uniformly"
    assert {MixedDataset([Constant(0, 3), Constant(1, 3)], [1, 0])[s]["value"] for s in range(200)} == {0}
    with pytest.raises(ValueError):
        MixedDataset([Constant(0, 3)], [1, 2])
    with pytest.raises(ValueError):
        MixedDataset([Constant(0, 3), Constant(1, 3)], [-1, 2])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("loader")
    rng = np.random.default_rng(0)
    entries = []
    for i in range(6):
        texture = rng.integers(0, 256, (32, 96, 3), dtype=np.uint8)
        clip = np.stack([np.roll(texture, 3 * t, axis=1)[:, :48] for t in range(20)])
        entries.append(ManifestEntry(str(write_video(root / f"{i}.mp4", clip, 10)), i))
    return VideoDataset(entries, ClipSampler(4, frame_step=2), RandomResizedCropClip(16), seed=5)


def batches(dataset, num_workers, n=4, **kw):
    loader = build_pretrain_loader(
        dataset, batch_size=3, num_workers=num_workers, seed=11, persistent_workers=False, timeout=120, **kw
    )
    return take(loader, n)


def test_two_workers_give_different_reproducible_samples(dataset):
    first = batches(dataset, num_workers=2)
    second = batches(dataset, num_workers=2)
    inline = batches(dataset, num_workers=0)
    for a, b, c in zip(first, second, inline):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["video"], c["video"])
        assert torch.equal(a["clip_indices"], c["clip_indices"])
    ids = torch.cat([b["sample_id"] for b in first])
    assert ids.tolist() == list(range(12)), "consecutive batches come from the two workers in turn"
    videos = torch.cat([b["video"] for b in first])
    assert len({v.numpy().tobytes() for v in videos}) == 12, "every draw differs"
    resumed = batches(dataset, num_workers=2, n=2, start_sample=6)
    assert torch.equal(resumed[0]["video"], first[2]["video"])


def test_ranks_get_disjoint_samples(dataset):
    r0 = batches(dataset, 0, n=2, rank=0, world_size=2)
    r1 = batches(dataset, 0, n=2, rank=1, world_size=2)
    ids0 = torch.cat([b["sample_id"] for b in r0]).tolist()
    ids1 = torch.cat([b["sample_id"] for b in r1]).tolist()
    assert ids0 == [0, 2, 4, 6, 8, 10] and ids1 == [1, 3, 5, 7, 9, 11]


def test_default_num_workers_leaves_a_core():
    assert 0 <= default_num_workers() <= 16
    assert default_num_workers(local_world_size=10_000) == 0


def test_a_worker_decoding_on_threads_gives_the_same_batches(dataset):
    inline = batches(dataset, num_workers=0)
    threaded = copy.copy(dataset)
    threaded.decode_threads = 2
    for a, b in zip(inline, batches(threaded, num_workers=1)):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["sample_id"], b["sample_id"])


def test_default_decode_threads_cover_the_cores():
    cores = process_cores()
    assert default_decode_threads(0) == 1
    assert default_decode_threads(default_num_workers()) == 1
    assert default_decode_threads(1) == max(1, cores - 1)
    assert default_decode_threads(3, local_world_size=10_000) == 1
