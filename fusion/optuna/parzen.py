"""Read Optuna TPE's Parzen estimator into a :class:`~fusion.density.ProductKernelMixture`.

Optuna's ``_ParzenEstimator`` holds ``_mixture_distribution``: kernel weights ``w`` of shape ``(K,)``
and one batched distribution per parameter, in search-space order. Its ``log_pdf`` is

    log p(x) = log sum_k w_k prod_j k_kj(x_j),

where ``k_kj`` is a normal ``N(mu_kj, sigma_kj^2)`` truncated to ``[adapted_low, adapted_high]``
(a density per unit of ``x``, or of ``ln x`` on a log float), the mass of that truncated normal on
the cell ``[x - step/2, x + step/2]`` (``[ln(x - 1/2), ln(x + 1/2)]`` on a log int), or a row of
categorical probabilities. That is exactly :class:`~fusion.density.ProductKernelMixture` with
respect to the base measure of :mod:`fusion.space`, so the conversion copies arrays and checks
bounds; no density is re-derived.

The one difference is the coordinate of a log float: Optuna's ``log_pdf`` takes the raw value (an
"internal repr", as ``distribution.to_internal_repr`` returns) and takes ``ln`` itself, while fusion's
internal coordinate is already ``ln(value)``. :func:`from_optuna_reprs` and :func:`to_optuna_reprs`
convert between the two; every other kind (int, stepped, log int, categorical index) is unchanged.

This reads private Optuna internals whose layout changes between releases, so only the versions in
:data:`SUPPORTED_OPTUNA` are accepted (checked when :mod:`fusion.optuna` is imported).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import optuna

from fusion.density import ProductKernelMixture, mixture
from fusion.space import CATEGORICAL, CONTINUOUS, DISCRETE, LOG_DISCRETE, Dim, SearchSpace

SUPPORTED_OPTUNA = ">=5.0,<5.2"
"""The Optuna versions whose private ``_ParzenEstimator`` layout this module understands."""


def is_supported_optuna(version: str) -> bool:
    """Whether ``version`` satisfies :data:`SUPPORTED_OPTUNA` (pre-releases included)."""
    try:
        from packaging.specifiers import SpecifierSet
        from packaging.version import InvalidVersion
    except ImportError:  # pragma: no cover - packaging ships with every modern pip/setuptools
        return _fallback_contains(SUPPORTED_OPTUNA, version)
    try:
        return SpecifierSet(SUPPORTED_OPTUNA).contains(version, prereleases=True)
    except InvalidVersion:
        return False


def _fallback_contains(spec: str, version: str) -> bool:
    """A tiny ``>=``/``<`` check on numeric release tuples, for when ``packaging`` is missing."""

    def release(v: str) -> tuple[int, ...] | None:
        m = re.match(r"\s*(\d+(?:\.\d+)*)", v)
        return tuple(int(p) for p in m.group(1).split(".")) if m else None

    have = release(version)
    if have is None:
        return False
    for clause in spec.split(","):
        op, bound = re.match(r"\s*(>=|<)\s*(.+)", clause).groups()
        want = release(bound)
        width = max(len(have), len(want))
        a, b = have + (0,) * (width - len(have)), want + (0,) * (width - len(want))
        if (op == ">=" and a < b) or (op == "<" and a >= b):
            return False
    return True


def check_optuna_version() -> None:
    """Raise ``RuntimeError`` unless the installed Optuna is in :data:`SUPPORTED_OPTUNA`."""
    version = str(getattr(optuna, "__version__", "unknown"))
    if not is_supported_optuna(version):
        raise RuntimeError(
            f"fusion.optuna supports optuna {SUPPORTED_OPTUNA}, but optuna {version} is installed. "
            "It reads TPE's private _ParzenEstimator, whose layout changes between releases; "
            f"install a supported version, e.g. pip install 'optuna{SUPPORTED_OPTUNA}'."
        )


# The batched distribution class Optuna uses for each kind of fusion coordinate (read by name, so
# no private module is imported before the version check has run).
_OPTUNA_CLASS = {
    (CONTINUOUS, False): "_BatchedTruncNormDistributions",
    (CONTINUOUS, True): "_BatchedTruncLogNormDistributions",
    (DISCRETE, False): "_BatchedDiscreteTruncNormDistributions",
    (LOG_DISCRETE, True): "_BatchedDiscreteTruncLogNormDistributions",
    (CATEGORICAL, False): "_BatchedCategoricalDistributions",
}


def from_parzen_estimator(
    estimator: Any, search_space: Mapping[str, Any], *, pad: bool = True, min_kernels: int = 1
) -> tuple[SearchSpace, ProductKernelMixture]:
    """The fusion space and density of an Optuna ``_ParzenEstimator``.

    Args:
      estimator: an ``optuna.samplers._tpe.parzen_estimator._ParzenEstimator``.
      search_space: the dict of Optuna distributions the estimator was built with, in its order.
      pad: pad the kernels to a power-of-two bucket (see :func:`fusion.density.mixture`), so a
        jitted ``log_prob`` recompiles only when the bucket grows.
      min_kernels: the smallest bucket (see :func:`fusion.density.mixture`).

    Returns:
      ``(space, density)`` with ``space = SearchSpace.from_optuna(search_space)`` and ``density``
      such that ``density.log_prob(from_optuna_reprs(space, r)) == estimator.log_pdf(r)``: both are
      densities per unit of the internal coordinate (``ln x`` for a log float) on continuous
      parameters and masses (counting measure) on discrete and categorical ones.

    Raises:
      ValueError: the estimator does not match ``search_space`` (parameter count, kind, bounds,
        step or number of choices), or a float parameter has ``low == high`` (zero-width kernels;
        TPE leaves such parameters out of its search space).
    """
    space = SearchSpace.from_optuna(search_space)
    mix = estimator._mixture_distribution
    weights = np.asarray(mix.weights, dtype=float)
    dists = list(mix.distributions)
    if len(dists) != len(space):
        raise ValueError(
            f"the estimator has {len(dists)} parameters, the search space has {len(space)} "
            f"({list(space.names)})"
        )
    mu, sigma, cat_probs = [], [], []
    for param, d in zip(space.params, dists, strict=True):
        _check_matches(param.name, param.dim, param.log, d, len(weights))
        if param.dim.kind == CATEGORICAL:
            cat_probs.append(np.asarray(d.weights, dtype=float))
        else:
            mu.append(np.asarray(d.mu, dtype=float))
            sigma.append(np.asarray(d.sigma, dtype=float))
    k = len(weights)
    mu_arr = np.stack(mu, axis=1) if mu else np.zeros((k, 0))
    sigma_arr = np.stack(sigma, axis=1) if sigma else np.zeros((k, 0))
    return space, mixture(
        space.dims, weights, mu_arr, sigma_arr, cat_probs, pad=pad, min_kernels=min_kernels
    )


def _check_matches(name: str, dim: Dim, log: bool, d: Any, n_kernels: int) -> None:
    """Raise a ``ValueError`` naming ``name`` unless Optuna's batched ``d`` has the geometry ``dim``."""
    expected = _OPTUNA_CLASS.get((dim.kind, log))
    got = type(d).__name__
    if got != expected:
        raise ValueError(f"parameter {name!r}: the estimator holds {got}, expected {expected}")
    if dim.kind == CATEGORICAL:
        shape = np.shape(d.weights)
        if shape != (n_kernels, dim.n_choices):
            raise ValueError(
                f"parameter {name!r}: the estimator has a {shape} choice table, "
                f"expected ({n_kernels}, {dim.n_choices})"
            )
        return
    if np.shape(d.mu) != (n_kernels,) or np.shape(d.sigma) != (n_kernels,):
        raise ValueError(f"parameter {name!r}: mu/sigma do not hold {n_kernels} kernels")
    ours = (dim.low, dim.high) if dim.kind == CONTINUOUS else (dim.low, dim.high, dim.step)
    theirs = (d.adapted_low, d.adapted_high) if dim.kind == CONTINUOUS else (d.low, d.high, d.step)
    if not all(
        math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12) for a, b in zip(ours, theirs, strict=True)
    ):
        raise ValueError(
            f"parameter {name!r}: the estimator's (low, high[, step]) {tuple(map(float, theirs))} "
            f"disagree with the search space's {ours} (internal units: ln for a log float)"
        )
    if dim.kind == CONTINUOUS and not dim.high > dim.low:
        raise ValueError(f"parameter {name!r}: low == high, so Optuna's kernels have zero width")


