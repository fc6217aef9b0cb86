"""Maximum entropy: known exponential families recovered, the duality theorems as hypothesis
properties, infeasible targets (case M1 and its kind), the conflict policies, and compile counts.

Reference values come from mpmath (the truncated exponential's mean), scipy (the truncated normal's
moments) and rules of the test suite's own (``tests/test_density.py``) or exact sums over grids.
"""

import math

import jax
import mpmath
import numpy as np
import pytest
import scipy.linalg
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as hst
from test_density import gl_pieces, kernel_cuts, tensor_rule

from fusion import features as F
from fusion import maxent as M
from fusion.density import Uniform, mixture
from fusion.normalize import log_normalizer
from fusion.space import CATEGORICAL, CONTINUOUS, DISCRETE, LOG_DISCRETE, Dim

U01 = (Dim(CONTINUOUS, 0.0, 1.0),)
CONT = Dim(CONTINUOUS, -1.0, 2.0)
INT = Dim(DISCRETE, 1.0, 9.0, 1.0)
STEPF = Dim(DISCRETE, -1.0, 1.0, 0.25)
LOGINT = Dim(LOG_DISCRETE, 1.0, 16.0, 1.0)
CAT4 = Dim(CATEGORICAL, n_choices=4)


def space_features(dims) -> F.Features:
    """Moments up to 2 of each numeric coordinate (3 on a lone one), the categories but the last
    of a categorical (all of them are linearly dependent), and the first cross moment."""
    parts = []
    numeric = [j for j, d in enumerate(dims) if d.kind != CATEGORICAL]
    for j, d in enumerate(dims):
        if d.kind == CATEGORICAL:
            parts += [F.category(dims, j, c) for c in range(d.n_choices - 1)]
        else:
            parts.append(F.moments(dims, j, 3 if len(dims) == 1 else 2))
    if len(numeric) >= 2:
        parts.append(F.cross(dims, numeric[0], numeric[1]))
    out = parts[0]
    for p in parts[1:]:
        out = out + p
    return out


def fine_rule(dims, max_piece_fraction=1 / 64):
    """A rule of the tests' own: 10 Gauss-Legendre nodes on pieces 1/64 of each continuous range,
    every point of each grid. Enough for the smooth ``exp(lambda . f)`` used here to 1e-15."""
    rules = []
    for d in dims:
        if d.kind == CONTINUOUS:
            x, w = gl_pieces(
                kernel_cuts(d.low, d.high, max_piece=(d.high - d.low) * max_piece_fraction)
            )
            rules.append((x.ravel(), w.ravel()))
        else:
            rules.append((d.grid(), np.ones(d.n_points)))
    return tensor_rule(rules)


def family_moments(features, lambdas, reference=None):
    """``E[f]`` under ``r exp(lambda . f)`` by the tests' own rule; ``r`` uniform by default."""
    x, w = fine_rule(features.dims)
    f = np.asarray(features(x))
    log_r = 0.0 if reference is None else np.asarray(reference.log_prob(x))
    log_q = np.log(w) + log_r + f @ lambdas
    q = np.exp(log_q - log_q.max())
    return q @ f / q.sum()


# ---------------------------------------------------------------------------------------------
# Known exponential families
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [-6.0, -0.7, 0.05, 2.5])
def test_recovers_the_truncated_exponential_from_its_mean(rate):
    low, high = 0.5, 2.0
    dims = (Dim(CONTINUOUS, low, high),)
    with mpmath.workdps(40):  # mean of exp(rate x) on [low, high], from the closed form
        a, b, r = mpmath.mpf(low), mpmath.mpf(high), mpmath.mpf(rate)
        mean = (b * mpmath.exp(r * b) - a * mpmath.exp(r * a)) / (
            mpmath.exp(r * b) - mpmath.exp(r * a)
        ) - 1 / r
    res = M.maxent(F.moments(dims, 0, 1), [float(mean)])
    assert abs(res.lambdas[0] - rate) < 1e-8
    assert abs(res.residuals[0]) < 1e-10
    with mpmath.workdps(40):  # log Z relative to the uniform density on [low, high]
        log_z = mpmath.log((mpmath.exp(r * b) - mpmath.exp(r * a)) / (r * (b - a)))
    assert abs(res.log_z - float(log_z)) < 1e-10


