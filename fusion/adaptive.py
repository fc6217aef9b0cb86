"""Alpha schedules: how much weight the suggestions keep as trials accumulate.

``alpha`` is the exponent of ``p_llm`` in the geometric pool ``p_llm^alpha l^(1 - alpha)`` (or its
weight in the linear pool), where ``l`` is TPE's density of the good region. ``alpha = 0`` is plain
TPE.

A schedule is a small frozen object called with the study's :class:`History`: the finished
(complete or pruned) trials, each with its objective value oriented so that lower is better and
its provenance, which source proposed it and the log-densities ``log p_llm(x)`` and ``log l(x)``
the two sources gave its point ``x`` when it was proposed. A schedule is a pure function of that
history, so every worker of a distributed study computes the same alpha for the same history, and
a study restarted from its storage goes on with the same alphas. Every schedule here is symmetric
in the trials: their order does not change alpha.

Schedules that depend only on the number of finished trials ``n``:

- :class:`Constant`: ``alpha_n = alpha``;
- :class:`HyperbolicDecay` (the default): ``alpha_n = alpha0 / (1 + n / n_half)``;
- :class:`PiBODecay`: ``alpha_n = min(1, beta / n)``, piBO's prior exponent;
- :class:`BOPrODecay`: ``alpha_n = 1 / (1 + n / beta)``, BOPrO's exponents normalized;
- :class:`OfTrialCount`: any function ``n -> alpha``, the form schedules had before they read the
  history (a plain callable passed as a schedule is wrapped in it).

Schedules that read the trials, each under a decaying envelope so that ``alpha_n -> 0`` whatever
the trials say (the seed's Theorem 1 asks for ``alpha -> 0``):

- :class:`RankPerformance`: the seed's performance rule, repaired: how often a trial proposed by
  ``p_llm`` beats one proposed by TPE (:func:`superiority`, a Mann-Whitney statistic), mapped onto
  ``[floor_n, cap]``;
- :class:`PredictiveCredit`: each source weighted by how well it predicted the trials that turned
  out good (Hedge, or Bayesian model averaging at ``eta = 1``).

:func:`as_schedule` turns what a user passes as ``alpha`` into a schedule, and :func:`alpha_at`
evaluates one and checks that the result is a number in ``[0, 1]``.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import scipy.special
import scipy.stats

from fusion._validate import integer, is_real, positive, unit_interval

LLM = "llm"
"""The :attr:`TrialRecord.source` of a trial proposed by the suggestion density ``p_llm``."""
TPE = "tpe"
"""The :attr:`TrialRecord.source` of a trial proposed by TPE's good density ``l``."""


# -------------------------------------------------------------------------------------------------
# The history
# -------------------------------------------------------------------------------------------------


class TrialRecord(NamedTuple):
    """One finished trial, as a schedule sees it.

    Attributes:
      value: the objective value oriented so that lower is better (a maximized objective is
        negated). ``+inf`` ranks worst (a pruned trial enters as ``+inf``), ``-inf`` best; never
        NaN (a NaN objective is a failed trial, which is not in the history).
      source: which density proposed the trial's point, :data:`LLM` or :data:`TPE`; ``None`` (or
        any other label) for anything else: the uniform floor, an enqueued or hand-added trial, a
        trial whose parameters came from different sources, or one with no record.
      log_p_llm: ``log p_llm(x)``, the suggestion density at the trial's point ``x`` when it was
        proposed, or ``None`` if it was not recorded. May be ``-inf``, never ``+inf`` or NaN.
      log_l: ``log l(x)``, TPE's good density at ``x`` when the trial was proposed, or ``None``.
    """

    value: float
    source: str | None = None
    log_p_llm: float | None = None
    log_l: float | None = None


