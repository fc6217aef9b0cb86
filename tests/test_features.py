"""Features and their expectations.

Truncated-normal moments are checked against their scipy twin, ``exact`` expectations of mixtures
against an independent quadrature of the test suite's own (``tests/test_density.py``) on every
space of the catalogue, and ``quadrature`` and ``samples`` against ``exact``.
"""

import math

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as hst
from test_density import (
    MIXTURE_SPACES,
    PER_SPACE,
    SPACE_IDS,
    build,
    gl_pieces,
    kernel_cuts,
    mixture_params,
    tensor_rule,
)

from fusion import features as F
from fusion.combine import geometric, linear_pool
from fusion.density import Uniform, mixture
from fusion.space import CATEGORICAL, CONTINUOUS, DISCRETE, Dim, Param, SearchSpace


def catalogue_features(dims, rng) -> F.Features:
    """Moments up to 3 of every numeric coordinate, a random window on each, the categories of
    every categorical and the cross moment of the first two numeric coordinates."""
    out = None
    numeric = [j for j, d in enumerate(dims) if d.kind != CATEGORICAL]
    for j, d in enumerate(dims):
        if d.kind == CATEGORICAL:
            part = F.categories(dims, j)
        else:
            lo, hi = np.sort(rng.uniform(d.low, d.high, 2))
            part = F.moments(dims, j, 3) + F.interval(dims, j, lo, hi)
        out = part if out is None else out + part
    if len(numeric) >= 2:
        out = out + F.cross(dims, numeric[0], numeric[1])
    return out


def rule_with_edges(dims, mu, sigma, edges):
    """The test suite's own tensor rule, cut around the kernels and at the windows' edges (where
    an indicator jumps)."""
    rules, i = [], 0
    for j, d in enumerate(dims):
        if d.kind == CONTINUOUS:
            cuts = kernel_cuts(d.low, d.high, np.asarray(mu)[:, i], np.asarray(sigma)[:, i])
            x, w = gl_pieces(np.unique(np.concatenate([cuts, edges.get(j, [])])))
            rules.append((x.ravel(), w.ravel()))
        else:
            rules.append((d.grid(), np.ones(d.n_points)))
        i += d.is_numeric
    return tensor_rule(rules)


# ---------------------------------------------------------------------------------------------
# Truncated-normal moments: the mpmath and scipy twins
# ---------------------------------------------------------------------------------------------


def mpmath_window_moments(mu, sigma, low, high, a, b, max_power):
    """``E[X^r 1{a <= X <= b}]`` of a truncated normal from the closed form at 60 digits, where
    neither the tails nor the moment recursion lose what float64 needs: the piece's standard mass
    ``P`` from ``erfc`` on the side of the tail, ``M_r = (r-1) M_(r-2) + (za^(r-1) phi(za) -
    zb^(r-1) phi(zb))/P`` and ``E[X^r] = sum_i C(r, i) mu^(r-i) sigma^i M_i``."""
    lo, hi = max(a, low), min(b, high)
    if not lo < hi:
        return np.zeros(max_power + 1)
    with mpmath.workdps(60):
        mu, sigma = mpmath.mpf(mu), mpmath.mpf(sigma)

        def mass(za, zb):
            if za + zb > 0:  # reflect into the lower tail, where erfc keeps its digits
                za, zb = -zb, -za
            return (mpmath.erfc(-zb / mpmath.sqrt(2)) - mpmath.erfc(-za / mpmath.sqrt(2))) / 2

        za, zb = (mpmath.mpf(lo) - mu) / sigma, (mpmath.mpf(hi) - mu) / sigma
        p = mass(za, zb)
        if p == 0:  # narrower than 60 digits resolve: its mass is far below float64's reach
            return np.zeros(max_power + 1)
        share = p / mass((mpmath.mpf(low) - mu) / sigma, (mpmath.mpf(high) - mu) / sigma)
        m = [mpmath.mpf(1), (mpmath.npdf(za) - mpmath.npdf(zb)) / p]
        for r in range(2, max_power + 1):
            edge = za ** (r - 1) * mpmath.npdf(za) - zb ** (r - 1) * mpmath.npdf(zb)
            m.append((r - 1) * m[r - 2] + edge / p)
        raw = [
            sum(mpmath.binomial(r, i) * mu ** (r - i) * sigma**i * m[i] for i in range(r + 1))
            for r in range(max_power + 1)
        ]
        return np.array([float(share * v) for v in raw])


