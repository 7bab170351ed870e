"""CausalMixFT's generator: SCMs fitted to the training rows, drawn fresh inside every step.

Pipeline: bootstrapped PC + FCI runs -> k DAGs, each one run's graph consistently extended
(``discovery.dags_from_runs``; or per-pair draws from the edge probabilities) -> the parents
that each DAG's order needs for the data's dependences added (``discovery.markov_repair``) ->
one fitted SCM per DAG (``causaljax.scm.fit``; fitted trees come as lookup tables) ->
``SCMSource`` (the compiled sampler runs in the jitted step).
"""

from __future__ import annotations

import jax

from causaljax.discovery import (
    dags_from_runs,
    edge_probabilities,
    markov_repair,
    sample_dags,
    threshold_probabilities,
)
from causaljax.finetune.generators import register
from causaljax.finetune.sources import SCMSource, scm_source


def fit_scms(train, *, key, k: int = 8, n_bootstrap: int = 10, algorithms=("pc", "fci"),
             alpha: float = 0.05, families=("linear", "mlp", "trees"), n_jobs: int = 1,
             tree_budget: int | None = 2**13, subsample: float | None = 0.5,
             edge_rule: str = "adjacency", threshold: float | None = None,
             dag_sampler: str = "runs", repair_alpha: float = 0.05):
    """The stacked SCM ensemble (leading axis k) fitted to ``train`` (``tree_budget``: see
    ``causaljax.scm.fit``; ``subsample`` and ``edge_rule``: ``discovery.edge_probabilities``;
    ``threshold``: ``discovery.threshold_probabilities``, None = none, with the "pairs"
    sampler only). ``dag_sampler``: "runs" (``discovery.dags_from_runs``: each DAG a
    consistent extension of one discovery run's graph) or "pairs" (``discovery.sample_dags``:
    independent per-pair draws from P, the rule before issue 23). ``repair_alpha``: level of
    ``discovery.markov_repair`` on the training rows (0 = the DAGs as sampled)."""
    from causaljax import scm as scm_lib

    k_disc, k_dags, k_fit = jax.random.split(key, 3)
    seed = int(jax.random.randint(k_disc, (), 0, 2**31 - 1))
    if dag_sampler not in ("runs", "pairs"):
        raise ValueError(f"dag_sampler must be 'runs' or 'pairs', got {dag_sampler!r}")
    P, runs = edge_probabilities(train, algorithms=algorithms, n_bootstrap=n_bootstrap,
                                 alpha=alpha, seed=seed, n_jobs=n_jobs, subsample=subsample,
                                 edge_rule=edge_rule, return_runs=True)
    if dag_sampler == "runs":
        dags = dags_from_runs(runs, k, key=k_dags)
    else:
        if threshold is not None:
            P = threshold_probabilities(P, threshold)
        dags = sample_dags(P, k, key=k_dags)
    if repair_alpha:
        dags = markov_repair(dags, train.values, train.n_levels, alpha=repair_alpha)
    return scm_lib.fit(train, dags, key=k_fit, families=families, tree_budget=tree_budget)


@register("scm")
def make_source(train, *, key, n_rows=None, tfm=None, **options) -> SCMSource:
    return scm_source(fit_scms(train, key=key, **options))
