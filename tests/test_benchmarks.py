"""The demo and the benchmark scripts run end to end on tiny settings and write what they promise.

Each runs in a subprocess, as ``make demo`` and ``make bench`` run them, so that the process-wide
JAX settings a script makes (x64, the demo's persistent compilation cache) stay out of the tests.
The figures themselves are machine-dependent; here only their presence and shape are checked.
"""

import math
import re

from benchmark_scripts import BENCHMARKS, run_script

NUMBER = r"\d+(?:\.\d+)?"


def test_demo_quick_writes_its_table_and_plot(tmp_path):
    out = run_script("demo.py", "--quick", "--seeds", "1", "--trials", "12", "--out", str(tmp_path))
    table = (tmp_path / "table.md").read_text()
    png = (tmp_path / "best_so_far.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    for method in ("TPE", "TPE+enqueue", "Fusion"):
        # progress for each study, and one row of best-so-far errors at 5, 10 and 12 trials
        assert re.search(rf"^{re.escape(method)}\s+seed 0\s+best {NUMBER}", out, re.M), method
        row = re.search(rf"^\| {re.escape(method)} \|(.*)\|$", table, re.M)
        assert row is not None, f"no row for {method} in\n{table}"
        errors = [float(v) for v in re.findall(rf"({NUMBER}) \[", row.group(1))]
        assert len(errors) == 3 and all(0.0 <= e <= 1.0 for e in errors), row.group(0)
        assert errors == sorted(errors, reverse=True), "best-so-far must not increase"


def test_sampler_overhead_reports_the_ratio(tmp_path):
    out_file = tmp_path / "overhead.md"
    run_script("sampler_overhead.py", "--trials", "15", "--repeats", "1", "--out", str(out_file))
    table = out_file.read_text()
    assert re.search(rf"\| warm Fusion / TPE, .* \| {NUMBER} \(range", table), table
    assert re.search(r"\| XLA compilations during the cold study \| [1-9]\d* \|", table), table


def test_parity_reports_an_error_below_the_tolerance(tmp_path):
    out_file = tmp_path / "parity.md"
    run_script(
        "parity.py", "--studies", "2", "--points", "200", "--repeats", "1", "--out", str(out_file)
    )
    table = out_file.read_text()
    worst = re.search(r"every kind\): \*\*([0-9.e+-]+)\*\*", table)
    assert worst is not None, table
    assert float(worst.group(1)) <= 1e-9


def test_normalizers_benchmark_reports_the_headline(tmp_path):
    out_file = tmp_path / "normalizers.md"
    run_script("normalizers.py", "--repeats", "1", "--max-dim", "2", "--out", str(out_file))
    table = out_file.read_text()
    for row in (
        "fusion `quadrature`, tuned",
        "`scipy.integrate.nquad`, defaults",
        "fixed 64x64 Gauss-Legendre on the box",
    ):
        assert re.search(rf"^\| {re.escape(row)} \|", table, re.M), row
    assert re.search(r"\*\*Tuned target\*\* .*\*\*(met|missed)\*\*", table), table


def markdown_rows(table: str) -> list[list[str]]:
    """The cells of every markdown table row in ``table``."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in table.splitlines()
        if line.startswith("| ") and not line.startswith("|---")
    ]


def test_maxent_benchmark_reports_accurate_fits(tmp_path):
    out_file = tmp_path / "maxent.md"
    run_script("maxent.py", "--quick", "--out", str(out_file))
    table = out_file.read_text()
    worst = re.search(r"lambda error \*\*([0-9.e+-]+)\*\*, residual \*\*([0-9.e+-]+)\*\*", table)
    assert worst is not None, table
    assert float(worst.group(1)) <= 1e-8 and float(worst.group(2)) <= 1e-9, worst.group(0)
    rows = {(r[0], r[1]): r for r in markdown_rows(table) if len(r) == 10}
    problems = ("1-D, 4 moments", "2-D, 5 moments", "3-D, 8 moments", "1-D, mixture reference")
    # (method, largest lambda error, largest residual): fusion's quadrature rows against the
    # known solution, SciPy on the same nodes, and the Monte Carlo row up to its sampling error
    bounds = (
        ("fusion `maxent`", 1e-8, 1e-9),
        ("fusion core `solve`", 1e-8, 1e-9),
        ("SciPy `trust-exact`", 1e-6, 1e-8),
        ("fusion `maxent`, importance", math.inf, 0.1),
    )
    for problem in problems:
        for method, max_lambda, max_residual in bounds:
            row = rows.get((problem, method))
            assert row is not None, f"no row for {problem}, {method} in\n{table}"
            assert float(row[8]) <= max_lambda and float(row[9]) <= max_residual, row
        for method in ("`maxentropy` `MinDivergenceModel`", "`maxentropy` `MCMinDivergenceModel`"):
            row = rows[problem, method]
            assert row[2] == "not installed" or float(row[9]) <= 0.1, row


def test_sampling_benchmark_reports_every_sampler(tmp_path):
    out_file = tmp_path / "sampling.md"
    # two targets cover every method: only the product has a closed form, only a geometric pool
    # has the AM-GM round
    run_script(
        "sampling.py", "--quick", "--targets", "geometric", "product", "--out", str(out_file)
    )
    table = out_file.read_text()
    assert len(re.findall(r"samples/s \(>= 1M: \*\*(met|missed)\*\*\)", table)) == 7, table

    def number(cell: str) -> float:
        scale = {"k": 1e3, "M": 1e6}.get(cell[-1:], 1.0)
        return float(cell[:-1] if scale != 1.0 else cell) * scale

    rows = {(r[0], r[1]): r for r in markdown_rows(table) if len(r) == 13}
    common = ("rejection", "rejection, batch 1024", "importance", "fusion `mcmc_sample`",
              "numpyro `MCMC.run`", "blackjax NUTS")  # fmt: skip
    expected = {
        "geometric": ("AM-GM round, jitted", *common),
        "product": ("exact", "exact, prebuilt closed form", *common),
    }
    assert rows[("geometric", "exact")][2].startswith("does not apply"), rows
    for target, methods in expected.items():
        for method in methods:
            row = rows.get((target, method))
            assert row is not None, f"no row for {target}, {method} in\n{table}"
            if method == "blackjax NUTS" and row[2] == "not installed":
                continue
            # n draws, ESS, time, first call, ESS/s, samples/s, ratio to numpyro, compiles per call
            values = [number(c) for c in row[3:11]]
            assert all(v > 0 for v in values[:7]) and values[7] >= 0, row
        assert number(rows[(target, "numpyro `MCMC.run`")][9]) == 1.0


def test_kde_benchmark_agrees_with_scipy_on_the_same_density(tmp_path):
    out_file = tmp_path / "kde.md"
    run_script(
        "kde.py", "--dims", "1", "2", "--sizes", "20", "--points", "500", "--repeats", "1",
        "--out", str(out_file),
    )  # fmt: skip
    table = out_file.read_text()
    worst = re.search(r"over every row \*\*([0-9.e+-]+)\*\*", table)
    assert worst is not None, table
    rows = [r for r in markdown_rows(table) if len(r) == 13 and r[0].isdigit()]
    assert [(r[0], r[1]) for r in rows] == [("1", "20"), ("2", "20")], table
    # Both sides sum the same Gaussian kernels in float64. fusion's bandwidth floor (5% of the
    # range) keeps |x - mu| / h <= 20 on the box, so every log term is at most a few hundred in
    # size and rounding leaves about 1e-13; 1e-10, the agreement asked of fusion's log_prob against
    # Optuna, keeps a margin of 1000. A wrong bandwidth or truncation constant moves the log
    # density by far more: the same kernels without the truncation reweighting differ by > 1e-3.
    assert float(worst.group(1)) <= 1e-10
    for r in rows:
        diff, untruncated = float(r[4]), float(r[6])
        assert diff <= 1e-10 and untruncated > 1e-3, r
        # scipy time, fusion warm time, fusion first call, compilations, ratio
        assert all(float(c) > 0 for c in (r[7], r[8], r[9], r[11])) and int(r[10]) >= 1, r


def test_micro_quick_writes_a_row_per_benchmark(tmp_path):
    # The ESS/s rows are read from the committed sampling table: running the sampling benchmark,
    # even on its quick settings, would double this test's time (its own smoke test runs it).
    sampling_md = BENCHMARKS / "results" / "sampling.md"
    run_script(
        "micro.py", "--quick", "--results", str(tmp_path), "--sampling-from", str(sampling_md)
    )
    table = (tmp_path / "micro.md").read_text()
    for name in ("sampler_overhead", "parity", "kde", "normalizers", "maxent"):
        assert (tmp_path / f"{name}.md").is_file(), f"{name}.md was not written"
    assert not (tmp_path / "sampling.md").exists()
    rows = [r for r in markdown_rows(table) if len(r) == 7 and r[0] != "benchmark"]
    prefixes = ("sampler time per trial", "XLA compilations over a cold", "`log_prob`",
                "KDE log density", "log Z", "maximum entropy", "ESS/s")  # fmt: skip
    for prefix in prefixes:
        found = [r for r in rows if r[0].startswith(prefix)]
        assert found, f"no row for {prefix} in\n{table}"
        for r in found:
            assert r[6] in ("met", "no target") or r[6].startswith("**missed**"), r
            if r[3] != "-":  # the anchor over fusion (or fusion's ESS/s over the anchor's)
                assert float(re.match(rf"({NUMBER})x", r[3]).group(1)) > 0, r
    assert all("earlier run" in r[0] for r in rows if r[0].startswith("ESS/s")), table
    log_prob = next(r for r in rows if r[0].startswith("`log_prob`"))
    assert float(re.search(r"max abs diff ([0-9.e+-]+)", log_prob[4]).group(1)) <= 1e-10, log_prob
    assert re.search(r"Load average \(1, 5, 15 min\) at the start: [0-9.]+, ", table), table
