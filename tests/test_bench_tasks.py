"""The benchmark tasks and priors: stated optima hold, tables and densities are what they claim.

Reference values: the synthetic optima are from the Virtual Library of Simulation Experiments
(Surjanovic & Bingham, https://www.sfu.ca/~ssurjano/optimization.html); densities are checked
against ``scipy.stats.truncnorm`` and ``scipy.integrate.quad``. The real tasks' tables are read
from ``benchmarks/data`` as committed; nothing here cross-validates a model.
"""

import itertools
import math
import pickle

import numpy as np
import optuna
import pytest
from benchmark_scripts import on_path, run_script
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from scipy import integrate, optimize, stats

with on_path():
    import priors
    import tasks

SYNTHETIC = tasks.SYNTHETIC_NAMES
REAL = tasks.REAL_NAMES
N_UNIFORM = 4000


def uniform_configs(space, rng, n):
    """``n`` configurations drawn uniformly in internal coordinates (log-uniform on log params)."""
    columns = {}
    for name, dist in space.items():
        if isinstance(dist, CategoricalDistribution):
            columns[name] = [dist.choices[i] for i in rng.integers(len(dist.choices), size=n)]
        elif isinstance(dist, IntDistribution):
            columns[name] = [int(v) for v in rng.integers(dist.low, dist.high + 1, size=n)]
        elif dist.log:
            u = rng.uniform(math.log(dist.low), math.log(dist.high), size=n)
            columns[name] = [float(v) for v in np.clip(np.exp(u), dist.low, dist.high)]
        else:
            columns[name] = [float(v) for v in rng.uniform(dist.low, dist.high, size=n)]
    return [{name: columns[name][i] for name in space} for i in range(n)]


def uniform_values(task, n=N_UNIFORM, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([task.objective(p) for p in uniform_configs(task.space, rng, n)])


def range_units(task, params):
    """Internal coordinates of the numeric parameters, as fractions of their internal ranges."""
    x = priors.to_internal(task.space, params)
    out = []
    for j, dist in enumerate(task.space.values()):
        if not isinstance(dist, CategoricalDistribution):
            low, high = priors.internal_bounds(dist)
            out.append((x[j] - low) / (high - low))
    return np.array(out)


# --- tasks ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_optimum_is_attained_and_not_beaten_by_uniform_points(name):
    task = tasks.get_task(name)
    tasks.check_params(task.space, task.optimum_params)
    assert task.objective(task.optimum_params) == pytest.approx(task.optimum, abs=1e-12)
    values = uniform_values(task)
    assert values.min() >= task.optimum - 1e-12
    assert values.min() > task.optimum + 1e-3  # random points do not land on it by chance


@pytest.mark.parametrize("name", ["branin", "hartmann6", "rosenbrock5"])
def test_local_search_from_random_starts_never_beats_the_stated_optimum(name):
    task = tasks.get_task(name)
    names = list(task.space)
    bounds = [(d.low, d.high) for d in task.space.values()]

    def f(x):
        return task.objective(dict(zip(names, map(float, x), strict=True)))

    rng = np.random.default_rng(1)
    best = math.inf
    for _ in range(6):
        x0 = [rng.uniform(lo, hi) for lo, hi in bounds]
        best = min(best, optimize.minimize(f, x0, method="L-BFGS-B", bounds=bounds).fun)
    assert best >= task.optimum - 1e-9
    # and some start finds a value near it, so the search was not simply stuck
    assert best <= task.optimum + 0.05 * max(1.0, abs(task.optimum))


def test_branin_has_the_literature_value_at_all_three_minimizers():
    task = tasks.get_task("branin")
    assert task.optimum == pytest.approx(0.397887, abs=1e-6)  # Surjanovic & Bingham
    for x1, x2 in [(-math.pi, 12.275), (math.pi, 2.275), (9.42478, 2.475)]:
        assert task.objective({"x1": x1, "x2": x2}) == pytest.approx(0.397887, abs=1e-5)


def test_hartmann6_matches_the_literature_and_is_a_local_minimum():
    task = tasks.get_task("hartmann6")
    lit = dict(zip(task.space, tasks.HARTMANN6_LITERATURE_ARGMIN, strict=True))
    assert task.optimum == pytest.approx(tasks.HARTMANN6_LITERATURE_MIN, abs=1e-5)
    assert task.objective(lit) == pytest.approx(tasks.HARTMANN6_LITERATURE_MIN, abs=1e-5)
    for name, value in lit.items():
        assert task.optimum_params[name] == pytest.approx(value, abs=1e-5)
    x0 = np.array(list(task.optimum_params.values()))
    res = optimize.minimize(
        lambda x: task.objective(dict(zip(task.space, map(float, x), strict=True))),
        x0,
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 4000},
    )
    assert res.fun >= task.optimum - 1e-12


