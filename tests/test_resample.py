"""Importance resampling (``fusion.resample``): Kish ESS (case I1), systematic resampling, goodness
of fit of the draws, the geometric weights ``(p_llm / p_opt)^alpha``, ``log Z``, low-ESS reports,
argument checks and compile counts.

References are scipy's truncated normals, quadrature (helpers of ``test_density.py``), exact
probabilities summed by hand, exact draws of closed-form pools and mpmath, never ``fusion``'s own
resampling. Goodness-of-fit checks use ``gof.py`` at level ``ALPHA`` with fixed seeds.

Resampled draws are only approximately from the target, and they repeat proposals: the variance of
a bin count is about ``p (1 - p) (1 / n + 1 / ESS)``, not the multinomial ``p (1 - p) / n``. The
tests draw ``N ~ 65 n`` proposals, so the extra term (and the ``O(1 / N)`` bias) is a few percent
of the statistic.

To bound compilations, every 1-D density lives on ``[-12, 12]`` with four-kernel buckets and every
1-D run uses ``N1`` proposals and ``N_DRAWS`` draws.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.special
import scipy.stats as st
from gof import ALPHA, binned_pvalue, chi_square_pvalue, energy_pvalue
from hypothesis import assume, given
from hypothesis import strategies as hst
from hypothesis.extra.numpy import arrays
from test_density import cdf_1d, kernel_cuts

from fusion import resample
from fusion.combine import geometric, log_linear_pool
from fusion.density import Uniform, mixture
from fusion.normalize import closed_form
from fusion.resample import (
    MIN_ESS_FRACTION,
    ImportanceResult,
    LowEffectiveSampleSize,
    LowEffectiveSampleSizeError,
    geometric_importance_resample,
    geometric_log_weights,
    importance_resample,
    kish_ess,
    log_importance_weights,
    systematic_resample,
)
from fusion.space import CATEGORICAL, CONTINUOUS, Dim

BOX = Dim(CONTINUOUS, -12.0, 12.0)
R1, R2 = (BOX,), (BOX, BOX)
CAT5 = (Dim(CATEGORICAL, n_choices=5),)
N1, N_DRAWS = 2**17, 2000
N_SE = 4.5  # two-sided 4.5 standard errors: a false failure has probability 6.8e-6 per check


def kernels(dims, weights, mu, sigma, cat_probs=()):
    k = len(weights)
    n_num = sum(d.is_numeric for d in dims)
    mu = np.reshape(np.asarray(mu, float), (k, n_num))
    sigma = np.reshape(np.asarray(sigma, float), (k, n_num))
    return mixture(dims, weights, mu, sigma, cat_probs, min_kernels=4)


def truncnorm_mixture_cdf(weights, mu, sigma, low=BOX.low, high=BOX.high):
    """The CDF of ``sum_k w_k N(mu_k, sigma_k^2)`` truncated to ``[low, high]``, from scipy."""
    w, mu, sigma = (np.asarray(v, dtype=float) for v in (weights, mu, sigma))
    w = w / w.sum()
    a, b = (low - mu) / sigma, (high - mu) / sigma

    def cdf(x):
        x = np.atleast_1d(np.asarray(x, dtype=float))[:, None]
        return st.truncnorm.cdf(x, a, b, loc=mu, scale=sigma) @ w

    return cdf


def pool_cdf(pool, mu, sigma):
    """The CDF of a 1-D pool, normalized by quadrature on cuts around every kernel."""
    cuts = kernel_cuts(BOX.low, BOX.high, mu, sigma, max_piece=0.25)
    _, f = cdf_1d(pool.unnormalized_log_prob, cuts)
    cdf, f_cuts = cdf_1d(pool.unnormalized_log_prob, cuts, log_z=math.log(f[-1]))
    assert abs(f_cuts[-1] - 1.0) < 1e-12
    return cdf, math.log(f[-1])


def assert_consistent(res: ImportanceResult, n: int, n_proposals: int, d: int) -> None:
    assert res.samples.shape == (n, d) and res.proposals.shape == (n_proposals, d)
    assert res.n_proposals == n_proposals and res.log_weights.shape == (n_proposals,)
    np.testing.assert_array_equal(res.samples, res.proposals[res.indices])
    assert abs(scipy.special.logsumexp(res.log_weights)) < 1e-12
    assert res.ess == pytest.approx(kish_ess(res.log_weights), rel=1e-12)
    assert res.ess_fraction == pytest.approx(res.ess / n_proposals, rel=1e-15)
    assert 1.0 - 1e-9 <= res.ess <= n_proposals * (1 + 1e-12)
    assert np.all(np.isfinite(res.samples))
    assert np.isfinite(res.log_normalizer) and 0 <= res.log_normalizer_se < math.inf


# ---------------------------------------------------------------------------------------------
# Kish's effective sample size (case I1)
# ---------------------------------------------------------------------------------------------


def test_i1_kish_ess_of_1000_equal_log_weights_and_of_all_zero_weights():
    for value in (0.0, -3.7, 250.0, 1e300, -1e300):
        assert abs(kish_ess(np.full(1000, value)) - 1000.0) <= 1e-9, value
    with pytest.raises(ValueError, match="all importance weights are zero"):
        kish_ess(np.full(1000, -np.inf))
    # Through the sampler: a proposal equal to the target gives 1000 equal weights.
    u = Uniform(R1)
    res = importance_resample(u, u, jax.random.key(0), 1000, n_proposals=1000)
    assert abs(res.ess - 1000.0) <= 1e-9 and res.ess_fraction == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(res.log_weights, -math.log(1000), rtol=0, atol=1e-12)
    assert abs(res.log_normalizer) < 1e-12  # Z = 1
    np.testing.assert_array_equal(np.sort(res.indices), np.arange(1000))  # each proposal once


def test_kish_ess_small_cases_and_bad_input():
    assert kish_ess([0.0, 0.0, -np.inf]) == pytest.approx(2.0, rel=1e-15)
    assert kish_ess([math.log(2.0), 0.0]) == pytest.approx(9.0 / 5.0, rel=1e-15)  # (2+1)^2/(4+1)
    assert kish_ess([5.0]) == 1.0
    for bad in ([0.0, np.nan], [0.0, np.inf]):
        with pytest.raises(ValueError, match="NaN or \\+inf"):
            kish_ess(bad)
    for bad in ([], [[0.0, 1.0]]):
        with pytest.raises(ValueError, match="non-empty 1-D"):
            kish_ess(bad)
    # Under jit nothing can be checked: all-zero weights give ESS 0, not NaN.
    assert float(jax.jit(kish_ess)(jnp.full(3, -jnp.inf))) == 0.0


def mpmath_ess(log_w: np.ndarray) -> float:
    """Kish's ESS of the exact values of the floats ``log_w``, at 50 digits."""
    finite = [mpmath.mpf(float(v)) for v in log_w if np.isfinite(v)]
    with mpmath.workdps(50):
        top = max(finite)
        w = [mpmath.exp(v - top) for v in finite]
        return float(mpmath.fsum(w) ** 2 / mpmath.fsum(v * v for v in w))


