"""The compact layout of a fitted SCM ensemble: a family's parameters exist only for the nodes
that use it, and every mechanism reads only its node's parents.

The dense contract of ``causaljax.scm.types`` gives every node every family over every input
slot (a mask keeps non-parents out), which is the right shape for builders but makes a draw
pay d x (the costliest family) x (all slots): three polynomial nodes make all twenty evaluate
a full quadratic form of the row. ``compact(scm)`` (host side, NumPy, from a concrete SCM)
regroups the same parameters:

* one ``Group`` per mechanism family present (linear, quadratic, cubic, MLP, traversed
  trees, tree tables), holding only the (SCM, node) pairs whose parameters of that family are
  not all zero: G members per SCM (the largest count over the k SCMs; padding members have
  ``level = PAD_LEVEL`` and zero parameters);
* each member reads its node's parent slots only, R of them (the largest in-degree in slots
  among the family's members; ``in_col`` / ``in_level``, padding inputs read 0), and its
  parameters are re-indexed onto those R inputs;
* members are sorted by their node's topological *level* (longest path from a root), so the
  members of one level are contiguous: the sampler's sweep for level l evaluates a window
  of ``width`` members starting at the first one of level l (W = the most members of one
  level in any SCM), not the whole family; likewise the nodes (``by_level``, windows of
  ``CompactSCM.width`` nodes);
* ``blocks`` (``merge_blocks``, built by ``compact`` when k > 1): the same k SCMs as ONE
  block-diagonal SCM of k·d nodes (node j of SCM s is node s·d + j), its groups holding only
  real members. Vmapped over k, every SCM runs max-depth sweeps over windows sized for the
  busiest SCM (and, under vmap, the costly families of every level); over the blocks, a
  level's work is what the k SCMs have on it. The sampler sweeps the blocks (same values).
* ``walk`` (``walk_plan``, built by ``compact`` for ONE SCM of at most WALK_MAX_NODES nodes):
  the structure as static ``WalkNode``s in topological order, which the sampler unrolls at
  trace time (one compilation per DAG structure; the numbers stay in the arrays).

The cost of a draw is then ~ sum over families of (members x parents-sized work), plus O(d)
elementwise work per level. Values are those of the dense evaluation (the same terms, summed
over parents instead of over masked slots: equal up to float rounding). Shapes (``k`` SCMs,
``d`` nodes, ``C`` channels, ``M = G + W`` members incl. the window padding, ``R`` inputs)::

    Group.node      int32[k, M]        member's node
    Group.level     int32[k, M]        its node's level, ascending (PAD_LEVEL: padding)
    Group.in_col    int32[k, M, R]     column read by each input
    Group.in_level  int32[k, M, R]     -1 raw value, >= 0 one-hot level, PAD_INPUT: reads 0
    Group.params    {name: f32/int32[k, M, ...]}, see ``FAMILY_PARAMS``
"""

from __future__ import annotations

import weakref
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from causaljax.scm.types import CATEGORICAL, ROOT, SCM, check_shapes

PAD_LEVEL = 2**30  # level of a padding member: sorts last, matches no sweep
PAD_INPUT = -2  # in_level of an unused input slot: the input reads 0

# parameters of each family, per member (after the leading [k, M] axes)
FAMILY_PARAMS = {
    "linear": ("w",),  # w f32[R, C]
    "quadratic": ("w",),  # w f32[R, R, C]
    "cubic": ("idx", "w"),  # idx int32[P, 3] (input positions), w f32[P, C]
    "mlp": ("w1", "b1", "w2"),  # f32[R, H], f32[H], f32[H, C]
    "trees": ("feature", "threshold", "left", "right", "value"),  # [T, N] (feature: input pos)
    "tables": ("slot", "edges", "remap", "value", "channel"),  # TreeTables per node (slot: pos)
}


