"""Search spaces against Optuna's own distributions, including cases S3, S4 and O10.

Every reference value comes from Optuna (``to_internal_repr``, ``_contains``, its adjusted bounds)
or from ``math.log``; nothing is copied from ``fusion``.
"""

import math
import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as hst
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from fusion.space import (
    CATEGORICAL,
    CONTINUOUS,
    DISCRETE,
    LOG_DISCRETE,
    Dim,
    Param,
    SearchSpace,
)

# ---------------------------------------------------------------------------------------------
# Strategies: an Optuna distribution together with a valid user value of it.
# ---------------------------------------------------------------------------------------------

# Optuna warns when it moves ``high`` onto the step grid; that is expected here.
pytestmark = pytest.mark.filterwarnings("ignore:The distribution is specified by:UserWarning")

_unit = hst.floats(0.0, 1.0)


def _quiet(cls, *args, **kwargs):
    """An Optuna distribution built without its range-adjustment warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return cls(*args, **kwargs)


def _on_grid(low, high, step, k):
    """A grid value as a user writes it: ``low + k * step`` rounded, clipped to Optuna's bounds."""
    return min(max(low + k * step, low), high)


@hst.composite
def float_cases(draw):
    low = draw(hst.floats(-1e3, 1e3))
    high = low + draw(hst.floats(1e-3, 1e3))
    d = FloatDistribution(low, high)
    v = draw(
        hst.one_of(hst.sampled_from([d.low, d.high]), _unit.map(lambda u: low + u * (high - low)))
    )
    return d, min(max(v, d.low), d.high)


@hst.composite
def log_float_cases(draw):
    # Decimal-looking bounds (1e-5, 3e-4, 0.1, ...), which is what users write.
    low = draw(hst.integers(1, 9)) * 10.0 ** draw(hst.integers(-8, 2))
    high = low * draw(hst.sampled_from([1.0, 2.0, 10.0, 1e2, 1e4, 1e6]))
    d = FloatDistribution(low, high, log=True)
    u = draw(_unit)
    v = draw(hst.sampled_from([d.low, d.high, math.exp(math.log(low) + u * math.log(high / low))]))
    return d, min(max(v, d.low), d.high)


# Stepped floats as users write them, where decimal bounds are not exact binary multiples.
_DECIMAL_STEP_FLOATS = [
    (0.1, 0.7, 0.1),
    (0.0, 0.3, 0.1),
    (0.1, 0.102, 0.001),
    (0.0, 1.0, 0.1),
    (0.5, 2.0, 0.25),
    (-1.0, 1.0, 0.05),
]


@hst.composite
def step_float_cases(draw):
    if draw(hst.booleans()):
        low, high, step = draw(hst.sampled_from(_DECIMAL_STEP_FLOATS))
    else:
        step = draw(hst.sampled_from([1e-3, 0.01, 0.05, 0.1, 0.25, 0.3, 0.5, 1.0, 2.5]))
        low = draw(hst.integers(-100, 100)) * draw(hst.sampled_from([0.1, 0.5, 1.0]))
        high = low + draw(hst.integers(0, 40)) * step + draw(hst.floats(0, 0.99)) * step
    d = _quiet(FloatDistribution, low, high, step=step)
    n = round((d.high - d.low) / step)
    k = draw(hst.one_of(hst.just(0), hst.just(n), hst.integers(0, n)))
    return d, _on_grid(d.low, d.high, step, k)


@hst.composite
def int_cases(draw):
    low = draw(hst.integers(-1000, 1000))
    d = IntDistribution(low, low + draw(hst.integers(0, 1000)))
    return d, draw(hst.integers(d.low, d.high))


@hst.composite
def log_int_cases(draw):
    low = draw(hst.integers(1, 1000))
    d = IntDistribution(low, low + draw(hst.integers(0, 10**6)), log=True)
    return d, draw(hst.integers(d.low, d.high))


