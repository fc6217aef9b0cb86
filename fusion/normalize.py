"""Normalizing constants ``Z = integral of p~ d(mu)`` of unnormalized densities, with error estimates.

Every density in :mod:`fusion` is taken with respect to the base measure ``mu`` of
:mod:`fusion.space` (Lebesgue on continuous coordinates, counting on discrete ones), and so is ``Z``.
Everything is computed in log space; the result is a :class:`LogNormalizer`.

Methods (``log_normalizer(density, method=...)``):

- ``exact``: a normalized density (anything with ``log_prob``) has ``Z = 1``. A log-linear pool of
  :class:`~fusion.density.ProductKernelMixture` and :class:`~fusion.density.Uniform` factors, and of
  linear pools of them, is integrated in closed form when every factor has exponent 1 (a product:
  the sums multiply out) or holds a single kernel (any exponent): per coordinate, a product of
  Gaussian kernels raised to powers is a scaled Gaussian,

      prod_i N(x; m_i, s_i^2)^e_i = C N(x; m, 1/tau),  tau = sum_i e_i / s_i^2,
      m = sum_i e_i m_i / s_i^2 / tau,  log C = sum_i e_i log N(m; m_i, s_i^2) + 1/2 log(2 pi / tau),

  whose truncation to the coordinate's interval is a log-CDF difference; discrete coordinates sum
  the products of cell masses over their grid, categorical ones the products of table entries.
  ``std_error`` is 0 (exact up to rounding).
- ``quadrature``: Gauss-Legendre tensor rules on the continuous coordinates, each interval cut at
  the kernels' centres and at 1, 2, 4 and 8 scales around them (where the mass lies), times exact
  sums over discrete and categorical grids. ``std_error`` is ``|log Q_n - log Q_(n/2)|``, the
  difference to the rule with half the nodes per piece (conservative: it bounds the coarser rule,
  and the returned finer rule is typically far better). The grid starts small and grows until
  that difference is below ``rtol``.
- ``qmc``: scrambled Sobol points (``scipy.stats.qmc.Sobol``) uniform on the base measure, in
  ``n_replicates`` independent randomizations; ``std_error`` is the delta-method standard error of
  ``log Z`` over the replicates.
- ``importance``: ``Z = E_q[p~ / q]`` with draws of a normalized ``proposal``; for a log-linear pool
  the default is the linear pool with weights ``e_i / sum(e)``, which dominates the pool by weighted
  AM-GM. ``std_error`` is the delta-method standard error.
- ``mc``: plain Monte Carlo, uniform on the base measure, as a reference.
- ``auto``: ``exact`` where it applies, else ``quadrature`` while at most ``MAX_QUADRATURE_DIMS``
  continuous coordinates and ``max_points`` tensor points suffice, else ``importance`` for a
  log-linear pool (its default proposal follows the pooled mass; on the benchmark's 4-6-D pools it
  beat uniform QMC with 8x fewer points), else ``qmc`` on a bounded space.

A pool whose ``Z`` is zero to machine precision (``log Z = -inf``) raises a ``ValueError`` naming
it; barely overlapping densities give a very negative, finite ``log Z`` from ``exact``.
"""

from __future__ import annotations

import functools
import itertools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import qmc

from fusion import kernels, quadrature
from fusion._validate import integer, positive
from fusion.combine import LinearPool, LogLinearPool, linear_pool
from fusion.density import (
    ProductKernelMixture,
    Uniform,
    _log_base_measure,
    mixture,
)
from fusion.quadrature import evaluate
from fusion.space import CATEGORICAL, CONTINUOUS, LOG_DISCRETE, Dim

METHODS = ("auto", "exact", "quadrature", "qmc", "importance", "mc")
MAX_QUADRATURE_DIMS = 3
_FIRST_BUDGET = 2**14  # quadrature starts with this many points and grows 4x until rtol is met
_MAX_EXACT_TERMS = 2**22  # kernel combinations times grid points that ``exact`` may sum


class LogNormalizer(NamedTuple):
    """``log Z`` and how far to trust it.

    ``std_error`` is the standard error of ``log_z`` (Monte Carlo methods), the difference between
    two rules (quadrature), or 0 (exact). ``n_evaluations`` counts evaluations of the density.
    """

    log_z: float
    std_error: float
    method: str
    n_evaluations: int


