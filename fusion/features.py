"""Features ``f: X -> R^m`` for maximum entropy, and their expectations ``E_p[f]`` under a density.

A built-in feature is a windowed monomial in the internal coordinates of :mod:`fusion.space`,

    f(x) = prod_j x_j^(p_j) 1{a_j <= x_j <= b_j},

over one or two coordinates ``j``. Its special cases are the constructors:

- :func:`moments`: ``x_j, x_j^2, ..., x_j^degree``. On a log float the coordinate is ``ln(value)``,
  so these are its log-moments.
- :func:`interval`: ``1{a <= x_j <= b}``, with ``a, b`` in the parameter's own units.
- :func:`category`: ``1{x_j = index of a choice}``.
- :func:`cross`: ``x_i^p x_j^q``.

:func:`custom` wraps any jittable ``fn: (n, d) -> (n, k)``. Features add (``moments(...) +
cross(...)``); they are hashable, static pytrees, so a function jitted on them compiles once per
set of features.

:func:`expectation` gives ``E_p[f]`` with its error (a :class:`Targets`), by the first method that
applies:

- ``exact``: ``p`` is a :class:`~fusion.density.Uniform`, a
  :class:`~fusion.density.ProductKernelMixture` or a linear pool of them, and every feature is
  built in. A product kernel factorizes, so ``E_p[f] = sum_k w_k prod_j E_kj[x_j^p 1{a<=x_j<=b}]``:
  truncated-normal moments in closed form on continuous coordinates (:func:`truncnorm_moments`),
  sums over the grid on discrete and categorical ones.
- ``quadrature``: the rules of :mod:`fusion.quadrature` (cut at the windows' edges too), at most
  three continuous coordinates; ``E = sum_i w_i p(x_i) f(x_i) / sum_i w_i p(x_i)``, so ``p`` may be
  unnormalized. The error is the difference to the rule with half the nodes.
- ``samples``: the mean of ``f`` over draws of ``p``, with its standard error; an unnormalized
  log-linear pool is self-normalized importance sampling from
  :func:`fusion.normalize.default_proposal`, with the delta-method standard error.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import comb

from fusion import kernels, quadrature
from fusion._validate import integer, is_real, positive, prng_key
from fusion.combine import LinearPool, LogLinearPool
from fusion.density import (
    ProductKernelMixture,
    Uniform,
    _cell_table,
    _geometry,
    _grid_size,
    check_points,
)
from fusion.kernels import require_x64
from fusion.normalize import default_proposal
from fusion.space import CATEGORICAL, CONTINUOUS, Dim, SearchSpace, _choice_index, check_dims

METHODS = ("auto", "exact", "quadrature", "samples")
_MAX_EXACT_CELLS = 2**24  # kernels times grid points that ``exact`` may tabulate
_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


class Window(NamedTuple):
    """``x_col^power 1{low <= x_col <= high}`` on one internal coordinate."""

    col: int
    power: int
    low: float = -math.inf
    high: float = math.inf


class Monomial(NamedTuple):
    """A built-in feature: the product of its windows, one per coordinate, and its name."""

    windows: tuple[Window, ...]
    name: str

    @property
    def names(self) -> tuple[str, ...]:
        return (self.name,)


class Custom(NamedTuple):
    """A user feature block: a jittable ``fn`` mapping ``(n, d)`` points to ``(n, len(names))``."""

    fn: Callable
    names: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Features:
    """An ordered list of feature terms on the space ``dims``; ``features(x)`` is ``(n, m)``."""

    dims: tuple[Dim, ...]
    terms: tuple[Monomial | Custom, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(n for t in self.terms for n in t.names)

    @property
    def size(self) -> int:
        return len(self.names)

    @property
    def built_in(self) -> bool:
        return all(isinstance(t, Monomial) for t in self.terms)

    def __add__(self, other: Features) -> Features:
        if not isinstance(other, Features):
            return NotImplemented
        if other.dims != self.dims:
            raise ValueError(f"features on different spaces: {self.dims} and {other.dims}")
        return Features(self.dims, self.terms + other.terms)

    def __call__(self, x: jax.Array) -> jax.Array:
        return _evaluate(self, check_points(x, self.dims))

    def edges(self) -> dict[int, list[float]]:
        """Where a window makes a feature jump, per continuous coordinate: cuts for quadrature."""
        out: dict[int, list[float]] = {}
        for t in self.terms:
            for w in getattr(t, "windows", ()):
                if self.dims[w.col].kind == CONTINUOUS:
                    out.setdefault(w.col, []).extend(v for v in (w.low, w.high) if math.isfinite(v))
        return out


jax.tree_util.register_dataclass(Features, data_fields=[], meta_fields=["dims", "terms"])


def _window(xj: jax.Array, w: Window) -> jax.Array:
    value = xj**w.power if w.power else jnp.ones_like(xj)
    if math.isfinite(w.low) or math.isfinite(w.high):
        value = jnp.where((xj >= w.low) & (xj <= w.high), value, 0.0)
    return value


@jax.jit
def _evaluate(features: Features, x: jax.Array) -> jax.Array:
    columns = [jnp.zeros((x.shape[0], 0))]
    for t in features.terms:
        if isinstance(t, Monomial):
            value = jnp.ones(x.shape[0])
            for w in t.windows:
                value = value * _window(x[:, w.col], w)
            columns.append(value[:, None])
        else:
            columns.append(jnp.reshape(t.fn(x), (x.shape[0], len(t.names))))
    return jnp.concatenate(columns, axis=1)


# ---------------------------------------------------------------------------------------------
# Constructors
# ---------------------------------------------------------------------------------------------


def _resolve(space, param) -> tuple[tuple[Dim, ...], int, str, object]:
    """``(dims, column, name, Param or None)`` of ``param`` (a name, or an index into dims)."""
    if isinstance(space, SearchSpace):
        if param not in space.names:
            raise ValueError(f"param {param!r} is not in the space; it has {list(space.names)}")
        p = space[param]
        return space.dims, space.names.index(param), param, p
    dims = check_dims(space)
    col = integer("param", param, minimum=0, maximum=len(dims) - 1)
    return dims, col, f"x{col}", None


def _coordinate_name(name: str, param) -> str:
    log_float = param is not None and param.log and param.dim.kind == CONTINUOUS
    return f"ln({name})" if log_float else name


def moments(space, param, degree: int = 2) -> Features:
    """``x, x^2, ..., x^degree`` of the internal coordinate of ``param`` (its log-moments on a log
    float). ``space`` is a :class:`~fusion.space.SearchSpace` (``param`` a name) or a tuple of
    :class:`~fusion.space.Dim` (``param`` an index)."""
    dims, col, name, p = _resolve(space, param)
    degree = integer("degree", degree, minimum=1, maximum=16)
    if dims[col].kind == CATEGORICAL:
        raise ValueError(f"param {name!r} is categorical: use category(), not moments()")
    base = _coordinate_name(name, p)
    return Features(
        dims,
        tuple(
            Monomial((Window(col, k),), base if k == 1 else f"{base}^{k}")
            for k in range(1, degree + 1)
        ),
    )


def _to_coordinate(p, value: float) -> float:
    log_float = p is not None and p.log and p.dim.kind == CONTINUOUS
    return math.log(value) if log_float and value > 0 else (-math.inf if log_float else value)


def interval(space, param, low, high) -> Features:
    """``1{low <= value <= high}``, with the bounds in the parameter's own units (not ``ln`` units
    for a log float). On a discrete coordinate it counts the grid points in ``[low, high]``."""
    dims, col, name, p = _resolve(space, param)
    dim = dims[col]
    if dim.kind == CATEGORICAL:
        raise ValueError(f"param {name!r} is categorical: use category(), not interval()")
    for label, v in (("low", low), ("high", high)):
        if not is_real(v) or math.isnan(float(v)):
            raise ValueError(f"interval {label} must be a number, got {v!r}")
    if not float(low) <= float(high):
        raise ValueError(f"interval needs low <= high, got low={low!r}, high={high!r}")
    a, b = _to_coordinate(p, float(low)), _to_coordinate(p, float(high))
    if dim.kind != CONTINUOUS:  # widen to the cells, so a grid value 1 ulp off is still counted
        n = dim.n_points
        k_lo = max(0, math.ceil(float(np.clip((a - dim.low) / dim.step, -1, n)) - 1e-9))
        k_hi = min(n - 1, math.floor(float(np.clip((b - dim.low) / dim.step, -1, n)) + 1e-9))
        a, b = dim.low + (k_lo - 0.5) * dim.step, dim.low + (k_hi + 0.5) * dim.step
    return Features(dims, (Monomial((Window(col, 0, a, b),), f"1{{{low} <= {name} <= {high}}}"),))


def category(space, param, choice) -> Features:
    """``1{param = choice}`` on a categorical parameter (``choice`` an index with plain dims)."""
    dims, col, name, p = _resolve(space, param)
    if dims[col].kind != CATEGORICAL:
        raise ValueError(f"param {name!r} is not categorical: use interval() for a value window")
    if p is not None:
        k = _choice_index(name, p.choices, choice)
    else:
        k = integer("choice", choice, minimum=0, maximum=dims[col].n_choices - 1)
    return Features(
        dims, (Monomial((Window(col, 0, k - 0.5, k + 0.5),), f"1{{{name} = {choice!r}}}"),)
    )


def categories(space, param) -> Features:
    """``1{param = c}`` for every choice ``c``: the whole distribution of a categorical."""
    dims, col, name, p = _resolve(space, param)
    if dims[col].kind != CATEGORICAL:
        raise ValueError(f"param {name!r} is not categorical")
    choices = p.choices if p is not None else range(dims[col].n_choices)
    out = [category(space, param, c) for c in choices]
    return Features(dims, tuple(t for f in out for t in f.terms))


def cross(space, a, b, powers: tuple[int, int] = (1, 1)) -> Features:
    """``x_a^p x_b^q``: a cross moment of two numeric parameters."""
    dims, i, name_a, pa = _resolve(space, a)
    _, j, name_b, pb = _resolve(space, b)
    if i == j:
        raise ValueError(f"cross needs two different params, got {a!r} twice: use moments()")
    if CATEGORICAL in (dims[i].kind, dims[j].kind):
        raise ValueError(f"cross needs numeric params, got {a!r} and {b!r}")
    if not (isinstance(powers, tuple) and len(powers) == 2):
        raise ValueError(f"powers must be a pair of ints >= 1, got {powers!r}")
    p, q = (integer("powers", k, minimum=1, maximum=16) for k in powers)
    names = [_coordinate_name(name_a, pa), _coordinate_name(name_b, pb)]
    label = "*".join(n if k == 1 else f"{n}^{k}" for n, k in zip(names, (p, q), strict=True))
    windows = tuple(sorted((Window(i, p), Window(j, q))))
    return Features(dims, (Monomial(windows, label),))


def custom(space, fn: Callable, names: Sequence[str]) -> Features:
    """A user feature block: ``fn`` maps ``(n, d)`` internal coordinates to ``(n, len(names))``.

    ``fn`` must be jittable and hashable; a new function object is a new feature (and a new
    compilation), so define it once. Its expectations are taken by quadrature or sampling.
    """
    dims = space.dims if isinstance(space, SearchSpace) else check_dims(space)
    if not callable(fn):
        raise ValueError(f"fn must be a callable, got {fn!r}")
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"names must be a sequence of strings, one per output, got {names!r}")
    names = tuple(names)
    if not names:
        raise ValueError("names must name at least one output of fn")
    out = jax.eval_shape(fn, jax.ShapeDtypeStruct((2, len(dims)), jnp.float64))
    if getattr(out, "shape", None) != (2, len(names)):
        raise ValueError(
            f"fn must map (n, {len(dims)}) points to (n, {len(names)}), got shape "
            f"{getattr(out, 'shape', out)} for n = 2"
        )
    return Features(dims, (Custom(fn, names),))


# ---------------------------------------------------------------------------------------------
# Expectations
# ---------------------------------------------------------------------------------------------


class Targets(NamedTuple):
    """Expectations ``values`` of ``features`` (shape ``(m,)``), their ``std_errors`` and the
    method that computed them: a moment-constraint set for :func:`fusion.maxent.maxent`."""

    features: Features
    values: np.ndarray
    std_errors: np.ndarray
    method: str


def truncnorm_moments(mu, sigma, low, high, a, b, max_power: int) -> np.ndarray:
    """``E[X^r 1{a <= X <= b}]`` for ``r = 0 .. max_power``, ``X ~ N(mu, sigma^2)`` truncated to
    ``[low, high]``; shape ``(max_power + 1,) + broadcast shape``.

    It is the share of the mass on the piece ``[max(a, low), min(b, high)]`` times the moments
    there. On a piece at least ``sigma`` wide, with ``alpha, beta`` its standardized ends and ``P``
    the standard normal mass between them, the moments ``M_r`` of ``Z = (X - mu)/sigma`` follow
    ``M_0 = 1``, ``M_1 = (phi(alpha) - phi(beta))/P`` and
    ``M_r = (r-1) M_(r-2) + (alpha^(r-1) phi(alpha) - beta^(r-1) phi(beta))/P``, with the ratios
    ``phi/P`` in log space so they stay finite deep in a tail; then
    ``E[X^r] = sum_i C(r, i) mu^(r-i) sigma^i M_i``. That recursion cancels on a piece narrower
    than ``sigma`` (``M_2`` is ``1 - (almost 1)``) and on one beyond 4 ``sigma`` in a tail (the
    ``M_r`` grow like ``alpha^r``), so there the moments are a 32-node Gauss-Legendre sum with
    weights ``phi`` normalized in log space, over the part of the piece that holds all but
    ``exp(-40)`` of its mass.
    """
    max_power = integer("max_power", max_power, minimum=0)
    mu, sigma, low, high, a, b = np.broadcast_arrays(
        *(np.asarray(v, dtype=float) for v in (mu, sigma, low, high, a, b))
    )
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all() and (sigma > 0).all()):
        raise ValueError(f"mu must be finite and sigma finite and > 0, got {mu!r} and {sigma!r}")
    if np.isnan(low).any() or np.isnan(high).any() or not (low < high).all():
        raise ValueError(f"the truncation needs low < high, got low={low!r}, high={high!r}")
    lo, hi = np.maximum(a, low), np.minimum(b, high)
    alpha, beta = (lo - mu) / sigma, (hi - mu) / sigma
    empty = ~(alpha < beta)
    alpha, beta = np.where(empty, 0.0, alpha), np.where(empty, 1.0, beta)
    log_piece = np.asarray(kernels.log_gauss_mass(alpha, beta))
    log_total = np.asarray(kernels.log_gauss_mass((low - mu) / sigma, (high - mu) / sigma))
    share = np.exp(np.where(empty, -np.inf, log_piece - log_total))

    # Gauss-Legendre on a narrow piece, and on a piece in a far tail: there the mass sits within
    # 40/|e| of the end e nearest the mode (beyond, it is below exp(-40) of the piece).
    in_tail = (alpha >= 4.0) | (beta <= -4.0)
    use_rule = (beta - alpha < 1.0) | in_tail

    # The recursion runs on the other pieces only (the rest get the harmless piece [0, 1]).
    ra, rb = np.where(use_rule, 0.0, alpha), np.where(use_rule, 1.0, beta)
    log_rpiece = np.where(use_rule, np.asarray(kernels.log_gauss_mass(0.0, 1.0)), log_piece)

    def tail(z):  # r -> z^(r-1) phi(z) / P, 0 at an infinite end
        finite = np.isfinite(z)
        zf = np.where(finite, z, 0.0)
        ratio = np.where(finite, np.exp(-0.5 * zf * zf - _LOG_SQRT_2PI - log_rpiece), 0.0)
        return lambda r: ratio * zf ** (r - 1) if r > 1 else ratio

    ta, tb = tail(ra), tail(rb)
    m = [np.ones_like(alpha), ta(1) - tb(1)]
    for r in range(2, max_power + 1):
        m.append((r - 1) * m[r - 2] + ta(r) - tb(r))
    wide = [
        sum(comb(r, i) * mu ** (r - i) * sigma**i * m[i] for i in range(r + 1))
        for r in range(max_power + 1)
    ]

    near = np.where(alpha >= 4.0, alpha, np.where(in_tail, beta, 1.0))
    reach = np.where(in_tail, np.minimum(beta - alpha, 40.0 / np.abs(near)), beta - alpha)
    za = np.where(in_tail & (beta <= -4.0), beta - reach, alpha)
    t, w = quadrature.legendre_nodes(32)
    z = za[..., None] + reach[..., None] * (t + 1) / 2
    log_w = np.log(w) - 0.5 * z * z
    w_norm = np.exp(log_w - np.max(log_w, axis=-1, keepdims=True))
    w_norm /= w_norm.sum(axis=-1, keepdims=True)
    x = mu[..., None] + sigma[..., None] * z
    raw = [
        np.where(use_rule, np.sum(w_norm * x**r, axis=-1), wide[r]) for r in range(max_power + 1)
    ]
    return share * np.stack(raw)


def _uniform_window_means(dims: tuple[Dim, ...], w: Window) -> np.ndarray:
    """``E[x^p 1{a <= x <= b}]`` under the uniform density of one coordinate, shape ``(1,)``."""
    d = dims[w.col]
    if d.kind == CONTINUOUS:
        lo, hi = max(w.low, d.low), min(w.high, d.high)
        if not lo < hi:
            return np.zeros(1)
        # Gauss-Legendre is exact for x^p (p <= 31) and, unlike (hi^(p+1) - lo^(p+1)) / (p+1),
        # does not cancel on a narrow range far from 0.
        t, weights = quadrature.legendre_nodes(16)
        x = (lo + hi) / 2 + (hi - lo) / 2 * t
        return np.array([(hi - lo) / 2 * (weights @ x**w.power) / (d.high - d.low)])
    v = d.grid()
    return np.array([np.mean(_grid_window(v, w))])


def _grid_window(v: np.ndarray, w: Window) -> np.ndarray:
    return np.where((v >= w.low) & (v <= w.high), v**w.power, 0.0)


def _mixture_window_means(density: ProductKernelMixture, w: Window, cells) -> np.ndarray:
    """``E_k[x^p 1{a <= x <= b}]`` under each kernel ``k`` of a mixture, shape ``(K,)``."""
    g = _geometry(density.dims, density.tabulated)
    d = density.dims[w.col]
    if w.col in g.table_cols:
        t = g.table_cols.index(w.col)
        v = g.table_low[t] + g.table_step[t] * np.arange(density.cat_log_probs[t].shape[1])
        return np.exp(np.asarray(density.cat_log_probs[t])) @ _grid_window(v, w)
    i = int(np.flatnonzero(g.numeric_cols == w.col)[0])
    mu, sigma = np.asarray(density.mu)[:, i], np.asarray(density.sigma)[:, i]
    if d.kind == CONTINUOUS:
        return truncnorm_moments(mu, sigma, d.low, d.high, w.low, w.high, w.power)[w.power]
    r = int(np.flatnonzero(g.discrete == i)[0])  # its block in the cell table
    n_grid = cells.shape[0] // g.discrete.size
    v = d.grid()
    block = np.exp(cells[r * n_grid : r * n_grid + v.size])  # (n_points, K)
    return _grid_window(v, w) @ block


def _exact(density, features: Features) -> np.ndarray | None:
    """``E_p[f]`` in closed form, or ``None`` where it does not apply (see the module docstring)."""
    if not features.built_in:
        return None
    if isinstance(density, LinearPool):
        parts = [_exact(c, features) for c in density.components]
        if any(p is None for p in parts):
            return None
        weights = np.exp(np.asarray(density.log_weights))
        return sum(w * p for w, p in zip(weights, parts, strict=True) if w > 0)
    if isinstance(density, Uniform):
        means = lambda w: _uniform_window_means(density.dims, w)  # noqa: E731
        weights = np.ones(1)
    elif isinstance(density, ProductKernelMixture):
        if density.n_kernels * _grid_size(density.dims, density.tabulated) > _MAX_EXACT_CELLS:
            return None
        has_cells = _grid_size(density.dims, density.tabulated) > 0
        cells = np.asarray(_cell_table(density)) if has_cells else None
        means = lambda w: _mixture_window_means(density, w, cells)  # noqa: E731
        log_w = np.asarray(density.log_weights)
        weights = np.exp(log_w - np.logaddexp.reduce(log_w))
    else:
        return None
    values = []
    for t in features.terms:
        per_kernel = np.ones_like(weights)
        for w in t.windows:
            per_kernel = per_kernel * means(w)
        values.append(float(weights @ per_kernel))
    return np.array(values)


def _self_normalized(log_w: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``sum_i w_i f_i / sum_i w_i`` from log-weights, and its delta-method standard error."""
    w = np.exp(log_w - np.max(log_w))
    w = w / w.sum()
    mean = w @ f
    return mean, np.sqrt((w**2) @ (f - mean) ** 2)


