"""Write the synthetic moving-sprites video dataset (H.264 mp4 + manifests) to a folder.

python tools/make_synthetic.py data/synthetic                 # 64 videos, 32 frames, 64 px
python tools/make_synthetic.py data/syn_big --num-videos 1000 --num-frames 64 --size 128
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from jepa.data.synthetic import make_synthetic_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="output folder")
    parser.add_argument("--num-videos", type=int, default=64)
    parser.add_argument("--num-frames", type=int, default=32)
    parser.add_argument("--size", type=int, default=64, help="frame height and width (even)")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-classes", type=int, default=4, help="sprite shapes, at most 8")
    parser.add_argument("--num-directions", type=int, default=8)
    parser.add_argument("--speeds", type=float, nargs="+", default=[1.0, 2.0, 3.0], help="pixels per frame")
    parser.add_argument("--max-sprites", type=int, default=2)
    parser.add_argument("--val-fraction", type=float, default=0.25)
    parser.add_argument("--distractors", type=int, default=0, help="sprites of other shapes moving any way")
    parser.add_argument("--pan", type=float, default=0.0, help="camera speed in pixels per frame (random direction)")
    parser.add_argument("--overwrite", action="store_true", help="replace a folder made with other parameters")
    args = parser.parse_args()
    start = time.perf_counter()
    try:
        manifest = make_synthetic_dataset(
            args.root,
            num_videos=args.num_videos,
            num_frames=args.num_frames,
            size=args.size,
            fps=args.fps,
            seed=args.seed,
            num_classes=args.num_classes,
            num_directions=args.num_directions,
            speeds=tuple(args.speeds),
            max_sprites=args.max_sprites,
            val_fraction=args.val_fraction,
            overwrite=args.overwrite,
            distractors=args.distractors,
            pan=args.pan,
        )
    except (FileExistsError, ValueError) as err:
        parser.error(str(err))
    print(f"{manifest} ({time.perf_counter() - start:.1f} s)")
    print(f"factor manifests: {manifest.parent}/<class|direction|speed>_<all|train|val>.csv")


if __name__ == "__main__":
    main()
