"""The compact layout: each family's parameters only for its own nodes, over their parents."""

import jax
import numpy as np
import pytest

from causaljax import sampler
from causaljax.scm.compact import PAD_INPUT, PAD_LEVEL, WALK_MAX_NODES, compact, node_levels
from causaljax.scm.types import ROOT
from scm_factory import make_scm, numpy_propagate


def _mixed_scm():
    """Every family built, then each node keeps one family: quadratic on the first non-root
    node of each SCM, MLP on the second, linear on the rest (as DoWhy's GOOD mixes them)."""
    scm = make_scm(seed=5, k=3, n_levels=(0, 2, 0, 0, 3, 0, 0), hidden=4, quad=True,
                   edge_prob=0.7)
    kind = np.asarray(scm.kind)
    lin, quad = np.array(scm.lin_w), np.array(scm.quad_w)
    w1, w2 = np.array(scm.mlp_w1), np.array(scm.mlp_w2)
    family = np.full(kind.shape, "", object)
    for s in range(scm.k):
        nonroot = np.flatnonzero(kind[s] != ROOT)
        family[s, nonroot] = "linear"
        family[s, nonroot[0]], family[s, nonroot[1]] = "quadratic", "mlp"
    quad[family != "quadratic"] = 0
    w1[family != "mlp"], w2[family != "mlp"] = 0, 0
    lin[(family == "mlp")] = 0
    return scm.replace(lin_w=lin, quad_w=quad, mlp_w1=w1, mlp_w2=w2), family


def test_each_family_holds_only_its_nodes_over_their_parents():
    scm, family = _mixed_scm()
    c = compact(scm)
    parents = np.asarray(scm.parents)
    slot_column = np.asarray(scm.slot_column)
    groups = {g.family: g for g in c.groups}
    assert set(groups) == {"linear", "quadratic", "mlp"}
    for name, g in groups.items():
        level, node = np.asarray(g.level), np.asarray(g.node)
        for s in range(scm.k):
            real = level[s] != PAD_LEVEL
            want = set(np.flatnonzero((family[s] == name) | ((name == "linear") &
                                                             (family[s] == "quadratic"))))
            assert set(node[s, real]) == want, (name, s)
            assert (np.diff(level[s]) >= 0).all()  # sorted by level, padding last
            for i in np.flatnonzero(real):  # inputs: exactly the node's parent slots
                j = node[s, i]
                used = np.asarray(g.in_level[s, i]) != PAD_INPUT
                cols = np.asarray(g.in_col[s, i])[used]
                want_cols = slot_column[s][parents[s, slot_column[s], j]]
                np.testing.assert_array_equal(cols, want_cols)
    # the quadratic group is no wider than the most parent slots of a quadratic node
    assert groups["quadratic"].params["w"].shape[2] == groups["quadratic"].n_inputs
    eps, u = sampler.draw_noise(scm, jax.random.key(0), 40)
    got = np.asarray(sampler.propagate(sampler.as_compact(scm), eps, u, strategy="grouped"))
    np.testing.assert_allclose(got, numpy_propagate(scm, eps, u), rtol=1e-4, atol=1e-4)


def test_levels_are_longest_paths():
    parents = np.zeros((5, 5), bool)
    for i, j in [(0, 1), (1, 2), (0, 2), (3, 4), (2, 4)]:
        parents[i, j] = True
    np.testing.assert_array_equal(node_levels(parents), [0, 1, 2, 0, 3])


def test_multiply_adds_count_parents_only():
    """A linear SCM: sum over its non-root nodes of (parent slots) x channels."""
    scm = make_scm(seed=7, k=2, n_levels=(0, 0, 3, 0, 0), edge_prob=0.6)
    parents, slot_column = np.asarray(scm.parents), np.asarray(scm.slot_column)
    kind, C = np.asarray(scm.kind), scm.n_channels
    want = np.mean([sum(parents[s, slot_column[s], j].sum() * C
                        for j in range(scm.d) if kind[s, j] != ROOT) for s in range(scm.k)])
    assert compact(scm).multiply_adds() == want


def test_compact_inside_jit_compiles_once():
    scm = make_scm(seed=9, k=4, n_levels=(0, 2, 0, 0), hidden=3)
    c = sampler.as_compact(scm)
    assert sampler.as_compact(scm) is c  # cached per SCM object
    draw = jax.jit(lambda c, key: sampler.sample(c, key, 64))
    first = draw(c, jax.random.key(0))
    key = jax.device_put(jax.random.key(1))
    with jax.transfer_guard("disallow"):  # no host round trip inside the compiled draw
        jax.block_until_ready(draw(c, key))
    assert draw._cache_size() == 1
    np.testing.assert_allclose(np.asarray(first), np.asarray(
        sampler.sample(scm, jax.random.key(0), 64, strategy="walk")), rtol=1e-5, atol=1e-5)


