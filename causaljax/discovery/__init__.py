"""Causal discovery: bootstrapped edge probabilities and DAG sampling."""

from causaljax.discovery.dags import DAGs, check_probabilities, sample_dags
from causaljax.discovery.structure import (
    ALGORITHMS,
    MIN_ROWS,
    ci_test_for,
    direction_weights,
    edge_probabilities,
    edge_probabilities_array,
)

__all__ = [
    "ALGORITHMS", "MIN_ROWS", "DAGs", "check_probabilities", "ci_test_for",
    "direction_weights", "edge_probabilities", "edge_probabilities_array", "sample_dags",
]
