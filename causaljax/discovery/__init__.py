"""Causal discovery: bootstrapped edge probabilities, DAG sampling (per pair, or from runs) and
the Markov repair of sampled DAGs."""

from causaljax.discovery.dags import (
    DAGs,
    check_probabilities,
    consistent_extension,
    dags_from_runs,
    sample_dags,
    threshold_probabilities,
)
from causaljax.discovery.repair import markov_repair
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
    "direction_weights", "edge_probabilities", "edge_probabilities_array", "markov_repair",
    "sample_dags",
    "threshold_probabilities",
]