@pytest.mark.parametrize("mu, sd", [(0.3, 0.2), (0.9, 0.05), (-0.5, 1.0), (0.5, 3.0)])
def test_recovers_the_truncated_normal_from_mean_and_variance(mu, sd):
    low, high = 0.0, 1.0
    twin = scipy.stats.truncnorm((low - mu) / sd, (high - mu) / sd, mu, sd)
    targets = [twin.mean(), twin.var() + twin.mean() ** 2]
    res = M.maxent(F.moments(U01, 0, 2), targets)
    want = np.array([mu / sd**2, -0.5 / sd**2])
    np.testing.assert_allclose(res.lambdas, want, rtol=1e-8, atol=1e-8)
    assert np.max(np.abs(res.residuals)) < 1e-10
    x = np.linspace(low, high, 7)[:, None]
    np.testing.assert_allclose(np.asarray(res.density.log_prob(x)), twin.logpdf(x[:, 0]), atol=1e-9)


# ---------------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------------

SPACES = [
    (CONT,),
    (INT,),
    (CAT4,),
    (CONT, CAT4),
    (CONT, Dim(CONTINUOUS, 0.0, 3.0)),
    (STEPF, LOGINT),
]


@given(data=hst.data())
def test_matches_every_target_set_generated_from_a_known_lambda(data):
    dims = data.draw(hst.sampled_from(SPACES))
    f = space_features(dims)
    sd = np.sqrt(_reference_variances(f))
    u = np.array(data.draw(hst.lists(hst.floats(-2.0, 2.0), min_size=f.size, max_size=f.size)))
    lambdas = u / sd / math.sqrt(f.size)
    targets = family_moments(f, lambdas)
    res = M.maxent(f, targets)
    assert np.all(np.abs(res.residuals) <= 1e-9 * sd)
    np.testing.assert_allclose(res.lambdas, lambdas, atol=1e-6 * np.max(np.abs(lambdas) + 1 / sd))


def _reference_variances(f):
    x, w = fine_rule(f.dims)
    fx = np.asarray(f(x))
    w = w / w.sum()
    mean = w @ fx
    return w @ (fx - mean) ** 2


def grid_points(dims):
    return tensor_rule([(d.grid(), np.ones(d.n_points)) for d in dims])[0]


