"""Data pipeline throughput (protocol: docs/benchmarks.md, "Data"): one process, 16 frames at fps 4, crop 256,
from 10 s 426x240 30 fps H.264 files with a 2 s keyframe interval (written here first).

    python tools/bench_data.py                      # both backends, 200 clips each, one decode thread
    python tools/bench_data.py --backends pyav --clips 500 --workdir /tmp/jepa_bench_videos
    python tools/bench_data.py --threads 1 2        # also 2 threads decoding a batch's clips (data.decode_threads)

A clip is the full training path: open, sample indices, decode, random-resized crop to 256,
flip, uint8 out. Reported: clips/s by wall clock and by this process's CPU time (the latter
is steadier on a shared machine).
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jepa.data.dataset import VideoDataset  # noqa: E402
from jepa.data.manifest import ManifestEntry  # noqa: E402
from jepa.data.synthetic import write_video  # noqa: E402
from jepa.data.transforms import RandomResizedCropClip  # noqa: E402
from jepa.data.video import ClipSampler, available_backends  # noqa: E402

HEIGHT, WIDTH, FPS, SECONDS, KEYINT = 240, 426, 30, 10, 60


def scene(seed: int) -> np.ndarray:
    """10 s of camera-like content: a panning textured scene, moving objects, sensor noise."""
    rng = np.random.default_rng(seed)
    n = FPS * SECONDS
    coarse = torch.from_numpy(rng.random((1, 3, HEIGHT // 8 + 40, WIDTH // 8 + 80), dtype=np.float32))
    world = F.interpolate(coarse, scale_factor=8, mode="bicubic")[0].permute(1, 2, 0).clamp(0, 1).numpy() * 200 + 20
    pan = rng.uniform(-1.5, 1.5, 2)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    frames = np.empty((n, HEIGHT, WIDTH, 3), dtype=np.uint8)
    for t in range(n):
        oy = int(80 + pan[0] * t * 0.3) % (world.shape[0] - HEIGHT)
        ox = int(160 + pan[1] * t * 0.5) % (world.shape[1] - WIDTH)
        img = world[oy : oy + HEIGHT, ox : ox + WIDTH].copy()
        for j in range(3):
            cx, cy = (50 + 120 * j + 1.3 * (j + 1) * t) % WIDTH, HEIGHT / 2 + 60 * np.sin(t / 20 + j)
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < (25 + 5 * j) ** 2] = [255 * (j == 0), 255 * (j == 1), 255 * (j == 2)]
        img += rng.normal(0, 3, img.shape).astype(np.float32)
        frames[t] = np.clip(img, 0, 255)
    return frames


def bench_files(workdir: Path, count: int) -> list[Path]:
    workdir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = workdir / f"bench_{i}.mp4"
        if not path.exists():
            tmp = path.with_suffix(".tmp.mp4")
            write_video(tmp, scene(i), FPS, keyint=KEYINT, crf=23, preset="medium")
            tmp.rename(path)
        paths.append(path)
    return paths


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{model}, {os.cpu_count()} logical cores, {platform.system()} {platform.release()}"


def run(
    backend: str, paths: list[Path], clips: int, warmup: int, threads: int, batch: int, crop: int = 256
) -> tuple[float, float]:
    """Clips/s (wall, per CPU-second) loading batches of `batch` clips as the DataLoader does
    (`__getitems__`), their clips spread over `threads` threads of this process."""
    entries = [ManifestEntry(str(p), 0) for p in paths]
    transform = RandomResizedCropClip(crop)
    dataset = VideoDataset(entries, ClipSampler(16, fps=4), transform, backend=backend, seed=0, decode_threads=threads)
    keys = [(s, s % len(entries)) for s in range(warmup + clips)]
    dataset.__getitems__(keys[:warmup])
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(warmup, warmup + clips, batch):
        items = dataset.__getitems__(keys[start : min(start + batch, warmup + clips)])
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert items[-1]["video"].shape == (1, 16, crop, crop, 3) and dataset.num_failures == 0
    return clips / wall, clips / cpu


def decode_floor(paths: list[Path], clips: int, warmup: int) -> float:
    """Clips per CPU-second of demuxing and decoding alone (PyAV): the conversion to RGB, the
    crop and the copies are replaced by no-ops, so this is the ceiling of the pyav path."""
    from jepa.data import video_pyav

    blank = np.zeros((1, 1, 3), dtype=np.uint8)
    original = video_pyav.PyAVReader._to_array
    video_pyav.PyAVReader._to_array = staticmethod(lambda frame, resize: blank)  # type: ignore[method-assign]
    try:
        entries = [ManifestEntry(str(p), 0) for p in paths]
        dataset = VideoDataset(entries, ClipSampler(16, fps=4), None, backend="pyav", seed=0)
        for s in range(warmup):
            dataset[(s, s % len(entries))]
        cpu = time.process_time()
        for s in range(warmup, warmup + clips):
            dataset[(s, s % len(entries))]
        return clips / (time.process_time() - cpu)
    finally:
        video_pyav.PyAVReader._to_array = original  # type: ignore[method-assign]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=200, help="timed clips per backend")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--threads", type=int, nargs="+", default=[1], help="decode threads (one row each)")
    parser.add_argument("--batch", type=int, default=8, help="clips per __getitems__ call (a loader batch)")
    parser.add_argument("--backends", nargs="+", default=available_backends())
    parser.add_argument(
        "--crop", type=int, default=256,
        help="crop side; below ~200 the 240-line files are decoded at a reduced size (the scaler's path)",
    )  # fmt: skip
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "jepa_bench_videos")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(f"torch {torch.__version__}, torch threads {torch.get_num_threads()}, one process, batches of {args.batch}")
    print("machine:", machine())
    paths = bench_files(args.workdir, args.files)
    kbps = np.mean([p.stat().st_size * 8 / 1000 / SECONDS for p in paths])
    print(f"data: {len(paths)} x {SECONDS} s {WIDTH}x{HEIGHT} {FPS} fps H.264, ", end="")
    print(f"keyframe every {KEYINT} frames, {kbps:.0f} kbit/s")
    short = RandomResizedCropClip(args.crop).min_source_short_side
    print(
        f"clip: 16 frames at fps 4, random-resized crop {args.crop} (scale 0.3-1, ratio 0.75-1.35), flip, uint8;",
        end=" ",
    )
    print(f"decoded at short side {short} where the source is larger" if short < HEIGHT else "decoded at full size")
    for backend in args.backends:
        for threads in args.threads:
            wall, cpu = run(backend, paths, args.clips, args.warmup, threads, args.batch, args.crop)
            label = f"{backend}, {threads} decode thread{'s' * (threads > 1)}"
            print(f"{label:>24}: {wall:6.1f} clips/s (wall)   {cpu:6.1f} clips/s (per CPU-second)")
    if "pyav" in args.backends:
        floor = decode_floor(paths, args.clips, args.warmup)
        print(
            f"{'floor':>24}: {floor:6.1f} clips/s (per CPU-second) demuxing + decoding only (pyav; no RGB, crop or copies)"
        )


if __name__ == "__main__":
    main()
