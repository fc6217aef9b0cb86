"""AM-GM rejection from geometric pools (``fusion.sample``): cases P2 and P3, Z against quadrature,
and goodness of fit of the draws.

The acceptance probability of the AM-GM sampler is ``Z`` itself, so its acceptance rate over ``N``
proposals is ``Binomial(N, Z) / N``. References are closed forms (Gaussian products) and tensor
Gauss-Legendre quadrature (helpers in ``test_density.py``), never ``fusion``'s own estimates.

All pools live on the boxes ``[-12, 12]`` and ``[-12, 12]^2`` with four-kernel buckets, so the
sampler compiles once per dimension.
"""

from __future__ import annotations

import math
import time

import jax
import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given
from hypothesis import strategies as hst
from test_density import cdf_1d, integrate, kernel_cuts, log_integrate, mixture_params, space_rule

from fusion.combine import geometric, product
from fusion.density import mixture
from fusion.rejection import RejectionError, amgm_rejection_sample
from fusion.space import CONTINUOUS, Dim

BOX = Dim(CONTINUOUS, -12.0, 12.0)
R1, R2 = (BOX,), (BOX, BOX)
BATCH = 4096
# Two-sided 4.5 standard errors: a false failure has probability 6.8e-6 per check for a fresh
# seed, so about 2e-4 for the 30 examples of the property test below (fixed seeds here).
N_SE = 4.5
P_TWO_SIDED = 2 * st.norm.sf(N_SE)


def gaussian(dims, mu, sigma):
    """One (truncated) Gaussian kernel, padded to the shared four-kernel bucket."""
    n = len(dims)
    return mixture(dims, [1.0], np.reshape(mu, (1, n)), np.reshape(sigma, (1, n)), min_kernels=4)


def z_by_quadrature(pool, dims, mu, sigma):
    x, w = space_rule(dims, mu, sigma, max_piece=max(float(np.min(sigma)), 0.05))
    return integrate(pool.unnormalized_log_prob, x, w)


# ---------------------------------------------------------------------------------------------
# P2: geometric pool at alpha = 1/2 of N((0,0), I) and N((1,1), I): Z = exp(-|d|^2 / 8)
# ---------------------------------------------------------------------------------------------


def test_p2_normalizer_by_quadrature_and_by_rejection():
    z_exact = math.exp(-0.25)
    assert abs(z_exact - 0.778800783071405) < 1e-15
    # On [-12, 12]^2 the truncation is negligible: less than 1e-20 of either Gaussian's mass.
    assert 2 * (st.norm.sf(11) + st.norm.sf(12)) < 1e-20
    p, q = gaussian(R2, [0.0, 0.0], [1.0, 1.0]), gaussian(R2, [1.0, 1.0], [1.0, 1.0])
    pool = geometric(p, q, 0.5)
    z_quad = z_by_quadrature(pool, R2, [[0.0, 0.0], [1.0, 1.0]], np.ones((2, 2)))
    assert abs(z_quad - z_exact) < 1e-10

    res = amgm_rejection_sample(pool, jax.random.key(2), 60_000, batch_size=BATCH, max_rounds=100)
    assert res.n_accepted >= 60_000 and res.samples.shape == (60_000, 2)
    assert np.isfinite(res.log_normalizer) and res.log_normalizer_se > 0
    assert abs(res.log_normalizer - math.log(z_exact)) < 4 * res.log_normalizer_se
    assert abs(res.acceptance_rate - z_exact) < 4 * math.sqrt(
        z_exact * (1 - z_exact) / res.n_proposed
    )
    # The pool is N((1/2, 1/2), I): each coordinate of the draws against it (KS, p > 1e-4).
    for j in range(2):
        assert st.kstest(res.samples[:, j], st.norm(0.5, 1.0).cdf).pvalue > 1e-4


# ---------------------------------------------------------------------------------------------
# Property: the acceptance rate estimates the quadrature Z
# ---------------------------------------------------------------------------------------------


@hst.composite
def geometric_pools(draw):
    dims = draw(hst.sampled_from([R1, R2]))
    a = draw(mixture_params(spaces=[dims], min_log_sigma=-1.5, max_log_sigma=-0.3))
    b = draw(mixture_params(spaces=[dims], min_log_sigma=-1.5, max_log_sigma=-0.3))
    alpha = draw(hst.floats(0.02, 0.98))
    seed = draw(hst.integers(0, 2**31 - 1))
    return dims, a, b, alpha, seed