LOG_WEIGHT = hst.one_of(hst.floats(-30.0, 30.0), hst.just(-np.inf))
SHIFT = hst.one_of(
    hst.floats(-1e300, 1e300),
    hst.sampled_from([1e300, -1e300, 1.7e308 / 2, 1e200, 2.0**40, -5.5, 1e-300, 0.0]),
)


@given(
    log_w=arrays(float, hst.sampled_from([1, 50]), elements=LOG_WEIGHT),
    shift=SHIFT,
)
def test_kish_ess_is_invariant_to_a_shift_of_the_log_weights(log_w, shift):
    assume(np.isfinite(log_w).any())
    n_finite = int(np.isfinite(log_w).sum())
    ess = kish_ess(log_w)
    assert 1.0 - 1e-12 <= ess <= n_finite * (1 + 1e-12)
    assert ess == pytest.approx(mpmath_ess(log_w), rel=1e-12)
    # The shifted floats are `shift` plus the offsets `shifted - shift` (exact by Sterbenz where
    # the shift dominates; within an ulp of the true offsets otherwise): same ESS, no overflow.
    shifted = log_w + shift
    assert np.array_equal(np.isfinite(shifted), np.isfinite(log_w))
    ess_shifted = kish_ess(shifted)
    assert ess_shifted == pytest.approx(kish_ess(shifted - shift), rel=1e-9)
    assert ess_shifted == pytest.approx(mpmath_ess(shifted), rel=1e-12)


