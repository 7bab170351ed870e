"""Pure JAX evaluation of the mechanism families of ONE fitted SCM (no leading k axis).

These functions are shared by the sampler, the fitters (held-out loss) and the tests; see
``causaljax.scm.types`` for the parameter layout. ``z`` is the encoded input of a batch of
rows, f32[n, S].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from causaljax.scm.compact import PAD_LEVEL
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


def tree_outputs(z_nxs, feature_txn, threshold_txn, left_txn, right_txn, value_txnxc, depth: int,
                 unroll: int = 2):
    """Sum over T trees of their leaf values: f32[n, C]. Walks all trees in lockstep, at most
    ``depth`` steps, stopping early once every row of every tree sits on a leaf (checked every
    ``unroll`` steps; extra steps on a leaf stay there). The nodes live in one flat table
    (tree t's node i at t * N + i, its feature, threshold bits and children side by side), so
    a step is one gather of 4 numbers per row and tree, plus the gather of the input."""
    T, N = feature_txn.shape
    n = z_nxs.shape[0]
    base = jnp.arange(T, dtype=jnp.int32)[:, None] * N
    links = jnp.stack([feature_txn, jax.lax.bitcast_convert_type(threshold_txn, jnp.int32),
                       left_txn + base, right_txn + base], axis=-1).reshape(T * N, 4)
    unroll = max(1, min(unroll, depth))

    def one_step(node):  # node: int32[n, T], flat
        link = links.at[node].get(mode="promise_in_bounds")  # [n, T, 4]
        x = jnp.take_along_axis(z_nxs, link[..., 0], axis=1, mode="promise_in_bounds")
        go_left = x <= jax.lax.bitcast_convert_type(link[..., 1], threshold_txn.dtype)
        return jnp.where(go_left, link[..., 2], link[..., 3])

    def steps(state):
        i, node, _ = state
        for _ in range(unroll - 1):
            node = one_step(node)
        new = one_step(node)
        return i + unroll, new, jnp.all(new == node)

    def running(state):
        i, _, done = state
        return (i < depth) & ~done

    start = (0, jnp.broadcast_to(base.T, (n, T)), n == 0)
    _, node, _ = jax.lax.while_loop(running, steps, start)
    return value_txnxc.reshape(T * N, -1).at[node].get(mode="promise_in_bounds").sum(axis=1)


COMPARE_ALL_EDGES = 64  # members with at most this many edges on an axis compare them all
TABLE_BLOCK = 8192  # rows per block of the table lookups (CPU only: runtime.cache_blocking)


def table_outputs(z_nxs, slot_u, edges_uxk, remap_gxuxk1, value_gxb, channel_gxc,
                  block: int | None = None):
    """Sum of the tabulated tree groups of one node (``SCM.tree_tables`` without the k, d axes):
    f32[n, C]. Rows go in blocks of ``block`` (default: TABLE_BLOCK on the CPU, so that a
    block's bins and cell offsets stay in cache across the node's groups; all rows at once on
    other backends); see ``_table_block``."""
    from causaljax.runtime import cache_blocking

    n = z_nxs.shape[0]
    if block is None:
        block = TABLE_BLOCK if cache_blocking() else n
    args = (slot_u, edges_uxk, remap_gxuxk1, value_gxb, channel_gxc)
    if n <= block:
        return _table_block(z_nxs, *args)
    nb = -(-n // block)
    z = jnp.pad(z_nxs, ((0, nb * block - n), (0, 0))).reshape(nb, block, z_nxs.shape[1])
    out = jax.lax.map(lambda zb: _table_block(zb, *args), z)
    return out.reshape(nb * block, -1)[:n]


def _table_block(z_nxs, slot_u, edges_uxk, remap_gxuxk1, value_gxb, channel_gxc):
    """``table_outputs`` of one block of rows. Per axis one ``searchsorted`` over its
    thresholds; then a loop over the node's groups (padding groups, which have zero ``channel``
    rows and come last, are skipped): per group one gather per axis (the cell offsets) and one
    from the group's table."""
    _, U, K1 = remap_gxuxk1.shape
    n = z_nxs.shape[0]
    bins = jax.vmap(lambda e, x: jnp.searchsorted(e, x, side="left"), in_axes=(0, 1))(
        edges_uxk, z_nxs[:, slot_u]).astype(jnp.int32)  # [U, n]: #{edges < z} in 0..K
    flat = bins + (jnp.arange(U, dtype=jnp.int32) * K1)[:, None]  # into remap[g].reshape(-1)
    n_groups = channel_gxc.any(axis=-1).sum()

    def group(g, acc):
        offsets = remap_gxuxk1[g].reshape(-1).at[flat].get(mode="promise_in_bounds")  # [U, n]
        vals = value_gxb[g].at[offsets.sum(0)].get(mode="promise_in_bounds")  # [n]
        return acc + vals[:, None] * channel_gxc[g][None, :]

    return jax.lax.fori_loop(0, n_groups, group, jnp.zeros((n, channel_gxc.shape[-1]),
                                                          value_gxb.dtype))


