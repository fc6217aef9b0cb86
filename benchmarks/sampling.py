"""Sampling fused densities: effective samples per second of every fusion sampler, numpyro and blackjax.

Three fused targets on the box ``[-12, 12]^5`` (5 continuous coordinates), built from
product-kernel mixtures (truncated normal kernels, the TPE shape) and the pools of
:mod:`fusion.combine` (:func:`targets`):

* **geometric**: ``p^0.5 q^0.5`` of two overlapping mixtures, ``p`` with 3 kernels (weights 0.5,
  0.3, 0.2) and ``q`` with 4 (0.4, 0.3, 0.2, 0.1), means uniform on ``[-2, 2]^5`` and scales
  uniform on ``[1, 2]`` (NumPy seed 0). Its ``Z``, the AM-GM acceptance rate, is about 0.6.
* **product**: ``p q`` of the same two mixtures, normalized in closed form
  (:func:`fusion.normalize.closed_form`: a mixture of the 12 kernel pairs).
* **bimodal**: ``p_b^0.5 q_b^0.5`` with ``p_b`` two kernels at ``-3`` and ``+3`` (every
  coordinate), scale 0.8, weights 0.5/0.5, and ``q_b`` two kernels at ``-2.5`` and ``+2.5``, scale
  1, weights 0.3/0.7. The two modes are about 15 of the pool's standard deviations apart; the mode
  at ``-3`` holds about 40% of the mass.

The samplers, each on every target where it applies:

* ``exact``: the front door ``sample(target, key, n, "exact")`` (closed form built on every call),
  and the prebuilt closed form's own ``.sample(key, n)``; only the product has a closed form.
* ``rejection``: the front door ``sample(target, key, n, "rejection")`` (AM-GM envelope, ``M = 1``,
  on the geometric pools; ``M = sup q`` on the product), with its defaults (a first round of 1024
  proposals, then rounds sized by the acceptance rate so far), and with a fixed
  ``batch_size=1024`` (``max_rounds`` raised so that it finishes), which shows the cost of a round;
  and one jitted :func:`fusion.rejection.amgm_round` of a large batch, the raw kernel. On the
  product (acceptance about 0.02) ``n`` is cut so that a call proposes about 2^19 points.
* ``importance``: ``sample(target, key, n, "importance")`` with its defaults (the linear pool of
  the pooled densities as proposal, ``4 n`` proposals, systematic resampling).
* ``mcmc``: fusion's :func:`fusion.mcmc.mcmc_sample` (NUTS through numpyro's functional kernel,
  compiled once per shape), 4 chains, 500 warm-up iterations, 1000 draws per chain.
* numpyro as users call it: ``MCMC(NUTS(potential_fn=...), num_warmup=500, num_samples=1000,
  num_chains=4, progress_bar=False).run(key, init_params=...)``, a fresh ``MCMC`` per call, which
  traces and compiles again every time; ``chain_method`` stays at its default (``"parallel"``,
  which numpyro turns into sequential chains on a single CPU device).
* blackjax NUTS (if ``import blackjax`` works; a benchmark-only comparison, fusion does not depend
  on it): ``window_adaptation`` (500 steps) then 1000 NUTS steps per chain, 4 chains under
  ``vmap``, the whole run one jitted function of the density, timed after compilation.

numpyro and blackjax sample the same unconstrained target fusion's ``mcmc`` builds: ``x =
low + (high - low) sigmoid(u)`` per coordinate and ``log p~(x(u)) + log |dx/du|``, from the same
kind of start (uniform on the box), and their draws are mapped back to ``x``.

How ESS is counted:

* exact and rejection: ``n``, the draws are independent and exact;
* importance: Kish's ``(sum w)^2 / sum w^2`` of the ``4 n`` proposal weights (it can exceed ``n``).
  The ``n`` resampled draws repeat proposals, so they hold at most ``min(n, ESS)`` effective draws;
  the number of distinct draws is reported too;
* MCMC (all three): the smallest over the 5 coordinates of
  ``numpyro.diagnostics.effective_sample_size`` of the chains ``(4, 1000, 5)``, after warm-up.

ESS/s is that ESS over the median wall time of a call (warm-up iterations included for MCMC).
*Samples/s* is draws returned per second. The ratio column divides each ESS/s by the ESS/s of
numpyro's ``MCMC.run`` on the same target. A check column compares the draws with a reference of
``2^18`` exact draws (AM-GM rejection for the geometric pools, the closed form for the product):
the largest ``|mean_j - mean_ref_j| / sd_ref_j``, and on the bimodal target the share of draws in
the mode at ``-3``.

Timing: ``time.perf_counter`` around the call, blocking on the results (all samplers return NumPy
arrays, or are converted with ``np.asarray``); a warm-up call first (it compiles), then the median of
the repeats: 9 for the independent samplers, 5 for fusion's and blackjax's MCMC. numpyro's
``MCMC.run`` compiles on every call, so it gets no warm-up call: the median of 2 calls, the first
of which is also *first call*. *First call* is the warm-up; fusion's ``mcmc`` and the blackjax
function take the density as an argument, so the targets after the first reuse their compiled
code. XLA compilations during the timed calls are counted per call. The machine is shared and
noisy: compare ratios within one run.

Writes ``benchmarks/results/sampling.md`` (``--out``) and prints it.

Run from the repository root: ``.venv/bin/python benchmarks/sampling.py`` (2.5 minutes on 2
quiet cores, 5 when other work shares them; most of it is compilation, numpyro's above all). Options: ``[--repeats N] [--quick] [--targets NAME ...]
[--out FILE]``; ``--quick`` takes tiny settings (one chain, 50 + 100 iterations, 2^11 draws) and
one timed call, for the smoke test.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import itertools
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _timing import CompileCounter, run_summary, write_report
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin
from numpyro.infer import MCMC, NUTS

from fusion import normalize
from fusion.combine import geometric, product
from fusion.density import mixture
from fusion.mcmc import mcmc_sample
from fusion.rejection import amgm_rejection_sample, amgm_round
from fusion.sample import sample
from fusion.space import CONTINUOUS, Dim

jax.config.update("jax_enable_x64", True)

HERE = Path(__file__).resolve().parent
D = 5
BOX = (-12.0, 12.0)
BASELINE = "numpyro `MCMC.run`"
SAMPLES_TARGET = 1e6  # exact and rejection draws per second wanted on geometric pools
NUTS_FACTOR = 50  # ... and this many times the best NUTS ESS/s
NUTS_METHODS = ("fusion `mcmc_sample`", BASELINE, "blackjax NUTS")
TARGETS = ("geometric", "product", "bimodal")
IID_METHODS = ("exact", "exact, prebuilt closed form", "rejection", "rejection, batch 1024",
               "AM-GM round, jitted")  # fmt: skip


@dataclass(frozen=True)
class Settings:
    n: int  # draws per call of the independent samplers
    ref_draws: int  # exact reference draws for the check column
    ref_batch: int  # AM-GM batch size of those reference draws
    proposal_budget: int  # at most this many rejection proposals per call (n shrinks to fit)
    n_chains: int
    n_warmup: int
    n_per_chain: int
    repeats: int  # timed calls of the independent samplers
    mcmc_repeats: int  # timed calls of fusion's and blackjax's MCMC
    numpyro_repeats: int  # timed calls of numpyro's MCMC.run, without a warm-up call


FULL = Settings(
    n=2**16,
    ref_draws=2**18,
    ref_batch=2**16,
    proposal_budget=2**19,
    n_chains=4,
    n_warmup=500,
    n_per_chain=1000,
    repeats=9,
    mcmc_repeats=5,
    numpyro_repeats=2,
)
# One chain: numpyro runs chains one after the other and compiles once for each.
QUICK = Settings(
    n=2**11,
    ref_draws=2**13,
    ref_batch=2**10,
    proposal_budget=2**14,
    n_chains=1,
    n_warmup=50,
    n_per_chain=100,
    repeats=1,
    mcmc_repeats=1,
    numpyro_repeats=1,
)


# ---------------------------------------------------------------------------------------------
# The targets, and the exact reference draws the checks compare with
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    density: object  # a LogLinearPool
    description: str
    bimodal: bool = False


def targets() -> list[Target]:
    dims = tuple(Dim(CONTINUOUS, *BOX) for _ in range(D))
    rng = np.random.default_rng(0)

    def mix(weights, mu, sigma):
        return mixture(dims, weights, mu, sigma, min_kernels=4)

    p = mix([0.5, 0.3, 0.2], rng.uniform(-2, 2, (3, D)), rng.uniform(1, 2, (3, D)))
    q = mix([0.4, 0.3, 0.2, 0.1], rng.uniform(-2, 2, (4, D)), rng.uniform(1, 2, (4, D)))
    one = np.ones(D)
    p_b = mix([0.5, 0.5], np.stack([-3 * one, 3 * one]), np.full((2, D), 0.8))
    q_b = mix([0.3, 0.7], np.stack([-2.5 * one, 2.5 * one]), np.full((2, D), 1.0))
    return [
        Target("geometric", geometric(p, q, 0.5),
               "`geometric(p, q, 0.5)`: p 3 kernels, q 4 kernels, overlapping"),
        Target("product", product(p, q), "`product(p, q)`: the same p and q, closed form"),
        Target("bimodal", geometric(p_b, q_b, 0.5),
               "`geometric(p_b, q_b, 0.5)`: two modes at -3 and +3 (every coordinate)",
               bimodal=True),
    ]  # fmt: skip


@dataclass(frozen=True)
class Reference:
    mean: np.ndarray
    sd: np.ndarray
    mode_share: float  # share of draws whose coordinates average below 0


def mode_share(x: np.ndarray) -> float:
    return float(np.mean(np.mean(x, axis=1) < 0))


def reference(t: Target, s: Settings) -> Reference:
    key = jax.random.key(10**6)
    if t.name == "product":
        x = np.asarray(normalize.closed_form(t.density).density.sample(key, s.ref_draws))
    else:
        x = amgm_rejection_sample(t.density, key, s.ref_draws, batch_size=s.ref_batch,
                                  max_rounds=10**6).samples  # fmt: skip
    return Reference(x.mean(axis=0), x.std(axis=0), mode_share(x))


def check(t: Target, ref: Reference, x: np.ndarray) -> str:
    err = float(np.max(np.abs(x.mean(axis=0) - ref.mean) / ref.sd))
    out = f"mean err {err:.3f}"
    if t.bimodal:
        out += f", mode share {mode_share(x):.3f} (exact {ref.mode_share:.3f})"
    return out


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What one call gives: its draws (``(n, d)``), their ESS, and a diagnostics text."""

    draws: np.ndarray
    ess: float
    diagnostics: str


