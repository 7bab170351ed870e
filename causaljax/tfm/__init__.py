"""The in-context tabular foundation model: model, pretraining, shipped weights, classifier."""

from causaljax.tfm.model import MAX_CLASSES, MAX_FEATURES, ModelConfig

__all__ = ["MAX_CLASSES", "MAX_FEATURES", "ModelConfig"]