# ---------------------------------------------------------------------------------------------
# Systematic resampling
# ---------------------------------------------------------------------------------------------


@given(
    log_w=arrays(float, 32, elements=hst.one_of(hst.floats(-20.0, 5.0), LOG_WEIGHT)),
    n=hst.sampled_from([7, 100]),
    seed=hst.integers(0, 2**31 - 1),
)
def test_systematic_counts_are_floor_or_ceil_of_n_w(log_w, n, seed):
    # One length (one compilation per n); -inf entries make the support any size from 1 to 32.
    assume(np.isfinite(log_w).any())
    size = log_w.size
    idx = np.asarray(systematic_resample(jax.random.key(seed), log_w, n))
    assert idx.shape == (n,) and np.all((idx >= 0) & (idx < size))
    w = np.exp(log_w - scipy.special.logsumexp(log_w))
    counts = np.bincount(idx, minlength=size)
    assert np.all(counts >= np.floor(n * w - 1e-9)), (counts, n * w)
    assert np.all(counts <= np.ceil(n * w + 1e-9)), (counts, n * w)
    assert counts[w == 0].sum() == 0


def test_systematic_resampling_is_unbiased_and_jittable():
    w = np.array([0.05, 0.3, 0.0, 0.25, 0.4])
    with np.errstate(divide="ignore"):
        log_w = np.log(w) + 123.0  # any shift
    n, m = 7, 20_000
    keys = jax.random.split(jax.random.key(5), m)
    idx = np.asarray(jax.vmap(lambda k: systematic_resample(k, log_w, n))(keys))
    counts = (idx[:, :, None] == np.arange(w.size)).sum(axis=1)
    # Each count is floor or ceil of n w_i (a Bernoulli in its fractional part, variance <= 1/4).
    assert np.all(counts >= np.floor(n * w)) and np.all(counts <= np.ceil(n * w))
    np.testing.assert_array_less(np.abs(counts.mean(0) - n * w), N_SE * 0.5 / math.sqrt(m) + 1e-12)
    # Inside jit, with traced log-weights and a static n: the same indices.
    jitted = jax.jit(systematic_resample, static_argnums=2)
    np.testing.assert_array_equal(jitted(keys[0], jnp.asarray(log_w), n), idx[0])


def test_systematic_resample_checks_its_arguments():
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="all importance weights are zero"):
        systematic_resample(key, [-np.inf, -np.inf], 3)
    with pytest.raises(ValueError, match="NaN or \\+inf"):
        systematic_resample(key, [0.0, np.nan], 3)
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        systematic_resample(key, [0.0], 0)
    with pytest.raises(ValueError, match="key must be a jax.random key"):
        systematic_resample(0, [0.0], 1)


# ---------------------------------------------------------------------------------------------
# Goodness of fit: any target, any proposal
# ---------------------------------------------------------------------------------------------

TARGET_1D = dict(weights=[0.2, 0.5, 0.3], mu=[-6.0, 0.5, 7.0], sigma=[1.0, 0.4, 2.5])


