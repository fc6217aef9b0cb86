"""The benchmark harness: its statistics on arrays whose answer is known by construction, its tables
on synthetic results, and a smoke run end to end in a subprocess.

The statistics are checked against numpy (quantiles) and ``scipy.stats.wilcoxon`` (the paired
test) called directly. The smoke run checks that every promised file is written; the figures it
holds are machine-dependent and not checked here.
"""

import gzip
import importlib
import json
import re

import numpy as np
import pytest
import scipy.stats
from benchmark_scripts import on_path, run_script

NUMBER = r"(?:\d+(?:\.\d+)?(?:e[+-]?\d+)?)"


@pytest.fixture(scope="module")
def harness():
    """``benchmarks/harness.py`` imported with ``benchmarks/`` on ``sys.path`` for this module
    only."""
    with on_path():
        yield importlib.import_module("harness")


def staircase(first_hit: int, n_trials: int, target: float = 1.0) -> np.ndarray:
    """A best-so-far curve that is above ``target`` before trial ``first_hit`` (1-based) and at or
    below it from there on; ``first_hit > n_trials`` never reaches it."""
    n = np.arange(1, n_trials + 1)
    return np.where(n < first_hit, target + 1.0 / n, target * 0.5 / n)


# -- checkpoints and quantiles --------------------------------------------------------------------


def test_checkpoints_stop_at_the_trial_count_and_include_it(harness):
    assert harness.checkpoints(100) == [10, 25, 50, 100]
    assert harness.checkpoints(40) == [10, 25, 40]
    assert harness.checkpoints(8) == [8]
    with pytest.raises(ValueError, match="n_trials"):
        harness.checkpoints(0)


def test_spread_matches_numpy_quantiles(harness):
    rng = np.random.default_rng(0)
    curves = np.minimum.accumulate(rng.exponential(size=(7, 30)), axis=1)
    for n in (1, 10, 25, 30):
        s = harness.spread_at(curves, n)
        column = curves[:, n - 1]
        assert s.median == np.median(column)
        assert s.q25 == np.quantile(column, 0.25)
        assert s.q75 == np.quantile(column, 0.75)
        assert s.q25 <= s.median <= s.q75
    with pytest.raises(ValueError, match="n must be"):
        harness.spread_at(curves, 31)


# -- trials to target, with censoring ------------------------------------------------------------


def test_first_hits_finds_the_known_trial_and_censors_the_rest(harness):
    hits = [3, 7, 12, 20, 41]  # 41 > 40 trials: never reaches the target
    curves = np.stack([staircase(h, 40) for h in hits])
    assert harness.first_hits(curves, 1.0).tolist() == [3, 7, 12, 20, 41]


def test_time_to_target_is_the_lower_median_of_first_hits(harness):
    hits = [3, 7, 12, 20, 41]
    curves = np.stack([staircase(h, 40) for h in hits])
    t = harness.time_to_target(curves, 1.0)
    # 5 seeds: the 3rd smallest first hit
    assert (t.trials, t.reached, t.seeds) == (12, 4, 5)
    assert t.speedup(40) == pytest.approx(40 / 12)


def test_time_to_target_needs_at_least_half_of_the_seeds(harness):
    n = 30
    half = np.stack([staircase(h, n) for h in (5, 9, n + 1, n + 1)])
    t = harness.time_to_target(half, 1.0)
    assert (t.trials, t.reached) == (9, 2)  # 2 of 4 reach: the 2nd smallest first hit
    fewer = np.stack([staircase(h, n) for h in (5, n + 1, n + 1, n + 1)])
    t = harness.time_to_target(fewer, 1.0)
    assert (t.trials, t.reached, t.seeds) == (None, 1, 4)
    assert t.speedup(n) is None


def test_a_method_reaches_its_own_median_by_the_last_trial(harness):
    """With an even number of seeds the median falls between two of them; the lower median still
    makes TPE reach its own final median, at the last trial at the latest."""
    rng = np.random.default_rng(1)
    for seeds in (4, 5, 20):
        curves = np.minimum.accumulate(rng.exponential(size=(seeds, 25)), axis=1)
        target = np.median(curves[:, -1])
        t = harness.time_to_target(curves, target)
        assert t.trials is not None and t.trials <= 25
        assert t.reached >= seeds / 2
        # the same answer from the curves' median: the first trial where at least half the seeds
        # are at or below the target
        at_least_half = np.flatnonzero(np.mean(curves <= target, axis=0) >= 0.5)
        assert t.trials == at_least_half[0] + 1


# -- the paired test ------------------------------------------------------------------------------


