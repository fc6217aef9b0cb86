"""fusion.optuna against Optuna's own ``_ParzenEstimator.log_pdf``, and case J1.

The random-study tests evaluate fusion eagerly (``jax.disable_jit``), with every mixture padded to
``EAGER_KERNELS`` kernels and points fed in blocks of ``EAGER_ROWS``: each study has its own bounds,
which are static in the jitted ``log_prob``, and XLA takes seconds to compile a 7-D mixture, while
eager primitives are compiled once per shape and then reused by every study. The jitted path is
checked by J1, whose space is fixed.
"""

import dataclasses
import importlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optuna
import pytest
from hypothesis import given
from hypothesis import strategies as hst
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import TPESampler
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import _split_trials, default_gamma, default_weights
from optuna.trial import TrialState

import fusion.optuna.parzen as parzen
from fusion import density
from fusion.optuna import (
    SUPPORTED_OPTUNA,
    check_optuna_version,
    from_optuna_reprs,
    from_parzen_estimator,
    to_optuna_reprs,
)

ATOL = 1e-9
EAGER_KERNELS = 64  # >= 61 kernels: up to 60 observations and the prior
EAGER_ROWS = 512
KINDS = ("float", "log_float", "int", "log_int", "float_step", "int_step", "categorical")
CHOICE_POOL = (None, 1, "a", 2.5, True, "b", 0.0)


# --- random studies -------------------------------------------------------------------------------


def random_distribution(rng: np.random.Generator, kind: str):
    """A random Optuna distribution of ``kind`` with bounds on several scales."""
    if kind == "float":
        scale = 10 ** rng.uniform(-3, 3)
        low = rng.uniform(-1, 1) * scale
        return FloatDistribution(low, low + scale * rng.uniform(0.01, 2))
    if kind == "log_float":
        low = 10 ** rng.uniform(-6, 2)
        return FloatDistribution(low, low * 10 ** rng.uniform(0.01, 5), log=True)
    if kind == "int":
        low = int(rng.integers(-50, 50))
        return IntDistribution(low, low + int(rng.integers(0, 300)))
    if kind == "log_int":
        low = int(rng.integers(1, 30))
        return IntDistribution(low, low + int(rng.integers(0, 1000)), log=True)
    if kind == "float_step":
        step = float(rng.choice([0.01, 0.1, 0.25, 0.3, 0.5, 2.0, 2.5]))
        low = round(float(rng.uniform(-10, 10)), 2)
        return FloatDistribution(low, low + step * int(rng.integers(0, 40)), step=step)
    if kind == "int_step":
        step, low = int(rng.integers(2, 8)), int(rng.integers(-20, 20))
        high = low + step * int(rng.integers(0, 30)) + int(rng.integers(0, step))
        return IntDistribution(low, high, step=step)  # Optuna moves ``high`` onto the grid
    n = int(rng.integers(1, 6))
    return CategoricalDistribution([CHOICE_POOL[i] for i in rng.permutation(len(CHOICE_POOL))[:n]])


def random_values(rng: np.random.Generator, dist, n: int, clustered: bool = False) -> np.ndarray:
    """``n`` valid internal reprs of ``dist`` (raw numbers, or choice indices), as floats.

    ``clustered`` draws near one random point, so kernels get tiny bandwidths; ends are mixed in.
    """
    if isinstance(dist, CategoricalDistribution):
        return rng.integers(0, len(dist.choices), n).astype(float)
    log = dist.log
    lo, hi = (np.log(dist.low), np.log(dist.high)) if log else (dist.low, dist.high)
    if dist.step is not None:  # sample the cells [v - step/2, v + step/2], as Optuna does
        lo, hi = dist.low - dist.step / 2, dist.high + dist.step / 2
        lo, hi = (np.log(lo), np.log(hi)) if log else (lo, hi)
    u = rng.uniform(lo, hi, n)
    if clustered:
        u = np.clip(rng.uniform(lo, hi) + (hi - lo) * 1e-3 * rng.standard_normal(n), lo, hi)
    v = np.exp(u) if log else u
    if dist.step is not None:
        k = np.round((v - dist.low) / dist.step)
        v = np.clip(dist.low + k * dist.step, dist.low, dist.high)
    ends = rng.random(n) < 0.1
    v[ends] = np.where(rng.random(ends.sum()) < 0.5, dist.low, dist.high)
    return v.astype(float)


