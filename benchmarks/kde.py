"""fusion's KDE (``fusion.kde.kernel_density``) against ``scipy.stats.gaussian_kde``: agreement and speed.

The data: ``n`` points in ``[0, 10]^d`` (continuous coordinates), each drawn from the mixture
``0.6 N(3, 1) + 0.4 N(6.5, 1.5^2)`` per point (one component for all its coordinates), truncated
to the box (``scipy.stats.truncnorm``, NumPy seed ``--seed``); ``d`` in 1, 2, 5 and ``n`` in 50,
500 by default.

fusion's density is ``kernel_density(space, points)``: one normal kernel per point, with the
bandwidth ``h_j`` of its rule (Scott's factor on the spread per coordinate, clipped into a fraction
of the range, see :mod:`fusion.kde`), **truncated to the box**:

    p(x) = sum_i w_i prod_j N(x_j; mu_ij, h_j^2) / m_ij,   m_ij = Phi((10 - mu_ij) / h_j) - Phi(-mu_ij / h_j)

``gaussian_kde`` estimates a full covariance (Scott's factor times the data covariance) and does
not truncate, so with its defaults the two are different densities. The comparison makes them the
same one, with scipy's own estimator:

* the **same bandwidth matrix**: ``gaussian_kde`` with the covariance ``diag(h_j^2)``, the
  bandwidths read back from fusion's density (:class:`DiagonalGaussianKDE` sets them in place of
  ``gaussian_kde._compute_covariance``, so ``logpdf`` is scipy's code unchanged);
* the **same kernels**: ``gaussian_kde``'s ``weights`` are ``v_i = (w_i / m_i) / S`` with
  ``m_i = prod_j m_ij`` (``scipy.special.ndtr``) and ``S = sum_i w_i / m_i``. Inside the box scipy's
  density is then ``p(x) / S``, so ``log p(x) = gaussian_kde.logpdf(x) + log S`` exactly; outside
  the box fusion's density is zero and scipy's is not, so every query point is inside.

The figure is ``max |log p_fusion(x) - (log p_scipy(x) + log S)|`` over 10k query points: half
exact draws of fusion's density (a kernel by weight, then ``scipy.stats.truncnorm`` per
coordinate), half uniform in the box. The table also gives ``log S`` and the difference to
``gaussian_kde`` with the same bandwidths and the original weights (no truncation): what
truncation changes in the density, i.e. how different the densities would be without the
reweighting.

Time: ``time.perf_counter`` around fusion's jitted ``log_prob`` (blocking on the result) after a
first call that compiles (*first call*, with its XLA compilations), and around scipy's ``logpdf``;
medians of ``--repeats`` calls, taken in the same run. The ratio is scipy's time over fusion's.
*Build* is the construction of each estimator from the points (fusion's includes its bandwidth
rule and validation; scipy's, its weights and Cholesky factor).

Writes ``benchmarks/results/kde.md`` (``--out``) and prints it.

Run from the repository root: ``.venv/bin/python benchmarks/kde.py`` (about 20 s on 2 cores).
Options: ``[--dims D ...] [--sizes N ...] [--points N] [--repeats N] [--seed N] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np
from _timing import CompileCounter, median_seconds, ms, run_summary, write_report
from scipy import special, stats

from fusion.kde import kernel_density
from fusion.space import CONTINUOUS, Dim, Param, SearchSpace

jax.config.update("jax_enable_x64", True)

HERE = Path(__file__).resolve().parent
LOW, HIGH = 0.0, 10.0
COMPONENTS = ((0.6, 3.0, 1.0), (0.4, 6.5, 1.5))  # (weight, mean, sd) of the data mixture
TARGET_AGREEMENT = 1e-10  # max abs difference of log density, as for fusion's log_prob vs Optuna
HEADLINE = (5, 500)  # (d, n) of the summary figure


class DiagonalGaussianKDE(stats.gaussian_kde):
    """``scipy.stats.gaussian_kde`` with the covariance ``diag(bandwidths^2)`` instead of Scott's
    factor times the data covariance; everything else, ``logpdf`` included, is scipy's."""

    def __init__(self, dataset: np.ndarray, bandwidths: np.ndarray, weights: np.ndarray) -> None:
        self._bandwidths = np.asarray(bandwidths, dtype=float)
        super().__init__(dataset, weights=weights)

    def _compute_covariance(self) -> None:
        h = self._bandwidths
        self.factor = 1.0
        self.covariance = np.diag(h**2)
        self.cho_cov = np.diag(h)
        self.log_det = 2.0 * float(np.sum(np.log(h * np.sqrt(2.0 * np.pi))))


