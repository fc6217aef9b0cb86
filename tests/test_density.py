"""``ProductKernelMixture`` and ``Uniform``: mass one, support, and sampling against ``log_prob``.

Every reference value is computed here, by Gauss-Legendre quadrature on continuous coordinates
(``numpy.polynomial.legendre.leggauss``, the interval split around every kernel) times exact sums
over discrete and categorical grids (``Dim.grid()``), or by scipy. Nothing is read back from
``fusion`` as a reference.

The quadrature helpers at the top are shared with ``test_kde.py``, ``test_combine.py`` and
``test_rejection.py`` (pytest puts ``tests/`` on ``sys.path``).

Compilation: ``log_prob`` is jitted per space (dims are static) and per shape, so the property
tests draw their spaces from the fixed catalogue ``MIXTURE_SPACES``, pad every mixture to four
kernels (``min_kernels=4``) and evaluate in fixed-size chunks of ``CHUNK`` points.
"""

from __future__ import annotations

import functools
import math

import jax
import numpy as np
import pytest
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hst
from hypothesis.extra.numpy import arrays
from numpy.polynomial.legendre import leggauss

from fusion.density import Uniform, mixture
from fusion.space import CATEGORICAL, CONTINUOUS, DISCRETE, LOG_DISCRETE, Dim

# ---------------------------------------------------------------------------------------------
# Quadrature on a search space
# ---------------------------------------------------------------------------------------------

CHUNK = 4096
# Cuts around a kernel centre, in units of its scale. With pieces of at most ~4.5 sigma (after the
# merge below) a 10-node Gauss-Legendre rule integrates a Gaussian piece to ~1e-10 relative or
# better (2 sigma pieces: 1e-16); beyond 8 sigma a kernel holds less than 1e-15 of its mass.
OFFSETS = np.array([-8.0, -4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 8.0])
N_NODES = 10


def kernel_cuts(low, high, centers=(), scales=(), max_piece=None):
    """Sorted cut points of ``[low, high]``: the bounds, each centre + ``OFFSETS`` * its scale, and
    (if ``max_piece``) a uniform subdivision. Cuts closer than half the smallest scale are merged."""
    cuts = [np.array([low, high], dtype=float)]
    centers, scales = np.ravel(centers).astype(float), np.ravel(scales).astype(float)
    for c, s in zip(centers, scales, strict=True):
        cuts.append(c + s * OFFSETS)
    if max_piece is not None:
        cuts.append(np.linspace(low, high, int(math.ceil((high - low) / max_piece)) + 1))
    cuts = np.unique(np.clip(np.concatenate(cuts), low, high))
    min_gap = 0.5 * scales.min() if scales.size else 0.0
    kept = [cuts[0]]
    for c in cuts[1:-1]:
        if c - kept[-1] >= min_gap:
            kept.append(c)
    if cuts[-1] - kept[-1] < min_gap and len(kept) > 1:
        kept.pop()
    kept.append(cuts[-1])
    return np.array(kept)


def gl_pieces(cuts, n_nodes=N_NODES):
    """Gauss-Legendre nodes and weights on each piece ``[cuts[i], cuts[i+1]]``, shape ``(P, n)``."""
    t, w = leggauss(n_nodes)
    a, b = np.asarray(cuts[:-1]), np.asarray(cuts[1:])
    half = (b - a) / 2
    return ((a + b) / 2)[:, None] + half[:, None] * t, half[:, None] * w


def axis_rule(dim: Dim, centers=(), scales=(), max_piece=None, n_nodes=N_NODES):
    """Nodes and weights of one coordinate: Gauss-Legendre on a continuous one (cut at the kernel
    centres), the exact grid with unit weights on a discrete or categorical one."""
    if dim.kind == CONTINUOUS:
        x, w = gl_pieces(kernel_cuts(dim.low, dim.high, centers, scales, max_piece), n_nodes)
        return x.ravel(), w.ravel()
    g = dim.grid()
    return g, np.ones_like(g)


