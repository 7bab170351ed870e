"""The fitted-SCM contract: one fixed-shape pytree holding k stacked structural causal models.

Every array leaf has the same leading axis k (one entry per fitted SCM), so the whole
ensemble is ``vmap``-ed by the sampler without retracing. Shapes use these letters:

    k  stacked SCMs            d  columns / nodes (the Table's columns, target included)
    m  empirical noise rows    S  input slots (encoded mechanism inputs, see below)
    C  output channels         H  MLP hidden units (0: no MLP anywhere)
    Q  quadratic slots (S or 0: no polynomial terms anywhere)
    P  cubic monomials per node (0: no degree-3 terms anywhere)
    T  trees per node (0: no trees anywhere)       N  nodes per tree

Values live in the *encoded space* of ``causaljax.data.Table``: numeric columns hold their raw
(imputed) value, categorical columns their integer level code ``0 .. n_levels-1`` as a float.

Mechanism inputs. A node's mechanism reads the encoded row through *slots*: slot ``s`` reads
column ``slot_column[s]`` and is the raw value when ``slot_level[s] < 0`` or the one-hot
indicator ``x == slot_level[s]`` otherwise (categorical parents are one-hot encoded, as in
DoWhy). Slots of columns that are not parents of node j are masked to zero for node j.

Mechanism output (C channels) is the SUM of the families present; a node that does not use a
family has zero parameters for it (``lin_b`` is the one output bias of every node, so an MLP
node's output bias or a boosted model's baseline lives there, with ``lin_w`` zero):

    out_j(z) = z @ lin_w[j] + lin_b[j]                                   (linear / logistic)
             + einsum('a,b,abc->c', z_Q, z_Q, quad_w[j])                   (degree-2 polynomial)
             + prod(z[cube_idx[j]], axis=-1) @ cube_w[j]                  (degree-3 monomials)
             + relu(z @ mlp_w1[j] + mlp_b1[j]) @ mlp_w2[j]                 (one-hidden-layer MLP)
             + sum_t tree_value[j, t, leaf_t(z)]                          (regression trees)

A cubic monomial multiplies the three slots ``cube_idx[j, p]``; padding monomials have weight 0
(and any index). Monomials reading a slot that is not a parent of node j are masked to zero.

A tree is traversed from node 0: go to ``tree_left`` if ``z[tree_feature] <= tree_threshold``
else ``tree_right``; a leaf points to itself on both sides, so ``tree_depth`` steps always
reach a leaf. Trees only split on parent slots (checked by ``validate``).

Tree tables (optional, ``tree_tables``; ``causaljax.scm.trees.tabulate_trees`` builds them): an
ensemble is constant on each cell of the grid of its split thresholds, so trees whose grid is
small are stored as lookup tables instead, and the traversal arrays keep only the other trees.
Per node, U table axes (input slots), G groups of summed trees, each a table of B cells:

    out_j(z) += sum_g tree_tables.value[j, g, cell_g(z)] * tree_tables.channel[j, g]
    cell_g(z) = sum_u remap[j, g, u, #{edges[j, u] < z[slot[j, u]]}]

``edges`` are the sorted thresholds of an axis padded with +inf; padding groups have zero
``channel`` rows, padding axes zero ``remap`` rows. Tables read only parent slots.

How a node turns ``out`` and its exogenous noise into a value (``kind``):
    ROOT         x_j = eps_j, eps_j drawn from the empirical pool ``noise[j]`` (observed values)
    NUMERIC      x_j = out_j[0] + eps_j, eps_j drawn from ``noise[j]`` (training residuals);
                 rounded when ``is_integer[j]`` (DoWhy's discrete additive-noise model)
    CATEGORICAL  x_j ~ Categorical(softmax(out_j[:n_levels[j]])) by inverse CDF of a uniform u_j;
                 a decision-tree classifier stores log-probabilities as its leaf values.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

ROOT, NUMERIC, CATEGORICAL = 0, 1, 2


@struct.dataclass
class TreeTables:
    """Tree ensembles as lookup tables (see the module docstring); every array has the SCM's
    leading [k, d] axes. Sizes: U table axes, K edges per axis, G groups, B cells, C channels."""
    slot: jax.Array  # int32[k, d, U]: input slot of each table axis
    edges: jax.Array  # f32[k, d, U, K]: sorted split thresholds of the axis, +inf padded
    remap: jax.Array  # int32[k, d, G, U, K + 1]: cell offset of group g given the axis's bin
    value: jax.Array  # f32[k, d, G, B]: summed leaf values of group g per cell
    channel: jax.Array  # f32[k, d, G, C]: one-hot output channel of group g (0: padding)

    @property
    def sizes(self) -> dict:
        G, U, K1 = self.remap.shape[-3:]
        return dict(U=U, K=K1 - 1, G=G, B=self.value.shape[-1], C=self.channel.shape[-1])


@struct.dataclass
class SCM:
    # structure
    parents: jax.Array  # bool[k, d, d]: parents[s, i, j] -> column i is a parent of column j
    order: jax.Array  # int32[k, d]: a topological order of the columns
    depth: jax.Array  # int32[k]: longest directed path (in edges)
    kind: jax.Array  # int32[k, d]: ROOT / NUMERIC / CATEGORICAL
    n_levels: jax.Array  # int32[k, d]: levels of categorical columns, 0 for numeric ones
    is_integer: jax.Array  # bool[k, d]: numeric outputs rounded to integers
    noise: jax.Array  # f32[k, d, m]: empirical pools (root values / residuals), one
    #                   contiguous row per node (the sampler gathers within a node's pool)
    # input encoding
    slot_column: jax.Array  # int32[k, S]
    slot_level: jax.Array  # int32[k, S]: -1 raw value, else one-hot level
    # mechanism families
    lin_w: jax.Array  # f32[k, d, S, C]
    lin_b: jax.Array  # f32[k, d, C]
    quad_w: jax.Array  # f32[k, d, Q, Q, C]
    cube_idx: jax.Array  # int32[k, d, P, 3]: slots multiplied by each degree-3 monomial
    cube_w: jax.Array  # f32[k, d, P, C]: weight of each monomial per channel
    mlp_w1: jax.Array  # f32[k, d, S, H]
    mlp_b1: jax.Array  # f32[k, d, H]
    mlp_w2: jax.Array  # f32[k, d, H, C]
    tree_feature: jax.Array  # int32[k, d, T, N]: slot index
    tree_threshold: jax.Array  # f32[k, d, T, N]
    tree_left: jax.Array  # int32[k, d, T, N]
    tree_right: jax.Array  # int32[k, d, T, N]
    tree_value: jax.Array  # f32[k, d, T, N, C]
    tree_depth: int = struct.field(pytree_node=False, default=0)
    names: tuple = struct.field(pytree_node=False, default=())  # column names (optional)
    tree_tables: TreeTables | None = None  # trees as lookup tables (optional, see above)

    # ---- sizes (static, read from shapes) ----
    @property
    def k(self) -> int:
        return self.parents.shape[0]

    @property
    def d(self) -> int:
        return self.parents.shape[1]

    @property
    def n_slots(self) -> int:
        return self.slot_column.shape[1]

    @property
    def n_channels(self) -> int:
        return self.lin_w.shape[-1]

    def select(self, index) -> "SCM":
        """The sub-ensemble ``index`` (an int keeps a k = 1 axis)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return jax.tree.map(lambda a: a[index], self)


