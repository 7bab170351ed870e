"""Fidelity scores against independent computations, the consistent DAG extension, and the
issue-23 targets on tables simulated from known DAGs."""

import itertools
import json
import warnings

import jax
import networkx as nx
import numpy as np
import pandas as pd
import pytest
from scripts import load_script

from causaljax.discovery import consistent_extension, dags_from_runs, threshold_probabilities
from causaljax.eval import fidelity as fid


def _ecdf_ks(a, b):  # the KS statistic by brute force over the pooled points
    grid = np.concatenate([a, b])
    Fa = (a[None, :] <= grid[:, None]).mean(1)
    Fb = (b[None, :] <= grid[:, None]).mean(1)
    return np.abs(Fa - Fb).max()


def test_marginal_distances_match_brute_force():
    rng = np.random.default_rng(0)
    real = np.column_stack([rng.normal(size=300), rng.integers(0, 3, 300)])
    syn = np.column_stack([rng.normal(0.3, 1.2, size=200), rng.choice(3, 200, p=[.5, .3, .2])])
    got = fid.marginal_distances(real, syn, [0, 3])
    assert got[0] == pytest.approx(_ecdf_ks(real[:, 0], syn[:, 0]), abs=1e-12)
    fr = np.bincount(real[:, 1].astype(int), minlength=3) / 300
    fs = np.bincount(syn[:, 1].astype(int), minlength=3) / 200
    assert got[1] == pytest.approx(0.5 * np.abs(fr - fs).sum(), abs=1e-12)
    assert fid.marginal_distances(real, real, [0, 3]) == pytest.approx([0, 0])


def test_correlation_and_contingency_errors_match_numpy_and_pandas():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(400, 3))
    a[:, 1] += a[:, 0]
    real = np.column_stack([a[:, :2], (a[:, 2] > 0).astype(float)])
    syn = np.column_stack([rng.normal(size=(300, 2)), rng.integers(0, 2, 300)])
    err = fid.correlation_errors(real, syn)
    ref = np.abs(np.corrcoef(real.T) - np.corrcoef(syn.T))
    np.testing.assert_allclose(err, ref, atol=1e-10)
    cont = fid.contingency_errors(real, syn, [0, 0, 2], bins=4)
    assert np.isnan(cont[0, 1]) and np.isnan(cont[2, 2])
    edges = np.quantile(real[:, 0], [0.25, 0.5, 0.75])
    tr = pd.crosstab(np.searchsorted(edges, real[:, 0]), real[:, 2], normalize=True)
    ts = pd.crosstab(np.searchsorted(edges, syn[:, 0]), syn[:, 2], normalize=True)
    tv = 0.5 * tr.sub(ts, fill_value=0).abs().to_numpy().sum()
    assert cont[0, 2] == pytest.approx(tv, abs=1e-12) and cont[2, 0] == cont[0, 2]


def test_detection_auc_is_half_for_the_same_law_and_one_for_disjoint_rows():
    rng = np.random.default_rng(2)
    real = np.column_stack([rng.normal(size=(600, 3)), rng.integers(0, 2, 600)])
    same = np.column_stack([rng.normal(size=(600, 3)), rng.integers(0, 2, 600)])
    assert abs(fid.detection_auc(real, same, [0, 0, 0, 2]) - 0.5) < 0.07
    # same marginals, broken dependence: only a joint test sees it
    x = rng.normal(size=600)
    dep = np.column_stack([x, x + 0.1 * rng.normal(size=600)])
    indep = np.column_stack([rng.normal(size=600), rng.normal(size=600)])
    assert fid.marginal_distances(dep, indep, [0, 0]).max() < 0.1
    assert fid.detection_auc(dep, indep, [0, 0]) > 0.9
    assert fid.detection_auc(real, real + 10.0, [0, 0, 0, 0]) > 0.99


def _v_structures(adj):
    d = len(adj)
    skel = adj | adj.T
    return {(min(a, b), max(a, b), c) for c in range(d) for a, b in
            itertools.combinations(np.flatnonzero(adj[:, c]), 2) if not skel[a, b]}