@hst.composite
def step_int_cases(draw):
    step = draw(hst.integers(2, 10))
    low = draw(hst.integers(-100, 100))
    d = IntDistribution(low, low + draw(hst.integers(0, 200)), step=step)
    return d, d.low + step * draw(hst.integers(0, (d.high - d.low) // step))


def _choice_key(v):
    """Identity of a choice as fusion defines it: type and value, a list equal to a tuple."""
    if isinstance(v, list | tuple):
        return ("seq", tuple(_choice_key(x) for x in v))
    return (type(v).__name__, v)


_primitive_choices = hst.one_of(
    hst.none(),
    hst.booleans(),
    hst.integers(-5, 5),
    hst.floats(-5, 5, allow_nan=False, width=32),
    hst.text(max_size=3),
)


@hst.composite
def categorical_cases(draw):
    choices = draw(hst.lists(_primitive_choices, min_size=1, max_size=8, unique_by=_choice_key))
    d = CategoricalDistribution(choices)
    return d, d.choices[draw(hst.integers(0, len(choices) - 1))]


ALL_CASES = {
    "float": float_cases(),
    "log_float": log_float_cases(),
    "step_float": step_float_cases(),
    "int": int_cases(),
    "log_int": log_int_cases(),
    "step_int": step_int_cases(),
    "categorical": categorical_cases(),
}


def _space(d, name="p"):
    return SearchSpace.from_optuna({name: d})


def _expected_internal(d, v):
    """The table of ``fusion/space.py``, written from Optuna's own representation."""
    if isinstance(d, CategoricalDistribution):
        # Optuna's ``index`` conflates False/0 and True/1/1.0; the index of this very choice.
        return float(next(i for i, c in enumerate(d.choices) if _choice_key(c) == _choice_key(v)))
    r = d.to_internal_repr(v)
    if isinstance(d, FloatDistribution) and d.log:
        return math.log(r)
    return r


# ---------------------------------------------------------------------------------------------
# from_optuna: geometry of every kind of distribution
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dist", "kind", "low", "high", "step", "log", "is_int"),
    [
        (FloatDistribution(-2.0, 3.0), CONTINUOUS, -2.0, 3.0, 0.0, False, False),
        (
            FloatDistribution(1e-5, 1e-1, log=True),
            CONTINUOUS,
            math.log(1e-5),
            math.log(1e-1),
            0.0,
            True,
            False,
        ),
        (FloatDistribution(0.0, 1.0, step=0.1), DISCRETE, 0.0, 1.0, 0.1, False, False),
        (_quiet(FloatDistribution, 0.0, 1.05, step=0.25), DISCRETE, 0.0, 1.0, 0.25, False, False),
        (IntDistribution(-3, 7), DISCRETE, -3.0, 7.0, 1.0, False, True),
        (IntDistribution(1, 1024, log=True), LOG_DISCRETE, 1.0, 1024.0, 1.0, True, True),
        (_quiet(IntDistribution, 0, 10, step=3), DISCRETE, 0.0, 9.0, 3.0, False, True),
    ],
)
def test_from_optuna_numeric_geometry(dist, kind, low, high, step, log, is_int):
    p = _space(dist, "x")["x"]
    assert p.name == "x" and p.dim.kind == kind and p.log is log and p.is_int is is_int
    assert p.dim.step == pytest.approx(step, rel=1e-15)
    assert (p.dim.low, p.dim.high) == pytest.approx((low, high), rel=1e-15, abs=1e-15)
    # The high that Optuna adjusted onto the grid is the one fusion keeps.
    assert p.user_bounds == pytest.approx((dist.low, dist.high), rel=1e-15, abs=1e-15)
    if kind != CONTINUOUS:
        assert p.dim.n_points == len(np.arange(dist.low, dist.high + step / 2, step))


def test_from_optuna_categorical_and_order():
    choices = [None, 1, "a", 2.5]
    dists = {
        "lr": FloatDistribution(1e-5, 1e-1, log=True),
        "opt": CategoricalDistribution(["adam", "sgd"]),
        "c": CategoricalDistribution(choices),
        "n": IntDistribution(1, 8),
    }
    space = SearchSpace.from_optuna(dists)
    assert space.names == ("lr", "opt", "c", "n") and len(space) == 4
    c = space["c"]
    assert c.dim == Dim(CATEGORICAL, n_choices=4)
    assert all(a is b for a, b in zip(c.choices, choices, strict=True))
    assert space.dims == tuple(space[n].dim for n in space.names)


def test_from_optuna_rejects_unsupported_distribution():
    class UniformDistribution:  # an unknown kind
        low, high, log, step = 0.0, 1.0, False, None

    with pytest.raises(ValueError, match="'u'"):
        SearchSpace.from_optuna({"u": UniformDistribution()})


# ---------------------------------------------------------------------------------------------
# Round trip user -> internal -> user, with the internal coordinate of the table
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", list(ALL_CASES))
@given(data=hst.data())
def test_round_trip(kind, data):
    d, v = data.draw(ALL_CASES[kind])
    space = _space(d)
    # The drawn value, and the bounds, which are valid values too.
    values = [v] if kind == "categorical" else [v, d.low, d.high]
    if isinstance(d, IntDistribution):
        values = [int(u) for u in values]
    for u in values:
        x = space.to_internal({"p": u})
        assert x.shape == (1,) and x.dtype == np.float64
        expected = _expected_internal(d, u)
        if kind in ("log_float", "categorical", "int", "log_int", "step_int"):
            assert x[0] == expected  # ln(value) exactly as math.log gives it; an index; an integer
        else:
            assert x[0] == pytest.approx(expected, rel=1e-12, abs=1e-12)
        back = space.to_user(x)["p"]
        if kind == "categorical":
            assert back is u
        elif isinstance(d, IntDistribution):
            assert type(back) is int and back == u
        else:
            assert type(back) is float
            assert back == pytest.approx(u, rel=1e-12, abs=1e-12)
        assert d._contains(d.to_internal_repr(back)), (u, back)


@pytest.mark.parametrize("kind", list(ALL_CASES))
@given(data=hst.data())
def test_round_trip_is_idempotent_on_internal_coordinates(kind, data):
    d, v = data.draw(ALL_CASES[kind])
    space = _space(d)
    x = space.to_internal({"p": v})
    np.testing.assert_array_equal(space.to_internal(space.to_user(x)), x)


@pytest.mark.parametrize(
    ("dist", "value", "internal"),
    [
        (FloatDistribution(1e-5, 1e-1, log=True), 1e-3, math.log(1e-3)),
        (FloatDistribution(-1.0, 1.0), -0.25, -0.25),
        (FloatDistribution(0.0, 1.0, step=0.25), 0.75, 0.75),
        (IntDistribution(0, 10, step=2), 6, 6.0),
        (IntDistribution(1, 1024, log=True), 64, 64.0),
        (CategoricalDistribution(["adam", "sgd"]), "sgd", 1.0),
    ],
)
def test_internal_coordinate_table(dist, value, internal):
    assert _space(dist).to_internal({"p": value})[0] == internal


@pytest.mark.parametrize(
    "dist",
    [
        FloatDistribution(1e-4, 1e-1, log=True),
        FloatDistribution(1e-3, 10.0, log=True),
        FloatDistribution(0.1, 10.0, log=True),
        FloatDistribution(1e-5, 5e-1, log=True),
        FloatDistribution(0.5, 4.0, log=True),
    ],
)
def test_log_float_bounds_are_valid_values(dist):
    # ``low`` and ``high`` are legal Optuna values, so a suggestion exactly on a bound is accepted,
    # and its coordinate is ln of the bound.
    space = _space(dist, "lr")
    for v in (dist.low, dist.high):
        assert dist._contains(dist.to_internal_repr(v))
        assert space.to_internal({"lr": v})[0] == math.log(v)


def test_to_internal_batch():
    space = SearchSpace.from_optuna(
        {"a": FloatDistribution(0.0, 1.0), "b": CategoricalDistribution(["x", "y"])}
    )
    x = space.to_internal_batch([{"a": 0.5, "b": "y"}, {"b": "x", "a": 0.25}])
    np.testing.assert_array_equal(x, [[0.5, 1.0], [0.25, 0.0]])


def test_to_internal_batch_of_no_configurations():
    space = SearchSpace.from_optuna({"a": FloatDistribution(0.0, 1.0)})
    assert space.to_internal_batch([]).shape == (0, 1)


def test_numpy_scalars_are_numbers():
    space = SearchSpace.from_optuna({"f": FloatDistribution(0.0, 1.0), "i": IntDistribution(0, 9)})
    np.testing.assert_array_equal(
        space.to_internal({"f": np.float32(0.5), "i": np.int64(3)}), [0.5, 3.0]
    )


# ---------------------------------------------------------------------------------------------
# Validation: a ValueError that names the parameter and the bad value
# ---------------------------------------------------------------------------------------------

_LOG_LR = FloatDistribution(1e-5, 1e-1, log=True)


@pytest.mark.parametrize(
    ("dist", "bad"),
    [
        # out of bounds
        (FloatDistribution(0.0, 1.0), 1.5),
        (FloatDistribution(0.0, 1.0), -1e-9),
        (IntDistribution(0, 10), 11),
        (IntDistribution(1, 64, log=True), 65),
        (FloatDistribution(0.0, 1.0, step=0.1), 1.1),
        # case S3: log float in [1e-5, 1e-1]
        (_LOG_LR, 0.0),
        (_LOG_LR, 1.0),
        (_LOG_LR, -1e-3),
        # case S4: unknown categorical choice
        (CategoricalDistribution(["adam", "sgd"]), "adamw"),
        # NaN
        (FloatDistribution(0.0, 1.0), float("nan")),
        (IntDistribution(0, 10), float("nan")),
        (_LOG_LR, float("nan")),
        # wrong type
        (FloatDistribution(0.0, 1.0), "0.5"),
        (FloatDistribution(0.0, 1.0), True),
        (IntDistribution(0, 10), None),
        (IntDistribution(0, 10), "3"),
        # off the grid
        (FloatDistribution(0.0, 1.0, step=0.1), 0.15),
        (IntDistribution(0, 10, step=2), 3),
        (IntDistribution(0, 10), 3.5),
        (IntDistribution(1, 64, log=True), 2.5),
    ],
)
def test_bad_value_raises_naming_param_and_value(dist, bad):
    space = _space(dist, "my_param")
    with pytest.raises(ValueError) as info:
        space.to_internal({"my_param": bad})
    assert "my_param" in str(info.value)
    assert repr(bad) in str(info.value)


def test_missing_and_unknown_parameters_are_named():
    space = SearchSpace.from_optuna({"lr": _LOG_LR, "depth": IntDistribution(1, 8)})
    with pytest.raises(ValueError, match="depth"):
        space.to_internal({"lr": 1e-3})
    with pytest.raises(ValueError, match="width"):
        space.to_internal({"lr": 1e-3, "depth": 2, "width": 3})
    with pytest.raises(ValueError):
        space.to_internal([1e-3, 2])


@given(case=hst.one_of(*(ALL_CASES[k] for k in ALL_CASES if k != "categorical")), data=hst.data())
def test_out_of_bounds_values_raise(case, data):
    d, _ = case
    width = max(d.high - d.low, 1)
    offset = data.draw(hst.floats(1e-6, 10.0)) * width
    bad = data.draw(hst.sampled_from([d.low - offset, d.high + offset]))
    if isinstance(d, IntDistribution):
        bad = math.floor(bad) if bad < d.low else math.ceil(bad)
    with pytest.raises(ValueError) as info:
        _space(d, "q").to_internal({"q": bad})
    assert "'q'" in str(info.value) and repr(bad) in str(info.value)


@given(case=hst.one_of(ALL_CASES["step_float"], ALL_CASES["step_int"], ALL_CASES["int"]))
def test_off_grid_values_raise(case):
    d, _ = case
    if d.low == d.high:
        return
    step = d.step
    bad = d.low + 0.5 * step  # halfway between the first two grid points
    assert not d._contains(bad)
    with pytest.raises(ValueError) as info:
        _space(d, "q").to_internal({"q": bad})
    assert "'q'" in str(info.value) and repr(bad) in str(info.value)


# ---------------------------------------------------------------------------------------------
# Categorical choices: by index, never cast (cases S4 and O10)
# ---------------------------------------------------------------------------------------------


def _cat_space(choices, name="c"):
    return SearchSpace(
        (Param(name, Dim(CATEGORICAL, n_choices=len(choices)), choices=tuple(choices)),)
    )


def test_o10_true_is_not_one():
    choices = [None, 1, "s", 2.5, True]
    space = _space(CategoricalDistribution(choices), "c")
    assert space.to_internal({"c": True})[0] == 4.0
    assert space.to_internal({"c": 1})[0] == 1.0
    assert space.to_internal({"c": None})[0] == 0.0
    assert space.to_user(np.array([4.0]))["c"] is True
    back = space.to_user(np.array([1.0]))["c"]
    assert type(back) is int and back == 1
    # Optuna's own to_internal_repr conflates True with 1 here (documented in its source).
    assert CategoricalDistribution(choices).to_internal_repr(True) == 1


@pytest.mark.parametrize("bad", [True, 1.0, np.float64(1.0), np.bool_(True), "A", 2.50001])
def test_s4_choices_are_not_cast(bad):
    space = _space(CategoricalDistribution([None, 1, "a", 2.5]), "c")
    with pytest.raises(ValueError) as info:
        space.to_internal({"c": bad})
    assert "'c'" in str(info.value) and repr(bad) in str(info.value)


def test_one_true_and_one_point_zero_are_three_choices():
    choices = [1, True, 1.0]
    space = _cat_space(choices)
    for i, v in enumerate(choices):
        assert space.to_internal({"c": v})[0] == i
        back = space.to_user(np.array([float(i)]))["c"]
        assert back is choices[i] and type(back) is type(v)


def test_list_and_tuple_with_equal_items_are_one_choice():
    choices = [None, (1, 2), "x", (1, True)]
    space = _cat_space(choices)
    assert space.to_internal({"c": (1, 2)})[0] == 1.0
    assert space.to_internal({"c": [1, 2]})[0] == 1.0
    assert space.to_internal({"c": [1, True]})[0] == 3.0
    assert space.to_user(np.array([1.0]))["c"] is choices[1]
    for bad in ([1.0, 2], [1, 2, 3], [1], (True, 2)):
        with pytest.raises(ValueError, match="'c'"):
            space.to_internal({"c": bad})
    # Optuna warns on a tuple choice but accepts it, and agrees wherever it accepts the input.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        dist = CategoricalDistribution(choices)
        via_optuna = _space(dist, "c")
    for v in choices:
        assert via_optuna.to_internal({"c": v})[0] == dist.to_internal_repr(v)
    with pytest.raises(ValueError):
        dist.to_internal_repr([1, 2])  # Optuna refuses the list; fusion maps it to (1, 2)
    assert via_optuna.to_internal({"c": [1, 2]})[0] == 1.0


def test_nan_choice():
    nan = float("nan")
    choices = ["a", nan, 0.0]
    space = _space(CategoricalDistribution(choices), "c")
    assert space.to_internal({"c": float("nan")})[0] == 1.0
    assert space.to_internal({"c": 0.0})[0] == 2.0
    assert space.to_user(np.array([1.0]))["c"] is nan


@given(case=categorical_cases())
def test_categorical_agrees_with_optuna_where_unambiguous(case):
    d, _ = case
    space = _space(d, "c")
    for i, v in enumerate(d.choices):
        assert space.to_internal({"c": v})[0] == i
        assert space.to_user(np.array([float(i)]))["c"] is v
        # Optuna compares with ==, which conflates 1, 1.0 and True; compare only where it cannot.
        if sum(1 for w in d.choices if w == v) == 1:
            assert d.to_internal_repr(v) == i


# ---------------------------------------------------------------------------------------------
# to_user snaps onto the grid and clips into range
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("dist", "coordinate", "expected"),
    [
        (FloatDistribution(0.0, 1.0, step=0.1), 0.123456, 0.1),
        (FloatDistribution(0.0, 1.0, step=0.1), 0.16, 0.2),
        (FloatDistribution(0.0, 1.0, step=0.1), -3.0, 0.0),
        (FloatDistribution(0.0, 1.0, step=0.1), 7.0, 1.0),
        (IntDistribution(0, 10), 3.7, 4),
        (IntDistribution(0, 10), 3.2, 3),
        (IntDistribution(0, 10), -0.7, 0),
        (IntDistribution(0, 10), 1e6, 10),
        (_quiet(IntDistribution, 0, 10, step=3), 7.4, 6),
        (_quiet(IntDistribution, 0, 10, step=3), 10.0, 9),
        (IntDistribution(1, 1024, log=True), 3.7, 4),
        (IntDistribution(1, 1024, log=True), 0.0, 1),
        (FloatDistribution(-1.0, 1.0), 0.3, 0.3),
        (FloatDistribution(-1.0, 1.0), 2.0, 1.0),
        (FloatDistribution(-1.0, 1.0), -2.0, -1.0),
        (FloatDistribution(1e-3, 10.0, log=True), math.log(0.5), 0.5),
        (FloatDistribution(1e-3, 10.0, log=True), 50.0, 10.0),
        (FloatDistribution(1e-3, 10.0, log=True), -50.0, 1e-3),
        (CategoricalDistribution(["a", "b", "c"]), 1.4, "b"),
        (CategoricalDistribution(["a", "b", "c"]), -2.0, "a"),
        (CategoricalDistribution(["a", "b", "c"]), 9.0, "c"),
    ],
)
def test_to_user_snaps_and_clips(dist, coordinate, expected):
    v = _space(dist).to_user(np.array([coordinate]))["p"]
    assert type(v) is type(expected)
    assert (
        v == pytest.approx(expected, rel=1e-12, abs=1e-12)
        if isinstance(v, float)
        else v == expected
    )
    assert dist._contains(dist.to_internal_repr(v))


