"""The convergence statements of ``docs/theorems.md`` as property tests (T1, T2 and the errata).

Setting (see the docs for the precise statements). ``x*`` is a point of the space and ``B`` the
box around it: on each continuous coordinate ``[x*_j - r_j, x*_j + r_j]`` cut to the bounds, with
``r_j = EPS * (high - low)``; on each discrete or categorical coordinate the single point ``x*_j``
(a neighbourhood of an atom). ``p_opt`` at concentration ``lam`` is one product kernel centred at
``x*`` (:func:`concentrating`): on a continuous coordinate a truncated normal of scale
``lam * r_j``, on a discrete one a cell-mass kernel of scale ``lam`` times the half-width of
``x*``'s cell, on a categorical one the table ``1`` at ``x*``, ``exp(-1 / (2 lam^2))`` elsewhere.
``lam -> 0`` is ``p_opt -> delta(x*)``; ``LAMBDAS`` is the sequence tested.

What is checked is fusion: its pools' densities integrated over ``B`` (by a Gauss-Legendre rule
written here), ``closed_form`` and ``log_normalizer``. Reference values never come from fusion:
ball masses and tails of kernels from normal CDFs (``scipy.special.log_ndtr``, in log space),
Gaussian integrals from their closed forms and ``mpmath``, Monte Carlo from numpy.

Tolerances. ``QUAD_TOL``: the rule over ``B`` cuts every continuous coordinate at ``x*`` plus and
minus ``r_j lam_eff 2^i / 2`` (``lam_eff`` the pooled kernel's scale) up to ``r_j``, so each piece
near the centre is at most two scales long and the far ones hold less than ``exp(-8)`` of the
mass; 16 Gauss-Legendre nodes integrate a Gaussian on such pieces to about ``1e-14`` relative
(the ``suggestion`` kernels have scales of at least ``0.05`` widths, 2.5 box radii: smooth on
``B``). ``1e-9`` absolute on a mass in ``[0, 1]`` leaves a wide margin for that and for float64
rounding. Monte Carlo checks use ``N_SE = 5`` standard errors (a false failure below ``6e-7`` per
check for the normal approximation); the goodness-of-fit checks reject at ``gof.ALPHA``.

Compilation: ``log_prob`` compiles once per space, so the tests on random spaces draw few examples
(``SPACE_EXAMPLES``) and keep kernel counts fixed (``p_llm`` padded to 4 kernels, ``p_opt`` one
kernel); the 1-D tests reuse one space and run the profile's count.
"""

from __future__ import annotations

import math

import jax
import mpmath
import numpy as np
import pytest
import scipy.special as sc
import scipy.stats as st
from gof import ALPHA, binned_pvalue, chi_square_pvalue
from hypothesis import given, settings
from hypothesis import strategies as hst
from numpy.polynomial.legendre import leggauss
from scipy.integrate import quad

from fusion import testing as ft
from fusion.combine import LinearPool, geometric, linear_pool, product
from fusion.density import ProductKernelMixture, Uniform, mixture
from fusion.kde import suggestion_density
from fusion.normalize import closed_form, log_normalizer
from fusion.quadrature import CHUNK
from fusion.quadrature import evaluate as evaluate_chunks
from fusion.resample import geometric_importance_resample
from fusion.space import CATEGORICAL, CONTINUOUS, DISCRETE, LOG_DISCRETE, Dim, Param, SearchSpace

EPS = 0.02
LAMBDAS = (1.0, 1 / 4, 1 / 32)
QUAD_TOL = 1e-9
N_SE = 5.0
N_NODES = 16
SPACE_EXAMPLES = 3
# ``closed_form`` compiles once per tuple of exponents (they are static), so the 1-D tests draw
# alpha from a fixed set.
ALPHAS = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 0.95)

# Random mixed spaces with at most two continuous coordinates (the rule over B is a tensor rule).
SPACES = ft.search_spaces(1, 3, max_points=8, max_choices=4).filter(
    lambda s: sum(d.kind == CONTINUOUS for d in s.dims) <= 2
)
LINE = (Dim(CONTINUOUS, -np.inf, np.inf),)


def floats(lo, hi):
    return hst.floats(lo, hi, allow_nan=False, allow_subnormal=False)


# ---------------------------------------------------------------------------------------------
# Normal masses in log space (scipy), the box B and the concentrating p_opt
# ---------------------------------------------------------------------------------------------


def log_gauss_interval(a, b):
    """``log(Phi(b) - Phi(a))`` for ``a <= b``, reflected so that both ends keep precision."""
    a, b = np.broadcast_arrays(np.asarray(a, dtype=float), np.asarray(b, dtype=float))
    flip = (a + b) > 0
    lo, hi = np.where(flip, -b, a), np.where(flip, -a, b)
    log_hi, log_lo = sc.log_ndtr(hi), sc.log_ndtr(lo)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(log_lo == log_hi, -np.inf, log_hi + np.log1p(-np.exp(log_lo - log_hi)))


def logsumexp(v) -> float:
    v = np.asarray(v, dtype=float).ravel()
    return float(np.logaddexp.reduce(v)) if v.size else -np.inf


def box(dim: Dim, xj: float, eps: float = EPS) -> tuple[float, float]:
    """``B``'s interval on a continuous coordinate."""
    r = eps * (dim.high - dim.low)
    return max(dim.low, xj - r), min(dim.high, xj + r)


def kernel_centre(dim: Dim, xj: float) -> float:
    return math.log(xj) if dim.kind == LOG_DISCRETE else xj


def kernel_unit(dim: Dim, xj: float, eps: float = EPS) -> float:
    """The length that ``lam`` scales: the box radius, or the half-width of ``x*``'s cell (in
    ``ln`` units on a log int, the narrower side)."""
    if dim.kind == CONTINUOUS:
        return eps * (dim.high - dim.low)
    if dim.kind == LOG_DISCRETE:
        return math.log1p(0.5 / xj)
    return dim.step / 2