def tensor_rule(rules):
    """The tensor product of per-coordinate rules: points ``(N, d)`` and weights ``(N,)``."""
    points = np.stack(np.meshgrid(*[r[0] for r in rules], indexing="ij"), axis=-1)
    weights = functools.reduce(lambda a, b: np.multiply.outer(a, b), [r[1] for r in rules])
    return points.reshape(-1, len(rules)), np.asarray(weights).reshape(-1)


def space_rule(dims, mu=None, sigma=None, max_piece=None, n_nodes=N_NODES):
    """The tensor rule of a space, with continuous coordinates cut around the kernels ``mu``,
    ``sigma`` (``(K, n_numeric)`` in the column order of a mixture)."""
    rules, i = [], 0
    for d in dims:
        if d.is_numeric:
            c = () if mu is None else np.asarray(mu)[:, i]
            s = () if sigma is None else np.asarray(sigma)[:, i]
            rules.append(axis_rule(d, c, s, max_piece, n_nodes))
            i += 1
        else:
            rules.append(axis_rule(d))
    return tensor_rule(rules)


def evaluate(log_prob, points, chunk=CHUNK):
    """``log_prob`` at ``points`` in fixed-size chunks (one compiled shape), as a numpy array."""
    points = np.asarray(points, dtype=float)
    n = points.shape[0]
    pad = (-n) % chunk
    padded = np.concatenate([points, np.repeat(points[:1], pad, axis=0)]) if pad else points
    out = [np.asarray(log_prob(padded[i : i + chunk])) for i in range(0, padded.shape[0], chunk)]
    return np.concatenate(out)[:n]


def integrate(log_prob, points, weights, chunk=CHUNK):
    """``sum_i w_i exp(log_prob(x_i))``; fails on any NaN."""
    lp = evaluate(log_prob, points, chunk)
    assert not np.isnan(lp).any(), "log_prob returned NaN"
    return float(np.sum(weights * np.exp(lp)))


def log_integrate(log_prob, points, weights, chunk=CHUNK):
    """``log sum_i w_i exp(log_prob(x_i))`` in log space, for normalizers that underflow."""
    lp = evaluate(log_prob, points, chunk) + np.log(weights)
    m = lp.max()
    return float(m + np.log(np.sum(np.exp(lp - m))))


def cdf_1d(log_prob, cuts, chunk=CHUNK, log_z=0.0):
    """The exact CDF ``F(x) = int_low^x exp(log_prob - log_z)`` of a 1-D continuous density.

    ``F`` at every cut comes from Gauss-Legendre on each piece; between cuts the piece
    ``[cut, x]`` gets its own rule, so ``F(x)`` is exact to quadrature precision at every ``x``.
    """
    cuts = np.asarray(cuts, dtype=float)
    nodes, weights = gl_pieces(cuts)
    dens = np.exp(evaluate(log_prob, nodes.reshape(-1, 1), chunk).reshape(nodes.shape) - log_z)
    f_cuts = np.concatenate([[0.0], np.cumsum(np.sum(weights * dens, axis=1))])
    t, w = leggauss(N_NODES)

    def cdf(x):
        x = np.clip(np.atleast_1d(np.asarray(x, dtype=float)), cuts[0], cuts[-1])
        i = np.clip(np.searchsorted(cuts, x, side="right") - 1, 0, len(cuts) - 2)
        a = cuts[i]
        half = (x - a) / 2
        pts = (a + half)[:, None] + half[:, None] * t
        d = np.exp(evaluate(log_prob, pts.reshape(-1, 1), chunk).reshape(pts.shape) - log_z)
        return f_cuts[i] + np.sum(half[:, None] * w * d, axis=1)

    return cdf, f_cuts


# ---------------------------------------------------------------------------------------------
# A fixed catalogue of spaces (one compilation each) and random mixtures on them
# ---------------------------------------------------------------------------------------------