@pytest.mark.parametrize(
    "dist",
    [FloatDistribution(1e-3, 10.0, log=True), FloatDistribution(0.5, 5.0, log=True)],
)
def test_to_user_clips_far_log_coordinates(dist):
    # A coordinate far out in ln units is clipped like any other, not an OverflowError.
    space = _space(dist)
    assert space.to_user(np.array([1e3]))["p"] == pytest.approx(dist.high, rel=1e-15)
    assert space.to_user(np.array([-1e3]))["p"] == pytest.approx(dist.low, rel=1e-15)


@pytest.mark.parametrize("kind", list(ALL_CASES))
@given(data=hst.data(), coordinate=hst.floats(-1e4, 1e4))
def test_to_user_lands_in_the_optuna_distribution(kind, data, coordinate):
    d, _ = data.draw(ALL_CASES[kind])
    if isinstance(d, FloatDistribution) and d.log:
        # ln units: keep the coordinate where exp() is finite, well beyond any bound.
        coordinate = float(np.clip(coordinate, -700.0, 700.0))
    space = _space(d)
    v = space.to_user(np.array([coordinate]))["p"]
    if isinstance(d, IntDistribution):
        assert type(v) is int
    elif isinstance(d, FloatDistribution):
        assert type(v) is float
    assert d._contains(d.to_internal_repr(v))
    # Snapped values are valid user values again, and snapping is idempotent.
    x = space.to_internal({"p": v})
    assert space.to_user(x)["p"] == v


