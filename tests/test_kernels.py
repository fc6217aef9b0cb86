"""The one-dimensional kernels against scipy and mpmath, including cases K1-K5."""

import jax
import jax.numpy as jnp
import mpmath
import numpy as np
import pytest
import scipy.stats as st
from hypothesis import example, given
from hypothesis import strategies as hst

from fusion import kernels

mpmath.mp.dps = 50


def mp_log_gauss_mass(a, b):
    """log(Phi(b) - Phi(a)), taken on the side of the mode where neither CDF is near one."""
    a, b = mpmath.mpf(a), mpmath.mpf(b)
    if a > 0:
        a, b = -b, -a
    return mpmath.log(mpmath.ncdf(b) - mpmath.ncdf(a))


def mp_truncnorm_logpdf(x, mu, sigma, low, high):
    """The reference: log of the truncated normal density, at 50 digits."""
    x, mu, sigma, low, high = (mpmath.mpf(v) for v in (x, mu, sigma, low, high))
    z = (x - mu) / sigma
    log_mass = mp_log_gauss_mass((low - mu) / sigma, (high - mu) / sigma)
    return float(
        -(z**2) / 2 - mpmath.log(sigma) - mpmath.log(mpmath.sqrt(2 * mpmath.pi)) - log_mass
    )


@pytest.mark.parametrize(
    ("case", "args", "expected", "rtol"),
    [
        ("K1", (0.5, 0.5, 0.2, 0.0, 1.0), 0.702996474293332, 1e-13),
        ("K2", (-15.0, 1.35, 0.01, -20.0, -1.0), -1308989.93522619, 1e-12),
        ("K3", (-39.9, 0.0, 1.0, -40.0, -39.0), -31.8407819688271, 1e-12),
    ],
)
def test_truncnorm_logpdf_cases(case, args, expected, rtol):
    got = float(kernels.truncnorm_logpdf(*args))
    assert np.isfinite(got), case
    np.testing.assert_allclose(got, expected, rtol=rtol, err_msg=case)
    np.testing.assert_allclose(got, mp_truncnorm_logpdf(*args), rtol=rtol, err_msg=case)


def test_k1_mass_is_one():
    nodes, w = np.polynomial.legendre.leggauss(64)
    x = 0.5 * (nodes + 1)
    mass = np.sum(0.5 * w * np.exp(kernels.truncnorm_logpdf(x, 0.5, 0.2, 0.0, 1.0)))
    assert abs(mass - 1) < 1e-10


@given(
    mu=hst.floats(-50, 50),
    log_sigma=hst.floats(-4, 2),
    a=hst.floats(-45, 45),
    width=hst.floats(1e-3, 30),
    u=hst.floats(0, 1),
)
def test_truncnorm_logpdf_matches_mpmath(mu, log_sigma, a, width, u):
    sigma = 10.0**log_sigma
    low = mu + a * sigma
    high = low + width * sigma
    x = low + u * (high - low)
    got = float(kernels.truncnorm_logpdf(x, mu, sigma, low, high))
    ref = mp_truncnorm_logpdf(x, mu, sigma, low, high)
    assert np.isfinite(got)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-9)


@given(a=hst.floats(-60, 60), width=hst.floats(1e-6, 60))
def test_log_gauss_mass_matches_mpmath(a, width):
    b = a + width
    got = float(kernels.log_gauss_mass(a, b))
    np.testing.assert_allclose(got, float(mp_log_gauss_mass(a, b)), rtol=1e-10, atol=1e-12)


@given(
    start=hst.floats(-60, 60),
    widths=hst.lists(hst.just(0.0) | hst.floats(1e-6, 30.0), min_size=1, max_size=8),
)
@example(start=-0.5, widths=[1e-6, 0.5, 0.5, 1e-6])  # cells at, across and beside the mode
def test_cell_masses_from_shared_edges_match_mpmath(start, widths):
    # Near the mode a cell of width w keeps about eps / w relative precision, as log_gauss_mass
    # does, so widths start at 1e-6 (or are exactly 0, an empty cell).
    z = start + np.concatenate([[0.0], np.cumsum(widths)])
    got = np.asarray(kernels.log_gauss_cell_masses(jnp.asarray(z)))
    for a, b, value in zip(z[:-1], z[1:], got, strict=True):
        if a == b:
            assert value == -np.inf
            continue
        np.testing.assert_allclose(value, float(mp_log_gauss_mass(a, b)), rtol=1e-10, atol=1e-12)