def random_study(rng: np.random.Generator, n_obs: int, duplicates: bool):
    """A search space holding every kind once (in random order) and ``n_obs`` observations."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns when it moves ``high`` onto the grid
        space = {
            f"p{i}_{kind}": random_distribution(rng, kind)
            for i, kind in enumerate(rng.permutation(KINDS))
        }
    obs = {
        name: random_values(rng, d, n_obs, clustered=rng.random() < 0.3)
        for name, d in space.items()
    }
    if duplicates and n_obs >= 2:
        # Whole repeated trials, and one parameter repeated three times (a zero gap both sides).
        src = rng.integers(0, n_obs, n_obs // 3 + 1)
        dst = rng.integers(0, n_obs, n_obs // 3 + 1)
        for v in obs.values():
            v[dst] = v[src]
        name = list(space)[rng.integers(len(space))]
        obs[name][rng.integers(0, n_obs, 3)] = obs[name][0]
    return space, obs


def eval_points(rng: np.random.Generator, space, obs, estimator, n_sampled: int = 376):
    """Raw evaluation points: draws of the estimator, uniform points, ends, the observations
    themselves, and points with one continuous coordinate outside its range (density zero)."""
    n_uniform, n_ends, n_obs_rows, n_out = 64, 8, 48, 16
    sampled = estimator.sample(np.random.RandomState(int(rng.integers(2**31))), n_sampled)
    uniform = {n: random_values(rng, d, n_uniform) for n, d in space.items()}
    ends = {
        n: (
            rng.integers(0, len(d.choices), n_ends).astype(float)
            if isinstance(d, CategoricalDistribution)
            else np.where(np.arange(n_ends) % 2 == 0, d.low, d.high).astype(float)
        )
        for n, d in space.items()
    }
    n_seen = len(next(iter(obs.values())))
    rows = rng.integers(0, n_seen, n_obs_rows) if n_seen else None
    seen = {
        n: obs[n][rows] if n_seen else random_values(rng, d, n_obs_rows) for n, d in space.items()
    }
    outside = {n: random_values(rng, d, n_out) for n, d in space.items()}
    continuous = [
        n for n, d in space.items() if not isinstance(d, CategoricalDistribution) and d.step is None
    ]
    for i in range(n_out):
        d = space[continuous[i % len(continuous)]]
        outside[continuous[i % len(continuous)]][i] = (
            (d.low / 2 if i % 4 else d.high * 1.5)
            if d.log
            else (d.low - 0.25 * (d.high - d.low) if i % 2 else d.high + 1e-3 * (d.high - d.low))
        )
    parts = (sampled, uniform, ends, seen, outside)
    return {n: np.concatenate([p[n] for p in parts]) for n in space}


def pad_kernels(mix: density.ProductKernelMixture, size: int) -> density.ProductKernelMixture:
    """``mix`` with zero-weight kernels appended up to ``size``, as ``mixture(pad=True)`` pads."""
    extra = size - mix.n_kernels
    assert extra >= 0
    return dataclasses.replace(
        mix,
        log_weights=jnp.concatenate([mix.log_weights, jnp.full(extra, -jnp.inf)]),
        mu=jnp.concatenate([mix.mu, jnp.zeros((extra, mix.mu.shape[1]))]),
        sigma=jnp.concatenate([mix.sigma, jnp.ones((extra, mix.sigma.shape[1]))]),
        cat_log_probs=tuple(
            jnp.concatenate([c, jnp.zeros((extra, c.shape[1]))]) for c in mix.cat_log_probs
        ),
    )


def fusion_log_pdf(mix, x, jit: bool = False) -> np.ndarray:
    """``mix.log_prob(x)``: jitted, or eagerly with fixed shapes (see the module docstring)."""
    if jit:
        return np.asarray(mix.log_prob(x))
    mix = pad_kernels(mix, EAGER_KERNELS)
    n = len(x)
    blocks = np.resize(np.arange(n), -(-n // EAGER_ROWS) * EAGER_ROWS).reshape(-1, EAGER_ROWS)
    with jax.disable_jit():
        out = np.concatenate([np.asarray(mix.log_prob(x[rows])) for rows in blocks])
    return out[:n]


def parity_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    """The largest ``|ours - theirs|`` where Optuna is finite; both must be ``-inf`` elsewhere."""
    assert not np.any(np.isnan(theirs)), "Optuna returned NaN"
    zero = np.isneginf(theirs)
    assert np.all(np.isneginf(ours[zero])), f"fusion is finite where Optuna is -inf: {ours[zero]}"
    assert np.all(np.isfinite(ours[~zero])), f"fusion is not finite where Optuna is: {ours[~zero]}"
    return float(np.max(np.abs(ours[~zero] - theirs[~zero]), initial=0.0))


def params(magic_clip: bool, endpoints: bool) -> _ParzenEstimatorParameters:
    return _ParzenEstimatorParameters(
        prior_weight=1.0,
        consider_magic_clip=magic_clip,
        consider_endpoints=endpoints,
        weights=default_weights,
        multivariate=True,
    )


def study_parity(seed: int, n_obs: int, magic_clip: bool, endpoints: bool, duplicates: bool):
    """Build a random study, convert its estimator and return the parity error (after checks)."""
    rng = np.random.default_rng(seed)
    space, obs = random_study(rng, n_obs, duplicates)
    estimator = _ParzenEstimator(obs, space, params(magic_clip, endpoints))
    fspace, mix = from_parzen_estimator(estimator, space)
    points = eval_points(rng, space, obs, estimator)
    theirs = estimator.log_pdf(points)
    assert np.isneginf(theirs[-16:]).all()  # the points outside the range
    return parity_error(fusion_log_pdf(mix, from_optuna_reprs(fspace, points)), theirs)


# --- parity ---------------------------------------------------------------------------------------


@given(
    seed=hst.integers(0, 2**32 - 1),
    n_obs=hst.integers(0, 60),
    magic_clip=hst.booleans(),
    endpoints=hst.booleans(),
    duplicates=hst.booleans(),
)
def test_parity_random_studies(seed, n_obs, magic_clip, endpoints, duplicates):
    assert study_parity(seed, n_obs, magic_clip, endpoints, duplicates) <= ATOL


@pytest.mark.parametrize("n_obs", [0, 1, 2, 5])
@pytest.mark.parametrize(("magic_clip", "endpoints"), [(True, True), (False, False)])
def test_parity_tiny_and_repeated(n_obs, magic_clip, endpoints):
    """No, one, and identical observations (every gap zero: bandwidths hit their clip)."""
    rng = np.random.default_rng(n_obs)
    space, obs = random_study(rng, n_obs, duplicates=False)
    obs = {n: np.full(n_obs, v[0]) if n_obs else v for n, v in obs.items()}
    estimator = _ParzenEstimator(obs, space, params(magic_clip, endpoints))
    fspace, mix = from_parzen_estimator(estimator, space)
    assert mix.n_kernels == density.bucket_size(n_obs + 1)
    points = eval_points(rng, space, obs, estimator)
    err = parity_error(
        fusion_log_pdf(mix, from_optuna_reprs(fspace, points)), estimator.log_pdf(points)
    )
    assert err <= ATOL


def _objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -3.0, 3.0)
    lr = trial.suggest_float("lr", 1e-5, 1.0, log=True)
    depth = trial.suggest_int("depth", 1, 12)
    width = trial.suggest_int("width", 4, 512, log=True)
    frac = trial.suggest_float("frac", 0.0, 1.0, step=0.05)
    batch = trial.suggest_int("batch", 8, 128, step=8)
    act = trial.suggest_categorical("act", [None, 1, "a", 2.5])
    penalty = {None: 0.3, 1: 0.0, "a": 0.7, 2.5: 1.1}[act]
    return (
        (x - 1.2) ** 2
        + (np.log10(lr) + 2.5) ** 2
        + 0.1 * abs(depth - 5)
        + 0.5 * abs(np.log2(width) - 6)
        + (frac - 0.35) ** 2
        + abs(batch - 64) / 64
        + penalty
    )


def test_parity_real_tpe_study():
    """The below and above estimators that ``TPESampler._sample`` builds after 40 trials."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = TPESampler(seed=0, multivariate=True)
        study = optuna.create_study(sampler=sampler)
        study.optimize(_objective, n_trials=40)
        trials = study._get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED), use_cache=False
        )
        search_space = sampler.infer_relative_search_space(study, study.trials[-1])
    assert len(search_space) == 7
    gamma = sampler._gamma or default_gamma
    below_trials, above_trials = _split_trials(study, trials, gamma(len(trials)))
    estimators = [
        sampler._build_parzen_estimator(study, search_space, below_trials, handle_below=True),
        sampler._build_parzen_estimator(study, search_space, above_trials, handle_below=False),
    ]
    points = {
        n: np.concatenate(
            [e.sample(np.random.RandomState(i), 1000)[n] for i, e in enumerate(estimators)]
        )
        for n in search_space
    }
    for estimator, n_trials in zip(estimators, map(len, (below_trials, above_trials)), strict=True):
        fspace, mix = from_parzen_estimator(estimator, search_space)
        assert len(estimator._mixture_distribution.weights) == n_trials + 1
        x = from_optuna_reprs(fspace, points)
        assert parity_error(fusion_log_pdf(mix, x), estimator.log_pdf(points)) <= ATOL


