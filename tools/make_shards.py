"""Write the videos of a manifest (or folder) into tar shards for large-corpus training.

    python tools/make_shards.py /data/k710_train.csv /data/shards/k710 \
        --samples-per-shard 1000 --max-shard-mb 2048 --shuffle-seed 0

Then train from them with a dataset entry of kind ``shards``::

    python tools/train.py data=manifest \
        'data.datasets=[{path: /data/shards/k710, kind: shards}]'

Add ``data.stream_shards=true`` to read them webdataset-style (shards dealt to ranks and
workers, each read front to back). Video bytes are copied unchanged; labels and source
paths go into a ``.json`` member per sample. See docs/distributed.md.
"""

from __future__ import annotations

import argparse
import sys
import time

from jepa.data.manifest import describe_classes, manifest_classes, read_manifest
from jepa.data.shards import write_shards


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifest", help="manifest file (csv / tsv / 'path label') or folder of videos")
    parser.add_argument("out_dir", help="folder to write shard-NNNNNN.tar (+ .tar.index.json) into")
    parser.add_argument("--samples-per-shard", type=int, default=1000)
    parser.add_argument("--max-shard-mb", type=float, default=None, help="also close a shard at this size")
    parser.add_argument("--shuffle-seed", type=int, default=None, help="write rows in a seeded random order")
    parser.add_argument("--overwrite", action="store_true", help="replace shards already in out_dir")
    parser.add_argument(
        "--classes", default=None,
        help="manifest or folder whose class names number class-name labels (give the train set's when "
        "sharding a val set); default: the manifest's own names, sorted",
    )  # fmt: skip
    args = parser.parse_args(argv)

    classes = manifest_classes(args.classes or args.manifest)
    if classes:
        print(describe_classes(classes))
    entries = read_manifest(args.manifest, kind="video", classes=classes)
    max_bytes = None if args.max_shard_mb is None else int(args.max_shard_mb * 2**20)
    t0 = time.perf_counter()
    shards = write_shards(
        entries,
        args.out_dir,
        samples_per_shard=args.samples_per_shard,
        max_shard_bytes=max_bytes,
        shuffle_seed=args.shuffle_seed,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {len(entries)} videos into {len(shards)} shard(s) in {args.out_dir} ({time.perf_counter() - t0:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