def _quadrature(density, features: Features, n_nodes: int, max_points: int, rtol: float):
    """Tensor rules of growing size until the values agree with the half-node rule to ``rtol``
    (relative to ``1 + |E|``); ``None`` if no rule fits in ``max_points``."""
    if sum(d.kind == CONTINUOUS for d in density.dims) > 3:
        return None
    result = None
    for budget in (*(b for b in (2**14 * 4**i for i in range(8)) if b < max_points), max_points):
        parts = quadrature.pieces(density, n_nodes, budget, features.edges())
        if parts is None:
            continue
        estimates = []
        for n in (n_nodes // 2, n_nodes):
            x, log_w = quadrature.rule(density.dims, parts, n)
            log_terms = quadrature.evaluate(density.unnormalized_log_prob, x) + log_w
            if not np.isfinite(np.max(log_terms)):
                raise ValueError("the density is zero on every quadrature point")
            f = quadrature.evaluate(features, x)
            estimates.append(_self_normalized(log_terms, f)[0])
        error = np.abs(estimates[1] - estimates[0])
        result = (estimates[1], error)
        if np.all(error <= rtol * (1 + np.abs(estimates[1]))):
            break
    return result


def _samples(density, features: Features, key, n_samples: int):
    if key is None:
        raise ValueError(
            f"{type(density).__name__} needs sampling here: pass key=, a jax.random key"
        )
    if hasattr(density, "sample") and hasattr(density, "log_prob"):
        f = np.asarray(quadrature.evaluate(features, np.asarray(density.sample(key, n_samples))))
        return f.mean(axis=0), f.std(axis=0, ddof=1) / math.sqrt(n_samples)
    if not isinstance(density, LogLinearPool):
        raise ValueError(f"cannot sample a {type(density).__name__}: it has no sample()")
    q = default_proposal(density)
    x = np.asarray(q.sample(key, n_samples))
    log_w = quadrature.evaluate(density.unnormalized_log_prob, x) - quadrature.evaluate(
        q.log_prob, x
    )
    if not np.isfinite(np.max(log_w)):
        raise ValueError("every importance weight is zero: the pool has no mass on the draws")
    return _self_normalized(log_w, np.asarray(quadrature.evaluate(features, x)))


def expectation(
    density,
    features: Features,
    method: str = "auto",
    *,
    key: jax.Array | None = None,
    n_nodes: int = 16,
    max_points: int = 2**20,
    n_samples: int = 2**16,
    rtol: float = 1e-12,
) -> Targets:
    """``E_p[f]`` for a (possibly unnormalized) density ``p``, with its error: see the module
    docstring for the methods and the ``auto`` order (exact, then quadrature, then samples)."""
    require_x64("fusion.features.expectation")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not isinstance(features, Features):
        raise ValueError(f"features must be a Features, got {features!r}")
    if not hasattr(density, "dims") or not hasattr(density, "unnormalized_log_prob"):
        raise ValueError(f"density must be a fusion density, got {density!r}")
    if density.dims != features.dims:
        raise ValueError(f"density lives on {density.dims}, the features on {features.dims}")
    n_nodes = integer("n_nodes", n_nodes, minimum=2)
    n_samples = integer("n_samples", n_samples, minimum=2)
    max_points = integer("max_points", max_points, minimum=1)
    rtol = positive("rtol", rtol)
    if key is not None:
        key = prng_key("key", key)
    zeros = np.zeros(features.size)
    if method in ("auto", "exact"):
        values = _exact(density, features)
        if values is not None:
            return Targets(features, values, zeros, "exact")
        if method == "exact":
            raise ValueError(
                "method='exact' needs built-in features and a Uniform, ProductKernelMixture or "
                f"linear pool of them, got {type(density).__name__}"
            )
    if method in ("auto", "quadrature"):
        found = _quadrature(density, features, n_nodes, max_points, rtol)
        if found is not None:
            return Targets(features, *found, "quadrature")
        if method == "quadrature":
            raise ValueError(
                "method='quadrature' needs a bounded space with at most 3 continuous coordinates "
                f"and a grid within max_points={max_points}"
            )
    return Targets(features, *_samples(density, features, key, n_samples), "samples")
