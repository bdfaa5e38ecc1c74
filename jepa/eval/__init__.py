"""Frozen evaluation: attentive probes, k-NN and metrics on features of a frozen encoder.

`extract_features` (on the fly) or `load_embeddings` (from `tools/embed.py`) give a
`FeatureSet`; `train_probe` / `knn_evaluate` score it; `load_probe` rebuilds a saved probe.
"""

from jepa.eval.features import FeatureSet, extract_features, load_embeddings
from jepa.eval.knn import knn_evaluate, knn_scores
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
    "ProbeConfig",
    "ProbeResult",
    "chance_accuracy",
    "confusion_matrix",
    "evaluate_probe",
    "extract_features",
    "knn_evaluate",
    "knn_scores",
    "load_embeddings",
    "load_probe",
    "predict_videos",
    "save_probe",
    "topk_accuracy",
    "train_probe",
]
