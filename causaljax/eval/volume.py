"""The synthetic-volume study: grid of runs, one run, and the result columns.

A run is a JSON-able config dict (see ``grid``); ``VolumeStudy.run(config)`` fine-tunes one
method at one synthetic volume on one fold of one dataset and returns its result columns.
Fitted generators, tasks and zero-shot scores are cached per (dataset, fold), so the runs of
one fold share them (and ``causalmix`` and ``scm`` share the same fitted SCMs).

Volume v = synthetic rows per real training row in every fine-tuning step. ``real`` and
``zeroshot`` use no synthetic rows: they run once per fold, at volume 0.

Val-test gap (``val_test_gap``): 1 - Spearman rho of the checkpoints' validation vs test
ranking, each by ROC-AUC with ties broken by log loss (``eval.metrics.val_test_gap``); defined
for every fine-tuned run (each records at least two checkpoints, and at least
``min_checkpoints`` = 5 unless its steps run out first), NaN for zero-shot (one checkpoint).
``val_test_gap_auc`` is the ROC-AUC-only correlation, NaN where the validation ROC-AUC is the
same at every checkpoint (common with 16 validation rows); ``checkpoints`` counts them.
"""

from __future__ import annotations

import json
import time
import zlib

import jax
import numpy as np

from causaljax import progress
from causaljax.data import low_data_splits
from causaljax.eval.metrics import headroom_improvement, relative_improvement
from causaljax.finetune import methods as methods_lib
from causaljax.finetune.batched import finetune_runs
from causaljax.finetune.generators import TFM, make_source
from causaljax.finetune.loop import FinetuneConfig, finetune, make_task, step_shape, zero_shot

MIN_POOL_ROWS = 256  # pool size floor for generators that draw once per run


def grid(datasets, folds: int, methods, volumes, base: dict) -> list[dict]:
    """Run configs: per dataset and fold, zeroshot / real at volume 0 and every synthetic
    method at every volume > 0. ``base`` holds the settings shared by all runs."""
    out = []
    for dataset in datasets:
        for fold in range(folds):
            for name in methods:
                m = methods_lib.get(name)
                vols = [v for v in volumes if v > 0] if m.synthetic else [0.0]
                out += [dict(base, dataset=dataset, fold=fold, method=name, volume=float(v))
                        for v in vols]
    return out


