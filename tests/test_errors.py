"""Bad input at every public entry point: a ``ValueError`` that names the argument and the value,
raised before anything is traced; float32 refused with a ``RuntimeError`` that says how to turn on
x64. Never a raw ``TypeError``, ``ZeroDivisionError`` or a silent NaN from deep inside."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from fusion import kernels
from fusion.adaptive import Constant, HyperbolicDecay
from fusion.combine import geometric, linear_pool, log_linear_pool
from fusion.density import Uniform, mixture
from fusion.kde import suggestion_density
from fusion.optuna import from_optuna_reprs
from fusion.rejection import amgm_rejection_sample
from fusion.space import (
    CATEGORICAL,
    CONTINUOUS,
    DISCRETE,
    LOG_DISCRETE,
    Dim,
    Param,
    SearchSpace,
)

U01 = (Dim(CONTINUOUS, 0.0, 1.0),)
KEY = jax.random.key(0)


def raises_naming(call, *names: str, error=ValueError) -> str:
    with pytest.raises(error) as info:
        call()
    message = str(info.value)
    for name in names:
        assert name in message, message
    return message


@pytest.fixture(scope="module")
def p():
    return mixture(U01, [1.0], [[0.3]], [[0.2]])


@pytest.fixture(scope="module")
def q():
    return mixture(U01, [1.0], [[0.7]], [[0.2]])


@pytest.mark.parametrize("n", [-1, 2.5, "3", True, None])
def test_sample_sizes(p, q, n):
    for density in (p, Uniform(U01), linear_pool((p, q), [0.5, 0.5])):
        raises_naming(lambda d=density: d.sample(KEY, n), "n", repr(n))


def test_zero_draws_are_an_empty_batch(p):
    assert p.sample(KEY, 0).shape == (0, 1)


@pytest.mark.parametrize(
    "kwargs,name,value",
    [
        ({"n": 2.5}, "n", "2.5"),
        ({"n": "3"}, "n", "'3'"),
        ({"n": 0}, "n", "0"),
        ({"batch_size": 2.5}, "batch_size", "2.5"),
        ({"batch_size": "8"}, "batch_size", "'8'"),
        ({"max_rounds": 1.5}, "max_rounds", "1.5"),
        ({"max_rounds": 0}, "max_rounds", "0"),
        ({"min_accepted": 20}, "min_accepted", "20"),
    ],
)
def test_rejection_sampler_arguments(p, q, kwargs, name, value):
    args = {"n": 10, "batch_size": 64, "max_rounds": 2, **kwargs}
    n = args.pop("n")
    raises_naming(lambda: amgm_rejection_sample(geometric(p, q, 0.5), KEY, n, **args), name, value)


@pytest.mark.parametrize("alpha", ["0.5", None, np.array([0.5, 0.5]), 1.5, float("nan"), True])
def test_geometric_alpha(p, q, alpha):
    raises_naming(lambda: geometric(p, q, alpha), "alpha", repr(alpha))


def test_geometric_alpha_may_be_a_0d_array(p, q):
    pool = geometric(p, q, np.float64(0.25))
    assert float(pool.exponents[0]) == 0.25 and float(pool.exponents[1]) == 0.75


def test_pool_arguments(p, q):
    raises_naming(lambda: log_linear_pool((p,), 1.0), "exponents", "1.0")
    raises_naming(lambda: log_linear_pool((p, q), [0.5, "x"]), "exponents", "'x'")
    raises_naming(lambda: linear_pool((p, "x"), [0.5, 0.5]), "densities[1]", "'x'")
    raises_naming(lambda: linear_pool(p, [1.0]), "densities")
    raises_naming(lambda: linear_pool((p, q), ["a", "b"]), "weights", "'a'")
    assert len(log_linear_pool((p, q), np.array([0.5, 0.5])).exponents) == 2


@pytest.mark.parametrize(
    "dim",
    [
        Dim(DISCRETE, 0.0, 1.0, 0.0),
        Dim(DISCRETE, 0.0, 1.0, float("nan")),
        Dim(DISCRETE, 2.0, 1.0, 1.0),
        Dim(LOG_DISCRETE, 0.0, 5.0, 1.0),
        Dim(CATEGORICAL, n_choices=0),
        Dim(CONTINUOUS, 1.0, 0.0),
        Dim(CONTINUOUS, float("nan"), 1.0),
        Dim("ordinal", 0.0, 1.0),
    ],
)
def test_malformed_dims_are_refused(dim):
    raises_naming(lambda: mixture((dim,), [1.0], [[0.5]], [[1.0]]), "dims[0]", str(dim))
    raises_naming(lambda: Uniform((dim,)), "dims[0]", str(dim))


def test_mixture_arrays_of_the_wrong_shape_or_type(p):
    raises_naming(lambda: mixture(U01, [1, 1], [[0.5]], [[0.1], [0.1]]), "mu", "(2, 1)")
    raises_naming(lambda: mixture(U01, ["a"], [[0.5]], [[0.1]]), "weights", "'a'")
    raises_naming(lambda: mixture(U01, [1.0], [["x"]], [[0.1]]), "mu", "'x'")


def test_suggestion_density_arguments():
    space = SearchSpace((Param("x", Dim(CONTINUOUS, 0.0, 1.0)),))
    config = [{"x": 0.5}]
    for floor in ("0.1", None, float("nan"), -0.1):
        raises_naming(
            lambda f=floor: suggestion_density(space, config, floor=f), "floor", repr(floor)
        )
    for n in (-4, 0, 2.5):
        raises_naming(
            lambda n=n: suggestion_density(space, config, n_coordinates=n), "n_coordinates", repr(n)
        )


def test_schedules():
    raises_naming(lambda: HyperbolicDecay(n_half="25"), "n_half", "'25'")
    raises_naming(lambda: HyperbolicDecay(n_half=0.0), "n_half", "0.0")
    raises_naming(lambda: HyperbolicDecay()(float("nan")), "n", "nan")
    raises_naming(lambda: Constant(0.5)(-1), "n", "-1")
    assert HyperbolicDecay(0.5, 10.0)(10) == 0.25


def test_optuna_reprs_of_a_log_float_must_be_positive():
    space = SearchSpace((Param("lr", Dim(CONTINUOUS, math.log(1e-5), 0.0), log=True),))
    for bad in (0.0, -1e-3, float("nan")):
        raises_naming(lambda b=bad: from_optuna_reprs(space, {"lr": [1e-3, b]}), "'lr'", repr(bad))


def test_float32_is_refused_everywhere(p):
    """Without x64, building, evaluating and sampling all refuse; so do the kernel functions, which
    would otherwise lose K3's value to 1e-4 in float32."""
    with jax.enable_x64(False):
        for call in (
            lambda: mixture(U01, [1.0], [[0.5]], [[0.1]]),
            lambda: Uniform(U01),
            lambda: p.log_prob(np.array([[0.5]])),
            lambda: p.sample(KEY, 3),
            lambda: kernels.truncnorm_logpdf(-39.9, 0.0, 1.0, -40.0, -39.0),
            lambda: kernels.log_gauss_mass(-40.0, -39.0),
            lambda: kernels.log_ndtr(-20.0),
            lambda: kernels.sample_truncnorm(KEY, 0.0, 1.0, 38.0, np.inf, shape=(3,)),
            lambda: jax.jit(p.log_prob)(np.array([[0.5]])),
        ):
            raises_naming(call, "64-bit JAX", "jax_enable_x64", error=RuntimeError)


def test_tabulated_columns_must_be_discrete():
    dims = (Dim(CONTINUOUS, 0.0, 1.0), Dim(DISCRETE, 1.0, 3.0, 1.0))
    raises_naming(
        lambda: mixture(dims, [1.0], [[0.5]], [[0.1]], [[[1, 1, 1]]], tabulated=(0,)),
        "tabulated",
        "column 0",
    )
    raises_naming(
        lambda: mixture(dims, [1.0], [[0.5]], [[0.1]], [[[1, 1]]], tabulated=(1,)),
        "cat_probs[0]",
        "(1, 3)",
    )
    m = mixture(dims, [1.0], [[0.5]], [[0.1]], [[[1.0, 2.0, 1.0]]], tabulated=(1,))
    lp = np.asarray(m.log_prob(np.array([[0.5, 2.0], [0.5, 2.5], [0.5, 4.0]])))
    assert np.isfinite(lp[0]) and np.isneginf(lp[1:]).all()