def test_draws_of_a_truncated_mixture_from_a_broad_proposal_binned_chi_square():
    target = kernels(R1, TARGET_1D["weights"], TARGET_1D["mu"], TARGET_1D["sigma"])
    proposal = kernels(R1, [1.0], [0.0], [6.0])
    res = importance_resample(target, proposal, jax.random.key(1), N_DRAWS, n_proposals=N1)
    assert_consistent(res, N_DRAWS, N1, 1)
    assert 0.05 < res.ess_fraction < 0.9
    assert binned_pvalue(res.samples[:, 0], truncnorm_mixture_cdf(**TARGET_1D), 20) > ALPHA
    # The target is normalized: log Z = 0 within the stated standard error.
    assert abs(res.log_normalizer) < N_SE * res.log_normalizer_se


def test_bimodal_target_mode_fractions_match_the_weights():
    # The proposal puts 1/2 on each mode; the target 0.3 and 0.7: the weights must move the mass.
    target = kernels(R1, [0.3, 0.7], [-5.0, 5.0], [0.5, 0.5])
    proposal = kernels(R1, [0.5, 0.5], [-5.0, 5.0], [0.8, 0.8])
    res = importance_resample(target, proposal, jax.random.key(2), N_DRAWS, n_proposals=N1)
    assert_consistent(res, N_DRAWS, N1, 1)
    left = float(np.mean(res.samples[:, 0] < 0.0))
    p = 0.3  # the kernels hold all but 1e-23 of their mass on their own side of 0
    se = math.sqrt(p * (1 - p) * (1 / N_DRAWS + 1 / res.ess))
    assert abs(left - p) < N_SE * se, (left, p, se)
    # The proposals themselves split about evenly: the agreement is the weights' doing.
    assert abs(np.mean(res.proposals[:, 0] < 0.0) - 0.5) < N_SE * math.sqrt(0.25 / N1)


def test_categorical_pool_from_the_default_amgm_proposal_chi_square():
    # An unnormalized target: p^0.6 q^0.4 of two categorical mixtures, probabilities by hand.
    # proposal=None: the linear pool 0.6 p + 0.4 q, whose weights are <= 1 by weighted AM-GM.
    tables_p = [np.array([[0.5, 0.2, 0.1, 0.1, 0.1], [0.05, 0.05, 0.1, 0.3, 0.5]])]
    tables_q = [np.array([[0.1, 0.6, 0.1, 0.1, 0.1], [0.3, 0.1, 0.2, 0.2, 0.2]])]
    empty = np.zeros((2, 0))
    p = mixture(CAT5, [0.7, 0.3], empty, empty, tables_p, min_kernels=4)
    q = mixture(CAT5, [0.4, 0.6], empty, empty, tables_q, min_kernels=4)
    target = log_linear_pool([p, q], [0.6, 0.4])
    p_exact = np.array([0.7, 0.3]) @ tables_p[0]
    q_exact = np.array([0.4, 0.6]) @ tables_q[0]
    unnormalized = p_exact**0.6 * q_exact**0.4
    probs = unnormalized / unnormalized.sum()

    res = importance_resample(target, None, jax.random.key(3), 3000, n_proposals=N1)
    assert_consistent(res, 3000, N1, 1)
    assert np.max(res.log_weights + math.log(N1) + res.log_normalizer) <= 1e-12  # w <= 1
    assert set(np.unique(res.samples)) <= set(range(5))
    assert chi_square_pvalue(res.samples[:, 0], probs) > ALPHA
    # log Z of the pool (counting measure): log sum_c p(c)^0.6 q(c)^0.4.
    log_z = math.log(unnormalized.sum())
    assert abs(res.log_normalizer - log_z) < N_SE * res.log_normalizer_se


# ---------------------------------------------------------------------------------------------
# The geometric weights (p_llm / p_opt)^alpha
# ---------------------------------------------------------------------------------------------

P_LLM_1D = dict(weights=[0.6, 0.4], mu=[-3.0, 4.0], sigma=[2.0, 1.0])
P_OPT_1D = dict(weights=[0.5, 0.3, 0.2], mu=[0.0, 5.0, -8.0], sigma=[3.0, 0.8, 1.5])