@dataclass(frozen=True)
class History:
    """The finished trials of a study: ``History(trials)``, in trial-number order as the sampler
    builds it (the schedules here give the same alpha in any order).

    ``trials`` is a sequence of :class:`TrialRecord` (or of tuples of their fields); it is checked
    and stored as a tuple, so a history is immutable and hashable. ``len(history)`` is ``n``, the
    number of finished trials. A bad field raises a ``ValueError`` naming it, e.g.
    ``trials[3].value``.
    """

    trials: tuple[TrialRecord, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.trials, str | bytes) or not isinstance(self.trials, Iterable):
            raise ValueError(f"trials must be a sequence of TrialRecord, got {self.trials!r}")
        checked = tuple(_checked_record(i, t) for i, t in enumerate(self.trials))
        object.__setattr__(self, "trials", checked)

    def __len__(self) -> int:
        return len(self.trials)

    @property
    def n(self) -> int:
        """The number of finished trials."""
        return len(self.trials)

    def values(self) -> np.ndarray:
        """The oriented objective values, lower is better, as a float array of shape ``(n,)``."""
        return np.array([t.value for t in self.trials], dtype=float)


def _checked_record(i: int, record: Any) -> TrialRecord:
    if type(record) is TrialRecord and _plain(record):
        return record
    if not isinstance(record, TrialRecord):
        if not isinstance(record, tuple) or not 1 <= len(record) <= 4:
            raise ValueError(f"trials[{i}] must be a TrialRecord, got {record!r}")
        record = TrialRecord(*record)
    value, source, log_p_llm, log_l = record
    if not is_real(value) or math.isnan(float(value)):
        raise ValueError(f"trials[{i}].value must be a number other than NaN, got {value!r}")
    if source is not None and not isinstance(source, str):
        raise ValueError(f"trials[{i}].source must be a str or None, got {source!r}")
    for name, log_density in (("log_p_llm", log_p_llm), ("log_l", log_l)):
        if log_density is not None and not (
            is_real(log_density) and not math.isnan(log_density) and log_density < math.inf
        ):
            raise ValueError(
                f"trials[{i}].{name} must be None or a number in [-inf, inf), got {log_density!r}"
            )
    return TrialRecord(
        float(value),
        source,
        None if log_p_llm is None else float(log_p_llm),
        None if log_l is None else float(log_l),
    )


def _plain(record: TrialRecord) -> bool:
    """A record already as :class:`History` keeps it: Python floats, no NaN, no ``+inf`` density."""
    value, source, log_p_llm, log_l = record
    return (
        type(value) is float
        and value == value
        and (source is None or type(source) is str)
        and (log_p_llm is None or (type(log_p_llm) is float and -math.inf <= log_p_llm < math.inf))
        and (log_l is None or (type(log_l) is float and -math.inf <= log_l < math.inf))
    )


def trial_count(history: History | int) -> int:
    """``n``, the number of finished trials: ``len(history)``, or an ``int`` given for it."""
    if isinstance(history, History):
        return len(history)
    return integer("n", history)


def _checked_history(history: Any) -> History:
    if not isinstance(history, History):
        raise ValueError(
            f"history must be a fusion.adaptive.History (this schedule reads the trials, not "
            f"only their number), got {history!r}"
        )
    return history


def superiority(history: History, source: str = LLM, other: str = TPE) -> float:
    """``A = P(v_s < v_o) + P(v_s = v_o) / 2``: how often a trial of ``source`` beats one of
    ``other`` (lower values are better), over all ``|S| |O|`` pairs of their oriented values.

    This is the Mann-Whitney statistic ``U`` of ``other`` divided by ``|S| |O|`` (the common
    language effect size), computed from the average ranks of the pooled values:
    ``A = 1 - (R_S - |S| (|S| + 1) / 2) / (|S| |O|)`` with ``R_S`` the rank sum of ``source``.
    Ties count one half; ``+inf`` ties with ``+inf`` and ranks below every finite value. ``A = 1/2``
    (no evidence either way) when either group is empty. Ranks are multiples of 1/2, so ``A`` is
    exact and does not depend on the order of the trials.
    """
    ours = [t.value for t in history.trials if t.source == source]
    theirs = [t.value for t in history.trials if t.source == other]
    if not ours or not theirs:
        return 0.5
    ranks = scipy.stats.rankdata(np.array(ours + theirs, dtype=float))
    m, k = len(ours), len(theirs)
    worse_pairs = float(np.sum(ranks[:m])) - m * (m + 1) / 2
    return 1.0 - worse_pairs / (m * k)