def cell_edges(dim: Dim) -> tuple[np.ndarray, np.ndarray]:
    """The cells of a discrete coordinate's grid points, in kernel units."""
    g = dim.grid()
    if dim.kind == LOG_DISCRETE:
        return np.log(g - 0.5), np.log(g + 0.5)
    return g - dim.step / 2, g + dim.step / 2


def concentrating(dims, x_star, lam: float, eps: float = EPS) -> ProductKernelMixture:
    """``p_opt`` at concentration ``lam``: one product kernel at ``x*`` (see the module doc)."""
    mu, sigma, tables = [], [], []
    for d, xj in zip(dims, x_star, strict=True):
        if d.kind == CATEGORICAL:
            row = np.full(d.n_choices, math.exp(-0.5 / lam**2))
            row[int(xj)] = 1.0
            tables.append(row[None, :])
        else:
            mu.append(kernel_centre(d, xj))
            sigma.append(lam * kernel_unit(d, xj, eps))
    n = len(mu)
    return mixture(dims, [1.0], np.reshape(mu, (1, n)), np.reshape(sigma, (1, n)), tables)


def log_in_out(dim: Dim, xj: float, lam: float, power: float, eps: float = EPS):
    """``(log A, log C)`` of ``k^power`` for the kernel ``k`` of :func:`concentrating` on one
    coordinate: ``A`` its integral (sum) over ``B``'s part, ``C`` over the rest of the coordinate,
    both up to one common constant. ``k^power`` of a normal is a normal of scale
    ``sigma / sqrt(power)``; cells and table entries are raised entry by entry."""
    if dim.kind == CATEGORICAL:
        others = dim.n_choices - 1
        return 0.0, (math.log(others) - power * 0.5 / lam**2) if others else -np.inf
    c, s = kernel_centre(dim, xj), lam * kernel_unit(dim, xj, eps)
    if dim.kind == CONTINUOUS:
        s = s / math.sqrt(power)
        a, b = box(dim, xj, eps)
        log_a = float(log_gauss_interval((a - c) / s, (b - c) / s))
        log_c = np.logaddexp(
            log_gauss_interval((dim.low - c) / s, (a - c) / s),
            log_gauss_interval((b - c) / s, (dim.high - c) / s),
        )
        return log_a, float(log_c)
    left, right = cell_edges(dim)
    log_cells = power * log_gauss_interval((left - c) / s, (right - c) / s)
    k = int(np.argmin(np.abs(dim.grid() - xj)))
    return float(log_cells[k]), logsumexp(np.delete(log_cells, k))


def opt_log_tail(dims, x_star, lam: float) -> float:
    """``log(1 - P_opt(B))``: ``1 - prod_j (1 - tau_j)`` with ``tau_j = C_j / (A_j + C_j)``."""
    log_tau = [
        o - np.logaddexp(i, o)
        for i, o in (log_in_out(d, x, lam, 1.0) for d, x in zip(dims, x_star, strict=True))
    ]
    s = sum(math.log1p(-math.exp(t)) if t > -np.inf else 0.0 for t in log_tau)
    return math.log(-math.expm1(s)) if s < 0 else -np.inf


def log_ratio_bound(dims, x_star, lam: float, power: float) -> float:
    """``log((int_{B^c} p_opt^power) / (int_B p_opt^power))``: ``prod_j (1 + C_j/A_j) - 1``."""
    s = 0.0
    for d, xj in zip(dims, x_star, strict=True):
        log_a, log_c = log_in_out(d, xj, lam, power)
        s += math.log1p(math.exp(log_c - log_a)) if log_c > -np.inf else 0.0
    return math.log(math.expm1(s)) if s > 0 else -np.inf


# ---------------------------------------------------------------------------------------------
# Exact ball masses (scipy) and bounds of fusion's densities, read from their parameters
# ---------------------------------------------------------------------------------------------


def ref_log_ball_mass(density, x_star, eps: float = EPS) -> float:
    """``log P(B)`` for a mixture, a uniform density or a linear pool of them, from normal CDFs."""
    dims = density.dims
    if isinstance(density, LinearPool):
        lw = np.asarray(density.log_weights)
        return logsumexp(
            [
                w + ref_log_ball_mass(c, x_star, eps)
                for w, c in zip(lw, density.components, strict=True)
                if w > -np.inf
            ]
        )
    if isinstance(density, Uniform):
        total = 0.0
        for d, xj in zip(dims, x_star, strict=True):
            if d.kind == CONTINUOUS:
                a, b = box(d, xj, eps)
                total += math.log((b - a) / (d.high - d.low))
            else:
                total -= math.log(d.n_points)
        return total
    assert isinstance(density, ProductKernelMixture) and not density.tabulated
    lw = np.asarray(density.log_weights)
    live = lw > -np.inf
    terms = lw[live].copy()
    mu, sigma = np.asarray(density.mu)[live], np.asarray(density.sigma)[live]
    i = t = 0
    for d, xj in zip(dims, x_star, strict=True):
        if d.kind == CATEGORICAL:
            terms += np.asarray(density.cat_log_probs[t])[live, int(xj)]
            t += 1
            continue
        m, s = mu[:, i], sigma[:, i]
        lo, hi = d.kernel_bounds
        if d.kind == CONTINUOUS:
            a, b = box(d, xj, eps)
        else:
            left, right = cell_edges(d)
            k = int(np.argmin(np.abs(d.grid() - xj)))
            a, b = left[k], right[k]
        terms += log_gauss_interval((a - m) / s, (b - m) / s)
        terms -= log_gauss_interval((lo - m) / s, (hi - m) / s)
        i += 1
    return logsumexp(terms)