def test_paired_verdict_win_tie_loss_against_scipy(harness):
    rng = np.random.default_rng(2)
    theirs = rng.uniform(1.0, 2.0, size=10)
    ours = theirs - rng.uniform(0.1, 0.5, size=10)  # lower regret on every seed
    reference = scipy.stats.wilcoxon(ours, theirs, zero_method="zsplit").pvalue
    assert reference < 0.05
    win = harness.paired_verdict(ours, theirs)
    assert win.outcome == "win" and win.p_value == pytest.approx(reference)
    assert win.median_difference == np.median(ours - theirs) < 0
    loss = harness.paired_verdict(theirs, ours)
    assert loss.outcome == "loss" and loss.p_value == pytest.approx(reference)
    tie = harness.paired_verdict(theirs, theirs.copy())
    assert (tie.outcome, tie.p_value, tie.median_difference) == ("tie", 1.0, 0.0)


def test_paired_verdict_is_a_tie_without_significance(harness):
    rng = np.random.default_rng(3)
    theirs = rng.uniform(1.0, 2.0, size=10)
    ours = theirs + rng.normal(0.0, 0.1, size=10) * np.where(np.arange(10) % 2, 1, -1)
    reference = scipy.stats.wilcoxon(ours, theirs, zero_method="zsplit").pvalue
    assert reference >= 0.05
    v = harness.paired_verdict(ours, theirs)
    assert v.outcome == "tie" and v.p_value == pytest.approx(reference)
    # five seeds, all better: the exact two-sided test cannot reach 0.05 (smallest p is 2/32)
    few = harness.paired_verdict(np.zeros(5), np.ones(5))
    assert few.outcome == "tie" and few.p_value == pytest.approx(2 / 32)


