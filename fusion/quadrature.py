"""Points and weights for sums over a search space: tensor Gauss-Legendre rules cut where densities
keep their mass, exact sums over discrete grids, and chunked evaluation of a log-density.

A rule is a set of points ``x_i`` (shape ``(N, d)``) with log-weights ``log w_i`` such that
``sum_i w_i f(x_i)`` approximates the integral of ``f`` over the base measure of
:mod:`fusion.space`: Gauss-Legendre nodes on the pieces of each continuous coordinate, weight 1 on
every grid point of a discrete or categorical one.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.polynomial.legendre import leggauss

from fusion.combine import LinearPool, LogLinearPool
from fusion.density import ProductKernelMixture, bucket_size
from fusion.space import CONTINUOUS, Dim

# Cuts around each kernel centre, in units of its scale (beyond 8 scales a kernel holds < 1e-15),
# finest first; a tight point budget takes a coarser tier.
OFFSET_TIERS = (
    np.array([-8.0, -4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 8.0]),
    np.array([-8.0, -3.0, -1.0, 1.0, 3.0, 8.0]),
    np.array([-6.0, -2.0, 2.0, 6.0]),
)
CHUNK = 8192  # points per evaluation of a large batch
MIN_BATCH = 1024  # smaller batches are padded to a power of two, at least this
_MAX_SITE_COMBINATIONS = 4096  # kernel combinations whose product centres guide the cuts


def evaluate(log_density, x: np.ndarray) -> np.ndarray:
    """``log_density(x)`` in chunks of ``CHUNK`` points, a smaller batch padded to a power of two
    (at least ``MIN_BATCH``): a method compiles a handful of shapes, whatever its settings."""
    n = x.shape[0]
    size = CHUNK if n >= CHUNK else bucket_size(n, MIN_BATCH)
    pad = (-n) % size
    padded = np.concatenate([x, np.repeat(x[:1], pad, axis=0)]) if pad else x
    chunks = [np.asarray(log_density(padded[i : i + size])) for i in range(0, len(padded), size)]
    return np.concatenate(chunks)[:n]


def kernel_sites(density, col: int) -> tuple[np.ndarray, np.ndarray]:
    """Centres and scales, most telling first, of where ``density`` keeps its mass on numeric
    coordinate ``col`` (where a quadrature rule should put its cuts).

    A mixture gives its kernels. A log-linear pool first gives, for each choice of one kernel per
    factor, the centre ``m`` and scale ``1/sqrt(tau)`` of their Gaussian power product (see the
    module docstring): a geometric or product pool keeps its mass there, which can be far from
    every factor's own kernels. Then the factors' own kernels follow.
    """
    if isinstance(density, ProductKernelMixture):
        real = np.isfinite(np.asarray(density.log_weights))
        kernel_cols = [
            j for j, d in enumerate(density.dims) if d.is_numeric and j not in density.tabulated
        ]
        if col not in kernel_cols:
            return np.zeros(0), np.zeros(0)
        i = kernel_cols.index(col)
        order = np.argsort(-np.asarray(density.log_weights)[real], kind="stable")
        return np.asarray(density.mu)[real, i][order], np.asarray(density.sigma)[real, i][order]
    if isinstance(density, LinearPool):
        sites = [kernel_sites(c, col) for c in density.components]
        return np.concatenate([s[0] for s in sites]), np.concatenate([s[1] for s in sites])
    if isinstance(density, LogLinearPool):
        factors = [
            (float(e), *kernel_sites(c, col))
            for c, e in zip(density.components, density.exponents, strict=True)
            if float(e) > 0
        ]
        own = [f for f in factors if f[1].size]  # a uniform factor does not move the mass
        centres, scales = [], []
        if own and math.prod(f[1].size for f in own) <= _MAX_SITE_COMBINATIONS:
            grids = np.meshgrid(*[np.arange(f[1].size) for f in own], indexing="ij")
            tau = sum(e / s[g.ravel()] ** 2 for (e, _, s), g in zip(own, grids, strict=True))
            m = sum(
                e * c[g.ravel()] / s[g.ravel()] ** 2
                for (e, c, s), g in zip(own, grids, strict=True)
            )
            centres.append(m / tau)
            scales.append(1.0 / np.sqrt(tau))
        centres += [f[1] for f in factors]
        scales += [f[2] for f in factors]
        return np.concatenate(centres), np.concatenate(scales)
    return np.zeros(0), np.zeros(0)


def cuts(dim: Dim, centres: np.ndarray, scales: np.ndarray, max_pieces: int) -> np.ndarray | None:
    """Cut points of a continuous coordinate: its bounds and cuts around each site, in the order
    given, while there are at most ``max_pieces`` pieces. Each site gets the finest tier of
    ``OFFSET_TIERS`` that still fits; cuts closer than a quarter of the site's scale to an
    existing cut are merged. ``None`` if not even the first site fits at the coarsest tier (a rule
    that cannot see where the mass is would report a misleading error)."""
    cuts = np.array([dim.low, dim.high])
    for i, (c, s) in enumerate(zip(centres, scales, strict=True)):
        for offsets in OFFSET_TIERS:
            new = np.clip(c + s * offsets, dim.low, dim.high)
            near = np.abs(new[:, None] - cuts[None, :]).min(axis=1) < 0.25 * s
            merged = np.unique(np.concatenate([cuts, new[~near]]))
            if merged.size - 1 <= max_pieces:
                cuts = merged
                break
        else:
            if i == 0 and s < 0.25 * (dim.high - dim.low):
                return None
            break
    return cuts


@functools.lru_cache(maxsize=64)
def legendre_nodes(n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Legendre nodes and weights on ``[-1, 1]`` (``numpy.polynomial.legendre.leggauss``)."""
    return leggauss(n_nodes)