# --- the conversion itself --------------------------------------------------------------------------


def test_reprs_round_trip_and_log_float_is_ln():
    space = {
        "lf": FloatDistribution(1e-3, 10.0, log=True),
        "li": IntDistribution(1, 100, log=True),
        "c": CategoricalDistribution([None, "a"]),
    }
    estimator = _ParzenEstimator(
        {"lf": np.array([0.1]), "li": np.array([7.0]), "c": np.array([1.0])},
        space,
        params(True, True),
    )
    fspace, _ = from_parzen_estimator(estimator, space)
    reprs = {"lf": np.array([0.1, 2.0]), "li": np.array([7.0, 100.0]), "c": np.array([1.0, 0.0])}
    x = from_optuna_reprs(fspace, reprs)
    np.testing.assert_allclose(x, [[np.log(0.1), 7.0, 1.0], [np.log(2.0), 100.0, 0.0]])
    back = to_optuna_reprs(fspace, x)
    for name, v in reprs.items():
        np.testing.assert_allclose(back[name], v, rtol=1e-15)


def test_mismatched_space_is_a_clear_value_error():
    space = {"x": FloatDistribution(0.0, 1.0), "n": IntDistribution(0, 10)}
    estimator = _ParzenEstimator(
        {"x": np.array([0.5]), "n": np.array([3.0])}, space, params(True, True)
    )
    with pytest.raises(ValueError, match=r"parameter 'x'.*disagree"):
        from_parzen_estimator(estimator, {**space, "x": FloatDistribution(0.0, 2.0)})
    with pytest.raises(ValueError, match=r"parameter 'x'.*_BatchedTruncNormDistributions"):
        from_parzen_estimator(estimator, {**space, "x": FloatDistribution(0.1, 1.0, log=True)})
    with pytest.raises(ValueError, match=r"parameter 'n'.*disagree"):
        from_parzen_estimator(estimator, {**space, "n": IntDistribution(0, 10, step=2)})
    with pytest.raises(ValueError, match="2 parameters, the search space has 1"):
        from_parzen_estimator(estimator, {"x": space["x"]})


