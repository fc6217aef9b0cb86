"""Importance resampling: draw from a proposal ``q``, weight by ``p~ / q``, resample.

For a target ``p = p~ / Z`` known up to ``Z`` and a normalized proposal ``q`` whose support covers
the target's, ``N`` proposals ``x_i ~ q`` get the importance weights

    log w_i = log p~(x_i) - log q(x_i),

normalized in log space, ``log W_i = log w_i - logsumexp_j(log w_j)``. Resampling ``n`` indices with
probabilities ``W_i`` (systematically, see :func:`systematic_resample`) gives ``n`` draws whose
distribution tends to ``p`` as ``N`` grows; for finite ``N`` the draws are only approximately from
``p`` (self-normalized importance sampling has an ``O(1/N)`` bias) and repeat proposals.

The same weights estimate the normalizer, ``Z = E_q[p~ / q]``, by

    log Z ~ logsumexp(log w) - log N,

with the delta-method standard error ``sd(w / mean w) / sqrt(N)`` of :mod:`fusion.normalize`.

How well ``q`` covers ``p`` is read from Kish's effective sample size

    ESS = (sum_i w_i)^2 / sum_i w_i^2 = exp(2 logsumexp(log w) - logsumexp(2 log w)),

which is ``N`` for equal weights and 1 when a single weight dominates. For large ``N``,
``ESS / N ~ 1 / (1 + chi^2(p || q))``. Below a fraction ``min_ess_fraction`` of ``N`` the run warns
(:class:`LowEffectiveSampleSize`) or raises (:class:`LowEffectiveSampleSizeError`); the default
floor, :data:`MIN_ESS_FRACTION` = 0.01, is argued where it is defined. A high ESS does
not prove coverage: a mode of ``p`` where ``q`` drew nothing leaves no trace in the weights.

**The seed's method 5, and the geometric pool.** The seed document proposes drawing from ``p_opt``
and resampling with the weights ``p_llm / p_opt``. Those are the importance weights of the target
``p_llm`` itself, so its draws follow ``p_llm``: Optuna's density only serves as the proposal, and
nothing is combined. Raising the ratio to a power ``alpha`` in ``[0, 1]``,

    log w = alpha (log p_llm - log p_opt),

makes the weights those of the target ``p_llm^alpha p_opt^(1 - alpha)``, the geometric pool
:func:`fusion.combine.geometric` (``p_opt`` at ``alpha = 0``, ``p_llm`` at ``alpha = 1``, the seed's
method 5). :func:`geometric_importance_resample` does that; :func:`importance_resample` takes any
target and any proposal.
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.special
from jax.scipy.special import logsumexp

from fusion._validate import integer, is_real, prng_key, pytree_of_arrays, unit_interval
from fusion.combine import LogLinearPool
from fusion.density import MAX_SAMPLE_SIZE, check_points, checked_draws
from fusion.kernels import require_x64
from fusion.normalize import _log_mean_and_se, default_proposal
from fusion.quadrature import CHUNK

ON_LOW_ESS = ("warn", "error")
MIN_ESS_FRACTION = 0.01
"""Default floor on ``ESS / N``.

