"""Causal discovery: bootstrapped edge probabilities and DAG sampling (per pair, or from runs)."""

from causaljax.discovery.dags import (
    DAGs,
    check_probabilities,
    consistent_extension,
    dags_from_runs,
    sample_dags,
    threshold_probabilities,
)
from causaljax.discovery.structure import (
    ALGORITHMS,
    EDGE_RULES,
    MIN_ROWS,
    ci_test_for,
    direction_weights,
    edge_probabilities,
    edge_probabilities_array,
)

__all__ = [
    "ALGORITHMS", "EDGE_RULES", "MIN_ROWS", "DAGs", "check_probabilities", "ci_test_for",
    "consistent_extension", "dags_from_runs",
    "direction_weights", "edge_probabilities", "edge_probabilities_array", "sample_dags",
    "threshold_probabilities",
]
