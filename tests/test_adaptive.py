"""Alpha schedules (``fusion.adaptive``): property tests on arbitrary histories, the closed forms of
the count schedules, the rank statistic and Hedge's weights against direct computations, purity,
and argument checks.

Histories are drawn with values anywhere in ``[-inf, inf]`` (ties made likely), sources that may
leave either group empty, and log-densities that may be missing, ``-inf`` or huge.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as hst

from fusion.adaptive import (
    LLM,
    TPE,
    AlphaSchedule,
    BOPrODecay,
    Constant,
    History,
    HyperbolicDecay,
    OfTrialCount,
    PiBODecay,
    PredictiveCredit,
    RankPerformance,
    TrialRecord,
    alpha_at,
    as_schedule,
    good_trials,
    superiority,
)

INF = math.inf

# --- strategies -----------------------------------------------------------------------------------

values = hst.one_of(
    hst.sampled_from([0.0, 1.0, -1.0, INF, -INF]),  # ties and infinities
    hst.floats(allow_nan=False),
)
log_densities = hst.one_of(
    hst.none(),
    hst.just(-INF),
    hst.floats(min_value=-50.0, max_value=50.0),
    hst.floats(allow_nan=False, allow_infinity=False),
)
records = hst.builds(
    TrialRecord,
    value=values,
    source=hst.sampled_from([LLM, TPE, None, "uniform"]),
    log_p_llm=log_densities,
    log_l=log_densities,
)
histories = hst.lists(records, max_size=40).map(History)

# Every schedule, with an upper bound ``bound(n)`` that holds for any history of ``n`` trials
# (``None`` for Constant, which does not decay).
DECAYING = [
    (HyperbolicDecay(), lambda n: 0.75 / (1 + n / 25)),
    (HyperbolicDecay(alpha0=1.0, n_half=3.0), lambda n: 1.0 / (1 + n / 3)),
    (PiBODecay(), lambda n: 1.0 if n == 0 else min(1.0, 10 / n)),
    (PiBODecay(beta=0.5), lambda n: 1.0 if n == 0 else min(1.0, 0.5 / n)),
    (BOPrODecay(), lambda n: 10 / (10 + n)),
    (RankPerformance(), lambda n: 0.8 / (1 + n / 25)),
    (RankPerformance(cap=1.0, floor=1.0, n_half=2.0), lambda n: 1.0 / (1 + n / 2)),
    (RankPerformance(cap=0.3, floor=0.0, n_half=100.0), lambda n: 0.3 / (1 + n / 100)),
    (PredictiveCredit(), lambda n: 1.0 / (1 + n / 25)),
    (PredictiveCredit(eta=1e3, gamma=1.0, prior_llm=0.99, n_half=5.0), lambda n: 1 / (1 + n / 5)),
    (PredictiveCredit(eta=1e-3, gamma=0.5, prior_llm=0.01), lambda n: 1 / (1 + n / 25)),
    (OfTrialCount(lambda n: 1.0 / (1.0 + n)), lambda n: 1.0 / (1.0 + n)),
]
SCHEDULES = [s for s, _ in DECAYING] + [Constant(0.0), Constant(0.4), Constant(1.0)]


def shuffled(history: History, seed: int) -> History:
    order = np.random.default_rng(seed).permutation(len(history))
    return History([history.trials[i] for i in order])


# --- every schedule, any history ------------------------------------------------------------------


@given(history=histories)
def test_every_schedule_gives_a_number_in_the_unit_interval(history):
    for schedule in SCHEDULES:
        alpha = schedule(history)
        assert isinstance(alpha, float), (schedule, alpha)
        assert 0.0 <= alpha <= 1.0, (schedule, alpha)  # NaN fails too
        assert alpha_at(schedule, history) == alpha


@given(history=histories)
def test_decaying_schedules_stay_under_an_envelope_that_goes_to_zero(history):
    """Whatever the trials say, ``alpha_n <= bound(n)``, and ``bound(n) -> 0``."""
    for schedule, bound in DECAYING:
        assert schedule(history) <= bound(len(history)) * (1 + 1e-15), schedule
        assert bound(10**6) < 1e-4


# The best case for the suggestions: they propose every trial, each trial is the best there is, and
# they predicted every point with a huge density where TPE gave it none.
LLM_WINS = TrialRecord(-INF, LLM, 1e300, -INF)
TPE_LOSES = TrialRecord(INF, TPE, -INF, 1e300)


@given(history=histories, repeats=hst.integers(50, 200))
def test_alpha_goes_to_zero_on_adversarial_histories(history, repeats):
    """An arbitrary history followed by thousands of trials that all argue for the suggestions:
    every decaying schedule still ends near 0."""
    grown = History(list(history.trials) + [LLM_WINS, TPE_LOSES] * (10 * repeats))
    assert len(grown) >= 1000
    for schedule, bound in DECAYING:
        alpha = schedule(grown)
        assert alpha <= bound(len(grown)) * (1 + 1e-15), schedule
        assert alpha < 0.1, (schedule, alpha)
    # on such trials alone, the rules see the evidence: each sits at its upper bound
    only = History([LLM_WINS, TPE_LOSES] * (10 * repeats))
    n = len(only)
    assert superiority(only) == 1.0
    assert RankPerformance()(only) == pytest.approx(0.8 / (1 + n / 25), rel=1e-12)
    assert PredictiveCredit().weights(only) == (1.0, 0.0)
    assert PredictiveCredit()(only) == 1 / (1 + n / 25)


@given(history=histories, alpha=hst.floats(0.0, 1.0))
def test_constant_stays_constant(history, alpha):
    assert Constant(alpha)(history) == alpha
    assert Constant(alpha)(len(history)) == alpha


# --- closed forms -------------------------------------------------------------------------------


@given(n=hst.integers(0, 10**9), beta=hst.floats(1e-6, 1e6))
def test_pibo_and_bopro_formulas(n, beta):
    pibo = 1.0 if n == 0 else min(1.0, beta / n)
    assert PiBODecay(beta)(n) == pibo
    assert BOPrODecay(beta)(n) == pytest.approx(beta / (beta + n), rel=1e-14)
    # BOPrO's exponents (1, n / beta) normalized: alpha_n = 1 / (1 + n / beta)
    exponents = np.array([1.0, n / beta])
    assert BOPrODecay(beta)(n) == pytest.approx(exponents[0] / exponents.sum(), rel=1e-14)
    assert BOPrODecay(beta)(n) == HyperbolicDecay(alpha0=1.0, n_half=beta)(n)


@given(history=histories)
def test_count_schedules_read_only_the_number_of_trials(history):
    n = len(history)
    for schedule in (HyperbolicDecay(), PiBODecay(3.0), BOPrODecay(), Constant(0.2)):
        assert schedule(history) == schedule(n)
    assert PiBODecay(3.0)(history) == (1.0 if n == 0 else min(1.0, 3.0 / n))
    assert HyperbolicDecay(0.5, 10.0)(history) == 0.5 / (1 + n / 10)


def direct_superiority(history: History) -> float:
    """``P(v_llm < v_tpe) + P(tie) / 2`` over all pairs, counted one pair at a time."""
    ours = [t.value for t in history.trials if t.source == LLM]
    theirs = [t.value for t in history.trials if t.source == TPE]
    if not ours or not theirs:
        return 0.5
    wins = sum((a < b) + 0.5 * (a == b) for a in ours for b in theirs)
    return wins / (len(ours) * len(theirs))


@given(history=histories)
def test_superiority_counts_pairs(history):
    a = superiority(history)
    assert a == pytest.approx(direct_superiority(history), rel=1e-12, abs=1e-15)
    assert 0.0 <= a <= 1.0
    # the statistic of the other group is its complement
    assert superiority(history, TPE, LLM) == pytest.approx(1.0 - a, abs=1e-12)


@given(history=histories)
def test_rank_performance_formula(history):
    n = len(history)
    rule = RankPerformance(cap=0.7, floor=0.2, n_half=10.0)
    envelope = 1 / (1 + n / 10)
    floor_n = 0.2 * envelope
    expected = envelope * (floor_n + (0.7 - floor_n) * direct_superiority(history))
    assert rule(history) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    assert envelope * floor_n * (1 - 1e-15) <= rule(history) <= envelope * 0.7 * (1 + 1e-15)


def test_superiority_edge_cases():
    def h(*pairs):
        return History([TrialRecord(v, s) for v, s in pairs])

    assert superiority(History()) == 0.5
    assert superiority(h((1.0, LLM), (0.0, LLM))) == 0.5  # no TPE trial
    assert superiority(h((1.0, TPE), (2.0, "uniform"), (0.0, None))) == 0.5  # no LLM trial
    assert superiority(h((1.0, LLM), (2.0, TPE))) == 1.0
    assert superiority(h((INF, LLM), (2.0, TPE))) == 0.0  # inf ranks worst
    assert superiority(h((INF, LLM), (INF, TPE))) == 0.5  # a tie
    assert superiority(h((-INF, LLM), (-INF, TPE), (INF, TPE))) == 0.75
    # pairs (1, 1) tie, (1, 0.5) (3, 1) (3, 0.5) lose: 0.5 / 4
    assert superiority(h((1.0, LLM), (1.0, TPE), (0.5, TPE), (3.0, LLM))) == 0.125
    rule = RankPerformance()
    assert rule(h((1.0, LLM), (2.0, TPE))) == pytest.approx(0.8 / (1 + 2 / 25))  # A = 1: the cap
    assert rule(h((2.0, LLM), (1.0, TPE))) == pytest.approx(0.1 / (1 + 2 / 25) ** 2)  # A = 0


# --- credit -------------------------------------------------------------------------------------


def direct_log_likelihoods(history: History, gamma: float) -> tuple[float, float]:
    """Sums over the best ``ceil(gamma n)`` trials (ties at the boundary included, ``+inf`` never)
    that recorded both log-densities."""
    n = len(history)
    n_good = math.ceil(gamma * n)
    if n_good == 0:
        return 0.0, 0.0
    threshold = sorted(t.value for t in history.trials)[n_good - 1]
    good = [
        t
        for t in history.trials
        if t.value <= threshold
        and t.value < INF
        and None not in (t.log_p_llm, t.log_l)
        and (t.log_p_llm, t.log_l) != (-INF, -INF)
    ]
    return sum(t.log_p_llm for t in good), sum(t.log_l for t in good)


finite_records = hst.builds(
    TrialRecord,
    value=values,
    source=hst.sampled_from([LLM, TPE, None]),
    log_p_llm=hst.one_of(hst.none(), hst.floats(-30.0, 30.0)),
    log_l=hst.one_of(hst.none(), hst.floats(-30.0, 30.0)),
)


@given(
    history=hst.lists(finite_records, max_size=40).map(History),
    eta=hst.floats(0.01, 3.0),
    gamma=hst.floats(0.05, 1.0),
    prior=hst.floats(0.01, 0.99),
)
def test_hedge_weights_are_the_softmax_of_eta_times_the_log_likelihoods(history, eta, gamma, prior):
    credit = PredictiveCredit(eta=eta, gamma=gamma, prior_llm=prior)
    l_llm, l_tpe = credit.log_likelihoods(history)
    expected = direct_log_likelihoods(history, gamma)
    assert (l_llm, l_tpe) == pytest.approx(expected, rel=1e-9, abs=1e-9)
    w = credit.weights(history)
    assert sum(w) == pytest.approx(1.0, abs=1e-15)
    softmax = scipy.special.softmax(np.log([prior, 1 - prior]) + eta * np.array([l_llm, l_tpe]))
    np.testing.assert_allclose(w, softmax, rtol=1e-9, atol=1e-300)
    # with an even prior, the plain softmax of eta L (Hedge's weights)
    even = PredictiveCredit(eta=eta, gamma=gamma)
    np.testing.assert_allclose(
        even.weights(history),
        scipy.special.softmax(eta * np.array([l_llm, l_tpe])),
        rtol=1e-9,
        atol=1e-300,
    )
    n = len(history)
    assert credit(history) == pytest.approx(w[0] / (1 + n / 25), rel=1e-12)


def test_credit_edge_cases():
    credit = PredictiveCredit()
    assert credit.weights(History()) == (0.5, 0.5)
    # both sources gave a good point zero density: that trial tells them apart in no way
    both_zero = History([TrialRecord(0.0, LLM, -INF, -INF), TrialRecord(1.0, TPE, -1.0, -3.0)])
    assert PredictiveCredit(gamma=1.0).log_likelihoods(both_zero) == (-1.0, -3.0)
    # each missed a different good point: both are -inf, the prior stands
    missed = History([TrialRecord(0.0, LLM, -INF, -1.0), TrialRecord(0.0, TPE, -1.0, -INF)])
    assert PredictiveCredit(gamma=1.0, prior_llm=0.3).weights(missed) == pytest.approx((0.3, 0.7))
    # only TPE predicted the good point
    history = History([TrialRecord(0.0, TPE, -INF, -2.0)] + [TrialRecord(5.0)] * 9)
    assert credit.weights(history) == (0.0, 1.0)
    # a good trial without densities does not count; a +inf trial is never good
    unknown = History([TrialRecord(0.0, LLM), TrialRecord(INF, LLM, 10.0, -10.0)])
    assert PredictiveCredit(gamma=1.0).log_likelihoods(unknown) == (0.0, 0.0)
    # huge log-likelihoods: no overflow, no NaN
    huge = History([TrialRecord(float(-i), LLM, 1e308, 3e307) for i in range(10)])
    assert PredictiveCredit(gamma=1.0).log_likelihoods(huge) == (INF, INF)
    assert PredictiveCredit(gamma=1.0).weights(huge) == (0.5, 0.5)
    assert PredictiveCredit(gamma=1.0).weights(History(huge.trials[:1])) == (1.0, 0.0)
    # ties at the boundary of the good set all count
    ties = History([TrialRecord(1.0, LLM, -1.0, -3.0)] * 3 + [TrialRecord(2.0, TPE, 0.0, 0.0)] * 7)
    assert good_trials(ties, 0.1).tolist() == [True] * 3 + [False] * 7
    assert PredictiveCredit().log_likelihoods(ties) == (-3.0, -9.0)


# --- purity -------------------------------------------------------------------------------------


@given(history=histories, seed=hst.integers(0, 2**32 - 1))
def test_same_history_same_alpha_in_any_order(history, seed):
    """A schedule is a function of the history as a set of trials: rebuilding it, or listing its
    trials in another order, gives exactly the same alpha."""
    rebuilt = History(tuple(TrialRecord(*t) for t in history.trials))
    assert rebuilt == history and hash(rebuilt) == hash(history)
    other_order = shuffled(history, seed)
    for schedule in SCHEDULES:
        alpha = schedule(history)
        assert schedule(rebuilt) == alpha
        assert schedule(other_order) == alpha, schedule
        assert schedule(history) == alpha  # calling it changes nothing


def test_a_history_is_immutable_and_built_from_any_sequence():
    trials = [TrialRecord(1.0, LLM, -1.0, -2.0), (2, TPE), (3.5,)]
    history = History(trials)
    assert history.trials == (
        TrialRecord(1.0, LLM, -1.0, -2.0),
        TrialRecord(2.0, TPE, None, None),
        TrialRecord(3.5, None, None, None),
    )
    assert len(history) == history.n == 3
    assert isinstance(history.trials[1].value, float)
    trials.append((9.0,))
    assert len(history) == 3
    with pytest.raises(AttributeError):
        history.trials = ()
    np.testing.assert_array_equal(history.values(), [1.0, 2.0, 3.5])


# --- entry points and old-style schedules --------------------------------------------------------


def test_as_schedule_and_alpha_at_accept_what_they_did():
    assert as_schedule(None) == HyperbolicDecay()
    assert as_schedule(0.3) == Constant(0.3)
    assert as_schedule(1) == Constant(1.0)
    credit = PredictiveCredit()
    assert as_schedule(credit) is credit

    def by_count(n):
        return 0.5 / (1 + n)

    old = as_schedule(by_count)
    assert isinstance(old, OfTrialCount) and isinstance(old, AlphaSchedule)
    three = History([TrialRecord(0.0)] * 3)
    assert alpha_at(old, three) == alpha_at(old, 3) == alpha_at(by_count, three) == 0.125
    assert alpha_at(HyperbolicDecay(0.5, 10.0), 10) == 0.25


class HalfOfLLMShare(AlphaSchedule):
    """A user's own schedule of the history: half the share of trials the suggestions proposed."""

    def __call__(self, history):
        return 0.5 * sum(t.source == LLM for t in history.trials) / max(len(history), 1)


