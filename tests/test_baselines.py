"""The prior-guided baselines (piBO, BOPrO, PriorBand) and the enqueue seeding.

The samplers are driven by a test-local product prior that satisfies the same contract as
``priors.Prior`` (``space``, ``log_pdf_internal``, ``sample``), so these tests do not depend on
``benchmarks/priors.py``. The acquisition scores are checked against numpy evaluations of the
papers' formulas written out independently here, and by their limiting behaviour.
"""

import importlib
import math

import numpy as np
import optuna
import pytest
from benchmark_scripts import on_path
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from scipy import integrate, stats

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(scope="module")
def bl():
    """``benchmarks/baselines.py`` imported with ``benchmarks/`` on ``sys.path`` for this module
    only."""
    with on_path():
        yield importlib.import_module("baselines")


# -- a test-local prior -----------------------------------------------------------------------


def internal_range(dist):
    """``[low, high]`` in internal units (``ln`` for log parameters)."""
    if dist.log:
        return math.log(dist.low), math.log(dist.high)
    return float(dist.low), float(dist.high)


class ProductPrior:
    """A product density in internal coordinates (a float's value, ``ln`` of a log parameter, an
    int's value, a categorical's index): per numeric coordinate a normal truncated to its internal
    range, a continuous density also at an int's value; per categorical a table with ``p_centre``
    on the centre's choice and the rest spread evenly."""

    def __init__(self, space, centre, sd_fraction, p_centre=0.8):
        self.space = dict(space)
        self._centre = centre
        self._p_centre = p_centre
        self._normals = {}
        for name, dist in self.space.items():
            if not isinstance(dist, CategoricalDistribution):
                low, high = internal_range(dist)
                loc = math.log(centre[name]) if dist.log else float(centre[name])
                scale = sd_fraction * (high - low)
                a, b = (low - loc) / scale, (high - loc) / scale
                self._normals[name] = stats.truncnorm(a, b, loc=loc, scale=scale)

    def _normal(self, name, dist):
        return self._normals[name]

    def _table(self, dist, name):
        k = len(dist.choices)
        p = np.full(k, (1 - self._p_centre) / (k - 1))
        p[dist.choices.index(self._centre[name])] = self._p_centre
        return p

    def log_pdf_internal(self, x):
        x = np.asarray(x, dtype=float)
        out = np.zeros(len(x))
        for j, (name, dist) in enumerate(self.space.items()):
            if isinstance(dist, CategoricalDistribution):
                out += np.log(self._table(dist, name))[x[:, j].astype(int)]
            else:
                out += self._normal(name, dist).logpdf(x[:, j])
        return out

    def sample(self, rng, n):
        columns = {}
        for name, dist in self.space.items():
            if isinstance(dist, CategoricalDistribution):
                idx = rng.choice(len(dist.choices), size=n, p=self._table(dist, name))
                columns[name] = [dist.choices[i] for i in idx]
                continue
            y = self._normal(name, dist).rvs(size=n, random_state=rng)
            v = np.exp(y) if dist.log else y
            if dist.step is not None:
                k = np.round((v - dist.low) / dist.step)
                v = np.clip(dist.low + k * dist.step, dist.low, dist.high)
            v = np.clip(v, dist.low, dist.high)
            if isinstance(dist, IntDistribution):
                columns[name] = [int(round(u)) for u in v]
            else:
                columns[name] = [float(u) for u in v]
        return [{name: columns[name][i] for name in self.space} for i in range(n)]


MIXED = {
    "x": FloatDistribution(-5.0, 5.0),
    "lr": FloatDistribution(1e-4, 1e-1, log=True),
    "layers": IntDistribution(1, 8),
    "width": IntDistribution(2, 256, log=True),
    "dropout": FloatDistribution(0.0, 0.5, step=0.1),
    "kind": CategoricalDistribution(["a", "b", "c"]),
}
MIXED_OPTIMUM = {"x": 1.0, "lr": 10**-2.5, "layers": 3, "width": 32, "dropout": 0.2, "kind": "b"}
KIND_COST = {"a": 1.0, "b": 0.0, "c": 2.0}


def suggest(trial, space):
    params = {}
    for name, d in space.items():
        if isinstance(d, CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, d.choices)
        elif isinstance(d, IntDistribution):
            params[name] = trial.suggest_int(name, d.low, d.high, step=d.step, log=d.log)
        else:
            params[name] = trial.suggest_float(name, d.low, d.high, step=d.step, log=d.log)
    return params


