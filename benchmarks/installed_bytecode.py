"""Benchmarks time the command line as it runs once installed: with its bytecode compiled.

pip compiles a package's bytecode when it installs it (a wheel, the container image), but this
project's own package is installed editable, and where ``PYTHONDONTWRITEBYTECODE`` is set (as on
the CI machines) Python then compiles every one of its modules again on every run: about 0.1 s
of start-up no installed copy pays. `compile_package` writes that bytecode once, as pip would.
"""

from __future__ import annotations

import compileall
import sys
from pathlib import Path

import together_reconcile


def compile_package() -> str:
    """Compile the package's bytecode if Python will not; a line saying what was done."""
    package = Path(together_reconcile.__file__).parent
    if not sys.flags.dont_write_bytecode:
        return f"bytecode: written by Python itself on first import ({package})"
    if not compileall.compile_dir(package, quiet=1):
        raise SystemExit(f"bytecode: compiling {package} failed (see above)")
    return (
        f"bytecode: compiled {package} first, as pip does on install "
        "(PYTHONDONTWRITEBYTECODE is set: Python would recompile it on every run)"
    )
