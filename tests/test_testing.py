"""``fusion.testing``: the strategies draw what they promise.

- spaces: well-formed geometry, the requested kinds and sizes, user bounds that match it;
- points: inside the space (in the bounds, on the grid, a valid index), and unchanged by a round
  trip through user values;
- suggestions: accepted by ``SearchSpace.to_internal``;
- densities: finite ``log_prob`` at every point of the space, and normalized: ``log Z = 0`` to
  quadrature precision by ``fusion.normalize.log_normalizer(..., "quadrature")`` (which integrates
  ``log_prob`` as if it were unnormalized), on spaces small enough for a tensor rule;
- argument checks, the ``ImportError`` without hypothesis, and that nothing else in ``fusion``
  imports hypothesis.

Every new space compiles ``log_prob`` anew (the geometry is static), so the tests that evaluate
densities draw fewer examples (``JAX_EXAMPLES``); the pure NumPy ones run the profile's count.
"""

from __future__ import annotations

import ast
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from fusion import testing as ft
from fusion.combine import LinearPool, LogLinearPool
from fusion.density import ProductKernelMixture
from fusion.normalize import log_normalizer
from fusion.space import (
    CATEGORICAL,
    CONTINUOUS,
    DISCRETE,
    LOG_DISCRETE,
    Dim,
    Param,
    SearchSpace,
    check_dims,
)
from fusion.space import _same_choice as same_choice

ROOT = Path(__file__).resolve().parent.parent
JAX_EXAMPLES = 5
# Quadrature of a normalized density: the rule is cut around every kernel, so log Z = 0 to about
# 1e-12; the bound leaves room for the coarsest pieces on a 2-D continuous space.
LOG_Z_TOL = 1e-8

KIND_OF = {
    "float": (CONTINUOUS, False),
    "log_float": (CONTINUOUS, True),
    "int": (DISCRETE, False),
    "log_int": (LOG_DISCRETE, True),
    "step_float": (DISCRETE, False),
    "step_int": (DISCRETE, False),
    "categorical": (CATEGORICAL, False),
}

# Spaces on which a tensor quadrature rule of 2**20 points is exact enough (log_normalizer's
# default budget): at most two continuous coordinates and short grids.
SMALL = ft.search_spaces(1, 3, max_points=6, max_choices=3).filter(
    lambda s: sum(d.kind == CONTINUOUS for d in s.dims) <= 2
)


def quadrature_log_z(density) -> float:
    r = log_normalizer(density, "quadrature")
    assert r.method == "quadrature"
    return r.log_z


def inside(dims, x: np.ndarray) -> np.ndarray:
    """Whether each row of ``x`` lies in the space: in the bounds, on the grid, a valid index."""
    ok = np.ones(x.shape[0], dtype=bool)
    for j, d in enumerate(dims):
        if d.kind == CONTINUOUS:
            ok &= (x[:, j] >= d.low) & (x[:, j] <= d.high)
        else:
            ok &= np.isin(x[:, j], d.grid())
    return ok


# --- spaces ------------------------------------------------------------------------------------


@given(ft.search_spaces(1, 6))
def test_search_spaces_are_well_formed(space):
    assert isinstance(space, SearchSpace) and 1 <= len(space) <= 6
    check_dims(space.dims)
    assert len(set(space.names)) == len(space)
    for p in space.params:
        d = p.dim
        if d.kind == CATEGORICAL:
            assert len(p.choices) == d.n_choices
            for i, a in enumerate(p.choices):
                assert not any(same_choice(a, b) for b in p.choices[i + 1 :]), p.choices
            continue
        low, high = p.user_bounds
        assert low <= high
        if d.kind == CONTINUOUS:
            assert d.low < d.high
            if p.log:
                assert math.isclose(math.exp(d.low), low, rel_tol=1e-12)
                assert math.isclose(math.exp(d.high), high, rel_tol=1e-12)
                assert 1e-6 * (1 - 1e-12) <= low and high / low >= 2 * (1 - 1e-12)
            else:
                assert (d.low, d.high) == (low, high) and high - low >= 0.01 * (1 - 1e-12)
        else:
            assert (d.low, d.high) == (low, high) and 1 <= d.n_points <= 16
            assert d.grid()[-1] == high
            if p.is_int:
                assert float(low).is_integer() and float(d.step).is_integer()


