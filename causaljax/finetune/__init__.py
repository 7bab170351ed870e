"""Fine-tuning the TFM on real + synthetic rows: the jitted loop, sources, generators, methods."""

from causaljax.finetune import methods
from causaljax.finetune.generators import GENERATORS, TFM, make_source, register
from causaljax.finetune.loop import (
    FinetuneConfig,
    Result,
    StepShape,
    Task,
    finetune,
    make_task,
    step_shape,
    zero_shot,
)
from causaljax.finetune.sources import PoolSource, SCMSource

__all__ = [
    "GENERATORS", "TFM", "FinetuneConfig", "PoolSource", "Result", "SCMSource", "StepShape",
    "Task", "finetune", "make_source", "make_task", "methods", "register", "step_shape",
    "zero_shot",
]