def log_sup_and_inf(p_llm: LinearPool) -> tuple[float, float]:
    """``log sup p_llm`` (bounded by each kernel's peak: ``1 / (sigma sqrt(2 pi) mass)`` on a
    continuous coordinate, 1 on a discrete one, the largest table entry on a categorical one) and
    ``log inf p_llm >= log(floor * uniform)``, for a suggestion density ``(KDE, Uniform)``."""
    kde = p_llm.components[0]
    lw_kde, lw_floor = (float(v) for v in np.asarray(p_llm.log_weights))
    log_u = -sum(
        math.log(d.high - d.low) if d.kind == CONTINUOUS else math.log(d.n_points) for d in kde.dims
    )
    lw = np.asarray(kde.log_weights)
    live = lw > -np.inf
    terms = lw[live].copy()
    mu, sigma = np.asarray(kde.mu)[live], np.asarray(kde.sigma)[live]
    i = t = 0
    for d in kde.dims:
        if d.kind == CATEGORICAL:
            terms += np.asarray(kde.cat_log_probs[t])[live].max(axis=1)
            t += 1
            continue
        if d.kind == CONTINUOUS:
            m, s = mu[:, i], sigma[:, i]
            lo, hi = d.kernel_bounds
            terms += -np.log(s) - 0.5 * math.log(2 * math.pi)
            terms -= log_gauss_interval((lo - m) / s, (hi - m) / s)
        i += 1
    log_sup = float(np.logaddexp(lw_kde + logsumexp(terms), lw_floor + log_u))
    return log_sup, lw_floor + log_u


# ---------------------------------------------------------------------------------------------
# Gauss-Legendre over B
# ---------------------------------------------------------------------------------------------


def ball_rule(dims, x_star, scales, eps: float = EPS):
    """Points ``(N, d)`` and log-weights of a tensor rule over ``B``: Gauss-Legendre on each
    continuous coordinate, cut at ``x*`` and at ``x* -+ r 2^i s / 2`` for each scale ``s`` (in
    units of the radius ``r``) up to ``r``; the discrete coordinates fixed at ``x*``."""
    t, w = leggauss(N_NODES)
    axes = []
    for d, xj in zip(dims, x_star, strict=True):
        if d.kind != CONTINUOUS:
            axes.append((np.array([xj]), np.array([1.0])))
            continue
        a, b = box(d, xj, eps)
        r = eps * (d.high - d.low)
        offsets = [s * 2.0**i / 2 for s in scales for i in range(64) if s * 2.0**i / 2 < 1]
        cuts = np.concatenate([[a, b, xj], xj - r * np.array(offsets), xj + r * np.array(offsets)])
        cuts = np.unique(np.clip(cuts, a, b))
        lo, hi = cuts[:-1, None], cuts[1:, None]
        axes.append((((lo + hi) / 2 + (hi - lo) / 2 * t).ravel(), ((hi - lo) / 2 * w).ravel()))
    grids = np.meshgrid(*[a[0] for a in axes], indexing="ij")
    weights = np.meshgrid(*[a[1] for a in axes], indexing="ij")
    x = np.stack([g.ravel() for g in grids], axis=1)
    return x, np.sum([np.log(v.ravel()) for v in weights], axis=0)


def evaluate(log_density, x: np.ndarray) -> np.ndarray:
    """``log_density(x)`` in chunks of ``fusion.quadrature.CHUNK`` points, a short batch padded to
    one chunk: the shape ``log_normalizer``'s quadrature evaluates, so the two share a compilation.
    """
    n = x.shape[0]
    padded = np.concatenate([x, np.repeat(x[:1], max(CHUNK - n, 0), axis=0)])
    return evaluate_chunks(log_density, padded)[:n]


def log_ball_integral(log_density, dims, x_star, scales, eps: float = EPS) -> float:
    """``log int_B exp(log_density)`` by :func:`ball_rule`."""
    x, log_w = ball_rule(dims, x_star, scales, eps)
    values = evaluate(log_density, x)
    assert not np.isnan(values).any()
    return logsumexp(values + log_w)


# ---------------------------------------------------------------------------------------------
# T1: linear pool
# ---------------------------------------------------------------------------------------------


@settings(max_examples=SPACE_EXAMPLES)
@given(hst.data())
def test_t1_linear_pool_ball_mass_tends_to_its_exact_limit(data):
    """``P_n(B) = alpha P_llm(B) + (1 - alpha) P_opt_n(B)``: with a constant ``alpha`` it tends to
    ``(1 - alpha) + alpha P_llm(B)``, off by exactly ``(1 - alpha)(1 - P_opt_n(B))``; with
    ``alpha_n = alpha lam_n -> 0`` it tends to 1, ``1 - P_n(B) <= alpha_n + 1 - P_opt_n(B)``."""
    space = data.draw(SPACES)
    dims = space.dims
    p_llm = data.draw(ft.suggestion_densities(space, 1, 4))
    x_star = data.draw(ft.points(space, 1))[0]
    alpha = data.draw(floats(0.05, 0.95))
    p_llm_b = math.exp(ref_log_ball_mass(p_llm, x_star))
    limit = (1 - alpha) + alpha * p_llm_b
    for lam in LAMBDAS:
        p_opt = concentrating(dims, x_star, lam)
        tail = math.exp(opt_log_tail(dims, x_star, lam))
        for a_n in (alpha, alpha * lam):
            pool = linear_pool((p_llm, p_opt), (a_n, 1 - a_n))
            mass = math.exp(log_ball_integral(pool.log_prob, dims, x_star, [lam]))
            exact = a_n * p_llm_b + (1 - a_n) * (1 - tail)
            assert abs(mass - exact) <= QUAD_TOL, (lam, a_n, mass, exact)
            if a_n == alpha:
                assert abs(mass - limit) <= (1 - alpha) * tail + QUAD_TOL
            else:
                assert 1 - mass <= a_n + tail + QUAD_TOL
    # At the last lam the kernel's tail is below 1e-100: the limit is reached to quadrature
    # precision, and it falls short of 1 by exactly alpha (1 - P_llm(B)).
    assert tail < 1e-100
    assert abs(1 - limit - alpha * (1 - p_llm_b)) < 1e-15