# --- the version check ------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["4.5.0", "5.2.0", "5.2.0.dev0", "6.0.0", "not-a-version"])
def test_unsupported_optuna_version_raises(monkeypatch, version):
    monkeypatch.setattr(optuna, "__version__", version)
    with pytest.raises(
        RuntimeError, match=rf"optuna {SUPPORTED_OPTUNA}.*optuna {version} is installed"
    ):
        check_optuna_version()


@pytest.mark.parametrize("version", ["5.0.0", "5.1.0", "5.1.3.dev0"])
def test_supported_optuna_version_passes(monkeypatch, version):
    monkeypatch.setattr(optuna, "__version__", version)
    check_optuna_version()


def test_version_is_checked_on_import(monkeypatch):
    monkeypatch.setattr(optuna, "__version__", "4.0.0")
    try:
        with pytest.raises(RuntimeError, match="optuna 4.0.0 is installed"):
            importlib.reload(parzen)
    finally:
        monkeypatch.undo()
        importlib.reload(parzen)


def test_fallback_version_parser():
    ok = ["5.0", "5.0.0", "5.1.9", "5.1.0rc1"]
    bad = ["4.9.9", "5.2", "5.2.0", "10.0", "x"]
    assert all(parzen._fallback_contains(SUPPORTED_OPTUNA, v) for v in ok)
    assert not any(parzen._fallback_contains(SUPPORTED_OPTUNA, v) for v in bad)


