"""Benchmark tasks: synthetic functions with known optima and two scikit-learn tuning tasks.

Every task is a :class:`Task`: an Optuna search space, a deterministic objective to minimize (a
module-level function or a ``functools.partial`` of one, so it pickles into worker processes), the
known minimum, a configuration attaining it, and ``poor_params``, the centre of the "wrong" prior
of ``priors.py``.

Synthetic tasks (optimum values from the Virtual Library of Simulation Experiments of S. Surjanovic
and D. Bingham, https://www.sfu.ca/~ssurjano/optimization.html):

* ``branin``: ``a (x2 - b x1^2 + c x1 - r)^2 + s (1 - t) cos(x1) + s`` with ``a = 1``,
  ``b = 5.1 / (4 pi^2)``, ``c = 5 / pi``, ``r = 6``, ``s = 10``, ``t = 1 / (8 pi)`` on
  ``x1 in [-5, 10]``, ``x2 in [0, 15]``. The library gives the minimum 0.397887 at
  ``(-pi, 12.275)``, ``(pi, 2.275)`` and ``(9.42478, 2.475)``; at ``(pi, 2.275)`` the square
  vanishes and the value is exactly ``s - s (1 - t) = 10 / (8 pi) = 5 / (4 pi) = 0.3978873577...``,
  the value used here.
* ``hartmann6``: ``-sum_i alpha_i exp(-sum_j A_ij (x_j - P_ij)^2)`` on ``[0, 1]^6`` with the
  library's ``alpha``, ``A`` and ``P``. The library gives the minimum -3.32237 at
  ``(0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)``. That point is rounded to six digits
  (the value there is -3.322368011391); ``optimum_params`` is the same minimizer refined to full
  precision (Nelder-Mead from the literature point), where the value is -3.3223680114155,
  within 1e-5 of the literature value and 2.4e-11 below the value at the rounded point.
* ``rosenbrock5``: ``sum_{i=1}^{4} 100 (x_{i+1} - x_i^2)^2 + (x_i - 1)^2`` on ``[-2.048, 2.048]^5``
  (the library's alternative domain); minimum 0 at ``(1, 1, 1, 1, 1)``, since every term is >= 0
  and all vanish there.
* ``mixed``: designed for this benchmark, over ``lr`` (log float in ``[1e-5, 1]``), ``layers``
  (int in ``1..8``), ``activation`` (categorical: relu, gelu, tanh, sigmoid) and ``dropout``
  (float in ``[0, 0.8]``)::

      delta = ln(lr) - ln(LR_STAR[activation]) - 0.3 (layers - 4)
      f = 0.1 delta^2 + 0.5 (1 - cos(2 delta)) + 0.05 (layers - 4)^2 + 2 (dropout - 0.2)^2
          + OFFSET[activation]

  with ``LR_STAR = {relu: 3e-3, gelu: 1e-3, tanh: 3e-4, sigmoid: 1e-2}`` and
  ``OFFSET = {relu: 0, gelu: 0.15, tanh: 0.4, sigmoid: 0.8}``. Each term is >= 0 (``1 - cos >= 0``)
  and the offset is 0 only for relu, so ``f >= 0``; at ``lr = 3e-3, layers = 4, activation = relu,
  dropout = 0.2`` every term is exactly 0 (``delta = ln(3e-3) - ln(3e-3) - 0``), so the minimum is
  ``f = 0`` there, and nowhere else (``0.1 delta^2 > 0`` unless ``delta = 0``). The landscape is
  not trivial: the best learning rate moves with the depth (``delta`` couples them) and with the
  activation, the cosine puts local minima at ``delta`` near ``+-2.8`` (``f`` about 0.9 above the
  floor), and the activation both shifts the best ``lr`` and adds its offset.

``poor_params`` of the synthetic tasks are fixed points in the worst quartile of the objective
over uniform draws of the space (``tests/test_bench_tasks.py`` checks the quartile on 4000 draws):
branin ``(-4, 1)`` (value 184; the upper quartile starts near 81); hartmann6
``(0.9, 0.9, 0.1, 0.9, 0.9, 0.1)`` (value -0.015; upper quartile above -0.026); rosenbrock5
``(-1.5, -1.5, -1.5, -1.5, -1.5)`` (value 5650; upper quartile above 2800); mixed
``lr = 0.3, layers = 1, activation = sigmoid, dropout = 0.7`` (value 4.44; upper quartile above
3.57).

Real tasks (datasets shipped inside scikit-learn; nothing is downloaded). The objective is the
5-fold cross-validated error, 1 - mean accuracy, with ``StratifiedKFold(5, shuffle=True,
random_state=0)``:

* ``svc_digits``: ``make_pipeline(StandardScaler(), SVC(C=C, gamma=gamma, kernel=kernel))`` on
  ``load_digits`` (1797 images, 64 features, 10 classes). ``C`` log float on the grid
  ``10^(k/2)``, ``k = -4..6`` (``[1e-2, 1e3]``, 11 points), ``gamma`` log float on ``10^(k/2)``,
  ``k = -10..0`` (``[1e-5, 1]``, 11 points), ``kernel`` in (rbf, linear, sigmoid), other SVC
  settings at scikit-learn's defaults; 363 grid points (linear ignores ``gamma``, so its rows are
  constant along that axis). The polynomial kernel is left out on purpose: with ``coef0 = 0`` its
  decision function depends on ``C gamma^3`` only, and on digits it reaches its best error on
  about a third of its grid, which would make the task trivial.
* ``gbm_cancer``: ``GradientBoostingClassifier(n_estimators=100, learning_rate, max_depth,
  subsample, max_features, random_state=0)`` on ``load_breast_cancer`` (569 samples, 30
  features, 2 classes). ``learning_rate`` log float on ``10^(k/3)``, ``k = -9..0`` (``[1e-3, 1]``,
  10 points), ``max_depth`` int ``1..5`` (every value), ``subsample`` float on
  ``(0.5, 0.75, 1.0)``, ``max_features`` in (sqrt, log2, all): 5, 4 or 30 features per split,
  ``all`` meaning ``max_features=None``. 450 grid points. (Wine was tried first and dropped: with
  178 samples one misclassification moves the error by 0.0056, most of the grid sat within two
  samples of the best value, and sqrt and log2 both pick 3 of its 13 features.)

Evaluating those models thousands of times would not fit the benchmark on 2 cores, so each table was
computed once on its grid and committed as ``benchmarks/data/<task>.json`` (the grid, the values,
and how and when they were built); ``python benchmarks/tasks.py --rebuild`` recomputes them with
``joblib`` over 2 processes in 5-10 minutes on 2 cores (the committed build, with scikit-learn 1.9.1
on a 2-core machine that other jobs shared: svc_digits 102 s, gbm_cancer 332 s, about 7 minutes in
all; each file records its own build time; ``--rebuild svc_digits`` rebuilds one table). The task's
objective is this surrogate, not the model: continuous parameters are interpolated multilinearly
between grid points in internal coordinates (``ln`` for log floats), and ints and categoricals index
the grid exactly. An interpolated value is a convex combination of grid values, so it never falls
below the smallest one: the table's minimum is the true minimum of the surrogate, and
``optimum_params`` is the first grid point attaining it (C order over the grid; in the committed
tables the minimum is attained once: svc_digits 0.01558 at ``C = 3.16, gamma = 0.01, rbf``,
gbm_cancer 0.02107 at ``learning_rate = 0.464, max_depth = 2, subsample = 0.75, log2``).
``poor_params`` of a real task is a fixed grid point in the worst quartile of the table's values
(checked by the tests), a plausible mistake rather than a dead region: svc_digits ``C = 0.01, gamma
= 1, sigmoid`` (0.555; the quartile starts at 0.483); gbm_cancer ``learning_rate = 10^(-7/3) =
0.00464, max_depth = 1, subsample = 0.5, max_features = log2`` (0.107, too slow a rate for 100
stumps; the quartile starts at 0.084). Tables load lazily, once per process.

Usage: ``python benchmarks/tasks.py --list`` (name, dimension and optimum of each task) or
``python benchmarks/tasks.py --rebuild`` (recompute the tables of the real tasks).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SYNTHETIC_NAMES = ("branin", "hartmann6", "rosenbrock5", "mixed")
REAL_NAMES = ("svc_digits", "gbm_cancer")
TASK_NAMES: tuple[str, ...] = SYNTHETIC_NAMES + REAL_NAMES
CV_FOLDS = 5
RANDOM_STATE = 0


@dataclass(frozen=True)
class Task:
    """A benchmark problem: minimize ``objective`` over ``space``."""

    name: str
    space: dict[str, BaseDistribution]
    objective: Callable[[dict[str, Any]], float]
    optimum: float
    optimum_params: dict[str, Any]
    poor_params: dict[str, Any]
    real: bool

    @property
    def dim(self) -> int:
        return len(self.space)


# --- validation -------------------------------------------------------------------------------


def check_params(space: Mapping[str, BaseDistribution], params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the parameter unless ``params`` is a configuration of ``space``.

    Every parameter must be present and no other; a numeric value must be a finite real number in
    ``[low, high]`` (an int parameter takes integral values on its step grid), a categorical value
    one of the choices.
    """
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a mapping of parameter names to values, got {params!r}")
    for name in params:
        if name not in space:
            raise ValueError(f"unknown parameter {name!r} (value {params[name]!r})")
    for name, dist in space.items():
        if name not in params:
            raise ValueError(f"parameter {name!r} is missing")
        value = params[name]
        if isinstance(dist, CategoricalDistribution):
            try:
                dist.to_internal_repr(value)
            except (ValueError, TypeError):
                raise ValueError(
                    f"parameter {name!r}: {value!r} is not one of {dist.choices}"
                ) from None
            continue
        if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
            raise ValueError(f"parameter {name!r}: expected a number, got {value!r}")
        v = float(value)
        if not math.isfinite(v) or not dist.low <= v <= dist.high:
            raise ValueError(f"parameter {name!r}: {value!r} is outside [{dist.low}, {dist.high}]")
        if isinstance(dist, IntDistribution) and (v != round(v) or (v - dist.low) % dist.step):
            raise ValueError(
                f"parameter {name!r}: {value!r} is not an integer on the grid "
                f"{dist.low} + k * {dist.step}"
            )