# ---------------------------------------------------------------------------------------------
# T1: product and geometric pools
# ---------------------------------------------------------------------------------------------


@settings(max_examples=SPACE_EXAMPLES)
@given(hst.data())
def test_t1_product_and_geometric_pools_concentrate_when_p_llm_is_positive(data):
    """With ``p_llm >= m > 0`` on ``B`` and ``p_llm <= M``, the log-linear pool
    ``p_llm^e1 p_opt^e2 / Z`` has ``1 - P(B) <= (M / m)^e1 R`` with
    ``R = int_{B^c} p_opt^e2 / int_B p_opt^e2``, which tends to 0 as ``lam -> 0`` for any fixed
    ``e2 > 0``: the pool concentrates, the geometric one at the scale ``lam / sqrt(1 - alpha)``."""
    space = data.draw(SPACES)
    dims = space.dims
    p_llm = data.draw(ft.suggestion_densities(space, 1, 4, min_floor=0.05))
    x_star = data.draw(ft.points(space, 1))[0]
    alpha = data.draw(floats(0.0, 0.9))
    log_sup, log_inf = log_sup_and_inf(p_llm)
    for name, (e1, e2) in (("product", (1.0, 1.0)), ("geometric", (alpha, 1 - alpha))):
        for lam in LAMBDAS:
            p_opt = concentrating(dims, x_star, lam)
            pool = product(p_llm, p_opt) if name == "product" else geometric(p_llm, p_opt, alpha)
            z = log_normalizer(pool)
            log_b = log_ball_integral(
                pool.unnormalized_log_prob, dims, x_star, [lam / math.sqrt(e2)]
            )
            mass = math.exp(log_b - z.log_z)
            tol = QUAD_TOL + 2 * z.std_error
            bound = math.exp(e1 * (log_sup - log_inf) + log_ratio_bound(dims, x_star, lam, e2))
            assert mass <= 1 + tol, (name, lam, mass)
            assert 1 - mass <= bound + tol, (name, lam, mass, bound)
        assert bound < 1e-6, (name, bound)  # so the mass at the last lam is above 1 - 1e-6


@given(
    m_llm=floats(-3.0, 3.0),
    s_llm=floats(0.1, 3.0),
    x_star=floats(-3.0, 3.0),
    alpha=hst.sampled_from(ALPHAS),
    frac=hst.sampled_from((0.01, 0.05, 0.2)),
)
def test_t1_geometric_pool_of_gaussians_concentrates_unless_alpha_tends_to_one(
    m_llm, s_llm, x_star, alpha, frac
):
    """On the real line, ``N(m, s_l^2)^alpha N(x*, s^2)^(1 - alpha)`` is ``Z N(m_n, sd_n^2)`` with
    precision ``alpha / s_l^2 + (1 - alpha) / s^2``. For fixed ``alpha < 1`` and ``s -> 0``,
    ``sd_n = s / sqrt(1 - alpha) (1 + O(s^2))`` and ``m_n -> x*``: the ball mass tends to 1. With
    ``1 - alpha_n = s_l^-2 s^2`` (``alpha_n -> 1`` as fast as ``s^2``) the precision stays below
    ``2 / s_l^2``, so the ball mass stays below ``2 Phi(eps sqrt(2) / s_l) - 1 < 1``."""
    eps = frac * s_llm
    p_llm = mixture(LINE, [1.0], [[m_llm]], [[s_llm]])
    for s in (eps, eps / 8, eps / 256):
        p_opt = mixture(LINE, [1.0], [[x_star]], [[s]])
        for a, converges in ((alpha, True), (1 - (s / s_llm) ** 2, False)):
            cf = closed_form(geometric(p_llm, p_opt, a))
            tau = a / s_llm**2 + (1 - a) / s**2
            m = (a * m_llm / s_llm**2 + (1 - a) * x_star / s**2) / tau
            sd = 1 / math.sqrt(tau)
            mu_f, sd_f = float(cf.density.mu[0, 0]), float(cf.density.sigma[0, 0])
            assert abs(sd_f - sd) <= 1e-12 * sd and abs(mu_f - m) <= 1e-12 * (abs(m) + 3 + sd)
            q = (a * (1 - a) * (m_llm - x_star) ** 2) / (a * s**2 + (1 - a) * s_llm**2)
            log_z = (
                0.5 * math.log(2 * math.pi / tau)
                - 0.5 * q
                - a * math.log(s_llm * math.sqrt(2 * math.pi))
                - (1 - a) * math.log(s * math.sqrt(2 * math.pi))
            )
            assert abs(cf.log_z - log_z) <= 1e-10 * (1 + abs(log_z))
            mass = math.exp(log_gauss_interval((x_star - eps - m) / sd, (x_star + eps - m) / sd))
            if converges:
                # the sharpened kernel is s / sqrt(1 - alpha) wide, up to a relative O(s^2)
                slow = a * s**2 / (2 * (1 - a) * s_llm**2)
                assert abs(sd * math.sqrt(1 - a) / s - 1) <= slow + 1e-12
                off = abs(m - x_star)
                if off < eps:
                    assert 1 - mass <= 2 * sc.ndtr(-(eps - off) / sd) * (1 + 1e-12) + 1e-15
            else:
                assert mass <= 2 * sc.ndtr(eps * math.sqrt(2) / s_llm) - 1 + 1e-12
    # at s = eps / 256 the fixed-alpha pool has its mass in B
    cf = closed_form(geometric(p_llm, mixture(LINE, [1.0], [[x_star]], [[eps / 256]]), alpha))
    m, sd = float(cf.density.mu[0, 0]), float(cf.density.sigma[0, 0])
    assert log_gauss_interval((x_star - eps - m) / sd, (x_star + eps - m) / sd) > math.log1p(-1e-6)


