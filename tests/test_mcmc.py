"""MCMC (``fusion.mcmc``): goodness of fit against exact distributions, starting points (case I2),
the non-mixing diagnostic, argument errors, and compilation once per shape.

**Correlated draws.** Goodness-of-fit tests assume independent draws; MCMC draws are not. Each
chain is therefore thinned to one draw every ``ceil(n_draws / ESS)`` (the integrated
autocorrelation time as the ESS estimates it), so a test sees about ESS nearly independent draws
and its level stays close to the nominal ``ALPHA``. Testing all draws would make the chi-square
and energy statistics too large by a factor of about ``n_draws / ESS`` and reject a correct
sampler. (Checked outside the suite on the 1-D mixture below: over 40 seeds the thinned binned
p-values were uniform, KS p = 0.41, while on all draws they were 0.002-0.16 in 5 of 5 seeds.)

References are never the sampler's own output: scipy's ``truncnorm``, exact probabilities from
``log_prob`` on the grid, and exact draws (``density.sample``, AM-GM rejection, the closed-form
product). Runs share their shapes (``N``, ``WARMUP``, ``CHAINS`` and the spaces below), so each
space compiles once for the whole file.
"""

from __future__ import annotations

import itertools
import math
import warnings

import jax
import numpy as np
import pytest
import scipy.stats as st
from gof import ALPHA, binned_pvalue, chi_square_pvalue, energy_pvalue

from fusion import mcmc
from fusion.combine import geometric, product
from fusion.density import mixture
from fusion.mcmc import MCMCNotConverged, mcmc_sample
from fusion.normalize import closed_form
from fusion.rejection import amgm_rejection_sample
from fusion.space import CATEGORICAL, CONTINUOUS, DISCRETE, LOG_DISCRETE, Dim

CHAINS, WARMUP, N = 4, 300, 4000
BOX1 = (Dim(CONTINUOUS, -3.0, 8.0),)
GRID = (
    Dim(CATEGORICAL, n_choices=4),
    Dim(DISCRETE, 0.0, 10.0, 1.0),
    Dim(LOG_DISCRETE, 1.0, 32.0, 1.0),
)
N_GRID = 20_000  # grid-only chains are cheap (no gradients) and mix more slowly per draw
# Continuous coordinates with one unconstraining bijection each (exp above a bound, exp below
# one, the identity), and a categorical one.
MIXED = (
    Dim(CONTINUOUS, 0.0, math.inf),
    Dim(CONTINUOUS, -math.inf, 1.0),
    Dim(CONTINUOUS, -math.inf, math.inf),
    Dim(CATEGORICAL, n_choices=3),
)
POOL2 = (Dim(CONTINUOUS, -6.0, 6.0), Dim(CONTINUOUS, -4.0, 8.0))
N_SPARSE = 100_000  # the sparse categorical's chains cross between its two points rarely
N_ENERGY = 600  # points per side of an energy test
N_PERMUTATIONS = 1999  # enough to resolve p = ALPHA (more than 1 / ALPHA), half the default cost


