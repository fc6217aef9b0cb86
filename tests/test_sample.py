"""The sampling front door (``fusion.sample``) and the envelopes of ``fusion.rejection``.

Envelopes are checked as inequalities on random pools (hypothesis), rejection draws by
goodness-of-fit tests against quadrature CDFs and exact closed-form draws (``tests/gof.py``: each
check rejects an exact sampler with probability ``ALPHA = 1e-3`` for a random seed; the seeds here
are fixed), and the front door by which method it picks and why it passes one over.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats as st
from gof import ALPHA, binned_pvalue, chi_square_pvalue, energy_pvalue
from hypothesis import given
from hypothesis import strategies as hst
from test_density import (
    CAT3,
    CAT4,
    CONT,
    INT,
    build,
    cdf_1d,
    inside_points,
    kernel_cuts,
    mixture_params,
    space_rule,
)

from fusion import features as F
from fusion.combine import geometric, linear_pool, log_linear_pool, product
from fusion.density import Uniform, mixture
from fusion.maxent import maxent
from fusion.normalize import closed_form
from fusion.quadrature import evaluate
from fusion.rejection import (
    RejectionError,
    _envelope_round,
    log_density_bound,
    pool_envelope,
    rejection_sample,
)
from fusion.sample import sample
from fusion.space import CATEGORICAL, CONTINUOUS, Dim

BOX = Dim(CONTINUOUS, -12.0, 12.0)
R1 = (BOX,)
P = mixture(R1, [0.6, 0.4], [[-3.0], [4.0]], [[2.0], [1.0]], min_kernels=4)
Q = mixture(R1, [0.5, 0.3, 0.2], [[0.0], [5.0], [-8.0]], [[3.0], [0.8], [1.5]], min_kernels=4)
CUTS = kernel_cuts(BOX.low, BOX.high, [-3.0, 4.0, 0.0, 5.0, -8.0], [2.0, 1.0, 3.0, 0.8, 1.5], 0.25)
N_SE = 4.5  # two-sided normal checks: a false failure has probability 6.8e-6 per fresh seed


def pool_cdf(pool):
    """The CDF of a 1-D pool on ``BOX`` by the tests' own quadrature, and ``log Z``."""
    _, raw = cdf_1d(pool.unnormalized_log_prob, CUTS)
    log_z = math.log(raw[-1])
    return cdf_1d(pool.unnormalized_log_prob, CUTS, log_z=log_z)[0], log_z


# ---------------------------------------------------------------------------------------------
# Envelopes
# ---------------------------------------------------------------------------------------------


ENVELOPE_SPACES = [(CONT,), (CAT4,), (INT,), (CONT, CAT3)]


@given(params=mixture_params(spaces=ENVELOPE_SPACES), seed=hst.integers(0, 2**32 - 1))
def test_the_density_bound_is_never_exceeded_and_a_single_kernel_reaches_it(params, seed):
    density = build(params)
    dims, mu = params[0], params[2]
    u = np.random.default_rng(seed).uniform(size=(500, len(dims)))
    x = inside_points(dims, u)
    bound = log_density_bound(density)
    assert np.all(evaluate(density.log_prob, x) <= bound + 1e-12 * max(1.0, abs(bound)))
    if all(d.kind == CONTINUOUS for d in dims):
        one = mixture(dims, [1.0], mu[:1], params[3][:1])
        peak = np.clip(mu[:1], [d.low for d in dims], [d.high for d in dims])
        np.testing.assert_allclose(log_density_bound(one), one.log_prob(peak)[0], rtol=1e-12)


@given(
    data=hst.data(),
    dims=hst.sampled_from(ENVELOPE_SPACES),
    exponents=hst.tuples(hst.floats(0.0, 2.5), hst.floats(0.0, 2.5)).filter(lambda e: max(e) > 0),
)
def test_every_pool_envelope_bounds_its_pool(data, dims, exponents):
    """``p~(x) <= M q(x)`` on the space, for sums of exponents below, at and above one."""
    a, b = (build(data.draw(mixture_params(spaces=[dims]))) for _ in range(2))
    pool = log_linear_pool([a, b], exponents)
    q, log_m = pool_envelope(pool)
    x = inside_points(dims, np.random.default_rng(0).uniform(size=(400, len(dims))))
    log_p = evaluate(pool.unnormalized_log_prob, x)
    log_bound = log_m + evaluate(q.log_prob, x)
    assert np.all(log_p <= log_bound + 1e-10 * (1.0 + np.abs(log_bound)))


def test_no_envelope_below_one_on_an_unbounded_space():
    line = (Dim(CONTINUOUS, -np.inf, np.inf),)
    g = mixture(line, [1.0], [[0.0]], [[1.0]])
    with pytest.raises(ValueError, match=r"sum 0\.5 < 1\) on an unbounded space"):
        pool_envelope(log_linear_pool([g, g], [0.25, 0.25]))