@dataclass(frozen=True)
class Row:
    target: str
    method: str
    settings: str
    outcome: Outcome | None = None  # the last timed call; None: the method does not apply
    ess: float = math.nan  # median over the timed calls
    n_draws: float = math.nan  # median over the timed calls
    first: float = math.nan  # seconds, the warm-up call
    median: float = math.nan  # seconds, median of the timed calls
    compiles_per_call: float = math.nan
    check: str = ""

    @property
    def ess_per_s(self) -> float:
        return self.ess / self.median

    @property
    def samples_per_s(self) -> float:
        return self.n_draws / self.median


def run_row(t: Target, ref: Reference, method: str, settings: str,
            fn: Callable[[jax.Array], Outcome], repeats: int, warm_up: bool = True) -> Row:  # fmt: skip
    """A warm-up call, then ``repeats`` timed ones, each with a fresh key. Without ``warm_up``
    (for a sampler that compiles on every call anyway) the first timed call is *first call*."""
    keys = (jax.random.key(i) for i in itertools.count())
    with warnings.catch_warnings():
        # numpyro's "not enough devices" and fusion's MCMCNotConverged on the bimodal target:
        # the table reports R-hat instead.
        warnings.simplefilter("ignore")
        if warm_up:
            start = time.perf_counter()
            fn(next(keys))
            first = time.perf_counter() - start
        times, outcomes = [], []
        with CompileCounter() as compiles:
            for _ in range(repeats):
                key = next(keys)
                start = time.perf_counter()
                outcomes.append(fn(key))
                times.append(time.perf_counter() - start)
        if not warm_up:
            first = times[0]
    last = outcomes[-1]
    row = Row(
        t.name, method, settings, last,
        ess=float(np.median([o.ess for o in outcomes])),
        n_draws=float(np.median([len(o.draws) for o in outcomes])),
        first=first, median=float(np.median(times)),
        compiles_per_call=compiles.count / repeats, check=check(t, ref, last.draws),
    )  # fmt: skip
    print(f"{t.name} | {method}: {row.median:.4g} s, ESS {row.ess:.0f}, "
          f"ESS/s {row.ess_per_s:.4g}, {last.diagnostics}", flush=True)  # fmt: skip
    return row