@pytest.fixture(scope="module")
def llm_opt_1d():
    return kernels(R1, **P_LLM_1D), kernels(R1, **P_OPT_1D)


def test_seed_method_5_weights_alpha_1_give_p_llm_itself(llm_opt_1d):
    p_llm, p_opt = llm_opt_1d
    res = geometric_importance_resample(
        p_llm, p_opt, 1.0, jax.random.key(6), N_DRAWS, n_proposals=N1
    )
    assert_consistent(res, N_DRAWS, N1, 1)
    assert binned_pvalue(res.samples[:, 0], truncnorm_mixture_cdf(**P_LLM_1D), 20) > ALPHA
    assert abs(res.log_normalizer) < N_SE * res.log_normalizer_se  # Z of p_llm^1 p_opt^0 is 1
    # Not a combination: the draws are far from p_opt's.
    assert binned_pvalue(res.samples[:, 0], truncnorm_mixture_cdf(**P_OPT_1D), 20) < 1e-12


def test_alpha_one_half_draws_follow_the_geometric_pool(llm_opt_1d):
    p_llm, p_opt = llm_opt_1d
    res = geometric_importance_resample(
        p_llm, p_opt, 0.5, jax.random.key(7), N_DRAWS, n_proposals=N1
    )
    assert_consistent(res, N_DRAWS, N1, 1)
    pool = geometric(p_llm, p_opt, 0.5)
    cdf, log_z = pool_cdf(
        pool, P_LLM_1D["mu"] + P_OPT_1D["mu"], P_LLM_1D["sigma"] + P_OPT_1D["sigma"]
    )
    assert binned_pvalue(res.samples[:, 0], cdf, 20) > ALPHA
    assert abs(res.log_normalizer - log_z) < N_SE * res.log_normalizer_se
    # The weights are alpha (log p_llm - log p_opt) exactly, and match the general form.
    x = res.proposals[:4096]
    log_w = np.asarray(geometric_log_weights(p_llm, p_opt, 0.5, x))
    expected = 0.5 * (np.asarray(p_llm.log_prob(x)) - np.asarray(p_opt.log_prob(x)))
    np.testing.assert_allclose(log_w, expected, rtol=1e-14, atol=1e-14)
    general = np.asarray(log_importance_weights(pool, p_opt, x))
    np.testing.assert_allclose(general, log_w, rtol=1e-12, atol=1e-12)
    # The result's weights are these, normalized: they differ by one constant.
    assert np.ptp(res.log_weights[:4096] - log_w) < 1e-10


def test_alpha_zero_gives_equal_weights_and_p_opt_draws(llm_opt_1d):
    p_llm, p_opt = llm_opt_1d
    res = geometric_importance_resample(
        p_llm, p_opt, 0.0, jax.random.key(8), N_DRAWS, n_proposals=N1
    )
    assert res.ess == pytest.approx(N1, rel=1e-12) and abs(res.log_normalizer) < 1e-12
    assert binned_pvalue(res.samples[:, 0], truncnorm_mixture_cdf(**P_OPT_1D), 20) > ALPHA


def test_alpha_one_half_in_2d_against_exact_draws_of_the_closed_form_pool():
    p_llm = kernels(R2, [1.0], [1.0, -1.0], [0.7, 1.2])
    p_opt = kernels(R2, [1.0], [-1.0, 0.5], [2.0, 2.5])
    pool = geometric(p_llm, p_opt, 0.5)
    exact = closed_form(pool)
    n = 500
    res = geometric_importance_resample(p_llm, p_opt, 0.5, jax.random.key(9), n, n_proposals=2**15)
    assert_consistent(res, n, 2**15, 2)
    y = np.asarray(exact.density.sample(jax.random.key(10), n))  # exact draws of the pool
    assert energy_pvalue(res.samples, y) > ALPHA
    assert abs(res.log_normalizer - exact.log_z) < N_SE * res.log_normalizer_se
    # The same draws do not pass for p_llm: the test can tell the pool from its factors.
    y_llm = np.asarray(p_llm.sample(jax.random.key(11), 2**15))[:n]
    assert energy_pvalue(res.samples, y_llm, n_permutations=1999) < ALPHA


