"""Pools of densities on one space: linear and log-linear (geometric, product, tempered).

- Linear pool: ``p(x) = sum_i w_i p_i(x)`` with ``w`` in the simplex. It is normalized.
- Log-linear pool: ``log p(x) = sum_i e_i log p_i(x) - log Z`` with exponents ``e_i >= 0``. Only the
  unnormalized part is known here; :mod:`fusion.normalize` computes ``Z``.

  - ``geometric(p_llm, p_opt, alpha)``: exponents ``(alpha, 1 - alpha)``. At ``alpha = 0`` it is
    ``p_opt``, at ``alpha = 1`` it is ``p_llm`` (the product is *not* an end point).
  - ``product(p, q, ...)``: exponents all one.

A term with exponent zero contributes nothing, even where its density is zero (``0 * log 0 = 0``).
All pools are pytrees whose components are pytrees, and evaluate in log space: a point outside every
support gets ``-inf`` with zero gradients.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from fusion import kernels
from fusion._validate import is_real
from fusion.density import ProductKernelMixture, check_points, check_sample_size
from fusion.space import Dim


def _is_concrete(v) -> bool:
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(v))


def _is_real_scalar_array(v) -> bool:
    """A 0-d NumPy or JAX array of a real, non-boolean dtype."""
    return (
        isinstance(v, np.ndarray | jax.Array)
        and v.ndim == 0
        and jnp.issubdtype(v.dtype, jnp.number)
        and not jnp.issubdtype(v.dtype, jnp.complexfloating)
    )


def _numbers(name: str, values, n: int) -> np.ndarray:
    """Concrete ``values`` as ``n`` floats, or a ``ValueError`` naming ``name`` and the value."""
    try:
        v = np.asarray(values, dtype=float).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must hold {n} numbers, got {values!r}") from None
    if isinstance(values, str) or v.shape != (n,):
        raise ValueError(f"{name} must hold {n} numbers, got {values!r}")
    return v


def _common_dims(densities: Sequence) -> tuple[Dim, ...]:
    if isinstance(densities, str) or not isinstance(densities, Sequence) or len(densities) == 0:
        raise ValueError(f"densities must be a non-empty sequence of densities, got {densities!r}")
    for i, d in enumerate(densities):
        if not (hasattr(d, "dims") and hasattr(d, "log_prob")):
            raise ValueError(f"densities[{i}] is not a density (no dims and log_prob): {d!r}")
    dims = densities[0].dims
    for i, d in enumerate(densities):
        if d.dims != dims:
            raise ValueError(f"densities[{i}] lives on {d.dims}, densities[0] on {dims}")
    return dims


@jax.jit
def _linear_log_prob(pool: LinearPool, x: jax.Array) -> jax.Array:
    terms = jnp.stack([c.log_prob(x) for c in pool.components], axis=-1)
    return kernels.logsumexp(terms + pool.log_weights, axis=-1)


def _as_one_mixture(pool: LinearPool) -> ProductKernelMixture | None:
    """A linear pool of mixtures of one layout as a single mixture: its kernels side by side,
    each weight times its component's. ``None`` for other pools."""
    first = pool.components[0]
    if not all(
        isinstance(c, ProductKernelMixture) and c.tabulated == first.tabulated
        for c in pool.components
    ):
        return None
    cs = pool.components
    return ProductKernelMixture(
        jnp.concatenate([c.log_weights + lw for c, lw in zip(cs, pool.log_weights, strict=True)]),
        jnp.concatenate([c.mu for c in cs]),
        jnp.concatenate([c.sigma for c in cs]),
        tuple(jnp.concatenate(t) for t in zip(*(c.cat_log_probs for c in cs), strict=True)),
        first.dims,
        first.tabulated,
    )


@jax.jit(static_argnums=2)
def _linear_sample(pool: LinearPool, key: jax.Array, n: int) -> jax.Array:
    """Mixtures of one layout: one draw of the merged mixture per point. Otherwise a component
    by weight, from ``n`` draws of every component."""
    merged = _as_one_mixture(pool)
    if merged is not None:
        return merged.sample(key, n)
    key_pick, *keys = jax.random.split(key, len(pool.components) + 1)
    pick = kernels.sample_categorical(key_pick, pool.log_weights, (n,))
    draws = jnp.stack([c.sample(k, n) for c, k in zip(pool.components, keys, strict=True)])
    return draws[pick, jnp.arange(n)]


@dataclasses.dataclass(frozen=True)
class LinearPool:
    """``p(x) = sum_i exp(log_weights_i) p_i(x)``: normalized when every ``p_i`` is."""

    components: tuple
    log_weights: jax.Array

    @property
    def dims(self) -> tuple[Dim, ...]:
        return self.components[0].dims

    def log_prob(self, x: jax.Array) -> jax.Array:
        return _linear_log_prob(self, check_points(x, self.dims))

    unnormalized_log_prob = log_prob

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """Exact draws: a component by weight, then a draw from it."""
        return _linear_sample(self, key, check_sample_size(n))