def test_a_user_schedule_of_the_history_is_called_with_it():
    schedule = as_schedule(HalfOfLLMShare())
    history = History([TrialRecord(0.0, LLM), TrialRecord(1.0, TPE)])
    assert alpha_at(schedule, history) == 0.25


BAD = [
    (lambda: Constant(1.5), "alpha", "1.5"),
    (lambda: Constant(float("nan")), "alpha", "nan"),
    (lambda: HyperbolicDecay(alpha0=-0.1), "alpha0", "-0.1"),
    (lambda: PiBODecay(beta=0.0), "beta", "0.0"),
    (lambda: PiBODecay(beta=INF), "beta", "inf"),
    (lambda: BOPrODecay(beta=float("nan")), "beta", "nan"),
    (lambda: BOPrODecay(beta="10"), "beta", "'10'"),
    (lambda: RankPerformance(cap=1.2), "cap", "1.2"),
    (lambda: RankPerformance(floor=-0.5), "floor", "-0.5"),
    (lambda: RankPerformance(floor=0.9, cap=0.5), "floor", "0.9"),
    (lambda: RankPerformance(n_half=0), "n_half", "0"),
    (lambda: PredictiveCredit(eta=0.0), "eta", "0.0"),
    (lambda: PredictiveCredit(eta=-1.0), "eta", "-1.0"),
    (lambda: PredictiveCredit(gamma=0.0), "gamma", "0.0"),
    (lambda: PredictiveCredit(gamma=1.5), "gamma", "1.5"),
    (lambda: PredictiveCredit(prior_llm=1.0), "prior_llm", "1.0"),
    (lambda: PredictiveCredit(prior_llm=0), "prior_llm", "0"),
    (lambda: PredictiveCredit(n_half=-3.0), "n_half", "-3.0"),
    (lambda: OfTrialCount(3), "function", "3"),
    (lambda: History([TrialRecord(float("nan"))]), "trials[0].value", "nan"),
    (lambda: History([TrialRecord(1.0), TrialRecord("1")]), "trials[1].value", "'1'"),
    (lambda: History([TrialRecord(1.0, 3)]), "trials[0].source", "3"),
    (lambda: History([TrialRecord(1.0, LLM, INF)]), "trials[0].log_p_llm", "inf"),
    (lambda: History([TrialRecord(1.0, LLM, 0.0, float("nan"))]), "trials[0].log_l", "nan"),
    (lambda: History([(1.0, LLM, 0.0, 0.0, 5)]), "trials[0]", "5"),
    (lambda: History([1.0]), "trials[0]", "1.0"),
    (lambda: History("abc"), "trials", "'abc'"),
    (lambda: RankPerformance()(5), "history", "5"),
    (lambda: PredictiveCredit().weights([TrialRecord(0.0)]), "history", "TrialRecord"),
    (lambda: HyperbolicDecay()(-2), "n", "-2"),
    (lambda: as_schedule("high"), "alpha", "'high'"),
    (lambda: alpha_at(0.5, 3), "schedule", "0.5"),
    (lambda: alpha_at(lambda n: 2.0, 0), "alpha=2.0", "n=0"),
    (lambda: alpha_at(lambda n: float("nan"), 4), "alpha=nan", "n=4"),
    (lambda: alpha_at(RankPerformance(), 4), "n=4", "history"),
]


@pytest.mark.parametrize("call,name,value", BAD)
def test_bad_arguments_raise_naming_them(call, name, value):
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert name in message and value in message, message
