"""Markov chain Monte Carlo on a search space: NUTS/HMC within Gibbs, compiled once per shape.

The target is any density with ``dims`` and ``unnormalized_log_prob`` (a log-linear pool, say),
``pi(x) ∝ p~(x)`` with respect to the base measure of :mod:`fusion.space`. One iteration of a
chain is a systematic Gibbs scan:

1. **Grid coordinates** (discrete, log int and categorical), one after the other, by
   Metropolis-Hastings with a symmetric proposal on the grid index ``k`` (``x = low + k step``):

   - categorical: a uniformly drawn *other* choice, ``k' = (k + U{1..n-1}) mod n``;
   - discrete: a multi-scale random walk ``k' = k ± U{1..2^m}``, ``m ~ U{0..ceil(log2 n)}``, so both
     neighbours and far grid points are proposed; ``k'`` off the grid is rejected.

   A proposal is accepted with probability ``min(1, p~(x') / p~(x))``.

2. **Continuous coordinates**, given the grid ones, by one NUTS (or HMC) transition of numpyro's
   functional kernel (:func:`numpyro.infer.hmc.hmc`) in unconstrained coordinates ``u``: each
   coordinate is mapped by ``x = T(u)`` with ``T = biject_to(interval(low, high))`` (a scaled
   sigmoid), ``greater_than``/``less_than`` (a shifted exponential) or the identity, and the
   potential is

       U(u) = -log p~(T(u), x_grid) - log |det dT/du|.

   Step size and diagonal mass matrix are adapted (dual averaging, windowed Welford) during the
   ``n_warmup`` warm-up iterations, with the grid updates running as well.

Each step leaves ``pi`` invariant, so their composition does too. ``n_chains`` chains run in one
compiled call from dispersed starting points (each redrawn until its log-density is finite), and
the diagnostics are numpyro's split R-hat (:func:`numpyro.diagnostics.split_gelman_rubin`) and
effective sample size (:func:`numpyro.diagnostics.effective_sample_size`) per coordinate.

Where the chains start decides what the diagnostics can see. Start candidates (dispersed, or
from ``init_proposal``) first climb the log target in ``u`` by gradient ascent, which sorts them
by the mode they lead to, and the Laplace approximation at each top compares the modes' masses.
The chains then start at the tops of distinct modes, farthest apart first, among those with at
least ``MODE_MASS_RATIO`` of the heaviest one's mass. Chains that cannot cross between those modes
then disagree, R-hat rises above the threshold, the result says ``converged=False`` and
:class:`MCMCNotConverged` is warned, naming the coordinate. A mode that no candidate climbs to
stays invisible: the search makes a silently missed mode unlikely, not impossible, and a better
``init_proposal`` (one that puts mass near every mode) makes it less likely still. Regions where
``p~ = 0`` inside the bounds stop NUTS trajectories as divergences, which are counted and
reported too.

The chains run inside one module-level jitted function whose static arguments are the number of
draws, warm-up length, algorithm, tree depth and chain method; the density is a traced pytree
argument, so a new density of the same shape (same ``dims`` and kernel bucket) reuses the
compiled code.
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.example_libraries import optimizers
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.distributions import constraints
from numpyro.distributions.transforms import biject_to
from numpyro.infer.hmc import HMCState, hmc

from fusion._validate import integer, is_int, is_real, prng_key
from fusion.density import checked_draws
from fusion.kernels import require_x64
from fusion.space import CATEGORICAL, CONTINUOUS, Dim, grid_tolerance

ALGORITHMS = ("nuts", "hmc")
CHAIN_METHODS = ("vectorized", "sequential")
TRIES_PER_ROUND = 32
"""Start candidates drawn per chain in one compiled evaluation while looking for a finite start."""
_INIT_HALF_WIDTH = 2.0
"""Default starts on a coordinate with an infinite end are uniform on ``[-2, 2]`` in ``u``."""
MODE_SEARCH_STEPS = 200
"""Gradient-ascent steps by which start candidates climb to their modes (``mode_search_steps``)."""
MODE_MASS_RATIO = 1e-3
"""A mode found by the search gets a chain only if its Laplace mass is at least this fraction of
the heaviest mode's: missing a lighter one moves each mode's share by less than that."""
_MIN_CURVATURE = 1.0 / 16.0


class MCMCNotConverged(UserWarning):
    """The chains disagree (R-hat above the threshold) or diverged: the draws may be biased."""


class MCMCResult(NamedTuple):
    """Draws of ``n_chains`` chains and their diagnostics.

    ``samples`` are ``n`` draws ``(n, d)`` pooled across chains, interleaved (draw ``i`` of every
    chain before draw ``i + 1`` of any), from ``chains`` of shape ``(n_chains, n_per_chain, d)``
    with ``n_per_chain = ceil(n / n_chains)``. Draws of one chain are correlated; ``ess`` says how
    many independent draws they are worth.

    - ``r_hat``, ``ess``: split R-hat and effective sample size per coordinate, over all chains.
      A coordinate that never moves in any chain has R-hat 1 when every chain holds the same
      value and ``inf`` when they differ, and ESS equal to the number of draws; never NaN.
    - ``n_divergent``: divergent NUTS/HMC transitions after warm-up, over all chains.
    - ``hmc_acceptance_rate``: the mean acceptance probability of NUTS/HMC after warm-up per chain,
      shape ``(n_chains,)``; shape ``(0,)`` when there is no continuous coordinate.
    - ``gibbs_acceptance_rate``: the Metropolis-Hastings acceptance rate after warm-up per chain
      and grid coordinate, shape ``(n_chains, n_grid)``.
    - ``step_size``: the adapted NUTS/HMC step size per chain (``(0,)`` without continuous
      coordinates).
    - ``n_init_tries``: how many start candidates each chain drew, up to and including the first
      with a finite log-density (0 for a given ``init`` that was used as it is).
    - ``converged``: every R-hat is at most the threshold and no transition diverged.
    - ``warnings``: one human-readable sentence per problem (those that make ``converged``
      false) or event (an ``init`` that was redrawn).
    """

    samples: np.ndarray
    chains: np.ndarray
    r_hat: np.ndarray
    ess: np.ndarray
    n_divergent: int
    hmc_acceptance_rate: np.ndarray
    gibbs_acceptance_rate: np.ndarray
    step_size: np.ndarray
    n_init_tries: np.ndarray
    converged: bool
    warnings: tuple[str, ...]

    @property
    def message(self) -> str:
        """The warnings as one text, or a one-line summary when the chains converged."""
        if self.warnings:
            return "\n".join(self.warnings)
        return (
            f"converged: max R-hat {float(np.max(self.r_hat)):.4f}, "
            f"min ESS {float(np.min(self.ess)):.0f} of {self.chains.shape[0] * self.chains.shape[1]}"
        )


# ---------------------------------------------------------------------------------------------
# Geometry: which coordinates NUTS moves, and how
# ---------------------------------------------------------------------------------------------


class _Geometry(NamedTuple):
    """Static description of a space for the sampler (hashable, read at trace time)."""

    dims: tuple[Dim, ...]
    continuous: tuple[int, ...]  # columns moved by NUTS/HMC
    grid: tuple[int, ...]  # columns moved by Metropolis-Hastings

    @property
    def d(self) -> int:
        return len(self.dims)


@functools.lru_cache(maxsize=256)
def _geometry(dims: tuple[Dim, ...]) -> _Geometry:
    return _Geometry(
        dims=dims,
        continuous=tuple(j for j, d in enumerate(dims) if d.kind == CONTINUOUS),
        grid=tuple(j for j, d in enumerate(dims) if d.kind != CONTINUOUS),
    )


def _bijection(dim: Dim):
    """numpyro's bijection from the real line onto the coordinate's interval."""
    lo, hi = math.isfinite(dim.low), math.isfinite(dim.high)
    if lo and hi:
        return biject_to(constraints.interval(dim.low, dim.high))
    if lo:
        return biject_to(constraints.greater_than(dim.low))
    if hi:
        return biject_to(constraints.less_than(dim.high))
    return biject_to(constraints.real)


def _constrain(geo: _Geometry, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``x_c = T(u)`` on the continuous coordinates, and ``log |det dT/du|``.

    The image is clipped into ``[low, high]``: ``low + (high - low) * sigmoid(u)`` can round one
    ulp past ``high``.
    """
    xs, log_det = [], jnp.zeros(u.shape[:-1])
    for i, j in enumerate(geo.continuous):
        dim = geo.dims[j]
        t = _bijection(dim)
        xi = jnp.clip(t(u[..., i]), dim.low, dim.high)
        xs.append(xi)
        log_det = log_det + t.log_abs_det_jacobian(u[..., i], xi)
    x = jnp.stack(xs, axis=-1) if xs else jnp.zeros(u.shape[:-1] + (0,))
    return x, log_det


