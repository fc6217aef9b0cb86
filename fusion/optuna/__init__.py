"""Optuna integration: read TPE's Parzen estimator as a fusion density, ``FusionSampler``, and the
provenance records it stores on trials, read back as a :class:`fusion.adaptive.History`.

Importing this package checks that the installed Optuna is in :data:`SUPPORTED_OPTUNA` (it reads
TPE's private ``_ParzenEstimator``) and raises ``RuntimeError`` otherwise.
"""

from fusion.optuna.parzen import (
    SUPPORTED_OPTUNA,
    check_optuna_version,
    from_optuna_reprs,
    from_parzen_estimator,
    to_optuna_reprs,
)
from fusion.optuna.sampler import (
    AlphaRecord,
    FusionSampler,
    alpha_records,
    history_from_trials,
    trial_provenance,
)

__all__ = [
    "AlphaRecord",
    "FusionSampler",
    "alpha_records",
    "history_from_trials",
    "trial_provenance",
    "SUPPORTED_OPTUNA",
    "check_optuna_version",
    "from_optuna_reprs",
    "from_parzen_estimator",
    "to_optuna_reprs",
]