def not_applicable(t: Target, method: str, why: str) -> Row:
    return Row(t.name, method, why)


# ---------------------------------------------------------------------------------------------
# fusion's independent samplers
# ---------------------------------------------------------------------------------------------


def pow2_at_least(x: float) -> int:
    return 2 ** max(0, math.ceil(math.log2(max(x, 1.0))))


def pilot_acceptance(t: Target) -> float:
    return sample(t.density, jax.random.key(999), 1024, "rejection").diagnostics.acceptance_rate


def exact_rows(t: Target, ref: Reference, s: Settings, repeats: int) -> list[Row]:
    if t.name != "product":
        why = "does not apply: a geometric pool of multi-kernel mixtures has no closed form"
        return [not_applicable(t, "exact", why)]

    def front(key):
        r = sample(t.density, key, s.n, "exact")
        return Outcome(r.samples, float(len(r.samples)), "independent, exact")

    closed = normalize.closed_form(t.density).density

    def prebuilt(key):
        x = np.asarray(closed.sample(key, s.n))
        return Outcome(x, float(len(x)), "independent, exact")

    k = int(np.sum(np.isfinite(np.asarray(closed.log_weights))))
    return [
        run_row(t, ref, "exact", "`sample(..., \"exact\")`: closed form built per call", front,
                repeats),
        run_row(t, ref, "exact, prebuilt closed form",
                f"`closed_form(pool).density.sample`: {k}-kernel mixture", prebuilt, repeats),
    ]  # fmt: skip