def mixed_value(p):
    return (
        (p["x"] - 1.0) ** 2
        + (math.log10(p["lr"]) + 2.5) ** 2
        + (p["layers"] - 3) ** 2 / 4
        + (math.log2(p["width"]) - 5) ** 2 / 4
        + 4 * abs(p["dropout"] - 0.2)
        + KIND_COST[p["kind"]]
    )


def mixed_objective(trial):
    return mixed_value(suggest(trial, MIXED))


SAMPLERS = ("piBO", "BOPrO", "PriorBand")


def make(bl, name, prior, seed, n_trials=30, n_startup_trials=10):
    if name == "piBO":
        return bl.PiBOSampler(
            prior, n_trials=n_trials, seed=seed, n_startup_trials=n_startup_trials
        )
    if name == "BOPrO":
        return bl.BOPrOSampler(prior, seed=seed, n_startup_trials=n_startup_trials)
    return bl.PriorBandSampler(prior, seed=seed, n_startup_trials=n_startup_trials)


def run(sampler, objective, n_trials, direction="minimize"):
    study = optuna.create_study(direction=direction, sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    return study


def mixed_prior():
    return ProductPrior(MIXED, MIXED_OPTIMUM, sd_fraction=0.1)


# -- studies on a mixed space -----------------------------------------------------------------


@pytest.mark.parametrize("name", SAMPLERS)
def test_runs_a_study_with_valid_params_and_is_seeded(bl, name):
    prior = mixed_prior()
    study = run(make(bl, name, prior, seed=0), mixed_objective, 30)
    trials = study.trials
    assert len(trials) == 30
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    for t in trials:
        assert set(t.params) == set(MIXED)
        for pname, d in MIXED.items():
            v = t.params[pname]
            if isinstance(d, CategoricalDistribution):
                assert v in d.choices
                continue
            assert d.low <= v <= d.high, (pname, v)
            if isinstance(d, IntDistribution):
                assert isinstance(v, int), (pname, v)
            else:
                assert isinstance(v, float), (pname, v)
            if d.step is not None:
                k = (v - d.low) / d.step
                assert abs(k - round(k)) < 1e-8, (pname, v)
    # the acquisition phase ran and moved off the start-up draws: not every later trial is a copy
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params[10:])) > 10
    again = run(make(bl, name, prior, seed=0), mixed_objective, 30)
    assert [t.params for t in again.trials] == [t.params for t in trials]
    other = run(make(bl, name, prior, seed=1), mixed_objective, 30)
    assert [t.params for t in other.trials] != [t.params for t in trials]


@pytest.mark.parametrize("name", SAMPLERS)
def test_maximizing_the_negation_draws_the_same_trials(bl, name):
    # _split_trials (and PriorBand's ranking) orient values by the study's direction, so
    # maximizing -f with a seed must draw exactly what minimizing f draws.
    prior = mixed_prior()
    low = run(make(bl, name, prior, seed=3), mixed_objective, 20)
    high = run(make(bl, name, prior, seed=3), lambda t: -mixed_objective(t), 20, "maximize")
    assert [t.params for t in low.trials] == [t.params for t in high.trials]


@pytest.mark.parametrize("name", SAMPLERS)
def test_reseed_rng_changes_the_draws(bl, name):
    prior = mixed_prior()
    first = run(make(bl, name, prior, seed=5), mixed_objective, 12)
    sampler = make(bl, name, prior, seed=5)
    sampler.reseed_rng()
    second = run(sampler, mixed_objective, 12)
    assert [t.params for t in first.trials] != [t.params for t in second.trials]


# -- the acquisition scores -------------------------------------------------------------------


def test_pibo_score_matches_the_formula(bl):
    rng = np.random.default_rng(0)
    log_l, log_g, log_prior = rng.normal(size=(3, 50))
    for beta, n in [(3.0, 1), (3.0, 7), (0.5, 40)]:
        # l/g * pi^(beta/n), on the densities themselves
        expected = np.log(np.exp(log_l) / np.exp(log_g) * np.exp(log_prior) ** (beta / n))
        np.testing.assert_allclose(
            bl.pibo_score(log_l, log_g, log_prior, beta, n), expected, rtol=1e-12, atol=1e-12
        )


