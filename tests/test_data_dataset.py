"""VideoDataset: deterministic draws, bad files skipped and counted, images as clips."""

import logging
import threading

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from jepa.data.dataset import VideoDataset
from jepa.data.manifest import read_manifest
from jepa.data.mixing import MixedDataset
from jepa.data.synthetic import write_video
from jepa.data.transforms import RandomResizedCropClip
from jepa.data.video import ClipSampler


def frames(num_frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (32, 96, 3), dtype=np.uint8)
    return np.stack([np.roll(texture, 2 * t, axis=1)[:, :48] for t in range(num_frames)])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("ds")
    for i in range(4):
        write_video(root / f"good{i}.mp4", frames(24, i), 12, keyint=8)
    Image.fromarray(frames(1, 9)[0]).save(root / "still.png")
    (root / "empty.mp4").write_bytes(b"")
    (root / "garbage.webm").write_bytes(np.random.default_rng(0).bytes(3000))
    whole = (root / "good0.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(whole[: len(whole) // 2])
    write_video(root / "cut.mp4", frames(24, 5), 12, keyint=8, faststart=True)
    cut = (root / "cut.mp4").read_bytes()
    (root / "cut.mp4").write_bytes(cut[: len(cut) // 3])
    (root / "gone.mp4").write_bytes(b"soon deleted")
    rows = [f"good{i}.mp4,{i}" for i in range(4)] + ["still.png,7"]
    rows += ["empty.mp4,0", "garbage.webm,0", "truncated.mp4,0", "cut.mp4,0", "gone.mp4,0"]
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    entries = read_manifest(root / "manifest.csv")
    (root / "gone.mp4").unlink()  # disappears after the manifest was read
    return {
        "entries": entries,
        "bad": {str(root / n) for n in ["empty.mp4", "garbage.webm", "truncated.mp4", "cut.mp4", "gone.mp4"]},
    }


def make(entries, **kw):
    sampler = kw.pop("sampler", ClipSampler(8, frame_step=3))
    return VideoDataset(entries, sampler, RandomResizedCropClip(16), **kw)


def test_epoch_completes_with_bad_files_skipped_and_counted(data, caplog):
    ds = make(data["entries"])
    items = []
    with caplog.at_level(logging.WARNING):
        for batch in DataLoader(ds, batch_size=3):
            items += [{"index": int(i), "num_failed": int(n)} for i, n in zip(batch["index"], batch["num_failed"])]
    assert len(items) == len(ds) == 10
    good_indices = set(range(5))
    assert all(item["index"] in good_indices for item in items)
    assert ds.bad_paths == data["bad"]
    assert ds.num_failures == sum(item["num_failed"] for item in items) >= 5
    for path in data["bad"]:
        assert sum(path in r.getMessage() for r in caplog.records) == 1, f"{path} reported once"


def test_draws_are_a_pure_function_of_seed_and_sample_id(data):
    a, b = make(data["entries"], seed=3), make(data["entries"], seed=3)
    first = a[(11, 2)]
    for _ in range(2):  # a second call on the same object and a fresh object agree
        again = b[(11, 2)]
        assert torch.equal(first["video"], again["video"]) and torch.equal(first["clip_indices"], again["clip_indices"])
    assert first["sample_id"] == 11 and first["index"] == 2 and first["label"] == 2
    assert first["video"].shape == (1, 8, 16, 16, 3) and first["video"].dtype == torch.uint8
    assert (first["clip_indices"].diff(dim=1) == 3).all()
    other = [a[(s, 2)]["clip_indices"][0, 0].item() for s in range(12, 30)]
    assert len(set(other)) > 1, "other sample ids give other clips"
    c = make(data["entries"], seed=4)[(11, 2)]
    assert not torch.equal(first["video"], c["video"])


def test_replacement_of_a_bad_entry_is_deterministic(data):
    bad_index = 5
    picks = {make(data["entries"])[(s, bad_index)]["index"] for s in range(3)}
    assert picks <= set(range(5))
    assert make(data["entries"])[(1, bad_index)]["index"] == make(data["entries"])[(1, bad_index)]["index"]


def test_images_become_clips(data):
    still = [e for e in data["entries"] if e.path.endswith(".png")]
    item = make(still, sampler=ClipSampler(6, frame_step=2, num_clips=2))[0]
    assert item["video"].shape == (2, 6, 16, 16, 3) and item["label"] == 7
    assert (item["video"] == item["video"][:1, :1]).all()
    assert item["clip_indices"].shape == (2, 6) and not item["clip_indices"].any()
    single = make(still, image_frames=1)[0]
    assert single["video"].shape == (1, 1, 16, 16, 3)


def test_short_videos_are_skipped_when_asked(data):
    entries = data["entries"][:4]
    ds = make(entries, sampler=ClipSampler(8, frame_step=2, short_video="skip"))
    long_ok = ds[(0, 0)]
    assert long_ok["num_skipped"] == 0
    too_long = make(entries[:3], sampler=ClipSampler(30, frame_step=1, short_video="skip"))
    with pytest.raises(RuntimeError, match="could not be used"):
        too_long[(0, 0)]
    assert too_long.num_skipped_short >= 1 and len(too_long.short_paths) == 3


def test_all_bad_raises_after_retries(data):
    bad = [e for e in data["entries"] if e.path in data["bad"]]
    ds = make(bad, max_retries=3)
    with pytest.raises(RuntimeError, match="4 entries in a row"):
        ds[0]


def test_threads_load_a_batch_to_the_same_items_and_the_same_bookkeeping(data, caplog):
    keys = [(s, s % len(data["entries"])) for s in range(20)]
    one = make(data["entries"], seed=2)
    inline = [one[k] for k in keys]
    four = make(data["entries"], seed=2, decode_threads=4)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        threaded = four.__getitems__(keys)
    for a, b in zip(inline, threaded):
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["clip_indices"], b["clip_indices"])
        assert (a["index"], a["sample_id"], a["num_failed"]) == (b["index"], b["sample_id"], b["num_failed"])
    assert four.bad_paths == one.bad_paths == data["bad"]
    assert four.num_failures == one.num_failures == sum(item["num_failed"] for item in threaded)
    for path in data["bad"]:
        assert sum(path in r.getMessage() for r in caplog.records) == 1, f"{path} reported once"
    batch = next(iter(DataLoader(make(data["entries"], seed=2, decode_threads=3), batch_size=5)))
    assert torch.equal(batch["video"], torch.stack([one[i]["video"] for i in range(5)]))


def test_threads_decode_and_the_calling_thread_transforms(data):
    """Torch ops stay off the pool threads (they slowed the step computing in the same process)."""
    seen = set()
    crop = RandomResizedCropClip(16)

    def transform(video, generator):
        seen.add(threading.current_thread().name)
        return crop(video, generator)

    ds = VideoDataset(data["entries"][:5], ClipSampler(8, frame_step=3), transform, decode_threads=3)
    items = ds.__getitems__(list(range(5)))
    assert seen == {threading.current_thread().name}
    assert items[4]["video"].shape == (1, 8, 16, 16, 3), "the still image became a clip"


def test_a_threaded_mix_gives_the_items_of_an_inline_one(data):
    good = data["entries"][:5]
    parts = [make(good[:2], seed=1), make(good[2:], seed=1)]
    keys = list(range(12))
    inline = [MixedDataset(parts, [1, 2], seed=1)[k] for k in keys]
    threaded = MixedDataset(parts, [1, 2], seed=1, decode_threads=4).__getitems__(keys)
    assert [i["dataset"] for i in inline] == [i["dataset"] for i in threaded] and len(
        {i["dataset"] for i in inline}
    ) == 2
    for a, b in zip(inline, threaded):
        assert torch.equal(a["video"], b["video"]) and a["index"] == b["index"]