# ---------------------------------------------------------------------------------------------
# Low effective sample size, zero weights, NaN
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mismatched():
    """A narrow target 32 proposal scales away from the proposal: ESS about 1."""
    return kernels(R1, [1.0], [8.0], [0.05]), kernels(R1, [1.0], [-8.0], [0.5])


def test_badly_matched_proposal_warns(mismatched):
    target, proposal = mismatched
    with pytest.warns(LowEffectiveSampleSize, match=r"effective sample size .*\(ESS fraction"):
        res = importance_resample(target, proposal, jax.random.key(12), N_DRAWS, n_proposals=N1)
    assert res.ess_fraction < MIN_ESS_FRACTION and res.ess < 10
    assert np.all(np.isfinite(res.samples)) and np.isfinite(res.log_normalizer)
    # A well-matched run does not warn.
    with warnings.catch_warnings():
        warnings.simplefilter("error", LowEffectiveSampleSize)
        importance_resample(proposal, proposal, jax.random.key(12), N_DRAWS, n_proposals=N1)


def test_badly_matched_proposal_raises_with_on_low_ess_error(mismatched):
    target, proposal = mismatched
    with pytest.raises(
        LowEffectiveSampleSizeError, match=r"ESS fraction [0-9.e+-]+\) is below"
    ) as e:
        importance_resample(
            target, proposal, jax.random.key(12), N_DRAWS, n_proposals=N1, on_low_ess="error"
        )
    assert f"of {N1} proposals" in str(e.value) and "min_ess_fraction=0.01" in str(e.value)
    # The threshold is the caller's: at 1e-9 the same run passes.
    res = importance_resample(
        target, proposal, jax.random.key(12), N_DRAWS, n_proposals=N1, min_ess_fraction=1e-9
    )
    assert res.ess_fraction < MIN_ESS_FRACTION


def test_all_zero_weights_raise_whatever_on_low_ess():
    # p and q have disjoint supports: their geometric pool is zero wherever 0.6 p + 0.4 q draws.
    empty = np.zeros((1, 0))
    p = mixture(CAT5, [1.0], empty, empty, [np.array([[1.0, 0, 0, 0, 0]])], min_kernels=4)
    q = mixture(CAT5, [1.0], empty, empty, [np.array([[0, 0.5, 0.5, 0, 0]])], min_kernels=4)
    target = log_linear_pool([p, q], [0.6, 0.4])
    for on_low_ess in ("warn", "error"):
        with pytest.raises(LowEffectiveSampleSizeError, match="all importance weights are zero"):
            importance_resample(
                target, None, jax.random.key(0), 3000, n_proposals=N1, on_low_ess=on_low_ess
            )


@dataclasses.dataclass(frozen=True)
class HalfBlind:
    """Draws of ``inner``, but ``log_prob = -inf`` above the middle: an inconsistent proposal."""

    inner: Uniform

    @property
    def dims(self):
        return self.inner.dims

    def log_prob(self, x):
        return jnp.where(x[:, 0] > 0.0, -jnp.inf, self.inner.log_prob(x))

    def sample(self, key, n):
        return self.inner.sample(key, n)


jax.tree_util.register_dataclass(HalfBlind, data_fields=["inner"], meta_fields=[])


def test_proposal_with_zero_density_at_its_own_draws_is_an_error_not_nan():
    u = Uniform(R1)
    with pytest.raises(ValueError, match=r"NaN or \+inf"):
        importance_resample(u, HalfBlind(u), jax.random.key(0), 10)


# ---------------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------------


