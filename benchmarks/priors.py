"""Priors over a task's space: the generating priors of controlled quality, and fitted priors.

The evaluation protocol of piBO (Hvarfner et al., "piBO: Augmenting Acquisition Functions with
User Beliefs for Bayesian Optimization", ICLR 2022) and BOPrO (Souza et al., "Bayesian
Optimization with a Prior for the Optimum", ECML-PKDD 2021) gives each method a Gaussian prior of
controlled quality: strong (narrow, on the optimum), weak (wide, near it) and wrong (narrow, on a
poor region). Here such a prior generates the suggestions a language model would return, and
every method sees only those suggestions: FusionSampler takes them as they are, and the
prior-guided baselines get :func:`fitted_prior`, a density fitted to the same suggestions.

Internal coordinates, one per parameter in space order: a float is its value, a log float or a
log int ``ln(value)``, an int its value, a categorical the index of its choice. A :class:`Prior` is
a product density in these coordinates. A numeric coordinate gets a normal ``N(loc, scale)``
truncated to its internal range ``[low, high]`` (``[ln low, ln high]`` for log parameters)::

    log p_j(x) = -((x - loc) / scale)^2 / 2 - ln(scale) - ln(2 pi) / 2
                 - ln(Phi((high - loc) / scale) - Phi((low - loc) / scale))

on ``[low, high]`` and ``-inf`` outside (the mass term is computed in log space with
``log_ndtr``). An int coordinate uses the same continuous density at its value: it only ranks
points, it is not a probability mass function. A categorical coordinate has a probability table.
``log_pdf_internal`` sums the coordinates' log densities.

Sampling draws each numeric coordinate from its truncated normal (``scipy.stats.truncnorm``) and
maps it back: floats are clipped into ``[low, high]`` (``exp`` first for log floats; stepped floats
rounded to ``low + k step``), ints rounded to ``low + k step`` and clipped, log ints ``exp``'d,
rounded and clipped; categoricals are drawn from their tables.

Generating priors (:func:`generating_prior`), with ``R_j`` the internal range ``high - low`` of
numeric coordinate ``j`` and ``K`` the number of choices of a categorical one:

=========  ======================================================  =========  ===================
quality    centre                                                  sd         categorical
=========  ======================================================  =========  ===================
strong     ``task.optimum_params``                                 0.05 R_j   0.8 on the optimum's
weak       the optimum shifted by ``0.15 R_j`` on every numeric    0.25 R_j   0.4 on the optimum's
           coordinate, in a direction fixed per task (below)
wrong      ``task.poor_params``                                    0.05 R_j   0.8 on the poor one's
=========  ======================================================  =========  ===================

The rest of a categorical table is spread evenly over the other ``K - 1`` choices (every task's
categoricals have 3 or 4 choices, so 0.4 on the optimum's choice keeps it the most likely). The
weak prior's direction: the sign of coordinate ``j`` is bit ``j`` of the SHA-256 of
``"<task name>/weak-direction"`` (1 is up), flipped when the shifted centre would leave
``[low, high]`` (it cannot leave on both sides, since ``0.15 < 1/2``).

Suggestions (:func:`suggestions`) are ``n`` draws of the generating prior with
``numpy.random.default_rng(SeedSequence([seed, h]))``, ``h`` a SHA-256 hash of
``"<task name>/<quality>"`` (stable across processes, unlike Python's ``hash``), with every float
(plain or log, in user units) rounded to 3 significant digits and clipped into its range, as a
model writes numbers. Quality ``hand-written`` returns, for the real tasks only, a fixed list of
configurations written by hand in the way a language model answers: scikit-learn defaults and
common choices (:data:`HAND_WRITTEN`).

Fitted prior (:func:`fitted_prior`), what every prior-guided baseline receives: for each numeric
coordinate a truncated normal at the suggestions' mean in internal coordinates with
``sd = max(s_j, 0.05 R_j)``, ``s_j`` their sample standard deviation (``ddof = 1``; one suggestion
has ``s_j = 0``, so its sd is the floor ``0.05 R_j``); for each categorical coordinate the choices'
frequencies smoothed by one pseudo-count spread evenly, ``p_k = (n_k + 1/K) / (n + 1)``, so no
choice has probability 0.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from scipy.special import log_ndtr
from scipy.stats import truncnorm
from tasks import Task, check_params

QUALITIES = ("strong", "weak", "wrong")
HAND_WRITTEN_QUALITY = "hand-written"

STRONG_SD = 0.05
WEAK_SD = 0.25
WRONG_SD = 0.05
WEAK_SHIFT = 0.15
STRONG_WEIGHT = 0.8
WEAK_WEIGHT = 0.4
WRONG_WEIGHT = 0.8
FIT_MIN_SD = 0.05
SIGNIFICANT_DIGITS = 3

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)

# Written by hand, in the shape a language model returns; not generated by a model. On digits,
# gamma="scale" is 1 / (64 * X.var()) = 0.0164 after StandardScaler; max_features "all" is None.
HAND_WRITTEN: dict[str, tuple[dict[str, Any], ...]] = {
    "svc_digits": (
        {"C": 1.0, "gamma": 0.0164, "kernel": "rbf"},
        {"C": 10.0, "gamma": 0.001, "kernel": "rbf"},
        {"C": 100.0, "gamma": 0.0001, "kernel": "rbf"},
        {"C": 0.1, "gamma": 0.01, "kernel": "rbf"},
        {"C": 10.0, "gamma": 0.01, "kernel": "rbf"},
        {"C": 0.1, "gamma": 0.0164, "kernel": "linear"},
        {"C": 1.0, "gamma": 0.001, "kernel": "sigmoid"},
    ),
    "gbm_cancer": (
        {"learning_rate": 0.1, "max_depth": 3, "subsample": 1.0, "max_features": "all"},
        {"learning_rate": 0.05, "max_depth": 3, "subsample": 0.8, "max_features": "sqrt"},
        {"learning_rate": 0.1, "max_depth": 4, "subsample": 0.8, "max_features": "sqrt"},
        {"learning_rate": 0.01, "max_depth": 5, "subsample": 0.8, "max_features": "all"},
        {"learning_rate": 0.2, "max_depth": 2, "subsample": 1.0, "max_features": "log2"},
        {"learning_rate": 0.3, "max_depth": 3, "subsample": 0.9, "max_features": "sqrt"},
    ),
}


# --- internal coordinates ---------------------------------------------------------------------


def _is_log(dist: BaseDistribution) -> bool:
    return isinstance(dist, FloatDistribution | IntDistribution) and dist.log


def internal_bounds(dist: BaseDistribution) -> tuple[float, float]:
    """The internal range of one parameter: ``[low, high]``, ``ln`` of both for log parameters,
    ``[0, K - 1]`` for a categorical with ``K`` choices."""
    if isinstance(dist, CategoricalDistribution):
        return 0.0, float(len(dist.choices) - 1)
    if isinstance(dist, FloatDistribution | IntDistribution):
        if dist.log:
            return math.log(dist.low), math.log(dist.high)
        return float(dist.low), float(dist.high)
    raise ValueError(f"unsupported distribution {dist!r}")


def to_internal(space: Mapping[str, BaseDistribution], params: Mapping[str, Any]) -> np.ndarray:
    """Internal coordinates of ``params`` in space order, shape ``(d,)``.

    Raises ``ValueError`` naming the parameter for a missing or unknown name, a non-number for a
    numeric parameter or an unknown choice. Numeric values outside the range are converted as
    they are (a log parameter at a value <= 0 becomes ``-inf``), so a density there is 0.
    """
    for name in params:
        if name not in space:
            raise ValueError(f"unknown parameter {name!r} (value {params[name]!r})")
    x = np.empty(len(space))
    for j, (name, dist) in enumerate(space.items()):
        if name not in params:
            raise ValueError(f"parameter {name!r} is missing")
        value = params[name]
        if isinstance(dist, CategoricalDistribution):
            try:
                x[j] = dist.to_internal_repr(value)
            except (ValueError, TypeError):
                raise ValueError(
                    f"parameter {name!r}: {value!r} is not one of {dist.choices}"
                ) from None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"parameter {name!r}: expected a number, got {value!r}")
        v = float(value)
        if _is_log(dist):
            x[j] = math.log(v) if v > 0 else -math.inf
        else:
            x[j] = v
    return x


def _log_mass(a: float, b: float) -> float:
    """``ln(Phi(b) - Phi(a))`` for ``a < b``, accurate in either tail."""
    if a > 0.0:
        a, b = -b, -a
    la, lb = float(log_ndtr(a)), float(log_ndtr(b))
    return lb + math.log(-math.expm1(la - lb))


# --- the prior ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prior:
    """A product density on ``space`` in internal coordinates (module docstring).

    ``loc`` and ``scale`` hold each numeric coordinate's normal, in internal units (``nan`` at a
    categorical); ``probs`` holds each categorical coordinate's table (``None`` at a numeric one).
    """

    space: dict[str, BaseDistribution]
    loc: tuple[float, ...]
    scale: tuple[float, ...]
    probs: tuple[tuple[float, ...] | None, ...]
    _low: np.ndarray = field(init=False, repr=False, compare=False)
    _high: np.ndarray = field(init=False, repr=False, compare=False)
    _log_norm: np.ndarray = field(init=False, repr=False, compare=False)
    _log_probs: tuple[np.ndarray | None, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        d = len(self.space)
        if d == 0:
            raise ValueError("space is empty")
        for label, seq in (("loc", self.loc), ("scale", self.scale), ("probs", self.probs)):
            if len(seq) != d:
                raise ValueError(f"{label} has {len(seq)} entries for {d} parameters")
        low, high, log_norm, log_probs = np.zeros(d), np.zeros(d), np.zeros(d), []
        for j, (name, dist) in enumerate(self.space.items()):
            low[j], high[j] = internal_bounds(dist)
            if isinstance(dist, CategoricalDistribution):
                p = np.asarray(self.probs[j], dtype=float) if self.probs[j] is not None else None
                if p is None or p.shape != (len(dist.choices),):
                    raise ValueError(
                        f"parameter {name!r}: probs must have {len(dist.choices)} entries, "
                        f"got {self.probs[j]!r}"
                    )
                if not np.all(np.isfinite(p)) or np.any(p < 0) or abs(p.sum() - 1.0) > 1e-9:
                    raise ValueError(
                        f"parameter {name!r}: probs must be >= 0 and sum to 1, got {p.tolist()}"
                    )
                with np.errstate(divide="ignore"):
                    log_probs.append(np.log(p))
                continue
            loc, scale = self.loc[j], self.scale[j]
            if not (math.isfinite(loc) and math.isfinite(scale) and scale > 0):
                raise ValueError(
                    f"parameter {name!r}: loc and scale must be finite with scale > 0, "
                    f"got loc={loc!r}, scale={scale!r}"
                )
            if not high[j] > low[j]:
                raise ValueError(f"parameter {name!r}: its range {dist!r} is a single point")
            log_norm[j] = _log_mass((low[j] - loc) / scale, (high[j] - loc) / scale)
            log_probs.append(None)
        object.__setattr__(self, "_low", low)
        object.__setattr__(self, "_high", high)
        object.__setattr__(self, "_log_norm", log_norm)
        object.__setattr__(self, "_log_probs", tuple(log_probs))

    @property
    def bounds(self) -> np.ndarray:
        """Internal ``[low, high]`` of every coordinate, shape ``(d, 2)``."""
        return np.stack([self._low, self._high], axis=1)

    def to_internal(self, params: Mapping[str, Any]) -> np.ndarray:
        """Internal coordinates of ``params``, shape ``(d,)`` (see :func:`to_internal`)."""
        return to_internal(self.space, params)

    def log_pdf(self, params: Mapping[str, Any]) -> float:
        """``log_pdf_internal`` at one configuration in user units."""
        return float(self.log_pdf_internal(self.to_internal(params)[None, :])[0])

    def log_pdf_internal(self, x: np.ndarray) -> np.ndarray:
        """Log density at internal points ``x`` of shape ``(m, d)``; ``-inf`` outside, never NaN."""
        x = np.asarray(x, dtype=float)
        d = len(self.space)
        if x.ndim != 2 or x.shape[1] != d:
            raise ValueError(f"x must have shape (m, {d}), got {x.shape}")
        total = np.zeros(x.shape[0])
        with np.errstate(invalid="ignore", over="ignore"):
            for j in range(d):
                col = x[:, j]
                inside = (col >= self._low[j]) & (col <= self._high[j])
                table = self._log_probs[j]
                if table is None:
                    z = (col - self.loc[j]) / self.scale[j]
                    lp = -0.5 * z * z - math.log(self.scale[j]) - _LOG_SQRT_2PI - self._log_norm[j]
                else:
                    inside &= col == np.round(col)
                    lp = table[np.where(inside, col, 0.0).astype(np.int64)]
                total += np.where(inside, lp, -np.inf)
        return total

    def sample(self, rng: np.random.Generator, n: int) -> list[dict[str, Any]]:
        """``n`` configurations of the space drawn from the prior (module docstring)."""
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"n must be an integer >= 0, got {n!r}")
        n = int(n)
        columns: dict[str, list[Any]] = {}
        for j, (name, dist) in enumerate(self.space.items()):
            if isinstance(dist, CategoricalDistribution):
                idx = rng.choice(len(dist.choices), size=n, p=np.asarray(self.probs[j]))
                columns[name] = [dist.choices[int(i)] for i in idx]
                continue
            loc, scale = self.loc[j], self.scale[j]
            a = (self._low[j] - loc) / scale
            b = (self._high[j] - loc) / scale
            x = np.atleast_1d(truncnorm.rvs(a, b, loc=loc, scale=scale, size=n, random_state=rng))
            columns[name] = _to_user(dist, x)
        return [{name: columns[name][i] for name in self.space} for i in range(n)]


def _to_user(dist: BaseDistribution, x: np.ndarray) -> list[Any]:
    """Valid user values of one numeric parameter from internal draws ``x``."""
    if isinstance(dist, FloatDistribution):
        v = np.exp(x) if dist.log else x
        if dist.step is not None:
            k = np.round((v - dist.low) / dist.step)
            k = np.clip(k, 0, math.floor((dist.high - dist.low) / dist.step + 1e-9))
            v = dist.low + k * dist.step
        return [float(u) for u in np.clip(v, dist.low, dist.high)]
    if dist.log:
        return [int(u) for u in np.clip(np.round(np.exp(x)), dist.low, dist.high)]
    top = (dist.high - dist.low) // dist.step
    k = np.clip(np.round((x - dist.low) / dist.step), 0, top)
    return [int(dist.low + dist.step * int(u)) for u in k]


# --- priors of a task ---------------------------------------------------------------------------


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _check_quality(quality: str) -> None:
    if quality not in QUALITIES:
        raise ValueError(f"unknown quality {quality!r}; expected one of {QUALITIES}")


def _centred(
    space: Mapping[str, BaseDistribution],
    centre: np.ndarray,
    sd: float,
    weight: float,
) -> Prior:
    loc, scale, probs = [], [], []
    for j, dist in enumerate(space.values()):
        low, high = internal_bounds(dist)
        if isinstance(dist, CategoricalDistribution):
            k = len(dist.choices)
            table = [weight if i == int(centre[j]) else (1.0 - weight) / (k - 1) for i in range(k)]
            loc.append(math.nan)
            scale.append(math.nan)
            probs.append(tuple(table) if k > 1 else (1.0,))
        else:
            loc.append(float(centre[j]))
            scale.append(sd * (high - low))
            probs.append(None)
    return Prior(dict(space), tuple(loc), tuple(scale), tuple(probs))


def weak_centre(task: Task) -> np.ndarray:
    """The weak prior's centre in internal coordinates: the optimum moved by ``0.15 R_j``."""
    centre = to_internal(task.space, task.optimum_params)
    bits = _stable_hash(f"{task.name}/weak-direction")
    for j, dist in enumerate(task.space.values()):
        if isinstance(dist, CategoricalDistribution):
            continue
        low, high = internal_bounds(dist)
        shift = WEAK_SHIFT * (high - low) * (1.0 if (bits >> j) & 1 else -1.0)
        if not low <= centre[j] + shift <= high:
            shift = -shift
        centre[j] += shift
    return centre


