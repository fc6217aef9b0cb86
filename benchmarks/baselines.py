"""Prior-guided baselines for the benchmark harness: piBO, BOPrO and PriorBand as Optuna samplers,
and the seeding of the TPE+enqueue baseline.

Each prior-guided sampler receives a prior ``pi`` (``priors.Prior``, duck-typed) and uses only:

- ``prior.space``: the dict of Optuna distributions ``pi`` lives on, in its coordinate order;
- ``prior.log_pdf_internal(x)``: ``log pi`` at the rows of ``x``, an ``(m, d)`` array of internal
  coordinates in the order of ``prior.space``: a float's value, ``ln(value)`` for a log float or a
  log int, an int's value, a categorical's choice index;
- ``prior.sample(rng, n)``: ``n`` valid configurations (dicts of name to value) drawn from ``pi``.

Shared rules:

- TPE's densities are built as Optuna's ``TPESampler`` builds them: the finished (complete and
  pruned) trials are split by ``_split_trials`` into the ``default_gamma(n)`` best ("below") and the
  rest ("above"), which also handles the study's direction, and each set gets a ``_ParzenEstimator``
  with ``TPESampler``'s default parameters (prior weight 1, magic clip, no endpoints, default
  weights) on the relative search space, the intersection of the finished trials' spaces.
  ``l(x)`` is the below density, ``g(x)`` the above one.
- Candidates: ``n_ei_candidates`` draws from ``l`` (as TPE) and as many from ``pi``. piBO and
  BOPrO maximize their acquisitions over the whole space; draws from ``l`` alone would seldom reach
  the region the prior term favours once ``l`` has moved away from it.
- Start-up: while fewer than ``n_startup_trials`` trials have finished, every parameter comes from
  one joint draw of ``pi`` per trial (piBO's and BOPrO's initial designs are drawn from the prior).
  Parameters outside the relative space (every parameter of the first trial, or one new to the
  study) come from that same draw later on.
- Where the space being drawn covers only some of ``pi``'s parameters, the others are held at a
  fixed reference configuration (a draw of ``pi`` keyed by the seed) when ``log pi`` is evaluated.
  ``pi`` is a product density, so this adds the same constant to every candidate's ``log pi`` and
  changes neither an argmax nor BOPrO's ratio ``pi(x) / max pi``.
- A parameter that ``pi`` does not define, or defines with another distribution, raises a
  ``ValueError`` naming it when it is sampled, or when its trial finishes (Optuna may keep a
  relative value for a parameter suggested with other bounds without asking the sampler).
  Multi-objective studies raise a ``ValueError``.
- Randomness is keyed by ``(seed, trial number, purpose)`` through
  ``np.random.default_rng([seed, trial.number, purpose])``, never by state the sampler carries
  from call to call, so processes sharing a study don't repeat each other's draws and a seeded
  study is reproducible.
- Every value returned is snapped to its distribution's grid, clipped into its range, of its type
  (``int`` for an ``IntDistribution``) or the very choice object of a categorical.
"""

from __future__ import annotations

import math
import numbers
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.samplers import BaseSampler
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import _split_trials, default_gamma, default_weights
from optuna.search_space import intersection_search_space
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState
from scipy import special, stats

BOPRO_EPS = 0.01
"""``P_g`` is scaled so that its maximum is ``1 - BOPRO_EPS``, which keeps ``P_b >= BOPRO_EPS``."""
N_PRIOR_MAX_DRAWS = 1024
"""Draws of ``pi`` (keyed by the seed alone) over which BOPrO estimates ``max pi``."""

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# TPESampler's defaults (optuna 5.0-5.1), as FusionSampler uses them.
_PARZEN = _ParzenEstimatorParameters(
    prior_weight=1.0,
    consider_magic_clip=True,
    consider_endpoints=False,
    weights=default_weights,
    multivariate=True,
)
# The third entry of a trial's RNG key: what the draw is for.
_STARTUP, _CANDIDATES, _ESP = 0, 1, 2
# Keys of draws that depend on the seed alone.
_REFERENCE, _PRIOR_MAX = 0, 1


# -- acquisition scores and sampling probabilities (pure functions) -------------------------------


def pibo_score(log_l, log_g, log_prior, beta: float, n: int) -> np.ndarray:
    """piBO's acquisition with TPE's ratio as the base acquisition, in log space.

    Hvarfner, Stoll, Souza, Lindauer, Hutter, Nardi, "πBO: Augmenting acquisition functions with
    user beliefs for Bayesian optimization", ICLR 2022, eq. (6): ``alpha_pi(x) = alpha(x)
    pi(x)^(beta/n)``. With TPE's acquisition ``alpha(x) = l(x)/g(x)``:

        score(x) = log l(x) - log g(x) + (beta / n) log pi(x)

    ``n`` is the number of finished trials (at least 1).
    """
    beta = _positive("beta", beta)
    n = _integer("n", n, minimum=1)
    log_l, log_g, log_prior = _arrays(log_l=log_l, log_g=log_g, log_prior=log_prior)
    return log_l - log_g + _weighted(beta / n, log_prior)