At 1% the second moment of the normalized weights, ``E_q[(w / Z)^2] ~ N / ESS``, is 100, i.e.
``chi^2(p || q) ~ 99``. The estimate of ``log Z`` then has a relative standard error of about
``sqrt(99 / N)`` (0.31 at ``N = 1024``); at ``N = 1024`` the weights rest on some 10 points, and
at ``N = 4 n`` (the default for ``n >= 256``) the ``n`` draws rest on ``0.04 n`` effective proposals,
each repeated about 25 times. Below that a handful of points dominate the weights, and the ESS
computed from them too. The floor is not higher because useful pools sit close above it: for
``N(0, 0.05^2)`` and ``N(0, 0.3^2)`` at ``alpha = 1/2``, proposed by the broad one, ``ESS / N`` is
0.32 per coordinate (``E_q[(p/q)^2] = b^2 / (a sqrt(2 b^2 - a^2))`` for Gaussians of scales ``a``
(the pool) and ``b``), so 3% in three dimensions: such a run is sound given enough proposals."""


class LowEffectiveSampleSize(UserWarning):
    """The effective sample size of an importance resampling run is below ``min_ess_fraction``."""


class LowEffectiveSampleSizeError(RuntimeError):
    """The effective sample size is below ``min_ess_fraction`` (with ``on_low_ess="error"``), or
    every importance weight is zero."""


class ImportanceResult(NamedTuple):
    """Resampled draws and what the weights say about the target.

    ``samples`` ``(n, d)`` are ``proposals[indices]``; ``log_weights`` ``(N,)`` are the normalized
    log-weights of the ``N = n_proposals`` proposals (``logsumexp(log_weights) = 0``), so weighted
    estimates can use all of them. ``ess`` is Kish's effective sample size and ``ess_fraction``
    ``ess / N``. ``log_normalizer`` estimates ``log Z = log E_q[p~ / q]`` of the target, with
    delta-method standard error ``log_normalizer_se``.
    """

    samples: np.ndarray
    indices: np.ndarray
    proposals: np.ndarray
    log_weights: np.ndarray
    ess: float
    ess_fraction: float
    log_normalizer: float
    log_normalizer_se: float
    n_proposals: int


# ---------------------------------------------------------------------------------------------
# The pieces: weights, effective sample size, systematic resampling (all jittable)
# ---------------------------------------------------------------------------------------------


def _log_weights(target, proposal, x: jax.Array) -> jax.Array:
    """``log w(x) = log p~(x) - log q(x)``."""
    return target.unnormalized_log_prob(x) - proposal.log_prob(x)


def _geometric_log_weights(p_llm, p_opt, alpha: jax.Array, x: jax.Array) -> jax.Array:
    """``log w(x) = alpha (log p_llm(x) - log p_opt(x))``, with ``0 * log 0 = 0`` at ``alpha = 0``
    (where ``p_opt(x) > 0``: a proposal outside its own support still shows as ``+inf`` or NaN)."""
    log_q = p_opt.log_prob(x)
    log_ratio = p_llm.log_prob(x) - log_q
    return jnp.where((alpha == 0) & (log_q > -jnp.inf), 0.0, alpha * log_ratio)


def _kish_ess(log_w: jax.Array) -> jax.Array:
    """``(sum w)^2 / sum w^2`` with ``w = exp(log w - max(log w))``; 0 if every weight is zero.

    Taking out the maximum first makes it exact for any shift: both sums lie in ``[1, N]``, while
    ``2 lse(log w)`` and ``lse(2 log w)`` are each ``2 max`` plus order one, and near ``1e300``
    their difference would be lost to rounding.
    """
    top = jnp.max(log_w)
    w = jnp.exp(log_w - jnp.where(jnp.isfinite(top), top, 0.0))
    return jnp.where(top > -jnp.inf, jnp.sum(w) ** 2 / jnp.sum(w * w), 0.0)


def _normalize(log_w: jax.Array) -> jax.Array:
    """``log w - logsumexp(log w)``; all ``-inf`` if every weight is zero."""
    total = logsumexp(log_w)
    return jnp.where(jnp.isfinite(total), log_w - total, -jnp.inf)


def _systematic(key: jax.Array, log_w: jax.Array, n: int) -> jax.Array:
    """Indices ``i_k = min{i : C_i > u_k}`` for ``u_k = (U + k) / n``, ``k = 0 .. n - 1``, with one
    ``U ~ Uniform[0, 1)`` and ``C`` the cumulative normalized weights (``C_(N-1) = 1`` exactly)."""
    cdf = jnp.cumsum(jnp.exp(_normalize(log_w)))
    cdf = cdf / cdf[-1]
    u = (jax.random.uniform(key, dtype=cdf.dtype) + jnp.arange(n)) / n
    # (U + n - 1) / n can round up to 1; below 1, u_k always finds an index.
    u = jnp.minimum(u, jnp.nextafter(jnp.asarray(1.0, cdf.dtype), 0.0))
    # A zero weight repeats the previous C_i, so side="right" never picks it.
    return jnp.searchsorted(cdf, u, side="right")


def _in_chunks(log_weight_fn, x: jax.Array) -> jax.Array:
    """``log_weight_fn(x)`` over chunks of ``CHUNK`` rows (a ``lax.map``), so that memory stays
    bounded by the chunk however many proposals there are."""
    n, d = x.shape
    if n <= CHUNK:
        return log_weight_fn(x)
    pad = (-n) % CHUNK
    padded = jnp.concatenate([x, jnp.broadcast_to(x[:1], (pad, d))])
    return jax.lax.map(log_weight_fn, padded.reshape(-1, CHUNK, d)).reshape(-1)[:n]


class _Run(NamedTuple):
    log_w: jax.Array  # unnormalized
    indices: jax.Array
    ess: jax.Array


def _weigh_and_resample(log_weight_fn, x: jax.Array, key: jax.Array, n: int) -> _Run:
    log_w = _in_chunks(log_weight_fn, x)
    return _Run(log_w, _systematic(key, log_w, n), _kish_ess(log_w))


@jax.jit(static_argnums=4)
def _importance_core(target, proposal, x, key, n: int) -> _Run:
    """Weigh the proposals ``x`` and resample ``n`` of them: one compiled run per space and
    shapes, the densities being arguments, never captured."""
    weigh = functools.partial(_log_weights, target, proposal)
    return _weigh_and_resample(weigh, x, key, n)


@jax.jit(static_argnums=5)
def _geometric_core(p_llm, p_opt, alpha, x, key, n: int) -> _Run:
    weigh = functools.partial(_geometric_log_weights, p_llm, p_opt, alpha)
    return _weigh_and_resample(weigh, x, key, n)


_kish_ess_jit = jax.jit(_kish_ess)
_systematic_jit = jax.jit(_systematic, static_argnums=2)
_log_weights_jit = jax.jit(_log_weights)
_geometric_log_weights_jit = jax.jit(_geometric_log_weights)


# ---------------------------------------------------------------------------------------------
# Checks at the public boundary
# ---------------------------------------------------------------------------------------------


def _check_density(name: str, density, methods: tuple[str, ...]) -> None:
    if not (hasattr(density, "dims") and all(hasattr(density, m) for m in methods)):
        need = ", ".join(("dims", *methods))
        raise ValueError(f"{name} must be a fusion density with {need}, got {density!r}")
    pytree_of_arrays(name, density)


def _check_same_dims(name: str, density, ref_name: str, ref) -> None:
    if density.dims != ref.dims:
        raise ValueError(f"{name} lives on {density.dims}, {ref_name} on {ref.dims}")


def _check_log_weights(log_weights) -> jax.Array:
    """A 1-D array of log-weights: finite or ``-inf``, not all ``-inf`` (checked when concrete)."""
    if isinstance(log_weights, jax.core.Tracer):
        return log_weights
    lw = np.asarray(log_weights, dtype=float)
    if lw.ndim != 1 or lw.size == 0:
        raise ValueError(f"log_weights must be a non-empty 1-D array, got shape {lw.shape}")
    bad = np.isnan(lw) | (lw == np.inf)
    if bad.any():
        raise ValueError(
            f"log_weights must be finite or -inf; {int(bad.sum())} of {lw.size} are NaN or +inf, "
            f"e.g. {lw[bad][0]!r} at index {int(np.flatnonzero(bad)[0])}"
        )
    if not np.isfinite(lw).any():
        raise ValueError(
            f"all importance weights are zero (every one of the {lw.size} log-weights is -inf): "
            "the target has no mass where the proposal drew"
        )
    return jnp.asarray(lw)


def _check_options(n, n_proposals, key, min_ess_fraction, on_low_ess) -> tuple[int, int]:
    n = integer("n", n, minimum=1, maximum=MAX_SAMPLE_SIZE)
    n_proposals = min(max(4 * n, 1024), MAX_SAMPLE_SIZE) if n_proposals is None else n_proposals
    n_proposals = integer("n_proposals", n_proposals, minimum=n, maximum=MAX_SAMPLE_SIZE)
    prng_key("key", key)
    if not (is_real(min_ess_fraction) and 0.0 < float(min_ess_fraction) <= 1.0):
        raise ValueError(f"min_ess_fraction must be a number in (0, 1], got {min_ess_fraction!r}")
    if on_low_ess not in ON_LOW_ESS:
        raise ValueError(f"on_low_ess must be one of {ON_LOW_ESS}, got {on_low_ess!r}")
    return n, n_proposals


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def log_importance_weights(target, proposal, x) -> jax.Array:
    """``log w(x) = log p~(x) - log q(x)`` at points ``x`` of shape ``(n, d)``: ``target``'s
    ``unnormalized_log_prob`` minus ``proposal``'s ``log_prob``. Not normalized."""
    require_x64("log_importance_weights")
    _check_density("target", target, ("unnormalized_log_prob",))
    _check_density("proposal", proposal, ("log_prob",))
    _check_same_dims("proposal", proposal, "target", target)
    return _log_weights_jit(target, proposal, check_points(x, target.dims))