@given(case=geometric_pools())
def test_acceptance_rate_matches_quadrature_z(case):
    dims, a, b, alpha, seed = case
    p_llm = mixture(dims, a[1], a[2], a[3], min_kernels=4)
    p_opt = mixture(dims, b[1], b[2], b[3], min_kernels=4)
    pool = geometric(p_llm, p_opt, alpha)
    z = z_by_quadrature(pool, dims, np.concatenate([a[2], b[2]]), np.concatenate([a[3], b[3]]))
    assert -1e-9 < z < 1 + 1e-9  # Hoelder: Z <= 1
    z = min(max(z, 0.0), 1.0)
    rounds = 4
    n_prop = rounds * BATCH
    # n is never reached and min_accepted is 0: exactly `rounds` rounds run, N is fixed.
    res = amgm_rejection_sample(
        pool, jax.random.key(seed), n_prop + 1, batch_size=BATCH, max_rounds=rounds, min_accepted=0
    )
    assert res.n_proposed == n_prop and res.samples.shape[0] == res.n_accepted
    rate = res.n_accepted / n_prop
    assert res.acceptance_rate == rate
    var = n_prop * z * (1 - z)
    if var >= 25:
        # The normal regime: within N_SE binomial standard errors of Z.
        assert abs(rate - z) <= N_SE * math.sqrt(z * (1 - z) / n_prop), (rate, z)
        r = rate
        np.testing.assert_allclose(res.log_normalizer_se, math.sqrt((1 - r) / (r * n_prop)))
    else:
        # Few expected accepts (or Z = 1): the exact binomial test at the same level.
        assert st.binomtest(res.n_accepted, n_prop, z).pvalue >= P_TWO_SIDED, (res.n_accepted, z)
    if res.n_accepted:
        s = res.samples
        assert np.all(np.isfinite(s)) and np.all((s >= BOX.low) & (s <= BOX.high))


# ---------------------------------------------------------------------------------------------
# Goodness of fit of the draws
# ---------------------------------------------------------------------------------------------


def test_amgm_draws_of_a_1d_geometric_pool_ks():
    mu_a, sg_a = np.array([[-3.0], [4.0]]), np.array([[2.0], [1.0]])
    mu_b, sg_b = np.array([[0.0], [5.0], [-8.0]]), np.array([[3.0], [0.8], [1.5]])
    p_llm = mixture(R1, [0.6, 0.4], mu_a, sg_a, min_kernels=4)
    p_opt = mixture(R1, [0.5, 0.3, 0.2], mu_b, sg_b, min_kernels=4)
    pool = geometric(p_llm, p_opt, 0.35)
    mu, sg = np.concatenate([mu_a, mu_b]), np.concatenate([sg_a, sg_b])
    cuts = kernel_cuts(BOX.low, BOX.high, mu, sg, max_piece=0.25)
    _, f_raw = cdf_1d(pool.unnormalized_log_prob, cuts)
    z = f_raw[-1]
    assert 0.05 < z < 1.0
    cdf, f_cuts = cdf_1d(pool.unnormalized_log_prob, cuts, log_z=math.log(z))
    assert abs(f_cuts[-1] - 1.0) < 1e-12
    res = amgm_rejection_sample(pool, jax.random.key(9), 5000, batch_size=BATCH)
    assert res.samples.shape == (5000, 1)
    # Fixed seed; for a fresh seed a correct sampler fails this KS test with probability 1e-4.
    assert st.kstest(res.samples[:, 0], cdf).pvalue > 1e-4


# ---------------------------------------------------------------------------------------------
# P3: N(0, 0.01^2) and N(5, 0.01^2) barely overlap
# ---------------------------------------------------------------------------------------------

P3_SIGMA = 0.01


@pytest.fixture(scope="module")
def p3():
    return gaussian(R1, 0.0, P3_SIGMA), gaussian(R1, 5.0, P3_SIGMA)


def test_p3_rejection_stops_with_an_error_that_reports_the_rate(p3):
    # Z of the geometric pool is exp(-25 / (8 * 0.01^2)) = exp(-31250): nothing is ever accepted.
    pool = geometric(*p3, 0.5)
    start = time.perf_counter()
    with pytest.raises(RejectionError, match=r"acceptance rate 0\b") as info:
        amgm_rejection_sample(pool, jax.random.key(0), 10, batch_size=BATCH)  # default max_rounds
    assert time.perf_counter() - start < 60
    msg = str(info.value)
    assert "accepted 0 of" in msg and "rounds" in msg, msg
    # An explicit round budget is honoured too, and the reported count of proposals follows it.
    with pytest.raises(RejectionError, match=f"of {3 * BATCH} proposals in 3 rounds"):
        amgm_rejection_sample(pool, jax.random.key(1), 10, batch_size=BATCH, max_rounds=3)


def test_p3_product_is_refused_by_the_amgm_sampler(p3):
    # Exponents (1, 1) do not sum to one: AM-GM gives no envelope; refused at once, never run.
    with pytest.raises(ValueError, match="sum to 1"):
        amgm_rejection_sample(product(*p3), jax.random.key(0), 10, batch_size=BATCH)


def test_p3_log_normalizer_of_the_product_closed_form_and_quadrature(p3):
    # Closed form on the real line: int N(x; 0, s^2) N(x; 5, s^2) dx = N(0; 5, 2 s^2).
    closed = st.norm.logpdf(0.0, loc=5.0, scale=math.sqrt(2) * P3_SIGMA)
    assert abs(closed - (-62496.6603419375)) < 1e-12 * 62496.66
    # Quadrature in log space of fusion's unnormalized product (truncation to [-12, 12] changes
    # nothing at this precision): the integrand peaks at 2.5 with scale 0.01 / sqrt(2).
    pool = product(*p3)
    mu = np.array([[0.0], [5.0], [2.5]])
    sg = np.array([[P3_SIGMA], [P3_SIGMA], [P3_SIGMA / math.sqrt(2)]])
    x, w = space_rule(R1, mu, sg)
    log_z = log_integrate(pool.unnormalized_log_prob, x, w)
    assert np.isfinite(log_z)
    assert abs(log_z - closed) < 1e-6
