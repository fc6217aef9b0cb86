"""The language model's side: a density from a handful of suggested configurations.

``p_llm = (1 - floor) * KDE + floor * Uniform``, where the KDE is a
:class:`~fusion.density.ProductKernelMixture` with one kernel per suggestion:

- Numeric coordinates get a normal kernel truncated to the space (so the mass inside is exactly one,
  with no leak at the bounds), centred on the suggestion in kernel units: ``ln`` for log floats and
  log ints, the value otherwise. Discrete coordinates take the kernel's mass on each grid cell.
- The bandwidth of coordinate ``j`` is Scott's rule on the weighted spread, clipped into a fraction
  of the range ``R_j`` of the kernel bounds::

      h_j = clip(s_j * n_eff^(-1 / (d + 4)),  MIN_BANDWIDTH * R_j,  R_j)

  with ``s_j`` the weighted standard deviation of the suggestions, ``n_eff = (sum w)^2 / sum w^2``
  Kish's effective count and ``d`` the number of coordinates. One suggestion, or many copies of one,
  has ``s_j = 0`` and gets the floor ``MIN_BANDWIDTH * R_j``, never zero.
- Categorical coordinates get the smoothed kernel ``(1 - b) [c = c_i] + b / C`` with
  ``b = 1 / (1 + n_eff)``: one suggestion keeps half its mass on its own choice, fifty keep 98%.
- The uniform floor of weight ``floor`` (default 0.1) makes ``p_llm > 0`` everywhere, which the
  convergence results of the product and geometric pools need.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fusion._validate import integer, unit_interval
from fusion.combine import LinearPool, linear_pool
from fusion.density import ProductKernelMixture, Uniform, mixture
from fusion.space import CATEGORICAL, CONTINUOUS, LOG_DISCRETE, SearchSpace

MIN_BANDWIDTH = 0.05
DEFAULT_FLOOR = 0.1


def _kernel_units(space: SearchSpace, x: np.ndarray) -> np.ndarray:
    """Numeric internal coordinates in kernel units (``ln`` for a log int), shape ``(n, n_num)``."""
    cols = [
        np.log(x[:, j]) if dim.kind == LOG_DISCRETE else x[:, j]
        for j, dim in enumerate(space.dims)
        if dim.is_numeric
    ]
    return np.stack(cols, axis=1) if cols else np.zeros((x.shape[0], 0))


def _validated_weights(weights, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    w = np.asarray(weights, dtype=float).reshape(-1)
    if w.shape[0] != n:
        raise ValueError(f"weights has {w.shape[0]} entries for {n} suggestions")
    if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise ValueError(f"weights must be finite, >= 0 and not all zero, got {w.tolist()}")
    return w


def bandwidths(
    space: SearchSpace, x: np.ndarray, weights: np.ndarray, n_coordinates: int | None = None
) -> np.ndarray:
    """The per-coordinate bandwidth rule of this module, in kernel units, shape ``(n_num,)``.

    ``n_coordinates`` is the ``d`` of Scott's factor; it defaults to ``len(space)``. A marginal of a
    larger space passes the larger ``d``, so its bandwidths equal the joint ones.
    """
    d = len(space) if n_coordinates is None else integer("n_coordinates", n_coordinates, len(space))
    p = weights / weights.sum()
    n_eff = 1.0 / np.sum(p**2)
    y = _kernel_units(space, x)
    mean = p @ y
    spread = np.sqrt(np.maximum(p @ (y - mean) ** 2, 0.0))
    ranges = np.array(
        [np.subtract(*dim.kernel_bounds[::-1]) for dim in space.dims if dim.is_numeric]
    )
    h = spread * n_eff ** (-1.0 / (d + 4))
    return np.clip(h, MIN_BANDWIDTH * ranges, ranges)


def kernel_density(
    space: SearchSpace,
    suggestions: Sequence[Mapping[str, Any]],
    weights=None,
    *,
    n_coordinates: int | None = None,
) -> ProductKernelMixture:
    """The truncated-kernel density estimate of ``suggestions`` (no floor).

    Every suggestion is validated against ``space`` first; a bad value raises a ``ValueError`` that
    names the parameter and the value, before any logarithm is taken. A float parameter with
    ``low == high`` has no density (its kernel would have zero width) and is refused by name: leave
    single-value parameters out of the space, as Optuna's relative search spaces do.
    """
    if len(suggestions) == 0:
        raise ValueError("suggestions is empty: a density needs at least one configuration")
    for p in space.params:
        if p.dim.kind == CONTINUOUS and not p.dim.high > p.dim.low:
            raise ValueError(
                f"parameter {p.name!r}: bounds {p.user_bounds} have zero width, so it has no "
                "density; leave single-value parameters out of the space"
            )
    x = space.to_internal_batch(suggestions)
    w = _validated_weights(weights, x.shape[0])
    h = bandwidths(space, x, w, n_coordinates)
    n_eff = w.sum() ** 2 / np.sum(w**2)
    smoothing = 1.0 / (1.0 + n_eff)
    cat_probs = []
    for j, dim in enumerate(space.dims):
        if dim.kind == CATEGORICAL:
            onehot = np.eye(dim.n_choices)[x[:, j].astype(int)]
            cat_probs.append((1 - smoothing) * onehot + smoothing / dim.n_choices)
    mu = _kernel_units(space, x)
    sigma = np.broadcast_to(h, mu.shape)
    return mixture(space.dims, w, mu, sigma, cat_probs)


def suggestion_density(
    space: SearchSpace,
    suggestions: Sequence[Mapping[str, Any]],
    weights=None,
    *,
    floor: float = DEFAULT_FLOOR,
    n_coordinates: int | None = None,
) -> LinearPool:
    """``p_llm = (1 - floor) * kernel_density(...) + floor * Uniform``, normalized on ``space``."""
    floor = unit_interval("floor", floor)
    kde = kernel_density(space, suggestions, weights, n_coordinates=n_coordinates)
    return linear_pool((kde, Uniform(space.dims)), (1.0 - floor, floor))