@settings(max_examples=max(10, settings().max_examples // 2))
@given(
    mu=hst.floats(-3, 3),
    log_sigma=hst.floats(-2, 1),
    ends=hst.lists(hst.floats(-4, 4), min_size=4, max_size=4, unique=True),
)
def test_truncnorm_moments_match_mpmath(mu, log_sigma, ends):
    sigma = 10.0**log_sigma
    low, high, a, b = ends[0], ends[0] + abs(ends[1] - ends[0]) + 0.1, min(ends[2:]), max(ends[2:])
    got = F.truncnorm_moments(mu, sigma, low, high, a, b, 4)
    want = mpmath_window_moments(mu, sigma, low, high, a, b, 4)
    scale = np.array([max(abs(low), abs(high), 1.0) ** r for r in range(5)])
    np.testing.assert_allclose(got / scale, want / scale, rtol=1e-11, atol=1e-14)


def test_truncnorm_moments_match_scipy():
    mu, sigma, low, high = 0.3, 0.2, 0.0, 1.0
    got = F.truncnorm_moments(mu, sigma, low, high, -np.inf, np.inf, 4)
    twin = scipy.stats.truncnorm((low - mu) / sigma, (high - mu) / sigma, mu, sigma)
    np.testing.assert_allclose(got, [1.0] + [twin.moment(r) for r in range(1, 5)], rtol=1e-13)


def test_truncnorm_moments_deep_in_a_tail_are_finite_and_right():
    # A kernel 30 scales below its interval: the mass is about 1e-197, the moments are not NaN.
    got = F.truncnorm_moments(0.0, 1.0, 30.0, np.inf, -np.inf, np.inf, 4)
    want = [1.0] + [scipy.stats.truncnorm.moment(r, 30.0, np.inf) for r in range(1, 5)]
    np.testing.assert_allclose(got, want, rtol=1e-12)


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


SPACE = SearchSpace(
    (
        Param("lr", Dim(CONTINUOUS, math.log(1e-4), math.log(1.0)), log=True),
        Param("n", Dim(DISCRETE, 1.0, 9.0, 2.0), is_int=True),
        Param("act", Dim(CATEGORICAL, n_choices=3), choices=("relu", "tanh", None)),
        Param("x", Dim(CONTINUOUS, -1.0, 1.0)),
    )
)


def test_features_evaluate_their_formulas_and_are_named():
    f = (
        F.moments(SPACE, "lr", 2)
        + F.interval(SPACE, "lr", 1e-3, 1e-2)
        + F.interval(SPACE, "n", 3, 5)
        + F.category(SPACE, "act", None)
        + F.cross(SPACE, "x", "n", powers=(2, 1))
    )
    assert f.names == (
        "ln(lr)",
        "ln(lr)^2",
        "1{0.001 <= lr <= 0.01}",
        "1{3 <= n <= 5}",
        "1{act = None}",
        "x^2*n",
    )
    x = np.array(
        [
            [math.log(5e-3), 3.0, 2.0, 0.5],
            [math.log(5e-2), 5.0 + 1e-15, 0.0, -1.0],  # 5 one ulp off the grid still counts
            [math.log(1e-3), 7.0, 1.0, 0.0],
        ]
    )
    got = np.asarray(f(x))
    lr = x[:, 0]
    in_lr = (lr >= math.log(1e-3)) & (lr <= math.log(1e-2))
    in_n = np.array([1.0, 1.0, 0.0])
    want = np.stack([lr, lr**2, in_lr, in_n, x[:, 2] == 2, x[:, 3] ** 2 * x[:, 1]], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-15)


def test_custom_features_and_their_expectations():
    dims = (Dim(CONTINUOUS, 0.0, 1.0),)
    f = F.custom(
        dims, lambda x: jnp.stack([jnp.sin(x[:, 0]), jnp.exp(x[:, 0])], axis=1), ["sin", "exp"]
    )
    t = F.expectation(Uniform(dims), f)
    assert t.method == "quadrature"
    np.testing.assert_allclose(t.values, [1 - math.cos(1.0), math.e - 1], rtol=1e-13)
    with pytest.raises(ValueError, match="method='exact' needs built-in features"):
        F.expectation(Uniform(dims), f, "exact")


@pytest.mark.parametrize(
    "build_features, match",
    [
        (lambda: F.moments(SPACE, "nope"), "param 'nope' is not in the space"),
        (lambda: F.moments(SPACE, "act"), "categorical: use category"),
        (lambda: F.moments(SPACE, "x", 0), "degree must be an int >= 1"),
        (lambda: F.interval(SPACE, "x", 0.5, 0.1), "low <= high"),
        (lambda: F.interval(SPACE, "x", float("nan"), 0.1), "interval low must be a number"),
        (lambda: F.category(SPACE, "act", "gelu"), "gelu"),
        (lambda: F.category(SPACE, "x", 1), "not categorical"),
        (lambda: F.cross(SPACE, "x", "x"), "two different params"),
        (lambda: F.cross(SPACE, "x", "act"), "numeric params"),
        (lambda: F.custom(SPACE, lambda x: x, ["a"]), r"fn must map \(n, 4\) points to \(n, 1\)"),
        (lambda: F.custom(SPACE, lambda x: x[:, :2], "ab"), "names must be a sequence of strings"),
        (lambda: F.truncnorm_moments(0.0, 0.0, 0, 1, 0, 1, 2), "sigma finite and > 0"),
        (lambda: F.truncnorm_moments(np.nan, 1.0, 0, 1, 0, 1, 2), "mu must be finite"),
        (lambda: F.truncnorm_moments(0.0, 1.0, 1, 0, 0, 1, 2), "low < high"),
        (lambda: F.truncnorm_moments(0.0, 1.0, 0, 1, 0, 1, -1), "max_power must be an int"),
        (lambda: F.moments((Dim(CONTINUOUS, 0.0, 1.0),), 1), "param must be an int >= 0 and <= 0"),
        (
            lambda: F.moments(SPACE, "x") + F.moments((Dim(CONTINUOUS, 0.0, 1.0),), 0),
            "different spaces",
        ),
    ],
)
def test_bad_feature_arguments_name_the_problem(build_features, match):
    with pytest.raises(ValueError, match=match):
        build_features()


def test_expectation_arguments_are_checked():
    f = F.moments(SPACE, "x")
    u = Uniform(SPACE.dims)
    with pytest.raises(ValueError, match="method must be one of"):
        F.expectation(u, f, "magic")
    with pytest.raises(ValueError, match="features must be a Features"):
        F.expectation(u, [1.0])
    with pytest.raises(ValueError, match="density lives on"):
        F.expectation(Uniform((Dim(CONTINUOUS, 0.0, 1.0),)), f)
    with pytest.raises(ValueError, match="pass key="):
        F.expectation(u, f, "samples")
    with pytest.raises(ValueError, match="key must be a jax.random key, got 0"):
        F.expectation(u, f, "samples", key=0)
    with pytest.raises(ValueError, match="rtol must be a finite number > 0, got nan"):
        F.expectation(u, f, rtol=float("nan"))
    with pytest.raises(ValueError, match="max_points must be an int >= 1, got 0"):
        F.expectation(u, f, max_points=0)


def test_scalars_of_numpy_and_jax_are_accepted_as_numbers():
    a = F.interval(SPACE, "x", jnp.float64(0.2), np.array(0.7))
    b = F.interval(SPACE, "x", 0.2, 0.7)
    assert a.terms[0].windows == b.terms[0].windows


def test_an_interval_with_an_infinite_end_on_a_grid_counts_the_grid_points_in_it():
    dims = (Dim(DISCRETE, 1.0, 9.0, 1.0),)
    u = Uniform(dims)
    for low, high, want in [
        (-math.inf, 3, 3 / 9),
        (4, math.inf, 6 / 9),
        (-math.inf, math.inf, 1.0),
    ]:
        got = F.expectation(u, F.interval(dims, 0, low, high)).values[0]
        assert got == pytest.approx(want, rel=1e-14)
    assert F.expectation(u, F.interval(dims, 0, 20, math.inf)).values[0] == 0.0


@pytest.mark.parametrize("low, width", [(1e6, 1.0), (1.0, 1e-6), (100.0, 1e-3), (-3.0, 7.0)])
def test_uniform_moments_on_a_range_far_from_zero_do_not_cancel(low, width):
    """``E[x^p]`` of the uniform on ``[low, low + width]``, against mpmath at 50 digits."""
    dims = (Dim(CONTINUOUS, low, low + width),)
    got = F.expectation(Uniform(dims), F.moments(dims, 0, 4)).values
    with mpmath.workdps(50):
        a, b = mpmath.mpf(low), mpmath.mpf(low + width)
        want = [float((b ** (p + 1) - a ** (p + 1)) / ((p + 1) * (b - a))) for p in range(1, 5)]
    np.testing.assert_allclose(got, want, rtol=1e-14)


# ---------------------------------------------------------------------------------------------
# Expectations: exact against an independent quadrature, and the methods against each other
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dims", MIXTURE_SPACES, ids=SPACE_IDS)
@PER_SPACE
@given(data=hst.data())
def test_exact_expectations_of_mixtures_match_an_independent_quadrature(dims, data):
    params = data.draw(mixture_params(spaces=[dims]))
    f = catalogue_features(dims, np.random.default_rng(data.draw(hst.integers(0, 2**31))))
    m = build(params)
    got = F.expectation(m, f, "exact")
    assert got.method == "exact"
    _, _, mu, sigma, _ = params
    x, w = rule_with_edges(dims, mu, sigma, f.edges())
    fx = np.asarray(f(x))
    p = np.exp(np.asarray(m.log_prob(x)))
    want = (w * p) @ fx
    scale = np.abs(want) + (w * p) @ np.abs(fx) + 1e-12
    np.testing.assert_array_less(np.abs(got.values - want) / scale, 1e-7)


@settings(max_examples=max(5, settings().max_examples // 3))
@given(data=hst.data())
def test_quadrature_and_samples_agree_with_exact(data):
    params = data.draw(
        mixture_params(spaces=[(Dim(CONTINUOUS, -2.0, 3.0), Dim(CATEGORICAL, n_choices=3))])
    )
    dims = params[0]
    m = build(params)
    f = catalogue_features(dims, np.random.default_rng(0))
    exact = F.expectation(m, f, "exact").values
    quad = F.expectation(m, f, "quadrature")
    assert quad.method == "quadrature"
    scale = 1 + np.abs(exact)
    np.testing.assert_array_less(np.abs(quad.values - exact) / scale, 1e-9)
    np.testing.assert_array_less(quad.std_errors / scale, 1e-9)
    draws = F.expectation(m, f, "samples", key=jax.random.key(0), n_samples=2**14)
    live = draws.std_errors > 0
    z = np.abs(draws.values - exact)[live] / draws.std_errors[live]
    assert z.max() < 5.0, z


def test_expectations_of_pools():
    dims = (Dim(CONTINUOUS, 0.0, 1.0), Dim(DISCRETE, 0.0, 4.0, 1.0))
    a = mixture(dims, [1.0], [[0.2, 1.0]], [[0.1, 1.0]], [])
    b = mixture(dims, [1.0, 2.0], [[0.7, 3.0], [0.5, 0.0]], [[0.2, 0.5], [0.3, 2.0]], [])
    f = F.moments(dims, 0, 2) + F.moments(dims, 1, 2) + F.cross(dims, 0, 1)
    ea, eb = F.expectation(a, f).values, F.expectation(b, f).values
    lin = F.expectation(linear_pool([a, b], [0.25, 0.75]), f)
    assert lin.method == "exact"
    np.testing.assert_allclose(lin.values, 0.25 * ea + 0.75 * eb, rtol=1e-13)
    # An unnormalized geometric pool: quadrature on its self-normalized weights ...
    pool = geometric(a, b, 0.5)
    quad = F.expectation(pool, f)
    assert quad.method == "quadrature"
    # ... against importance sampling from its default proposal.
    imp = F.expectation(pool, f, "samples", key=jax.random.key(1), n_samples=2**15)
    assert np.max(np.abs(imp.values - quad.values) / imp.std_errors) < 5.0