def from_optuna_reprs(space: SearchSpace, reprs: Mapping[str, Any]) -> np.ndarray:
    """Fusion's ``(n, d)`` internal coordinates from Optuna internal reprs (what ``log_pdf`` takes).

    ``reprs`` maps each parameter name to an array of ``distribution.to_internal_repr`` values:
    the raw number for numeric parameters, the choice index for categoricals. Log floats become
    ``ln(value)``; everything else is copied.
    """
    missing = [n for n in space.names if n not in reprs]
    if missing:
        raise ValueError(f"reprs is missing parameter(s) {missing}")
    cols = []
    for p in space.params:
        col = np.asarray(reprs[p.name], dtype=float).reshape(-1)
        if p.dim.kind == CONTINUOUS and p.log:
            if np.any(~(col > 0)):
                bad = col[~(col > 0)][0]
                raise ValueError(f"parameter {p.name!r}: value {bad!r} must be > 0 on a log scale")
            col = np.log(col)
        cols.append(col)
    n = len(cols[0]) if cols else 0
    return np.stack(cols, axis=1) if cols else np.zeros((n, 0))


def to_optuna_reprs(space: SearchSpace, x: Any) -> dict[str, np.ndarray]:
    """Optuna internal reprs from fusion's ``(n, d)`` internal coordinates (``exp`` on log floats)."""
    x = np.asarray(x, dtype=float)
    if x.ndim != 2 or x.shape[1] != len(space):
        raise ValueError(f"x must have shape (n, {len(space)}), got {x.shape}")
    return {
        p.name: np.exp(x[:, j]) if p.dim.kind == CONTINUOUS and p.log else x[:, j].copy()
        for j, p in enumerate(space.params)
    }


check_optuna_version()