def empty_families(k: int, d: int, n_slots: int, n_channels: int, *, hidden: int = 0,
                   quad: bool = False, n_cube: int = 0, n_trees: int = 0,
                   tree_nodes: int = 1) -> dict:
    """Zero parameters for every mechanism family, for builders to fill in (NumPy arrays).
    ``n_cube`` monomials per node (P), all slot 0 with weight 0. Tree nodes start as leaves
    (pointing to themselves) with value 0."""
    q = n_slots if quad else 0
    f32, i32 = np.float32, np.int32
    leaf = np.broadcast_to(np.arange(tree_nodes, dtype=i32), (k, d, n_trees, tree_nodes))
    return dict(
        lin_w=np.zeros((k, d, n_slots, n_channels), f32),
        lin_b=np.zeros((k, d, n_channels), f32),
        quad_w=np.zeros((k, d, q, q, n_channels), f32),
        cube_idx=np.zeros((k, d, n_cube, 3), i32),
        cube_w=np.zeros((k, d, n_cube, n_channels), f32),
        mlp_w1=np.zeros((k, d, n_slots, hidden), f32),
        mlp_b1=np.zeros((k, d, hidden), f32),
        mlp_w2=np.zeros((k, d, hidden, n_channels), f32),
        tree_feature=np.zeros((k, d, n_trees, tree_nodes), i32),
        tree_threshold=np.zeros((k, d, n_trees, tree_nodes), f32),
        tree_left=leaf.copy(),
        tree_right=leaf.copy(),
        tree_value=np.zeros((k, d, n_trees, tree_nodes, n_channels), f32),
    )


def slots_for(n_levels) -> tuple[np.ndarray, np.ndarray]:
    """The standard input slots for columns with ``n_levels`` (0 = numeric): one raw slot per
    numeric column, one one-hot slot per level of a categorical column.
    Returns (slot_column int32[S], slot_level int32[S])."""
    cols, levels = [], []
    for j, L in enumerate(np.asarray(n_levels).tolist()):
        if L == 0:
            cols.append(j)
            levels.append(-1)
        else:
            cols.extend([j] * L)
            levels.extend(range(L))
    return np.asarray(cols, np.int32), np.asarray(levels, np.int32)


