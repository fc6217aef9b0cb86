"""Test configuration: float64 JAX and the hypothesis profiles.

``HYPOTHESIS_PROFILE=ci`` (what ``make test`` uses) is derandomized with bounded examples;
``HYPOTHESIS_PROFILE=thorough`` runs many more examples for a local, slower check.
"""

import os

import jax
from hypothesis import HealthCheck, settings

jax.config.update("jax_enable_x64", True)

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", derandomize=True, max_examples=30, print_blob=True, **_common)
settings.register_profile("dev", max_examples=50, **_common)
settings.register_profile("thorough", max_examples=1000, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
