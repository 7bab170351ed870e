"""Synthetic-row sources: pytrees with a pure, jittable ``draw(key, n) -> f32[n, d]``.

Rows are in the ``causaljax.data.Table`` encoded space (all d columns, target included), so
every generator speaks the same language and ``loop.encode_rows`` turns them into model rows.

``SCMSource``  fresh rows from a stacked SCM ensemble, drawn by the compiled sampler inside
               the training step (rows cycle through the k SCMs).
``PoolSource`` rows picked at random from a fixed pool (generators that are not JAX programs,
               or the "fixed pool of N rows" variant of any source).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from causaljax.sampler import as_compact, sample


@struct.dataclass
class PoolSource:
    rows: jax.Array  # f32[P, d]

    def draw(self, key, n: int) -> jax.Array:
        """n rows of the pool: a random permutation's first n (with replacement if n > P)."""
        P = self.rows.shape[0]
        if n <= P:
            idx = jax.random.permutation(key, P)[:n]
        else:
            idx = jax.random.randint(key, (n,), 0, P)
        return self.rows[idx]


@struct.dataclass
class SCMSource:
    scm: object  # causaljax.scm.SCM with leading axis k (the fitted ensemble, dense layout)
    compact: object = None  # its compact layout (causaljax.scm.compact), what ``draw`` uses

    def draw(self, key, n: int) -> jax.Array:
        """n fresh rows, row r from SCM r mod k."""
        k = self.scm.k
        per = -(-n // k)
        # inside the jitted step the SCM is traced: the compact layout, built on the host by
        # ``scm_source``, lets the draw evaluate each family only for its own nodes
        rows = sample(self.scm if self.compact is None else self.compact, key, per)  # [k, per, d]
        return jnp.swapaxes(rows, 0, 1).reshape(per * k, -1)[:n]


def scm_source(scm) -> SCMSource:
    """The source of a concrete (host) SCM ensemble, with its compact layout built here."""
    return SCMSource(scm, as_compact(scm))
