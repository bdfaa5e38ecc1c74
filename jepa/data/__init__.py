"""Video data: manifests, decoding, clip sampling, augmentation, mixing, loaders, synthetic data."""

from jepa.data.clips import ClipSampler, ShortVideoError
from jepa.data.dataset import VideoDataset
from jepa.data.image import ImageDecodeError, load_image
from jepa.data.loader import build_pretrain_loader, default_num_workers
from jepa.data.manifest import ManifestEntry, ManifestError, read_manifest
from jepa.data.mixing import MixedDataset
from jepa.data.sampler import StreamSampler
from jepa.data.synthetic import ensure_synthetic_dataset, make_synthetic_dataset, write_video
from jepa.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalClipTransform,
    RandomResizedCropClip,
    normalize_clip,
)
from jepa.data.video import VideoDecodeError, open_video, read_clips

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClipSampler",
    "EvalClipTransform",
    "ImageDecodeError",
    "ManifestEntry",
    "ManifestError",
    "MixedDataset",
    "RandomResizedCropClip",
    "ShortVideoError",
    "StreamSampler",
    "VideoDataset",
    "VideoDecodeError",
    "build_pretrain_loader",
    "default_num_workers",
    "ensure_synthetic_dataset",
    "load_image",
    "make_synthetic_dataset",
    "normalize_clip",
    "open_video",
    "read_clips",
    "read_manifest",
    "write_video",
]
