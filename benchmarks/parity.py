"""fusion's ``log_prob`` against Optuna's ``_ParzenEstimator.log_pdf``: error and speed.

Parity: a handful of random studies, each holding every parameter kind once (float, log float, int,
log int, stepped float, stepped int, categorical) with random bounds and observations, build
Optuna's ``_ParzenEstimator``; :func:`fusion.optuna.from_parzen_estimator` converts it, and both
log-densities are evaluated on the same points (draws of the estimator, uniform points and the
ends of every range). The figure is the largest absolute difference where Optuna is finite; the
two must agree on where the density is zero.

Speed: a 5-D space (float, log float, int, log int, categorical), 200 observations (201 kernels
with the prior), 10k points. Optuna's ``log_pdf`` and fusion's jitted ``log_prob`` (after a
warm-up call that compiles it) are timed in the same run; the figure is the ratio of medians
(target: Optuna / fusion >= 40, agreeing to 1e-10), with the largest absolute difference of the
two log-densities on those same 10k points.

Writes ``benchmarks/results/parity.md`` (``--out``) and prints it.

Usage: ``python benchmarks/parity.py [--studies N] [--repeats N] [--out FILE]``
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import jax
import numpy as np
from _timing import CompileCounter, machine_table, median_seconds, write_report
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers._tpe.parzen_estimator import _ParzenEstimator, _ParzenEstimatorParameters
from optuna.samplers._tpe.sampler import default_weights

from fusion.optuna import from_optuna_reprs, from_parzen_estimator

HERE = Path(__file__).resolve().parent
KINDS = ("float", "log_float", "int", "log_int", "float_step", "int_step", "categorical")
SPEED_KINDS = ("float", "log_float", "int", "log_int", "categorical")
CHOICES = (None, 1, "a", 2.5, True, "b")
# Targets of the speed case: Optuna's log_pdf time over fusion's warm log_prob, and the largest
# absolute difference of the two log-densities on its points.
TARGET_SPEEDUP = 40.0
TARGET_ERROR = 1e-10


def parzen_parameters(magic_clip: bool = True, endpoints: bool = False):
    return _ParzenEstimatorParameters(
        prior_weight=1.0,
        consider_magic_clip=magic_clip,
        consider_endpoints=endpoints,
        weights=default_weights,
        multivariate=True,
    )


def random_distribution(rng: np.random.Generator, kind: str):
    """A random Optuna distribution of ``kind``, with bounds on several scales."""
    if kind == "float":
        scale = 10 ** rng.uniform(-3, 3)
        low = rng.uniform(-1, 1) * scale
        return FloatDistribution(low, low + scale * rng.uniform(0.01, 2))
    if kind == "log_float":
        low = 10 ** rng.uniform(-6, 2)
        return FloatDistribution(low, low * 10 ** rng.uniform(0.01, 5), log=True)
    if kind == "int":
        low = int(rng.integers(-50, 50))
        return IntDistribution(low, low + int(rng.integers(1, 300)))
    if kind == "log_int":
        low = int(rng.integers(1, 30))
        return IntDistribution(low, low + int(rng.integers(1, 1000)), log=True)
    if kind == "float_step":
        step = float(rng.choice([0.01, 0.1, 0.25, 0.5, 2.5]))
        low = round(float(rng.uniform(-10, 10)), 2)
        return FloatDistribution(low, low + step * int(rng.integers(1, 40)), step=step)
    if kind == "int_step":
        step, low = int(rng.integers(2, 8)), int(rng.integers(-20, 20))
        return IntDistribution(low, low + step * int(rng.integers(1, 30)), step=step)
    n = int(rng.integers(2, len(CHOICES) + 1))
    return CategoricalDistribution([CHOICES[i] for i in rng.permutation(len(CHOICES))[:n]])


def random_values(rng: np.random.Generator, dist, n: int) -> np.ndarray:
    """``n`` valid Optuna internal reprs of ``dist`` (raw numbers, or choice indices)."""
    if isinstance(dist, CategoricalDistribution):
        return rng.integers(0, len(dist.choices), n).astype(float)
    lo, hi = dist.low, dist.high
    if dist.step is not None:
        lo, hi = lo - dist.step / 2, hi + dist.step / 2
    u = rng.uniform(np.log(lo), np.log(hi), n) if dist.log else rng.uniform(lo, hi, n)
    v = np.exp(u) if dist.log else u
    if dist.step is not None:
        v = np.clip(
            dist.low + np.round((v - dist.low) / dist.step) * dist.step, dist.low, dist.high
        )
    ends = rng.random(n) < 0.05
    v[ends] = np.where(rng.random(ends.sum()) < 0.5, dist.low, dist.high)
    return v.astype(float)


def random_study(rng: np.random.Generator, kinds: Sequence[str], n_obs: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna warns when it moves ``high`` onto the grid
        space = {f"p{i}_{k}": random_distribution(rng, k) for i, k in enumerate(kinds)}
    obs = {name: random_values(rng, d, n_obs) for name, d in space.items()}
    return space, obs


def eval_points(rng: np.random.Generator, space, estimator, n: int) -> dict[str, np.ndarray]:
    """Half draws of the estimator, half uniform points (with ends mixed in)."""
    drawn = estimator.sample(np.random.RandomState(int(rng.integers(2**31))), n // 2)
    return {
        name: np.concatenate([drawn[name], random_values(rng, d, n - n // 2)])
        for name, d in space.items()
    }


def compare(space, estimator, points) -> tuple[float, int, int]:
    """``(max |fusion - optuna|, number of points, number where both are -inf)``."""
    fspace, mix = from_parzen_estimator(estimator, space)
    ours = np.asarray(mix.log_prob(from_optuna_reprs(fspace, points)))
    theirs = estimator.log_pdf(points)
    zero = np.isneginf(theirs)
    if np.any(np.isnan(ours)) or np.any(np.isnan(theirs)):
        raise AssertionError("NaN in a log-density")
    if not np.all(np.isneginf(ours[zero])) or not np.all(np.isfinite(ours[~zero])):
        raise AssertionError("fusion and Optuna disagree on where the density is zero")
    err = float(np.max(np.abs(ours[~zero] - theirs[~zero]), initial=0.0))
    return err, len(theirs), int(zero.sum())


def speed(seed: int, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    space, obs = random_study(rng, SPEED_KINDS, 200)
    estimator = _ParzenEstimator(obs, space, parzen_parameters())
    n_kernels = len(estimator._mixture_distribution.weights)
    points = eval_points(rng, space, estimator, 10_000)
    fspace, mix = from_parzen_estimator(estimator, space)
    x = jax.numpy.asarray(from_optuna_reprs(fspace, points))

    start = time.perf_counter()
    ours = np.asarray(jax.block_until_ready(mix.log_prob(x)))
    first_call = time.perf_counter() - start
    theirs = estimator.log_pdf(points)
    finite = np.isfinite(theirs)
    if not np.array_equal(finite, np.isfinite(ours)):
        raise AssertionError("fusion and Optuna disagree on where the density is zero")
    optuna_s = median_seconds(lambda: estimator.log_pdf(points), repeats)
    fusion_s = median_seconds(lambda: jax.block_until_ready(mix.log_prob(x)), repeats)
    return {
        "kernels": n_kernels,
        "padded": mix.n_kernels,
        "optuna": optuna_s,
        "fusion": fusion_s,
        "first_call": first_call,
        "max_abs_diff": float(np.max(np.abs(ours[finite] - theirs[finite]), initial=0.0)),
        "points": len(theirs),
    }


def verdict(met: bool) -> str:
    return "met" if met else "missed"


def report(argv: Sequence[str] | None = None) -> tuple[str, dict[str, float]]:
    """Run the benchmark; the markdown report and its figures (the speed case's timings, its
    ``max_abs_diff`` on the 10k points, and ``worst``, the largest error over the random studies)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=6, help="random studies (default 6)")
    parser.add_argument("--points", type=int, default=2000, help="points per study (default 2000)")
    parser.add_argument("--repeats", type=int, default=7, help="timing repeats (default 7)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "parity.md")
    args = parser.parse_args(argv)
    jax.config.update("jax_enable_x64", True)

    rng = np.random.default_rng(args.seed)
    lines = [
        "fusion `ProductKernelMixture.log_prob` against Optuna `_ParzenEstimator.log_pdf` "
        "(multivariate, prior weight 1), float64.",
        "",
        "| study | observations | magic clip | endpoints | points | both -inf | max abs error |",
        "|---|---|---|---|---|---|---|",
    ]
    worst = 0.0
    for i in range(args.studies):
        n_obs = int(rng.integers(0, 80))
        magic_clip, endpoints = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        space, obs = random_study(rng, [KINDS[j] for j in rng.permutation(len(KINDS))], n_obs)
        estimator = _ParzenEstimator(obs, space, parzen_parameters(magic_clip, endpoints))
        err, n_points, n_zero = compare(
            space, estimator, eval_points(rng, space, estimator, args.points)
        )
        worst = max(worst, err)
        lines.append(
            f"| {i} | {n_obs} | {magic_clip} | {endpoints} | {n_points} | {n_zero} | {err:.2e} |"
        )
        print(f"study {i}: {n_obs} observations, max abs error {err:.2e}", flush=True)
    with CompileCounter() as compiles:
        s = speed(args.seed, args.repeats)
    ratio = s["fusion"] / s["optuna"]
    lines += [
        "",
        f"Max abs error over {args.studies} studies (7-D, every kind): **{worst:.2e}**.",
        "",
        f"Speed: 5-D ({', '.join(SPEED_KINDS)}), {s['kernels']} kernels (fusion pads to "
        f"{s['padded']}), 10k points; median of {args.repeats} calls.",
        "",
        "| what | time (ms) |",
        "|---|---|",
        f"| Optuna `_ParzenEstimator.log_pdf` | {1e3 * s['optuna']:.1f} |",
        f"| fusion `log_prob`, jitted, warm | {1e3 * s['fusion']:.1f} |",
        f"| fusion first call (compiles: {compiles.count} XLA compilations, "
        f"{compiles.seconds:.1f} s) | {1e3 * s['first_call']:.0f} |",
        f"| ratio fusion / Optuna (warm) | {ratio:.3f} |",
        "",
        f"Optuna / fusion (warm): **{1 / ratio:.1f}x** (target >= {TARGET_SPEEDUP:g}x: "
        f"**{verdict(1 / ratio >= TARGET_SPEEDUP)}**). Max abs difference of the two "
        f"log-densities on those {s['points']} points: **{s['max_abs_diff']:.2e}** (target "
        f"<= {TARGET_ERROR:g}: **{verdict(s['max_abs_diff'] <= TARGET_ERROR)}**).",
        "",
        machine_table(),
    ]
    table = "\n".join(lines)
    return write_report(table, args.out), {**s, "worst": worst}


def main(argv: Sequence[str] | None = None) -> str:
    return report(argv)[0]


if __name__ == "__main__":
    main()
