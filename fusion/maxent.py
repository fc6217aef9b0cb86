"""Maximum entropy: the least committal density that meets moment constraints.

Given features ``f: X -> R^m`` (:mod:`fusion.features`), targets ``t`` and a reference density
``r`` (uniform on the space by default), the density closest to ``r`` in relative entropy with
``E_p[f] = t`` is the exponential family

    p_lambda(x) = r(x) exp(lambda . f(x)) / Z(lambda),   Z(lambda) = int r exp(lambda . f) dmu,

with ``lambda`` the minimizer of the convex dual

    D(lambda) = log Z(lambda) - lambda . t  [+ 1/2 sum_k s_k^2 lambda_k^2],

whose gradient is ``E_lambda[f] - t`` and Hessian ``Cov_lambda[f]``. The bracketed term is the
soft version (maximum entropy with slack, a Gaussian prior on ``lambda``): it maximizes
``-KL(p || r) - sum_k (E_p[f_k] - t_k)^2 / (2 s_k^2)``, so each constraint holds up to a slack of
order ``s_k``, ``E[f_k] = t_k - s_k^2 lambda_k`` at the optimum, and the dual has a minimizer
whatever the targets. :func:`maxent` takes ``s_k`` in units of the standard deviation of ``f_k``
under ``r``.

``Z`` is a sum over a rule: tensor Gauss-Legendre nodes (:mod:`fusion.quadrature`) while there are
at most three continuous coordinates, else importance draws. The solver (:func:`solve`) is damped
Newton with backtracking, compiled once per shape, on features whitened by their covariance under
``r``, so the first Hessian is the identity. Where the Hessian is ill-conditioned (a constraint
near the edge of what is feasible, or features that are linearly dependent) its eigenvalues are
floored at ``RCOND`` times the largest. The front door :func:`maxent` checks the fit on a finer
rule and refines until every constraint holds there to ``tol``.

Targets outside what any density can meet raise a ``ValueError`` that names the constraint they
break; a solve that does not converge raises :class:`ConvergenceError` with the residuals.
:func:`maxent_pool` fuses sources (``p_llm``, ``p_opt``) by the moments each one implies; see
:data:`POLICIES` for features that several sources constrain.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linprog

from fusion import kernels, quadrature
from fusion._validate import integer, is_real, positive, prng_key
from fusion.combine import LinearPool, linear_pool
from fusion.density import Uniform, bucket_size, check_points
from fusion.features import Features, Monomial, Targets, expectation
from fusion.kernels import require_x64
from fusion.space import CATEGORICAL, CONTINUOUS

POLICIES = ("average", "soft", "error")
"""How :func:`maxent_pool` treats a feature that several sources constrain:

- ``average`` (the default): one hard constraint at the weighted average of the sources' targets,
  ``t = sum_s w_s t_s / sum_s w_s``. Where the sources' targets are each feasible, so is their
  average: the feasible targets form a convex set.
- ``soft``: the same averaged targets, every constraint soft with slack
  ``s_k = slack * sd_r(f_k) / sqrt(sum_s w_s)`` over the sources ``s`` that constrain ``f_k``:
  a source's precision is proportional to its weight (the precision-weighted mean of the
  sources' targets is then the average above).
  Use it when constraints that come from different sources may be jointly infeasible.
- ``error``: a ``ValueError`` naming each feature whose targets differ by more than three
  standard errors.
