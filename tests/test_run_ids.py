"""The SCM generator's edge rule, DAG sampler and repair level are part of a study's run ids: a folder
written before issue 23 resumes with the old settings, and a study resumed with other
settings reruns its SCM runs and reports only its own rows."""

import inspect

import pandas as pd
from scripts import load_script

from causaljax.eval.cli import (
    PRE_ISSUE_23,
    REPAIR_ALPHA,
    base_config,
    current_rows,
    scm_options,
)
from causaljax.eval.study import ResultsStore, run_grid, run_id
from causaljax.eval.volume import grid
from causaljax.finetune.generators.scm import fit_scms

OLD = ["--edge-rule", "legacy", "--dag-sampler", "pairs", "--repair-alpha", "0"]


def _configs(*argv):
    args = load_script("experiments", "scale_volume").parse_args(list(argv))
    fam = args.families.split(",")
    base = base_config(args, "model@x", fam, args.k_scms)
    return args, base, grid(["pima", "titanic"], 2, ["real", "causalmix", "scm"], [0, 1, 4],
                            base)


def test_old_settings_keep_the_run_ids_of_before_issue_23():
    args, base, _ = _configs(*OLD)
    assert not set(PRE_ISSUE_23) & set(base)  # the config of the earlier studies
    old_style = dict(n_train=64, n_val=args.n_val, steps=30, lr=1e-4, eval_every=5,
                     patience=8, max_test=1024, seed=0, model="model@x", k_scms=8,
                     n_bootstrap=5, families="linear,trees")
    assert base == old_style
    assert scm_options(args, 8, ["linear"])["scm"] == dict(
        k=8, n_bootstrap=5, families=("linear",), edge_rule="legacy", dag_sampler="pairs",
        repair_alpha=0.0)


def test_every_other_setting_gets_run_ids_of_its_own():
    _, _, old = _configs(*OLD)
    ids_old = {run_id(c) for c in old}
    seen = [ids_old]
    for argv in ([], ["--edge-rule", "legacy"], ["--dag-sampler", "pairs"],
                 ["--repair-alpha", "0.01" if REPAIR_ALPHA else "0.05"]):
        args, base, configs = _configs(*argv)
        assert len(configs) == len(old)
        ids = {run_id(c) for c in configs}
        assert all(not (ids & other) for other in seen), argv  # no id shared with any other
        seen.append(ids)
        opts = scm_options(args, 8, ["linear"])["scm"]
        assert (opts["edge_rule"], opts["dag_sampler"], opts["repair_alpha"]) == (
            args.edge_rule, args.dag_sampler, args.repair_alpha)
    _, base, _ = _configs()
    assert (base["edge_rule"], base["dag_sampler"]) == ("adjacency", "runs")  # the defaults
    params = inspect.signature(fit_scms).parameters  # what the SCM generator receives
    assert params["edge_rule"].default == "adjacency" and params["dag_sampler"].default == "runs"
    assert params["repair_alpha"].default == REPAIR_ALPHA
    assert set(PRE_ISSUE_23) <= set(params)


def test_resumed_with_another_rule_reruns_and_reports_only_its_rows(tmp_path):
    store = ResultsStore(tmp_path)

    def fake(tag):
        return lambda cfg: {"test_auc": 0.5, "tag": tag}

    _, old_base, old = _configs(*OLD)
    assert len(run_grid(old, fake("old"), store, progress=False)) == len(old)
    assert run_grid(old, fake("again"), store, progress=False) == []  # resumes: all reused
    _, new_base, new = _configs()
    ran = run_grid(new, fake("new"), store, progress=False)
    assert len(ran) == len(new)  # not one old row reused
    df = store.read()
    assert len(df) == len(old) + len(new)
    mine = current_rows(df, new_base)
    assert len(mine) == len(new) and set(mine.tag) == {"new"}
    theirs = current_rows(df, old_base)
    assert len(theirs) == len(old) and set(theirs.tag) == {"old"}
    # a store written before the columns existed reads as the old settings
    legacy = pd.DataFrame({"method": ["real", "scm"], "tag": ["a", "b"]})
    assert len(current_rows(legacy, old_base)) == 2 and current_rows(legacy, new_base).empty