def table_member_outputs(z_rxn, m, p: dict) -> jax.Array:
    """``_table_block`` of member m of a compact ``tables`` group, column-major (inputs
    z f32[R, n] -> f32[C, n]), reading the member's tables in place from the group's arrays
    ``p`` ([M, ...] each: no copy of its remap / value tables, which are the large ones)."""
    M, G, U, K1 = p["remap"].shape
    B = p["value"].shape[-1]
    slot, edges, channel = p["slot"][m], p["edges"][m], p["channel"][m]  # [U], [U, K], [G, C]
    x = z_rxn[slot]  # [U, n]
    flat = _member_bins(x, edges) + (jnp.arange(U, dtype=jnp.int32) * K1)[:, None]
    remap, value = p["remap"].reshape(-1), p["value"].reshape(-1)

    def group(g, acc):
        cell = m * G + g
        offsets = remap.at[cell * (U * K1) + flat].get(mode="promise_in_bounds")  # [U, n]
        vals = value.at[cell * B + offsets.sum(0)].get(mode="promise_in_bounds")  # [n]
        return acc + channel[g][:, None] * vals[None, :]

    return jax.lax.fori_loop(0, channel.any(axis=-1).sum(), group,
                             jnp.zeros((channel.shape[-1], z_rxn.shape[1]), p["value"].dtype))


EDGE_CHUNK = 8  # a member's edges are compared with in chunks of this many (its real ones)


def _member_bins(x_uxn, edges_uxk) -> jax.Array:
    """int32[U, n]: #{edges < x} per axis (searchsorted side="left"; NaN: K). The edges of a
    member are padded with +inf to the largest count in its group, so the comparisons run
    over chunks of EDGE_CHUNK edges up to the member's own most real edges on one axis
    (a loop of dynamic length); a member with more than COMPARE_ALL_EDGES of them searches."""
    K = edges_uxk.shape[-1]
    if K <= EDGE_CHUNK:
        return (~(x_uxn[:, None, :] <= edges_uxk[:, :, None])).sum(1, dtype=jnp.int32)
    padded = jnp.pad(edges_uxk, ((0, 0), (0, -K % EDGE_CHUNK)), constant_values=jnp.inf)
    real = (edges_uxk < jnp.inf).sum(-1).max()

    def chunks(x):
        def one(i, bins):
            e = jax.lax.dynamic_slice_in_dim(padded, i * EDGE_CHUNK, EDGE_CHUNK, axis=1)
            return bins + (x[:, None, :] > e[:, :, None]).sum(1, dtype=jnp.int32)
        bins = jax.lax.fori_loop(0, (real + EDGE_CHUNK - 1) // EDGE_CHUNK, one,
                                 jnp.zeros(x.shape, jnp.int32))
        return jnp.where(jnp.isnan(x), K, bins)

    def search(x):
        return jax.vmap(lambda e, v: jnp.searchsorted(e, v, side="left"))(edges_uxk, x).astype(
            jnp.int32)

    if K <= COMPARE_ALL_EDGES:
        return chunks(x_uxn)
    return jax.lax.cond(real <= COMPARE_ALL_EDGES, chunks, search, x_uxn)


def _tables_of(tables, j=None):
    t = tables if j is None else jax.tree.map(lambda a: a[j], tables)
    return t.slot, t.edges, t.remap, t.value, t.channel


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
    if scm.tree_tables is not None:
        out = out + table_outputs(z_nxs, *_tables_of(scm.tree_tables, j))
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
    if scm.tree_feature.shape[1]:
        trees = jax.vmap(tree_outputs, in_axes=(None, 0, 0, 0, 0, 0, None), out_axes=1)
        out = out + trees(z_nxs, scm.tree_feature, scm.tree_threshold, scm.tree_left,
                          scm.tree_right, scm.tree_value, scm.tree_depth)
    if scm.tree_tables is not None:
        tables = jax.vmap(table_outputs, in_axes=(None, 0, 0, 0, 0, 0), out_axes=1)
        out = out + tables(z_nxs, *_tables_of(scm.tree_tables))
    return out