@struct.dataclass
class Group:
    node: np.ndarray
    level: np.ndarray
    in_col: np.ndarray
    in_level: np.ndarray
    params: dict
    family: str = struct.field(pytree_node=False, default="linear")
    width: int = struct.field(pytree_node=False, default=1)  # W: members evaluated per level

    @property
    def n_members(self) -> int:
        return self.node.shape[1]

    @property
    def n_inputs(self) -> int:
        return self.in_col.shape[2]


@struct.dataclass
class CompactSCM:
    """A fitted SCM ensemble in the compact layout (see the module docstring). The noise,
    node kinds and levels are those of the dense ``SCM``; ``bias`` is its ``lin_b``."""
    kind: np.ndarray  # int32[k, d]
    n_levels: np.ndarray  # int32[k, d]
    is_integer: np.ndarray  # bool[k, d]
    noise: np.ndarray  # f32[k, d, m]
    depth: np.ndarray  # int32[k]
    level: np.ndarray  # int32[k, d]: longest path from a root to the node (roots: 0)
    by_level: np.ndarray  # int32[k, d]: the nodes sorted by level (a topological order)
    rank: np.ndarray  # int32[k, d]: position of each node in ``by_level``
    bias: np.ndarray  # f32[k, d, C]
    groups: tuple  # Group per family present
    categorical: tuple = struct.field(pytree_node=False, default=())  # columns with levels
    width: int = struct.field(pytree_node=False, default=1)  # most nodes on one level >= 1
    tree_depth: int = struct.field(pytree_node=False, default=0)
    names: tuple = struct.field(pytree_node=False, default=())
    # the k SCMs as one block-diagonal CompactSCM (k = 1, k·d nodes; no noise pools: the
    # sampler draws the noise of the k SCMs and reshapes it), or None: see ``merge_blocks``
    blocks: object = None
    # ((first level, last level, node window, (member window per group)), ...): runs of
    # levels swept with their own, narrower windows (``level_segments``); () = one run of
    # every level with ``width`` / ``Group.width``
    segments: tuple = struct.field(pytree_node=False, default=())
    # most categorical non-root nodes on one level (the sweeps' window of categorical
    # nodes); -1: unknown (the sweeps use the node window)
    cat_width: int = struct.field(pytree_node=False, default=-1)
    # one SCM (k = 1) of at most WALK_MAX_NODES nodes: its structure as static ``WalkNode``s in
    # topological order (``walk_plan``), which the sampler unrolls at trace time; () = none
    walk: tuple = struct.field(pytree_node=False, default=())

    @property
    def k(self) -> int:
        return self.kind.shape[0]

    @property
    def d(self) -> int:
        return self.kind.shape[1]

    @property
    def n_channels(self) -> int:
        return self.bias.shape[-1]

    def multiply_adds(self) -> float:
        """Multiply-adds per drawn row that the mechanisms need, averaged over the k SCMs:
        each member over its own inputs (its parents' slots; a tree or table lookup counts
        one per comparison and leaf read): the arithmetic a draw cannot avoid."""
        C = self.n_channels
        total = 0.0
        for g in self.groups:
            real = np.asarray(g.level) != PAD_LEVEL  # [k, M]
            inputs = (np.asarray(g.in_level) != PAD_INPUT).sum(-1)[real]  # per member
            total += float(np.sum(_member_cost(g, inputs, C))) / self.k
        return total


def _member_cost(g: Group, r, C: int):
    """Multiply-adds per row of members with r inputs each (int array)."""
    p = g.params
    if g.family == "linear":
        return r * C
    if g.family == "quadratic":
        return r * r * C
    if g.family == "cubic":
        return r * 0 + p["w"].shape[2] * (2 + C)
    if g.family == "mlp":
        H = p["w1"].shape[-1]
        return r * H + H * C
    if g.family == "trees":
        T, N = p["feature"].shape[2:]
        return r * 0 + T * (np.log2(max(N, 2)) + C)
    G, U = p["remap"].shape[2:4]
    return r * 0 + U * np.log2(max(p["edges"].shape[-1], 2)) + G * (U + C)