def test_outside_support_is_minus_inf_with_zero_gradient():
    f = lambda mu, sigma: kernels.truncnorm_logpdf(1.5, mu, sigma, 0.0, 1.0)  # noqa: E731
    assert float(f(0.5, 0.2)) == -np.inf
    g = jax.grad(f, argnums=(0, 1))(0.5, 0.2)
    assert all(float(v) == 0.0 for v in g)


def test_logsumexp_all_minus_inf():
    a = jnp.full((3, 4), -jnp.inf)
    out = kernels.logsumexp(a)
    assert np.all(np.asarray(out) == -np.inf)
    g = jax.grad(lambda a: kernels.logsumexp(a).sum())(a)
    assert np.all(np.asarray(g) == 0.0)


@pytest.mark.parametrize(
    ("case", "mu", "sigma", "low", "high", "mean"),
    [
        ("K4", 0.5382424, 0.05, 0.80921564, 0.86921564, 0.8178644),
        ("K5", 0.0, 1.0, 38.0, 1e300, 38.0262795),
        ("K5", 0.0, 1.0, 38.0, np.inf, 38.0262795),
    ],
)
def test_tail_sampling_cases(case, mu, sigma, low, high, mean):
    n = 200_000
    s = np.asarray(kernels.sample_truncnorm(jax.random.PRNGKey(7), mu, sigma, low, high, (n,)))
    assert np.all(np.isfinite(s)) and np.all(s >= low) and np.all(s <= high), case
    ref = st.truncnorm((low - mu) / sigma, (high - mu) / sigma, loc=mu, scale=sigma)
    # scipy squares the 1e300 bound of K5 on the way (an overflow warning, with a right answer).
    with np.errstate(over="ignore"):
        sd = ref.std()
    # Five standard errors: a false failure has probability below 1e-6 at a fixed seed.
    assert abs(s.mean() - mean) < 5 * sd / np.sqrt(n), case
    assert st.kstest(s, ref.cdf).pvalue > 1e-4, case


# Normal draws outside [a, b] are redrawn by inversion: all of them at once when more than 1024
# of the 50k fall outside (the first four), only those gathered otherwise (the next two: about 23
# and 67 of them), none for the last.
@pytest.mark.parametrize(
    ("a", "b"),
    [
        (-1.0, 2.0),
        (-40.0, -39.0),
        (3.0, 8.0),
        (-np.inf, 0.3),
        (-3.5, 3.5),
        (-3.0, np.inf),
        (-12.0, 12.0),
    ],
)
def test_truncnorm_sampler_goodness_of_fit(a, b):
    s = np.asarray(kernels.sample_truncnorm(jax.random.PRNGKey(3), 0.0, 1.0, a, b, (50_000,)))
    assert st.kstest(s, st.truncnorm(a, b).cdf).pvalue > 1e-4


def test_standard_normal_draws_are_an_exact_inversion():
    """``Phi^-1`` at the midpoints of the 52-bit uniform's cells: scipy's N(0, 1) by KS, the
    extremes symmetric at scipy's ``Phi^-1(2^-53)``, and every draw equal to scipy's inversion
    of the same uniform to 1e-14 (relative, or absolute near 0)."""
    key = jax.random.key(4)
    z = np.asarray(kernels.standard_normal(key, (200_000,)))
    assert st.kstest(z, "norm").pvalue > 1e-3
    u = np.asarray(jax.random.uniform(key, (200_000,))) + 2.0**-53
    assert np.all(np.abs(z - st.norm.ppf(u)) <= 1e-14 * np.maximum(1.0, np.abs(z)))
    ends = np.asarray(kernels.ndtri(np.array([2.0**-53, 1 - 2.0**-53])))
    assert np.allclose(ends, st.norm.ppf([2.0**-53, 1 - 2.0**-53]), rtol=1e-14, atol=0)
    assert ends[0] == -ends[1]


@pytest.mark.parametrize("sigma", [1e3, 1e12, 1e16, 1e300])
def test_an_interval_narrow_against_sigma_is_drawn_in_its_own_coordinate(sigma):
    """Standardized, [0, 1] shrinks to [0, 1/sigma] and mu + sigma z loses the interval's
    resolution; drawn from its end, the law is the uniform one tilted by exp(-x^2 / 2 sigma^2)."""
    x = np.asarray(kernels.sample_truncnorm(jax.random.key(1), 0.3, sigma, 0.0, 1.0, (20_000,)))
    ref = st.truncnorm(-0.3 / sigma, 0.7 / sigma, loc=0.3, scale=sigma) if sigma < 1e6 else None
    cdf = ref.cdf if ref is not None else "uniform"  # scipy's own ends round together past 1e6
    assert st.kstest(x, cdf).pvalue > 1e-3 and np.unique(x).size == x.size