def rejection_rows(t: Target, ref: Reference, s: Settings, repeats: int) -> list[Row]:
    acc = pilot_acceptance(t)
    n = max(64, min(s.n, int(acc * s.proposal_budget)))
    envelope = "AM-GM, M = 1" if t.name != "product" else "M = sup of the linear pool"

    def front(options):
        def fn(key):
            r = sample(t.density, key, n, "rejection", options={"rejection": options})
            d = r.diagnostics
            return Outcome(
                r.samples,
                float(len(r.samples)),
                f"acceptance {d.acceptance_rate:.3f}, {d.n_proposed} proposals",
            )

        return fn  # fmt: skip

    rows = [
        run_row(t, ref, "rejection", f"`sample(..., \"rejection\")`, defaults: {envelope}; "
                "1024 proposals, then rounds sized by the acceptance so far", front({}), repeats),
        run_row(t, ref, "rejection, batch 1024", "same, fixed batch_size=1024, max_rounds raised",
                front({"batch_size": 1024, "max_rounds": 10**6}), repeats),
    ]  # fmt: skip
    if t.name == "product":
        why = "does not apply: the exponents sum to 2 (`amgm_round` needs a sum of 1)"
        return [*rows, not_applicable(t, "AM-GM round, jitted", why)]
    big = pow2_at_least(s.n / acc)
    one_round = jax.jit(amgm_round, static_argnums=2)

    def raw(key):
        x, ok, _ = jax.block_until_ready(one_round(t.density, key, big))
        ok = np.asarray(ok)
        return Outcome(np.asarray(x)[ok], float(ok.sum()), f"acceptance {ok.mean():.3f}")

    rows.append(
        run_row(
            t,
            ref,
            "AM-GM round, jitted",
            f"one `amgm_round` of 2^{int(math.log2(big))} proposals",
            raw,
            repeats,
        )
    )
    return rows  # fmt: skip


