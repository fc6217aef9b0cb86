"""Run every benchmark with its defaults: ``python benchmarks/run.py`` (what ``make bench`` does).

Everything runs once, in this process, through :mod:`micro`: each script writes its own table to
``benchmarks/results/``, and ``micro.md`` there collects their headline figures, each a ratio
against its anchor measured in the same run. Arguments are passed on to ``micro.py``, which passes
those it does not know to ``sampler_overhead.py`` (e.g. ``--trials 60``).
"""

import sys

import micro


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    micro.main(argv)


if __name__ == "__main__":
    main()
