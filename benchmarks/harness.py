"""Does fusing beat TPE and the prior-guided methods, and is it fast? The benchmark harness.

Protocol
--------
Following piBO (Hvarfner et al., ICLR 2022) and BOPrO (Souza et al., ECML-PKDD 2021), every task of
``tasks.py`` (synthetic functions with known optima and scikit-learn tasks) is paired with priors of
controlled quality from ``priors.py``: ``strong`` (narrow, on the optimum), ``weak`` (wide, near
it), ``wrong`` (narrow, on a poor region), and for the real tasks also ``hand-written``. A *cell*
is a task with one prior quality. In each cell and for each seed ``s`` the suggestions are
``priors.suggestions(task, quality, s)``: draws from the generating prior rounded as a model would
write them, new for every seed like repeated model calls (hand-written ones are the same for every
seed). Every method sees only these suggestions: ``TPE+enqueue`` enqueues them, the prior-guided
baselines get ``priors.fitted_prior(task, suggestions)``, a density fitted to them, and
``FusionSampler`` gets them as they are.

Each study is ``optuna.create_study(direction="minimize")`` with in-memory storage and ``n_trials``
trials of ``task.objective(tasks.suggest(trial, task.space))``. After every trial the harness
records the best-so-far regret ``min_{t <= n} value_t - optimum`` (``tasks.regret``) and the time
spent inside the sampler on that trial (``_timing.TimedSampler``). Studies run as independent jobs
in a pool of ``--jobs`` spawned processes, the longest first; each worker turns on float64 JAX and
JAX's persistent compilation cache in ``.jax_cache/``.

Methods, all on the same seeds ``0 .. seeds - 1``:

* ``Random``: ``optuna.samplers.RandomSampler(seed=s)``;
* ``TPE``: ``optuna.samplers.TPESampler(multivariate=True, seed=s)``;
* ``TPE+enqueue``: the same TPE with the cell's suggestions enqueued as the first trials;
* ``piBO``, ``BOPrO``, ``PriorBand``: ``baselines.py`` (piBO: the acquisition times
  ``prior^(beta/n)``, ``beta = n_trials / 10``; BOPrO: ``P(x) M(x)^(t/beta)``, ``beta = 10``;
  PriorBand: prior, incumbent and uniform sampling mixed with adapted weights);
* ``Fusion``: ``FusionSampler(suggestions, seed=s)``, the geometric pool with the default
  ``HyperbolicDecay`` schedule ``alpha_n = 0.75 / (1 + n/25)``;
* Fusion variants, geometric with another schedule of ``fusion.adaptive``: ``Fusion-const``
  (``Constant(0.5)``), ``Fusion-piBOdecay`` (``PiBODecay(beta=n_trials/10)``,
  ``alpha_n = min(1, beta/n)``), ``Fusion-BOPrOdecay`` (``BOPrODecay()``,
  ``alpha_n = 1/(1 + n/10)``), ``Fusion-rank`` (``RankPerformance()``), ``Fusion-credit``
  (``PredictiveCredit()``); ``Fusion-linear``, the linear pool with the default schedule; and
  ``Fusion+enqueue``, ``Fusion`` with the suggestions enqueued first, as ``TPE+enqueue`` does
  (it separates what fusing adds from what evaluating the suggestions themselves adds).

``Random`` and ``TPE`` do not read the prior: they run once per task and seed and the same studies
stand in every cell of that task.

Statistics
----------
Let ``r[s, n]`` be the best-so-far regret of seed ``s`` after ``n`` trials.

1. ``regret.md``: per cell and method, the median and the interquartile range ``[q25, q75]`` over
   seeds of ``r[:, n]`` at ``n`` in 10, 25, 50, 100 (those ``<= n_trials``) and at ``n_trials``
   (``numpy.quantile``, linear interpolation).
2. ``speedup.md``, trials to reach TPE's final median: the target is ``m = median_s r_TPE[s, N]``
   with ``N = n_trials``. A seed's first-hit trial is ``T_s = min{n : r[s, n] <= m}``; a seed that
   never gets there is censored and counted as ``N + 1``, later than any trial. The statistic is
   the lower median of the ``T_s``, the ``ceil(S/2)``-th smallest of ``S`` seeds, so it is a trial
   number exactly when at least half of the seeds reach the target, and "never" otherwise (with
   the lower median, TPE reaches its own median by trial ``N``). The speed-up is ``N / T``. Since
   ``r`` is non-increasing, ``T <= n`` if and only if at least half of the seeds have
   ``r[s, n] <= m``.
3. ``wins.md``: per cell, ``Fusion`` against every other method, paired by seed on the final
   regret ``r[:, N]``: a two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
   ``zero_method="zsplit"``) at level 0.05. A significant result is a win when the median of the
   paired differences ``r_Fusion - r_other`` is negative (lower regret), a loss when positive;
   otherwise, and when every pair is equal, a tie. The exact two-sided test cannot reach
   ``p < 0.05`` with fewer than 6 seeds (its smallest p-value is ``2 / 2^S``), so with fewer seeds
   every verdict is a tie. The same counts for every Fusion variant against the baselines that
   read the suggestions.
4. ``curves_<task>.png``: median best-so-far regret with its IQR band, one panel per prior quality,
   log scale with zero drawn at a floor (half the task's smallest positive regret).
5. ``overhead.md``: sampler milliseconds per trial, median over all trials of all studies of a
   method, and its ratio to TPE's. Studies run two at a time on a shared machine, and each worker
   compiles Fusion's JAX code once (less with a warm ``.jax_cache/``), so this is a rough figure;
   ``sampler_overhead.py`` measures it properly.
6. ``summary.md``: settings, wall time, the fusion revision, the machine, the headline table (also
   printed) and the issue's targets next to the measured values, each marked met or missed:

   * strong prior: Fusion reaches TPE's ``N``-trial median within 20 trials (``N = 100`` in
     ``--full``);
   * wrong prior: Fusion's median regret at ``N`` trials ``<= 1.1 x`` TPE's;
   * Fusion beats each prior-guided baseline (piBO, BOPrO, PriorBand) in most cells.

``results.json.gz`` holds every study (task, quality, method, seed, best-so-far regret after each
trial, sampler seconds per trial, wall seconds) and is rewritten every few seconds, so an
interrupted run goes on with ``--resume`` and the tables can be rebuilt with ``--render-only``.

Modes and runtimes
------------------
Measured on the 2-core machine of ``summary.md`` (AMD EPYC), two workers, while other work shared
the machine (load average 1-4):

* ``--smoke``: 1 seed, 8 trials, ``branin`` and ``mixed``, methods Random, TPE, TPE+enqueue, piBO,
  BOPrO, PriorBand, Fusion: 34 studies in about 25 s with a cold JAX cache. With 8 trials every
  sampler is still in its 10 start-up trials, so this checks the plumbing, not the methods.
* ``--quick`` (the default): 10 seeds, 50 trials, the synthetic tasks and the first real task
  (``svc_digits``), every method: 16 cells, 2020 studies; 1860 of them (all methods but
  ``Fusion+enqueue``) took 205 s and the tables 15 s, about 4-5 minutes in all with a warm JAX
  cache. Cold, the first Fusion study on each
  space in each worker compiles for 5-20 s (1-5 s from a warm cache), once for the geometric pool
  and once for the linear one.
* ``--full``: 20 seeds, 100 trials, every task (20 cells), every method: 5040 studies in 711 s
  on 2 cores at load 2-3 (the committed ``benchmarks/results/harness/``).

The exact Wilcoxon test enumerates all ``2^S`` sign flips when the pairs have ties or zeros
(``S <= 13``; scipy's choice), which is why the quick mode's tables take seconds.

Command lines (from the repository root)::

    .venv/bin/python benchmarks/harness.py --quick
    .venv/bin/python benchmarks/harness.py --full --jobs 2
    .venv/bin/python benchmarks/harness.py --full --resume          # go on after an interruption
    .venv/bin/python benchmarks/harness.py --full --render-only     # rebuild the tables
    .venv/bin/python benchmarks/harness.py --quick --tasks branin --methods TPE Fusion --seeds 3

Outputs go to ``--out``: ``benchmarks/results/harness/`` for ``--full``, its ``quick/`` and
``smoke/`` subfolders for the other modes.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from functools import cache
from multiprocessing import get_context
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import scipy.stats

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
JAX_CACHE = ROOT / ".jax_cache"
DEFAULT_OUT = HERE / "results" / "harness"

QUALITIES = ("strong", "weak", "wrong")
HAND_WRITTEN = "hand-written"
CHECKPOINTS = (10, 25, 50, 100)
LEVEL = 0.05
STRONG_TRIALS = 20  # the target: the strong prior reaches TPE's final median this early
WRONG_FACTOR = 1.1  # the target: wrong-prior median final regret <= 1.1 x TPE's

PRIOR_FREE = ("Random", "TPE")
BASELINES = ("TPE+enqueue", "piBO", "BOPrO", "PriorBand")
PRIOR_GUIDED = ("piBO", "BOPrO", "PriorBand")
FUSION = "Fusion"
FUSION_VARIANTS = (
    "Fusion",
    "Fusion-const",
    "Fusion-piBOdecay",
    "Fusion-BOPrOdecay",
    "Fusion-rank",
    "Fusion-credit",
    "Fusion-linear",
    "Fusion+enqueue",
)
ENQUEUED = ("TPE+enqueue", "Fusion+enqueue")
METHODS = (*PRIOR_FREE, *BASELINES, *FUSION_VARIANTS)
MAIN_METHODS = (*PRIOR_FREE, *BASELINES, FUSION)
RESULTS_VERSION = 1
SAVE_EVERY_SECONDS = 10.0


# -------------------------------------------------------------------------------------------------
# Settings and the command line
# -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    mode: str
    seeds: int
    trials: int
    tasks: tuple[str, ...]
    methods: tuple[str, ...]
    out: Path
    jobs: int
    jax_cache: Path = JAX_CACHE
    resume: bool = False
    render_only: bool = False


@dataclass(frozen=True)
class ModeDefaults:
    seeds: int
    trials: int
    tasks: tuple[str, ...] | None  # None: every task of tasks.TASK_NAMES
    real_tasks: int | None  # with tasks None: keep only this many real tasks (None: all)
    methods: tuple[str, ...]
    out: Path


MODES = {
    "smoke": ModeDefaults(1, 8, ("branin", "mixed"), 0, MAIN_METHODS, DEFAULT_OUT / "smoke"),
    "quick": ModeDefaults(10, 50, None, 1, METHODS, DEFAULT_OUT / "quick"),
    "full": ModeDefaults(20, 100, None, None, METHODS, DEFAULT_OUT),
}


def parse_args(argv: Sequence[str] | None = None) -> Settings:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    mode = parser.add_mutually_exclusive_group()
    for name, help_ in (
        ("smoke", "tiny run for the test: 1 seed, 8 trials, 2 tasks"),
        ("quick", "the default: 10 seeds, 50 trials, synthetic tasks and one real task"),
        ("full", "20 seeds, 100 trials, every task, cell and method"),
    ):
        mode.add_argument(f"--{name}", dest="mode", action="store_const", const=name, help=help_)
    parser.add_argument("--seeds", type=int, help="number of seeds, 0 .. seeds-1")
    parser.add_argument("--trials", type=int, help="trials per study")
    parser.add_argument("--tasks", nargs="+", help="task names (default: by mode)")
    parser.add_argument("--methods", nargs="+", help=f"methods among {', '.join(METHODS)}")
    parser.add_argument("--out", type=Path, help="output folder (default: by mode)")
    parser.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument(
        "--jax-cache", type=Path, default=JAX_CACHE, help="JAX's persistent compilation cache"
    )
    parser.add_argument(
        "--resume", action="store_true", help="skip the studies already in results.json.gz"
    )
    parser.add_argument(
        "--render-only", action="store_true", help="rebuild the outputs from results.json.gz"
    )
    args = parser.parse_args(argv)
    name = args.mode or "quick"
    defaults = MODES[name]
    seeds = defaults.seeds if args.seeds is None else args.seeds
    trials = defaults.trials if args.trials is None else args.trials
    if seeds < 1:
        parser.error(f"--seeds must be >= 1, got {seeds}")
    if trials < 1:
        parser.error(f"--trials must be >= 1, got {trials}")
    if args.jobs < 1:
        parser.error(f"--jobs must be >= 1, got {args.jobs}")
    methods = tuple(args.methods) if args.methods else defaults.methods
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose among {', '.join(METHODS)}")
    if args.tasks:
        task_names = tuple(args.tasks)
    elif args.render_only:
        task_names = ()  # taken from results.json.gz
    else:
        task_names = default_tasks(defaults)
    return Settings(
        mode=name,
        seeds=seeds,
        trials=trials,
        tasks=task_names,
        methods=tuple(dict.fromkeys(methods)),
        out=args.out if args.out is not None else defaults.out,
        jobs=args.jobs,
        jax_cache=args.jax_cache,
        resume=args.resume,
        render_only=args.render_only,
    )


def default_tasks(defaults: ModeDefaults) -> tuple[str, ...]:
    if defaults.tasks is not None:
        return defaults.tasks
    import tasks

    # tasks.REAL_NAMES says which tasks are real without loading their tables
    real = [n for n in tasks.TASK_NAMES if n in tasks.REAL_NAMES]
    synthetic = [n for n in tasks.TASK_NAMES if n not in tasks.REAL_NAMES]
    if defaults.real_tasks is not None:
        real = real[: defaults.real_tasks]
    return (*synthetic, *real)


# -------------------------------------------------------------------------------------------------
# Jobs
# -------------------------------------------------------------------------------------------------


class Job(NamedTuple):
    """One study. ``quality`` is ``None`` for the methods that do not read the prior."""

    task: str
    quality: str | None
    method: str
    seed: int
    trials: int


def cells_of(task_names: Iterable[str], real: Mapping[str, bool]) -> list[tuple[str, str]]:
    """Every (task, prior quality) cell: strong, weak, wrong, and hand-written for real tasks."""
    return [
        (name, quality)
        for name in task_names
        for quality in (*QUALITIES, *((HAND_WRITTEN,) if real[name] else ()))
    ]


def make_jobs(
    cells: Sequence[tuple[str, str]], methods: Sequence[str], seeds: int, trials: int
) -> list[Job]:
    """The studies of a run: prior-free methods once per task and seed, the rest per cell."""
    jobs = []
    task_names = list(dict.fromkeys(task for task, _ in cells))
    for seed in range(seeds):
        for task in task_names:
            jobs += [Job(task, None, m, seed, trials) for m in methods if m in PRIOR_FREE]
            for cell_task, quality in cells:
                if cell_task == task:
                    jobs += [
                        Job(task, quality, m, seed, trials) for m in methods if m not in PRIOR_FREE
                    ]
    return jobs


# Sampler seconds per trial at 50 trials, measured roughly on 2 cores (quick mode's overhead.md),
# used only to start the long studies first.
_SAMPLER_COST = {
    "Random": 1e-4,
    "TPE": 0.002,
    "TPE+enqueue": 0.002,
    "piBO": 0.012,
    "BOPrO": 0.012,
    "PriorBand": 0.0015,
}
_DEFAULT_SAMPLER_COST = 0.004  # the Fusion variants


def order_jobs(jobs: Sequence[Job], eval_seconds: Mapping[str, float]) -> list[Job]:
    """Longest first: estimated cost ``trials * (evaluation seconds + sampler seconds)``."""

    def cost(job: Job) -> float:
        sampler = _SAMPLER_COST.get(job.method, _DEFAULT_SAMPLER_COST)
        return job.trials * (eval_seconds.get(job.task, 0.0) + sampler)

    return sorted(jobs, key=lambda j: (-cost(j), j.seed, j.task, j.quality or "", j.method))


def job_key(study: Mapping[str, Any]) -> tuple:
    return (study["task"], study["quality"], study["method"], study["seed"])


# -------------------------------------------------------------------------------------------------
# One study, in a worker process
# -------------------------------------------------------------------------------------------------


def init_worker(cache_dir: str) -> None:
    """Float64 JAX and the persistent compilation cache, in each worker process."""
    import jax
    import optuna

    jax.config.update("jax_enable_x64", True)
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    optuna.logging.set_verbosity(optuna.logging.WARNING)


@cache
def _task(name: str):
    import tasks

    return tasks.get_task(name)


def make_sampler(method: str, task, suggestions: list[dict[str, Any]], seed: int, trials: int):
    """The Optuna sampler of ``method`` for one study."""
    import optuna

    if method == "Random":
        return optuna.samplers.RandomSampler(seed=seed)
    if method in ("TPE", "TPE+enqueue"):
        return optuna.samplers.TPESampler(multivariate=True, seed=seed)
    if method in PRIOR_GUIDED:
        import baselines
        import priors

        prior = priors.fitted_prior(task, suggestions)
        if method == "piBO":
            return baselines.PiBOSampler(prior, n_trials=trials, seed=seed)
        if method == "BOPrO":
            return baselines.BOPrOSampler(prior, seed=seed)
        return baselines.PriorBandSampler(prior, seed=seed)
    if method in FUSION_VARIANTS:
        from fusion import adaptive
        from fusion.optuna import FusionSampler

        schedules: dict[str, Any] = {
            "Fusion": None,
            "Fusion-linear": None,
            "Fusion+enqueue": None,
            "Fusion-const": adaptive.Constant(0.5),
            "Fusion-piBOdecay": adaptive.PiBODecay(beta=trials / 10),
            "Fusion-BOPrOdecay": adaptive.BOPrODecay(),
            "Fusion-rank": adaptive.RankPerformance(),
            "Fusion-credit": adaptive.PredictiveCredit(),
        }
        pool = "linear" if method == "Fusion-linear" else "geometric"
        return FusionSampler(suggestions, method=pool, alpha=schedules[method], seed=seed)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def run_study(job: Job) -> dict[str, Any]:
    """Run one study and return its record for ``results.json.gz``."""
    import optuna
    import priors
    import tasks
    from _timing import TimedSampler

    task = _task(job.task)
    suggestions = [] if job.quality is None else priors.suggestions(task, job.quality, job.seed)
    sampler = TimedSampler(make_sampler(job.method, task, suggestions, job.seed, job.trials))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    if job.method in ENQUEUED:
        import baselines

        baselines.enqueue(study, suggestions)

    def objective(trial: optuna.Trial) -> float:
        return task.objective(tasks.suggest(trial, task.space))

    start = time.perf_counter()
    study.optimize(objective, n_trials=job.trials)
    wall = time.perf_counter() - start
    finished = sorted(study.trials, key=lambda t: t.number)
    regrets = [
        tasks.regret(task, t.value) if t.value is not None and math.isfinite(t.value) else math.inf
        for t in finished
    ]
    return {
        "task": job.task,
        "quality": job.quality,
        "method": job.method,
        "seed": job.seed,
        "trials": job.trials,
        "regret": np.minimum.accumulate(np.asarray(regrets, dtype=float)).tolist(),
        "sampler_seconds": [round(sampler.per_trial.get(t.number, 0.0), 7) for t in finished],
        "wall_seconds": round(wall, 4),
    }


# -------------------------------------------------------------------------------------------------
# Statistics (pure functions of best-so-far regret arrays)
# -------------------------------------------------------------------------------------------------


def checkpoints(n_trials: int) -> list[int]:
    """The trial counts reported: 10, 25, 50, 100 up to ``n_trials``, and ``n_trials`` itself."""
    if n_trials < 1:
        raise ValueError(f"n_trials must be >= 1, got {n_trials!r}")
    return sorted({n for n in CHECKPOINTS if n <= n_trials} | {n_trials})


class Spread(NamedTuple):
    median: float
    q25: float
    q75: float


def spread_at(curves: np.ndarray, n: int) -> Spread:
    """Median and interquartile range over seeds of ``curves[:, n - 1]`` (trial ``n``, 1-based).

    ``curves`` has shape ``(seeds, trials)``.
    """
    curves = _curves(curves)
    if not 1 <= n <= curves.shape[1]:
        raise ValueError(f"n must be a trial in 1..{curves.shape[1]}, got {n!r}")
    q25, median, q75 = np.quantile(curves[:, n - 1], [0.25, 0.5, 0.75])
    return Spread(float(median), float(q25), float(q75))


def first_hits(curves: np.ndarray, target: float) -> np.ndarray:
    """Per seed, the first trial (1-based) with ``curves[s, n - 1] <= target``; ``trials + 1`` for a
    seed that never gets there (censored)."""
    curves = _curves(curves)
    hit = curves <= target
    return np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, curves.shape[1] + 1)


class TimeToTarget(NamedTuple):
    trials: int | None  # the lower median of the first-hit trials; None: fewer than half reach
    reached: int  # seeds that reach the target
    seeds: int

    def speedup(self, n_trials: int) -> float | None:
        """``n_trials / trials``, or ``None`` when the target is not reached."""
        return None if self.trials is None else n_trials / self.trials


def time_to_target(curves: np.ndarray, target: float) -> TimeToTarget:
    """The lower median over seeds of the first trial at which best-so-far regret is ``<= target``.

    Censored seeds count as ``trials + 1``; the lower median (the ``ceil(S/2)``-th smallest of
    ``S`` values) is a trial number exactly when at least half of the seeds reach the target.
    """
    hits = first_hits(curves, target)
    n_trials = _curves(curves).shape[1]
    lower_median = int(np.sort(hits)[math.ceil(len(hits) / 2) - 1])
    reached = int(np.sum(hits <= n_trials))
    return TimeToTarget(None if lower_median > n_trials else lower_median, reached, len(hits))


class Verdict(NamedTuple):
    outcome: str  # "win", "tie" or "loss", for the first argument
    p_value: float
    median_difference: float  # median of ours - theirs (negative: ours lower, better)
    pairs: int


def paired_verdict(ours: Sequence[float], theirs: Sequence[float], level: float = LEVEL) -> Verdict:
    """Two-sided Wilcoxon signed-rank test of paired final regrets (lower is better).

    ``zero_method="zsplit"`` splits zero differences between the signs; all pairs equal is a tie
    with ``p = 1``. Significant at ``level`` and a negative median difference is a win, positive a
    loss; anything else a tie.
    """
    a = np.asarray(ours, dtype=float)
    b = np.asarray(theirs, dtype=float)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(
            f"ours and theirs must be 1-D of the same non-zero length, got {a.shape} and {b.shape}"
        )
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        raise ValueError("ours and theirs must be finite")
    difference = a - b
    median_difference = float(np.median(difference))
    if np.all(difference == 0):
        return Verdict("tie", 1.0, 0.0, len(a))
    p = float(scipy.stats.wilcoxon(a, b, zero_method="zsplit", alternative="two-sided").pvalue)
    if p < level and median_difference < 0:
        outcome = "win"
    elif p < level and median_difference > 0:
        outcome = "loss"
    else:
        outcome = "tie"
    return Verdict(outcome, p, median_difference, len(a))


def _curves(curves: np.ndarray) -> np.ndarray:
    curves = np.asarray(curves, dtype=float)
    if curves.ndim != 2 or curves.shape[0] == 0 or curves.shape[1] == 0:
        raise ValueError(f"curves must have shape (seeds, trials), got {curves.shape}")
    return curves


# -------------------------------------------------------------------------------------------------
# Results and rendering
# -------------------------------------------------------------------------------------------------


class Results:
    """The studies of a run, indexed by (task, quality, method, seed)."""

    def __init__(self, studies: Iterable[Mapping[str, Any]], settings: Mapping[str, Any]) -> None:
        self.settings = dict(settings)
        self.trials = int(settings["trials"])
        self.by_key = {job_key(s): s for s in studies if s["trials"] == self.trials}
        self.cells = [tuple(c) for c in settings["cells"]]
        self.seeds = list(range(int(settings["seeds"])))
        present = {k[2] for k in self.by_key}
        self.methods = [m for m in settings["methods"] if m in present]
        self.verdict_cache: dict[tuple[str, str], dict[tuple[str, str], Verdict]] = {}

    def studies(self, cell: tuple[str, str], method: str) -> dict[int, Mapping[str, Any]]:
        task, quality = cell
        q = None if method in PRIOR_FREE else quality
        found = {s: self.by_key.get((task, q, method, s)) for s in self.seeds}
        return {s: study for s, study in found.items() if study is not None}

    def curves(self, cell: tuple[str, str], method: str, seeds: Sequence[int] | None = None):
        """``(seeds, curves)``: the seeds present and their best-so-far regrets, shape (S, trials)."""
        found = self.studies(cell, method)
        keep = [s for s in (found if seeds is None else seeds) if s in found]
        if not keep:
            return [], np.empty((0, self.trials))
        return keep, np.array([found[s]["regret"] for s in keep], dtype=float)

    def target(self, cell: tuple[str, str]) -> float | None:
        """TPE's median best-so-far regret at the last trial."""
        _, tpe = self.curves(cell, "TPE")
        return None if len(tpe) == 0 else spread_at(tpe, self.trials).median


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    return f"{value:.3g}"