class ClosedForm(NamedTuple):
    """A log-linear pool integrated in closed form, as a normalized mixture where one exists.

    ``density`` is the pool divided by ``Z`` as a :class:`ProductKernelMixture` with one component
    per kept kernel combination (``None`` when the pool has discrete coordinates, whose products of
    cell masses are no longer cell masses). ``pruned_mass`` is the exact fraction of ``Z`` carried
    by the combinations left out of ``density`` (see :func:`closed_form`).
    """

    log_z: float
    density: ProductKernelMixture | None
    pruned_mass: float


# ---------------------------------------------------------------------------------------------
# Exact: products of kernel mixtures
# ---------------------------------------------------------------------------------------------


class _Term(NamedTuple):
    """One product ``exp(log_weight) prod_i atom_i^e_i`` of a multiplied-out pool."""

    log_weight: float
    atoms: tuple  # ProductKernelMixture or Uniform
    exponents: tuple[float, ...]


def _expand(density, exponent: float) -> list[tuple[float, object]] | None:
    """``density^exponent`` as a weighted sum of atoms ``[(log_weight, atom)]``, or ``None``.

    A linear pool multiplies out only under exponent 1; under any other exponent a factor must be a
    single atom (a uniform, or a mixture with one kernel).
    """
    if isinstance(density, Uniform):
        return [(0.0, density)]
    if isinstance(density, ProductKernelMixture):
        single = int(np.sum(np.isfinite(np.asarray(density.log_weights)))) == 1
        closed = (exponent == 1.0 or single) and not density.tabulated
        return [(0.0, density)] if closed else None
    if isinstance(density, LinearPool) and exponent == 1.0:
        out = []
        for lw, component in zip(np.asarray(density.log_weights), density.components, strict=True):
            if lw == -np.inf:
                continue
            sub = _expand(component, 1.0)
            if sub is None:
                return None
            out += [(float(lw) + w, atom) for w, atom in sub]
        return out
    return None


def _terms(pool: LogLinearPool) -> list[_Term] | None:
    """The pool multiplied out into products of atoms, or ``None`` if it has no closed form."""
    factors = []
    for density, e in zip(pool.components, pool.exponents, strict=True):
        e = float(e)
        if e == 0.0:
            continue
        expanded = _expand(density, e)
        if expanded is None:
            return None
        factors.append([(e * lw, atom, e) for lw, atom in expanded])
    return [
        _Term(sum(f[0] for f in combo), tuple(f[1] for f in combo), tuple(f[2] for f in combo))
        for combo in itertools.product(*factors)
    ]


def _exact_cost(term: _Term) -> int:
    mixtures = [a for a in term.atoms if isinstance(a, ProductKernelMixture)]
    combos = math.prod(m.n_kernels for m in mixtures) if mixtures else 1
    grid = max((d.n_points for d in term.atoms[0].dims if d.kind != CONTINUOUS), default=1)
    return combos * grid


def _log_uniform_density(dims: tuple[Dim, ...]) -> float:
    return -sum(_log_base_measure(d) for d in dims)


