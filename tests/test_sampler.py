"""The compiled sampler against a NumPy reference, goodness-of-fit tests and structure tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from causaljax import sampler
from causaljax.scm.trees import tabulate_trees
from causaljax.scm.types import NUMERIC, ROOT
from scm_factory import make_scm, numpy_propagate

FAMILIES = {
    "linear": dict(),
    "quadratic": dict(quad=True),
    "cubic": dict(cube=True),
    "mlp": dict(hidden=8),
    "trees": dict(n_trees=3),
    "all": dict(hidden=4, quad=True, cube=True, n_trees=2),
}


# (strategy, specialise on the static column layout)
VARIANTS = {"walk": ("walk", False), "parallel": ("parallel", False), "typed": ("parallel", True),
            "solve": ("solve", True), "solve_rounding": ("solve", True),
            "grouped": ("grouped", False)}


def _propagate(scm, eps, u, variant, jit=False, **kwargs):
    strategy, typed = VARIANTS[variant]
    levels = sampler.static_levels(scm) if typed else None  # read from concrete arrays
    assert not typed or levels is not None
    if variant == "solve_rounding":  # state rows for the integer columns only (as ``sample``)
        kwargs["rounding"] = sampler.static_rounding(scm, levels)
    if strategy == "grouped":  # the compact layout is built on the host, outside jit
        scm = sampler.as_compact(scm)
    fn = lambda s, e, v: sampler.propagate(s, e, v, strategy=strategy, levels=levels, **kwargs)
    return (jax.jit(fn) if jit else fn)(scm, eps, u)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("family", FAMILIES)
def test_matches_numpy_reference_on_same_noise(family, variant):
    if variant.startswith("solve") and family != "linear":
        pytest.skip("the closed-form solve is for linear/logistic SCMs")
    scm = make_scm(seed=1, k=3, n_levels=(0, 3, 0, 2, 0, 0), integer=(4,), **FAMILIES[family])
    assert_matches_reference(scm, scm, variant, 50)


def assert_matches_reference(scm, reference_scm, variant, n):
    """``scm`` propagated by ``variant`` equals the NumPy reference on ``reference_scm`` fed
    the same noise (categorical columns exactly, numeric ones to float tolerance)."""
    eps, u = sampler.draw_noise(scm, jax.random.key(0), n)
    got = np.asarray(_propagate(scm, eps, u, variant, jit=True))
    want = numpy_propagate(reference_scm, eps, u)
    categorical = np.asarray(scm.n_levels[0]) > 0
    np.testing.assert_array_equal(got[..., categorical], want[..., categorical])
    np.testing.assert_allclose(got[..., ~categorical], want[..., ~categorical], rtol=1e-4, atol=1e-4)


def test_noise_comes_from_the_pools():
    scm = make_scm(seed=2, k=2, m=16)
    eps, u = sampler.draw_noise(scm, jax.random.key(1), 400)
    pool = np.asarray(scm.noise)  # [k, d, m]
    assert 0 <= float(u.min()) and float(u.max()) < 1
    index = np.minimum(np.floor(np.asarray(u) * 16).astype(int), 15)  # [k, n, d]
    expected = np.take_along_axis(pool, index.transpose(0, 2, 1), axis=2).transpose(0, 2, 1)
    np.testing.assert_array_equal(np.asarray(eps), expected)


def test_jit_and_no_jit_agree():
    scm = make_scm(seed=3, k=2, hidden=4, n_trees=2)
    key = jax.random.key(3)
    jitted = sampler.sample(scm, key, 64)
    with jax.disable_jit():
        eager = sampler.sample(scm, key, 64)
    np.testing.assert_allclose(np.asarray(jitted), np.asarray(eager), rtol=1e-5, atol=1e-5)


def test_strategies_agree_on_random_draw():
    scm = make_scm(seed=4, k=4, n_levels=(0, 0, 4, 0, 0, 2, 0), hidden=4)
    key = jax.random.key(4)
    walk = sampler.sample(scm, key, 128, strategy="walk")
    par = sampler.sample(scm, key, 128, strategy="parallel")
    np.testing.assert_allclose(np.asarray(walk), np.asarray(par), rtol=1e-5, atol=1e-5)


def test_repeated_calls_do_not_recompile():
    scm = make_scm(seed=5, k=2)
    sampler.sample(scm, jax.random.key(0), 32)
    before = sampler._sample._cache_size()
    for seed in range(1, 4):
        sampler.sample(scm, jax.random.key(seed), 32)
    other = make_scm(seed=6, k=2)  # same shapes, other values
    sampler.sample(other, jax.random.key(0), 32)
    assert sampler._sample._cache_size() == before


def test_callable_inside_jit_and_vmap_over_keys():
    scm = make_scm(seed=7, k=2)

    @jax.jit
    def mean_of_draw(key):
        return sampler.sample(scm, key, 100).mean()

    assert np.isfinite(float(mean_of_draw(jax.random.key(0))))
    keys = jax.random.split(jax.random.key(1), 3)
    batched = jax.vmap(lambda kk: sampler.sample(scm, kk, 10))(keys)
    assert batched.shape == (3, 2, 10, scm.d)


def test_noise_gradient_follows_ancestry():
    """d x_j / d eps_i is exactly 0 unless i is an ancestor of (or equal to) j."""
    heavy = make_scm(seed=8, k=1, n_levels=(0,) * 7, hidden=6, quad=True, edge_prob=0.4)
    linear = make_scm(seed=8, k=1, n_levels=(0,) * 7, edge_prob=0.4)
    for variant in VARIANTS:
        scm = linear if variant.startswith("solve") else heavy
        eps, u = sampler.draw_noise(scm, jax.random.key(8), 1)
        jac = jax.jacfwd(lambda e: _propagate(scm, e, u, variant)[0, 0])(eps)
        jac = np.asarray(jac)[:, 0, 0, :]  # [j, i]
        parents = np.asarray(scm.parents[0])
        reach = np.eye(7, dtype=bool)
        for _ in range(7):
            reach = reach | (reach.astype(int) @ parents.astype(int) > 0)  # reach[i, j]: i ~> j
        assert (jac[~reach.T] == 0).all()
        np.testing.assert_array_equal(np.diag(jac), np.ones(7))


def test_marginals_match_reference_distribution():
    """Two-sample KS of the compiled draw vs the NumPy reference fed independent noise,
    at a fixed false-alarm rate (alpha = 1e-3 per column, Bonferroni over columns)."""
    scm = make_scm(seed=9, k=1, n_levels=(0, 0, 3, 0, 0), hidden=4)
    rows = np.asarray(sampler.sample(scm, jax.random.key(9), 4000))[0]
    eps, u = sampler.draw_noise(scm, jax.random.key(1234), 4000)
    ref = numpy_propagate(scm, eps, u)[0]
    alpha = 1e-3 / scm.d
    for j in range(scm.d):
        if j == 2:  # categorical: chi-square on level counts
            table = np.stack([np.bincount(rows[:, j].astype(int), minlength=3),
                              np.bincount(ref[:, j].astype(int), minlength=3)])
            table = table[:, table.sum(0) > 0]
            assert stats.chi2_contingency(table).pvalue > alpha
        else:
            assert stats.ks_2samp(rows[:, j], ref[:, j]).pvalue > alpha


def test_root_marginal_is_empirical_pool():
    scm = make_scm(seed=10, k=1, m=8)
    rows = np.asarray(sampler.sample(scm, jax.random.key(0), 8000))[0]
    root = int(np.flatnonzero(np.asarray(scm.kind[0]) == ROOT)[0])
    pool = np.asarray(scm.noise[0, root])
    values, counts = np.unique(rows[:, root], return_counts=True)
    assert np.isin(values, pool).all()
    expected = np.array([(pool == v).sum() / 8 * 8000 for v in values])
    assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_categorical_levels_stay_valid():
    scm = make_scm(seed=11, k=3, n_levels=(3, 0, 5, 2, 0), hidden=4, n_trees=2)
    rows = np.asarray(sampler.sample(scm, jax.random.key(0), 500))
    for j, L in enumerate(np.asarray(scm.n_levels[0])):
        if L:
            col = rows[..., j]
            assert set(np.unique(col)) <= set(range(L))


def test_integer_columns_are_rounded():
    scm = make_scm(seed=12, k=2, integer=(1, 3))
    rows = np.asarray(sampler.sample(scm, jax.random.key(0), 200))
    kind = np.asarray(scm.kind)
    for s in range(2):
        for j in (1, 3):
            if kind[s, j] == NUMERIC:
                np.testing.assert_array_equal(rows[s, :, j], np.round(rows[s, :, j]))


def test_intervention_fixes_node_and_cuts_parents():
    scm = make_scm(seed=13, k=1, n_levels=(0,) * 5, edge_prob=0.9)
    order = np.asarray(scm.order[0])
    target = int(order[2])  # has ancestors with edge_prob 0.9
    key = jax.random.key(0)
    rows = np.asarray(sampler.sample(scm, key, 300, do={target: 2.5}))[0]
    assert (rows[:, target] == 2.5).all()
    # the node's ancestors are untouched by the intervention
    plain = np.asarray(sampler.sample(scm, key, 300))[0]
    for i in order[:2]:
        np.testing.assert_array_equal(rows[:, i], plain[:, i])
    # matches the reference with the node forced
    eps, u = sampler.draw_noise(scm, key, 300)
    want = numpy_propagate(scm, eps, u, do={target: 2.5})[0]
    np.testing.assert_allclose(rows, want, rtol=1e-4, atol=1e-4)
    do_mask, do_value = sampler.intervention_arrays(scm, {target: 2.5})
    for variant in VARIANTS:
        got = _propagate(scm, eps, u, variant, do_mask=do_mask, do_value=do_value)[0]
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-4)


def test_intervention_by_name_and_bad_interventions():
    scm = make_scm(seed=14, k=1, n_levels=(0, 3, 0), names=("a", "b", "c"))
    rows = np.asarray(sampler.sample(scm, jax.random.key(0), 50, do={"b": 2}))
    assert (rows[0, :, 1] == 2).all()
    with pytest.raises(ValueError, match="unknown column 'zz'"):
        sampler.sample(scm, jax.random.key(0), 5, do={"zz": 1.0})
    with pytest.raises(ValueError, match="no level 7"):
        sampler.sample(scm, jax.random.key(0), 5, do={"b": 7})


def test_bad_arguments_fail_before_compiling():
    scm = make_scm(seed=15, k=1)
    with pytest.raises(ValueError, match="n must be >= 0"):
        sampler.sample(scm, jax.random.key(0), -1)
    with pytest.raises(TypeError, match="JAX PRNG key"):
        sampler.sample(scm, 42, 5)
    with pytest.raises(TypeError, match="n must be an int"):
        sampler.sample(scm, jax.random.key(0), 5.0)
    broken = scm.replace(lin_b=scm.lin_b[:, :-1])
    with pytest.raises(ValueError, match="SCM.lin_b has shape"):
        sampler.sample(broken, jax.random.key(0), 5)
    with pytest.raises(ValueError, match="strategy"):
        sampler.sample(scm, jax.random.key(0), 5, strategy="magic")


def test_edge_cases_k1_d1_n0():
    one = make_scm(seed=16, k=1, n_levels=(0,))
    rows = sampler.sample(one, jax.random.key(0), 10)
    assert rows.shape == (1, 10, 1)
    assert np.isin(np.asarray(rows), np.asarray(one.noise)).all()
    assert sampler.sample(make_scm(seed=17, k=3), jax.random.key(0), 0).shape == (3, 0, 5)


def test_legacy_prngkey_accepted():
    scm = make_scm(seed=18, k=1)
    assert sampler.sample(scm, jax.random.PRNGKey(0), 4).shape == (1, 4, 5)


def test_mixture_weights_split_rows():
    scm = make_scm(seed=19, k=3)
    counts = sampler.mixture_counts([0.5, 0.25, 0.25], 10)
    assert counts.tolist() == [5, 3, 2]
    rows = sampler.sample(scm, jax.random.key(0), 10, weights=[0.5, 0.25, 0.25])
    full = np.asarray(sampler.sample(scm, jax.random.key(0), int(counts.max())))
    expected = np.concatenate([full[s, :c] for s, c in enumerate(counts)])
    np.testing.assert_array_equal(np.asarray(rows), expected)
    with pytest.raises(ValueError, match="weights"):
        sampler.mixture_counts([-1, 2], 5)


def test_stream_chunks_cover_total():
    scm = make_scm(seed=20, k=2)
    chunks = list(sampler.stream(scm, jax.random.key(0), 25, 10))
    assert [c.shape[1] for c in chunks] == [10, 10, 5]
    first = sampler.sample(scm, jax.random.fold_in(jax.random.key(0), 0), 10)
    np.testing.assert_array_equal(np.asarray(chunks[0]), np.asarray(first))


@pytest.mark.parametrize("do", [{1: 2}, {2: -1.5}, {4: 3.0}, {3: 1, 0: 0.5}])
def test_interventions_on_mixed_layout_match_reference(do):
    """Categorical (1, 3), integer (4) and numeric nodes intervened: every variant = NumPy."""
    scm = make_scm(seed=21, k=2, n_levels=(0, 3, 0, 2, 0, 0), integer=(4,), edge_prob=0.7)
    eps, u = sampler.draw_noise(scm, jax.random.key(5), 200)
    want = numpy_propagate(scm, eps, u, do=do)
    do_mask, do_value = sampler.intervention_arrays(scm, do)
    for variant in VARIANTS:
        got = np.asarray(_propagate(scm, eps, u, variant, do_mask=do_mask, do_value=do_value))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4, err_msg=variant)


def test_solve_needs_linear_mechanisms():
    scm = make_scm(seed=22, k=1, n_levels=(0, 0, 0), hidden=4)
    with pytest.raises(ValueError, match="solve"):
        sampler.sample(scm, jax.random.key(0), 5, strategy="solve")
    assert sampler._plan(scm, "auto")[0] == "grouped"  # concrete: the compact layout
    assert sampler._plan(make_scm(seed=22, k=2, n_levels=(0, 2, 0)), "auto")[0] == "solve"
    # one small linear SCM: its unrolled walk (faster than the solve)
    assert sampler._plan(make_scm(seed=22, k=1, n_levels=(0, 2, 0)), "auto")[0] == "grouped"


def test_nonlinear_depth_counts_categorical_and_rounded_nodes_on_a_path():
    scm = make_scm(seed=23, k=1, n_levels=(0, 2, 0, 3, 0), integer=(4,), edge_prob=1.0)
    one = jax.tree.map(lambda a: a[0], scm)
    # a complete DAG: one path runs through every node, so it holds every nonlinear node
    # (a non-root categorical or integer-rounded numeric; roots only resample their pool)
    assert int(np.asarray(one.parents).sum()) == 5 * 4 // 2
    kind, levels, integer = (np.asarray(a) for a in (one.kind, one.n_levels, one.is_integer))
    nonlinear = [j for j in range(5) if kind[j] != ROOT and (levels[j] > 0 or integer[j])]
    assert len(nonlinear) >= 2
    assert int(sampler.nonlinear_depth(one)) == len(nonlinear)


def test_hash_uniforms_pass_uniformity_and_independence_tests():
    """rng="hash" against independent answers at a fixed false-alarm rate (alpha = 1e-3 per
    test): KS vs U(0, 1); lag-1 and across-key correlations within the normal bound; the
    counts of the 2000 pool indices (how the sampler uses it) by a chi-square test."""
    n = 200_000
    u = np.asarray(sampler.hash_uniform(jax.random.key(0), (n,)), np.float64)
    assert u.min() >= 0.0 and u.max() < 1.0
    assert stats.kstest(u, "uniform").pvalue > 1e-3
    z = stats.norm.ppf(1 - 1e-3 / 2)  # two-sided bound of a correlation under independence
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < z / np.sqrt(n)
    other = np.asarray(sampler.hash_uniform(jax.random.key(1), (n,)), np.float64)
    assert abs(np.corrcoef(u, other)[0, 1]) < z / np.sqrt(n)
    # neighbouring keys (fold_in of steps, as the fine-tuning loop draws them) too
    step = np.asarray(sampler.hash_uniform(jax.random.fold_in(jax.random.key(0), 1), (n,)))
    assert abs(np.corrcoef(u, step)[0, 1]) < z / np.sqrt(n)
    counts = np.bincount(np.minimum((u * 2000).astype(int), 1999), minlength=2000)
    assert stats.chisquare(counts).pvalue > 1e-3
    # a draw is a pure function of the key: the same key gives the same cells
    again = np.asarray(sampler.hash_uniform(jax.random.key(0), (n,)), np.float64)
    np.testing.assert_array_equal(u, again)


def test_hash_rng_draws_match_reference_marginals():
    """sample(rng="hash") draws the same distribution as the default generator (two-sample
    KS per column, alpha = 1e-3 with Bonferroni over columns)."""
    scm = make_scm(seed=9, k=1, n_levels=(0, 0, 3, 0, 0), hidden=4)
    a = np.asarray(sampler.sample(scm, jax.random.key(1), 4000, rng="hash"))[0]
    b = np.asarray(sampler.sample(scm, jax.random.key(2), 4000, rng="key"))[0]
    for j in range(a.shape[1]):
        assert stats.ks_2samp(a[:, j], b[:, j]).pvalue > 1e-3 / a.shape[1], j


@pytest.mark.parametrize("variant", ["walk", "parallel", "typed", "grouped"])
@pytest.mark.parametrize("budget", [6, 2**13])
def test_tree_tables_match_numpy_reference(variant, budget):
    """Trees turned into lookup tables (all of them, or with a budget that leaves some to the
    traversal fallback) draw what the reference draws from the untouched trees."""
    base = make_scm(seed=11, k=3, n_levels=(0, 3, 0, 2, 0, 0), integer=(4,), n_trees=4,
                    tree_depth=3, hidden=2)
    scm = tabulate_trees(base, budget)
    assert scm.tree_tables is not None and (scm.tree_feature.shape[2] > 0) == (budget == 6)
    assert not sampler.linear_only(scm)
    assert_matches_reference(scm, base, variant, 60)
    rows = sampler.sample(scm, jax.random.key(1), 40, do={0: 0.5})
    np.testing.assert_allclose(np.asarray(rows), np.asarray(sampler.sample(
        base, jax.random.key(1), 40, do={0: 0.5})), rtol=1e-5, atol=1e-5)


def test_stacked_sources_with_tree_tables_keep_their_draws():
    """finetune.batched.stack_sources pads tables of different sizes (and an SCM without
    tables) so that every run draws what it drew alone."""
    from causaljax.finetune.batched import stack_sources
    from causaljax.finetune.sources import scm_source

    scms = [tabulate_trees(make_scm(seed=12, k=1, n_trees=2, tree_depth=2), 2**13),
            tabulate_trees(make_scm(seed=13, k=1, n_trees=5, tree_depth=3), 6),
            make_scm(seed=14, k=1, n_trees=3, tree_depth=2, hidden=3, quad=True),
            make_scm(seed=15, k=1, n_trees=3, tree_depth=2)]
    source = stack_sources([scm_source(s) for s in scms])
    stacked = source.scm
    assert stacked.tree_tables is not None
    # the compact layouts stack too: groups padded, a family missing in some runs (MLP,
    # quadratic) all padding there
    assert {g.family for g in source.compact.groups} >= {"mlp", "quadratic", "trees", "tables"}
    draw = jax.jit(lambda src, key: src.draw(key, 30))
    for i, scm in enumerate(scms):
        eps, u = sampler.draw_noise(scm, jax.random.key(i), 30)
        one = jax.tree.map(lambda a, i=i: a[i], stacked)
        np.testing.assert_allclose(np.asarray(sampler.propagate(one, eps, u)),
                                   np.asarray(sampler.propagate(scm, eps, u)), rtol=1e-5,
                                   atol=1e-5)
        mine = jax.tree.map(lambda a, i=i: a[i], source)  # the in-step draw (compact, traced)
        np.testing.assert_allclose(
            np.asarray(draw(mine, jax.random.key(i))),
            np.asarray(sampler.sample(scm, jax.random.key(i), 30, strategy="walk"))[0],
            rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("rng", sampler.RNGS)
def test_uniforms_of_some_columns_equal_the_full_draw(rng):
    """The solve path hashes only the categorical columns' uniforms: they must be the very
    cells of the full draw (column-major), for both generators."""
    scm = make_scm(seed=31, k=3, n_levels=(0, 3, 0, 2))
    key = jax.random.key(31)
    eps, u = sampler.draw_noise(scm, key, 70, rng=rng)
    eps_c, u_c = sampler.draw_noise_columns(scm, key, 70, rng=rng)
    np.testing.assert_array_equal(np.asarray(eps_c), np.asarray(eps).swapaxes(1, 2))
    np.testing.assert_array_equal(np.asarray(u_c), np.asarray(u).swapaxes(1, 2))
    some = sampler.uniform_columns(key, (3, 70, scm.d), rng, columns=[1, 3])
    np.testing.assert_array_equal(np.asarray(some), np.asarray(u)[:, :, [1, 3]].swapaxes(1, 2))
    eps_s, u_s = sampler.draw_noise_columns(scm, key, 70, rng=rng, u_columns=[1, 3])
    np.testing.assert_array_equal(np.asarray(eps_s), np.asarray(eps_c))
    np.testing.assert_array_equal(np.asarray(u_s), np.asarray(some))


@pytest.mark.parametrize("rng", sampler.RNGS)
def test_sample_solve_draws_the_same_rows_as_the_walk(rng):
    """``sample`` draws the solve path's noise column-major: the rows must equal the walk's,
    which draws it row-major, for the same key (categorical columns exactly)."""
    scm = make_scm(seed=32, k=2, n_levels=(0, 3, 0, 2, 0), integer=(4,))
    key = jax.random.key(32)
    solve = np.asarray(sampler.sample(scm, key, 300, strategy="solve", rng=rng))
    walk = np.asarray(sampler.sample(scm, key, 300, strategy="walk", rng=rng))
    np.testing.assert_array_equal(solve[..., [1, 3]], walk[..., [1, 3]])
    np.testing.assert_allclose(solve, walk, rtol=1e-4, atol=1e-4)


def test_solve_in_row_blocks_equals_one_block(monkeypatch):
    """The solve runs over blocks of rows (cache-sized); any block size gives the same rows,
    including a last, shorter block, for noise given or drawn by either generator: the same
    levels and integers, numeric values up to float rounding (XLA may contract a multiply-add
    into one FMA in a vector loop but not in its remainder, which depends on the block)."""
    scm = make_scm(seed=33, k=2, n_levels=(0, 3, 0, 2, 0), integer=(4,))
    eps, u = sampler.draw_noise(scm, jax.random.key(33), 300)
    levels = sampler.static_levels(scm)
    do_mask, do_value = sampler.intervention_arrays(scm, {0: 1.5})
    # each call compiles a fresh function (the block size is read when tracing)
    run = lambda: np.asarray(jax.jit(lambda e, v: sampler.propagate(  # noqa: E731
        scm, e, v, strategy="solve", levels=levels, do_mask=do_mask, do_value=do_value))(eps, u))
    key = jax.random.key(34)
    draw = lambda rng: np.asarray(jax.jit(lambda k: sampler._sample.__wrapped__(  # noqa: E731
        scm, k, do_mask, do_value, n=300, strategy="solve", levels=levels, rng=rng,
        rounding=sampler.static_rounding(scm, levels)))(key))
    whole, drawn = run(), {rng: draw(rng) for rng in sampler.RNGS}
    monkeypatch.setattr(sampler, "SOLVE_BLOCK_CELLS", 1)
    monkeypatch.setattr(sampler, "SOLVE_MIN_BLOCK_ROWS", 64)  # 4 blocks of 64, then 44 rows

    def same(a, b, msg=""):  # levels (columns 1, 3) and integers (4) exactly
        np.testing.assert_array_equal(a[..., [1, 3, 4]], b[..., [1, 3, 4]], err_msg=msg)
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6, err_msg=msg)

    same(run(), whole)
    for rng in sampler.RNGS:  # with rng="hash" every block hashes its own rows' noise
        same(draw(rng), drawn[rng], rng)


@pytest.mark.parametrize("k", [1, 3])
def test_grouped_in_row_blocks_equals_one_block(monkeypatch, k):
    """The grouped draws (one SCM: the unrolled walk; k SCMs: the block-diagonal sweeps) in
    row blocks, each block's hash uniforms computed one loop step ahead, give the rows of
    one block (a last, shorter block included), with an intervention."""
    scm = make_scm(seed=35, k=k, n_levels=(0, 3, 0, 2, 0), integer=(4,), hidden=2, quad=True)
    c = sampler.as_compact(scm)
    assert bool(c.walk) == (k == 1)
    do_mask, do_value = sampler.intervention_arrays(scm, {0: 1.5})
    draw = lambda rng: np.asarray(jax.jit(lambda key: sampler._sample.__wrapped__(  # noqa: E731
        c, key, do_mask, do_value, n=300, strategy="grouped", rng=rng))(jax.random.key(36)))
    whole = {rng: draw(rng) for rng in sampler.RNGS}
    monkeypatch.setattr(sampler, "SOLVE_BLOCK_CELLS", 1)
    monkeypatch.setattr(sampler, "SOLVE_MIN_BLOCK_ROWS", 64)  # 4 blocks of 64, then 44 rows
    for rng in sampler.RNGS:
        got = draw(rng)
        np.testing.assert_array_equal(got[..., [1, 3, 4]], whole[rng][..., [1, 3, 4]])
        np.testing.assert_allclose(got, whole[rng], rtol=1e-6, atol=1e-6, err_msg=rng)


@pytest.mark.parametrize("inner", [0, 3, sampler.SKINNY, sampler.SKINNY + 4])
def test_rows_dot_matches_numpy(inner):
    """The solve's products: elementwise multiply-adds up to SKINNY inner rows, a dot above;
    both equal NumPy's float64 product to float32 rounding."""
    rng = np.random.default_rng(inner)
    w, x = rng.normal(size=(5, inner)), rng.normal(size=(inner, 37))
    got = np.asarray(sampler._rows_dot(jnp.asarray(w, jnp.float32), jnp.asarray(x, jnp.float32)))
    assert got.shape == (5, 37)
    np.testing.assert_allclose(got, w @ x, rtol=1e-5, atol=1e-5)