def importance_row(t: Target, ref: Reference, s: Settings, repeats: int) -> Row:
    def fn(key):
        r = sample(t.density, key, s.n, "importance")
        d = r.diagnostics
        distinct = len(np.unique(np.asarray(d.indices)))
        return Outcome(
            r.samples,
            float(d.ess),
            f"Kish ESS / proposals {d.ess_fraction:.3f}, {distinct} distinct draws",
        )

    return run_row(t, ref, "importance", f"`sample(..., \"importance\")`, defaults: "
                   f"{4 * s.n} proposals from the linear pool", fn, repeats)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# MCMC: fusion, numpyro as users run it, blackjax
# ---------------------------------------------------------------------------------------------


def chain_stats(chains: np.ndarray) -> tuple[float, float]:
    """Smallest ESS and largest split R-hat over coordinates of ``(chains, draws, d)``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ess = np.asarray(effective_sample_size(chains), dtype=float)
        r_hat = np.asarray(split_gelman_rubin(chains), dtype=float)
    return float(np.nanmin(ess)), float(np.nanmax(r_hat))


def mcmc_outcome(chains: np.ndarray, n_divergent: int) -> Outcome:
    ess, r_hat = chain_stats(chains)
    draws = np.swapaxes(chains, 0, 1).reshape(-1, chains.shape[-1])
    return Outcome(draws, ess, f"max R-hat {r_hat:.3f}, {n_divergent} divergent")


def box_bounds(density) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([d.low for d in density.dims]), np.array([d.high for d in density.dims]))


def to_box(density, u):
    low, high = box_bounds(density)
    return low + (high - low) * jax.nn.sigmoid(u)


def log_target_u(density, u):
    """``log p~(x(u)) + log |dx/du|`` at one unconstrained point ``u`` ``(d,)``."""
    low, high = box_bounds(density)
    x = low + (high - low) * jax.nn.sigmoid(u)
    log_jac = jnp.sum(jnp.log(high - low) + jax.nn.log_sigmoid(u) + jax.nn.log_sigmoid(-u))
    return density.unnormalized_log_prob(x[None, :])[0] + log_jac


def dispersed_starts(density, key, n_chains: int) -> jax.Array:
    """Uniform on the box, as fusion's ``mcmc`` starts, in unconstrained coordinates."""
    v = jax.random.uniform(key, (n_chains, len(density.dims)), minval=1e-6, maxval=1 - 1e-6)
    return jnp.log(v) - jnp.log1p(-v)


def mcmc_label(s: Settings) -> str:
    return f"{s.n_chains} chains, {s.n_warmup} warm-up + {s.n_per_chain} draws each"


def fusion_mcmc_row(t: Target, ref: Reference, s: Settings, repeats: int) -> Row:
    def fn(key):
        r = mcmc_sample(t.density, key, s.n_chains * s.n_per_chain, n_chains=s.n_chains,
                        n_warmup=s.n_warmup)  # fmt: skip
        return mcmc_outcome(r.chains, r.n_divergent)

    return run_row(t, ref, "fusion `mcmc_sample`", f"{mcmc_label(s)}, defaults (vectorized)", fn,
                   repeats)  # fmt: skip


