"""Maximum entropy: ``fusion.maxent`` against SciPy and the ``maxentropy`` package, speed and accuracy.

Every problem is an exponential family with a known answer: the targets are the moments
``t = E[f]`` of ``p(x) = r(x) exp(lambda_true . f(x)) / Z`` on a box, for a chosen
``lambda_true``, so the exact solution of the maximum-entropy problem with these targets is
``lambda_true`` itself. The problems (:func:`cases`):

* **1-D, 4 moments**: ``x, x^2, x^3, x^4`` on [0, 1], ``lambda_true = (7.5, -12.5, 2, -1)`` (the
  exponent of a normal bump at 0.3 with sd 0.2, bent by a cubic and a quartic term); targets by
  ``mpmath.quad`` at 30 digits.
* **2-D, 5 moments**: ``x0, x0^2, x1, x1^2, x0*x1`` on [0, 1] x [-1, 2]; targets by a tensor
  Gauss-Legendre rule with 128 nodes per coordinate (checked against 96 nodes).
* **3-D, 8 moments**: the 2-D features, ``x2, x2^2`` and ``x1*x2`` on [0, 1] x [-1, 2] x [-2, 2];
  targets by a 64^3 tensor Gauss-Legendre rule (checked against 48^3).
* **1-D, mixture reference** (minimum relative entropy): the 1-D features, with ``r`` a
  two-kernel ``ProductKernelMixture`` (truncated normals at 0.25 and 0.7); targets by
  ``mpmath.quad`` at 30 digits, split at the kernel centres.

Side by side, on each problem:

* fusion ``maxent`` (the front door, defaults: quadrature, checked on a finer rule), and with
  ``method="importance"`` (2^14 draws of the reference, the residuals on fresh draws);
* fusion's core ``solve`` (jitted damped Newton) on the first rule ``maxent`` builds
  (``_quadrature_rules(...)[0]``), in the whitened units ``maxent`` gives it, to ``tol=1e-11``;
* ``scipy.optimize.minimize(method="trust-exact")`` on the same dual over the same nodes, with the
  value, gradient and Hessian in NumPy (computed together, once per point), once on the raw
  features and once on the whitened problem the core ``solve`` gets;
* the ``maxentropy`` package (0.3.0, when installed): ``MinDivergenceModel`` on the same nodes
  (the quadrature weights as its prior) and ``MCMinDivergenceModel`` on 2^14 uniform draws, both
  with its default optimizer (conjugate gradients). Its parameters follow the same convention,
  ``p(x) = p0(x) exp(params . f(x)) / Z``, so they compare with ``lambda_true`` directly.

Accuracy: ``max |lambda - lambda_true|``, and the largest residual ``|E_lambda[f] - t|`` (feature
units) of the fitted ``lambda``, measured by this script on the reference rule (256-node
Gauss-Legendre in 1-D, 64 per kernel piece with the mixture reference, the tensor rules above in
2-D and 3-D), not by the method itself.

Timing: ``time.perf_counter`` around the call; a warm-up call first (it compiles), then the median
of the repeats (``--repeats``; a tenth of them for ``maxentropy``). The core ``solve`` and SciPy
rows time the solve alone, on a prebuilt rule; the ``maxent`` rows time the whole call (rules,
whitening, the check on the finer rule); the ``maxentropy`` rows build the model and fit it (a
model starts from its last fit). XLA compilations during the timed calls are counted with
:class:`_timing.CompileCounter` and reported (they should be zero).

Writes ``benchmarks/results/maxent.md`` (``--out``) and prints it.

Run from the repository root: ``.venv/bin/python benchmarks/maxent.py`` (about a minute on 2 cores;
``--quick`` takes a few repeats, for the smoke test). Options: ``[--repeats N] [--quick]
[--problems I ...] [--out FILE]``; ``--problems 0`` runs the 1-D, 4-moment problem alone.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import mpmath
import numpy as np
from _timing import CompileCounter, Timed, ms, run_summary, timed, write_report
from numpy.polynomial.legendre import leggauss
from scipy import optimize, special, stats

from fusion import features as F
from fusion import maxent as M
from fusion.density import Uniform, mixture
from fusion.space import CONTINUOUS, Dim

jax.config.update("jax_enable_x64", True)

HERE = Path(__file__).resolve().parent
SOLVE_TOL = 1e-11  # the core solve: max |gradient| in whitened units
SCIPY_GTOL = 1e-10  # trust-exact: norm of the gradient (1e-11 only adds failures: see the report)
MC_DRAWS = 2**14  # maxentropy's Monte Carlo model, and fusion's importance default
KEY = 0
BASELINE = "SciPy `trust-exact`"  # the time ratios are to this row: raw features, same nodes


# ---------------------------------------------------------------------------------------------
# The problems
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    """A maximum-entropy problem with a known solution ``lambda_true``.

    ``powers[k]`` are the exponents of monomial feature ``k`` per coordinate (the same features
    as ``features``, evaluated here in NumPy); ``ref_x``, ``ref_log_w`` a reference rule whose
    weights include the reference density ``r``; ``log_r`` is ``log r`` in NumPy (``None`` for
    uniform); ``source`` says where the targets come from.
    """

    name: str
    dims: tuple[Dim, ...]
    features: F.Features
    powers: tuple[tuple[int, ...], ...]
    lambda_true: np.ndarray
    targets: np.ndarray
    reference: object  # a fusion density
    log_r: Callable[[np.ndarray], np.ndarray] | None
    ref_x: np.ndarray
    ref_log_w: np.ndarray
    source: str


def monomials(x: np.ndarray, powers) -> np.ndarray:
    """``(n, m)``: ``prod_j x_j^p_kj`` for each row ``p_k`` of ``powers``."""
    return np.stack([np.prod(x ** np.asarray(p), axis=1) for p in powers], axis=1)


def gauss_legendre(low: float, high: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    t, w = leggauss(n)
    return (low + high) / 2 + (high - low) / 2 * t, (high - low) / 2 * w


def tensor_rule(dims: Sequence[Dim], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Tensor Gauss-Legendre, ``n`` nodes per coordinate: points ``(n^d, d)`` and log weights."""
    nodes, weights = zip(*(gauss_legendre(d.low, d.high, n) for d in dims), strict=True)
    x = np.stack(np.meshgrid(*nodes, indexing="ij"), axis=-1).reshape(-1, len(dims))
    w = np.ones(1)
    for wj in weights:
        w = np.outer(w, wj).ravel()
    return x, np.log(w)


