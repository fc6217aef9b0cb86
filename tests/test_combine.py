"""Pools (``fusion.combine``): normalization, end points, exponents, validation and case P1.

References: quadrature (helpers in ``test_density.py``) and scipy's ``truncnorm`` for the
one-dimensional kernels; the pools' own components only where the identity itself is the claim
("at alpha = 0 the geometric pool *is* p_opt").
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given
from hypothesis import strategies as hst
from hypothesis.extra.numpy import arrays
from test_density import (
    CAT3,
    CONT,
    INT,
    LOGINT,
    build,
    evaluate,
    inside_points,
    integrate,
    mixture_params,
    outside_points,
    space_rule,
)

from fusion.combine import LinearPool, geometric, linear_pool, log_linear_pool, product
from fusion.density import Uniform, mixture
from fusion.space import CONTINUOUS, Dim

UNIT = (Dim(CONTINUOUS, 0.0, 1.0),)


def scipy_log_mixture(x, w, mu, sigma, low=0.0, high=1.0, normalize=True):
    """log sum_k w_k truncnorm_k(x) on [low, high], from scipy (the reference); the weights are
    divided by their sum unless ``normalize`` is false."""
    w, mu, sigma = (np.asarray(v, dtype=float) for v in (w, mu, sigma))
    a, b = (low - mu) / sigma, (high - mu) / sigma
    dens = st.truncnorm.pdf(np.asarray(x)[:, None], a, b, loc=mu, scale=sigma)
    return np.log(dens @ (w / w.sum() if normalize else w))


# ---------------------------------------------------------------------------------------------
# Linear pool: normalized
# ---------------------------------------------------------------------------------------------

POOL_SPACE = (CAT3, LOGINT, CONT)


@given(
    a=mixture_params(spaces=[POOL_SPACE]),
    b=mixture_params(spaces=[POOL_SPACE]),
    raw=arrays(float, 3, elements=hst.floats(0.0, 1.0)),
)
def test_linear_pool_is_normalized(a, b, raw):
    raw = raw.copy()
    raw[2] += 1e-3  # never all zero
    w = raw / raw.sum()
    pool = linear_pool((build(a), build(b), Uniform(POOL_SPACE)), w)
    mu = np.concatenate([a[2], b[2]])
    sigma = np.concatenate([a[3], b[3]])
    x, qw = space_rule(POOL_SPACE, mu, sigma)
    assert abs(integrate(pool.log_prob, x, qw) - 1.0) < 1e-8


def test_linear_pool_matches_scipy_pointwise():
    p = mixture(UNIT, [1.0, 2.0], [[0.2], [0.7]], [[0.1], [0.3]])
    q = mixture(UNIT, [1.0], [[1.0]], [[0.05]])
    pool = linear_pool((p, q), [0.25, 0.75])
    x = np.linspace(0.0, 1.0, 41)
    ref = np.logaddexp(
        np.log(0.25) + scipy_log_mixture(x, [1, 2], [0.2, 0.7], [0.1, 0.3]),
        np.log(0.75) + scipy_log_mixture(x, [1], [1.0], [0.05]),
    )
    np.testing.assert_allclose(np.asarray(pool.log_prob(x[:, None])), ref, rtol=1e-12, atol=1e-12)


def test_linear_pool_sample_matches_weights():
    # Components with disjoint categorical support: the share of each tells which was drawn.
    dims = (CAT3,)
    p = mixture(dims, [1.0], np.zeros((1, 0)), np.zeros((1, 0)), [[[1.0, 0.0, 0.0]]])
    q = mixture(dims, [1.0], np.zeros((1, 0)), np.zeros((1, 0)), [[[0.0, 1.0, 1.0]]])
    n = 20_000
    s = np.asarray(linear_pool((p, q), [0.3, 0.7]).sample(jax.random.key(4), n))[:, 0]
    counts = np.bincount(s.astype(int), minlength=3)
    # Fixed seed; a false failure has probability 1e-4 for a fresh one.
    assert st.chisquare(counts, n * np.array([0.3, 0.35, 0.35])).pvalue > 1e-4


# ---------------------------------------------------------------------------------------------
# Log-linear pools: end points, exponents
# ---------------------------------------------------------------------------------------------

GEO_SPACE = (CONT, CAT3)


def _with_zero_category(params, col):
    dims, w, mu, sigma, cats = params
    cats = [c.copy() for c in cats]
    cats[0][:, col] = 0.0  # rows keep two positive entries
    return dims, w, mu, sigma, cats


@given(
    a=mixture_params(spaces=[GEO_SPACE]),
    b=mixture_params(spaces=[GEO_SPACE]),
    # No subnormal alpha: XLA on CPU flushes subnormals to zero, so alpha = 1e-310 acts as 0.
    alpha=hst.floats(0.0, 1.0, allow_subnormal=False),
    u=arrays(float, (16, 2), elements=hst.floats(0.0, 1.0)),
)
def test_geometric_end_points_and_interior(a, b, alpha, u):
    # p_llm has probability zero on category 0 and p_opt on category 2, so 0 * log 0 = 0 is tested
    # at both end points. Points cover every category and the outside of the support.
    p_llm, p_opt = build(_with_zero_category(a, 0)), build(_with_zero_category(b, 2))
    x = inside_points(GEO_SPACE, u)
    x = np.concatenate([x] + [np.column_stack([x[:, 0], np.full(len(x), c)]) for c in range(3)])
    x = np.concatenate([x, outside_points(GEO_SPACE)])
    lp_llm, lp_opt = evaluate(p_llm.log_prob, x), evaluate(p_opt.log_prob, x)
    assert np.isneginf(lp_llm).any() and np.isfinite(lp_llm).any()

    at0 = evaluate(geometric(p_llm, p_opt, 0.0).unnormalized_log_prob, x)
    at1 = evaluate(geometric(p_llm, p_opt, 1.0).unnormalized_log_prob, x)
    np.testing.assert_array_equal(at0, lp_opt)  # alpha = 0 is p_opt
    np.testing.assert_array_equal(at1, lp_llm)  # alpha = 1 is p_llm, not the product

    mid = evaluate(geometric(p_llm, p_opt, alpha).unnormalized_log_prob, x)
    with np.errstate(invalid="ignore"):
        ref = alpha * lp_llm + (1 - alpha) * lp_opt
    ref = np.where(alpha == 0, lp_opt, np.where(alpha == 1, lp_llm, ref))
    ref = np.where(np.isnan(ref), -np.inf, ref)
    np.testing.assert_allclose(mid, ref, rtol=1e-12, atol=1e-12)


def test_product_has_exponents_one_one_and_differs_from_alpha_one():
    p = mixture(UNIT, [1.0], [[0.2]], [[0.1]])
    q = mixture(UNIT, [1.0], [[0.7]], [[0.3]])
    prod = product(p, q)
    assert [float(e) for e in prod.exponents] == [1.0, 1.0]
    x = np.linspace(0.0, 1.0, 11)
    ref = scipy_log_mixture(x, [1], [0.2], [0.1]) + scipy_log_mixture(x, [1], [0.7], [0.3])
    got = np.asarray(prod.unnormalized_log_prob(x[:, None]))
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    # The seed's claim "alpha = 1 is the product" is wrong: alpha = 1 leaves out p_opt.
    at1 = np.asarray(geometric(p, q, 1.0).unnormalized_log_prob(x[:, None]))
    assert np.max(np.abs(at1 - got)) > 0.1
    assert [float(e) for e in geometric(p, q, 0.25).exponents] == [0.25, 0.75]


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two():
    return mixture(UNIT, [1.0], [[0.2]], [[0.1]]), mixture(UNIT, [1.0], [[0.7]], [[0.3]])


@pytest.mark.parametrize(
    "weights",
    [[-0.5, 1.5], [np.nan, 1.0], [0.3, 0.3], [0.6, 0.6], [np.inf, 0.0], [0.5, 0.5, 0.0], [1.0]],
)
def test_linear_pool_weights_validation(two, weights):
    with pytest.raises(ValueError, match="weights"):
        linear_pool(two, weights)


@pytest.mark.parametrize("exponents", [[-1.0, 1.0], [np.nan, 1.0], [np.inf, 1.0], [1.0]])
def test_log_linear_pool_exponents_validation(two, exponents):
    with pytest.raises(ValueError, match="exponents"):
        log_linear_pool(two, exponents)


@pytest.mark.parametrize("alpha", [-0.1, 1.1, np.nan, np.inf, -np.inf])
def test_geometric_alpha_outside_unit_interval_raises(two, alpha):
    with pytest.raises(ValueError, match="alpha"):
        geometric(*two, alpha)


def test_pools_refuse_densities_on_different_spaces(two):
    other = mixture((Dim(CONTINUOUS, 0.0, 2.0),), [1.0], [[0.5]], [[0.1]])
    with pytest.raises(ValueError):
        linear_pool((two[0], other), [0.5, 0.5])
    with pytest.raises(ValueError):
        geometric(two[0], other, 0.5)
    with pytest.raises(ValueError):
        linear_pool((), [])


def test_valid_edge_weights_are_accepted(two):
    # A weight of zero is allowed (sum exactly one); its component drops out.
    pool = linear_pool(two, [0.0, 1.0])
    x = np.linspace(0, 1, 5)[:, None]
    np.testing.assert_allclose(
        np.asarray(pool.log_prob(x)), scipy_log_mixture(x[:, 0], [1], [0.7], [0.3]), rtol=1e-12
    )


# ---------------------------------------------------------------------------------------------
# P1: outside every support, the value is -inf and every gradient is exactly zero, never NaN
# ---------------------------------------------------------------------------------------------

BASE = mixture(UNIT, [1.0], [[0.5]], [[0.5]])
P1_ARGS = (jnp.log(jnp.array([0.4, 0.6])), jnp.array([0.3, 0.8]), jnp.array([0.2, 0.05]))


def _two_kernels(mu, sigma):
    return tuple(
        dataclasses.replace(BASE, mu=mu[i].reshape(1, 1), sigma=sigma[i].reshape(1, 1))
        for i in range(2)
    )


def p1_linear(log_w, mu, sigma, x):
    return LinearPool(_two_kernels(mu, sigma), log_w).log_prob(x)[0]


def p1_linear_weights(log_w, mu, sigma, x):
    return linear_pool(_two_kernels(mu, sigma), jnp.exp(log_w)).log_prob(x)[0]


def p1_one_mixture(log_w, mu, sigma, x):
    m = mixture(UNIT, [1.0, 1.0], [[0.0], [0.0]], [[1.0], [1.0]])
    m = dataclasses.replace(m, log_weights=log_w, mu=mu.reshape(2, 1), sigma=sigma.reshape(2, 1))
    return m.log_prob(x)[0]


def p1_geometric(alpha, mu, sigma, x):
    p, q = _two_kernels(mu, sigma)
    return geometric(p, q, alpha).unnormalized_log_prob(x)[0]


P1_FUNCS = [p1_linear, p1_linear_weights, p1_one_mixture]


@pytest.mark.parametrize("f", P1_FUNCS)
@pytest.mark.parametrize("x", [1.5, -0.5, 1.0 + 1e-12, 1e300])
def test_p1_outside_support_value_and_gradients(f, x):
    # log_prob is jitted at the public boundary, so this differentiates the compiled code.
    xs = np.array([[x]])
    value, grads = jax.value_and_grad(f, argnums=(0, 1, 2))(*P1_ARGS, xs)
    assert float(value) == -np.inf
    for g in grads:
        g = np.asarray(g)
        assert not np.isnan(g).any(), grads
        assert np.all(g == 0.0), grads


@pytest.mark.parametrize("f", P1_FUNCS)
def test_p1_inside_gradients_match_finite_differences(f):
    # Inside the support the gradient is finite and matches central differences of scipy's value.
    x = 0.9
    log_w, mu, sigma = (np.asarray(a) for a in P1_ARGS)

    def ref(lw, m, s):
        # The pools take their (log) weights as given, without renormalizing.
        return scipy_log_mixture([x], np.exp(lw), m, s, normalize=False)[0]

    assert abs(float(f(*P1_ARGS, np.array([[x]]))) - ref(log_w, mu, sigma)) < 1e-12
    grads = jax.grad(f, argnums=(0, 1, 2))(*P1_ARGS, np.array([[x]]))
    h = 1e-6
    for i, g in enumerate(grads):
        for j in range(2):
            up = [log_w.copy(), mu.copy(), sigma.copy()]
            dn = [log_w.copy(), mu.copy(), sigma.copy()]
            up[i][j] += h
            dn[i][j] -= h
            fd = (ref(*up) - ref(*dn)) / (2 * h)
            assert abs(float(g[j]) - fd) < 1e-6 * max(1.0, abs(fd)), (i, j, float(g[j]), fd)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("x", [1.5, -0.5])
def test_p1_geometric_outside_support_gradients_are_zero(alpha, x):
    value, grads = jax.value_and_grad(p1_geometric, argnums=(0, 1, 2))(
        jnp.asarray(alpha), P1_ARGS[1], P1_ARGS[2], np.array([[x]])
    )
    assert float(value) == -np.inf
    for g in grads:
        assert not np.isnan(np.asarray(g)).any(), grads
        assert np.all(np.asarray(g) == 0.0), grads


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_geometric_gradient_in_alpha_is_log_ratio(alpha):
    # d/dalpha [alpha log p + (1 - alpha) log q] = log p - log q, at the end points too.
    x = np.array([0.1, 0.5, 0.95])
    mu, sigma = np.asarray(P1_ARGS[1]), np.asarray(P1_ARGS[2])
    ref = scipy_log_mixture(x, [1], mu[:1], sigma[:1]) - scipy_log_mixture(
        x, [1], mu[1:], sigma[1:]
    )
    for xi, r in zip(x, ref, strict=True):
        g = jax.grad(p1_geometric)(jnp.asarray(alpha), P1_ARGS[1], P1_ARGS[2], np.array([[xi]]))
        assert abs(float(g) - r) < 1e-9 * max(1.0, abs(r)), (alpha, xi, float(g), r)


def test_geometric_gradient_with_a_zero_probability_point_in_the_batch():
    # p_llm gives category 0 probability zero. A batch holding that point must not turn the
    # gradient in alpha into NaN for the other points (alpha broadcasts over the batch).
    dims = (CAT3,)
    p = mixture(dims, [1.0], np.zeros((1, 0)), np.zeros((1, 0)), [[[0.0, 1.0, 1.0]]])
    q = mixture(dims, [1.0], np.zeros((1, 0)), np.zeros((1, 0)), [[[0.5, 0.25, 0.25]]])
    x = np.array([[0.0], [1.0]])

    def f(alpha):
        return geometric(p, q, alpha).unnormalized_log_prob(x)

    for alpha in (0.0, 0.5, 1.0):
        value = np.asarray(f(jnp.asarray(alpha)))
        jac = np.asarray(jax.jacobian(f)(jnp.asarray(alpha)))
        assert not np.isnan(value).any() and not np.isnan(jac).any(), (alpha, value, jac)
        # At the point both densities cover: d/dalpha = log(1/2) - log(1/4).
        assert abs(jac[1] - np.log(2.0)) < 1e-12, (alpha, jac)
    assert float(f(0.0)[0]) == pytest.approx(np.log(0.5), rel=1e-12)
    assert float(f(0.5)[0]) == -np.inf


def test_p1_discrete_and_categorical_off_support_gradients_are_zero():
    # The same kind of fault on the other coordinate kinds: off the grid, past the bounds and
    # out of the choices, every gradient (also w.r.t. the categorical table) is exactly zero.
    dims = (INT, CAT3)
    m = mixture(dims, [1.0, 3.0], [[2.0], [4.0]], [[0.5], [2.0]], [[[1, 2, 3], [3, 2, 1]]])

    def f(log_w, mu, sigma, table, x):
        d = dataclasses.replace(m, log_weights=log_w, mu=mu, sigma=sigma, cat_log_probs=(table,))
        return d.log_prob(x)[0]

    args = (m.log_weights, m.mu, m.sigma, m.cat_log_probs[0])
    for x in ([2.5, 0.0], [7.0, 0.0], [0.0, 1.0], [2.0, 3.0], [2.0, -1.0], [2.0, 0.5]):
        value, grads = jax.value_and_grad(f, argnums=(0, 1, 2, 3))(*args, np.array([x]))
        assert float(value) == -np.inf, x
        for g in grads:
            g = np.asarray(g)
            assert not np.isnan(g).any() and np.all(g == 0.0), (x, grads)
