"""Generated video data with known latent factors, for demos, tests and learning benchmarks.

Each video shows one or two sprites of a class-specific shape and colour moving in a straight
line (wrapping around the borders) over a static random texture with per-frame noise. The
factors are the sprite class, the direction (one of `num_directions` angles) and the speed
(one of `speeds`, pixels per frame). A single frame tells the class but neither direction nor
speed: those have to be read from several frames, which is what a video model should learn.

Two options make the factors harder to read off the pixels (both off by default, and then the
videos are bit-identical to those made before the options existed): `distractors` adds sprites
of other shapes moving any way at any speed, so "which way do things move" no longer answers
the question; `pan` moves the camera at that many pixels per frame in a random direction per
video, so the texture moves too and the labelled motion is the sprite's motion relative to the
scene (on screen it moves at its velocity minus the camera's).

Files are real H.264 mp4 (PyAV/libx264), so the whole decode path is exercised. Generation is
deterministic under `seed`; a dataset folder records its parameters and is reused when they
match.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import shutil
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from jepa.atomic import atomic_dir

SYNTHETIC_VERSION = 2
FACTORS = ("class", "direction", "speed")
SPLITS = ("all", "train", "val")
PARAMS_FILE = "synthetic.json"
MANIFEST_FILE = "manifest.csv"

_CODECS = {".mp4": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9"}
_PALETTE = np.array(
    [
        [230, 40, 40],
        [40, 200, 60],
        [50, 90, 240],
        [240, 210, 40],
        [220, 60, 220],
        [40, 220, 220],
        [250, 140, 30],
        [245, 245, 245],
    ],
    dtype=np.float32,
)
_OPTION_DEFAULTS = {"distractors": 0, "pan": 0.0}
_SHAPES = ("disc", "square", "triangle", "cross", "diamond", "ring", "bar", "hourglass")


def write_video(
    path: str | os.PathLike,
    frames: np.ndarray,
    fps: float,
    codec: str | None = None,
    keyint: int | None = None,
    crf: int | None = None,
    preset: str = "veryfast",
    faststart: bool = False,
) -> Path:
    """Encode uint8 RGB frames (T, H, W, 3) to a video file; codec from the extension by default.

    `keyint` fixes the keyframe interval (in frames); height and width must be even (yuv420p);
    `faststart` puts the mp4 index before the data, as files prepared for streaming have it.
    """
    path = Path(path)
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise ValueError(f"frames must be uint8 (T, H, W, 3) with T >= 1, got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"height and width must be even for yuv420p, got {height}x{width}")
    codec = codec or _CODECS.get(path.suffix.lower())
    if codec is None:
        raise ValueError(f"no default codec for {path.suffix!r}; pass codec=")
    rate = int(fps) if float(fps).is_integer() else Fraction(fps).limit_denominator(1001)
    container_options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=container_options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        options: dict[str, str] = {}
        if codec == "libx264":
            options["preset"] = preset
            # MB-tree rate control encoded the same frames to different bytes from run to run
            # (12 generations of a 6-video set: 5 variants with it, none without), which made
            # "same seed, same data" false and the pinned loss curve flaky.
            params = ["threads=1", "no-mbtree=1"]
            if keyint:
                params.append(f"keyint={keyint}:min-keyint={keyint}:scenecut=0")
            options["x264-params"] = ":".join(params)
        if crf is not None:
            options["crf"] = str(crf)
        if keyint:
            stream.codec_context.gop_size = keyint
        stream.options = options
        for index, frame in enumerate(frames):
            yuv = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format="yuv420p", threads=1)
            # Explicit timestamps, so rate control and the container see the real frame rate.
            yuv.pts, yuv.time_base = index, Fraction(1, 1) / Fraction(rate)
            container.mux(stream.encode(yuv))
        container.mux(stream.encode())
    return path


def _shape_mask(shape: str, size: int) -> np.ndarray:
    """Boolean (size, size) sprite of a named shape."""
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    dy, dx = (y - c) / (size / 2), (x - c) / (size / 2)
    r = np.sqrt(dx**2 + dy**2)
    masks = {
        "disc": r <= 0.95,
        "square": (np.abs(dx) <= 0.8) & (np.abs(dy) <= 0.8),
        "triangle": (dy >= -0.9) & (dy <= 0.9) & (np.abs(dx) <= (dy + 0.9) / 2),
        "cross": (np.abs(dx) <= 0.3) | (np.abs(dy) <= 0.3),
        "diamond": np.abs(dx) + np.abs(dy) <= 0.95,
        "ring": (r <= 0.95) & (r >= 0.55),
        "bar": (np.abs(dy) <= 0.35),
        "hourglass": np.abs(dx) <= np.abs(dy) + 0.1,
    }
    return masks[shape]


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """A smooth random colour texture (size, size, 3) in a mid-grey range sprites stand out from."""
    coarse = torch.from_numpy(rng.random((1, 4, max(2, size // 8), max(2, size // 8)), dtype=np.float32))
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)[0].clamp(0, 1)
    # Mostly grey luminance with a little colour, so sprite colours stay the salient cue.
    texture = 0.7 * smooth[:1] + 0.3 * smooth[1:]
    return (40 + 100 * texture).permute(1, 2, 0).numpy()


def render_video(
    class_id: int,
    direction: int,
    speed: float,
    num_frames: int,
    size: int,
    rng: np.random.Generator,
    num_directions: int = 8,
    num_sprites: int = 1,
    distractors: int = 0,
    pan: float = 0.0,
) -> np.ndarray:
    """uint8 (num_frames, size, size, 3) of sprites of `class_id` moving along `direction` at
    `speed` px/frame relative to the scene; see the module docstring for `distractors` and `pan`."""
    sprite = max(5, size // 6)
    mask = _shape_mask(_SHAPES[class_id], sprite)
    color = np.clip(_PALETTE[class_id] + rng.normal(0, 12, 3), 0, 255).astype(np.float32)
    angle = 2 * math.pi * direction / num_directions
    velocity = speed * np.array([math.sin(angle), math.cos(angle)])
    starts = rng.uniform(0, size, (num_sprites, 2))
    background = _background(size, rng)
    noise = rng.normal(0, 4, (num_frames, size, size, 3)).astype(np.float32)
    # (mask, colour, start, velocity) per sprite; the extra draws come last so that videos
    # without the options keep the random stream, and the pixels, they always had.
    movers = [(mask, color, start, velocity) for start in starts]
    for _ in range(distractors):
        other = int(rng.choice([c for c in range(len(_SHAPES)) if c != class_id]))
        heading, pace = rng.uniform(0, 2 * math.pi), rng.uniform(0.5, 3.0)
        movers.append((
            _shape_mask(_SHAPES[other], sprite),
            np.clip(_PALETTE[other] + rng.normal(0, 12, 3), 0, 255).astype(np.float32),
            rng.uniform(0, size, 2),
            pace * np.array([math.sin(heading), math.cos(heading)]),
        ))  # fmt: skip
    camera = np.zeros(2)
    if pan:
        heading = rng.uniform(0, 2 * math.pi)
        camera = pan * np.array([math.sin(heading), math.cos(heading)])
    video = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    offsets = np.arange(sprite)
    for t in range(num_frames):
        view = np.round(camera * t).astype(np.int64)
        frame = (np.roll(background, tuple(-view), axis=(0, 1)) if pan else background) + noise[t]
        for shape, colour, start, motion in movers:
            top, left = (np.round(start + motion * t).astype(np.int64) - view) % size
            rows, cols = (top + offsets) % size, (left + offsets) % size
            patch = frame[rows[:, None], cols[None, :]]
            patch[shape] = colour
            frame[rows[:, None], cols[None, :]] = patch
        video[t] = np.clip(frame, 0, 255)
    return video


def _balanced(rng: np.random.Generator, count: int, values: int) -> np.ndarray:
    return rng.permutation(np.resize(np.arange(values), count))


def draw_factors(rng: np.random.Generator, p: dict) -> dict[str, np.ndarray]:
    """Balanced class, direction and speed indices of `p["num_videos"]` videos, in shuffled order."""
    n = p["num_videos"]
    return {
        "class": _balanced(rng, n, p["num_classes"]),
        "direction": _balanced(rng, n, p["num_directions"]),
        "speed": _balanced(rng, n, len(p["speeds"])),
    }


def split_names(n: int, val_fraction: float) -> list[str]:
    """The last `val_fraction` of the videos are val (their order is already random)."""
    num_val = int(round(n * val_fraction))
    return ["train"] * (n - num_val) + ["val"] * num_val


def make_synthetic_dataset(
    root: str | os.PathLike,
    num_videos: int = 64,
    num_frames: int = 32,
    size: int = 64,
    fps: int = 8,
    seed: int = 0,
    num_classes: int = 4,
    num_directions: int = 8,
    speeds: tuple[float, ...] = (1.0, 2.0, 3.0),
    max_sprites: int = 2,
    val_fraction: float = 0.25,
    overwrite: bool = False,
    distractors: int = 0,
    pan: float = 0.0,
) -> Path:
    """Write videos and manifests under `root`; returns the path of `manifest.csv` (label = class).

    Also written: `factors.csv` (path, class, direction, speed, split) and one manifest per
    factor and split, `{factor}_{split}.csv` with split in all/train/val, so a probe can use any
    factor as its label. Reuses `root` when it holds a dataset made with the same parameters.
    """
    params = {
        "version": SYNTHETIC_VERSION,
        "num_videos": int(num_videos),
        "num_frames": int(num_frames),
        "size": int(size),
        "fps": int(fps),
        "seed": int(seed),
        "num_classes": int(num_classes),
        "num_directions": int(num_directions),
        "speeds": [float(s) for s in speeds],
        "max_sprites": int(max_sprites),
        "val_fraction": float(val_fraction),
        **_options(distractors=distractors, pan=pan),
    }
    _check_params(params)
    return build_labelled_set(root, params, _generate, overwrite)


def build_labelled_set(
    root: str | os.PathLike, params: dict, generate: Callable[[Path, dict], None], overwrite: bool = False
) -> Path:
    """`generate(staging, params)` into `root` atomically, or reuse `root` when it holds a set made
    with the same `params`; returns the path of its `manifest.csv`."""
    root = Path(root)
    if _matches(root, params):
        return root / MANIFEST_FILE
    if root.exists() and any(root.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{root} holds other data or a dataset with other parameters; pass overwrite=True")
        shutil.rmtree(root)
    try:
        with atomic_dir(root, replace=False) as staging:
            generate(staging, params)
    except OSError:
        if _matches(root, params):
            return root / MANIFEST_FILE
        raise
    return root / MANIFEST_FILE


def _check_params(p: dict) -> None:
    if p["num_videos"] < 1 or p["num_frames"] < 1:
        raise ValueError("num_videos and num_frames must be >= 1")
    if p["size"] < 16 or p["size"] % 2:
        raise ValueError(f"size must be an even number >= 16, got {p['size']}")
    if not 1 <= p["num_classes"] <= len(_SHAPES):
        raise ValueError(f"num_classes must be in [1, {len(_SHAPES)}], got {p['num_classes']}")
    if p["num_directions"] < 1 or not p["speeds"] or min(p["speeds"]) <= 0:
        raise ValueError("need num_directions >= 1 and positive speeds")
    if p["fps"] < 1 or p["max_sprites"] < 1 or not 0 <= p["val_fraction"] < 1:
        raise ValueError("need fps >= 1, max_sprites >= 1 and 0 <= val_fraction < 1")
    if p.get("distractors", 0) < 0 or p.get("pan", 0.0) < 0:
        raise ValueError(f"need distractors >= 0 and pan >= 0, got {p.get('distractors')} and {p.get('pan')}")


def _options(distractors: int, pan: float) -> dict:
    """The optional parameters that differ from their defaults: a dataset made without them keeps
    the parameters (and cache folder) it had before they existed."""
    chosen = {"distractors": int(distractors), "pan": float(pan)}
    return {k: v for k, v in chosen.items() if v != _OPTION_DEFAULTS[k]}


def _matches(root: Path, params: dict) -> bool:
    try:
        stored = json.loads((root / PARAMS_FILE).read_text())
    except (OSError, ValueError):
        return False
    return stored == params and (root / MANIFEST_FILE).is_file()


def _generate(out: Path, p: dict) -> None:
    rng = np.random.default_rng(p["seed"])
    n = p["num_videos"]
    factors = draw_factors(rng, p)
    sprites = rng.integers(1, p["max_sprites"] + 1, n)
    splits = split_names(n, p["val_fraction"])
    video_seeds = rng.integers(2**63, size=n)

    def render(i: int) -> np.ndarray:
        return render_video(
            int(factors["class"][i]),
            int(factors["direction"][i]),
            p["speeds"][factors["speed"][i]],
            p["num_frames"],
            p["size"],
            np.random.default_rng(int(video_seeds[i])),
            p["num_directions"],
            int(sprites[i]),
            p.get("distractors", 0),
            p.get("pan", 0.0),
        )

    write_set(out, p, factors, splits, render)


def write_set(
    out: Path, p: dict, factors: dict[str, np.ndarray], splits: list[str], render: Callable[[int], np.ndarray]
) -> None:
    """Encode `render(i)` as videos/{i}.mp4 for every video, then its labels (write_labels)."""
    (out / "videos").mkdir()
    rows = []
    for i in range(p["num_videos"]):
        name = f"videos/{i:06d}.mp4"
        write_video(out / name, render(i), p["fps"])
        rows.append({"path": name, **{f: int(factors[f][i]) for f in FACTORS}, "split": splits[i]})
    write_labels(out, rows, p)


def write_labels(out: Path, rows: list[dict], p: dict) -> None:
    """factors.csv, one manifest per factor and split, manifest.csv (label = class) and the
    parameters file: the layout every labelled set shares, so probes and benchmarks read any."""
    with open(out / "factors.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", *FACTORS, "split"])
        writer.writeheader()
        writer.writerows(rows)
    for factor in FACTORS:
        for split in SPLITS:
            chosen = [r for r in rows if split == "all" or r["split"] == split]
            _write_manifest(out / f"{factor}_{split}.csv", [(r["path"], r[factor]) for r in chosen])
    _write_manifest(out / MANIFEST_FILE, [(r["path"], r["class"]) for r in rows])
    (out / PARAMS_FILE).write_text(json.dumps(p, indent=1, sort_keys=True))


def _write_manifest(path: Path, rows: list[tuple[str, int]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(rows)


def default_cache_dir() -> Path:
    """$JEPA_CACHE/synthetic, else ~/.cache/jepa/synthetic."""
    base = os.environ.get("JEPA_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "jepa") / "synthetic"


def ensure_synthetic_dataset(cache_dir: str | os.PathLike | None = None, **params) -> Path:
    """Manifest path of a synthetic dataset with these parameters, generating it on first use.

    Each parameter set gets its own folder (named by a hash of the parameters) under the cache
    directory; concurrent first uses by several processes are safe.
    """
    named = {k: v for k, v in params.items() if k not in _OPTION_DEFAULTS}
    named.update(_options(**{k: params.get(k, d) for k, d in _OPTION_DEFAULTS.items()}))
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    return make_synthetic_dataset(root / params_key({"version": SYNTHETIC_VERSION, **named}), **params)


def params_key(params: dict) -> str:
    """A short stable folder name for a parameter set."""
    return hashlib.sha1(json.dumps(params, sort_keys=True, default=list).encode()).hexdigest()[:12]