def composite_rule(cuts: Sequence[float], n: int) -> tuple[np.ndarray, np.ndarray]:
    """1-D Gauss-Legendre, ``n`` nodes on each piece between consecutive ``cuts``."""
    parts = [gauss_legendre(a, b, n) for a, b in zip(cuts[:-1], cuts[1:], strict=True)]
    x = np.concatenate([p[0] for p in parts])
    return x[:, None], np.log(np.concatenate([p[1] for p in parts]))


def moments_on_rule(f: np.ndarray, log_base: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """``E[f]`` under ``p ~ base exp(lam . f)`` over a rule (features ``f`` at its points)."""
    log_q = log_base + f @ lam
    q = np.exp(log_q - log_q.max())
    return q @ f / q.sum()


def mp_moments(lam, powers, log_r=None, cuts=(0.0, 1.0)) -> np.ndarray:
    """1-D ``E[x^p]`` under ``r(x) exp(lam . f(x))`` on ``[cuts[0], cuts[-1]]`` by ``mpmath.quad``
    at 30 digits (``log_r``, an mpmath function, ``None`` for uniform), split at ``cuts``."""
    with mpmath.workdps(30):
        lam = [mpmath.mpf(float(v)) for v in lam]

        def q(x):
            e = sum(v * x ** p[0] for v, p in zip(lam, powers, strict=True))
            return mpmath.exp(e + (log_r(x) if log_r else 0))

        pts = [mpmath.mpf(c) for c in cuts]
        z = mpmath.quad(q, pts)
        return np.array(
            [float(mpmath.quad(lambda x, p=p: x ** p[0] * q(x), pts) / z) for p in powers]
        )


def targets_on_tensor(dims, powers, lam, n: int, n_check: int) -> tuple[np.ndarray, float]:
    """Moments by ``n``-node tensor Gauss-Legendre, and their largest difference to ``n_check``."""
    out = []
    for m in (n, n_check):
        x, log_w = tensor_rule(dims, m)
        out.append(moments_on_rule(monomials(x, powers), log_w, lam))
    return out[0], float(np.max(np.abs(out[0] - out[1])))


MIX_W, MIX_MU, MIX_SIGMA = np.array([0.6, 0.4]), np.array([0.25, 0.7]), np.array([0.1, 0.15])


def mixture_log_pdf(x: np.ndarray) -> np.ndarray:
    """``log r`` of the 1-D reference mixture on [0, 1], from ``scipy.stats.truncnorm``."""
    a, b = (0.0 - MIX_MU) / MIX_SIGMA, (1.0 - MIX_MU) / MIX_SIGMA
    pdf = stats.truncnorm.pdf(x[:, :1], a, b, loc=MIX_MU, scale=MIX_SIGMA) @ MIX_W
    return np.log(pdf)


def mixture_log_pdf_mp(x):
    """The same in mpmath."""
    total = 0
    for w, m, s in zip(MIX_W, MIX_MU, MIX_SIGMA, strict=True):
        mass = mpmath.ncdf((1 - m) / s) - mpmath.ncdf((0 - m) / s)
        total += w * mpmath.npdf(x, m, s) / mass
    return mpmath.log(total)


def cases() -> list[Case]:
    """The four problems of the module docstring, with their targets and reference rules."""
    out = []
    unit = (Dim(CONTINUOUS, 0.0, 1.0),)
    f1 = F.moments(unit, 0, 4)
    p1 = ((1,), (2,), (3,), (4,))
    lam1 = np.array([7.5, -12.5, 2.0, -1.0])
    x, log_w = tensor_rule(unit, 256)
    t1 = mp_moments(lam1, p1)
    gl_gap = np.max(np.abs(moments_on_rule(monomials(x, p1), log_w, lam1) - t1))
    out.append(
        Case("1-D, 4 moments", unit, f1, p1, lam1, t1, Uniform(unit), None, x, log_w,
             f"`mpmath.quad` at 30 digits (the 256-node Gauss-Legendre reference rule agrees to "
             f"{gl_gap:.1e})")
    )  # fmt: skip

    d2 = (Dim(CONTINUOUS, 0.0, 1.0), Dim(CONTINUOUS, -1.0, 2.0))
    f2 = F.moments(d2, 0, 2) + F.moments(d2, 1, 2) + F.cross(d2, 0, 1)
    p2 = ((1, 0), (2, 0), (0, 1), (0, 2), (1, 1))
    lam2 = np.array([2.0, -4.0, 1.0, -1.0, 1.5])
    t2, gap2 = targets_on_tensor(d2, p2, lam2, 128, 96)
    x, log_w = tensor_rule(d2, 128)
    out.append(
        Case("2-D, 5 moments", d2, f2, p2, lam2, t2, Uniform(d2), None, x, log_w,
             f"128^2 tensor Gauss-Legendre (96^2 agrees to {gap2:.1e})")
    )  # fmt: skip

    d3 = (*d2, Dim(CONTINUOUS, -2.0, 2.0))
    f3 = (
        F.moments(d3, 0, 2) + F.moments(d3, 1, 2) + F.moments(d3, 2, 2)
        + F.cross(d3, 0, 1) + F.cross(d3, 1, 2)
    )  # fmt: skip
    p3 = ((1, 0, 0), (2, 0, 0), (0, 1, 0), (0, 2, 0), (0, 0, 1), (0, 0, 2), (1, 1, 0), (0, 1, 1))
    lam3 = np.array([2.0, -4.0, 1.0, -1.0, 0.5, -1.5, 1.5, -0.8])
    t3, gap3 = targets_on_tensor(d3, p3, lam3, 64, 48)
    x, log_w = tensor_rule(d3, 64)
    out.append(
        Case("3-D, 8 moments", d3, f3, p3, lam3, t3, Uniform(d3), None, x, log_w,
             f"64^3 tensor Gauss-Legendre (48^3 agrees to {gap3:.1e})")
    )  # fmt: skip

    r = mixture(unit, MIX_W, MIX_MU[:, None], MIX_SIGMA[:, None])
    lam4 = np.array([1.0, -2.0, 1.0, -0.5])
    cuts = (0.0, 0.25, 0.7, 1.0)
    t4 = mp_moments(lam4, p1, mixture_log_pdf_mp, cuts)
    x, log_w = composite_rule(cuts, 64)
    log_w = log_w + mixture_log_pdf(x)
    probe = np.linspace(0.0, 1.0, 1001)[:, None]
    r_gap = np.max(np.abs(np.asarray(r.log_prob(probe)) - mixture_log_pdf(probe)))
    gl_gap = np.max(np.abs(moments_on_rule(monomials(x, p1), log_w, lam4) - t4))
    out.append(
        Case("1-D, mixture reference", unit, f1, p1, lam4, t4, r, mixture_log_pdf, x, log_w,
             f"`mpmath.quad` at 30 digits, split at the kernel centres (the reference rule agrees "
             f"to {gl_gap:.1e}; fusion's `log_prob` of the mixture matches `scipy.stats.truncnorm` "
             f"to {r_gap:.1e} on 1001 points)")
    )  # fmt: skip
    for c in out:
        print(f"{c.name}: targets {c.targets}", flush=True)
    return out


# ---------------------------------------------------------------------------------------------
# The solvers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Fit:
    lambdas: np.ndarray
    iterations: int
    points: int
    converged: bool = True
    message: str = ""  # why the solver stopped, when it reports failure


class NumpyDual:
    """``log Z - lambda . t`` over a rule with its gradient and Hessian, computed together and
    remembered for the last ``lambda`` (trust-exact asks for all three at each point)."""

    def __init__(self, f: np.ndarray, log_base: np.ndarray, targets: np.ndarray) -> None:
        self.f, self.log_base, self.targets = f, log_base, targets
        self._at: np.ndarray | None = None

    def _update(self, lam: np.ndarray) -> None:
        if self._at is not None and np.array_equal(lam, self._at):
            return
        log_q = self.log_base + self.f @ lam
        log_z = special.logsumexp(log_q)
        w = np.exp(log_q - log_z)
        mean = w @ self.f
        c = self.f - mean
        self._at = lam.copy()
        self.value = log_z - lam @ self.targets
        self.grad = mean - self.targets
        self.hess = (c * w[:, None]).T @ c

    def fun(self, lam):
        self._update(lam)
        return self.value

    def jac(self, lam):
        self._update(lam)
        return self.grad

    def hessian(self, lam):
        self._update(lam)
        return self.hess


def scipy_trust_exact(f, log_base, targets) -> optimize.OptimizeResult:
    d = NumpyDual(f, log_base, targets)
    return optimize.minimize(
        d.fun, np.zeros(f.shape[1]), jac=d.jac, hess=d.hessian, method="trust-exact",
        options={"gtol": SCIPY_GTOL, "maxiter": 200},
    )  # fmt: skip


def live(rule) -> tuple[np.ndarray, np.ndarray]:
    """A fusion rule's features and log base weights without its padding rows."""
    keep = np.isfinite(rule.log_base)
    return rule.f[keep], rule.log_base[keep]


def maxentropy_grid(f, log_base, targets) -> Fit:
    """``maxentropy.MinDivergenceModel`` over a rule's points: the weights as its prior."""
    import maxentropy

    model = maxentropy.MinDivergenceModel(
        f.T, np.arange(len(log_base)), prior_log_pdf=lambda _: log_base, matrix_format="ndarray"
    )
    model.fit(targets[None])
    return Fit(np.asarray(model.params), model.iters, len(log_base))


def maxentropy_mc(case: Case, seed: int) -> Fit:
    """``maxentropy.MCMinDivergenceModel`` on ``MC_DRAWS`` uniform draws on the box, the
    reference density as its prior; features are vectorized NumPy monomials."""
    import maxentropy

    rng = np.random.default_rng(seed)
    low = np.array([d.low for d in case.dims])
    high = np.array([d.high for d in case.dims])
    log_q = -float(np.sum(np.log(high - low)))

    def sampler():
        x = rng.uniform(low, high, (MC_DRAWS, len(case.dims)))
        return x, np.full(MC_DRAWS, log_q)

    def column(x):  # maxentropy flattens an (n, 1) sample
        return np.asarray(x).reshape(len(x), len(case.dims))

    funcs = [lambda x, p=p: np.prod(column(x) ** np.asarray(p), axis=1) for p in case.powers]
    log_r = None if case.log_r is None else (lambda x: case.log_r(column(x)))
    model = maxentropy.MCMinDivergenceModel(
        funcs, sampler, prior_log_pdf=log_r, vectorized=True, matrix_format="ndarray"
    )
    model.fit(case.targets[None])
    return Fit(np.asarray(model.params), model.iters, MC_DRAWS)


# ---------------------------------------------------------------------------------------------
# One problem's rows
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    case: str
    method: str
    settings: str
    fit: Fit | None  # None: not run (the reason in settings)
    timing: Timed | None
    lambda_error: float = math.nan
    residual: float = math.nan


def accuracy(case: Case, lam: np.ndarray) -> tuple[float, float]:
    """``max |lambda - lambda_true|`` and ``max |E_lambda[f] - t|`` on the case's reference rule."""
    mean = moments_on_rule(monomials(case.ref_x, case.powers), case.ref_log_w, lam)
    return float(np.max(np.abs(lam - case.lambda_true))), float(np.max(np.abs(mean - case.targets)))


def maxentropy_installed() -> bool:
    return importlib.util.find_spec("maxentropy") is not None


def run_row(case: Case, method: str, settings: str, fn: Callable[[], Fit], repeats: int) -> Row:
    """Time ``fn`` (a warm-up call, then the median of ``repeats``) and score its last fit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # maxentropy's and scikit-learn's deprecations
        t = timed(fn, repeats)
    err, res = accuracy(case, t.result.lambdas)
    print(f"{case.name} | {method}: {ms(t.median)} ms, lambda error {err:.1e}, residual {res:.1e}",
          flush=True)  # fmt: skip
    return Row(case.name, method, settings, t.result, t, err, res)


def fusion_rows(case: Case, repeats: int) -> list[Row]:
    """fusion ``maxent`` by quadrature (defaults) and by importance sampling."""
    ref = None if isinstance(case.reference, Uniform) else case.reference

    def quad() -> Fit:
        return _maxent_fit(M.maxent(case.features, case.targets, reference=ref))

    def importance() -> Fit:
        return _maxent_fit(
            M.maxent(case.features, case.targets, reference=ref, method="importance",
                     key=jax.random.key(KEY), n_samples=MC_DRAWS)
        )  # fmt: skip

    draws = f"n_samples=2^{int(math.log2(MC_DRAWS))}, draws of the reference"
    return [
        run_row(case, "fusion `maxent`", "defaults (quadrature, tol=1e-10)", quad, repeats),
        run_row(case, "fusion `maxent`, importance", draws, importance, repeats),
    ]


def same_rule_rows(case: Case, rule, repeats: int) -> list[Row]:
    """fusion's core ``solve`` and SciPy ``trust-exact`` (raw and whitened) on one rule."""
    wh = M._whitening(rule)
    m = case.features.size
    problem = M.Problem(
        jax.device_put((rule.f - wh.mean) @ wh.w.T), jax.device_put(rule.log_base),
        jax.device_put(wh.w @ (case.targets - wh.mean)), jax.device_put(np.zeros((m, m))),
    )  # fmt: skip
    f, log_base = live(rule)
    g = np.asarray(problem.g)[np.isfinite(rule.log_base)]
    g_targets = np.asarray(problem.targets)

    def core() -> Fit:
        state = jax.block_until_ready(M.solve(problem, np.zeros(m), SOLVE_TOL, 100))
        status = int(state.status)
        return Fit(wh.w.T @ np.asarray(state.lambdas), int(state.n_iter), rule.n_points,
                   status == 0, M._STATUS[status])  # fmt: skip

    def scipy_raw() -> Fit:
        r = scipy_trust_exact(f, log_base, case.targets)
        return Fit(r.x, r.nit, len(log_base), bool(r.success), r.message)

    def scipy_whitened() -> Fit:
        r = scipy_trust_exact(g, log_base, g_targets)
        return Fit(wh.w.T @ r.x, r.nit, len(log_base), bool(r.success), r.message)

    nodes = f"first rule: {rule.n_points} nodes (padded to {rule.f.shape[0]})"
    return [
        run_row(case, "fusion core `solve`", f"{nodes}, tol={SOLVE_TOL:g}", core, repeats),
        run_row(case, BASELINE, f"same nodes, raw features, gtol={SCIPY_GTOL:g}", scipy_raw,
                repeats),
        run_row(case, "SciPy `trust-exact`, whitened",
                "same nodes and whitened problem as `solve`", scipy_whitened, repeats),
    ]  # fmt: skip


MAXENTROPY_METHODS = ("`maxentropy` `MinDivergenceModel`", "`maxentropy` `MCMinDivergenceModel`")


def maxentropy_rows(case: Case, rule, repeats: int) -> list[Row]:
    """The ``maxentropy`` package on the same nodes and on its own uniform draws, or two rows
    that say it is not installed."""
    if not maxentropy_installed():
        return [Row(case.name, m, "not installed", None, None) for m in MAXENTROPY_METHODS]
    f, log_base = live(rule)
    seeds = iter(range(10**6))  # fresh draws for every fit
    return [
        run_row(case, MAXENTROPY_METHODS[0], "same nodes as its sample space, CG",
                lambda: maxentropy_grid(f, log_base, case.targets), repeats),
        run_row(case, MAXENTROPY_METHODS[1], f"2^{int(math.log2(MC_DRAWS))} uniform draws, CG",
                lambda: maxentropy_mc(case, next(seeds)), repeats),
    ]  # fmt: skip


def case_rows(case: Case, repeats: int) -> list[Row]:
    """Every method on one problem (see the module docstring), timed and scored; the rule shared
    by the core ``solve``, SciPy and ``maxentropy`` is the first one ``maxent`` builds."""
    rule = M._quadrature_rules(case.features, case.reference, None, 16, 2**20)[0]()
    return [
        *fusion_rows(case, repeats),
        *same_rule_rows(case, rule, repeats),
        *maxentropy_rows(case, rule, max(1, repeats // 10)),
    ]


def _maxent_fit(res: M.MaxEntResult) -> Fit:
    return Fit(np.asarray(res.lambdas), res.n_iterations, res.n_points)


# ---------------------------------------------------------------------------------------------
# The report
# ---------------------------------------------------------------------------------------------


def table(rows: list[Row]) -> list[str]:
    """One markdown row per method and problem; the time ratio is to SciPy on the raw features."""
    base = {r.case: r.timing.median for r in rows if r.method == BASELINE}
    lines = [
        "| problem | method | settings | points | iterations | time (ms) | first call (ms) "
        "| time / SciPy | max abs lambda error | max abs residual |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.fit is None:
            lines.append(f"| {r.case} | {r.method} | {r.settings} | | | | | | | |")
            continue
        t = r.timing
        flag = "" if r.fit.converged else " *"
        lines.append(
            f"| {r.case} | {r.method} | {r.settings} | {r.fit.points} | {r.fit.iterations}{flag} "
            f"| {ms(t.median)} | {ms(t.first)} | {t.median / base[r.case]:.3g} "
            f"| {r.lambda_error:.1e} | {r.residual:.1e} |"
        )
    return lines


def summary(rows: list[Row]) -> list[str]:
    """The headline: fusion's worst accuracy over the quadrature rows, and the speed ratios."""
    quad = [r for r in rows if r.method in ("fusion `maxent`", "fusion core `solve`")]
    worst_lambda = max(r.lambda_error for r in quad)
    worst_residual = max(r.residual for r in quad)
    by = {(r.case, r.method): r for r in rows}
    ratios = []
    for case in dict.fromkeys(r.case for r in rows):
        core, front, sp = (by[case, k].timing.median for k in
                           ("fusion core `solve`", "fusion `maxent`", BASELINE))  # fmt: skip
        ratios.append(
            f"{case}: core `solve` / SciPy {core / sp:.3g}, `maxent` / SciPy {front / sp:.3g}"
        )
    return [
        f"Worst over the fusion quadrature rows (`maxent` defaults and core `solve`, every "
        f"problem): lambda error **{worst_lambda:.1e}**, residual **{worst_residual:.1e}**.",
        "",
        "Time ratios to SciPy `trust-exact` on the same nodes (raw features): "
        + "; ".join(ratios)
        + ".",
    ]


def failures(rows: list[Row]) -> list[str]:
    """A note on the rows whose solver reported failure (marked ``*`` in the table)."""
    failed = [r for r in rows if r.fit is not None and not r.fit.converged]
    if not failed:
        return ["Every solver reported convergence."]
    return [
        "*\\**: the solver reported failure; the row scores the point where it stopped "
        "(SciPy's *A bad approximation caused failure to predict improvement* means that "
        "rounding in the dual hid the decrease its model predicted, before the gradient reached "
        "`gtol`):",
        "",
        *(f"- {r.case}, {r.method}: {r.fit.message}" for r in failed),
    ]


def headline_figures(rows: list[Row]) -> dict[str, dict[str, float]]:
    """Per problem: median seconds of fusion ``maxent``, its core ``solve`` and SciPy
    ``trust-exact`` (raw features), and the lambda errors of ``maxent`` and SciPy."""
    by = {(r.case, r.method): r for r in rows}
    out = {}
    for case in dict.fromkeys(r.case for r in rows):
        front, core, sp = (
            by[case, k] for k in ("fusion `maxent`", "fusion core `solve`", BASELINE)
        )
        out[case] = {
            "maxent_seconds": front.timing.median,
            "solve_seconds": core.timing.median,
            "scipy_seconds": sp.timing.median,
            "maxent_lambda_error": front.lambda_error,
            "maxent_residual": front.residual,
            "scipy_lambda_error": sp.lambda_error,
        }
    return out


def report(argv: Sequence[str] | None = None) -> tuple[str, dict[str, dict[str, float]]]:
    """Run the benchmark; the markdown report and :func:`headline_figures`."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=50, help="timed calls (default 50)")
    parser.add_argument("--quick", action="store_true", help="3 timed calls: a smoke test")
    parser.add_argument(
        "--problems", nargs="+", type=int, default=None, metavar="I",
        help="run only these problems, by position (0: 1-D, 4 moments, ... 3: mixture reference)",
    )  # fmt: skip
    parser.add_argument("--out", type=Path, default=HERE / "results" / "maxent.md")
    args = parser.parse_args(argv)
    repeats = 3 if args.quick else args.repeats
    if repeats < 1:
        parser.error("--repeats must be positive")
    if args.problems is not None and not all(0 <= i < 4 for i in args.problems):
        parser.error(f"--problems must be positions 0 to 3, got {args.problems}")

    start = time.perf_counter()
    with CompileCounter() as compiles:
        problems = cases()
        if args.problems is not None:
            problems = [problems[i] for i in dict.fromkeys(args.problems)]
        rows = [row for c in problems for row in case_rows(c, repeats)]
    timed_compiles = sum(r.timing.compiles for r in rows if r.timing is not None)
    have = maxentropy_installed()
    lines = [
        "# Maximum entropy: `fusion.maxent`",
        "",
        "Each problem's targets are the moments of `r(x) exp(lambda_true . f(x)) / Z`, so its "
        "exact solution is `lambda_true`. Accuracy is measured by this script on a reference "
        "rule: the largest `|lambda - lambda_true|` and the largest residual "
        "`|E_lambda[f] - t|` (feature units). Time: median of "
        f"{repeats} calls after a warm-up call ({max(1, repeats // 10)} for `maxentropy`); "
        "*first call* is the warm-up, which also compiles. *Time / SciPy* is relative to SciPy "
        "`trust-exact` on the raw features, same nodes, same problem.",
        "",
        *summary(rows),
        "",
        *table(rows),
        "",
        "Problems and where their targets come from:",
        "",
        *(
            f"- **{c.name}**: lambda_true = {[float(v) for v in c.lambda_true]}, features "
            f"{', '.join(c.features.names)}; targets by {c.source}."
            for c in problems
        ),  # fmt: skip
        "",
        "*Points*: for fusion `maxent`, the check rule it reports (`n_points`); for the core "
        "`solve` and SciPy, the first rule `maxent` builds, without its padding. *Iterations*: "
        "Newton steps (fusion, over all rules it solved on), `nit` (SciPy), `iters` "
        "(`maxentropy`). The core `solve` and the SciPy rows solve on that first rule only, so "
        "their lambda error includes its quadrature error. The Monte Carlo rows (fusion "
        "`importance`, `maxentropy` `MCMinDivergenceModel`) meet the targets only up to their "
        "sampling error, which the ill-conditioned map from moments to lambda (monomials are "
        "nearly collinear on a box) magnifies into the lambda errors shown.",
        "",
        *failures(rows),
        "",
        "`maxentropy` 0.3.0: "
        + (
            "installed (`pip install --no-deps maxentropy six`: it declares the retired "
            "`sklearn` package as a dependency, which no longer installs, and uses `six` without "
            "declaring it). Its parameters follow fusion's convention."
            if have
            else "**not installed** (`make bench` tries `pip install --no-deps maxentropy six`)."
        ),
        "",
        f"XLA compilations during the timed (post-warm-up) calls: {timed_compiles}.",
        "",
        *run_summary(start, compiles),
    ]
    return write_report("\n".join(lines), args.out), headline_figures(rows)


def main(argv: Sequence[str] | None = None) -> str:
    return report(argv)[0]


if __name__ == "__main__":
    main()