CONT = Dim(CONTINUOUS, -2.0, 3.0)
LOGF = Dim(CONTINUOUS, math.log(1e-5), math.log(1e-1))  # a log float, in ln units
INT = Dim(DISCRETE, 1.0, 5.0, 1.0)
STEPF = Dim(DISCRETE, -1.0, 1.0, 0.25)  # a float with step
LOGINT = Dim(LOG_DISCRETE, 1.0, 32.0, 1.0)  # kernels in ln units, cells [ln(k-1/2), ln(k+1/2)]
CAT3 = Dim(CATEGORICAL, n_choices=3)
CAT4 = Dim(CATEGORICAL, n_choices=4)

MIXTURE_SPACES = [
    (CONT,),
    (LOGF,),
    (INT,),
    (STEPF,),
    (LOGINT,),
    (CAT4,),
    (CONT, CAT3),
    (LOGINT, STEPF, CAT3),
    (CONT, LOGF, INT),
    (CAT3, LOGINT, CONT),
]


def numeric_ranges(dims):
    """Kernel bounds ``(low, high)`` of the numeric coordinates, shape ``(n_numeric, 2)``."""
    return np.array([d.kernel_bounds for d in dims if d.is_numeric], dtype=float).reshape(-1, 2)


@hst.composite
def mixture_params(
    draw, spaces=MIXTURE_SPACES, max_kernels=3, mu_spill=0.0, min_log_sigma=-2.0, max_log_sigma=0.3
):
    """A space from ``spaces`` and random kernels on it: weights, centres (inside the kernel bounds,
    or up to ``mu_spill`` ranges beyond them), scales from ``10**min_log_sigma`` to
    ``10**max_log_sigma`` ranges, and strictly positive categorical tables."""
    dims = draw(hst.sampled_from(spaces))
    k = draw(hst.integers(1, max_kernels))
    bounds = numeric_ranges(dims)
    n_num = bounds.shape[0]
    low, width = bounds[:, 0], bounds[:, 1] - bounds[:, 0]
    w = draw(arrays(float, k, elements=hst.floats(0.05, 1.0)))
    u = draw(arrays(float, (k, n_num), elements=hst.floats(-mu_spill, 1.0 + mu_spill)))
    t = draw(arrays(float, (k, n_num), elements=hst.floats(min_log_sigma, max_log_sigma)))
    cats = [
        draw(arrays(float, (k, d.n_choices), elements=hst.floats(0.01, 1.0)))
        for d in dims
        if d.kind == CATEGORICAL
    ]
    return dims, w, low + u * width, width * 10.0**t, cats


def build(params):
    dims, w, mu, sigma, cats = params
    return mixture(dims, w, mu, sigma, cats, min_kernels=4)


def inside_points(dims, u):
    """Points inside the support from uniforms ``u`` of shape ``(n, d)``: continuous coordinates
    spread over ``[low, high]`` (bounds included), discrete ones on their grid points."""
    cols = []
    for j, d in enumerate(dims):
        if d.kind == CONTINUOUS:
            # low + 1 * (high - low) can round one ulp past high: clip.
            cols.append(np.clip(d.low + u[:, j] * (d.high - d.low), d.low, d.high))
        else:
            g = d.grid()
            cols.append(g[np.minimum((u[:, j] * g.size).astype(int), g.size - 1)])
    x = np.stack(cols, axis=1)
    # The corners of the box: every coordinate at its lowest or highest support point.
    lo = [d.low if d.kind == CONTINUOUS else d.grid()[0] for d in dims]
    hi = [d.high if d.kind == CONTINUOUS else d.grid()[-1] for d in dims]
    return np.concatenate([x, [lo, hi]])


def outside_points(dims):
    """Points just off the support: each coordinate in turn moved out of bounds or off the grid
    while the others stay inside."""
    base = np.array([d.low if d.kind == CONTINUOUS else d.grid()[0] for d in dims])
    bad = []
    for j, d in enumerate(dims):
        if d.kind == CONTINUOUS:
            r = d.high - d.low
            values = [d.low - 1e-9 * r, d.low - r, d.high + 1e-9 * r, d.high + 10 * r, -1e300]
        elif d.kind == CATEGORICAL:
            values = [-1.0, float(d.n_choices), 0.5, d.n_choices - 0.5, 1e6]
        else:
            values = [d.low - d.step, d.high + d.step, d.low + 0.5 * d.step, d.low + 0.3 * d.step]
            values += [d.high - 0.4 * d.step, d.high + 100 * d.step]
            if d.kind == LOG_DISCRETE:
                values += [0.0, -3.0]
        for v in values:
            x = base.copy()
            x[j] = v
            bad.append(x)
    return np.array(bad)


