"""Several processes share one study through a JournalStorage file, each with the same
``FusionSampler`` configuration and the same seed (``tests/study_worker.py``).

No trial is lost or duplicated, no two trials get the same configuration, and every alpha a worker
recorded is what a fresh sampler computes from the study's final state for the history that draw
saw: alpha is a function of the stored history alone, whichever process computes it.

Each process would compile the same XLA programs (several seconds each on two cores), so a first
worker runs alone on a study of its own and fills a JAX persistent compilation cache in the test's
temporary folder, which the workers then read. The test sets the cache up through JAX's environment
variables for its own subprocesses; fusion never turns it on.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState
from study_worker import check_recorded_alphas, make_sampler

from fusion.adaptive import LLM, TPE
from fusion.optuna import trial_provenance
from fusion.optuna.sampler import UNIFORM

WORKER = Path(__file__).with_name("study_worker.py")
N_WORKERS = 3
N_TRIALS = 10  # 30 trials keep TPE's bad set under 32 kernels: one padded shape for the whole run


def run_workers(folder: Path, n_workers: int, n_trials: int, env: dict) -> str:
    """``n_workers`` processes, each running ``n_trials`` trials of one new study in a journal file
    in ``folder``; returns the journal's path once all have finished."""
    folder.mkdir()
    journal = str(folder / "journal.log")
    optuna.create_study(study_name="shared", storage=JournalStorage(JournalFileBackend(journal)))
    args = [journal, "shared", str(n_trials)]
    workers = [
        subprocess.Popen(
            [sys.executable, str(WORKER), *args, str(i), str(n_workers)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(n_workers)
    ]
    for worker in workers:
        _, err = worker.communicate(timeout=300)
        assert worker.returncode == 0, err
    return journal


def test_processes_sharing_a_journal_file(tmp_path):
    env = dict(
        os.environ,
        JAX_COMPILATION_CACHE_DIR=str(tmp_path / "jax_cache"),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    run_workers(tmp_path / "warm-up", 1, 5, env)  # past start-up: every program compiles
    journal = run_workers(tmp_path / "shared", N_WORKERS, N_TRIALS, env)

    study = optuna.load_study(
        study_name="shared", storage=JournalStorage(JournalFileBackend(journal))
    )
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == N_WORKERS * N_TRIALS
    assert sorted(t.number for t in trials) == list(range(N_WORKERS * N_TRIALS))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    configurations = [(t.params["x"], t.params["y"]) for t in trials]
    assert len(set(configurations)) == len(configurations)
    assert all(trial_provenance(t)[0] in (LLM, TPE, UNIFORM) for t in trials)

    records = check_recorded_alphas(study, make_sampler())
    # every trial after start-up drew (x, y) in one fused block; start-up lasts until 3 trials
    # have finished, which concurrent workers may overshoot by a trial each
    assert len(records) >= N_WORKERS * N_TRIALS - 3 - N_WORKERS
    assert len({r.alpha for r in records}) > 1
    # the workers ran side by side: some draws saw another worker's trial running
    assert any(len(r.unfinished) > 1 for r in records)
