"""Evaluation: metrics, the resumable study runner and plots."""

from causaljax.eval.metrics import (
    bootstrap_ci,
    headroom_improvement,
    ranks,
    relative_improvement,
    roc_auc,
    spearman,
    val_test_gap,
    win_rate,
)
from causaljax.eval.study import ResultsStore, run_grid, run_id, shard

__all__ = [
    "ResultsStore", "bootstrap_ci", "headroom_improvement", "ranks", "relative_improvement",
    "roc_auc", "run_grid", "run_id", "shard", "spearman", "val_test_gap", "win_rate",
]
