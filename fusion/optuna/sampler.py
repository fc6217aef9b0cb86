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

``alpha`` follows a schedule of the number of finished trials; the default
:class:`~fusion.adaptive.HyperbolicDecay` starts at 0.75 and decays like ``1/n`` to zero, so the
sampler becomes TPE in the long run. During the first ``n_startup_trials`` trials the sampler draws
from ``p_llm`` itself (suggestion kernels plus a uniform floor) instead of uniformly: one
suggestion's kernel is chosen per trial and shared by all its parameters.

Parameters outside Optuna's intersection search space (conditional, or added late) arrive one by one
through ``sample_independent``; they are fused the same way on their own one-dimensional space, with
the suggestions' marginal. A space that no suggestion covers gets plain TPE.

Randomness is keyed by ``(seed, study name, trial number)``, never by per-trial state on the
sampler, so threads and processes that share a study don't repeat each other. Results are
reproducible under a seed with ``n_jobs=1``. Multi-objective studies are refused.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import threading
import warnings
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import _split_trials, default_gamma, default_weights
from optuna.search_space import IntersectionSearchSpace
from optuna.trial import FrozenTrial, TrialState

from fusion.adaptive import AlphaSchedule, as_schedule
from fusion.combine import geometric, linear_pool
from fusion.density import Uniform
from fusion.kde import DEFAULT_FLOOR, kernel_density, suggestion_density
from fusion.optuna.parzen import from_parzen_estimator
from fusion.sample import RejectionError, amgm_rejection_sample
from fusion.space import SearchSpace

