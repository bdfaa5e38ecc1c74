"""Pretrain a V-JEPA encoder. One script for every scale; Hydra picks the recipe.

CPU demo (generated data, ViT-tiny, a few minutes on 2 cores)::

    python tools/train.py

One GPU, a released recipe on your own manifests::

    python tools/train.py experiment=vitl16_pretrain data=manifest \
        'data.datasets=[{path: /data/train.csv, weight: 1.0}]'

One node, 8 GPUs (either launcher)::

    torchrun --standalone --nproc_per_node 8 tools/train.py experiment=vitl16_pretrain
    accelerate launch --multi_gpu --num_processes 8 tools/train.py experiment=vitl16_pretrain

N nodes (run on every node; rendezvous on the first one)::

    torchrun --nnodes 16 --nproc_per_node 8 --rdzv_backend c10d \
        --rdzv_endpoint $HEAD_NODE:29500 tools/train.py experiment=vitl16_pretrain

SLURM (hydra-submitit-launcher, one task per GPU; see docs/distributed.md)::

    python tools/train.py -m hydra/launcher=slurm experiment=vitg16_pretrain \
        launch.nodes=16 launch.partition=gpu launch.timeout_min=4320

Multi-process on CPU (gloo) for testing: ``torchrun --standalone --nproc_per_node 2
tools/train.py trainer.cpu=true``.

Rerunning the same command resumes from ``<run_dir>/checkpoints/latest``.
"""

import os

import hydra
from omegaconf import DictConfig

from jepa.train.build import dataset_sources
from jepa.train.config import register_configs
from jepa.train.report import run_report
from jepa.train.trainer import train

register_configs()


@hydra.main(config_path="../configs", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> None:
    summary = train(cfg)
    if int(os.environ.get("RANK", "0")) == 0:  # once per run, not once per process
        manifests = [path for path, _, kind, _ in dataset_sources(cfg) if kind != "shards"]
        print(run_report(summary, manifests, cfg.data.frames_per_clip, cfg.data.crop_size))


if __name__ == "__main__":
    main()