def _unconstrain(geo: _Geometry, xc: jax.Array) -> jax.Array:
    """``u = T^-1(x_c)``; ``-inf``/``inf`` for a point on an open end."""
    cols = [_bijection(geo.dims[j]).inv(xc[..., i]) for i, j in enumerate(geo.continuous)]
    return jnp.stack(cols, axis=-1) if cols else jnp.zeros(xc.shape[:-1] + (0,))


def _assemble(geo: _Geometry, xc: jax.Array, xg: jax.Array) -> jax.Array:
    """The full point ``(..., d)`` from its continuous and grid parts."""
    x = jnp.zeros(xc.shape[:-1] + (geo.d,))
    if geo.continuous:
        x = x.at[..., np.array(geo.continuous)].set(xc)
    if geo.grid:
        x = x.at[..., np.array(geo.grid)].set(xg)
    return x


def _log_target(density, geo: _Geometry, u: jax.Array, xg: jax.Array) -> jax.Array:
    """``log p~(T(u), x_grid) + log |det dT/du|`` for one point: the target in ``(u, x_grid)``."""
    xc, log_det = _constrain(geo, u)
    x = _assemble(geo, xc, xg)
    return density.unnormalized_log_prob(x[None, :])[0] + log_det


def _potential_fn_gen(density, xg):
    """The NUTS potential ``U(u) = -log target(u | x_grid)``, for ``hmc(potential_fn_gen=...)``."""
    geo = _geometry(density.dims)
    return lambda u: -_log_target(density, geo, u, xg)