@pytest.mark.parametrize("mu", [-1e7, -1e9, -1e16])
def test_an_interval_far_out_in_a_tail_is_exponential_from_its_near_end(mu):
    """N(mu, 1) on [0, 1] with mu far below: x ~ Exp(-mu) to first order (the quadratic term
    changes the law by about 1/mu^2)."""
    x = np.asarray(kernels.sample_truncnorm(jax.random.key(2), mu, 1.0, 0.0, 1.0, (20_000,)))
    assert np.all(x >= 0) and st.kstest(-mu * x, "expon").pvalue > 1e-3


def test_categorical_draws_by_inversion_match_their_probabilities_and_skip_zeros():
    probs = np.array([0.0, 0.2, 0.0, 0.5, 0.3, 0.0])
    with np.errstate(divide="ignore"):
        log_p = jnp.log(probs)
    draws = np.asarray(kernels.sample_categorical(jax.random.key(4), log_p + 700.0, (40_000,)))
    counts = np.bincount(draws, minlength=probs.size)
    assert np.all(counts[probs == 0] == 0)
    live = probs > 0
    assert st.chisquare(counts[live], 40_000 * probs[live]).pvalue > 1e-3
    # One table row per draw, as a mixture picks a category given its kernel.
    rows = jnp.log(jnp.array([[0.9, 0.1], [0.1, 0.9]]))[np.arange(20_000) % 2]
    per_row = np.asarray(kernels.sample_categorical(jax.random.key(5), rows, (20_000,)))
    ones = np.bincount(np.arange(20_000) % 2, weights=per_row)
    assert st.binomtest(int(ones[0]), 10_000, 0.1).pvalue > 1e-3
    assert st.binomtest(int(ones[1]), 10_000, 0.9).pvalue > 1e-3


def test_log_ndtr_has_no_hole_where_jax_erfcx_returns_zero():
    """jax 0.10.2's erfcx is 0 on [26.5433, 26.6417], i.e. log Phi would be -inf for z in
    [-37.677, -37.538]; the asymptotic series takes over from 20 (scipy as reference)."""
    z = -np.concatenate([np.linspace(20.0, 45.0, 50_001), np.geomspace(45.0, 1e5, 500)])
    np.testing.assert_allclose(kernels.log_ndtr(z), st.norm.logcdf(z), rtol=2e-15)
    draws = np.asarray(
        kernels.sample_truncnorm(jax.random.key(1), 0.0, 1.0, 37.5844, 37.6652, (64,))
    )
    assert np.all((draws >= 37.5844) & (draws <= 37.6652))


def test_ndtri_exp_inverts_log_ndtr():
    log_p = jnp.array([-1e-3, -0.7, -3.0, -29.0, -31.0, -500.0, -1e5])
    x = kernels.ndtri_exp(log_p)
    np.testing.assert_allclose(jax.scipy.special.log_ndtr(x), log_p, rtol=1e-12)


@given(x=hst.one_of(hst.floats(-1e6, 30), hst.floats(5, 38)))
@example(x=0.25)  # Phi(-x) = 0.40, where XLA's log1p loses two digits
@example(x=0.5)
def test_log_ndtr_matches_mpmath(x):
    # Above zero log Phi(x) = log1p(-Phi(-x)) keeps the digits that log(1 - tiny) would lose.
    ref = float(mpmath.log1p(-mpmath.ncdf(-x)) if x > 0 else mpmath.log(mpmath.ncdf(x)))
    # In the upper tail Phi(-x) carries exp(-x^2/2), whose argument is rounded to x^2/2 * eps.
    rtol = max(1e-14, 4e-16 * x * x) if x > 0 else 1e-14
    np.testing.assert_allclose(float(kernels.log_ndtr(x)), ref, rtol=rtol, atol=1e-300)


def test_log_ndtr_at_the_infinities():
    out = np.asarray(kernels.log_ndtr(np.array([-np.inf, np.inf, -1e200, 1e200])))
    assert out[0] == -np.inf and out[1] == 0.0 and out[3] == 0.0
    assert np.isfinite(out[2]) and out[2] < -1e299
