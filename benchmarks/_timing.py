"""Timing helpers shared by the benchmark scripts: a timed sampler wrapper and a compile counter.

The scripts in ``benchmarks/`` run as ``python benchmarks/X.py`` from the repository root, which puts
this folder on ``sys.path``, so they import this module as ``_timing``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import optuna
from jax import monitoring

COMPILE_EVENT = "backend_compile"
"""Substring of the JAX monitoring event that times one XLA compilation.

jax 0.10.2 records ``/jax/core/compile/backend_compile_duration`` (keyword ``fun_name``) once per
compilation, eager primitives (``jit(convert_element_type)`` and the like) included; a hit in the
persistent compilation cache records no such event.
"""


class TimedSampler(optuna.samplers.BaseSampler):
    """Delegate every call to ``inner`` and add up the wall time spent inside it.

    ``seconds`` is the total; ``per_trial`` maps each trial number to the time spent on it.
    """

    def __init__(self, inner: optuna.samplers.BaseSampler) -> None:
        self.inner = inner
        self.seconds = 0.0
        self.per_trial: dict[int, float] = defaultdict(float)

    def _timed(self, method: str, trial: Any, *args: Any) -> Any:
        start = time.perf_counter()
        try:
            return getattr(self.inner, method)(*args)
        finally:
            elapsed = time.perf_counter() - start
            self.seconds += elapsed
            self.per_trial[trial.number] += elapsed

    def infer_relative_search_space(self, study, trial):
        return self._timed("infer_relative_search_space", trial, study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._timed("sample_relative", trial, study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._timed(
            "sample_independent", trial, study, trial, param_name, param_distribution
        )

    def before_trial(self, study, trial):
        self._timed("before_trial", trial, study, trial)

    def after_trial(self, study, trial, state, values):
        self._timed("after_trial", trial, study, trial, state, values)

    def reseed_rng(self):
        self.inner.reseed_rng()


class CompileCounter:
    """Count XLA compilations, and their seconds, while the ``with`` block runs.

    Listens to JAX's monitoring events whose name contains :data:`COMPILE_EVENT`; ``by_function``
    counts them by the ``fun_name`` JAX reports (``jit(_mixture_log_prob)``, ...).
    """

    def __init__(self) -> None:
        self.count = 0
        self.seconds = 0.0
        self.by_function: Counter[str] = Counter()
        self._active = False

    def _listener(self, event: str, duration_secs: float, **kwargs: Any) -> None:
        if self._active and COMPILE_EVENT in event:
            self.count += 1
            self.seconds += duration_secs
            self.by_function[str(kwargs.get("fun_name", "?"))] += 1

    def __enter__(self) -> CompileCounter:
        self._active = True
        monitoring.register_event_duration_secs_listener(self._listener)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._active = False
        monitoring.unregister_event_duration_listener(self._listener)


def machine_details() -> list[tuple[str, str]]:
    """``(what, value)`` rows describing this machine and the library versions."""
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return [
        ("nproc", str(len(os.sched_getaffinity(0)))),
        ("CPU", cpu),
        ("python", platform.python_version()),
        ("jax", jax.__version__),
        ("optuna", optuna.__version__),
        ("jax backend", jax.default_backend()),
        ("load average (1, 5, 15 min) at the end", ", ".join(f"{v:.2f}" for v in os.getloadavg())),
    ]


def machine_table() -> str:
    rows = machine_details()
    return "\n".join(["| machine | |", "|---|---|", *(f"| {k} | {v} |" for k, v in rows)]) + "\n"


def write_report(table: str, path) -> str:
    """Print a markdown report and write it to ``path`` (its folder is created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(table)
    print()
    print(table)
    print(f"wrote {path}")
    return table


@dataclass(frozen=True)
class Timed:
    result: object
    first: float  # seconds of the warm-up call (compiles)
    median: float  # seconds, median of the repeats
    compiles: int  # XLA compilations during the repeats


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    """The median wall time of ``repeats`` calls of ``fn``, in seconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def timed(fn: Callable[[], object], repeats: int) -> Timed:
    start = time.perf_counter()
    result = fn()
    first = time.perf_counter() - start
    times = []
    with CompileCounter() as compiles:
        for _ in range(repeats):
            start = time.perf_counter()
            result = fn()
            times.append(time.perf_counter() - start)
    return Timed(result, first, float(np.median(times)), compiles.count)


def ms(seconds: float) -> str:
    return f"{1e3 * seconds:.1f}" if seconds >= 0.01 else f"{1e3 * seconds:.2f}"


def revision() -> str:
    """The commit this ran on, and whether ``fusion/`` had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "fusion"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return f"{head or 'unknown'}{' + uncommitted changes in fusion/' if dirty else ''}"


def run_summary(start: float, compiles) -> list[str]:
    """The closing lines of a report: wall time and compilations since ``start``, the revision,
    and the machine table."""
    return [
        f"Whole run: {time.perf_counter() - start:.0f} s, {compiles.count} XLA compilations "
        f"({compiles.seconds:.1f} s). fusion revision: {revision()}.",
        "",
        machine_table(),
    ]
