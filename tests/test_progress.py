"""causaljax.progress: bars on stderr only when asked for or on a terminal; stage timings."""

import numpy as np
import pandas as pd
import pytest

from causaljax import progress
from causaljax.data import Table


@pytest.fixture(autouse=True)
def default_setting(monkeypatch):
    monkeypatch.delenv("CAUSALJAX_PROGRESS", raising=False)
    progress.enable(None)
    yield
    progress.enable(None)


def test_enabled_follows_flag_environment_and_terminal(monkeypatch):
    assert not progress.enabled()  # pytest's captured stderr is not a terminal
    monkeypatch.setenv("CAUSALJAX_PROGRESS", "1")
    assert progress.enabled()
    with progress.disabled():
        assert not progress.enabled()
    assert progress.enabled()
    monkeypatch.setenv("CAUSALJAX_PROGRESS", "0")
    assert not progress.enabled()
    progress.enable(True)  # the flag wins over the environment
    assert progress.enabled()


def _frame(n=120, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = a + 0.5 * rng.normal(size=n)
    return pd.DataFrame({"a": a, "b": b, "t": (b + rng.normal(size=n) > 0).astype(int)})


def test_discovery_and_fit_bars_on_stderr_only_when_enabled(monkeypatch, capsys):
    import jax

    from causaljax import discovery, scm

    table = Table.from_pandas(_frame(), target="t")
    P_quiet = discovery.edge_probabilities(table, n_bootstrap=3, n_jobs=1)
    dags = discovery.sample_dags(P_quiet, 2, key=jax.random.key(0))
    scm.fit(table, dags, key=jax.random.key(1), families=("trees",), tree_max_iter=5)
    quiet = capsys.readouterr()
    assert quiet.err == "" and quiet.out == ""

    monkeypatch.setenv("CAUSALJAX_PROGRESS", "1")
    P = discovery.edge_probabilities(table, n_bootstrap=3, n_jobs=1)
    np.testing.assert_array_equal(P, P_quiet)  # the bar changes nothing
    scm.fit(table, dags, key=jax.random.key(1), families=("trees",), tree_max_iter=5)
    shown = capsys.readouterr()
    assert "discovery" in shown.err and "/6" in shown.err  # 3 resamples x (PC, FCI)
    assert "scm.fit trees" in shown.err and shown.out == ""


def test_timed_stages_accumulate_and_clear():
    progress.take_times()
    progress.add_time("generators", 1.5)
    progress.add_time("generators", 2.0)
    with progress.timed("other"):
        pass
    times = progress.take_times()
    assert times["generators"] == pytest.approx(3.5) and 0 <= times["other"] < 1
    assert progress.take_times() == {}