def test_mixed_optimum_is_exactly_zero_and_the_categorical_matters():
    task = tasks.get_task("mixed")
    assert task.objective(task.optimum_params) == 0.0
    # the best value of each activation over a fine grid of the others is at least its offset
    lrs = np.exp(np.linspace(math.log(1e-5), 0.0, 201))
    for act, offset in tasks.MIXED_OFFSET.items():
        best = min(
            task.objective({"lr": float(lr), "layers": k, "activation": act, "dropout": 0.2})
            for lr in lrs
            for k in range(1, 9)
        )
        assert offset <= best <= offset + 0.01
    assert len(set(tasks.MIXED_OFFSET.values())) == len(tasks.MIXED_OFFSET)


@pytest.mark.parametrize("name", SYNTHETIC)
def test_synthetic_poor_params_lie_in_the_worst_quartile(name):
    task = tasks.get_task(name)
    tasks.check_params(task.space, task.poor_params)
    assert task.objective(task.poor_params) >= np.quantile(uniform_values(task), 0.75)


@pytest.mark.parametrize("name", REAL)
def test_real_table_loads_and_its_minimum_is_the_optimum(name):
    task = tasks.get_task(name)
    table = tasks.load_table(name)
    assert tasks.load_table(name) is table  # cached per process
    assert table.values.shape == tuple(len(a.values) for a in table.axes)
    assert np.all((table.values >= 0.0) & (table.values <= 1.0))
    assert table.build["seconds"] > 0 and table.build["command"].endswith("--rebuild")
    assert task.optimum == table.values.min()
    assert task.objective(task.optimum_params) == task.optimum
    values = uniform_values(task, n=2000)
    assert values.min() >= task.optimum - 1e-12
    assert values.max() <= table.values.max() + 1e-12
    # the poor point is a grid point in the worst quartile of the table
    poor = task.objective(task.poor_params)
    assert poor in table.values
    assert poor >= np.quantile(table.values, 0.75)


@pytest.mark.parametrize("name", REAL)
def test_interpolation_reproduces_the_table_and_is_multilinear(name):
    task = tasks.get_task(name)
    table = tasks.load_table(name)
    for index in itertools.product(*(range(len(a.values)) for a in table.axes)):
        assert task.objective(table.grid_params(index)) == table.values[index]
    # halfway (in internal units) between two neighbours along a continuous axis: their mean
    rng = np.random.default_rng(2)
    for j, axis in enumerate(table.axes):
        if axis.exact:
            continue
        for _ in range(20):
            index = [int(rng.integers(len(a.values))) for a in table.axes]
            index[j] = int(rng.integers(len(axis.values) - 1))
            lo, hi = axis.values[index[j]], axis.values[index[j] + 1]
            params = table.grid_params(index)
            params[axis.name] = math.sqrt(lo * hi) if axis.kind == "log" else (lo + hi) / 2
            upper = list(index)
            upper[j] += 1
            expected = (table.values[tuple(index)] + table.values[tuple(upper)]) / 2
            assert task.objective(params) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("name", tasks.TASK_NAMES)
def test_objective_pickles_and_suggest_asks_for_every_parameter(name):
    task = tasks.get_task(name)
    objective = pickle.loads(pickle.dumps(task.objective))
    assert objective(task.optimum_params) == task.objective(task.optimum_params)

    def run(trial):
        return task.objective(tasks.suggest(trial, task.space))

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study.optimize(run, n_trials=5)
    for trial in study.trials:
        assert trial.distributions == task.space
        assert list(trial.params) == list(task.space)
        assert tasks.regret(task, trial.value) == pytest.approx(trial.value - task.optimum)


def test_regret_and_get_task_reject_bad_input():
    task = tasks.get_task("branin")
    assert tasks.regret(task, task.optimum) == 0.0
    assert tasks.regret(task, task.optimum - 1e-12) == 0.0
    assert tasks.regret(task, task.optimum + 2.0) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="below the optimum"):
        tasks.regret(task, task.optimum - 1e-3)
    with pytest.raises(ValueError, match="nan"):
        tasks.regret(task, math.nan)
    with pytest.raises(ValueError, match="'levy'"):
        tasks.get_task("levy")
    with pytest.raises(ValueError, match="'x2' is missing"):
        tasks.check_params(task.space, {"x1": 0.0})
    with pytest.raises(ValueError, match="'x1': 11.0 is outside"):
        tasks.check_params(task.space, {"x1": 11.0, "x2": 0.0})
    with pytest.raises(ValueError, match="'layers': 2.5 is not an integer"):
        tasks.check_params(
            tasks.get_task("mixed").space,
            {"lr": 0.01, "layers": 2.5, "activation": "relu", "dropout": 0.1},
        )
    with pytest.raises(ValueError, match="'kernel': 'poly' is not one of"):
        tasks.get_task("svc_digits").objective({"C": 1.0, "gamma": 0.01, "kernel": "poly"})