# --- J1 -------------------------------------------------------------------------------------------


def test_j1_growing_observations_compile_per_bucket():
    """J1: a jitted Parzen log-density re-evaluated as observations grow from 1 to 200 compiles at
    most about 9 times (power-of-two buckets), and equals the unpadded computation to 1e-12."""
    space = {
        "x": FloatDistribution(-5.0, 5.0),
        "n": IntDistribution(1, 64, log=True),
        "c": CategoricalDistribution([None, 1, "a", 2.5]),
    }
    rng = np.random.default_rng(1)
    obs = {n: random_values(rng, d, 200) for n, d in space.items()}
    points = {n: random_values(rng, d, 128) for n, d in space.items()}
    check_unpadded = {2: None, 17: None, 200: None}  # kernel counts that are not powers of two
    # 128 points and a 64-point grid: log_prob tabulates the cells of "n" in a compiled call of its own.
    jitted = (density._mixture_log_prob, density._cell_table)
    before = [f._cache_size() for f in jitted]
    buckets = set()
    for n_obs in range(1, 201):
        estimator = _ParzenEstimator(
            {n: v[:n_obs] for n, v in obs.items()}, space, params(True, True)
        )
        fspace, mix = from_parzen_estimator(estimator, space)
        buckets.add(mix.n_kernels)
        x = from_optuna_reprs(fspace, points)
        ours = fusion_log_pdf(mix, x, jit=True)
        assert parity_error(ours, estimator.log_pdf(points)) <= ATOL
        if n_obs in check_unpadded:
            check_unpadded[n_obs] = (estimator, x, ours)
    compiles = [f._cache_size() - b for f, b in zip(jitted, before, strict=True)]
    assert buckets == {2, 4, 8, 16, 32, 64, 128, 256}
    assert compiles[1] > 0, "the cell table was not used"
    assert max(compiles) <= 9, f"{compiles} compilations for {len(buckets)} buckets"
    for n_obs, (estimator, x, ours) in check_unpadded.items():
        _, unpadded = from_parzen_estimator(estimator, space, pad=False)
        assert unpadded.n_kernels == n_obs + 1
        np.testing.assert_allclose(ours, fusion_log_pdf(unpadded, x, jit=True), rtol=0, atol=1e-12)