CAT_SPACE = (Dim(CONTINUOUS, 0.0, 1.0), Dim(CATEGORICAL, n_choices=3))


@settings(max_examples=5)
@given(hst.data())
def test_t1_product_and_geometric_pools_lose_x_star_where_p_llm_is_zero(data):
    """``p_llm`` with probability exactly 0 at ``x*``'s category: the product and every geometric
    pool with ``alpha > 0`` put mass exactly 0 on ``B`` for every ``lam``, however small ``alpha``.
    Only ``alpha = 0`` (``p_opt`` itself) concentrates; with that entry positive the product does.
    """
    p_pos = data.draw(ft.mixtures(CAT_SPACE, 1, 3))
    x_star = data.draw(ft.points(CAT_SPACE, 1))[0]
    alpha = data.draw(floats(1e-6, 1.0))
    c = int(x_star[1])
    table = np.exp(np.asarray(p_pos.cat_log_probs[0]))
    table[:, c] = 0.0
    table[table.sum(axis=1) == 0] = 1.0  # a row that had all its mass on c: any positive row
    table = table / table.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore"):  # the same kernels, renormalized over the other categories
        p_zero = ProductKernelMixture(
            p_pos.log_weights, p_pos.mu, p_pos.sigma, (np.log(table),), CAT_SPACE
        )
    assert abs(log_normalizer(p_zero, "quadrature").log_z) < 1e-9
    for lam in LAMBDAS:
        p_opt = concentrating(CAT_SPACE, x_star, lam)
        x, _ = ball_rule(CAT_SPACE, x_star, [lam])
        for pool in (product(p_zero, p_opt), geometric(p_zero, p_opt, alpha)):
            assert np.all(evaluate(pool.unnormalized_log_prob, x) == -np.inf)  # P(B) = 0
            assert np.isfinite(log_normalizer(pool).log_z)  # a proper density elsewhere
        # alpha = 0 is p_opt: P(B) = 1 - tail
        only_opt = geometric(p_zero, p_opt, 0.0)
        log_b = log_ball_integral(only_opt.unnormalized_log_prob, CAT_SPACE, x_star, [lam])
        assert (
            abs(math.exp(log_b) - (1 - math.exp(opt_log_tail(CAT_SPACE, x_star, lam)))) < QUAD_TOL
        )
        # with the entry positive, the product's closed form concentrates
        cf = closed_form(product(p_pos, p_opt))
        mass_pos = math.exp(ref_log_ball_mass(cf.density, x_star))
    assert mass_pos > 1 - 1e-6


def test_t1_a_zero_in_a_discrete_table_also_loses_x_star():
    """The same on an int coordinate given by a table over its grid (``tabulated``)."""
    dims = (Dim(DISCRETE, 1.0, 6.0, 1.0),)
    x_star = np.array([3.0])
    table = np.array([[0.3, 0.2, 0.0, 0.2, 0.2, 0.1]])
    p_llm = mixture(dims, [1.0], np.zeros((1, 0)), np.zeros((1, 0)), [table], tabulated=(0,))
    for lam in (1 / 4, 1 / 32):
        p_opt = concentrating(dims, x_star, lam)
        for pool in (product(p_llm, p_opt), geometric(p_llm, p_opt, 1e-3)):
            log_p = np.asarray(pool.unnormalized_log_prob(dims[0].grid()[:, None]))
            assert log_p[2] == -np.inf and np.isfinite(np.delete(log_p, 2)).all()


def test_t1_vanishing_p_llm_with_positive_mass_nearby_still_concentrates():
    """The 'only if' holds at atoms, not on continuous coordinates: ``p_llm(x) ~ |x - x*|`` is 0
    at ``x*`` yet ``|x - x*| N(x*, s^2)`` puts ``1 - exp(-eps^2 / (2 s^2))`` on the ball."""
    eps = 0.1
    for s in (0.1, 0.03, 0.01):
        f = lambda x, s=s: abs(x) * st.norm.pdf(x, 0.0, s)  # noqa: E731
        inside = (
            quad(f, -eps, 0, epsabs=0, epsrel=1e-12)[0] + quad(f, 0, eps, epsabs=0, epsrel=1e-12)[0]
        )
        total = 2 * s / math.sqrt(2 * math.pi)
        assert abs(inside / total - (1 - math.exp(-(eps**2) / (2 * s**2)))) < 1e-10


