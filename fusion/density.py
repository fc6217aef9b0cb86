"""Densities on a search space: the ``LogDensity`` protocol, ``ProductKernelMixture`` and ``Uniform``.

All densities are with respect to the base measure of :mod:`fusion.space` (Lebesgue on continuous
internal coordinates, counting on discrete and categorical ones). They are JAX pytrees: arrays are
data, the space geometry (a tuple of :class:`~fusion.space.Dim`) is static metadata. ``log_prob``
maps ``(n, d)`` internal coordinates to ``(n,)`` log-densities and is jitted at this boundary.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import NamedTuple, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from fusion import kernels
from fusion._validate import integer
from fusion.kernels import require_x64
from fusion.space import (
    CATEGORICAL,
    CONTINUOUS,
    DISCRETE,
    LOG_DISCRETE,
    Dim,
    check_dims,
    grid_tolerance,
)


@runtime_checkable
class UnnormalizedLogDensity(Protocol):
    """``log p~(x)`` up to an additive constant ``log Z``, on the space ``dims``."""

    dims: tuple[Dim, ...]

    def unnormalized_log_prob(self, x: jax.Array) -> jax.Array: ...


@runtime_checkable
class LogDensity(UnnormalizedLogDensity, Protocol):
    """A normalized density: ``log_prob`` integrates (sums) to one over the base measure."""

    def log_prob(self, x: jax.Array) -> jax.Array: ...


def bucket_size(k: int, minimum: int = 1) -> int:
    """The smallest power of two that is ``>= k`` and ``>= minimum``."""
    return 1 << max(0, math.ceil(math.log2(max(k, minimum, 1))))


MAX_SAMPLE_SIZE = 2**31 - 1
"""The most draws one call makes: XLA indexes arrays with 32-bit sizes, and beyond it aborts the
process rather than raising."""


def check_sample_size(n, minimum: int = 0) -> int:
    """``n``, the number of draws, as an ``int`` in ``[minimum, MAX_SAMPLE_SIZE]``; anything
    else is a ``ValueError``."""
    require_x64("sample")
    return integer("n", n, minimum=minimum, maximum=MAX_SAMPLE_SIZE)


def checked_draws(name: str, density, key: jax.Array, n: int) -> jax.Array:
    """``density.sample(key, n)``, refused with a ``ValueError`` naming ``name`` unless it has
    shape ``(n, d)`` (a user's density may return anything)."""
    x = density.sample(key, n)
    if getattr(x, "shape", None) != (n, len(density.dims)):
        raise ValueError(
            f"{name}.sample(key, {n}) must return shape ({n}, {len(density.dims)}), got "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    return x


def check_points(x, dims: tuple[Dim, ...]) -> jax.Array:
    """Validate a batch of internal coordinates at the public boundary: shape ``(n, d)``, no NaN."""
    require_x64("log_prob")
    if isinstance(x, jax.core.Tracer):
        return x
    x = np.asarray(x, dtype=float)
    if x.ndim == 1 and len(dims) == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != len(dims):
        raise ValueError(f"x must have shape (n, {len(dims)}), got {x.shape}")
    if np.isnan(x).any():
        raise ValueError("x contains NaN")
    return jnp.asarray(x)


class _Geometry(NamedTuple):
    """The coordinates of a space as constant arrays, so each kernel formula is traced once for
    all coordinates of its kind instead of once per coordinate.

    Kernel coordinates are the numeric ones not given by a table. Arrays indexed by kernel
    coordinate (the column order of ``mu``): ``low``/``high`` are the kernel bounds,
    ``grid_low``/``grid_high``/``step`` the grid of a discrete coordinate (step 1 on continuous
    ones, where it is unused) and ``log_cells`` marks log ints, whose cells are taken in ``ln``
    units. ``continuous``/``discrete`` split the kernel coordinates; ``numeric_cols`` are their
    columns in ``x``. ``table_cols`` are the columns given by a probability table per kernel
    (categoricals, and tabulated discrete coordinates), whose point ``k`` is
    ``table_low + k * table_step``.
    """

    numeric_cols: np.ndarray
    table_cols: tuple[int, ...]
    table_low: tuple[float, ...]
    table_high: tuple[float, ...]
    table_step: tuple[float, ...]
    continuous: np.ndarray
    discrete: np.ndarray
    low: np.ndarray
    high: np.ndarray
    grid_low: np.ndarray
    grid_high: np.ndarray
    step: np.ndarray
    log_cells: np.ndarray


@functools.lru_cache(maxsize=256)
def _geometry(dims: tuple[Dim, ...], tabulated: tuple[int, ...] = ()) -> _Geometry:
    numeric = [(j, d) for j, d in enumerate(dims) if d.is_numeric and j not in tabulated]
    tables = [(j, d) for j, d in enumerate(dims) if not d.is_numeric or j in tabulated]
    bounds = np.array([d.kernel_bounds for _, d in numeric], dtype=float).reshape(-1, 2)
    return _Geometry(
        numeric_cols=np.array([j for j, _ in numeric], dtype=int),
        table_cols=tuple(j for j, _ in tables),
        table_low=tuple(0.0 if d.kind == CATEGORICAL else d.low for _, d in tables),
        table_high=tuple(d.n_choices - 1.0 if d.kind == CATEGORICAL else d.high for _, d in tables),
        table_step=tuple(1.0 if d.kind == CATEGORICAL else d.step for _, d in tables),
        continuous=np.array([i for i, (_, d) in enumerate(numeric) if d.kind == CONTINUOUS], int),
        discrete=np.array([i for i, (_, d) in enumerate(numeric) if d.kind != CONTINUOUS], int),
        low=bounds[:, 0],
        high=bounds[:, 1],
        grid_low=np.array([d.low for _, d in numeric], dtype=float),
        grid_high=np.array([d.high for _, d in numeric], dtype=float),
        step=np.array([d.step if d.kind != CONTINUOUS else 1.0 for _, d in numeric], float),
        log_cells=np.array([d.kind == LOG_DISCRETE for _, d in numeric], dtype=bool),
    )


def _log_kernel_mass(mu, sigma, left, right):
    """``log(Phi((right - mu)/sigma) - Phi((left - mu)/sigma))``: a kernel's mass on an interval."""
    return kernels.log_gauss_mass((left - mu) / sigma, (right - mu) / sigma)


def _snap_to_grid(x, g: _Geometry, cols):
    """The nearest grid point of each discrete coordinate, and whether ``x`` was on the grid."""
    low, high, step = g.grid_low[cols], g.grid_high[cols], g.step[cols]
    k = (x - low) / step
    on_grid = (
        (jnp.abs(k - jnp.round(k)) <= grid_tolerance(x, low, step))
        & (x >= low - 1e-9 * step)
        & (x <= high + 1e-9 * step)
    )
    return jnp.clip(low + jnp.round(k) * step, low, high), on_grid


def _log_cell_mass(mu, sigma, v, g: _Geometry, cols):
    """``log`` of a kernel's mass on the cell ``[v - step/2, v + step/2]`` of grid points ``v``
    (``[ln(v - 1/2), ln(v + 1/2)]`` on a log int), before truncation to the kernel bounds."""
    half = g.step[cols] / 2
    left, right = v - half, v + half
    log_cells = g.log_cells[cols]
    left = jnp.where(log_cells, jnp.log(jnp.where(log_cells, left, 1.0)), left)
    right = jnp.where(log_cells, jnp.log(jnp.where(log_cells, right, 1.0)), right)
    low, high = g.low[cols], g.high[cols]
    return _log_kernel_mass(mu, sigma, jnp.clip(left, low, high), jnp.clip(right, low, high))


def _padded_grid(dims: tuple[Dim, ...], g: _Geometry, cols, size: int) -> np.ndarray:
    """The grids of the discrete coordinates ``cols`` side by side, ``(size, len(cols))``; a short
    grid is padded with its last point, which no index reaches."""
    out = np.empty((size, len(cols)))
    for c, i in enumerate(cols):
        grid = dims[g.numeric_cols[i]].grid()
        out[:, c] = np.concatenate([grid, np.full(size - grid.size, grid[-1])])
    return out


def _grid_size(dims: tuple[Dim, ...], tabulated: tuple[int, ...] = ()) -> int:
    """The largest grid of a discrete coordinate with kernels (0 if there is none)."""
    return max(
        (
            d.n_points
            for j, d in enumerate(dims)
            if d.kind in (DISCRETE, LOG_DISCRETE) and j not in tabulated
        ),
        default=0,
    )


@jax.jit
def _cell_table(density: ProductKernelMixture) -> jax.Array:
    """``log k_kj(cell of grid point i)`` for every discrete numeric coordinate ``j``, truncation
    included, as rows ``(n_disc * n_grid, K)``: row ``j * n_grid + i`` holds grid point ``i`` of
    the ``j``-th discrete coordinate, so a lookup gathers ``K`` contiguous values.

    Adjacent cells share an edge (``v_i + step/2 = v_(i+1) - step/2``, and so in ``ln`` units on a
    log int), so the masses come from the ``n_grid + 1`` edges by
    :func:`fusion.kernels.log_gauss_cell_masses`, at half the cost of two CDFs per cell. The
    padding points repeat the last grid point: their cells have width 0 and are never read.
    """
    g = _geometry(density.dims, density.tabulated)
    dsc = g.discrete
    mu, sigma = density.mu[:, dsc], density.sigma[:, dsc]
    grid = _padded_grid(density.dims, g, dsc, _grid_size(density.dims, density.tabulated))
    half = g.step[dsc] / 2
    edges = np.concatenate([grid[:1] - half, grid + half])  # (n_grid + 1, n_disc)
    log_cells = g.log_cells[dsc]
    edges[:, log_cells] = np.log(edges[:, log_cells])
    edges = np.clip(edges, g.low[dsc], g.high[dsc])
    table = kernels.log_gauss_cell_masses((edges[:, None, :] - mu) / sigma)  # (n_grid, K, n_disc)
    table = table - _log_kernel_mass(mu, sigma, g.low[dsc], g.high[dsc])
    return jnp.transpose(table, (2, 0, 1)).reshape(-1, table.shape[1])


def _table_coordinates(g: _Geometry, density: ProductKernelMixture):
    """``(column, low, high, step, log-table)`` of each coordinate given by a table."""
    return zip(
        g.table_cols, g.table_low, g.table_high, g.table_step, density.cat_log_probs, strict=True
    )


def _add_per_coordinate(log_terms, f, columns):
    """``log_terms + sum_j f(column_j)``, one coordinate at a time.

    ``columns`` holds arrays whose leading axis runs over coordinates. Each term is an ``(n, K)``
    array, so XLA fuses the whole sum, the lookups and the final ``logsumexp`` into few passes
    over ``(n, K)`` instead of materializing the ``(n, K, d)`` terms; that is several times
    faster for TPE-sized mixtures.
    """
    for column in zip(*columns, strict=True):
        log_terms = log_terms + f(*column)
    return log_terms


@jax.jit
def _mixture_log_prob(
    density: ProductKernelMixture, x: jax.Array, cell_table: jax.Array | None = None
) -> jax.Array:
    """``log sum_k w_k prod_j k_kj(x_j)``, with one traced formula per kind of coordinate.

    Discrete coordinates read their cell masses from ``cell_table`` (see :func:`_cell_table`) when
    it is given, and compute them point by point otherwise. Points outside the support are clipped
    into it before any kernel is evaluated and masked to ``-inf`` at the end, so their gradients
    are zero, never NaN.
    """
    g = _geometry(density.dims, density.tabulated)
    n = x.shape[0]
    log_terms = jnp.broadcast_to(density.log_weights, (n, density.log_weights.shape[0]))
    valid = jnp.ones(n, dtype=bool)

    c = g.continuous
    if c.size:
        low, high = g.low[c], g.high[c]
        xc = x[:, g.numeric_cols[c]]
        valid &= jnp.all((xc >= low) & (xc <= high), axis=1)
        mu, sigma = density.mu[:, c], density.sigma[:, c]
        # the parts of log k_kj(x_j) that do not depend on x, summed over j per kernel
        log_norm = jnp.log(sigma) + kernels.LOG_SQRT_2PI + _log_kernel_mass(mu, sigma, low, high)
        log_terms = log_terms - jnp.sum(log_norm, axis=1)

        def half_square(xj, mu_j, sigma_j):
            z = (xj[:, None] - mu_j) / sigma_j
            return -0.5 * z * z

        log_terms = _add_per_coordinate(
            log_terms, half_square, (jnp.clip(xc, low, high).T, mu.T, sigma.T)
        )

    dsc = g.discrete
    if dsc.size:
        v, on_grid = _snap_to_grid(x[:, g.numeric_cols[dsc]], g, dsc)
        valid &= jnp.all(on_grid, axis=1)
        if cell_table is None:
            mu, sigma = density.mu[:, dsc], density.sigma[:, dsc]
            log_k = _log_cell_mass(mu, sigma, v[:, None, :], g, dsc)
            log_k = log_k - _log_kernel_mass(mu, sigma, g.low[dsc], g.high[dsc])
            log_terms = log_terms + jnp.sum(log_k, axis=-1)
        else:
            n_grid = cell_table.shape[0] // dsc.size
            idx = jnp.round((v - g.grid_low[dsc]) / g.step[dsc]).astype(jnp.int32)
            rows = idx + n_grid * jnp.arange(dsc.size)
            log_terms = _add_per_coordinate(log_terms, lambda r: cell_table[r], (rows.T,))

    for col, low, high, step, table in _table_coordinates(g, density):
        xj = x[:, col]
        k = (xj - low) / step
        idx = jnp.clip(jnp.round(k), 0, table.shape[1] - 1).astype(jnp.int32)
        valid &= jnp.abs(k - jnp.round(k)) <= grid_tolerance(xj, low, step)
        valid &= (xj >= low - 1e-9 * step) & (xj <= high + 1e-9 * step)
        log_terms = log_terms + table.T[idx]

    return jnp.where(valid, kernels.logsumexp(log_terms, axis=-1), -jnp.inf)


@jax.jit(static_argnums=2)
def _mixture_sample(density: ProductKernelMixture, key: jax.Array, n: int) -> jax.Array:
    """A kernel by weight, then every numeric coordinate from it in one truncated-normal draw."""
    g = _geometry(density.dims, density.tabulated)
    key_comp, key_num, key_cat = jax.random.split(key, 3)
    comp = kernels.sample_categorical(key_comp, density.log_weights, (n,))
    out = jnp.zeros((n, len(density.dims)))
    if g.numeric_cols.size:
        y = kernels.sample_truncnorm(
            key_num, density.mu[comp], density.sigma[comp], g.low, g.high, shape=(n, g.low.size)
        )
        dsc = g.discrete
        if dsc.size:
            # The cell of grid point k is [k - step/2, k + step/2] (in ln units for a log int), so
            # rounding a kernel draw gives an exact draw of the interval masses.
            yd = y[:, dsc]
            yd = jnp.where(g.log_cells[dsc], jnp.exp(yd), yd)
            y = y.at[:, dsc].set(_snap_to_grid(yd, g, dsc)[0])
        out = out.at[:, g.numeric_cols].set(y)
    cat_keys = jax.random.split(key_cat, max(len(g.table_cols), 1))
    tables = _table_coordinates(g, density)
    for key_j, (col, low, high, step, table) in zip(cat_keys, tables, strict=False):
        idx = kernels.sample_categorical(key_j, table[comp], (n,)).astype(out.dtype)
        out = out.at[:, col].set(jnp.minimum(low + step * idx, high))
    return out


@dataclasses.dataclass(frozen=True)
class ProductKernelMixture:
    """The TPE shape: ``p(x) = sum_k w_k prod_j k_kj(x_j)``.

    Each numeric coordinate ``j`` has a normal kernel ``N(mu_kj, sigma_kj^2)`` truncated to
    ``Dim.kernel_bounds``: a density on continuous coordinates, an interval mass on discrete ones.
    Each categorical coordinate has a probability table per kernel, and so does each discrete
    coordinate listed in ``tabulated`` (a table over its grid points: the form a product of two
    cell-mass kernels takes, see :func:`fusion.normalize.closed_form`).

    ``log_weights`` has shape ``(K,)``; ``mu`` and ``sigma`` have shape ``(K, n_kernel)`` over the
    numeric coordinates not tabulated; ``cat_log_probs`` holds one ``(K, n_points)`` log-table per
    table coordinate, in column order. Padding kernels carry ``log_weight = -inf``, so ``K`` can be
    a power-of-two bucket (see :func:`mixture`).
    """

    log_weights: jax.Array
    mu: jax.Array
    sigma: jax.Array
    cat_log_probs: tuple[jax.Array, ...]
    dims: tuple[Dim, ...] = dataclasses.field(metadata=dict(static=True))
    tabulated: tuple[int, ...] = dataclasses.field(default=(), metadata=dict(static=True))

    @property
    def n_kernels(self) -> int:
        return self.log_weights.shape[0]

    def log_prob(self, x: jax.Array) -> jax.Array:
        """``log p(x)`` for ``x`` of shape ``(n, d)``; ``-inf`` outside the support.

        A batch with at least as many points as the largest discrete grid first tabulates every
        cell's mass (in its own compiled call, so that XLA cannot fuse the table back into the
        lookups and recompute it per point), then looks the cells up.
        """
        x = check_points(x, self.dims)
        n_grid = _grid_size(self.dims, self.tabulated)
        table = _cell_table(self) if 0 < n_grid <= x.shape[0] else None
        return _mixture_log_prob(self, x, table)

    unnormalized_log_prob = log_prob

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """``n`` exact draws, shape ``(n, d)``: a kernel by weight, then each coordinate from it."""
        return _mixture_sample(self, key, check_sample_size(n))


jax.tree_util.register_dataclass(ProductKernelMixture)


def _float_array(name: str, value, shape: tuple[int, ...] | None = None) -> np.ndarray:
    """``value`` as a float array (of ``shape``, if given), or a ``ValueError`` naming ``name``."""
    try:
        a = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers, got {value!r}") from None
    if shape is None:
        return a
    if a.size != math.prod(shape):
        raise ValueError(
            f"{name} must have shape {shape} (kernels, numeric coordinates), got shape {a.shape}"
        )
    return a.reshape(shape)


def mixture(
    dims: tuple[Dim, ...],
    weights,
    mu,
    sigma,
    cat_probs=(),
    *,
    pad: bool = True,
    min_kernels: int = 1,
    tabulated: tuple[int, ...] = (),
) -> ProductKernelMixture:
    """Validate and build a :class:`ProductKernelMixture`, padded to a power-of-two bucket.

    Args:
      dims: the space geometry.
      weights: ``(K,)`` non-negative kernel weights; they are normalized to sum to one.
      mu, sigma: ``(K, n_kernel)`` kernel locations and scales, in kernel units (``ln`` for log),
        one column per numeric coordinate that is not tabulated.
      cat_probs: one ``(K, n_points)`` table of probabilities per table coordinate (categorical,
        or listed in ``tabulated``), in column order.
      pad: pad ``K`` to the next power of two with zero-weight kernels.
      min_kernels: pad to at least this many kernels, so that small mixtures share one shape.
      tabulated: columns of discrete coordinates given by a table over their grid points
        instead of a kernel.
    """
    require_x64("ProductKernelMixture")
    dims = check_dims(dims)
    tabulated = tuple(sorted(int(j) for j in tabulated))
    for j in tabulated:
        if not (0 <= j < len(dims) and dims[j].kind in (DISCRETE, LOG_DISCRETE)):
            raise ValueError(f"tabulated must list discrete coordinates, got column {j}")
    table_dims = [d for j, d in enumerate(dims) if not d.is_numeric or j in tabulated]
    w = _float_array("weights", weights).reshape(-1)
    k = w.shape[0]
    n_num = len(dims) - len(table_dims)
    mu = _float_array("mu", mu, (k, n_num))
    sigma = _float_array("sigma", sigma, (k, n_num))
    cat_probs = [_float_array(f"cat_probs[{j}]", c) for j, c in enumerate(cat_probs)]
    if k == 0:
        raise ValueError("weights must hold at least one kernel")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w}")
    if not np.all(np.isfinite(mu)):
        raise ValueError(f"mu must be finite, got {mu}")
    if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
        raise ValueError(f"sigma must be finite and > 0, got {sigma}")
    if len(cat_probs) != len(table_dims):
        raise ValueError(f"cat_probs must hold {len(table_dims)} tables, got {len(cat_probs)}")
    for j, (d, c) in enumerate(zip(table_dims, cat_probs, strict=True)):
        if c.shape != (k, d.n_points) or not np.all(np.isfinite(c)) or np.any(c < 0):
            raise ValueError(f"cat_probs[{j}] must be a non-negative ({k}, {d.n_points}) table")
        if np.any(c.sum(axis=1) <= 0):
            raise ValueError(f"cat_probs[{j}] has a row that sums to zero")
    with np.errstate(divide="ignore"):
        log_w = np.log(w / w.sum())
        cat_log = [np.log(c / c.sum(axis=1, keepdims=True)) for c in cat_probs]
    size = bucket_size(k, min_kernels) if pad else k
    extra = size - k
    log_w = np.concatenate([log_w, np.full(extra, -np.inf)])
    mu = np.concatenate([mu, np.zeros((extra, n_num))])
    sigma = np.concatenate([sigma, np.ones((extra, n_num))])
    cat_log = [np.concatenate([c, np.zeros((extra, c.shape[1]))]) for c in cat_log]
    # NumPy leaves: jit moves them to the device on its fast path, without a dispatch per array.
    return ProductKernelMixture(log_w, mu, sigma, tuple(cat_log), dims, tabulated)


@jax.jit
def _uniform_log_prob(density: Uniform, x: jax.Array) -> jax.Array:
    total = jnp.zeros(x.shape[0])
    for j, dim in enumerate(density.dims):
        xj = x[:, j]
        if dim.kind == CONTINUOUS:
            inside = (xj >= dim.low) & (xj <= dim.high)
        else:
            low, step = (0.0, 1.0) if dim.kind == CATEGORICAL else (dim.low, dim.step)
            k = (xj - low) / step
            inside = (jnp.abs(k - jnp.round(k)) <= grid_tolerance(xj, low, step)) & (
                (k > -0.5) & (k < dim.n_points - 0.5)
            )
        total = total + jnp.where(inside, -_log_base_measure(dim), -jnp.inf)
    return total


def _log_base_measure(dim: Dim) -> float:
    """``log`` of the base measure of a coordinate's range: its length, or its number of points."""
    return math.log(dim.high - dim.low) if dim.kind == CONTINUOUS else math.log(dim.n_points)


@jax.jit(static_argnums=2)
def _uniform_sample(density: Uniform, key: jax.Array, n: int) -> jax.Array:
    keys = jax.random.split(key, len(density.dims))
    columns = []
    for kj, dim in zip(keys, density.dims, strict=True):
        if dim.kind == CONTINUOUS:
            columns.append(jax.random.uniform(kj, (n,), minval=dim.low, maxval=dim.high))
        else:
            idx = jax.random.randint(kj, (n,), 0, dim.n_points).astype(float)
            grid = jnp.minimum(dim.low + dim.step * idx, dim.high)  # the top can land 1 ulp over
            columns.append(idx if dim.kind == CATEGORICAL else grid)
    return jnp.stack(columns, axis=1)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """The uniform density of the base measure: ``1/(high - low)`` per continuous coordinate (in
    internal units, so log-uniform on a log float) times ``1/n_points`` per discrete coordinate."""

    dims: tuple[Dim, ...] = dataclasses.field(metadata=dict(static=True))

    def __post_init__(self) -> None:
        require_x64("Uniform")
        check_dims(self.dims)
        for d in self.dims:
            if d.kind == CONTINUOUS and not (math.isfinite(d.high - d.low) and d.high > d.low):
                raise ValueError(f"a uniform density needs finite bounds with low < high, got {d}")

    def log_prob(self, x: jax.Array) -> jax.Array:
        return _uniform_log_prob(self, check_points(x, self.dims))

    unnormalized_log_prob = log_prob

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        return _uniform_sample(self, key, check_sample_size(n))


jax.tree_util.register_dataclass(Uniform)