def test_consistent_extension_keeps_the_cpdag_equivalence_class():
    # a -> c <- b, c -> d, then d - e - f undirected: the only extension adding no collider is
    # d -> e -> f (Meek's rule 1); a lone undirected chain 0 - 1 - 2 has three (no 0 -> 1 <- 2)
    W = np.zeros((6, 6))
    W[0, 2] = W[1, 2] = W[2, 3] = 1.0
    W[3, 4] = W[4, 3] = W[4, 5] = W[5, 4] = 0.5
    rng = np.random.default_rng(3)
    seen = set()
    for _ in range(40):
        adj, order = consistent_extension(W, rng)
        assert nx.is_directed_acyclic_graph(nx.DiGraph(adj.astype(int)))
        np.testing.assert_array_equal(adj | adj.T, (W + W.T) > 0)
        assert adj[0, 2] and adj[1, 2] and adj[2, 3]
        assert _v_structures(adj) == {(0, 1, 2)}
        pos = np.argsort(order)
        assert all(pos[i] < pos[j] for i, j in zip(*np.nonzero(adj)))
        assert adj[3, 4] and adj[4, 5]
    chain = np.zeros((3, 3))
    chain[0, 1] = chain[1, 0] = chain[1, 2] = chain[2, 1] = 0.5
    for _ in range(40):
        adj, _ = consistent_extension(chain, rng)
        assert not _v_structures(adj)
        seen.add((bool(adj[0, 1]), bool(adj[1, 2])))
    assert seen == {(True, True), (False, True), (False, False)}


def test_dags_from_runs_draws_runs_and_threshold_keeps_strong_pairs():
    runs = np.zeros((2, 3, 3), np.float32)
    runs[0, 0, 1] = 1.0  # run 0: 0 -> 1
    runs[1, 1, 2] = 1.0  # run 1: 1 -> 2
    dags = dags_from_runs(runs, 64, key=jax.random.key(0))
    adj = np.asarray(dags.adjacency)
    one = adj[:, 0, 1] & ~adj[:, 1, 2]
    two = adj[:, 1, 2] & ~adj[:, 0, 1]
    assert (one | two).all() and 16 < one.sum() < 48
    P = np.array([[0, .5, .1], [.3, 0, 0], [.2, 0, 0]], np.float32)
    T = threshold_probabilities(P, 0.5)
    np.testing.assert_allclose(T, [[0, .625, 0], [.375, 0, 0], [0, 0, 0]], atol=1e-6)


def _fidelity_of(train, held, A, *, edge_rule, dag_sampler, seed, repair_alpha, k=4,
                 n_bootstrap=4):
    """(per-DAG max |corr error| over the truly adjacent pairs f64[k], the ensemble's, the
    ensemble's detection AUC) of the SCM generator's pipeline with the given rule."""
    from causaljax import sampler
    from causaljax.finetune.generators.scm import fit_scms

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scm = fit_scms(train, key=jax.random.key(seed), k=k, n_bootstrap=n_bootstrap,
                       families=("linear",), edge_rule=edge_rule, dag_sampler=dag_sampler,
                       repair_alpha=repair_alpha)
    rows = np.asarray(sampler.sample(scm, jax.random.key(1), len(held)))  # [k, n, d]
    adj = A | A.T
    per_dag = np.array([fid.correlation_errors(held, r)[adj].max() for r in rows])
    ensemble = rows.transpose(1, 0, 2).reshape(-1, len(A))[:len(held)]
    return (per_dag, fid.correlation_errors(held, ensemble)[adj].max(),
            fid.detection_auc(held, ensemble, train.n_levels))


