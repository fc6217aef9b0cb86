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

import functools
import math

import jax
import jax.numpy as jnp
from jax.scipy.special import erfcx, ndtri

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def require_x64(what: str) -> None:
    """Refuse to work in float32, where tail log-masses lose all precision.

    Called at every public entry point, in Python (at trace time under ``jit``), so float32 is
    refused with this message rather than computed silently.
    """
    if not jax.config.jax_enable_x64:
        raise RuntimeError(
            f"{what} needs 64-bit JAX. Call jax.config.update('jax_enable_x64', True) at start-up, "
            "or work inside `with jax.enable_x64(True):`."
        )


_ERFCX_SERIES = (1.0, -1 / 2, 3 / 4, -15 / 8, 105 / 16, -945 / 32, 10395 / 64)


def _erfcx(t: jax.Array) -> jax.Array:
    """``erfcx(t) = exp(t^2) erfc(t)`` for ``t >= 0``. From ``t = 20`` on, the asymptotic series
    ``(1 / (t sqrt(pi))) sum_k (-1)^k (2k - 1)!! / (2 t^2)^k`` to ``k = 6`` (relative error below
    1e-15 there): jax 0.10.2's ``erfcx`` returns 0 for ``t`` in ``[26.5433, 26.6417]``."""
    small = t < 20.0
    inv_t2 = 1.0 / jnp.square(jnp.where(small, 20.0, t))
    series = functools.reduce(lambda acc, c: acc * inv_t2 + c, reversed(_ERFCX_SERIES), 0.0)
    large = series / (jnp.where(small, 20.0, t) * math.sqrt(math.pi))
    return jnp.where(small, erfcx(jnp.where(small, t, 0.0)), large)


def _log_lower_tail(t: jax.Array) -> jax.Array:
    """``log Phi(-t)`` for ``t >= 0`` (``-inf`` at ``t = inf``): ``log(erfcx(t/sqrt 2)/2) - t^2/2``."""
    ax = jnp.minimum(t, 1e150)
    log_tail = jnp.log(0.5 * _erfcx(ax / math.sqrt(2))) - 0.5 * ax * ax
    return jnp.where(t == jnp.inf, -jnp.inf, log_tail)


def log_ndtr(x: jax.Array) -> jax.Array:
    """``log Phi(x)`` to full float64 relative precision, from one ``erfcx``.

    ``log Phi(-|x|) = log(erfcx(|x|/sqrt 2)/2) - x^2/2`` holds for every ``x`` and never
    underflows; above zero ``log Phi(x) = log1p(-Phi(-x))``. (``jax.scipy.special.log_ndtr`` uses a
    short asymptotic series in the lower tail that is off by 4e-9 absolute near ``x = -20``.)
    """
    require_x64("fusion.kernels.log_ndtr")
    x = jnp.asarray(x, dtype=float)
    log_lower = _log_lower_tail(jnp.abs(x))
    return jnp.where(x > 0, _log1m(jnp.exp(log_lower)), log_lower)


def _log1m(u: jax.Array) -> jax.Array:
    """``log(1 - u)`` for ``u`` in ``[0, 1]``, to full float64 precision.

    XLA's float64 ``log1p(-u)`` is off by up to 2.5e-14 (relative) for ``u`` in ``[0.3, 0.5]``;
    above ``u = 0.25``, ``1 - u`` is exact to an ulp, so ``log(1 - u)`` keeps full precision there.
    """
    return jnp.where(u > 0.25, jnp.log(1.0 - u), jnp.log1p(-u))


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
    """``log(Phi(b) - Phi(a))`` for ``a <= b``, accurate in both tails and in the middle.

    By symmetry the interval is reflected so that its centre lies left of the mode; there both CDFs
    keep their relative precision and the difference is taken in log space.
    """
    require_x64("fusion.kernels.log_gauss_mass")
    a, b = jnp.broadcast_arrays(jnp.asarray(a, dtype=float), jnp.asarray(b, dtype=float))
    flip = (a + b) > 0
    lo, hi = jnp.where(flip, -b, a), jnp.where(flip, -a, b)
    # One log_ndtr over both ends: a single copy of erfcx in the compiled program.
    log_hi, log_lo = log_ndtr(jnp.stack([hi, lo]))
    return log_sub_exp(log_hi, log_lo)


