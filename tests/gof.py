"""Goodness-of-fit tests of samplers against known distributions (test helpers, not fusion API).

Every sampler test draws with a fixed seed and rejects at level ``ALPHA``. Were the sampler exact,
each check would fail with probability ``ALPHA`` for a random seed; with fixed seeds a passing
check stays passing, and the expected number of false failures over the whole suite is
``ALPHA`` times the number of checks: the sampler tests (``test_sample.py``, ``test_resample.py``,
``test_mcmc.py``) hold 23 such checks, so with fresh seeds a correct implementation would fail one
of them in about 2.3% of runs (the binomial checks at 4.5 standard errors add 7e-6 each, and
the MCMC mode-share check at 4 standard errors 6e-5).

- :func:`chi_square_pvalue`: counts of discrete outcomes (categories, grid points, bins) against
  their probabilities; cells with expected count below 5 are merged into one, as the chi-square
  approximation needs.
- :func:`binned_pvalue`: 1-D continuous draws against a CDF, on bins of equal probability.
- :func:`energy_pvalue`: the two-sample energy statistic (Szekely and Rizzo 2004) of draws
  against exact draws of the target, with a permutation p-value; for ``d > 1``.
"""

from __future__ import annotations

import numpy as np
import scipy.stats as st

ALPHA = 1e-3


def chi_square_pvalue(outcomes: np.ndarray, probs: np.ndarray) -> float:
    """P-value of integer ``outcomes`` in ``range(len(probs))`` against ``probs``."""
    outcomes = np.asarray(outcomes).astype(int).ravel()
    probs = np.asarray(probs, dtype=float)
    assert np.all((outcomes >= 0) & (outcomes < probs.size)), "outcome outside the support"
    probs = probs / probs.sum()
    observed = np.bincount(outcomes, minlength=probs.size).astype(float)
    expected = probs * outcomes.size
    assert observed[expected == 0].sum() == 0, "an outcome of probability 0 was drawn"
    observed, expected = observed[expected > 0], expected[expected > 0]
    small = expected < 5
    if small.any():
        observed = np.append(observed[~small], observed[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    if expected.size < 2:
        return 1.0
    return float(st.chisquare(observed, expected).pvalue)


def binned_pvalue(samples: np.ndarray, cdf, n_bins: int = 20, low=-np.inf, high=np.inf) -> float:
    """P-value of 1-D ``samples`` against the continuous ``cdf`` (vectorized, normalized on
    ``[low, high]``), on ``n_bins`` bins of equal probability found by bisection."""
    samples = np.asarray(samples, dtype=float).ravel()
    targets = np.arange(1, n_bins) / n_bins
    spread = 1e3 * (1.0 + float(np.max(np.abs(samples))))
    lo = np.full(targets.shape, low if np.isfinite(low) else float(np.min(samples)) - spread)
    hi = np.full(targets.shape, high if np.isfinite(high) else float(np.max(samples)) + spread)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        below = cdf(mid) < targets
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    edges = 0.5 * (lo + hi)
    bins = np.searchsorted(edges, samples)
    probs = np.diff(np.concatenate([[0.0], cdf(edges), [1.0]]))
    return chi_square_pvalue(bins, probs)


def energy_pvalue(x: np.ndarray, y: np.ndarray, n_permutations: int = 4999, seed: int = 0) -> float:
    """Permutation p-value of the energy distance ``2 E|X - Y| - E|X - X'| - E|Y - Y'|`` between
    the samples ``x`` and ``y`` (rows are points), after scaling each coordinate by the pooled
    standard deviation. ``n_permutations`` must exceed ``1 / ALPHA`` for the test to be able to
    reject at all."""
    x, y = (np.asarray(v, dtype=float).reshape(len(v), -1) for v in (x, y))
    z = np.concatenate([x, y])
    z = z / np.where(z.std(axis=0) > 0, z.std(axis=0), 1.0)
    distances = np.sqrt(((z[:, None, :] - z[None, :, :]) ** 2).sum(-1))
    n, m = x.shape[0], y.shape[0]
    rng = np.random.default_rng(seed)
    labels = np.zeros((n_permutations + 1, n + m))
    labels[0, :n] = 1.0  # the observed split first, then random relabellings
    for row in labels[1:]:
        row[rng.choice(n + m, n, replace=False)] = 1.0
    row_sums = labels @ distances
    within_x = (row_sums * labels).sum(axis=1)
    between = (row_sums * (1 - labels)).sum(axis=1)
    within_y = distances.sum() - within_x - 2 * between
    stat = 2 * between / (n * m) - within_x / (n * (n - 1)) - within_y / (m * (m - 1))
    return float(np.mean(stat >= stat[0]))
