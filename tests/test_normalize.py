"""``fusion.normalize``: log Z exactly, by quadrature and by Monte Carlo, against closed forms,
scipy/numpy quadrature written here (helpers in ``test_density.py``), and each other.

Spaces come from a small catalogue and every mixture is padded to four kernels, so each method
compiles once per space (``quadrature.CHUNK`` points per evaluation).
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as hst
from test_density import integrate, mixture_params, space_rule

from fusion import quadrature
from fusion.combine import geometric, linear_pool, log_linear_pool, product
from fusion.density import Uniform, mixture
from fusion.normalize import closed_form, log_normalizer
from fusion.sample import sample
from fusion.space import CATEGORICAL, CONTINUOUS, DISCRETE, LOG_DISCRETE, Dim

BOX = Dim(CONTINUOUS, -12.0, 12.0)
R1, R2 = (BOX,), (BOX, BOX)
KEY = jax.random.key(0)
N_SE = 5.0  # Monte Carlo checks: |error| < 5 standard errors, a false failure below 1e-6 per check

P2_Z = 0.778800783071405  # exp(-1/4), case P2
P3_LOG_Z = -62496.6603419375  # case P3, mpmath at 60 digits


def gaussian(dims, mu, sigma):
    n = len(dims)
    return mixture(dims, [1.0], np.reshape(mu, (1, n)), np.reshape(sigma, (1, n)), min_kernels=4)


@pytest.fixture(scope="module")
def p2():
    return geometric(
        gaussian(R2, [0.0, 0.0], [1.0, 1.0]), gaussian(R2, [1.0, 1.0], [1.0, 1.0]), 0.5
    )


# --- P2 and P3 ------------------------------------------------------------------------------------


def test_p2_every_method_agrees_with_the_closed_form_within_its_error(p2):
    exact = log_normalizer(p2, "exact")
    assert exact.method == "exact" and abs(exact.log_z - math.log(P2_Z)) < 1e-14
    assert log_normalizer(p2).method == "exact"  # auto
    quad = log_normalizer(p2, "quadrature")
    assert abs(quad.log_z - math.log(P2_Z)) < 1e-10 and quad.std_error < 1e-9
    for method in ("qmc", "importance", "mc"):
        r = log_normalizer(p2, method, key=KEY)
        assert r.method == method and 0 < r.std_error < 0.1, r
        assert abs(r.log_z - math.log(P2_Z)) < N_SE * r.std_error, r


def test_p3_barely_overlapping_product_has_a_finite_log_z():
    p3 = product(gaussian(R1, 0.0, 0.01), gaussian(R1, 5.0, 0.01))
    for method in ("exact", "quadrature"):
        r = log_normalizer(p3, method)
        assert np.isfinite(r.log_z)
        assert abs(r.log_z - P3_LOG_Z) < 1e-9 * abs(P3_LOG_Z), r


def test_p3_on_the_real_line_has_the_closed_form_log_z():
    """Case P3 as stated, on the whole real line: no uniform factor, so no 0 * log(1/inf)."""
    line = (Dim(CONTINUOUS, -np.inf, np.inf),)
    p3 = product(*(mixture(line, [1.0], [[m]], [[0.01]]) for m in (0.0, 5.0)))
    closed = closed_form(p3)
    assert abs(closed.log_z - P3_LOG_Z) < 1e-9 * abs(P3_LOG_Z)
    assert abs(log_normalizer(p3).log_z - P3_LOG_Z) < 1e-9 * abs(P3_LOG_Z)
    draws = np.asarray(closed.density.sample(KEY, 2000))[:, 0]
    assert scipy.stats.kstest(draws, scipy.stats.norm(2.5, 0.01 / math.sqrt(2)).cdf).pvalue > 1e-3


def test_zero_normalizer_is_an_error_naming_the_pool():
    """Disjoint categorical tables: the product is zero everywhere."""
    dims = (Dim(CATEGORICAL, n_choices=2),)
    a = mixture(dims, [1.0], np.zeros((1, 0)), np.zeros((1, 0)), [[[1.0, 0.0]]])
    b = mixture(dims, [1.0], np.zeros((1, 0)), np.zeros((1, 0)), [[[0.0, 1.0]]])
    for method in ("exact", "quadrature"):
        with pytest.raises(ValueError, match=r"Z = 0 .*LogLinearPool\(ProductKernelMixture\^1"):
            log_normalizer(product(a, b), method)


# --- closed form against quadrature ------------------------------------------------------------

MIXED = (
    Dim(CONTINUOUS, 0.0, 1.0),
    Dim(DISCRETE, 1.0, 5.0, 1.0),
    Dim(CATEGORICAL, n_choices=3),
    Dim(LOG_DISCRETE, 1.0, 20.0, 1.0),
)
CONT_CAT = (Dim(CONTINUOUS, -3.0, 3.0), Dim(CATEGORICAL, n_choices=3))


def random_mixture(rng, dims, k):
    bounds = np.array([d.kernel_bounds for d in dims if d.is_numeric])
    width = bounds[:, 1] - bounds[:, 0]
    mu = bounds[:, 0] + rng.uniform(-0.2, 1.2, (k, len(bounds))) * width
    sigma = width * 10.0 ** rng.uniform(-1.5, 0.0, (k, len(bounds)))
    cats = [rng.uniform(0.05, 1.0, (k, d.n_choices)) for d in dims if d.kind == CATEGORICAL]
    return mixture(dims, rng.uniform(0.1, 1.0, k), mu, sigma, cats, min_kernels=4)


def reference_log_z(pool):
    """Tensor Gauss-Legendre on the continuous coordinates (cut around every kernel of every
    factor, fine pieces everywhere), exact sums on the grids: the test's own quadrature."""
    mus = [np.asarray(c.mu) for c in _atoms(pool)]
    sigmas = [np.asarray(c.sigma) for c in _atoms(pool)]
    mu, sigma = np.concatenate(mus), np.concatenate(sigmas)
    x, w = space_rule(pool.dims, mu, sigma, max_piece=0.05, n_nodes=20)
    return math.log(integrate(pool.unnormalized_log_prob, x, w))