@pytest.mark.parametrize(
    "dist",
    [
        FloatDistribution(0.1, 0.7, step=0.1),
        FloatDistribution(0.0, 0.3, step=0.1),
        FloatDistribution(0.0, 1.0, step=0.1),
        FloatDistribution(0.5, 2.0, step=0.25),
        FloatDistribution(-1.0, 1.0, step=0.05),
    ],
)
def test_every_step_float_grid_point_is_an_optuna_value(dist):
    # The grid as Optuna defines it: low + k * step for k = 0 .. n, with its (adjusted) high last.
    n = round((dist.high - dist.low) / dist.step)
    optuna_grid = [dist.low + k * dist.step for k in range(n)] + [dist.high]
    space = _space(dist)
    for k, g in enumerate(optuna_grid):
        v = space.to_user(np.array([dist.low + k * dist.step]))["p"]
        assert v == pytest.approx(g, rel=1e-12, abs=1e-12)
        assert dist._contains(dist.to_internal_repr(v)), (k, v)
        back = space.to_user(space.to_internal({"p": g}))["p"]
        assert dist._contains(dist.to_internal_repr(back)), (k, g, back)
    assert space["p"].user_bounds[1] <= dist.high


def test_to_user_rejects_wrong_length():
    space = _space(FloatDistribution(0.0, 1.0))
    with pytest.raises(ValueError):
        space.to_user(np.array([0.1, 0.2]))