@functools.partial(jax.jit, static_argnums=1)
def _term_combinations(mixtures: tuple, exponents: tuple[float, ...]):
    """Per kernel combination of ``mixtures`` (each raised to its exponent): the log of its
    integral (weights included), and its product kernel on continuous coordinates (``m``,
    ``1/sqrt(tau)``), and on categorical and discrete ones a normalized log-table (over choices,
    or over grid points: a product of cell masses is a table). Flattened to ``(C, ...)``.
    Jitted, with the exponents static: one compilation per pool shape."""
    r = len(mixtures)
    dims = mixtures[0].dims
    sizes = [m.n_kernels for m in mixtures]

    def along(i, a):  # factor i's per-kernel array, broadcast on axis i of the combination grid
        shape = [1] * r
        shape[i] = sizes[i]
        return jnp.reshape(a, shape + list(a.shape[1:]))

    log_scale = sum(
        e * along(i, m.log_weights)
        for i, (m, e) in enumerate(zip(mixtures, exponents, strict=True))
    )
    log_scale = jnp.where(jnp.isnan(log_scale), -jnp.inf, log_scale)
    mus, sigmas, tables = [], [], []
    col = 0
    cat = 0
    for d in dims:
        if d.kind == CATEGORICAL:
            t = sum(
                e * along(i, m.cat_log_probs[cat])
                for i, (m, e) in enumerate(zip(mixtures, exponents, strict=True))
            )
            log_c = jax.scipy.special.logsumexp(t, axis=-1)
            log_scale = log_scale + log_c
            tables.append(t - log_c[..., None])
            cat += 1
            continue
        low, high = d.kernel_bounds
        mu = [along(i, m.mu[:, col]) for i, m in enumerate(mixtures)]
        s = [along(i, m.sigma[:, col]) for i, m in enumerate(mixtures)]
        log_trunc = [
            kernels.log_gauss_mass((low - mu_i) / s_i, (high - mu_i) / s_i)
            for mu_i, s_i in zip(mu, s, strict=True)
        ]
        if d.kind == CONTINUOUS:
            tau = sum(e / s_i**2 for e, s_i in zip(exponents, s, strict=True))
            m_ = sum(e * mu_i / s_i**2 for e, mu_i, s_i in zip(exponents, mu, s, strict=True)) / tau
            q = sum(
                e * (mu_i - m_) ** 2 / s_i**2 for e, mu_i, s_i in zip(exponents, mu, s, strict=True)
            )
            log_c = sum(
                e * (-kernels.LOG_SQRT_2PI - jnp.log(s_i) - lt)
                for e, s_i, lt in zip(exponents, s, log_trunc, strict=True)
            )
            sd = 1.0 / jnp.sqrt(tau)
            log_c = log_c + kernels.LOG_SQRT_2PI + jnp.log(sd) - 0.5 * q
            log_c = log_c + kernels.log_gauss_mass((low - m_) / sd, (high - m_) / sd)
            mus.append(m_)
            sigmas.append(sd)
        else:
            grid = d.grid()
            left, right = grid - d.step / 2, grid + d.step / 2
            if d.kind == LOG_DISCRETE:
                left, right = np.log(left), np.log(right)
            left, right = np.clip(left, low, high), np.clip(right, low, high)
            shape = (-1,) + (1,) * r
            left, right = jnp.reshape(left, shape), jnp.reshape(right, shape)
            cells = sum(
                e * (kernels.log_gauss_mass((left - mu_i) / s_i, (right - mu_i) / s_i) - lt)
                for e, mu_i, s_i, lt in zip(exponents, mu, s, log_trunc, strict=True)
            )
            log_c = jax.scipy.special.logsumexp(cells, axis=0)
            tables.append(jnp.moveaxis(cells - log_c, 0, -1))  # over the grid, per combination
        log_scale = log_scale + log_c
        col += 1
    n = math.prod(sizes)
    flat = lambda a: jnp.broadcast_to(a, tuple(sizes) + a.shape[r:]).reshape((n,) + a.shape[r:])  # noqa: E731
    return (
        flat(log_scale),
        jnp.stack([flat(a) for a in mus], axis=-1) if mus else jnp.zeros((n, 0)),
        jnp.stack([flat(a) for a in sigmas], axis=-1) if sigmas else jnp.zeros((n, 0)),
        [flat(t) for t in tables],
    )


def _split_atoms(term: _Term) -> tuple[tuple, tuple[float, ...], float]:
    """The mixture atoms of a term, their exponents, and the summed exponent of its uniforms."""
    pairs = list(zip(term.atoms, term.exponents, strict=True))
    mixtures = tuple(a for a, _ in pairs if isinstance(a, ProductKernelMixture))
    e_mix = tuple(e for a, e in pairs if isinstance(a, ProductKernelMixture))
    return mixtures, e_mix, sum(e for a, e in pairs if isinstance(a, Uniform))


def _log_uniform_power(term: _Term, e: float) -> float:
    """``log u^e`` for the uniform density ``u`` of the term's space, with ``u^0 = 1`` on an
    unbounded space too."""
    return e * _log_uniform_density(term.atoms[0].dims) if e != 0 else 0.0


def _log_z_of_term(term: _Term) -> float:
    mixtures, e_mix, e_uniform = _split_atoms(term)
    if not mixtures:  # integral of a constant density^e over the whole space
        return term.log_weight + _log_uniform_power(term, e_uniform - 1.0)
    log_scale = _term_combinations(mixtures, e_mix)[0]
    return (
        term.log_weight
        + _log_uniform_power(term, e_uniform)
        + float(jax.scipy.special.logsumexp(log_scale))
    )