def test_one_scm_member_by_member_matches_reference():
    """k = 1 runs without vmap: trees and tables are evaluated one window member at a time,
    each in its own branch; the rows still equal the NumPy reference on the untouched trees."""
    from causaljax.scm.trees import tabulate_trees

    base = make_scm(seed=11, k=1, n_levels=(0, 3, 0, 2, 0, 0), integer=(4,), n_trees=4,
                    tree_depth=3, hidden=2)
    for budget in (6, 2**13):  # some trees traversed, or all tabulated
        scm = tabulate_trees(base, budget)
        eps, u = sampler.draw_noise(scm, jax.random.key(budget), 60)
        c = sampler.as_compact(scm).replace(walk=())  # the sweeps, not the unrolled walk
        got = np.asarray(sampler.propagate(c, eps, u, strategy="grouped"))
        want = numpy_propagate(base, eps, u)
        categorical = np.asarray(scm.n_levels[0]) > 0
        np.testing.assert_array_equal(got[..., categorical], want[..., categorical])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


WALK_FAMILIES = {"linear": {}, "quadratic": {"quad": True}, "cubic": {"cube": True},
                 "mlp": {"hidden": 3}, "traversed trees": {"n_trees": 3, "tree_depth": 3},
                 "tables": {"n_trees": 3, "tree_depth": 3, "tables": True}}


@pytest.mark.parametrize("family", WALK_FAMILIES)
def test_one_scm_walk_unrolled_matches_reference_and_sweeps(family):
    """One SCM (k = 1) gets a ``walk_plan``: its nodes in topological order, each with its
    members and their inputs (exactly the parent slots); the sampler unrolls that walk. Its
    rows equal the NumPy reference fed the same noise (categorical columns exactly) and the
    level sweeps, with and without interventions, for every family."""
    from causaljax.scm.trees import tabulate_trees

    spec = dict(WALK_FAMILIES[family])
    tables = spec.pop("tables", False)
    base = make_scm(seed=17, k=1, n_levels=(0, 3, 0, 2, 0, 0, 0), integer=(4,), edge_prob=0.6,
                    **spec)
    scm = tabulate_trees(base, 2**13) if tables else base
    c = sampler.as_compact(scm)
    assert len(c.walk) == scm.d and c.blocks is None
    order = [node.node for node in c.walk]
    parents = np.asarray(scm.parents[0])
    assert sorted(order) == list(range(scm.d))
    for node in c.walk:  # topological, and each member reads its node's parents only
        assert node.root == (not parents[:, node.node].any())
        assert all(order.index(i) < order.index(node.node) for i in np.flatnonzero(parents[:, node.node]))
        for _, _, inputs in node.members:
            assert {col for col, _ in inputs} <= set(np.flatnonzero(parents[:, node.node]))
    eps, u = sampler.draw_noise(scm, jax.random.key(2), 80)
    categorical = np.asarray(scm.n_levels[0]) > 0
    for do in ({}, {1: 2}, {2: -1.5}):
        do_mask, do_value = sampler.intervention_arrays(scm, do)
        got = np.asarray(sampler.propagate(c, eps, u, strategy="grouped", do_mask=do_mask,
                                           do_value=do_value))
        want = numpy_propagate(base, eps, u, do=do)
        np.testing.assert_array_equal(got[..., categorical], want[..., categorical])
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
        sweeps = np.asarray(sampler.propagate(c.replace(walk=()), eps, u, strategy="grouped",
                                              do_mask=do_mask, do_value=do_value))
        np.testing.assert_array_equal(got[..., categorical], sweeps[..., categorical])
        np.testing.assert_allclose(got, sweeps, rtol=1e-5, atol=1e-5)


def test_walk_plan_is_the_structure_and_compiles_once_per_structure():
    """The plan holds the structure only: the same DAG with other weights shares the plan
    and the compiled draw; another DAG recompiles. Large or stacked SCMs get none."""
    first = make_scm(seed=19, k=1, n_levels=(0, 2, 0, 0), edge_prob=0.9)
    other = first.replace(lin_w=first.lin_w * 2.0, noise=first.noise + 1.0)
    a, b = sampler.as_compact(first), sampler.as_compact(other)
    assert a.walk == b.walk and a.walk
    draw = jax.jit(lambda c, key: sampler.sample(c, key, 32))
    rows_a, rows_b = draw(a, jax.random.key(0)), draw(b, jax.random.key(0))
    assert draw._cache_size() == 1 and not np.allclose(rows_a, rows_b)
    np.testing.assert_allclose(np.asarray(rows_b), np.asarray(
        sampler.sample(other, jax.random.key(0), 32, strategy="walk")), rtol=1e-5, atol=1e-5)
    sparse = make_scm(seed=20, k=1, n_levels=(0, 2, 0, 0), edge_prob=0.2)
    assert sampler.as_compact(sparse).walk != a.walk
    assert compact(make_scm(seed=19, k=2, n_levels=(0, 2, 0, 0))).walk == ()
    assert compact(make_scm(seed=19, k=1, n_levels=(0,) * (WALK_MAX_NODES + 1),
                            edge_prob=0.01)).walk == ()