def test_pibo_prior_weight_vanishes_with_n_and_dominates_early(bl):
    rng = np.random.default_rng(1)
    log_l, log_g = rng.normal(size=(2, 40))
    log_prior = rng.normal(size=40) - 5.0
    tpe_best = int(np.argmax(log_l - log_g))
    favourite = (tpe_best + 1) % 40
    log_prior[favourite] = 10.0  # far more probable under the prior than any other candidate
    # beta/n -> 0: the argmax is TPE's
    assert int(np.argmax(bl.pibo_score(log_l, log_g, log_prior, 10.0, 10**9))) == tpe_best
    # beta/n = 10: the prior's favourite wins
    assert int(np.argmax(bl.pibo_score(log_l, log_g, log_prior, 10.0, 1))) == favourite


def test_bopro_score_matches_the_formula(bl):
    rng = np.random.default_rng(2)
    log_l, log_g = rng.normal(size=(2, 50))
    log_prior = rng.normal(size=50) - 1.0
    log_max = float(np.max(log_prior)) + 0.3
    eps = 0.01
    for t, beta in [(0, 10.0), (12, 10.0), (40, 3.0)]:
        p_good = (1 - eps) * np.exp(log_prior) / np.exp(log_max)
        p_bad = 1 - p_good
        w = t / beta
        good = p_good * np.exp(log_l) ** w
        bad = p_bad * np.exp(log_g) ** w
        expected = np.log(good / bad)
        got = bl.bopro_score(log_l, log_g, log_prior, log_max, t, beta, eps)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_bopro_is_the_prior_at_t0_and_tpe_for_large_t(bl):
    rng = np.random.default_rng(3)
    log_l, log_g, log_prior = rng.normal(size=(3, 40))
    log_max = float(np.max(log_prior))
    # t = 0: the score is logit(P_g), increasing in pi, so the argmax is the prior's
    assert int(np.argmax(bl.bopro_score(log_l, log_g, log_prior, log_max, 0, 10.0))) == int(
        np.argmax(log_prior)
    )
    # the prior's part is bounded (P_b >= eps), so for large t the model decides
    assert int(np.argmax(bl.bopro_score(log_l, log_g, log_prior, log_max, 10**6, 10.0))) == int(
        np.argmax(log_l - log_g)
    )
    # at the prior's maximum P_b = eps, not 0: the score stays finite
    assert np.all(np.isfinite(bl.bopro_score(log_l, log_g, log_prior, log_max, 5, 10.0)))


# -- the prior is used ------------------------------------------------------------------------


QUAD = {"x": FloatDistribution(-5.0, 5.0), "y": FloatDistribution(-5.0, 5.0)}
QUAD_OPTIMUM = {"x": 1.3, "y": -2.1}


def quadratic(trial):
    p = suggest(trial, QUAD)
    return (p["x"] - QUAD_OPTIMUM["x"]) ** 2 + (p["y"] - QUAD_OPTIMUM["y"]) ** 2


def mean_regret(sampler_for_seed, seeds, n_trials=15):
    # the optimum value is 0, so each trial's value is its regret
    return float(
        np.mean(
            [[t.value for t in run(sampler_for_seed(s), quadratic, n_trials).trials] for s in seeds]
        )
    )


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_strong_prior_beats_random_search(bl, name):
    # A strong prior (sd 0.05 of the range, on the optimum). With 5 start-up trials, 10 of the 15
    # trials come from the acquisition (piBO, BOPrO) or the ensemble policy (PriorBand). Random
    # search's expected regret is 2 * E[(U - c)^2], about 23 for c = 1.3, -2.1 on [-5, 5]; a draw
    # of the prior has expected regret about 2 * 0.25 = 0.5; PriorBand's uniform quarter adds
    # about 0.25 * 23 (its mean over 75 trials: about 6, sd about 1.4). Over 8 disjoint blocks of
    # 5 seeds the ratio guided / random was at most 0.14 (piBO), 0.01 (BOPrO) and 0.32
    # (PriorBand), so asking for half of random's mean leaves a margin of several sd.
    prior = ProductPrior(QUAD, QUAD_OPTIMUM, sd_fraction=0.05)
    seeds = range(5)
    guided = mean_regret(lambda s: make(bl, name, prior, s, 15, n_startup_trials=5), seeds)
    random = mean_regret(lambda s: optuna.samplers.RandomSampler(seed=s), seeds)
    assert guided < random / 2, (guided, random)


# -- PriorBand's probabilities ----------------------------------------------------------------