# ---------------------------------------------------------------------------------------------
# Rejection: goodness of fit, Z, P3
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("exponents", [(1.5, 0.7), (0.3, 0.2), (0.35, 0.65)])
def test_rejection_draws_of_tempered_pools_fit_and_estimate_z(exponents):
    pool = log_linear_pool([P, Q], exponents)
    cdf, log_z = pool_cdf(pool)
    res = rejection_sample(pool, jax.random.key(3), 4000)
    assert res.samples.shape == (4000, 1)
    assert binned_pvalue(res.samples, cdf, 20, BOX.low, BOX.high) > ALPHA
    # M times the acceptance rate estimates Z: the rate is Binomial(N, Z / M) / N.
    rate = math.exp(log_z - res.log_envelope)
    assert abs(res.acceptance_rate - rate) <= N_SE * math.sqrt(rate * (1 - rate) / res.n_proposed)


def test_the_mass_of_each_mode_of_a_bimodal_pool_matches_quadrature():
    """A geometric pool with two far-apart modes: the share of rejection draws in each is
    Binomial(n, mass), so it must lie within N_SE standard errors of the quadrature mass."""
    a = mixture(R1, [0.5, 0.5], [[-6.0], [6.0]], [[1.0], [1.0]], min_kernels=4)
    b = mixture(R1, [0.2, 0.8], [[-6.5], [5.0]], [[2.0], [3.0]], min_kernels=4)
    pool = geometric(a, b, 0.5)
    _, raw = cdf_1d(pool.unnormalized_log_prob, CUTS)
    left = cdf_1d(pool.unnormalized_log_prob, CUTS, log_z=math.log(raw[-1]))[0](0.0)[0]
    assert 0.1 < left < 0.4  # two modes of unequal mass
    n = 20_000
    draws = sample(pool, jax.random.key(11), n).samples[:, 0]
    share = float(np.mean(draws < 0.0))
    assert abs(share - left) <= N_SE * math.sqrt(left * (1 - left) / n), (share, left)


P3 = [mixture(R1, [1.0], [[m]], [[0.01]], min_kernels=4) for m in (0.0, 5.0)]
P3_LOG_Z = -62496.6603419375  # int N(x; 0, .01^2) N(x; 5, .01^2) dx = N(0; 5, 2 * .01^2)


def test_p3_rejection_from_the_product_stops_with_the_rate_and_auto_samples_it_exactly():
    assert abs(st.norm.logpdf(0.0, 5.0, math.sqrt(2) * 0.01) - P3_LOG_Z) < 1e-12 * 62496.7
    pool = product(*P3)
    with pytest.raises(RejectionError, match=r"accepted 0 of 8192 proposals in 8 rounds.*rate 0\b"):
        rejection_sample(pool, jax.random.key(0), 10, max_rounds=8)
    res = sample(pool, jax.random.key(1), 4000)
    assert res.method == "exact" and res.skipped == ()
    assert abs(res.diagnostics.log_normalizer - P3_LOG_Z) < 1e-9 * abs(P3_LOG_Z)
    # The normalized product is N(2.5, 0.01^2 / 2).
    assert st.kstest(res.samples[:, 0], st.norm(2.5, 0.01 / math.sqrt(2)).cdf).pvalue > ALPHA


def test_an_envelope_too_small_is_caught():
    with pytest.raises(ValueError, match="the envelope is not one.*pass a larger log_envelope"):
        rejection_sample(P, jax.random.key(0), 100, proposal=Uniform(R1), log_envelope=0.0)


def test_the_envelope_round_compiles_once_for_pools_of_one_shape():
    pools = [log_linear_pool([P, Q], e) for e in ((1.5, 0.7), (1.2, 0.9), (2.0, 0.5))]
    rejection_sample(pools[0], jax.random.key(0), 10)
    before = _envelope_round._cache_size()
    for k, pool in enumerate(pools[1:]):
        rejection_sample(pool, jax.random.key(k), 10)
    assert _envelope_round._cache_size() == before


# ---------------------------------------------------------------------------------------------
# The front door
# ---------------------------------------------------------------------------------------------

