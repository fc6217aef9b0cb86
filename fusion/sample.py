"""One front door to the samplers: ``sample(density, key, n, method="auto")``.

The methods, in the order ``auto`` tries them (the cheapest correct one first):

1. ``exact``: the density's own sampler (mixtures, linear pools, uniform densities: a component
   by weight, then a draw from it), or, for a log-linear pool with a closed form (a product of
   mixtures and of linear pools of them, such as a suggestion density with its uniform floor, or
   fractional powers of single kernels), draws of the normalized pool as a mixture
   (:func:`fusion.normalize.closed_form`). Exact, and as fast as drawing from a mixture.
2. ``rejection``: a log-linear pool with an AM-GM envelope (:func:`fusion.rejection.pool_envelope`),
   or any target with a ``proposal`` and ``log_envelope`` given. Exact. ``auto`` moves on when
   fewer than ``n`` draws are accepted within the round budget.
3. ``importance``: importance resampling (:func:`fusion.resample.importance_resample`) from a
   ``proposal``: by default the linear pool of a log-linear pool's components, the reference of
   a maximum-entropy density, or the uniform density on a bounded space. Approximate (an
   ``O(1/N)`` bias, repeated draws); ``auto`` moves on when the effective sample size is below
   ``min_ess_fraction`` of the proposals (default
   :data:`fusion.resample.MIN_ESS_FRACTION`).
4. ``mcmc``: NUTS within Gibbs through numpyro (:func:`fusion.mcmc.mcmc_sample`), for anything with
   an ``unnormalized_log_prob``. Asymptotically exact; its diagnostics say whether the chains
   agree.

The result says which method ran, what ``auto`` skipped and why, and that method's diagnostics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import NamedTuple

import jax
import numpy as np

from fusion import normalize
from fusion._validate import prng_key
from fusion.combine import LogLinearPool
from fusion.density import Uniform, check_sample_size
from fusion.mcmc import mcmc_sample
from fusion.rejection import RejectionError, pool_envelope, rejection_sample
from fusion.resample import LowEffectiveSampleSizeError, importance_resample
from fusion.space import CONTINUOUS

METHODS = ("auto", "exact", "rejection", "importance", "mcmc")


class Exact(NamedTuple):
    """Diagnostics of exact draws: ``log Z`` of the density sampled (0 for a normalized one) and
    the mass of the closed form's components left out (:func:`fusion.normalize.closed_form`)."""

    log_normalizer: float
    pruned_mass: float


class Samples(NamedTuple):
    """Draws ``(n, d)`` in internal coordinates, the ``method`` that made them, its
    ``diagnostics`` (:class:`Exact`, :class:`~fusion.rejection.RejectionResult`,
    :class:`~fusion.resample.ImportanceResult` or :class:`~fusion.mcmc.MCMCResult`), and for
    ``auto`` one line per method it tried and passed over (``skipped``)."""

    samples: np.ndarray
    method: str
    diagnostics: object
    skipped: tuple[str, ...] = ()


class _Skip(Exception):
    """A method that does not apply, or failed its check under ``auto``; the text says why."""


def _samplable(density) -> bool:
    return hasattr(density, "sample") and hasattr(density, "log_prob")


def _exact(density, key, n: int, opts) -> Samples:
    if _samplable(density):
        return Samples(np.asarray(density.sample(key, n)), "exact", Exact(0.0, 0.0))
    if not isinstance(density, LogLinearPool):
        raise _Skip(f"exact: a {type(density).__name__} has no sampler of its own")
    terms = normalize._terms(density)
    if terms is not None and sum(map(normalize._exact_cost, terms)) <= normalize._MAX_EXACT_TERMS:
        closed = normalize.closed_form(density, **opts)
        if closed.density is not None:
            draws = closed.density.sample(key, n)
            return Samples(np.asarray(draws), "exact", Exact(closed.log_z, closed.pruned_mass))
    raise _Skip(
        "exact: this log-linear pool has no closed-form mixture (that needs every factor "
        "with an exponent other than 0 or 1 to be a single kernel or a uniform density, at most "
        f"{normalize._MAX_EXACT_TERMS} kernel combinations, and a kernel in every product)"
    )


def _rejection(density, key, n: int, opts, proposal, log_envelope, auto: bool) -> Samples:
    if proposal is None and log_envelope is None:
        if not isinstance(density, LogLinearPool):
            raise _Skip(f"rejection: no envelope is known for a {type(density).__name__}")
        try:
            pool_envelope(density)
        except ValueError as e:
            raise _Skip(f"rejection: {e}") from None
    try:
        result = rejection_sample(
            density, key, n, proposal=proposal, log_envelope=log_envelope, **opts
        )
    except RejectionError as e:
        if not auto:
            raise
        raise _Skip(f"rejection: {e}") from None
    if auto and result.samples.shape[0] < n:
        raise _Skip(f"rejection: {result.samples.shape[0]} of {n} draws within the rounds allowed")
    return Samples(result.samples, "rejection", result)