# ----------------------------------------------------------------------------- conversion
def node_levels(parents_dxd: np.ndarray) -> np.ndarray:
    """int32[d]: the longest directed path from a root to each node of one DAG."""
    parents = np.asarray(parents_dxd, bool)
    d = parents.shape[0]
    level = np.zeros(d, np.int64)
    for _ in range(d):  # Bellman-Ford style relaxation: at most d - 1 rounds in a DAG
        new = np.where(parents.any(0), (np.where(parents, level[:, None], -1)).max(0) + 1, 0)
        if (new == level).all():
            break
        level = new
    return level.astype(np.int32)


def _members(active_kxd: np.ndarray, level_kxd: np.ndarray):
    """Per SCM, its active nodes sorted by level: list of int arrays, and (G, W)."""
    lists = [np.flatnonzero(a)[np.argsort(lv[np.flatnonzero(a)], kind="stable")]
             for a, lv in zip(active_kxd, level_kxd)]
    G = max((len(x) for x in lists), default=0)
    W = max((np.bincount(lv[x]).max(initial=0) for x, lv in zip(lists, level_kxd) if len(x)),
            default=0)
    return lists, G, max(int(W), 1)


def _group(family, lists, G, W, level, parent_slots, slot_column, slot_level, build):
    """One Group: ``build(s, j, slots) -> {name: array}`` gives a member's parameters over
    its inputs ``slots`` (its parent slots; padded to R by the caller's zeros)."""
    k = len(lists)
    M = G + W
    R = max((len(parent_slots[s][j]) for s in range(k) for j in lists[s]), default=0)
    R = max(R, 1)
    node = np.zeros((k, M), np.int32)
    lev = np.full((k, M), PAD_LEVEL, np.int32)
    in_col = np.zeros((k, M, R), np.int32)
    in_level = np.full((k, M, R), PAD_INPUT, np.int32)
    rows = {}
    for s in range(k):
        for i, j in enumerate(lists[s]):
            slots = parent_slots[s][j]
            node[s, i], lev[s, i] = j, level[s, j]
            in_col[s, i, :len(slots)] = slot_column[s, slots]
            in_level[s, i, :len(slots)] = slot_level[s, slots]
            for name, value in build(s, j, slots, R).items():
                rows.setdefault(name, {})[(s, i)] = value
    params = {}
    for name, by_member in rows.items():
        example = next(iter(by_member.values()))
        arr = np.zeros((k, M) + example.shape, example.dtype)
        for (s, i), value in by_member.items():
            arr[s, i] = value
        params[name] = arr
    return Group(node=node, level=lev, in_col=in_col, in_level=in_level, params=params,
                 family=family, width=W)


def _local(index, slots) -> np.ndarray:
    """Dense slot indices -> positions in ``slots`` (a member's inputs); others -> 0."""
    index = np.asarray(index)
    lookup = np.zeros(max(int(index.max(initial=0)), int(slots.max(initial=0))) + 1, np.int32)
    lookup[slots] = np.arange(len(slots), dtype=np.int32)
    return np.where(np.isin(index, slots), lookup[index], 0).astype(np.int32)


def _padded(a, R, axes):
    """Zero-pad ``a`` to length R on each of ``axes``."""
    pad = [(0, 0)] * a.ndim
    for ax in axes:
        pad[ax] = (0, R - a.shape[ax])
    return np.pad(a, pad)