def run(density, seed, n=N, **kwargs):
    """``mcmc_sample`` with the shared shapes; a non-convergence warning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", MCMCNotConverged)
        return mcmc_sample(
            density, jax.random.key(seed), n, n_chains=CHAINS, n_warmup=WARMUP, **kwargs
        )


def independent_draws(result, limit=None):
    """Each chain thinned to every ``ceil(n_draws / min ESS)``-th draw, pooled (see the module
    docstring), optionally cut to ``limit`` rows taken evenly across chains."""
    chains = result.chains
    total = chains.shape[0] * chains.shape[1]
    thin = max(1, math.ceil(total / float(np.min(result.ess))))
    draws = np.swapaxes(chains[:, ::thin], 0, 1).reshape(-1, chains.shape[2])
    return draws if limit is None else draws[:limit]


def truncated_mixture_cdf(weights, mu, sigma, low, high):
    """The CDF of ``sum_k w_k truncnorm_k`` on ``[low, high]``, from scipy."""
    w = np.asarray(weights) / np.sum(weights)
    mu, sigma = np.ravel(mu), np.ravel(sigma)
    a, b = (low - mu) / sigma, (high - mu) / sigma
    return lambda x: np.sum(
        w * st.truncnorm.cdf(np.asarray(x)[..., None], a, b, loc=mu, scale=sigma), axis=-1
    )


def grid_probabilities(density):
    """``p`` on every point of a grid-only space, from ``log_prob``; points ``(m, d)``."""
    points = np.array(list(itertools.product(*(d.grid() for d in density.dims))))
    probs = np.exp(np.asarray(density.log_prob(points)))
    assert abs(probs.sum() - 1.0) < 1e-10
    return points, probs


def grid_index(values, dim):
    low = 0.0 if dim.kind == CATEGORICAL else dim.low
    step = 1.0 if dim.kind == CATEGORICAL else dim.step
    return np.round((np.asarray(values) - low) / step).astype(int)


# ---------------------------------------------------------------------------------------------
# Goodness of fit
# ---------------------------------------------------------------------------------------------

W1, MU1, SG1 = [0.6, 0.4], [[-1.5], [2.0]], [[1.2], [1.5]]


@pytest.fixture(scope="module")
def mixture_1d():
    return mixture(BOX1, W1, MU1, SG1, min_kernels=4)


def test_truncated_gaussian_mixture_1d_nuts(mixture_1d):
    res = run(mixture_1d, seed=0)
    assert res.converged and res.warnings == ()
    assert res.samples.shape == (N, 1) and res.chains.shape == (CHAINS, N // CHAINS, 1)
    assert np.all((res.samples >= BOX1[0].low) & (res.samples <= BOX1[0].high))
    assert res.n_divergent == 0 and np.all(res.n_init_tries >= 1)
    assert res.r_hat.shape == (1,) and res.r_hat[0] <= 1.01 and res.ess[0] > 500
    assert np.all((res.hmc_acceptance_rate > 0.6) & (res.hmc_acceptance_rate <= 1.0))
    assert np.all(res.step_size > 0) and res.gibbs_acceptance_rate.shape == (CHAINS, 0)
    cdf = truncated_mixture_cdf(W1, MU1, SG1, BOX1[0].low, BOX1[0].high)
    draws = independent_draws(res)
    assert draws.shape[0] >= 500
    assert binned_pvalue(draws, cdf, n_bins=20, low=-3.0, high=8.0) > ALPHA


def test_truncated_gaussian_mixture_1d_hmc_sequential(mixture_1d):
    res = run(mixture_1d, seed=1, algorithm="hmc", chain_method="sequential")
    assert res.converged and res.n_divergent == 0
    cdf = truncated_mixture_cdf(W1, MU1, SG1, BOX1[0].low, BOX1[0].high)
    assert binned_pvalue(independent_draws(res), cdf, n_bins=20, low=-3.0, high=8.0) > ALPHA


def test_categorical_discrete_and_log_int_coordinates():
    """Metropolis-Hastings only: chi-square of each marginal and of (categorical, int) jointly."""
    density = mixture(
        GRID,
        [0.5, 0.5],
        [[2.0, 1.0], [6.0, 2.5]],
        [[2.0, 0.8], [3.0, 1.0]],
        [np.array([[0.4, 0.3, 0.2, 0.1], [0.1, 0.2, 0.3, 0.4]])],
        min_kernels=4,
    )
    res = run(density, seed=2, n=N_GRID, chain_method="sequential")
    assert res.converged and res.hmc_acceptance_rate.shape == (0,)
    assert res.gibbs_acceptance_rate.shape == (CHAINS, 3)
    assert np.all((res.gibbs_acceptance_rate > 0.2) & (res.gibbs_acceptance_rate < 1.0))
    points, probs = grid_probabilities(density)
    draws = independent_draws(res)
    assert draws.shape[0] >= 500
    idx = np.stack([grid_index(draws[:, j], d) for j, d in enumerate(GRID)], axis=1)
    pidx = np.stack([grid_index(points[:, j], d) for j, d in enumerate(GRID)], axis=1)
    for j, d in enumerate(GRID):
        marginal = np.bincount(pidx[:, j], weights=probs, minlength=d.n_points)
        assert chi_square_pvalue(idx[:, j], marginal) > ALPHA, d
    pair = pidx[:, 0] * GRID[1].n_points + pidx[:, 1]
    joint = np.bincount(pair, weights=probs, minlength=4 * GRID[1].n_points)
    assert chi_square_pvalue(idx[:, 0] * GRID[1].n_points + idx[:, 1], joint) > ALPHA


def test_mixed_continuous_and_categorical_energy():
    cat = np.array([[0.6, 0.3, 0.1], [0.2, 0.3, 0.5]])
    density = mixture(
        MIXED,
        [0.5, 0.5],
        [[0.5, -1.0, 0.0], [2.0, 0.5, 1.5]],
        [[1.0, 1.5, 1.5], [1.2, 1.0, 1.0]],
        [cat],
        min_kernels=4,
    )
    res = run(density, seed=3)
    assert res.converged and res.n_divergent == 0
    assert res.gibbs_acceptance_rate.shape == (CHAINS, 1)
    assert np.all(res.samples[:, 0] > 0.0) and np.all(res.samples[:, 1] < 1.0)
    assert set(np.unique(res.samples[:, 3])) <= {0.0, 1.0, 2.0}
    draws = independent_draws(res, limit=N_ENERGY)
    assert draws.shape[0] >= 400
    exact = np.asarray(density.sample(jax.random.key(30), draws.shape[0]))
    assert energy_pvalue(draws, exact, N_PERMUTATIONS, seed=3) > ALPHA
    # The categorical marginal on its own, against its exact probabilities.
    assert chi_square_pvalue(independent_draws(res)[:, 3], cat.mean(axis=0)) > ALPHA


@pytest.fixture(scope="module")
def two_mixtures():
    """Two 2-D mixtures that overlap, so their pools have mass where both do."""
    p = mixture(
        POOL2, [0.5, 0.5], [[0.5, -1.0], [2.0, 2.5]], [[1.0, 1.5], [1.2, 1.0]], min_kernels=4
    )
    q = mixture(
        POOL2, [0.7, 0.3], [[1.0, 0.0], [-1.0, 3.0]], [[1.5, 2.0], [1.0, 1.5]], min_kernels=4
    )
    return p, q


def test_geometric_pool_against_amgm_rejection(two_mixtures):
    """``geometric(p, q, 1/2)`` of two-kernel mixtures has no closed form (a factor under an
    exponent other than 1 must be a single kernel); AM-GM rejection gives exact draws of it."""
    pool = geometric(*two_mixtures, 0.5)
    res = run(pool, seed=4, chain_method="sequential")
    assert res.converged and res.n_divergent == 0
    draws = independent_draws(res, limit=N_ENERGY)
    assert draws.shape[0] >= 400
    exact = amgm_rejection_sample(pool, jax.random.key(40), draws.shape[0]).samples
    assert energy_pvalue(draws, exact, N_PERMUTATIONS, seed=4) > ALPHA


def test_product_pool_against_its_closed_form(two_mixtures):
    """The product (same pytree shape as the geometric pool: no new compilation) against exact
    draws of ``closed_form(pool).density``."""
    pool = product(*two_mixtures)
    before = mcmc._run_chains._cache_size()
    res = run(pool, seed=5, chain_method="sequential")
    assert res.converged and res.n_divergent == 0
    assert mcmc._run_chains._cache_size() - before <= 1
    draws = independent_draws(res, limit=N_ENERGY)
    assert draws.shape[0] >= 400
    exact = np.asarray(closed_form(pool).density.sample(jax.random.key(50), draws.shape[0]))
    assert energy_pvalue(draws, exact, N_PERMUTATIONS, seed=5) > ALPHA


# ---------------------------------------------------------------------------------------------
# I2: starting points outside the support
# ---------------------------------------------------------------------------------------------

SPARSE = (Dim(CATEGORICAL, n_choices=64),)


def sparse_categorical(support=(10, 50), probs=(0.3, 0.7)):
    """A categorical density that is zero (log-density -inf) on all but a few of 64 choices."""
    table = np.zeros((1, 64))
    table[0, list(support)] = probs
    return mixture(SPARSE, [1.0], np.zeros((1, 0)), np.zeros((1, 0)), [table], min_kernels=4)


def test_start_is_redrawn_until_the_log_density_is_finite():
    density = sparse_categorical()
    # A uniform start hits the support with probability 2/64 per draw.
    res = run(density, seed=6, n=N_SPARSE, max_init_tries=500)
    assert np.all(res.n_init_tries >= 1) and np.any(res.n_init_tries > 1)
    assert set(np.unique(res.samples)) == {10.0, 50.0}
    outcomes = independent_draws(res)[:, 0] == 50.0  # 0 for choice 10, 1 for choice 50
    assert chi_square_pvalue(outcomes, [0.3, 0.7]) > ALPHA
    # Starting from a proposal that covers the support, the first draw always does.
    res = run(density, seed=7, n=N_SPARSE, init_proposal=density)
    assert np.all(res.n_init_tries == 1)
    # A given start of probability zero (choice 3), or past the last choice, is redrawn.
    init = np.array([[10.0], [3.0], [50.0], [70.0]])
    with pytest.warns(UserWarning, match=r"init of chain\(s\) \[1, 3\] has log-density -inf"):
        res = run(density, seed=8, n=N_SPARSE, init=init, max_init_tries=500)
    assert res.n_init_tries[0] == res.n_init_tries[2] == 0
    assert res.n_init_tries[1] >= 1 and res.n_init_tries[3] >= 1


def test_no_finite_start_fails_after_max_init_tries():
    # Disjoint supports: the geometric pool is -inf everywhere.
    pool = geometric(sparse_categorical((3,), (1.0,)), sparse_categorical((4,), (1.0,)), 0.5)
    with pytest.raises(ValueError, match=r"-inf at all 7 start points.*max_init_tries=7"):
        mcmc_sample(pool, jax.random.key(0), N, max_init_tries=7)
    with pytest.raises(ValueError, match=r"-inf at all 100 start points"):  # the default
        mcmc_sample(pool, jax.random.key(0), N)


def test_init_outside_the_bounds_is_redrawn(mixture_1d):
    init = np.array([[-5.0], [0.0], [1.0], [20.0]])  # chains 0 and 3 start outside [-3, 8]
    with pytest.warns(UserWarning, match=r"init of chain\(s\) \[0, 3\] has log-density -inf"):
        res = run(mixture_1d, seed=8, init=init)
    assert res.n_init_tries[1] == 0 and res.n_init_tries[2] == 0
    assert res.n_init_tries[0] >= 1 and res.n_init_tries[3] >= 1
    assert any("redrawn" in w for w in res.warnings) and res.converged
    assert np.all((res.samples >= -3.0) & (res.samples <= 8.0))
    # A start on the bound itself is on an open end of the sigmoid map: redrawn too.
    with pytest.warns(UserWarning, match=r"init of chain\(s\) \[2\]"):
        run(mixture_1d, seed=9, init=np.array([[0.0], [1.0], [8.0], [2.0]]))


# ---------------------------------------------------------------------------------------------
# Chains that cannot mix must say so
# ---------------------------------------------------------------------------------------------


def test_bimodal_target_that_chains_cannot_cross_is_reported():
    """Two kernels 35 scales apart: no NUTS trajectory crosses, so each chain stays in the mode
    it started in. Dispersed starts put chains in both modes (for this seed; all four land in one
    mode with probability 1/8, and then no diagnostic can tell), and R-hat flags the split."""
    density = mixture(BOX1, [0.5, 0.5], [[-1.0], [6.0]], [[0.2], [0.2]], min_kernels=4)
    with pytest.warns(MCMCNotConverged, match=r"coordinate 0 \(continuous\): R-hat [0-9.]+ > 1.01"):
        res = mcmc_sample(density, jax.random.key(10), N, n_chains=CHAINS, n_warmup=WARMUP)
    assert not res.converged and res.r_hat[0] > 1.01
    assert any("R-hat" in w and "coordinate 0" in w for w in res.warnings)
    modes = np.sign(res.chains[:, :, 0] - 2.5)
    assert np.all(modes == modes[:, :1]), "a chain crossed between the modes"
    assert set(modes[:, 0]) == {-1.0, 1.0}, "this seed should start chains in both modes"
    assert "R-hat" in res.message


# A heavy wide mode and a light narrow one, 140 narrow scales apart: the light mode's basin is
# small, so dispersed starts often miss it.
UNEQUAL = dict(weights=[0.8, 0.2], mu=[[-1.0], [6.0]], sigma=[[0.5], [0.05]])


def test_chains_start_in_every_mode_found_so_a_missed_mode_is_never_silent():
    """Without the mode search, all four chains start in the heavy mode for some seeds, and the
    run reports convergence with the light mode's 20% missing. With it (the default), every
    seed starts chains in both modes, which the chains cannot cross, and every run says so."""
    density = mixture(BOX1, min_kernels=4, **UNEQUAL)
    silent = []
    for seed in range(6):
        key = jax.random.key(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCMCNotConverged)
            plain = mcmc_sample(density, key, N, n_warmup=WARMUP, mode_search_steps=0)
            searched = mcmc_sample(density, key, N, n_warmup=WARMUP)
        light = np.mean(plain.samples[:, 0] > 2.5)
        silent.append(plain.converged and light in (0.0, 1.0))
        modes = np.sign(searched.chains[:, 0, 0] - 2.5)
        assert set(modes) == {-1.0, 1.0}, f"seed {seed}: chains start in one mode only"
        assert not searched.converged and searched.r_hat[0] > 1.01
    assert any(silent), "the trap this test guards against did not occur"


def test_mode_masses_of_a_crossable_bimodal_target_match(mixture_1d):
    """Two overlapping kernels that NUTS crosses freely: the share of draws left of the density's
    minimum between the modes matches the exact mass within 4 standard errors (from the ESS)."""
    res = run(mixture_1d, seed=21)
    grid = np.linspace(-1.5, 2.0, 2001)
    split = grid[np.argmin(np.asarray(mixture_1d.log_prob(grid[:, None])))]
    cdf = truncated_mixture_cdf(W1, MU1, SG1, BOX1[0].low, BOX1[0].high)
    exact = cdf(split)
    share = np.mean(res.samples[:, 0] < split)
    se = math.sqrt(exact * (1 - exact) / res.ess[0])
    assert res.converged and 0.2 < exact < 0.8
    assert abs(share - exact) < 4 * se, (share, exact, se)


# ---------------------------------------------------------------------------------------------
# Errors at the public boundary
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(n=0), r"n must be an int >= 4 \* n_chains = 16 .*got 0"),
        (dict(n=15), r"n must be an int >= 4 \* n_chains = 16 .*got 15"),
        (dict(n=100.0), r"n must be an int .*got 100.0"),
        (dict(n_chains=0), r"n_chains must be an int >= 1, got 0"),
        (dict(n_warmup=-1), r"n_warmup must be an int >= 0, got -1"),
        (dict(algorithm="mala"), r"algorithm must be one of \('nuts', 'hmc'\), got 'mala'"),
        (dict(chain_method="pmap"), r"chain_method must be one of .*got 'pmap'"),
        (dict(max_init_tries=0), r"max_init_tries must be an int >= 1, got 0"),
        (dict(max_tree_depth=0), r"max_tree_depth must be an int >= 1"),
        (dict(target_accept_prob=1.0), r"target_accept_prob must be a number in \(0, 1\), got 1.0"),
        (dict(r_hat_threshold=0.5), r"r_hat_threshold must be a number >= 1, got 0.5"),
        (dict(key=0), r"key must be a jax.random key, got 0"),
        (dict(init=[[np.nan]] * 4), r"init contains NaN"),
        (dict(init=np.zeros((3, 1))), r"init must have shape \(4, 1\) .* got \(3, 1\)"),
        (dict(init_proposal="uniform"), r"init_proposal must have sample\(key, n\)"),
    ],
)
def test_bad_arguments_are_refused_before_running(mixture_1d, kwargs, match):
    args = dict(density=mixture_1d, key=jax.random.key(0), n=N)
    args.update({k: kwargs.pop(k) for k in ("n", "key") if k in kwargs})
    before = mcmc._run_chains._cache_size()
    with pytest.raises(ValueError, match=match):
        mcmc_sample(args["density"], args["key"], args["n"], **kwargs)
    assert mcmc._run_chains._cache_size() == before


def test_bad_density_init_and_proposal_are_refused(mixture_1d):
    with pytest.raises(ValueError, match="density must have dims and unnormalized_log_prob"):
        mcmc_sample(object(), jax.random.key(0), N)
    grid = mixture(GRID, [1.0], [[2.0, 1.0]], [[2.0, 0.8]], [np.full((1, 4), 0.25)])
    with pytest.raises(ValueError, match=r"init\[0, 1\] = 2.5 is not a point of the grid"):
        mcmc_sample(grid, jax.random.key(0), N, init=np.array([1.0, 2.5, 4.0]))
    with pytest.raises(ValueError, match="init_proposal lives on"):
        mcmc_sample(grid, jax.random.key(0), N, init_proposal=mixture_1d)


# ---------------------------------------------------------------------------------------------
# Compiled once
# ---------------------------------------------------------------------------------------------


def test_two_densities_of_one_shape_compile_once():
    """Densities are traced arguments of one module-level jitted function: new parameters of the
    same shape (space and kernel bucket) reuse its compiled code."""
    first = mixture(BOX1, [0.3, 0.7], [[0.0], [2.0]], [[1.0], [2.0]], min_kernels=4)
    second = mixture(
        BOX1, [0.5, 0.2, 0.3], [[1.0], [-2.0], [5.0]], [[2.0], [1.0], [1.5]], min_kernels=4
    )
    functions = (mcmc._run_chains, mcmc._start_log_target, mcmc._dispersed_draw, mcmc._climb)
    sizes = [f._cache_size() for f in functions]
    res1 = run(first, seed=11)
    grown = [f._cache_size() - s for f, s in zip(functions, sizes, strict=True)]
    assert all(g <= 1 for g in grown), grown
    sizes = [f._cache_size() for f in functions]
    res2 = run(second, seed=12)
    assert [f._cache_size() for f in functions] == sizes
    assert abs(np.mean(res1.samples) - np.mean(res2.samples)) > 0.1  # they are different targets
