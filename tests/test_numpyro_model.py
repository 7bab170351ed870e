"""The numpyro view of a fitted SCM: handlers work and draws match the compiled sampler."""

import jax
import numpy as np
import numpyro
from numpyro import handlers
from numpyro.infer import Predictive
from scipy import stats

from causaljax import sampler
from scm_factory import make_scm

NAMES = ("a", "b", "c", "d", "e")


def _scm():
    return make_scm(seed=21, k=2, n_levels=(0, 3, 0, 0, 2), hidden=4, integer=(3,), names=NAMES,
                    edge_prob=0.7)


def test_draws_match_compiled_sampler_in_distribution():
    scm = _scm()
    model = sampler.as_numpyro(scm, index=1)
    draws = Predictive(model, num_samples=1)(jax.random.key(0), n_rows=3000)
    fast = np.asarray(sampler.sample(scm, jax.random.key(1), 3000))[1]
    alpha = 1e-3 / len(NAMES)
    for j, name in enumerate(NAMES):
        a, b = np.asarray(draws[name][0], float), fast[:, j]
        if j in (1, 4):
            table = np.stack([np.bincount(a.astype(int), minlength=3),
                              np.bincount(b.astype(int), minlength=3)])
            table = table[:, table.sum(0) > 0]
            assert table.shape[1] == 1 or stats.chi2_contingency(table).pvalue > alpha, name
        else:
            assert stats.ks_2samp(a, b).pvalue > alpha, name


def test_do_handler_fixes_site_and_reaches_descendants():
    scm = make_scm(seed=22, k=1, n_levels=(0,) * 5, names=NAMES, edge_prob=1.0)
    order = [NAMES[j] for j in np.asarray(scm.order[0])]
    first, last = order[0], order[-1]
    model = sampler.as_numpyro(scm)
    seeded = handlers.seed(model, jax.random.key(0))
    plain = handlers.trace(seeded).get_trace(n_rows=2000)
    forced = handlers.trace(handlers.seed(handlers.do(model, data={first: 50.0}),
                                          jax.random.key(0))).get_trace(n_rows=2000)
    rows = handlers.seed(handlers.do(model, data={first: 50.0}), jax.random.key(0))(n_rows=2000)
    assert (np.asarray(rows[:, NAMES.index(first)]) == 50.0).all()
    # the last node descends from the first (edge_prob 1): its distribution moves
    assert stats.ks_2samp(np.asarray(plain[last]["value"]),
                          np.asarray(forced[last]["value"])).pvalue < 1e-6
    # and the compiled sampler's do agrees in distribution
    fast = np.asarray(sampler.sample(scm, jax.random.key(3), 2000, do={first: 50.0}))[0]
    assert stats.ks_2samp(np.asarray(rows[:, NAMES.index(last)]),
                          fast[:, NAMES.index(last)]).pvalue > 1e-3


def test_condition_gives_finite_log_density_of_observed_rows():
    scm = make_scm(seed=23, k=1, n_levels=(0, 3, 0, 0, 2), names=NAMES)
    model = sampler.as_numpyro(scm)
    # point masses need the exact floats: the walk evaluates f_j(parents) + residual as the
    # model does (the default closed-form "solve" differs in the last bits)
    rows = np.asarray(sampler.sample(scm, jax.random.key(0), 50, strategy="walk"))[0]
    data = {name: rows[:, j].astype(int) if j in (1, 4) else rows[:, j]
            for j, name in enumerate(NAMES)}
    logp, _ = numpyro.infer.util.log_density(handlers.condition(model, data=data), (50,), {}, {})
    assert np.isfinite(float(logp))
    data["a"] = data["a"] + 1e3  # values the SCM cannot produce
    logp_bad, _ = numpyro.infer.util.log_density(handlers.condition(model, data=data), (50,), {}, {})
    assert float(logp_bad) == -np.inf