def _atoms(density):
    if hasattr(density, "components"):
        return [a for c in density.components for a in _atoms(c)]
    return [density] if hasattr(density, "mu") else []


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dims", [MIXED, CONT_CAT], ids=["mixed", "cont-cat"])
def test_product_closed_form_matches_quadrature(dims, seed):
    rng = np.random.default_rng(seed)
    a, b = random_mixture(rng, dims, 3), random_mixture(rng, dims, 2)
    pools = [
        product(a, b),
        product(linear_pool((a, Uniform(dims)), [0.8, 0.2]), b),  # p_llm-shaped factor
        geometric(random_mixture(rng, dims, 1), random_mixture(rng, dims, 1), 0.3),
        log_linear_pool((a, random_mixture(rng, dims, 1)), (1.0, 2.5)),
    ]
    for pool in pools:
        exact = log_normalizer(pool, "exact")
        assert exact.method == "exact"
        assert abs(exact.log_z - reference_log_z(pool)) < 1e-10, pool
        quad = log_normalizer(pool, "quadrature")
        assert abs(quad.log_z - exact.log_z) < max(1e-10, 2 * quad.std_error)


@settings(max_examples=max(5, settings().max_examples // 3))
@given(params=mixture_params(max_kernels=3), data=hst.data())
def test_closed_form_of_random_products_matches_quadrature(params, data):
    """Random mixtures on every kind of coordinate (the ``test_density`` catalogue), multiplied:
    the closed form agrees with the test's own tensor quadrature to 1e-10."""
    dims, w, mu, sigma, cats = params
    p = mixture(dims, w, mu, sigma, cats, min_kernels=4)
    k = data.draw(hst.integers(1, 3))
    shift = data.draw(hst.floats(-0.3, 0.3))
    q = mixture(
        dims,
        w[:k][::-1],
        mu[:k] + shift * np.ptp(mu, axis=0, keepdims=True),
        sigma[:k] * 1.5,
        [c[:k] for c in cats],
        min_kernels=4,
    )
    exact = log_normalizer(product(p, q), "exact")
    assert exact.method == "exact"
    assert abs(exact.log_z - reference_log_z(product(p, q))) < 1e-10


def test_closed_form_mixture_is_the_normalized_product():
    rng = np.random.default_rng(7)
    a, b = random_mixture(rng, CONT_CAT, 3), random_mixture(rng, CONT_CAT, 2)
    cf = closed_form(product(a, b))
    assert cf.density.n_kernels == 8 and cf.pruned_mass == 0.0  # 3 * 2 = 6 kernels, padded
    x = np.stack([np.linspace(-3, 3, 50), np.tile([0.0, 1.0, 2.0], 17)[:50]], axis=1)
    expected = np.asarray(a.log_prob(x)) + np.asarray(b.log_prob(x)) - cf.log_z
    np.testing.assert_allclose(np.asarray(cf.density.log_prob(x)), expected, rtol=1e-12)
    draws = np.asarray(cf.density.sample(KEY, 5))
    assert draws.shape == (5, 2)


def test_closed_form_product_with_discrete_coordinates_is_a_tabulated_mixture():
    """On int and log-int coordinates the product of two cell masses is a table over the grid:
    the closed form tabulates them, its log_prob is the normalized product everywhere, and its
    draws follow it (chi-square on the 5 x 20 grid of the two discrete coordinates)."""
    rng = np.random.default_rng(5)
    a, b = random_mixture(rng, MIXED, 3), random_mixture(rng, MIXED, 2)
    cf = closed_form(product(a, b))
    assert cf.density.tabulated == (1, 3)
    x, w = space_rule(MIXED, np.zeros((1, 3)), np.full((1, 3), 0.2), max_piece=0.05, n_nodes=20)
    expected = np.asarray(product(a, b).unnormalized_log_prob(x)) - cf.log_z
    got = np.asarray(cf.density.log_prob(x))
    np.testing.assert_allclose(got, expected, rtol=1e-11, atol=1e-11)
    assert abs(integrate(cf.density.log_prob, x, w) - 1.0) < 1e-10

    n = 40_000
    draws = np.asarray(cf.density.sample(jax.random.key(9), n))
    assert (
        np.isin(draws[:, 1], MIXED[1].grid()).all() and np.isin(draws[:, 3], MIXED[3].grid()).all()
    )
    # the exact pmf of (int, log int): integrate out the continuous and categorical coordinates
    p_cell = {}
    for xi, wi, lp in zip(x, w, got, strict=True):
        p_cell[(xi[1], xi[3])] = p_cell.get((xi[1], xi[3]), 0.0) + wi * np.exp(lp)
    cells = sorted(p_cell)
    expected_counts = n * np.array([p_cell[c] for c in cells])
    observed = np.array([np.sum((draws[:, 1] == c[0]) & (draws[:, 3] == c[1])) for c in cells])
    big = expected_counts >= 5
    stat = np.sum((observed[big] - expected_counts[big]) ** 2 / expected_counts[big])
    # a fixed seed; the chance of a false failure at this threshold is 1e-6
    assert stat < scipy.stats.chi2.ppf(1 - 1e-6, big.sum() - 1), stat


def test_linear_pool_factors_are_multiplied_out_into_one_mixture():
    """``product(0.9 a + 0.1 u, 0.6 b + 0.4 c)`` (the shape of a suggestion density, with its
    uniform floor, times a linear pool) is four products; their kernel combinations make one
    mixture whose log_prob is the normalized product on a fine rule over the mixed space and
    integrates to 1, and ``sample`` draws it exactly."""
    rng = np.random.default_rng(11)
    a, b, c = (random_mixture(rng, MIXED, k) for k in (3, 2, 2))
    p_llm = linear_pool((a, Uniform(MIXED)), [0.9, 0.1])
    pool = product(p_llm, linear_pool((b, c), [0.6, 0.4]))
    cf = closed_form(pool)
    assert cf.density is not None and cf.pruned_mass == 0.0
    x, w = space_rule(MIXED, np.zeros((1, 3)), np.full((1, 3), 0.2), max_piece=0.05, n_nodes=20)
    expected = np.asarray(pool.unnormalized_log_prob(x)) - cf.log_z
    np.testing.assert_allclose(np.asarray(cf.density.log_prob(x)), expected, rtol=1e-11, atol=1e-11)
    assert abs(integrate(cf.density.log_prob, x, w) - 1.0) < 1e-10
    assert sample(pool, KEY, 100).method == "exact"


def test_pruning_reports_the_exact_mass_it_leaves_out():
    rng = np.random.default_rng(3)
    a = random_mixture(rng, CONT_CAT, 4)
    b = mixture(CONT_CAT, [0.999, 0.001], [[-2.0], [2.5]], [[0.1], [0.1]], [np.ones((2, 3))])
    full, pruned = closed_form(product(a, b)), closed_form(product(a, b), prune=1e-2)
    assert pruned.log_z == full.log_z and 0 < pruned.pruned_mass < 1e-2
    # the pruned mixture is off by pruned_mass in total variation, and no more
    x, w = space_rule(CONT_CAT, np.zeros((1, 1)), np.ones((1, 1)), max_piece=0.02, n_nodes=20)
    tv = 0.5 * np.sum(
        w
        * np.abs(
            np.exp(np.asarray(full.density.log_prob(x)))
            - np.exp(np.asarray(pruned.density.log_prob(x)))
        )
    )
    assert tv <= pruned.pruned_mass * (1 + 1e-6)


def test_a_201_kernel_tpe_density_times_a_50_point_kde():
    rng = np.random.default_rng(11)
    dims = (Dim(CONTINUOUS, 0.0, 1.0), Dim(CONTINUOUS, -5.0, 0.0))
    tpe = mixture(
        dims,
        rng.uniform(0.1, 1, 201),
        rng.uniform([0, -5], [1, 0], (201, 2)),
        rng.uniform(0.01, 0.3, (201, 2)),
    )
    kde = mixture(dims, np.ones(50), rng.uniform([0, -5], [1, 0], (50, 2)), np.full((50, 2), 0.05))
    pool = product(tpe, kde)
    exact = log_normalizer(pool)
    assert exact.method == "exact"
    assert abs(exact.log_z - log_normalizer(pool, "quadrature", max_points=2**21).log_z) < 1e-9
    cf = closed_form(pool, prune=1e-12)
    assert cf.density.n_kernels <= 16384 and cf.pruned_mass < 1e-12 * 201 * 50


# --- properties -------------------------------------------------------------------------------


@settings(max_examples=max(5, settings().max_examples // 3))
@given(params=mixture_params(max_kernels=3), data=hst.data())
def test_holder_geometric_pool_of_normalized_densities_has_z_at_most_one(params, data):
    dims, w, mu, sigma, cats = params
    p = mixture(dims, w, mu, sigma, cats, min_kernels=4)
    q = mixture(dims, w[::-1], mu[::-1], sigma[::-1], [c[::-1] for c in cats], min_kernels=4)
    alpha = data.draw(hst.floats(0.0, 1.0))
    r = log_normalizer(geometric(p, q, alpha), "quadrature")
    assert r.log_z <= 1e-10 + r.std_error


@settings(max_examples=max(5, settings().max_examples // 3))
@given(params=mixture_params(max_kernels=3))
def test_product_with_a_uniform_density_returns_the_other_density(params):
    """``p * U / Z = p`` with ``Z = 1 / |Omega|``: the closed form is ``p`` itself."""
    dims, w, mu, sigma, cats = params
    p = mixture(dims, w, mu, sigma, cats, min_kernels=4)
    u = Uniform(dims)
    r = log_normalizer(product(p, u))
    log_volume = -float(np.asarray(u.log_prob(np.asarray([[d.low for d in dims]])))[0])
    assert r.method == "exact" and abs(r.log_z + log_volume) < 1e-12


@settings(max_examples=max(5, settings().max_examples // 3))
@given(params=mixture_params(max_kernels=2), seed=hst.integers(0, 2**31 - 1))
def test_methods_agree_within_their_stated_errors(params, seed):
    dims, w, mu, sigma, cats = params
    p = mixture(dims, w, mu, sigma, cats, min_kernels=4)
    q = mixture(dims, w[::-1], mu[::-1], sigma[::-1], [c[::-1] for c in cats], min_kernels=4)
    pool = geometric(p, q, 0.5)
    quad = log_normalizer(pool, "quadrature")
    for method in ("qmc", "importance"):
        r = log_normalizer(pool, method, key=jax.random.key(seed), n_samples=2**12)
        assert abs(r.log_z - quad.log_z) < N_SE * r.std_error + 10 * quad.std_error + 1e-9, (
            method,
            r,
            quad,
        )


# --- errors and compilation --------------------------------------------------------------------


def test_bad_arguments(p2):
    with pytest.raises(ValueError, match="method must be one of"):
        log_normalizer(p2, "simpson")
    with pytest.raises(ValueError, match="needs key="):
        log_normalizer(p2, "qmc")
    with pytest.raises(ValueError, match="n_samples must be an int >= 2, got 1"):
        log_normalizer(p2, "mc", key=KEY, n_samples=1)
    with pytest.raises(ValueError, match="density must be a fusion density"):
        log_normalizer(np.zeros(3))
    multi = geometric(
        random_mixture(np.random.default_rng(0), R2, 2),
        random_mixture(np.random.default_rng(1), R2, 2),
        0.5,
    )
    with pytest.raises(ValueError, match="'exact' does not apply"):
        log_normalizer(multi, "exact")
    assert log_normalizer(multi).method == "quadrature"
    big_grid = product(*(Uniform((Dim(DISCRETE, 0.0, 999.0, 1.0),) * 3) for _ in range(2)))
    with pytest.raises(ValueError, match="max_points=1000"):  # 10^9 grid points
        log_normalizer(big_grid, "quadrature", max_points=1000)
    assert log_normalizer(gaussian(R2, [0.0, 0.0], [1.0, 1.0])) == (0.0, 0.0, "exact", 0)


def test_numeric_methods_compile_a_few_shapes_whatever_their_settings(p2):
    """Points go through the density in chunks of ``quadrature.CHUNK``, smaller batches padded to a power of
    two: every setting of every numeric method shares at most four compiled shapes."""
    from fusion.combine import _log_linear_unnormalized

    before = _log_linear_unnormalized._cache_size()
    for n_nodes in (6, 10, 16):
        log_normalizer(p2, "quadrature", n_nodes=n_nodes, rtol=1e-6)
    for n_samples in (2**8, 2**10, 2**11):
        log_normalizer(p2, "qmc", key=KEY, n_samples=n_samples, n_replicates=3)
    for n_samples in (300, 1000, 3000):
        log_normalizer(p2, "mc", key=KEY, n_samples=n_samples)
        log_normalizer(p2, "importance", key=KEY, n_samples=n_samples)
    sizes = {quadrature.CHUNK // 2**i for i in range(4)}
    assert min(sizes) == quadrature.MIN_BATCH
    assert _log_linear_unnormalized._cache_size() - before <= len(sizes)