def closed_form(pool: LogLinearPool, *, prune: float = 0.0) -> ClosedForm:
    """The pool in closed form: ``log Z`` and, for a pool of mixtures (and uniforms), the
    normalized pool as a :class:`ProductKernelMixture` with one component per kernel combination
    (``K1 * K2`` for a product of two mixtures), so it can be sampled exactly. Its discrete
    coordinates are tabulated (the product of two cell masses is a table over the grid, no longer
    a cell mass). A factor that is a linear pool is multiplied out first: ``product(alpha p +
    (1 - alpha) u, q)`` is ``alpha p q + (1 - alpha) u q``, whose combinations all go into one
    mixture. Only a term with no mixture in it (a product of uniform densities alone, which is
    constant, not a kernel) leaves ``density`` as ``None``; ``log_z`` is exact still.

    Components whose mass is below ``prune * Z`` are left out of ``density`` (``log_z`` keeps
    them); ``pruned_mass`` reports their total as an exact fraction of ``Z``, so the pruned mixture
    is off by at most that much in total variation.

    Raises ``ValueError`` when the pool has no closed form (see the module docstring).
    """
    if not isinstance(pool, LogLinearPool):
        raise ValueError(f"pool must be a LogLinearPool, got {type(pool).__name__}")
    if not (isinstance(prune, int | float) and 0.0 <= prune < 1.0):
        raise ValueError(f"prune must be a number in [0, 1), got {prune!r}")
    terms = _terms(pool)
    if terms is None:
        raise ValueError(
            "this pool has no closed form: a factor with exponent other than 0 or 1 must be a "
            "single kernel or a uniform density"
        )
    log_z = _finite_log_z(pool, "exact", [_log_z_of_term(t) for t in terms])
    parts = []
    for t in terms:
        mixtures, e_mix, e_uniform = _split_atoms(t)
        if not mixtures:
            return ClosedForm(log_z, None, 0.0)
        log_scale, mu, sigma, tables = _term_combinations(mixtures, e_mix)
        offset = t.log_weight + _log_uniform_power(t, e_uniform)
        parts.append((np.asarray(log_scale) + offset, mu, sigma, tables))
    log_scale = np.concatenate([p[0] for p in parts])
    mu = np.concatenate([np.asarray(p[1]) for p in parts])
    sigma = np.concatenate([np.asarray(p[2]) for p in parts])
    tables = [np.concatenate([np.asarray(p[3][i]) for p in parts]) for i in range(len(parts[0][3]))]
    log_total = float(jax.scipy.special.logsumexp(log_scale))
    keep = np.isfinite(log_scale) & (
        log_scale - log_total >= (math.log(prune) if prune > 0 else -np.inf)
    )
    pruned = float(np.sum(np.exp(log_scale[~keep & np.isfinite(log_scale)] - log_total)))
    weights = np.exp(log_scale[keep] - log_scale[keep].max())
    dims = pool.dims
    discrete = tuple(j for j, d in enumerate(dims) if d.kind not in (CONTINUOUS, CATEGORICAL))
    density = mixture(
        dims, weights, mu[keep], sigma[keep], [np.exp(t[keep]) for t in tables], tabulated=discrete
    )
    return ClosedForm(log_z, density, pruned)


def _finite_log_z(pool, method: str, log_terms) -> float:
    log_z = (
        float(np.logaddexp.reduce(np.asarray(log_terms, dtype=float)))
        if len(log_terms)
        else -np.inf
    )
    if not log_z > -np.inf:
        raise ValueError(
            f"Z = 0 to machine precision ({method}): the pool {_describe(pool)} puts no mass "
            "anywhere its components overlap"
        )
    if math.isnan(log_z):
        raise ValueError(f"log Z is NaN ({method}) for the pool {_describe(pool)}")
    return log_z


def _describe(density) -> str:
    if isinstance(density, LogLinearPool):
        parts = ", ".join(
            f"{type(c).__name__}^{float(e):.3g}"
            for c, e in zip(density.components, density.exponents, strict=True)
        )
        return f"LogLinearPool({parts})"
    return type(density).__name__


# ---------------------------------------------------------------------------------------------
# Numeric methods: every one sums exp(log p~(x_i) + log w_i) over points in log space
# ---------------------------------------------------------------------------------------------