def log_gauss_cell_masses(z: jax.Array) -> jax.Array:
    """``log(Phi(z[i + 1]) - Phi(z[i]))`` for edges ``z[0] <= z[1] <= ...`` along axis 0: the
    masses of consecutive cells, from one ``log_ndtr`` per edge instead of two per cell.

    Each edge's tail ``log Phi(-|z|)`` is shared by the two cells it bounds. A cell on one side of
    0 is a difference of two tails, ``Phi(-a) - Phi(-b)`` right of it and ``Phi(b) - Phi(a)`` left of
    it, and a cell across 0 is ``1 - Phi(a) - Phi(-b)``; each keeps the precision
    :func:`log_gauss_mass` gives it (near the mode, about ``eps / (b - a)`` relative).
    """
    require_x64("fusion.kernels.log_gauss_cell_masses")
    z = jnp.asarray(z, dtype=float)
    tail = _log_lower_tail(jnp.abs(z))
    a, b, tail_a, tail_b = z[:-1], z[1:], tail[:-1], tail[1:]
    right = a >= 0
    one_side = log_sub_exp(jnp.where(right, tail_a, tail_b), jnp.where(right, tail_b, tail_a))
    across = _log1m(jnp.exp(tail_a) + jnp.exp(tail_b))
    return jnp.where(right | (b <= 0), one_side, across)


def truncnorm_logpdf(x, mu, sigma, low, high):
    """Log-density of ``N(mu, sigma^2)`` truncated to ``[low, high]``; ``-inf`` outside."""
    require_x64("fusion.kernels.truncnorm_logpdf")
    inside = (x >= low) & (x <= high)
    z = (jnp.clip(x, low, high) - mu) / sigma
    log_z = log_gauss_mass((low - mu) / sigma, (high - mu) / sigma)
    value = -0.5 * z * z - jnp.log(sigma) - LOG_SQRT_2PI - log_z
    return jnp.where(inside, value, -jnp.inf)


def interval_log_mass(left, right, mu, sigma, low, high):
    """Log of the mass that ``N(mu, sigma^2)`` truncated to ``[low, high]`` puts on ``[left, right]``."""
    require_x64("fusion.kernels.interval_log_mass")
    inside = (left >= low) & (right <= high) & (left < right)
    left, right = jnp.clip(left, low, high), jnp.clip(right, low, high)
    num = log_gauss_mass((left - mu) / sigma, (right - mu) / sigma)
    den = log_gauss_mass((low - mu) / sigma, (high - mu) / sigma)
    return jnp.where(inside, num - den, -jnp.inf)


def ndtri_exp(log_p: jax.Array, n_newton: int = 3) -> jax.Array:
    """The standard normal quantile of ``exp(log_p)``, for ``log_p <= 0`` down to ``-1e300``.

    Starts from ``ndtri`` (or, deep in the lower tail, from the asymptote
    ``x ~ -sqrt(t - log t - log 2pi)`` with ``t = -2 log p``) and polishes with Newton steps on
    ``log_ndtr(x) = log_p``, whose derivative is the inverse Mills ratio.
    """
    require_x64("fusion.kernels.ndtri_exp")
    deep = log_p < -30.0
    t = -2.0 * jnp.where(deep, log_p, -31.0)
    x_tail = -jnp.sqrt(t - jnp.log(t) - 2 * LOG_SQRT_2PI)
    x_core = ndtri(jnp.exp(jnp.where(deep, -1.0, log_p)))
    x = jnp.where(deep, x_tail, x_core)

    def newton(_, x):
        lc = log_ndtr(x)
        log_phi = -0.5 * x * x - LOG_SQRT_2PI
        step = (lc - log_p) * jnp.exp(lc - log_phi)
        return jnp.where(jnp.isfinite(step), x - step, x)

    # A loop, not an unrolled sequence: the step is traced and compiled once.
    return jax.lax.fori_loop(0, n_newton, newton, x)


