"""The compared methods: how each one fine-tunes (or not) and with which synthetic rows.

    zeroshot   the pretrained TFM, no fine-tuning
    real       standard fine-tuning on real rows only
    causalmix  CausalMixFT: real rows + fresh SCM rows drawn inside every step
    scm        fine-tuning on SCM rows only (the real rows are only the evaluation context)
    copula     real rows + Gaussian-copula rows (a simple statistical augmenter, ~TableAugment)
    tabebm     real rows + TabEBM rows (SGLD under our TFM as the energy model)
    ctgan      real rows + CTGAN rows (optional extra)

Any generator registered in ``causaljax.finetune.generators`` that is not listed here is a
method too: real rows + that generator's rows.
"""

from __future__ import annotations

from dataclasses import dataclass

from causaljax.finetune.generators import GENERATORS


@dataclass(frozen=True)
class Method:
    name: str
    finetune: bool = True  # False: evaluate the pretrained model as is
    generator: str | None = None  # synthetic rows from this generator (None: no synthetic rows)
    real_in_step: bool = True  # real rows in the training batches

    @property
    def synthetic(self) -> bool:
        return self.generator is not None


METHODS = {
    "zeroshot": Method("zeroshot", finetune=False),
    "real": Method("real"),
    "causalmix": Method("causalmix", generator="scm"),
    "scm": Method("scm", generator="scm", real_in_step=False),
    "copula": Method("copula", generator="copula"),
    "tabebm": Method("tabebm", generator="tabebm"),
    "ctgan": Method("ctgan", generator="ctgan"),
}


def names() -> list[str]:
    return sorted(set(METHODS) | set(GENERATORS))


def get(name: str) -> Method:
    """The method called ``name``; ValueError listing the valid names otherwise."""
    if name in METHODS:
        return METHODS[name]
    if name in GENERATORS:
        return Method(name, generator=name)
    raise ValueError(f"unknown method {name!r}; valid methods: {', '.join(names())}")
