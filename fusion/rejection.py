"""Rejection sampling: exact draws of ``p~ / Z`` from a proposal ``q`` and an envelope ``M``.

If ``p~(x) <= M q(x)`` everywhere, proposing ``x ~ q`` and accepting it with probability
``p~(x) / (M q(x))`` gives exact draws of ``p~ / Z``. The acceptance probability is ``Z / M``, so
``M`` times the acceptance rate is an unbiased estimate of ``Z``, with binomial standard error.

Envelopes of a log-linear pool ``p~ = prod_i p_i^e_i`` (:func:`pool_envelope`), with
``E = sum_i e_i``, ``w_i = e_i / E`` and the linear pool ``q = sum_i w_i p_i``. Weighted AM-GM
gives ``prod_i p_i^w_i <= q``, hence ``p~ <= q^E``, and then:

- ``E = 1`` (geometric pools): ``p~ <= q``, so ``M = 1`` and the acceptance rate is ``Z`` itself
  (at most one, by Hoelder). :func:`amgm_round` evaluates each ``log p_i`` once for both sides.
- ``E > 1`` (products, sharpened pools): ``q^E = q q^(E-1) <= (sup q)^(E-1) q``, so
  ``M = (sup q)^(E-1)``, with ``sup q`` bounded by :func:`log_density_bound`.
- ``E < 1`` (flattened pools), on a bounded space of base measure ``V`` with uniform density
  ``u = 1/V``: AM-GM once more, ``q^E u^(1-E) <= E q + (1-E) u``, so the proposal is the mixture
  ``E q + (1-E) u`` and ``M = V^(1-E)``.

Every run is bounded: at most ``max_rounds`` batches, then a :class:`RejectionError` that
reports the acceptance rate (or the draws so far, when ``min_accepted`` allows).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fusion import kernels
from fusion._validate import integer, is_real, prng_key, pytree_of_arrays
from fusion.combine import LinearPool, LogLinearPool, _is_concrete, linear_pool
from fusion.density import (
    MAX_SAMPLE_SIZE,
    ProductKernelMixture,
    Uniform,
    _geometry,
    _log_base_measure,
)
from fusion.kernels import require_x64
from fusion.space import CONTINUOUS


class RejectionError(RuntimeError):
    """Too few proposals were accepted within the allowed number of rounds."""


class RejectionResult(NamedTuple):
    """Accepted draws and what the run says about ``Z``.

    ``log_normalizer`` is ``log(M n_accepted / n_proposed)``; ``log_normalizer_se`` its
    delta-method standard error ``sqrt((1 - r) / (r N))`` with ``r`` the acceptance rate. When
    nothing is accepted, ``log_normalizer`` is ``-inf`` and ``normalizer_upper`` is the one-sided
    95% bound ``3 M / N`` ("rule of three").
    """

    samples: np.ndarray
    n_proposed: int
    n_accepted: int
    acceptance_rate: float
    log_normalizer: float
    log_normalizer_se: float
    normalizer_upper: float
    log_envelope: float


class Envelope(NamedTuple):
    """A normalized ``proposal`` and ``log_m`` with ``p~(x) <= exp(log_m) proposal(x)``."""

    proposal: object
    log_m: float


class Round(NamedTuple):
    """One batch of proposals: the draws, which were accepted, and ``log p~`` at each."""

    x: jax.Array
    accepted: jax.Array
    unnormalized_log_prob: jax.Array


# ---------------------------------------------------------------------------------------------
# Envelopes
# ---------------------------------------------------------------------------------------------


def log_density_bound(density) -> float | None:
    """An upper bound on ``log p(x)`` over the space, or ``None`` if none is known.

    - :class:`~fusion.density.ProductKernelMixture`: ``max_k sum_j log sup k_kj``, since a mixture
      never exceeds its highest component. A truncated normal kernel peaks at its centre clipped
      to its interval; a cell mass, a table entry or a probability is at most 1.
    - :class:`~fusion.density.Uniform`: its constant value.
    - :class:`~fusion.combine.LinearPool`: the largest bound of its components.
    """
    if isinstance(density, Uniform):
        return -sum(_log_base_measure(d) for d in density.dims)
    if isinstance(density, LinearPool):
        bounds = [log_density_bound(c) for c in density.components]
        live = [
            b for b, lw in zip(bounds, np.asarray(density.log_weights), strict=True) if lw > -np.inf
        ]
        return None if any(b is None for b in live) else max(live, default=-math.inf)
    if isinstance(density, ProductKernelMixture):
        g = _geometry(density.dims, density.tabulated)
        c = g.continuous
        mu, sigma = np.asarray(density.mu)[:, c], np.asarray(density.sigma)[:, c]
        low, high = g.low[c], g.high[c]
        z = (np.clip(mu, low, high) - mu) / sigma
        log_mass = np.asarray(kernels.log_gauss_mass((low - mu) / sigma, (high - mu) / sigma))
        log_peak = -0.5 * z * z - np.log(sigma) - kernels.LOG_SQRT_2PI - log_mass
        per_kernel = log_peak.sum(axis=1)
        live = np.asarray(density.log_weights) > -np.inf
        return float(np.max(per_kernel[live]))
    return None


def _check_components_sample(pool: LogLinearPool) -> None:
    for i, c in enumerate(pool.components):
        if not (hasattr(c, "sample") and hasattr(c, "log_prob")):
            raise ValueError(
                f"the AM-GM envelope proposes from the pool's components, and component {i}, a "
                f"{type(c).__name__}, has no sample(): pass proposal= and log_envelope="
            )


def pool_envelope(pool: LogLinearPool) -> Envelope:
    """The AM-GM envelope of a log-linear pool (see the module docstring for the three cases).

    Raises ``ValueError`` when the pool has none: exponents summing above one with a component
    of unknown bound (:func:`log_density_bound`), or below one on an unbounded space.
    """
    if not isinstance(pool, LogLinearPool):
        raise ValueError(f"pool must be a LogLinearPool, got {type(pool).__name__}")
    if not _is_concrete(pool.exponents):
        raise ValueError("pool_envelope needs concrete exponents, not traced ones")
    _check_components_sample(pool)
    e = np.array([float(v) for v in pool.exponents])
    total = float(e.sum())
    q = linear_pool(pool.components, e / total) if total > 0 else None
    if abs(total - 1.0) <= 1e-12:
        return Envelope(q, 0.0)
    if total > 1.0:
        log_sup = log_density_bound(q)
        if log_sup is None:
            raise ValueError(
                f"no envelope for exponents {e.tolist()} (sum {total!r} > 1): it needs a bound on "
                "every component's density, known for mixtures, uniforms and linear pools of them"
            )
        return Envelope(q, (total - 1.0) * log_sup)
    dims = pool.dims
    if not all(d.kind != CONTINUOUS or math.isfinite(d.high - d.low) for d in dims):
        raise ValueError(
            f"no envelope for exponents {e.tolist()} (sum {total!r} < 1) on an unbounded space: "
            "it mixes in the uniform density"
        )
    uniform = Uniform(dims)
    log_v = sum(_log_base_measure(d) for d in dims)
    if q is None:  # every exponent 0: p~ = 1, the uniform density times V
        return Envelope(uniform, log_v)
    return Envelope(linear_pool([q, uniform], [total, 1.0 - total]), (1.0 - total) * log_v)


# ---------------------------------------------------------------------------------------------
# One round of proposals
# ---------------------------------------------------------------------------------------------


def amgm_round(pool: LogLinearPool, key: jax.Array, batch: int) -> Round:
    """Propose ``batch`` draws from ``q = sum_i e_i p_i`` and accept each with ``p~(x) / q(x)``,
    for exponents ``e`` that sum to one.

    Each component's ``log p_i`` is evaluated once and serves both ``log p~ = sum_i e_i log p_i``
    and ``log q = logsumexp_i(log e_i + log p_i)``. Jittable; ``batch`` must be static.
    """
    key_q, key_u = jax.random.split(key)
    exponents = jnp.stack(pool.exponents)
    x = linear_pool(pool.components, exponents).sample(key_q, batch)
    log_p = jnp.stack([c.log_prob(x) for c in pool.components], axis=-1)
    log_target = jnp.sum(jnp.where(exponents == 0, 0.0, exponents * log_p), axis=-1)
    log_q = kernels.logsumexp(jnp.log(exponents) + log_p, axis=-1)
    log_u = jnp.log(jax.random.uniform(key_u, (batch,)))
    return Round(x, log_u < log_target - log_q, log_target)


def envelope_round(target, proposal, log_m, key: jax.Array, batch: int) -> Round:
    """Propose ``batch`` draws from ``proposal`` and accept each with ``p~(x) / (M q(x))``.
    Jittable; ``batch`` must be static."""
    key_q, key_u = jax.random.split(key)
    x = proposal.sample(key_q, batch)
    log_target = target.unnormalized_log_prob(x)
    log_ratio = log_target - proposal.log_prob(x) - log_m
    log_u = jnp.log(jax.random.uniform(key_u, (batch,)))
    # p~ > M q anywhere breaks the envelope: marked with NaN, which the caller refuses (a NaN or
    # +inf target is caught before, from log_target).
    broken = (log_ratio > 1e-9 * (1.0 + jnp.abs(log_m))) & jnp.isfinite(log_target)
    return Round(x, jnp.where(broken, jnp.nan, log_u < log_ratio), log_target)


_amgm_round = jax.jit(amgm_round, static_argnums=2)
_envelope_round = jax.jit(envelope_round, static_argnums=4)


# ---------------------------------------------------------------------------------------------
# Drivers
# ---------------------------------------------------------------------------------------------


FIRST_BATCH = 1024
MAX_BATCH = 2**20


def _next_batch(n_left: int, n_accepted: int, n_proposed: int, current: int) -> int:
    """The next round's size: enough for the ``n_left`` draws still missing at the acceptance
    rate so far (20% to spare), a power of two between ``FIRST_BATCH`` and ``MAX_BATCH`` so the
    round compiles for a handful of sizes; unchanged while nothing has been accepted."""
    if n_accepted == 0:
        return current
    need = 1.2 * n_left * n_proposed / n_accepted
    return int(min(MAX_BATCH, max(FIRST_BATCH, 1 << max(0, math.ceil(math.log2(need))))))


def _run_rounds(
    one_round: Callable[[jax.Array, int], Round],
    key: jax.Array,
    n: int,
    batch_size: int | None,
    max_rounds: int,
    min_accepted: int,
    log_m: float,
    what: str,
) -> RejectionResult:
    """Rounds until ``n`` draws are accepted or ``max_rounds`` have run. ``batch_size=None``
    sizes each round by :func:`_next_batch`; an int fixes it."""
    accepted, n_proposed, n_accepted = [], 0, 0
    size = FIRST_BATCH if batch_size is None else batch_size
    for r in range(max_rounds):
        x, ok, log_target = one_round(jax.random.fold_in(key, r), size)
        log_target = np.asarray(log_target)
        if np.isnan(log_target).any() or (log_target == np.inf).any():
            bad = np.asarray(x)[np.isnan(log_target) | (log_target == np.inf)][0]
            raise ValueError(
                f"the target's log-density is NaN or +inf at x = {bad.tolist()}: it is no density "
                "there (check its parameters)"
            )
        ok = np.asarray(ok, dtype=float)
        if np.isnan(ok).any():
            bad = np.asarray(x)[np.isnan(ok)][0]
            raise ValueError(
                f"the envelope is not one: p~(x) > exp(log_envelope) q(x) at x = {bad.tolist()} "
                f"(log_envelope={log_m:g}); pass a larger log_envelope"
            )
        ok = ok.astype(bool)
        accepted.append(np.asarray(x)[ok])
        n_proposed += size
        n_accepted += int(ok.sum())
        if n_accepted >= n:
            break
        if batch_size is None:
            size = _next_batch(n - n_accepted, n_accepted, n_proposed, size)
    rate = n_accepted / n_proposed
    if n_accepted < min_accepted:
        z = (
            f"so log Z ~ {math.log(rate) + log_m:.6g}"
            if n_accepted
            else f"so log Z <= {math.log(3.0 / n_proposed) + log_m:.6g} at 95% confidence"
        )
        raise RejectionError(
            f"{what} accepted {n_accepted} of {n_proposed} proposals in {max_rounds} rounds "
            f"(acceptance rate {rate:.3g}, {z}); needed {min_accepted}. The "
            "target has little mass where the proposal puts it: the pooled densities barely "
            "overlap, or the envelope is loose."
        )
    return RejectionResult(
        samples=np.concatenate(accepted)[:n],
        n_proposed=n_proposed,
        n_accepted=n_accepted,
        acceptance_rate=rate,
        log_normalizer=math.log(rate) + log_m if rate > 0 else -math.inf,
        log_normalizer_se=math.sqrt((1 - rate) / (rate * n_proposed)) if rate > 0 else math.inf,
        normalizer_upper=math.exp(math.log(max(rate, 3.0 / n_proposed)) + log_m)
        if log_m < 700
        else math.inf,
        log_envelope=log_m,
    )


def _budget(n, batch_size, max_rounds, min_accepted) -> tuple[int, int | None, int, int]:
    n = integer("n", n, minimum=1, maximum=MAX_SAMPLE_SIZE)
    batch_size = None if batch_size is None else integer("batch_size", batch_size, minimum=1)
    max_rounds = integer("max_rounds", max_rounds, minimum=1)
    min_accepted = n if min_accepted is None else integer("min_accepted", min_accepted, 0, n)
    return n, batch_size, max_rounds, min_accepted


def amgm_rejection_sample(
    pool: LogLinearPool,
    key: jax.Array,
    n: int,
    *,
    batch_size: int | None = None,
    max_rounds: int = 100,
    min_accepted: int | None = None,
) -> RejectionResult:
    """``n`` exact draws from a log-linear pool whose exponents sum to one (``M = 1``).

    Runs at most ``max_rounds`` rounds of proposals and stops as soon as ``n`` draws are accepted:
    ``batch_size`` proposals per round, or by default 1024 at first and then as many as the
    acceptance rate so far says the missing draws need (a power of two up to ``2**20``). If fewer than ``min_accepted`` (default ``n``) are accepted by then it raises
    :class:`RejectionError`, reporting the acceptance rate; otherwise it returns what it has.
    """
    require_x64("amgm_rejection_sample")
    if not isinstance(pool, LogLinearPool):
        raise ValueError(f"pool must be a LogLinearPool, got {type(pool).__name__}")
    key = prng_key("key", key)
    n, batch_size, max_rounds, min_accepted = _budget(n, batch_size, max_rounds, min_accepted)
    _check_components_sample(pool)
    if _is_concrete(pool.exponents):
        total = float(sum(float(e) for e in pool.exponents))
        if abs(total - 1.0) > 1e-9:
            raise ValueError(
                "AM-GM rejection needs exponents that sum to 1, got "
                f"{[float(e) for e in pool.exponents]}"
            )
    return _run_rounds(
        lambda k, size: _amgm_round(pool, k, size),
        key, n, batch_size, max_rounds, min_accepted, 0.0, "AM-GM rejection",
    )  # fmt: skip


def rejection_sample(
    target,
    key: jax.Array,
    n: int,
    *,
    proposal=None,
    log_envelope: float | None = None,
    batch_size: int | None = None,
    max_rounds: int = 100,
    min_accepted: int | None = None,
) -> RejectionResult:
    """``n`` exact draws of ``target`` (normalized or not) by rejection from ``proposal``.

    Args:
      target: a density with ``unnormalized_log_prob``.
      proposal: a normalized density with ``sample`` and ``log_prob`` on the same space, and
        ``log_envelope`` the ``log M`` with ``p~ <= M proposal``. Both ``None``: the
        :func:`pool_envelope` of a log-linear pool (the AM-GM round when its exponents sum to 1).
      batch_size, max_rounds: at most ``max_rounds`` rounds of ``batch_size`` proposals (by
        default sized as in :func:`amgm_rejection_sample`).
      min_accepted: fewer accepted draws than this (default ``n``) raise :class:`RejectionError`.

    A proposal where ``p~ > M q`` is caught (to ``1e-9`` in log space) and refused with a
    ``ValueError``; points the proposal never reaches are not checked.
    """
    require_x64("rejection_sample")
    key = prng_key("key", key)
    n, batch_size, max_rounds, min_accepted = _budget(n, batch_size, max_rounds, min_accepted)
    if not hasattr(target, "unnormalized_log_prob") or not hasattr(target, "dims"):
        raise ValueError(f"target must be a fusion density, got {target!r}")
    pytree_of_arrays("target", target)
    if (proposal is None) != (log_envelope is None):
        raise ValueError("pass proposal= and log_envelope= together, or neither")
    if proposal is None:
        if not isinstance(target, LogLinearPool):
            raise ValueError(
                f"a {type(target).__name__} has no envelope of its own: pass proposal= and "
                "log_envelope="
            )
        total = sum(float(e) for e in target.exponents)
        if abs(total - 1.0) <= 1e-12:
            return amgm_rejection_sample(
                target, key, n, batch_size=batch_size, max_rounds=max_rounds,
                min_accepted=min_accepted,
            )  # fmt: skip
        proposal, log_envelope = pool_envelope(target)
    if not (hasattr(proposal, "sample") and hasattr(proposal, "log_prob")):
        raise ValueError(f"proposal must be a normalized density with sample(), got {proposal!r}")
    pytree_of_arrays("proposal", proposal)
    if proposal.dims != target.dims:
        raise ValueError(f"proposal lives on {proposal.dims}, the target on {target.dims}")
    if not (is_real(log_envelope) and math.isfinite(float(log_envelope))):
        raise ValueError(f"log_envelope must be a finite number, got {log_envelope!r}")
    log_m = float(log_envelope)
    return _run_rounds(
        lambda k, size: _envelope_round(target, proposal, log_m, k, size),
        key, n, batch_size, max_rounds, min_accepted, log_m, "rejection",
    )  # fmt: skip