MIXED = (Dim(CONTINUOUS, -2.0, 3.0), Dim(CATEGORICAL, n_choices=3))
A = mixture(MIXED, [0.5, 0.5], [[0.0], [2.0]], [[0.7], [0.5]], [[[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]])
B = mixture(MIXED, [1.0], [[1.0]], [[1.0]], [[[0.3, 0.4, 0.3]]])


def test_auto_picks_exact_for_mixtures_and_products_and_rejection_for_geometric_pools():
    key = jax.random.key(0)
    assert sample(A, key, 10).method == "exact"
    assert sample(linear_pool([A, B], [0.3, 0.7]), key, 10).method == "exact"
    assert sample(product(A, B), key, 10).method == "exact"
    res = sample(geometric(A, B, 0.4), key, 10)
    assert res.method == "rejection" and res.skipped[0].startswith("exact:")


def test_auto_draws_of_a_mixed_geometric_pool_match_its_marginals():
    pool = geometric(A, B, 0.4)
    res = sample(pool, jax.random.key(5), 3000)
    assert res.method == "rejection"
    # Marginals of the pool by the tests' own quadrature (continuous) and sums (categorical).
    x, w = space_rule(MIXED, [[0.0], [2.0], [1.0]], [[0.7], [0.5], [1.0]])
    p = w * np.exp(evaluate(pool.unnormalized_log_prob, x))
    probs = np.array([p[x[:, 1] == c].sum() for c in range(3)])
    assert chi_square_pvalue(res.samples[:, 1], probs) > ALPHA
    order = np.argsort(x[:, 0])
    cum = np.cumsum(p[order]) / p.sum()
    cdf = lambda t: np.interp(t, x[order, 0], cum, left=0.0, right=1.0)  # noqa: E731
    assert binned_pvalue(res.samples[:, 0], cdf, 10, -2.0, 3.0) > ALPHA


def test_auto_passes_over_rejection_and_importance_when_the_pool_barely_overlaps():
    # Two-kernel mixtures at 0 and 5 with scale 0.01: the geometric pool at 1/2 has no closed
    # form, Z ~ exp(-31250), so rejection accepts nothing and the importance weights all
    # underflow; the chains still find the mass near 2.5 in between.
    a, b = (
        mixture(R1, [0.5, 0.5], [[m], [m + 0.05]], [[0.01], [0.01]], min_kernels=4)
        for m in (0.0, 5.0)
    )
    pool = geometric(a, b, 0.5)
    res = sample(
        pool,
        jax.random.key(2),
        2000,
        options={"rejection": {"max_rounds": 4, "min_accepted": 0}},
    )
    assert res.method == "mcmc"
    assert res.skipped[0].startswith("exact:")
    # min_accepted=0 lets rejection return what it has; auto still wants all n draws.
    assert res.skipped[1] == "rejection: 0 of 2000 draws within the rounds allowed"
    assert res.skipped[2].startswith("importance:")
    assert res.diagnostics.converged
    # The pool's mean by the tests' own quadrature in log space, around where its mass is.
    x, w = space_rule(R1, [[2.5], [2.55]], [[0.01], [0.01]], max_piece=0.005)
    log_p = evaluate(pool.unnormalized_log_prob, x) + np.log(w)
    p = np.exp(log_p - log_p.max())
    mean, sd = (
        float(p @ x[:, 0] / p.sum()),
        math.sqrt(float(p @ x[:, 0] ** 2 / p.sum()) - (p @ x[:, 0] / p.sum()) ** 2),
    )
    ess = float(np.min(res.diagnostics.ess))
    assert abs(np.mean(res.samples) - mean) < N_SE * sd / math.sqrt(ess)


def test_a_maximum_entropy_density_is_sampled_by_importance_from_its_reference():
    f = F.moments(R1, 0, 2)
    me = maxent(f, [1.0, 5.0])
    res = sample(me.density, jax.random.key(4), 3000)
    assert res.method == "importance" and res.diagnostics.ess_fraction > 0.1
    cuts = kernel_cuts(BOX.low, BOX.high, max_piece=0.25)
    cdf = cdf_1d(me.density.log_prob, cuts)[0]
    # Resampled draws repeat proposals; with N = 4 n proposals and ESS / N > 0.1 they are
    # checked at the bin level only.
    assert binned_pvalue(res.samples, cdf, 10, BOX.low, BOX.high) > ALPHA


def test_each_method_can_be_asked_for_and_refuses_what_it_cannot_do():
    pool = geometric(A, B, 0.4)
    assert sample(pool, jax.random.key(0), 50, "importance").method == "importance"
    with pytest.raises(
        ValueError,
        match="method='exact' does not apply: exact: this log-linear pool has no closed-form mixture",
    ):
        sample(pool, jax.random.key(0), 10, "exact")
    with pytest.raises(ValueError, match="method='rejection' does not apply.*no envelope"):
        sample(_Opaque(A), jax.random.key(0), 10, "rejection")


def test_a_pool_with_a_component_that_cannot_sample_goes_to_a_method_that_needs_none():
    me = maxent(F.moments(R1, 0, 2), [1.0, 5.0]).density  # no sample() of its own
    pool = geometric(me, P, 0.5)
    res = sample(pool, jax.random.key(6), 500)
    assert res.method == "importance"  # from the uniform density on the box
    assert "has no closed-form mixture" in res.skipped[0]
    assert "component 0, a ExponentialFamily, has no sample()" in res.skipped[1]
    with pytest.raises(ValueError, match="component 0, a ExponentialFamily, has no sample"):
        rejection_sample(pool, jax.random.key(0), 10)


@dataclasses.dataclass(frozen=True)
class _HoledGaussian:
    """``exp(-x^2 / 2)`` on the box, but NaN on ``|x| < 0.5``: no density there."""

    dims: tuple = dataclasses.field(default=R1, metadata=dict(static=True))

    def unnormalized_log_prob(self, x):
        return jnp.where(jnp.abs(x[:, 0]) < 0.5, jnp.nan, -0.5 * x[:, 0] ** 2)


jax.tree_util.register_dataclass(_HoledGaussian)


def test_a_target_that_is_nan_somewhere_is_refused_by_rejection():
    with pytest.raises(ValueError, match=r"log-density is NaN or \+inf at x"):
        rejection_sample(
            _HoledGaussian(), jax.random.key(0), 100, proposal=Uniform(R1), log_envelope=0.0
        )
    with pytest.raises(ValueError, match="target must be a JAX pytree of arrays"):
        rejection_sample(_Opaque(P), jax.random.key(0), 10, proposal=Uniform(R1), log_envelope=0.0)


@dataclasses.dataclass(frozen=True)
class _FlatSampler:
    """The uniform density on the box, whose sample() forgets the coordinate axis."""

    dims: tuple = dataclasses.field(default=R1, metadata=dict(static=True))

    def log_prob(self, x):
        return Uniform(R1).log_prob(x)

    def sample(self, key, n):
        return Uniform(R1).sample(key, n)[:, 0]


jax.tree_util.register_dataclass(_FlatSampler)


def test_a_proposal_whose_draws_have_the_wrong_shape_is_named():
    with pytest.raises(
        ValueError, match=r"proposal.sample\(key, 1024\) must return shape \(1024, 1\)"
    ):
        sample(P, jax.random.key(0), 10, "importance", proposal=_FlatSampler())


def test_sample_sizes_and_pools_that_are_not_densities_are_refused():
    with pytest.raises(ValueError, match="n must be an int >= 1 and <= 2147483647"):
        sample(P, jax.random.key(0), 2**62)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        sample(P, jax.random.key(0), -1)
    with pytest.raises(ValueError, match="exponents must not all be 0"):
        log_linear_pool([P, Q], [0.0, 0.0])


class _Opaque:
    """A density the samplers know nothing about but its log-density."""

    def __init__(self, inner):
        self.inner = inner
        self.dims = inner.dims

    def unnormalized_log_prob(self, x):
        return self.inner.log_prob(x)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="gibbs"), "method must be one of"),
        (dict(n=0), "n must be an int >= 1"),
        (dict(n=2.5), "n must be an int"),
        (dict(key=0), "key must be a jax.random key"),
        (dict(options={"nuts": {}}), "options must map method names"),
        (dict(options={"mcmc": 3}), "options must map method names"),
    ],
)
def test_bad_arguments_name_the_parameter(kwargs, match):
    args = dict(density=A, key=jax.random.key(0), n=10) | kwargs
    with pytest.raises(ValueError, match=match):
        sample(**args)
    with pytest.raises(ValueError, match="density must be a fusion density"):
        sample([1.0], jax.random.key(0), 10)