"""

RCOND = 1e-12  # Hessian eigenvalues are floored at RCOND times the largest
_CONVERGED, _MAX_ITER, _STALLED = 0, 1, 2
_STATUS = {_CONVERGED: "converged", _MAX_ITER: "reached max_iter", _STALLED: "stalled"}
_MAX_HALVINGS = 60
_ARMIJO = 1e-4
_FIRST_POINTS = 2**12  # the first quadrature rule has about this many points
_MIN_POINTS = 64  # rules are padded to a power of two, at least this


class ConvergenceError(RuntimeError):
    """The solver stopped short of ``tol``; ``result`` holds where it got to."""

    def __init__(self, message: str, result: MaxEntResult):
        super().__init__(message)
        self.result = result


# ---------------------------------------------------------------------------------------------
# The exponential family
# ---------------------------------------------------------------------------------------------


@jax.jit
def _log_prob(density: ExponentialFamily, x: jax.Array) -> jax.Array:
    log_r = density.reference.unnormalized_log_prob(x)
    inside = jnp.isfinite(log_r)
    # Off the reference's support the features may overflow (x^2 at 1e200): evaluate them at a
    # point of the box instead, so neither the value nor the gradient picks up inf - inf.
    lows = jnp.asarray([d.low if d.kind != CATEGORICAL else 0.0 for d in density.dims])
    highs = jnp.asarray(
        [d.high if d.kind != CATEGORICAL else d.n_choices - 1.0 for d in density.dims]
    )
    safe = jnp.where(inside[:, None], x, jnp.clip(x, lows, highs))
    log_p = density.features(safe) @ density.lambdas + jnp.where(inside, log_r, 0.0) - density.log_z
    return jnp.where(inside, log_p, -jnp.inf)


@dataclasses.dataclass(frozen=True)
class ExponentialFamily:
    """``p(x) = r(x) exp(lambdas . f(x) - log_z)``, normalized on the base measure."""

    lambdas: jax.Array
    log_z: jax.Array
    reference: object
    features: Features = dataclasses.field(metadata=dict(static=True))

    @property
    def dims(self):
        return self.features.dims

    def log_prob(self, x: jax.Array) -> jax.Array:
        return _log_prob(self, check_points(x, self.dims))

    unnormalized_log_prob = log_prob


jax.tree_util.register_dataclass(ExponentialFamily)


class MaxEntResult(NamedTuple):
    """A fitted maximum-entropy density and how far to trust it.

    ``residuals`` are ``E_p[f] - t`` in the features' units, measured on the check rule: a
    quadrature rule finer than the one solved on, or fresh draws for ``importance`` (there they
    measure the Monte Carlo error, of order ``n_samples^-1/2``). ``log_z`` is relative to the
    reference; ``log_z_error`` is the difference between the two rules, or a standard error.
    """

    density: ExponentialFamily
    lambdas: np.ndarray
    log_z: float
    log_z_error: float
    residuals: np.ndarray
    n_iterations: int
    method: str
    n_points: int


# ---------------------------------------------------------------------------------------------
# The solver: damped Newton on the dual, over a fixed rule
# ---------------------------------------------------------------------------------------------


class Problem(NamedTuple):
    """The dual over a rule: ``g`` (N, k) whitened features at the points, ``log_base`` (N,) their
    log-weight times reference density, ``targets`` (k,) and ``penalty`` (k, k), the soft term
    ``W diag(s^2) W^T`` in whitened units (zero for hard constraints)."""

    g: jax.Array
    log_base: jax.Array
    targets: jax.Array
    penalty: jax.Array


class NewtonState(NamedTuple):
    lambdas: jax.Array
    value: jax.Array
    grad: jax.Array
    hess: jax.Array
    n_iter: jax.Array
    status: jax.Array


def dual(problem: Problem, lambdas: jax.Array):
    """``(D, grad D, hess D)`` at ``lambdas``: ``log Z - lambda . t + 1/2 lambda' P lambda``,
    ``E[g] - t + P lambda`` and ``Cov[g] + P``, with ``E`` and ``Cov`` under ``p_lambda``."""
    log_q = problem.log_base + problem.g @ lambdas
    log_z = kernels.logsumexp(log_q)
    w = jnp.exp(log_q - log_z)
    mean = w @ problem.g
    centred = problem.g - mean
    cov = (centred * w[:, None]).T @ centred
    soft = problem.penalty @ lambdas
    value = log_z - lambdas @ problem.targets + 0.5 * lambdas @ soft
    return value, mean - problem.targets + soft, cov + problem.penalty


def _dual_value(problem: Problem, lambdas: jax.Array) -> jax.Array:
    log_z = kernels.logsumexp(problem.log_base + problem.g @ lambdas)
    return log_z - lambdas @ problem.targets + 0.5 * lambdas @ problem.penalty @ lambdas


def newton_init(problem: Problem, lambdas: jax.Array) -> NewtonState:
    value, grad, hess = dual(problem, lambdas)
    return NewtonState(lambdas, value, grad, hess, jnp.asarray(0), jnp.asarray(_MAX_ITER))


def newton_direction(grad: jax.Array, hess: jax.Array) -> jax.Array:
    """``-H^-1 grad`` with the eigenvalues of ``H`` floored at ``RCOND`` times the largest: the
    exact Newton step when ``H`` is well conditioned, a regularized one when it is not."""
    ev, v = jnp.linalg.eigh(hess)
    floor = jnp.maximum(ev[-1], jnp.finfo(ev.dtype).tiny) * RCOND
    return -v @ ((v.T @ grad) / jnp.maximum(ev, floor))


def newton_step(problem: Problem, state: NewtonState) -> NewtonState:
    """One damped Newton step: halve the step until the Armijo condition holds (up to rounding
    in ``D``); ``status`` becomes stalled when no step length decreases ``D``."""
    direction = newton_direction(state.grad, state.hess)
    slope = state.grad @ direction
    noise = 8 * jnp.finfo(state.value.dtype).eps * (1 + jnp.abs(state.value))

    def too_long(carry):
        t, value, i = carry
        return (i < _MAX_HALVINGS) & ~(value <= state.value + _ARMIJO * t * slope + noise)

    def halve(carry):
        t, _, i = carry
        return t / 2, _dual_value(problem, state.lambdas + t / 2 * direction), i + 1

    first = _dual_value(problem, state.lambdas + direction)
    t, _, halvings = jax.lax.while_loop(too_long, halve, (jnp.asarray(1.0), first, 0))
    stalled = (halvings >= _MAX_HALVINGS) | ~(slope < 0)
    lambdas = jnp.where(stalled, state.lambdas, state.lambdas + t * direction)
    value, grad, hess = dual(problem, lambdas)
    status = jnp.where(stalled, _STALLED, _MAX_ITER)
    return NewtonState(lambdas, value, grad, hess, state.n_iter + 1, status)


@jax.jit
def solve(problem: Problem, lambdas: jax.Array, tol, max_iter) -> NewtonState:
    """Newton steps from ``lambdas`` until ``max |grad D| <= tol``, a stall, or ``max_iter``
    steps; compiled once per ``(N, k)``. ``status``: 0 converged, 1 max_iter, 2 stalled."""

    def running(state):
        return (
            (jnp.max(jnp.abs(state.grad)) > tol)
            & (state.n_iter < max_iter)
            & (state.status != _STALLED)
        )

    state = jax.lax.while_loop(
        running, lambda s: newton_step(problem, s), newton_init(problem, lambdas)
    )
    done = jnp.max(jnp.abs(state.grad)) <= tol
    return state._replace(status=jnp.where(done, _CONVERGED, state.status))


# ---------------------------------------------------------------------------------------------
# Rules, whitening and checks
# ---------------------------------------------------------------------------------------------


class _Rule(NamedTuple):
    f: np.ndarray  # (N, m) features at the points, padded to a power of two with zero rows
    log_base: np.ndarray  # (N,) log weight + log reference density; -inf on padding
    n_points: int


@jax.jit
def _features_and_base(features: Features, reference, x: jax.Array):
    return features(x), reference.unnormalized_log_prob(x)


def _rule(features: Features, reference, x: np.ndarray, log_w: np.ndarray) -> _Rule:
    """Features and log base weights at ``x``, padded to a power of two (one compilation per
    size); a large rule goes through the density in chunks."""
    n = x.shape[0]
    size = bucket_size(n, _MIN_POINTS)
    x = np.concatenate([x, np.repeat(x[:1], size - n, axis=0)])
    if size <= quadrature.CHUNK:
        f, log_r = map(np.asarray, _features_and_base(features, reference, x))
    else:
        f = quadrature.evaluate(features, x)
        log_r = quadrature.evaluate(reference.unnormalized_log_prob, x)
    live = np.arange(size) < n
    log_w = np.concatenate([log_w, np.zeros(size - n)])
    return _Rule(np.where(live[:, None], f, 0.0), np.where(live, log_r + log_w, -np.inf), n)


def _split(cuts: np.ndarray, k: int) -> np.ndarray:
    """Each piece between consecutive ``cuts`` split into ``k`` equal pieces."""
    t = np.linspace(0.0, 1.0, k + 1)[:-1]
    inner = cuts[:-1, None] + (cuts[1:] - cuts[:-1])[:, None] * t
    return np.append(inner.ravel(), cuts[-1])


class _ByContent:
    """A pytree keyed by its structure and the bytes of its leaves, for a cache: two densities
    with equal arrays are the same key."""

    def __init__(self, tree) -> None:
        self.tree = tree
        leaves, treedef = jax.tree_util.tree_flatten(tree)
        arrays = [np.asarray(leaf) for leaf in leaves]
        digest = hashlib.blake2b(digest_size=16)
        for a in arrays:
            digest.update(f"{a.dtype.str}{a.shape}".encode())
            digest.update(np.ascontiguousarray(a).tobytes())
        self.key = (treedef, digest.digest())

    def __hash__(self) -> int:
        return hash(self.key)

    def __eq__(self, other) -> bool:
        return isinstance(other, _ByContent) and self.key == other.key


def _remembered(fn):
    """``fn``, with its results remembered: hashable arguments (built-in features, a uniform
    reference) by value, a density with arrays in it by the content of its arrays."""

    @functools.lru_cache(maxsize=16)
    def remember(*keys):
        return fn(*(k.tree if isinstance(k, _ByContent) else k for k in keys))

    def key(arg):
        try:
            hash(arg)
        except TypeError:
            return _ByContent(arg)
        return arg

    @functools.wraps(fn)
    def call(*args):
        return remember(*map(key, args))

    return call


@_remembered
def _quadrature_rules(features: Features, reference, proposal, n_nodes: int, max_points: int):
    """Composite rules, each piece of the first split in 2, 4, 8, ... for the next: a list of
    makers of rules, built when first called, or ``None`` if two rules do not fit in
    ``max_points``."""
    dims = features.dims
    n_cont = sum(d.kind == CONTINUOUS for d in dims)
    if n_cont > 3:
        return None
    # Only the kernels of the guide matter here: cuts go where the reference or proposal has mass.
    guide = reference if proposal is None else LinearPool((reference, proposal), np.log([0.5, 0.5]))
    # The first rule is the smallest (from _FIRST_POINTS up, 4x at a time) that cuts around them.
    budgets = (min(_FIRST_POINTS, max_points) * 4**i for i in range(8))
    parts = next(
        (
            p
            for b in budgets
            if b <= max_points
            and (p := quadrature.pieces(guide, n_nodes, b, features.edges(), fill=False))
            is not None
        ),
        None,
    )
    if parts is None:
        return None
    first = math.prod(
        (len(c) - 1) * n_nodes if d.kind == CONTINUOUS else len(c)
        for d, c in zip(dims, parts, strict=True)
    )
    levels = [k for k in (2**i for i in range(16)) if first * k**n_cont <= max_points]
    if len(levels) < 2:
        return None

    def maker(k):
        def make():
            split = [
                _split(c, k) if d.kind == CONTINUOUS else c
                for d, c in zip(dims, parts, strict=True)
            ]
            return _rule(features, reference, *quadrature.rule(dims, split, n_nodes))

        return functools.cache(make)

    return [maker(k) for k in levels]


class _Whitening(NamedTuple):
    """``g = W (f - mean)``: features centred and decorrelated under the reference. ``null`` are
    the unit directions ``v`` with ``v . f`` constant under it (an exact linear relation)."""

    mean: np.ndarray
    w: np.ndarray
    sd: np.ndarray
    null: np.ndarray


def _whitening(rule: _Rule) -> _Whitening:
    base = np.exp(rule.log_base - np.max(rule.log_base))
    base /= base.sum()
    mean = base @ rule.f
    c = rule.f - mean
    cov = (c * base[:, None]).T @ c
    sd = np.sqrt(np.maximum(np.diag(cov), 0.0))
    scale = np.where(sd > 0, sd, 1.0)
    ev, v = np.linalg.eigh(cov / np.outer(scale, scale))  # the correlation matrix: scale-free
    keep = ev > 1e-13 * max(ev.max(), 1e-300)
    w = (v[:, keep] / np.sqrt(ev[keep])).T / scale
    return _Whitening(mean, w, sd, (v[:, ~keep] / scale[:, None]).T)


def _describe_relation(coef: np.ndarray, names, bound: float, op: str) -> str:
    """``a_1 E[f_1] + ... op bound`` with the largest ``|a_k|`` scaled to 1."""
    top = np.max(np.abs(coef))
    terms = [
        f"{'-' if a < 0 else '+'} {abs(a) / top:.4g}*E[{n}]"
        for a, n in zip(coef, names, strict=True)
        if abs(a) > 1e-8 * top
    ]
    text = " ".join(terms).replace(" 1*E[", " E[")
    text = text[2:] if text.startswith("+ ") else "-" + text[2:]
    return f"{text} {op} {bound / top:.6g}"


def _check_relations(
    features: Features, rule: _Rule, wh: _Whitening, targets: np.ndarray, soft: bool
):
    """Features that obey a linear relation ``v . f = c`` under the reference (to rounding) must
    have targets that obey it too, up to twice the spread of ``v . f`` over the rule's points;
    soft constraints get their targets projected onto it instead."""
    live = np.isfinite(rule.log_base)
    for v in wh.null:
        gap = v @ (targets - wh.mean)
        spread = np.ptp(rule.f[live] @ v)
        if abs(gap) <= 2 * spread + 1e-8 * (1 + np.abs(v) @ np.abs(targets)):
            continue
        if soft:
            targets = targets - gap * v / (v @ v)
            continue
        relation = _describe_relation(v, features.names, float(v @ wh.mean), "=")
        raise ValueError(
            f"infeasible targets: every density on the space has {relation}, but the targets "
            f"give {float(v @ targets) / np.max(np.abs(v)):.6g} (the features are linearly "
            "dependent there)"
        )
    return targets


def _check_variances(features: Features, targets: np.ndarray) -> None:
    """For a coordinate on ``[a, b]`` with target mean ``m`` and variance ``v``, every density has
    ``0 < v < (m - a)(b - m)`` (the Bhatia-Davis bound); only a point mass has ``v = 0`` and only
    the distribution on ``{a, b}`` has the bound."""
    index = {}
    for k, t in enumerate(features.terms):
        if isinstance(t, Monomial) and len(t.windows) == 1:
            w = t.windows[0]
            if w.power in (1, 2) and w.low == -math.inf and w.high == math.inf:
                index[(w.col, w.power)] = k
    for (col, power), k in index.items():
        d = features.dims[col]
        a, b = d.low, d.high
        if power != 1 or (col, 2) not in index or not a < targets[k] < b:
            continue  # a mean outside (a, b) is left to _check_ranges
        m, second, name = targets[k], targets[index[(col, 2)]], features.names[k]
        var, bound = second - m * m, (m - a) * (b - m)
        given = f"no density meets E[{name}] = {m:.6g} with E[{name}^2] = {second:.6g}"
        end = 1e-12 * max((b - a) ** 2, m * m)
        if var <= end:
            raise ValueError(
                f"infeasible targets: the variance of {name}, E[{name}^2] - E[{name}]^2 = "
                f"{var:.6g}, must be > 0 (only a point mass has variance 0): {given}"
            )
        if var >= bound - end:
            raise ValueError(
                f"infeasible targets: the variance of {name} would be {var:.6g}, but on "
                f"[{a:.6g}, {b:.6g}] a mean of {m:.6g} allows less than (mean - low)(high - mean)"
                f" = {bound:.6g} (Bhatia-Davis; only the distribution on the two ends reaches "
                f"it): {given}"
            )


class _Support(NamedTuple):
    """Features at the points of a dense grid (:func:`_dense_grid`) where the reference has mass
    (``fine``), and at those of a grid with about half the resolution along each axis
    (``coarse``); each feature's least and greatest value on the fine grid (``low``, ``high``,
    infinite where it is undefined somewhere), and how much they move from the coarse grid
    (``slop``)."""

    fine: np.ndarray
    coarse: np.ndarray
    low: np.ndarray
    high: np.ndarray
    slop: np.ndarray


@_remembered
def _support(features: Features, reference, max_points: int = 2**14) -> _Support:
    def at(n):
        x = _dense_grid(features.dims, features.edges(), n)
        inside = np.isfinite(quadrature.evaluate(reference.unnormalized_log_prob, x))
        return quadrature.evaluate(features, x[inside])

    fine, coarse = at(max_points), at(max(1, max_points >> len(features.dims)))
    low, high = -_extreme(fine, -1.0), _extreme(fine, 1.0)
    with np.errstate(invalid="ignore"):  # inf - inf on unbounded features, which are skipped
        slop = np.maximum(
            np.abs(low + _extreme(coarse, -1.0)), np.abs(high - _extreme(coarse, 1.0))
        )
    return _Support(fine, coarse, low, high, slop)


def _extreme(values: np.ndarray, sign: float) -> np.ndarray:
    """``max(sign * values)`` down the rows, with NaN read as unbounded (a feature undefined
    somewhere)."""
    v = sign * values
    return np.where(np.isnan(v).any(axis=0), np.inf, np.max(v, axis=0, initial=-np.inf))


def _check_ranges(features: Features, support: _Support, targets: np.ndarray) -> None:
    """Each target must lie strictly inside the range of its feature where the reference has
    mass. Outside it no distribution meets the target; at an end only one concentrated where the
    feature takes that value does, and no density relative to the reference (``lambda`` would be
    infinite). The range is taken on the dense grid; a target beyond it by less than the change
    from the coarser grid is left to the solver."""
    low, high, slop = support.low, support.high, support.slop
    bounded = np.isfinite(low) & np.isfinite(high) & (low < high)
    with np.errstate(invalid="ignore"):
        end = 1e-12 * np.maximum(high - low, np.maximum(np.abs(low), np.abs(high)))
        outside = bounded & ~((low - slop - end <= targets) & (targets <= high + slop + end))
        at_end = bounded & ((np.abs(targets - low) <= end) | (np.abs(targets - high) <= end))
    # unbounded, undefined somewhere, or constant features are left to _check_relations
    for k in np.flatnonzero(outside | at_end):
        name, t = features.names[k], targets[k]
        if outside[k]:
            raise ValueError(
                f"infeasible target: E[{name}] = {t:.6g}, but {name} takes values in "
                f"[{low[k]:.6g}, {high[k]:.6g}] where the reference has mass"
            )
        which = "least" if abs(t - low[k]) <= end[k] else "greatest"
        raise ValueError(
            f"infeasible target: E[{name}] = {t:.6g} is the {which} value {name} takes where "
            f"the reference has mass, so only a distribution concentrated where {name} = "
            f"{t:.6g} meets it, and no density does (lambda would be infinite): move the "
            "target inside the range"
        )


def _raise_if_infeasible(
    features: Features, rule: _Rule, support: _Support, targets: np.ndarray, max_rows: int = 2**12
) -> None:
    """A ``ValueError`` that names a constraint every density on the space obeys and the targets
    break, if there is one in sight.

    A linear program on at most ``max_rows`` of the rule's points and the coarse grid finds the
    direction ``y`` (standardized units) along which the targets lie farthest outside the convex
    hull of ``f`` there. That hull can be smaller than the space's, so the bound
    ``c = sup_x y . f(x)`` is then taken on the fine grid, and the targets count as infeasible
    only if ``y . t`` passes it by more than the change in ``c`` from the coarse grid, and by
    ``1e-6`` standard deviations."""
    wh = _whitening(rule)
    live = rule.f[np.isfinite(rule.log_base)]
    points = np.concatenate([f[:: max(1, f.shape[0] // max_rows)] for f in (live, support.coarse)])
    points = points[np.isfinite(points).all(axis=1)]
    scale = np.where(wh.sd > 0, wh.sd, 1.0)
    a = (points - wh.mean) / scale
    tau = (targets - wh.mean) / scale
    m = a.shape[1]
    # variables (y, c): maximize y . tau - c  s.t.  a_i . y - c <= 0,  -1 <= y <= 1
    res = linprog(
        c=-np.append(tau, -1.0),
        A_ub=np.hstack([a, -np.ones((a.shape[0], 1))]),
        b_ub=np.zeros(a.shape[0]),
        bounds=[(-1, 1)] * m + [(None, None)],
        method="highs",
    )
    if res.status != 0 or -res.fun <= 1e-6:
        return
    y = res.x[:m] / scale
    fine, coarse = (float(_extreme(f @ y, 1.0)) for f in (support.fine, support.coarse))
    margin = float(y @ targets) - fine
    if not margin > abs(fine - coarse) + 1e-6 * float(np.abs(res.x[:m]).sum()):
        return
    relation = _describe_relation(y, features.names, fine, "<=")
    raise ValueError(
        f"infeasible targets: every density on the space has {relation}, but the targets give "
        f"{float(y @ targets) / np.max(np.abs(y)):.6g}"
    )


def _dense_grid(dims, edges: dict, max_points: int) -> np.ndarray:
    """About ``max_points`` points: per coordinate, its ends, the features' window ``edges`` and
    evenly spaced points between, or its grid points (all of a small grid, evenly thinned from a
    large one). Axes with few points keep them all, the rest share the budget evenly."""
    sizes = [math.inf if d.kind == CONTINUOUS else d.n_points for d in dims]
    counts: dict[int, int] = {}
    budget = float(max_points)
    for j in sorted(range(len(dims)), key=lambda j: sizes[j]):
        share = max(2, int(budget ** (1 / (len(dims) - len(counts))) + 1e-9))
        counts[j] = int(min(sizes[j], share))
        budget = max(1.0, budget / counts[j])
    axes = []
    for j, d in enumerate(dims):
        if d.kind == CONTINUOUS:
            inner = [e for e in edges.get(j, ()) if d.low < e < d.high]
            axes.append(np.unique(np.append(np.linspace(d.low, d.high, counts[j]), inner)))
        else:
            g = d.grid()
            axes.append(g[np.unique(np.linspace(0, g.size - 1, counts[j]).round().astype(int))])
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, len(dims))


# ---------------------------------------------------------------------------------------------
# The front door
# ---------------------------------------------------------------------------------------------


def _fit(rule: _Rule, wh: _Whitening, targets, slack2, lambdas_f, tol, max_iter):
    """Solve on ``rule`` from ``lambdas_f`` (feature units); returns the state and ``lambdas_f``."""
    w = wh.w
    g = (rule.f - wh.mean) @ w.T
    t = w @ (targets - wh.mean)
    penalty = (w * slack2) @ w.T
    lambdas_g = np.linalg.lstsq(w.T, lambdas_f, rcond=None)[0]
    state = solve(Problem(g, rule.log_base, t, penalty), lambdas_g, tol, max_iter)
    return state, w.T @ np.asarray(state.lambdas)


def _moments_at(rule: _Rule, lambdas_f: np.ndarray) -> tuple[np.ndarray, float]:
    """``E[f]`` and ``log Z`` (relative to the reference) of ``p_lambda`` over ``rule``."""
    log_q = rule.log_base + rule.f @ lambdas_f
    # logsumexp by hand: scipy's array-API dispatch costs more than the sum on small rules.
    top = np.max(log_q)
    q = np.exp(log_q - top)
    total = q.sum()
    return q @ rule.f / total, float(top + np.log(total))


def maxent(
    features: Features,
    targets,
    *,
    reference=None,
    slack=None,
    method: str = "auto",
    key: jax.Array | None = None,
    proposal=None,
    n_nodes: int = 16,
    max_points: int = 2**20,
    n_samples: int = 2**14,
    tol: float = 1e-10,
    max_iter: int = 100,
) -> MaxEntResult:
    """The maximum-entropy density with ``E[features] = targets``, relative to ``reference``.

    Args:
      features: a :class:`~fusion.features.Features` (``m`` columns).
      targets: ``(m,)`` target expectations, or a :class:`~fusion.features.Targets`.
      reference: the reference density ``r`` (default: uniform on the space). The result
        minimizes ``KL(p || r)``; with a uniform ``r`` it maximizes entropy.
      slack: ``None`` for hard constraints, or ``(m,)`` slacks ``>= 0`` for soft ones (see the
        module docstring), in units of each feature's standard deviation under the reference.
      method: ``quadrature`` (at most three continuous coordinates), ``importance`` (draws of
        ``proposal``), or ``auto``: quadrature where it fits in ``max_points``, else importance.
      key: a ``jax.random`` key, for ``importance``.
      proposal: a normalized density that covers the solution. ``importance`` draws from it
        (default: the reference); quadrature also cuts its rule around its kernels.
      n_nodes: Gauss-Legendre nodes per piece of the first rule; each refinement doubles them.
      max_points: the largest rule.
      n_samples: importance draws (the fit uses one set, ``residuals`` a fresh one).
      tol: every constraint must hold to ``tol`` times the feature's standard deviation under
        the reference, on a rule finer than the one solved on.
      max_iter: Newton steps per rule.

    Raises:
      ValueError: bad arguments, or targets that no density meets (the message names the
        constraint that they break).
      ConvergenceError: the solve stopped short of ``tol``; it carries the result.
    """
    require_x64("fusion.maxent.maxent")
    features, targets, reference, slack = _check_arguments(features, targets, reference, slack)
    n_nodes = integer("n_nodes", n_nodes, minimum=2)
    max_points = integer("max_points", max_points, minimum=1)
    n_samples = integer("n_samples", n_samples, minimum=2)
    max_iter = integer("max_iter", max_iter, minimum=1)
    tol = positive("tol", tol)
    if method not in ("auto", "quadrature", "importance"):
        raise ValueError(f"method must be 'auto', 'quadrature' or 'importance', got {method!r}")
    if proposal is not None and (not hasattr(proposal, "sample") or proposal.dims != features.dims):
        raise ValueError(
            f"proposal must be a normalized density on the same space, got {proposal!r}"
        )
    if key is not None:
        key = prng_key("key", key)
    support = None
    if slack is None:
        support = _support(features, reference)
        _check_variances(features, targets)
        _check_ranges(features, support, targets)
    rules = None
    if method in ("auto", "quadrature"):
        rules = _quadrature_rules(features, reference, proposal, n_nodes, max_points)
        if rules is None and method == "quadrature":
            raise ValueError(
                "method='quadrature' needs a bounded space with at most 3 continuous coordinates "
                f"and max_points={max_points} >= two rules, the finer with twice the pieces"
            )
    method = "quadrature" if rules is not None else "importance"
    if rules is None:
        if key is None:
            raise ValueError("this space needs importance sampling: pass key=, a jax.random key")
        q = reference if proposal is None else proposal
        if not hasattr(q, "sample"):
            raise ValueError(f"the reference {type(q).__name__} has no sample(): pass proposal=")
        if n_samples < 10 * (features.size + 1):
            raise ValueError(
                f"n_samples={n_samples} is too few for {features.size} features: importance "
                f"sampling needs at least 10 (m + 1) = {10 * (features.size + 1)}"
            )
        rules = [
            functools.partial(_importance_rule, features, reference, q, k, n_samples)
            for k in jax.random.split(key)
        ]
    return _solve_rules(features, targets, reference, slack, support, rules, tol, max_iter, method)


def _importance_rule(features, reference, q, key, n: int) -> _Rule:
    x = np.asarray(q.sample(key, n))
    log_w = -quadrature.evaluate(q.log_prob, x) - math.log(n)
    return _rule(features, reference, x, log_w)


def _solve_rules(
    features, targets, reference, slack, support, rules, tol, max_iter, method
) -> MaxEntResult:
    """Solve on ``rules[i]()`` and check on ``rules[i + 1]()``, from the coarsest (quadrature;
    importance solves on one set of draws and checks on the other).

    A level whose own problem is solved (to ``max(tol, 1e-9)``) but fails the check is a
    discretization error: the next level starts from its ``lambda``, and the refinement stops
    when the check no longer improves twofold (rounding, not the rule, limits it). A level whose
    problem is not solved may have targets out of its points' reach: the targets are tested for
    infeasibility once (a linear program on a capped set of points), and the next level starts
    again from ``lambda = 0``. The levels are bounded by ``max_points``.
    """
    soft = slack is not None
    start = lambdas = np.zeros(features.size)
    n_iter, n_failed, best_check, state, tested = 0, 0, math.inf, None, soft
    levels = [(rules[0], rules[1])] if method == "importance" else list(itertools.pairwise(rules))
    for make_solved_on, make_check in levels:
        solved_on, check = make_solved_on(), make_check()
        wh = _whitening(solved_on) if features.size else None
        if wh is not None:
            targets = _check_relations(features, solved_on, wh, targets, soft)
        if wh is None or wh.w.shape[0] == 0:  # nothing left to constrain: the reference itself
            lambdas = np.zeros(features.size)
            mean, log_z_check = _moments_at(check, lambdas)
            log_z = _moments_at(solved_on, lambdas)[1]
            check_error, met = np.zeros(features.size), True
            break
        scale = np.where(wh.sd > 0, wh.sd, 1.0)
        slack2 = np.zeros(features.size) if slack is None else (slack * wh.sd) ** 2
        state, lambdas = _fit(solved_on, wh, targets, slack2, start, tol / 10, max_iter)
        n_iter += int(state.n_iter)
        mean, log_z_check = _moments_at(check, lambdas)
        fit_mean, log_z = _moments_at(solved_on, lambdas)
        fit_error = np.max(np.abs(fit_mean - targets + slack2 * lambdas) / scale)
        check_error = np.abs(mean - targets + slack2 * lambdas) / scale
        met = (fit_error if method == "importance" else np.max(check_error)) <= tol
        if met or method == "importance":
            break
        if fit_error > max(tol, 1e-9):
            n_failed += 1
            if not tested:
                _raise_if_infeasible(features, check, support, targets)
                tested = True
            start = np.zeros(features.size)
            continue
        if np.max(check_error) > best_check / 2:
            break
        best_check, start = np.max(check_error), lambdas
    if method == "importance":
        log_z_error = _log_z_standard_error(check, lambdas, log_z_check)
    else:
        log_z_error = abs(log_z_check - log_z)
        log_z = log_z_check
    density = ExponentialFamily(jnp.asarray(lambdas), jnp.asarray(log_z), reference, features)
    result = MaxEntResult(
        density, lambdas, log_z, log_z_error, mean - targets, n_iter, method, check.n_points
    )
    if not met:
        if not tested:
            _raise_if_infeasible(features, check, support, targets)
        worst = int(np.argmax(check_error))
        hint = (
            f" The Newton solves did not meet their own rule's constraints at {n_failed} "
            "levels: the targets may lie at the edge of what densities can meet (lambda "
            "near infinite), or the solution far from where the reference and proposal put "
            "the rule's points (pass a proposal= with mass there, or slack=)."
            if n_failed
            else ""
        )
        raise ConvergenceError(
            f"maximum entropy did not converge: on {check.n_points} check points the worst "
            f"constraint, E[{features.names[worst]}], is off by {result.residuals[worst]:.3g} "
            f"({check_error[worst]:.3g} standard deviations; tol={tol:g}); the last Newton solve "
            f"{_STATUS[int(state.status)]}, after {n_iter} steps in all.{hint} "
            f"Residuals: {result.residuals}",
            result,
        )
    return result


def _log_z_standard_error(rule: _Rule, lambdas: np.ndarray, log_z: float) -> float:
    """Delta-method standard error of ``log Z`` from importance terms ``v_i = N w_i r_i e^(lambda.f)``."""
    v = np.exp(rule.log_base + rule.f @ lambdas - log_z)[: rule.n_points] * rule.n_points
    return float(np.std(v, ddof=1) / math.sqrt(rule.n_points))


def _check_arguments(features, targets, reference, slack):
    if not isinstance(features, Features):
        raise ValueError(f"features must be a fusion.features.Features, got {features!r}")
    if isinstance(targets, Targets):
        if targets.features != features:
            raise ValueError("targets were computed for other features")
        targets = targets.values
    t = np.asarray(targets, dtype=float) if _all_real(targets) else None
    if t is None or t.shape != (features.size,) or not np.isfinite(t).all():
        raise ValueError(
            f"targets must be {features.size} finite numbers, one per feature "
            f"{list(features.names)}, got {targets!r}"
        )
    if any(d.kind == CONTINUOUS and not math.isfinite(d.high - d.low) for d in features.dims):
        raise ValueError("maximum entropy needs a bounded space")
    if reference is None:
        reference = Uniform(features.dims)
    if not hasattr(reference, "unnormalized_log_prob") or reference.dims != features.dims:
        raise ValueError(
            f"reference must be a fusion density on the features' space, got {reference!r}"
        )
    if slack is not None:
        s = np.asarray(slack, dtype=float) if _all_real(slack) else None
        if (
            s is None
            or s.shape != (features.size,)
            or not (np.isfinite(s).all() and (s >= 0).all())
        ):
            raise ValueError(f"slack must be {features.size} finite numbers >= 0, got {slack!r}")
        slack = s
    return features, t, reference, slack


def _all_real(values) -> bool:
    try:
        flat = np.asarray(values, dtype=object).ravel()
    except Exception:
        return False
    return all(is_real(v) for v in flat)


# ---------------------------------------------------------------------------------------------
# Fusing sources by their moments
# ---------------------------------------------------------------------------------------------


def merge_targets(sources: Sequence[Targets], weights, policy: str = "average", slack: float = 0.1):
    """One constraint set from several: ``(targets, slack)``, with features that several
    sources constrain merged by ``policy`` (see :data:`POLICIES`). ``slack`` is ``None`` for hard
    constraints, else per feature ``slack / sqrt(sum_s w_s)`` over the sources that constrain it,
    in units of the feature's standard deviation under the reference (as :func:`maxent` takes it).
    """
    if policy not in POLICIES:
        raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
    if not sources or not all(isinstance(s, Targets) for s in sources):
        raise ValueError("sources must be a non-empty sequence of fusion.features.Targets")
    w = np.asarray(weights, dtype=float) if _all_real(weights) else None
    if (
        w is None
        or w.shape != (len(sources),)
        or not (np.isfinite(w).all() and (w >= 0).all())
        or w.sum() <= 0
    ):
        raise ValueError(
            f"weights must be {len(sources)} finite numbers >= 0, not all 0, got {weights!r}"
        )
    positive("slack", slack)
    dims = sources[0].features.dims
    if any(s.features.dims != dims for s in sources):
        raise ValueError("the sources' features live on different spaces")
    terms: list = []
    rows: dict = {}  # term -> [(weight, values, std_errors)], one entry per source
    for i, (s, ws) in enumerate(zip(sources, w, strict=True)):
        values, errors = (np.asarray(v, dtype=float) for v in (s.values, s.std_errors))
        if values.shape != (s.features.size,) or errors.shape != values.shape:
            raise ValueError(
                f"sources[{i}] must have {s.features.size} values and std_errors, got shapes "
                f"{values.shape} and {errors.shape}"
            )
        if not (np.isfinite(values).all() and np.isfinite(errors).all() and (errors >= 0).all()):
            raise ValueError(
                f"sources[{i}] must have finite values and std_errors >= 0, got {values} and "
                f"{errors}"
            )
        seen = set()
        start = 0
        for term in s.features.terms:
            n = len(term.names)
            if term not in rows:
                terms.append(term)
                rows[term] = []
            if ws > 0 and term not in seen:  # a term listed twice by one source counts once
                rows[term].append((ws, values[start : start + n], errors[start : start + n]))
            seen.add(term)
            start += n
    values, errors, relative = [], [], []
    conflicts = []
    for term in terms:
        given = rows[term]
        if not given:
            raise ValueError(f"feature {term.names} is constrained only by sources of weight 0")
        total = sum(g[0] for g in given)
        mean = sum(g[0] * g[1] for g in given) / total
        se = np.sqrt(sum((g[0] / total) ** 2 * g[2] ** 2 for g in given))
        for (_, v1, e1), (_, v2, e2) in itertools.combinations(given, 2):
            far = np.abs(v1 - v2) > 3 * np.sqrt(e1**2 + e2**2) + 1e-9 * (
                1 + np.abs(v1) + np.abs(v2)
            )
            conflicts += [
                f"E[{n}]: {a:.6g} vs {b:.6g}"
                for n, a, b, c in zip(term.names, v1, v2, far, strict=True)
                if c
            ]
        values.append(mean)
        errors.append(se)
        relative.append(np.full(len(term.names), slack / math.sqrt(total)))
    if policy == "error" and conflicts:
        raise ValueError(
            "the sources constrain the same features to different values (policy='error'): "
            + "; ".join(conflicts)
            + ". Use policy='average' or 'soft' to combine them."
        )
    merged = Targets(
        Features(dims, tuple(terms)), np.concatenate(values), np.concatenate(errors), "merged"
    )
    return merged, (np.concatenate(relative) if policy == "soft" else None)


def maxent_pool(
    densities: Sequence,
    weights,
    features: Features | Sequence[Features],
    *,
    policy: str = "average",
    slack: float = 0.1,
    reference=None,
    key: jax.Array | None = None,
    expectation_method: str = "auto",
    **options,
) -> MaxEntResult:
    """Fuse densities by maximum entropy: the density closest to ``reference`` that has the
    moments ``E_{p_s}[f_s]`` each source ``p_s`` implies for its features ``f_s`` (one
    :class:`~fusion.features.Features` for all, or one per source), merged by ``policy``.

    ``weights`` play the role of the pools' weights: ``(alpha, 1 - alpha)`` for
    ``(p_llm, p_opt)``. ``options`` go to :func:`maxent`; the default proposal is the linear pool
    of the reference and the sources, so the rule covers where the sources keep their mass.
    """
    densities = tuple(densities)
    if not densities:
        raise ValueError("densities must not be empty")
    per_source = [features] * len(densities) if isinstance(features, Features) else list(features)
    if len(per_source) != len(densities) or not all(isinstance(f, Features) for f in per_source):
        raise ValueError(
            f"features must be one Features or {len(densities)} of them, got {features!r}"
        )
    n = len(densities)
    keys = [None] * (n + 1) if key is None else list(jax.random.split(key, n + 1))
    sources = [
        expectation(p, f, expectation_method, key=k)
        for p, f, k in zip(densities, per_source, keys[:n], strict=True)
    ]
    merged, soft = merge_targets(sources, weights, policy, slack)
    reference = Uniform(merged.features.dims) if reference is None else reference
    if "proposal" not in options and all(hasattr(p, "sample") for p in (reference, *densities)):
        options["proposal"] = linear_pool([reference, *densities], np.full(n + 1, 1 / (n + 1)))
    return maxent(merged.features, merged, reference=reference, slack=soft, key=keys[-1], **options)
