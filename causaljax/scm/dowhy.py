"""A fitted DoWhy ``gcm.StructuralCausalModel`` -> one (k = 1) ``causaljax.scm.types.SCM``.

Supported mechanisms (those ``gcm.auto.assign_causal_mechanisms(quality=GOOD)`` picks, plus a
few equivalents):

* roots: ``EmpiricalDistribution`` -> ROOT, noise pool = the stored observed values (labels of
  a categorical root mapped to level codes);
* ``AdditiveNoiseModel`` -> NUMERIC, ``DiscreteAdditiveNoiseModel`` -> NUMERIC with
  ``is_integer``; the noise model must be an ``EmpiricalDistribution`` (its pool: the
  training residuals);
* ``ClassifierFCM`` -> CATEGORICAL, channel = our level code of each of ``classes_``;
  levels the classifier never saw get a logit of ``NEG_LOGIT`` (probability 0).

Prediction models (DoWhy's ``SklearnRegressionModel`` / ``SklearnClassificationModel``
wrappers, or ``LinearRegressionWithFixedParameter``) over: linear regressors
(``LinearRegression``, ``Ridge(CV)``, ``Lasso(CV)``, ``ElasticNet(CV)``, ``LassoLarsIC``) and
``LogisticRegression`` -> ``lin_w``/``lin_b``; a ``Pipeline(PolynomialFeatures(degree <= 3),
linear / logistic model)`` (DoWhy's ``create_polynom_regressor`` and the degree-3
``create_polynom_logistic_regression_classifier`` that GOOD tries when a node has <= 5 encoded
inputs) -> ``lin_w`` + ``quad_w`` + ``cube_idx``/``cube_w`` (one slot monomial per product of
three slots); ``HistGradientBoosting{Regressor, Classifier}`` and ``DecisionTree{Regressor,
Classifier}`` -> trees, stored as lookup tables on their threshold grids where those are small
(``tree_budget``, see ``causaljax.scm.trees.tabulate_trees``). Anything else (other sklearn
models, e.g. random forests, polynomial degree > 3, other pipelines, one-vs-rest logistic
regression, non-empirical noise models) raises ValueError naming the node and the mechanism.

Parent encoding. DoWhy feeds a node the columns ``sorted(parents)`` and encodes the
categorical ones (str / bool labels) inside the prediction model: one-hot (``OneHotEncoder``,
``categories_`` order) when the parents hold <= 7 categories in all, else a CatBoost target
encoding, which at prediction time is a fixed value per category. Each encoded DoWhy feature is
therefore a linear function of our slots: a numeric parent is its raw slot, a one-hot feature
is our one-hot slot of that label, and a target-encoded (or numeric-labelled categorical)
parent is ``sum_l value_l * onehot_l``. Polynomial models fold exactly into
``lin_w``/``quad_w``/``cube_w`` (a product of three features expands multilinearly into slot
monomials); a tree split on such a "lookup" feature (``value(x) <= t``, i.e. ``x`` in a
set of levels) becomes a chain of one-hot splits sharing the original children.

The DoWhy model must have been fitted on ``dowhy_frame(table)`` (or equal values): the table's
columns under ``table.names``, categorical columns holding labels DoWhy sees as categorical
(``dowhy_frame`` turns numeric labels into ``str``). A categorical column DoWhy modelled as
numeric (integer labels left as numbers) is refused when it is a node, and read as its
numeric label value when it is a parent.

Noise pools. DoWhy keeps every training value / residual, so normally each node has ``n``
of them and ``noise[j]`` is the pool verbatim. Pools of different sizes are brought to
``m`` = the largest: a pool of size ``p`` is tiled ``m // p`` times and the remaining
``m % p`` entries are drawn without replacement (seed ``seed``), which keeps every value's
frequency within one copy of exact.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from causaljax.scm.trees import (
    TreeArrays,
    decision_tree_arrays,
    hgb_classifier_arrays,
    hgb_regressor_arrays,
    pack_trees,
    stack_trees,
    tabulate_trees,
)
from causaljax.scm.types import (
    CATEGORICAL,
    NUMERIC,
    ROOT,
    SCM,
    as_jax,
    empty_families,
    slots_for,
    topological_depth,
    validate,
)

NEG_LOGIT = -1e9  # logit of a level the classifier never saw

_LINEAR_REGRESSORS = ("LinearRegression", "Ridge", "RidgeCV", "Lasso", "LassoCV", "ElasticNet",
                      "ElasticNetCV", "LassoLarsIC")


def dowhy_frame(table) -> pd.DataFrame:
    """The frame to fit DoWhy on: ``table`` decoded (imputed values, no NaN), categorical
    columns as labels DoWhy treats as categorical (numeric labels turned into ``str``)."""
    df = table.to_pandas(restore_missing=False)
    for col in table.columns:
        if col.kind == "categorical":
            labels = df[col.name].astype(object)
            if not all(isinstance(v, (str, bool, np.bool_)) for v in col.levels):
                labels = labels.map(str)
            df[col.name] = labels.to_numpy(dtype=object)
    return df


# ---------------------------------------------------------------------------------------
# Encoded DoWhy features as functions of our slots


class _Features:
    """The encoded inputs of one DoWhy prediction model, each a linear map of our slots.

    ``B[i]`` (f64[S]): feature i = B[i] @ z. ``slot[i]``: the slot when feature i IS one slot
    (raw or one-hot), else -1 (a lookup: ``lookup[i] = (column, values f64[L])``)."""

    def __init__(self, S):
        self.S = S
        self.B, self.slot, self.lookup = [], [], []

    def add_slot(self, s):
        row = np.zeros(self.S)
        row[s] = 1.0
        self.B.append(row)
        self.slot.append(s)
        self.lookup.append(None)

    def add_lookup(self, column, values, onehot_slots):
        row = np.zeros(self.S)
        row[onehot_slots] = values
        self.B.append(row)
        self.slot.append(-1)
        self.lookup.append((column, np.asarray(values, np.float64)))

    @property
    def matrix(self):
        return np.stack(self.B) if self.B else np.zeros((0, self.S))


class _Converter:
    def __init__(self, table):
        self.table = table
        self.names = list(table.names)
        self.n_levels = np.asarray(table.n_levels)
        self.slot_column, self.slot_level = slots_for(self.n_levels)
        self.S = len(self.slot_column)
        self.C = max(1, int(self.n_levels.max(initial=0)))
        self.slot_of = {(int(c), int(l)): s
                        for s, (c, l) in enumerate(zip(self.slot_column, self.slot_level))}

    # ----- labels ---------------------------------------------------------------------
    def code_of(self, j, label, node, what):
        levels = self.table.columns[j].levels
        for code, level in enumerate(levels):
            if label == level or str(label) == str(level):
                return code
        raise ValueError(f"node {node!r}: {what} label {label!r} is not a level of column "
                         f"{self.names[j]!r} {levels}")

    def onehot_slots(self, j):
        return [self.slot_of[(j, l)] for l in range(self.n_levels[j])]

    # ----- features -------------------------------------------------------------------
    def features(self, node, parent_names, wrapper):
        """The encoded input features of ``wrapper`` (a DoWhy prediction model)."""
        encoders = getattr(wrapper, "_encoders", {}) or {}
        feats = _Features(self.S)
        for pos, name in enumerate(parent_names):
            j = self.names.index(name)
            enc = encoders.get(pos)
            categorical = self.n_levels[j] > 0
            if enc is None:
                if not categorical:
                    feats.add_slot(self.slot_of[(j, -1)])
                    continue
                # a categorical column DoWhy saw as numbers: feature = numeric label value
                try:
                    values = [float(v) for v in self.table.columns[j].levels]
                except (TypeError, ValueError):
                    raise ValueError(f"node {node!r}: parent {name!r} is categorical with "
                                     "non-numeric labels but DoWhy did not encode it") from None
                feats.add_lookup(j, values, self.onehot_slots(j))
            elif not categorical:
                raise ValueError(f"node {node!r}: DoWhy encoded the numeric parent {name!r} "
                                 "as categorical")
            elif type(enc).__name__ == "OneHotEncoder":
                for label in enc.categories_[0]:
                    feats.add_slot(self.slot_of[(j, self.code_of(j, label, node, "parent"))])
            elif type(enc).__name__ == "CatBoostEncoder":
                values = []
                for label in self.table.columns[j].levels:
                    hit = [v for k, v in enc._category_means.items()
                           if k == label or str(k) == str(label)]
                    values.append(float(hit[0]) if hit else float(enc._alpha))
                feats.add_lookup(j, values, self.onehot_slots(j))
            else:
                raise ValueError(f"node {node!r}: unsupported encoder {type(enc).__name__} "
                                 f"for parent {name!r}")
        return feats


# ---------------------------------------------------------------------------------------
# Prediction models -> (lin_w [S, C], lin_b [C], quad_w [S, S, C] | None, cube {} | None,
# trees | None)


def _linear_terms(coef_kxp, intercept_k, feats, channels, C):
    """sum_i coef[c, i] * f_i + intercept[c] into channel channels[c]."""
    B = feats.matrix  # [p, S]
    lin_w = np.zeros((feats.S, C))
    lin_b = np.zeros(C)
    for row, (coef, b) in enumerate(zip(coef_kxp, intercept_k)):
        lin_w[:, channels[row]] += B.T @ coef
        lin_b[channels[row]] += b
    return lin_w, lin_b


def _poly_terms(powers, coef_kxq, intercept_k, feats, channels, C, node):
    """Polynomial features of degree <= 3 (``PolynomialFeatures.powers_``) -> lin_w, lin_b,
    quad_w and cube {(a, b, c) sorted slots: f64[C] weight}: a product of three features
    (each a linear map of slots) expands into slot monomials."""
    if powers.sum(axis=1).max(initial=0) > 3:
        raise ValueError(f"node {node!r}: PolynomialFeatures of degree "
                         f"{int(powers.sum(axis=1).max())} is not supported (at most 3)")
    B = feats.matrix  # [p, S]
    S = feats.S
    lin_w, lin_b, quad_w = np.zeros((S, C)), np.zeros(C), np.zeros((S, S, C))
    cube = {}
    for row, (coef, b) in enumerate(zip(coef_kxq, intercept_k)):
        c = channels[row]
        lin_b[c] += b
        for term, w in zip(powers, coef):
            idx = np.repeat(np.arange(len(term)), term)  # the features multiplied
            if len(idx) == 0:
                lin_b[c] += w
            elif len(idx) == 1:
                lin_w[:, c] += w * B[idx[0]]
            elif len(idx) == 2:
                quad_w[:, :, c] += w * np.outer(B[idx[0]], B[idx[1]])
            else:
                for s0 in np.flatnonzero(B[idx[0]]):
                    for s1 in np.flatnonzero(B[idx[1]]):
                        for s2 in np.flatnonzero(B[idx[2]]):
                            key = tuple(sorted((int(s0), int(s1), int(s2))))
                            cube.setdefault(key, np.zeros(C))[c] += \
                                w * B[idx[0], s0] * B[idx[1], s1] * B[idx[2], s2]
    return lin_w, lin_b, quad_w, cube


def _logit_rows(model, channels):
    """LogisticRegression -> (coef [K, p], intercept [K], channels [K]) giving softmax logits."""
    coef, intercept = np.asarray(model.coef_), np.asarray(model.intercept_)
    if len(model.classes_) == 2:  # predict_proba = [1 - s, s] = softmax([0, logit])
        return coef[:1], intercept[:1], [channels[1]]
    if getattr(model, "multi_class", "auto") == "ovr":
        raise ValueError("one-vs-rest LogisticRegression is not supported")
    return coef, intercept, list(channels)


def _tree_slots(tree: TreeArrays, feats: _Features, conv: _Converter) -> TreeArrays:
    """Trees converted with features = DoWhy feature indices -> features = our slots; splits
    on lookup features become chains of one-hot splits."""
    out = []
    for t in range(tree.n_trees):
        feat = tree.feature[t].tolist()
        thr = tree.threshold[t].tolist()
        left = tree.left[t].tolist()
        right = tree.right[t].tolist()
        value = list(tree.value[t])
        for i in range(len(feat)):
            if left[i] == i and right[i] == i:  # leaf
                feat[i] = 0
                continue
            f = feat[i]
            if feats.slot[f] >= 0:
                feat[i] = feats.slot[f]
                continue
            j, values = feats.lookup[f]
            goes_left = values.astype(np.float32) <= np.float32(thr[i])  # [L]
            onehot = conv.onehot_slots(j)
            members, inside, outside = np.flatnonzero(goes_left), left[i], right[i]
            if len(members) > len(values) - len(members):  # test the smaller set
                members, inside, outside = np.flatnonzero(~goes_left), right[i], left[i]
            if len(members) == 0:  # every level goes to `outside`: one always-false test
                feat[i], thr[i], left[i], right[i] = onehot[0], 2.0, outside, outside
                continue
            # chain: node i tests members[0], new nodes test the others; x == level -> inside
            chain = [i] + list(range(len(feat), len(feat) + len(members) - 1))
            for r, level in enumerate(members):
                nxt = chain[r + 1] if r + 1 < len(chain) else outside
                if r > 0:
                    feat.append(0), thr.append(0.0), left.append(0), right.append(0)
                    value.append(np.zeros_like(value[0]))
                n = chain[r]
                feat[n], thr[n], left[n], right[n] = onehot[level], 0.5, nxt, inside
        out.append((feat, thr, left, right, value))
    return pack_trees(out, tree.value.shape[-1])


def _model_terms(conv, node, parent_names, wrapper, channels, classifier):
    """-> dict(lin_w, lin_b, quad_w, cube, trees) of one prediction model (None: unused)."""
    C = conv.C
    kind = type(wrapper).__name__
    if kind == "LinearRegressionWithFixedParameter" and not classifier:
        feats = conv.features(node, parent_names, wrapper)
        coef = np.ravel(np.asarray(wrapper.coefficients, np.float64))
        lin_w, lin_b = _linear_terms([coef], [float(wrapper.intercept)], feats, channels, C)
        return {"lin_w": lin_w, "lin_b": lin_b, "quad_w": None, "cube": None, "trees": None}
    model = getattr(wrapper, "sklearn_model", None)
    if model is None:
        raise ValueError(f"node {node!r}: unsupported prediction model {kind}")
    feats = conv.features(node, parent_names, wrapper)
    name = type(model).__name__
    identity = np.arange(len(feats.slot))
    if classifier:
        class_channels = [conv.code_of(conv.names.index(node), c, node, "class")
                          for c in model.classes_]
    if name == "Pipeline":
        steps = [type(s).__name__ for _, s in model.steps]
        if len(steps) != 2 or steps[0] != "PolynomialFeatures":
            raise ValueError(f"node {node!r}: unsupported pipeline {steps}")
        poly, last = model.steps[0][1], model.steps[1][1]
        if classifier and steps[1] == "LogisticRegression":
            coef, b, ch = _logit_rows(last, class_channels)
        elif not classifier and steps[1] in _LINEAR_REGRESSORS:
            coef, b, ch = [np.ravel(last.coef_)], [float(np.ravel(last.intercept_)[0])], channels
        else:
            raise ValueError(f"node {node!r}: unsupported pipeline {steps}")
        lin_w, lin_b, quad_w, cube = _poly_terms(poly.powers_, coef, b, feats, ch, C, node)
        return {"lin_w": lin_w, "lin_b": lin_b, "quad_w": quad_w, "cube": cube, "trees": None}
    if not classifier and name in _LINEAR_REGRESSORS:
        lin_w, lin_b = _linear_terms([np.ravel(model.coef_)],
                                     [float(np.ravel(model.intercept_)[0])], feats, channels, C)
        return {"lin_w": lin_w, "lin_b": lin_b, "quad_w": None, "cube": None, "trees": None}
    if classifier and name == "LogisticRegression":
        coef, b, ch = _logit_rows(model, class_channels)
        lin_w, lin_b = _linear_terms(coef, b, feats, ch, C)
        return {"lin_w": lin_w, "lin_b": lin_b, "quad_w": None, "cube": None, "trees": None}
    zero_w = np.zeros((conv.S, C))
    if not classifier and name == "HistGradientBoostingRegressor":
        tree, bias = hgb_regressor_arrays(model, identity, C, channel=channels[0])
    elif classifier and name == "HistGradientBoostingClassifier":
        tree, bias = hgb_classifier_arrays(model, identity, C, channel_map=class_channels)
    elif name in ("DecisionTreeRegressor", "DecisionTreeClassifier") and \
            classifier == (name == "DecisionTreeClassifier"):
        tree = decision_tree_arrays(model, identity, C,
                                    channel_map=class_channels if classifier else channels[0])
        bias = np.zeros(C)
    else:
        raise ValueError(f"node {node!r}: unsupported "
                         f"{'classifier' if classifier else 'regressor'} {name}")
    return {"lin_w": zero_w, "lin_b": np.asarray(bias, np.float64), "quad_w": None,
            "cube": None, "trees": _tree_slots(tree, feats, conv)}


# ---------------------------------------------------------------------------------------
# The SCM


def _fit_pool(pool, m, rng):
    reps, rest = divmod(m, len(pool))
    return np.concatenate([np.tile(pool, reps), rng.choice(pool, rest, replace=False)])


def from_dowhy(gcm_model, table, *, seed: int = 0, tree_budget: int | None = 2**13) -> SCM:
    """Convert a fitted DoWhy ``gcm.StructuralCausalModel`` over ``table``'s columns into a
    k = 1 SCM (see the module docstring for what is supported). Raises ValueError naming the
    node for anything it cannot represent exactly. Tree ensembles are turned into lookup
    tables (``causaljax.scm.trees.tabulate_trees``, grids of at most ``tree_budget`` cells; the
    same outputs, much faster to evaluate); ``tree_budget=None`` keeps them all as traversal
    arrays."""
    from dowhy.gcm.causal_mechanisms import (
        AdditiveNoiseModel,
        ClassifierFCM,
        DiscreteAdditiveNoiseModel,
    )
    from dowhy.gcm.stochastic_models import EmpiricalDistribution

    conv = _Converter(table)
    names, d, S, C = conv.names, len(conv.names), conv.S, conv.C
    graph = gcm_model.graph
    if set(graph.nodes) != set(names):
        raise ValueError(f"the DoWhy graph's nodes {sorted(graph.nodes)} are not the table's "
                         f"columns {sorted(names)}")
    parents = np.zeros((d, d), bool)
    for a, b in graph.edges:
        parents[names.index(a), names.index(b)] = True
    order, depth = topological_depth(parents)

    kind = np.zeros(d, np.int32)
    is_integer = np.zeros(d, bool)
    pools = [None] * d
    terms = [None] * d
    for j, node in enumerate(names):
        mech = gcm_model.causal_mechanism(node)
        mech_name = type(mech).__name__
        categorical = conv.n_levels[j] > 0
        if not parents[:, j].any():
            if not isinstance(mech, EmpiricalDistribution) or mech.data is None:
                raise ValueError(f"root node {node!r}: unsupported mechanism {mech_name} "
                                 "(need a fitted EmpiricalDistribution)")
            data = np.ravel(mech.data)
            if categorical:
                data = np.array([conv.code_of(j, v, node, "root") for v in data], np.float64)
            kind[j], pools[j] = ROOT, data.astype(np.float64)
            continue
        parent_names = sorted(graph.predecessors(node))  # DoWhy's get_ordered_predecessors
        if graph.nodes[node].get("parents_during_fit") != parent_names:
            raise ValueError(f"node {node!r} is not fitted or its parents changed since fitting")
        if isinstance(mech, ClassifierFCM):
            if not categorical:
                raise ValueError(f"node {node!r}: ClassifierFCM on a numeric column")
            kind[j] = CATEGORICAL
            pools[j] = None
            wrapper = mech.classifier_model
            terms[j] = _model_terms(conv, node, parent_names, wrapper, None, classifier=True)
            seen = {conv.code_of(j, c, node, "class") for c in wrapper.classes}
            unseen = [l for l in range(conv.n_levels[j]) if l not in seen]
            terms[j]["lin_b"][unseen] = NEG_LOGIT
        elif type(mech) in (AdditiveNoiseModel, DiscreteAdditiveNoiseModel):
            if categorical:
                raise ValueError(f"node {node!r} is categorical but DoWhy modelled it with "
                                 f"{mech_name} (fit DoWhy on dowhy_frame(table))")
            if not isinstance(mech.noise_model, EmpiricalDistribution) or mech.noise_model.data is None:
                raise ValueError(f"node {node!r}: {mech_name} with noise model "
                                 f"{type(mech.noise_model).__name__} is not supported "
                                 "(need a fitted EmpiricalDistribution)")
            kind[j] = NUMERIC
            is_integer[j] = isinstance(mech, DiscreteAdditiveNoiseModel)
            pools[j] = np.ravel(mech.noise_model.data).astype(np.float64)
            terms[j] = _model_terms(conv, node, parent_names, mech.prediction_model, [0],
                                    classifier=False)
        else:
            raise ValueError(f"node {node!r}: unsupported mechanism {mech_name}")

    # noise pools -> f32[d, m]
    sizes = [len(p) for p in pools if p is not None]
    m = max(sizes, default=1)
    rng = np.random.default_rng(seed)
    noise = np.zeros((d, m), np.float64)
    for j, pool in enumerate(pools):
        if pool is not None:
            noise[j] = pool if len(pool) == m else _fit_pool(pool, m, rng)

    # families
    use_quad = any(t is not None and t["quad_w"] is not None for t in terms)
    n_cube = max((len(t["cube"]) for t in terms if t is not None and t["cube"]), default=0)
    trees = [t["trees"] if t is not None else None for t in terms]
    stacked = stack_trees(trees, n_channels=C) if any(t is not None for t in trees) else None
    fam = empty_families(1, d, S, C, quad=use_quad, n_cube=n_cube,
                         n_trees=stacked.n_trees if stacked else 0,
                         tree_nodes=stacked.n_nodes if stacked else 1)
    for j, t in enumerate(terms):
        if t is None:
            continue
        fam["lin_w"][0, j] = t["lin_w"]
        fam["lin_b"][0, j] = t["lin_b"]
        if t["quad_w"] is not None:
            fam["quad_w"][0, j] = t["quad_w"]
        if t["cube"]:  # padding monomials keep slot 0 and weight 0
            fam["cube_idx"][0, j, :len(t["cube"])] = list(t["cube"])
            fam["cube_w"][0, j, :len(t["cube"])] = list(t["cube"].values())
    if stacked:
        for f in ("feature", "threshold", "left", "right", "value"):
            fam[f"tree_{f}"][0] = getattr(stacked, f)

    scm = SCM(
        parents=parents[None], order=order[None], depth=np.array([depth], np.int32),
        kind=kind[None], n_levels=conv.n_levels.astype(np.int32)[None],
        is_integer=is_integer[None], noise=noise.astype(np.float32)[None],
        slot_column=conv.slot_column[None], slot_level=conv.slot_level[None],
        **fam, tree_depth=stacked.depth if stacked else 0,
    )
    validate(scm)
    scm = as_jax(scm)
    if stacked and tree_budget is not None:
        scm = tabulate_trees(scm, budget=tree_budget)
        validate(scm)
    return scm