# --- synthetic objectives ---------------------------------------------------------------------


def branin(params: Mapping[str, Any]) -> float:
    """Branin-Hoo on ``x1 in [-5, 10]``, ``x2 in [0, 15]``; minimum ``5 / (4 pi)``."""
    x1, x2 = float(params["x1"]), float(params["x2"])
    b = 5.1 / (4.0 * math.pi**2)
    c = 5.0 / math.pi
    t = 1.0 / (8.0 * math.pi)
    return (x2 - b * x1**2 + c * x1 - 6.0) ** 2 + 10.0 * (1.0 - t) * math.cos(x1) + 10.0


_H_ALPHA = (1.0, 1.2, 3.0, 3.2)
_H_A = (
    (10.0, 3.0, 17.0, 3.5, 1.7, 8.0),
    (0.05, 10.0, 17.0, 0.1, 8.0, 14.0),
    (3.0, 3.5, 1.7, 10.0, 17.0, 8.0),
    (17.0, 8.0, 0.05, 10.0, 0.1, 14.0),
)
_H_P = (
    (0.1312, 0.1696, 0.5569, 0.0124, 0.8283, 0.5886),
    (0.2329, 0.4135, 0.8307, 0.3736, 0.1004, 0.9991),
    (0.2348, 0.1451, 0.3522, 0.2883, 0.3047, 0.6650),
    (0.4047, 0.8828, 0.8732, 0.5743, 0.1091, 0.0381),
)
HARTMANN6_LITERATURE_MIN = -3.32237
HARTMANN6_LITERATURE_ARGMIN = (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573)
_HARTMANN6_ARGMIN = (
    0.20168950910655,
    0.1500106900645928,
    0.47687397779107643,
    0.2753324307905754,
    0.31165161859162804,
    0.6573005330913106,
)


