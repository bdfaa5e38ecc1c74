"""Frozen evaluation: attentive probes, k-NN and metrics on features of a frozen encoder.

`extract_features` (on the fly) or `load_embeddings` (from `tools/embed.py`) give a
`FeatureSet`; `train_probe` (attentive), `linear_probe` (on `slice_features`) and
`knn_evaluate` score it; `load_probe` rebuilds a saved probe; `RawPixels` is the pixel baseline.
"""

from jepa.eval.baselines import RawPixels
from jepa.eval.features import FeatureSet, extract_features, load_embeddings
from jepa.eval.knn import knn_evaluate, knn_scores
from jepa.eval.linear import LinearProbeConfig, linear_probe, slice_features
from jepa.eval.metrics import chance_accuracy, confusion_matrix, topk_accuracy
from jepa.eval.probe import (
    AttentiveClassifier,
    ProbeConfig,
    ProbeResult,
    evaluate_probe,
    load_probe,
    predict_videos,
    save_probe,
    train_probe,
)

__all__ = [
    "AttentiveClassifier",
    "FeatureSet",
    "LinearProbeConfig",
    "ProbeConfig",
    "ProbeResult",
    "RawPixels",
    "chance_accuracy",
    "confusion_matrix",
    "evaluate_probe",
    "extract_features",
    "knn_evaluate",
    "knn_scores",
    "linear_probe",
    "load_embeddings",
    "load_probe",
    "predict_videos",
    "save_probe",
    "slice_features",
    "topk_accuracy",
    "train_probe",
]