@pytest.mark.parametrize("kind", ft.KINDS)
@given(data=hst.data())
def test_search_spaces_draw_only_the_requested_kind(kind, data):
    space = data.draw(ft.search_spaces(2, 3, kinds=kind))
    assert 2 <= len(space) <= 3
    for p in space.params:
        assert (p.dim.kind, p.log) == KIND_OF[kind]
        if kind in ("int", "log_int"):
            assert p.dim.step == 1.0 and p.is_int
        if kind == "step_int":
            assert p.dim.step in ft.INT_STEPS and p.is_int
        if kind == "step_float":
            assert p.dim.step in ft.STEPS and not p.is_int


# --- points and suggestions --------------------------------------------------------------------


@given(hst.data())
def test_points_lie_inside_the_space_and_survive_a_round_trip(data):
    space = data.draw(ft.search_spaces(1, 5))
    x = data.draw(ft.points(space, 7))
    assert x.shape == (7, len(space)) and x.dtype == float
    assert inside(space.dims, x).all()
    for row in x:
        back = space.to_internal(space.to_user(row))
        np.testing.assert_allclose(back, row, rtol=1e-12, atol=1e-12)


@given(hst.data())
def test_points_accept_dims_and_unbounded_coordinates(data):
    dims = (Dim(CONTINUOUS, -np.inf, np.inf), Dim(CONTINUOUS, 0.0, np.inf))
    x = data.draw(ft.points(dims, 3))
    assert np.isfinite(x).all() and (np.abs(x) <= 1e3).all() and (x[:, 1] >= 0).all()


@given(hst.data())
def test_suggestion_sets_are_valid_configurations(data):
    space = data.draw(ft.search_spaces(1, 5))
    configs = data.draw(ft.suggestion_sets(space, 2, 5))
    assert 2 <= len(configs) <= 5
    for c in configs:
        assert set(c) == set(space.names)
        x = space.to_internal(c)  # raises ValueError on any invalid value
        assert inside(space.dims, x[None, :]).all()
        for p in space.params:
            if p.is_int:
                assert type(c[p.name]) is int


# --- densities ---------------------------------------------------------------------------------


@settings(max_examples=JAX_EXAMPLES)
@given(hst.data())
def test_mixtures_are_normalized_and_positive_inside(data):
    space = data.draw(SMALL)
    mix = data.draw(ft.mixtures(space, 1, 3))
    x = data.draw(ft.points(space, 16))
    assert isinstance(mix, ProductKernelMixture) and mix.n_kernels == 4  # padded to bucket(3)
    weights = np.exp(np.asarray(mix.log_weights))
    assert 1 <= np.count_nonzero(weights) <= 3 and abs(weights.sum() - 1) < 1e-12
    assert np.isfinite(np.asarray(mix.log_prob(x))).all()
    assert abs(quadrature_log_z(mix)) < LOG_Z_TOL


@settings(max_examples=JAX_EXAMPLES)
@given(hst.data())
def test_mixtures_with_zero_probabilities_stay_normalized(data):
    space = data.draw(ft.search_spaces(1, 2, kinds=("categorical", "int"), max_choices=4))
    mix = data.draw(ft.mixtures(space, 2, 2, pad_to=8, zero_probs=True))
    assert mix.n_kernels == 8
    for t in mix.cat_log_probs:
        real = np.asarray(t)[:2]
        assert np.all(np.isfinite(real).any(axis=1))  # every row keeps a positive entry
    assert abs(quadrature_log_z(mix)) < LOG_Z_TOL


@settings(max_examples=JAX_EXAMPLES)
@given(hst.data())
def test_suggestion_densities_are_normalized_with_a_floor(data):
    space = data.draw(SMALL)
    p_llm = data.draw(ft.suggestion_densities(space, 1, 5, min_floor=0.05, weighted=True))
    x = data.draw(ft.points(space, 16))
    kde, uniform = p_llm.components
    assert isinstance(p_llm, LinearPool) and kde.n_kernels == 8  # padded to bucket(5)
    floor = math.exp(float(p_llm.log_weights[1]))
    assert 0.05 - 1e-12 <= floor <= 0.5 + 1e-12
    log_p = np.asarray(p_llm.log_prob(x))
    # p_llm >= floor * uniform everywhere in the space
    assert np.all(log_p >= math.log(floor) + np.asarray(uniform.log_prob(x)) - 1e-12)
    assert abs(quadrature_log_z(p_llm)) < LOG_Z_TOL