# ---------------------------------------------------------------------------------------------
# Mass one
# ---------------------------------------------------------------------------------------------


# Every space of the catalogue is a case of its own, so each is covered; hypothesis runs a fifth
# of the profile's examples on each (6 under ``ci``, 200 under ``thorough``).
PER_SPACE = settings(max_examples=max(3, settings().max_examples // 5))
SPACE_IDS = [
    "cont",
    "logfloat",
    "int",
    "stepfloat",
    "logint",
    "cat4",
    "cont-cat3",
    "logint-stepfloat-cat3",
    "cont-logfloat-int",
    "cat3-logint-cont",
]


@pytest.mark.parametrize("dims", MIXTURE_SPACES, ids=SPACE_IDS)
@PER_SPACE
@given(data=hst.data())
def test_mixture_mass_is_one(dims, data):
    params = data.draw(mixture_params(spaces=[dims]))
    m = build(params)
    _, _, mu, sigma, _ = params
    x, w = space_rule(dims, mu, sigma)
    assert abs(integrate(m.log_prob, x, w) - 1.0) < 1e-8


@pytest.mark.parametrize("dims", MIXTURE_SPACES, ids=SPACE_IDS)
def test_uniform_mass_is_one_and_zero_outside(dims):
    u = Uniform(dims)
    x, w = space_rule(dims)
    assert abs(integrate(u.log_prob, x, w) - 1.0) < 1e-12
    assert np.all(evaluate(u.log_prob, outside_points(dims)) == -np.inf)


def test_mixture_mass_with_many_narrow_kernels():
    # 40 kernels of width 1e-3 of the range on a 2-D mixed space, bucketed to 64.
    rng = np.random.default_rng(5)
    dims = (CONT, LOGINT)
    bounds = numeric_ranges(dims)
    width = bounds[:, 1] - bounds[:, 0]
    mu = bounds[:, 0] + rng.uniform(size=(40, 2)) * width
    sigma = np.full((40, 2), 1e-3) * width
    m = mixture(dims, rng.uniform(size=40), mu, sigma)
    assert m.n_kernels == 64
    x, w = space_rule(dims, mu, sigma)
    assert abs(integrate(m.log_prob, x, w) - 1.0) < 1e-8


def _norm_mass(a, b):
    """``Phi(b) - Phi(a)``, from the upper tail when ``a > 0`` so that it keeps its digits."""
    return np.where(a > 0, st.norm.sf(a) - st.norm.sf(b), st.norm.cdf(b) - st.norm.cdf(a))


def scipy_log_mixture_nd(dims, w, mu, sigma, cats, x):
    """The reference ``log sum_k w_k prod_j k_kj(x_j)`` from scipy: truncated-normal densities on
    continuous coordinates, cell masses ``[v - step/2, v + step/2]`` (``[ln(v - 1/2), ln(v + 1/2)]``
    for a log int) over the kernel bounds on discrete ones, and the tables on categorical ones."""
    w = np.asarray(w, dtype=float) / np.sum(w)
    terms = np.tile(np.log(w), (x.shape[0], 1))
    i = c = 0
    for j, d in enumerate(dims):
        if d.kind == CATEGORICAL:
            table = np.asarray(cats[c]) / np.sum(cats[c], axis=1, keepdims=True)
            terms = terms + np.log(table[:, x[:, j].astype(int)].T)
            c += 1
            continue
        m, s = mu[:, i], sigma[:, i]
        low, high = d.kernel_bounds
        z_mass = _norm_mass((low - m) / s, (high - m) / s)
        v = x[:, j][:, None]
        if d.kind == CONTINUOUS:
            terms = terms + st.norm.logpdf(v, m, s) - np.log(z_mass)
        else:
            left, right = v - d.step / 2, v + d.step / 2
            if d.kind == LOG_DISCRETE:
                left, right = np.log(left), np.log(right)
            cell = _norm_mass((left - m) / s, (right - m) / s)
            terms = terms + np.log(cell) - np.log(z_mass)
        i += 1
    return np.logaddexp.reduce(terms, axis=1)


@pytest.mark.parametrize("dims", MIXTURE_SPACES, ids=SPACE_IDS)
def test_mixture_log_prob_matches_scipy_on_every_kind(dims):
    rng = np.random.default_rng(0)
    bounds = numeric_ranges(dims)
    width = bounds[:, 1] - bounds[:, 0]
    k, n_num = 3, bounds.shape[0]
    mu = bounds[:, 0] + rng.uniform(size=(k, n_num)) * width
    sigma = width * 10.0 ** rng.uniform(-1.2, 0.0, size=(k, n_num))
    cats = [rng.uniform(0.1, 1.0, size=(k, d.n_choices)) for d in dims if d.kind == CATEGORICAL]
    w = rng.uniform(0.1, 1.0, size=k)
    m = mixture(dims, w, mu, sigma, cats)
    x = inside_points(dims, rng.uniform(size=(64, len(dims))))
    ref = scipy_log_mixture_nd(dims, w, mu, sigma, cats, x)
    np.testing.assert_allclose(evaluate(m.log_prob, x), ref, rtol=1e-11, atol=1e-12)


@pytest.mark.parametrize(
    "dims", [d for d in MIXTURE_SPACES if any(c.kind in (DISCRETE, LOG_DISCRETE) for c in d)]
)
def test_tabulated_and_direct_cell_masses_agree(dims):
    """A batch with at least as many points as a grid tabulates each cell's mass once; a smaller
    batch evaluates the cells point by point. Both must agree to rounding, and on every -inf."""
    rng = np.random.default_rng(1)
    bounds = numeric_ranges(dims)
    width = bounds[:, 1] - bounds[:, 0]
    k, n_num = 5, bounds.shape[0]
    mu = bounds[:, 0] + rng.uniform(-0.5, 1.5, size=(k, n_num)) * width
    sigma = width * 10.0 ** rng.uniform(-2.5, 0.0, size=(k, n_num))
    cats = [rng.uniform(0.1, 1.0, size=(k, d.n_choices)) for d in dims if d.kind == CATEGORICAL]
    m = mixture(dims, rng.uniform(0.1, 1.0, size=k), mu, sigma, cats)
    inside = inside_points(dims, rng.uniform(size=(64, len(dims))))
    x = np.concatenate([inside, outside_points(dims)])
    assert x.shape[0] >= max(d.n_points for d in dims if d.kind != CONTINUOUS)
    batched = np.asarray(m.log_prob(x))
    one_by_one = np.concatenate([np.asarray(m.log_prob(row[None])) for row in x])
    np.testing.assert_allclose(batched, one_by_one, rtol=1e-13, atol=1e-13)
    n_in = inside.shape[0]
    assert np.isfinite(batched[:n_in]).all() and np.isneginf(batched[n_in:]).all()


# ---------------------------------------------------------------------------------------------
# Support: finite inside, -inf outside and off the grid
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dims", MIXTURE_SPACES, ids=SPACE_IDS)
@PER_SPACE
@given(data=hst.data(), u=arrays(float, (32, 3), elements=hst.floats(0.0, 1.0)))
def test_mixture_log_prob_finite_inside_and_minus_inf_outside(dims, data, u):
    # Centres up to two ranges outside the bounds and scales down to 0.3% of the range: kernels
    # reach ~700 sigma into their tails, where a log-space kernel must stay finite.
    m = build(data.draw(mixture_params(spaces=[dims], mu_spill=2.0, min_log_sigma=-2.5)))
    inside = evaluate(m.log_prob, inside_points(dims, u[:, : len(dims)]))
    assert np.all(np.isfinite(inside)), inside
    assert np.all(evaluate(m.log_prob, outside_points(dims)) == -np.inf)


def test_log_prob_rejects_nan_and_bad_shapes():
    m = mixture((CONT, CAT3), [1.0], [[0.0]], [[1.0]], [[[1.0, 1.0, 1.0]]])
    with pytest.raises(ValueError, match="NaN"):
        m.log_prob(np.array([[np.nan, 0.0]]))
    with pytest.raises(ValueError, match="shape"):
        m.log_prob(np.zeros((4, 3)))


def test_grid_points_near_the_top_of_a_decimal_grid_are_on_the_grid():
    # 0.1 * k lands a few ulps off the decimal grid; every grid point must count, with mass 1.
    dims = (Dim(DISCRETE, 0.1, 0.9, 0.1),)
    m = mixture(dims, [1.0, 1.0], [[0.2], [0.85]], [[0.1], [0.3]])
    g = dims[0].grid()
    lp = evaluate(m.log_prob, (0.1 + 0.1 * np.arange(9))[:, None])
    assert np.all(np.isfinite(lp))
    assert abs(np.exp(evaluate(m.log_prob, g[:, None])).sum() - 1.0) < 1e-12


# ---------------------------------------------------------------------------------------------
# Sampling against log_prob (goodness of fit)
#
# Each test uses a fixed seed and a p-value threshold of 1e-4: under a correct sampler a test
# fails with probability 1e-4 per statistic for a fresh seed (about 1e-3 for the whole section),
# and at these fixed seeds it is deterministic.
# ---------------------------------------------------------------------------------------------

P_MIN = 1e-4


def test_sample_continuous_mixture_ks_and_chi_square():
    dims = (CONT,)
    mu = np.array([[-2.0], [0.3], [2.9], [1.0]])  # one centre on the lower bound
    sigma = np.array([[0.4], [0.05], [1.5], [0.01]])
    m = mixture(dims, [0.3, 0.2, 0.4, 0.1], mu, sigma)
    s = np.asarray(m.sample(jax.random.key(11), 20_000))
    assert s.shape == (20_000, 1)
    assert np.all((s >= CONT.low) & (s <= CONT.high))
    cuts = kernel_cuts(CONT.low, CONT.high, mu, sigma, max_piece=0.05)
    cdf, f_cuts = cdf_1d(m.log_prob, cuts)
    assert abs(f_cuts[-1] - 1.0) < 1e-10
    assert st.kstest(s[:, 0], cdf).pvalue > P_MIN
    # Chi-square on 40 bins of equal probability (edges from the CDF table, probabilities exact).
    edges = np.interp(np.linspace(0, 1, 41), f_cuts, cuts)
    edges[0], edges[-1] = CONT.low, CONT.high
    edges = np.unique(edges)
    p = np.diff(cdf(edges))
    p[-1] += 1.0 - p.sum()  # the last bin closes the total at exactly one
    counts = np.histogram(s[:, 0], edges)[0]
    assert st.chisquare(counts, p * s.shape[0]).pvalue > P_MIN


def _chi_square_cells(counts, expected, min_expected=5.0):
    """Chi-square p-value with cells below ``min_expected`` pooled into one."""
    small = expected < min_expected
    c = np.append(counts[~small], counts[small].sum())
    e = np.append(expected[~small], expected[small].sum())
    if e[-1] == 0:
        c, e = c[:-1], e[:-1]
    return st.chisquare(c, e * c.sum() / e.sum()).pvalue


def test_sample_discrete_and_categorical_joint_chi_square():
    # Log int, float with step and categorical: the joint table over all 32 * 9 * 3 cells, whose
    # kernel-dependent categorical tables also test that every coordinate comes from one kernel.
    dims = (LOGINT, STEPF, CAT3)
    mu = np.array([[math.log(2.0), -0.9], [math.log(20.0), 0.4], [math.log(1.0), 1.0]])
    sigma = np.array([[0.3, 0.2], [1.0, 0.05], [0.05, 1.0]])
    cats = [np.array([[0.8, 0.1, 0.1], [0.05, 0.05, 0.9], [0.2, 0.6, 0.2]])]
    m = mixture(dims, [0.5, 0.3, 0.2], mu, sigma, cats)
    n = 60_000
    s = np.asarray(m.sample(jax.random.key(3), n))
    x, _ = space_rule(dims)
    p = np.exp(evaluate(m.log_prob, x))
    assert abs(p.sum() - 1.0) < 1e-12
    # Every draw is a support point; count the draws per support point.
    index = {tuple(row): i for i, row in enumerate(x)}
    cells = np.array([index.get(tuple(row), -1) for row in s])
    assert np.all(cells >= 0), s[cells < 0][:5]
    counts = np.bincount(cells, minlength=len(x))
    assert _chi_square_cells(counts, n * p) > P_MIN
    # The log-int marginal alone (more power for an error in its ln-cells).
    marg = p.reshape(32, 9, 3).sum(axis=(1, 2))
    assert _chi_square_cells(counts.reshape(32, 9, 3).sum(axis=(1, 2)), n * marg) > P_MIN


def test_sample_mixed_continuous_categorical_chi_square():
    # 10 bins of the continuous coordinate times 3 categories; cell masses by quadrature.
    dims = (CONT, CAT3)
    mu, sigma = np.array([[-1.0], [2.0]]), np.array([[0.3], [0.8]])
    cats = [np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])]
    m = mixture(dims, [0.6, 0.4], mu, sigma, cats)
    n = 30_000
    s = np.asarray(m.sample(jax.random.key(8), n))
    assert set(np.unique(s[:, 1])) <= {0.0, 1.0, 2.0}
    edges = np.linspace(CONT.low, CONT.high, 11)
    cuts = np.unique(np.concatenate([kernel_cuts(CONT.low, CONT.high, mu, sigma), edges]))
    nodes, weights = gl_pieces(cuts)
    bin_of_piece = np.searchsorted(edges, (cuts[:-1] + cuts[1:]) / 2) - 1
    expected = np.zeros((10, 3))
    for c in range(3):
        pts = np.stack([nodes.ravel(), np.full(nodes.size, float(c))], axis=1)
        piece_mass = np.sum(weights * np.exp(evaluate(m.log_prob, pts).reshape(nodes.shape)), 1)
        np.add.at(expected[:, c], bin_of_piece, piece_mass)
    assert abs(expected.sum() - 1.0) < 1e-10
    counts = np.zeros((10, 3))
    b = np.clip(np.searchsorted(edges, s[:, 0], side="right") - 1, 0, 9)
    np.add.at(counts, (b, s[:, 1].astype(int)), 1)
    assert _chi_square_cells(counts.ravel(), n * expected.ravel()) > P_MIN


@pytest.mark.parametrize(
    "dim,off_grid",
    [
        (Dim(DISCRETE, 0.0, 1e9, 1.0), [123456789.4, 999999999.5, 0.5, 1e9 - 0.3]),
        (Dim(LOG_DISCRETE, 1.0, 1e9, 1.0), [999999999.5, 123456789.25, 1.5]),
        (Dim(DISCRETE, 0.1, 0.7, 0.1), [0.15, 0.65, 0.1 + 1e-6]),
    ],
)
def test_off_grid_points_of_large_grids_are_outside_the_support(dim, off_grid):
    """The on-grid slack is absolute in steps (plus rounding error), not relative to the index,
    so half a step off the grid is off it even 10**9 steps from ``low``."""
    m = mixture((dim,), [1.0], [[np.mean(dim.kernel_bounds)]], [[np.ptp(dim.kernel_bounds)]])
    u = Uniform((dim,))
    on_grid = np.array([[dim.low], [dim.high], [dim.low + 3 * dim.step], [dim.high - dim.step]])
    for density in (m, u):
        assert np.isneginf(np.asarray(density.log_prob(np.array(off_grid)[:, None]))).all()
        assert np.isfinite(np.asarray(density.log_prob(on_grid))).all()
