"""The tests' access to the scripts in ``benchmarks/`` (test helpers, not fusion API).

The scripts import each other as plain modules (``import tasks``), as ``python benchmarks/X.py``
allows. A test imports one with :func:`on_path` held for as long as it uses it, so that its lazy
imports resolve, or runs it in a subprocess with :func:`run_script`, as ``make bench`` does, so
that the process-wide JAX settings a script makes stay out of the tests.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


@contextlib.contextmanager
def on_path() -> Iterator[None]:
    """``benchmarks/`` on ``sys.path`` inside the block, and only there."""
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield
    finally:
        sys.path.remove(str(BENCHMARKS))


def run_script(name: str, *args: str, timeout: float = 600) -> str:
    """``python benchmarks/<name> <args>`` from the repository root; its stdout, or a failed
    assertion with the end of its output."""
    proc = subprocess.run(
        [sys.executable, str(BENCHMARKS / name), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout
