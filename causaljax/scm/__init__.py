"""Structural causal models: the fixed-shape ``SCM`` pytree, fitting, and DoWhy import."""

from causaljax.scm.fit import FAMILIES, fit
from causaljax.scm.types import CATEGORICAL, NUMERIC, ROOT, SCM, validate


def from_dowhy(*args, **kwargs):
    """Convert a fitted DoWhy gcm model to an ``SCM`` (see ``causaljax.scm.dowhy``)."""
    from causaljax.scm.dowhy import from_dowhy as convert  # optional: needs dowhy

    return convert(*args, **kwargs)


__all__ = ["CATEGORICAL", "FAMILIES", "NUMERIC", "ROOT", "SCM", "fit", "from_dowhy", "validate"]
