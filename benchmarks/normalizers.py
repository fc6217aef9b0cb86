"""Normalizing constants of pooled densities: ``fusion.normalize`` against SciPy, error and speed.

Headline (2-D): ``Z`` of the geometric pool (``alpha = 0.5``) of two Gaussian product-kernel
mixtures (3 and 2 kernels, different means and scales) on the box ``[-10, 10]^2``. The reference
``log Z`` is ``scipy.integrate.nquad`` at ``epsabs=0, epsrel=1e-13`` on the pooled density written
out from the mixture parameters in plain Python (``math.exp``; the kernels are checked against
``scipy.stats.truncnorm`` and against fusion's ``unnormalized_log_prob``), cross-checked by a
composite Gauss-Legendre rule (16 nodes per piece, pieces cut at every kernel centre and at
1, 2, 4 and 8 scales around it). Side by side, each with the relative error of ``Z``:

* fusion ``log_normalizer(pool, "quadrature")`` with its defaults, and with tuned settings
  (:data:`TUNED`) that aim at a relative error <= 1e-8 in <= 10 ms; a small grid of
  ``n_nodes`` x ``max_points`` shows what the tuned choice trades;
* ``scipy.integrate.nquad`` at its default tolerances, on the same plain-Python integrand;
* a fixed 64 x 64 Gauss-Legendre grid on the box, evaluated by one jitted call of fusion's
  ``unnormalized_log_prob`` and a log-sum-exp;
* fusion ``qmc`` (2^12 Sobol points x 8 replicates), ``importance`` (2^14 draws) and ``mc``
  (2^14 points), with the ``std_error`` they report.

Dimensions d = 1..6: the geometric pool (``alpha = 0.5``) and the product of two d-dimensional
mixtures (3 and 2 kernels, seeded random means and scales) on ``[-10, 10]^d``, by every fusion
method that applies (``exact`` only to the product: a geometric pool of multi-kernel mixtures has
no closed form). References: the product's closed form (``exact``) at every d; for the geometric
pool, fusion ``quadrature`` with ``n_nodes=12, max_points=2^22`` at d <= 3 (a rule no row uses;
its own ``std_error`` is shown) and, at d >= 4, a long randomized-QMC importance run
(:func:`rqmc_reference`: scrambled Sobol points pushed through each kernel's inverse CDF, weighted
by ``p~ / q`` for the linear-pool proposal ``q``, 8 replicates), whose standard error is shown and
bounds what the table can resolve. That reference is itself checked where a better one exists:
against quadrature on the geometric pools at d <= 3 and against ``exact`` on the products at
d >= 4.

Timing: ``time.perf_counter`` around the call; a warm-up call first (it compiles), then the median
of ``--repeats`` calls. XLA compilations during the timed calls are counted with
:class:`_timing.CompileCounter` and reported (they should be zero). The relative error of ``Z`` is
``|exp(log Z - log Z_ref) - 1|``.

Writes ``benchmarks/results/normalizers.md`` (``--out``) and prints it.

Run from the repository root: ``.venv/bin/python benchmarks/normalizers.py`` (about 45 s on 2
cores). Options: ``[--repeats N] [--max-dim D] [--no-scan] [--ref-points N] [--out FILE]``;
``--max-dim 0`` runs the headline alone, ``--no-scan`` leaves out its grid of quadrature settings.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from _timing import CompileCounter, Timed, ms, run_summary, timed, write_report
from numpy.polynomial.legendre import leggauss
from scipy import integrate, stats
from scipy.special import ndtr, ndtri
from scipy.stats import qmc

from fusion.combine import geometric, linear_pool, product
from fusion.density import mixture
from fusion.normalize import log_normalizer
from fusion.space import CONTINUOUS, Dim

jax.config.update("jax_enable_x64", True)

HERE = Path(__file__).resolve().parent
LOW, HIGH = -10.0, 10.0
ALPHA = 0.5
TARGET_ERROR = 1e-8
TARGET_SECONDS = 0.010
TUNED = {"n_nodes": 12, "max_points": 2**14}
"""Quadrature settings for the headline pool: the grid below shows that 12 nodes per piece and a
budget of 2^14 points already put the error near 1e-10; the cost is then mostly the evaluation
chunks, which fusion pads to 8192 points."""
SCAN_NODES = (8, 10, 12, 16)
SCAN_POINTS = (2**12, 2**13, 2**14, 2**15, 2**16)
QMC = {"n_samples": 2**12, "n_replicates": 8}
IMPORTANCE = {"n_samples": 2**14}
GL_FIXED = 64
KEY = 0


@dataclass(frozen=True)
class Spec:
    """A product-kernel mixture on continuous coordinates: weights ``(K,)``, ``mu``/``sigma``
    ``(K, d)``, every kernel truncated to ``[LOW, HIGH]``."""

    weights: np.ndarray
    mu: np.ndarray
    sigma: np.ndarray

    def build(self):
        dims = (Dim(CONTINUOUS, LOW, HIGH),) * self.mu.shape[1]
        return mixture(dims, self.weights, self.mu, self.sigma)


def spec(weights, mu, sigma) -> Spec:
    w = np.asarray(weights, dtype=float)
    return Spec(w / w.sum(), np.asarray(mu, dtype=float), np.asarray(sigma, dtype=float))


HEADLINE_P = spec(
    [0.5, 0.3, 0.2], [[-2.0, 1.0], [1.5, -1.0], [3.0, 3.0]], [[1.0, 1.5], [0.7, 0.9], [2.0, 1.2]]
)
HEADLINE_Q = spec([0.6, 0.4], [[0.0, 0.0], [-3.0, 2.5]], [[2.0, 1.8], [1.2, 1.0]])


def random_specs(d: int, seed: int = 0) -> tuple[Spec, Spec]:
    """Two d-dimensional mixtures (3 and 2 kernels); ``q``'s kernels sit near two of ``p``'s."""
    rng = np.random.default_rng(seed)
    mu_p, s_p = rng.uniform(-3, 3, (3, d)), rng.uniform(0.8, 2.0, (3, d))
    mu_q, s_q = mu_p[[0, 2]] + rng.normal(0.0, 1.0, (2, d)), rng.uniform(0.8, 2.0, (2, d))
    return spec([0.5, 0.3, 0.2], mu_p, s_p), spec([0.6, 0.4], mu_q, s_q)


# ---------------------------------------------------------------------------------------------
# The pooled density outside fusion (plain Python for nquad, SciPy for the cross-check)
# ---------------------------------------------------------------------------------------------


def _scalar_terms(s: Spec) -> list[tuple[float, float, float, float, float]]:
    """Per 2-D kernel ``(c, m0, m1, a0, a1)`` with ``w N_trunc(x) N_trunc(y) = c exp(-a0 (x-m0)^2
    - a1 (y-m1)^2)``: the weight and both truncated-normal constants folded into ``c``."""
    mass = ndtr((HIGH - s.mu) / s.sigma) - ndtr((LOW - s.mu) / s.sigma)
    c = s.weights * np.prod(1.0 / (math.sqrt(2 * math.pi) * s.sigma * mass), axis=1)
    a = 1.0 / (2.0 * s.sigma**2)
    return [
        (float(c[k]), float(s.mu[k, 0]), float(s.mu[k, 1]), float(a[k, 0]), float(a[k, 1]))
        for k in range(len(c))
    ]


def scalar_pool(p: Spec, q: Spec, alpha: float) -> Callable[[float, float], float]:
    """``p(x, y)^alpha q(x, y)^(1 - alpha)`` for ``nquad`` (``f(y, x)``), in plain Python."""
    tp, tq = _scalar_terms(p), _scalar_terms(q)
    exp = math.exp

    def f(y: float, x: float) -> float:
        vp = sum(c * exp(-a0 * (x - m0) ** 2 - a1 * (y - m1) ** 2) for c, m0, m1, a0, a1 in tp)
        vq = sum(c * exp(-a0 * (x - m0) ** 2 - a1 * (y - m1) ** 2) for c, m0, m1, a0, a1 in tq)
        return vp**alpha * vq ** (1.0 - alpha)

    return f


def scipy_mixture_pdf(s: Spec, x: np.ndarray) -> np.ndarray:
    """The mixture density at points ``x`` ``(n, d)`` from ``scipy.stats.truncnorm``."""
    a, b = (LOW - s.mu) / s.sigma, (HIGH - s.mu) / s.sigma
    k = stats.truncnorm.pdf(x[:, None, :], a, b, loc=s.mu, scale=s.sigma)  # (n, K, d)
    return np.prod(k, axis=-1) @ s.weights


def composite_gauss_legendre(p: Spec, q: Spec, alpha: float, nodes: int = 16) -> float:
    """``Z`` by a tensor Gauss-Legendre rule, ``nodes`` per piece, pieces cut at every kernel
    centre of ``p``, ``q`` and of their power products, and at 1, 2, 4 and 8 scales around each
    (cuts closer than 0.05 merged)."""
    offsets = np.array([-8.0, -4.0, -2.0, -1.0, 0.0, 1.0, 2.0, 4.0, 8.0])
    t, w = leggauss(nodes)
    rules = []
    for j in range(p.mu.shape[1]):
        sp, sq = p.sigma[:, j, None] ** 2, q.sigma[None, :, j] ** 2
        tau = alpha / sp + (1 - alpha) / sq
        m = (alpha * p.mu[:, j, None] / sp + (1 - alpha) * q.mu[None, :, j] / sq) / tau
        centres = np.concatenate([p.mu[:, j], q.mu[:, j], m.ravel()])
        scales = np.concatenate([p.sigma[:, j], q.sigma[:, j], 1 / np.sqrt(tau.ravel())])
        cuts = np.clip(centres[:, None] + scales[:, None] * offsets, LOW, HIGH).ravel()
        cuts = np.unique(np.concatenate([[LOW, HIGH], cuts]))
        cuts = cuts[np.concatenate([np.diff(cuts) > 0.05, [True]])]
        cuts[0], cuts[-1] = LOW, HIGH
        lo, hi = cuts[:-1, None], cuts[1:, None]
        rules.append((((lo + hi) + (hi - lo) * t) / 2).ravel())
        rules.append(((hi - lo) / 2 * w).ravel())
    x0, w0, x1, w1 = rules
    total = 0.0
    for i in range(0, x0.size, 256):  # slabs, to bound the memory of the SciPy evaluation
        pts = np.stack(np.meshgrid(x0[i : i + 256], x1, indexing="ij"), axis=-1).reshape(-1, 2)
        vals = scipy_mixture_pdf(p, pts) ** alpha * scipy_mixture_pdf(q, pts) ** (1 - alpha)
        total += float(np.sum(vals * np.outer(w0[i : i + 256], w1).ravel()))
    return total


# ---------------------------------------------------------------------------------------------
# Timing and errors
# ---------------------------------------------------------------------------------------------


def rel_error(log_z: float, log_ref: float) -> float:
    """``|Z / Z_ref - 1|``."""
    return abs(math.expm1(log_z - log_ref))


# ---------------------------------------------------------------------------------------------
# Headline: one 2-D geometric pool
# ---------------------------------------------------------------------------------------------


def fixed_grid_rule(n: int) -> tuple[jax.Array, jax.Array]:
    t, w = leggauss(n)
    x, wx = (LOW + HIGH) / 2 + (HIGH - LOW) / 2 * t, (HIGH - LOW) / 2 * w
    pts = np.stack(np.meshgrid(x, x, indexing="ij"), axis=-1).reshape(-1, 2)
    return jnp.asarray(pts), jnp.asarray(np.log(np.outer(wx, wx)).ravel())


@jax.jit
def _fixed_grid_log_z(pool, x, log_w):
    return jax.scipy.special.logsumexp(pool.unnormalized_log_prob(x) + log_w)


def headline(
    repeats: int, figures: dict[str, float] | None = None, scan_grid: bool = True
) -> list[str]:
    """The headline section's lines; ``figures``, when given, receives its summary figures:
    ``{"tuned", "defaults", "nquad"}_{"seconds", "error"}`` (median time, relative error of Z)
    and ``tuned_met``. ``scan_grid=False`` leaves out the grid of quadrature settings."""
    p, q = HEADLINE_P.build(), HEADLINE_Q.build()
    pool = geometric(p, q, ALPHA)
    key = jax.random.key(KEY)

    # The integrand outside fusion, checked against fusion and against scipy.stats.truncnorm.
    f = scalar_pool(HEADLINE_P, HEADLINE_Q, ALPHA)
    x = np.random.default_rng(1).uniform(LOW, HIGH, (2000, 2))
    x[:1000] = np.random.default_rng(2).normal(0.0, 2.0, (1000, 2)).clip(LOW, HIGH)
    ours = np.array([f(b, a) for a, b in x])
    fused = np.exp(np.asarray(pool.unnormalized_log_prob(x)))
    sp = scipy_mixture_pdf(HEADLINE_P, x) ** ALPHA * scipy_mixture_pdf(HEADLINE_Q, x) ** (1 - ALPHA)
    check_fusion = float(np.max(np.abs(ours / fused - 1)))
    check_scipy = float(np.max(np.abs(ours / sp - 1)))

    start = time.perf_counter()
    z_ref, z_ref_err = integrate.nquad(
        f, [(LOW, HIGH)] * 2, opts={"epsabs": 0.0, "epsrel": 1e-13, "limit": 200}
    )
    ref_seconds = time.perf_counter() - start
    log_ref = math.log(z_ref)
    start = time.perf_counter()
    z_gl = composite_gauss_legendre(HEADLINE_P, HEADLINE_Q, ALPHA)
    gl_seconds = time.perf_counter() - start
    print(f"reference Z = {z_ref!r} (nquad), {z_gl!r} (composite GL)", flush=True)

    rows = []  # (what, settings, evaluations, Timed, log_z, std_error or None)
    refused = []  # table rows of settings fusion refused

    def fusion_row(what: str, settings: str, fn: Callable[[], object]) -> Timed | None:
        try:
            t = timed(fn, repeats)
        except ValueError as exc:  # fusion refuses these settings
            print(f"{what} {settings}: refused ({exc})", flush=True)
            refused.append(f"| {what} | {settings} | refused: {str(exc).split(';')[0]} |||||")
            return None
        r = t.result
        rows.append((what, settings, str(r.n_evaluations), t, r.log_z, r.std_error))
        print(f"{what} {settings}: {ms(t.median)} ms, log Z {r.log_z!r}", flush=True)
        return t

    fusion_row(
        "fusion `quadrature`, defaults",
        "n_nodes=16, max_points=2^20",
        lambda: log_normalizer(pool, "quadrature"),
    )
    tuned = fusion_row(
        "fusion `quadrature`, tuned",
        f"n_nodes={TUNED['n_nodes']}, max_points=2^{int(math.log2(TUNED['max_points']))}",
        lambda: log_normalizer(pool, "quadrature", **TUNED),
    )

    t = timed(lambda: integrate.nquad(f, [(LOW, HIGH)] * 2), repeats)
    rows.append(
        ("`scipy.integrate.nquad`, defaults", "epsabs=1.49e-8, epsrel=1.49e-8", "-", t,
         math.log(t.result[0]), None)
    )  # fmt: skip
    print(f"nquad: {ms(t.median)} ms", flush=True)

    pts, log_w = fixed_grid_rule(GL_FIXED)
    t = timed(lambda: float(_fixed_grid_log_z(pool, pts, log_w)), repeats)
    rows.append(
        (f"fixed {GL_FIXED}x{GL_FIXED} Gauss-Legendre on the box", "jitted `unnormalized_log_prob`",
         str(GL_FIXED**2), t, t.result, None)
    )  # fmt: skip

    fusion_row(
        "fusion `qmc`",
        f"n_samples=2^{int(math.log2(QMC['n_samples']))}, n_replicates={QMC['n_replicates']}",
        lambda: log_normalizer(pool, "qmc", key=key, **QMC),
    )
    fusion_row(
        "fusion `importance`",
        f"n_samples=2^{int(math.log2(IMPORTANCE['n_samples']))} (linear-pool proposal)",
        lambda: log_normalizer(pool, "importance", key=key, **IMPORTANCE),
    )
    fusion_row(
        "fusion `mc`",
        "n_samples=2^14",
        lambda: log_normalizer(pool, "mc", key=key, n_samples=2**14),
    )

    # What the tuned choice trades: error and time over a small grid of settings.
    scan = {}
    scan_nodes = SCAN_NODES if scan_grid else ()
    for n_nodes in scan_nodes:
        for max_points in SCAN_POINTS:
            try:
                scan[n_nodes, max_points] = timed(
                    lambda n=n_nodes, m=max_points: log_normalizer(
                        pool, "quadrature", n_nodes=n, max_points=m
                    ),
                    repeats,
                )
            except ValueError:
                scan[n_nodes, max_points] = None  # fusion refuses a budget this small
    if scan_grid:
        print("scan done", flush=True)

    tuned_err = math.inf if tuned is None else rel_error(tuned.result.log_z, log_ref)
    tuned_ms = "-" if tuned is None else ms(tuned.median)
    met = tuned is not None and tuned_err <= TARGET_ERROR and tuned.median <= TARGET_SECONDS
    if figures is not None:
        for what, label in (("tuned", "fusion `quadrature`, tuned"),
                            ("defaults", "fusion `quadrature`, defaults"),
                            ("nquad", "`scipy.integrate.nquad`, defaults")):  # fmt: skip
            row = next((r for r in rows if r[0] == label), None)
            figures[f"{what}_seconds"] = math.nan if row is None else row[3].median
            figures[f"{what}_error"] = math.nan if row is None else rel_error(row[4], log_ref)
        figures["tuned_met"] = met
    lines = [
        "## Headline: Z of a 2-D geometric pool",
        "",
        f"`geometric(p, q, alpha={ALPHA})` on [{LOW:g}, {HIGH:g}]^2; `p` has 3 kernels, `q` 2 "
        "(different means and scales, narrowest scale 0.7). Time: median of "
        f"{repeats} calls after a warm-up call.",
        "",
        f"Reference: `scipy.integrate.nquad` at epsabs=0, epsrel=1e-13 on the pooled density in "
        f"plain Python: Z = {z_ref!r}, log Z = {log_ref!r} (nquad's error estimate "
        f"{z_ref_err:.1e}; {1e3 * ref_seconds:.0f} ms). Cross-check, a composite 16-node "
        f"Gauss-Legendre rule cut at all kernel centres (SciPy `truncnorm` densities, "
        f"{1e3 * gl_seconds:.0f} ms): Z = {z_gl!r}, relative difference "
        f"**{abs(z_gl / z_ref - 1):.1e}**. The plain-Python integrand matches fusion's "
        f"`unnormalized_log_prob` to {check_fusion:.1e} and the `truncnorm` version to "
        f"{check_scipy:.1e} (max relative difference on 2000 points).",
        "",
        "| method | settings | evaluations | time (ms) | first call (ms) | relative error of Z "
        "| reported std_error |",
        "|---|---|---|---|---|---|---|",
    ]
    for what, settings, n_evals, t, log_z, se in rows:
        se_s = "-" if se is None else f"{se:.1e}"
        lines.append(
            f"| {what} | {settings} | {n_evals} | {ms(t.median)} | {ms(t.first)} | "
            f"{rel_error(log_z, log_ref):.1e} | {se_s} |"
        )
    lines += refused
    compiles = sum(r[3].compiles for r in rows) + sum(t.compiles for t in scan.values() if t)
    lines += [
        "",
        "First call: the warm-up call, which also compiles what the rows above it had not "
        "compiled yet. Reported std_error: of log Z, i.e. relative to Z; for quadrature the "
        "difference to the half-node rule (a bound for the coarser rule, not an estimate of this "
        "one's error).",
        "",
        f"XLA compilations during the timed (post-warm-up) calls: {compiles}.",
        "",
        f"**Tuned target** (relative error <= {TARGET_ERROR:g} in <= {1e3 * TARGET_SECONDS:g} ms) "
        f"with n_nodes={TUNED['n_nodes']}, max_points={TUNED['max_points']}: error "
        f"{tuned_err:.1e}, {tuned_ms} ms: **{'met' if met else 'missed'}**.",
    ]
    if not scan_grid:
        return lines
    lines += [
        "",
        "Quadrature settings grid (relative error of Z / median ms / evaluations):",
        "",
        "| n_nodes \\ max_points | " + " | ".join(f"2^{int(math.log2(m))}" for m in SCAN_POINTS)
        + " |",
        "|---|" + "---|" * len(SCAN_POINTS),
    ]  # fmt: skip
    for n_nodes in SCAN_NODES:
        cells = []
        for max_points in SCAN_POINTS:
            st = scan[n_nodes, max_points]
            cells.append(
                "refused (`ValueError`)"
                if st is None
                else f"{rel_error(st.result.log_z, log_ref):.0e} / {ms(st.median)} / "
                f"{st.result.n_evaluations}"
            )
        lines.append(f"| {n_nodes} | " + " | ".join(cells) + " |")
    return lines


# ---------------------------------------------------------------------------------------------
# Dimensions 1..6
# ---------------------------------------------------------------------------------------------


def rqmc_reference(pool, n: int, n_replicates: int, seed: int = 0) -> tuple[float, float]:
    """``log Z`` and its standard error by randomized QMC importance sampling.

    The proposal is the linear pool ``q = sum_i (e_i / sum e) p_i`` of the pool's mixtures; ``Z =
    sum_k pi_k E_{N_k}[p~ / q]`` over its kernels ``N_k`` (weight ``pi_k``), each expectation over
    ``n`` scrambled Sobol points mapped through the kernel's truncated-normal inverse CDF.
    ``p~ / q`` is smooth and bounded where the kernels sit, so the error falls faster than
    ``1/sqrt(n)``; the standard error is over ``n_replicates`` independent scramblings.
    """
    e = np.array([float(v) for v in pool.exponents])
    proposal = linear_pool(pool.components, e / e.sum())
    d = len(pool.dims)
    strata = []
    for component, share in zip(pool.components, e / e.sum(), strict=True):
        log_w = np.asarray(component.log_weights)
        for k in np.flatnonzero(np.isfinite(log_w)):
            mu, sigma = np.asarray(component.mu)[k], np.asarray(component.sigma)[k]
            strata.append((share * math.exp(log_w[k]), mu, sigma))
    rng = np.random.default_rng(seed)
    estimates = []
    for _ in range(n_replicates):
        total = 0.0
        for weight, mu, sigma in strata:
            u = qmc.Sobol(d, scramble=True, seed=rng).random(n)
            lo, hi = ndtr((LOW - mu) / sigma), ndtr((HIGH - mu) / sigma)
            x = np.clip(mu + sigma * ndtri(lo + u * (hi - lo)), LOW, HIGH)
            log_ratio = np.asarray(pool.unnormalized_log_prob(x)) - np.asarray(proposal.log_prob(x))
            total += weight * float(np.mean(np.exp(log_ratio)))
        estimates.append(total)
    estimates = np.asarray(estimates)
    mean = float(estimates.mean())
    return math.log(mean), float(estimates.std(ddof=1) / math.sqrt(n_replicates) / mean)


def _method_calls(pool, is_product: bool, key):
    """``(label, settings, call)`` for every fusion method that applies to ``pool``."""
    calls = [("auto", "defaults", lambda: log_normalizer(pool, "auto", key=key))]
    if is_product:
        calls.append(("exact", "-", lambda: log_normalizer(pool, "exact")))
    calls.append(("quadrature", "defaults", lambda: log_normalizer(pool, "quadrature")))
    calls.append(("quadrature", "n_nodes=8", lambda: log_normalizer(pool, "quadrature", n_nodes=8)))
    calls += [
        ("qmc", "2^14 x 8", lambda: log_normalizer(pool, "qmc", key=key)),
        ("importance", "2^14", lambda: log_normalizer(pool, "importance", key=key)),
        ("mc", "2^14", lambda: log_normalizer(pool, "mc", key=key)),
    ]
    return calls


def dimension_tables(repeats: int, dims: Sequence[int], ref_n: int) -> list[str]:
    key = jax.random.key(KEY)
    tables = {"geometric": [], "product": []}
    notes = []
    refusals = set()
    compiles = 0
    for d in dims:
        sp, sq = random_specs(d)
        p, q = sp.build(), sq.build()
        for name, pool in (("geometric", geometric(p, q, ALPHA)), ("product", product(p, q))):
            is_product = name == "product"
            start = time.perf_counter()
            if is_product:
                ref = log_normalizer(pool, "exact").log_z
                ref_se, ref_what = 0.0, "exact"
            elif d <= 3:
                r = log_normalizer(pool, "quadrature", n_nodes=12, max_points=2**22)
                ref, ref_se = r.log_z, r.std_error
                ref_what = (
                    f"quadrature, n_nodes=12, max_points=2^22 ({r.n_evaluations} evaluations)"
                )
            else:
                ref, ref_se = rqmc_reference(pool, ref_n, 8)
                ref_what = f"RQMC importance, 2^{int(math.log2(ref_n))} points x 5 kernels x 8"
            ref_seconds = time.perf_counter() - start
            if (d <= 3 and not is_product) or (d >= 4 and is_product):
                rq, rq_se = rqmc_reference(pool, ref_n, 8)
                notes.append(
                    f"| {d} | {name} | {'exact' if is_product else 'quadrature'} | "
                    f"{rel_error(rq, ref):.1e} | {rq_se:.1e} |"
                )
            print(f"d={d} {name}: reference log Z {ref!r} +- {ref_se:.1e} ({ref_seconds:.1f} s)")
            rows = tables[name]
            for label, settings, call in _method_calls(pool, is_product, key):
                try:
                    t = timed(call, repeats)
                except ValueError as exc:
                    refusals.add(str(exc).split(";")[0])
                    rows.append(f"| {d} | {label} | {settings} | refused (`ValueError`) | | | | |")
                    continue
                r = t.result
                compiles += t.compiles
                shown = label if label != "auto" else f"auto -> {r.method}"
                rows.append(
                    f"| {d} | {shown} | {settings} | {r.n_evaluations} | {ms(t.median)} | "
                    f"{r.log_z:.10f} | {r.std_error:.1e} | {rel_error(r.log_z, ref):.1e} |"
                )
            rows.append(
                f"| {d} | *reference* | {ref_what} | | {1e3 * ref_seconds:.0f} (once) | "
                f"{ref:.10f} | {ref_se:.1e} | |"
            )
    header = [
        "| d | method | settings | evaluations | time (ms) | log Z | reported std_error "
        "| relative error of Z |",
        "|---|---|---|---|---|---|---|---|",
    ]
    return [
        f"## Dimensions 1 to {max(dims)}",
        "",
        f"Two seeded random mixtures per d (3 and 2 Gaussian product kernels, means in [-3, 3] "
        f"and scales in [0.8, 2] per coordinate; `q`'s kernels near two of `p`'s) on "
        f"[{LOW:g}, {HIGH:g}]^d. Time: median of {repeats} calls after a warm-up call. Settings "
        "not shown are fusion's defaults (`n_nodes=16`, `max_points=2^20`, `n_samples=2^14`, "
        "`n_replicates=8`). *Refused*: fusion raised `ValueError` for these settings "
        "(messages below the tables).",
        "",
        f"### Geometric pool, alpha={ALPHA}",
        "",
        "`exact` does not apply (a factor with exponent 0.5 holds more than one kernel). The "
        "reference is fusion `quadrature` with `n_nodes=12, max_points=2^22` at d <= 3 (a rule "
        "no row uses) and a long randomized-QMC importance run at d >= 4 (`rqmc_reference` in "
        "this script); its standard error (the *reference* row) bounds the errors the table can "
        "resolve there.",
        "",
        *header,
        *tables["geometric"],
        "",
        "### Product pool (reference: `exact`, the closed form)",
        "",
        *header,
        *tables["product"],
        "",
        "The RQMC reference checked where a better one exists (the geometric pool at d <= 3 "
        "against quadrature, the product at d >= 4 against `exact`):",
        "",
        "| d | pool | against | relative error of the RQMC Z | its standard error |",
        "|---|---|---|---|---|",
        *notes,
        "",
        *(f"Refused: `{why}`." for why in sorted(refusals)),
        "",
        f"XLA compilations during the timed (post-warm-up) calls: {compiles}.",
    ]


def report(argv: Sequence[str] | None = None) -> tuple[str, dict[str, float]]:
    """Run the benchmark; the markdown report and the headline's figures (see :func:`headline`)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed calls (default 5)")
    parser.add_argument(
        "--max-dim", type=int, default=6, help="largest d of the table (0: the headline only)"
    )
    parser.add_argument(
        "--scan",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the grid of quadrature settings in the headline (default: on)",
    )
    parser.add_argument(
        "--ref-points", type=int, default=2**15, help="RQMC reference points per kernel (2^15)"
    )
    parser.add_argument("--out", type=Path, default=HERE / "results" / "normalizers.md")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.max_dim < 0:
        parser.error("--repeats must be positive and --max-dim >= 0")

    start = time.perf_counter()
    figures: dict[str, float] = {}
    with CompileCounter() as compiles:
        lines = [
            "# Normalizing constants: `fusion.normalize.log_normalizer`",
            "",
            *headline(args.repeats, figures, args.scan),
        ]
        if args.max_dim > 0:
            dims = range(1, args.max_dim + 1)
            lines += ["", *dimension_tables(args.repeats, dims, args.ref_points)]
    lines += [
        "",
        *run_summary(start, compiles),
    ]
    return write_report("\n".join(lines), args.out), figures


def main(argv: Sequence[str] | None = None) -> str:
    return report(argv)[0]


if __name__ == "__main__":
    main()
