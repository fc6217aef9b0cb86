"""``FusionSampler`` against the Optuna sampler contract: cases O1-O10 and S5 of
``shared/cases/README.md``, plus seeding, start-up draws, end-to-end studies, the provenance records
and the history alpha is computed from, and argument checks.

JAX compiles the fused sampler per distinct geometry of a search space (its bounds are static) and
per kernel-count bucket, so these tests reuse a few spaces: ``X`` (a float on ``[-1, 1]``, shared by
every 1-D test, whatever the parameter's name), ``[0, 10]``, ``[0, 1]`` and ``[2, 5]`` for O4/O9,
and the 6-D mixed space ``MIXED`` for O2/O10. Studies are short (15-30 trials, 3-4 start-up trials).

Some tests replace ``FusionSampler._fused_sample`` (the fused core) by a stub that returns
adversarial values, the situation of O2 ("a fused draw lands off the grid"); that checks what
``sample_relative`` and ``sample_independent`` do with the core's output, without compiling.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter

import numpy as np
import optuna
import pytest
import scipy.stats
from hypothesis import given
from hypothesis import strategies as hst
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial
from study_worker import check_recorded_alphas

import fusion.optuna.sampler as sampler_module
from fusion.adaptive import (
    LLM,
    TPE,
    History,
    PredictiveCredit,
    RankPerformance,
    TrialRecord,
)
from fusion.density import mixture
from fusion.kde import bandwidths
from fusion.optuna import (
    AlphaRecord,
    FusionSampler,
    alpha_records,
    history_from_trials,
    trial_provenance,
)
from fusion.space import CONTINUOUS, Dim, SearchSpace

optuna.logging.set_verbosity(optuna.logging.ERROR)

X = FloatDistribution(-1.0, 1.0)
SUGGEST_X = [{"x": 0.5}]

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # Optuna warns that list and tuple choices don't persist
    C_SEQ = CategoricalDistribution(([1, 2], (3, 4), [5]))
MIXED = {
    "f_step": FloatDistribution(0.1, 0.7, step=0.1),
    "i": IntDistribution(1, 10),
    "i_log": IntDistribution(1, 64, log=True),
    "f_log": FloatDistribution(1e-5, 1e-1, log=True),
    "c_mixed": CategoricalDistribution((None, 1, "s", 2.5, True)),
    "c_seq": C_SEQ,
}
MIXED_SUGGESTIONS = [
    {"f_step": 0.3, "i": 4, "i_log": 8, "f_log": 1e-3, "c_mixed": True, "c_seq": [3, 4]},
    {"f_step": 0.6, "i": 7, "i_log": 32, "f_log": 1e-2, "c_mixed": "s", "c_seq": [5]},
]


# --- helpers --------------------------------------------------------------------------------------


def objective_x(trial: optuna.Trial) -> float:
    return (trial.suggest_float("x", -1.0, 1.0) - 0.3) ** 2


def suggest(trial: optuna.Trial, name: str, dist) -> object:
    if isinstance(dist, CategoricalDistribution):
        return trial.suggest_categorical(name, list(dist.choices))
    if isinstance(dist, IntDistribution):
        return trial.suggest_int(name, dist.low, dist.high, step=dist.step, log=dist.log)
    return trial.suggest_float(name, dist.low, dist.high, step=dist.step, log=dist.log)


def mixed_objective(trial: optuna.Trial) -> float:
    v = {n: suggest(trial, n, d) for n, d in MIXED.items()}
    return (
        (v["f_step"] - 0.3) ** 2
        + (v["i"] - 4) ** 2 / 10
        + abs(math.log(v["i_log"] / 8))
        + abs(math.log10(v["f_log"]) + 3)
        + float(v["c_mixed"] is not True)
        + float(v["c_seq"] != (3, 4))
    )


def assert_valid(dist, value) -> None:
    """``value`` is what Optuna keeps as is: of the right type and inside ``dist``."""
    if isinstance(dist, IntDistribution):
        assert type(value) is int, (dist, value)
    elif isinstance(dist, FloatDistribution):
        assert type(value) is float, (dist, value)
        assert math.isfinite(value), (dist, value)
    else:
        assert any(value is c for c in dist.choices), (dist, value)
    assert dist._contains(dist.to_internal_repr(value)), (dist, value)


def frozen(study: optuna.Study, trial: optuna.Trial) -> FrozenTrial:
    return study._storage.get_trial(trial._trial_id)


def completed(params: dict, dists: dict, value: float) -> FrozenTrial:
    return create_trial(params=params, distributions=dists, value=value)


class Spy:
    """Records what ``sample_relative`` / ``sample_independent`` of one sampler see and return."""

    def __init__(self, sampler: FusionSampler):
        self.relative: list[tuple[int, set[str], dict]] = []
        self.independent: list[tuple[int, str, object]] = []
        rel, ind = sampler.sample_relative, sampler.sample_independent

        def sample_relative(study, trial, search_space):
            out = rel(study, trial, search_space)
            self.relative.append((trial.number, set(search_space), dict(out)))
            for n, v in out.items():
                assert n in search_space, (n, set(search_space))
                assert_valid(search_space[n], v)
            return out

        def sample_independent(study, trial, name, dist):
            out = ind(study, trial, name, dist)
            self.independent.append((trial.number, name, out))
            assert_valid(dist, out)
            return out

        sampler.sample_relative = sample_relative
        sampler.sample_independent = sample_independent


@pytest.fixture
def estimators(monkeypatch):
    """Every Optuna ``_ParzenEstimator`` the sampler builds: ``(observations, search_space, est)``."""
    calls = []
    real = sampler_module._ParzenEstimator

    def build(observations, search_space, parameters):
        est = real(observations, search_space, parameters)
        calls.append(({n: np.asarray(v) for n, v in observations.items()}, search_space, est))
        return est

    monkeypatch.setattr(sampler_module, "_ParzenEstimator", build)
    return calls


@pytest.fixture
def splits(monkeypatch):
    """Every good/bad split the sampler makes: ``(below, above)`` lists of frozen trials."""
    calls = []
    real = sampler_module._split_trials

    def split(study, trials, n_below):
        below, above = real(study, trials, n_below)
        calls.append((list(below), list(above)))
        return below, above

    monkeypatch.setattr(sampler_module, "_split_trials", split)
    return calls


def check_estimators(calls) -> None:
    """No observation outside its distribution reaches a density; kernel weights are finite, sum 1."""
    for observations, search_space, est in calls:
        for n, obs in observations.items():
            d = search_space[n]
            assert np.all(np.isfinite(obs)), (n, obs)
            assert all(d._contains(float(r)) for r in obs), (n, d, obs)
        w = np.asarray(est._mixture_distribution.weights, dtype=float)
        assert np.all(np.isfinite(w)) and np.all(w >= 0), w
        assert abs(w.sum() - 1.0) < 1e-12, w.sum()


def binomial_interval(n: int, p: float, tail: float = 1e-6) -> tuple[int, int]:
    """The counts outside which a Binomial(n, p) draw falls with probability < 2 * tail."""
    dist = scipy.stats.binom(n, p)
    return int(dist.ppf(tail)), int(dist.isf(tail))


# --- constructor ------------------------------------------------------------------------------


BAD_ARGUMENTS = [
    ("suggestions", {"suggestions": {"x": 0.5}}, "{'x': 0.5}"),
    ("suggestions", {"suggestions": "x=0.5"}, "'x=0.5'"),
    ("suggestions", {"suggestions": 3}, "3"),
    ("suggestions[1]", {"suggestions": [{"x": 0.5}, 0.7]}, "0.7"),
    ("method", {"method": "tpe"}, "'tpe'"),
    ("n_startup_trials", {"n_startup_trials": -1}, "-1"),
    ("n_startup_trials", {"n_startup_trials": 2.5}, "2.5"),
    ("n_startup_trials", {"n_startup_trials": True}, "True"),
    ("n_ei_candidates", {"n_ei_candidates": 0}, "0"),
    ("n_ei_candidates", {"n_ei_candidates": 8.0}, "8.0"),
    ("n_ei_candidates", {"n_ei_candidates": True}, "True"),
    ("floor", {"floor": -0.1}, "-0.1"),
    ("floor", {"floor": 1.5}, "1.5"),
    ("floor", {"floor": float("nan")}, "nan"),
    ("floor", {"floor": "0.1"}, "'0.1'"),
    ("floor", {"floor": True}, "True"),
    ("suggestion_weights", {"suggestion_weights": [1.0, 2.0]}, "[1.0, 2.0]"),
    ("suggestion_weights", {"suggestion_weights": [-1.0]}, "[-1.0]"),
    ("suggestion_weights", {"suggestion_weights": [float("nan")]}, "[nan]"),
    ("suggestion_weights", {"suggestion_weights": [0.0]}, "[0.0]"),
    ("alpha", {"alpha": 1.5}, "1.5"),
    ("alpha", {"alpha": -0.25}, "-0.25"),
    ("alpha", {"alpha": float("nan")}, "nan"),
    ("alpha", {"alpha": "high"}, "'high'"),
    ("alpha", {"alpha": lambda n: float("nan")}, "nan"),
    ("alpha", {"alpha": lambda n: 2.0}, "2.0"),
    ("alpha", {"alpha": lambda n: -1.0}, "-1.0"),
    ("alpha", {"alpha": lambda n: None}, "None"),
    ("alpha", {"alpha": lambda n: "0.5"}, "'0.5'"),
    ("alpha", {"alpha": lambda: 0.5}, "n=0"),
    ("alpha", {"alpha": object}, "object"),
    ("seed", {"seed": "abc"}, "'abc'"),
    ("seed", {"seed": 1.5}, "1.5"),
    ("seed", {"seed": -1}, "-1"),
    ("seed", {"seed": 2**64}, str(2**64)),
]


@pytest.mark.parametrize("argument,kwargs,value", BAD_ARGUMENTS)
def test_bad_constructor_argument_raises_naming_it(argument, kwargs, value):
    kwargs = dict(kwargs)
    suggestions = kwargs.pop("suggestions", SUGGEST_X)
    with pytest.raises(ValueError) as info:
        FusionSampler(suggestions, **kwargs)
    message = str(info.value)
    assert argument in message, message
    assert value in message, message


def test_good_constructor_arguments_are_accepted():
    for kwargs in (
        {},
        {"method": "linear", "alpha": 0.0, "floor": 0.0, "n_startup_trials": 0},
        {"alpha": lambda n: 0.5, "suggestion_weights": [2.0], "seed": 0, "n_ei_candidates": 1},
        {"floor": 1, "seed": 2**32 + 5, "alpha": 1},
        {"alpha": PredictiveCredit(eta=0.5)},
        {"alpha": RankPerformance(), "method": "linear"},
    ):
        assert isinstance(FusionSampler(SUGGEST_X, **kwargs), optuna.samplers.BaseSampler)
    with pytest.warns(UserWarning, match=r"no suggestions \(suggestions=\[\]\): it samples as TPE"):
        assert isinstance(FusionSampler([]), optuna.samplers.BaseSampler)


def test_a_schedule_that_goes_bad_mid_study_raises_naming_alpha():
    sampler = FusionSampler(
        SUGGEST_X, alpha=lambda n: 0.5 if n < 4 else float("nan"), seed=0, n_startup_trials=2
    )
    study = optuna.create_study(sampler=sampler)
    with pytest.raises(ValueError, match=r"alpha=nan at n=4"):
        study.optimize(objective_x, n_trials=10)
    assert len(study.trials) == 5


# --- seeding and end-to-end studies ------------------------------------------------------------


def test_one_by_one_draws_of_a_trial_are_independent():
    """Parameters that reach ``sample_independent`` one at a time get draws of their own, not one
    shared random number: with equal densities, equal keys would give equal values."""
    sampler = FusionSampler([], n_startup_trials=0, seed=1)
    study = optuna.create_study(sampler=sampler)
    draws = []
    for _ in range(20):
        trial = study.ask()
        draws.append([trial.suggest_float(n, -1.0, 1.0) for n in ("a", "b", "c")])
        study.tell(trial, sum(draws[-1]))
    a, b, c = np.array(draws).T
    assert not np.any(a == b) and not np.any(b == c)
    # 20 independent pairs: |r| > 0.7 has probability below 1e-3.
    assert abs(np.corrcoef(a, b)[0, 1]) < 0.7 and abs(np.corrcoef(b, c)[0, 1]) < 0.7


def test_startup_on_a_huge_integer_range_never_builds_its_grid():
    """The uniform floor of a 10**12-point grid is drawn by index (building the grid would need
    8 TB). Every draw lies on the grid, in range."""
    sampler = FusionSampler([{"n": 1000, "m": 5}], n_startup_trials=100, seed=0, floor=1.0)
    study = optuna.create_study(sampler=sampler)
    study.optimize(
        lambda t: t.suggest_int("n", 0, 10**12) + t.suggest_int("m", 1, 10**12, log=True),
        n_trials=20,
    )
    for t in study.trials:
        assert type(t.params["n"]) is int and 0 <= t.params["n"] <= 10**12
        assert type(t.params["m"]) is int and 1 <= t.params["m"] <= 10**12
    assert len({t.params["n"] for t in study.trials}) == 20


def _run_x_study(seed: int, name: str | None = "repro", n_trials: int = 15) -> list[float]:
    sampler = FusionSampler(SUGGEST_X, n_startup_trials=3, seed=seed)
    study = optuna.create_study(sampler=sampler, study_name=name)
    study.optimize(objective_x, n_trials=n_trials)
    return [t.params["x"] for t in study.trials]


def test_same_seed_same_params_and_different_seeds_differ():
    a, b, c = _run_x_study(7), _run_x_study(7), _run_x_study(8)
    assert a == b
    assert a[:3] != c[:3], "start-up draws ignore the seed"
    assert a[3:] != c[3:], "fused draws ignore the seed"


def test_same_seed_same_params_in_unnamed_studies():
    """Optuna names an unnamed study ``no-name-<uuid>``, new each run; a seeded run still repeats."""
    a, b = (_run_x_study(7, name=None, n_trials=6) for _ in range(2))
    assert a == b


@pytest.mark.parametrize("method", ["geometric", "linear"])
def test_end_to_end_study(method):
    sampler = FusionSampler(SUGGEST_X, method=method, n_startup_trials=3, seed=11)
    spy = Spy(sampler)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective_x, n_trials=20)
    assert len(study.trials) == 20
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert all(-1.0 <= t.params["x"] <= 1.0 for t in study.trials)
    fused = [n for n, _, out in spy.relative if "x" in out]
    assert fused == list(range(3, 20)), "every trial after start-up is a fused relative draw"
    # the search gets past the suggestion 0.5, whose value is 0.04 (the optimum is 0.3)
    assert study.best_value < (0.5 - 0.3) ** 2, study.best_value


# --- start-up draws -------------------------------------------------------------------------------


@pytest.mark.parametrize("floor", [0.0, 0.1, 1.0])
def test_startup_draws_follow_the_suggestion_density(floor):
    """One narrow suggestion: a start-up draw is near it with probability
    ``(1 - floor) * P_kernel(near) + floor * P_uniform(near)``."""
    mu, half_width, n = 0.5, 0.3, 300
    space = SearchSpace.from_optuna({"x": X})
    (h,) = bandwidths(space, np.array([[mu]]), np.ones(1), 1)
    a, b = (-1.0 - mu) / h, (1.0 - mu) / h
    kernel = scipy.stats.truncnorm(a, b, loc=mu, scale=h)
    p_kernel = kernel.cdf(mu + half_width) - kernel.cdf(mu - half_width)
    p = (1 - floor) * p_kernel + floor * (2 * half_width) / 2.0
    sampler = FusionSampler(SUGGEST_X, n_startup_trials=10**6, floor=floor, seed=3)
    study = optuna.create_study(sampler=sampler)
    draws = []
    for _ in range(n):
        trial = study.ask()
        draws.append(trial.suggest_float("x", -1.0, 1.0))
    draws = np.array(draws)
    assert np.all((draws >= -1) & (draws <= 1))
    near = int(np.sum(np.abs(draws - mu) < half_width))
    lo, hi = binomial_interval(n, p)
    assert lo <= near <= hi, (near, n, p)


def test_startup_kernel_is_shared_by_the_params_of_a_trial():
    """Two suggestions far apart: x and y of one start-up trial come from the same kernel, so they
    are strongly correlated (independent picks would give correlation 0)."""
    suggestions = [{"x": -0.6, "y": -0.6}, {"x": 0.6, "y": 0.6}]
    sampler = FusionSampler(suggestions, n_startup_trials=10**6, floor=0.0, seed=4)
    study = optuna.create_study(sampler=sampler)
    pairs = []
    for _ in range(150):
        trial = study.ask()
        pairs.append((trial.suggest_float("x", -1, 1), trial.suggest_float("y", -1, 1)))
    xs, ys = np.array(pairs).T
    r = np.corrcoef(xs, ys)[0, 1]
    assert r > 0.35, r  # about 0.6 with a shared kernel; sd of r under independence is 0.08


# --- O1: conditional and late parameters ----------------------------------------------------


def test_o1_conditional_and_late_params_go_through_sample_independent():
    suggestions = [{"x": 0.5, "y": 0.8, "z": -0.6}]
    sampler = FusionSampler(suggestions, n_startup_trials=4, seed=1)
    spy = Spy(sampler)
    study = optuna.create_study(sampler=sampler, study_name="o1")

    def objective(trial):
        x = trial.suggest_float("x", -1.0, 1.0)
        if x > 0:
            trial.suggest_float("y", -1.0, 1.0)
        if trial.number >= 15:
            trial.suggest_float("z", -1.0, 1.0)
        return (x - 0.3) ** 2

    study.optimize(objective, n_trials=30)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    # sample_relative sees the intersection of the finished trials' params: {x} once a trial
    # without y has finished, never z
    for number, names, _ in spy.relative:
        finished = [set(t.params) for t in study.trials[:number]]
        assert names == (set.intersection(*finished) if finished else set()), (number, names)
    assert any(names == {"x"} and out for _, names, out in spy.relative)
    # y and z arrive through sample_independent (y through sample_relative only while every
    # finished trial has had it)
    independent = {(number, name) for number, name, _ in spy.independent}
    relative = {(number, name) for number, _, out in spy.relative for name in out}
    for t in study.trials:
        for name in t.params:
            assert ((t.number, name) in independent) != ((t.number, name) in relative)
    assert sum(name == "y" for _, name in independent) > 0
    assert sum(name == "z" for _, name in independent) == 15
    assert not any(name == "z" for _, name in relative)
    for t in study.trials:
        assert ("y" in t.params) == (t.params["x"] > 0)
        assert all(-1.0 <= v <= 1.0 for v in t.params.values())

    # y and z are fused with the suggestions' marginal after start-up: with alpha = 1 the fused
    # density is p_llm, whose kernel (sd 0.1) holds 90% of the mass; uniform draws would land
    # within 0.3 of 0.8 a quarter of the time, and within 0.3 of -0.6 30% of the time.
    trial = frozen(study, study.ask())
    for name, mu in (("y", 0.8), ("z", -0.6)):
        near = 0
        for seed in range(30):
            s = FusionSampler(suggestions, n_startup_trials=4, seed=seed, alpha=1.0)
            v = s.sample_independent(study, trial, name, X)
            assert_valid(X, v)
            near += abs(v - mu) < 0.3
        assert near >= 20, (name, near)


# --- O2: every returned value is snapped, clipped, typed and contained -----------------------------

ADVERSARIAL = {
    "f_step": [0.123456, 0.7000000000000001, 0.65, 5.0, -3.0, 0.1 + 6 * 0.1],
    "i": [3.7, 0.2, 11.5, 10.4, -5, 9.999999],
    "i_log": [3.7, 0.5, 100, 63.6, 1.2],
    "f_log": [0.10000000000000002, 9.999999999999997e-06, 1.0, 0.0, -1.0, 2e-3],
    "c_mixed": [None, True, 2.5],
    "c_seq": [[1, 2], (3, 4), [5]],
}


def _stub_core(monkeypatch, k: int, seen: list):
    """Replace the fused core by one returning the ``k``-th adversarial value of each param, plus
    a key that is not in the search space."""

    def fake(self, study, trial, search_space):
        seen.append(set(search_space))
        out = {n: ADVERSARIAL[n][k % len(ADVERSARIAL[n])] for n in search_space}
        out["not_in_space"] = 1.0
        return out

    monkeypatch.setattr(FusionSampler, "_fused_sample", fake)


def _study_past_startup(dists, params, n=3, **kwargs) -> tuple[optuna.Study, FusionSampler]:
    sampler = FusionSampler(MIXED_SUGGESTIONS, n_startup_trials=n, seed=0, **kwargs)
    study = optuna.create_study(sampler=sampler)
    for i in range(n):
        study.add_trial(completed(params, dists, float(i)))
    return study, sampler


@pytest.mark.parametrize("k", range(6))
def test_o2_off_grid_out_of_range_and_fractional_draws_are_conformed(monkeypatch, k):
    seen = []
    _stub_core(monkeypatch, k, seen)
    params = {n: s for n, s in MIXED_SUGGESTIONS[0].items()}
    params["c_seq"] = (3, 4)
    study, sampler = _study_past_startup(MIXED, params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        trial = frozen(study, study.ask())
    out = sampler.sample_relative(study, trial, MIXED)
    assert set(out) == set(MIXED)
    for n, v in out.items():
        assert_valid(MIXED[n], v)
    for n, d in MIXED.items():
        v = sampler.sample_independent(study, trial, n, d)
        assert_valid(d, v)
    # snapping moves a value to its nearest grid point inside the range
    if k == 0:
        assert out["f_step"] == pytest.approx(0.1) and out["i"] == 4 and out["i_log"] == 4
    if k == 3:
        assert out["f_step"] == pytest.approx(0.7) and out["i"] == 10 and out["i_log"] == 64


def test_o2_stepped_grids_are_snapped_and_clipped(monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna moves high onto the grid, with a warning
        step_float = FloatDistribution(-0.25, 0.7, step=0.35)
    assert step_float.high == pytest.approx(0.45)
    dists = {"i": IntDistribution(0, 9, step=3), "f_step": step_float}

    def fake(self, study, trial, search_space):
        return {"i": 4.6, "f_step": 0.7}

    monkeypatch.setattr(FusionSampler, "_fused_sample", fake)
    study, sampler = _study_past_startup(dists, {"i": 3, "f_step": 0.1})
    trial = frozen(study, study.ask())
    out = sampler.sample_relative(study, trial, dists)
    assert out["i"] == 6 and type(out["i"]) is int
    assert out["f_step"] == pytest.approx(0.45)
    for n, v in out.items():
        assert_valid(dists[n], v)
    for n, d in dists.items():
        assert_valid(d, sampler.sample_independent(study, trial, n, d))


@pytest.fixture(scope="module")
def mixed_study():
    """A 15-trial study on ``MIXED`` through ``optimize``, recording every value the sampler
    returned (the spy asserts each one is contained and typed)."""
    sampler = FusionSampler(MIXED_SUGGESTIONS, n_startup_trials=3, seed=2)
    spy = Spy(sampler)
    study = optuna.create_study(sampler=sampler, study_name="mixed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns about list and tuple choices
        study.optimize(mixed_objective, n_trials=15)
    return study, spy


def test_o2_optimize_on_a_mixed_space(mixed_study):
    study, spy = mixed_study
    assert len(study.trials) == 15
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    for t in study.trials:
        assert set(t.params) == set(MIXED)
        for n, v in t.params.items():
            assert MIXED[n]._contains(MIXED[n].to_internal_repr(v)), (n, v)
    # after start-up every value comes from sample_relative, so none was silently dropped
    assert [n for n, _, out in spy.relative if set(out) == set(MIXED)] == list(range(3, 15))
    assert all(n < 3 for n, _, _ in spy.independent)


_MIXED_TRIALS: dict[int, FrozenTrial] = {}


def _mixed_trial(study: optuna.Study) -> FrozenTrial:
    """One running trial of ``study``, asked once (asking runs the sampler, which compiles)."""
    if id(study) not in _MIXED_TRIALS:
        _MIXED_TRIALS[id(study)] = frozen(study, study.ask())
    return _MIXED_TRIALS[id(study)]


@given(seed=hst.integers(0, 2**32 - 1))
def test_o2_direct_sample_relative_on_a_mixed_space(mixed_study, seed):
    study, _ = mixed_study
    trial = _mixed_trial(study)
    sampler = FusionSampler(MIXED_SUGGESTIONS, n_startup_trials=3, seed=seed)
    out = sampler.sample_relative(study, trial, MIXED)
    assert set(out) == set(MIXED)
    for n, v in out.items():
        assert_valid(MIXED[n], v)


@pytest.mark.parametrize("name", list(MIXED))
def test_o2_sample_independent_on_each_kind(mixed_study, name):
    study, _ = mixed_study
    trial = _mixed_trial(study)
    d = MIXED[name]
    values = []
    for seed in range(8):
        s = FusionSampler(MIXED_SUGGESTIONS, n_startup_trials=3, seed=seed)
        v = s.sample_independent(study, trial, name, d)
        assert_valid(d, v)
        values.append(d.to_internal_repr(v))
    if name == "f_log":  # on a discrete support the best ratio is often the same point
        assert len(set(values)) == len(values), values


# --- O3: multi-objective -----------------------------------------------------------------------


def test_o3_multi_objective_is_refused_by_both_paths():
    study = optuna.create_study(
        directions=["minimize", "minimize"], sampler=optuna.samplers.RandomSampler(seed=0)
    )
    study.optimize(lambda t: (t.suggest_float("x", -1, 1), 1.0), n_trials=5)
    trial = frozen(study, study.ask())
    sampler = FusionSampler(SUGGEST_X, n_startup_trials=0, seed=0)
    for call in (
        lambda: sampler.infer_relative_search_space(study, trial),
        lambda: sampler.sample_relative(study, trial, {"x": X}),
        lambda: sampler.sample_independent(study, trial, "x", X),
    ):
        with pytest.raises(ValueError, match="single-objective.*2 objectives"):
            call()
    # during start-up, too
    startup = FusionSampler(SUGGEST_X, n_startup_trials=100, seed=0)
    with pytest.raises(ValueError, match="2 objectives"):
        startup.sample_independent(study, trial, "x", X)
    with pytest.raises(ValueError, match="2 objectives"):
        startup.sample_relative(study, trial, {"x": X})
    # and through optimize
    mo = optuna.create_study(directions=["minimize", "maximize"], sampler=startup)
    with pytest.raises(ValueError, match="2 objectives"):
        mo.optimize(lambda t: (t.suggest_float("x", -1, 1), 1.0), n_trials=2)


# --- O4: maximize ------------------------------------------------------------------------------


def test_o4_maximize_finds_the_maximum(splits):
    sampler = FusionSampler([{"x": 6.0}], n_startup_trials=4, seed=5)
    study = optuna.create_study(sampler=sampler, direction="maximize")
    study.optimize(lambda t: -((t.suggest_float("x", 0.0, 10.0) - 2.0) ** 2), n_trials=30)
    assert abs(study.best_params["x"] - 2.0) < 0.3, study.best_params
    # after start-up, the search spends more trials in [1, 3] (the best) than in [8, 10] (the
    # worst), two windows of the same width that a uniform search would visit equally
    xs = np.array([t.params["x"] for t in study.trials[4:]])
    assert np.sum(np.abs(xs - 2.0) <= 1.0) > np.sum(xs >= 8.0), xs
    assert splits
    for below, above in splits:  # good trials are those with the largest values
        done = [t.value for t in above if t.state == TrialState.COMPLETE]
        if below and done:
            assert min(t.value for t in below) >= max(done)


@pytest.mark.parametrize("alpha", [None, 0.0])
def test_o4_maximize_v_is_minimize_minus_v(alpha):
    """The same history told as maximize(v) and as minimize(-v) gives the same proposals. With
    alpha = 0 (TPE's own good density, the suggestion at 6 ignored) they are near the best x, 2."""
    xs = np.linspace(0.0, 10.0, 21)
    proposals = []
    for direction, sign in (("maximize", 1.0), ("minimize", -1.0)):
        sampler = FusionSampler([{"x": 6.0}], n_startup_trials=4, seed=9, alpha=alpha)
        study = optuna.create_study(sampler=sampler, direction=direction, study_name="o4")
        dist = {"x": FloatDistribution(0.0, 10.0)}
        for x in xs:
            study.add_trial(completed({"x": float(x)}, dist, sign * -((x - 2.0) ** 2)))
        proposals.append([study.ask().suggest_float("x", 0.0, 10.0) for _ in range(5)])
    assert proposals[0] == proposals[1]
    if alpha == 0.0:
        assert np.median(np.abs(np.array(proposals[0]) - 2.0)) < 1.0, proposals[0]


# --- O5: threads -------------------------------------------------------------------------------


def test_o5_four_threads_share_one_sampler():
    """Four threads, one sampler, a schedule that reads the trials: distinct proposals, and every
    thread's alpha is what a fresh sampler computes from the history that draw saw."""
    sampler = FusionSampler(SUGGEST_X, n_startup_trials=4, seed=3, alpha=RankPerformance())
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective_x, n_trials=24, n_jobs=4)
    assert len(study.trials) == 24
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    xs = [t.params["x"] for t in study.trials]
    assert len(set(xs)) == 24, xs
    assert all(-1.0 <= x <= 1.0 for x in xs)
    records = check_recorded_alphas(
        study, FusionSampler(SUGGEST_X, n_startup_trials=4, seed=3, alpha=RankPerformance())
    )
    assert len(records) >= 24 - 4 - 3  # threads may overshoot start-up by a trial each
    assert all(trial_provenance(t)[0] in (LLM, TPE, sampler_module.UNIFORM) for t in study.trials)


