"""Per-trial sampler time of ``FusionSampler`` next to ``TPESampler(multivariate=True)``.

One process, one run, on a 7-D mixed space (float, log float, int, log int, stepped float, stepped
int, categorical) with a cheap analytic objective, so the time is the samplers' own:

* cold: the first ``FusionSampler`` study, including every JAX compilation it triggers;
* warm: further ``FusionSampler`` studies in the same process (same space, other seeds);
* TPE: ``TPESampler(multivariate=True)`` on the same space, in the same run.

The machine is noisy, so warm Fusion and TPE studies alternate (``--repeats`` pairs, seeds 1, 2,
...): each pair runs back to back under the same load, and the figure is the median over pairs of
the per-pair ratio of sampler time per trial, with its range.

Sampler time is measured inside the sampler by a delegating wrapper (:class:`_timing.TimedSampler`);
wall time is ``time.perf_counter`` around ``study.optimize``. XLA compilations during the cold study
are counted with a JAX monitoring listener (:class:`_timing.CompileCounter`).

JAX's persistent compilation cache stays off unless ``--jax-cache DIR`` is given, so "cold" means a
process that compiles everything itself.

Writes a markdown table to ``benchmarks/results/sampler_overhead.md`` (``--out``) and prints it.

Usage: ``python benchmarks/sampler_overhead.py [--trials N] [--out FILE] [--jax-cache DIR]``
"""

from __future__ import annotations

import argparse
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
import optuna
from _timing import CompileCounter, TimedSampler, machine_table, write_report

from fusion.optuna import FusionSampler

HERE = Path(__file__).resolve().parent
TARGET_RATIO = 1.5

SUGGESTIONS = [
    {"x": 1.0, "lr": 3e-3, "depth": 5, "width": 64, "frac": 0.35, "batch": 64, "act": "relu"},
    {"x": 1.5, "lr": 1e-3, "depth": 6, "width": 128, "frac": 0.3, "batch": 32, "act": "gelu"},
    {"x": 0.5, "lr": 1e-2, "depth": 4, "width": 32, "frac": 0.5, "batch": 128, "act": "relu"},
    {"x": 2.0, "lr": 3e-4, "depth": 8, "width": 256, "frac": 0.2, "batch": 64, "act": "tanh"},
    {"x": 1.2, "lr": 5e-3, "depth": 5, "width": 96, "frac": 0.4, "batch": 96, "act": "gelu"},
]
ACT_PENALTY = {"relu": 0.0, "gelu": 0.2, "tanh": 0.6, "sigmoid": 1.0}


def objective(trial: optuna.Trial) -> float:
    """A cheap analytic objective on the 7-D mixed space (minimum 0 at the optimum)."""
    x = trial.suggest_float("x", -3.0, 3.0)
    lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
    depth = trial.suggest_int("depth", 1, 12)
    width = trial.suggest_int("width", 4, 512, log=True)
    frac = trial.suggest_float("frac", 0.0, 1.0, step=0.05)
    batch = trial.suggest_int("batch", 8, 256, step=8)
    act = trial.suggest_categorical("act", list(ACT_PENALTY))
    return (
        (x - 1.2) ** 2
        + (math.log10(lr) + 2.5) ** 2
        + 0.1 * abs(depth - 5)
        + 0.5 * abs(math.log2(width) - 6)
        + (frac - 0.35) ** 2
        + abs(batch - 64) / 64
        + ACT_PENALTY[act]
    )


@dataclass(frozen=True)
class Run:
    label: str
    trials: int
    wall_seconds: float
    sampler_seconds: float
    per_trial: np.ndarray  # sampler seconds of each trial
    best: float

    @property
    def sampler_ms(self) -> float:
        return 1e3 * self.sampler_seconds / self.trials

    @property
    def wall_ms(self) -> float:
        return 1e3 * self.wall_seconds / self.trials


def run_study(label: str, sampler: optuna.samplers.BaseSampler, trials: int) -> Run:
    timed = TimedSampler(sampler)
    study = optuna.create_study(direction="minimize", sampler=timed)
    start = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    wall = time.perf_counter() - start
    per_trial = np.array([timed.per_trial.get(i, 0.0) for i in range(trials)])
    print(
        f"{label:<14} {trials} trials: wall {wall:7.2f} s, sampler {timed.seconds:7.2f} s "
        f"({1e3 * timed.seconds / trials:.1f} ms/trial), best {study.best_value:.4f}",
        flush=True,
    )
    return Run(label, trials, wall, timed.seconds, per_trial, study.best_value)