def good_trials(history: History, gamma: float) -> np.ndarray:
    """A boolean mask of the good trials, the best ``ceil(gamma n)`` as in TPE's split.

    A trial is good when its value is finite or ``-inf`` and fewer than ``ceil(gamma n)`` trials
    have a strictly lower value; trials tied at the boundary are all good, so the mask does not
    depend on the order of the trials. A ``+inf`` (or pruned) trial is never good.
    """
    unit_interval("gamma", gamma)
    values = history.values()
    n_good = math.ceil(gamma * len(values))
    strictly_better = np.searchsorted(np.sort(values), values, side="left")
    return (values < math.inf) & (strictly_better < n_good)


_SCALE = 2.0**-64


def _total(log_terms: list[float]) -> float:
    """``sum(log_terms)`` in ``[-inf, inf]``, correctly rounded (``math.fsum``), so it does not
    depend on the terms' order; ``-inf`` if any term is, ``+-inf`` beyond the float range."""
    if any(t == -math.inf for t in log_terms):
        return -math.inf
    try:
        return math.fsum(log_terms)
    except OverflowError:  # a partial sum passed 1.8e308: sum the terms scaled by 2^-64 (exact)
        return math.fsum(t * _SCALE for t in log_terms) / _SCALE


# -------------------------------------------------------------------------------------------------
# Schedules
# -------------------------------------------------------------------------------------------------


class AlphaSchedule(abc.ABC):
    """``alpha = schedule(history)``, a pure function of a :class:`History` with values in
    ``[0, 1]``.

    Write a schedule of your own as a frozen dataclass subclassing this one. Any other callable
    given where a schedule is expected is taken as a function ``n -> alpha`` of the number of
    finished trials (see :class:`OfTrialCount`).
    """

    @abc.abstractmethod
    def __call__(self, history: History) -> float: ...


@dataclass(frozen=True)
class Constant(AlphaSchedule):
    """``alpha_n = alpha`` for every ``n``. With ``alpha > 0`` the suggestions never fade out."""

    alpha: float

    def __post_init__(self) -> None:
        unit_interval("alpha", self.alpha)

    def __call__(self, history: History | int) -> float:
        trial_count(history)
        return float(self.alpha)


@dataclass(frozen=True)
class HyperbolicDecay(AlphaSchedule):
    """``alpha_n = alpha0 / (1 + n / n_half)``: ``alpha0`` at the start, half of it after
    ``n_half`` trials, and ``alpha_n -> 0`` like ``1/n``, the rate of piBO's ``beta / n``."""

    alpha0: float = 0.75
    n_half: float = 25.0

    def __post_init__(self) -> None:
        unit_interval("alpha0", self.alpha0)
        positive("n_half", self.n_half)

    def __call__(self, history: History | int) -> float:
        return self.alpha0 / (1.0 + trial_count(history) / self.n_half)


@dataclass(frozen=True)
class PiBODecay(AlphaSchedule):
    """``alpha_n = min(1, beta / n)`` (and ``alpha_0 = 1``), after piBO (Hvarfner et al., 2022).

    piBO multiplies its acquisition function by the prior raised to ``beta / n``,
    ``pi(x)^(beta / n)``; the authors take ``beta = N / 10`` for a budget of ``N`` trials (the
    default ``beta = 10`` is a budget of 100). Here the prior is ``p_llm`` and the exponent
    ``beta / n`` is taken as the geometric pool's ``alpha`` as it is, capped at 1, so TPE's
    density gets ``1 - beta / n`` where piBO's model keeps exponent 1. Normalizing piBO's exponents
    ``(beta / n, 1)`` to sum to one would give ``beta / (n + beta)`` instead (that is
    :class:`BOPrODecay`); the two agree to first order in ``beta / n`` and both decay like
    ``beta / n``.
    """

    beta: float = 10.0

    def __post_init__(self) -> None:
        positive("beta", self.beta)

    def __call__(self, history: History | int) -> float:
        n = trial_count(history)
        return 1.0 if n == 0 else min(1.0, self.beta / n)