def _default_proposal(density):
    if isinstance(density, LogLinearPool) and all(map(_samplable, density.components)):
        return normalize.default_proposal(density)
    reference = getattr(density, "reference", None)
    if _samplable(reference):
        return reference
    if all(d.kind != CONTINUOUS or math.isfinite(d.high - d.low) for d in density.dims):
        return Uniform(density.dims)
    return None


def _importance(density, key, n: int, opts, proposal, auto: bool) -> Samples:
    q = _default_proposal(density) if proposal is None else proposal
    if q is None:
        raise _Skip(
            "importance: no proposal (the space is unbounded and the density has no reference): "
            "pass proposal="
        )
    if auto:
        opts = {**opts, "on_low_ess": "error"}
    try:
        result = importance_resample(density, q, key, n, **opts)
    except LowEffectiveSampleSizeError as e:
        if not auto:
            raise
        raise _Skip(f"importance: {e}") from None
    return Samples(result.samples, "importance", result)


def _mcmc(density, key, n: int, opts) -> Samples:
    # A pool's chains look for modes from draws of its components' linear pool, which has mass
    # near each of them (AM-GM), rather than from dispersed points.
    if "init_proposal" not in opts and isinstance(density, LogLinearPool):
        opts = {**opts, "init_proposal": _default_proposal(density)}
    # Each chain keeps at least 4 draws (for split R-hat): a small n runs a few more, then cuts.
    n_chains = opts.get("n_chains", 4)
    result = mcmc_sample(
        density, key, max(n, 4 * n_chains) if isinstance(n_chains, int) else n, **opts
    )
    return Samples(result.samples[:n], "mcmc", result)


def sample(
    density,
    key: jax.Array,
    n: int,
    method: str = "auto",
    *,
    proposal=None,
    log_envelope: float | None = None,
    options: Mapping[str, Mapping] | None = None,
) -> Samples:
    """``n`` draws of ``density`` (normalized or not) by ``method``; see the module docstring.

    Args:
      density: a fusion density: a mixture, a pool, a maximum-entropy density, or any pytree
        with ``dims`` and ``unnormalized_log_prob``.
      key: a ``jax.random`` key.
      n: the number of draws, ``>= 1``.
      method: one of :data:`METHODS`.
      proposal: a normalized density with ``sample`` and ``log_prob``, for ``rejection`` (with
        ``log_envelope``, the ``log M`` with ``p~ <= M proposal``) and ``importance``.
      options: keyword arguments per method, e.g. ``{"mcmc": {"n_chains": 8}, "rejection":
        {"max_rounds": 20}}``; ``exact`` takes ``prune`` (see
        :func:`~fusion.normalize.closed_form`).

    Returns:
      :class:`Samples`. ``auto`` never returns draws that failed their method's check: a
      rejection run short of ``n``, or an importance run below its ``min_ess_fraction``, passes to the
      next method, and ``skipped`` says why.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not (hasattr(density, "dims") and hasattr(density, "unnormalized_log_prob")):
        raise ValueError(f"density must be a fusion density, got {density!r}")
    key = prng_key("key", key)
    n = check_sample_size(n, minimum=1)
    options = {} if options is None else dict(options)
    unknown = set(options) - set(METHODS[1:])
    if unknown or not all(isinstance(v, Mapping) for v in options.values()):
        raise ValueError(
            f"options must map method names {METHODS[1:]} to keyword arguments, got {options!r}"
        )
    opts = {m: dict(options.get(m, {})) for m in METHODS[1:]}
    auto = method == "auto"
    attempts = {
        "exact": lambda k: _exact(density, k, n, opts["exact"]),
        "rejection": lambda k: _rejection(
            density, k, n, opts["rejection"], proposal, log_envelope, auto
        ),
        "importance": lambda k: _importance(density, k, n, opts["importance"], proposal, auto),
        "mcmc": lambda k: _mcmc(density, k, n, opts["mcmc"]),
    }
    if not auto:
        try:
            return attempts[method](key)
        except _Skip as e:
            raise ValueError(f"method={method!r} does not apply: {e}") from None
    if proposal is not None and log_envelope is None:
        del attempts["rejection"]  # a proposal without an envelope is for importance sampling
    skipped: list[str] = []
    for i, attempt in enumerate(attempts.values()):
        try:
            result = attempt(jax.random.fold_in(key, i))
        except _Skip as e:
            skipped.append(str(e))
            continue
        return result._replace(skipped=tuple(skipped))
    raise AssertionError("mcmc applies to every density")  # pragma: no cover
