"""Pictures of a JEPA run: masks, feature PCA, training curves and planning episodes.

Each subcommand writes a PNG (``--out``) and, where the picture moves, an animated GIF
(``--gif``) and / or an MP4 (``--mp4``)::

    python tools/viz.py masks --out masks.png --gif masks.gif            # generated demo clip
    python tools/viz.py masks --video clip.mp4 --mask-config configs/mask/vjepa2.yaml --batch-size 8
    python tools/viz.py pca --checkpoint runs/demo --video clip.mp4 --out pca.png --mp4 pca.mp4
    python tools/viz.py pca --model vit_tiny --out pca.png                # random weights, for a look
    python tools/viz.py curves --metrics runs/demo --out curves.png
    python tools/viz.py plan --episode episode.npz --out plan.png --gif plan.gif
    python tools/viz.py plan --trajectories data/point_table --index 3 --out plan.png

``--checkpoint`` takes anything ``jepa.export.load_encoder`` reads: a run directory, a
checkpoint directory, an exported or HF directory, an official ``.pt`` file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from jepa.masks import VJEPA2_DEFAULT, mask_configs_from_dicts
from jepa.models import create_encoder
from jepa.train.logging import read_metrics
from jepa.viz.clips import demo_clip, read_clip
from jepa.viz.curves import plot_metrics
from jepa.viz.masks import clip_token_grid, describe, render_mask_animation, render_mask_grid, sample_masks
from jepa.viz.pca import explained_variance, patch_features, pca_video, render_pca_animation, render_pca_strip
from jepa.viz.plan import episode_from_trajectories, load_episode, render_plan_animation, render_plan_strip
from jepa.viz.render import save_animation, save_png


def _clip(args: argparse.Namespace) -> np.ndarray:
    if args.video:
        return read_clip(args.video, args.frames, args.size, args.start, args.step)
    return demo_clip(args.frames, args.size, args.seed)


def _write(
    args: argparse.Namespace, picture: np.ndarray, animation: Callable[[], list[np.ndarray]] | None = None
) -> None:
    print(f"wrote {save_png(picture, args.out, colors=args.colors)} ({picture.shape[1]}x{picture.shape[0]})")
    paths = [p for p in (getattr(args, "gif", None), getattr(args, "mp4", None)) if p]
    frames = animation() if paths and animation is not None else []
    for path in paths:
        print(f"wrote {save_animation(frames, path, fps=args.fps)}")


def cmd_masks(args: argparse.Namespace) -> None:
    clip = _clip(args)
    if args.mask_config:
        from omegaconf import OmegaConf

        node = OmegaConf.to_container(OmegaConf.load(args.mask_config))
        configs = mask_configs_from_dicts(node["configs"] if isinstance(node, dict) and "configs" in node else node)
    else:
        configs = VJEPA2_DEFAULT
    grid_shape = clip_token_grid(clip, args.patch_size, args.tubelet_size)
    masks = sample_masks(configs, grid_shape, seed=args.seed, batch_size=args.batch_size)
    names = [describe(c) for c in configs]
    picture = render_mask_grid(
        clip,
        masks,
        args.patch_size,
        args.tubelet_size,
        names=names,
        frame_step=args.frame_step or args.tubelet_size,
        alpha=args.alpha,
    )
    _write(
        args, picture, lambda: render_mask_animation(clip, masks, args.patch_size, args.tubelet_size, alpha=args.alpha)
    )


def cmd_pca(args: argparse.Namespace) -> None:
    clip = _clip(args)
    if args.checkpoint:
        from jepa.export.load import load_encoder

        encoder = load_encoder(args.checkpoint, device=args.device)
        source = f"encoder of {Path(args.checkpoint).absolute().name}"
    else:
        torch.manual_seed(args.seed)
        encoder = create_encoder(args.model, img_size=args.size, num_frames=args.frames, patch_size=args.patch_size).to(
            args.device
        )
        source = f"randomly initialised {args.model}"
    features = patch_features(encoder, clip, device=args.device)
    colors = pca_video(features, clip.shape[:3], percentiles=(args.low, args.high), smooth=args.smooth)
    ratios = "/".join(f"{100 * r:.0f}" for r in explained_variance(features))
    title = f"PCA of the patch features, {source} (R/G/B explain {ratios}% of the variance)"
    picture = render_pca_strip(clip, colors, frame_step=args.frame_step or encoder.tubelet_size, title=title)
    _write(args, picture, lambda: render_pca_animation(clip, colors))


def cmd_curves(args: argparse.Namespace) -> None:
    records = read_metrics(args.metrics)
    _write(args, plot_metrics(records, args.keys, smoothing=args.smoothing, log_keys=args.log_keys, width=args.width))


def cmd_plan(args: argparse.Namespace) -> None:
    if bool(args.episode) == bool(args.trajectories):
        raise SystemExit("give exactly one of --episode FILE.npz or --trajectories ROOT")
    ep = load_episode(args.episode) if args.episode else episode_from_trajectories(args.trajectories, args.index)
    _write(
        args,
        render_plan_strip(ep, frame_step=args.frame_step, scale=args.scale),
        lambda: render_plan_animation(ep, scale=args.scale),
    )


def _common(p: argparse.ArgumentParser, animated: bool) -> None:
    p.add_argument("--out", required=True, help="PNG to write")
    p.add_argument(
        "--colors", type=int, default=None, help="store the PNG with a palette of this many colours (smaller file)"
    )
    if animated:
        p.add_argument("--gif", help="also write an animated GIF here")
        p.add_argument("--mp4", help="also write an H.264 MP4 here")
        p.add_argument("--fps", type=int, default=4)


def _clip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--video", help="video file to read (default: a generated demo clip)")
    p.add_argument("--frames", type=int, default=16)
    p.add_argument("--size", type=int, default=128, help="frames are centre-cropped to size x size")
    p.add_argument("--start", type=int, default=0, help="first frame read from --video")
    p.add_argument("--step", type=int, default=1, help="read every step-th frame of --video")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--patch-size", type=int, default=16)
    p.add_argument("--frame-step", type=int, default=None, help="show every n-th frame (default: one per tubelet)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("masks", help="context / target tokens of each mask config over a clip")
    _clip_args(p)
    _common(p, animated=True)
    p.add_argument("--tubelet-size", type=int, default=2)
    p.add_argument(
        "--mask-config", help="YAML with a `configs:` list (e.g. configs/mask/vjepa2.yaml); default V-JEPA 2"
    )
    p.add_argument("--batch-size", type=int, default=1, help=">1 shows the released batch-length cut (dropped tokens)")
    p.add_argument("--alpha", type=float, default=0.6, help="opacity of the target tint")
    p.set_defaults(run=cmd_masks)

    p = sub.add_parser("pca", help="first 3 principal components of the encoder's patch features as RGB")
    _clip_args(p)
    _common(p, animated=True)
    p.add_argument("--checkpoint", help="encoder source (run dir, checkpoint, export, HF dir, official .pt)")
    p.add_argument("--model", default="vit_tiny", help="registry name, randomly initialised, when no --checkpoint")
    p.add_argument("--device", default="cpu")
    p.add_argument("--low", type=float, default=1.0, help="percentile mapped to 0 per component")
    p.add_argument("--high", type=float, default=99.0, help="percentile mapped to 255 per component")
    p.add_argument("--smooth", action="store_true", help="bilinear upsampling instead of token blocks")
    p.set_defaults(run=cmd_pca)

    p = sub.add_parser("curves", help="loss / lr curves from metrics.jsonl")
    _common(p, animated=False)
    p.add_argument("--metrics", required=True, help="run directory or metrics.jsonl")
    p.add_argument("--keys", nargs="+", default=["loss", "lr"])
    p.add_argument("--log-keys", nargs="*", default=["lr"], help="keys drawn on a log axis")
    p.add_argument("--smoothing", type=float, default=0.6, help="EMA weight in [0, 1) for noisy metrics")
    p.add_argument("--width", type=int, default=640)
    p.set_defaults(run=cmd_curves)

    p = sub.add_parser("plan", help="a planning episode with the goal image beside each step")
    _common(p, animated=True)
    p.add_argument("--episode", help="episode .npz (jepa.viz.plan.save_episode)")
    p.add_argument("--trajectories", help="trajectory dataset root; its last frame is used as the goal")
    p.add_argument("--index", type=int, default=0, help="episode index in --trajectories")
    p.add_argument("--frame-step", type=int, default=1)
    p.add_argument("--scale", type=int, default=2, help="integer upscaling of small frames")
    p.set_defaults(run=cmd_plan)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    args.run(args)


if __name__ == "__main__":
    main()
