"""Log-masses and exact samplers of the one-dimensional kernels, all in log space.

A kernel is a normal ``N(mu, sigma^2)`` restricted to an interval ``[low, high]`` (bounds may be
infinite). On a continuous coordinate it has the density

    log k(x) = -z^2/2 - log(sigma) - log(sqrt(2 pi)) - log(Phi(b) - Phi(a)),

with ``z = (x - mu)/sigma``, ``a = (low - mu)/sigma``, ``b = (high - mu)/sigma``. On a discrete
coordinate it has the interval mass ``(Phi(z+) - Phi(z-)) / (Phi(b) - Phi(a))`` of the cell around
the point. Every difference of normal CDFs is taken as a difference of ``log_ndtr`` values on the
side of the mode where both are small, so tails 40 sigma out keep full relative precision.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erfcx, ndtri
from jax.scipy.special import log_ndtr as _jax_log_ndtr

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def log_ndtr(x: jax.Array) -> jax.Array:
    """``log Phi(x)`` to full float64 relative precision.

    Below ``x = -1`` it is ``log(erfcx(-x/sqrt 2)/2) - x^2/2``; ``jax.scipy.special.log_ndtr`` uses
    a short asymptotic series there that is off by 4e-9 absolute near ``x = -20``.
    """
    x = jnp.asarray(x, dtype=float)
    tail = x < -1.0
    xt = jnp.where(tail, jnp.maximum(x, -1e150), -2.0)
    log_tail = jnp.log(0.5 * erfcx(-xt / math.sqrt(2))) - 0.5 * xt * xt
    core = _jax_log_ndtr(jnp.where(tail, 0.0, x))
    return jnp.where(x == -jnp.inf, -jnp.inf, jnp.where(tail, log_tail, core))


def log_sub_exp(x: jax.Array, y: jax.Array) -> jax.Array:
    """``log(exp(x) - exp(y))`` for ``x >= y``; ``-inf`` when they are equal, with finite gradients."""
    d = y - x
    ok = d < 0
    d_safe = jnp.where(ok, d, -1.0)
    x_safe = jnp.where(jnp.isfinite(x), x, 0.0)
    return jnp.where(ok, x_safe + jnp.log(-jnp.expm1(d_safe)), -jnp.inf)


def logsumexp(a: jax.Array, axis: int = -1) -> jax.Array:
    """``log(sum(exp(a)))`` along ``axis``: ``-inf`` (with a zero gradient) when every term is ``-inf``."""
    m = jnp.max(a, axis=axis, keepdims=True)
    m = jax.lax.stop_gradient(jnp.where(jnp.isfinite(m), m, 0.0))
    s = jnp.sum(jnp.exp(a - m), axis=axis)
    pos = s > 0
    return jnp.where(pos, jnp.log(jnp.where(pos, s, 1.0)) + jnp.squeeze(m, axis), -jnp.inf)


def log_gauss_mass(a: jax.Array, b: jax.Array) -> jax.Array:
    """``log(Phi(b) - Phi(a))`` for ``a <= b``, accurate in both tails and in the middle."""
    a, b = jnp.broadcast_arrays(jnp.asarray(a), jnp.asarray(b))
    # Left of the mode both CDFs are small: subtract them in log space. Right of it, use symmetry.
    left = log_sub_exp(log_ndtr(b), log_ndtr(a))
    right = log_sub_exp(log_ndtr(-a), log_ndtr(-b))
    # Straddling the mode the mass is at least Phi(0)-ish: 1 - Phi(a) - Phi(-b) without cancellation.
    tails = jnp.logaddexp(log_ndtr(jnp.minimum(a, 0.0)), log_ndtr(-jnp.maximum(b, 0.0)))
    middle = jnp.log(-jnp.expm1(jnp.minimum(tails, -1e-300)))
    return jnp.where(b <= 0, left, jnp.where(a >= 0, right, middle))


def truncnorm_logpdf(x, mu, sigma, low, high):
    """Log-density of ``N(mu, sigma^2)`` truncated to ``[low, high]``; ``-inf`` outside."""
    inside = (x >= low) & (x <= high)
    z = (jnp.clip(x, low, high) - mu) / sigma
    log_z = log_gauss_mass((low - mu) / sigma, (high - mu) / sigma)
    value = -0.5 * z * z - jnp.log(sigma) - _LOG_SQRT_2PI - log_z
    return jnp.where(inside, value, -jnp.inf)


def interval_log_mass(left, right, mu, sigma, low, high):
    """Log of the mass that ``N(mu, sigma^2)`` truncated to ``[low, high]`` puts on ``[left, right]``."""
    inside = (left >= low) & (right <= high) & (left < right)
    left, right = jnp.clip(left, low, high), jnp.clip(right, low, high)
    num = log_gauss_mass((left - mu) / sigma, (right - mu) / sigma)
    den = log_gauss_mass((low - mu) / sigma, (high - mu) / sigma)
    return jnp.where(inside, num - den, -jnp.inf)


def ndtri_exp(log_p: jax.Array, n_newton: int = 4) -> jax.Array:
    """The standard normal quantile of ``exp(log_p)``, for ``log_p <= 0`` down to ``-1e300``.

    Starts from ``ndtri`` (or, deep in the lower tail, from the asymptote
    ``x ~ -sqrt(t - log t - log 2pi)`` with ``t = -2 log p``) and polishes with Newton steps on
    ``log_ndtr(x) = log_p``, whose derivative is the inverse Mills ratio.
    """
    deep = log_p < -30.0
    t = -2.0 * jnp.where(deep, log_p, -31.0)
    x_tail = -jnp.sqrt(t - jnp.log(t) - 2 * _LOG_SQRT_2PI)
    x_core = ndtri(jnp.exp(jnp.where(deep, -1.0, log_p)))
    x = jnp.where(deep, x_tail, x_core)
    for _ in range(n_newton):
        lc = log_ndtr(x)
        log_phi = -0.5 * x * x - _LOG_SQRT_2PI
        step = (lc - log_p) * jnp.exp(lc - log_phi)
        x = jnp.where(jnp.isfinite(step), x - step, x)
    return x


def sample_truncnorm(key, mu, sigma, low, high, shape=None):
    """Exact draws of ``N(mu, sigma^2)`` truncated to ``[low, high]``, by inversion in log space.

    The interval is reflected so that it lies mostly left of the mode; there ``Phi`` keeps its relative
    precision in ``log_ndtr``, so draws 40 sigma into a tail are still exact and inside the bounds.
    """
    shape = (
        jnp.broadcast_shapes(jnp.shape(mu), jnp.shape(sigma), jnp.shape(low), jnp.shape(high))
        if shape is None
        else shape
    )
    a = (low - mu) / sigma
    b = (high - mu) / sigma
    flip = (a + b) > 0
    lo = jnp.where(flip, -b, a)
    hi = jnp.where(flip, -a, b)
    u = jax.random.uniform(key, shape, minval=jnp.finfo(jnp.result_type(float)).tiny, maxval=1.0)
    log_lo, log_hi = log_ndtr(lo), log_ndtr(hi)
    log_p = jnp.logaddexp(jnp.log1p(-u) + log_lo, jnp.log(u) + log_hi)
    z = jnp.clip(ndtri_exp(log_p), lo, hi)
    z = jnp.where(flip, -z, z)
    return jnp.clip(mu + sigma * z, low, high)