def bopro_score(
    log_l, log_g, log_prior, log_prior_max: float, t: int, beta: float, eps: float = BOPRO_EPS
) -> np.ndarray:
    """BOPrO's acquisition with TPE's densities as the model, in log space.

    Souza, Nardi, Oliveira, Olukotun, Lindauer, Hutter, "Bayesian Optimization with a Prior for the
    Optimum", ECML-PKDD 2021, Section 3: the pseudo-posteriors ``g(x) ∝ P_g(x) M_g(x)^(t/beta)``
    and ``b(x) ∝ P_b(x) M_b(x)^(t/beta)``, and EI is monotone in their ratio. With TPE's good and
    bad densities ``l`` and ``g`` as the model terms ``M_g`` and ``M_b``:

        score(x) = [log P_g(x) + (t/beta) log l(x)] - [log P_b(x) + (t/beta) log g(x)]

    with the prior of the good region ``P_g(x) = (1 - eps) pi(x) / max pi`` and the paper's bad
    region prior ``P_b(x) = 1 - P_g(x)``. The paper scales ``P_g`` to a maximum of 1; this one
    stops at ``1 - eps`` (``BOPRO_EPS = 0.01``), so that ``P_b > 0``: at ``P_b = 0`` the score would
    be ``+inf`` whatever the data say, and a discrete or categorical candidate lands on the prior's
    mode exactly. ``log_prior_max`` is ``log max pi``; values above it are clipped to it.
    The model terms are TPE's own probability model (see :class:`BOPrOSampler`).
    ``t`` is the number of finished trials; at ``t = 0`` the model terms are 0.
    """
    beta = _positive("beta", beta)
    t = _integer("t", t, minimum=0)
    if not (_is_real(eps) and 0.0 < eps < 1.0):
        raise ValueError(f"eps must be in (0, 1), got {eps!r}")
    if not (_is_real(log_prior_max) and math.isfinite(log_prior_max)):
        raise ValueError(f"log_prior_max must be a finite number, got {log_prior_max!r}")
    log_l, log_g, log_prior = _arrays(log_l=log_l, log_g=log_g, log_prior=log_prior)
    log_p_good = math.log1p(-eps) + np.minimum(log_prior - log_prior_max, 0.0)
    log_p_bad = np.log1p(-np.exp(log_p_good))
    w = t / beta
    return (log_p_good + _weighted(w, log_l)) - (log_p_bad + _weighted(w, log_g))


def uniform_probability(eta: float, rung: int) -> float:
    """PriorBand's probability of a uniform draw at rung ``r``: ``p_U = 1 / (1 + eta^r)``."""
    eta = _above_one("eta", eta)
    rung = _integer("rung", rung, minimum=0)
    return 1.0 / (1.0 + eta**rung)


def priorband_probabilities(
    top_log_prior=None, top_log_incumbent=None, *, eta: float = 3, rung: int = 1
) -> tuple[float, float, float]:
    """PriorBand's sampling probabilities ``(p_U, p_pi, p_inc)``: uniform, prior, incumbent.

    Mallik, Bergman, Hvarfner, Stoll, Janowski, Lindauer, Nardi, Hutter, "PriorBand: Practical
    Hyperparameter Optimization in the Age of Deep Learning", NeurIPS 2023, Section 4 (the
    ensemble sampling policy): ``p_U = 1/(1 + eta^r)``; the rest, ``1 - p_U``, goes to the prior
    alone until there is an incumbent (pass ``None`` for both arrays), and is then split between
    the prior and the incumbent by how well each explains the top configurations:

        w_pi = exp(mean_i log pi(x_i)) / (exp(mean_i log pi(x_i)) + exp(mean_i log lambda(x_i)))
        p_pi = (1 - p_U) w_pi,   p_inc = (1 - p_U) (1 - w_pi)

    over the top configurations ``x_i``, where ``lambda`` is the density around the incumbent.
    The per-configuration mean of the log-likelihoods (a geometric mean of the likelihoods) keeps
    the split from hardening to 0 or 1 as the number of top configurations grows, which a product
    of likelihoods would do. When both means are ``-inf`` the split is even.
    """
    p_u = uniform_probability(eta, rung)
    if top_log_prior is None and top_log_incumbent is None:
        return p_u, 1.0 - p_u, 0.0
    if top_log_prior is None or top_log_incumbent is None:
        raise ValueError(
            "top_log_prior and top_log_incumbent must both be given or both be None, got "
            f"{type(top_log_prior).__name__} and {type(top_log_incumbent).__name__}"
        )
    a, b = _arrays(top_log_prior=top_log_prior, top_log_incumbent=top_log_incumbent)
    if a.size == 0:
        raise ValueError("top_log_prior must hold at least one log-likelihood, got none")
    if np.isnan(a).any() or np.isnan(b).any() or np.isposinf(a).any() or np.isposinf(b).any():
        raise ValueError(
            f"top_log_prior and top_log_incumbent must be in [-inf, inf), got {a!r} and {b!r}"
        )
    mean_a, mean_b = float(np.mean(a)), float(np.mean(b))
    if mean_a == mean_b == -math.inf:
        w = 0.5
    else:
        w = math.exp(mean_a - np.logaddexp(mean_a, mean_b))
    return p_u, (1.0 - p_u) * w, (1.0 - p_u) * (1.0 - w)


