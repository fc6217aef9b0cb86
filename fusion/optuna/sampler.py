"""``FusionSampler``: Optuna's TPE with the suggestion density fused into its "good" density.

Each trial after start-up:

1. splits the finished trials into below (good) and above (bad) exactly as TPE does, with running
   trials counted as above, and builds TPE's two Parzen estimators ``l(x)`` and ``g(x)``;
2. fuses the suggestion density ``p_llm`` into the good one:

   - ``geometric`` (default): ``f(x) ∝ p_llm(x)^alpha l(x)^(1 - alpha)``, drawn exactly by AM-GM
     rejection from ``alpha p_llm + (1 - alpha) l``;
   - ``linear``: ``f(x) = alpha p_llm(x) + (1 - alpha) l(x)``, drawn exactly as a mixture;

3. draws ``n_ei_candidates`` candidates from ``f`` and returns the one that maximizes
   ``log f(x) - log g(x)``, TPE's density ratio with ``f`` in place of ``l``.

``alpha`` is a pure function of the study's history (:mod:`fusion.adaptive`): the finished trials,
their values oriented so that lower is better, and their provenance, read from the storage at each
draw. The default :class:`~fusion.adaptive.HyperbolicDecay` starts at 0.75 and decays like ``1/n``
to zero, so the sampler becomes TPE in the long run. During the first ``n_startup_trials`` trials
the sampler draws from ``p_llm`` itself (suggestion kernels plus a uniform floor) instead of
uniformly: one suggestion's kernel is chosen per trial and shared by all its parameters.

Parameters outside Optuna's intersection search space (conditional, or added late) arrive one by one
through ``sample_independent``; they are fused the same way on their own one-dimensional space, with
the suggestions' marginal. A space that no suggestion covers gets plain TPE.

Provenance. Each draw stores a small record as trial system attributes
``fusion:provenance:<block>:<i>`` (a JSON object cut into chunks of at most 2000 characters, under
the RDB storage's 2046; ``<block>`` is a digest of the parameter names), one per block of parameters
drawn together: the relative draw, or one parameter drawn on its own. It holds

- ``source``: ``"llm"`` for a start-up draw from a suggestion's kernel, ``"uniform"`` for one from
  the uniform floor; for a fused draw, the component of the pool's linear envelope
  ``alpha p_llm + (1 - alpha) l`` that more probably drew the point, ``"llm"`` if
  ``alpha p_llm(x) > (1 - alpha) l(x)``, else ``"tpe"`` (always ``"tpe"`` when no suggestion fits);
- ``log_p_llm``, ``log_l``: the normalized log-densities of ``p_llm`` and of TPE's good density
  ``l`` at the drawn point (``null`` at start-up, where ``l`` is not built);
- ``alpha``: the alpha of the draw (0 when no suggestion fits), and the history it came from:
  ``n`` finished trials, the largest trial number ``last`` then in the study and the trials
  ``unfinished`` then (running or waiting; :meth:`AlphaRecord.seen` recovers that history from the
  study's final state, since a trial's state only ever moves from unfinished to final).

:func:`history_from_trials` reads these back into a :class:`~fusion.adaptive.History`. A trial's
log-densities are the sums over its blocks (blocks are drawn independently), its source is that of
its blocks when they agree; a trial with a garbled or partial record, an enqueued trial and one
whose blocks disagree have no source and no log-densities. Only COMPLETE and PRUNED trials enter the
history (a pruned trial with value ``+inf``); running, waiting and failed ones never do.

Randomness is keyed by ``(seed, study name, trial number)``, never by per-trial state on the
sampler, so threads and processes that share a study don't repeat each other. Results are
reproducible under a seed with ``n_jobs=1`` (Optuna's generated ``no-name-<uuid>`` names count as
no name). Multi-objective studies are refused. Every value returned is snapped to its
distribution's grid, clipped into its range, of its type, and checked with the distribution's own
containment test (Optuna would silently drop or store anything else).
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import reprlib
import secrets
import threading
import warnings
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    IntDistribution,
    check_distribution_compatibility,
)
from optuna.samplers import BaseSampler
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import _split_trials, default_gamma, default_weights
from optuna.search_space import IntersectionSearchSpace
from optuna.storages._base import DEFAULT_STUDY_NAME_PREFIX
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from fusion import kernels
from fusion._validate import integer, is_int, is_real, unit_interval
from fusion.adaptive import LLM, TPE, AlphaSchedule, History, TrialRecord, alpha_at, as_schedule
from fusion.combine import geometric, linear_pool
from fusion.kde import DEFAULT_FLOOR, kernel_density, suggestion_density
from fusion.optuna.parzen import from_parzen_estimator
from fusion.rejection import amgm_round
from fusion.space import CATEGORICAL, CONTINUOUS, LOG_DISCRETE, SearchSpace, _choice_index

METHODS = ("geometric", "linear")
_ATTR = "fusion:relative_params"
_PROVENANCE = "fusion:provenance"
_CHUNK = 2000  # RDB storage keeps a system attr value under 2046 characters.
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_UNFINISHED = (TrialState.RUNNING, TrialState.WAITING)
UNIFORM = "uniform"
"""The provenance ``source`` of a start-up draw from the uniform floor of ``p_llm``."""
# TPE's good set holds at most 25 trials plus the prior, so one padded shape serves a whole study.
_MIN_KERNELS = 32
_PROPOSALS_PER_CANDIDATE = 4
_PARZEN = _ParzenEstimatorParameters(
    prior_weight=1.0,
    consider_magic_clip=True,
    consider_endpoints=False,
    weights=default_weights,
    multivariate=True,
)


class FusionSampler(BaseSampler):
    """An Optuna sampler that fuses suggested configurations with TPE.

    Args:
      suggestions: configurations (dicts of parameter name to value), for example parsed from a
        language model's reply. Values are checked against each trial's distributions; those that
        don't fit, or lack a parameter being sampled, are dropped with a warning. Keys that name no
        parameter of the study are ignored (a suggestion may cover conditional parameters).
      method: ``"geometric"`` (default) or ``"linear"``, how ``p_llm`` is fused with TPE's good density.
      alpha: an :class:`~fusion.adaptive.AlphaSchedule` of the study's history (e.g.
        :class:`~fusion.adaptive.PredictiveCredit`), a function ``n -> alpha`` of the number of
        finished trials, a constant in ``[0, 1]``, or ``None`` for
        :class:`~fusion.adaptive.HyperbolicDecay` (``0.75 / (1 + n/25)``).
      suggestion_weights: optional non-negative weights, one per suggestion (e.g. confidences).
      n_startup_trials: trials drawn from ``p_llm`` before TPE starts, as in ``TPESampler``.
      n_ei_candidates: candidates drawn from the fused density per trial.
      seed: seed of every random draw; keys are derived from it, the study and the trial number.
      floor: weight of the uniform floor in ``p_llm`` (default 0.1), so ``p_llm > 0`` everywhere.
    """

    def __init__(
        self,
        suggestions: Sequence[Mapping[str, Any]],
        *,
        method: str = "geometric",
        alpha: AlphaSchedule | float | None = None,
        suggestion_weights: Sequence[float] | None = None,
        n_startup_trials: int = 10,
        n_ei_candidates: int = 24,
        seed: int | None = None,
        floor: float = DEFAULT_FLOOR,
    ) -> None:
        if isinstance(suggestions, Mapping | str | bytes) or not isinstance(suggestions, Sequence):
            raise ValueError(
                f"suggestions must be a list of dicts, got {type(suggestions).__name__} "
                f"{reprlib.repr(suggestions)}"
            )
        for i, s in enumerate(suggestions):
            if not isinstance(s, Mapping):
                raise ValueError(f"suggestions[{i}] must be a dict of name to value, got {s!r}")
        if not suggestions:
            warnings.warn(
                "FusionSampler got no suggestions (suggestions=[]): it samples as TPE, with "
                "uniform start-up trials",
                stacklevel=2,
            )
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        integer("n_startup_trials", n_startup_trials, minimum=0)
        integer("n_ei_candidates", n_ei_candidates, minimum=1)
        unit_interval("floor", floor)
        if seed is not None and not (is_int(seed) and 0 <= seed < 2**63):
            raise ValueError(f"seed must be None or an int in [0, 2**63), got {seed!r}")
        if suggestion_weights is not None:
            try:
                w = np.asarray(suggestion_weights, dtype=float)
            except (TypeError, ValueError):
                w = None
            if (
                w is None
                or w.shape != (len(suggestions),)
                or not np.all(np.isfinite(w))
                or np.any(w < 0)
                or (len(w) and w.sum() <= 0)
            ):
                raise ValueError(
                    f"suggestion_weights must hold {len(suggestions)} finite values >= 0, not all "
                    f"zero, got {suggestion_weights!r}"
                )
        self._suggestions = [dict(s) for s in suggestions]
        self._weights = (
            np.ones(len(suggestions))
            if suggestion_weights is None
            else np.asarray(suggestion_weights, dtype=float)
        )
        self._method = method
        self._schedule = as_schedule(alpha)
        alpha_at(self._schedule, History())  # a bad schedule fails here, not mid-study
        self._n_startup_trials = n_startup_trials
        self._n_candidates = n_ei_candidates
        self._floor = float(floor)
        self._seed = secrets.randbits(32) if seed is None else int(seed)
        self._n_coordinates = len({name for s in self._suggestions for name in s}) or 1
        self._intersection = IntersectionSearchSpace(include_pruned=True)
        self._lock = threading.Lock()
        self._cache: dict[str, Any] = {}

    # -- the Optuna sampler interface -------------------------------------------------------------

    def reseed_rng(self) -> None:
        self._seed = secrets.randbits(32)

    def alpha(self, history: History) -> float:
        """The schedule's alpha for ``history``, checked (see :func:`fusion.adaptive.alpha_at`).
        A fused draw uses it whenever a suggestion fits the space being drawn."""
        return alpha_at(self._schedule, history)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        _require_single_objective(study)
        with self._lock:
            space = self._intersection.calculate(study, use_cache=False)
        return {n: d for n, d in space.items() if not d.single()}

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        _require_single_objective(study)
        fixed = trial.system_attrs.get("fixed_params", {})
        space = {n: d for n, d in search_space.items() if n not in fixed}
        if not space or _n_finished(study) < self._n_startup_trials:
            return {}
        drawn = self._fused_sample(study, trial, space)
        params = {n: _conform(n, d, drawn[n]) for n, d in space.items() if n in drawn}
        internal = {n: space[n].to_internal_repr(v) for n, v in params.items()}
        _write_chunks(study, trial, _ATTR, json.dumps(internal))
        return params

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        _require_single_objective(study)
        _check_same_kind(study, param_name, param_distribution)
        space = {param_name: param_distribution}
        if _n_finished(study) < self._n_startup_trials:
            value, source = self._startup_sample(study, trial, param_name, param_distribution)
            _write_provenance(study, trial, space, {"source": source})
        else:
            value = self._fused_sample(study, trial, space)[param_name]
        return _conform(param_name, param_distribution, value)

    # -- start-up: draws from p_llm ---------------------------------------------------------------

    def _startup_sample(
        self, study: optuna.Study, trial: FrozenTrial, name: str, dist: BaseDistribution
    ) -> tuple[Any, str]:
        """A draw of one parameter from ``p_llm``, with the kernel chosen once per trial, and its
        source: ``"llm"`` (a suggestion's kernel) or ``"uniform"`` (the floor).

        The kernel (or the uniform floor) is picked from a seed shared by the whole trial, so the
        parameters of one start-up trial come from one suggestion. A numeric kernel is drawn by
        :func:`fusion.kernels.sample_truncnorm` (compiled once for every parameter), the rest with
        NumPy: a categorical row, or a uniform point of the base measure.
        """
        probs = np.append((1 - self._floor) * self._weights / self._weights.sum(), self._floor)
        pick = np.random.default_rng(self._seed_for(study, trial, "startup")).choice(
            len(probs), p=probs / probs.sum()
        )
        seed = self._seed_for(study, trial, f"startup:{name}")
        rng = np.random.default_rng(seed)
        space = SearchSpace.from_optuna({name: dist})
        dim = space.dims[0]
        with jax.enable_x64(True):
            kept, density = self._marginal(name, dist, space)
            source = LLM if pick in kept else UNIFORM
            if pick in kept:
                i = kept.index(pick)
                if dim.kind == CATEGORICAL:
                    p = np.exp(density.cat_log_probs[0][i])
                    x = rng.choice(dim.n_choices, p=p / p.sum())
                else:
                    low, high = dim.kernel_bounds
                    mu, sigma = density.mu[i, 0], density.sigma[i, 0]
                    y = float(_truncnorm_draw(seed, mu, sigma, low, high))
                    x = math.exp(y) if dim.kind == LOG_DISCRETE else y
            elif dim.kind == CONTINUOUS:
                x = rng.uniform(dim.low, dim.high)
            else:
                # A grid point by index: a grid of 10**9 points is never built.
                x = dim.low + dim.step * rng.integers(dim.n_points)
        return space.to_user(np.array([x]))[name], source

    def _marginal(self, name: str, dist: BaseDistribution, space: SearchSpace):
        """The suggestions' kernel density of one parameter, and which suggestions it holds."""
        cache_key = f"marginal:{name}:{dist!r}"
        with self._lock:
            if cache_key in self._cache:
                return self._cache[cache_key]
        kept = self._fitting(space, [name])
        density = None
        if kept:
            density = kernel_density(
                space,
                [{name: self._suggestions[i][name]} for i in kept],
                self._weights[kept],
                n_coordinates=self._n_coordinates,
            )
        with self._lock:
            self._cache[cache_key] = (kept, density)
        return kept, density

    def _fitting(self, space: SearchSpace, names: Sequence[str]) -> list[int]:
        """Indices of the suggestions that give every name a value valid in ``space``."""
        kept, reasons = [], []
        for i, s in enumerate(self._suggestions):
            missing = [n for n in names if n not in s]
            if missing:
                reasons.append(f"suggestions[{i}] {s!r} has no value for {missing}")
                continue
            try:
                space.to_internal({n: s[n] for n in names})
            except ValueError as e:
                reasons.append(f"suggestions[{i}]: {e}")
                continue
            if self._weights[i] > 0:
                kept.append(i)
        if reasons:
            warnings.warn(
                f"FusionSampler dropped {len(reasons)} suggestion(s) that don't fit the current "
                f"space: {'; '.join(reasons)}",
                stacklevel=3,
            )
        return kept

    # -- after start-up: fused TPE ----------------------------------------------------------------

    def _llm_density(self, search_space: dict[str, BaseDistribution], space: SearchSpace):
        cache_key = f"joint:{sorted((n, repr(d)) for n, d in search_space.items())}"
        with self._lock:
            if cache_key in self._cache:
                return self._cache[cache_key]
        kept = self._fitting(space, list(search_space))
        density = None
        if kept:
            density = suggestion_density(
                space,
                [{n: self._suggestions[i][n] for n in search_space} for i in kept],
                self._weights[kept],
                floor=self._floor,
                n_coordinates=self._n_coordinates,
            )
        with self._lock:
            self._cache[cache_key] = density
        return density

    def _fused_sample(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """A draw from the fused density on ``search_space``, in user values; its provenance is
        stored on ``trial``."""
        every = study._get_trials(deepcopy=False, use_cache=False)
        history = history_from_trials(every, study.direction)
        n = len(history)
        trials = [
            t
            for t in every
            if t.state in (*_FINISHED, TrialState.RUNNING) and t.number != trial.number
        ]
        below, above = _split_trials(study, trials, default_gamma(n))
        space = SearchSpace.from_optuna(search_space)
        with jax.enable_x64(True):
            _, l_below = from_parzen_estimator(
                self._estimator(below, search_space), search_space, min_kernels=_MIN_KERNELS
            )
            _, g_above = from_parzen_estimator(
                self._estimator(above, search_space), search_space, min_kernels=_MIN_KERNELS
            )
            p_llm = self._llm_density(search_space, space)
            alpha = self.alpha(history) if p_llm is not None else 0.0
            # The draw is keyed by the parameters it is for, so that the one-by-one draws of
            # sample_independent in one trial are independent of each other.
            purpose = "fused:" + json.dumps(sorted(search_space))
            proposal = self._propose(
                l_below, g_above, p_llm, alpha, self._seed_for(study, trial, purpose)
            )
        record = {
            "source": _likelier_source(alpha, proposal.log_p_llm, proposal.log_l),
            "log_p_llm": proposal.log_p_llm,
            "log_l": proposal.log_l,
            "alpha": alpha,
            "n": n,
            "last": max(t.number for t in every),
            "unfinished": sorted(t.number for t in every if t.state in _UNFINISHED),
        }
        _write_provenance(study, trial, search_space, record)
        return space.to_user(proposal.x)

    def _estimator(self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution]):
        """TPE's Parzen estimator of ``trials``, on those whose values fit the current space."""
        values: dict[str, list[float]] = {n: [] for n in search_space}
        for t in trials:
            stored = _stored_relative_params(t)
            reprs = {}
            for n, d in search_space.items():
                try:
                    r = d.to_internal_repr(t.params[n]) if n in t.params else float(stored[n])
                    # a value from before the bounds changed, or a garbled record (NaN, inf)
                    if not (math.isfinite(r) and d._contains(r)):
                        break
                except (KeyError, ValueError, TypeError, OverflowError):
                    break
                reprs[n] = r
            else:
                for n, r in reprs.items():
                    values[n].append(r)
        observations = {n: np.asarray(v, dtype=float) for n, v in values.items()}
        return _ParzenEstimator(observations, search_space, _PARZEN)

    def _propose(self, l_below, g_above, p_llm, alpha: float, seed: np.int64) -> Proposal:
        """The candidate with the best fused ratio ``log f(x) - log g(x)``, in internal units,
        with ``log p_llm(x)`` (``None`` without ``p_llm``) and ``log l(x)``."""
        method = self._method if p_llm is not None else "tpe"
        x, log_f, valid, n_accepted, log_p_llm, log_l = _fused_candidates(
            l_below,
            p_llm,
            np.float64(alpha),
            seed,
            method=method,
            n_candidates=self._n_candidates,
            n_proposals=_PROPOSALS_PER_CANDIDATE * self._n_candidates,
        )
        if method == "geometric" and int(n_accepted) == 0:
            warnings.warn(
                f"AM-GM rejection accepted none of {_PROPOSALS_PER_CANDIDATE * self._n_candidates}"
                f" proposals (the geometric pool's Z is tiny at alpha={alpha:.3g}: the suggestions"
                " and TPE's good density barely overlap); this trial used the envelope's draws.",
                stacklevel=4,
            )
        best = int(_best_ratio(g_above, x, log_f, valid))
        # indexed in NumPy: indexing a JAX array eagerly compiles a program of its own
        return Proposal(
            np.asarray(x)[best],
            None if p_llm is None else float(np.asarray(log_p_llm)[best]),
            float(np.asarray(log_l)[best]),
        )

    def _seed_for(self, study: optuna.Study, trial: FrozenTrial, purpose: str) -> np.int64:
        """A 63-bit seed from ``(sampler seed, study name, trial number, purpose)``."""
        # Optuna names an unnamed study ``no-name-<uuid>``, new on every run: key it as unnamed, so
        # a seeded run repeats (as TPESampler's does) whether or not the study was named.
        name = "" if study.study_name.startswith(DEFAULT_STUDY_NAME_PREFIX) else study.study_name
        text = f"{self._seed}:{name}:{trial.number}:{purpose}".encode()
        return np.int64(int.from_bytes(hashlib.blake2b(text, digest_size=8).digest()) >> 1)


class Proposal(NamedTuple):
    """A fused draw: the point ``x`` in internal units, and the normalized log-densities of the
    suggestion density (``None`` if no suggestion fits) and of TPE's good density there."""

    x: np.ndarray
    log_p_llm: float | None
    log_l: float


@jax.jit
def _best_ratio(g_above, x, log_f, valid):
    """The index of the candidate that maximizes TPE's ratio ``log f(x) - log g(x)`` among the
    valid ones."""
    score = jnp.where(valid, log_f - g_above.log_prob(x), -jnp.inf)
    return jnp.argmax(score)


@jax.jit
def _truncnorm_draw(seed, mu, sigma, low, high):
    """One exact draw of ``N(mu, sigma^2)`` truncated to ``[low, high]``."""
    return kernels.sample_truncnorm(jax.random.key(seed), mu, sigma, low, high, shape=())


@functools.partial(jax.jit, static_argnames=("method", "n_candidates", "n_proposals"))
def _fused_candidates(l_below, p_llm, alpha, seed, *, method, n_candidates, n_proposals):
    """Candidates from the fused good density ``f``, ``log f`` (up to a constant) at each, which
    candidates count, how many AM-GM proposals were accepted, and ``log p_llm`` (zeros for
    ``tpe``) and ``log l`` at each candidate.

    - ``tpe``: ``n_candidates`` draws of ``l`` (no suggestion fits the space).
    - ``linear``: ``n_candidates`` exact draws of ``alpha p_llm + (1 - alpha) l``.
    - ``geometric``: ``n_proposals`` AM-GM proposals for ``p_llm^alpha l^(1 - alpha)``, of which the
      first ``n_candidates`` accepted are the candidates (fewer accepted leave the rest invalid).
      If none is accepted, the first ``n_candidates`` proposals (draws of the envelope
      ``alpha p_llm + (1 - alpha) l``) stand in.

    Every method returns ``n_candidates`` rows, so the ratio step evaluates ``g`` on no more points
    than TPE does.
    """
    key = jax.random.key(seed)
    every = jnp.ones(n_candidates, dtype=bool)
    if method == "tpe":
        x = l_below.sample(key, n_candidates)
        log_l = l_below.log_prob(x)
        return x, log_l, every, jnp.asarray(0), jnp.zeros_like(log_l), log_l
    if method == "linear":
        fused = linear_pool((p_llm, l_below), jnp.stack([alpha, 1.0 - alpha]))
        x = fused.sample(key, n_candidates)
        log_f, n_accepted = fused.log_prob(x), jnp.asarray(0)
        valid = every
    else:
        proposals = amgm_round(geometric(p_llm, l_below, alpha), key, n_proposals)
        n_accepted = jnp.sum(proposals.accepted)
        (first,) = jnp.nonzero(proposals.accepted, size=n_candidates, fill_value=-1)
        none = n_accepted == 0
        pick = jnp.where(none, jnp.arange(n_candidates), jnp.maximum(first, 0))
        valid = none | (first >= 0)
        x, log_f = proposals.x[pick], proposals.unnormalized_log_prob[pick]
    return x, log_f, valid, n_accepted, p_llm.log_prob(x), l_below.log_prob(x)


def _require_single_objective(study: optuna.Study) -> None:
    if len(study.directions) > 1:
        raise ValueError(
            f"FusionSampler supports single-objective studies; study {study.study_name!r} has "
            f"{len(study.directions)} objectives"
        )


def _likelier_source(alpha: float, log_p_llm: float | None, log_l: float) -> str:
    """``"llm"`` if ``alpha p_llm(x) > (1 - alpha) l(x)``, else ``"tpe"``: the component of the
    linear envelope ``alpha p_llm + (1 - alpha) l`` that more probably drew ``x``."""
    if log_p_llm is None or alpha <= 0.0:
        return TPE
    if alpha >= 1.0:
        return LLM
    return LLM if math.log(alpha) + log_p_llm > math.log1p(-alpha) + log_l else TPE


def _n_finished(study: optuna.Study) -> int:
    return len(study._get_trials(deepcopy=False, states=_FINISHED, use_cache=True))


def _write_chunks(study: optuna.Study, trial: FrozenTrial, key: str, text: str) -> None:
    """``text`` as system attrs ``key:0``, ``key:1``, ... of at most ``_CHUNK`` characters each."""
    for i in range(0, max(len(text), 1), _CHUNK):
        study._storage.set_trial_system_attr(
            trial._trial_id, f"{key}:{i // _CHUNK}", text[i : i + _CHUNK]
        )


def _read_chunks(system_attrs: Mapping[str, Any], key: str) -> dict | None:
    """The JSON object stored by :func:`_write_chunks` under ``key``, or ``None``.

    Chunks are read in order until one is missing; a partial or garbled record (a missing or cut
    chunk, invalid JSON, not an object) reads as ``None``.
    """
    chunks, i = [], 0
    while isinstance(chunk := system_attrs.get(f"{key}:{i}"), str):
        chunks.append(chunk)
        i += 1
    try:
        stored = json.loads("".join(chunks)) if chunks else None
    except json.JSONDecodeError:
        return None
    return stored if isinstance(stored, dict) else None


def _stored_relative_params(trial: FrozenTrial) -> dict[str, float]:
    """The internal values ``sample_relative`` stored for a running trial, or ``{}``.

    A partial or garbled record counts as none, and the trial then contributes only the parameters
    it already has.
    """
    if trial.state != TrialState.RUNNING:
        return {}
    return _read_chunks(trial.system_attrs, _ATTR) or {}


# -- provenance and history --------------------------------------------------------------------


def _block_key(search_space: Mapping[str, Any]) -> str:
    """The attr key of the provenance of a block of parameters drawn together: a digest of their
    names, so that keys stay short (RDB storage indexes keys up to 512 characters)."""
    names = json.dumps(sorted(search_space)).encode()
    return f"{_PROVENANCE}:{hashlib.blake2b(names, digest_size=8).hexdigest()}"


def _write_provenance(
    study: optuna.Study,
    trial: FrozenTrial,
    search_space: Mapping[str, Any],
    record: dict[str, Any],
) -> None:
    _write_chunks(study, trial, _block_key(search_space), json.dumps(record))


class AlphaRecord(NamedTuple):
    """The alpha of one fused draw, as stored, and the history it was computed from: ``n``
    finished trials among those numbered up to ``last``, leaving out ``unfinished`` (the trials
    then running or waiting, the drawing trial among them)."""

    alpha: float
    n: int
    last: int
    unfinished: tuple[int, ...]

    def seen(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        """The trials of ``trials`` (the study now, at any later time) that were finished when
        this alpha was computed. A trial's state only moves from running or waiting to a final
        one and a finished trial's value and records never change, so
        ``history_from_trials(record.seen(trials), direction)`` is the history the draw saw."""
        unfinished = set(self.unfinished)
        return [t for t in trials if t.number <= self.last and t.number not in unfinished]


def _provenance_attrs(trial: FrozenTrial) -> tuple[tuple[str, Any], ...]:
    """The trial's provenance attrs, ``(key, value)`` sorted by key."""
    prefix = _PROVENANCE + ":"
    return tuple(sorted((k, v) for k, v in trial.system_attrs.items() if k.startswith(prefix)))


def _provenance_blocks(attrs: tuple[tuple[str, Any], ...]) -> list[dict] | None:
    """The provenance records in ``attrs``, one per block, in key order; ``None`` if one is
    garbled."""
    stored = dict(attrs)
    blocks = []
    for key in sorted({k.rsplit(":", 1)[0] for k in stored}):
        block = _read_chunks(stored, key)
        if block is None:
            return None
        blocks.append(block)
    return blocks


def _log_density(value: Any) -> float | None:
    """A stored log-density, or ``None`` if it is missing or not in ``[-inf, inf)``."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isnan(value) and value < math.inf:
            return float(value)
    return None


def trial_provenance(trial: FrozenTrial) -> tuple[str | None, float | None, float | None]:
    """``(source, log_p_llm, log_l)`` of a trial from its stored records.

    The log-densities are the sums over the trial's blocks (``None`` unless every block has one),
    the source is the blocks' common source (``None`` if they disagree). A trial with no record,
    or with a garbled or partial one, gives ``(None, None, None)``.
    """
    attrs = _provenance_attrs(trial)
    if not all(isinstance(v, str) for _, v in attrs):
        return None, None, None
    return _provenance_of_attrs(attrs)


@functools.lru_cache(maxsize=4096)
def _provenance_of_attrs(
    attrs: tuple[tuple[str, str], ...],
) -> tuple[str | None, float | None, float | None]:
    """:func:`trial_provenance` of a trial with these provenance attrs, remembered by their
    content (a finished trial's records never change, and a study reads them at every draw)."""
    unknown = (None, None, None)
    blocks = _provenance_blocks(attrs)
    if not blocks:
        return unknown
    sources = [b.get("source") for b in blocks]
    if not all(s is None or isinstance(s, str) for s in sources):
        return unknown
    source = sources[0] if len(set(sources)) == 1 else None
    sums = []
    for name in ("log_p_llm", "log_l"):
        stored = [b.get(name) for b in blocks]
        terms = [_log_density(v) for v in stored]
        if any(v is not None and t is None for v, t in zip(stored, terms, strict=True)):
            return unknown
        if any(t is None for t in terms):
            sums.append(None)
            continue
        try:
            total = math.fsum(terms)
        except OverflowError:
            return unknown
        if not total < math.inf:
            return unknown
        sums.append(total)
    return source, sums[0], sums[1]


def alpha_records(trial: FrozenTrial) -> list[AlphaRecord]:
    """The alphas of the trial's fused draws, one per block drawn after start-up, in key order.
    Garbled records are left out."""
    records = []
    for block in _provenance_blocks(_provenance_attrs(trial)) or []:
        alpha, n, last = block.get("alpha"), block.get("n"), block.get("last")
        unfinished = block.get("unfinished")
        if (
            is_real(alpha)
            and 0.0 <= alpha <= 1.0
            and is_int(n)
            and is_int(last)
            and isinstance(unfinished, list)
            and all(is_int(k) for k in unfinished)
        ):
            records.append(AlphaRecord(float(alpha), n, last, tuple(unfinished)))
    return records


def history_from_trials(
    trials: Sequence[FrozenTrial], direction: StudyDirection = StudyDirection.MINIMIZE
) -> History:
    """The :class:`~fusion.adaptive.History` of ``trials``: its COMPLETE and PRUNED trials in
    trial-number order, with values oriented so that lower is better (negated when ``direction``
    is to maximize; a pruned trial as ``+inf``; a NaN or missing value leaves the trial out) and
    their :func:`trial_provenance`. Running, waiting and failed trials are left out. A trial with
    several objective values raises a ``ValueError``."""
    sign = -1.0 if direction == StudyDirection.MAXIMIZE else 1.0
    records = []
    for t in sorted(trials, key=lambda t: t.number):
        if t.values is not None and len(t.values) > 1:
            raise ValueError(
                f"trials: trial {t.number} has {len(t.values)} objective values; a history is of "
                "a single-objective study"
            )
        if t.state == TrialState.PRUNED:
            value = math.inf
        elif t.state == TrialState.COMPLETE and is_real(t.values[0] if t.values else None):
            value = sign * float(t.values[0])
        else:
            continue
        if math.isnan(value):
            continue
        records.append(TrialRecord(value, *trial_provenance(t)))
    return History(tuple(records))


def _conform(name: str, dist: BaseDistribution, value: Any) -> Any:
    """``value`` as Optuna keeps it: snapped to the grid of ``dist``, clipped into its range and of
    its type (``int`` for an ``IntDistribution``), or the very choice object of a categorical.

    Optuna silently drops a relative value that ``dist`` does not contain and stores an independent
    one as it is, so every value is checked with ``dist``'s own containment test before it leaves.
    """
    if isinstance(dist, CategoricalDistribution):
        out = dist.choices[_choice_index(name, dist.choices, value)]
    else:
        v = float(value)
        if math.isnan(v):
            raise ValueError(f"parameter {name!r}: the sampler drew NaN for {dist}")
        v = min(max(v, dist.low), dist.high)
        if dist.step is not None:
            n_steps = round((dist.high - dist.low) / dist.step)
            k = min(max(round((v - dist.low) / dist.step), 0), n_steps)
            v = min(max(dist.low + k * dist.step, dist.low), dist.high)
        out = int(round(v)) if isinstance(dist, IntDistribution) else float(v)
    if not dist._contains(dist.to_internal_repr(out)):  # pragma: no cover - a bug if reached
        raise RuntimeError(f"parameter {name!r}: {out!r} (from {value!r}) is not in {dist}")
    return out


def _check_same_kind(study: optuna.Study, name: str, dist: BaseDistribution) -> None:
    """Raise as Optuna's storage would if ``name`` had another kind (or log flag, or choices)."""
    for t in study._get_trials(deepcopy=False, use_cache=True):
        if name in t.distributions:
            try:
                check_distribution_compatibility(t.distributions[name], dist)
            except ValueError as e:
                raise ValueError(
                    f"parameter {name!r}: {e} It was {t.distributions[name]} in trial "
                    f"{t.number}, now {dist}."
                ) from None
            return