def test_arguments_are_checked_before_anything_runs(mismatched):
    t, q = mismatched
    key = jax.random.key(0)
    cases = [
        (dict(n=0), "n must be an int >= 1"),
        (dict(n=2.5), r"n must be an int >= 1 and <= 2147483647, got 2.5"),
        (dict(n=10, n_proposals=5), "n_proposals must be an int >= 10 and <= 2147483647, got 5"),
        (dict(key=1234), "key must be a jax.random key"),
        (dict(min_ess_fraction=0.0), r"min_ess_fraction must be a number in \(0, 1\], got 0.0"),
        (dict(min_ess_fraction=1.5), r"min_ess_fraction must be a number in \(0, 1\]"),
        (dict(on_low_ess="ignore"), "on_low_ess must be one of"),
        (dict(target=object()), "target must be a fusion density"),
        (dict(proposal=geometric(t, q, 0.5)), "proposal must be a fusion density"),
        (dict(proposal=kernels(R2, [1.0], [0, 0], [1, 1])), "proposal lives on"),
    ]
    for change, message in cases:
        args = dict(target=t, proposal=q, key=key, n=10) | change
        with pytest.raises(ValueError, match=message):
            importance_resample(
                args.pop("target"), args.pop("proposal"), args.pop("key"), args.pop("n"), **args
            )
    for alpha in (-0.1, 1.5, float("nan"), "0.5", None):
        with pytest.raises(ValueError, match="alpha must be a number in"):
            geometric_importance_resample(t, q, alpha, key, 10)
    with pytest.raises(ValueError, match="p_llm lives on"):
        geometric_importance_resample(kernels(R2, [1.0], [0, 0], [1, 1]), q, 0.5, key, 10)
    with pytest.raises(ValueError, match="p_opt must be a fusion density"):
        geometric_importance_resample(t, geometric(t, q, 0.5), 0.5, key, 10)
    with pytest.raises(ValueError, match="proposal=None needs a LogLinearPool"):
        importance_resample(t, None, key, 10)
    with pytest.raises(ValueError, match="x contains NaN"):
        log_importance_weights(t, q, [[np.nan]])
    with pytest.raises(ValueError, match=r"x must have shape \(n, 1\)"):
        geometric_log_weights(t, q, 0.5, np.zeros((3, 2)))
    u = Uniform(R1)  # cheap to compile
    assert importance_resample(u, u, key, 10).n_proposals == 1024  # N = max(4 n, 1024)
    assert resample._check_options(300, None, key, 0.5, "warn") == (300, 1200)


# ---------------------------------------------------------------------------------------------
# Compilation
# ---------------------------------------------------------------------------------------------


def test_importance_resample_compiles_its_core_once_per_shape():
    core = resample._importance_core
    before = core._cache_size()
    a = importance_resample(
        kernels(R1, [0.3, 0.7], [-1.0, 2.0], [1.0, 0.5]),
        kernels(R1, [1.0], [0.0], [5.0]),
        jax.random.key(0),
        N_DRAWS,
        n_proposals=N1,
    )
    middle = core._cache_size()
    b = importance_resample(
        kernels(R1, [0.5, 0.2, 0.3], [3.0, -4.0, 0.0], [2.0, 0.1, 1.0]),
        kernels(R1, [0.6, 0.4], [1.0, -1.0], [4.0, 3.0]),
        jax.random.key(1),
        N_DRAWS,
        n_proposals=N1,
    )
    assert middle - before <= 1, f"compiled {middle - before} times"
    assert core._cache_size() == middle, "new density parameters recompiled the core"
    assert not np.array_equal(a.samples, b.samples)
    # Geometric runs with a new alpha reuse their core as well.
    geo = resample._geometric_core
    p, q = kernels(R1, [1.0], [0.0], [1.0]), kernels(R1, [1.0], [0.0], [3.0])
    geometric_importance_resample(p, q, 0.2, jax.random.key(0), N_DRAWS, n_proposals=N1)
    size = geo._cache_size()
    geometric_importance_resample(p, q, 0.9, jax.random.key(0), N_DRAWS, n_proposals=N1)
    assert geo._cache_size() == size