def geometric_log_weights(p_llm, p_opt, alpha, x) -> jax.Array:
    """``log w(x) = alpha (log p_llm(x) - log p_opt(x))``: the log importance weights of the
    geometric pool ``p_llm^alpha p_opt^(1 - alpha)`` under the proposal ``p_opt``."""
    require_x64("geometric_log_weights")
    _check_density("p_llm", p_llm, ("log_prob",))
    _check_density("p_opt", p_opt, ("log_prob",))
    _check_same_dims("p_llm", p_llm, "p_opt", p_opt)
    alpha = unit_interval("alpha", alpha)
    x = check_points(x, p_opt.dims)
    return _geometric_log_weights_jit(p_llm, p_opt, jnp.asarray(alpha), x)


def kish_ess(log_weights) -> float | jax.Array:
    """Kish's effective sample size ``(sum w)^2 / sum w^2 = exp(2 lse(log w) - lse(2 log w))``.

    Invariant to a shift of all log-weights (the maximum is taken out first, so shifts as large as
    ``1e300`` neither overflow nor cancel); ``-inf`` entries are zero weights. Between 1 and the
    number of non-zero weights. Raises ``ValueError`` if every weight is zero, or a log-weight is
    NaN or ``+inf``. Under ``jit`` (traced ``log_weights``) nothing is checked and all-zero weights
    give 0.
    """
    require_x64("kish_ess")
    lw = _check_log_weights(log_weights)
    ess = _kish_ess_jit(lw)
    return ess if isinstance(lw, jax.core.Tracer) else float(ess)