def test_o5_reseed_rng_changes_the_seed_and_the_draws():
    sampler = FusionSampler(SUGGEST_X, n_startup_trials=10**6, seed=5)
    study = optuna.create_study(sampler=sampler, study_name="reseed")
    trial = frozen(study, study.ask())
    a = sampler.sample_independent(study, trial, "x", X)
    assert sampler.sample_independent(study, trial, "x", X) == a  # keyed, not stateful
    before = sampler._seed
    sampler.reseed_rng()
    assert sampler._seed != before
    draws = {sampler.sample_independent(study, trial, "x", X)}
    for _ in range(3):
        sampler.reseed_rng()
        draws.add(sampler.sample_independent(study, trial, "x", X))
    assert a not in draws and len(draws) == 4


# --- O6: running trials ------------------------------------------------------------------------


def test_o6_five_asks_without_tell_give_five_distinct_proposals(splits, estimators):
    sampler = FusionSampler(SUGGEST_X, n_startup_trials=3, seed=6)
    spy = Spy(sampler)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective_x, n_trials=12)
    splits.clear()
    estimators.clear()
    asked = [study.ask() for _ in range(5)]
    xs = [t.suggest_float("x", -1.0, 1.0) for t in asked]
    assert len(set(xs)) == 5, xs
    assert all(-1.0 <= x <= 1.0 for x in xs)
    relative = {n: out for n, _, out in spy.relative}
    assert all(relative[t.number]["x"] == x for t, x in zip(asked, xs, strict=True))
    # Optuna samples a trial's relative params lazily, at its first suggest: by then all five
    # trials are running, and each sees the four others
    assert len(splits) == 5
    for below, above in splits:
        assert all(t.state != TrialState.RUNNING for t in below)  # running never counts as good
        assert sum(t.state == TrialState.RUNNING for t in above) == 4
    # nor toward alpha: each draw's history holds the 12 finished trials, the 5 asked are running
    for t in asked:
        (record,) = alpha_records(frozen(study, t))
        assert record.n == 12 and set(record.unfinished) == {a.number for a in asked}
    assert len(history_from_trials(study.trials)) == 12
    # a running trial counts through the proposal it stored: the k-th draw sees 12 + k points
    assert sum(len(obs["x"]) for obs, _, _ in estimators) == 5 * 12 + (0 + 1 + 2 + 3 + 4)
    check_estimators(estimators)


