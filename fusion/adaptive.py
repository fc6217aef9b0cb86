"""Alpha schedules: how much weight the suggestions keep as trials accumulate.

A schedule is a small frozen object with ``__call__(n) -> alpha``, where ``n`` is the number of
finished (complete or pruned) trials. It is a pure function of ``n``, so every worker of a
distributed study computes the same alpha for the same history.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


@runtime_checkable
class AlphaSchedule(Protocol):
    def __call__(self, n: int) -> float: ...


def _check_alpha(name: str, value: float) -> None:
    if not (isinstance(value, int | float) and math.isfinite(value) and 0.0 <= value <= 1.0):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")


@dataclass(frozen=True)
class Constant:
    """``alpha_n = alpha`` for every ``n``. With ``alpha > 0`` the suggestions never fade out."""

    alpha: float

    def __post_init__(self) -> None:
        _check_alpha("alpha", self.alpha)

    def __call__(self, n: int) -> float:
        return float(self.alpha)


@dataclass(frozen=True)
class HyperbolicDecay:
    """``alpha_n = alpha0 / (1 + n / n_half)``: ``alpha0`` at the start, half of it after
    ``n_half`` trials, and ``alpha_n -> 0`` like ``1/n``, the rate of piBO's ``beta / n``."""

    alpha0: float = 0.75
    n_half: float = 25.0

    def __post_init__(self) -> None:
        _check_alpha("alpha0", self.alpha0)
        if not (math.isfinite(self.n_half) and self.n_half > 0):
            raise ValueError(f"n_half must be finite and > 0, got {self.n_half!r}")

    def __call__(self, n: int) -> float:
        return self.alpha0 / (1.0 + max(n, 0) / self.n_half)


def as_schedule(alpha: AlphaSchedule | float | None) -> AlphaSchedule:
    """``None`` gives the default :class:`HyperbolicDecay`; a number gives :class:`Constant`."""
    if alpha is None:
        return HyperbolicDecay()
    if isinstance(alpha, int | float) and not isinstance(alpha, bool):
        return Constant(float(alpha))
    if callable(alpha):
        return alpha
    raise ValueError(
        f"alpha must be None, a number in [0, 1] or a schedule n -> alpha, got {alpha!r}"
    )