def hartmann6(params: Mapping[str, Any]) -> float:
    """Hartmann 6-D on ``[0, 1]^6``; minimum -3.32237 (Surjanovic & Bingham)."""
    x = [float(params[f"x{j + 1}"]) for j in range(6)]
    total = 0.0
    for alpha, a_row, p_row in zip(_H_ALPHA, _H_A, _H_P, strict=True):
        inner = sum(a * (xj - p) ** 2 for a, xj, p in zip(a_row, x, p_row, strict=True))
        total -= alpha * math.exp(-inner)
    return total


def rosenbrock5(params: Mapping[str, Any]) -> float:
    """Rosenbrock in 5-D on ``[-2.048, 2.048]^5``; minimum 0 at all ones."""
    x = [float(params[f"x{j + 1}"]) for j in range(5)]
    return sum(100.0 * (x[i + 1] - x[i] ** 2) ** 2 + (x[i] - 1.0) ** 2 for i in range(4))


MIXED_LR_STAR = {"relu": 3e-3, "gelu": 1e-3, "tanh": 3e-4, "sigmoid": 1e-2}
MIXED_OFFSET = {"relu": 0.0, "gelu": 0.15, "tanh": 0.4, "sigmoid": 0.8}


def mixed(params: Mapping[str, Any]) -> float:
    """The mixed task's function (module docstring); minimum 0 at (3e-3, 4, relu, 0.2)."""
    act = params["activation"]
    layers = int(params["layers"])
    delta = math.log(params["lr"]) - math.log(MIXED_LR_STAR[act]) - 0.3 * (layers - 4)
    return (
        0.1 * delta**2
        + 0.5 * (1.0 - math.cos(2.0 * delta))
        + 0.05 * (layers - 4) ** 2
        + 2.0 * (float(params["dropout"]) - 0.2) ** 2
        + MIXED_OFFSET[act]
    )


