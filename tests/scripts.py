"""Load a script of ``experiments/`` or ``benchmarks/`` as a module, to call its ``main`` in
process (tests do not restart the interpreter the way ``python script.py`` would)."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script(folder: str, name: str):
    """The module of ``<repo>/<folder>/<name>.py``."""
    spec = importlib.util.spec_from_file_location(name, ROOT / folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