def categorical_probs(logits_nxc: jax.Array, n_levels) -> jax.Array:
    """Softmax over the first ``n_levels`` channels; the padding channels get probability 0."""
    valid = jnp.arange(logits_nxc.shape[-1])[None, :] < n_levels
    return jax.nn.softmax(jnp.where(valid, logits_nxc, -jnp.inf), axis=-1)


def inverse_cdf(probs_nxc: jax.Array, u_n: jax.Array, n_levels, axis: int = -1) -> jax.Array:
    """Level code (as float) whose CDF bracket holds the uniform u; the levels lie on ``axis``
    (-1: probs f32[n, C]; 0: column-major probs f32[C, n])."""
    cdf = jnp.cumsum(probs_nxc, axis=axis)
    code = (cdf < jnp.expand_dims(u_n, axis)).sum(axis=axis)
    return jnp.minimum(code, n_levels - 1).astype(probs_nxc.dtype)


# ----------------------------------------------------------------------------- compact layout
def member_inputs(x_dxn: jax.Array, in_col_wxr: jax.Array, in_level_wxr: jax.Array) -> jax.Array:
    """Column-major rows f32[d, n] -> the inputs of W members of a ``compact.Group``,
    f32[W, R, n]: raw value (level -1), one-hot indicator (level >= 0) or 0 (padding)."""
    vals = x_dxn[in_col_wxr]  # [W, R, n]: whole rows gathered (contiguous)
    lev = in_level_wxr[..., None]
    return jnp.where(lev == -1, vals, jnp.where(lev >= 0, (vals == lev).astype(vals.dtype), 0.0))


def _per_member(fn, z_wxrxn, *params):
    """Apply a row-major one-node evaluator fn(z f32[n, R], *params) -> f32[n, C] to every
    member: f32[W, C, n]."""
    return jax.vmap(lambda z, *p: fn(z.T, *p).T)(z_wxrxn, *params)


def group_outputs(family: str, params: dict, z_wxrxn: jax.Array, tree_depth: int = 0):
    """Mechanism outputs f32[W, C, n] of W members of one family (``compact.FAMILY_PARAMS``)
    from their inputs f32[W, R, n]."""
    p = params
    if family == "linear":
        return jnp.einsum("wrc,wrn->wcn", p["w"], z_wxrxn)
    if family == "quadratic":
        zz = z_wxrxn[:, :, None, :] * z_wxrxn[:, None, :, :]  # [W, R, R, n]
        return jnp.einsum("wabc,wabn->wcn", p["w"], zz)
    if family == "cubic":
        W, P = p["idx"].shape[:2]
        f = jnp.take_along_axis(z_wxrxn, p["idx"].reshape(W, P * 3)[..., None], axis=1)
        f = f.reshape(W, P, 3, -1)
        return jnp.einsum("wpc,wpn->wcn", p["w"], f[:, :, 0] * f[:, :, 1] * f[:, :, 2])
    if family == "mlp":
        h = jnp.einsum("wrh,wrn->whn", p["w1"], z_wxrxn) + p["b1"][..., None]
        return jnp.einsum("whc,whn->wcn", p["w2"], jax.nn.relu(h))
    if family == "trees":
        fn = lambda z, *t: tree_outputs(z, *t, tree_depth)
        return _per_member(fn, z_wxrxn, p["feature"], p["threshold"], p["left"], p["right"],
                           p["value"])
    if family == "tables":  # the caller's rows are a cache-sized block already
        return _per_member(_table_block, z_wxrxn, p["slot"], p["edges"], p["remap"],
                           p["value"], p["channel"])
    raise ValueError(f"unknown mechanism family {family!r}")


def compact_outputs(c, x_dxn: jax.Array) -> jax.Array:
    """Mechanism outputs of every node of ONE SCM in the compact layout (``c``: a
    ``compact.CompactSCM`` without the k axis) on given column-major rows f32[d, n]:
    f32[d, C, n] (roots: 0). The same values as ``all_node_outputs`` on the dense SCM."""
    d, n = x_dxn.shape
    out = jnp.broadcast_to(c.bias[:, :, None], (d, c.bias.shape[-1], n))
    for g in c.groups:
        vals = group_outputs(g.family, g.params, member_inputs(x_dxn, g.in_col, g.in_level),
                             c.tree_depth)
        out = out.at[g.node].add(jnp.where((g.level != PAD_LEVEL)[:, None, None], vals, 0.0))
    return out
