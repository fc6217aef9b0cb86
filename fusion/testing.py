"""Hypothesis strategies for property-based tests of code built on :mod:`fusion`.

This module needs `hypothesis <https://hypothesis.readthedocs.io>`_, a development dependency of
fusion (the ``dev`` extra: ``pip install 'fusion[dev]'``, or ``pip install hypothesis``). Importing
it without hypothesis raises an ``ImportError`` that says so; no other module of fusion imports
hypothesis. Like every density in fusion, the generated ones need 64-bit JAX
(``jax.config.update("jax_enable_x64", True)``) before a strategy draws from them.

Each function returns a ``SearchStrategy``; keyword arguments bound the sizes of what it draws, in
the manner of ``hypothesis.extra.numpy``. Where a function takes a ``space``, it may be a
:class:`~fusion.space.SearchSpace` or a strategy of them (``search_spaces()``); densities are
built on ``space.dims``.

- :func:`search_spaces`: random mixed spaces (float, log float, int, log int, stepped float and
  int, categorical).
- :func:`points`: batches ``(n, d)`` of internal coordinates inside a space.
- :func:`mixtures`: :class:`~fusion.density.ProductKernelMixture` densities (TPE's shape).
- :func:`suggestion_sets`: lists of configurations in user values, valid for a space.
- :func:`suggestion_densities`: ``p_llm``, :func:`fusion.kde.suggestion_density` of such a list.
- :func:`pools`: linear, geometric and product pools of a ``p_llm`` and a ``p_opt``.

Numerical ranges. Everything drawn stays where float64 arithmetic is comfortable, so a failing
example points at the code under test rather than at overflow:

- float bounds in ``[-100, 100]`` with widths in ``[0.01, 100]``; log float bounds in
  ``[1e-6, 1e7]`` with ``high / low`` in ``[2, 1e6]``;
- int and stepped grids starting at ``low`` in ``[-100, 100]`` (a stepped float at ``m * step``
  with ``m`` in ``[-100, 100]``, a log int at ``low`` in ``[1, 100]``), steps of stepped floats
  from ``STEPS`` and of stepped ints from ``INT_STEPS``, 1 to ``max_points`` (at most 64) points;
- kernel weights in ``[0.01, 1]`` before normalization (a ratio of at most 100), kernel centres
  inside the kernel bounds, scales ``sigma`` from ``min_sigma`` to ``max_sigma`` times the width of
  the kernel bounds (drawn log-uniformly; defaults 0.02 and 1), categorical table entries in
  ``[0.01, 1]`` before normalization (exactly 0 allowed only with ``zero_probs=True``);
- the uniform floor of ``p_llm`` in ``[min_floor, max_floor]`` (defaults 0.01 and 0.5), pooling
  weights ``alpha`` in ``[min_alpha, max_alpha]`` (defaults 0 and 1).

Every generated density is normalized with respect to the base measure of :mod:`fusion.space`:
mixtures have weights summing to one and kernels truncated to the space. Mixtures are padded to a
fixed power-of-two kernel count per strategy (``pad_to``), so that jitted code compiles once per
space, not once per example.
"""

from __future__ import annotations

try:
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy
except ImportError as e:  # pragma: no cover - exercised in a subprocess by the tests
    raise ImportError(
        "fusion.testing needs hypothesis, a development dependency of fusion: install it with "
        "pip install 'fusion[dev]' (or pip install hypothesis). The rest of fusion works without it."
    ) from e

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fusion.combine import LinearPool, LogLinearPool, geometric, linear_pool, product
from fusion.density import ProductKernelMixture, bucket_size, mixture
from fusion.kde import suggestion_density
from fusion.space import (
    CATEGORICAL,
    CONTINUOUS,
    DISCRETE,
    LOG_DISCRETE,
    Dim,
    Param,
    SearchSpace,
    check_dims,
)

__all__ = [
    "KINDS",
    "POOL_KINDS",
    "mixtures",
    "points",
    "pools",
    "search_spaces",
    "suggestion_densities",
    "suggestion_sets",
]

KINDS = ("float", "log_float", "int", "log_int", "step_float", "step_int", "categorical")
"""The parameter kinds :func:`search_spaces` draws from."""