def generating_prior(task: Task, quality: str) -> Prior:
    """The prior of ``quality`` (strong, weak or wrong) that generates the task's suggestions."""
    _check_quality(quality)
    if quality == "strong":
        centre = to_internal(task.space, task.optimum_params)
        return _centred(task.space, centre, STRONG_SD, STRONG_WEIGHT)
    if quality == "weak":
        return _centred(task.space, weak_centre(task), WEAK_SD, WEAK_WEIGHT)
    centre = to_internal(task.space, task.poor_params)
    return _centred(task.space, centre, WRONG_SD, WRONG_WEIGHT)


def _round_significant(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    return float(f"{value:.{digits - 1}e}")


def suggestions(task: Task, quality: str, seed: int, n: int = 8) -> list[dict[str, Any]]:
    """The configurations a model would return for ``task`` at ``quality`` (module docstring).

    For ``quality="hand-written"`` (real tasks only) ``seed`` and ``n`` are ignored and the fixed
    list :data:`HAND_WRITTEN` is returned.
    """
    if quality == HAND_WRITTEN_QUALITY:
        if not task.real or task.name not in HAND_WRITTEN:
            raise ValueError(
                f"quality {quality!r} exists only for the real tasks {tuple(HAND_WRITTEN)}, "
                f"not for task {task.name!r}"
            )
        return [dict(cfg) for cfg in HAND_WRITTEN[task.name]]
    _check_quality(quality)
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise ValueError(f"n must be an integer >= 1, got {n!r}")
    rng = np.random.default_rng(
        np.random.SeedSequence([int(seed), _stable_hash(f"{task.name}/{quality}")])
    )
    draws = generating_prior(task, quality).sample(rng, int(n))
    for cfg in draws:
        for name, dist in task.space.items():
            if isinstance(dist, FloatDistribution) and dist.step is None:
                cfg[name] = min(max(_round_significant(cfg[name]), dist.low), dist.high)
    return draws


def fitted_prior(task: Task, suggestions: Sequence[Mapping[str, Any]]) -> Prior:
    """The prior every prior-guided baseline gets: fitted to ``suggestions`` (module docstring)."""
    if isinstance(suggestions, Mapping) or not isinstance(suggestions, Sequence):
        raise ValueError(f"suggestions must be a list of configurations, got {suggestions!r}")
    if len(suggestions) == 0:
        raise ValueError("suggestions is empty; fitted_prior needs at least one configuration")
    for i, cfg in enumerate(suggestions):
        try:
            check_params(task.space, cfg)
        except ValueError as err:
            raise ValueError(f"suggestions[{i}]: {err}") from None
    x = np.stack([to_internal(task.space, cfg) for cfg in suggestions])
    n = x.shape[0]
    loc, scale, probs = [], [], []
    for j, dist in enumerate(task.space.values()):
        if isinstance(dist, CategoricalDistribution):
            k = len(dist.choices)
            counts = np.bincount(x[:, j].astype(np.int64), minlength=k)
            loc.append(math.nan)
            scale.append(math.nan)
            probs.append(tuple(float(p) for p in (counts + 1.0 / k) / (n + 1.0)))
            continue
        low, high = internal_bounds(dist)
        spread = float(np.std(x[:, j], ddof=1)) if n > 1 else 0.0
        loc.append(float(np.mean(x[:, j])))
        scale.append(max(spread, FIT_MIN_SD * (high - low)))
        probs.append(None)
    return Prior(dict(task.space), tuple(loc), tuple(scale), tuple(probs))