def topological_depth(parents: np.ndarray) -> tuple[np.ndarray, int]:
    """(order int32[d], depth) of one DAG given ``parents`` bool[d, d]; raises if cyclic."""
    parents = np.asarray(parents, bool)
    d = parents.shape[0]
    indeg = parents.sum(0).astype(int)
    level = np.zeros(d, int)
    ready = [j for j in range(d) if indeg[j] == 0]
    order = []
    while ready:
        i = ready.pop(0)
        order.append(i)
        for j in np.flatnonzero(parents[i]):
            level[j] = max(level[j], level[i] + 1)
            indeg[j] -= 1
            if indeg[j] == 0:
                ready.append(j)
    if len(order) != d:
        raise ValueError("the graph has a directed cycle")
    return np.asarray(order, np.int32), int(level.max(initial=0))


def check_shapes(scm: SCM) -> None:
    """Cheap check that every leaf agrees with the others in shape (works on tracers too)."""
    if not isinstance(scm, SCM):
        raise TypeError(f"expected a causaljax SCM, got {type(scm).__name__}")
    k, d = scm.parents.shape[:2]
    S = scm.slot_column.shape[-1]
    C = scm.lin_w.shape[-1]
    H = scm.mlp_w1.shape[-1]
    Q = scm.quad_w.shape[2]
    P = scm.cube_w.shape[2]
    T, N = scm.tree_feature.shape[2:]
    m = scm.noise.shape[2]
    expected = dict(
        parents=(k, d, d), order=(k, d), depth=(k,), kind=(k, d), n_levels=(k, d),
        is_integer=(k, d), noise=(k, d, m), slot_column=(k, S), slot_level=(k, S),
        lin_w=(k, d, S, C), lin_b=(k, d, C), quad_w=(k, d, Q, Q, C), cube_idx=(k, d, P, 3),
        cube_w=(k, d, P, C), mlp_w1=(k, d, S, H),
        mlp_b1=(k, d, H), mlp_w2=(k, d, H, C), tree_feature=(k, d, T, N),
        tree_threshold=(k, d, T, N), tree_left=(k, d, T, N), tree_right=(k, d, T, N),
        tree_value=(k, d, T, N, C),
    )
    for name, shape in expected.items():
        got = tuple(getattr(scm, name).shape)
        if got != shape:
            raise ValueError(f"SCM.{name} has shape {got}, expected {shape} "
                             f"(k={k}, d={d}, m={m}, S={S}, C={C}, H={H}, Q={Q}, P={P}, T={T}, N={N})")
    if scm.tree_tables is not None:
        tt = scm.tree_tables
        if not isinstance(tt, TreeTables):
            raise TypeError(f"SCM.tree_tables must be a TreeTables, got {type(tt).__name__}")
        z = tt.sizes
        U, K, G, B = z["U"], z["K"], z["G"], z["B"]
        for name, shape in dict(slot=(k, d, U), edges=(k, d, U, K), remap=(k, d, G, U, K + 1),
                                value=(k, d, G, B), channel=(k, d, G, C)).items():
            got = tuple(getattr(tt, name).shape)
            if got != shape:
                raise ValueError(f"SCM.tree_tables.{name} has shape {got}, expected {shape} "
                                 f"(k={k}, d={d}, U={U}, K={K}, G={G}, B={B}, C={C})")
    if k == 0:
        raise ValueError("SCM holds no models (k = 0)")
    if Q not in (0, S):
        raise ValueError(f"SCM.quad_w must cover all {S} slots or none, got Q={Q}")