def regret_table(results: Results) -> str:
    points = checkpoints(results.trials)
    lines = [
        "# Best-so-far regret",
        "",
        f"Median [q25, q75] over seeds of the best-so-far regret (value - optimum, lower is better) "
        f"after n trials; {len(results.seeds)} seeds, {results.trials} trials per study. Random "
        "and TPE read no prior: the same studies appear in every cell of a task.",
        "",
        "| task | prior | method | seeds | " + " | ".join(f"n={n}" for n in points) + " |",
        "|---|---|---|---|" + "---|" * len(points),
    ]
    for cell in results.cells:
        for method in results.methods:
            _, curves = results.curves(cell, method)
            if len(curves) == 0:
                continue
            cells = []
            for n in points:
                s = spread_at(curves, n)
                cells.append(f"{fmt(s.median)} [{fmt(s.q25)}, {fmt(s.q75)}]")
            lines.append(
                f"| {cell[0]} | {cell[1]} | {method} | {len(curves)} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines) + "\n"


def speedup_cell(
    results: Results, cell: tuple[str, str], method: str
) -> tuple[TimeToTarget, float] | None:
    target = results.target(cell)
    _, curves = results.curves(cell, method)
    if target is None or len(curves) == 0:
        return None
    return time_to_target(curves, target), target


def describe_time(t: TimeToTarget, n_trials: int) -> tuple[str, str]:
    if t.trials is None:
        return "never", "-"
    return str(t.trials), f"{t.speedup(n_trials):.2f}x"


def speedup_table(results: Results) -> str:
    n = results.trials
    lines = [
        "# Trials to reach TPE's final median",
        "",
        f"Target: TPE's median best-so-far regret after {n} trials, per cell. A seed's first-hit "
        f"trial is the first trial with best-so-far regret <= target; a seed that never gets there "
        f"is censored and counts as {n + 1}. 'trials' is the lower median over seeds (the "
        f"ceil(S/2)-th smallest), a trial number exactly when at least half of the seeds reach "
        f"the target, else 'never'. Speed-up = {n} / trials.",
        "",
        "| task | prior | target | method | trials | speed-up | seeds reaching |",
        "|---|---|---|---|---|---|---|",
    ]
    for cell in results.cells:
        for method in results.methods:
            found = speedup_cell(results, cell, method)
            if found is None:
                continue
            t, target = found
            trials, factor = describe_time(t, n)
            lines.append(
                f"| {cell[0]} | {cell[1]} | {fmt(target)} | {method} | {trials} | {factor} "
                f"| {t.reached}/{t.seeds} |"
            )
    return "\n".join(lines) + "\n"


def verdicts(results: Results, ours: str, theirs: str) -> dict[tuple[str, str], Verdict]:
    """The paired verdict of ``ours`` against ``theirs`` in every cell where both ran (computed
    once per pair of methods: scipy's exact test with ties enumerates all ``2^S`` sign flips)."""
    key = (ours, theirs)
    if key not in results.verdict_cache:
        out = {}
        for cell in results.cells:
            seeds_a, _ = results.curves(cell, ours)
            common = [s for s in seeds_a if s in results.studies(cell, theirs)]
            if not common or ours == theirs:
                continue
            _, a = results.curves(cell, ours, common)
            _, b = results.curves(cell, theirs, common)
            out[cell] = paired_verdict(a[:, -1], b[:, -1])
        results.verdict_cache[key] = out
    return results.verdict_cache[key]


def tally(found: Mapping[Any, Verdict]) -> tuple[int, int, int]:
    outcomes = [v.outcome for v in found.values()]
    return outcomes.count("win"), outcomes.count("tie"), outcomes.count("loss")


def wins_table(results: Results) -> str:
    n = results.trials
    others = [m for m in results.methods if m != FUSION]
    lines = [
        "# Wins, ties and losses",
        "",
        f"Per cell, {FUSION} against each method on the final best-so-far regret (after {n} "
        f"trials), paired by seed: two-sided Wilcoxon signed-rank test (scipy.stats.wilcoxon, "
        f"zero_method='zsplit') at level {LEVEL}; significant with a negative median of the paired "
        "differences (Fusion lower) is a win, positive a loss, anything else a tie (all pairs "
        "equal: a tie). The exact test needs at least 6 seeds to reach p < 0.05.",
        "",
    ]
    if FUSION in results.methods:
        lines += [
            "| task | prior | versus | verdict | p | median difference | pairs |",
            "|---|---|---|---|---|---|---|",
        ]
        for cell in results.cells:
            for other in others:
                v = verdicts(results, FUSION, other).get(cell)
                if v is not None:
                    lines.append(
                        f"| {cell[0]} | {cell[1]} | {other} | {v.outcome} | {v.p_value:.3g} "
                        f"| {fmt(v.median_difference)} | {v.pairs} |"
                    )
        lines += ["", "## Summary", ""]
        for other in others:
            w, t, l = tally(verdicts(results, FUSION, other))
            lines.append(
                f"- {FUSION} beats {other} in {w} of {w + t + l} cells, ties {t}, loses {l}."
            )
    variants = [m for m in results.methods if m in FUSION_VARIANTS]
    against = [m for m in results.methods if m in ("TPE", *BASELINES)]
    if variants and against:
        lines += [
            "",
            "## Every Fusion variant against the baselines",
            "",
            "wins/ties/losses over the cells, same test.",
            "",
            "| variant | " + " | ".join(against) + " |",
            "|---|" + "---|" * len(against),
        ]
        for variant in variants:
            row = ["/".join(map(str, tally(verdicts(results, variant, b)))) for b in against]
            lines.append(f"| {variant} | " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def overhead_rows(results: Results) -> list[tuple[str, float, float, float | None]]:
    """Per method: (method, median ms/trial, mean ms/trial, median ratio to TPE's)."""
    per_method: dict[str, list[float]] = {}
    for (_, _, method, _), study in results.by_key.items():
        per_method.setdefault(method, []).extend(study["sampler_seconds"])
    tpe = np.median(per_method["TPE"]) if "TPE" in per_method else None
    rows = []
    for method in results.methods:
        ms = 1e3 * np.asarray(per_method[method])
        ratio = None if tpe is None else float(np.median(ms) / (1e3 * tpe))
        rows.append((method, float(np.median(ms)), float(ms.mean()), ratio))
    return rows


def overhead_table(results: Results) -> str:
    lines = [
        "# Sampler overhead",
        "",
        "Time spent inside the sampler per trial (_timing.TimedSampler), over every trial of "
        "every study of a method. The mean includes each worker process's JAX compilations. "
        "Studies ran concurrently on a shared machine: a rough figure (sampler_overhead.py "
        "measures it in isolation).",
        "",
        "| method | median ms/trial | mean ms/trial | median ratio to TPE |",
        "|---|---|---|---|",
    ]
    for method, median, mean, ratio in overhead_rows(results):
        lines.append(f"| {method} | {median:.2f} | {mean:.2f} | {fmt(ratio)} |")
    return "\n".join(lines) + "\n"


def headline_table(results: Results) -> str:
    shown = [m for m in ("TPE", *BASELINES, FUSION) if m in results.methods]
    n = results.trials
    lines = [
        f"Median best-so-far regret after {n} trials; last columns: {FUSION}'s trials to TPE's "
        f"final median, and its wins/ties/losses against the other methods in the cell.",
        "",
        "| task | prior | " + " | ".join(shown) + f" | {FUSION} trials to TPE median | W/T/L |",
        "|---|---|" + "---|" * len(shown) + "---|---|",
    ]
    for cell in results.cells:
        row = []
        for method in shown:
            _, curves = results.curves(cell, method)
            row.append("-" if len(curves) == 0 else fmt(spread_at(curves, n).median))
        found = speedup_cell(results, cell, FUSION)
        to_target = "-" if found is None else describe_time(found[0], n)[0]
        outcomes = [
            v.outcome
            for other in results.methods
            if other != FUSION
            for c, v in verdicts(results, FUSION, other).items()
            if c == cell
        ]
        wtl = f"{outcomes.count('win')}/{outcomes.count('tie')}/{outcomes.count('loss')}"
        lines.append(f"| {cell[0]} | {cell[1]} | " + " | ".join(row) + f" | {to_target} | {wtl} |")
    return "\n".join(lines) + "\n"


def targets_section(results: Results) -> str:
    n = results.trials
    note = "" if n == 100 else f" (this run has {n} trials: measured at {n} instead of 100)"
    lines = ["## Targets of the issue, measured without tuning", ""]
    if FUSION not in results.methods or "TPE" not in results.methods:
        return "\n".join([*lines, "Not measured: the run lacks Fusion or TPE.", ""])
    strong = [c for c in results.cells if c[1] == "strong"]
    met_strong = []
    details = []
    for cell in strong:
        found = speedup_cell(results, cell, FUSION)
        if found is None:
            continue
        t = found[0]
        ok = t.trials is not None and t.trials <= STRONG_TRIALS
        met_strong.append(ok)
        details.append(f"{cell[0]}: {describe_time(t, n)[0]}")
    lines.append(
        f"- Strong prior: Fusion reaches TPE's {n}-trial median within {STRONG_TRIALS} trials"
        f"{note}. Measured (trials to target per task): {'; '.join(details) or '-'}. "
        f"**{verdict_word(met_strong)}** (met in {sum(met_strong)} of {len(met_strong)} tasks)."
    )
    wrong = [c for c in results.cells if c[1] == "wrong"]
    met_wrong = []
    details = []
    for cell in wrong:
        _, f_curves = results.curves(cell, FUSION)
        target = results.target(cell)
        if len(f_curves) == 0 or target is None:
            continue
        fusion_median = spread_at(f_curves, n).median
        met_wrong.append(fusion_median <= WRONG_FACTOR * target)
        ratio = (
            "inf"
            if target == 0 and fusion_median > 0
            else ("1" if target == 0 else f"{fusion_median / target:.2f}")
        )
        details.append(f"{cell[0]}: {fmt(fusion_median)} vs TPE {fmt(target)} (ratio {ratio})")
    lines.append(
        f"- Wrong prior: Fusion's median regret after {n} trials <= {WRONG_FACTOR} x TPE's{note}. "
        f"Measured: {'; '.join(details) or '-'}. **{verdict_word(met_wrong)}** (met in "
        f"{sum(met_wrong)} of {len(met_wrong)} tasks)."
    )
    for baseline in PRIOR_GUIDED:
        if baseline not in results.methods:
            lines.append(
                f"- Fusion beats {baseline} in most cells: not measured ({baseline} not run)."
            )
            continue
        w, t, l = tally(verdicts(results, FUSION, baseline))
        k = w + t + l
        lines.append(
            f"- Fusion beats {baseline} in most cells: wins {w} of {k} cells (ties {t}, losses "
            f"{l}). **{verdict_word([w > k / 2])}**."
        )
    return "\n".join(lines) + "\n"


def verdict_word(checks: Sequence[bool]) -> str:
    if not checks:
        return "not measured"
    return "met" if all(checks) else "missed"


def summary(results: Results, headline: str) -> str:
    from _timing import machine_table, revision

    s = results.settings
    runs = s.get("runs", [])
    wall = sum(r["wall_seconds"] for r in runs)
    study_seconds = sum(st["wall_seconds"] for st in results.by_key.values())
    lines = [
        "# Benchmark harness: Fusion against TPE and the prior-guided baselines",
        "",
        f"Mode `{s['mode']}`: {len(results.seeds)} seeds, {results.trials} trials per study, "
        f"tasks {', '.join(dict.fromkeys(c[0] for c in results.cells))}, methods "
        f"{', '.join(results.methods)}; {len(results.by_key)} studies in results.json.gz. "
        f"Wall time {wall:.0f} s over {len(runs)} run(s) with {', '.join(str(r['jobs']) for r in runs) or '-'} "
        f"worker(s); studies' own wall time adds up to {study_seconds:.0f} s. fusion revision: "
        f"{s.get('revision', revision())}.",
        "",
        "Files: regret.md (median and IQR at checkpoints), speedup.md (trials to TPE's final "
        "median), wins.md (paired tests), overhead.md (sampler time), curves_<task>.png.",
        "",
        "## Headline",
        "",
        headline,
        targets_section(results),
        machine_table(),
    ]
    return "\n".join(lines)


def plot_task(results: Results, task: str, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cells = [c for c in results.cells if c[0] == task]
    fig = Figure(figsize=(4.2 * len(cells), 4.0))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(cells), sharey=True, squeeze=False)[0]
    positive = [
        c[c > 0].min()
        for cell in cells
        for m in results.methods
        for c in [results.curves(cell, m)[1]]
        if np.any(c > 0)
    ]
    floor = 0.5 * min(positive) if positive else 1e-9
    trial = np.arange(1, results.trials + 1)
    # the main methods in solid lines with IQR bands, Fusion in black; variants dashed, no band
    palette = {m: f"C{i}" for i, m in enumerate(m for m in MAIN_METHODS if m != FUSION)}
    palette[FUSION] = "black"
    variants = [m for m in FUSION_VARIANTS if m != FUSION]
    extra = ("C6", "C7", "C8", "C9", "#8c510a", "#01665e", "#c51b7d")
    palette.update(zip(variants, extra, strict=True))
    for ax, cell in zip(axes, cells, strict=True):
        for method in results.methods:
            _, curves = results.curves(cell, method)
            if len(curves) == 0:
                continue
            q25, median, q75 = np.quantile(np.maximum(curves, floor), [0.25, 0.5, 0.75], axis=0)
            main = method in MAIN_METHODS
            ax.plot(
                trial, median, color=palette[method], label=method,
                lw=2.0 if method == FUSION else 1.3 if main else 1.0, ls="-" if main else "--",
            )  # fmt: skip
            if main:
                ax.fill_between(trial, q25, q75, color=palette[method], alpha=0.12)
        ax.set_yscale("log")
        ax.set_title(f"{cell[1]} prior")
        ax.set_xlabel("trial")
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel(f"best-so-far regret (0 drawn at {floor:.1e})")
    handles, labels = axes[-1].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle(
        f"{task}: median best-so-far regret and IQR over {len(results.seeds)} seeds, "
        f"{results.trials} trials"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=100, bbox_inches="tight")


def render(data: Mapping[str, Any], out: Path) -> str:
    """Write every table and figure from the contents of ``results.json.gz``; return the headline."""
    results = Results(data["studies"], {**data["settings"], "runs": data.get("runs", [])})
    out.mkdir(parents=True, exist_ok=True)
    headline = headline_table(results)
    (out / "regret.md").write_text(regret_table(results))
    (out / "speedup.md").write_text(speedup_table(results))
    (out / "wins.md").write_text(wins_table(results))
    (out / "overhead.md").write_text(overhead_table(results))
    (out / "summary.md").write_text(summary(results, headline))
    for task in dict.fromkeys(c[0] for c in results.cells):
        plot_task(results, task, out / f"curves_{task}.png")
    return headline


# -------------------------------------------------------------------------------------------------
# The run
# -------------------------------------------------------------------------------------------------


def load(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    with gzip.open(path, "rt") as f:
        data = json.load(f)
    if data.get("version") != RESULTS_VERSION:
        raise ValueError(f"{path}: version {data.get('version')!r}, expected {RESULTS_VERSION}")
    return data


def save(data: Mapping[str, Any], path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    text = json.dumps(data, separators=(",", ":")).encode()
    tmp.write_bytes(gzip.compress(text, mtime=0))  # mtime 0: the same data, the same bytes
    os.replace(tmp, path)


def evaluation_seconds(task_names: Iterable[str]) -> dict[str, float]:
    """One timed evaluation per task at its optimum, to start the long studies first."""
    out = {}
    for name in task_names:
        task = _task(name)
        start = time.perf_counter()
        task.objective(dict(task.optimum_params))
        out[name] = time.perf_counter() - start
    return out


def run(settings: Settings) -> dict[str, Any]:
    from _timing import revision

    path = settings.out / "results.json.gz"
    real = {name: _task(name).real for name in settings.tasks}
    cells = cells_of(settings.tasks, real)
    jobs = make_jobs(cells, settings.methods, settings.seeds, settings.trials)
    previous = load(path) if settings.resume else None
    if previous is not None and previous["settings"]["trials"] != settings.trials:
        raise ValueError(
            f"--trials {settings.trials} differs from the {previous['settings']['trials']} "
            f"trials of the studies in {path}; use another --out"
        )
    studies = list(previous["studies"]) if previous else []
    runs = list(previous.get("runs", [])) if previous else []
    done = {job_key(s) for s in studies}
    todo = [j for j in jobs if (j.task, j.quality, j.method, j.seed) not in done]
    data = {
        "version": RESULTS_VERSION,
        "settings": {
            "mode": settings.mode,
            "seeds": settings.seeds,
            "trials": settings.trials,
            "tasks": list(settings.tasks),
            "methods": list(settings.methods),
            "cells": [list(c) for c in cells],
            "revision": revision(),
        },
        "runs": runs,
        "studies": studies,
    }
    print(
        f"{len(jobs)} studies: {len(cells)} cells ({', '.join(settings.tasks)}), "
        f"{len(settings.methods)} methods, {settings.seeds} seeds, {settings.trials} trials each"
        f"; {len(jobs) - len(todo)} already in {path}, {len(todo)} to run on {settings.jobs} "
        "worker(s)",
        flush=True,
    )
    settings.out.mkdir(parents=True, exist_ok=True)
    ordered = order_jobs(todo, evaluation_seconds(settings.tasks))
    start = time.perf_counter()
    failures = 0
    last_save = start
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")
    pool = ProcessPoolExecutor(
        max_workers=settings.jobs,
        mp_context=get_context("spawn"),
        initializer=init_worker,
        initargs=(str(settings.jax_cache),),
    )
    finished = 0
    try:
        pending = {pool.submit(run_study, job): job for job in ordered}
        while pending:
            done_now, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done_now:
                job = pending.pop(future)
                finished += 1
                elapsed = time.perf_counter() - start
                label = f"{job.task} {job.quality or '-'} {job.method} seed {job.seed}"
                try:
                    study = future.result()
                except Exception:
                    failures += 1
                    print(f"[{finished}/{len(ordered)}] FAILED {label}", flush=True)
                    traceback.print_exc()
                    continue
                studies.append(study)
                eta = elapsed / finished * (len(ordered) - finished)
                print(
                    f"[{finished}/{len(ordered)}] {label}: final regret "
                    f"{fmt(study['regret'][-1])}, {study['wall_seconds']:.1f} s "
                    f"(elapsed {elapsed:.0f} s, about {eta:.0f} s left)",
                    flush=True,
                )
            if time.perf_counter() - last_save > SAVE_EVERY_SECONDS:
                save(data, path)
                last_save = time.perf_counter()
    finally:
        # on an interruption: drop the queued studies, keep what finished
        pool.shutdown(wait=True, cancel_futures=True)
        runs.append(
            {
                "wall_seconds": round(time.perf_counter() - start, 1),
                "jobs": settings.jobs,
                "studies": finished - failures,
            }
        )
        save(data, path)
    print(f"ran {len(ordered)} studies in {time.perf_counter() - start:.0f} s", flush=True)
    if failures:
        print(f"{failures} studies failed", file=sys.stderr)
    data["failures"] = failures
    return data


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    path = settings.out / "results.json.gz"
    if settings.render_only:
        data = load(path)
        if data is None:
            raise SystemExit(f"--render-only: no {path}")
    else:
        data = run(settings)
    headline = render(data, settings.out)
    print()
    print(headline)
    print(f"wrote {settings.out}/ (summary.md, regret.md, speedup.md, wins.md, overhead.md, PNGs)")
    return 1 if data.get("failures") else 0


if __name__ == "__main__":
    sys.exit(main())
