"""Compiled sampler: draw rows from a stacked ``SCM`` (k fitted models) as one XLA program.

The draw has two stages, both pure:

1. ``draw_noise(scm, key, n)``: one uniform ``u[k, n, d]`` per cell; a ROOT or NUMERIC node
   takes ``eps = noise[j, floor(u * m)]`` from its empirical pool, a CATEGORICAL node uses ``u``
   for inverse-CDF sampling of its level.
2. ``propagate(scm, eps, u)``: push the exogenous noise through the DAG. Strategies:
   ``"walk"`` visits the nodes in topological order (``lax.fori_loop`` over d, one node per
   step); ``"parallel"`` updates every node at once ``depth + 1`` times (the longest path),
   specialised on the column layout when it is static (``_typed_parallel``: no gather or
   scatter inside the loop); ``"solve"`` (linear/logistic SCMs only) solves the linear
   numeric nodes in closed form and sweeps only the nonlinear ones (``_typed_solve``). The
   solve works column-major (f32[d, n] per SCM: skinny products and contiguous columns), so
   ``sample`` draws its noise that way directly (``draw_noise_columns``, same values).

   ``"grouped"`` (any mechanisms) draws from the compact layout of ``causaljax.scm.compact``
   (a family's parameters only for its own nodes, each reading only its parents): one sweep
   per topological level, each family evaluating only that level's members, column-major;
   one SCM of at most ``WALK_MAX_NODES`` nodes is walked instead, the walk unrolled at trace
   time from its static ``walk_plan`` (``_unrolled_walk``: one fused program of whole rows).

``strategy="auto"`` (the default of ``sample``) takes "grouped" for one small SCM, "solve"
for k linear/logistic SCMs, "grouped" otherwise (the walk for a dense SCM traced inside ``jit``: pass
``as_compact(scm)``, built outside, to draw grouped there). ``rng="hash"`` swaps JAX's
threefry for a counter hash, ~7x cheaper on CPUs.

``sample`` composes both stages, is compiled once per (shapes, n, strategy), vmapped over
the k SCMs, callable inside another ``jax.jit``, and shards over all local devices when there
are several (``sample_on_devices``). ``stream`` / ``write`` produce huge volumes in chunks.

Several processes (hosts): call ``causaljax.distributed.initialize`` in every process before
anything else; then ``jax.devices()`` lists every process's devices, ``sample`` shards the draw
over the global mesh and returns one global array (each process holds the shards of its own
devices; every process must make the same call with the same SCM and key). ``to_pandas`` /
``to_arrow`` gather it; ``write`` writes each process's own rows to its own part file.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from causaljax.scm.compact import PER_MEMBER, WALK_MAX_NODES, CompactSCM, compact_cached
from causaljax.scm.mechanisms import (
    all_node_outputs,
    categorical_probs,
    encode_slots,
    group_outputs,
    inverse_cdf,
    masked_params,
    member_inputs,
    node_outputs,
    table_member_outputs,
)
from causaljax.scm.types import CATEGORICAL, NUMERIC, ROOT, SCM, check_shapes, slots_for

STRATEGIES = ("walk", "parallel", "solve", "grouped")
# the closed-form solve runs over blocks of rows, about SOLVE_BLOCK_CELLS cells (k x rows x d)
# but at least SOLVE_MIN_BLOCK_ROWS rows each, so that its passes stay in the CPU caches
# (measured on one core, 20 columns: 1e6 rows 264 -> 151 ms at 2**18 cells, 2**16: the solve
# 109 -> 102 ms, the unrolled walk 96 -> 85 ms; 64 SCMs x 512 rows unchanged);
# on the CPU only (``runtime.cache_blocking``): an accelerator solves all rows at once
SOLVE_BLOCK_CELLS = 2**16
SOLVE_MIN_BLOCK_ROWS = 4096
SKINNY = 8  # products with at most this inner dimension run elementwise (see _rows_dot)


# ----------------------------------------------------------------------------- noise
RNGS = ("key", "hash")


def default_rng() -> str:
    """The uniform generator that is cheaper on the default backend: "hash" on the CPU
    (``hash_uniform``, ~7x cheaper than threefry there), "key" (threefry) on accelerators,
    where threefry is fast and the key's stream is JAX's own."""
    return "hash" if jax.default_backend() == "cpu" else "key"


def _mix32(x: jax.Array) -> jax.Array:
    """A 32-bit avalanche hash (xorshift-multiply, 'lowbias32' constants): uint32 -> uint32."""
    x = x ^ (x >> 16)
    x = x * jnp.uint32(0x7FEB352D)
    x = x ^ (x >> 15)
    x = x * jnp.uint32(0x846CA68B)
    return x ^ (x >> 16)


def hash_uniform(key: jax.Array, shape: tuple) -> jax.Array:
    """Uniforms f32[shape] in [0, 1) from a keyed counter hash: cell c gets
    ``mix32(mix32(c + s0) ^ s1)`` with (s0, s1) drawn from ``key``. About 7x cheaper than
    threefry on a CPU; a pure function of the cell's global index, so sharded draws equal
    unsharded ones. Not a cryptographic generator: for Monte Carlo resampling only."""
    size = math.prod(shape)
    _check_hash_size(size)
    return _hashed_uniform(key, jax.lax.iota(jnp.uint32, size).reshape(shape))


def _check_hash_size(size: int) -> None:
    if size >= 2**32:
        raise ValueError(f"rng='hash' draws at most 2**32 - 1 cells per call, got {size:,}; "
                         "draw in chunks (sampler.stream)")


def _hashed_uniform(key: jax.Array, count: jax.Array) -> jax.Array:
    """The uniform f32 of each cell counter uint32 (``hash_uniform``'s formula)."""
    s0, s1 = jax.random.bits(key, (2,), jnp.uint32)
    bits = _mix32(_mix32(count + s0) ^ s1)
    return (bits >> 8).astype(jnp.float32) * jnp.float32(2.0**-24)


def uniform_columns(key: jax.Array, shape: tuple, rng: str = "key", columns=None, rows=None):
    """The uniforms of ``draw_noise`` in column-major layout: f32[k, len(columns), n] for the
    given static ``columns`` (default: all d) of shape = (k, n, d); ``rows=(start, size)``
    (start may be traced): only rows start .. start + size - 1 of the n. ``rng="key"``: the
    key's generator draws f32[k, d, n] (column-major, the layout the solve reads;
    ``draw_noise`` transposes it). ``rng="hash"``: only those cells are computed (cell
    (s, r, j) hashes its flat index in [k, n, d])."""
    if rng not in RNGS:
        raise ValueError(f"rng must be one of {RNGS}, got {rng!r}")
    k, n, d = shape
    start, size = (0, n) if rows is None else rows
    if rng == "key":
        u = jax.random.uniform(key, (k, d, n), jnp.float32)
        u = u if columns is None else u[:, np.asarray(columns, np.int64)]
        return u if rows is None else jax.lax.dynamic_slice_in_dim(u, start, size, axis=2)
    _check_hash_size(k * n * d)
    columns = np.arange(d) if columns is None else np.asarray(columns, np.int64)
    iota = lambda axis: jax.lax.broadcasted_iota(jnp.uint32, (k, len(columns), size), axis)
    row = iota(2) + jnp.asarray(start, jnp.uint32)
    j = jnp.asarray(columns, jnp.uint32)[None, :, None]
    return _hashed_uniform(key, (iota(0) * jnp.uint32(n) + row) * jnp.uint32(d) + j)


def _from_pools(noise_kxdxm: jax.Array, u: jax.Array, column_axis: int) -> jax.Array:
    """eps = noise[s, j, floor(u * m)] for uniforms u f32[k, ...] whose column j lies on
    ``column_axis``: one flat gather (XLA:CPU's fastest form; each node's pool is contiguous,
    so the reads of a column stay within m floats)."""
    k, d, m = noise_kxdxm.shape
    if k * d * m >= 2**31:
        raise ValueError(f"the noise pools hold {k * d * m:,} values; at most 2**31 - 1 are supported")
    idx = jnp.minimum((u * m).astype(jnp.int32), m - 1)
    start = (jnp.arange(k * d, dtype=jnp.int32) * m).reshape(k, d)  # flat offset of each pool
    start = jnp.expand_dims(start, [a for a in range(1, u.ndim) if a != column_axis])
    flat = (idx + start).reshape(-1)
    return jnp.take(noise_kxdxm.reshape(-1), flat, mode="clip").reshape(u.shape)


def draw_noise_columns(scm: SCM, key: jax.Array, n: int, rng: str = "key", u_columns=None,
                       rows=None):
    """``draw_noise`` in column-major layout: (eps f32[k, d, n], u f32[k, c, n]), the same
    values (cell (s, r, j) of ``draw_noise`` is cell (s, j, r) here); u only for the static
    ``u_columns`` (default: all d), which is all the closed-form solve reads (its categorical
    columns); ``rows=(start, size)``: those rows only (see ``uniform_columns``). Each column
    of the draw is contiguous: what the solve works on."""
    k, d, _ = scm.noise.shape
    u = uniform_columns(key, (k, n, d), rng, rows=rows)  # [k, d, size]
    eps = _from_pools(scm.noise, u, column_axis=1)
    if u_columns is not None:  # with rng="hash", re-hashing c columns beats keeping all d
        u = uniform_columns(key, (k, n, d), rng, u_columns, rows=rows)
    return eps, u


def draw_noise(scm: SCM, key: jax.Array, n: int, rng: str = "key") -> tuple[jax.Array, jax.Array]:
    """Exogenous noise for n rows of each SCM: (eps f32[k, n, d], u f32[k, n, d]); eps is
    resampled from each node's pool at index floor(u * m). ``rng="key"`` draws the uniforms
    with the key's own JAX generator (threefry by default; as f32[k, d, n], transposed: see
    ``uniform_columns``); ``rng="hash"`` with the counter
    hash of ``hash_uniform`` (cell (s, r, j) hashes its flat index; faster on CPUs)."""
    if rng not in RNGS:
        raise ValueError(f"rng must be one of {RNGS}, got {rng!r}")
    k, d, _ = scm.noise.shape
    u = (uniform_columns(key, (k, n, d), rng).swapaxes(1, 2) if rng == "key"
         else hash_uniform(key, (k, n, d)))
    eps = _from_pools(scm.noise, u, column_axis=2)  # noise[s, j, floor(u[s, r, j] * m)]
    return eps, u


# ----------------------------------------------------------------------------- one SCM
def _node_value(kind, out_nxc, eps_n, u_n, n_levels, is_integer):
    """Value of one node for a batch of rows from its mechanism output and noise."""
    numeric = out_nxc[:, 0] + eps_n
    numeric = jnp.where(is_integer, jnp.round(numeric), numeric)
    levels = jnp.maximum(n_levels, 1)
    categorical = inverse_cdf(categorical_probs(out_nxc, levels), u_n, levels)
    return jnp.where(kind == ROOT, eps_n, jnp.where(kind == CATEGORICAL, categorical, numeric))


def _walk(scm: SCM, eps_nxd, u_nxd, do_mask_d, do_value_d, levels: tuple | None = None):
    """Topological walk for ONE SCM (no k axis). With a static layout (``levels``) the inputs
    are encoded by static slices (all-numeric: the rows themselves) instead of gathers."""
    n, d = eps_nxd.shape

    def visit(t, x_nxd):
        j = scm.order[t]
        z = (encode_slots(x_nxd, scm.slot_column, scm.slot_level) if levels is None
             else x_nxd if not any(levels) else _encode_typed(x_nxd, levels))
        value = _node_value(scm.kind[j], node_outputs(scm, j, z), eps_nxd[:, j], u_nxd[:, j],
                            scm.n_levels[j], scm.is_integer[j])
        value = jnp.where(do_mask_d[j], do_value_d[j], value)
        return x_nxd.at[:, j].set(value)

    return jax.lax.fori_loop(0, d, visit, jnp.zeros((n, d), eps_nxd.dtype))


def _parallel(scm: SCM, eps_nxd, u_nxd, do_mask_d, do_value_d):
    """All nodes at once, repeated depth + 1 times, for ONE SCM (no k axis)."""
    node_value = jax.vmap(_node_value, in_axes=(0, 1, 1, 1, 0, 0), out_axes=1)

    def sweep(_, x_nxd):
        z = encode_slots(x_nxd, scm.slot_column, scm.slot_level)
        out = all_node_outputs(scm, z)  # [n, d, C]
        value = node_value(scm.kind, out, eps_nxd, u_nxd, scm.n_levels, scm.is_integer)
        return jnp.where(do_mask_d[None], do_value_d[None], value)

    return jax.lax.fori_loop(0, scm.depth + 1, sweep, jnp.zeros_like(eps_nxd))


def linear_only(scm: SCM) -> bool:
    """True when the SCM carries no quadratic, cubic, MLP or tree parameters (static shapes)."""
    return (scm.quad_w.size == 0 and scm.cube_w.size == 0 and scm.mlp_w1.size == 0
            and scm.tree_feature.size == 0 and scm.tree_tables is None)


def _encode_typed(x_nxd, levels: tuple) -> jax.Array:
    """Rows f32[n, d] -> mechanism inputs f32[n, S] for a static column layout (standard slots:
    a numeric column is one slot, a categorical one its one-hot block); static slices only."""
    parts = [x_nxd[:, j:j + 1] if L == 0
             else (x_nxd[:, j:j + 1] == jnp.arange(L)[None, :]).astype(x_nxd.dtype)
             for j, L in enumerate(levels)]
    return jnp.concatenate(parts, axis=1)


def _categorical_column(scm: SCM, j: int, L: int, logits_nxl, eps_nxd, u_nxd):
    """Column j (L levels) f32[n, 1]: inverse-CDF draw from softmax(logits), roots resample."""
    code = inverse_cdf(jax.nn.softmax(logits_nxl, axis=-1), u_nxd[:, j], L)
    return jnp.where(scm.kind[j] == ROOT, eps_nxd[:, j], code)[:, None]


def _assemble(levels: tuple, numeric_nxm, categorical: dict):
    """Columns in table order from the numeric block f32[n, d_num] and {column: f32[n, 1]}."""
    columns, i = [], 0
    for j, L in enumerate(levels):
        if L == 0:
            columns.append(numeric_nxm[:, i:i + 1])
            i += 1
        else:
            columns.append(categorical[j])
    return jnp.concatenate(columns, axis=1)


def _typed_parallel(scm: SCM, eps_nxd, u_nxd, do_mask_d, do_value_d, levels: tuple):
    """``_parallel`` specialised to a column layout known at trace time (``levels``: the
    level count of every column, 0 = numeric, shared by all k SCMs; slots as ``slots_for``).
    Numeric nodes are one matrix product, each categorical node its own small softmax; the
    loop body uses only static slices and concatenations (no gather / scatter, which are slow
    on CPUs), and the sweep starts from the roots, so ``depth`` sweeps suffice."""
    levels = tuple(int(L) for L in levels)
    num = np.asarray([j for j, L in enumerate(levels) if L == 0], np.int32)
    dense_only = linear_only(scm)
    w_num = scm.lin_w[num, :, 0].T  # [S, d_num]
    b_num = scm.lin_b[num, 0][None, :]
    root_num = (scm.kind[num] == ROOT)[None, :]
    int_num = scm.is_integer[num][None, :]
    eps_num = eps_nxd[:, num]  # [n, d_num], gathered once

    def sweep(_, x_nxd):
        z = _encode_typed(x_nxd, levels)
        out = None if dense_only else all_node_outputs(scm, z)  # [n, d, C]
        out_num = z @ w_num + b_num if dense_only else out[:, num, 0]
        value = out_num + eps_num
        value = jnp.where(root_num, eps_num, jnp.where(int_num, jnp.round(value), value))
        categorical = {
            j: _categorical_column(scm, j, L, z @ scm.lin_w[j, :, :L] + scm.lin_b[j, :L][None, :]
                                   if dense_only else out[:, j, :L], eps_nxd, u_nxd)
            for j, L in enumerate(levels) if L}
        return jnp.where(do_mask_d[None], do_value_d[None], _assemble(levels, value, categorical))

    start = jnp.where((scm.kind == ROOT)[None, :], eps_nxd, 0.0)
    start = jnp.where(do_mask_d[None], do_value_d[None], start)
    return jax.lax.fori_loop(0, scm.depth, sweep, start)


def _rows_dot(w_axb: jax.Array, x_bxn: jax.Array) -> jax.Array:
    """w @ x for column-major rows x f32[b, n]. For an inner dimension b <= ``SKINNY`` the
    product is b multiply-adds of whole rows, which XLA fuses with the elementwise work around
    it (a library dot of such skinny shapes costs more than it computes, on two threads most
    of all); otherwise a dot."""
    a, b = w_axb.shape
    if b > SKINNY:
        return jnp.dot(w_axb, x_bxn, precision=jax.lax.Precision.HIGHEST)
    terms = [w_axb[:, i:i + 1] * x_bxn[i:i + 1] for i in range(b)]
    return functools.reduce(jnp.add, terms) if terms else jnp.zeros((a, x_bxn.shape[1]), x_bxn.dtype)


def _neumann_inverse(w_mxm: jax.Array) -> jax.Array:
    """(I - W)^-1 = I + W + W^2 + ... for a nilpotent W (the weights of a DAG), by squaring."""
    hi = jax.lax.Precision.HIGHEST
    eye = jnp.eye(w_mxm.shape[0], dtype=w_mxm.dtype)
    total, power = eye + w_mxm, w_mxm  # covers the powers below 2
    for _ in range(max(0, (w_mxm.shape[0] - 1).bit_length() - 1)):  # powers below 2**(t+1)
        power = jnp.dot(power, power, precision=hi)
        total = jnp.dot(total, eye + power, precision=hi)
    return total


def nonlinear_depth(scm: SCM) -> jax.Array:
    """int32[]: the most nonlinear nodes (non-root categorical, integer-rounded numeric) on
    one directed path of ONE SCM (no k axis): the rounds ``_typed_solve`` runs after its first
    closed-form solve."""
    nonlinear = ((scm.kind == CATEGORICAL) | ((scm.kind == NUMERIC) & scm.is_integer))
    nonlinear = nonlinear.astype(jnp.int32)
    parents = scm.parents.astype(jnp.int32)  # [d, d]: parents[i, j]
    step = lambda _, r: nonlinear + (parents * r[:, None]).max(axis=0, initial=0)
    return jax.lax.fori_loop(0, scm.d, step, nonlinear).max(initial=0)


def categorical_columns(levels: tuple) -> list[int]:
    """The categorical columns (level count > 0) of a static column layout."""
    return [j for j, L in enumerate(levels) if L]


def _columns_first_rows(w_sxq: jax.Array, levels: tuple) -> jax.Array:
    """Weights over the standard slots f32[S, Q] -> rows over the solve's inputs (column-major
    mechanism inputs for a static layout: the d columns, then the one-hot rows of each
    categorical column): one row per column (zero for a categorical column, which enters by
    its one-hot rows), then the level rows of each categorical column."""
    slot_column, slot_level = slots_for(np.asarray(levels))
    column_slot = np.zeros(len(levels), np.int32)
    column_slot[slot_column[slot_level < 0]] = np.flatnonzero(slot_level < 0)
    rows = np.concatenate([column_slot, np.flatnonzero(slot_level >= 0)])
    keep = np.concatenate([np.asarray(levels) == 0, np.ones((slot_level >= 0).sum(), bool)])
    return w_sxq[rows] * keep[:, None]


def _onehot_rows(codes_cxn, categorical) -> jax.Array:
    """Level codes f32[c, n] of the categorical columns -> their one-hot rows f32[sum L, n]."""
    rows = [(codes_cxn[i][None] == jnp.arange(L, dtype=codes_cxn.dtype)[:, None])
            for i, (_, L) in enumerate(categorical)]
    return jnp.concatenate(rows).astype(codes_cxn.dtype) if rows else codes_cxn[:0]


def _typed_solve(scm: SCM, eps_dxn, u_cxn, do_mask_d, do_value_d, levels: tuple,
                 rounding: tuple | None = None):
    """Linear / logistic SCMs (no quadratic, MLP or tree parameters) with a static column
    layout (as ``_typed_parallel``), for ONE SCM, column-major: noise eps f32[d, n], the
    uniforms u f32[c, n] of the c categorical columns only, and the result f32[d, n].

    The linear numeric nodes and the roots (the solved set S) are solved jointly in closed
    form, x_S = A (b + eps) + M k with A = (I - W_SS)^-T and M = A W_KS^T, where k holds the
    known inputs: intervened nodes (constant over rows) and the nonlinear nodes, i.e. the
    categorical ones (as one-hot rows) and the integer-rounded ones. Only the nonlinear
    nodes are iterated, as a small state s (one value row per column in ``rounding``, the
    static columns that may be rounded, default every numeric column; one row per level of
    each categorical column): everything is linear in s, so their pre-activations are
    z = P + G s + g with P = W^T A (b + eps) computed once, and a round costs products with
    the r + sum L state rows only. ``nonlinear_depth`` rounds, then x_S once more from the
    final state. Column-major because every step is a skinny product or a per-row operation
    on contiguous memory (no gathers, no strided column slices: both are slow on CPUs).
    Equal to the walk up to float rounding."""
    levels = tuple(int(L) for L in levels)
    d = len(levels)
    hi = jax.lax.Precision.HIGHEST
    dot = functools.partial(jnp.dot, precision=hi)
    cat_cols = categorical_columns(levels)
    categorical = [(j, levels[j]) for j in cat_cols]
    is_cat = np.asarray(levels) > 0
    rows_r = [j for j in range(d) if not is_cat[j]] if rounding is None else list(rounding)
    r, n_oh = len(rows_r), sum(L for _, L in categorical)
    q = d + n_oh  # mechanism inputs (see _columns_first_rows): the d columns, one-hot rows
    # w_out: input row -> every node's value (d outputs), then each categorical node's logits
    w_out = _columns_first_rows(jnp.concatenate(
        [scm.lin_w[:, :, 0].T] + [scm.lin_w[j, :, :L] for j, L in categorical], axis=1), levels)
    b_out = jnp.concatenate([scm.lin_b[:, 0]] + [scm.lin_b[j, :L] for j, L in categorical])
    root, cut = scm.kind == ROOT, do_mask_d  # cut: intervened, a known value, parents cut
    in_r = np.isin(np.arange(d), rows_r)
    rounded = (scm.kind == NUMERIC) & scm.is_integer & ~cut & in_r
    solved = ~is_cat & ~cut & ~rounded  # linear numeric nodes and numeric roots
    s_col = solved[:, None]
    inverse_t = _neumann_inverse(w_out[:d, :d] * (s_col & s_col.T)).T  # A: [d, d]
    known_input = jnp.concatenate([~solved, jnp.ones(n_oh, bool)])  # [q]
    known_map = dot(inverse_t, (w_out[:, :d] * known_input[:, None]).T
                    * (s_col & ~root[:, None]))  # M: [d, q]
    base = dot(inverse_t, jnp.where(s_col, eps_dxn + jnp.where(root, 0.0, b_out[:d])[:, None],
                                    0.0))  # A (b + eps): [d, n]
    # the state s: value rows of rows_r, then the one-hot rows (input rows state_in of q,
    # output columns state_out of w_out); constants: intervened nodes outside the state
    state_in = np.asarray(rows_r + list(range(d, q)), np.int32)
    state_out = np.asarray(rows_r + list(range(d, d + n_oh)), np.int32)
    const_d = jnp.where(cut & ~in_r, do_value_d, 0.0)  # [d]
    pick_r = np.zeros((d, r + n_oh), np.float32)
    pick_r[rows_r, np.arange(r)] = 1.0  # known value rows of the state
    # inputs of the state's mechanisms, [S*base; 0] + j_const + j_state @ s
    j_state = jnp.concatenate([jnp.where(s_col, known_map[:, state_in], pick_r),
                               np.eye(r + n_oh, dtype=np.float32)[r:]])  # [q, r + sum L]
    j_const = jnp.concatenate([jnp.where(solved, dot(known_map[:, :d], const_d), const_d),
                               jnp.zeros(n_oh)])  # [q]
    w_state = w_out[:, state_out]  # [q, r + sum L]
    g_state = dot(w_state.T, j_state)  # G
    g_const = (dot(w_state.T, j_const) + b_out[state_out])[:, None]
    p_base = dot(w_state[:d].T, jnp.where(s_col, base, 0.0))  # P: [r + sum L, n]
    idx_r, idx_c = np.asarray(rows_r, np.int32), np.asarray(cat_cols, np.int32)
    eps_r, cut_r, value_r = eps_dxn[idx_r], cut[idx_r, None], do_value_d[idx_r, None]

    def state(codes_cxn, values_rxn):
        return jnp.concatenate([values_rxn, _onehot_rows(codes_cxn, categorical)])

    def round_(_, carry):  # the nonlinear nodes from the previous round's state
        codes, values = carry
        z = p_base + _rows_dot(g_state, state(codes, values)) + g_const
        values = jnp.where(cut_r, value_r,
                           jnp.where(rounded[idx_r, None], jnp.round(z[:r] + eps_r), 0.0))
        new_codes, offset = [], r
        for i, (j, L) in enumerate(categorical):
            probs_lxn = jax.nn.softmax(z[offset:offset + L], axis=0)
            code = inverse_cdf(probs_lxn, u_cxn[i], L, axis=0)
            new_codes.append(jnp.where(cut[j], do_value_d[j], jnp.where(root[j], eps_dxn[j], code)))
            offset += L
        return (jnp.stack(new_codes) if new_codes else codes), values

    # start: intervened nodes and categorical roots are known, other state rows 0; each round
    # finalises one more nonlinear level
    codes = jnp.where(cut[idx_c, None], do_value_d[idx_c, None],
                      jnp.where(root[idx_c, None], eps_dxn[idx_c], 0.0))
    values = jnp.broadcast_to(jnp.where(cut_r, value_r, 0.0), eps_r.shape)
    codes, values = jax.lax.fori_loop(0, nonlinear_depth(scm), round_, (codes, values))
    x_solved = base + dot(known_map[:, :d], const_d)[:, None] + _rows_dot(known_map[:, state_in],
                                                                         state(codes, values))
    known = jnp.broadcast_to(jnp.where(cut, do_value_d, 0.0)[:, None], eps_dxn.shape)
    known = known.at[np.asarray(rows_r + cat_cols, np.int32)].set(
        jnp.concatenate([values, codes]))
    return jnp.where(s_col, x_solved, known)


def as_compact(scm) -> CompactSCM:
    """The compact layout of ``scm`` (``causaljax.scm.compact``; built once per concrete SCM
    object and cached); a CompactSCM is returned as it is."""
    if isinstance(scm, CompactSCM):
        return scm
    if _is_traced(scm):
        raise ValueError("strategy='grouped' needs the compact layout, which is built from a "
                         "concrete SCM: call sampler.as_compact(scm) outside jit and pass that")
    return compact_cached(scm)


def _slices(eps_kxdxn, u_kxcxn):
    """Column-major noise -> noise(start, size): its rows start .. start + size - 1."""
    n = eps_kxdxn.shape[2]
    take = lambda a, start, size: (a if size == n else
                                   jax.lax.dynamic_slice_in_dim(a, start, size, axis=2))
    return lambda start, size, u=None: (take(eps_kxdxn, start, size), take(u_kxcxn, start, size))


def _solve_columns(scm: SCM, noise, n: int, do_mask_d, do_value_d, levels: tuple,
                   rounding: tuple | None = None, uniforms=None):
    """``_typed_solve`` over the k SCMs: rows f32[k, n, d]. ``noise(start, size, u)`` gives
    the column-major noise of rows start .. start + size - 1: (eps f32[k, d, size], u f32[k,
    c, size] of the categorical columns), from their uniforms u if given (``uniforms``, see
    ``_row_blocks``). Runs over cache-sized blocks of rows."""
    if levels is None or not linear_only(scm):
        raise ValueError("strategy='solve' needs a linear/logistic SCM (no quadratic, MLP or "
                         "tree parameters) with a static column layout (levels=...)")
    solve = jax.vmap(functools.partial(_typed_solve, levels=tuple(levels), rounding=rounding),
                     in_axes=(0, 0, 0, None, None))
    scm = jax.vmap(masked_params)(scm)
    return _row_blocks(lambda start, size, u=None: solve(scm, *noise(start, size, u), do_mask_d,
                                                         do_value_d).swapaxes(1, 2),
                       *scm.kind.shape, n, uniforms)


def _row_blocks(block, k: int, d: int, n: int, uniforms=None):
    """Rows f32[k, n, d] from ``block(start, size, u) -> f32[k, size, d]`` (rows start ..
    start + size - 1), over blocks of about SOLVE_BLOCK_CELLS cells (at least
    SOLVE_MIN_BLOCK_ROWS rows) so that the column-major passes stay in the CPU caches; one
    block on other backends. With ``uniforms(start, size)`` (the hash's uniforms of those
    rows), each block's are computed one step ahead and carried into the next step as u:
    a loop carry is its own vectorised pass (fused into the pool gathers, the hash runs
    as scalar code: 2e6 cells 3.0 -> 2.5 ms on one core)."""
    from causaljax.runtime import cache_blocking

    chunk = max(SOLVE_BLOCK_CELLS // (k * d), SOLVE_MIN_BLOCK_ROWS)
    if n <= chunk or not cache_blocking():
        return block(0, n)
    blocks = n // chunk

    if uniforms is None:
        def step(i, rows):
            return jax.lax.dynamic_update_slice_in_dim(rows, block(i * chunk, chunk), i * chunk,
                                                       1)
        rows = jax.lax.fori_loop(0, blocks, step, jnp.zeros((k, n, d), jnp.float32))
    else:
        def step(i, carry):
            rows, u = carry
            following = uniforms(jnp.minimum(i + 1, blocks - 1) * chunk, chunk)
            rows = jax.lax.dynamic_update_slice_in_dim(rows, block(i * chunk, chunk, u),
                                                       i * chunk, 1)
            return rows, following
        rows, _ = jax.lax.fori_loop(0, blocks, step, (jnp.zeros((k, n, d), jnp.float32),
                                                      uniforms(0, chunk)))
    if n % chunk:
        rows = rows.at[:, n - n % chunk:].set(block(n - n % chunk, n % chunk))
    return rows


def _grouped(c: CompactSCM, eps_dxn, u_cxn, do_mask_d, do_value_d, one_by_one: bool = False):
    """ONE SCM in the compact layout (no k axis), column-major: noise eps f32[d, n], the
    uniforms u f32[c, n] of its categorical columns (``c.categorical``); rows f32[d, n].

    Roots and intervened nodes are set first; then one sweep per topological level l = 1 ..
    depth (in ``c.segments``' runs of levels, each with its own window sizes, if given). A
    sweep works on a window of ``c.width`` consecutive nodes of ``by_level`` that holds level
    l's nodes (the others in it keep their rows): each family group evaluates
    only its window of ``width`` members starting at its first of level l (members of other
    levels masked), from their parents' rows, into the window nodes' channels; the level's
    nodes then take their value (numeric: output + eps, rounded when integer) and are written
    back; then the level's categorical nodes, a window of ``c.cat_width`` of the categorical
    columns sorted by level, take the inverse CDF of the softmax of their channels. Equal to the walk up to float
    rounding; the work of a sweep is its members' and the window's, not d's. ``one_by_one``
    (one SCM, not under vmap): the costly families (``PER_MEMBER``) loop over the level's own
    members only (``_members_one_by_one``), so members of other levels cost nothing."""
    d, n = eps_dxn.shape
    C = c.bias.shape[-1]
    cat = np.asarray(c.categorical, np.int32)
    cat_row = np.zeros(d, np.int32)  # column -> its row of u_cxn
    cat_row[cat] = np.arange(len(cat), dtype=np.int32)
    cat_row = jnp.asarray(cat_row)
    start = jnp.where(do_mask_d[:, None], do_value_d[:, None],
                      jnp.where((c.kind == ROOT)[:, None], eps_dxn, 0.0))
    sorted_level = c.level[c.by_level]
    # the categorical columns sorted by level, swept Vc at a time (``cat_width``; -1: unknown,
    # as many as the node window holds)
    cat_by_level = jnp.asarray(cat)[jnp.argsort(c.level[cat], stable=True)] if len(cat) else None
    cat_level = c.level[cat_by_level] if len(cat) else None

    def sweep(level, x_dxn, V, widths):  # V nodes and widths[i] members of group i per sweep
        first = jnp.minimum(jnp.searchsorted(sorted_level, level), d - V).astype(jnp.int32)
        nodes = jax.lax.dynamic_slice_in_dim(c.by_level, first, V)  # [V], distinct
        acc = jnp.broadcast_to(c.bias[nodes][:, :, None], (V, C, n))  # [V, C, n]
        for g, W in zip(c.groups, widths):
            lo = jnp.searchsorted(g.level, level).astype(jnp.int32)
            window = lambda a, lo=lo, W=W: jax.lax.dynamic_slice_in_dim(a, lo, W)
            keep = window(g.level) == level

            def add(acc, g=g, window=window, keep=keep, lo=lo):
                if one_by_one and g.family in PER_MEMBER:  # only this level's members
                    return _members_one_by_one(c, g, x_dxn, acc, lo, keep.sum(), first)
                z = member_inputs(x_dxn, window(g.in_col), window(g.in_level))  # [W, R, n]
                params, pos = jax.tree.map(window, g.params), c.rank[window(g.node)] - first
                vals = group_outputs(g.family, params, z, c.tree_depth)
                return acc.at[pos].add(jnp.where(keep[:, None, None], vals, 0.0), mode="drop")

            # a family with no member on this level is skipped (one SCM: a real branch; under
            # vmap over k both branches run, as a select)
            acc = jax.lax.cond(keep.any(), add, lambda acc: acc, acc)
        value = acc[:, 0] + eps_dxn[nodes]
        value = jnp.where(c.is_integer[nodes][:, None], jnp.round(value), value)
        now = (c.level[nodes] == level) & ~do_mask_d[nodes] & (c.kind[nodes] != ROOT)
        if Vc:  # the level's categorical nodes: a window of Vc categorical columns by level
            whole = 2 * Vc >= V  # most of the node window: take all of it (no gather)
            if whole:
                cat_nodes = nodes
            else:
                cat_first = jnp.minimum(jnp.searchsorted(cat_level, level), len(cat) - Vc)
                cat_nodes = jax.lax.dynamic_slice_in_dim(
                    cat_by_level, cat_first.astype(jnp.int32), Vc)
            pos = c.rank[cat_nodes] - first  # their rows in the node window (others: outside)
            cat_now = (c.level[cat_nodes] == level) & (c.kind[cat_nodes] == CATEGORICAL)

            def codes(value):
                logits = acc if whole else acc.at[pos].get(mode="fill", fill_value=0.0)
                levels = jnp.maximum(c.n_levels[cat_nodes], 1)[:, None]  # [Vc or V, 1]
                valid = jnp.arange(C)[None, :, None] < levels[:, :, None]
                probs = jax.nn.softmax(jnp.where(valid, logits, -jnp.inf), axis=1)
                code = inverse_cdf(probs, u_cxn[cat_row[cat_nodes]], levels, axis=1)
                if whole:
                    return jnp.where(cat_now[:, None], code, value)
                return value.at[jnp.where(cat_now, pos, V)].set(code, mode="drop")

            value = jax.lax.cond(cat_now.any(), codes, lambda v: v, value)
        return x_dxn.at[nodes].set(jnp.where(now[:, None], value, x_dxn[nodes]))

    Vc = min(len(cat), c.width if c.cat_width < 0 else c.cat_width)
    if not c.segments:  # every level with the widest windows
        body = functools.partial(sweep, V=c.width, widths=tuple(g.width for g in c.groups))
        return jax.lax.fori_loop(1, c.depth + 1, body, start)
    x_dxn = start
    for first_level, last_level, V, widths in c.segments:  # runs with their own windows
        body = functools.partial(sweep, V=V, widths=widths)
        x_dxn = jax.lax.fori_loop(first_level, last_level + 1, body, x_dxn)
    return x_dxn


def _members_one_by_one(c: CompactSCM, g, x_dxn, acc, lo, count, first):
    """Add the outputs of group g's members lo .. lo + count - 1 (one level's, contiguous)
    to the sweep's accumulator acc f32[V, C, n], one member per iteration of a loop (one SCM,
    not under vmap: the loop runs ``count`` times, and compiles one member's program)."""
    def one(i, acc):
        take = lambda a: jax.lax.dynamic_slice_in_dim(a, lo + i, 1)
        z = member_inputs(x_dxn, take(g.in_col), take(g.in_level))  # [1, R, n]
        if g.family == "tables":  # its tables read in place (they are the large arrays)
            out = table_member_outputs(z[0], lo + i, g.params)
        else:
            out = group_outputs(g.family, jax.tree.map(take, g.params), z, c.tree_depth)[0]
        return acc.at[c.rank[take(g.node)[0]] - first].add(out, mode="drop")

    return jax.lax.fori_loop(0, count, one, acc)


def _row_sum(rows: list):
    """The sum of a non-empty list of rows, left to right (no zero to start from)."""
    return functools.reduce(jnp.add, rows)


def _walk_member(acc: list, g, m: int, z: list, tree_depth: int) -> list:
    """Outputs of member m of group g on its inputs z (one f32[n] row per input, in the
    order of ``inputs``): a list of ``channels`` f32[n] rows. Linear and quadratic members
    are written as multiply-adds of whole rows (XLA fuses them with the walk around them);
    the other families run their group evaluator on the inputs padded to the group's R."""
    w, channels = g.params.get("w"), len(acc)
    if g.family == "linear":
        return [_row_sum([acc[ch]] + [w[m, r, ch] * zr for r, zr in enumerate(z)])
                for ch in range(channels)]
    if g.family == "quadratic":  # each pair once: w_ab + w_ba
        pairs = [(a, b) for a in range(len(z)) for b in range(a, len(z))]
        weight = lambda a, b, ch: w[m, a, a, ch] if a == b else w[m, a, b, ch] + w[m, b, a, ch]
        return [_row_sum([acc[ch]] + [weight(a, b, ch) * (z[a] * z[b]) for a, b in pairs])
                for ch in range(channels)]
    n = z[0].shape[0]
    z_rxn = jnp.stack(z + [jnp.zeros(n, jnp.float32)] * (g.in_col.shape[-1] - len(z)))
    if g.family == "tables":
        out = table_member_outputs(z_rxn, m, g.params)
    else:
        params = jax.tree.map(lambda a: a[m:m + 1], g.params)
        out = group_outputs(g.family, params, z_rxn[None], tree_depth)[0]
    return [a + out[ch] for ch, a in enumerate(acc)]


def _unrolled_walk(c: CompactSCM, eps_dxn, u_cxn, do_mask_d, do_value_d):
    """ONE SCM in the compact layout (no k axis) with a ``walk_plan`` (``c.walk``),
    column-major as ``_grouped``: the topological walk unrolled at trace time. Each node's
    value is computed from its parents' rows only (one f32[n] row per node), so a draw is
    one straight-line program of whole-row operations that XLA fuses; no window, mask or
    level loop. Equal to ``_grouped`` up to float rounding (same noise, same terms)."""
    cat_row = {j: i for i, j in enumerate(c.categorical)}
    x = [None] * eps_dxn.shape[0]
    for node in c.walk:
        j = node.node
        if node.root:
            value = eps_dxn[j]
        else:
            channels = max(node.n_levels, 1)
            out = [c.bias[j, ch] for ch in range(channels)]
            for gi, m, inputs in node.members:
                z = [x[col] if lev == -1 else (x[col] == lev).astype(jnp.float32)
                     for col, lev in inputs]
                if not z:
                    continue
                out = _walk_member(out, c.groups[gi], m, z, c.tree_depth)
            if node.n_levels:  # inverse CDF of the softmax over its levels
                probs = jax.nn.softmax(jnp.stack(jnp.broadcast_arrays(*out)), axis=0)
                value = inverse_cdf(probs, u_cxn[cat_row[j]], node.n_levels, axis=0)
            else:
                value = out[0] + eps_dxn[j]
                value = jnp.round(value) if node.integer else value
        x[j] = jnp.where(do_mask_d[j], do_value_d[j], value)
    return jnp.stack(x)


def _grouped_columns(c: CompactSCM, noise, n: int, do_mask_d, do_value_d, uniforms=None):
    """``_grouped`` over the k SCMs: rows f32[k, n, d], noise as for ``_solve_columns``.
    With ``c.blocks`` (``compact.merge_blocks``: the k SCMs as one block-diagonal SCM) the
    sweeps run once over all k·d nodes, not vmapped: a level's work is what the k SCMs have
    on it, not k x the largest of them (the same values)."""
    k, d = c.k, c.d
    if c.k == 1 and c.walk:  # one small SCM: its walk, unrolled
        one = jax.tree.map(lambda a: a[0], c)
        sweeps = lambda c_, eps, u, *do: _unrolled_walk(one, eps[0], u[0], *do)[None]
    elif c.k == 1:  # one SCM: no vmap, so that the sweeps' branches really skip work
        one = jax.tree.map(lambda a: a[0], c)
        sweeps = lambda c_, eps, u, *do: _grouped(one, eps[0], u[0], *do, one_by_one=True)[None]
    elif c.blocks is not None and c.blocks.d == k * d:
        one = jax.tree.map(lambda a: a[0], c.blocks)

        def sweeps(c_, eps_kxdxn, u_kxcxn, do_mask_d, do_value_d):
            size = eps_kxdxn.shape[-1]
            x = _grouped(one, eps_kxdxn.reshape(k * d, size), u_kxcxn.reshape(-1, size),
                         jnp.tile(do_mask_d, k), jnp.tile(do_value_d, k), one_by_one=True)
            return x.reshape(k, d, size)
    else:
        sweeps = jax.vmap(_grouped, in_axes=(0, 0, 0, None, None))
    return _row_blocks(lambda start, size, u=None: sweeps(c, *noise(start, size, u), do_mask_d,
                                                          do_value_d).swapaxes(1, 2),
                       c.k, c.d, n, uniforms)


def static_rounding(scm: SCM, levels: tuple | None) -> tuple | None:
    """The numeric columns that may be integer-rounded (``is_integer`` in some SCM) as a
    hashable tuple, when ``is_integer`` is concrete; else None (the solve then keeps every
    numeric column in its state)."""
    if levels is None or _is_traced(scm.is_integer):
        return None
    integer = np.asarray(scm.is_integer).any(axis=0) & (np.asarray(levels) == 0)
    return tuple(int(j) for j in np.flatnonzero(integer))


def static_levels(scm: SCM) -> tuple | None:
    """The column layout as a hashable tuple when it can be specialised on at trace time:
    concrete arrays, one layout shared by all k SCMs, standard slots. Else None."""
    if _is_traced(scm.n_levels, scm.slot_column, scm.slot_level):
        return None
    n_levels = np.asarray(scm.n_levels)
    if not (n_levels == n_levels[:1]).all():
        return None
    columns, slot_levels = slots_for(n_levels[0])
    if (scm.slot_column.shape[1] != len(columns)
            or not (np.asarray(scm.slot_column) == columns).all()
            or not (np.asarray(scm.slot_level) == slot_levels).all()):
        return None
    return tuple(int(L) for L in n_levels[0])


def propagate(scm: SCM, eps: jax.Array, u: jax.Array, *, do_mask=None, do_value=None,
              strategy: str = "walk", levels: tuple | None = None,
              rounding: tuple | None = None) -> jax.Array:
    """Rows f32[k, n, d] from exogenous noise (eps, u) f32[k, n, d]; deterministic and
    differentiable in eps. ``do_mask`` bool[d] / ``do_value`` f32[d] fix intervened nodes.
    ``levels`` (see ``static_levels``) lets the parallel strategy specialise on the layout;
    ``rounding`` (see ``static_rounding``) shrinks the solve's state to the integer columns."""
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    d = scm.d
    do_mask = jnp.zeros(d, bool) if do_mask is None else jnp.asarray(do_mask, bool)
    do_value = jnp.zeros(d, jnp.float32) if do_value is None else jnp.asarray(do_value, jnp.float32)
    if strategy in ("solve", "grouped"):
        if strategy == "grouped":
            scm = as_compact(scm)
        columns = list(scm.categorical) if strategy == "grouped" else categorical_columns(levels or ())
        noise = _slices(eps.swapaxes(1, 2), u[:, :, columns].swapaxes(1, 2))
        if strategy == "grouped":
            return _grouped_columns(scm, noise, eps.shape[1], do_mask, do_value)
        return _solve_columns(scm, noise, eps.shape[1], do_mask, do_value, levels, rounding)
    if strategy == "walk":
        one_scm = functools.partial(_walk, levels=None if levels is None else tuple(levels))
    elif levels is not None:
        one_scm = functools.partial(_typed_parallel, levels=tuple(levels))
    else:
        one_scm = _parallel
    scm = jax.vmap(masked_params)(scm)
    return jax.vmap(one_scm, in_axes=(0, 0, 0, None, None))(scm, eps, u, do_mask, do_value)


@functools.partial(jax.jit, static_argnames=("n", "strategy", "levels", "rng", "rounding",
                                             "of_rows"))
def _sample(scm: SCM, key, do_mask, do_value, *, n: int, strategy: str, levels=None,
            rng: str = "key", rounding=None, first_row=0, of_rows: int | None = None):
    """The draw's program. ``first_row`` (may be traced) / ``of_rows``: these n rows are rows
    first_row .. first_row + n - 1 of a draw of ``of_rows`` rows (the same values; a device's
    share of a split draw: ``rng="hash"`` with the solve or the grouped draws only)."""
    if of_rows is not None and not (rng == "hash" and strategy in ("solve", "grouped")):
        raise ValueError("a draw's share of rows needs rng='hash' and the solve or grouped draws")
    if strategy in ("solve", "grouped"):  # noise drawn column-major, as both work
        columns = (list(scm.categorical) if strategy == "grouped"
                   else categorical_columns(levels or ()))
        uniforms = None
        if rng == "hash":  # each block of rows hashes its own noise (it stays in cache)
            shape = (scm.k, n if of_rows is None else of_rows, scm.d)
            uniforms = lambda start, size: uniform_columns(key, shape, rng,
                                                           rows=(first_row + start, size))

            def noise(start, size, u=None):  # u: the block's uniforms, if computed already
                if u is None:
                    return draw_noise_columns(scm, key, shape[1], rng, columns,
                                              rows=(first_row + start, size))
                return _from_pools(scm.noise, u, column_axis=1), u[:, np.asarray(columns, int)]
        else:  # the key's generator draws all n rows at once
            noise = _slices(*draw_noise_columns(scm, key, n, rng, columns))
        do_mask, do_value = jnp.asarray(do_mask, bool), jnp.asarray(do_value, jnp.float32)
        if strategy == "grouped":
            return _grouped_columns(scm, noise, n, do_mask, do_value, uniforms)
        return _solve_columns(scm, noise, n, do_mask, do_value, levels, rounding, uniforms)
    eps, u = draw_noise(scm, key, n, rng)
    return propagate(scm, eps, u, do_mask=do_mask, do_value=do_value, strategy=strategy,
                     levels=levels)


# ----------------------------------------------------------------------------- public API
def _check_key(key) -> jax.Array:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape != ():
            raise ValueError(f"expected a single JAX key, got a key array of shape {key.shape}")
        return key
    if isinstance(key, (jax.Array, np.ndarray)) and key.dtype == np.uint32 and key.shape == (2,):
        return key  # raw jax.random.PRNGKey
    raise TypeError("key must be a JAX PRNG key (jax.random.key(seed) or jax.random.PRNGKey(seed)),"
                    f" got {type(key).__name__}")


def _column_index(scm: SCM, column, table) -> int:
    names = list(table.names) if table is not None else list(scm.names)
    if isinstance(column, (int, np.integer)):
        if not 0 <= column < scm.d:
            raise ValueError(f"do: column index {column} is outside 0..{scm.d - 1}")
        return int(column)
    if column not in names:
        raise ValueError(f"do: unknown column {column!r}; columns are {names}")
    return names.index(column)


def intervention_arrays(scm: SCM, do: Mapping | None, table=None) -> tuple[np.ndarray, np.ndarray]:
    """``do={column: value}`` -> (do_mask bool[d], do_value f32[d]) in encoded space.
    Columns are names (from ``table`` or ``scm.names``) or indices; a categorical value is a
    level label (with ``table``) or an integer code below the column's level count."""
    d = scm.d
    mask, value = np.zeros(d, bool), np.zeros(d, np.float32)
    n_levels = np.asarray(scm.n_levels[0]) if do else None
    for column, v in (do or {}).items():
        j = _column_index(scm, column, table)
        if n_levels[j] > 0:
            levels = list(table.columns[j].levels) if table is not None else []
            if v in levels:
                v = levels.index(v)
            elif not (isinstance(v, (int, np.integer)) and 0 <= v < n_levels[j]):
                raise ValueError(f"do: {column!r} has no level {v!r} "
                                 f"(levels: {levels or list(range(n_levels[j]))})")
        elif not np.isfinite(float(v)):
            raise ValueError(f"do: value for {column!r} must be finite, got {v!r}")
        mask[j], value[j] = True, float(v)
    return mask, value


def _is_traced(*trees) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(trees))


def _plan(scm: SCM, strategy: str, levels: tuple | None = None) -> tuple[str, tuple | None]:
    """Resolve ``strategy="auto"``: "grouped" (the compact layout) for one concrete SCM of at
    most ``WALK_MAX_NODES`` nodes (its unrolled walk: faster than the solve measured on one
    core, 20 linear nodes 1e5 rows 5.0 vs 8.2 ms, 50 nodes 14.8 vs 29.4 ms); the closed-form
    solve for k SCMs whose mechanisms are all linear / logistic (fastest measured there),
    else the level sweeps over the compact layout ("grouped": each family evaluated for its
    own nodes, over their parents), or the topological walk for a dense SCM traced inside
    ``jit`` (compact it outside to avoid that).
    Also the static column layout (``levels`` as given for a traced SCM, else read from a
    concrete one; None if unknown)."""
    if strategy not in STRATEGIES + ("auto",):
        raise ValueError(f"strategy must be 'auto' or one of {STRATEGIES}, got {strategy!r}")
    if isinstance(scm, CompactSCM):
        if strategy not in ("auto", "grouped"):
            raise ValueError(f"a CompactSCM is drawn with strategy='grouped', got {strategy!r}")
        return "grouped", None
    found = static_levels(scm)
    if levels is not None:
        levels = tuple(int(L) for L in levels)
        if len(levels) != scm.d or (found is not None and found != levels):
            raise ValueError(f"levels={levels} does not match the SCM's column layout {found}")
    levels = levels if levels is not None else found
    if strategy == "auto":
        one_small = scm.k == 1 and scm.d <= WALK_MAX_NODES and not _is_traced(scm)
        if levels is not None and linear_only(scm) and not one_small:
            strategy = "solve"
        else:  # the compact layout needs a concrete SCM (compact it before jit to use it)
            strategy = "walk" if _is_traced(scm) else "grouped"
    return strategy, levels


def sample(scm: SCM, key: jax.Array, n: int, *, do: Mapping | None = None, table=None,
           strategy: str = "auto", weights=None, rng: str = "key",
           levels: tuple | None = None) -> jax.Array:
    """Draw n rows from each of the k SCMs: f32[k, n, d] in the Table's encoded column order.

    ``do={column: value}`` fixes a node and cuts its parents. ``weights`` (k,) instead returns
    f32[n, d]: n rows split across the k SCMs by weight (see ``sample_mixture``).
    ``strategy``: "auto" (solve for linear/logistic SCMs, else walk), "walk", "parallel" or
    "solve". ``rng``: "key" (the key's JAX generator) or "hash" (``hash_uniform``, faster on CPU).
    ``levels``: the column layout (level count per column, slots as ``slots_for``) of an SCM
    traced inside ``jit``, so the draw can still specialise on it (read from concrete SCMs).
    Callable inside ``jax.jit``; compiled once per shape. With several devices (of this or of
    several processes) and concrete inputs the draw is sharded over them (same values as one
    device; a global array when there are several processes)."""
    if not isinstance(scm, CompactSCM):
        check_shapes(scm)
    key = _check_key(key)
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    strategy, levels = _plan(scm, strategy, levels)
    if rng not in RNGS:
        raise ValueError(f"rng must be one of {RNGS}, got {rng!r}")
    if weights is not None:
        return sample_mixture(scm, key, int(n), weights, do=do, table=table, strategy=strategy,
                              rng=rng, levels=levels)
    do_mask, do_value = intervention_arrays(scm, do, table)
    if n == 0:
        return jnp.zeros((scm.k, 0, scm.d), jnp.float32)
    rounding = static_rounding(scm, levels) if strategy == "solve" else None
    if strategy == "grouped":
        scm = as_compact(scm)
    if jax.device_count() > 1 and not _is_traced(scm, key):
        return sample_on_devices(scm, key, int(n), do_mask=do_mask, do_value=do_value,
                                 strategy=strategy, levels=levels, rng=rng, rounding=rounding)
    return _sample(scm, key, do_mask, do_value, n=int(n), strategy=strategy, levels=levels,
                   rng=rng, rounding=rounding)


def mixture_counts(weights, n: int) -> np.ndarray:
    """Rows per SCM, int[k], summing to n: largest-remainder rounding of n * weights."""
    w = np.asarray(weights, np.float64)
    if w.ndim != 1 or (w < 0).any() or not np.isfinite(w).all() or w.sum() <= 0:
        raise ValueError("weights must be a 1-d array of non-negative finite numbers, not all 0")
    exact = n * w / w.sum()
    counts = np.floor(exact).astype(int)
    counts[np.argsort(counts - exact)[: n - counts.sum()]] += 1
    return counts


def sample_mixture(scm: SCM, key, n: int, weights, **kwargs) -> jax.Array:
    """n rows f32[n, d], SCM s contributing ``mixture_counts(weights, n)[s]`` of them, in SCM
    order. Weights must be concrete (host) numbers: the split is part of the compiled shape.
    Cost: k × max(count) rows are drawn."""
    if _is_traced(weights):
        raise TypeError("sample_mixture needs concrete weights (the row split is static)")
    counts = mixture_counts(weights, n)
    if len(counts) != scm.k:
        raise ValueError(f"weights has {len(counts)} entries for {scm.k} SCMs")
    rows = sample(scm, key, int(counts.max(initial=0)), **kwargs)  # [k, max_count, d]
    which = np.repeat(np.arange(scm.k), counts)
    within = np.concatenate([np.arange(c) for c in counts]) if n else np.zeros(0, int)
    return rows[which, within]


# ----------------------------------------------------------------------------- devices
def device_mesh(devices=None) -> Mesh:
    """A 1-d mesh named 'dev' over the given (default: all) devices."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("dev",))


@functools.lru_cache(maxsize=64)
def _sharded_sampler(mesh: Mesh, split: str, n: int, strategy: str, levels, rng: str,
                     rounding=None, key_impl: str | None = None):
    """The jitted sharded draw; ``key_impl``: the key arrives as raw key data (placed on a
    global mesh) and is wrapped again with this PRNG implementation."""
    fn = functools.partial(_sample.__wrapped__, n=n, strategy=strategy, levels=levels, rng=rng,
                           rounding=rounding)
    scm_sharding, rows_sharding = _split_shardings(mesh, split)

    def sharded(scm, key, do_mask, do_value):
        if key_impl is not None:
            key = jax.random.wrap_key_data(key, impl=key_impl)
        if split == "rows" and rng == "hash" and strategy in ("solve", "grouped"):
            # each device draws its own rows (the hash is a function of the global cell):
            # the partitioner cannot split the CPU's loop over row blocks, and replicates it
            share = n // mesh.devices.size

            def own_rows(scm, key, do_mask, do_value):
                first = jax.lax.axis_index("dev") * share
                return _sample.__wrapped__(scm, key, do_mask, do_value, n=share,
                                           strategy=strategy, levels=levels, rng=rng,
                                           rounding=rounding, first_row=first, of_rows=n)

            return jax.shard_map(own_rows, mesh=mesh, in_specs=PartitionSpec(),
                                 out_specs=PartitionSpec(None, "dev"),
                                 check_vma=False)(scm, key, do_mask, do_value)
        rows = fn(scm, key, do_mask, do_value)
        return jax.lax.with_sharding_constraint(rows, rows_sharding)

    replicated = NamedSharding(mesh, PartitionSpec())
    return jax.jit(sharded, in_shardings=(scm_sharding, replicated, replicated, replicated),
                   out_shardings=rows_sharding)


def _split_shardings(mesh: Mesh, split: str) -> tuple:
    """(the SCM's sharding, the rows' sharding) of a draw split over SCMs or rows."""
    if split == "scms":
        return NamedSharding(mesh, PartitionSpec("dev")), NamedSharding(mesh, PartitionSpec("dev"))
    return NamedSharding(mesh, PartitionSpec()), NamedSharding(mesh, PartitionSpec(None, "dev"))


def sample_on_devices(scm: SCM, key, n: int, *, do_mask=None, do_value=None,
                      strategy: str = "walk", levels: tuple | None = None,
                      mesh: Mesh | None = None, rng: str = "key",
                      rounding: tuple | None = None) -> jax.Array:
    """``sample`` sharded over a device mesh: the k SCMs are split over devices when k is a
    multiple of the device count, else the rows are (n must then be a multiple). The values
    equal the single-device draw for the same key (partitionable threefry, or the counter
    hash of ``rng="hash"``). ``rounding``: see ``static_rounding`` (solve only). A mesh over
    several processes returns one global array (every process passes the same SCM and key;
    each holds its own devices' shards); with no even split every process draws it whole."""
    mesh = mesh or device_mesh()
    n_dev = mesh.devices.size
    d = scm.d
    do_mask = np.zeros(d, bool) if do_mask is None else np.asarray(do_mask, bool)
    do_value = np.zeros(d, np.float32) if do_value is None else np.asarray(do_value, np.float32)
    if scm.k % n_dev == 0:
        split = "scms"
        if isinstance(scm, CompactSCM):  # each device sweeps its own SCMs (vmapped)
            scm = scm.replace(blocks=None)
    elif n % n_dev == 0:
        split = "rows"
    else:  # no even split: draw on one device
        return _sample(scm, key, do_mask, do_value, n=n, strategy=strategy, levels=levels,
                       rng=rng, rounding=rounding)
    if not mesh.is_multi_process:
        return _sharded_sampler(mesh, split, n, strategy, levels, rng, rounding)(
            scm, key, do_mask, do_value)
    # several processes: every input becomes a global array (each process holds it whole)
    from causaljax import distributed

    key_impl = None
    if jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        key_impl, key = str(jax.random.key_impl(key)), jax.random.key_data(key)
    scm_sharding, _ = _split_shardings(mesh, split)
    scm = jax.tree.map(lambda a: distributed.global_array(distributed.to_host(a), scm_sharding),
                       scm)
    key, do_mask, do_value = distributed.replicate((key, do_mask, do_value), mesh)
    return _sharded_sampler(mesh, split, n, strategy, levels, rng, rounding, key_impl)(
        scm, key, do_mask, do_value)


# ----------------------------------------------------------------------------- volume
def stream(scm: SCM, key, total_rows: int, chunk_rows: int, **kwargs) -> Iterator[jax.Array]:
    """Chunks f32[k, c, d] (c <= chunk_rows) until ``total_rows`` rows per SCM are drawn.
    Chunk i uses ``fold_in(key, i)``; every chunk is drawn at full size (one compilation)."""
    if total_rows < 0 or chunk_rows <= 0:
        raise ValueError("total_rows must be >= 0 and chunk_rows > 0")
    key = _check_key(key)
    for i in range(math.ceil(total_rows / chunk_rows)):
        rows = sample(scm, jax.random.fold_in(key, i), chunk_rows, **kwargs)
        yield rows[:, : min(chunk_rows, total_rows - i * chunk_rows)]


def _host_rows(rows) -> np.ndarray:
    """Rows on the host as float32, gathered from every process if ``rows`` is global."""
    from causaljax.distributed import to_host

    return to_host(rows).astype(np.float32, copy=False)


def to_pandas(rows, table):
    """Decode encoded rows f32[n, d] (or [k, n, d], flattened in SCM order) to a DataFrame
    with the table's column names, dtypes and category labels."""
    import dataclasses

    rows = _host_rows(rows).reshape(-1, table.n_cols)
    decoded = dataclasses.replace(table, values=rows, missing=np.zeros(rows.shape, bool))
    return decoded.to_pandas()


def to_arrow(rows, table):
    """Decode encoded rows f32[n, d] (or [k, n, d]) to a pyarrow Table without going through
    Python objects: numeric columns in their original dtype (integers rounded), categorical
    columns dictionary-encoded (codes + the table's level labels; pandas reads them back as
    ``category``). Missing cells are not restored (sampled rows have none)."""
    import pandas as pd
    import pyarrow as pa

    rows = _host_rows(rows).reshape(-1, table.n_cols)
    arrays = []
    for j, col in enumerate(table.columns):
        x = rows[:, j]
        if col.kind == "categorical":
            codes = np.clip(np.round(x), 0, col.n_levels - 1).astype(np.int32)
            arrays.append(pa.DictionaryArray.from_arrays(
                pa.array(codes), pa.array(list(col.levels)), ordered=bool(col.ordered)))
            continue
        dtype = pd.api.types.pandas_dtype(col.dtype)
        dtype = getattr(dtype, "numpy_dtype", dtype)  # pandas' Int64 / Float32 carry one
        arrays.append(pa.array(np.round(x).astype(dtype) if np.issubdtype(dtype, np.integer)
                               else x.astype(dtype)))
    return pa.Table.from_arrays(arrays, names=list(table.names))


def write(scm: SCM, table, path, total_rows: int, *, key=None, chunk_rows: int = 1_000_000,
          **kwargs) -> int:
    """Write ``total_rows`` decoded rows (all k SCMs together) to a Parquet file, chunk by chunk
    so memory stays bounded (``to_arrow`` decoding: categorical columns dictionary-encoded).
    ``kwargs`` go to ``sample`` (strategy, rng, do). With several processes each writes its own
    rows (no gather) to ``part_path(path)``; the parts together hold the rows of the one-process
    file (each part in the file's order, the parts interleaved by chunk). Returns the number of
    rows this process wrote."""
    import pyarrow.parquet as pq

    key = jax.random.key(0) if key is None else key
    per_scm = max(1, math.ceil(chunk_rows / scm.k))
    path = part_path(path) if jax.process_count() > 1 else path
    done, written, writer = 0, 0, None  # rows of every process so far, rows of this one
    try:
        for rows in stream(scm, key, math.ceil(total_rows / scm.k), per_scm, **kwargs):
            mine = _local_flat_rows(rows, total_rows - done)
            done += min(rows.shape[0] * rows.shape[1], total_rows - done)
            batch = to_arrow(mine, table)
            if writer is None:
                writer = pq.ParquetWriter(str(path), batch.schema)
            writer.write_table(batch)
            written += len(mine)
    finally:
        if writer is not None:
            writer.close()
    return written


def part_path(path) -> str:
    """This process's part of a file that several processes write: ``stem.part-I-of-N.ext``
    (one process: ``path`` itself). Read them all back with ``pandas.read_parquet`` on the
    sorted list of parts."""
    import os

    if jax.process_count() == 1:
        return str(path)
    stem, ext = os.path.splitext(str(path))
    return f"{stem}.part-{jax.process_index():05d}-of-{jax.process_count():05d}{ext}"


def _local_flat_rows(rows_kxcxd, limit: int) -> np.ndarray:
    """The rows f32[m, d] of a draw [k, c, d] that this process holds, flattened in SCM order
    (row s * c + i) and cut to the first ``limit`` rows of the whole draw."""
    from causaljax.distributed import local_blocks

    c = rows_kxcxd.shape[1]
    flat, values = [], []
    for (scms, rows, _), block in local_blocks(rows_kxcxd):
        ids = np.arange(scms.start, scms.stop)[:, None] * c + np.arange(rows.start, rows.stop)
        flat.append(ids.reshape(-1))
        values.append(block.reshape(-1, block.shape[-1]))
    flat, values = np.concatenate(flat), np.concatenate(values)
    order = np.argsort(flat, kind="stable")
    keep = order[flat[order] < limit]
    return values[keep]


__all__ = ["sample", "as_numpyro", "sample_mixture", "mixture_counts", "draw_noise", "propagate", "stream",
           "write", "part_path", "default_rng", "to_pandas", "to_arrow", "hash_uniform", "sample_on_devices", "device_mesh", "intervention_arrays",
           "ROOT", "NUMERIC", "CATEGORICAL"]


def as_numpyro(scm: SCM, table=None, *, index: int = 0):
    """The SCM as a numpyro model (see ``causaljax.numpyro_model``)."""
    from causaljax.numpyro_model import as_numpyro as build

    return build(scm, table, index=index)