@pytest.mark.parametrize("eta", [2, 3, 4.5])
@pytest.mark.parametrize("rung", [0, 1, 2, 4])
def test_priorband_probabilities_are_in_the_simplex(bl, eta, rung):
    rng = np.random.default_rng(rung)
    p_u = 1.0 / (1.0 + eta**rung)
    assert bl.uniform_probability(eta, rung) == pytest.approx(p_u, rel=1e-15)
    before = bl.priorband_probabilities(eta=eta, rung=rung)
    assert before == pytest.approx((p_u, 1 - p_u, 0.0), abs=1e-15)
    cases = [rng.normal(scale=20, size=(2, 7)) for _ in range(5)]
    cases.append(np.array([[-np.inf, -1.0], [-np.inf, -np.inf]]))
    cases.append(np.full((2, 3), -np.inf))
    for a, b in cases:
        p = np.array(bl.priorband_probabilities(a, b, eta=eta, rung=rung))
        assert np.all(p >= 0) and p.sum() == pytest.approx(1.0, abs=1e-12), p
        assert p[0] == pytest.approx(p_u, rel=1e-15)
        # the split follows the geometric means of the likelihoods
        if np.isfinite(a).all() and np.isfinite(b).all():
            share = 1 / (1 + np.exp(b.mean() - a.mean()))
            assert p[1] == pytest.approx((1 - p_u) * share, rel=1e-9, abs=1e-300)


def test_priorband_turns_to_the_incumbent_when_the_prior_is_wrong(bl):
    # Prior on a poor corner; the objective's optimum far from it. Once the incumbent is active,
    # the top configurations lie near the incumbent, not the prior's centre.
    prior = ProductPrior(QUAD, {"x": -4.5, "y": 4.5}, sd_fraction=0.05)
    sampler = bl.PriorBandSampler(prior, seed=0, n_startup_trials=10)
    study = optuna.create_study(sampler=sampler)
    for x, y in [(1.3, -2.1), (1.0, -2.0), (1.5, -2.5), (0.8, -1.7)] + [(-4.5, 4.5)] * 5:
        study.enqueue_trial({"x": x, "y": y})
    study.optimize(quadratic, n_trials=9)
    p_u = 1 / (1 + 3**1)
    assert sampler.probabilities(study) == pytest.approx((p_u, 1 - p_u, 0.0))  # 9 < 10
    study.enqueue_trial({"x": 1.2, "y": -2.2})
    study.optimize(quadratic, n_trials=1)
    p = sampler.probabilities(study)
    assert p[0] == pytest.approx(p_u) and sum(p) == pytest.approx(1.0)
    assert p[2] > 0.99 * (1 - p_u), p
    # the same top set under a prior centred on it goes to the prior instead
    good = bl.PriorBandSampler(ProductPrior(QUAD, QUAD_OPTIMUM, 0.05), seed=0, n_startup_trials=10)
    q = good.probabilities(study)
    assert q[1] > q[2], q


def test_priorband_incumbent_density_is_normalized(bl):
    # lambda must be a density in the prior's base measure for the split to be fair: it
    # integrates to 1 on a float and a log float (in ln units) and sums to 1 on a categorical.
    for dist, centre in [
        (FloatDistribution(-2.0, 3.0), 2.5),
        (FloatDistribution(1e-3, 10.0, log=True), 1e-2),
    ]:
        sampler = bl.PriorBandSampler(ProductPrior({"p": dist}, {"p": centre}, 0.1), seed=0)
        low, high = internal_range(dist)
        c = math.log(centre) if dist.log else centre

        def density(u, sampler=sampler, c=c):
            return math.exp(sampler._incumbent_log_pdf(np.array([c]), np.array([[u]]))[0])

        total, _ = integrate.quad(density, low, high, points=[c], limit=200)
        assert total == pytest.approx(1.0, abs=1e-8)
    cat = CategoricalDistribution(["a", "b", "c", "d"])
    sampler = bl.PriorBandSampler(ProductPrior({"k": cat}, {"k": "c"}, 0.1), seed=0)
    probs = np.exp(sampler._incumbent_log_pdf(np.array([2.0]), np.arange(4.0)[:, None]))
    assert probs.sum() == pytest.approx(1.0, abs=1e-12)
    assert probs[2] == pytest.approx(0.5 + 0.5 / 4)


# -- enqueue ----------------------------------------------------------------------------------