def _running(system_attrs: dict, params=None, dists=None, number=0) -> FrozenTrial:
    return FrozenTrial(
        number=number,
        state=TrialState.RUNNING,
        value=None,
        datetime_start=None,
        datetime_complete=None,
        params=params or {},
        distributions=dists or {},
        user_attrs={},
        system_attrs=system_attrs,
        intermediate_values={},
        trial_id=number,
    )


def test_o6_chunked_record_survives_missing_or_partial_chunks():
    attr = sampler_module._ATTR
    record = json.dumps({f"p{i}": i / 7 for i in range(400)})
    chunks = [record[i : i + 2000] for i in range(0, len(record), 2000)]
    assert len(chunks) >= 3
    full = {f"{attr}:{i}": c for i, c in enumerate(chunks)}
    read = sampler_module._stored_relative_params
    assert read(_running(full)) == json.loads(record)
    missing_middle = {k: v for k, v in full.items() if not k.endswith(":1")}
    assert read(_running(missing_middle)) == {}
    missing_first = {k: v for k, v in full.items() if not k.endswith(":0")}
    assert read(_running(missing_first)) == {}
    partial = dict(full)
    partial[f"{attr}:2"] = chunks[2][: len(chunks[2]) // 2]
    assert read(_running(partial)) == {}
    assert read(_running({f"{attr}:0": "[1, 2]"})) == {}
    assert read(_running({f"{attr}:0": "null"})) == {}
    # a finished trial's record is never read: its params are
    done = create_trial(params={"x": 0.5}, distributions={"x": X}, value=1.0, system_attrs=full)
    assert read(done) == {}


def test_o6_long_records_are_written_in_chunks_and_read_back(monkeypatch):
    dists = {f"p{i:03d}": FloatDistribution(0.0, 1.0) for i in range(300)}

    def fake(self, study, trial, search_space):
        return {n: 0.123456789 + int(n[1:]) / 1000 for n in search_space}

    monkeypatch.setattr(FusionSampler, "_fused_sample", fake)
    sampler = FusionSampler([], n_startup_trials=0, seed=0)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = frozen(study, study.ask())
    out = sampler.sample_relative(study, trial, dists)
    stored = study._storage.get_trial(trial._trial_id)
    attrs = [k for k in stored.system_attrs if k.startswith(sampler_module._ATTR)]
    assert len(attrs) >= 3
    assert all(len(stored.system_attrs[k]) <= 2000 for k in attrs)
    assert sampler_module._stored_relative_params(stored) == pytest.approx(out)


@pytest.mark.parametrize(
    "record",
    [
        '{"x": "abc", "c": 0}',
        '{"x": null, "c": 0}',
        '{"x": [0.5], "c": 0}',
        '{"x": 5.0, "c": 0}',
        '{"x": NaN, "c": 0}',
        '{"x": Infinity, "c": 0}',
        '{"x": 0.5, "c": NaN}',
        '{"x": 0.5, "c": Infinity}',
        '{"x": 0.5, "c": -1}',
        '{"x": 0.5, "c": 7}',
        '{"x": 0.5, "c": "a"}',
        '{"x": 0.5, "c": 1',
        '{"x": 0.5}',
    ],
)
def test_o6_garbled_records_of_running_trials_are_ignored(record):
    """A running trial whose stored record is unusable contributes nothing; no crash, no bad value."""
    dists = {"x": X, "c": CategoricalDistribution(["a", "b", "c"])}
    sampler = FusionSampler([], n_startup_trials=0, seed=0)
    good = _running({f"{sampler_module._ATTR}:0": '{"x": 0.25, "c": 2}'}, number=1)
    bad = _running({f"{sampler_module._ATTR}:0": record}, number=2)
    est = sampler._estimator([good, bad], dists)
    assert len(est._mixture_distribution.weights) == 2  # the good trial and the prior
    assert len(sampler._estimator([good, good], dists)._mixture_distribution.weights) == 3


def _record_attrs(record: str, block: str = "0123456789abcdef") -> dict[str, str]:
    """``record`` stored as provenance chunks of 2000 characters, as the sampler writes them."""
    key = f"{sampler_module._PROVENANCE}:{block}"
    return {f"{key}:{i // 2000}": record[i : i + 2000] for i in range(0, len(record), 2000)}


def test_o6_long_provenance_records_are_chunked_and_read_back():
    """A draw that saw hundreds of unfinished trials writes a record longer than RDB storage keeps
    in one attr: it is cut into chunks under 2046 characters and read back whole."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    trial = frozen(study, study.ask())
    unfinished = list(range(0, 3000, 3))
    record = {"source": TPE, "log_p_llm": -1.5, "log_l": -0.25, "alpha": 0.125, "n": 2000}
    record |= {"last": 2999, "unfinished": unfinished}
    sampler_module._write_provenance(study, trial, {"x": X}, record)
    stored = frozen(study, trial)
    keys = [k for k in stored.system_attrs if k.startswith(sampler_module._PROVENANCE)]
    assert len(keys) >= 3 and all(len(stored.system_attrs[k]) <= 2000 for k in keys)
    assert alpha_records(stored) == [AlphaRecord(0.125, 2000, 2999, tuple(unfinished))]
    assert trial_provenance(stored) == (TPE, -1.5, -0.25)


@pytest.mark.parametrize(
    "attrs",
    [
        {},  # an enqueued or hand-added trial
        "missing middle chunk",
        "cut last chunk",
        _record_attrs('{"source": "llm", "log_p_llm": -1.0, "log_l": '),
        _record_attrs('["llm", -1.0, -2.0]'),
        _record_attrs('{"source": 3, "log_p_llm": -1.0, "log_l": -2.0}'),
        _record_attrs('{"source": ["llm"], "log_p_llm": -1.0, "log_l": -2.0}'),
        _record_attrs('{"source": "llm", "log_p_llm": NaN, "log_l": -2.0}'),
        _record_attrs('{"source": "llm", "log_p_llm": Infinity, "log_l": -2.0}'),
        _record_attrs('{"source": "llm", "log_p_llm": "-1.0", "log_l": -2.0}'),
        _record_attrs('{"source": "llm", "log_p_llm": 1e308, "log_l": -2.0}')
        | _record_attrs('{"source": "llm", "log_p_llm": 1e308, "log_l": -2.0}', "fedcba9876543210"),
        {f"{sampler_module._PROVENANCE}:0123456789abcdef:0": 5},
    ],
)
def test_o6_garbled_provenance_reads_as_unknown(attrs):
    """A missing or cut chunk, bad JSON, or values of the wrong kind: the trial enters the history
    with no source and no log-densities, its alpha record is left out, and nothing raises."""
    record = json.dumps(
        {"source": LLM, "log_p_llm": -1.0, "log_l": -2.0, "alpha": 0.5, "n": 3, "last": 900}
        | {"unfinished": list(range(900))}
    )
    if attrs == "missing middle chunk":
        attrs = _record_attrs(record)
        del attrs[f"{sampler_module._PROVENANCE}:0123456789abcdef:1"]
    elif attrs == "cut last chunk":
        attrs = _record_attrs(record)
        last = max(attrs)
        attrs[last] = attrs[last][:-5]
    assert trial_provenance(completed({"x": 0.5}, {"x": X}, 1.0)) == (None, None, None)
    whole = create_trial(
        params={"x": 0.5}, distributions={"x": X}, value=1.0, system_attrs=_record_attrs(record)
    )
    assert trial_provenance(whole) == (LLM, -1.0, -2.0)
    assert len(alpha_records(whole)) == 1
    garbled = create_trial(params={"x": 0.5}, distributions={"x": X}, value=0.5, system_attrs=attrs)
    assert trial_provenance(garbled) == (None, None, None)
    assert alpha_records(garbled) == []
    history = history_from_trials([whole, garbled])
    assert [t.source for t in history.trials] == [LLM, None]
    for schedule in (PredictiveCredit(gamma=1.0), RankPerformance()):
        assert 0.0 <= schedule(history) <= 1.0


def test_alpha_records_of_the_wrong_kind_are_left_out():
    record = {"source": TPE, "log_p_llm": -1.0, "log_l": -2.0, "alpha": 0.5, "n": 3, "last": 4}
    record["unfinished"] = [4]

    def stored(change: dict) -> FrozenTrial:
        attrs = _record_attrs(json.dumps(record | change))
        return create_trial(
            params={"x": 0.5}, distributions={"x": X}, value=1.0, system_attrs=attrs
        )

    assert alpha_records(stored({})) == [AlphaRecord(0.5, 3, 4, (4,))]
    for change in (
        {"alpha": "0.5"},
        {"alpha": 1.5},
        {"alpha": math.nan},
        {"n": 3.5},
        {"last": None},
        {"unfinished": [4.5]},
        {"unfinished": 4},
    ):
        assert alpha_records(stored(change)) == [], change
        assert trial_provenance(stored(change)) == (TPE, -1.0, -2.0)  # the rest still reads


def test_a_multi_objective_history_is_refused():
    trial = create_trial(params={"x": 0.5}, distributions={"x": X}, values=[1.0, 2.0])
    with pytest.raises(ValueError, match=r"trials: trial .* 2 objective values"):
        history_from_trials([trial])


def _numbered(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    for i, t in enumerate(trials):
        t.number = i
    return trials


@pytest.mark.parametrize(
    "direction", [StudyDirection.MINIMIZE, StudyDirection.MAXIMIZE], ids=["minimize", "maximize"]
)
def test_history_orients_values_and_keeps_only_finished_trials(direction):
    """O4 and O7: values oriented by the direction, pruned as the worst, failed, running and
    waiting trials left out, in trial-number order."""
    sign = 1.0 if direction == StudyDirection.MINIMIZE else -1.0
    attrs = _record_attrs(json.dumps({"source": LLM, "log_p_llm": -1.0, "log_l": -2.0}))
    dists = {"x": X}
    trials = _numbered(
        [
            completed({"x": 0.1}, dists, 2.0),
            create_trial(params={"x": 0.2}, distributions=dists, value=-3.0, system_attrs=attrs),
            create_trial(state=TrialState.PRUNED, params={"x": 0.3}, distributions=dists),
            create_trial(state=TrialState.FAIL, params={"x": 0.4}, distributions=dists),
            completed({"x": 0.5}, dists, math.inf),
            completed({"x": 0.6}, dists, -math.inf),
            create_trial(state=TrialState.WAITING),
            _running(attrs, {"x": 0.7}, dists),
        ]
    )
    trials[-1].number = 7
    history = history_from_trials(list(reversed(trials)), direction)
    assert [t.value for t in history.trials] == [
        sign * 2.0,
        sign * -3.0,
        math.inf,
        sign * math.inf,
        sign * -math.inf,
    ]
    assert history.trials[1] == TrialRecord(sign * -3.0, LLM, -1.0, -2.0)
    assert history.trials[0] == TrialRecord(sign * 2.0)
    # the best trial is the one the direction prefers: +inf maximized (trial 4), -inf minimized
    best = int(np.argmin(history.values()))
    assert best == (3 if direction == StudyDirection.MAXIMIZE else 4)


def test_provenance_holds_the_source_and_the_densities_at_the_point():
    """Start-up draws are "llm" or "uniform" without densities; a fused draw stores
    ``log p_llm(x)`` (checked against the suggestion density), ``log l(x)``, its alpha, and the
    envelope component that more probably drew it: always "llm" at alpha 1, "tpe" at alpha 0."""
    space = SearchSpace.from_optuna({"x": X})
    for alpha, expected in ((1.0, {LLM}), (0.0, {TPE}), (None, {LLM, TPE})):
        sampler = FusionSampler(SUGGEST_X, n_startup_trials=3, seed=21, alpha=alpha)
        study = optuna.create_study(sampler=sampler)
        study.optimize(objective_x, n_trials=10)
        p_llm = sampler._llm_density({"x": X}, space)
        sources = set()
        for t in study.trials:
            source, log_p_llm, log_l = trial_provenance(t)
            if t.number < 3:
                assert source in (LLM, sampler_module.UNIFORM) and log_p_llm is None is log_l
                assert alpha_records(t) == []
                continue
            (record,) = alpha_records(t)
            assert record.n == t.number and record.unfinished == (t.number,)
            expected_log_p = float(p_llm.log_prob(space.to_internal({"x": t.params["x"]})[None])[0])
            assert log_p_llm == pytest.approx(expected_log_p, rel=1e-9)
            assert math.isfinite(log_l)
            llm_likelier = (
                math.log(record.alpha) + log_p_llm > math.log1p(-record.alpha) + log_l
                if 0 < record.alpha < 1
                else record.alpha == 1
            )
            assert source == (LLM if llm_likelier else TPE)
            sources.add(source)
        if alpha is not None:
            assert sources == expected


def test_a_restarted_study_goes_on_with_the_same_alphas():
    """A new sampler on the same storage reads the same history, so it computes the alphas the
    first would have: every recorded alpha is what a third, fresh sampler computes."""
    storage = optuna.storages.InMemoryStorage()

    def sampler():
        return FusionSampler(SUGGEST_X, n_startup_trials=3, seed=4, alpha=PredictiveCredit())

    first = sampler()
    study = optuna.create_study(storage=storage, sampler=first, study_name="restart")
    study.optimize(objective_x, n_trials=8)
    again = optuna.load_study(study_name="restart", storage=storage, sampler=sampler())
    again.optimize(objective_x, n_trials=6)
    records = check_recorded_alphas(again, sampler())
    assert [r.n for r in records] == list(range(3, 14))
    assert len({r.alpha for r in records}) > 1
    history = history_from_trials(again.trials)
    assert first.alpha(history) == sampler().alpha(history)
    assert isinstance(history, History) and len(history) == 14


# --- O7: nan, inf, -inf, raise, prune ------------------------------------------------------


def test_o7_failed_values_are_excluded_and_only_finished_trials_count(estimators, splits):
    sampler = FusionSampler(SUGGEST_X, n_startup_trials=3, seed=7)
    spy = Spy(sampler)
    study = optuna.create_study(sampler=sampler)
    plan = {0: "nan", 1: "raise", 2: "inf", 3: "prune", 4: "-inf", 5: "nan", 7: "raise", 9: "inf"}

    def objective(trial):
        x = trial.suggest_float("x", -1.0, 1.0)
        what = plan.get(trial.number)
        if what == "raise":
            raise RuntimeError("boom")
        if what == "prune":
            raise optuna.TrialPruned()
        if what is not None:
            return float(what)
        return (x - 0.3) ** 2

    study.optimize(objective, n_trials=20, catch=(RuntimeError,))
    states = [t.state for t in study.trials]
    for k, what in plan.items():
        expected = {"nan": TrialState.FAIL, "raise": TrialState.FAIL, "prune": TrialState.PRUNED}
        assert states[k] == expected.get(what, TrialState.COMPLETE), (k, what, states[k])
    # start-up lasts until three trials are COMPLETE or PRUNED (trials 2, 3, 4)
    for number, _, out in spy.relative:
        finished = sum(s in (TrialState.COMPLETE, TrialState.PRUNED) for s in states[:number])
        assert bool(out) == (finished >= 3), (number, finished, out)
    assert [n for n, _, out in spy.relative if out][0] == 5
    for below, above in splits:
        assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in below + above)
        assert not any(t.number == 9 for t in below)  # +inf ranks worst
    check_estimators(estimators)
    assert all(math.isfinite(t.params["x"]) for t in study.trials)


# --- O8: enqueued trials --------------------------------------------------------------------


def test_o8_enqueued_params_are_not_sampled(estimators):
    sampler = FusionSampler(SUGGEST_X, n_startup_trials=3, seed=8)
    spy = Spy(sampler)
    study = optuna.create_study(sampler=sampler)
    study.optimize(objective_x, n_trials=5)
    study.enqueue_trial({"x": 0.9})
    with pytest.warns(UserWarning, match="out of range"):  # Optuna's own warning
        study.enqueue_trial({"x": 5.0})
        study.optimize(objective_x, n_trials=2)
    study.optimize(objective_x, n_trials=10)
    assert study.trials[5].params["x"] == 0.9
    assert study.trials[6].params["x"] == 5.0  # Optuna keeps an enqueued value as it is
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    for number, _, out in spy.relative:
        if number in (5, 6):
            assert out == {}  # no suggestion spent on an enqueued param
    assert all(n not in (5, 6) for n, _, _ in spy.independent)
    assert all(-1.0 <= t.params["x"] <= 1.0 for t in study.trials[7:])
    assert estimators
    check_estimators(estimators)  # 5.0 never reaches a density


def test_o8_fixed_params_are_left_out_of_the_fused_draw(monkeypatch):
    seen = []
    _stub_core(monkeypatch, 0, seen)
    params = dict(MIXED_SUGGESTIONS[0], c_seq=(3, 4))
    study, sampler = _study_past_startup(MIXED, params)
    study.enqueue_trial({"f_step": 0.3, "c_mixed": "not a choice"})
    trial = frozen(study, study.ask())
    out = sampler.sample_relative(study, trial, MIXED)
    assert seen[-1] == set(MIXED) - {"f_step", "c_mixed"}
    assert set(out) == seen[-1]
    assert sampler.sample_relative(study, frozen(study, study.ask()), MIXED).keys() == set(MIXED)


def test_o8_enqueued_categorical_outside_the_choices():
    """Optuna refuses the value (the trial fails); the sampler carries on."""
    sampler = FusionSampler(MIXED_SUGGESTIONS, n_startup_trials=3, seed=2)
    spy = Spy(sampler)
    study = optuna.create_study(sampler=sampler, study_name="o8-categorical")
    study.enqueue_trial({"c_mixed": "zzz"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study.optimize(mixed_objective, n_trials=1, catch=(ValueError,))
        study.optimize(mixed_objective, n_trials=5)
    assert study.trials[0].state == TrialState.FAIL
    assert all(t.state == TrialState.COMPLETE for t in study.trials[1:])
    assert [n for n, _, out in spy.relative if out] == [4, 5]


# --- O9: the space changes between trials ------------------------------------------------------


@pytest.mark.parametrize(
    "before,after,suggestions",
    [((0.0, 1.0), (2.0, 5.0), [{"x": 0.5}]), ((0.0, 10.0), (0.0, 1.0), [{"x": 7.0}, {"x": 0.5}])],
)
def test_o9_bounds_change_between_trials(estimators, before, after, suggestions):
    sampler = FusionSampler(suggestions, n_startup_trials=3, seed=9)
    spy = Spy(sampler)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", *before), n_trials=6)
    estimators.clear()
    with pytest.warns(UserWarning, match=r"dropped 1 suggestion.*x.*outside"):
        study.optimize(lambda t: abs(t.suggest_float("x", *after) - 0.3), n_trials=6)
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    new = [t.params["x"] for t in study.trials[6:]]
    assert all(after[0] <= x <= after[1] for x in new), new
    assert {name for n, name, _ in spy.independent if n >= 6} == {"x"}  # not in the intersection
    assert estimators
    check_estimators(estimators)  # built against the current bounds
    kept = [obs["x"] for obs, space, _ in estimators if space["x"] == FloatDistribution(*after)]
    assert sum(len(o) for o in kept) > 0


def test_o9_change_of_kind_raises():
    sampler = FusionSampler([{"x": 0.5}], n_startup_trials=3, seed=9)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=4)
    trial = study.ask()
    with pytest.raises(ValueError, match="different distribution kind"):
        trial.suggest_categorical("x", ["a", "b"])
    # the sampler refuses it itself, naming the parameter, before it builds any density
    cat = CategoricalDistribution(["a", "b"])
    with pytest.raises(ValueError, match="parameter 'x'.*different distribution kind"):
        sampler.sample_independent(study, frozen(study, trial), "x", cat)
    with pytest.raises(ValueError, match="parameter 'x'.*log"):
        sampler.sample_independent(
            study, frozen(study, trial), "x", FloatDistribution(0.1, 1, log=True)
        )
    study.tell(trial, state=TrialState.FAIL)
    study.optimize(lambda t: t.suggest_float("x", 0.0, 1.0), n_trials=2)  # the sampler carries on
    assert all(t.state == TrialState.COMPLETE for t in study.trials[-2:])


# --- O10: categorical choices ------------------------------------------------------------------


def _startup_choice_counts(dist, suggestion, n=200, floor=0.1) -> Counter:
    sampler = FusionSampler([{"c": suggestion}], n_startup_trials=10**6, seed=10, floor=floor)
    study = optuna.create_study(sampler=sampler)
    counts = Counter()
    for _ in range(n):
        trial = frozen(study, study.ask())
        v = sampler.sample_independent(study, trial, "c", dist)
        assert_valid(dist, v)
        counts[next(i for i, c in enumerate(dist.choices) if c is v)] += 1
    return counts


@pytest.mark.parametrize(
    "choices,suggestion,index",
    [
        ((None, 1, "s", 2.5, True), True, 4),
        ((None, 1, "s", 2.5, True), 1, 1),
        ((None, 1, "s", 2.5, True), None, 0),
        (([1, 2], (3, 4), [5]), [3, 4], 1),
        (([1, 2], (3, 4), [5]), (5,), 2),
        ((1, True, 1.0), 1.0, 2),
        ((1, True, 1.0), True, 1),
    ],
)
def test_o10_suggested_choice_is_matched_by_type_and_value(choices, suggestion, index):
    """One suggestion keeps ``1 - b + b/C`` of its kernel's mass (``b = 1/2``) on its own choice, so
    a start-up draw hits it with probability ``(1 - floor)(1/2 + 1/(2C)) + floor/C``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns that list and tuple choices don't persist
        dist = CategoricalDistribution(choices)
    n, floor, c = 200, 0.1, len(choices)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the suggestion must not be dropped
        counts = _startup_choice_counts(dist, suggestion, n, floor)
    p = (1 - floor) * (0.5 + 0.5 / c) + floor / c
    lo, hi = binomial_interval(n, p)
    assert lo <= counts[index] <= hi, (counts, p)


# --- S5: sparse params and bad values ------------------------------------------------------------


def test_s5_param_present_only_in_some_trials(monkeypatch, estimators, splits):
    fits = []
    real = FusionSampler._estimator

    def estimator(self, trials, search_space):
        est = real(self, trials, search_space)
        fits.append((list(trials), dict(search_space), est))
        return est

    monkeypatch.setattr(FusionSampler, "_estimator", estimator)
    sampler = FusionSampler([{"x": 0.5, "y": -0.5}], n_startup_trials=3, seed=12)
    study = optuna.create_study(sampler=sampler)
    values = [0.3, float("inf"), 0.1, float("nan")]

    def objective(trial):
        trial.suggest_float("x", -1.0, 1.0)
        if trial.number % 2 == 0:
            trial.suggest_float("y", -1.0, 1.0)
        return values[trial.number % 4]

    study.optimize(objective, n_trials=16)
    states = [t.state for t in study.trials]
    assert all(s == TrialState.FAIL for s in states[3::4])  # nan is a failure
    assert all(s == TrialState.COMPLETE for k, s in enumerate(states) if k % 4 != 3)
    # y is fitted on exactly the trials that have it: one kernel each, plus the prior
    y_fits = [(trials, est) for trials, space, est in fits if set(space) == {"y"}]
    assert y_fits and any(sum("y" in t.params for t in trials) > 0 for trials, _ in y_fits)
    for trials, est in y_fits:
        n_with_y = sum("y" in t.params for t in trials)
        assert len(est._mixture_distribution.weights) == n_with_y + 1
    for trials, _, _ in fits:
        assert all(t.state != TrialState.FAIL for t in trials)  # nan is excluded
    for below, above in splits:  # +inf ranks worst
        good = [t.value for t in below if t.state == TrialState.COMPLETE]
        bad = [t.value for t in above if t.state == TrialState.COMPLETE]
        if good and bad:
            assert max(good) <= min(bad)
        if any(v < math.inf for v in bad):
            assert all(v < math.inf for v in good)
    check_estimators(estimators)  # finite weights that sum to one


# --- the fused draw ------------------------------------------------------------------------------


def _x_mixture(mu: float, sigma: float):
    return mixture((Dim(CONTINUOUS, -1.0, 1.0),), [1.0], [[mu]], [[sigma]], min_kernels=32)


def _geometric_candidates(p_llm, l_below, alpha: float, n_candidates: int):
    """``(x, log_f, valid, n_accepted, log_p_llm, log_l)`` of the fused draw, as NumPy, with 4
    proposals a candidate."""
    out = sampler_module._fused_candidates(
        l_below,
        p_llm,
        np.float64(alpha),
        np.int64(5),
        method="geometric",
        n_candidates=n_candidates,
        n_proposals=4 * n_candidates,
    )
    return tuple(np.asarray(a) for a in out)


@pytest.mark.parametrize("n_candidates", [3, 24])
def test_fused_candidates_are_the_first_accepted_proposals(n_candidates):
    """Overlapping densities: the rows are accepted AM-GM draws (at most ``n_candidates``), with
    ``log f = alpha log p_llm + (1 - alpha) log l`` at each."""
    p_llm, l_below = _x_mixture(0.2, 0.3), _x_mixture(0.0, 0.3)
    x, log_f, valid, n_acc, log_p, log_l = _geometric_candidates(p_llm, l_below, 0.4, n_candidates)
    assert x.shape == (n_candidates, 1) and int(n_acc) > 0
    assert valid.sum() == min(int(n_acc), n_candidates)
    np.testing.assert_allclose(log_p, np.asarray(p_llm.log_prob(x)), rtol=1e-12)
    np.testing.assert_allclose(log_l, np.asarray(l_below.log_prob(x)), rtol=1e-12)
    expected = 0.4 * log_p + 0.6 * log_l
    np.testing.assert_allclose(log_f[valid], expected[valid], rtol=1e-12)


def test_no_accepted_proposal_falls_back_to_envelope_draws_with_a_warning():
    """Densities 40 sigma apart: Z of the geometric pool is ~e^-400, nothing is accepted, so the
    first ``n_candidates`` draws of the envelope stand in, and the sampler says so."""
    p_llm, l_below = _x_mixture(-0.8, 0.01), _x_mixture(0.8, 0.01)
    x, _, valid, n_acc, _, _ = _geometric_candidates(p_llm, l_below, 0.5, 24)
    assert int(n_acc) == 0 and valid.all() and x.shape == (24, 1)
    # half the envelope's mass sits at each end
    assert 0 < np.sum(x < 0) < 24
    sampler = FusionSampler([{"x": -0.8}], n_startup_trials=0, seed=0, alpha=0.5)
    with pytest.warns(UserWarning, match="accepted none of 96 proposals"):
        sampler._propose(l_below, l_below, p_llm, 0.5, np.int64(5))