def test_rejection_draws_of_a_2d_product_match_its_closed_form_draws():
    """A product has exponents summing to 2: the envelope ``M = sup q`` of the module docstring.
    Its closed form is a mixture of the kernels' products, sampled exactly."""
    d2 = (Dim(CONTINUOUS, -3.0, 3.0), Dim(CONTINUOUS, -3.0, 3.0))
    a = mixture(d2, [0.5, 0.5], [[-1.0, 0.0], [1.0, 1.0]], [[0.8, 1.0], [0.6, 0.9]])
    b = mixture(d2, [1.0], [[0.3, 0.2]], [[1.2, 1.5]])
    pool = product(a, b)
    res = sample(pool, jax.random.key(7), 500, "rejection")
    q = linear_pool([a, b], [0.5, 0.5])
    assert res.diagnostics.log_envelope == pool_envelope(pool).log_m == log_density_bound(q)
    exact = closed_form(pool).density.sample(jax.random.key(8), 500)
    assert energy_pvalue(res.samples, exact, seed=1) > ALPHA
    z = closed_form(pool).log_z
    rate = math.exp(z - res.diagnostics.log_envelope)
    n = res.diagnostics.n_proposed
    assert abs(res.diagnostics.acceptance_rate - rate) <= N_SE * math.sqrt(rate * (1 - rate) / n)