def compact(scm: SCM) -> CompactSCM:
    """The compact layout of a concrete (host) ``SCM``, as device arrays; see the module
    docstring."""
    check_shapes(scm)
    a = {f: np.asarray(getattr(scm, f)) for f in scm.__dataclass_fields__
         if f not in ("tree_depth", "names", "tree_tables")}
    k, d = a["parents"].shape[:2]
    parents, slot_column, slot_level = a["parents"], a["slot_column"], a["slot_level"]
    level = np.stack([node_levels(p) for p in parents])
    # parent_slots[s][j]: the slots of node j's parents, in slot order
    feeds = parents[np.arange(k)[:, None], slot_column, :]  # [k, S, d]
    parent_slots = [[np.flatnonzero(feeds[s, :, j]) for j in range(d)] for s in range(k)]
    nonroot = a["kind"] != ROOT

    def nonzero_on_parents(w):  # [k, d, S, ...] -> active [k, d]
        m = feeds.transpose(0, 2, 1).reshape(k, d, -1, *([1] * (w.ndim - 3)))
        return ((w * m) != 0).reshape(k, d, -1).any(-1) & nonroot

    groups, specs = [], []
    lin_w = a["lin_w"]
    specs.append(("linear", nonzero_on_parents(lin_w),
                  lambda s, j, sl, R: {"w": _padded(lin_w[s, j, sl], R, [0])}))
    if a["quad_w"].shape[2]:
        q = a["quad_w"]
        fq = feeds.transpose(0, 2, 1).astype(bool)
        active = (((q * (fq[:, :, :, None] & fq[:, :, None, :])[..., None]) != 0)
                  .reshape(k, d, -1).any(-1) & nonroot)
        specs.append(("quadratic", active,
                      lambda s, j, sl, R: {"w": _padded(q[s, j][np.ix_(sl, sl)], R, [0, 1])}))
    if a["cube_w"].shape[2]:
        idx, cw = a["cube_idx"], a["cube_w"]
        fq = feeds.transpose(0, 2, 1).astype(bool)  # [k, d, S]
        keep = (fq[np.arange(k)[:, None, None, None], np.arange(d)[None, :, None, None], idx]
                .all(-1) & (cw != 0).any(-1))  # [k, d, P]
        P = max(int(keep.sum(-1).max(initial=0)), 1)

        def cube(s, j, sl, R):
            p = np.flatnonzero(keep[s, j])
            local = _local(idx[s, j, p], sl)
            out_idx = np.zeros((P, 3), np.int32)
            out_w = np.zeros((P, cw.shape[-1]), np.float32)
            out_idx[:len(p)], out_w[:len(p)] = local, cw[s, j, p]
            return {"idx": out_idx, "w": out_w}

        specs.append(("cubic", keep.any(-1) & nonroot, cube))
    if a["mlp_w1"].shape[-1]:
        w1, b1, w2 = a["mlp_w1"], a["mlp_b1"], a["mlp_w2"]
        active = (w2 != 0).reshape(k, d, -1).any(-1) & nonroot
        specs.append(("mlp", active, lambda s, j, sl, R: {
            "w1": _padded(w1[s, j, sl], R, [0]), "b1": b1[s, j], "w2": w2[s, j]}))
    if a["tree_feature"].shape[2]:
        tf, tv = a["tree_feature"], a["tree_value"]
        active = (tv != 0).reshape(k, d, -1).any(-1) & nonroot

        def trees(s, j, sl, R):
            return {"feature": _local(tf[s, j], sl), "threshold": a["tree_threshold"][s, j],
                    "left": a["tree_left"][s, j], "right": a["tree_right"][s, j],
                    "value": tv[s, j]}

        specs.append(("trees", active, trees))
    if scm.tree_tables is not None:
        tt = {f: np.asarray(getattr(scm.tree_tables, f))
              for f in ("slot", "edges", "remap", "value", "channel")}
        active = (tt["channel"] != 0).reshape(k, d, -1).any(-1) & nonroot

        def tables(s, j, sl, R):
            out = {f: tt[f][s, j] for f in tt}
            out["slot"] = _local(tt["slot"][s, j], sl)
            return out

        specs.append(("tables", active, tables))
    for family, active, build in specs:
        lists, G, W = _members(active, level)
        if G:
            groups.append(_group(family, lists, G, W, level, parent_slots, slot_column,
                                 slot_level, build))
    n_levels = a["n_levels"]
    by_level = np.argsort(level, axis=1, kind="stable").astype(np.int32)
    rank = np.argsort(by_level, axis=1).astype(np.int32)
    width = max(int(np.bincount(lv[lv > 0]).max(initial=0)) for lv in level)
    categorical = tuple(int(j) for j in np.flatnonzero((n_levels > 0).any(0)))
    out = CompactSCM(
        kind=a["kind"].astype(np.int32), n_levels=n_levels.astype(np.int32),
        is_integer=a["is_integer"].astype(bool), noise=a["noise"].astype(np.float32),
        depth=level.max(1).astype(np.int32), level=level, by_level=by_level, rank=rank,
        bias=np.where(nonroot[..., None], a["lin_b"], 0).astype(np.float32),
        groups=tuple(groups), categorical=categorical, width=max(width, 1),
        cat_width=_cat_width(level, a["kind"]), tree_depth=int(scm.tree_depth),
        names=tuple(scm.names))
    if k > 1:
        out = out.replace(blocks=merge_blocks(out))
    elif d <= WALK_MAX_NODES:
        out = out.replace(walk=walk_plan(out))
    with jax.ensure_compile_time_eval():  # device arrays even when called under a trace
        return jax.tree.map(jnp.asarray, out)


