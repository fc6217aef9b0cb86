"""One worker of a study shared through a JournalStorage file (``tests/test_distributed.py`` starts
several), and the check of the alphas a study's trials recorded, shared with ``test_sampler.py``.

Run as ``python tests/study_worker.py JOURNAL STUDY_NAME N_TRIALS WORKER N_WORKERS``: the worker
waits until all ``N_WORKERS`` have started (so that their trials overlap), then runs ``N_TRIALS``
trials of ``objective`` with the sampler of :func:`make_sampler`.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend

from fusion.adaptive import PredictiveCredit
from fusion.optuna import FusionSampler, alpha_records, history_from_trials

SUGGESTIONS = [{"x": 0.5, "y": -0.5}, {"x": -0.2, "y": 0.1}]
SECONDS_PER_TRIAL = 0.05  # every trial stays running for a while, so workers see each other's


def make_sampler() -> FusionSampler:
    """The one configuration every worker uses, seed included."""
    return FusionSampler(
        SUGGESTIONS, alpha=PredictiveCredit(gamma=0.25), n_startup_trials=3, seed=0
    )


def objective(trial: optuna.Trial) -> float:
    x = trial.suggest_float("x", -1.0, 1.0)
    y = trial.suggest_float("y", -1.0, 1.0)
    time.sleep(SECONDS_PER_TRIAL)
    return (x - 0.3) ** 2 + (y + 0.2) ** 2


def check_recorded_alphas(study: optuna.Study, sampler: FusionSampler) -> list:
    """Recompute every alpha the study's trials recorded with ``sampler`` from the history each
    draw saw, recovered from the study's current state; assert they are equal. Returns the
    records."""
    trials = study.get_trials(deepcopy=False)
    checked = []
    for t in trials:
        for record in alpha_records(t):
            history = history_from_trials(record.seen(trials), study.direction)
            assert len(history) == record.n, (t.number, record)
            assert sampler.alpha(history) == record.alpha, (t.number, record)
            assert t.number in record.unfinished, (t.number, record)  # running while it drew
            checked.append(record)
    return checked


def _wait_for_workers(folder: Path, worker: int, n_workers: int) -> None:
    (folder / f"ready-{worker}").touch()
    deadline = time.monotonic() + 120.0
    while len(list(folder.glob("ready-*"))) < n_workers:
        if time.monotonic() > deadline:
            raise TimeoutError(f"worker {worker}: the other workers did not start")
        time.sleep(0.01)


def main(journal: str, study_name: str, n_trials: int, worker: int, n_workers: int) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = JournalStorage(JournalFileBackend(journal))
    study = optuna.load_study(study_name=study_name, storage=storage, sampler=make_sampler())
    _wait_for_workers(Path(journal).parent, worker, n_workers)
    study.optimize(objective, n_trials=n_trials)


if __name__ == "__main__":
    journal, study_name, n_trials, worker, n_workers = sys.argv[1:]
    main(journal, study_name, int(n_trials), int(worker), int(n_workers))