def _truncnorm_by_inversion(key, a, b, shape):
    """Standard normal draws truncated to ``[a, b]`` by inversion in log space: the interval is
    reflected so that it lies mostly left of the mode, where ``Phi`` keeps its relative precision
    in ``log_ndtr``, so draws 40 sigma into a tail are still exact and inside the bounds."""
    flip = (a + b) > 0
    lo = jnp.where(flip, -b, a)
    hi = jnp.where(flip, -a, b)
    u = jax.random.uniform(key, shape, minval=jnp.finfo(jnp.result_type(float)).tiny, maxval=1.0)
    log_lo, log_hi = log_ndtr(lo), log_ndtr(hi)
    log_p = jnp.logaddexp(jnp.log1p(-u) + log_lo, jnp.log(u) + log_hi)
    z = jnp.clip(ndtri_exp(log_p), lo, hi)
    return jnp.where(flip, -z, z)


def standard_normal(key, shape) -> jax.Array:
    """Standard normal draws by inversion, ``z = Phi^-1(u)``, at the midpoints
    ``u = (k + 1/2) 2^-52`` of the float64 uniform's cells (so ``|z| <= 8.2``, symmetric).

    The same distribution as ``jax.random.normal`` (also an inversion of a 52-bit uniform, through
    ``erfinv``) at half the cost: XLA's float64 ``ndtri`` is about twice as fast as its ``erfinv``
    on CPU, and normal draws were a third of the time of a rejection round.
    """
    return ndtri(jax.random.uniform(key, shape) + 2.0**-53)


def sample_truncnorm(key, mu, sigma, low, high, shape=None, max_redraws: int = 1024):
    """Exact draws of ``N(mu, sigma^2)`` truncated to ``[low, high]``.

    A standard normal draw ``z`` is kept where it falls inside ``[a, b]`` (the bounds in standard
    units); a draw outside is replaced by an independent draw of the truncated normal by inversion
    (:func:`_truncnorm_by_inversion`). That is exact: a kept draw follows the normal conditioned
    on ``[a, b]``, and so does a replacement, whatever the chance of replacing. Inversion costs
    some ten special functions per draw against one for the normal draw, so it runs only on the
    draws outside (gathered, at most ``max_redraws`` of them; more and it runs on the whole batch).
    """
    require_x64("fusion.kernels.sample_truncnorm")
    shape = (
        jnp.broadcast_shapes(jnp.shape(mu), jnp.shape(sigma), jnp.shape(low), jnp.shape(high))
        if shape is None
        else shape
    )
    a = jnp.broadcast_to((low - mu) / sigma, shape).ravel()
    b = jnp.broadcast_to((high - mu) / sigma, shape).ravel()
    key_normal, key_redraw, key_narrow = jax.random.split(key, 3)
    z = standard_normal(key_normal, shape).ravel()
    outside = (z < a) | (z > b)
    n_outside = jnp.sum(outside)
    size = min(max_redraws, z.size)

    def redraw_few(z):
        # Unused slots point past the end: their gathers clamp, their scatters are dropped.
        (idx,) = jnp.nonzero(outside, size=size, fill_value=z.size)
        fresh = _truncnorm_by_inversion(key_redraw, a[idx], b[idx], (size,))
        return z.at[idx].set(fresh, mode="drop")

    def redraw_all(z):
        return jnp.where(outside, _truncnorm_by_inversion(key_redraw, a, b, z.shape), z)

    branch = jnp.where(n_outside == 0, 0, jnp.where(n_outside <= size, 1, 2))
    z = jax.lax.switch(branch, [lambda z: z, redraw_few, redraw_all], z)
    mu, sigma = jnp.broadcast_to(mu, shape).ravel(), jnp.broadcast_to(sigma, shape).ravel()
    low, high = jnp.broadcast_to(low, shape).ravel(), jnp.broadcast_to(high, shape).ravel()
    x = jnp.clip(mu + sigma * z, low, high)
    # Where the interval is narrow against sigma, or so far out that its standardized ends round
    # together, draw it in its own coordinate instead (see _narrow_truncnorm).
    w = (high - low) / sigma
    narrow = jnp.isfinite(w) & ((w <= 1e-3) | (jnp.maximum(jnp.abs(a), jnp.abs(b)) > 1e7 * w))
    x = jax.lax.cond(
        jnp.any(narrow),
        lambda x: jnp.where(narrow, _narrow_truncnorm(key_narrow, a, b, low, high, w), x),
        lambda x: x,
        x,
    )
    return x.reshape(shape)


