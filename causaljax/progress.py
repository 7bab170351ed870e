"""Progress bars and stage timings of long calls.

Bars are tqdm's, written to stderr, and shown only when stderr is a terminal (so logs and
pipes stay clean). Turn them off everywhere with ``causaljax.progress.enable(False)`` (or
``with causaljax.progress.disabled(): ...``), with ``CAUSALJAX_PROGRESS=0`` in the
environment, or with a script's ``--no-progress``; ``CAUSALJAX_PROGRESS=1`` shows them even
when stderr is not a terminal. Calls with a bar:

  * ``discovery.edge_probabilities``: one tick per PC / FCI run (resamples x algorithms);
  * ``scm.fit``: one tick per fitted tree task (the families' loop over (node, parents));
  * pretraining (``experiments/pretrain_tfm.py``): one tick per optimizer step;
  * every study script (``experiments/*.py``): one tick per run.

Stage timings: ``add_time(name, seconds)`` / ``timed(name)`` accumulate wall time spent in a
named part of a larger stage (e.g. fitting the synthetic generators inside a study's runs);
``take_times()`` returns and clears the totals (the study scripts log them).
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections import defaultdict

_enabled: bool | None = None  # None: decide from the environment and the terminal
_times: dict[str, float] = defaultdict(float)


def enable(flag: bool | None = True) -> None:
    """Show (True) or hide (False) every progress bar of this process; None: the default
    (``CAUSALJAX_PROGRESS``, else whether stderr is a terminal)."""
    global _enabled
    _enabled = None if flag is None else bool(flag)


def enabled() -> bool:
    """Whether bars are shown now."""
    if _enabled is not None:
        return _enabled
    env = os.environ.get("CAUSALJAX_PROGRESS", "").strip().lower()
    if env:
        return env not in ("0", "false", "no", "off")
    stream = sys.stderr
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # a closed or replaced stream
        return False


@contextlib.contextmanager
def disabled(flag: bool = True):
    """No bars inside the block when ``flag`` (the previous setting comes back after)."""
    global _enabled
    before = _enabled
    if flag:
        _enabled = False
    try:
        yield
    finally:
        _enabled = before


def bar(iterable=None, *, total=None, desc: str | None = None, unit: str = "it",
        leave: bool = False, show: bool = True, **kwargs):
    """A tqdm bar on stderr, disabled unless ``show`` and ``enabled()``; inner bars
    (``leave=False``) disappear when done."""
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave,
                disable=not (show and enabled()), file=sys.stderr, dynamic_ncols=True,
                **kwargs)


def echo(message: str) -> None:
    """Print a line to stdout without breaking a bar that is being drawn."""
    from tqdm import tqdm

    tqdm.write(message, file=sys.stdout)
    sys.stdout.flush()


def add_time(name: str, seconds: float) -> None:
    """Add ``seconds`` to the running total of stage ``name``."""
    _times[name] += float(seconds)


@contextlib.contextmanager
def timed(name: str):
    """Add the wall time of the block to stage ``name``."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        add_time(name, time.perf_counter() - t0)


def take_times() -> dict[str, float]:
    """The accumulated stage totals (seconds), cleared."""
    out = dict(_times)
    _times.clear()
    return out