POOL_KINDS = ("linear", "geometric", "product")
"""The pools :func:`pools` builds."""

STEPS = (0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
"""Steps of stepped float parameters."""

INT_STEPS = (2, 3, 5, 10)
"""Steps of stepped int parameters."""

CHOICES = ("adam", "sgd", "rmsprop", "relu", "tanh", None, True, False, 0, 1, 2, 0.5, 1e-3)
"""The values categorical choices are drawn from: Optuna's choice types (``None``, ``bool``,
``int``, ``float``, ``str``), with ``0`` and ``False``, ``1`` and ``True``: equal in Python, yet
different choices (``fusion.space`` compares by type and value)."""

_MAX_POINTS = 64
_MAX_CHOICES = len(CHOICES)


# ---------------------------------------------------------------------------------------------
# Argument checks: eager, so a bad call fails where the strategy is defined
# ---------------------------------------------------------------------------------------------


def _int_arg(name: str, value: Any, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"{name} must be an int, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum}"
        raise ValueError(f"{name} must be >= {minimum}{upper}, got {value!r}")
    return int(value)


def _size_range(lo_name: str, lo: Any, hi_name: str, hi: Any, minimum: int = 0) -> None:
    _int_arg(lo_name, lo, minimum)
    _int_arg(hi_name, hi, minimum)
    if lo > hi:
        raise ValueError(f"{lo_name}={lo!r} must be <= {hi_name}={hi!r}")


def _real_range(lo_name: str, lo: Any, hi_name: str, hi: Any, low: float, high: float) -> None:
    for name, v in ((lo_name, lo), (hi_name, hi)):
        if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
            raise ValueError(f"{name} must be a number, got {v!r}")
        if not low <= float(v) <= high:  # NaN fails too
            raise ValueError(f"{name} must be in [{low}, {high}], got {v!r}")
    if lo > hi:
        raise ValueError(f"{lo_name}={lo!r} must be <= {hi_name}={hi!r}")


def _kinds_arg(name: str, value: Any, allowed: tuple[str, ...]) -> tuple[str, ...]:
    try:
        kinds = (value,) if isinstance(value, str) else tuple(value)
    except TypeError:
        raise ValueError(
            f"{name} must be a name or a selection of {allowed}, got {value!r}"
        ) from None
    bad = [k for k in kinds if k not in allowed]
    if not kinds or bad:
        raise ValueError(f"{name} must be a non-empty selection of {allowed}, got {value!r}")
    return kinds


def _space_arg(space: Any, need_params: bool) -> SearchStrategy:
    """``space`` as a strategy: a strategy is taken as it is, a space or dims as ``just``."""
    if isinstance(space, SearchStrategy):
        return space
    if isinstance(space, SearchSpace):
        return st.just(space)
    if not need_params and isinstance(space, Sequence) and not isinstance(space, str):
        return st.just(check_dims(tuple(space)))
    what = "a SearchSpace" if need_params else "a SearchSpace or a tuple of Dim"
    raise ValueError(f"space must be {what}, or a strategy of them; got {space!r}")


def _dims_of(space: SearchSpace | tuple[Dim, ...]) -> tuple[Dim, ...]:
    return space.dims if isinstance(space, SearchSpace) else check_dims(space)


def _params_of(space: Any) -> SearchSpace:
    if not isinstance(space, SearchSpace):
        raise ValueError(f"this strategy needs a SearchSpace (names and choices), got {space!r}")
    return space


# ---------------------------------------------------------------------------------------------
# Spaces
# ---------------------------------------------------------------------------------------------


def _floats(lo: float, hi: float) -> SearchStrategy[float]:
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False, allow_subnormal=False)


@st.composite
def _param(draw, name: str, kind: str, max_points: int, max_choices: int) -> Param:
    n = draw(st.integers(1, max_points))
    if kind == "float":
        low = draw(_floats(-100.0, 100.0))
        high = low + draw(_floats(0.01, 100.0))
        return Param(name, Dim(CONTINUOUS, low, high), bounds=(low, high))
    if kind == "log_float":
        low = 10.0 ** draw(_floats(-6.0, 1.0))
        high = low * 10.0 ** draw(_floats(math.log10(2.0), 6.0))
        return Param(
            name, Dim(CONTINUOUS, math.log(low), math.log(high)), log=True, bounds=(low, high)
        )
    if kind in ("int", "log_int"):
        low = draw(st.integers(1, 100) if kind == "log_int" else st.integers(-100, 100))
        high = low + n - 1
        dim = Dim(LOG_DISCRETE if kind == "log_int" else DISCRETE, float(low), float(high), 1.0)
        return Param(name, dim, log=kind == "log_int", is_int=True, bounds=(low, high))
    if kind == "step_float":
        step = draw(st.sampled_from(STEPS))
        low = draw(st.integers(-100, 100)) * step
        high = low + (n - 1) * step
        return Param(name, Dim(DISCRETE, low, high, step), bounds=(low, high))
    if kind == "step_int":
        step = draw(st.sampled_from(INT_STEPS))
        low = draw(st.integers(-100, 100))
        high = low + (n - 1) * step
        dim = Dim(DISCRETE, float(low), float(high), float(step))
        return Param(name, dim, is_int=True, bounds=(low, high))
    n_choices = draw(st.integers(1, max_choices))
    choices = draw(
        st.lists(
            st.sampled_from(CHOICES),
            min_size=n_choices,
            max_size=n_choices,
            unique_by=lambda c: (type(c), c),
        )
    )
    return Param(name, Dim(CATEGORICAL, n_choices=n_choices), choices=tuple(choices))


def search_spaces(
    min_dims: int = 1,
    max_dims: int = 4,
    kinds: str | Sequence[str] = KINDS,
    *,
    max_points: int = 16,
    max_choices: int = 5,
) -> SearchStrategy[SearchSpace]:
    """Return a strategy for :class:`~fusion.space.SearchSpace` objects of mixed parameters.

    Each space has between ``min_dims`` and ``max_dims`` parameters, named ``p0``, ``p1``, ...,
    each of a kind drawn from ``kinds`` (a name or a selection of :data:`KINDS`):

    - ``float``: ``[low, high]`` with ``low`` in ``[-100, 100]`` and a width in ``[0.01, 100]``;
      internal coordinate the value, Lebesgue measure.
    - ``log_float``: ``low`` in ``[1e-6, 10]``, ``high / low`` in ``[2, 1e6]``; internal coordinate
      ``ln(value)``.
    - ``int``: ``low`` in ``[-100, 100]``, 1 to ``max_points`` consecutive integers.
    - ``log_int``: ``low`` in ``[1, 100]``, 1 to ``max_points`` consecutive integers, kernels in
      ``ln`` units.
    - ``step_float``: the grid ``low + k * step``, ``step`` from :data:`STEPS`, ``low`` a multiple
      of it, 1 to ``max_points`` points.
    - ``step_int``: the same with an integer ``step`` from :data:`INT_STEPS`.
    - ``categorical``: 1 to ``max_choices`` distinct choices from :data:`CHOICES`.

    Parameters are built as :class:`~fusion.space.Param` objects with the geometry and user bounds
    that :meth:`SearchSpace.from_optuna` gives the matching Optuna distributions. A grid or a
    choice list of one point is allowed (Optuna allows ``low == high``).
    """
    _size_range("min_dims", min_dims, "max_dims", max_dims, minimum=1)
    kinds = _kinds_arg("kinds", kinds, KINDS)
    max_points = _int_arg("max_points", max_points, 1, _MAX_POINTS)
    max_choices = _int_arg("max_choices", max_choices, 1, _MAX_CHOICES)

    @st.composite
    def build(draw) -> SearchSpace:
        d = draw(st.integers(min_dims, max_dims))
        chosen = [draw(st.sampled_from(kinds)) for _ in range(d)]
        return SearchSpace(
            tuple(
                draw(_param(f"p{j}", kind, max_points, max_choices))
                for j, kind in enumerate(chosen)
            )
        )

    return build()


# ---------------------------------------------------------------------------------------------
# Points and configurations
# ---------------------------------------------------------------------------------------------


_SANE_BOX = 1e3  # an unbounded continuous coordinate draws inside [-1e3, 1e3]


def _coordinate(dim: Dim) -> SearchStrategy[float]:
    """One internal coordinate inside ``dim``: a float in the bounds, a grid point or an index."""
    if dim.kind == CONTINUOUS:
        return _floats(max(dim.low, -_SANE_BOX), min(dim.high, _SANE_BOX))
    grid = dim.grid()
    return st.integers(0, grid.size - 1).map(lambda k: float(grid[k]))


def points(space, n: int = 16) -> SearchStrategy[np.ndarray]:
    """Return a strategy for float arrays of shape ``(n, d)``: ``n`` points of ``space``.

    Each row holds internal coordinates (see :mod:`fusion.space`) inside the space: a continuous
    coordinate anywhere in ``[low, high]``, bounds included (an infinite bound is replaced by
    ``-+1e3``); a discrete one on its grid; a categorical one an index ``0 .. n_choices - 1``.
    ``space`` may also be a tuple of :class:`~fusion.space.Dim` (a density's ``dims``). A fixed
    ``n`` keeps one array shape, so jitted ``log_prob`` compiles once per space.
    """
    n = _int_arg("n", n, 1)
    spaces = _space_arg(space, need_params=False)

    @st.composite
    def build(draw) -> np.ndarray:
        dims = _dims_of(draw(spaces))
        row = st.tuples(*(_coordinate(d) for d in dims))
        rows = draw(st.lists(row, min_size=n, max_size=n))
        return np.array(rows, dtype=float).reshape(n, len(dims))

    return build()


def _user_value(param: Param) -> SearchStrategy[Any]:
    """A user value of ``param`` that ``param.to_internal`` accepts."""
    dim = param.dim
    if dim.kind == CATEGORICAL:
        return st.sampled_from(param.choices)
    low, high = param.user_bounds
    if dim.kind == CONTINUOUS:
        if param.log:  # spread over ln units, and clipped: exp(ln(low)) can be 1 ulp off low
            return _floats(dim.low, dim.high).map(lambda u: min(max(math.exp(u), low), high))
        return _floats(low, high)
    n = dim.n_points

    def grid_value(k: int) -> Any:
        v = min(max(dim.low + k * dim.step, dim.low), dim.high)
        return int(round(v)) if param.is_int else v

    return st.integers(0, n - 1).map(grid_value)


def suggestion_sets(
    space, min_size: int = 1, max_size: int = 8
) -> SearchStrategy[list[dict[str, Any]]]:
    """Return a strategy for lists of ``min_size`` to ``max_size`` configurations of ``space``.

    Each configuration is a dict from parameter name to a user value that
    :meth:`SearchSpace.to_internal` accepts: a float in the bounds (a log float drawn uniformly in
    ``ln`` units), an ``int`` or a grid value ``low + k * step``, or one of the choices. This is
    the shape of a language model's suggestions after parsing. ``space`` must be a
    :class:`~fusion.space.SearchSpace` (or a strategy of them): choices and names live there.
    """
    _size_range("min_size", min_size, "max_size", max_size, minimum=1)
    spaces = _space_arg(space, need_params=True)

    @st.composite
    def build(draw) -> list[dict[str, Any]]:
        sp = _params_of(draw(spaces))
        config = st.fixed_dictionaries({p.name: _user_value(p) for p in sp.params})
        return draw(st.lists(config, min_size=min_size, max_size=max_size))

    return build()


# ---------------------------------------------------------------------------------------------
# Densities
# ---------------------------------------------------------------------------------------------


def _pad(mix: ProductKernelMixture, size: int) -> ProductKernelMixture:
    """``mix`` with zero-weight kernels appended up to ``size`` kernels (``-inf`` log-weights, as
    :func:`fusion.density.mixture` pads): the same density, a fixed array shape."""
    extra = size - mix.n_kernels
    if extra <= 0:
        return mix
    lw, mu, sigma = (np.asarray(a) for a in (mix.log_weights, mix.mu, mix.sigma))
    return dataclasses.replace(
        mix,
        log_weights=np.concatenate([lw, np.full(extra, -np.inf)]),
        mu=np.concatenate([mu, np.zeros((extra, mu.shape[1]))]),
        sigma=np.concatenate([sigma, np.ones((extra, sigma.shape[1]))]),
        cat_log_probs=tuple(
            np.concatenate([np.asarray(t), np.zeros((extra, np.shape(t)[1]))])
            for t in mix.cat_log_probs
        ),
    )


def mixtures(
    space,
    min_kernels: int = 1,
    max_kernels: int = 4,
    *,
    pad_to: int | None = None,
    min_sigma: float = 0.02,
    max_sigma: float = 1.0,
    zero_probs: bool = False,
) -> SearchStrategy[ProductKernelMixture]:
    """Return a strategy for :class:`~fusion.density.ProductKernelMixture` densities on ``space``.

    ``p(x) = sum_k w_k prod_j k_kj(x_j)`` with ``min_kernels`` to ``max_kernels`` kernels, built by
    :func:`fusion.density.mixture`:

    - weights drawn in ``[0.01, 1]`` and normalized to sum to one;
    - on each numeric coordinate, a normal kernel truncated to the kernel bounds
      (``Dim.kernel_bounds``, in ``ln`` units on log coordinates), centred inside them, with a
      scale from ``min_sigma`` to ``max_sigma`` times their width, log-uniformly;
    - on each categorical coordinate, a probability table per kernel with entries in
      ``[0.01, 1]`` before normalization; with ``zero_probs=True`` an entry may be exactly 0
      (each row keeps a positive entry), so ``p`` can vanish on some categories.

    The mixture is padded with zero-weight kernels to the power of two at or above ``pad_to``
    (default ``max_kernels``), so every draw of one strategy has one shape. It integrates to one
    over the base measure of ``space`` (a :class:`~fusion.space.SearchSpace` or a tuple of
    :class:`~fusion.space.Dim`, or a strategy of them).
    """
    _size_range("min_kernels", min_kernels, "max_kernels", max_kernels, minimum=1)
    _real_range("min_sigma", min_sigma, "max_sigma", max_sigma, 1e-4, 10.0)
    pad = bucket_size(max_kernels if pad_to is None else _int_arg("pad_to", pad_to, max_kernels))
    spaces = _space_arg(space, need_params=False)
    log_lo, log_hi = math.log10(min_sigma), math.log10(max_sigma)

    @st.composite
    def build(draw) -> ProductKernelMixture:
        dims = _dims_of(draw(spaces))
        k = draw(st.integers(min_kernels, max_kernels))
        bounds = [d.kernel_bounds for d in dims if d.is_numeric]
        weights = [draw(_floats(0.01, 1.0)) for _ in range(k)]
        mu = [[draw(_floats(lo, hi)) for lo, hi in bounds] for _ in range(k)]
        sigma = [
            [(hi - lo) * 10.0 ** draw(_floats(log_lo, log_hi)) for lo, hi in bounds]
            for _ in range(k)
        ]
        entry = _floats(0.01, 1.0)
        if zero_probs:
            entry = st.one_of(st.just(0.0), entry)
        tables = []
        for d in dims:
            if d.kind == CATEGORICAL:
                rows = [[draw(entry) for _ in range(d.n_choices)] for _ in range(k)]
                for row in rows:
                    if not any(row):
                        row[draw(st.integers(0, d.n_choices - 1))] = 1.0
                tables.append(rows)
        n_num = len(bounds)
        return mixture(
            dims,
            weights,
            np.reshape(mu, (k, n_num)),
            np.reshape(sigma, (k, n_num)),
            tables,
            min_kernels=pad,
        )

    return build()


def suggestion_densities(
    space,
    min_size: int = 1,
    max_size: int = 8,
    *,
    min_floor: float = 0.01,
    max_floor: float = 0.5,
    weighted: bool = False,
    pad_to: int | None = None,
) -> SearchStrategy[LinearPool]:
    """Return a strategy for suggestion densities ``p_llm`` on ``space``.

    Each is :func:`fusion.kde.suggestion_density` of a list drawn by :func:`suggestion_sets`
    (``min_size`` to ``max_size`` configurations), ``(1 - floor) * KDE + floor * Uniform`` with a
    ``floor`` in ``[min_floor, max_floor]`` (``min_floor = max_floor = 0`` gives the bare KDE, which
    is still positive everywhere: truncated normal kernels and smoothed categorical tables). With
    ``weighted=True`` every suggestion also gets a weight in ``[0.1, 1]``. The KDE is padded with
    zero-weight kernels to the power of two at or above ``pad_to`` (default ``max_size``), so every
    draw has one shape. ``space`` must be a
    :class:`~fusion.space.SearchSpace` (or a strategy of them).
    """
    _size_range("min_size", min_size, "max_size", max_size, minimum=1)
    _real_range("min_floor", min_floor, "max_floor", max_floor, 0.0, 1.0)
    pad = bucket_size(max_size if pad_to is None else _int_arg("pad_to", pad_to, max_size))
    spaces = _space_arg(space, need_params=True)

    @st.composite
    def build(draw) -> LinearPool:
        sp = _params_of(draw(spaces))
        suggestions = draw(suggestion_sets(sp, min_size, max_size))
        floor = draw(_floats(min_floor, max_floor)) if max_floor > min_floor else min_floor
        weights = None
        if weighted:
            weights = [draw(_floats(0.1, 1.0)) for _ in suggestions]
        p = suggestion_density(sp, suggestions, weights, floor=float(floor))
        kde, uniform = p.components
        return dataclasses.replace(p, components=(_pad(kde, pad), uniform))

    return build()


def pools(
    space,
    kind: str | Sequence[str] = POOL_KINDS,
    *,
    max_suggestions: int = 4,
    max_kernels: int = 4,
    min_alpha: float = 0.0,
    max_alpha: float = 1.0,
    min_floor: float = 0.01,
    max_floor: float = 0.5,
) -> SearchStrategy[LinearPool | LogLinearPool]:
    """Return a strategy for pools of a suggestion density ``p_llm`` and a mixture ``p_opt``.

    ``p_llm`` is drawn by :func:`suggestion_densities` (1 to ``max_suggestions`` suggestions, the
    floor in ``[min_floor, max_floor]``), ``p_opt`` by :func:`mixtures` (1 to ``max_kernels``
    kernels), and ``alpha`` in ``[min_alpha, max_alpha]``. The pool's kind is drawn from ``kind``
    (a name or a selection of :data:`POOL_KINDS`):

    - ``linear``: ``alpha p_llm + (1 - alpha) p_opt`` (:func:`fusion.combine.linear_pool`), a
      normalized :class:`~fusion.combine.LinearPool`;
    - ``geometric``: ``p_llm^alpha p_opt^(1 - alpha) / Z`` (:func:`fusion.combine.geometric`);
    - ``product``: ``p_llm p_opt / Z`` (:func:`fusion.combine.product`; ``alpha`` is unused).

    Log-linear pools come unnormalized (:class:`~fusion.combine.LogLinearPool`); ``Z > 0`` always,
    since both factors are positive on the whole space. The components are ``pool.components``,
    ``(p_llm, p_opt)`` in that order.
    """
    kinds = _kinds_arg("kind", kind, POOL_KINDS)
    _real_range("min_alpha", min_alpha, "max_alpha", max_alpha, 0.0, 1.0)
    spaces = _space_arg(space, need_params=True)
    _int_arg("max_suggestions", max_suggestions, 1)
    _int_arg("max_kernels", max_kernels, 1)

    @st.composite
    def build(draw):
        sp = draw(spaces)
        p_llm = draw(
            suggestion_densities(sp, 1, max_suggestions, min_floor=min_floor, max_floor=max_floor)
        )
        p_opt = draw(mixtures(sp, 1, max_kernels))
        chosen = draw(st.sampled_from(kinds))
        alpha = float(draw(_floats(min_alpha, max_alpha)) if max_alpha > min_alpha else min_alpha)
        if chosen == "linear":
            return linear_pool((p_llm, p_opt), (alpha, 1.0 - alpha))
        if chosen == "geometric":
            return geometric(p_llm, p_opt, alpha)
        return product(p_llm, p_opt)

    return build()