# -- the samplers ---------------------------------------------------------------------------------


class _PriorSampler(BaseSampler):
    """What every prior-guided sampler shares: the prior, the seed, the relative space, the check
    of the study's space against the prior's, and start-up draws from the prior."""

    def __init__(self, prior: Any, *, seed: int | None, n_startup_trials: int) -> None:
        self._prior = _check_prior(prior)
        self._space: dict[str, BaseDistribution] = dict(prior.space)
        self._names = list(self._space)
        self._n_startup_trials = _integer("n_startup_trials", n_startup_trials, minimum=0)
        if seed is not None and not (_is_int(seed) and 0 <= seed < 2**63):
            raise ValueError(f"seed must be None or an int in [0, 2**63), got {seed!r}")
        self._seed = secrets.randbits(32) if seed is None else int(seed)
        self._cache: dict[Any, Any] = {}

    def reseed_rng(self) -> None:
        self._seed = secrets.randbits(32)
        self._cache = {}

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        _require_single_objective(study)
        trials = study._get_trials(deepcopy=False, use_cache=True)
        space = intersection_search_space(trials, include_pruned=True)
        return {n: d for n, d in space.items() if not d.single()}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        _require_single_objective(study)
        self._check_space({param_name: param_distribution})
        value = self._sample_prior(self._rng(trial, _STARTUP), 1)[0][param_name]
        return _conform(param_name, param_distribution, value)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        # Optuna keeps a relative value for a parameter suggested with other bounds than the
        # relative space's, without asking the sampler, when the value fits the new bounds.
        if state != TrialState.FAIL:
            self._check_space(trial.distributions)

    # -- shared pieces ----------------------------------------------------------------------------

    def _rng(self, trial: FrozenTrial, purpose: int) -> np.random.Generator:
        return np.random.default_rng([self._seed, trial.number, purpose])

    def _check_space(self, search_space: Mapping[str, BaseDistribution]) -> None:
        for name, dist in search_space.items():
            if name not in self._space:
                raise ValueError(
                    f"prior: the study's parameter {name!r} ({dist}) is not in the prior's space "
                    f"{list(self._space)}"
                )
            if self._space[name] != dist:
                raise ValueError(
                    f"prior: parameter {name!r} is {dist} in the study but {self._space[name]} in "
                    "the prior's space"
                )

    def _sample_prior(self, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
        configs = self._prior.sample(rng, n)
        if len(configs) != n or not all(isinstance(c, Mapping) for c in configs):
            raise ValueError(f"prior: sample(rng, {n}) must return {n} dicts, got {configs!r}")
        for c in configs:
            missing = [name for name in self._names if name not in c]
            if missing:
                raise ValueError(f"prior: sample returned {c!r}, which has no value for {missing}")
        return list(configs)

    def _coords(self, config: Mapping[str, Any]) -> np.ndarray:
        """A configuration's internal coordinates in the prior's order."""
        return np.array([_coord(self._space[n], config[n]) for n in self._names], dtype=float)

    def _reference(self) -> np.ndarray:
        """The coordinates at which parameters outside the space being drawn are held."""
        if "reference" not in self._cache:
            rng = np.random.default_rng([self._seed, _REFERENCE])
            self._cache["reference"] = self._coords(self._sample_prior(rng, 1)[0])
        return self._cache["reference"]

    def _log_prior(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """``log pi`` at candidates given as columns of Optuna's internal representation (a log
        parameter by its value, not its ``ln``), one per parameter of the space being drawn."""
        m = len(next(iter(columns.values())))
        x = np.tile(self._reference(), (m, 1))
        for j, name in enumerate(self._names):
            if name in columns:
                dist = self._space[name]
                col = np.asarray(columns[name], dtype=float)
                x[:, j] = np.log(col) if _is_log(dist) else col
        return self._log_pdf_rows(x)

    def _log_pdf_rows(self, x: np.ndarray) -> np.ndarray:
        """``log pi`` at the rows of ``x`` (internal coordinates in the prior's order)."""
        out = np.asarray(self._prior.log_pdf_internal(x), dtype=float)
        if out.shape != (len(x),):
            raise ValueError(
                f"prior: log_pdf_internal on an array of shape {x.shape} must return shape "
                f"({len(x)},), got {out.shape}"
            )
        return out


class _TPEPriorSampler(_PriorSampler):
    """A prior-guided TPE: after start-up, the candidate of ``l`` and ``pi`` that maximizes
    ``_score``."""

    def __init__(
        self, prior: Any, *, seed: int | None, n_startup_trials: int, n_ei_candidates: int
    ) -> None:
        super().__init__(prior, seed=seed, n_startup_trials=n_startup_trials)
        self._n_candidates = _integer("n_ei_candidates", n_ei_candidates, minimum=1)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        _require_single_objective(study)
        fixed = trial.system_attrs.get("fixed_params", {})
        space = {n: d for n, d in search_space.items() if n not in fixed}
        if not space:
            return {}
        self._check_space(space)
        trials = list(study._get_trials(deepcopy=False, states=_FINISHED, use_cache=True))
        n = len(trials)
        if n < self._n_startup_trials:
            return {}
        below, above = _split_trials(study, trials, default_gamma(n))
        l_below, g_above = _parzen(below, space), _parzen(above, space)
        rng = self._rng(trial, _CANDIDATES)
        from_l = l_below.sample(np.random.RandomState(rng.integers(2**32)), self._n_candidates)
        from_prior = self._sample_prior(rng, self._n_candidates)
        columns = {
            name: np.concatenate(
                [
                    np.asarray(from_l[name], dtype=float),
                    [dist.to_internal_repr(c[name]) for c in from_prior],
                ]
            )
            for name, dist in space.items()
        }
        log_l = l_below.log_pdf(columns)
        log_g = g_above.log_pdf(columns)
        log_prior = self._log_prior(columns)
        score = self._score(log_l, log_g, log_prior, n, space)
        best = int(np.argmax(np.where(np.isnan(score), -np.inf, score)))
        return {name: _from_optuna(name, d, columns[name][best]) for name, d in space.items()}

    def _score(self, log_l, log_g, log_prior, n, space) -> np.ndarray:
        raise NotImplementedError


class PiBOSampler(_TPEPriorSampler):
    """piBO on TPE: TPE's ratio ``l(x)/g(x)`` weighted by the prior to the power ``beta/n``.

    Hvarfner, Stoll, Souza, Lindauer, Hutter, Nardi, "πBO: Augmenting acquisition functions with
    user beliefs for Bayesian optimization", ICLR 2022. piBO multiplies any acquisition by
    ``pi(x)^(beta/n)``; the prior's weight decays as ``beta/n`` so the model takes over. Each trial
    after start-up returns the candidate that maximizes (see :func:`pibo_score`)

        log l(x) - log g(x) + (beta/n) log pi(x),   n = the number of finished trials,

    among ``n_ei_candidates`` draws of ``l`` and as many of ``pi``. The first ``n_startup_trials``
    trials are draws of ``pi``, as piBO's initial design.

    Args:
      prior: the prior ``pi`` (``space``, ``log_pdf_internal``, ``sample``).
      n_trials: the study's budget ``N``; the default ``beta`` is ``N/10``, the paper's setting.
      beta: the prior's weight, ``> 0``; ``None`` for ``n_trials / 10``.
      seed: seed of every draw (``None``: a random one).
      n_startup_trials: trials drawn from ``pi`` before the acquisition starts.
      n_ei_candidates: candidates drawn from ``l``, and again from ``pi``, per trial.
    """

    def __init__(
        self,
        prior: Any,
        *,
        n_trials: int,
        beta: float | None = None,
        seed: int | None = None,
        n_startup_trials: int = 10,
        n_ei_candidates: int = 24,
    ) -> None:
        n_trials = _integer("n_trials", n_trials, minimum=1)
        self.beta = n_trials / 10 if beta is None else _positive("beta", beta)
        super().__init__(
            prior, seed=seed, n_startup_trials=n_startup_trials, n_ei_candidates=n_ei_candidates
        )

    def _score(self, log_l, log_g, log_prior, n, space) -> np.ndarray:
        return pibo_score(log_l, log_g, log_prior, self.beta, max(n, 1))


class BOPrOSampler(_TPEPriorSampler):
    """BOPrO on TPE: pseudo-posteriors of the good and bad regions, prior times model^(t/beta).

    Souza, Nardi, Oliveira, Olukotun, Lindauer, Hutter, "Bayesian Optimization with a Prior for the
    Optimum", ECML-PKDD 2021. BOPrO combines a prior of the good region ``P_g`` and of the bad
    region ``P_b = 1 - P_g`` with a model's probabilities ``M_g``, ``M_b`` into
    ``g(x) ∝ P_g(x) M_g(x)^(t/beta)`` and ``b(x) ∝ P_b(x) M_b(x)^(t/beta)``, and maximizes EI, which
    is monotone in ``g(x)/b(x)``. Here the model terms are TPE's densities ``l`` and ``g``, and each
    trial after start-up returns the candidate that maximizes (see :func:`bopro_score`)

        [log P_g(x) + (t/beta) log l(x)] - [log P_b(x) + (t/beta) log g(x)],
        P_g(x) = (1 - eps) pi(x) / max pi,   P_b(x) = 1 - P_g(x),   t = finished trials,

    among ``n_ei_candidates`` draws of ``l`` and as many of ``pi``. This is BOPrO with TPE's own
    probability model: Bergstra et al. (NeurIPS 2011) get ``M_g(x) = P(f(x) < f_gamma | x) =
    gamma l(x) / (gamma l(x) + (1 - gamma) g(x))`` by Bayes' rule, and with ``M_b = 1 - M_g``,
    ``log M_g - log M_b = log l - log g + log(gamma / (1 - gamma))``, a constant across candidates,
    so both scores have the same argmax. ``max pi`` is estimated as the largest ``pi`` over
    ``N_PRIOR_MAX_DRAWS`` draws of ``pi`` (keyed by the seed, computed once per space) and the
    trial's candidates. The first ``n_startup_trials`` trials are draws of ``pi``; the paper's
    initial design is ``D + 1`` draws of the prior.

    Away from a narrow Gaussian prior ``log P_g`` falls like ``-z^2/2`` (``z`` in prior standard
    deviations) while the model's weight grows only like ``t/beta``, so a wrong narrow prior is
    left slowly: this is the formula's behaviour, not a tuning of this module.

    Args:
      prior: the prior ``pi`` (``space``, ``log_pdf_internal``, ``sample``).
      beta: how many trials the prior is worth, ``> 0`` (the paper's default, 10).
      seed: seed of every draw (``None``: a random one).
      n_startup_trials: trials drawn from ``pi`` before the acquisition starts.
      n_ei_candidates: candidates drawn from ``l``, and again from ``pi``, per trial.
    """

    def __init__(
        self,
        prior: Any,
        *,
        beta: float = 10.0,
        seed: int | None = None,
        n_startup_trials: int = 10,
        n_ei_candidates: int = 24,
    ) -> None:
        self.beta = _positive("beta", beta)
        super().__init__(
            prior, seed=seed, n_startup_trials=n_startup_trials, n_ei_candidates=n_ei_candidates
        )

    def _score(self, log_l, log_g, log_prior, n, space) -> np.ndarray:
        log_max = max(self._log_prior_max(space), float(np.max(log_prior)))
        return bopro_score(log_l, log_g, log_prior, log_max, n, self.beta)

    def _log_prior_max(self, space: Mapping[str, BaseDistribution]) -> float:
        """The largest ``log pi`` over ``N_PRIOR_MAX_DRAWS`` draws of ``pi``, on ``space``."""
        key = ("log_prior_max", tuple(space))
        if key not in self._cache:
            rng = np.random.default_rng([self._seed, _PRIOR_MAX])
            draws = self._sample_prior(rng, N_PRIOR_MAX_DRAWS)
            columns = {
                n: np.array([d.to_internal_repr(c[n]) for c in draws], dtype=float)
                for n, d in space.items()
            }
            log_prior = self._log_prior(columns)
            self._cache[key] = float(np.max(log_prior))
        return self._cache[key]


class PriorBandSampler(_PriorSampler):
    """PriorBand's ensemble sampling policy at a single fidelity: uniform, prior or incumbent.

    Mallik, Bergman, Hvarfner, Stoll, Janowski, Lindauer, Nardi, Hutter, "PriorBand: Practical
    Hyperparameter Optimization in the Age of Deep Learning", NeurIPS 2023. PriorBand runs
    Hyperband and draws each new configuration from its ensemble sampling policy (ESP): uniformly
    with ``p_U = 1/(1 + eta^r)`` at rung ``r``, else from the prior or around the incumbent, split
    by how the top configurations score under each (:func:`priorband_probabilities`).

    The single-fidelity adaptation here, trial by trial:

    - ``p_U = 1/(1 + eta^rung)`` with a fixed ``rung`` (default 1: ``p_U = 1/4`` at ``eta = 3``).
      PriorBand's base rung (``r = 0``) samples half of its configurations uniformly because
      evaluations there are cheap; at one fidelity every trial costs a full evaluation, so half the
      budget spent uniformly is too much. The top rung of a typical Hyperband (``r = 4`` at
      ``eta = 3``, ``p_U = 1/82``) leaves almost no uniform draws to recover from a wrong prior,
      which is what ``p_U`` is for. ``rung = 1`` sits between them.
    - Until ``n_startup_trials`` trials have completed, there is no incumbent: ``p_pi = 1 - p_U``.
      (PriorBand turns incumbent sampling on once a configuration has been evaluated at the highest
      fidelity; the default 10 matches the initial designs of piBO, BOPrO and TPE here.)
    - Then the top configurations are the best ``max(1, floor(n / eta))`` of the ``n`` completed
      trials (the fraction successive halving would promote), the incumbent is the best of them,
      and ``p_pi``, ``p_inc`` split ``1 - p_U`` by the geometric means of their likelihoods under
      ``pi`` and under the incumbent's density ``lambda``.
    - ``lambda`` is a product, per dimension: a normal centred on the incumbent with standard
      deviation ``mutation_sd`` times the internal range, truncated to the range, as a density
      in internal units for every numeric parameter (a discrete one's grid points are ranked by
      the continuous density, the prior's own convention, so ``pi`` and ``lambda`` share a base
      measure); for a categorical, the mutation's own table, ``1 - q + q/K`` on the incumbent's
      choice and ``q/K`` on each other (``q = mutation_rate``).
    - An incumbent draw perturbs the incumbent: each dimension with probability
      ``mutation_rate = 0.5`` (at least one, chosen uniformly, if none was picked, so the
      incumbent is not evaluated again unchanged); a numeric one by a normal of standard
      deviation ``mutation_sd = 0.25`` times its internal range, truncated to the range (then
      snapped to the grid), a categorical one by a uniform choice among all ``K``. The internal
      range of a discrete parameter runs from half a step below its lowest value to half a step
      above its highest, in ``ln`` units for a log int.

    Where this differs from the paper or is unknown: the mutation probability 0.5 and standard
    deviation 0.25 are chosen here, not taken from the paper's code; the paper's top
    configurations come from the highest rung with enough evaluations and its incumbent density
    is its own, neither of which exists at one fidelity, so the top set, ``lambda`` and the
    geometric-mean split above are this module's.

    Args:
      prior: the prior ``pi`` (``space``, ``log_pdf_internal``, ``sample``).
      seed: seed of every draw (``None``: a random one).
      eta: Hyperband's reduction factor, ``> 1``.
      rung: the rung ``r`` of ``p_U = 1/(1 + eta^r)``, an int ``>= 0``.
      n_startup_trials: completed trials before incumbent sampling starts.
      mutation_rate: probability that a dimension of the incumbent is perturbed, in ``(0, 1]``.
      mutation_sd: standard deviation of a numeric perturbation, as a fraction of the range, ``> 0``.
    """

    def __init__(
        self,
        prior: Any,
        *,
        seed: int | None = None,
        eta: float = 3,
        rung: int = 1,
        n_startup_trials: int = 10,
        mutation_rate: float = 0.5,
        mutation_sd: float = 0.25,
    ) -> None:
        self.eta = _above_one("eta", eta)
        self.rung = _integer("rung", rung, minimum=0)
        if not (_is_real(mutation_rate) and 0.0 < mutation_rate <= 1.0):
            raise ValueError(f"mutation_rate must be in (0, 1], got {mutation_rate!r}")
        self.mutation_rate = float(mutation_rate)
        self.mutation_sd = _positive("mutation_sd", mutation_sd)
        super().__init__(prior, seed=seed, n_startup_trials=n_startup_trials)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        _require_single_objective(study)
        fixed = trial.system_attrs.get("fixed_params", {})
        space = {n: d for n, d in search_space.items() if n not in fixed}
        if not space:
            return {}
        self._check_space(space)
        config = self._esp_draw(study, trial)
        return {n: _conform(n, d, config[n]) for n, d in space.items()}

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        _require_single_objective(study)
        self._check_space({param_name: param_distribution})
        value = self._esp_draw(study, trial)[param_name]
        return _conform(param_name, param_distribution, value)

    def probabilities(self, study: optuna.Study) -> tuple[float, float, float]:
        """``(p_U, p_pi, p_inc)`` for the study's next trial, from its completed trials."""
        _require_single_objective(study)
        return self._state(study)[0]

    def _state(self, study: optuna.Study) -> tuple[tuple[float, float, float], np.ndarray | None]:
        """The sampling probabilities and the incumbent's coordinates (``None`` before start)."""
        scored = []
        for t in study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True):
            x = self._trial_coords(t)
            if x is not None and t.value is not None and math.isfinite(t.value):
                scored.append((t.value, x))
        n = len(scored)
        if n == 0 or n < self._n_startup_trials:
            return priorband_probabilities(eta=self.eta, rung=self.rung), None
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        scored.sort(key=lambda s: sign * s[0])  # stable: ties keep trial-number order
        k = max(1, math.floor(n / self.eta))
        top = np.array([x for _, x in scored[:k]])
        log_prior = self._log_pdf_rows(top)
        log_incumbent = self._incumbent_log_pdf(top[0], top)
        probs = priorband_probabilities(log_prior, log_incumbent, eta=self.eta, rung=self.rung)
        return probs, top[0]

    def _trial_coords(self, trial: FrozenTrial) -> np.ndarray | None:
        """The trial's coordinates in the prior's order, or ``None`` if it lacks a parameter of the
        prior or has one with another distribution."""
        for n, d in self._space.items():
            if n not in trial.params or trial.distributions.get(n) != d:
                return None
        return self._coords(trial.params)

    def _esp_draw(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        """The trial's configuration on the prior's whole space: one ESP draw keyed by the trial,
        so the relative and the independent calls of one trial see the same configuration."""
        (p_u, p_prior, _), incumbent = self._state(study)
        rng = self._rng(trial, _ESP)
        u = rng.random()
        if u < p_u:
            return self._uniform(rng)
        if u < p_u + p_prior or incumbent is None:
            return self._sample_prior(rng, 1)[0]
        return self._perturb(incumbent, rng)

    def _uniform(self, rng: np.random.Generator) -> dict[str, Any]:
        """A uniform draw in internal coordinates (log-uniform for a log parameter)."""
        config = {}
        for name, dist in self._space.items():
            if isinstance(dist, CategoricalDistribution):
                config[name] = dist.choices[int(rng.integers(len(dist.choices)))]
            else:
                a, b = _internal_range(dist)
                config[name] = _from_coord(name, dist, rng.uniform(a, b))
        return config

    def _perturb(self, incumbent: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
        mask = rng.random(len(self._names)) < self.mutation_rate
        if not mask.any():
            mask[rng.integers(len(self._names))] = True
        config = {}
        for j, (name, dist) in enumerate(self._space.items()):
            x = incumbent[j]
            if mask[j]:
                if isinstance(dist, CategoricalDistribution):
                    x = float(rng.integers(len(dist.choices)))
                else:
                    a, b = _internal_range(dist)
                    sd = self.mutation_sd * (b - a)
                    if sd > 0:
                        x = float(
                            stats.truncnorm.rvs(
                                (a - x) / sd, (b - x) / sd, loc=x, scale=sd, random_state=rng
                            )
                        )
            config[name] = _from_coord(name, dist, x)
        return config

    def _incumbent_log_pdf(self, centre: np.ndarray, x: np.ndarray) -> np.ndarray:
        """``log lambda`` at the rows of ``x`` (internal coordinates in the prior's order)."""
        q = self.mutation_rate
        out = np.zeros(len(x))
        for j, dist in enumerate(self._space.values()):
            xj, c = x[:, j], centre[j]
            if isinstance(dist, CategoricalDistribution):
                k = len(dist.choices)
                out += np.where(xj == c, math.log1p(-q + q / k), math.log(q / k))
                continue
            a, b = _internal_range(dist)
            sd = self.mutation_sd * (b - a)
            if sd <= 0:
                continue
            log_z = _log_normal_mass((a - c) / sd, (b - c) / sd)
            out += stats.norm.logpdf((xj - c) / sd) - math.log(sd) - log_z
        return out


def enqueue(study: optuna.Study, suggestions: Sequence[Mapping[str, Any]]) -> None:
    """Seed the TPE+enqueue baseline: enqueue each suggestion as a trial of ``study``, in order.

    ``study.enqueue_trial(s, skip_if_exists=True)`` for each suggestion ``s``, so a configuration
    already in the study (or suggested twice) is evaluated once. The study's sampler runs these
    trials first, then carries on as usual.
    """
    if not isinstance(study, optuna.Study):
        raise ValueError(f"study must be an optuna.Study, got {type(study).__name__}")
    if isinstance(suggestions, Mapping | str | bytes) or not isinstance(suggestions, Sequence):
        raise ValueError(
            f"suggestions must be a list of dicts, got {type(suggestions).__name__} {suggestions!r}"
        )
    for i, s in enumerate(suggestions):
        if not isinstance(s, Mapping):
            raise ValueError(f"suggestions[{i}] must be a dict of name to value, got {s!r}")
    for s in suggestions:
        study.enqueue_trial(dict(s), skip_if_exists=True)


# -- coordinates, densities and values ------------------------------------------------------------


def _parzen(trials: Sequence[FrozenTrial], space: dict[str, BaseDistribution]) -> _ParzenEstimator:
    """TPE's Parzen estimator of the trials whose values all fit ``space``."""
    values: dict[str, list[float]] = {n: [] for n in space}
    for t in trials:
        try:
            reprs = [d.to_internal_repr(t.params[n]) for n, d in space.items()]
        except (KeyError, ValueError, TypeError):
            continue
        if all(
            math.isfinite(r) and d._contains(r) for r, d in zip(reprs, space.values(), strict=True)
        ):
            for n, r in zip(space, reprs, strict=True):
                values[n].append(r)
    return _ParzenEstimator(
        {n: np.asarray(v, dtype=float) for n, v in values.items()}, space, _PARZEN
    )


def _is_log(dist: BaseDistribution) -> bool:
    return isinstance(dist, FloatDistribution | IntDistribution) and dist.log


def _coord(dist: BaseDistribution, value: Any) -> float:
    """A value's internal coordinate: ``ln`` of a log parameter, a categorical's index."""
    r = dist.to_internal_repr(value)
    return math.log(r) if _is_log(dist) else float(r)


def _internal_range(dist: FloatDistribution | IntDistribution) -> tuple[float, float]:
    """The interval of a numeric parameter's internal coordinate that kernels and uniform draws
    live on: ``[low, high]``, widened by half a step on each side for a discrete parameter (as
    Optuna's kernels), in ``ln`` units for a log parameter."""
    low, high = float(dist.low), float(dist.high)
    if dist.step is not None:
        low, high = low - dist.step / 2, high + dist.step / 2
    return (math.log(low), math.log(high)) if dist.log else (low, high)


def _log_normal_mass(a, b) -> np.ndarray:
    """``log(Phi(b) - Phi(a))`` for ``a <= b``, accurate in both tails."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    upper = a > 0  # both in the upper tail: use the mirror image
    lo, hi = np.where(upper, -b, a), np.where(upper, -a, b)
    log_hi, log_lo = special.log_ndtr(hi), special.log_ndtr(lo)
    with np.errstate(divide="ignore"):
        return log_hi + np.log1p(-np.exp(log_lo - log_hi))


def _from_coord(name: str, dist: BaseDistribution, x: float) -> Any:
    """The value of a parameter at internal coordinate ``x``."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[min(max(int(round(x)), 0), len(dist.choices) - 1)]
    return _conform(name, dist, math.exp(x) if dist.log else x)


def _from_optuna(name: str, dist: BaseDistribution, r: float) -> Any:
    """The value of a parameter at Optuna's internal representation ``r``."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[min(max(int(round(r)), 0), len(dist.choices) - 1)]
    return _conform(name, dist, r)


def _conform(name: str, dist: BaseDistribution, value: Any) -> Any:
    """``value`` as Optuna keeps it: snapped to the grid, clipped into the range and of the
    distribution's type, or the very choice object of a categorical."""
    if isinstance(dist, CategoricalDistribution):
        return dist.choices[dist.to_internal_repr(value)]
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"parameter {name!r}: drew {value!r} for {dist}")
    v = min(max(v, dist.low), dist.high)
    if dist.step is not None:
        n_steps = round((dist.high - dist.low) / dist.step)
        k = min(max(round((v - dist.low) / dist.step), 0), n_steps)
        v = min(max(dist.low + k * dist.step, dist.low), dist.high)
    out = int(round(v)) if isinstance(dist, IntDistribution) else float(v)
    if not dist._contains(dist.to_internal_repr(out)):  # pragma: no cover - a bug if reached
        raise RuntimeError(f"parameter {name!r}: {out!r} (from {value!r}) is not in {dist}")
    return out


# -- argument checks ------------------------------------------------------------------------------


def _require_single_objective(study: optuna.Study) -> None:
    if len(study.directions) > 1:
        raise ValueError(
            f"study: the prior-guided baselines are single-objective; study {study.study_name!r} "
            f"has {len(study.directions)} objectives"
        )


def _check_prior(prior: Any) -> Any:
    space = getattr(prior, "space", None)
    if not (
        callable(getattr(prior, "log_pdf_internal", None))
        and callable(getattr(prior, "sample", None))
        and isinstance(space, Mapping)
    ):
        raise ValueError(
            "prior must have a space (a dict of Optuna distributions), log_pdf_internal(x) and "
            f"sample(rng, n), got {prior!r}"
        )
    if not space or not all(
        isinstance(n, str) and isinstance(d, BaseDistribution) for n, d in space.items()
    ):
        raise ValueError(
            f"prior.space must be a non-empty dict of name to Optuna distribution, got {space!r}"
        )
    return prior


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _integer(name: str, value: Any, *, minimum: int) -> int:
    if not (_is_int(value) and value >= minimum):
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _positive(name: str, value: Any) -> float:
    if not (_is_real(value) and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _above_one(name: str, value: Any) -> float:
    if not (_is_real(value) and math.isfinite(value) and value > 1):
        raise ValueError(f"{name} must be a finite number > 1, got {value!r}")
    return float(value)


def _arrays(**named: Any) -> list[np.ndarray]:
    """The named arguments as float arrays of one common shape."""
    arrays = [np.asarray(v, dtype=float) for v in named.values()]
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise ValueError(
            f"{', '.join(named)} must have one shape, got "
            f"{', '.join(f'{n} {a.shape}' for n, a in zip(named, arrays, strict=True))}"
        )
    return arrays


def _weighted(w: float, log_p: np.ndarray) -> np.ndarray:
    """``w * log_p`` with ``0 * (-inf) = 0``."""
    return np.zeros_like(log_p) if w == 0 else w * log_p
