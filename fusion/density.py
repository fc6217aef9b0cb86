"""Densities on a search space: the ``LogDensity`` protocol, ``ProductKernelMixture`` and ``Uniform``.

All densities are with respect to the base measure of :mod:`fusion.space` (Lebesgue on continuous
internal coordinates, counting on discrete and categorical ones). They are JAX pytrees: arrays are
data, the space geometry (a tuple of :class:`~fusion.space.Dim`) is static metadata. ``log_prob``
maps ``(n, d)`` internal coordinates to ``(n,)`` log-densities and is jitted at this boundary.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from fusion import kernels
from fusion.space import CATEGORICAL, CONTINUOUS, DISCRETE, LOG_DISCRETE, Dim


@runtime_checkable
class UnnormalizedLogDensity(Protocol):
    """``log p~(x)`` up to an additive constant ``log Z``, on the space ``dims``."""

    dims: tuple[Dim, ...]

    def unnormalized_log_prob(self, x: jax.Array) -> jax.Array: ...


@runtime_checkable
class LogDensity(UnnormalizedLogDensity, Protocol):
    """A normalized density: ``log_prob`` integrates (sums) to one over the base measure."""

    def log_prob(self, x: jax.Array) -> jax.Array: ...


def require_x64(what: str) -> None:
    """Refuse to build a density in float32, where tail log-masses lose all precision."""
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{what} needs 64-bit JAX. Call jax.config.update('jax_enable_x64', True) at start-up, "
            "or work inside `with jax.enable_x64(True):`."
        )


def bucket_size(k: int) -> int:
    """The power-of-two bucket that holds ``k`` kernels (at least 1)."""
    return 1 << max(0, math.ceil(math.log2(max(k, 1))))


def check_points(x, dims: tuple[Dim, ...]) -> jax.Array:
    """Validate a batch of internal coordinates at the public boundary: shape ``(n, d)``, no NaN."""
    if isinstance(x, jax.core.Tracer):
        return x
    x = jnp.asarray(x, dtype=float)
    if x.ndim == 1 and len(dims) == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] != len(dims):
        raise ValueError(f"x must have shape (n, {len(dims)}), got {x.shape}")
    if bool(jnp.any(jnp.isnan(x))):
        raise ValueError("x contains NaN")
    return x


def _numeric_log_kernel(x, mu, sigma, dim: Dim):
    """Log-density (continuous) or log-mass (discrete) of each kernel at each point, ``(n, K)``."""
    low, high = dim.kernel_bounds
    x = x[:, None]
    if dim.kind == CONTINUOUS:
        return kernels.truncnorm_logpdf(x, mu, sigma, low, high)
    k = (x - dim.low) / dim.step
    on_grid = (
        (jnp.abs(k - jnp.round(k)) <= 1e-8 * jnp.maximum(1.0, jnp.abs(k)))
        & (x >= dim.low - 1e-9 * dim.step)
        & (x <= dim.high + 1e-9 * dim.step)
    )
    x = jnp.clip(dim.low + jnp.round(k) * dim.step, dim.low, dim.high)
    left, right = x - dim.step / 2, x + dim.step / 2
    if dim.kind == LOG_DISCRETE:
        left, right = jnp.log(left), jnp.log(right)
    value = kernels.interval_log_mass(left, right, mu, sigma, low, high)
    return jnp.where(on_grid, value, -jnp.inf)


def _categorical_log_kernel(x, log_probs):
    n_choices = log_probs.shape[-1]
    idx = jnp.round(x).astype(jnp.int32)
    valid = (jnp.abs(x - idx) < 1e-9) & (idx >= 0) & (idx < n_choices)
    value = log_probs[:, jnp.clip(idx, 0, n_choices - 1)].T
    return jnp.where(valid[:, None], value, -jnp.inf)


@jax.jit
def _mixture_log_prob(density: ProductKernelMixture, x: jax.Array) -> jax.Array:
    log_kernels = jnp.broadcast_to(density.log_weights, (x.shape[0], density.log_weights.shape[0]))
    i_num = i_cat = 0
    for j, dim in enumerate(density.dims):
        if dim.kind == CATEGORICAL:
            term = _categorical_log_kernel(x[:, j], density.cat_log_probs[i_cat])
            i_cat += 1
        else:
            term = _numeric_log_kernel(x[:, j], density.mu[:, i_num], density.sigma[:, i_num], dim)
            i_num += 1
        log_kernels = log_kernels + term
    return kernels.logsumexp(log_kernels, axis=-1)


@jax.jit(static_argnums=2)
def _mixture_sample(density: ProductKernelMixture, key: jax.Array, n: int) -> jax.Array:
    key_comp, key_num, key_cat = jax.random.split(key, 3)
    comp = jax.random.categorical(key_comp, density.log_weights, shape=(n,))
    n_num = density.mu.shape[1]
    num_keys = jax.random.split(key_num, max(n_num, 1))
    cat_keys = jax.random.split(key_cat, max(len(density.cat_log_probs), 1))
    columns = []
    i_num = i_cat = 0
    for dim in density.dims:
        if dim.kind == CATEGORICAL:
            logits = density.cat_log_probs[i_cat][comp]
            columns.append(jax.random.categorical(cat_keys[i_cat], logits).astype(float))
            i_cat += 1
            continue
        low, high = dim.kernel_bounds
        mu, sigma = density.mu[comp, i_num], density.sigma[comp, i_num]
        y = kernels.sample_truncnorm(num_keys[i_num], mu, sigma, low, high, shape=(n,))
        i_num += 1
        if dim.kind == LOG_DISCRETE:
            y = jnp.exp(y)
        if dim.kind in (DISCRETE, LOG_DISCRETE):
            # The cell of grid point k is [k - step/2, k + step/2]: rounding a kernel draw is exact.
            y = jnp.clip(
                dim.low + jnp.round((y - dim.low) / dim.step) * dim.step, dim.low, dim.high
            )
        columns.append(y)
    return jnp.stack(columns, axis=1)


@dataclasses.dataclass(frozen=True)
class ProductKernelMixture:
    """The TPE shape: ``p(x) = sum_k w_k prod_j k_kj(x_j)``.

    Each numeric coordinate ``j`` has a normal kernel ``N(mu_kj, sigma_kj^2)`` truncated to
    ``Dim.kernel_bounds``: a density on continuous coordinates, an interval mass on discrete ones.
    Each categorical coordinate has a probability table per kernel.

    ``log_weights`` has shape ``(K,)``; ``mu`` and ``sigma`` have shape ``(K, n_numeric)``;
    ``cat_log_probs`` holds one ``(K, n_choices)`` table per categorical coordinate. Padding kernels
    carry ``log_weight = -inf``, so ``K`` can be a power-of-two bucket (see :func:`mixture`).
    """

    log_weights: jax.Array
    mu: jax.Array
    sigma: jax.Array
    cat_log_probs: tuple[jax.Array, ...]
    dims: tuple[Dim, ...] = dataclasses.field(metadata=dict(static=True))

    @property
    def n_kernels(self) -> int:
        return self.log_weights.shape[0]

    def log_prob(self, x: jax.Array) -> jax.Array:
        """``log p(x)`` for ``x`` of shape ``(n, d)``; ``-inf`` outside the support."""
        return _mixture_log_prob(self, check_points(x, self.dims))

    unnormalized_log_prob = log_prob

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """``n`` exact draws, shape ``(n, d)``: a kernel by weight, then each coordinate from it."""
        return _mixture_sample(self, key, int(n))


jax.tree_util.register_dataclass(ProductKernelMixture)


def mixture(
    dims: tuple[Dim, ...],
    weights,
    mu,
    sigma,
    cat_probs=(),
    *,
    pad: bool = True,
) -> ProductKernelMixture:
    """Validate and build a :class:`ProductKernelMixture`, padded to a power-of-two bucket.

    Args:
      dims: the space geometry.
      weights: ``(K,)`` non-negative kernel weights; they are normalized to sum to one.
      mu, sigma: ``(K, n_numeric)`` kernel locations and scales, in kernel units (``ln`` for log).
      cat_probs: one ``(K, n_choices)`` table of probabilities per categorical coordinate.
      pad: pad ``K`` to the next power of two with zero-weight kernels.
    """
    require_x64("ProductKernelMixture")
    dims = tuple(dims)
    w = np.asarray(weights, dtype=float).reshape(-1)
    k = w.shape[0]
    n_num = sum(d.is_numeric for d in dims)
    n_cat = len(dims) - n_num
    mu = np.asarray(mu, dtype=float).reshape(k, n_num)
    sigma = np.asarray(sigma, dtype=float).reshape(k, n_num)
    cat_probs = [np.asarray(c, dtype=float) for c in cat_probs]
    if k == 0:
        raise ValueError("weights must hold at least one kernel")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be finite, non-negative and not all zero, got {w}")
    if not np.all(np.isfinite(mu)):
        raise ValueError(f"mu must be finite, got {mu}")
    if not np.all(np.isfinite(sigma)) or np.any(sigma <= 0):
        raise ValueError(f"sigma must be finite and > 0, got {sigma}")
    cat_dims = [d for d in dims if d.kind == CATEGORICAL]
    if len(cat_probs) != n_cat:
        raise ValueError(f"cat_probs must hold {n_cat} tables, got {len(cat_probs)}")
    for j, (d, c) in enumerate(zip(cat_dims, cat_probs, strict=True)):
        if c.shape != (k, d.n_choices) or not np.all(np.isfinite(c)) or np.any(c < 0):
            raise ValueError(f"cat_probs[{j}] must be a non-negative ({k}, {d.n_choices}) table")
        if np.any(c.sum(axis=1) <= 0):
            raise ValueError(f"cat_probs[{j}] has a row that sums to zero")
    with np.errstate(divide="ignore"):
        log_w = np.log(w / w.sum())
        cat_log = [np.log(c / c.sum(axis=1, keepdims=True)) for c in cat_probs]
    size = bucket_size(k) if pad else k
    extra = size - k
    log_w = np.concatenate([log_w, np.full(extra, -np.inf)])
    mu = np.concatenate([mu, np.zeros((extra, n_num))])
    sigma = np.concatenate([sigma, np.ones((extra, n_num))])
    cat_log = [np.concatenate([c, np.zeros((extra, c.shape[1]))]) for c in cat_log]
    return ProductKernelMixture(
        jnp.asarray(log_w),
        jnp.asarray(mu),
        jnp.asarray(sigma),
        tuple(jnp.asarray(c) for c in cat_log),
        dims,
    )


@jax.jit
def _uniform_log_prob(density: Uniform, x: jax.Array) -> jax.Array:
    total = jnp.zeros(x.shape[0])
    for j, dim in enumerate(density.dims):
        xj = x[:, j]
        if dim.kind == CONTINUOUS:
            inside = (xj >= dim.low) & (xj <= dim.high)
            term = jnp.where(inside, -math.log(dim.high - dim.low), -jnp.inf)
        else:
            grid_ok = _categorical_log_kernel(
                xj if dim.kind == CATEGORICAL else (xj - dim.low) / dim.step,
                jnp.zeros((1, dim.n_points)),
            )[:, 0]
            term = grid_ok - math.log(dim.n_points)
        total = total + term
    return total


@jax.jit(static_argnums=2)
def _uniform_sample(density: Uniform, key: jax.Array, n: int) -> jax.Array:
    keys = jax.random.split(key, len(density.dims))
    columns = []
    for kj, dim in zip(keys, density.dims, strict=True):
        if dim.kind == CONTINUOUS:
            columns.append(jax.random.uniform(kj, (n,), minval=dim.low, maxval=dim.high))
        else:
            idx = jax.random.randint(kj, (n,), 0, dim.n_points).astype(float)
            columns.append(idx if dim.kind == CATEGORICAL else dim.low + dim.step * idx)
    return jnp.stack(columns, axis=1)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """The uniform density of the base measure: ``1/(high - low)`` per continuous coordinate (in
    internal units, so log-uniform on a log float) times ``1/n_points`` per discrete coordinate."""

    dims: tuple[Dim, ...] = dataclasses.field(metadata=dict(static=True))

    def __post_init__(self) -> None:
        require_x64("Uniform")
        for d in self.dims:
            if d.kind == CONTINUOUS and not (math.isfinite(d.high - d.low) and d.high > d.low):
                raise ValueError(f"a uniform density needs finite bounds with low < high, got {d}")

    def log_prob(self, x: jax.Array) -> jax.Array:
        return _uniform_log_prob(self, check_points(x, self.dims))

    unnormalized_log_prob = log_prob

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        return _uniform_sample(self, key, int(n))


jax.tree_util.register_dataclass(Uniform)