def test_blocks_sweep_the_k_scms_as_one_and_draw_the_same_rows():
    """``merge_blocks``: the k SCMs as one block-diagonal SCM of k·d nodes holding only real
    members; the sampler sweeps it and draws exactly the rows of the vmapped sweeps (and of
    the NumPy reference), with interventions, categorical and integer columns, trees and
    tables of different sizes per SCM."""
    from causaljax.scm.trees import tabulate_trees

    base = make_scm(seed=13, k=4, n_levels=(0, 3, 0, 2, 0, 0, 0), integer=(4,), n_trees=4,
                    tree_depth=3, hidden=2, edge_prob=0.6)
    scm = tabulate_trees(base, 6)  # some trees traversed, some tabulated
    c = sampler.as_compact(scm)
    b = c.blocks
    assert b is not None and b.k == 1 and b.d == scm.k * scm.d
    assert b.categorical == tuple(s * scm.d + j for s in range(scm.k) for j in c.categorical)
    np.testing.assert_array_equal(np.asarray(b.level[0]), np.asarray(c.level).reshape(-1))
    for g, gb in zip(c.groups, b.groups):
        real, real_b = np.asarray(g.level) != PAD_LEVEL, np.asarray(gb.level[0]) != PAD_LEVEL
        assert gb.family == g.family and real_b.sum() == real.sum()  # real members only
        want = {(s, int(j)) for s in range(scm.k) for j in np.asarray(g.node)[s, real[s]]}
        got = {divmod(int(j), scm.d) for j in np.asarray(gb.node[0])[real_b]}
        assert got == want
        assert (np.diff(np.asarray(gb.level[0])) >= 0).all()
    eps, u = sampler.draw_noise(scm, jax.random.key(3), 50)
    vmapped = c.replace(blocks=None)
    got = np.asarray(sampler.propagate(c, eps, u, strategy="grouped"))
    np.testing.assert_array_equal(got, np.asarray(
        sampler.propagate(vmapped, eps, u, strategy="grouped")))
    np.testing.assert_allclose(got, numpy_propagate(base, eps, u), rtol=1e-4, atol=1e-4)
    for do in ({1: 2}, {5: -1.5}):
        np.testing.assert_array_equal(
            np.asarray(sampler.sample(c, jax.random.key(4), 30, do=do)),
            np.asarray(sampler.sample(vmapped, jax.random.key(4), 30, do=do)))
    assert sampler.as_compact(make_scm(seed=1, k=1, n_levels=(0, 2, 0))).blocks is None


def test_level_segments_are_the_cheapest_split():
    """level_segments: the split of levels 1 .. depth into <= 3 runs with the least window
    work, checked against every split (brute force) on random level profiles."""
    import itertools

    from causaljax.scm.compact import level_segments

    rng = np.random.default_rng(0)
    for _ in range(40):
        depth = int(rng.integers(1, 8))
        nodes = np.concatenate([[50], rng.integers(1, 40, depth)])
        members = [np.concatenate([[0], rng.integers(0, 30, depth)]) for _ in range(3)]
        per_member = [False, False, True]
        runs = level_segments(nodes, members, per_member)
        assert runs[0][0] == 1 and runs[-1][1] == depth and len(runs) <= 3
        assert all(a[1] + 1 == b[0] for a, b in zip(runs, runs[1:]))  # consecutive, no gap
        for a, b, V, widths in runs:  # each window holds every level of its run
            assert V == max(nodes[a:b + 1].max(), 1)
            assert widths == tuple(max(int(m[a:b + 1].max()), 1) for m in members)

        def cost(cuts):
            bounds = [1, *cuts, depth + 1]
            return sum((hi - lo) * (nodes[lo:hi].max() + members[0][lo:hi].max()
                                    + members[1][lo:hi].max()) for lo, hi in zip(bounds, bounds[1:]))

        best = min(cost(c) for r in range(3) for c in itertools.combinations(range(2, depth + 1), r))
        assert cost([a for a, *_ in runs[1:]]) == best


def test_categorical_window_draws_what_the_whole_node_window_draws():
    """The sweeps give a level's categorical nodes their own window (``cat_width``: the most
    categorical non-root nodes on one level) instead of the softmax over every node of the
    window; the rows are exactly those of the whole-window form (``cat_width=-1``), with
    interventions on a categorical and a numeric node."""
    scm = make_scm(seed=23, k=6, n_levels=(0, 3, 0, 0, 0, 2, 0, 0, 0), edge_prob=0.5)
    c = sampler.as_compact(scm)
    kind, level = np.asarray(c.kind), np.asarray(c.level)
    want_width = max(np.bincount(lv[(kd == 2) & (lv > 0)]).max(initial=0)
                     for lv, kd in zip(level, kind))
    assert c.cat_width == want_width and c.blocks.cat_width > 0
    assert 2 * c.blocks.cat_width < c.blocks.width  # the blocks use the narrow window
    for do in (None, {1: 1}, {2: 0.5}):
        got = sampler.sample(c, jax.random.key(5), 40, do=do)
        whole = c.replace(cat_width=-1, blocks=c.blocks.replace(cat_width=-1))
        np.testing.assert_array_equal(np.asarray(got), np.asarray(
            sampler.sample(whole, jax.random.key(5), 40, do=do)))
        vmapped = c.replace(blocks=None)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(
            sampler.sample(vmapped, jax.random.key(5), 40, do=do)))
