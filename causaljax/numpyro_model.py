"""A fitted SCM as a numpyro model: one sample site per column, so numpyro's handlers
(``do``, ``condition``, ``seed``, ``trace``) and ``infer.Predictive`` work on it.

This is the door for inference and counterfactual work; ``causaljax.sampler.sample`` stays the
fast path. Each site's distribution is exactly the SCM's conditional of that column:

    ROOT         uniform mixture of point masses at the empirical pool ``noise[j]``
    NUMERIC      uniform mixture of point masses at ``f_j(parents) + residual`` (rounded when
                 ``is_integer``) — the additive-noise model with its empirical residuals
    CATEGORICAL  ``Categorical(softmax(f_j(parents)))`` over the column's levels (site value =
                 level code)

Point masses make log densities finite only at values the SCM produces exactly: evaluate rows
drawn with ``sample(..., strategy="walk")`` (the closed-form "solve" strategy, the default for
linear SCMs, can differ in the last float bits).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from causaljax.scm.mechanisms import categorical_probs, encode_slots, masked_params, node_outputs
from causaljax.scm.types import CATEGORICAL, ROOT, SCM, check_shapes


def _empirical(points_nxm):
    """Uniform mixture of point masses at ``points`` (per row)."""
    import numpyro.distributions as dist

    n, m = points_nxm.shape
    return dist.MixtureSameFamily(dist.Categorical(probs=jnp.full((n, m), 1.0 / m)),
                                  dist.Delta(points_nxm))


def as_numpyro(scm: SCM, table=None, *, index: int = 0):
    """numpyro model ``model(n_rows)`` for SCM ``index`` of the stack; sites are named after
    the table's columns (or ``scm.names``). Returns the rows f32[n, d] in encoded space."""
    import numpyro

    check_shapes(scm)
    one = masked_params(jax.tree.map(lambda a: a[index], scm))  # no k axis
    names = list(table.names) if table is not None else list(scm.names)
    if len(names) != scm.d:
        raise ValueError(f"need {scm.d} column names (pass the Table), got {len(names)}")
    order = np.asarray(one.order).tolist()
    kind = np.asarray(one.kind)
    n_levels = np.asarray(one.n_levels)
    is_integer = np.asarray(one.is_integer)

    def model(n_rows: int = 1):
        x = jnp.zeros((n_rows, scm.d), jnp.float32)
        with numpyro.plate("rows", n_rows):
            for j in order:
                pool = one.noise[j]
                if kind[j] == ROOT:
                    d_j = _empirical(jnp.broadcast_to(pool, (n_rows, pool.shape[0])))
                else:
                    out = node_outputs(one, j, encode_slots(x, one.slot_column, one.slot_level))
                    if kind[j] == CATEGORICAL:
                        import numpyro.distributions as dist

                        probs = categorical_probs(out, n_levels[j])[:, : n_levels[j]]
                        d_j = dist.Categorical(probs=probs)
                    else:
                        points = out[:, :1] + pool[None, :]
                        d_j = _empirical(jnp.round(points) if is_integer[j] else points)
                value = numpyro.sample(names[j], d_j)
                x = x.at[:, j].set(jnp.asarray(value, jnp.float32))
        return x

    return model