def _synthetic(name: str) -> Task:
    if name == "branin":
        space = {"x1": FloatDistribution(-5.0, 10.0), "x2": FloatDistribution(0.0, 15.0)}
        return Task(
            name,
            space,
            branin,
            5.0 / (4.0 * math.pi),
            {"x1": math.pi, "x2": 2.275},
            {"x1": -4.0, "x2": 1.0},
            real=False,
        )
    if name == "hartmann6":
        names = [f"x{j + 1}" for j in range(6)]
        opt = dict(zip(names, _HARTMANN6_ARGMIN, strict=True))
        return Task(
            name,
            {n: FloatDistribution(0.0, 1.0) for n in names},
            hartmann6,
            hartmann6(opt),
            opt,
            dict(zip(names, (0.9, 0.9, 0.1, 0.9, 0.9, 0.1), strict=True)),
            real=False,
        )
    if name == "rosenbrock5":
        names = [f"x{j + 1}" for j in range(5)]
        return Task(
            name,
            {n: FloatDistribution(-2.048, 2.048) for n in names},
            rosenbrock5,
            0.0,
            {n: 1.0 for n in names},
            {n: -1.5 for n in names},
            real=False,
        )
    space = {
        "lr": FloatDistribution(1e-5, 1.0, log=True),
        "layers": IntDistribution(1, 8),
        "activation": CategoricalDistribution(tuple(MIXED_LR_STAR)),
        "dropout": FloatDistribution(0.0, 0.8),
    }
    return Task(
        name,
        space,
        mixed,
        0.0,
        {"lr": 3e-3, "layers": 4, "activation": "relu", "dropout": 0.2},
        {"lr": 0.3, "layers": 1, "activation": "sigmoid", "dropout": 0.7},
        real=False,
    )


# --- real tasks: grids, tables and their interpolation ---------------------------------------


@dataclass(frozen=True)
class Axis:
    """One grid axis of a real task: ``kind`` is ``log``, ``float``, ``int`` or ``categorical``."""

    name: str
    kind: str
    values: tuple[Any, ...]  # user units, increasing for numeric kinds

    @property
    def exact(self) -> bool:
        return self.kind in ("int", "categorical")

    def distribution(self) -> BaseDistribution:
        if self.kind == "categorical":
            return CategoricalDistribution(self.values)
        if self.kind == "int":
            return IntDistribution(int(self.values[0]), int(self.values[-1]))
        return FloatDistribution(self.values[0], self.values[-1], log=self.kind == "log")


def _half_decades(k_low: int, k_high: int) -> tuple[float, ...]:
    return tuple(10.0 ** (k / 2) for k in range(k_low, k_high + 1))


AXES: dict[str, tuple[Axis, ...]] = {
    "svc_digits": (
        Axis("C", "log", _half_decades(-4, 6)),
        Axis("gamma", "log", _half_decades(-10, 0)),
        Axis("kernel", "categorical", ("rbf", "linear", "sigmoid")),
    ),
    "gbm_cancer": (
        Axis("learning_rate", "log", tuple(10.0 ** (k / 3) for k in range(-9, 1))),
        Axis("max_depth", "int", (1, 2, 3, 4, 5)),
        Axis("subsample", "float", (0.5, 0.75, 1.0)),
        Axis("max_features", "categorical", ("sqrt", "log2", "all")),
    ),
}
POOR_PARAMS: dict[str, dict[str, Any]] = {
    "svc_digits": {"C": 0.01, "gamma": 1.0, "kernel": "sigmoid"},
    "gbm_cancer": {
        "learning_rate": 10.0 ** (-7 / 3),
        "max_depth": 1,
        "subsample": 0.5,
        "max_features": "log2",
    },
}