# ---------------------------------------------------------------------------------------------
# Metropolis-Hastings on the grid coordinates
# ---------------------------------------------------------------------------------------------


def _grid_of(dim: Dim) -> tuple[float, float, float, int]:
    """``(low, high, step, n_points)`` of a grid coordinate; a categorical is ``0, 1, .., n-1``."""
    if dim.kind == CATEGORICAL:
        return 0.0, dim.n_choices - 1.0, 1.0, dim.n_choices
    return dim.low, dim.high, dim.step, dim.n_points


def _propose_index(v: jax.Array, dim: Dim, k: jax.Array) -> jax.Array:
    """A symmetric proposal ``k'`` for the grid index ``k``, from three uniforms ``v`` in
    ``[0, 1)``; it may fall off the grid ``[0, n)``.

    The proposals are built from one batch of uniforms instead of one ``jax.random`` call each:
    every call compiles its own copy of the threefry hash, and those copies dominated the
    compilation time of a sweep.
    """
    n = _grid_of(dim)[3]
    if dim.kind == CATEGORICAL:  # k + U{1..n-1}, mod n
        return (k + 1 + jnp.minimum(jnp.floor(v[0] * (n - 1)), n - 2).astype(k.dtype)) % n
    top = max(1, math.ceil(math.log2(n)))
    m = jnp.minimum(jnp.floor(v[0] * (top + 1)), top)  # U{0..top}
    scale = jnp.exp2(m)
    size = 1 + jnp.minimum(jnp.floor(v[1] * scale), scale - 1).astype(k.dtype)  # U{1..2^m}
    return k + jnp.where(v[2] < 0.5, size, -size)


def _gibbs_sweep(density, geo: _Geometry, key, u, xg, log_p):
    """One Metropolis-Hastings update of each grid coordinate in turn, given ``u``.

    ``log_p`` is the current log target; returns the new grid part, its log target and which
    coordinates accepted their proposal.
    """
    accepted = []
    v = jax.random.uniform(key, (len(geo.grid), 4))
    for i, j in enumerate(geo.grid):
        dim = geo.dims[j]
        low, high, step, n = _grid_of(dim)
        if n == 1:  # a single point: nothing to propose
            accepted.append(jnp.array(False))
            continue
        k = jnp.round((xg[i] - low) / step).astype(jnp.int64)
        k_new = _propose_index(v[i, :3], dim, k)
        on_grid = (k_new >= 0) & (k_new < n)
        x_new = jnp.minimum(low + jnp.clip(k_new, 0, n - 1) * step, high)
        xg_new = xg.at[i].set(x_new)
        log_p_new = jnp.where(on_grid, _log_target(density, geo, u, xg_new), -jnp.inf)
        # log U < log p~(x') - log p~(x); NaN-free since log_p is finite along the chain.
        ok = jnp.log(v[i, 3]) < log_p_new - log_p
        xg = jnp.where(ok, xg_new, xg)
        log_p = jnp.where(ok, log_p_new, log_p)
        accepted.append(ok)
    return xg, log_p, jnp.stack(accepted)


# ---------------------------------------------------------------------------------------------
# One chain, and all chains in one compiled call
# ---------------------------------------------------------------------------------------------


class _ChainState(NamedTuple):
    hmc: HMCState | None  # None without continuous coordinates
    u: jax.Array
    xg: jax.Array
    log_p: jax.Array  # log target at (u, xg)
    key: jax.Array


class _Draw(NamedTuple):
    x: jax.Array
    accept_prob: jax.Array
    diverging: jax.Array
    gibbs_accepted: jax.Array


class _ChainsOut(NamedTuple):
    x: jax.Array  # (n_chains, n_samples, d)
    hmc_acceptance: jax.Array  # (n_chains,) or (n_chains, 0) without continuous coordinates
    n_divergent: jax.Array  # (n_chains,)
    gibbs_acceptance: jax.Array  # (n_chains, n_grid)
    step_size: jax.Array  # (n_chains,) or (n_chains, 0)