def test_list_prints_every_task():
    stdout = run_script("tasks.py", "--list", timeout=120)
    for name in tasks.TASK_NAMES:
        task = tasks.get_task(name)
        line = next(row for row in stdout.splitlines() if row.startswith(name + " "))
        assert int(line.split()[1]) == task.dim
        assert float(line.split()[2]) == pytest.approx(task.optimum, rel=1e-10, abs=1e-12)


# --- priors -----------------------------------------------------------------------------------


def one_dim(dist, loc, scale):
    return priors.Prior({"p": dist}, (loc,), (scale,), (None,))


ONE_DIM = [
    (FloatDistribution(-5.0, 10.0), 8.0, 3.0),
    (FloatDistribution(1e-5, 1.0, log=True), -1.0, 2.0),
    (IntDistribution(1, 8), 2.0, 1.5),
    (IntDistribution(1, 64, log=True), 4.5, 0.5),
    (FloatDistribution(0.0, 1.0), 1.3, 0.05),  # centred outside: almost all mass cut off
]


@pytest.mark.parametrize(("dist", "loc", "scale"), ONE_DIM)
def test_one_dim_log_pdf_integrates_to_one_and_matches_truncnorm(dist, loc, scale):
    prior = one_dim(dist, loc, scale)
    low, high = priors.internal_bounds(dist)
    mass, err = integrate.quad(
        lambda x: math.exp(prior.log_pdf_internal(np.array([[x]]))[0]),
        low,
        high,
        points=[min(max(loc, low), high)],
        epsabs=1e-12,
        epsrel=1e-10,
    )
    assert mass == pytest.approx(1.0, abs=1e-8)
    a, b = (low - loc) / scale, (high - loc) / scale
    x = np.linspace(low, high, 101)
    expected = stats.truncnorm.logpdf(x, a, b, loc=loc, scale=scale)
    assert np.allclose(prior.log_pdf_internal(x[:, None]), expected, rtol=1e-10, atol=1e-10)
    outside = np.array([[low - 1e-9], [high + 1.0], [math.nan], [math.inf], [-math.inf]])
    assert np.all(prior.log_pdf_internal(outside) == -np.inf)