def _cat_width(level_kxd: np.ndarray, kind_kxd: np.ndarray) -> int:
    """The most categorical non-root nodes on one level of one SCM (over the k SCMs)."""
    cat = (np.asarray(kind_kxd) == CATEGORICAL) & (np.asarray(level_kxd) > 0)
    return max((int(np.bincount(lv[m]).max(initial=0)) for lv, m in zip(level_kxd, cat)),
               default=0)


def merge_blocks(c: CompactSCM) -> CompactSCM:
    """The k SCMs of ``c`` (host arrays) as ONE block-diagonal CompactSCM, k = 1 and k·d nodes:
    node j of SCM s becomes node s·d + j (its inputs likewise), each group keeps its real
    members only, sorted by level (stable: the order within a level is SCM by SCM), with a
    window of the most members one level has over all SCMs; the nodes' arrays are the k
    SCMs' side by side, the depth the deepest SCM's. Its noise pools are empty (the sampler
    draws the k SCMs' noise, f32[k, d, n], and reshapes it to [k·d, n]); the categorical
    columns are s·d + j in SCM-major order, as the reshaped uniforms f32[k·c, n] hold them."""
    a = jax.tree.map(np.asarray, c.replace(blocks=None))
    k, d = a.kind.shape
    offset = (np.arange(k, dtype=np.int32) * d)[:, None]  # [k, 1]
    groups = []
    for g in a.groups:
        scm_of, member = np.nonzero(g.level != PAD_LEVEL)  # the real members, [G] each
        order = np.argsort(g.level[scm_of, member], kind="stable")
        scm_of, member = scm_of[order], member[order]
        level = g.level[scm_of, member]
        W = max(int(np.bincount(level).max(initial=0)), 1)

        def take(x, fill):  # [k, M, ...] -> [1, G + W, ...]: the real members, then padding
            v = x[scm_of, member]
            return np.concatenate([v, np.full((W,) + v.shape[1:], fill, v.dtype)])[None]

        groups.append(Group(
            node=take(g.node + offset, 0), level=take(g.level, PAD_LEVEL),
            in_col=take(g.in_col + offset[:, :, None], 0),
            in_level=take(g.in_level, PAD_INPUT),
            params={name: take(v, _fill(name, g.family)) for name, v in g.params.items()},
            family=g.family, width=W))
    level = a.level.reshape(1, k * d)
    by_level = np.argsort(level, axis=1, kind="stable").astype(np.int32)
    depth = int(a.depth.max())
    nodes = np.bincount(level[0], minlength=depth + 1)  # [depth + 1]: nodes per level
    members = [np.bincount(g.level[0][g.level[0] != PAD_LEVEL], minlength=depth + 1)
               for g in groups]
    flat = lambda x: x.reshape((1, k * d) + x.shape[2:])
    return CompactSCM(
        kind=flat(a.kind), n_levels=flat(a.n_levels), is_integer=flat(a.is_integer),
        noise=np.zeros((1, k * d, 0), np.float32), depth=a.depth.max(keepdims=True),
        level=level, by_level=by_level, rank=np.argsort(by_level, axis=1).astype(np.int32),
        bias=flat(a.bias), groups=tuple(groups),
        categorical=tuple(s * d + j for s in range(k) for j in c.categorical),
        width=max(int(nodes[1:].max(initial=0)), 1), tree_depth=c.tree_depth,
        cat_width=_cat_width(level, a.kind.reshape(1, k * d)),
        segments=level_segments(nodes, members, [g.family in PER_MEMBER for g in groups]))