def numpyro_row(t: Target, ref: Reference, s: Settings, repeats: int) -> Row:
    def fn(key):
        key_init, key_run = jax.random.split(key)
        kernel = NUTS(potential_fn=lambda u: -log_target_u(t.density, u))
        mc = MCMC(kernel, num_warmup=s.n_warmup, num_samples=s.n_per_chain,
                  num_chains=s.n_chains, progress_bar=False)  # fmt: skip
        u0 = dispersed_starts(t.density, key_init, s.n_chains)
        mc.run(key_run, init_params=u0 if s.n_chains > 1 else u0[0])  # one chain: no chain axis
        chains = np.asarray(to_box(t.density, mc.get_samples(group_by_chain=True)))
        n_divergent = int(np.sum(np.asarray(mc.get_extra_fields()["diverging"])))
        return mcmc_outcome(chains, n_divergent)

    return run_row(t, ref, BASELINE, f"{mcmc_label(s)}, fresh `MCMC` per call, default "
                   "chain_method (sequential on one CPU device), no progress bar", fn,
                   repeats, warm_up=False)  # fmt: skip


def blackjax_module():
    try:
        return importlib.import_module("blackjax")
    except ImportError:
        return None


@functools.partial(jax.jit, static_argnames=("n_warmup", "n_samples"))
def blackjax_nuts(density, key, u0, *, n_warmup: int, n_samples: int):
    """blackjax's window adaptation then NUTS, one chain per row of ``u0`` (under ``vmap``);
    the draws mapped back to the box, and the number of divergent transitions."""
    blackjax = blackjax_module()
    from blackjax.adaptation.base import get_filter_adapt_info_fn

    def logdensity(u):
        return log_target_u(density, u)

    def one_chain(key, u):
        key_warm, key_draw = jax.random.split(key)
        warmup = blackjax.window_adaptation(
            blackjax.nuts, logdensity, adaptation_info_fn=get_filter_adapt_info_fn()
        )
        (state, params), _ = warmup.run(key_warm, u, num_steps=n_warmup)
        nuts = blackjax.nuts(logdensity, **params)

        def step(state, key):
            state, info = nuts.step(key, state)
            return state, (state.position, info.is_divergent)

        _, (u_draws, divergent) = jax.lax.scan(step, state, jax.random.split(key_draw, n_samples))
        return u_draws, jnp.sum(divergent)

    keys = jax.random.split(key, u0.shape[0])
    u_draws, divergent = jax.vmap(one_chain)(keys, u0)
    return to_box(density, u_draws), jnp.sum(divergent)


def blackjax_row(t: Target, ref: Reference, s: Settings, repeats: int) -> Row:
    blackjax = blackjax_module()
    if blackjax is None:
        return not_applicable(t, "blackjax NUTS", "not installed")

    def fn(key):
        key_init, key_run = jax.random.split(key)
        u0 = dispersed_starts(t.density, key_init, s.n_chains)
        chains, divergent = blackjax_nuts(t.density, key_run, u0, n_warmup=s.n_warmup,
                                          n_samples=s.n_per_chain)  # fmt: skip
        return mcmc_outcome(np.asarray(chains), int(divergent))

    return run_row(t, ref, "blackjax NUTS", f"{mcmc_label(s)}, `window_adaptation`, chains under "
                   f"`vmap`, one jitted run (blackjax {blackjax.__version__})", fn,
                   repeats)  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def fmt(v: float) -> str:
    """Three significant digits, with k and M for thousands and millions."""
    if not math.isfinite(v):
        return ""
    for scale, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.3g}{suffix}"
    return f"{v:.3g}"


def seconds(v: float) -> str:
    """Three significant digits (whole seconds from 100 s on), never rounded to 0."""
    return "" if not math.isfinite(v) else (f"{v:.3g}" if v < 100 else f"{v:.0f}")