def test_enqueue_runs_each_distinct_suggestion_first(bl):
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    first, second = {"x": 1.0, "y": -2.0}, {"x": 0.0, "y": 0.5}
    bl.enqueue(study, [first, second, dict(first)])
    study.optimize(quadratic, n_trials=5)
    assert [t.params for t in study.trials[:2]] == [first, second]
    assert first not in [t.params for t in study.trials[2:]]
    assert len(study.trials) == 5


# -- bad input --------------------------------------------------------------------------------


def bad_inputs(bl):
    prior = mixed_prior()
    return [
        (lambda: bl.PiBOSampler(prior, n_trials=0), "n_trials"),
        (lambda: bl.PiBOSampler(prior, n_trials=2.5), "n_trials"),
        (lambda: bl.PiBOSampler(prior, n_trials=30, beta=0.0), "beta"),
        (lambda: bl.PiBOSampler(prior, n_trials=30, beta=-1.0), "beta"),
        (lambda: bl.PiBOSampler(prior, n_trials=30, beta=math.nan), "beta"),
        (lambda: bl.PiBOSampler(prior, n_trials=30, n_ei_candidates=0), "n_ei_candidates"),
        (lambda: bl.PiBOSampler(prior, n_trials=30, n_startup_trials=-1), "n_startup_trials"),
        (lambda: bl.PiBOSampler(prior, n_trials=30, seed=-3), "seed"),
        (lambda: bl.PiBOSampler(object(), n_trials=30), "prior"),
        (lambda: bl.BOPrOSampler(prior, beta=0), "beta"),
        (lambda: bl.BOPrOSampler(prior, beta=-2.0), "beta"),
        (lambda: bl.BOPrOSampler(prior, seed="a"), "seed"),
        (lambda: bl.PriorBandSampler(prior, eta=1), "eta"),
        (lambda: bl.PriorBandSampler(prior, rung=-1), "rung"),
        (lambda: bl.PriorBandSampler(prior, mutation_rate=0.0), "mutation_rate"),
        (lambda: bl.PriorBandSampler(prior, mutation_sd=0.0), "mutation_sd"),
        (lambda: bl.pibo_score([0.0], [0.0], [0.0], 0.0, 1), "beta"),
        (lambda: bl.pibo_score([0.0], [0.0], [0.0], 1.0, 0), "n"),
        (lambda: bl.pibo_score([0.0, 1.0], [0.0], [0.0], 1.0, 1), "log_l"),
        (lambda: bl.bopro_score([0.0], [0.0], [0.0], 0.0, 1, -1.0), "beta"),
        (lambda: bl.bopro_score([0.0], [0.0], [0.0], 0.0, -1, 10.0), "t"),
        (lambda: bl.priorband_probabilities([0.0], None), "top_log_incumbent"),
        (lambda: bl.enqueue(optuna.create_study(), {"x": 1.0}), "suggestions"),
        (lambda: bl.enqueue(optuna.create_study(), [1.0]), r"suggestions\[0\]"),
    ]


def test_bad_input_raises_naming_the_parameter(bl):
    for call, name in bad_inputs(bl):
        with pytest.raises(ValueError, match=name):
            call()


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_space_the_prior_does_not_match_raises(bl, name):
    prior = ProductPrior(QUAD, QUAD_OPTIMUM, 0.05)

    def extra(trial):  # a parameter the prior does not define
        return quadratic(trial) + trial.suggest_float("z", 0.0, 1.0)

    with pytest.raises(ValueError, match="'z'"):
        run(make(bl, name, prior, seed=0), extra, 3)

    def other_bounds(trial):  # "x" on other bounds than the prior's
        return trial.suggest_float("x", -1.0, 1.0) ** 2

    with pytest.raises(ValueError, match="'x'"):
        run(make(bl, name, prior, seed=0), other_bounds, 3)

    # after start-up too, through the relative space
    sampler = make(bl, name, prior, seed=0, n_startup_trials=2)
    study = run(sampler, quadratic, 3)
    with pytest.raises(ValueError, match="'x'"):
        study.optimize(other_bounds, n_trials=1)


@pytest.mark.parametrize("name", SAMPLERS)
def test_multi_objective_raises(bl, name):
    sampler = make(bl, name, ProductPrior(QUAD, QUAD_OPTIMUM, 0.05), seed=0)
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=sampler)
    with pytest.raises(ValueError, match="single-objective"):
        study.optimize(lambda t: (quadratic(t), 0.0), n_trials=1)