METHODS = ("geometric", "linear")
_ATTR = "fusion:relative_params"
_CHUNK = 2000  # RDB storage keeps a system attr value under 2046 characters.
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
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
        don't fit are dropped with a warning.
      method: ``"geometric"`` (default) or ``"linear"``, how ``p_llm`` is fused with TPE's good density.
      alpha: a schedule ``n -> alpha`` of the number of finished trials, a constant in ``[0, 1]``,
        or ``None`` for :class:`~fusion.adaptive.HyperbolicDecay` (``0.75 / (1 + n/25)``).
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
        if isinstance(suggestions, Mapping) or not isinstance(suggestions, Sequence):
            raise ValueError(
                f"suggestions must be a list of dicts, got {type(suggestions).__name__}"
            )
        for i, s in enumerate(suggestions):
            if not isinstance(s, Mapping):
                raise ValueError(f"suggestions[{i}] must be a dict of name to value, got {s!r}")
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        if not (isinstance(n_startup_trials, int) and n_startup_trials >= 0):
            raise ValueError(f"n_startup_trials must be an int >= 0, got {n_startup_trials!r}")
        if not (isinstance(n_ei_candidates, int) and n_ei_candidates >= 1):
            raise ValueError(f"n_ei_candidates must be an int >= 1, got {n_ei_candidates!r}")
        if not (isinstance(floor, int | float) and 0.0 <= floor <= 1.0):
            raise ValueError(f"floor must be a number in [0, 1], got {floor!r}")
        if suggestion_weights is not None:
            w = np.asarray(suggestion_weights, dtype=float)
            if w.shape != (len(suggestions),) or not np.all(np.isfinite(w)) or np.any(w < 0):
                raise ValueError(
                    f"suggestion_weights must hold {len(suggestions)} finite values >= 0, "
                    f"got {suggestion_weights!r}"
                )
        self._suggestions = [dict(s) for s in suggestions]
        self._weights = (
            np.ones(len(suggestions))
            if suggestion_weights is None
            else np.asarray(suggestion_weights, dtype=float)
        )
        self._method = method
        self._schedule = as_schedule(alpha)
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
        params = self._fused_sample(study, trial, space)
        internal = {n: space[n].to_internal_repr(v) for n, v in params.items()}
        text = json.dumps(internal)
        for i in range(0, len(text), _CHUNK):
            study._storage.set_trial_system_attr(
                trial._trial_id, f"{_ATTR}:{i // _CHUNK}", text[i : i + _CHUNK]
            )
        return params

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        _require_single_objective(study)
        space = {param_name: param_distribution}
        if _n_finished(study) < self._n_startup_trials:
            return self._startup_sample(study, trial, param_name, param_distribution)
        return self._fused_sample(study, trial, space)[param_name]

    # -- start-up: draws from p_llm ---------------------------------------------------------------

    def _startup_sample(
        self, study: optuna.Study, trial: FrozenTrial, name: str, dist: BaseDistribution
    ) -> Any:
        """A draw of one parameter from ``p_llm``, with the kernel chosen once per trial."""
        key = self._key(study, trial, "startup")
        probs = np.append((1 - self._floor) * self._weights / self._weights.sum(), self._floor)
        with jax.enable_x64(True):
            pick = int(jax.random.choice(key, len(probs), p=jnp.asarray(probs)))
            key = jax.random.fold_in(key, zlib.crc32(name.encode()))
            space = SearchSpace.from_optuna({name: dist})
            kept, density = self._marginal(name, dist, space)
            if pick in kept:
                i = kept.index(pick)
                log_w = jnp.full(density.n_kernels, -jnp.inf).at[i].set(0.0)
                x = dataclasses.replace(density, log_weights=log_w).sample(key, 1)
            else:
                x = Uniform(space.dims).sample(key, 1)
        return space.to_user(np.asarray(x[0]))[name]

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
            try:
                space.to_internal({n: s[n] for n in names if n in s})
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
        trials = [
            t
            for t in study._get_trials(
                deepcopy=False, states=(*_FINISHED, TrialState.RUNNING), use_cache=False
            )
            if t.number != trial.number
        ]
        n = sum(t.state != TrialState.RUNNING for t in trials)
        below, above = _split_trials(study, trials, default_gamma(n))
        space = SearchSpace.from_optuna(search_space)
        with jax.enable_x64(True):
            _, l_below = from_parzen_estimator(self._estimator(below, search_space), search_space)
            _, g_above = from_parzen_estimator(self._estimator(above, search_space), search_space)
            p_llm = self._llm_density(search_space, space)
            alpha = float(self._schedule(n)) if p_llm is not None else 0.0
            x = self._propose(l_below, g_above, p_llm, alpha, self._key(study, trial, "fused"))
        return space.to_user(x)

    def _estimator(self, trials: list[FrozenTrial], search_space: dict[str, BaseDistribution]):
        """TPE's Parzen estimator of ``trials``, on those whose values fit the current space."""
        values: dict[str, list[float]] = {n: [] for n in search_space}
        for t in trials:
            stored = _stored_relative_params(t)
            reprs = {}
            for n, d in search_space.items():
                try:
                    r = d.to_internal_repr(t.params[n]) if n in t.params else float(stored[n])
                except (KeyError, ValueError, TypeError):
                    break
                if not d._contains(r):  # a value from before the bounds changed
                    break
                reprs[n] = r
            else:
                for n, r in reprs.items():
                    values[n].append(r)
        observations = {n: np.asarray(v, dtype=float) for n, v in values.items()}
        return _ParzenEstimator(observations, search_space, _PARZEN)

    def _propose(self, l_below, g_above, p_llm, alpha: float, key: jax.Array) -> np.ndarray:
        """The candidate with the best fused ratio ``log f(x) - log g(x)``, in internal units."""
        n = self._n_candidates
        fused = l_below
        candidates = None
        if alpha > 0 and self._method == "linear":
            fused = linear_pool((p_llm, l_below), (alpha, 1.0 - alpha))
        elif alpha > 0:
            pool = geometric(p_llm, l_below, alpha)
            try:
                result = amgm_rejection_sample(
                    pool, key, n, batch_size=max(64, 4 * n), max_rounds=32, min_accepted=1
                )
                fused, candidates = pool, jnp.asarray(result.samples)
            except RejectionError as e:
                warnings.warn(
                    f"{e} Falling back to TPE's own density for this trial.", stacklevel=4
                )
        if candidates is None:
            candidates = fused.sample(key, n)
        score = fused.unnormalized_log_prob(candidates) - g_above.log_prob(candidates)
        return np.asarray(candidates[int(jnp.argmax(score))])

    def _key(self, study: optuna.Study, trial: FrozenTrial, purpose: str) -> jax.Array:
        key = jax.random.key(self._seed)
        for part in (
            zlib.crc32(study.study_name.encode()),
            trial.number,
            zlib.crc32(purpose.encode()),
        ):
            key = jax.random.fold_in(key, part)
        return key


def _require_single_objective(study: optuna.Study) -> None:
    if len(study.directions) > 1:
        raise ValueError(
            f"FusionSampler supports single-objective studies; study {study.study_name!r} has "
            f"{len(study.directions)} objectives"
        )


def _n_finished(study: optuna.Study) -> int:
    return len(study._get_trials(deepcopy=False, states=_FINISHED, use_cache=True))


def _stored_relative_params(trial: FrozenTrial) -> dict[str, float]:
    """The internal values ``sample_relative`` stored for a running trial, or ``{}``.

    Chunks are read in order until one is missing; a partial or garbled record counts as none, and
    the trial then contributes only the parameters it already has.
    """
    if trial.state != TrialState.RUNNING:
        return {}
    chunks, i = [], 0
    while (chunk := trial.system_attrs.get(f"{_ATTR}:{i}")) is not None:
        chunks.append(chunk)
        i += 1
    try:
        stored = json.loads("".join(chunks)) if chunks else {}
    except json.JSONDecodeError:
        return {}
    return stored if isinstance(stored, dict) else {}