def _quadrature_once(density, cuts, n_nodes: int) -> tuple[float, float, int]:
    """``(log Q_n, |log Q_n - log Q_(n/2)|, evaluations)`` on the pieces ``cuts``."""
    estimates, n_evals = [], 0
    for n in (n_nodes // 2, n_nodes):
        x, log_w = quadrature.rule(density.dims, cuts, n)
        log_terms = evaluate(density.unnormalized_log_prob, x) + log_w
        estimates.append(_finite_log_z(density, "quadrature", log_terms))
        n_evals += x.shape[0]
    return estimates[1], abs(estimates[1] - estimates[0]), n_evals


def _quadrature(density, n_nodes: int, max_points: int, rtol: float) -> LogNormalizer | None:
    """Rules on ``_FIRST_BUDGET`` points, then 4x as many, until the two rules agree to ``rtol``
    or the next budget would pass ``max_points``; ``None`` if even ``max_points`` is too few."""
    budgets = [b for b in (_FIRST_BUDGET * 4**i for i in range(16)) if b < max_points]
    result, n_evals = None, 0
    for budget in [*budgets, max_points]:
        cuts = quadrature.pieces(density, n_nodes, budget)
        if cuts is None:
            continue
        log_z, error, n = _quadrature_once(density, cuts, n_nodes)
        n_evals += n
        result = LogNormalizer(log_z, error, "quadrature", n_evals)
        if error <= rtol:
            break
    return result


def _uniform_points(dims: tuple[Dim, ...], u: np.ndarray) -> np.ndarray:
    """Map ``u`` in ``[0, 1)^d`` to points uniform on the base measure."""
    cols = []
    for j, d in enumerate(dims):
        if d.kind == CONTINUOUS:
            cols.append(d.low + u[:, j] * (d.high - d.low))
        else:
            k = np.minimum(np.floor(u[:, j] * d.n_points), d.n_points - 1)
            cols.append(k if d.kind == CATEGORICAL else np.minimum(d.low + k * d.step, d.high))
    return np.stack(cols, axis=1)


def _log_mean_and_se(log_values: np.ndarray) -> tuple[float, float]:
    """``log mean(v)`` and the delta-method standard error of it, from ``log v``, in log space."""
    n = log_values.shape[0]
    log_mean = float(np.logaddexp.reduce(log_values)) - math.log(n)
    if not np.isfinite(log_mean):
        return log_mean, math.inf
    ratio = np.exp(log_values - log_mean)  # v / mean(v)
    return log_mean, float(np.std(ratio, ddof=1) / math.sqrt(n)) if n > 1 else math.inf


def _seed(key: jax.Array) -> np.random.Generator:
    return np.random.default_rng(np.asarray(jax.random.key_data(key)).ravel().tolist())


def _bounded(dims: tuple[Dim, ...]) -> bool:
    return all(d.kind != CONTINUOUS or np.isfinite([d.low, d.high]).all() for d in dims)


def _qmc(density, key, n_samples: int, n_replicates: int) -> LogNormalizer:
    dims = density.dims
    rng = _seed(key)
    u = np.concatenate(
        [
            qmc.Sobol(len(dims), scramble=True, seed=rng).random(n_samples)
            for _ in range(n_replicates)
        ]
    )
    log_p = evaluate(density.unnormalized_log_prob, _uniform_points(dims, u))
    log_volume = -_log_uniform_density(dims)
    log_z_r = [
        float(np.logaddexp.reduce(r)) - math.log(n_samples) + log_volume
        for r in log_p.reshape(n_replicates, n_samples)
    ]
    log_z, se = _log_mean_and_se(np.asarray(log_z_r))
    _finite_log_z(density, "qmc", [log_z])
    return LogNormalizer(log_z, se, "qmc", n_samples * n_replicates)


def _mc(density, key, n_samples: int) -> LogNormalizer:
    dims = density.dims
    u = _seed(key).random((n_samples, len(dims)))
    log_p = evaluate(density.unnormalized_log_prob, _uniform_points(dims, u))
    log_z, se = _log_mean_and_se(log_p - _log_uniform_density(dims))
    _finite_log_z(density, "mc", [log_z])
    return LogNormalizer(log_z, se, "mc", n_samples)


def default_proposal(density):
    """The proposal of ``importance``: for a log-linear pool, the linear pool of its components
    with weights ``e_i / sum(e)`` (by weighted AM-GM, ``prod p_i^(e_i/E) <= sum (e_i/E) p_i``)."""
    if not isinstance(density, LogLinearPool):
        raise ValueError(f"no default proposal for a {type(density).__name__}: pass proposal=")
    for i, c in enumerate(density.components):
        if not (hasattr(c, "sample") and hasattr(c, "log_prob")):
            raise ValueError(
                f"no default proposal: component {i}, a {type(c).__name__}, has no sample(); "
                "pass proposal="
            )
    e = np.array([float(v) for v in density.exponents])
    return linear_pool(density.components, e / e.sum())


def _importance(density, key, n_samples: int, proposal) -> LogNormalizer:
    q = default_proposal(density) if proposal is None else proposal
    if not hasattr(q, "log_prob") or not hasattr(q, "sample") or q.dims != density.dims:
        raise ValueError(f"proposal must be a normalized density on the same space, got {q!r}")
    x = np.asarray(q.sample(key, n_samples))
    log_w = evaluate(density.unnormalized_log_prob, x) - evaluate(q.log_prob, x)
    log_z, se = _log_mean_and_se(log_w)
    _finite_log_z(density, "importance", [log_z])
    return LogNormalizer(log_z, se, "importance", n_samples)


# ---------------------------------------------------------------------------------------------
# The front door
# ---------------------------------------------------------------------------------------------


def log_normalizer(
    density,
    method: str = "auto",
    *,
    key: jax.Array | None = None,
    n_nodes: int = 16,
    max_points: int = 2**20,
    n_samples: int = 2**14,
    n_replicates: int = 8,
    proposal=None,
    rtol: float = 1e-10,
) -> LogNormalizer:
    """``log Z`` of ``density`` with respect to the base measure, its error and the method used.

    Args:
      density: a normalized density (``log_prob``) or an unnormalized one
        (``unnormalized_log_prob``), e.g. a :class:`~fusion.combine.LogLinearPool`.
      method: one of :data:`METHODS`; see the module docstring for each and for the ``auto`` rule.
      key: a ``jax.random`` key, needed by ``qmc``, ``importance`` and ``mc``.
      n_nodes: Gauss-Legendre nodes per piece (``quadrature``; the error rule uses half as many).
      max_points: the largest tensor grid ``quadrature`` may evaluate.
      rtol: ``quadrature`` stops growing its grid once its error estimate on ``log Z`` is below
        this (it starts at ``2**14`` points and grows 4x at a time up to ``max_points``).
      n_samples: points per replicate (``qmc``; a power of two keeps Sobol balanced), or draws
        (``importance``, ``mc``).
      n_replicates: independent Sobol randomizations (``qmc``).
      proposal: a normalized density to draw from (``importance``).
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if not hasattr(density, "dims") or not hasattr(density, "unnormalized_log_prob"):
        raise ValueError(f"density must be a fusion density, got {density!r}")
    n_nodes = integer("n_nodes", n_nodes, minimum=2)
    max_points = integer("max_points", max_points, minimum=1)
    n_samples = integer("n_samples", n_samples, minimum=2)
    n_replicates = integer("n_replicates", n_replicates, minimum=2)
    positive("rtol", rtol)
    if method in ("qmc", "importance", "mc") and key is None:
        raise ValueError(f"method={method!r} needs key=, a jax.random key")
    if method in ("auto", "exact"):
        if hasattr(density, "log_prob"):
            return LogNormalizer(0.0, 0.0, "exact", 0)
        terms = _terms(density) if isinstance(density, LogLinearPool) else None
        if terms is not None and sum(_exact_cost(t) for t in terms) <= _MAX_EXACT_TERMS:
            return LogNormalizer(closed_form(density).log_z, 0.0, "exact", 0)
        if method == "exact":
            raise ValueError(
                f"method='exact' does not apply to {_describe(density)}: a factor with an exponent "
                "other than 0 or 1 must be a single kernel or a uniform density"
            )
    if method in ("auto", "quadrature"):
        n_cont = sum(d.kind == CONTINUOUS for d in density.dims)
        if method == "quadrature" or n_cont <= MAX_QUADRATURE_DIMS:
            result = _quadrature(density, n_nodes, max_points, rtol)
            if result is not None:
                return result
            if method == "quadrature":
                raise ValueError(
                    f"method='quadrature' needs a bounded space and a max_points={max_points} "
                    "that cuts every continuous coordinate around its kernels; "
                    f"{_describe(density)} on {density.dims} has neither"
                )
        if key is None:
            raise ValueError(
                f"{_describe(density)} needs a Monte Carlo method here; pass key=, a jax.random key"
            )
    pool_or_unbounded = isinstance(density, LogLinearPool) or not _bounded(density.dims)
    if method == "importance" or (method == "auto" and pool_or_unbounded):
        return _importance(density, key, n_samples, proposal)
    if not _bounded(density.dims):
        raise ValueError(f"method={method!r} needs a bounded space, got {density.dims}")
    if method == "mc":
        return _mc(density, key, n_samples)
    return _qmc(density, key, n_samples, n_replicates)
