"""Compiled once: the jitted functions behind FusionSampler compile a bounded number of times.

Kernel counts are padded to power-of-two buckets of at least 32 (TPE's good set never exceeds 26
kernels), so over a whole study the fused draw compiles once and the ratio step once per bucket of
the bad set. A second study on the same space compiles nothing.
"""

import math
import warnings

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from fusion.optuna import FusionSampler
from fusion.optuna import sampler as fusion_sampler

N_TRIALS = 300
SUGGESTIONS = [
    {"x": 0.5, "lr": 1e-2, "n": 8, "act": "relu"},
    {"x": -1.0, "lr": 1e-3, "n": 32, "act": "tanh"},
]


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
    n = trial.suggest_int("n", 1, 64, log=True)
    act = trial.suggest_categorical("act", ["relu", "tanh", "gelu"])
    return (x - 0.3) ** 2 + (math.log10(lr) + 2) ** 2 + abs(math.log2(n) - 3) + (act != "relu")


def cache_sizes() -> tuple[int, int, int]:
    return (
        fusion_sampler._fused_candidates._cache_size(),
        fusion_sampler._best_ratio._cache_size(),
        fusion_sampler._truncnorm_draw._cache_size(),
    )


def run_study(seed: int) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(sampler=FusionSampler(SUGGESTIONS, seed=seed, n_startup_trials=5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        study.optimize(objective, n_trials=N_TRIALS)
    return study


def test_a_300_trial_study_compiles_once_per_bucket():
    fused0, ratio0, draw0 = cache_sizes()
    study = run_study(seed=0)
    fused1, ratio1, draw1 = cache_sizes()
    assert len(study.trials) == N_TRIALS
    # The bad set grows to at most N_TRIALS kernels: buckets 32, 64, ..., 512.
    n_buckets = math.ceil(math.log2(N_TRIALS + 1)) - 5 + 1
    assert fused1 - fused0 <= 1, f"the fused draw compiled {fused1 - fused0} times"
    assert ratio1 - ratio0 <= n_buckets, f"the ratio compiled {ratio1 - ratio0} times"
    assert draw1 - draw0 <= 1, "the start-up draw compiled once per parameter"

    # Same space, new seed: everything is already compiled.
    run_study(seed=1)
    assert cache_sizes() == (fused1, ratio1, draw1)


def test_relative_and_independent_paths_share_the_startup_compile():
    """Every parameter kind draws its start-up value through the same compiled function."""
    _, _, draw0 = cache_sizes()
    space = {
        "a": FloatDistribution(0.0, 1.0),
        "b": FloatDistribution(1e-4, 1.0, log=True),
        "c": IntDistribution(2, 9, step=1),
        "d": CategoricalDistribution([None, 1, "s"]),
    }
    study = optuna.create_study(
        sampler=FusionSampler([{"a": 0.2, "b": 1e-2, "c": 4, "d": "s"}], seed=3)
    )
    for _ in range(4):
        trial = study.ask(space)
        study.tell(trial, trial.params["a"])
    assert fusion_sampler._truncnorm_draw._cache_size() - draw0 <= 1
