"""Argument checks shared by the public entry points: each raises a ``ValueError`` that names the
argument and the value it got, in Python, before anything is traced."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, and not a ``bool``."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A Python or NumPy real number, and not a ``bool``."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def integer(name: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]``."""
    if not is_int(value) or value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name} must be an int >= {minimum}{upper}, got {value!r}")
    return int(value)


def unit_interval(name: str, value: Any) -> float:
    """``value`` as a ``float`` in ``[0, 1]`` (NaN is refused)."""
    if not is_real(value) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def positive(name: str, value: Any) -> float:
    """``value`` as a finite ``float > 0``."""
    if not is_real(value) or not (math.isfinite(float(value)) and float(value) > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