def test_duplicate_names_rejected():
    p = Param("a", Dim(CONTINUOUS, 0.0, 1.0))
    with pytest.raises(ValueError, match="unique"):
        SearchSpace((p, p))


@pytest.mark.parametrize(
    "dist,value",
    [
        (IntDistribution(0, 10**9), 500000000.3),
        (IntDistribution(0, 10**9), 999999999.5),
        (IntDistribution(1, 10**9, log=True), 123456789.25),
        (FloatDistribution(0.1, 0.7, step=0.1), 0.35),
    ],
)
def test_off_grid_values_of_large_grids_are_refused(dist, value):
    """Half a step off is off the grid anywhere on it, as Optuna's own containment check says."""
    assert not dist._contains(value)
    with pytest.raises(ValueError, match=rf"'p'.*{value!r}.*not on the grid"):
        _space(dist).to_internal({"p": value})
    assert _space(dist).to_internal({"p": dist.high})[0] == dist.high


def test_numpy_scalars_match_their_python_twins():
    """A NumPy scalar is its Python value: ``np.int64(1)`` is the choice ``1``, not ``True``."""
    space = _space(CategoricalDistribution([None, 1, "a", 2.5, True]), "c")
    assert space.to_internal({"c": np.int64(1)})[0] == 1.0
    assert space.to_internal({"c": np.str_("a")})[0] == 2.0
    assert space.to_internal({"c": np.float64(2.5)})[0] == 3.0
    assert space.to_internal({"c": np.bool_(True)})[0] == 4.0


def test_from_optuna_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="distributions must be a dict"):
        SearchSpace.from_optuna([FloatDistribution(0.0, 1.0)])
    with pytest.raises(ValueError, match="'w'.*overflows"):
        SearchSpace.from_optuna({"w": FloatDistribution(-1e308, 1e308)})


def test_to_user_clips_infinite_coordinates():
    space = _space(CategoricalDistribution(["a", "b", "c"]), "c")
    assert space.to_user(np.array([np.inf]))["c"] == "c"
    assert space.to_user(np.array([-np.inf]))["c"] == "a"
    wide = _space(IntDistribution(0, 10))
    assert wide.to_user(np.array([np.inf]))["p"] == 10