@dataclass(frozen=True)
class Table:
    """A real task's lookup table: ``values[i1, ..., id]`` is the error at the grid point."""

    axes: tuple[Axis, ...]
    values: np.ndarray
    build: dict[str, Any]

    def grid_params(self, index: Sequence[int]) -> dict[str, Any]:
        return {a.name: a.values[i] for a, i in zip(self.axes, index, strict=True)}


def table_path(name: str) -> Path:
    return DATA / f"{name}.json"


@functools.cache
def load_table(name: str) -> Table:
    """Read ``benchmarks/data/<name>.json`` once per process and check it matches :data:`AXES`."""
    if name not in AXES:
        raise ValueError(f"name {name!r} is not a real task; expected one of {REAL_NAMES}")
    path = table_path(name)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run python benchmarks/tasks.py --rebuild")
    raw = json.loads(path.read_text())
    axes = AXES[name]
    stored = [(a["name"], a["kind"], tuple(a["values"])) for a in raw["axes"]]
    if stored != [(a.name, a.kind, a.values) for a in axes]:
        raise ValueError(f"{path}: its grid differs from AXES[{name!r}]; run --rebuild")
    values = np.asarray(raw["values"], dtype=float).reshape([len(a.values) for a in axes])
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{path}: the table has non-finite values")
    values.setflags(write=False)
    return Table(axes, values, raw["build"])


def _cell(axis: Axis, value: Any) -> list[tuple[int, float]]:
    """Grid indices and weights of one coordinate: one exact index, or two interpolation ends."""
    if axis.kind == "categorical":
        return [(axis.values.index(value), 1.0)]
    if axis.kind == "int":
        return [(int(value) - int(axis.values[0]), 1.0)]
    grid = _internal_axis(axis)
    x = math.log(value) if axis.kind == "log" else float(value)
    i = min(max(int(np.searchsorted(grid, x, side="right")) - 1, 0), len(grid) - 2)
    t = (x - grid[i]) / (grid[i + 1] - grid[i])
    return [(i, 1.0 - t), (i + 1, t)]


@functools.cache
def _internal_axis(axis: Axis) -> np.ndarray:
    values = np.asarray(axis.values, dtype=float)
    return np.log(values) if axis.kind == "log" else values


@functools.cache
def _table_space(name: str) -> dict[str, BaseDistribution]:
    return {a.name: a.distribution() for a in AXES[name]}


def table_objective(name: str, params: Mapping[str, Any]) -> float:
    """The surrogate of a real task: multilinear interpolation of its table (module docstring)."""
    table = load_table(name)
    check_params(_table_space(name), params)
    cells = [_cell(a, params[a.name]) for a in table.axes]
    total = 0.0
    for corner in itertools.product(*cells):
        weight = math.prod(w for _, w in corner)
        if weight != 0.0:
            total += weight * float(table.values[tuple(i for i, _ in corner)])
    return total


def _real(name: str) -> Task:
    table = load_table(name)
    best = np.unravel_index(int(np.argmin(table.values)), table.values.shape)
    return Task(
        name,
        dict(_table_space(name)),
        functools.partial(table_objective, name),
        float(table.values[best]),
        table.grid_params([int(i) for i in best]),
        dict(POOR_PARAMS[name]),
        real=True,
    )


# --- public functions -------------------------------------------------------------------------


@functools.cache
def _task(name: str) -> Task:
    return _synthetic(name) if name in SYNTHETIC_NAMES else _real(name)


def get_task(name: str) -> Task:
    """The task called ``name``, one of :data:`TASK_NAMES`."""
    if name not in TASK_NAMES:
        raise ValueError(f"unknown task name {name!r}; expected one of {TASK_NAMES}")
    return _task(name)


def suggest(trial: optuna.Trial, space: Mapping[str, BaseDistribution]) -> dict[str, Any]:
    """Ask ``trial`` for every parameter of ``space``, in order, with the matching suggest call."""
    params: dict[str, Any] = {}
    for name, dist in space.items():
        if isinstance(dist, FloatDistribution):
            params[name] = trial.suggest_float(
                name, dist.low, dist.high, log=dist.log, step=dist.step
            )
        elif isinstance(dist, IntDistribution):
            params[name] = trial.suggest_int(
                name, dist.low, dist.high, log=dist.log, step=dist.step
            )
        elif isinstance(dist, CategoricalDistribution):
            params[name] = trial.suggest_categorical(name, dist.choices)
        else:
            raise ValueError(f"parameter {name!r}: unsupported distribution {dist!r}")
    return params