def test_paired_verdict_with_some_equal_pairs_matches_zsplit(harness):
    theirs = np.array([0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    ours = np.array([0.0, 0.0, 0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    reference = scipy.stats.wilcoxon(ours, theirs, zero_method="zsplit").pvalue
    v = harness.paired_verdict(ours, theirs)
    assert v.p_value == pytest.approx(reference)
    assert v.outcome == ("win" if reference < 0.05 else "tie")


def test_paired_verdict_rejects_bad_input(harness):
    with pytest.raises(ValueError, match="same non-zero length"):
        harness.paired_verdict([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        harness.paired_verdict([1.0, np.nan], [1.0, 2.0])


# -- tables on synthetic results ------------------------------------------------------------------


def fake_results(harness, n_trials=30, seeds=8):
    """Results of a run whose answers are known: on ``toy``, Fusion's regret is TPE's divided by
    ten (a win in every cell), piBO's equals Fusion's (a tie) and Random's is ten times TPE's."""
    rng = np.random.default_rng(4)
    cells = harness.cells_of(["toy"], {"toy": False})
    methods = ["Random", "TPE", "piBO", "Fusion"]
    base = np.minimum.accumulate(rng.exponential(size=(seeds, n_trials)), axis=1)
    scale = {"Random": 10.0, "TPE": 1.0, "piBO": 0.1, "Fusion": 0.1}
    studies = []
    for job in harness.make_jobs(cells, methods, seeds, n_trials):
        studies.append(
            {
                "task": job.task,
                "quality": job.quality,
                "method": job.method,
                "seed": job.seed,
                "trials": n_trials,
                "regret": (scale[job.method] * base[job.seed]).tolist(),
                "sampler_seconds": [0.001 * scale[job.method]] * n_trials,
                "wall_seconds": 0.5,
            }
        )
    settings = {
        "mode": "test",
        "seeds": seeds,
        "trials": n_trials,
        "tasks": ["toy"],
        "methods": methods,
        "cells": [list(c) for c in cells],
        "revision": "test",
    }
    data = {"version": 1, "settings": settings, "runs": [], "studies": studies}
    return data, base


def test_make_jobs_runs_prior_free_methods_once_per_task_and_seed(harness):
    cells = harness.cells_of(["a", "b"], {"a": False, "b": True})
    assert [q for t, q in cells if t == "b"] == ["strong", "weak", "wrong", "hand-written"]
    jobs = harness.make_jobs(cells, ["Random", "TPE", "Fusion", "piBO"], seeds=3, trials=5)
    # per seed: 2 tasks x 2 prior-free + 7 cells x 2 prior-guided
    assert len(jobs) == 3 * (2 * 2 + 7 * 2)
    assert len(set(jobs)) == len(jobs)
    assert all(j.quality is None for j in jobs if j.method in ("Random", "TPE"))
    ordered = harness.order_jobs(jobs, {"a": 0.0, "b": 1.0})
    assert set(ordered) == set(jobs) and len(ordered) == len(jobs)
    assert all(j.task == "b" for j in ordered[: len(ordered) // 2])  # the slow task first


def test_render_writes_tables_that_match_the_statistics(harness, tmp_path):
    data, base = fake_results(harness)
    headline = harness.render(data, tmp_path)
    regret = (tmp_path / "regret.md").read_text()
    # the Fusion row of the strong cell: its median at trial 25 is numpy's median of base / 10
    row = re.search(r"^\| toy \| strong \| Fusion \| 8 \|(.*)\|$", regret, re.M)
    assert row is not None, regret
    expected = harness.fmt(float(np.median(0.1 * base[:, 24])))
    assert f"| {expected} [" in row.group(0)
    wins = (tmp_path / "wins.md").read_text()
    assert "Fusion beats TPE in 3 of 3 cells, ties 0, loses 0." in wins
    assert "Fusion beats piBO in 0 of 3 cells, ties 3, loses 0." in wins  # equal on every seed
    assert "Fusion beats Random in 3 of 3 cells" in wins
    speedup = (tmp_path / "speedup.md").read_text()
    tpe_target = np.median(base[:, -1])
    t = harness.time_to_target(0.1 * base, tpe_target)
    assert re.search(rf"^\| toy \| weak \| .* \| Fusion \| {t.trials} \|", speedup, re.M), speedup
    overhead = (tmp_path / "overhead.md").read_text()
    assert re.search(r"^\| Fusion \| 0\.10 \| 0\.10 \| 0\.1 \|$", overhead, re.M), overhead
    summary = (tmp_path / "summary.md").read_text()
    assert "Fusion reaches TPE's 30-trial median within 20 trials" in summary
    assert re.search(r"Fusion beats piBO in most cells: wins 0 of 3 .*\*\*missed\*\*", summary)
    assert "toy" in headline and (tmp_path / "curves_toy.png").read_bytes()[:4] == b"\x89PNG"


def test_render_pairs_only_the_seeds_both_methods_have(harness, tmp_path):
    data, _ = fake_results(harness)
    # drop piBO's seed 0 in every cell: the pairs shrink to 7
    data["studies"] = [s for s in data["studies"] if not (s["method"] == "piBO" and s["seed"] == 0)]
    harness.render(data, tmp_path)
    wins = (tmp_path / "wins.md").read_text()
    assert re.search(r"^\| toy \| strong \| piBO \| \w+ \| .* \| 7 \|$", wins, re.M), wins


# -- end to end -----------------------------------------------------------------------------------


def test_smoke_run_writes_every_output_and_resumes(tmp_path):
    stdout = run_script("harness.py", "--smoke", "--out", str(tmp_path))
    for name in (
        "results.json.gz",
        "regret.md",
        "speedup.md",
        "wins.md",
        "overhead.md",
        "summary.md",
    ):
        assert (tmp_path / name).is_file(), name
    data = json.loads(gzip.decompress((tmp_path / "results.json.gz").read_bytes()))
    settings = data["settings"]
    tasks, methods = settings["tasks"], settings["methods"]
    prior_free = [m for m in methods if m in ("Random", "TPE")]
    n_cells = len(settings["cells"])
    expected = settings["seeds"] * (
        len(tasks) * len(prior_free) + n_cells * (len(methods) - len(prior_free))
    )
    assert len(data["studies"]) == expected
    assert f"{expected} studies:" in stdout
    for study in data["studies"]:
        regret = study["regret"]
        assert len(regret) == settings["trials"] == len(study["sampler_seconds"])
        assert all(a >= b >= 0.0 for a, b in zip(regret, regret[1:], strict=False))
    for task in tasks:
        png = (tmp_path / f"curves_{task}.png").read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    regret_md = (tmp_path / "regret.md").read_text()
    for task, quality in settings["cells"]:
        for method in methods:
            row = re.search(
                rf"^\| {task} \| {quality} \| {re.escape(method)} \| 1 \|(.*)\|$", regret_md, re.M
            )
            assert row is not None, f"no row for {task}, {quality}, {method}:\n{regret_md}"
            assert re.search(rf"{NUMBER} \[{NUMBER}, {NUMBER}\]", row.group(1)), row.group(0)
    assert "Fusion reaches TPE's" in (tmp_path / "summary.md").read_text()
    assert "| task | prior |" in stdout  # the headline table

    # --resume finds every study done and runs none; --render-only rebuilds the tables
    stdout = run_script("harness.py", "--smoke", "--resume", "--out", str(tmp_path))
    assert f"{expected} already in" in stdout and ", 0 to run" in stdout
    assert (
        len(json.loads(gzip.decompress((tmp_path / "results.json.gz").read_bytes()))["studies"])
        == expected
    )
    (tmp_path / "regret.md").unlink()
    run_script("harness.py", "--render-only", "--out", str(tmp_path))
    assert (tmp_path / "regret.md").read_text() == regret_md
