"""Grid runner with an append-only results store that survives SIGKILL and resumes.

A run is a ``dict`` config (JSON-able). Its id is a hash of the config, so the same config
always has the same id. ``ResultsStore`` keeps ONE Parquet file per finished run in
``<dir>/runs/<run_id>.parquet``, written to a temp file, fsynced and renamed into place, so a
file is either complete or absent. ``run_grid`` skips ids already stored: rerunning an
interrupted study finishes exactly the runs of an uninterrupted one, none twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd


def run_id(config: dict) -> str:
    """Stable 16-hex id of a JSON-able config (key order does not matter)."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


class ResultsStore:
    """Append-only store: one Parquet file per run under ``root/runs``."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self.runs = self.root / "runs"

    def done(self) -> set[str]:
        """Ids of the finished runs."""
        if not self.runs.is_dir():
            return set()
        return {p.stem for p in self.runs.glob("*.parquet")}

    def write(self, rid: str, row: dict) -> Path:
        """Store one run atomically (temp file + fsync + rename). Returns its path."""
        self.runs.mkdir(parents=True, exist_ok=True)
        path = self.runs / f"{rid}.parquet"
        tmp = self.runs / f".{rid}.{os.getpid()}.tmp"
        pd.DataFrame([{"run_id": rid, **row}]).to_parquet(tmp, index=False)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        return path

    def restore(self, table: str | os.PathLike) -> int:
        """Write back the runs of a results table (``results.parquet``: one row per run, with
        ``run_id``) that are missing under ``runs/``: a fresh clone of a study whose table was
        committed (``runs/`` is not) resumes where it stopped. -> the number restored."""
        if not Path(table).is_file():
            return 0
        done = self.done()
        rows = pd.read_parquet(table)
        missing = rows[~rows.run_id.isin(done)] if "run_id" in rows else rows.iloc[:0]
        for _, row in missing.iterrows():
            self.write(row.run_id, row.drop("run_id").to_dict())
        return len(missing)

    @contextlib.contextmanager
    def outputs_lock(self):
        """Hold while reading the runs and writing the study's outputs from them: shards that
        share the store (``--shard i/n``, same ``--out``) take turns, so the last to write
        read last and its ``results.parquet`` holds every run (an exclusive ``flock`` on
        ``root/.outputs.lock``; released when the process dies)."""
        import fcntl

        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / ".outputs.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def read(self) -> pd.DataFrame:
        """All finished runs, one row each (empty frame if none)."""
        files = sorted(self.runs.glob("*.parquet")) if self.runs.is_dir() else []
        if not files:
            return pd.DataFrame()
        return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)


def shard(configs: Sequence[dict], index: int, count: int,
          group: Callable[[dict], object] | None = None) -> list[dict]:
    """The configs of shard ``index`` of ``count``. Configs with the same ``group(config)``
    (default: same dataset and fold, so they share fitted generators) stay together; groups
    are dealt round robin in the order of their hash, so the split does not depend on the
    order of ``configs``."""
    if not 0 <= index < count:
        raise ValueError(f"shard index {index} is outside 0..{count - 1}")
    group = group or (lambda c: (c.get("dataset"), c.get("fold")))
    keys = sorted({run_id({"group": group(c)}) for c in configs})
    mine = set(keys[index::count])
    return [c for c in configs if run_id({"group": group(c)}) in mine]


def run_grid(configs: Sequence[dict], run: Callable[[dict], dict], store: ResultsStore, *,
             progress: bool = True, after_run: Callable[[int], None] | None = None,
             desc: str = "runs", group: Callable[[dict], object] | None = None,
             run_group: Callable[[list], list] | None = None) -> list[str]:
    """Run every config whose id is not stored yet, storing each result as it finishes.

    ``run(config) -> dict`` of result columns (the config's own keys are added). A config
    that appears twice runs once. With ``group`` and ``run_group``, the pending configs with
    the same ``group(config)`` run together: ``run_group(configs) -> [dict, ...]`` (one per
    config, e.g. vmapped folds); each result is still stored as its own run. ``after_run(i)``
    is called after the i-th stored run (a test hook). Returns the ids run by this call."""
    done = store.done()
    pending, seen = [], set(done)
    for cfg in configs:
        rid = run_id(cfg)
        if rid not in seen:
            pending.append((rid, cfg))
            seen.add(rid)
    batches = [[item] for item in pending]
    if group is not None and run_group is not None:
        by_group: dict = {}
        for item in pending:
            by_group.setdefault(run_id({"group": group(item[1])}), []).append(item)
        batches = list(by_group.values())
    bar = None
    if progress:  # shown on a terminal only (causaljax.progress)
        from causaljax.progress import bar as progress_bar

        bar = progress_bar(total=len(pending), desc=desc, unit="run", leave=True)
    ran = []
    try:
        for batch in batches:
            if bar is not None:
                bar.set_postfix_str(_short(batch[0][1]) + (f" (+{len(batch) - 1})"
                                                           if len(batch) > 1 else ""))
            t0 = time.perf_counter()
            results = (run_group([cfg for _, cfg in batch]) if len(batch) > 1
                       else [run(batch[0][1])])
            for (rid, cfg), result in zip(batch, results, strict=True):
                row = {**cfg, **result}
                row.setdefault("seconds", (time.perf_counter() - t0) / len(batch))
                store.write(rid, row)
                ran.append(rid)
                if bar is not None:
                    bar.update(1)
                if after_run is not None:
                    after_run(len(ran))
    finally:
        if bar is not None:
            bar.close()
    return ran


def _short(cfg: dict) -> str:
    keys = ("dataset", "fold", "method", "volume")
    return " ".join(str(cfg[k]) for k in keys if k in cfg)