def gauss_legendre(cuts: np.ndarray, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = legendre_nodes(n_nodes)
    a, b = cuts[:-1, None], cuts[1:, None]
    return ((a + b) / 2 + (b - a) / 2 * t).ravel(), ((b - a) / 2 * w).ravel()


def tensor(rules) -> tuple[np.ndarray, np.ndarray]:
    """Points ``(N, d)`` and log-weights ``(N,)`` of a tensor product of per-coordinate rules."""
    points = np.stack(np.meshgrid(*[r[0] for r in rules], indexing="ij"), axis=-1)
    log_w = sum(np.meshgrid(*[np.log(r[1]) for r in rules], indexing="ij"))
    return points.reshape(-1, len(rules)), np.asarray(log_w).reshape(-1)


def pieces(
    density, n_nodes: int, max_points: int, edges=None, fill: bool = True
) -> list[np.ndarray] | None:
    """Per coordinate, the cut points of a continuous one (at most ``max_points`` tensor points
    with ``n_nodes`` per piece, cut around the kernels of ``density``, see :func:`cuts`, and at
    ``edges[j]``, points where an integrand jumps) or the grid of a discrete one. With ``fill``,
    the longest pieces are halved until the budget is used, so a density without kernels (or
    with few) still gets a finer rule from a larger budget. ``None`` when the space is not
    bounded or the tensor grid would exceed ``max_points`` even with one piece."""
    dims = density.dims
    n_cont = sum(d.kind == CONTINUOUS for d in dims)
    n_grid = math.prod(d.n_points for d in dims if d.kind != CONTINUOUS)
    if any(d.kind == CONTINUOUS and not np.isfinite([d.low, d.high]).all() for d in dims):
        return None
    budget = max_points / n_grid
    if budget < 1 or (n_cont and budget < n_nodes**n_cont):
        return None
    max_pieces = max(1, int((budget ** (1 / n_cont)) // n_nodes)) if n_cont else 1
    rules = []
    for j, d in enumerate(dims):
        if d.kind == CONTINUOUS:
            c = cuts(d, *kernel_sites(density, j), max_pieces)
            if c is None:
                return None
            extra = np.asarray((edges or {}).get(j, ()), dtype=float)
            extra = extra[(extra > d.low) & (extra < d.high)]
            c = np.unique(np.concatenate([c, extra]))
            rules.append(_halve_longest(c, max_pieces) if fill else c)
        else:
            rules.append(d.grid())
    return rules


def _halve_longest(c: np.ndarray, max_pieces: int) -> np.ndarray:
    """Halve the longest pieces between the cuts ``c`` while there are fewer than ``max_pieces``."""
    while len(c) - 1 < max_pieces:
        gaps = np.diff(c)
        longest = np.flatnonzero(gaps >= gaps.max() / 2)[: max_pieces - (len(c) - 1)]
        c = np.sort(np.concatenate([c, c[longest] + gaps[longest] / 2]))
    return c


def rule(dims: tuple[Dim, ...], parts, n_nodes: int) -> tuple[np.ndarray, np.ndarray]:
    """The tensor rule with ``n_nodes`` Gauss-Legendre nodes on each piece of a continuous
    coordinate (``parts[j]`` are its cut points) and every point of a discrete one (``parts[j]``
    is its grid), as from :func:`pieces`: points ``(N, d)`` and log-weights ``(N,)``."""
    return tensor(
        [
            gauss_legendre(c, n_nodes) if d.kind == CONTINUOUS else (c, np.ones_like(c))
            for d, c in zip(dims, parts, strict=True)
        ]
    )