PER_MEMBER = ("trees", "tables")  # families the one-SCM sweeps evaluate member by member
MAX_SEGMENTS = 3  # runs of levels with their own windows (each compiles its own sweep)


def level_segments(nodes, members, per_member, max_segments: int = MAX_SEGMENTS) -> tuple:
    """Split levels 1 .. depth into at most ``max_segments`` runs of consecutive levels, each
    swept with windows as wide as its own busiest level, so that the windows' total work is
    least: the sum over runs of (levels in it) x (node window + the member windows of the
    vectorised groups; a ``per_member`` group costs only its members). ``nodes`` and each of
    ``members`` count per level, int[depth + 1]. -> ((first, last, node window, member
    window per group), ...)."""
    depth = len(nodes) - 1
    if depth < 1:
        return ()
    vec = [m for m, one in zip(members, per_member) if not one]

    def cost(a, b):  # levels a .. b (inclusive) in one run
        return (b - a + 1) * (int(nodes[a:b + 1].max()) + sum(int(m[a:b + 1].max()) for m in vec))

    # best[r][b]: least cost of levels 1 .. b in r runs; start[r][b]: the first level of the last
    best = [[float("inf")] * (depth + 1) for _ in range(max_segments + 1)]
    start = [[0] * (depth + 1) for _ in range(max_segments + 1)]
    best[0][0] = 0.0
    for r in range(1, max_segments + 1):
        for b in range(1, depth + 1):
            for a in range(1, b + 1):
                total = best[r - 1][a - 1] + cost(a, b)
                if total < best[r][b]:
                    best[r][b], start[r][b] = total, a
    n_runs = min(range(1, max_segments + 1), key=lambda r: (best[r][depth], r))
    runs, b = [], depth
    for r in range(n_runs, 0, -1):
        runs.append((start[r][b], b))
        b = start[r][b] - 1
    return tuple((a, b, max(int(nodes[a:b + 1].max()), 1),
                  tuple(max(int(m[a:b + 1].max()), 1) for m in members))
                 for a, b in reversed(runs))


WALK_MAX_NODES = 128  # one SCM with at most this many nodes gets a ``walk_plan`` (compile time)


class WalkNode(NamedTuple):
    """One node of a ``walk_plan``: its index, level count (0: numeric), whether it is a root
    or integer-rounded, and its mechanism's members: ((group index, member index, ((input
    column, input level), ...)), ...), the inputs as ``Group.in_col`` / ``in_level`` without
    the padding."""
    node: int
    n_levels: int
    root: bool
    integer: bool
    members: tuple


def walk_plan(c: CompactSCM) -> tuple:
    """The structure of ONE SCM (host arrays, k = 1) as static ``WalkNode``s in topological
    order (``by_level``): what the sampler's unrolled walk needs at trace time (the numbers
    stay in the arrays). Two SCMs with the same plan share one compiled draw."""
    one = jax.tree.map(lambda a: np.asarray(a)[0], c.replace(blocks=None))
    members = {j: [] for j in range(one.kind.shape[0])}
    for gi, g in enumerate(one.groups):
        for m in np.flatnonzero(g.level != PAD_LEVEL):
            used = g.in_level[m] != PAD_INPUT
            inputs = tuple((int(col), int(lev)) for col, lev in
                           zip(g.in_col[m][used], g.in_level[m][used]))
            members[int(g.node[m])].append((gi, int(m), inputs))
    return tuple(WalkNode(int(j), int(one.n_levels[j]), bool(one.kind[j] == ROOT),
                          bool(one.is_integer[j]), tuple(members[int(j)]))
                 for j in one.by_level)