@jax.jit
def _log_linear_unnormalized(pool: LogLinearPool, x: jax.Array) -> jax.Array:
    """``sum_i e_i log p_i(x)`` with ``0 * log 0 = 0``.

    Where ``p_i(x) = 0`` the term is left out of the sum (``log p_i`` replaced by 0) and the point is
    masked to ``-inf`` at the end if ``e_i > 0``. So no ``0 * inf`` ever reaches the value or a
    gradient: masked points have zero gradients, and elsewhere ``d/de_i = log p_i`` holds at
    ``e_i = 0`` too. (Masking the product ``e * log p`` instead leaves ``0 * -inf = NaN`` in the
    gradient in ``e``, which an exponent shared by a batch spreads to every point.)
    """
    total = jnp.zeros(x.shape[0])
    alive = jnp.ones(x.shape[0], dtype=bool)
    for e, c in zip(pool.exponents, pool.components, strict=True):
        log_p = c.log_prob(x)
        zero = log_p == -jnp.inf
        total = total + e * jnp.where(zero, 0.0, log_p)
        alive &= ~(zero & (e != 0))
    return jnp.where(alive, total, -jnp.inf)


@dataclasses.dataclass(frozen=True)
class LogLinearPool:
    """``p~(x) = prod_i p_i(x)^e_i``, known up to its normalizer ``Z = integral of p~``."""

    components: tuple
    exponents: tuple

    @property
    def dims(self) -> tuple[Dim, ...]:
        return self.components[0].dims

    def unnormalized_log_prob(self, x: jax.Array) -> jax.Array:
        """``sum_i e_i log p_i(x)``, with ``0 * log 0 = 0``."""
        return _log_linear_unnormalized(self, check_points(x, self.dims))


jax.tree_util.register_dataclass(
    LinearPool, data_fields=["components", "log_weights"], meta_fields=[]
)
jax.tree_util.register_dataclass(
    LogLinearPool, data_fields=["components", "exponents"], meta_fields=[]
)


def linear_pool(densities: Sequence, weights) -> LinearPool:
    """The linear pool ``sum_i w_i p_i``; ``weights`` must be finite, >= 0 and sum to one."""
    _common_dims(densities)
    if _is_concrete(weights):
        w = _numbers("weights", weights, len(densities))
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"weights must be finite and >= 0, got {w.tolist()}")
        if abs(w.sum() - 1.0) > 1e-9:
            raise ValueError(f"weights must sum to 1, got sum {w.sum()!r} for {w.tolist()}")
    with np.errstate(divide="ignore"):
        log_w = jnp.log(jnp.asarray(weights, dtype=float))
    return LinearPool(tuple(densities), log_w)


def log_linear_pool(densities: Sequence, exponents) -> LogLinearPool:
    """The log-linear pool ``prod_i p_i^e_i / Z``; ``exponents`` must be finite, >= 0 and not
    all 0."""
    _common_dims(densities)
    if isinstance(exponents, np.ndarray | jax.Array) and exponents.ndim == 1:
        exponents = tuple(exponents)
    if not isinstance(exponents, Sequence) or len(exponents) != len(densities):
        raise ValueError(f"exponents must hold {len(densities)} numbers, got {exponents!r}")
    if _is_concrete(exponents):
        e = _numbers("exponents", exponents, len(densities))
        if not np.all(np.isfinite(e)) or np.any(e < 0):
            raise ValueError(f"exponents must be finite and >= 0, got {e.tolist()}")
        if not np.any(e > 0):
            raise ValueError(
                f"exponents must not all be 0, got {e.tolist()}: that pool is the constant 1, "
                "not a density of the components (use fusion.density.Uniform for it)"
            )
    return LogLinearPool(tuple(densities), tuple(jnp.asarray(e, dtype=float) for e in exponents))


def geometric(p_llm, p_opt, alpha) -> LogLinearPool:
    """``p_llm^alpha p_opt^(1 - alpha) / Z``, for ``alpha`` in ``[0, 1]``."""
    if _is_concrete(alpha) and not (
        (is_real(alpha) or _is_real_scalar_array(alpha)) and 0.0 <= float(alpha) <= 1.0
    ):
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    return log_linear_pool((p_llm, p_opt), (alpha, 1.0 - alpha))


def product(*densities) -> LogLinearPool:
    """``prod_i p_i / Z``: every exponent is one."""
    return log_linear_pool(densities, (1.0,) * len(densities))
