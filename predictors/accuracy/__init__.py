"""Accuracy predictors: OFA's published ones, trainable MLP / ridge / ensemble, datasets and CV metrics.

Entry point: :func:`load_predictor` (by ``configs/predictor`` name or artefact path).
"""

from predictors.accuracy.base import (
    KINDS,
    AccuracyPredictor,
    create_predictor,
    list_predictor_kinds,
    register_predictor,
)
from predictors.accuracy.dataset import AccuracyDataset, import_dynast, read_dataset, write_dataset
from predictors.accuracy.loading import list_predictors, load_predictor
from predictors.accuracy.metrics import cross_validate, ranking_metrics
from predictors.accuracy.models import EnsemblePredictor, MLPPredictor, RidgePredictor, build_predictor
from predictors.accuracy.ofa_pretrained import OFAMobileNetV3Predictor, OFAResNet50Predictor

__all__ = [
    "KINDS",
    "AccuracyDataset",
    "AccuracyPredictor",
    "EnsemblePredictor",
    "MLPPredictor",
    "OFAMobileNetV3Predictor",
    "OFAResNet50Predictor",
    "RidgePredictor",
    "build_predictor",
    "create_predictor",
    "cross_validate",
    "import_dynast",
    "list_predictor_kinds",
    "list_predictors",
    "load_predictor",
    "ranking_metrics",
    "read_dataset",
    "register_predictor",
    "write_dataset",
]
