"""Bootstrapped constraint-based structure learning: a d×d matrix of edge probabilities.

`edge_probabilities(table)` resamples the rows B times, runs causal-learn's PC and/or FCI on
every resample and returns P f32[d, d], where P[i, j] is the share of (resample × algorithm)
runs that put an edge i → j. Each run spreads one unit of mass over the two directions
of every adjacency it keeps, read from the endpoint marks (mark at i, mark at j):

    marks            edge       to i→j  to j→i  reading
    tail  — arrow    i → j        1       0     i causes j
    tail  — circle   i —o j       1       0     a PAG tail at i: i is an ancestor of j
    tail  — tail     i — j        ½       ½     a CPDAG / PAG edge of unknown direction
    circle— circle   i o-o j      ½       ½     nothing oriented
    circle— arrow    i o→ j       ¾       ¼     i → j or i ↔ j: the mean of those two rows
    arrow — arrow    i ↔ j        ½       ½     a latent confounder of i and j

This is edge_rule="adjacency" (the default): every edge PC or FCI keeps counts as one unit of
adjacency, so P[i, j] + P[j, i] is the share of runs that found i and j adjacent and
P[i, j] - P[j, i] is the net evidence for the direction. The fitted SCMs have no latent
variables, so a pair FCI explains by a confounder (↔, or the ↔ reading of o→) is still
dependent in the data and must be adjacent in the DAGs for the synthetic rows to keep that
dependence; with no evidence for either direction its mass is split evenly. (The mirrored
marks, e.g. arrow — tail, give the transposed weights.)

edge_rule="legacy" is the rule before issue 23, kept for comparisons: ↔ gave 0 both ways and
o→ gave ½ to i→j and 0 to j→i, so the adjacency share of a pair FCI found confounded was
understated (a strongly dependent pair could get P ≈ 0 and vanish from the sampled DAGs).

CI test, chosen from the column kinds:
  * all numeric      -> causal-learn "fisherz" (partial correlation);
  * all categorical  -> causal-learn "gsq" (G-squared on the level codes);
  * mixed            -> `MixedLinearCI` (registered as "causaljax_mixed"): categorical columns
                        are one-hot encoded (one level dropped) and X ⟂ Y | Z is the Wilks
                        likelihood-ratio test of zero partial canonical correlation between the
                        X and Y blocks given the Z blocks (Bartlett's chi-square, |X|·|Y| dof).
                        For two numeric columns it is the Gaussian partial-correlation test;
                        unlike fisherz on level codes it does not depend on how levels are
                        numbered. Same one-hot encoding as the SCM's input slots.
All three are linear/additive tests: a dependence that is strongly nonlinear in the encoded
parents (e.g. a binary child thresholding a numeric parent) can leave spurious adjacencies.

max_depth caps conditioning sets everywhere: PC's `max_k`, FCI's adjacency search `depth`,
and FCI's possible-D-SEP step, which causal-learn does not cap (it tries every subset; that
took minutes per run on dense resamples), replaced here by a capped version while FCI runs.

Bad input: fewer than `MIN_ROWS` rows or non-finite values raise ValueError. Constant
columns, and (for the linear tests) columns that are exact linear functions of earlier
columns (the target is scanned first), are left out of discovery with a UserWarning and get
no edges. A column that is constant or collinear only within one resample sits out that run.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import warnings

import numpy as np
from causallearn.search.ConstraintBased import FCI
from causallearn.search.ConstraintBased.FCI import fci
from causallearn.search.ConstraintBased.PC import pc
from causallearn.utils.cit import NO_SPECIFIED_PARAMETERS_MSG, CIT_Base, register_ci_test
from joblib import Parallel, delayed
from scipy.stats import chi2

from causaljax import progress

ALGORITHMS = ("pc", "fci")
MIN_ROWS = 20
COLLINEAR_TOL = 1e-6  # residual variance share below which a column counts as collinear
TAIL, ARROW, CIRCLE = -1, 1, 2  # causal-learn endpoint codes (graph[i, j]: the mark at i)

# rule -> {(mark at i, mark at j): weight for i -> j}; unlisted pairs (no edge) = 0
_DIRECTION_WEIGHTS = {
    "adjacency": {
        (TAIL, ARROW): 1.0, (ARROW, TAIL): 0.0,
        (TAIL, CIRCLE): 1.0, (CIRCLE, TAIL): 0.0,
        (TAIL, TAIL): 0.5,
        (CIRCLE, CIRCLE): 0.5,
        (CIRCLE, ARROW): 0.75, (ARROW, CIRCLE): 0.25,
        (ARROW, ARROW): 0.5,
    },
    "legacy": {
        (TAIL, ARROW): 1.0,
        (TAIL, CIRCLE): 1.0,
        (TAIL, TAIL): 0.5,
        (CIRCLE, CIRCLE): 0.5,
        (CIRCLE, ARROW): 0.5,
    },
}
EDGE_RULES = tuple(_DIRECTION_WEIGHTS)


def edge_probabilities(table, *, algorithms=ALGORITHMS, n_bootstrap: int = 20,
                       alpha: float = 0.05, seed: int = 0, max_depth: int | None = 3,
                       n_jobs: int | None = None, subsample: float | None = 0.5,
                       edge_rule: str = "adjacency", return_runs: bool = False):
    """P f32[d, d] over all columns of `table` (target included); see the module docstring.

    Default resampling: half-subsamples (subsample=0.5), which keep the CI tests' false-alarm
    rate nominal; pass subsample=None for the classical bootstrap (see below). A subsample
    keeps at least MIN_ROWS rows (all rows of a table that small).

    Resamples: n rows drawn with replacement (the bootstrap), or, with `subsample` = f in
    (0, 1), round(f·n) rows drawn without replacement. Bootstrap duplicates make CI tests
    anti-conservative, roughly doubling the statistic under independence: an absent edge is
    found in ≈ 13-17 % of resamples at alpha = 0.05 with fisherz (1 dof) and far more with
    multi-dof tests (≈ 40 % at 6 dof: gsq or one-hot blocks). Half-subsamples (f = 0.5) keep
    the nominal rate at the cost of power.

    max_depth caps the conditioning-set size (PC `max_k`, FCI `depth`); None = unlimited.
    edge_rule: how endpoint marks become direction weights ("adjacency" or "legacy", see the
    module docstring).
    return_runs: also return each run's weights (see `edge_probabilities_array`).
    n_jobs worker processes (default os.cpu_count()); 1 runs in this process.
    The result depends only on (data, arguments, seed), not on n_jobs.
    """
    return edge_probabilities_array(
        table.values, table.n_levels, names=table.names, first=table.target_index,
        algorithms=algorithms, n_bootstrap=n_bootstrap, alpha=alpha, seed=seed,
        max_depth=max_depth, n_jobs=n_jobs, subsample=subsample, edge_rule=edge_rule,
        return_runs=return_runs)


def edge_probabilities_array(values, n_levels, *, names=None, first: int | None = None,
                             algorithms=ALGORITHMS, n_bootstrap: int = 20, alpha: float = 0.05,
                             seed: int = 0, max_depth: int | None = 3,
                             n_jobs: int | None = None,
                             subsample: float | None = None,
                             edge_rule: str = "adjacency", return_runs: bool = False):
    """`edge_probabilities` on a bare encoded matrix: values f32[n, d], n_levels int[d]
    (0 = numeric, else a categorical coded 0..L-1). `first` is scanned first for collinearity.
    With return_runs=True: (P, runs f32[R, d, d]), the weights of each of the R (resample ×
    algorithm) runs, whose mean is P (`discovery.dags_from_runs` samples DAGs from them)."""
    values = np.asarray(values, np.float64)
    n_levels = np.asarray(n_levels, np.int64)
    _check_arguments(values, n_levels, algorithms, n_bootstrap, alpha, max_depth, subsample)
    if edge_rule not in EDGE_RULES:
        raise ValueError(f"edge_rule must be one of {EDGE_RULES}, got {edge_rule!r}")
    n, d = values.shape
    names = list(names) if names is not None else [f"x{j}" for j in range(d)]
    test = ci_test_for(n_levels)
    depth = -1 if max_depth is None else int(max_depth)

    keep, constant, collinear = usable_columns(values, n_levels, test, first=first)
    if constant:
        warnings.warn(f"constant columns left out of discovery (no edges): "
                      f"{[names[j] for j in constant]}", stacklevel=3)
    if collinear:
        warnings.warn(f"columns that are exact linear functions of other columns left out of "
                      f"discovery (no edges): {[names[j] for j in collinear]}", stacklevel=3)
    P = np.zeros((d, d), np.float64)
    if len(keep) < 2:
        P = P.astype(np.float32)
        return (P, P[None]) if return_runs else P

    rows = _resample_rows(np.random.default_rng(seed), n, n_bootstrap, subsample)  # int[B, m]
    data, levels = values[:, keep], n_levels[keep]
    tasks = [(data[r], levels, algorithm, test, alpha, depth, edge_rule)
             for r in rows for algorithm in algorithms]
    runs = np.zeros((len(tasks), d, d), np.float32)
    for r, weights in enumerate(_map(_run_one, tasks, n_jobs)):
        P[np.ix_(keep, keep)] += weights
        runs[r][np.ix_(keep, keep)] = weights
    P /= len(tasks)
    np.fill_diagonal(P, 0.0)
    P = P.astype(np.float32)
    return (P, runs) if return_runs else P


def ci_test_for(n_levels) -> str:
    """The CI test name for columns of these kinds (see the module docstring)."""
    categorical = np.asarray(n_levels) > 0
    if categorical.all():
        return "gsq"
    if not categorical.any():
        return "fisherz"
    return "causaljax_mixed"


def direction_weights(graph, edge_rule: str = "adjacency") -> np.ndarray:
    """f64[d, d] weight of i -> j from a causal-learn endpoint matrix (module docstring)."""
    if edge_rule not in _DIRECTION_WEIGHTS:
        raise ValueError(f"edge_rule must be one of {EDGE_RULES}, got {edge_rule!r}")
    mark_i, mark_j = np.asarray(graph), np.asarray(graph).T
    W = np.zeros(mark_i.shape, np.float64)
    for (a, b), w in _DIRECTION_WEIGHTS[edge_rule].items():
        W[(mark_i == a) & (mark_j == b)] = w
    return W


def usable_columns(values, n_levels, test: str, *, first: int | None = None):
    """Split columns into (keep, constant, collinear) sorted index lists.

    Collinearity (linear tests only): a column whose encoded block keeps less than
    COLLINEAR_TOL of its variance (smallest eigenvalue of the residual correlation) after
    regression on the blocks already kept, scanned in column order with `first` first."""
    d = values.shape[1]
    constant = [j for j in range(d) if np.ptp(values[:, j]) == 0]
    if test == "gsq":
        return [j for j in range(d) if j not in constant], constant, []
    scan = [j for j in range(d) if j not in constant]
    if first is not None and first in scan:
        scan.remove(first)
        scan.insert(0, first)
    blocks = [_encode_block(values[:, j], n_levels[j]) for j in scan]
    slots = np.split(np.arange(sum(x.shape[1] for x in blocks)),
                     np.cumsum([x.shape[1] for x in blocks])[:-1])
    Z = np.hstack(blocks) if blocks else np.zeros((len(values), 0))  # f64[n, D]
    Z = (Z - Z.mean(0)) / Z.std(0)
    R = Z.T @ Z / len(Z)  # [D, D] correlations
    kept, collinear, basis = [], [], np.zeros(0, int)  # basis: slots of the kept columns
    for j, b in zip(scan, slots):
        S = R[np.ix_(b, b)]  # residual correlation of j's block given the kept blocks
        if basis.size:
            C = R[np.ix_(basis, b)]
            S = S - C.T @ np.linalg.solve(R[np.ix_(basis, basis)], C)
        if np.linalg.eigvalsh(S).min() < COLLINEAR_TOL:
            collinear.append(j)
        else:
            kept.append(j)
            basis = np.concatenate([basis, b])
    return sorted(kept), constant, sorted(collinear)


# ---------------------------------------------------------------------------------------
# one run


def _run_one(data, n_levels, algorithm: str, test: str, alpha: float, depth: int,
             edge_rule: str = "adjacency"):
    """Weights f64[d, d] of one algorithm on one resample data f64[n, d]."""
    d = data.shape[1]
    W = np.zeros((d, d))
    keep, _, _ = usable_columns(data, n_levels, test)
    if len(keep) < 2:
        return W
    x = data[:, keep]
    kwargs = {"n_levels": n_levels[keep]} if test == "causaljax_mixed" else {}
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if algorithm == "pc":
            graph = pc(x, alpha, test, stable=True, show_progress=False,
                       max_k=None if depth < 0 else depth, **kwargs).G.graph
        else:
            with _possible_dsep_limited_to(depth):
                graph = fci(x, test, alpha, depth=depth, show_progress=False, **kwargs)[0].graph
    W[np.ix_(keep, keep)] = direction_weights(graph, edge_rule)
    return W


@contextlib.contextmanager
def _possible_dsep_limited_to(depth: int):
    """Within the block, FCI's possible-D-SEP step tests separating sets of at most `depth`
    nodes (-1: causal-learn's own, unlimited step). causal-learn's `depth` only caps the
    adjacency search; its possible-D-SEP step tries every subset, which is exponential and
    took minutes on dense bootstrap graphs (pcalg's `m.max` caps both, as here)."""
    if depth < 0:
        yield
        return
    original = FCI.removeByPossibleDsep
    FCI.removeByPossibleDsep = lambda graph, test, alpha, sep_sets: _remove_by_possible_dsep(
        graph, test, alpha, sep_sets, depth)
    try:
        yield
    finally:
        FCI.removeByPossibleDsep = original


def _remove_by_possible_dsep(graph, test, alpha, sep_sets, depth: int):
    """FCI's second skeleton phase: drop edge a - b if a ⟂ b | S for some S of at most
    `depth` nodes from Possible-D-SEP(a, b) or Possible-D-SEP(b, a); sets inside adj(a) or
    adj(b) were already tried by the adjacency search."""
    index = graph.get_node_map()
    for edge in graph.get_graph_edges():
        a, b = edge.get_node1(), edge.get_node2()
        adjacent = (set(graph.get_adjacent_nodes(a)), set(graph.get_adjacent_nodes(b)))
        for x, y in ((a, b), (b, a)):
            if not graph.contains_edge(edge):
                break
            candidates = FCI.getPossibleDsep(x, y, graph, -1)
            for size in range(1, min(depth, len(candidates)) + 1):
                for subset in itertools.combinations(candidates, size):
                    if set(subset) <= adjacent[0] or set(subset) <= adjacent[1]:
                        continue
                    condition = tuple(index[node] for node in subset)
                    if test(index[a], index[b], condition) > alpha:
                        graph.remove_edge(edge)
                        sep_sets[(index[a], index[b])] = set(condition)  # both orders, as
                        sep_sets[(index[b], index[a])] = set(condition)  # FAS stores them
                        break
                if not graph.contains_edge(edge):
                    break


def _map(fn, tasks, n_jobs):
    """fn(*t) for t in tasks, yielded in order under a progress bar ("discovery", one tick per
    task; see causaljax.progress); in joblib's reusable loky process pool when n_jobs > 1
    (fresh worker processes: no fork of a multithreaded JAX parent, no __main__ guard)."""
    n_jobs = (os.cpu_count() or 1) if n_jobs is None else int(n_jobs)
    if n_jobs < 1:
        raise ValueError(f"n_jobs must be >= 1, got {n_jobs}")
    if n_jobs == 1 or len(tasks) == 1:
        results = (fn(*t) for t in tasks)
    else:
        results = Parallel(n_jobs=n_jobs, backend="loky", return_as="generator")(
            delayed(fn)(*t) for t in tasks)
    return progress.bar(results, total=len(tasks), desc="discovery", unit="run")


def _resample_rows(rng, n: int, n_bootstrap: int, subsample: float | None) -> np.ndarray:
    if subsample is None:
        return rng.integers(0, n, size=(n_bootstrap, n))
    m = min(n, max(MIN_ROWS, round(subsample * n)))  # small tables keep at least MIN_ROWS
    return np.stack([rng.choice(n, size=m, replace=False) for _ in range(n_bootstrap)])


def _check_arguments(values, n_levels, algorithms, n_bootstrap, alpha, max_depth, subsample):
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D [n, d], got shape {values.shape}")
    n, d = values.shape
    if n_levels.shape != (d,):
        raise ValueError(f"n_levels has shape {n_levels.shape}, expected ({d},)")
    if n < MIN_ROWS:
        raise ValueError(f"structure learning needs at least {MIN_ROWS} rows, got {n}")
    if not np.isfinite(values).all():
        raise ValueError("values contain NaN or inf; impute or drop them first")
    if isinstance(algorithms, str) or not algorithms or \
            any(a not in ALGORITHMS for a in algorithms):
        raise ValueError(f"algorithms must be a non-empty sequence from {ALGORITHMS}, "
                         f"got {algorithms!r}")
    if isinstance(n_bootstrap, bool) or int(n_bootstrap) != n_bootstrap or n_bootstrap < 1:
        raise ValueError(f"n_bootstrap must be a positive integer, got {n_bootstrap!r}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha!r}")
    if max_depth is not None and (int(max_depth) != max_depth or max_depth < 0):
        raise ValueError(f"max_depth must be None or an integer >= 0, got {max_depth!r}")
    if subsample is not None:
        if not 0.0 < subsample < 1.0:
            raise ValueError(f"subsample must be None or lie in (0, 1), got {subsample!r}")


# ---------------------------------------------------------------------------------------
# the mixed-type CI test


def _encode_block(column, n_levels) -> np.ndarray:
    """f64[n, b]: a numeric column as itself; a categorical one as indicators of its present
    levels except the first present one (so the block never spans the intercept)."""
    column = np.asarray(column, np.float64)
    if n_levels == 0:
        return column[:, None]
    present = np.unique(column)
    return (column[:, None] == present[None, 1:]).astype(np.float64)


class MixedLinearCI(CIT_Base):
    """X ⟂ Y | Z on one-hot-encoded blocks: Wilks' lambda of the partial canonical
    correlations, Bartlett's chi-square with |X|·|Y| degrees of freedom.

    log Λ = logdet R[XYZ] - logdet R[XZ] - logdet R[YZ] + logdet R[Z]  (R: correlations)
    stat  = -(n - |Z| - (|X| + |Y| + 3) / 2) · log Λ
    """

    def __init__(self, data, n_levels=None, **kwargs):
        super().__init__(data, **kwargs)
        self.check_cache_method_consistent("causaljax_mixed", NO_SPECIFIED_PARAMETERS_MSG)
        self.assert_input_data_is_valid()
        d = data.shape[1]
        n_levels = np.zeros(d, np.int64) if n_levels is None else np.asarray(n_levels)
        blocks = [_encode_block(data[:, j], n_levels[j]) for j in range(d)]
        self.slots = np.split(np.arange(sum(b.shape[1] for b in blocks)),
                              np.cumsum([b.shape[1] for b in blocks])[:-1])  # column -> slots
        encoded = np.hstack(blocks)  # f64[n, D]
        self.correlation = np.corrcoef(encoded.T).reshape(encoded.shape[1], -1)  # [D, D]

    def _logdet(self, columns) -> float:
        if not columns:
            return 0.0
        idx = np.concatenate([self.slots[c] for c in columns])
        sign, logdet = np.linalg.slogdet(self.correlation[np.ix_(idx, idx)])
        if sign <= 0:
            raise ValueError("singular correlation matrix in the mixed CI test; "
                             "drop collinear columns first")
        return logdet

    def __call__(self, X, Y, condition_set=None):
        Xs, Ys, Z, cache_key = self.get_formatted_XYZ_and_cachekey(X, Y, condition_set)
        if cache_key in self.pvalue_cache:
            return self.pvalue_cache[cache_key]
        stat, dof = self._statistic(Xs, Ys, Z)
        pvalue = float(chi2.sf(stat, dof))
        self.pvalue_cache[cache_key] = pvalue
        return pvalue

    def log_pvalue(self, X: int, Y: int, condition=()) -> float:
        """log p of X ⟂ Y | condition, finite where the p-value itself underflows to 0 (so
        strong dependences can still be ranked)."""
        return float(chi2.logsf(*self._statistic([X], [Y], list(condition))))

    def _statistic(self, Xs, Ys, Z):
        """(Bartlett's chi-square statistic, degrees of freedom) of Xs ⟂ Ys | Z."""
        log_lambda = (self._logdet(Xs + Ys + Z) - self._logdet(Xs + Z)
                      - self._logdet(Ys + Z) + self._logdet(Z))
        p = sum(len(self.slots[c]) for c in Xs)
        q = sum(len(self.slots[c]) for c in Ys)
        z = sum(len(self.slots[c]) for c in Z)
        return max(0.0, -(self.sample_size - z - (p + q + 3) / 2) * log_lambda), p * q


register_ci_test("causaljax_mixed", MixedLinearCI)