def markdown(
    cold: Run,
    pairs: Sequence[tuple[Run, Run]],
    compiles: CompileCounter,
    warm_compiles: CompileCounter,
) -> str:
    ratios = np.array([warm.sampler_ms / tpe.sampler_ms for warm, tpe in pairs])
    ratio = float(np.median(ratios))
    verdict = "meets" if ratio <= TARGET_RATIO else "misses"
    rows = [("Fusion, cold (first study, with JAX compilation)", cold)]
    for i, (warm, tpe) in enumerate(pairs, start=1):
        rows += [
            (f"Fusion, warm (pair {i}, seed {i})", warm),
            (f"TPE multivariate (pair {i})", tpe),
        ]
    lines = [
        f"Sampler overhead on a 7-D mixed space, {cold.trials} trials per study, one process. "
        "Sampler time is measured inside the sampler; wall time includes the objective and "
        "Optuna's storage.",
        "",
        "| study | sampler total (s) | sampler per trial (ms) | median trial (ms) "
        "| max trial (ms) | wall per trial (ms) | best value |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(
            f"| {name} | {r.sampler_seconds:.2f} | {r.sampler_ms:.1f} | "
            f"{1e3 * np.median(r.per_trial):.1f} | {1e3 * r.per_trial.max():.1f} | "
            f"{r.wall_ms:.1f} | {r.best:.4f} |"
        )
    top = ", ".join(f"`{name}` {n}" for name, n in compiles.by_function.most_common(6))
    lines += [
        "",
        "| figure | value |",
        "|---|---|",
        f"| warm Fusion / TPE, sampler time per trial, median over {len(pairs)} pairs | "
        f"{ratio:.2f} (range {ratios.min():.2f}-{ratios.max():.2f}; {verdict} the target "
        f"<= {TARGET_RATIO}) |",
        f"| XLA compilations during the cold study | {compiles.count} |",
        f"| compile seconds during the cold study | {compiles.seconds:.1f} |",
        f"| most compiled functions (cold study) | {top or 'none'} |",
        f"| XLA compilations during the warm studies | {warm_compiles.count} "
        f"({warm_compiles.seconds:.1f} s) |",
        "",
        machine_table(),
    ]
    return "\n".join(lines)


def figures(
    cold: Run, pairs: Sequence[tuple[Run, Run]], compiles: CompileCounter
) -> dict[str, float]:
    """The headline figures: trials per study, XLA compilations (and their seconds) during the
    cold study, the median over pairs of warm Fusion and TPE sampler ms per trial, and the median,
    min and max of the per-pair ratio warm Fusion / TPE."""
    ratios = np.array([warm.sampler_ms / tpe.sampler_ms for warm, tpe in pairs])
    return {
        "trials": cold.trials,
        "cold_compiles": compiles.count,
        "cold_compile_seconds": compiles.seconds,
        "fusion_ms": float(np.median([warm.sampler_ms for warm, _ in pairs])),
        "tpe_ms": float(np.median([tpe.sampler_ms for _, tpe in pairs])),
        "ratio": float(np.median(ratios)),
        "ratio_min": float(ratios.min()),
        "ratio_max": float(ratios.max()),
    }


def report(argv: Sequence[str] | None = None) -> tuple[str, dict[str, float]]:
    """Run the benchmark; the markdown report and :func:`figures`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=300, help="trials per study (default 300)")
    parser.add_argument(
        "--out", type=Path, default=HERE / "results" / "sampler_overhead.md", help="output file"
    )
    parser.add_argument(
        "--jax-cache", type=Path, default=None, help="turn on JAX's persistent cache in this dir"
    )
    parser.add_argument(
        "--repeats", type=int, default=3, help="pairs of warm Fusion and TPE studies (default 3)"
    )
    args = parser.parse_args(argv)
    if args.trials < 1 or args.repeats < 1:
        parser.error("--trials and --repeats must be positive")

    jax.config.update("jax_enable_x64", True)
    if args.jax_cache is not None:
        jax.config.update("jax_compilation_cache_dir", str(args.jax_cache))
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    with CompileCounter() as compiles:
        cold = run_study("Fusion cold", FusionSampler(SUGGESTIONS, seed=0), args.trials)
    pairs = []
    with CompileCounter() as warm_compiles:
        for seed in range(1, args.repeats + 1):
            warm = run_study(
                f"Fusion warm {seed}", FusionSampler(SUGGESTIONS, seed=seed), args.trials
            )
            tpe = optuna.samplers.TPESampler(seed=seed, multivariate=True)
            pairs.append((warm, run_study(f"TPE {seed}", tpe, args.trials)))

    table = markdown(cold, pairs, compiles, warm_compiles)
    return write_report(table, args.out), figures(cold, pairs, compiles)


def main(argv: Sequence[str] | None = None) -> str:
    return report(argv)[0]


if __name__ == "__main__":
    main()