class VolumeStudy:
    """Runs configs of ``grid`` against in-memory tables and one pretrained TFM."""

    def __init__(self, tables: dict, params, mc, *, generator_options: dict | None = None):
        self.tables, self.params, self.mc = tables, params, mc
        self.generator_options = generator_options or {}
        self._tasks, self._zero, self._sources = {}, {}, {}
        self._dataset = None

    def _enter(self, dataset: str) -> None:
        """Drop the cached generators and compiled programs of the previous dataset. A long
        study otherwise accumulates thousands of XLA executables (each fold's SCMs have their
        own shapes) until LLVM cannot map more memory (seen after ~30 min on a CPU). That limit
        is the CPU backend's (its programs are machine code mapped into the process), so on an
        accelerator the compiled programs stay, shared by the next datasets' equal shapes."""
        if dataset != self._dataset:
            if self._dataset is not None:
                self._sources.clear()
                self._tasks.clear()
                if jax.default_backend() == "cpu":
                    jax.clear_caches()
            self._dataset = dataset

    # ---- cached pieces, keyed by (dataset, fold, ...) ----
    @staticmethod
    def fold_id(cfg) -> tuple:
        """What identifies a run's fold: its split, task and fitted generators."""
        return cfg["dataset"], cfg["fold"], cfg["n_train"], cfg["n_val"], cfg["seed"]

    def table(self, cfg):
        """The Table a run trains and is scored on (subclasses may make one per fold)."""
        return self.tables[cfg["dataset"]]

    def split(self, cfg):
        table = self.tables[cfg["dataset"]]  # the study's own table: the one stratified on
        return low_data_splits(table, cfg["n_train"], cfg["n_val"], cfg["fold"] + 1,
                               cfg["seed"])[cfg["fold"]]

    def task(self, cfg):
        key = self.fold_id(cfg)
        if key not in self._tasks:
            self._tasks[key] = make_task(self.table(cfg), self.split(cfg), self.mc,
                                         max_test=cfg.get("max_test"), seed=cfg["seed"])
        return self._tasks[key]

    def zero_shot(self, cfg) -> dict:
        key = self.fold_id(cfg)
        if key not in self._zero:
            self._zero[key] = zero_shot(self.params, self.mc, self.task(cfg),
                                        select=self.selection(cfg))
        return self._zero[key]

    def fold_key(self, cfg):
        key = jax.random.key(cfg["seed"])
        key = jax.random.fold_in(key, zlib.crc32(cfg["dataset"].encode()) & 0x7FFFFFFF)
        return jax.random.fold_in(key, cfg["fold"])

    def run_key(self, cfg):
        """Key of a run's own randomness (step batches, synthetic draws). A config's
        ``run_seed`` (default 0) varies it alone: same split, same fitted generators."""
        key = jax.random.fold_in(self.fold_key(cfg), 1)
        return jax.random.fold_in(key, cfg["run_seed"]) if cfg.get("run_seed") else key

    def source(self, cfg, generator: str, n_rows: int):
        pool = 0 if generator == "scm" else n_rows  # the SCM source draws inside the step
        key = (*self.fold_id(cfg), generator, pool)
        if key not in self._sources:
            train = self.table(cfg).take(self.split(cfg).train)
            opts = self.generator_options.get(generator, {})
            gkey = jax.random.fold_in(self.fold_key(cfg), zlib.crc32(generator.encode()))
            with progress.timed("fitting generators"):  # the study log's stage timings
                self._sources[key] = make_source(generator, train, key=gkey, n_rows=pool,
                                                 tfm=TFM(self.params, self.mc), **opts)
        return self._sources[key]

    # ---- one run ----
    def _config(self, cfg: dict, m) -> FinetuneConfig:
        return FinetuneConfig(steps=cfg["steps"], lr=cfg["lr"], eval_every=cfg["eval_every"],
                              patience=cfg["patience"], volume=cfg["volume"],
                              min_checkpoints=cfg.get("min_checkpoints",
                                                      FinetuneConfig.min_checkpoints),
                              real_in_step=m.real_in_step, pool_rows=cfg.get("pool_rows"),
                              seed=cfg["seed"])

    def _inputs(self, cfg: dict, m, fc: FinetuneConfig):
        """(task, source or None, run key, synthetic rows per step) of a fine-tuning run."""
        task = self.task(cfg)
        shape = step_shape(int(task.x_train.shape[0]), fc)
        source = (self.source(cfg, m.generator, max(MIN_POOL_ROWS, shape.n_syn))
                  if m.synthetic else None)
        return task, source, self.run_key(cfg), shape.n_syn

    def _row(self, cfg: dict, r=None, n_syn: int = 0) -> dict:
        """Result columns of a run from its fine-tuning ``Result`` (None: zero-shot)."""
        zs = self.zero_shot(cfg)
        row = dict(zero_shot_auc=zs["test_auc"], zero_shot_val_auc=zs["val_auc"])
        if r is None:
            row.update(test_auc=zs["test_auc"], val_auc=zs["val_auc"], val_test_gap=np.nan,
                       val_test_gap_auc=np.nan, checkpoints=1,
                       best_step=0, steps=0, stopped="none", nan_steps=0, n_syn_step=0,
                       val_curve=[zs["val_auc"]], test_curve=[zs["test_auc"]])
        else:
            row.update(test_auc=r.test_auc, val_auc=r.val_auc, val_test_gap=r.val_test_gap,
                       val_test_gap_auc=r.val_test_gap_auc, checkpoints=len(r.history),
                       best_step=r.best_step, steps=r.steps, stopped=r.stopped,
                       nan_steps=r.nan_steps, n_syn_step=n_syn,
                       val_curve=[h["val_auc"] for h in r.history],
                       test_curve=[h["test_auc"] for h in r.history])
        row["rel_improvement"] = float(relative_improvement(row["test_auc"], zs["test_auc"]))
        row["headroom"] = float(headroom_improvement(row["test_auc"], zs["test_auc"]))
        return row

    def fit(self, cfg: dict):
        """Fine-tune the run ``cfg``: (Result, synthetic rows per step), or (None, 0) for a
        method that does not fine-tune."""
        self._enter(cfg["dataset"])
        m = methods_lib.get(cfg["method"])
        if not m.finetune:
            return None, 0
        fc = self._config(cfg, m)
        task, source, key, n_syn = self._inputs(cfg, m, fc)
        return finetune(self.params, self.mc, task, fc, source=source, key=key,
                        select=self.selection(cfg)), n_syn

    def selection(self, cfg):
        """The checkpoint-selection score of ``finetune`` (None: validation ROC-AUC)."""
        return None

    def run(self, cfg: dict) -> dict:
        t0 = time.perf_counter()
        row = self._row(cfg, *self.fit(cfg))
        row["seconds"] = time.perf_counter() - t0
        return row

    # ---- several folds of one configuration, vmapped ----
    def run_group(self, cfgs: list[dict]) -> list[dict]:
        """The runs of ``cfgs`` (the same configuration on several folds) as one vmapped
        program (``finetune.batched.finetune_runs``); ``seconds`` is the group's time / R."""
        t0 = time.perf_counter()
        self._enter(cfgs[0]["dataset"])
        m = methods_lib.get(cfgs[0]["method"])
        if not m.finetune:
            return [self.run(c) for c in cfgs]
        fc = self._config(cfgs[0], m)
        if any(self._config(c, m) != fc for c in cfgs):
            raise ValueError("run_group needs configs that differ only in their fold")
        inputs = [self._inputs(c, m, fc) for c in cfgs]
        for c in cfgs:
            self.zero_shot(c)
        results = finetune_runs(self.params, self.mc, [i[0] for i in inputs], fc,
                                sources=[i[1] for i in inputs] if m.synthetic else None,
                                keys=[i[2] for i in inputs])
        seconds = (time.perf_counter() - t0) / len(cfgs)
        return [dict(self._row(c, r, i[3]), seconds=seconds)
                for c, r, i in zip(cfgs, results, inputs)]


def fold_group(cfg: dict) -> str:
    """Group key of ``run_group``: the config without its fold."""
    return json.dumps({k: v for k, v in cfg.items() if k != "fold"}, sort_keys=True, default=str)