@settings(max_examples=JAX_EXAMPLES)
@given(hst.data())
def test_pools_have_finite_densities_and_the_right_normalizer(data):
    space = data.draw(SMALL)
    pool = data.draw(ft.pools(space))
    x = data.draw(ft.points(space, 16))
    p_llm, p_opt = pool.components
    assert isinstance(p_llm, LinearPool) and isinstance(p_opt, ProductKernelMixture)
    assert np.isfinite(np.asarray(pool.unnormalized_log_prob(x))).all()
    log_z = quadrature_log_z(pool)
    if isinstance(pool, LinearPool):
        assert abs(log_z) < LOG_Z_TOL
    else:
        assert isinstance(pool, LogLinearPool) and np.isfinite(log_z)
        # Hoelder: a geometric pool of normalized densities has Z <= 1.
        if pool.exponents != (1.0, 1.0):
            assert log_z <= LOG_Z_TOL


@given(hst.data())
def test_pools_respect_kind_and_alpha(data):
    space = data.draw(ft.search_spaces(1, 2))
    pool = data.draw(ft.pools(space, "geometric", min_alpha=0.2, max_alpha=0.3))
    a, b = (float(e) for e in pool.exponents)
    assert 0.2 <= a <= 0.3 and a + b == pytest.approx(1.0, abs=1e-15)
    assert data.draw(ft.pools(space, ("product",))).exponents == (1.0, 1.0)
    linear = data.draw(ft.pools(space, "linear", min_alpha=0.4, max_alpha=0.4))
    np.testing.assert_allclose(np.exp(linear.log_weights), [0.4, 0.6], rtol=1e-15)


# --- arguments, imports ------------------------------------------------------------------------

SPACE = SearchSpace((Param("a", Dim(CONTINUOUS, 0.0, 1.0)),))


@pytest.mark.parametrize(
    "make",
    [
        lambda: ft.search_spaces(0, 2),
        lambda: ft.search_spaces(3, 2),
        lambda: ft.search_spaces(kinds=("float", "complex")),
        lambda: ft.search_spaces(kinds=()),
        lambda: ft.search_spaces(max_points=0),
        lambda: ft.points(SPACE, 0),
        lambda: ft.points("not a space"),
        lambda: ft.suggestion_sets(SPACE.dims),  # needs names and choices
        lambda: ft.suggestion_sets(SPACE, 0, 3),
        lambda: ft.mixtures(SPACE, 0, 2),
        lambda: ft.mixtures(SPACE, 3, 2),
        lambda: ft.mixtures(SPACE, 1, 4, pad_to=2),
        lambda: ft.mixtures(SPACE, min_sigma=0.0),
        lambda: ft.mixtures(SPACE, min_sigma=2.0, max_sigma=1.0),
        lambda: ft.suggestion_densities(SPACE, min_floor=-0.1),
        lambda: ft.suggestion_densities(SPACE, max_floor=float("nan")),
        lambda: ft.pools(SPACE, kind="tempered"),
        lambda: ft.pools(SPACE, min_alpha=0.5, max_alpha=0.4),
        lambda: ft.pools(SPACE, max_kernels=True),
    ],
)
def test_bad_arguments_raise_value_error_at_definition(make):
    with pytest.raises(ValueError):
        make()


def test_importing_without_hypothesis_raises_a_clear_import_error():
    code = (
        "import sys; sys.modules['hypothesis'] = None\n"
        "try:\n"
        "    import fusion.testing\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "else:\n"
        "    print('imported')\n"
        "import fusion.density, fusion.kde, fusion.combine, fusion.normalize\n"
        "print('core ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout
    assert "fusion.testing needs hypothesis" in out and "pip install" in out, out
    assert "core ok" in out


def _imports_hypothesis(path: Path) -> bool:
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        else:
            continue
        if any(n == "hypothesis" or n.startswith("hypothesis.") for n in names):
            return True
    return False


def test_only_fusion_testing_imports_hypothesis():
    files = sorted((ROOT / "fusion").rglob("*.py"))
    offenders = [str(p.relative_to(ROOT)) for p in files if _imports_hypothesis(p)]
    assert offenders == ["fusion/testing.py"]