def validate(scm: SCM) -> None:
    """Check shapes, dtypes and structural invariants; raise ValueError naming the problem.
    Runs on concrete (host) arrays, before anything is compiled."""
    check_shapes(scm)
    k, d = scm.parents.shape[:2]
    S = scm.slot_column.shape[-1]
    C = scm.lin_w.shape[-1]
    T, N = scm.tree_feature.shape[2:]
    m = scm.noise.shape[2]
    if m == 0:
        raise ValueError("SCM.noise has no rows (m = 0)")
    parents = np.asarray(scm.parents)
    if np.diagonal(parents, axis1=1, axis2=2).any():
        raise ValueError("SCM.parents has a self-loop")
    order = np.asarray(scm.order)
    position = np.argsort(order, axis=1)
    for s in range(k):
        if sorted(order[s].tolist()) != list(range(d)):
            raise ValueError(f"SCM.order[{s}] is not a permutation of the {d} columns")
        src, dst = np.nonzero(parents[s])
        if (position[s, src] >= position[s, dst]).any():
            raise ValueError(f"SCM.order[{s}] is not a topological order of SCM.parents[{s}]")
    kind = np.asarray(scm.kind)
    n_levels = np.asarray(scm.n_levels)
    if ((kind == CATEGORICAL) & (n_levels < 2)).any():
        raise ValueError("a CATEGORICAL node has fewer than 2 levels")
    if ((kind == CATEGORICAL) & (n_levels > C)).any():
        raise ValueError(f"a categorical node has more levels than the {C} output channels")
    if ((kind == ROOT) & parents.any(axis=1)).any():
        raise ValueError("a ROOT node has parents")
    if ((kind != ROOT) & ~parents.any(axis=1)).any():
        raise ValueError("a non-ROOT node has no parents (make it a ROOT)")
    slot_column = np.asarray(scm.slot_column)
    if S and (slot_column.min() < 0 or slot_column.max() >= d):
        raise ValueError("SCM.slot_column points outside the columns")
    cube_idx = np.asarray(scm.cube_idx)
    if cube_idx.size and (cube_idx.min() < 0 or cube_idx.max() >= S):
        raise ValueError("SCM.cube_idx points outside the input slots")
    if T:
        feat = np.asarray(scm.tree_feature)
        if feat.min() < 0 or feat.max() >= S:
            raise ValueError("SCM.tree_feature points outside the input slots")
        nodes = np.arange(N)
        used = (np.asarray(scm.tree_left) != nodes) | (np.asarray(scm.tree_right) != nodes)
        # a split node of node j's trees must read a slot of one of j's parents
        s_idx = np.arange(k)[:, None, None, None]
        j_idx = np.arange(d)[None, :, None, None]
        feeds = parents[s_idx, slot_column[s_idx, feat], j_idx]  # [k, d, T, N]
        if (used & ~feeds).any():
            raise ValueError("a tree splits on a slot that is not a parent of its node")
    if scm.tree_tables is not None:
        _validate_tables(scm.tree_tables, parents, slot_column, S)
    for name in ("noise", "lin_w", "lin_b", "quad_w", "cube_w", "mlp_w1", "mlp_b1", "mlp_w2",
                 "tree_threshold", "tree_value"):
        arr = np.asarray(getattr(scm, name))
        if not np.isfinite(arr).all():
            raise ValueError(f"SCM.{name} contains NaN or inf")


def _validate_tables(tt: TreeTables, parents, slot_column, S: int) -> None:
    slot, edges = np.asarray(tt.slot), np.asarray(tt.edges)
    remap, value = np.asarray(tt.remap), np.asarray(tt.value)
    channel = np.asarray(tt.channel)
    k, d = slot.shape[:2]
    if slot.size and (slot.min() < 0 or slot.max() >= S):
        raise ValueError("SCM.tree_tables.slot points outside the input slots")
    if np.isnan(edges).any() or (edges[..., 1:] < edges[..., :-1]).any():
        raise ValueError("SCM.tree_tables.edges must be sorted along each axis (+inf padded)")
    if remap.size and (remap.min() < 0 or remap.max(axis=-1).sum(axis=-1).max() >= value.shape[-1]):
        raise ValueError("SCM.tree_tables.remap points outside the group tables")
    used = remap.any(axis=(2, 4))  # [k, d, U]: axes some group reads
    s_idx, j_idx = np.arange(k)[:, None, None], np.arange(d)[None, :, None]
    if (used & ~parents[s_idx, slot_column[s_idx, slot], j_idx]).any():
        raise ValueError("a tree table reads a slot that is not a parent of its node")
    if not (np.isfinite(value).all() and np.isfinite(channel).all()):
        raise ValueError("SCM.tree_tables contains NaN or inf")


def as_jax(scm: SCM) -> SCM:
    """Move every leaf to a JAX array with the contract's dtypes."""
    def cast(name, a):
        if name in ("parents", "is_integer"):
            return jnp.asarray(a, bool)
        if name in ("order", "depth", "kind", "n_levels", "slot_column", "slot_level",
                    "cube_idx", "tree_feature", "tree_left", "tree_right"):
            return jnp.asarray(a, jnp.int32)
        return jnp.asarray(a, jnp.float32)
    static = ("tree_depth", "names", "tree_tables")
    fields = {f: cast(f, getattr(scm, f)) for f in scm.__dataclass_fields__ if f not in static}
    tt = scm.tree_tables
    if tt is not None:
        tt = TreeTables(slot=jnp.asarray(tt.slot, jnp.int32),
                        edges=jnp.asarray(tt.edges, jnp.float32),
                        remap=jnp.asarray(tt.remap, jnp.int32),
                        value=jnp.asarray(tt.value, jnp.float32),
                        channel=jnp.asarray(tt.channel, jnp.float32))
    return SCM(**fields, tree_depth=scm.tree_depth, names=tuple(scm.names), tree_tables=tt)
