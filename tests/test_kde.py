"""The suggestion density (``fusion.kde``): mass one, support, bandwidth floor, cases S1-S4.

References are computed here: Gauss-Legendre quadrature times exact grid sums (helpers from
``test_density.py``), and scipy for the plain Gaussian KDE of case S2.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.integrate as si
import scipy.stats as st
from hypothesis import given, settings
from hypothesis import strategies as hst
from hypothesis.extra.numpy import arrays
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from test_density import (
    evaluate,
    gl_pieces,
    inside_points,
    integrate,
    kernel_cuts,
    outside_points,
    space_rule,
)

from fusion import kde
from fusion.density import mixture
from fusion.space import CATEGORICAL, CONTINUOUS, LOG_DISCRETE, Dim, SearchSpace

# A fixed catalogue of spaces, so that the property tests compile a bounded number of times.
KDE_SPACES = [
    SearchSpace.from_optuna({"x": FloatDistribution(-1.0, 2.0)}),
    SearchSpace.from_optuna(
        {
            "lr": FloatDistribution(1e-5, 1e-1, log=True),
            "layers": IntDistribution(1, 4),
            "opt": CategoricalDistribution(["adam", "sgd", None]),
        }
    ),
    SearchSpace.from_optuna(
        {"batch": IntDistribution(1, 16, log=True), "drop": FloatDistribution(0.0, 0.5, step=0.125)}
    ),
    SearchSpace.from_optuna(
        {"lr": FloatDistribution(1e-4, 1.0, log=True), "mom": FloatDistribution(0.5, 0.99)}
    ),
]


def kernel_ranges(space):
    return np.array([np.subtract(*d.kernel_bounds[::-1]) for d in space.dims if d.is_numeric])


def kernel_units(space, x):
    """Numeric internal coordinates in kernel units (``ln`` for a log int), computed here."""
    cols = [
        np.log(x[:, j]) if d.kind == LOG_DISCRETE else x[:, j]
        for j, d in enumerate(space.dims)
        if d.is_numeric
    ]
    return np.stack(cols, axis=1) if cols else np.zeros((x.shape[0], 0))


def density_rule(space, x, sigma):
    """Quadrature for a suggestion density: continuous coordinates cut around every suggestion."""
    return space_rule(
        space.dims, kernel_units(space, x), np.broadcast_to(sigma, (len(x), sigma.size))
    )


@hst.composite
def suggestions(draw, spaces=KDE_SPACES, counts=(1, 3, 4)):
    """A space from ``spaces``, a number of suggestions from ``counts`` (optionally all the same),
    optional weights (some zero) and a floor in [0, 1]. Kernels are bucketed to powers of two, so
    counts 1, 3, 4 compile twice per space."""
    space = draw(hst.sampled_from(spaces))
    n = draw(hst.sampled_from(counts))
    u = draw(arrays(float, (n, len(space)), elements=hst.floats(0.0, 1.0)))
    if draw(hst.booleans()):
        u[:] = u[0]
    x = []
    for row in u:
        coords = []
        for p, ui in zip(space.params, row, strict=True):
            d = p.dim
            if d.kind == CONTINUOUS:
                coords.append(min(d.low + ui * (d.high - d.low), d.high))
            else:
                g = d.grid()
                coords.append(g[min(int(ui * g.size), g.size - 1)])
        x.append(space.to_user(np.array(coords)))
    weights = None
    if draw(hst.booleans()):
        weights = draw(arrays(float, n, elements=hst.sampled_from([0.0, 0.5, 1.0, 3.0])))
        if weights.sum() == 0:
            weights[0] = 1.0
    floor = draw(hst.sampled_from([0.0, 0.1, 0.5, 1.0]))
    return space, x, weights, floor


# Each space of the catalogue is a case; hypothesis runs a third of the profile's examples on each.
PER_SPACE = settings(max_examples=max(3, settings().max_examples // 3))
SPACE_IDS = ["float", "logfloat-int-cat", "logint-stepfloat", "logfloat-float"]


@pytest.mark.parametrize("space", KDE_SPACES, ids=SPACE_IDS)
@PER_SPACE
@given(data=hst.data())
def test_suggestion_density_mass_is_one(space, data):
    space, configs, weights, floor = data.draw(suggestions(spaces=[space]))
    x = space.to_internal_batch(configs)
    sigma = np.asarray(kde.kernel_density(space, configs, weights).sigma)[0]
    p = kde.suggestion_density(space, configs, weights, floor=floor)
    pts, w = density_rule(space, x, sigma)
    assert abs(integrate(p.log_prob, pts, w) - 1.0) < 1e-8


@pytest.mark.parametrize("space", KDE_SPACES, ids=SPACE_IDS)
@PER_SPACE
@given(data=hst.data(), u=arrays(float, (16, 3), elements=hst.floats(0.0, 1.0)))
def test_suggestion_density_finite_inside_minus_inf_outside(space, data, u):
    space, configs, weights, floor = data.draw(suggestions(spaces=[space]))
    p = kde.suggestion_density(space, configs, weights, floor=floor)
    inside = evaluate(p.log_prob, inside_points(space.dims, u[:, : len(space)]))
    assert np.all(np.isfinite(inside)), inside
    assert np.all(evaluate(p.log_prob, outside_points(space.dims)) == -np.inf)


@given(case=suggestions(counts=range(1, 7)))
def test_bandwidth_is_floored_above_zero_and_capped_at_the_range(case):
    space, configs, weights, _ = case
    m = kde.kernel_density(space, configs, weights)
    k = len(configs)
    sigma = np.asarray(m.sigma)[:k]
    r = kernel_ranges(space)
    assert kde.MIN_BANDWIDTH > 0
    assert np.all(np.isfinite(sigma)) and np.all(sigma > 0)
    assert np.all(sigma >= kde.MIN_BANDWIDTH * r * (1 - 1e-12))
    assert np.all(sigma <= r * (1 + 1e-12))
    # Each kernel sits on its suggestion, in kernel units.
    np.testing.assert_allclose(
        np.asarray(m.mu)[:k], kernel_units(space, space.to_internal_batch(configs)), rtol=1e-12
    )


# ---------------------------------------------------------------------------------------------
# S1: a handful of near-identical suggestions in a 5-D space
# ---------------------------------------------------------------------------------------------

S1_SPACE = SearchSpace.from_optuna(
    {
        "lr": FloatDistribution(1e-5, 1e-1, log=True),
        "n_layers": IntDistribution(1, 4),
        "dropout": FloatDistribution(0.0, 0.5),
        "batch": IntDistribution(1, 8, log=True),
        "optimizer": CategoricalDistribution(["adam", "sgd", "rmsprop"]),
    }
)


def _s1(lr, n_layers, dropout, batch, optimizer):
    return [
        dict(lr=a, n_layers=b, dropout=c, batch=d, optimizer=e)
        for a, b, c, d, e in zip(lr, n_layers, dropout, batch, optimizer, strict=True)
    ]


S1_CASES = {
    # Three configurations in five dimensions, lr = 0.083 every time; everything else identical too.
    "three-identical": _s1([0.083] * 3, [2] * 3, [0.1] * 3, [4] * 3, ["adam"] * 3),
    # lr = 0.083 three times, the int param gets [1, 1, 1, 1, 2].
    "int-11112": _s1(
        [0.083, 0.083, 0.083, 1e-3, 1e-4],
        [1, 1, 1, 1, 2],
        [0.1, 0.2, 0.1, 0.3, 0.5],
        [1, 1, 2, 8, 8],
        ["adam", "adam", "sgd", "adam", "rmsprop"],
    ),
}


@pytest.mark.parametrize("configs", S1_CASES.values(), ids=S1_CASES.keys())
@pytest.mark.parametrize("floor", [0.0, kde.DEFAULT_FLOOR])
def test_s1_few_identical_suggestions(configs, floor):
    space = S1_SPACE
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no RuntimeWarning (log 0, 0/0) along the way
        m = kde.kernel_density(space, configs)
        p = kde.suggestion_density(space, configs, floor=floor)
    k = len(configs)
    sigma, mu = np.asarray(m.sigma)[:k], np.asarray(m.mu)[:k]
    assert np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))
    r = kernel_ranges(space)
    assert np.all(sigma / r >= kde.MIN_BANDWIDTH * (1 - 1e-12)) and np.all(sigma > 0)
    # log-density finite everywhere in the space: a 33-point grid (bounds included) on each
    # continuous coordinate times every grid point of the discrete and categorical ones.
    axes = [
        np.linspace(d.low, d.high, 33) if d.kind == CONTINUOUS else d.grid() for d in space.dims
    ]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(axes))
    lp = evaluate(p.log_prob, grid)
    assert not np.isnan(lp).any() and np.all(np.isfinite(lp))
    # Mass one.
    x = space.to_internal_batch(configs)
    pts, w = density_rule(space, x, sigma[0])
    assert abs(integrate(p.log_prob, pts, w) - 1.0) < 1e-8


# ---------------------------------------------------------------------------------------------
# S2: 20,000 uniform points, bandwidth 0.02 on [0, 1]: the boundary
# ---------------------------------------------------------------------------------------------


def test_s2_truncated_kernels_keep_all_mass_inside():
    """Boundary treatment. A plain Gaussian KDE of U(0,1) data with bandwidth h = 0.02 puts, in
    expectation, ``Phi(1/h) - 1/2 = 0.5`` at x = 0 (half the true density 1) and leaks
    ``2 int_0^1 Phi(-x/h) dx = 1.596%`` of its mass outside [0, 1]. ``fusion`` truncates and
    renormalizes every kernel to the space, so nothing leaks (mass inside is exactly one) and the
    density at x = 0 is ``int_0^1 phi_h(x) / M(x) dx ~ ln 2 = 0.69`` in expectation, where
    ``M(x)`` is the mass of the kernel at x inside [0, 1]: better than 0.5, still below 1 (a
    truncated KDE still has a boundary bias of order one at the bound itself)."""
    h, n = 0.02, 20_000
    pts = np.random.default_rng(2024).uniform(size=n)

    # The two reference numbers of the plain Gaussian, from scipy.
    plain_at_zero = st.norm.cdf(1 / h) - 0.5
    plain_leak = 2 * si.quad(lambda x: st.norm.cdf(-x / h), 0, 1, epsabs=1e-14)[0]
    assert abs(plain_at_zero - 0.5) < 1e-12
    assert round(100 * plain_leak, 3) == 1.596
    # scipy's gaussian_kde on these points shows both (within sampling noise: sd 0.018 at zero,
    # about 0.0005 on the leak).
    plain = st.gaussian_kde(pts, bw_method=h / pts.std(ddof=1))
    assert abs(math.sqrt(plain.covariance[0, 0]) - h) < 1e-12
    assert abs(plain(0.0)[0] - plain_at_zero) < 0.1
    assert abs((1 - plain.integrate_box_1d(0.0, 1.0)) - plain_leak) < 0.003

    # fusion's truncated-kernel density with the same points and bandwidth.
    dims = (Dim(CONTINUOUS, 0.0, 1.0),)
    m = mixture(dims, np.ones(n), pts[:, None], np.full((n, 1), h))
    nodes, weights = gl_pieces(kernel_cuts(0.0, 1.0, max_piece=h / 2))
    lp = evaluate(m.log_prob, nodes.reshape(-1, 1), chunk=128)
    assert np.all(np.isfinite(lp))
    assert abs(np.sum(weights.ravel() * np.exp(lp)) - 1.0) < 1e-8
    assert np.all(evaluate(m.log_prob, np.array([[-1e-9], [1 + 1e-9], [-0.05]]), 128) == -np.inf)

    def m_inside(x):
        return st.norm.cdf((1 - x) / h) - st.norm.cdf(-x / h)

    mean0 = si.quad(lambda x: st.norm.pdf(x / h) / h / m_inside(x), 0, 1, points=[h, 5 * h])[0]
    sq0 = si.quad(lambda x: (st.norm.pdf(x / h) / h / m_inside(x)) ** 2, 0, 1, points=[h, 5 * h])[0]
    sd0 = math.sqrt((sq0 - mean0**2) / n)
    assert abs(mean0 - math.log(2)) < 1e-3
    at_zero = float(np.exp(evaluate(m.log_prob, np.zeros((1, 1)), 128))[0])
    assert abs(at_zero - mean0) < 5 * sd0


# ---------------------------------------------------------------------------------------------
# S3, S4: bad suggestions are refused at the boundary, naming the parameter and the value
# ---------------------------------------------------------------------------------------------

S3_SPACE = SearchSpace.from_optuna({"lr": FloatDistribution(1e-5, 1e-1, log=True)})


@pytest.mark.parametrize("value", [0.0, 1.0, -1e-3])
def test_s3_bad_log_float_suggestion_raises_before_any_log(monkeypatch, value):
    calls = []
    real_math_log, real_np_log = math.log, np.log

    def spy_math_log(*args):
        calls.append(("math.log", args))
        return real_math_log(*args)

    def spy_np_log(*args, **kwargs):
        calls.append(("np.log", args))
        return real_np_log(*args, **kwargs)

    monkeypatch.setattr(math, "log", spy_math_log)
    monkeypatch.setattr(np, "log", spy_np_log)
    with np.errstate(all="raise"), pytest.raises(ValueError) as info:
        kde.suggestion_density(S3_SPACE, [{"lr": value}])
    monkeypatch.undo()
    assert "'lr'" in str(info.value) and repr(value) in str(info.value), str(info.value)
    assert calls == [], calls


def test_s3_a_bad_value_after_good_ones_still_raises_before_its_log(monkeypatch):
    seen = []
    real_math_log, real_np_log = math.log, np.log

    def spy(real):
        def f(*args, **kwargs):
            seen.append(np.asarray(args[0], dtype=float).ravel())
            return real(*args, **kwargs)

        return f

    monkeypatch.setattr(math, "log", spy(real_math_log))
    monkeypatch.setattr(np, "log", spy(real_np_log))
    with np.errstate(all="raise"), pytest.raises(ValueError, match=r"'lr'.*0\.0"):
        kde.suggestion_density(S3_SPACE, [{"lr": 1e-3}, {"lr": 0.0}, {"lr": 1.0}])
    monkeypatch.undo()
    assert all(np.all(v > 0) for v in seen), seen


S4_CHOICES = [None, 1, "a", 2.5]
S4_SPACE = SearchSpace.from_optuna({"c": CategoricalDistribution(S4_CHOICES)})


@pytest.mark.parametrize("index", range(len(S4_CHOICES)))
def test_s4_choices_are_encoded_by_index(index):
    p = kde.suggestion_density(S4_SPACE, [{"c": S4_CHOICES[index]}])
    probs = np.exp(evaluate(p.log_prob, np.arange(4.0)[:, None]))
    assert abs(probs.sum() - 1.0) < 1e-12
    assert int(np.argmax(probs)) == index
    others = np.delete(probs, index)
    assert np.all(others < probs[index]) and np.allclose(others, others[0], rtol=1e-12)
    assert evaluate(p.log_prob, np.array([[4.0], [-1.0], [1.5]])).tolist() == [-np.inf] * 3


@pytest.mark.parametrize("value", ["adamw", "1", 3, 2.4999])
def test_s4_unknown_choice_raises_naming_parameter_and_value(value):
    space = SearchSpace.from_optuna(
        {
            "lr": FloatDistribution(1e-5, 1e-1, log=True),
            "optimizer": CategoricalDistribution(["adam", "sgd"]),
        }
    )
    configs = [{"lr": 1e-3, "optimizer": "adam"}, {"lr": 1e-2, "optimizer": value}]
    with pytest.raises(ValueError) as info:
        kde.suggestion_density(space, configs)
    msg = str(info.value)
    assert "'optimizer'" in msg and repr(value) in msg, msg


def test_s4_the_first_two_choices_stay_distinct_from_numbers():
    # 1 and 2.5 are choices; suggesting both must not merge them with any float cast.
    p = kde.suggestion_density(S4_SPACE, [{"c": 1}, {"c": 2.5}], floor=0.0)
    probs = np.exp(evaluate(p.log_prob, np.arange(4.0)[:, None]))
    assert probs[1] == pytest.approx(probs[3], rel=1e-12) and probs[1] > probs[0]
    assert probs[0] == pytest.approx(probs[2], rel=1e-12)


def test_empty_suggestions_and_bad_weights_and_floor_raise():
    space = KDE_SPACES[0]
    with pytest.raises(ValueError, match="empty"):
        kde.suggestion_density(space, [])
    for w in ([-1.0, 2.0], [np.nan, 1.0], [0.0, 0.0], [1.0]):
        with pytest.raises(ValueError, match="weights"):
            kde.suggestion_density(space, [{"x": 0.0}, {"x": 1.0}], w)
    for floor in (-0.1, 1.5, np.nan):
        with pytest.raises(ValueError, match="floor"):
            kde.suggestion_density(space, [{"x": 0.0}], floor=floor)


def test_categorical_only_space_has_no_numeric_kernels():
    space = SearchSpace.from_optuna({"a": CategoricalDistribution(["x", "y", "z"])})
    p = kde.suggestion_density(space, [{"a": "y"}, {"a": "y"}, {"a": "z"}])
    assert CATEGORICAL == space.dims[0].kind
    probs = np.exp(evaluate(p.log_prob, np.arange(3.0)[:, None]))
    assert abs(probs.sum() - 1) < 1e-12 and probs[1] > probs[2] > probs[0]


@pytest.mark.parametrize("log", [False, True])
def test_zero_width_float_parameter_is_refused_by_name(log):
    # Optuna allows FloatDistribution(1, 1); a Lebesgue density on one point does not exist.
    space = SearchSpace.from_optuna(
        {"ok": IntDistribution(3, 3), "w": FloatDistribution(1.0, 1.0, log=log)}
    )
    with pytest.raises(ValueError, match="'w'"):
        kde.suggestion_density(space, [{"ok": 3, "w": 1.0}])
    # A single-value int has one grid point of probability one.
    one = SearchSpace.from_optuna({"ok": IntDistribution(3, 3)})
    p = kde.suggestion_density(one, [{"ok": 3}])
    assert abs(float(np.exp(p.log_prob(np.array([[3.0]]))[0])) - 1.0) < 1e-12