def _narrow_truncnorm(key, a, b, low, high, w, max_rounds: int = 64):
    """Exact draws of the normal truncated to ``[low, high]`` from the end nearer the mode, as
    ``x = end +- (high - low) t`` with ``t`` in ``[0, 1]``: its density is

        exp(-(a + w t)^2 / 2) = exp(-a^2 / 2) exp(-c t) exp(-w^2 t^2 / 2),   c = a w,

    (from ``low``; from ``high`` the same with ``c = -b w``), so ``t`` is drawn from the tilted
    exponential ``exp(-c t)`` on ``[0, 1]`` by inversion and accepted with ``exp(-w^2 t^2 / 2)``.
    Used where ``w`` is small or ``|c|`` large, so nearly every draw is accepted; after
    ``max_rounds`` rounds (a chance below ``(1 - exp(-w^2 / 2))^64``) the last draw stands."""
    from_low = a + b >= 0
    c = jnp.where(from_low, a, -b) * w

    def draw(key):
        u = jax.random.uniform(key, (2,) + a.shape, dtype=a.dtype)
        small = jnp.abs(c) < 1e-12
        safe_c = jnp.where(small, 1.0, c)
        t = jnp.where(small, u[0], -jnp.log1p(u[0] * jnp.expm1(-safe_c)) / safe_c)
        t = jnp.clip(t, 0.0, 1.0)
        return t, u[1] < jnp.exp(-0.5 * jnp.square(w * t))

    def round_(state):
        i, t, done = state
        t_new, ok = draw(jax.random.fold_in(key, i))
        return i + 1, jnp.where(done, t, t_new), done | ok

    t, ok = draw(jax.random.fold_in(key, 0))
    _, t, _ = jax.lax.while_loop(lambda s: (s[0] < max_rounds) & ~jnp.all(s[2]), round_, (1, t, ok))
    return jnp.clip(jnp.where(from_low, low + (high - low) * t, high - (high - low) * t), low, high)


def sample_categorical(key, log_probs: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Exact draws of the index ``i`` with probability ``exp(log_probs_i) / sum_j exp(log_probs_j)``
    (along the last axis, broadcast against ``shape``), by inversion: ``i`` is the number of
    cumulative probabilities ``C_j <= u`` for one uniform ``u``. A zero probability repeats the
    previous ``C_j``, so it is never drawn. One uniform per draw, where ``jax.random.categorical``
    (Gumbel-max) takes a logarithm pair per category."""
    probs = jnp.exp(log_probs - jnp.max(log_probs, axis=-1, keepdims=True))
    cdf = jnp.cumsum(probs, axis=-1)
    cdf = cdf / cdf[..., -1:]
    u = jax.random.uniform(key, shape, dtype=cdf.dtype)
    count = jnp.sum(cdf <= u[..., None], axis=-1)
    return jnp.minimum(count, log_probs.shape[-1] - 1)
