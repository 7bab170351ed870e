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


def bad_input_exits_2(folder: str, name: str, argv: list, out, capsys) -> str:
    """Run ``name``'s main with ``argv`` + ``--out out``: assert exit code 2 and that nothing
    was written to ``out``; return what it printed to stderr."""
    assert load_script(folder, name).main(list(argv) + ["--out", str(out)]) == 2
    assert not out.exists()
    return capsys.readouterr().err
