"""Exact samplers: mixtures by construction, log-linear pools by AM-GM rejection.

For exponents ``e`` in the simplex, the weighted AM-GM inequality ``prod_i p_i^e_i <= sum_i e_i p_i``
makes the linear pool ``q = sum_i e_i p_i`` an envelope of the log-linear pool with constant one.
Proposing ``x ~ q`` and accepting with probability ``prod_i p_i(x)^e_i / q(x)`` gives exact draws of
``prod_i p_i^e_i / Z``, and the acceptance probability is ``Z`` itself (at most one, by Hölder). The
acceptance rate is therefore an unbiased estimate of ``Z``, with binomial standard error.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from fusion import kernels
from fusion._validate import integer
from fusion.combine import LogLinearPool, _is_concrete, linear_pool


class RejectionError(RuntimeError):
    """Too few proposals were accepted within the allowed number of rounds."""


class RejectionResult(NamedTuple):
    """Accepted draws and what the run says about ``Z``.

    ``log_normalizer`` is ``log(n_accepted / n_proposed)``; ``log_normalizer_se`` its delta-method
    standard error ``sqrt((1 - r) / (r N))``. When nothing is accepted, ``log_normalizer`` is
    ``-inf`` and ``normalizer_upper`` is the one-sided 95% bound ``3 / N`` ("rule of three").
    """

    samples: np.ndarray
    n_proposed: int
    n_accepted: int
    acceptance_rate: float
    log_normalizer: float
    log_normalizer_se: float
    normalizer_upper: float


class AmgmRound(NamedTuple):
    """One batch of AM-GM proposals: the draws, which were accepted, and ``log p~`` at each."""

    x: jax.Array
    accepted: jax.Array
    unnormalized_log_prob: jax.Array


def amgm_round(pool: LogLinearPool, key: jax.Array, batch: int) -> AmgmRound:
    """Propose ``batch`` draws from ``q = sum_i e_i p_i`` and accept each with ``p~(x) / q(x)``.

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
    return AmgmRound(x, log_u < log_target - log_q, log_target)


_amgm_round = jax.jit(amgm_round, static_argnums=2)


def amgm_rejection_sample(
    pool: LogLinearPool,
    key: jax.Array,
    n: int,
    *,
    batch_size: int = 1024,
    max_rounds: int = 100,
    min_accepted: int | None = None,
) -> RejectionResult:
    """``n`` exact draws from a log-linear pool whose exponents sum to one.

    Runs at most ``max_rounds`` rounds of ``batch_size`` proposals and stops as soon as ``n`` draws
    are accepted. If fewer than ``min_accepted`` (default ``n``) are accepted by then it raises
    :class:`RejectionError`, reporting the acceptance rate; otherwise it returns what it has.
    """
    if not isinstance(pool, LogLinearPool):
        raise ValueError(f"pool must be a LogLinearPool, got {type(pool).__name__}")
    n = integer("n", n, minimum=1)
    batch_size = integer("batch_size", batch_size, minimum=1)
    max_rounds = integer("max_rounds", max_rounds, minimum=1)
    min_accepted = n if min_accepted is None else integer("min_accepted", min_accepted, 0, n)
    if _is_concrete(pool.exponents):
        total = float(sum(float(e) for e in pool.exponents))
        if abs(total - 1.0) > 1e-9:
            raise ValueError(
                f"AM-GM rejection needs exponents that sum to 1, got {[float(e) for e in pool.exponents]}"
            )
    accepted, n_proposed, n_accepted = [], 0, 0
    for r in range(max_rounds):
        x, ok, _ = _amgm_round(pool, jax.random.fold_in(key, r), batch_size)
        ok = np.asarray(ok)
        accepted.append(np.asarray(x)[ok])
        n_proposed += batch_size
        n_accepted += int(ok.sum())
        if n_accepted >= n:
            break
    rate = n_accepted / n_proposed
    if n_accepted < min_accepted:
        raise RejectionError(
            f"AM-GM rejection accepted {n_accepted} of {n_proposed} proposals in {max_rounds} rounds "
            f"(acceptance rate {rate:.3g}, so Z <= {max(rate, 3.0 / n_proposed):.3g}); "
            f"needed {min_accepted}. The pooled densities barely overlap."
        )
    samples = np.concatenate(accepted)[:n]
    return RejectionResult(
        samples=samples,
        n_proposed=n_proposed,
        n_accepted=n_accepted,
        acceptance_rate=rate,
        log_normalizer=math.log(rate) if rate > 0 else -math.inf,
        log_normalizer_se=math.sqrt((1 - rate) / (rate * n_proposed)) if rate > 0 else math.inf,
        normalizer_upper=rate if rate > 0 else 3.0 / n_proposed,
    )
