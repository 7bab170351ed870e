"""The in-context tabular foundation model: model, pretraining, shipped weights, classifier.

    from causaljax.tfm import TFMClassifier
    clf = TFMClassifier().fit(X_train, y_train)      # shipped weights: tfm/weights/default.*
    proba = clf.predict_proba(X_test)
"""

from causaljax.tfm.checkpoint import CheckpointError, load_weights, save_weights
from causaljax.tfm.classifier import TFMClassifier
from causaljax.tfm.model import MAX_CLASSES, MAX_FEATURES, ModelConfig

__all__ = ["MAX_CLASSES", "MAX_FEATURES", "CheckpointError", "ModelConfig", "TFMClassifier",
           "load_weights", "save_weights"]