def _run_one_chain(
    density, key, x0, target_accept_prob, n_samples, n_warmup, algorithm, max_tree_depth
):
    geo = _geometry(density.dims)
    key_hmc, key_chain = jax.random.split(key)
    u0 = _unconstrain(geo, x0[np.array(geo.continuous, dtype=int)])
    xg0 = x0[np.array(geo.grid, dtype=int)]
    log_p0 = _log_target(density, geo, u0, xg0)
    sample_kernel = None
    hmc_state = None
    if geo.continuous:
        init_kernel, sample_kernel = hmc(potential_fn_gen=_potential_fn_gen, algo=algorithm.upper())
        # init_kernel must run before sample_kernel in the same trace: it sets the kernel's
        # warm-up schedule and tree depth in the closure that hmc() returns.
        hmc_state = init_kernel(
            u0,
            n_warmup,
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
            model_args=(density, xg0),
            rng_key=key_hmc,
        )

    def step(state: _ChainState, _):
        key, xg, log_p = state.key, state.xg, state.log_p
        accepted = jnp.zeros((0,), bool)
        if geo.grid:
            key, key_gibbs = jax.random.split(key)
            xg, log_p, accepted = _gibbs_sweep(density, geo, key_gibbs, state.u, xg, log_p)
        h, u = state.hmc, state.u
        accept_prob, diverging = jnp.zeros(()), jnp.array(False)
        if sample_kernel is not None:
            if geo.grid:  # the potential changed with the grid part: refresh value and gradient
                pe, grad = jax.value_and_grad(_potential_fn_gen(density, xg))(u)
                h = h._replace(potential_energy=pe, z_grad=grad)
            h = sample_kernel(h, model_args=(density, xg))
            u, log_p = h.z, -h.potential_energy
            accept_prob, diverging = h.accept_prob, h.diverging
        x = _assemble(geo, _constrain(geo, u)[0], xg)
        return _ChainState(h, u, xg, log_p, key), _Draw(x, accept_prob, diverging, accepted)

    # One loop over warm-up and sampling (numpyro's kernel switches adaptation off by itself after
    # n_warmup steps): a second loop would compile the whole NUTS transition a second time.
    state = _ChainState(hmc_state, u0, xg0, log_p0, key_chain)
    state, draws = jax.lax.scan(step, state, None, length=n_warmup + n_samples)
    draws = jax.tree.map(lambda a: a[n_warmup:], draws)
    if state.hmc is None:
        hmc_acceptance, step_size = jnp.zeros((0,)), jnp.zeros((0,))
    else:
        hmc_acceptance = jnp.mean(draws.accept_prob)
        step_size = state.hmc.adapt_state.step_size
    return _ChainsOut(
        x=draws.x,
        hmc_acceptance=hmc_acceptance,
        n_divergent=jnp.sum(draws.diverging),
        gibbs_acceptance=jnp.mean(draws.gibbs_accepted.astype(float), axis=0),
        step_size=step_size,
    )


@functools.partial(
    jax.jit,
    static_argnames=("n_samples", "n_warmup", "algorithm", "max_tree_depth", "chain_method"),
)
def _run_chains(
    density,
    key,
    x0,
    target_accept_prob,
    *,
    n_samples,
    n_warmup,
    algorithm,
    max_tree_depth,
    chain_method,
) -> _ChainsOut:
    """Every chain from its start ``x0[c]`` (``x0`` is ``(n_chains, d)``): warm-up, then
    ``n_samples`` draws, the chains vectorized (``vmap``) or one after the other (``lax.map``)."""
    keys = jax.random.split(key, x0.shape[0])
    run = functools.partial(
        _run_one_chain,
        density,
        target_accept_prob=target_accept_prob,
        n_samples=n_samples,
        n_warmup=n_warmup,
        algorithm=algorithm,
        max_tree_depth=max_tree_depth,
    )
    if chain_method == "vectorized":
        return jax.vmap(run)(keys, x0)
    return jax.lax.map(lambda args: run(*args), (keys, x0))


# ---------------------------------------------------------------------------------------------
# Starting points
# ---------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=2)
def _dispersed_draw(density, key: jax.Array, n: int) -> jax.Array:
    """``n`` dispersed start candidates: uniform on a bounded continuous coordinate, uniform on
    ``u`` in ``[-2, 2]`` mapped through ``T`` on one with an infinite end, uniform on a grid."""
    geo = _geometry(density.dims)
    v = jax.random.uniform(key, (n, geo.d))  # one draw for all columns: one threefry to compile
    cols = []
    for j, dim in enumerate(geo.dims):
        if dim.kind == CONTINUOUS and math.isfinite(dim.high - dim.low):
            cols.append(dim.low + (dim.high - dim.low) * v[:, j])
        elif dim.kind == CONTINUOUS:
            cols.append(_bijection(dim)(_INIT_HALF_WIDTH * (2.0 * v[:, j] - 1.0)))
        else:
            low, high, step, n_points = _grid_of(dim)
            k = jnp.minimum(jnp.floor(v[:, j] * n_points), n_points - 1)
            cols.append(jnp.minimum(low + k * step, high))
    return jnp.stack(cols, axis=1)


def _on_grid(geo: _Geometry, xg: jax.Array) -> jax.Array:
    """Whether each row's grid coordinates are points of their grids (in range, within
    :func:`~fusion.space.grid_tolerance`), whatever the density says there."""
    ok = jnp.ones(xg.shape[:-1], dtype=bool)
    for i, j in enumerate(geo.grid):
        low, _, step, n = _grid_of(geo.dims[j])
        k = (xg[..., i] - low) / step
        ok &= jnp.abs(k - jnp.round(k)) <= grid_tolerance(xg[..., i], low, step)
        ok &= (jnp.round(k) >= 0) & (jnp.round(k) <= n - 1)
    return ok


