"""Synthetic-data generators behind one interface.

A generator is a function registered under a name:

    make_source(train: Table, *, key, n_rows: int, tfm: TFM | None, **options) -> source

returning a ``causaljax.finetune.sources`` source (``draw(key, n) -> f32[n, d]`` in the
Table's encoded space, target column included). ``n_rows`` is the pool size for generators
that draw once per run; the SCM generator ignores it (it draws fresh rows inside each step).

To add a generator: write ``causaljax/finetune/generators/<name>.py`` with a function
decorated ``@register("<name>")`` and import it at the bottom of this file. It then exists as
a fine-tuning method "<name>" (real rows + its synthetic rows) in ``causaljax.finetune.methods``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

GENERATORS: dict[str, Callable] = {}


class TFM(NamedTuple):
    """The pretrained model, for generators that need it (TabEBM)."""
    params: dict
    mc: object  # causaljax.tfm.model.ModelConfig


def register(name: str):
    def wrap(fn):
        GENERATORS[name] = fn
        return fn
    return wrap


def make_source(name: str, train, *, key, n_rows: int, tfm: TFM | None = None, **options):
    """The source of generator ``name`` fitted to ``train``."""
    if name not in GENERATORS:
        raise ValueError(f"unknown generator {name!r}; known: {sorted(GENERATORS)}")
    return GENERATORS[name](train, key=key, n_rows=n_rows, tfm=tfm, **options)


from causaljax.finetune.generators import copula, ctgan, scm, tabebm  # noqa: F401