def systematic_resample(key: jax.Array, log_weights, n: int) -> jax.Array:
    """``n`` indices drawn with probabilities ``W_i = exp(log_weights_i - lse(log_weights))``.

    One uniform offset ``U`` places ``n`` evenly spaced points ``u_k = (U + k) / n`` on the
    cumulative weights ``C``; point ``k`` picks ``min{i : C_i > u_k}``. Each index is picked
    ``floor(n W_i)`` or ``ceil(n W_i)`` times, ``n W_i`` on average, and an index of zero weight
    never. Jittable with static ``n``. Raises ``ValueError`` for log-weights that are NaN, ``+inf``
    or all ``-inf`` (when concrete).
    """
    require_x64("systematic_resample")
    key = prng_key("key", key)
    n = integer("n", n, minimum=1)
    return _systematic_jit(key, _check_log_weights(log_weights), n)


def importance_resample(
    target,
    proposal,
    key: jax.Array,
    n: int,
    *,
    n_proposals: int | None = None,
    min_ess_fraction: float = MIN_ESS_FRACTION,
    on_low_ess: str = "warn",
) -> ImportanceResult:
    """``n`` draws approximately from ``target / Z``, by importance resampling from ``proposal``.

    Draws ``N = n_proposals`` proposals ``x_i ~ q``, weights them by
    ``log w_i = log p~(x_i) - log q(x_i)`` and resamples ``n`` of them systematically. The run is
    compiled once per space and shapes: the densities are pytree arguments of one jitted core.

    Args:
      target: any density on the space, normalized or not (``unnormalized_log_prob``), e.g. a
        :class:`~fusion.combine.LogLinearPool`.
      proposal: a normalized density with ``log_prob`` and an exact ``sample`` on the same space,
        whose support covers the target's. ``None`` takes, for a log-linear pool, the linear pool
        of its components with weights ``e_i / sum(e)`` (:func:`fusion.normalize.default_proposal`);
        for exponents summing to one, weighted AM-GM bounds its weights by one.
      key: a ``jax.random`` key.
      n: the number of draws, ``>= 1``.
      n_proposals: ``N >= n``; default ``max(4 n, 1024)``.
      min_ess_fraction: in ``(0, 1]``; below ``ESS / N = min_ess_fraction`` the run warns or
        raises. The default :data:`MIN_ESS_FRACTION` = 0.01 marks a proposal off by a factor 100 in
        chi-square (see its note).
      on_low_ess: ``"warn"`` (a :class:`LowEffectiveSampleSize` warning, and the result) or
        ``"error"`` (:class:`LowEffectiveSampleSizeError`).

    Raises :class:`LowEffectiveSampleSizeError` whatever ``on_low_ess`` when every weight is zero
    (the target has no mass where the proposal drew), and ``ValueError`` when a log-weight is NaN
    or ``+inf`` (the target returned NaN or ``+inf``, or the proposal put zero density on its own
    draw).
    """
    require_x64("importance_resample")
    n, n_proposals = _check_options(n, n_proposals, key, min_ess_fraction, on_low_ess)
    _check_density("target", target, ("unnormalized_log_prob",))
    if proposal is None:
        if not isinstance(target, LogLinearPool):
            raise ValueError(
                f"proposal=None needs a LogLinearPool target, got {type(target).__name__}"
            )
        proposal = default_proposal(target)
    _check_density("proposal", proposal, ("log_prob", "sample"))
    _check_same_dims("proposal", proposal, "target", target)
    key_q, key_r = jax.random.split(key)
    x = checked_draws("proposal", proposal, key_q, n_proposals)
    run = _importance_core(target, proposal, x, key_r, n)
    return _result(x, run, float(min_ess_fraction), on_low_ess)