def table(rows: list[Row]) -> list[str]:
    base = {r.target: r.ess_per_s for r in rows if r.method == BASELINE and r.outcome}
    lines = [
        "| target | method | settings | n draws | ESS | time (s) | first call (s) | ESS/s "
        "| samples/s | ESS/s / numpyro `MCMC.run` | compiles per call | diagnostics | check |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.outcome is None:
            lines.append(f"| {r.target} | {r.method} | {r.settings} | | | | | | | | | | |")
            continue
        ratio = r.ess_per_s / base[r.target] if r.target in base else math.nan
        lines.append(
            f"| {r.target} | {r.method} | {r.settings} | {r.n_draws:.0f} | {r.ess:.0f} "
            f"| {seconds(r.median)} | {seconds(r.first)} | {fmt(r.ess_per_s)} "
            f"| {fmt(r.samples_per_s)} | {fmt(ratio)} | {r.compiles_per_call:.2g} "
            f"| {r.outcome.diagnostics} | {r.check} |"
        )
    return lines


def verdicts(rows: list[Row]) -> list[str]:
    """The project's targets: exact and rejection draws >= 1M/s on geometric pools, and ESS/s
    >= 50x the best NUTS ESS/s of the run (any target, any of the three NUTS samplers)."""
    nuts = [r for r in rows if r.method in NUTS_METHODS and r.outcome is not None]
    best = max(nuts, key=lambda r: r.ess_per_s, default=None)
    lines = []
    if best is not None:
        lines.append(f"Best NUTS figure of the run: {fmt(best.ess_per_s)} ESS/s ({best.method}, "
                     f"{best.target} target).")  # fmt: skip
        lines.append("")
    for r in rows:
        if r.method not in IID_METHODS or r.outcome is None:
            continue
        fast = r.samples_per_s >= SAMPLES_TARGET
        text = (f"- {r.target}, {r.method}: {fmt(r.samples_per_s)} samples/s "
                f"(>= 1M: **{'met' if fast else 'missed'}**)")  # fmt: skip
        if best is not None:
            factor = r.ess_per_s / best.ess_per_s
            text += (
                f"; ESS/s {factor:.3g}x the best NUTS "
                f"(>= {NUTS_FACTOR}x: **{'met' if factor >= NUTS_FACTOR else 'missed'}**)"
            )
        lines.append(text + ".")
    return lines


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help=f"timed calls of every method (default {FULL.repeats}, MCMC "
        f"{FULL.mcmc_repeats}, numpyro {FULL.numpyro_repeats})",
    )
    parser.add_argument("--quick", action="store_true", help="tiny settings, one timed call")
    parser.add_argument(
        "--targets",
        nargs="+",
        choices=TARGETS,
        default=list(TARGETS),
        help="targets to run (default: all)",
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "sampling.md")
    args = parser.parse_args(argv)  # fmt: skip
    s = QUICK if args.quick else FULL
    if args.repeats is not None:
        if args.repeats < 1:
            parser.error("--repeats must be positive")
        s = Settings(
            **{
                **s.__dict__,
                "repeats": args.repeats,
                "mcmc_repeats": args.repeats,
                "numpyro_repeats": args.repeats,
            }
        )

    start = time.perf_counter()
    rows: list[Row] = []
    with CompileCounter() as compiles:
        problems = [t for t in targets() if t.name in args.targets]
        for t in problems:
            ref = reference(t, s)
            rows += exact_rows(t, ref, s, s.repeats)
            rows += rejection_rows(t, ref, s, s.repeats)
            rows.append(importance_row(t, ref, s, s.repeats))
            rows.append(fusion_mcmc_row(t, ref, s, s.mcmc_repeats))
            rows.append(numpyro_row(t, ref, s, s.numpyro_repeats))
            rows.append(blackjax_row(t, ref, s, s.mcmc_repeats))
    have_blackjax = blackjax_module() is not None
    lines = [
        "# Sampling fused densities: effective samples per second",
        "",
        "Every sampler on the same three fused 5-D targets on `[-12, 12]^5`. Time: median of "
        f"{s.repeats} calls ({s.mcmc_repeats} for fusion's and blackjax's MCMC) after a warm-up "
        f"call; numpyro's `MCMC.run` compiles on every call, so it gets no warm-up: median of "
        f"{s.numpyro_repeats} calls. Each call has a fresh key; *first call* is the warm-up, "
        "which compiles (numpyro: its first call). The machine is shared and noisy: compare "
        "ratios within one run. *ESS/s / numpyro `MCMC.run`* divides each row's ESS/s by that "
        "of numpyro's `MCMC.run`, called fresh as users do, "
        "on the same target." + (" **Quick settings (smoke test): the figures mean little.**"
                                 if args.quick else ""),
        "",
        "Targets wanted: exact and rejection sampling >= 1M samples/s on geometric pools, and "
        f">= {NUTS_FACTOR}x the best NUTS ESS/s:",
        "",
        *verdicts(rows),
        "",
        *table(rows),
        "",
        "Targets (5 continuous coordinates, truncated normal product-kernel mixtures):",
        "",
        *(f"- **{t.name}**: {t.description}." for t in problems),
        "",
        "p: weights 0.5, 0.3, 0.2; q: weights 0.4, 0.3, 0.2, 0.1; their means uniform on "
        "`[-2, 2]^5`, their scales on `[1, 2]` (NumPy seed 0). p_b: kernels at -3 and +3 in every "
        "coordinate, scale 0.8, weights 0.5/0.5; q_b: at -2.5 and +2.5, scale 1, weights 0.3/0.7. "
        "The bimodal target's modes are about 15 of its standard deviations apart: a NUTS chain "
        "stays in the mode it starts in, so its draws carry the mode weights only through where "
        "the chains started.",
        "",
        "How ESS is counted:",
        "",
        "- exact, rejection and the AM-GM round: the number of draws (independent and exact). "
        "*n draws* of the AM-GM round is the accepted part of one batch.",
        "- importance: Kish's ESS `(sum w)^2 / sum w^2` of the weights of the `4 n` proposals; "
        "ESS/s uses it. It can exceed `n`: weighted estimates can use every proposal "
        "(`log_weights`), but the `n` resampled draws repeat proposals and hold at most "
        "`min(n, ESS)` effective draws (the diagnostics give the number of distinct draws).",
        "- MCMC (fusion, numpyro, blackjax): the smallest over coordinates of "
        "`numpyro.diagnostics.effective_sample_size` of the chains, after warm-up; the time "
        "includes warm-up. With chains stuck in different modes (bimodal), the between-chain "
        "variance makes that ESS small and R-hat large; chains that all sit in one mode would "
        "give a large ESS of wrong draws, which the *check* column shows.",
        "",
        "*Check*: the largest `|mean_j - mean_ref_j| / sd_ref_j` over coordinates of the last "
        f"call's draws, against {s.ref_draws} exact reference draws (AM-GM rejection on the "
        "geometric pools, the closed form on the product); with `ESS` effective draws it is "
        "about `2.3 / sqrt(ESS)` by chance alone. On the bimodal target, the share of draws in "
        "the mode at -3 as well.",
        "",
        "*Diagnostics* and *check* describe the last timed call; *ESS* and *n draws* are medians "
        "over the timed calls.",
        "",
        "*Compiles per call*: XLA compilations during the timed calls, per call. The front door's "
        "rejection rounds are sized by the acceptance so far, as powers of two; a call that needs "
        "a size no earlier call used compiles the round for it.",
        "",
        "numpyro and blackjax sample the unconstrained target fusion's `mcmc_sample` builds, "
        "`x = low + (high - low) sigmoid(u)`, `log p~(x(u)) + log |dx/du|`, from starts uniform "
        "on the box. numpyro's `MCMC` is built fresh and `.run` on every call, which traces "
        "and compiles the sampler again (the *compiles per call* column); numpyro falls back "
        "to sequential chains on one CPU device (the default `chain_method=\"parallel\"` needs "
        "a device per chain), and the progress bar is off. blackjax: "
        + (f"installed ({blackjax_module().__version__}), benchmark only: fusion does not "
           "depend on it (`make bench` installs it, ignoring a failure)."
           if have_blackjax
           else "**not installed** (`make bench` tries `pip install blackjax`)."),
        "",
        *run_summary(start, compiles),
    ]  # fmt: skip
    return write_report("\n".join(lines), args.out)


if __name__ == "__main__":
    main()
