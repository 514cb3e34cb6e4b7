"""Evaluation metrics: FID, KID, Inception Score, precision/recall, and the feature networks."""

from maskgen.metrics.features import FeatureNetwork, extract
from maskgen.metrics.frechet import fid_from_stats, frechet_distance, frechet_distance_features
from maskgen.metrics.inception import FIDInceptionV3, InceptionFeatures, default_inception_path
from maskgen.metrics.inception_score import inception_score
from maskgen.metrics.kid import kernel_inception_distance
from maskgen.metrics.precision_recall import manifold_radii, precision_recall
from maskgen.metrics.resize import tf1_resize_bilinear
from maskgen.metrics.stats import FeatureStats, compute_stats, load_stats, save_stats

__all__ = [
    "FeatureNetwork",
    "extract",
    "FeatureStats",
    "compute_stats",
    "save_stats",
    "load_stats",
    "frechet_distance",
    "frechet_distance_features",
    "fid_from_stats",
    "kernel_inception_distance",
    "precision_recall",
    "manifold_radii",
    "inception_score",
    "tf1_resize_bilinear",
    "InceptionFeatures",
    "FIDInceptionV3",
    "default_inception_path",
]