@dataclass(frozen=True)
class BOPrODecay(AlphaSchedule):
    """``alpha_n = 1 / (1 + n / beta)``, after BOPrO (Souza et al., 2021).

    BOPrO's pseudo-posterior is ``P(x) M(x)^(t / beta)``, the prior times the model raised to a
    power that grows with the iteration ``t`` (``beta = 10`` in the paper). With ``p_llm`` as the
    prior, TPE's ``l`` as the model and ``t = n``, the exponents ``(1, n / beta)`` normalized to
    sum to one are the geometric pool's ``(alpha_n, 1 - alpha_n)``, so
    ``alpha_n = 1 / (1 + n / beta) = beta / (beta + n)``: 1 at the start, 1/2 after ``beta``
    trials. This is ``HyperbolicDecay(alpha0=1, n_half=beta)``.
    """

    beta: float = 10.0

    def __post_init__(self) -> None:
        positive("beta", self.beta)

    def __call__(self, history: History | int) -> float:
        return 1.0 / (1.0 + trial_count(history) / self.beta)


@dataclass(frozen=True)
class OfTrialCount(AlphaSchedule):
    """``alpha_n = function(n)``: a schedule given as a function of the number of finished trials
    ``n`` alone. :func:`as_schedule` wraps any callable that is not an :class:`AlphaSchedule` in
    it, so ``alpha=lambda n: ...`` keeps working. :func:`alpha_at` checks what it returns."""

    function: Callable[[int], float]

    def __post_init__(self) -> None:
        if not callable(self.function):
            raise ValueError(f"function must be a callable n -> alpha, got {self.function!r}")

    def __call__(self, history: History | int) -> float:
        return self.function(trial_count(history))


@dataclass(frozen=True)
class RankPerformance(AlphaSchedule):
    """The seed's performance-based rule, repaired: ``alpha`` follows how well the trials that
    ``p_llm`` proposed rank against those TPE proposed, under an envelope that goes to 0.

    With ``A_n`` the :func:`superiority` of the :data:`LLM` trials over the :data:`TPE` trials
    (1/2 when either group is empty),

        ``e_n = 1 / (1 + n / n_half)``,  ``floor_n = floor e_n``,
        ``alpha_n = e_n (floor_n + (cap - floor_n) A_n)``.

    ``A_n`` is mapped linearly onto ``[floor_n, cap]`` (``cap`` when every LLM trial beats every
    TPE trial, ``floor_n`` when none does), and the envelope ``e_n`` scales the whole, so
    ``e_n floor_n <= alpha_n <= e_n cap -> 0`` for any history. This replaces the seed's undefined
    ``baseline_performance`` by the TPE trials, its fixed clip ``[0.1, 0.8]`` by a floor that decays
    and a cap, and its running increments by a function of the history.
    """

    cap: float = 0.8
    floor: float = 0.1
    n_half: float = 25.0

    def __post_init__(self) -> None:
        unit_interval("cap", self.cap)
        unit_interval("floor", self.floor)
        if self.floor > self.cap:
            raise ValueError(f"floor must be <= cap = {self.cap!r}, got floor={self.floor!r}")
        positive("n_half", self.n_half)

    def __call__(self, history: History) -> float:
        history = _checked_history(history)
        envelope = 1.0 / (1.0 + len(history) / self.n_half)
        floor_n = self.floor * envelope
        return envelope * (floor_n + (self.cap - floor_n) * superiority(history))


