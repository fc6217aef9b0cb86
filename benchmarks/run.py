"""Run every benchmark with its defaults: ``python benchmarks/run.py`` (what ``make bench`` does).

Arguments are passed on to ``sampler_overhead.py`` (e.g. ``--trials 60``). Each script writes its
table to ``benchmarks/results/``.
"""

import sys

import maxent
import normalizers
import parity
import sampler_overhead
import sampling


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    parity.main([])
    print()
    normalizers.main([])
    print()
    maxent.main([])
    print()
    sampling.main([])
    print()
    sampler_overhead.main(argv)


if __name__ == "__main__":
    main()