def geometric_importance_resample(
    p_llm,
    p_opt,
    alpha: float,
    key: jax.Array,
    n: int,
    *,
    n_proposals: int | None = None,
    min_ess_fraction: float = MIN_ESS_FRACTION,
    on_low_ess: str = "warn",
) -> ImportanceResult:
    """``n`` draws approximately from the geometric pool ``p_llm^alpha p_opt^(1 - alpha) / Z``,
    proposed by ``p_opt`` and weighted by ``(p_llm / p_opt)^alpha``.

    ``log w = alpha (log p_llm - log p_opt)``. At ``alpha = 1`` these are the seed's weights
    ``p_llm / p_opt`` and the draws follow ``p_llm``; at ``alpha = 0`` every weight is one and they
    follow ``p_opt``. ``log_normalizer`` estimates ``log Z`` of the pool. ``p_llm`` and ``p_opt``
    are normalized densities on one space; ``p_opt`` has an exact ``sample``. Other arguments,
    results and errors as in :func:`importance_resample`.
    """
    require_x64("geometric_importance_resample")
    n, n_proposals = _check_options(n, n_proposals, key, min_ess_fraction, on_low_ess)
    alpha = unit_interval("alpha", alpha)
    _check_density("p_llm", p_llm, ("log_prob",))
    _check_density("p_opt", p_opt, ("log_prob", "sample"))
    _check_same_dims("p_llm", p_llm, "p_opt", p_opt)
    key_q, key_r = jax.random.split(key)
    x = checked_draws("p_opt", p_opt, key_q, n_proposals)
    run = _geometric_core(p_llm, p_opt, jnp.asarray(alpha), x, key_r, n)
    return _result(x, run, float(min_ess_fraction), on_low_ess)


def _result(x, run: _Run, min_ess_fraction: float, on_low_ess: str) -> ImportanceResult:
    """Check the weights of a run, estimate ``log Z`` and report a low ESS."""
    log_w = np.asarray(run.log_w)
    n_proposals = log_w.shape[0]
    bad = np.isnan(log_w) | (log_w == np.inf)
    if bad.any():
        raise ValueError(
            f"{int(bad.sum())} of {n_proposals} importance log-weights are NaN or +inf: the target's "
            "log-density is NaN or +inf there, or the proposal's log_prob is -inf at its own draws"
        )
    if not np.isfinite(log_w).any():
        raise LowEffectiveSampleSizeError(
            f"all importance weights are zero: the target has no mass at any of the {n_proposals} "
            "proposals (ESS = 0). Use a proposal that covers the target."
        )
    ess = float(run.ess)
    fraction = ess / n_proposals
    if fraction < min_ess_fraction:
        message = (
            f"importance resampling: effective sample size {ess:.4g} of {n_proposals} proposals "
            f"(ESS fraction {fraction:.3g}) is below min_ess_fraction={min_ess_fraction:.3g}; "
            "the proposal covers the target poorly and the draws repeat a few proposals. Raise "
            "n_proposals or use a proposal closer to the target."
        )
        if on_low_ess == "error":
            raise LowEffectiveSampleSizeError(message)
        warnings.warn(message, LowEffectiveSampleSize, stacklevel=3)
    log_z, log_z_se = _log_mean_and_se(log_w)
    proposals = np.asarray(x)
    indices = np.asarray(run.indices)
    return ImportanceResult(
        samples=proposals[indices],
        indices=indices,
        proposals=proposals,
        log_weights=log_w - float(scipy.special.logsumexp(log_w)),
        ess=ess,
        ess_fraction=fraction,
        log_normalizer=log_z,
        log_normalizer_se=log_z_se,
        n_proposals=n_proposals,
    )
