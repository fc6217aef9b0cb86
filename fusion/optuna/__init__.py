"""Optuna integration: read TPE's Parzen estimator as a fusion density.

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
from fusion.optuna.sampler import FusionSampler

__all__ = [
    "FusionSampler",
    "SUPPORTED_OPTUNA",
    "check_optuna_version",
    "from_optuna_reprs",
    "from_parzen_estimator",
    "to_optuna_reprs",
]