def test_t1_astronomically_small_p_llm_delays_concentration():
    """``p_llm = N(0, 0.01^2)`` on ``[-1, 1]`` has ``log p_llm(0.9) ~ -4050``: positive, so the
    product with ``N(0.9, s^2)`` concentrates, but only once ``s`` is below
    ``s* = sigma sqrt(eps / (x* - eps))``, where the product's mean
    ``x* sigma^2 / (sigma^2 + s^2)`` enters the ball."""
    dims = (Dim(CONTINUOUS, -1.0, 1.0),)
    sigma, x_star, eps = 0.01, 0.9, 0.01
    p_llm = mixture(dims, [1.0], [[0.0]], [[sigma]])
    assert -4100 < float(p_llm.log_prob(np.array([[x_star]]))[0]) < -4000
    s_star = sigma * math.sqrt(eps / (x_star - eps))
    for s, far in ((0.1, True), (2 * s_star, True), (s_star / 2, False), (1e-5, False)):
        cf = closed_form(product(p_llm, mixture(dims, [1.0], [[x_star]], [[s]])))
        m = x_star * sigma**2 / (sigma**2 + s**2)
        sd = sigma * s / math.sqrt(sigma**2 + s**2)
        assert (
            abs(float(cf.density.mu[0, 0]) - m) < 1e-12
            and abs(float(cf.density.sigma[0, 0]) - sd) < 1e-15
        )
        log_mass = log_gauss_interval(
            (x_star - eps - m) / sd, (x_star + eps - m) / sd
        ) - log_gauss_interval((-1 - m) / sd, (1 - m) / sd)
        mass = math.exp(float(log_mass))
        assert abs(math.exp(ref_log_ball_mass(cf.density, [x_star], eps / 2)) - mass) < 1e-12
        assert (mass < 1e-6) if far else (mass > 1 - 1e-6), (s, mass)


def test_t1_geometric_pool_of_a_weakly_concentrating_mixture_need_not_concentrate():
    """``p_opt_n = (1 - w_n) N(0, s_n^2) + w_n N(3, 1)`` on ``[-5, 5]`` with ``w_n = 1/n``,
    ``s_n = n^-4`` tends to ``delta(0)``; ``p_llm`` uniform (positive, continuous). The geometric
    pool at ``alpha = 1/2`` is ``p_opt_n^(1/2) / Z``: the sharp kernel's share of ``Z`` shrinks
    like ``s_n^(1/2) / w_n^(1/2) = n^(-3/2)``, so the ball ``[-1, 1]`` ends with the stray kernel's
    share ``L = P(N(3, 2) in [-1, 1] | [-5, 5]) ~ 0.083``. Bracketing ``(u + v)^(1/2)`` between
    ``max(u, v)^(1/2)`` and ``u^(1/2) + v^(1/2)`` gives ``|P_n(B) - L| <= rho_n``, the ratio of the
    two parts' integrals."""
    dims = (Dim(CONTINUOUS, -5.0, 5.0),)
    a, e = 0.5, 0.5  # alpha and the exponent 1 - alpha of p_opt
    uniform = Uniform(dims)
    sd_stray = 1 / math.sqrt(e)
    log_l = log_gauss_interval(-4 / sd_stray, -2 / sd_stray) - log_gauss_interval(
        -8 / sd_stray, 2 / sd_stray
    )
    big_l = math.exp(float(log_l))
    mpmath.mp.dps = 30
    for n in (10, 100, 1000):
        w, s = 1 / n, float(n) ** -4
        p_opt = mixture(dims, [1 - w, w], [[0.0], [3.0]], [[s], [1.0]], min_kernels=2)
        assert math.exp(ref_log_ball_mass(p_opt, [0.0], 0.1)) > 1 - w  # -> delta(0)
        pool = geometric(uniform, p_opt, a)
        z = log_normalizer(pool)
        log_b = log_ball_integral(
            pool.unnormalized_log_prob, dims, [0.0], [s / math.sqrt(e)], eps=0.1
        )
        mass = math.exp(log_b - z.log_z)

        # mpmath reference of the same ratio (the uniform factor cancels)
        def k(x, m, sd):
            t = mpmath.ncdf((5 - m) / sd) - mpmath.ncdf((-5 - m) / sd)
            return mpmath.npdf(x, m, sd) / t

        f = lambda x, w=w, s=s: ((1 - w) * k(x, 0, s) + w * k(x, 3, 1)) ** e  # noqa: E731
        cuts = sorted({0.0, *(s * 2.0**i for i in range(12)), *(-s * 2.0**i for i in range(12))})
        inner = [c for c in cuts if -1 < c < 1]
        ref_b = mpmath.quad(f, [-1, *inner, 1])
        ref_z = ref_b + mpmath.quad(f, [-5, -1]) + mpmath.quad(f, [1, 5])
        assert abs(mass - float(ref_b / ref_z)) < 1e-8, (n, mass, float(ref_b / ref_z))
        # rho_n = int ((1-w) k_sharp)^e / int (w k_stray)^e, from the Gaussian closed form
        log_sharp = (
            e * math.log1p(-w) + (1 - e) / 2 * math.log(2 * math.pi * s**2) - 0.5 * math.log(e)
        )
        log_stray = e * math.log(w) + (1 - e) / 2 * math.log(2 * math.pi) - 0.5 * math.log(e)
        log_stray += float(log_gauss_interval(-8 / sd_stray, 2 / sd_stray)) - e * float(
            log_gauss_interval(-8.0, 2.0)
        )
        rho = math.exp(log_sharp - log_stray)
        assert abs(mass - big_l) <= rho + 1e-8, (n, mass, big_l, rho)
    assert rho < 1e-3 and big_l < 0.09  # P_opt_n(B) > 0.999, the pool's P(B) < 0.09
    # the product with the same p_opt_n does concentrate (weak convergence suffices there)
    p_llm = mixture(dims, [1.0], [[0.5]], [[1.0]])
    cf = closed_form(product(p_llm, p_opt))
    assert math.exp(ref_log_ball_mass(cf.density, [0.0], 0.1)) > 1 - 2e-3


# ---------------------------------------------------------------------------------------------
# T2: bias and variance
# ---------------------------------------------------------------------------------------------


def mse(a, b_a, b_b, v_a, v_b):
    return (a * b_a + (1 - a) * b_b) ** 2 + a**2 * v_a + (1 - a) ** 2 * v_b


