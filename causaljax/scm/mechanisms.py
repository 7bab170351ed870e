"""Pure JAX evaluation of the mechanism families of ONE fitted SCM (no leading k axis).

These functions are shared by the sampler, the fitters (held-out loss) and the tests; see
``causaljax.scm.types`` for the parameter layout. ``z`` is the encoded input of a batch of
rows, f32[n, S].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from causaljax.scm.types import SCM


def encode_slots(x_nxd: jax.Array, slot_column: jax.Array, slot_level: jax.Array) -> jax.Array:
    """Rows in encoded column space f32[n, d] -> mechanism inputs f32[n, S]."""
    vals = x_nxd[:, slot_column]  # [n, S]
    onehot = (vals == slot_level[None, :]).astype(x_nxd.dtype)
    return jnp.where(slot_level[None, :] < 0, vals, onehot)


def slot_parent_mask(scm: SCM) -> jax.Array:
    """f32[d, S]: 1 where slot s reads a parent of node j."""
    return scm.parents[scm.slot_column, :].T.astype(jnp.float32)


def masked_params(scm: SCM) -> SCM:
    """Fold the parent mask into the dense weights once, so evaluation needs no mask."""
    mask = slot_parent_mask(scm)  # [d, S]
    quad_mask = (mask[:, :, None] * mask[:, None, :] if scm.quad_w.shape[1]
                 else jnp.zeros((mask.shape[0], 0, 0), mask.dtype))
    # a monomial is kept when all three of its slots are parent slots of its node
    cube_mask = mask[jnp.arange(mask.shape[0])[:, None, None], scm.cube_idx].prod(-1)  # [d, P]
    return scm.replace(
        lin_w=scm.lin_w * mask[:, :, None],
        quad_w=scm.quad_w * quad_mask[..., None],
        cube_w=scm.cube_w * cube_mask[..., None],
        mlp_w1=scm.mlp_w1 * mask[:, :, None],
    )


def tree_outputs(z_nxs, feature_txn, threshold_txn, left_txn, right_txn, value_txnxc, depth: int):
    """Sum over T trees of their leaf values: f32[n, C]. Walks all trees in lockstep, at most
    ``depth`` steps, stopping early once every row of every tree sits on a leaf."""
    n = z_nxs.shape[0]
    trees = jnp.arange(feature_txn.shape[0])[None, :]
    links = jnp.stack([feature_txn, left_txn, right_txn], axis=-1)  # [T, N, 3]: one gather a step

    def step(state):
        i, node, _ = state
        feat, left, right = jnp.moveaxis(links[trees, node], -1, 0)  # each [n, T]
        go_left = jnp.take_along_axis(z_nxs, feat, axis=1) <= threshold_txn[trees, node]
        new = jnp.where(go_left, left, right)
        return i + 1, new, jnp.all(new == node)

    def running(state):
        i, _, done = state
        return (i < depth) & ~done

    start = (0, jnp.zeros((n, feature_txn.shape[0]), jnp.int32), n == 0)
    _, node, _ = jax.lax.while_loop(running, step, start)
    return value_txnxc[trees, node].sum(axis=1)  # [n, C]


def node_outputs(scm: SCM, j, z_nxs: jax.Array) -> jax.Array:
    """Mechanism output of node j (may be traced) for a batch: f32[n, C].
    ``scm`` must already carry masked parameters (``masked_params``)."""
    out = z_nxs @ scm.lin_w[j] + scm.lin_b[j][None, :]
    if scm.quad_w.shape[1]:
        out = out + jnp.einsum("na,nb,abc->nc", z_nxs, z_nxs, scm.quad_w[j])
    if scm.cube_w.shape[-2]:
        f = z_nxs[:, scm.cube_idx[j]]  # [n, P, 3]
        out = out + (f[..., 0] * f[..., 1] * f[..., 2]) @ scm.cube_w[j]
    if scm.mlp_w1.shape[-1]:
        h = jax.nn.relu(z_nxs @ scm.mlp_w1[j] + scm.mlp_b1[j][None, :])
        out = out + h @ scm.mlp_w2[j]
    if scm.tree_feature.shape[1]:
        out = out + tree_outputs(z_nxs, scm.tree_feature[j], scm.tree_threshold[j],
                                 scm.tree_left[j], scm.tree_right[j], scm.tree_value[j],
                                 scm.tree_depth)
    return out


def all_node_outputs(scm: SCM, z_nxs: jax.Array) -> jax.Array:
    """Mechanism outputs of every node at once: f32[n, d, C] (masked parameters)."""
    out = jnp.einsum("ns,dsc->ndc", z_nxs, scm.lin_w) + scm.lin_b[None]
    if scm.quad_w.shape[2]:
        out = out + jnp.einsum("na,nb,dabc->ndc", z_nxs, z_nxs, scm.quad_w)
    if scm.cube_w.shape[-2]:
        f = z_nxs[:, scm.cube_idx]  # [n, d, P, 3]
        out = out + jnp.einsum("ndp,dpc->ndc", f[..., 0] * f[..., 1] * f[..., 2], scm.cube_w)
    if scm.mlp_w1.shape[-1]:
        h = jax.nn.relu(jnp.einsum("ns,dsh->ndh", z_nxs, scm.mlp_w1) + scm.mlp_b1[None])
        out = out + jnp.einsum("ndh,dhc->ndc", h, scm.mlp_w2)
    if scm.tree_feature.shape[2]:
        trees = jax.vmap(tree_outputs, in_axes=(None, 0, 0, 0, 0, 0, None), out_axes=1)
        out = out + trees(z_nxs, scm.tree_feature, scm.tree_threshold, scm.tree_left,
                          scm.tree_right, scm.tree_value, scm.tree_depth)
    return out


def categorical_probs(logits_nxc: jax.Array, n_levels) -> jax.Array:
    """Softmax over the first ``n_levels`` channels; the padding channels get probability 0."""
    valid = jnp.arange(logits_nxc.shape[-1])[None, :] < n_levels
    return jax.nn.softmax(jnp.where(valid, logits_nxc, -jnp.inf), axis=-1)


def inverse_cdf(probs_nxc: jax.Array, u_n: jax.Array, n_levels) -> jax.Array:
    """Level code (as float) whose CDF bracket holds the uniform u."""
    cdf = jnp.cumsum(probs_nxc, axis=-1)
    code = (cdf < u_n[:, None]).sum(axis=-1)
    return jnp.minimum(code, n_levels - 1).astype(probs_nxc.dtype)
