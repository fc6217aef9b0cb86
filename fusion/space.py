"""Search spaces: parameters, internal coordinates and the base measure.

A configuration is stored as a float vector ``x`` with one internal coordinate per parameter:

=================  ==========================================  ===========================
parameter          internal coordinate                         base measure
=================  ==========================================  ===========================
float              its value                                   Lebesgue
log float          ``ln(value)``                               Lebesgue (per unit of ln x)
int, float + step  its value, on the grid ``low + k * step``   counting
log int            its value; its cell is ``[ln(k-1/2), ln(k+1/2)]``  counting
categorical        the index of the choice                     counting
=================  ==========================================  ===========================

Every density in ``fusion`` is a density with respect to this base measure, the same convention as
Optuna's ``_ParzenEstimator.log_pdf``. A density in the user's units differs from it by the Jacobian
``1/x`` on log floats; convert only at the edge.

The numeric geometry of a space (kinds, bounds, steps, number of choices) is a tuple of :class:`Dim`.
It is hashable, so densities carry it as static metadata; names and choices stay in :class:`SearchSpace`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

CONTINUOUS = "continuous"
DISCRETE = "discrete"
LOG_DISCRETE = "log_discrete"
CATEGORICAL = "categorical"


class Dim(NamedTuple):
    """The numeric geometry of one internal coordinate.

    ``kind`` is one of ``continuous`` (a float, or a log float in ln units), ``discrete`` (the grid
    ``low + k * step``), ``log_discrete`` (a log int: the grid of integers, with kernels in ln units)
    and ``categorical`` (indices ``0 .. n_choices - 1``). For continuous coordinates ``low`` and
    ``high`` are in internal units, so they are ``ln`` bounds for a log float.
    """

    kind: str
    low: float = 0.0
    high: float = 0.0
    step: float = 0.0
    n_choices: int = 0

    @property
    def is_numeric(self) -> bool:
        return self.kind != CATEGORICAL

    @property
    def kernel_bounds(self) -> tuple[float, float]:
        """The interval on which a numeric kernel lives, in kernel units.

        A discrete coordinate's kernels live on ``[low - step/2, high + step/2]``, in ``ln`` units
        for a log int, as in Optuna.
        """
        if self.kind == CONTINUOUS:
            return self.low, self.high
        if self.kind == DISCRETE:
            return self.low - self.step / 2, self.high + self.step / 2
        if self.kind == LOG_DISCRETE:
            return math.log(self.low - self.step / 2), math.log(self.high + self.step / 2)
        raise ValueError(f"a categorical Dim has no kernel bounds: {self}")

    @property
    def n_points(self) -> int:
        """The number of support points of a discrete or categorical coordinate."""
        if self.kind == CATEGORICAL:
            return self.n_choices
        if self.kind in (DISCRETE, LOG_DISCRETE):
            return int(round((self.high - self.low) / self.step)) + 1
        raise ValueError(f"a continuous Dim has no support points: {self}")

    def grid(self) -> np.ndarray:
        """The support points of a discrete or categorical coordinate, in internal units.

        A discrete grid is ``low + k * step`` for ``k = 0 .. n_points - 1``, clipped to ``high``:
        in floats the last point can land 1 ulp above the ``high`` that Optuna put on the grid.
        """
        if self.kind == CATEGORICAL:
            return np.arange(self.n_choices, dtype=float)
        return np.minimum(self.low + self.step * np.arange(self.n_points, dtype=float), self.high)


def check_dims(dims) -> tuple[Dim, ...]:
    """``dims`` as a tuple, each a well-formed :class:`Dim`, else a ``ValueError`` naming it.

    A continuous coordinate needs ``low < high`` (infinite bounds are allowed: a kernel can live on
    the real line); a grid needs finite ``low <= high`` and a finite ``step > 0`` (a log int also
    ``low - step/2 > 0``); a categorical coordinate needs at least one choice.
    """
    if isinstance(dims, Dim) or not isinstance(dims, Sequence):
        raise ValueError(f"dims must be a sequence of Dim, got {dims!r}")
    for j, d in enumerate(dims):
        if not isinstance(d, Dim):
            raise ValueError(f"dims[{j}] must be a Dim, got {d!r}")
        if d.kind == CONTINUOUS:
            ok = not (math.isnan(d.low) or math.isnan(d.high)) and d.low < d.high
        elif d.kind in (DISCRETE, LOG_DISCRETE):
            ok = (
                math.isfinite(d.low)
                and math.isfinite(d.high)
                and math.isfinite(d.step)
                and d.step > 0
                and d.low <= d.high
                and (d.kind == DISCRETE or d.low - d.step / 2 > 0)
            )
        elif d.kind == CATEGORICAL:
            ok = isinstance(d.n_choices, int) and d.n_choices >= 1
        else:
            ok = False
        if not ok:
            raise ValueError(
                f"dims[{j}] = {d} is not a valid coordinate (see fusion.space.check_dims)"
            )
    return tuple(dims)


@dataclass(frozen=True)
class Param:
    """One named parameter: its geometry and, for a categorical, its choices.

    ``bounds`` are a numeric parameter's ``(low, high)`` in user units, exactly as the distribution
    gives them. They are what values are checked and clipped against: for a log float,
    ``exp(ln(low))`` can be 1 ulp off ``low``. Without them they are derived from ``dim``.
    """

    name: str
    dim: Dim
    log: bool = False
    is_int: bool = False
    choices: tuple[Any, ...] = ()
    bounds: tuple[float, float] | None = None

    def to_internal(self, value: Any) -> float:
        """The internal coordinate of a user value; a ``ValueError`` names the parameter and value."""
        name = self.name
        if self.dim.kind == CATEGORICAL:
            return float(_choice_index(name, self.choices, value))
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(
                f"parameter {name!r}: value {value!r} of type {type(value).__name__} is not a number"
            )
        v = float(value)
        if math.isnan(v):
            raise ValueError(f"parameter {name!r}: value {value!r} is NaN")
        if self.log and v <= 0:
            raise ValueError(f"parameter {name!r}: value {value!r} must be > 0 on a log scale")
        low, high = self.user_bounds
        if not (low <= v <= high):
            raise ValueError(f"parameter {name!r}: value {value!r} is outside [{low}, {high}]")
        if self.dim.kind == CONTINUOUS:
            return math.log(v) if self.log else v
        k = _grid_index(name, self.dim.low, self.dim.step, value)
        return self._grid_point(k)

    def to_user(self, coordinate: float) -> Any:
        """The user value of an internal coordinate (snapped to the grid and clipped into range).

        The coordinate is clipped in internal units first (``ln`` units for a log float, so a far
        coordinate never overflows ``exp``): at or past a bound it gives that user bound exactly.
        Inside, it is converted (and snapped) and the result clipped to the user bounds.
        """
        c = float(coordinate)
        if math.isnan(c):
            raise ValueError(f"parameter {self.name!r}: coordinate {c!r} is NaN")
        if self.dim.kind == CATEGORICAL:
            return self.choices[int(round(min(max(c, 0.0), len(self.choices) - 1.0)))]
        if self.dim.kind == CONTINUOUS:
            low, high = self.user_bounds
            # At or past a bound, the bound itself: exp(ln(low)) can be 1 ulp off low.
            if c <= self.dim.low:
                return low
            if c >= self.dim.high:
                return high
            return min(max(math.exp(c) if self.log else c, low), high)
        c = min(max(c, self.dim.low), self.dim.high)
        k = min(round((c - self.dim.low) / self.dim.step), self.dim.n_points - 1)
        v = self._grid_point(k)
        return int(round(v)) if self.is_int else v

    def _grid_point(self, k: int) -> float:
        """The grid value ``low + k * step`` of a discrete coordinate, clipped to ``[low, high]``."""
        return min(max(self.dim.low + k * self.dim.step, self.dim.low), self.dim.high)

    @property
    def user_bounds(self) -> tuple[float, float]:
        """``(low, high)`` in user units: ``bounds`` if given, else derived from ``dim``."""
        if self.bounds is not None:
            return self.bounds
        if self.dim.kind == CONTINUOUS and self.log:
            return math.exp(self.dim.low), math.exp(self.dim.high)
        return self.dim.low, self.dim.high


def grid_tolerance(value, low, step):
    """How far, in steps, ``value`` may sit from a grid point ``low + k * step`` and still count as
    on it: ``1e-8`` (Optuna's own slack) plus the rounding error of ``(value - low) / step``, a few
    hundred ulps of ``(|value| + |low|) / step``. It is absolute in ``k``, so that on a grid of
    ``10**9`` integers ``123456789.4`` is off the grid. Works on floats and on NumPy/JAX arrays."""
    return 1e-8 + 1e-13 * (abs(value) + abs(low)) / step


def _grid_index(name: str, low: float, step: float, value: Any, what: str = "value") -> int:
    """The ``k`` with ``value == low + k * step`` (see :func:`grid_tolerance`), else a ``ValueError``."""
    k = (float(value) - low) / step
    if abs(k - round(k)) > grid_tolerance(float(value), low, step):
        raise ValueError(
            f"parameter {name!r}: {what} {value!r} is not on the grid {low} + k * {step}"
        )
    return round(k)


def _choice_index(name: str, choices: Sequence[Any], value: Any) -> int:
    """The index of ``value`` among ``choices``, compared by type and value, never by hash or cast.

    ``1``, ``True`` and ``1.0`` are different choices; a list and a tuple with equal items are one.
    A NumPy scalar counts as its Python twin (``np.int64(2)`` as ``2``, ``np.str_("a")`` as ``"a"``).
    """
    for i, c in enumerate(choices):
        if _same_choice(c, value):
            return i
    raise ValueError(
        f"parameter {name!r}: value {value!r} is not one of the choices {list(choices)}"
    )


def _same_choice(a: Any, b: Any) -> bool:
    a = a.item() if isinstance(a, np.generic) else a
    b = b.item() if isinstance(b, np.generic) else b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same_choice(x, y) for x, y in zip(a, b, strict=True))
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    try:
        return bool(a == b)
    except Exception:  # objects whose == is not a plain truth value
        return a is b


@dataclass(frozen=True)
class SearchSpace:
    """An ordered set of named parameters, and conversion between user values and coordinates."""

    params: tuple[Param, ...]

    def __post_init__(self) -> None:
        names = [p.name for p in self.params]
        if len(set(names)) != len(names):
            raise ValueError(f"parameter names must be unique, got {names}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def dims(self) -> tuple[Dim, ...]:
        return tuple(p.dim for p in self.params)

    def __len__(self) -> int:
        return len(self.params)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def to_internal(self, config: Mapping[str, Any]) -> np.ndarray:
        """The internal coordinates of one configuration, shape ``(d,)``.

        A missing or unknown parameter, or a bad value, raises a ``ValueError`` that names it.
        """
        if not isinstance(config, Mapping):
            raise ValueError(f"a configuration must be a mapping of name to value, got {config!r}")
        missing = [n for n in self.names if n not in config]
        if missing:
            raise ValueError(f"configuration {dict(config)!r} is missing parameter(s) {missing}")
        unknown = [n for n in config if n not in self.names]
        if unknown:
            raise ValueError(
                f"configuration {dict(config)!r} has unknown parameter(s) {unknown}; "
                f"the space has {list(self.names)}"
            )
        return np.array([p.to_internal(config[p.name]) for p in self.params], dtype=float)

    def to_internal_batch(self, configs: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Internal coordinates of several configurations, shape ``(n, d)``; ``(0, d)`` for none."""
        rows = [self.to_internal(c) for c in configs]
        return np.array(rows, dtype=float).reshape(len(rows), len(self))

    def to_user(self, x: np.ndarray) -> dict[str, Any]:
        """The user values of one internal coordinate vector ``(d,)``."""
        x = np.asarray(x, dtype=float).reshape(-1)
        if x.shape[0] != len(self):
            raise ValueError(f"x has {x.shape[0]} coordinates, the space has {len(self)}")
        return {p.name: p.to_user(c) for p, c in zip(self.params, x, strict=True)}

    @classmethod
    def from_optuna(cls, distributions: Mapping[str, Any]) -> SearchSpace:
        """A space from a dict of Optuna distributions, read by duck typing (no Optuna import).

        Float, log float, int, log int, stepped float/int and categorical distributions are supported.
        """
        if not isinstance(distributions, Mapping):
            raise ValueError(
                f"distributions must be a dict of name to Optuna distribution, got {distributions!r}"
            )
        return cls(tuple(_param_from_optuna(n, d) for n, d in distributions.items()))


def _param_from_optuna(name: str, d: Any) -> Param:
    kind = type(d).__name__
    if kind == "CategoricalDistribution":
        choices = tuple(d.choices)
        return Param(name, Dim(CATEGORICAL, n_choices=len(choices)), choices=choices)
    if kind not in ("FloatDistribution", "IntDistribution"):
        raise ValueError(f"parameter {name!r}: unsupported distribution {d!r}")
    low, high, log, step = float(d.low), float(d.high), bool(d.log), d.step
    is_int = kind == "IntDistribution"
    if log and step is not None and (not is_int or step != 1):
        raise ValueError(
            f"parameter {name!r}: a log distribution with step {step} is not supported"
        )
    if log and low <= 0:
        raise ValueError(f"parameter {name!r}: a log distribution needs low > 0, got {low}")
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"parameter {name!r}: bounds [{low}, {high}] are not a finite interval")
    if not math.isfinite(high - low):
        raise ValueError(
            f"parameter {name!r}: the width of [{low}, {high}] overflows a float; "
            "rescale the parameter"
        )
    bounds = (low, high)
    if step is None:
        dim = Dim(CONTINUOUS, math.log(low), math.log(high)) if log else Dim(CONTINUOUS, low, high)
        return Param(name, dim, log=log, bounds=bounds)
    step = float(step)
    # Optuna has already moved ``high`` onto the grid (exactly, in decimals); keep it as it is.
    _grid_index(name, low, step, d.high, what="high")
    dim = Dim(LOG_DISCRETE if log else DISCRETE, low, high, step)
    return Param(name, dim, log=log, is_int=is_int, bounds=bounds)