@dataclass(frozen=True)
class PredictiveCredit(AlphaSchedule):
    """Credit for predicting the good trials: each source is weighted by the likelihood it gave,
    beforehand, to the points that turned out good, and ``alpha`` is ``p_llm``'s weight under an
    envelope that goes to 0.

    With ``G`` the :func:`good_trials` (the best ``ceil(gamma n)``) among those whose record holds
    both log-densities, not both ``-inf`` (a point neither source gave any density tells them
    apart in no way), each source's cumulative predictive log-likelihood is

        ``L_llm = sum_{t in G} log p_llm(x_t)``,  ``L_tpe = sum_{t in G} log l(x_t)``,

    each density taken as it was when trial ``t`` was proposed (so it is a prediction). The weights
    are Hedge's exponential weights with learning rate ``eta``,

        ``w = softmax(z)``,  ``z_llm = log prior_llm + eta L_llm``,
        ``z_tpe = log(1 - prior_llm) + eta L_tpe``,

    which at ``eta = 1`` is Bayesian model averaging of the two sources' predictive likelihoods.
    They are computed in log space from ``Delta = z_llm - z_tpe`` as ``w_llm = 1 / (1 + e^-Delta)``,
    the two-source softmax, which stays exact (no overflow, no NaN) when an ``L`` is ``-inf`` or
    huge; when ``L_llm = L_tpe`` (both ``-inf`` included) the weights are the prior. Then

        ``alpha_n = w_llm / (1 + n / n_half)``.
    """

    eta: float = 1.0
    gamma: float = 0.1
    prior_llm: float = 0.5
    n_half: float = 25.0

    def __post_init__(self) -> None:
        positive("eta", self.eta)
        if not (is_real(self.gamma) and 0.0 < float(self.gamma) <= 1.0):
            raise ValueError(f"gamma must be a number in (0, 1], got {self.gamma!r}")
        if not (is_real(self.prior_llm) and 0.0 < float(self.prior_llm) < 1.0):
            raise ValueError(f"prior_llm must be a number in (0, 1), got {self.prior_llm!r}")
        positive("n_half", self.n_half)

    def log_likelihoods(self, history: History) -> tuple[float, float]:
        """``(L_llm, L_tpe)``, the log-likelihoods the sources gave the good trials, each in
        ``[-inf, inf]``."""
        history = _checked_history(history)
        good = good_trials(history, self.gamma)
        scored = [
            t
            for t, is_good in zip(history.trials, good, strict=True)
            if is_good
            and t.log_p_llm is not None
            and t.log_l is not None
            and max(t.log_p_llm, t.log_l) > -math.inf
        ]
        return _total([t.log_p_llm for t in scored]), _total([t.log_l for t in scored])

    def weights(self, history: History) -> tuple[float, float]:
        """``(w_llm, w_tpe)``, Hedge's weights of the two sources; they sum to one."""
        l_llm, l_tpe = self.log_likelihoods(history)
        difference = 0.0 if l_llm == l_tpe else l_llm - l_tpe
        delta = math.log(self.prior_llm) - math.log1p(-self.prior_llm) + self.eta * difference
        return float(scipy.special.expit(delta)), float(scipy.special.expit(-delta))

    def __call__(self, history: History) -> float:
        w_llm, _ = self.weights(history)
        return w_llm / (1.0 + len(history) / self.n_half)


# -------------------------------------------------------------------------------------------------
# Entry points
# -------------------------------------------------------------------------------------------------


def alpha_at(schedule: AlphaSchedule | Callable[[int], float], history: History | int) -> float:
    """``schedule(history)``, checked: a ``ValueError`` names the schedule, ``n`` and what it
    returned unless that is a number in ``[0, 1]``.

    ``history`` may be an ``int`` ``n`` for schedules of the trial count alone; a callable that is
    not an :class:`AlphaSchedule` is called with ``n``.
    """
    if not isinstance(schedule, AlphaSchedule):
        if not callable(schedule):
            raise ValueError(f"schedule must be an AlphaSchedule or a callable, got {schedule!r}")
        function = OfTrialCount(schedule)
    else:
        function = schedule
    n = len(history) if isinstance(history, History) else history
    try:
        alpha = function(history)
    except Exception as e:
        raise ValueError(f"the alpha schedule {schedule!r} failed at n={n}: {e!r}") from e
    if not (is_real(alpha) and 0.0 <= float(alpha) <= 1.0):  # NaN fails too
        raise ValueError(
            f"alpha schedule {schedule!r} returned alpha={alpha!r} at n={n}; "
            "alpha must be a number in [0, 1]"
        )
    return float(alpha)


def as_schedule(alpha: AlphaSchedule | Callable[[int], float] | float | None) -> AlphaSchedule:
    """``None`` gives the default :class:`HyperbolicDecay`, a number a :class:`Constant`, an
    :class:`AlphaSchedule` itself, and any other callable ``n -> alpha`` an :class:`OfTrialCount`.
    """
    if alpha is None:
        return HyperbolicDecay()
    if is_real(alpha):
        return Constant(float(alpha))
    if isinstance(alpha, AlphaSchedule):
        return alpha
    if callable(alpha):
        return OfTrialCount(alpha)
    raise ValueError(
        f"alpha must be None, a number in [0, 1], an AlphaSchedule or a function n -> alpha, "
        f"got {alpha!r}"
    )