_CACHE: dict = {}  # id(scm) -> (weak reference to scm, its CompactSCM)


def compact_cached(scm: SCM) -> CompactSCM:
    """``compact(scm)``, built once per SCM object (SCMs are immutable) while it lives."""
    hit = _CACHE.get(id(scm))
    if hit is not None and hit[0]() is scm:
        return hit[1]
    out = compact(scm)
    for key in [key for key, (ref, _) in _CACHE.items() if ref() is None]:
        del _CACHE[key]
    _CACHE[id(scm)] = (weakref.ref(scm), out)
    return out


# ----------------------------------------------------------------------------- stacking
FAMILIES = tuple(FAMILY_PARAMS)


def _fill(name: str, family: str):
    """The value that pads array ``name`` of a group: padding members match no level, padding
    inputs read 0, padding table edges are +inf (no bin moves); everything else 0."""
    return {"level": PAD_LEVEL, "in_level": PAD_INPUT}.get(
        name, np.inf if (family, name) == ("tables", "edges") else 0)


def _pad_to(a, shape, fill):
    a = np.asarray(a)
    return np.pad(a, [(0, t - s) for s, t in zip(a.shape, shape)], constant_values=fill)


def stack_compacts(compacts: list) -> CompactSCM:
    """Several CompactSCMs (same k, d, noise and channel sizes) stacked on a new first axis,
    every group padded to the largest member count, inputs and parameter sizes (a family
    missing from some is all padding there), so that each keeps its draws."""
    first = compacts[0]
    if any(c.categorical != first.categorical for c in compacts):
        raise ValueError("compact SCMs with different categorical columns cannot be stacked")
    groups = []
    for family in FAMILIES:
        present = [next((g for g in c.groups if g.family == family), None) for c in compacts]
        have = [g for g in present if g is not None]
        if not have:
            continue
        width = max(g.width for g in have)
        M = max(g.n_members - g.width for g in have) + width
        arrays = {name: [getattr(g, name) for g in have] for name in ("node", "level", "in_col",
                                                                      "in_level")}
        arrays.update({f"params.{p}": [g.params[p] for g in have] for p in have[0].params})
        target = {name: tuple(np.max([a.shape for a in arrs], axis=0)) for name, arrs in
                  arrays.items()}
        for name in ("node", "level", "in_col", "in_level"):
            target[name] = (target[name][0], M) + target[name][2:]
        for name in target:
            if name.startswith("params."):
                target[name] = (target[name][0], M) + target[name][2:]

        def padded(g, name):
            fill = _fill(name.removeprefix("params."), family)
            if g is None:
                return np.full(target[name], fill, np.asarray(arrays[name][0]).dtype)
            a = g.params[name[7:]] if name.startswith("params.") else getattr(g, name)
            return _pad_to(a, target[name], fill)

        stacked = {name: np.stack([padded(g, name) for g in present]) for name in target}
        groups.append(Group(node=stacked["node"], level=stacked["level"],
                            in_col=stacked["in_col"], in_level=stacked["in_level"],
                            params={p[7:]: v for p, v in stacked.items() if p.startswith("params.")},
                            family=family, width=width))
    fields = {f: np.stack([np.asarray(getattr(c, f)) for c in compacts])
              for f in ("kind", "n_levels", "is_integer", "noise", "depth", "level", "by_level",
                        "rank", "bias")}
    # the block-diagonal layouts stack the same way (each is a CompactSCM with k = 1)
    blocks = (stack_compacts([c.blocks for c in compacts])
              if all(c.blocks is not None for c in compacts) else None)
    with jax.ensure_compile_time_eval():
        return jax.tree.map(jnp.asarray, CompactSCM(
            **fields, groups=tuple(groups), categorical=first.categorical,
            width=max(c.width for c in compacts),
            cat_width=-1 if min(c.cat_width for c in compacts) < 0 else max(
                c.cat_width for c in compacts),
            tree_depth=max(c.tree_depth for c in compacts), names=first.names, blocks=blocks))