def optimal_alpha(b_a, b_b, v_a, v_b):
    """argmin over [0, 1] of the convex quadratic :func:`mse`."""
    return min(max((v_b - b_b * (b_a - b_b)) / ((b_a - b_b) ** 2 + v_a + v_b), 0.0), 1.0)


@given(
    b_a=floats(-2.0, 2.0),
    b_b=floats(-2.0, 2.0),
    v_a=floats(0.01, 4.0),
    v_b=floats(0.01, 4.0),
    theta=floats(-10.0, 10.0),
)
def test_t2_mse_optimal_alpha_against_monte_carlo(b_a, b_b, v_a, v_b, theta):
    a_star = optimal_alpha(b_a, b_b, v_a, v_b)
    best = mse(a_star, b_a, b_b, v_a, v_b)
    grid = np.linspace(0.0, 1.0, 1001)
    assert best <= min(mse(grid, b_a, b_b, v_a, v_b)) + 1e-12
    assert best <= min(mse(0.0, b_a, b_b, v_a, v_b), mse(1.0, b_a, b_b, v_a, v_b)) + 1e-15
    # fusing helps B (alpha* > 0) exactly when MSE'(0) = 2 (b_b (b_a - b_b) - v_b) < 0
    assert (a_star > 0) == (v_b - b_b * (b_a - b_b) > 0)
    rng = np.random.default_rng(20240601)
    n = 20_000
    est_a = theta + b_a + math.sqrt(v_a) * rng.standard_normal(n)
    est_b = theta + b_b + math.sqrt(v_b) * rng.standard_normal(n)
    sq = {a: (a * est_a + (1 - a) * est_b - theta) ** 2 for a in (0.0, a_star, 1.0)}
    for a, err in sq.items():
        se = err.std(ddof=1) / math.sqrt(n)
        assert abs(err.mean() - mse(a, b_a, b_b, v_a, v_b)) <= N_SE * se, (a, err.mean(), se)
    for a in (0.0, 1.0):  # paired: alpha* is no worse than either end on the same draws
        d = sq[a_star] - sq[a]
        assert d.mean() <= N_SE * d.std(ddof=1) / math.sqrt(n) + 1e-15


@given(
    m1=floats(-5.0, 5.0),
    m2=floats(-5.0, 5.0),
    s1=floats(0.05, 5.0),
    s2=floats(0.05, 5.0),
    a=hst.sampled_from((*ALPHAS, 1.0)),
)
def test_t2_geometric_pool_of_two_gaussians_is_the_precision_weighted_gaussian(m1, m2, s1, s2, a):
    """``N(m1, s1^2)^a N(m2, s2^2)^(1-a) / Z = N(m, 1/tau)``, ``tau = a/s1^2 + (1-a)/s2^2``,
    ``m = (a m1/s1^2 + (1-a) m2/s2^2) / tau``; ``log Z`` checked against mpmath quadrature. At
    ``a = 1/2`` the weight of ``m1`` is ``s2^2 / (s1^2 + s2^2)``, the MSE-optimal ``alpha*`` of two
    unbiased estimators with variances ``s1^2``, ``s2^2``."""
    cf = closed_form(
        geometric(mixture(LINE, [1.0], [[m1]], [[s1]]), mixture(LINE, [1.0], [[m2]], [[s2]]), a)
    )
    tau = a / s1**2 + (1 - a) / s2**2
    m = (a * m1 / s1**2 + (1 - a) * m2 / s2**2) / tau
    assert abs(float(cf.density.sigma[0, 0]) - tau**-0.5) <= 1e-12 * tau**-0.5
    assert abs(float(cf.density.mu[0, 0]) - m) <= 1e-12 * (abs(m1) + abs(m2) + 1)
    mpmath.mp.dps = 20
    f = lambda x: mpmath.npdf(x, m1, s1) ** a * mpmath.npdf(x, m2, s2) ** (1 - a)  # noqa: E731
    cuts = [m + k * tau**-0.5 for k in range(-10, 11)]  # the pooled kernel, where the mass is
    ref = float(mpmath.log(mpmath.quad(f, [-mpmath.inf, *cuts, mpmath.inf])))
    assert abs(cf.log_z - ref) <= 1e-9 * (1 + abs(ref))
    w1 = (0.5 / s1**2) / (0.5 / s1**2 + 0.5 / s2**2)
    assert abs(w1 - optimal_alpha(0.0, 0.0, s1**2, s2**2)) < 1e-12


# ---------------------------------------------------------------------------------------------
# Errata
# ---------------------------------------------------------------------------------------------


@settings(max_examples=SPACE_EXAMPLES)
@given(hst.data())
def test_geometric_pool_at_alpha_one_is_p_llm(data):
    """Erratum 1: ``geometric(p_llm, p_opt, 1)`` is ``p_llm``, normalized (``log Z = 0``), even
    where ``p_opt`` is 0."""
    space = data.draw(SPACES)
    p_llm = data.draw(ft.suggestion_densities(space, 1, 4))
    p_opt = data.draw(ft.mixtures(space, 1, 4, zero_probs=True))
    x = data.draw(ft.points(space, 16))
    pool = geometric(p_llm, p_opt, 1.0)
    z = log_normalizer(pool)
    assert z.method == "exact" and abs(z.log_z) < 1e-12
    np.testing.assert_allclose(
        np.asarray(pool.unnormalized_log_prob(x)) - z.log_z,
        np.asarray(p_llm.log_prob(x)),
        rtol=1e-14,
        atol=1e-12,
    )


def seed_rule(alpha0, lr, baseline, performances, low=0.1, high=0.8):
    """The seed's adaptive update as a reader would implement it:
    ``alpha <- clip(alpha (1 + lr (perf - baseline)), 0.1, 0.8)``."""
    alphas, a = [], alpha0
    for perf in performances:
        a = min(max(a * (1 + lr * (perf - baseline)), low), high)
        alphas.append(a)
    return np.array(alphas)