@pytest.mark.parametrize("name", tasks.TASK_NAMES)
@pytest.mark.parametrize("quality", priors.QUALITIES)
def test_generating_prior_density_is_the_product_of_its_dims(name, quality):
    task = tasks.get_task(name)
    prior = priors.generating_prior(task, quality)
    rng = np.random.default_rng(3)
    configs = prior.sample(rng, 50) + uniform_configs(task.space, rng, 50)
    x = np.stack([priors.to_internal(task.space, c) for c in configs])
    expected = np.zeros(len(configs))
    for j, dist in enumerate(task.space.values()):
        if isinstance(dist, CategoricalDistribution):
            expected += np.log(np.asarray(prior.probs[j]))[x[:, j].astype(int)]
            assert sum(prior.probs[j]) == pytest.approx(1.0)
        else:
            low, high = priors.internal_bounds(dist)
            loc, scale = prior.loc[j], prior.scale[j]
            expected += stats.truncnorm.logpdf(
                x[:, j], (low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale
            )
    got = prior.log_pdf_internal(x)
    assert np.allclose(got, expected, rtol=1e-10, atol=1e-10)
    assert np.array_equal(pickle.loads(pickle.dumps(prior)).log_pdf_internal(x), got)
    assert prior.log_pdf(configs[0]) == pytest.approx(got[0])


@pytest.mark.parametrize("name", tasks.TASK_NAMES)
@pytest.mark.parametrize("quality", priors.QUALITIES)
def test_samples_are_valid_configurations(name, quality):
    task = tasks.get_task(name)
    configs = priors.generating_prior(task, quality).sample(np.random.default_rng(4), 200)
    assert len(configs) == 200
    for cfg in configs:
        assert list(cfg) == list(task.space)
        for pname, dist in task.space.items():
            value = cfg[pname]
            assert dist._contains(dist.to_internal_repr(value)), (pname, value)
            if isinstance(dist, FloatDistribution):
                assert type(value) is float
            elif isinstance(dist, IntDistribution):
                assert type(value) is int
        assert np.isfinite(task.objective(cfg))


def test_float_draws_follow_the_truncated_normal():
    dist = FloatDistribution(1e-5, 1.0, log=True)
    low, high = priors.internal_bounds(dist)
    loc, scale = -2.0, 1.5  # cut off at the top, about 1.3 sd away
    draws = one_dim(dist, loc, scale).sample(np.random.default_rng(5), 4000)
    x = np.log([d["p"] for d in draws])
    ref = stats.truncnorm((low - loc) / scale, (high - loc) / scale, loc=loc, scale=scale)
    assert stats.kstest(x, ref.cdf).pvalue > 1e-3
    # a normal with the same loc and scale, not truncated, is rejected: the test has power
    assert stats.kstest(x, stats.norm(loc, scale).cdf).pvalue < 1e-6


def test_int_and_categorical_draws_follow_their_cell_masses():
    dist = IntDistribution(1, 8)
    loc, scale = 7.0, 2.0
    draws = one_dim(dist, loc, scale).sample(np.random.default_rng(6), 5000)
    counts = np.bincount([d["p"] for d in draws], minlength=9)[1:]
    ref = stats.truncnorm((1 - loc) / scale, (8 - loc) / scale, loc=loc, scale=scale)
    edges = np.concatenate([[1.0], np.arange(1.5, 8.0, 1.0), [8.0]])
    masses = np.diff(ref.cdf(edges))
    assert stats.chisquare(counts, 5000 * masses).pvalue > 1e-3

    space = {"c": CategoricalDistribution(("a", "b", "c"))}
    probs = (0.6, 0.3, 0.1)
    prior = priors.Prior(space, (math.nan,), (math.nan,), (probs,))
    draws = prior.sample(np.random.default_rng(7), 5000)
    counts = np.array([sum(d["c"] == c for d in draws) for c in "abc"])
    assert stats.chisquare(counts, 5000 * np.array(probs)).pvalue > 1e-3


def test_generating_priors_follow_the_protocol():
    task = tasks.get_task("mixed")
    opt = priors.to_internal(task.space, task.optimum_params)
    for quality, sd, weight in [("strong", 0.05, 0.8), ("weak", 0.25, 0.4), ("wrong", 0.05, 0.8)]:
        prior = priors.generating_prior(task, quality)
        centre_params = task.poor_params if quality == "wrong" else task.optimum_params
        choice = task.space["activation"].to_internal_repr(centre_params["activation"])
        assert prior.probs[2][choice] == pytest.approx(weight)
        assert max(prior.probs[2]) == prior.probs[2][choice]  # the centre's choice is the mode
        assert prior.scale[0] == pytest.approx(sd * math.log(1e5))
        assert prior.scale[1] == pytest.approx(sd * 7)
    for name in tasks.TASK_NAMES:
        task = tasks.get_task(name)
        shift = range_units(task, task.optimum_params)
        centre = priors.weak_centre(task)
        k = 0
        for j, dist in enumerate(task.space.values()):
            if isinstance(dist, CategoricalDistribution):
                continue
            low, high = priors.internal_bounds(dist)
            moved = (centre[j] - low) / (high - low) - shift[k]
            assert abs(moved) == pytest.approx(0.15)
            assert low <= centre[j] <= high
            k += 1
    assert np.all(priors.generating_prior(tasks.get_task("mixed"), "strong").loc[:2] == opt[:2])


def test_suggestions_are_deterministic_rounded_and_where_the_prior_says():
    for name in tasks.TASK_NAMES:
        task = tasks.get_task(name)
        first = priors.suggestions(task, "strong", seed=0)
        assert first == priors.suggestions(task, "strong", seed=0)
        assert first != priors.suggestions(task, "strong", seed=1)
        assert first != priors.suggestions(task, "weak", seed=0)
        assert len(first) == 8 and len(priors.suggestions(task, "weak", seed=3, n=5)) == 5
        for quality in priors.QUALITIES:
            sugg = priors.suggestions(task, quality, seed=2, n=10)
            for cfg in sugg:
                tasks.check_params(task.space, cfg)
                for pname, dist in task.space.items():
                    if isinstance(dist, FloatDistribution):
                        value = cfg[pname]
                        assert value in (dist.low, dist.high) or value == float(f"{value:.2e}")
            if quality == "weak":
                continue
            target = task.poor_params if quality == "wrong" else task.optimum_params
            units = np.stack([range_units(task, cfg) for cfg in sugg])
            # sd is 0.05 of the range: every coordinate within 5 sd (plus int rounding), the mean
            # within 5 sd / sqrt(10) (truncation at a bound moves it inward by up to 0.8 sd)
            assert np.all(np.abs(units - range_units(task, target)) <= 0.25)
            assert np.all(np.abs(units.mean(axis=0) - range_units(task, target)) <= 0.08)


def test_hand_written_suggestions_are_fixed_and_valid():
    for name in REAL:
        task = tasks.get_task(name)
        sugg = priors.suggestions(task, "hand-written", seed=0)
        assert 5 <= len(sugg) <= 8
        assert sugg == priors.suggestions(task, "hand-written", seed=9)
        for cfg in sugg:
            tasks.check_params(task.space, cfg)
    with pytest.raises(ValueError, match="'hand-written'.*'branin'"):
        priors.suggestions(tasks.get_task("branin"), "hand-written", seed=0)


def test_fitted_prior_recovers_its_centre_and_spread():
    task = tasks.get_task("mixed")
    mid = [
        sum(priors.internal_bounds(d)) / 2
        for d in task.space.values()
        if not isinstance(d, CategoricalDistribution)
    ]
    ranges = [math.log(1e5), 7.0, 0.8]
    source = priors.Prior(
        task.space,
        (mid[0], mid[1], math.nan, mid[2]),
        (0.1 * ranges[0], 0.1 * ranges[1], math.nan, 0.1 * ranges[2]),
        (None, None, (0.1, 0.2, 0.3, 0.4), None),
    )
    draws = source.sample(np.random.default_rng(8), 4000)
    fitted = priors.fitted_prior(task, draws)
    for j, k in [(0, 0), (1, 1), (3, 2)]:
        assert abs(fitted.loc[j] - mid[k]) <= 0.01 * ranges[k]
    assert fitted.scale[0] == pytest.approx(0.1 * ranges[0], rel=0.05)
    assert fitted.scale[3] == pytest.approx(0.1 * ranges[2], rel=0.05)
    assert np.allclose(fitted.probs[2], (0.1, 0.2, 0.3, 0.4), atol=0.02)

    one = dict(task.optimum_params)
    single = priors.fitted_prior(task, [one])
    assert single.loc[0] == pytest.approx(math.log(3e-3))
    assert single.scale[0] == pytest.approx(0.05 * ranges[0])
    assert single.scale[1] == pytest.approx(0.05 * ranges[1])
    assert single.probs[2] == pytest.approx((1.25 / 2, 0.25 / 2, 0.25 / 2, 0.25 / 2))
    other = dict(one, activation="tanh")
    three = priors.fitted_prior(task, [one, one, other])
    assert three.probs[2] == pytest.approx((2.25 / 4, 0.25 / 4, 1.25 / 4, 0.25 / 4))


def test_priors_reject_bad_input():
    task = tasks.get_task("mixed")
    good = dict(task.optimum_params)
    with pytest.raises(ValueError, match="quality 'medium'"):
        priors.generating_prior(task, "medium")
    with pytest.raises(ValueError, match="quality 'medium'"):
        priors.suggestions(task, "medium", seed=0)
    with pytest.raises(ValueError, match="seed"):
        priors.suggestions(task, "strong", seed=-1)
    with pytest.raises(ValueError, match="suggestions is empty"):
        priors.fitted_prior(task, [])
    with pytest.raises(ValueError, match=r"suggestions\[1\].*'dropout' is missing"):
        priors.fitted_prior(task, [good, {k: v for k, v in good.items() if k != "dropout"}])
    with pytest.raises(ValueError, match="'lr': 2.0 is outside"):
        priors.fitted_prior(task, [dict(good, lr=2.0)])
    with pytest.raises(ValueError, match="'activation': 'selu' is not one of"):
        priors.fitted_prior(task, [dict(good, activation="selu")])
    with pytest.raises(ValueError, match="unknown parameter 'momentum'"):
        priors.fitted_prior(task, [dict(good, momentum=0.9)])
    prior = priors.generating_prior(task, "strong")
    with pytest.raises(ValueError, match="'activation': 'selu'"):
        prior.log_pdf(dict(good, activation="selu"))
    assert prior.log_pdf(dict(good, lr=2.0)) == -math.inf
    with pytest.raises(ValueError, match=r"shape \(m, 4\)"):
        prior.log_pdf_internal(np.zeros((3, 2)))
    with pytest.raises(ValueError, match="n must be"):
        prior.sample(np.random.default_rng(0), -1)
    with pytest.raises(ValueError, match="'lr'.*scale"):
        priors.Prior(task.space, (0.0, 4.0, math.nan, 0.2), (0.0, 1.0, math.nan, 0.1), prior.probs)
