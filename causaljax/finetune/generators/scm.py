"""CausalMixFT's generator: SCMs fitted to the training rows, drawn fresh inside every step.

Pipeline: bootstrapped PC + FCI edge probabilities -> k sampled DAGs -> one fitted SCM per
DAG (``causaljax.scm.fit``; fitted trees come as lookup tables) -> ``SCMSource`` (the compiled
sampler runs in the jitted step).
"""

from __future__ import annotations

import jax

from causaljax.discovery import edge_probabilities, sample_dags
from causaljax.finetune.generators import register
from causaljax.finetune.sources import SCMSource


def fit_scms(train, *, key, k: int = 8, n_bootstrap: int = 10, algorithms=("pc", "fci"),
             alpha: float = 0.05, families=("linear", "mlp", "trees"), n_jobs: int = 1,
             tree_budget: int | None = 2**13):
    """The stacked SCM ensemble (leading axis k) fitted to ``train`` (``tree_budget``: see
    ``causaljax.scm.fit``)."""
    from causaljax import scm as scm_lib

    k_disc, k_dags, k_fit = jax.random.split(key, 3)
    seed = int(jax.random.randint(k_disc, (), 0, 2**31 - 1))
    P = edge_probabilities(train, algorithms=algorithms, n_bootstrap=n_bootstrap, alpha=alpha,
                           seed=seed, n_jobs=n_jobs)
    dags = sample_dags(P, k, key=k_dags)
    return scm_lib.fit(train, dags, key=k_fit, families=families, tree_budget=tree_budget)


@register("scm")
def make_source(train, *, key, n_rows=None, tfm=None, **options) -> SCMSource:
    return SCMSource(fit_scms(train, key=key, **options))