@settings(max_examples=max(10, settings().max_examples // 2))
@given(data=hst.data())
def test_the_solution_has_the_least_relative_entropy_among_densities_with_its_moments(data):
    """On a finite space: every perturbation that keeps the total mass and the moments (a vector
    in the null space of ``[1; f(x)']``) and stays a density raises ``KL(p || r)`` (it lowers the
    entropy when ``r`` is uniform)."""
    dims = data.draw(hst.sampled_from([(INT,), (STEPF, CAT4), (LOGINT,)]))
    f = space_features(dims)
    x = grid_points(dims)
    fx = np.asarray(f(x))
    use_reference = data.draw(hst.booleans())
    reference = Uniform(dims)
    if use_reference:
        params = [d for d in dims if d.kind != CATEGORICAL]
        mu = [[p.low + 0.3 * (p.high - p.low) for p in params]]
        sigma = [[0.4 * (p.high - p.low) for p in params]]
        cats = [np.array([[0.1, 0.2, 0.3, 0.4]]) for d in dims if d.kind == CATEGORICAL]
        reference = mixture(dims, [1.0], mu, sigma, cats)
    log_r = np.asarray(reference.log_prob(x))
    u = np.array(data.draw(hst.lists(hst.floats(-1.0, 1.0), min_size=f.size, max_size=f.size)))
    w = np.exp(log_r)
    sd = np.sqrt(w @ (fx - w @ fx) ** 2)
    targets = family_moments_on(fx, log_r, u / sd)
    res = M.maxent(f, targets, reference=reference)
    p_star = np.exp(np.asarray(res.density.log_prob(x)))
    assert abs(p_star.sum() - 1) < 1e-12

    def kl(p):
        live = p > 0
        return float(np.sum(p[live] * (np.log(p[live]) - log_r[live])))

    null = scipy.linalg.null_space(np.vstack([np.ones(len(x)), fx.T]))
    rng = np.random.default_rng(data.draw(hst.integers(0, 2**32 - 1)))
    for _ in range(20):
        delta = null @ rng.normal(size=null.shape[1])
        step = 0.5 * np.min(p_star[delta < 0] / -delta[delta < 0]) if (delta < 0).any() else 1.0
        for eps in (step, step * 1e-2):
            p = p_star + eps * delta
            np.testing.assert_allclose(fx.T @ p, fx.T @ p_star, atol=1e-9 * (1 + np.abs(fx).max()))
            assert kl(p) > kl(p_star) - 1e-13


def family_moments_on(fx, log_r, lambdas):
    log_q = log_r + fx @ lambdas
    q = np.exp(log_q - log_q.max())
    return q @ fx / q.sum()


@settings(max_examples=max(10, settings().max_examples // 3))
@given(
    k=hst.integers(1, 3),
    seed=hst.integers(0, 2**32 - 1),
    dims=hst.sampled_from([(CONT,), (CONT, CAT4), (INT, STEPF)]),
)
def test_without_constraints_the_result_is_the_reference(k, seed, dims):
    rng = np.random.default_rng(seed)
    numeric = [d for d in dims if d.kind != CATEGORICAL]
    lows = np.array([d.low for d in numeric])
    widths = np.array([d.high - d.low for d in numeric])
    mu = lows + rng.uniform(0, 1, (k, len(numeric))) * widths
    sigma = widths * rng.uniform(0.05, 0.5, (k, len(numeric)))
    cats = [rng.uniform(0.1, 1.0, (k, d.n_choices)) for d in dims if d.kind == CATEGORICAL]
    r = mixture(dims, rng.uniform(0.2, 1, k), mu, sigma, cats, min_kernels=4)
    x = grid_or_uniform_points(dims, rng)
    # No features at all: the reference itself.
    empty = M.maxent(F.Features(dims, ()), [], reference=r)
    assert empty.lambdas.shape == (0,) and abs(empty.log_z) < 1e-10
    np.testing.assert_allclose(empty.density.log_prob(x), r.log_prob(x), atol=1e-10)
    # Constraints the reference already meets: lambda = 0, and the reference again.
    f = space_features(dims)
    res = M.maxent(f, F.expectation(r, f), reference=r)
    assert np.max(np.abs(res.lambdas) * np.sqrt(_variances_under(r, f))) < 1e-7
    np.testing.assert_allclose(res.density.log_prob(x), r.log_prob(x), atol=1e-7)


def _variances_under(r, f):
    sq = F.Features(
        f.dims,
        tuple(
            F.Monomial(
                tuple(F.Window(w.col, 2 * w.power, w.low, w.high) for w in t.windows), t.name
            )
            for t in f.terms
        ),
    )
    return np.maximum(F.expectation(r, sq).values - F.expectation(r, f).values ** 2, 0.0)


def grid_or_uniform_points(dims, rng, n=50):
    cols = []
    for d in dims:
        if d.kind == CONTINUOUS:
            cols.append(rng.uniform(d.low, d.high, n))
        else:
            cols.append(rng.choice(d.grid(), n))
    return np.stack(cols, axis=1)


# ---------------------------------------------------------------------------------------------
# Infeasible targets
# ---------------------------------------------------------------------------------------------


def test_m1_mean_one_half_and_variance_0_3_on_the_unit_interval_is_infeasible():
    """Case M1: on [0, 1] a mean m allows a variance of at most m (1 - m) = 0.25."""
    with pytest.raises(ValueError, match=r"infeasible.*variance of x0 would be 0\.3.*0\.25"):
        M.maxent(F.moments(U01, 0, 2), [0.5, 0.5**2 + 0.3])


@given(
    low=hst.floats(-5, 5),
    width=hst.floats(0.1, 10),
    m=hst.floats(0.01, 0.99),
    excess=hst.floats(1e-6, 10),
)
def test_every_variance_beyond_the_bhatia_davis_bound_is_refused(low, width, m, excess):
    dims = (Dim(CONTINUOUS, low, low + width),)
    mean = low + m * width
    bound = (mean - low) * (low + width - mean)
    var = bound * (1 + excess)
    with pytest.raises(ValueError, match="Bhatia-Davis"):
        M.maxent(F.moments(dims, 0, 2), [mean, var + mean**2])
    with pytest.raises(ValueError, match=r"infeasible.*(variance of x0.*must be > 0|E\[x0\^2\])"):
        M.maxent(F.moments(dims, 0, 2), [mean, mean**2 - bound * excess])


@given(low=hst.floats(-5, 5), width=hst.floats(0.1, 10), m=hst.floats(0.01, 0.99))
def test_targets_on_the_edge_of_the_feasible_set_are_refused_at_once(low, width, m):
    """Only a point mass has variance 0 and only the two ends reach the Bhatia-Davis bound; a
    mean at an end of the range, or an indicator's probability of 0 or 1 under a uniform
    reference, is met by no density either (lambda would be infinite)."""
    dims = (Dim(CONTINUOUS, low, low + width),)
    mean = low + m * width
    bound = (mean - low) * (low + width - mean)
    f2 = F.moments(dims, 0, 2)
    with pytest.raises(ValueError, match="point mass has variance 0"):
        M.maxent(f2, [mean, mean**2])
    with pytest.raises(ValueError, match="Bhatia-Davis; only the distribution on the two ends"):
        M.maxent(f2, [mean, mean**2 + bound])
    for end, which in ((low, "least"), (low + width, "greatest")):
        with pytest.raises(ValueError, match=f"is the {which} value x0 takes"):
            M.maxent(F.moments(dims, 0, 1), [end])
    window = F.interval(dims, 0, mean, low + width)
    for p in (0.0, 1.0):
        with pytest.raises(ValueError, match="value 1{.*} takes where the reference has mass"):
            M.maxent(window, [p])


def test_jointly_infeasible_targets_name_the_constraint_they_break():
    # P(x >= 0.5) = 0.9 forces E[x] >= 0.45: a mean of 0.2 is out of reach.
    f = F.moments(U01, 0, 1) + F.interval(U01, 0, 0.5, 1.0)
    with pytest.raises(
        ValueError,
        match=r"infeasible targets: every density.*E\[x0\].*E\[1\{0\.5 <= x0 <= 1\.0\}\]",
    ):
        M.maxent(f, [0.2, 0.9])
    with pytest.raises(ValueError, match="infeasible"):
        M.maxent(F.interval(U01, 0, 0.2, 0.4), [1.2])


def test_targets_that_break_a_linear_relation_of_the_features_are_refused():
    dims = (CAT4,)
    f = F.categories(dims, 0)  # the four indicators sum to 1
    with pytest.raises(ValueError, match="linearly dependent"):
        M.maxent(f, [0.3, 0.3, 0.3, 0.3])
    res = M.maxent(f, [0.1, 0.2, 0.3, 0.4])  # consistent: solved in the three free directions
    np.testing.assert_allclose(
        np.exp(res.density.log_prob(np.arange(4.0)[:, None])), [0.1, 0.2, 0.3, 0.4], rtol=1e-10
    )


@pytest.mark.parametrize("degree", [10, 14])
def test_nearly_dependent_features_still_meet_their_targets(degree):
    """Monomials up to x^14 on [0, 1] are nearly collinear (their Hessian's condition number is far
    beyond 1e12): the eigenvalue floor keeps the Newton steps finite, the targets are met, and no
    false infeasibility is claimed. Lambda itself is not identifiable to better than the
    conditioning allows, so only the residuals are checked."""
    f = F.moments(U01, 0, degree)
    lambdas = np.zeros(degree)
    lambdas[:2] = [7.5, -12.5]
    res = M.maxent(f, family_moments(f, lambdas))
    assert np.max(np.abs(res.residuals)) < 1e-10
    np.testing.assert_allclose(
        res.density.log_prob(np.array([[0.3], [0.9]])), _tn_log_pdf([0.3, 0.9]), atol=1e-3
    )


def _tn_log_pdf(x):
    twin = scipy.stats.truncnorm((0 - 0.3) / 0.2, (1 - 0.3) / 0.2, 0.3, 0.2)  # exp(7.5x - 12.5x^2)
    return twin.logpdf(np.asarray(x))


def test_a_solve_stopped_short_raises_with_its_residuals():
    twin = scipy.stats.truncnorm(-6.0, 14.0, 0.3, 0.05)
    targets = [twin.mean(), twin.var() + twin.mean() ** 2]
    f = F.moments(U01, 0, 2)
    # One Newton step on each of two small rules is not enough ...
    with pytest.raises(M.ConvergenceError, match="did not converge.*off by") as info:
        M.maxent(f, targets, max_iter=1, max_points=2**6)
    assert np.max(np.abs(info.value.result.residuals)) > 1e-10
    # ... and no rule meets a tolerance below rounding.
    with pytest.raises(M.ConvergenceError, match="tol=1e-30"):
        M.maxent(f, targets, tol=1e-30)


# ---------------------------------------------------------------------------------------------
# Fusing sources: the policies
# ---------------------------------------------------------------------------------------------

DIMS2 = (Dim(CONTINUOUS, 0.0, 1.0), Dim(CONTINUOUS, -2.0, 3.0))
P_LLM = mixture(DIMS2, [0.3, 0.7], [[0.2, 0.0], [0.7, 1.0]], [[0.1, 0.5], [0.3, 0.8]])
P_OPT = mixture(DIMS2, [1.0], [[0.5, 2.0]], [[0.2, 0.5]])
F2 = F.moments(DIMS2, 0, 2) + F.moments(DIMS2, 1, 2) + F.cross(DIMS2, 0, 1)


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0])
def test_average_policy_meets_the_weighted_average_of_the_sources_moments(alpha):
    t_llm, t_opt = F.expectation(P_LLM, F2).values, F.expectation(P_OPT, F2).values
    res = M.maxent_pool([P_LLM, P_OPT], [alpha, 1 - alpha], F2)
    want = alpha * t_llm + (1 - alpha) * t_opt
    assert np.max(np.abs(res.residuals)) < 1e-10
    np.testing.assert_allclose(family_moments(F2, res.lambdas), want, rtol=1e-9, atol=1e-12)


def test_error_policy_names_each_conflict_and_accepts_agreement():
    with pytest.raises(ValueError, match=r"policy='error'.*E\[x0\]: 0\.49.* vs 0\.5"):
        M.maxent_pool([P_LLM, P_OPT], [0.5, 0.5], F2, policy="error")
    same = M.maxent_pool([P_OPT, P_OPT], [0.5, 0.5], F2, policy="error")
    assert np.max(np.abs(same.residuals)) < 1e-10


def test_sources_with_features_of_their_own_are_merged_feature_by_feature():
    f_llm = F.moments(DIMS2, 0, 2)
    f_opt = F.moments(DIMS2, 0, 1) + F.moments(DIMS2, 1, 2)
    res = M.maxent_pool([P_LLM, P_OPT], [0.25, 0.75], [f_llm, f_opt])
    assert res.density.features.names == ("x0", "x0^2", "x1", "x1^2")
    t_llm, t_opt = F.expectation(P_LLM, f_llm).values, F.expectation(P_OPT, f_opt).values
    want = [0.25 * t_llm[0] + 0.75 * t_opt[0], t_llm[1], t_opt[1], t_opt[2]]
    np.testing.assert_allclose(family_moments(res.density.features, res.lambdas), want, rtol=1e-9)


def test_soft_policy_is_stationary_with_its_slack_and_solves_what_hard_cannot():
    res = M.maxent_pool([P_LLM, P_OPT], [0.5, 0.5], F2, policy="soft", slack=0.2)
    merged, slack = M.merge_targets(
        [F.expectation(P_LLM, F2), F.expectation(P_OPT, F2)], [0.5, 0.5], "soft", 0.2
    )
    sd = np.sqrt(_reference_variances(F2))
    # Stationarity of the soft dual: E[f] = t - s^2 lambda, with s in feature units.
    np.testing.assert_allclose(res.residuals, -((slack * sd) ** 2) * res.lambdas, atol=1e-10)
    assert np.max(np.abs(res.residuals) / sd) > 1e-3  # the slack is used
    # Mean and variance of x0 from different sources, jointly infeasible: hard refuses, soft fits.
    f_a, f_b = F.moments(U01, 0, 1), F.moments(U01, 0, 2)
    a = F.Targets(f_a, np.array([0.1]), np.zeros(1), "given")
    b = F.Targets(f_b, np.array([0.9, 0.81 + 0.01]), np.zeros(2), "given")
    merged, _ = M.merge_targets([a, b], [0.5, 0.5])
    with pytest.raises(ValueError, match="infeasible"):
        M.maxent(merged.features, merged)
    merged, slack = M.merge_targets([a, b], [0.5, 0.5], "soft", 0.5)
    fit = M.maxent(merged.features, merged, slack=slack)
    assert (
        np.isfinite(fit.lambdas).all()
        and 0.0 < family_moments(merged.features, fit.lambdas)[0] < 1.0
    )


# ---------------------------------------------------------------------------------------------
# Methods, densities and compilation
# ---------------------------------------------------------------------------------------------


def test_importance_nodes_in_high_dimension_fit_within_their_monte_carlo_error():
    d5 = tuple(Dim(CONTINUOUS, 0.0, 1.0) for _ in range(5))
    q = mixture(d5, [1.0, 1.0], [[0.3] * 5, [0.6] * 5], np.full((2, 5), 0.15))
    f = F.moments(d5, 0, 2) + F.moments(d5, 1, 2) + F.cross(d5, 0, 1)
    t = F.expectation(q, f)
    res = M.maxent(f, t, key=jax.random.key(0), n_samples=2**15)
    assert res.method == "importance"
    # Fresh uniform draws: the moments match to a few Monte Carlo standard errors.
    sd = np.sqrt(_variances_under(q, f))
    assert np.max(np.abs(res.residuals) / sd) < 5 * 2**-7.5


def test_the_density_is_a_normalized_pytree():
    res = M.maxent_pool([P_LLM, P_OPT], [0.5, 0.5], F2)
    assert abs(log_normalizer(res.density, "quadrature").log_z) < 1e-10
    leaves = jax.tree_util.tree_leaves(res.density)
    assert any(leaf.shape == res.lambdas.shape for leaf in leaves)
    x = np.array([[0.2, 0.5], [0.9, -1.0], [1.5, 0.0]])
    jitted = jax.jit(lambda d, z: d.log_prob(z))(res.density, x)
    np.testing.assert_allclose(jitted[:2], res.density.log_prob(x)[:2], rtol=1e-13)
    assert jitted[2] == -np.inf  # outside the space


def test_the_solver_compiles_once_per_shape():
    f = F.moments(U01, 0, 4)
    rng = np.random.default_rng(0)
    M.maxent(f, family_moments(f, np.zeros(4)))
    before = M.solve._cache_size()
    for _ in range(5):
        lambdas = rng.normal(size=4)
        res = M.maxent(f, family_moments(f, lambdas))
        assert np.max(np.abs(res.residuals)) < 1e-10
    assert M.solve._cache_size() - before <= 1  # a harder problem may refine the rule once


def test_log_prob_far_off_the_space_is_minus_infinity_with_zero_gradient():
    res = M.maxent(F.moments(U01, 0, 2), [0.4, 0.2])
    x = np.array([[-np.inf], [-1e200], [0.5], [1e200], [np.inf]])
    log_p = np.asarray(res.density.log_prob(x))
    assert np.isfinite(log_p[2]) and np.all(log_p[[0, 1, 3, 4]] == -np.inf)
    grad = jax.grad(lambda z: res.density.log_prob(z).sum())(x[[1, 3]])
    np.testing.assert_array_equal(grad, 0.0)


def test_a_feature_constant_where_the_reference_has_mass_leaves_the_reference():
    everywhere = F.interval(U01, 0, 0.0, 1.0)  # 1 on the whole space
    res = M.maxent(everywhere + F.moments(U01, 0, 1), [1.0, 0.5])
    np.testing.assert_allclose(res.lambdas, 0.0, atol=1e-12)
    assert abs(res.log_z) < 1e-12
    with pytest.raises(ValueError, match="infeasible"):
        M.maxent(everywhere, [0.5])
    one_choice = (Dim(CATEGORICAL, n_choices=1), CONT)
    f = F.category(one_choice, 0, 0) + F.moments(one_choice, 1, 1)
    res = M.maxent(f, [1.0, 0.5])
    assert res.lambdas[0] == 0.0 and np.max(np.abs(res.residuals)) < 1e-10


def test_merge_targets_validates_each_source_and_counts_a_repeated_term_once():
    f = F.moments(U01, 0, 1)
    good = F.Targets(f, np.array([0.4]), np.zeros(1), "given")
    for values, errors, match in (
        ([np.nan], [0.0], r"sources\[1\].*finite"),
        ([0.4], [-1.0], r"sources\[1\].*>= 0"),
        ([0.4, 0.5], [0.0, 0.0], r"sources\[1\] must have 1 values"),
    ):
        bad = F.Targets(f, np.array(values), np.array(errors), "given")
        with pytest.raises(ValueError, match=match):
            M.merge_targets([good, bad], [0.5, 0.5])
    twice = F.Targets(f + f, np.array([0.3, 0.3]), np.zeros(2), "given")
    merged, _ = M.merge_targets([twice, good], [0.5, 0.5])
    np.testing.assert_allclose(merged.values, [0.35], rtol=1e-15)
    # "error" compares every pair of sources, not only each with the first.
    third = F.Targets(f, np.array([0.6]), np.zeros(1), "given")
    with pytest.raises(ValueError, match="policy='error'"):
        M.merge_targets([good, good, third], [1 / 3] * 3, "error")


def test_importance_sampling_with_too_few_draws_for_its_features_is_refused():
    d5 = tuple(Dim(CONTINUOUS, 0.0, 1.0) for _ in range(5))
    f = F.moments(d5, 0, 2) + F.moments(d5, 1, 2)
    with pytest.raises(ValueError, match=r"n_samples=40 is too few for 4 features.*50"):
        M.maxent(f, [0.5, 0.3, 0.5, 0.3], key=jax.random.key(0), n_samples=40)


def test_the_feasibility_grid_stays_within_its_budget_on_large_grids():
    dims = (Dim(DISCRETE, 0.0, 1e6, 1.0), Dim(CATEGORICAL, n_choices=3), CONT)
    grid = M._dense_grid(dims, {2: (0.123,)}, 2**14)
    assert grid.shape[0] <= 2 * 2**14
    assert set(np.unique(grid[:, 1])) == {0.0, 1.0, 2.0}  # a small axis keeps every point
    for j, d in ((0, dims[0]), (2, CONT)):
        assert grid[:, j].min() == d.low and grid[:, j].max() == d.high
    assert 0.123 in grid[:, 2]


def test_a_feasible_target_near_a_window_edge_in_three_dimensions_is_solved():
    d3 = tuple(Dim(CONTINUOUS, 0.0, 1.0) for _ in range(3))
    f = F.interval(d3, 0, 0.2, 0.6) + F.interval(d3, 1, 0.1, 0.7) + F.interval(d3, 2, 0.0, 0.52)
    res = M.maxent(f, [0.51999, 0.61, 0.51999])
    assert np.max(np.abs(res.residuals)) < 1e-9


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: M.maxent([1.0], [0.5]), "features must be a fusion.features.Features"),
        (lambda: M.maxent(F.moments(U01, 0, 2), [0.5]), r"targets must be 2 finite numbers"),
        (lambda: M.maxent(F.moments(U01, 0, 1), [float("nan")]), "targets must be 1 finite"),
        (lambda: M.maxent(F.moments(U01, 0, 1), ["a"]), "targets must be 1 finite"),
        (lambda: M.maxent(F.moments(U01, 0, 1), [0.5], slack=[-1.0]), "slack must be 1 finite"),
        (lambda: M.maxent(F.moments(U01, 0, 1), [0.5], method="newton"), "method must be"),
        (lambda: M.maxent(F.moments(U01, 0, 1), [0.5], tol=0.0), "tol must be a finite number > 0"),
        (lambda: M.maxent(F.moments(U01, 0, 1), [0.5], max_iter=0), "max_iter must be an int >= 1"),
        (
            lambda: M.maxent(F.moments(U01, 0, 1), [0.5], reference=Uniform(DIMS2)),
            "reference must be",
        ),
        (lambda: M.maxent(F.moments(U01, 0, 1), [0.5], method="importance"), "pass key="),
        (
            lambda: M.maxent(F.moments((Dim(CONTINUOUS, 0.0, np.inf),), 0, 1), [0.5]),
            "bounded space",
        ),
        (lambda: M.maxent_pool([P_LLM], [1.0], F2, policy="vote"), "policy must be one of"),
        (lambda: M.maxent_pool([P_LLM, P_OPT], [1.0], F2), "weights must be 2 finite numbers"),
        (lambda: M.maxent_pool([P_LLM, P_OPT], [0.0, 0.0], F2), "not all 0"),
        (lambda: M.maxent_pool([], [], F2), "densities must not be empty"),
    ],
)
def test_bad_arguments_name_the_parameter(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_float32_is_refused():
    with jax.enable_x64(False):
        for call in (
            lambda: M.maxent(F.moments(U01, 0, 1), [0.5]),
            lambda: F.expectation(Uniform(U01), F.moments(U01, 0, 1)),
        ):
            with pytest.raises(RuntimeError, match="jax_enable_x64"):
                call()