@given(
    alpha0=floats(0.0, 1.0),
    lr=floats(0.0, 100.0),
    baseline=floats(-1e3, 1e3),
    performances=hst.lists(floats(-1e6, 1e6), min_size=1, max_size=200),
)
def test_seed_clipped_rule_never_lets_alpha_reach_zero(alpha0, lr, baseline, performances):
    """Erratum 3: after one update ``alpha_n`` is in ``[0.1, 0.8]`` whatever the performances
    (also in the seed's additive form ``alpha -+ rate``), so ``alpha_n -> 0`` (T1, linear) never
    holds: the linear pool's ball mass stays ``<= 1 - 0.1 (1 - P_llm(B))``."""
    alphas = seed_rule(alpha0, lr, baseline, performances)
    assert np.all(alphas >= 0.1) and np.all(alphas <= 0.8)
    additive, a = [], 0.3
    for perf in performances:
        a = min(0.8, a + 0.1) if perf > baseline else max(0.1, a - 0.1)
        additive.append(a)
    assert min(additive) >= 0.1 - 1e-12
    # the linear pool's best case (P_opt_n(B) = 1) with these alphas and P_llm(B) = 1/2
    assert np.all(alphas * 0.5 + (1 - alphas) * 1.0 <= 1 - 0.1 * 0.5 + 1e-15)


def test_method_5_as_written_returns_p_llm():
    """Erratum 2: resampling draws of ``p_opt`` with weights ``p_llm / p_opt`` (alpha = 1) gives
    draws of ``p_llm``: a chi-square test against ``p_llm``'s exact CDF accepts, against
    ``p_opt``'s it rejects; on a categorical coordinate the same against the exact table."""
    key = jax.random.key(5)
    space = SearchSpace((Param("x", Dim(CONTINUOUS, 0.0, 1.0)),))
    suggestions = [{"x": 0.3}, {"x": 0.35}, {"x": 0.8}]
    p_llm = suggestion_density(space, suggestions)
    p_opt = mixture(space.dims, [0.6, 0.4], [[0.5], [0.2]], [[0.3], [0.2]])
    run = geometric_importance_resample(p_llm, p_opt, 1.0, key, 2000, n_proposals=2**14)
    draws = run.samples[:, 0]
    kde = p_llm.components[0]
    w = np.exp(np.asarray(kde.log_weights))
    live = w > 0
    mu, sd = np.asarray(kde.mu)[live, 0], np.asarray(kde.sigma)[live, 0]
    floor = math.exp(float(p_llm.log_weights[1]))

    def cdf_llm(x):
        x = np.asarray(x)[..., None]
        a, b = (0 - mu) / sd, (1 - mu) / sd
        k = st.truncnorm.cdf(x, a, b, loc=mu, scale=sd) @ (w[live] / w[live].sum())
        return (1 - floor) * k + floor * np.clip(x[..., 0], 0, 1)

    def cdf_opt(x):
        x = np.asarray(x)[..., None]
        m, s, v = np.array([0.5, 0.2]), np.array([0.3, 0.2]), np.array([0.6, 0.4])
        return st.truncnorm.cdf(x, (0 - m) / s, (1 - m) / s, loc=m, scale=s) @ v

    assert binned_pvalue(draws, cdf_llm, n_bins=20, low=0.0, high=1.0) > ALPHA
    assert binned_pvalue(draws, cdf_opt, n_bins=20, low=0.0, high=1.0) < ALPHA
    assert abs(run.log_normalizer) <= N_SE * run.log_normalizer_se  # Z of p_llm^1 p_opt^0 is 1

    cat = SearchSpace((Param("c", Dim(CATEGORICAL, n_choices=4), choices=("a", "b", "c", "d")),))
    p_llm = suggestion_density(cat, [{"c": "a"}, {"c": "a"}, {"c": "c"}])
    p_opt = mixture(cat.dims, [1.0], np.zeros((1, 0)), np.zeros((1, 0)), [[[0.1, 0.2, 0.3, 0.4]]])
    run = geometric_importance_resample(p_llm, p_opt, 1.0, key, 2000, n_proposals=2**14)
    probs = np.exp(np.asarray(p_llm.log_prob(np.arange(4.0)[:, None])))
    assert abs(probs.sum() - 1) < 1e-12
    assert chi_square_pvalue(run.samples[:, 0], probs) > ALPHA
    assert chi_square_pvalue(run.samples[:, 0], np.array([0.1, 0.2, 0.3, 0.4])) < ALPHA


@pytest.mark.parametrize("lam", LAMBDAS)
def test_concentrating_kernel_references_agree_with_fusion(lam):
    """The scipy references of this file against fusion on one mixed space: ``P_opt(B)`` from
    :func:`opt_log_tail` and :func:`ref_log_ball_mass` against the Gauss-Legendre integral of
    fusion's ``log_prob`` over ``B``."""
    dims = (
        Dim(CONTINUOUS, -2.0, 3.0),
        Dim(LOG_DISCRETE, 1.0, 32.0, 1.0),
        Dim(DISCRETE, -1.0, 1.0, 0.25),
        Dim(CATEGORICAL, n_choices=3),
    )
    x_star = np.array([2.99, 7.0, 0.25, 2.0])
    p_opt = concentrating(dims, x_star, lam)
    mass = math.exp(log_ball_integral(p_opt.log_prob, dims, x_star, [lam]))
    assert abs(mass - math.exp(ref_log_ball_mass(p_opt, x_star))) < QUAD_TOL
    assert abs(mass - (1 - math.exp(opt_log_tail(dims, x_star, lam)))) < QUAD_TOL