@jax.jit
def _start_log_target(density, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Each candidate ``x`` (rows) after the round trip ``T(T^-1(x))``, and its log target in
    ``(u, x_grid)``: ``-inf`` where ``p~`` is zero or NaN, where ``x`` sits on an open end (``u``
    infinite) or where a grid coordinate is not a grid point."""
    geo = _geometry(density.dims)
    u = _unconstrain(geo, x[:, np.array(geo.continuous, dtype=int)])
    xg = x[:, np.array(geo.grid, dtype=int)]
    xc, log_det = _constrain(geo, jnp.where(jnp.isfinite(u), u, 0.0))
    x = _assemble(geo, xc, xg)
    log_t = density.unnormalized_log_prob(x) + log_det
    ok = jnp.all(jnp.isfinite(u), axis=1) & jnp.isfinite(log_t) & _on_grid(geo, xg)
    return x, jnp.where(ok, log_t, -jnp.inf)


def _check_init(init, dims: tuple[Dim, ...], n_chains: int) -> np.ndarray:
    """``init`` as ``(n_chains, d)``; a ``ValueError`` for a wrong shape, NaN, or a grid
    coordinate that is not a grid point (an out-of-range one is only outside the support)."""
    d = len(dims)
    try:
        x = np.asarray(init, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"init must be an array of numbers, got {init!r}") from None
    if x.shape == (d,):
        x = np.broadcast_to(x, (n_chains, d))
    if x.shape != (n_chains, d):
        raise ValueError(
            f"init must have shape ({n_chains}, {d}) (n_chains, d) or ({d},), got {x.shape}"
        )
    if np.isnan(x).any():
        raise ValueError(f"init contains NaN: {x.tolist()}")
    for j, dim in enumerate(dims):
        if dim.kind == CONTINUOUS:
            continue
        low, _, step, _ = _grid_of(dim)
        k = (x[:, j] - low) / step
        off = np.abs(k - np.round(k)) > grid_tolerance(x[:, j], low, step)
        if off.any():
            c = int(np.argmax(off))
            raise ValueError(
                f"init[{c}, {j}] = {float(x[c, j])!r} is not a point of the grid {low} + k * {step} "
                f"of coordinate {j} ({dim.kind})"
            )
    return np.array(x)


def _draw_candidates(density, init_proposal, key, n: int) -> jax.Array:
    if init_proposal is None:
        return _dispersed_draw(density, key, n)
    return checked_draws("init_proposal", init_proposal, key, n)


def _find_starts(
    density, key, n_chains, max_init_tries, init, init_proposal, mode_search_steps, notes
):
    """A start per chain with a finite log target: ``init`` where it has one, else one of the
    candidates drawn (``TRIES_PER_ROUND`` per chain at a time, at most ``max_init_tries`` per
    chain) that has one.

    With ``mode_search_steps > 0`` the drawn starts are picked by the modes their candidates climb
    to (:func:`_climb`, :func:`_spread_starts`): chains start in as many distinct modes of
    non-negligible mass as were found, so chains that cannot cross between modes disagree and
    R-hat says so. With 0, chain ``c`` takes the first finite candidate of its own column.

    Stops when every chain has a start, or raises a ``ValueError`` when some chain's
    ``max_init_tries`` draws all have log-density ``-inf``.
    """
    d = len(density.dims)
    starts = np.zeros((n_chains, d))
    tries = np.zeros(n_chains, dtype=int)
    found = np.zeros(n_chains, dtype=bool)
    if init is not None:
        x, log_t = (np.asarray(a) for a in _start_log_target(density, jnp.asarray(init)))
        found = np.isfinite(log_t)
        starts[found] = x[found]
        if not found.all():
            bad = np.flatnonzero(~found).tolist()
            notes.append(
                f"init of chain(s) {bad} has log-density -inf (outside the support, or on an open "
                "end of a continuous coordinate); those chains start from redrawn points instead"
            )
            warnings.warn(notes[-1], UserWarning, stacklevel=3)
    drawn = ~found
    finite_candidates = []
    n_rounds = math.ceil(max_init_tries / TRIES_PER_ROUND)
    for r in range(n_rounds):
        if found.all():
            break
        cand = _draw_candidates(
            density, init_proposal, jax.random.fold_in(key, r), TRIES_PER_ROUND * n_chains
        )
        x, log_t = (np.asarray(a) for a in _start_log_target(density, jnp.asarray(cand)))
        x = x.reshape(TRIES_PER_ROUND, n_chains, d)
        ok = np.isfinite(log_t).reshape(TRIES_PER_ROUND, n_chains)
        ok[max_init_tries - r * TRIES_PER_ROUND :] = False  # beyond the budget
        finite_candidates.append(x[ok])
        for c in np.flatnonzero(~found):
            hits = np.flatnonzero(ok[:, c])
            n_drawn = (
                hits[0] + 1
                if hits.size
                else min(TRIES_PER_ROUND, max_init_tries - r * TRIES_PER_ROUND)
            )
            tries[c] += n_drawn
            if hits.size:
                starts[c], found[c] = x[hits[0], c], True
    if not found.all():
        c = int(np.flatnonzero(~found)[0])
        source = "init_proposal" if init_proposal is not None else "the default dispersed start"
        raise ValueError(
            f"no starting point with a finite log-density for chain {c}: the density is -inf at "
            f"all {tries[c]} start points drawn from {source} (max_init_tries={max_init_tries}). "
            "Pass an init inside the support, an init_proposal that covers it, or raise "
            "max_init_tries."
        )
    if mode_search_steps and drawn.any():
        starts[drawn] = _mode_spread(
            density,
            np.concatenate(finite_candidates),
            int(drawn.sum()),
            n_chains,
            mode_search_steps,
        )
    return starts, tries


# ---------------------------------------------------------------------------------------------
# Mode search: which start candidates to use
# ---------------------------------------------------------------------------------------------


@functools.partial(jax.jit, static_argnums=2)
def _climb(density, x: jax.Array, n_steps: int) -> tuple[jax.Array, jax.Array]:
    """Where each start candidate (rows of ``x``, finite log target) leads by gradient ascent of
    the log target in ``u``, the grid part held fixed, and the log Laplace mass of that mode.

    Adam with a step size decaying from 0.5 to 0.01 over ``n_steps`` steps; the best point seen
    along the path is kept, so a step into ``-inf`` or NaN is harmless. At that point ``u*``,

        log m = log p~(u*) + 1/2 sum_i log(2 pi / lambda_i),

    with ``lambda_i`` the eigenvalues of the negative Hessian, floored at 1/16 (a standard
    deviation of 4 in ``u``, the width of the dispersed starts): the Laplace approximation of
    the mass of the mode ``u*`` tops, which is only ever used to compare modes.
    """
    geo = _geometry(density.dims)
    u0 = _unconstrain(geo, x[:, np.array(geo.continuous, dtype=int)])
    xg = x[:, np.array(geo.grid, dtype=int)]

    def log_t(u, g):
        return _log_target(density, geo, u, g)

    value_and_grad = jax.vmap(jax.value_and_grad(log_t))
    opt_init, opt_update, get_params = optimizers.adam(
        optimizers.exponential_decay(0.5, n_steps, 0.02)
    )

    def step(carry, i):
        state, best_u, best_v = carry
        u = get_params(state)
        v, g = value_and_grad(u, xg)
        better = v > best_v  # False for NaN
        best_u = jnp.where(better[:, None], u, best_u)
        best_v = jnp.where(better, v, best_v)
        g = jnp.where(jnp.isfinite(g), g, 0.0)
        return (opt_update(i, -g, state), best_u, best_v), None

    start = (opt_init(u0), u0, jax.vmap(log_t)(u0, xg))
    (_, u, v), _ = jax.lax.scan(step, start, jnp.arange(n_steps))
    neg_hessian = -jax.vmap(jax.hessian(log_t))(u, xg)
    lam = jnp.maximum(jnp.linalg.eigvalsh(neg_hessian), _MIN_CURVATURE)
    lam = jnp.where(jnp.isfinite(lam), lam, _MIN_CURVATURE)
    log_mass = v + 0.5 * jnp.sum(jnp.log(2.0 * jnp.pi / lam), axis=-1)
    return u, log_mass


def _mode_spread(density, candidates: np.ndarray, k: int, n_chains: int, n_steps: int):
    """``k`` start points in modes as far apart as found: the points that ``candidates`` (finite
    log target) climb to.

    A chain starts at the top of its mode rather than at the candidate: from a candidate in the
    steep flank of a narrow mode, the first NUTS trajectories (before the step size adapts) can
    jump into another mode. The candidates are cycled or cut to ``TRIES_PER_ROUND * n_chains``
    rows, one compiled shape per chain count. On a space without continuous coordinates nothing
    climbs, and each candidate's own log target stands in for its mass.
    """
    geo = _geometry(density.dims)
    x = np.resize(candidates, (TRIES_PER_ROUND * n_chains, geo.d))
    xg = x[:, np.array(geo.grid, dtype=int)]
    if geo.continuous:
        u, log_mass = (np.asarray(a) for a in _climb(density, jnp.asarray(x), n_steps))
    else:
        u, log_mass = np.zeros((x.shape[0], 0)), np.asarray(_start_log_target(density, x)[1])
    # Grid coordinates enter the distance as index / (n - 1), stretched to the width of the
    # dispersed starts in u, so that a categorical switch counts as much as a far continuous move.
    index = [
        (xg[:, i] - _grid_of(geo.dims[j])[0])
        / (_grid_of(geo.dims[j])[2] * max(1, _grid_of(geo.dims[j])[3] - 1))
        for i, j in enumerate(geo.grid)
    ]
    points = np.column_stack([u, *(2 * _INIT_HALF_WIDTH * c for c in index)])
    log_mass = np.where(np.isfinite(log_mass), log_mass, -np.inf)
    tops = _assemble(geo, _constrain(geo, jnp.asarray(u))[0], jnp.asarray(xg))
    return np.asarray(tops)[_spread_starts(points, log_mass, k)]


def _spread_starts(points: np.ndarray, log_mass: np.ndarray, k: int) -> np.ndarray:
    """Indices of ``k`` rows of ``points`` (modes found by :func:`_climb`, as ``(u, grid
    index / n)``): the heaviest first, then each time the eligible row farthest from those
    chosen, where eligible means a log mass within ``log(1 / MODE_MASS_RATIO)`` of the heaviest.
    """
    top = log_mass.max()
    eligible = np.flatnonzero(
        log_mass >= top - math.log(1.0 / MODE_MASS_RATIO) if np.isfinite(top) else log_mass == top
    )
    chosen = [int(eligible[np.argmax(log_mass[eligible])])]
    nearest = np.linalg.norm(points[eligible] - points[chosen[0]], axis=1)
    for _ in range(k - 1):
        i = int(np.argmax(nearest))
        chosen.append(int(eligible[i]))
        nearest = np.minimum(
            nearest, np.linalg.norm(points[eligible] - points[eligible[i]], axis=1)
        )
    return np.array(chosen)


# ---------------------------------------------------------------------------------------------
# Diagnostics
# ---------------------------------------------------------------------------------------------


def _diagnostics(chains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split R-hat and ESS per coordinate of ``(n_chains, n_draws, d)`` draws, never NaN.

    A coordinate with zero within-chain variance (it never moved) has R-hat 1 and ESS equal to the
    number of draws if all chains agree on its value, and R-hat ``inf``, ESS 1 otherwise.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        r_hat = np.asarray(split_gelman_rubin(chains), dtype=float)
        ess = np.asarray(effective_sample_size(chains), dtype=float)
    total = chains.shape[0] * chains.shape[1]
    frozen = np.all(chains == chains[:, :1], axis=1)  # (n_chains, d): constant within a chain
    stuck = frozen.all(axis=0)
    agree = np.all(chains == chains[:1, :1], axis=(0, 1))
    r_hat = np.where(stuck, np.where(agree, 1.0, np.inf), r_hat)
    ess = np.where(stuck, np.where(agree, float(total), 1.0), ess)
    # Split halves of a moving chain can still be constant: R-hat's variances are then 0 or inf.
    r_hat = np.where(np.isnan(r_hat), np.inf, r_hat)
    ess = np.where(np.isnan(ess), 1.0, ess)
    return r_hat, ess


def _problems(geo, r_hat, ess, n_divergent, n_total, threshold) -> list[str]:
    out = []
    for j in np.flatnonzero(~(r_hat <= threshold)):
        out.append(
            f"coordinate {j} ({geo.dims[j].kind}): R-hat {r_hat[j]:.4g} > {threshold} "
            f"(ESS {ess[j]:.0f} of {n_total} draws). The chains (or the halves of a chain) "
            "disagree: stuck in different modes, or too short to have mixed; the pooled draws "
            "do not represent the target"
        )
    if n_divergent:
        out.append(
            f"{n_divergent} divergent NUTS/HMC transitions after warm-up: the step size cannot "
            "follow the target everywhere (sharp or -inf regions); the draws may be biased"
        )
    return out


# ---------------------------------------------------------------------------------------------
# Public entry
# ---------------------------------------------------------------------------------------------


def _check_density(density) -> tuple[Dim, ...]:
    if not (hasattr(density, "dims") and callable(getattr(density, "unnormalized_log_prob", None))):
        raise ValueError(
            f"density must have dims and unnormalized_log_prob, got {type(density).__name__}"
        )
    if jax.tree_util.all_leaves([density]):
        raise ValueError(
            f"density must be a JAX pytree (a registered dataclass) so that it can be an argument "
            f"of the compiled sampler, got {type(density).__name__}"
        )
    return tuple(density.dims)


def mcmc_sample(
    density,
    key: jax.Array,
    n: int,
    *,
    n_chains: int = 4,
    n_warmup: int = 500,
    algorithm: str = "nuts",
    init=None,
    init_proposal=None,
    max_init_tries: int = 100,
    mode_search_steps: int = MODE_SEARCH_STEPS,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
    r_hat_threshold: float = 1.01,
    chain_method: str = "vectorized",
) -> MCMCResult:
    """``n`` draws of ``pi ∝ exp(density.unnormalized_log_prob)`` by NUTS/HMC within Gibbs.

    Args:
      density: a pytree with ``dims`` and ``unnormalized_log_prob``, the target up to ``Z``.
      key: a ``jax.random`` key.
      n: the number of draws returned, pooled over chains; each chain keeps
        ``ceil(n / n_chains) >= 4`` draws after warm-up.
      n_chains: independent chains, all run in one compiled call (see ``chain_method``).
      n_warmup: warm-up iterations per chain (adapting step size and diagonal mass matrix),
        discarded.
      algorithm: ``"nuts"`` or ``"hmc"`` (trajectory length ``2 pi``) for continuous coordinates.
      init: starting points ``(n_chains, d)`` (or one ``(d,)`` for all chains). A row whose
        log-density is ``-inf`` is replaced by a drawn start, with a ``UserWarning``.
      init_proposal: a density with ``sample(key, n)`` on the same ``dims`` to draw starts from.
        By default: uniform on bounded continuous coordinates and on grids, ``T(U(-2, 2))`` on
        continuous coordinates with an infinite end.
      max_init_tries: start candidates drawn per chain at most; if all have log-density ``-inf``,
        a ``ValueError`` says so.
      mode_search_steps: gradient-ascent steps by which the drawn start candidates climb to their
        modes; the chains then start from candidates of distinct modes of non-negligible mass,
        the heaviest first (see the module docstring). 0 takes the first finite candidate per
        chain instead.
      target_accept_prob: the acceptance probability that step-size adaptation aims at.
      max_tree_depth: the NUTS tree depth limit (``2^depth`` gradient steps per transition).
      r_hat_threshold: the chains count as converged when every split R-hat is at most this.
      chain_method: ``"vectorized"`` runs the chains in lockstep (``vmap``: each NUTS transition
        costs the deepest tree of any chain, but the steps are batched); ``"sequential"`` runs
        them one after the other (``lax.map``), which compiles about twice as fast.

    Returns:
      An :class:`MCMCResult`. When it is not ``converged`` an :class:`MCMCNotConverged` warning
      is issued as well, naming each coordinate whose R-hat is too high.
    """
    require_x64("mcmc_sample")
    dims = _check_density(density)
    if not dims:
        raise ValueError("density has no coordinates (dims is empty)")
    key = prng_key("key", key)
    n_chains = integer("n_chains", n_chains, minimum=1)
    if not (is_int(n) and int(n) >= 4 * n_chains):
        raise ValueError(
            f"n must be an int >= 4 * n_chains = {4 * n_chains} (split R-hat needs 4 draws per "
            f"chain), got {n!r}"
        )
    n = int(n)
    n_warmup = integer("n_warmup", n_warmup, minimum=0)
    max_init_tries = integer("max_init_tries", max_init_tries, minimum=1)
    mode_search_steps = integer("mode_search_steps", mode_search_steps, minimum=0)
    max_tree_depth = integer("max_tree_depth", max_tree_depth, minimum=1, maximum=30)
    if algorithm not in ALGORITHMS:
        raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {algorithm!r}")
    if chain_method not in CHAIN_METHODS:
        raise ValueError(f"chain_method must be one of {CHAIN_METHODS}, got {chain_method!r}")
    if not (is_real(target_accept_prob) and 0.0 < float(target_accept_prob) < 1.0):
        raise ValueError(
            f"target_accept_prob must be a number in (0, 1), got {target_accept_prob!r}"
        )
    if not (is_real(r_hat_threshold) and float(r_hat_threshold) >= 1.0):
        raise ValueError(f"r_hat_threshold must be a number >= 1, got {r_hat_threshold!r}")
    if init_proposal is not None:
        if not callable(getattr(init_proposal, "sample", None)):
            raise ValueError(
                f"init_proposal must have sample(key, n), got {type(init_proposal).__name__}"
            )
        if tuple(getattr(init_proposal, "dims", ())) != dims:
            raise ValueError(
                f"init_proposal lives on {getattr(init_proposal, 'dims', None)}, "
                f"the density on {dims}"
            )
    if init is not None:
        init = _check_init(init, dims, n_chains)

    key_init, key_run = jax.random.split(key)
    notes: list[str] = []
    x0, tries = _find_starts(
        density, key_init, n_chains, max_init_tries, init, init_proposal, mode_search_steps, notes
    )
    n_per_chain = -(-n // n_chains)
    out = _run_chains(
        density,
        key_run,
        jnp.asarray(x0),
        jnp.asarray(float(target_accept_prob)),
        n_samples=n_per_chain,
        n_warmup=n_warmup,
        algorithm=algorithm,
        max_tree_depth=max_tree_depth,
        chain_method=chain_method,
    )
    out = jax.tree.map(np.asarray, out)
    chains = out.x
    if not np.all(np.isfinite(chains)):
        raise RuntimeError("the chains produced non-finite draws; this is a bug in the sampler")
    geo = _geometry(dims)
    r_hat, ess = _diagnostics(chains)
    n_divergent = int(out.n_divergent.sum())
    problems = _problems(
        geo, r_hat, ess, n_divergent, chains.shape[0] * chains.shape[1], float(r_hat_threshold)
    )
    if problems:
        warnings.warn(MCMCNotConverged("; ".join(problems)), stacklevel=2)
    samples = np.swapaxes(chains, 0, 1).reshape(-1, len(dims))[:n]
    return MCMCResult(
        samples=samples,
        chains=chains,
        r_hat=r_hat,
        ess=ess,
        n_divergent=n_divergent,
        hmc_acceptance_rate=out.hmc_acceptance if geo.continuous else np.zeros((0,)),
        gibbs_acceptance_rate=out.gibbs_acceptance,
        step_size=out.step_size if geo.continuous else np.zeros((0,)),
        n_init_tries=tries,
        converged=not problems,
        warnings=tuple(notes + problems),
    )
