"""Argument checks shared by the public entry points: each raises a ``ValueError`` that names the
argument and the value it got, in Python, before anything is traced."""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np


def _item(value: Any) -> Any:
    """A concrete 0-d NumPy or JAX array as its Python scalar; anything else as it is."""
    if isinstance(value, np.ndarray | jax.Array) and not isinstance(value, jax.core.Tracer):
        if value.ndim == 0 and value.dtype != bool and np.issubdtype(value.dtype, np.number):
            return value.item()
    return value


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, or a 0-d integer array, and not a ``bool``."""
    value = _item(value)
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_real(value: Any) -> bool:
    """A Python or NumPy real number, or a 0-d real array, and not a ``bool``."""
    value = _item(value)
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def prng_key(name: str, value: Any) -> jax.Array:
    """``value`` as a ``jax.random`` key: a typed key (``jax.random.key``) or a raw ``uint32[2]``
    one (``jax.random.PRNGKey``)."""
    if isinstance(value, jax.Array):
        if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key) and value.shape == ():
            return value
        if value.dtype == np.uint32 and value.shape == (2,):
            return value
    raise ValueError(f"{name} must be a jax.random key, got {value!r}")


def integer(name: str, value: Any, minimum: int = 0, maximum: int | None = None) -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]``."""
    if (
        not is_int(value)
        or _item(value) < minimum
        or (maximum is not None and _item(value) > maximum)
    ):
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


def pytree_of_arrays(name: str, value: Any) -> None:
    """``value`` must be a JAX pytree whose leaves are arrays or numbers (a density registered
    with ``jax.tree_util.register_dataclass``), so that jitted code can take it as an argument."""
    leaves = jax.tree_util.tree_leaves(value)
    if not all(isinstance(v, np.ndarray | jax.Array | float | int | np.number) for v in leaves):
        raise ValueError(
            f"{name} must be a JAX pytree of arrays (a dataclass registered with "
            f"jax.tree_util.register_dataclass), got {type(value).__name__}"
        )