def draw_data(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    """``n`` points of the data mixture of the module docstring, truncated to the box."""
    weights, means, sds = (np.array(v) for v in zip(*COMPONENTS, strict=True))
    comp = rng.choice(len(weights), size=n, p=weights)
    m, s = means[comp][:, None], sds[comp][:, None]
    return stats.truncnorm.rvs(
        (LOW - m) / s, (HIGH - m) / s, loc=m, scale=s, size=(n, d), random_state=rng
    )


def box_space(d: int) -> SearchSpace:
    return SearchSpace(tuple(Param(f"x{j}", Dim(CONTINUOUS, LOW, HIGH)) for j in range(d)))


def fusion_kde(space: SearchSpace, data: np.ndarray):
    return kernel_density(space, [dict(zip(space.names, row, strict=True)) for row in data])


def kernels_of(kde, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(mu (n, d), h (d,), log w (n,))`` of fusion's KDE, without its padding kernels."""
    mu = np.asarray(kde.mu)[:n]  # the padding kernels (weight 0) come after the n real ones
    sigma = np.asarray(kde.sigma)[:n]
    h = sigma[0]
    if not np.all(sigma == h):
        raise AssertionError("fusion's KDE has one bandwidth per coordinate, shared by kernels")
    return mu, h, np.asarray(kde.log_weights)[:n]


def scipy_twin(
    mu: np.ndarray, h: np.ndarray, log_w: np.ndarray
) -> tuple[DiagonalGaussianKDE, float]:
    """scipy's estimator of fusion's truncated density: the kernels reweighted by ``1 / m_i``, and
    ``log S``."""
    log_mass = np.sum(np.log(special.ndtr((HIGH - mu) / h) - special.ndtr((LOW - mu) / h)), axis=1)
    log_v = log_w - log_mass
    log_s = float(special.logsumexp(log_v))
    return DiagonalGaussianKDE(mu.T, h, np.exp(log_v - log_s)), log_s


def draws(rng: np.random.Generator, mu, h, log_w, n: int) -> np.ndarray:
    """``n`` exact draws of fusion's truncated KDE, by SciPy: a kernel by weight, then each
    coordinate from its truncated normal."""
    k = rng.choice(len(log_w), size=n, p=np.exp(log_w - special.logsumexp(log_w)))
    m = mu[k]
    return stats.truncnorm.rvs((LOW - m) / h, (HIGH - m) / h, loc=m, scale=h, random_state=rng)


@dataclass(frozen=True)
class Row:
    d: int
    n: int
    queries: int
    bandwidths: np.ndarray
    log_s: float
    max_abs_diff: float  # fusion against scipy's twin, same density
    max_abs_log_p: float
    untruncated_diff: float  # fusion against scipy with the original weights
    fusion_build: float
    scipy_build: float
    fusion: float  # seconds, median of warm calls
    first_call: float
    compiles: int  # XLA compilations during the first call
    scipy: float

    @property
    def ratio(self) -> float:
        return self.scipy / self.fusion


def measure(d: int, n: int, n_points: int, repeats: int, seed: int) -> Row:
    rng = np.random.default_rng([seed, d, n])
    data = draw_data(rng, n, d)
    space = box_space(d)
    kde = fusion_kde(space, data)
    mu, h, log_w = kernels_of(kde, n)
    truncated, log_s = scipy_twin(mu, h, log_w)
    untruncated = DiagonalGaussianKDE(mu.T, h, np.exp(log_w))
    half = n_points // 2
    x = np.concatenate(
        [draws(rng, mu, h, log_w, half), rng.uniform(LOW, HIGH, (n_points - half, d))]
    )
    x_jax = jax.numpy.asarray(x)

    with CompileCounter() as compiles:
        start = time.perf_counter()
        jax.block_until_ready(kde.log_prob(x_jax))
        first_call = time.perf_counter() - start
    ours = np.asarray(kde.log_prob(x_jax))
    theirs = truncated.logpdf(x.T) + log_s
    if not (np.all(np.isfinite(ours)) and np.all(np.isfinite(theirs))):
        raise AssertionError("a log density is not finite inside the box")
    row = Row(
        d=d,
        n=n,
        queries=n_points,
        bandwidths=h,
        log_s=log_s,
        max_abs_diff=float(np.max(np.abs(ours - theirs))),
        max_abs_log_p=float(np.max(np.abs(ours))),
        untruncated_diff=float(np.max(np.abs(ours - untruncated.logpdf(x.T)))),
        fusion_build=median_seconds(lambda: fusion_kde(space, data), repeats),
        scipy_build=median_seconds(lambda: scipy_twin(mu, h, log_w), repeats),
        fusion=median_seconds(lambda: jax.block_until_ready(kde.log_prob(x_jax)), repeats),
        first_call=first_call,
        compiles=compiles.count,
        scipy=median_seconds(lambda: truncated.logpdf(x.T), repeats),
    )
    print(
        f"d={d} n={n}: max abs diff {row.max_abs_diff:.1e}, scipy {ms(row.scipy)} ms, "
        f"fusion {ms(row.fusion)} ms (first call {ms(row.first_call)} ms), ratio {row.ratio:.2f}",
        flush=True,
    )
    return row


def headline_row(rows: Sequence[Row]) -> Row:
    """The 5-D, 500-point row, or the largest ``d`` and ``n`` run."""
    by = {(r.d, r.n): r for r in rows}
    return by.get(HEADLINE) or max(rows, key=lambda r: (r.d, r.n))


def report(argv: Sequence[str] | None = None) -> tuple[str, list[Row]]:
    """Run the benchmark; the markdown report and its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[1, 2, 5], help="d (1 2 5)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[50, 500], help="n (50 500)")
    parser.add_argument("--points", type=int, default=10_000, help="query points (10000)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "kde.md")
    args = parser.parse_args(argv)
    if min(args.dims) < 1 or min(args.sizes) < 2 or args.points < 2 or args.repeats < 1:
        parser.error("--dims must be >= 1, --sizes and --points >= 2, --repeats >= 1")
    if any(n <= d for d in args.dims for n in args.sizes):
        parser.error("every size must exceed every dimension (gaussian_kde needs n > d)")

    start = time.perf_counter()
    with CompileCounter() as compiles:
        rows = [
            measure(d, n, args.points, args.repeats, args.seed)
            for d in args.dims
            for n in args.sizes
        ]
    worst = max(r.max_abs_diff for r in rows)
    head = headline_row(rows)
    met = worst <= TARGET_AGREEMENT
    lines = [
        "# Kernel density estimate: `fusion.kde.kernel_density` against `scipy.stats.gaussian_kde`",
        "",
        f"Data: n points in [{LOW:g}, {HIGH:g}]^d, each from `0.6 N(3, 1) + 0.4 N(6.5, 1.5^2)` "
        f"truncated to the box (seed {args.seed}). fusion's KDE truncates its kernels to the box; "
        "scipy's `gaussian_kde` does not, and by default uses a full covariance. Here scipy gets "
        "**fusion's diagonal bandwidth matrix** `diag(h^2)` and kernel weights `w_i / m_i` "
        "(`m_i`: the kernel's mass in the box), normalized by `S = sum w_i / m_i`: inside the box "
        "that is the **same density** up to the constant `log S`, which is added back. Query "
        f"points: {args.points}, half exact draws of fusion's density (made with "
        "`scipy.stats.truncnorm`), half uniform in the box, all inside it.",
        "",
        f"**Agreement**: max abs difference of log density over every row **{worst:.1e}** "
        f"(target <= {TARGET_AGREEMENT:g}: **{'met' if met else 'missed'}**). **Speed** "
        f"({head.d}-D, {head.n} points, {args.points} queries): scipy `logpdf` "
        f"{ms(head.scipy)} ms, fusion `log_prob` {ms(head.fusion)} ms warm, ratio "
        f"**{head.ratio:.2f}x**; fusion's first call {ms(head.first_call)} ms "
        f"({head.compiles} XLA compilation{'' if head.compiles == 1 else 's'}).",
        "",
        "| d | n | bandwidths h | log S | max abs diff of log p (same density) | max abs log p "
        "| max abs diff to untruncated scipy | scipy `logpdf` (ms) | fusion `log_prob` warm (ms) "
        "| fusion first call (ms) | compilations, first call | scipy / fusion | build, scipy / "
        "fusion (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        h = ", ".join(f"{v:.3g}" for v in r.bandwidths)
        lines.append(
            f"| {r.d} | {r.n} | {h} | {r.log_s:.3g} | {r.max_abs_diff:.1e} "
            f"| {r.max_abs_log_p:.3g} | {r.untruncated_diff:.3g} | {ms(r.scipy)} | {ms(r.fusion)} "
            f"| {ms(r.first_call)} | {r.compiles} | {r.ratio:.2f} "
            f"| {ms(r.scipy_build)} / {ms(r.fusion_build)} |"
        )
    lines += [
        "",
        "*Max abs diff to untruncated scipy*: the same bandwidths with the original weights, "
        "i.e. a Gaussian KDE that leaks mass out of the box; it shows how much truncation "
        "changes the density (the reweighting removes exactly that). *First call*: the first "
        "`log_prob` on these points, which compiles for the number of kernels (padded to a "
        "power of two) and of points; later calls reuse it. Times: median of "
        f"{args.repeats} calls, in the same run; the machine is shared and noisy, so compare "
        "the ratios.",
        "",
        *run_summary(start, compiles),
    ]
    return write_report("\n".join(lines), args.out), rows


def main(argv: Sequence[str] | None = None) -> str:
    return report(argv)[0]


if __name__ == "__main__":
    main()