REGRET_TOLERANCE = 1e-9


def regret(task: Task, value: float) -> float:
    """``value - task.optimum``, clipped at 0 for rounding below the optimum (at most 1e-9)."""
    gap = float(value) - task.optimum
    if not gap >= -REGRET_TOLERANCE:
        raise ValueError(
            f"value {value!r} is below the optimum {task.optimum!r} of task {task.name!r} "
            f"by more than {REGRET_TOLERANCE}"
        )
    return max(gap, 0.0)


# --- building the tables ----------------------------------------------------------------------


def _evaluate(name: str, params: dict[str, Any]) -> float:
    """The 5-fold cross-validated error of the real task's model at ``params`` (slow)."""
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    if name == "svc_digits":
        x, y = load_digits(return_X_y=True)
        model = make_pipeline(StandardScaler(), SVC(**params))
    elif name == "gbm_cancer":
        x, y = load_breast_cancer(return_X_y=True)
        features = params["max_features"]
        model = GradientBoostingClassifier(
            n_estimators=100,
            learning_rate=params["learning_rate"],
            max_depth=params["max_depth"],
            subsample=params["subsample"],
            max_features=None if features == "all" else features,
            random_state=RANDOM_STATE,
        )
    else:
        raise ValueError(f"name {name!r} is not a real task; expected one of {REAL_NAMES}")
    cv = StratifiedKFold(n_splits=CV_FOLDS, shuffle=True, random_state=RANDOM_STATE)
    return float(1.0 - cross_val_score(model, x, y, cv=cv, n_jobs=1).mean())


def rebuild(names: Sequence[str] = REAL_NAMES, n_jobs: int = 2) -> None:
    """Recompute the tables of ``names`` on their grids and write them to ``benchmarks/data``."""
    import joblib
    import sklearn

    DATA.mkdir(exist_ok=True)
    for name in names:
        axes = AXES[name]
        points = [
            {a.name: v for a, v in zip(axes, combo, strict=True)}
            for combo in itertools.product(*(a.values for a in axes))
        ]
        print(f"{name}: {len(points)} grid points, {CV_FOLDS}-fold CV each ...", flush=True)
        start = time.perf_counter()
        values = joblib.Parallel(n_jobs=n_jobs)(joblib.delayed(_evaluate)(name, p) for p in points)
        seconds = time.perf_counter() - start
        record = {
            "task": name,
            "objective": f"1 - mean accuracy, {CV_FOLDS}-fold StratifiedKFold(shuffle=True, "
            f"random_state={RANDOM_STATE})",
            "axes": [{"name": a.name, "kind": a.kind, "values": list(a.values)} for a in axes],
            "values": values,
            "build": {
                "command": "python benchmarks/tasks.py --rebuild",
                "seconds": round(seconds, 1),
                "n_jobs": n_jobs,
                "scikit_learn": sklearn.__version__,
                "date": time.strftime("%Y-%m-%d"),
            },
        }
        table_path(name).write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name}: wrote {table_path(name)} in {seconds:.0f} s", flush=True)
    load_table.cache_clear()
    _task.cache_clear()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rebuild",
        nargs="*",
        choices=REAL_NAMES,
        metavar="TASK",
        help=f"recompute the tables of the given real tasks (default: all of {REAL_NAMES}); "
        "5-10 minutes on 2 cores",
    )
    parser.add_argument("--list", action="store_true", help="print each task's name, dim, optimum")
    parser.add_argument("--n-jobs", type=int, default=2, help="processes for --rebuild")
    args = parser.parse_args(argv)
    if args.rebuild is None and not args.list:
        parser.error("give --list or --rebuild")
    if args.n_jobs < 1:
        parser.error(f"--n-jobs must be >= 1, got {args.n_jobs}")
    if args.rebuild is not None:
        rebuild(args.rebuild or REAL_NAMES, n_jobs=args.n_jobs)
    if args.list:
        print(f"{'task':<12} {'dim':>3}  {'optimum':>20}  optimum_params")
        for name in TASK_NAMES:
            task = get_task(name)
            print(f"{name:<12} {task.dim:>3}  {task.optimum:>20.12g}  {task.optimum_params}")


if __name__ == "__main__":
    main()