@pytest.mark.slow  # ~25 s on 2 cores: discovery and SCM fits for three pipelines and the true DAG
def test_scm_rows_keep_the_dependence_of_true_edges():
    # A linear table from a known 10-node DAG (3 categorical nodes), 1000 rows fitted, 1000
    # held out; seed chosen before looking at the result. Reference 1: the TRUE DAG's SCM
    # (same fitting code) gives the sampling-error level. Reference 2: the rule before issue
    # 23 (legacy rule, per-pair DAG draws) on the same table. Measured when written (session
    # 17): true DAG 0.08 / detection 0.56; the default (runs + Markov repair) per DAG
    # 0.10-0.12, ensemble 0.09, detection 0.50; runs without the repair per DAG 0.22-0.28,
    # ensemble 0.23, detection 0.63; legacy per DAG 0.45-0.80, ensemble 0.37, detection 0.72.
    from causaljax import sampler
    from causaljax import scm as scm_lib

    t, A = fid.simulate(10, 2000, kind="linear", seed=21)
    train, held = t.take(np.arange(1000)), t.values[1000:]
    adj = A | A.T
    true = dags_from_runs(A[None].astype(np.float32), 1, key=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(true.adjacency)[0], A)
    fitted = scm_lib.fit(train, true, key=jax.random.key(2), families=("linear",))
    rows = np.asarray(sampler.sample(fitted, jax.random.key(1), 1000))[0]
    assert fid.correlation_errors(held, rows)[adj].max() <= 0.15  # the harness is sound
    assert fid.detection_auc(held, rows, t.n_levels) <= 0.62

    per_dag, ensemble, auc = _fidelity_of(train, held, A, edge_rule="adjacency",
                                          dag_sampler="runs", seed=21, repair_alpha=0.05)
    assert per_dag.max() <= 0.15 and auc <= 0.6, (per_dag, auc)  # the targets
    raw_dag, raw_ensemble, raw_auc = _fidelity_of(train, held, A, edge_rule="adjacency",
                                                  dag_sampler="runs", seed=21,
                                                  repair_alpha=0.0)
    old_dag, old_ensemble, old_auc = _fidelity_of(train, held, A, edge_rule="legacy",
                                                  dag_sampler="pairs", seed=21,
                                                  repair_alpha=0.0)
    assert per_dag.max() < raw_dag.min() and ensemble < raw_ensemble and auc < raw_auc
    assert np.median(raw_dag) <= 0.3 and raw_dag.max() <= 0.6, raw_dag
    assert np.median(raw_dag) < np.median(old_dag) - 0.2, (raw_dag, old_dag)
    assert raw_ensemble <= 0.3 and raw_ensemble < old_ensemble, (raw_ensemble, old_ensemble)
    assert raw_auc <= 0.68 and raw_auc < old_auc - 0.05, (raw_auc, old_auc)


def test_script_prints_every_generator(tmp_path, capsys):
    out = tmp_path / "fid.json"
    # TabEBM left out: it alone needs the TFM (its init and forward compile: ~2/3 of this
    # test's time); the script passes it the model like any other generator's options
    assert "tabebm" in fid.generators_available()
    rc = load_script("experiments", "fidelity").main([
        "--datasets", "swiss_labor", "--generators", "scm,copula", "--k-scms", "2",
        "--n-bootstrap", "2", "--rows", "200", "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    rows = json.loads(out.read_text())
    names = [r["generator"] for r in rows]
    assert names == ["scm ensemble", "scm[0]", "scm[1]", "copula"]
    for r in rows:
        assert f"| {r['generator']} |" in text
        assert 0.0 <= r["marginal"] <= r["marginal_max"] <= 1.0
        assert 0.0 <= r["detection_auc"] <= 1.0
    assert load_script("experiments", "fidelity").main(["--rows", "10"]) == 2


def test_study_fidelity_section_takes_medians_over_folds():
    df = pd.DataFrame(dict(
        method=["real", "causalmix", "causalmix", "scm", "causalmix", "causalmix"],
        dataset=["a", "a", "a", "a", "b", "b"], fold=[0, 0, 0, 0, 0, 1],
        volume=[0, 1, 4, 1, 1, 1],
        fid_marginal=[np.nan, 0.1, 0.1, 0.1, 0.3, 0.4],
        fid_detection_auc=[np.nan, 0.6, 0.6, 0.6, 0.8, 0.9]))
    t = fid.fidelity_table(df)
    assert list(t.index) == ["causalmix", "scm"]  # real has no synthetic rows
    assert t.loc["causalmix", "folds"] == 3  # (a, 0) counted once over its two volumes
    assert t.loc["causalmix", "fid_marginal"] == pytest.approx(np.median([0.1, 0.3, 0.4]))
    assert t.loc["causalmix", "fid_detection_auc"] == pytest.approx(0.8)
    text = fid.fidelity_markdown(df)
    assert "| causalmix | 3 | 0.300 | 0.800 |" in text
    assert fid.fidelity_markdown(df.drop(columns=["fid_marginal", "fid_detection_auc"])) == ""
