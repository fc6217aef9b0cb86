"""Alpha schedules: how much weight the suggestions keep as trials accumulate.

A schedule is a small frozen object with ``__call__(n) -> alpha``, where ``n`` is the number of
finished (complete or pruned) trials. It is a pure function of ``n``, so every worker of a
distributed study computes the same alpha for the same history.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from fusion._validate import integer, is_real, positive, unit_interval


@runtime_checkable
class AlphaSchedule(Protocol):
    def __call__(self, n: int) -> float: ...


@dataclass(frozen=True)
class Constant:
    """``alpha_n = alpha`` for every ``n``. With ``alpha > 0`` the suggestions never fade out."""

    alpha: float

    def __post_init__(self) -> None:
        unit_interval("alpha", self.alpha)

    def __call__(self, n: int) -> float:
        integer("n", n)
        return float(self.alpha)


@dataclass(frozen=True)
class HyperbolicDecay:
    """``alpha_n = alpha0 / (1 + n / n_half)``: ``alpha0`` at the start, half of it after
    ``n_half`` trials, and ``alpha_n -> 0`` like ``1/n``, the rate of piBO's ``beta / n``."""

    alpha0: float = 0.75
    n_half: float = 25.0

    def __post_init__(self) -> None:
        unit_interval("alpha0", self.alpha0)
        positive("n_half", self.n_half)

    def __call__(self, n: int) -> float:
        return self.alpha0 / (1.0 + integer("n", n) / self.n_half)


def alpha_at(schedule: AlphaSchedule, n: int) -> float:
    """``schedule(n)``, checked: a ``ValueError`` names the schedule, ``n`` and what it returned
    unless that is a number in ``[0, 1]``."""
    try:
        alpha = schedule(n)
    except Exception as e:
        raise ValueError(f"the alpha schedule {schedule!r} failed at n={n}: {e!r}") from e
    if not (is_real(alpha) and 0.0 <= float(alpha) <= 1.0):  # NaN fails too
        raise ValueError(
            f"alpha schedule {schedule!r} returned alpha={alpha!r} at n={n}; "
            "alpha must be a number in [0, 1]"
        )
    return float(alpha)


def as_schedule(alpha: AlphaSchedule | float | None) -> AlphaSchedule:
    """``None`` gives the default :class:`HyperbolicDecay`; a number gives :class:`Constant`."""
    if alpha is None:
        return HyperbolicDecay()
    if is_real(alpha):
        return Constant(float(alpha))
    if callable(alpha):
        return alpha
    raise ValueError(
        f"alpha must be None, a number in [0, 1] or a schedule n -> alpha, got {alpha!r}"
    )
