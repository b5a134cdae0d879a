# Statistics of the evaluation: win rates with ties, bootstrap coverage, paired differences, preference %.
from __future__ import annotations

import numpy as np
import pytest

from w2sd.evaluation.preference import pairwise_preference
from w2sd.stats import bootstrap_ci, paired_difference, win_rate
from w2sd.validation import ConfigError


def test_win_rate_counts_ties_explicitly():
    result = win_rate([3.0, 2.0, 1.0, 5.0, 4.0], [1.0, 2.0, 2.0, 5.0, 3.9])
    assert (result.wins, result.ties, result.losses) == (2, 2, 1)
    assert result.rate == pytest.approx(2 / 5)
    loose = win_rate([3.0, 2.0, 1.0, 5.0, 4.0], [1.0, 2.0, 2.0, 5.0, 3.9], tol=0.15)
    assert (loose.wins, loose.ties, loose.losses) == (1, 3, 1)
    assert loose.as_dict() == {"win_rate": 0.2, "wins": 1, "ties": 3, "losses": 1} and loose.n == 5


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    trials = 200
    for k in range(trials):
        ci = bootstrap_ci(rng.normal(2.0, 1.0, 60), resamples=800, seed=k)
        covered += ci.low <= 2.0 <= ci.high
    assert 0.89 <= covered / trials <= 0.99


def test_bootstrap_ci_matches_the_exact_bootstrap_distribution_of_a_small_sample():
    """For n = 4 every resample is one of 4⁴ equally likely index tuples: enumerating them gives the exact bootstrap
    distribution of the mean, whose 2.5/97.5 % quantiles the random-resampling CI must approach."""
    import itertools

    values = np.array([0.0, 1.0, 3.0, 10.0])
    exact = np.array([values[list(idx)].mean() for idx in itertools.product(range(4), repeat=4)])
    def is_quantile(value: float, q: float) -> bool:  # of the discrete exact distribution, ±0.5 % sampling slack
        return np.mean(exact < value - 1e-9) <= q + 0.005 and np.mean(exact <= value + 1e-9) >= q - 0.005

    ci = bootstrap_ci(values, resamples=200_000, seed=3)
    assert ci.mean == pytest.approx(3.5) and ci.n == 4
    assert is_quantile(ci.low, 0.025) and is_quantile(ci.high, 0.975)
    ci90 = bootstrap_ci(values, confidence=0.9, resamples=200_000, seed=3)
    assert is_quantile(ci90.low, 0.05) and is_quantile(ci90.high, 0.95)
    assert not is_quantile(ci90.low, 0.025) and not is_quantile(ci.high, 0.95)  # the check tells levels apart


def test_bootstrap_ci_of_a_large_normal_sample_is_the_closed_form_interval():
    """n = 2000: the bootstrap distribution of the mean is ≈ N(x̄, s²/n), so the CI is x̄ ± 1.96 s/√n."""
    x = np.random.default_rng(5).normal(1.0, 2.0, 2000)
    ci = bootstrap_ci(x, resamples=20_000)
    half = 1.959964 * x.std() / np.sqrt(x.size)
    assert ci.low == pytest.approx(x.mean() - half, abs=0.05 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.05 * half)
    assert ci.as_dict() == {"mean": ci.mean, "ci_low": ci.low, "ci_high": ci.high, "n": 2000}


def test_paired_difference_hand_computed():
    ci = paired_difference([1.0, 2.0, 3.0, 4.0], [0.5, 1.5, 2.5, 3.5], resamples=500)
    assert ci.mean == pytest.approx(0.5) and ci.low == pytest.approx(0.5) and ci.high == pytest.approx(0.5)
    with pytest.raises(ConfigError, match="differ in length"):
        paired_difference([1.0, 2.0], [1.0])


def test_pairwise_preference_hand_computed_and_sums_to_100():
    a, b = [2.0, 0.0, 0.0], [0.0, 0.0, np.log(3.0)]
    pct_a, pct_b = pairwise_preference(a, b)
    expected = 100 * np.mean([1 / (1 + np.exp(-2.0)), 0.5, 0.25])
    assert pct_a == pytest.approx(expected) and pct_a + pct_b == pytest.approx(100.0)
    rng = np.random.default_rng(0)
    for _ in range(20):
        x, y = rng.normal(20, 5, 50), rng.normal(20, 5, 50)
        p, q = pairwise_preference(x, y)
        assert p + q == pytest.approx(100.0) and pairwise_preference(y, x)[0] == pytest.approx(q)
    assert pairwise_preference([1e6], [-1e6])[0] == pytest.approx(100.0)  # no overflow


def test_pairwise_preference_rejects_unpaired_input():
    with pytest.raises(ConfigError, match=r"^preference logits must be paired 1-D arrays, got shapes \(2,\) and \(1,"):
        pairwise_preference([1.0, 2.0], [1.0])
    with pytest.raises(ConfigError, match=r"got shapes \(1, 2\) and \(1, 2\)"):
        pairwise_preference([[1.0, 2.0]], [[1.0, 2.0]])
    with pytest.raises(ConfigError, match=r"got shapes \(0,\) and \(0,\)"):
        pairwise_preference([], [])


def test_pairwise_preference_of_huge_logit_gaps_is_exact_without_overflow_warnings():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # exp overflow would warn; the clip keeps the softmax finite
        assert pairwise_preference([-1e6, 1e6], [1e6, -1e6]) == (50.0, 50.0)
        assert pairwise_preference([-1e6], [1e6]) == pytest.approx((0.0, 100.0), abs=1e-300)


@pytest.mark.parametrize("call, message", [
    (lambda: bootstrap_ci([]), r"^values must be a non-empty 1-D sequence of numbers, got shape \(0,\)$"),
    (lambda: bootstrap_ci([[1.0, 2.0]]), r"^values must be a non-empty 1-D sequence of numbers, got shape \(1, 2\)$"),
    (lambda: bootstrap_ci([1.0, float("nan")]), r"^values contains NaN or inf; drop or fix those samples first$"),
    (lambda: bootstrap_ci([1.0, 2.0], confidence=1.0), r"^confidence=1.0 must be in \(0, 1\), e.g. 0.95$"),
    (lambda: bootstrap_ci([1.0, 2.0], confidence=0.0), r"^confidence=0.0 must be in \(0, 1\), e.g. 0.95$"),
    (lambda: bootstrap_ci([1.0, 2.0], confidence=1.5), r"must be in \(0, 1\)"),
    (lambda: paired_difference([np.inf], [1.0]), r"^a contains NaN or inf"),
    (lambda: paired_difference([1.0], [np.nan]), r"^b contains NaN or inf"),
    (lambda: win_rate([1.0, 2.0], [1.0]), r"^paired samples differ in length: 2 vs 1; align them by prompt/seed$"),
    (lambda: win_rate([np.nan], [1.0]), r"^a contains NaN"),
    (lambda: win_rate([1.0], [[1.0]]), r"^b must be a non-empty 1-D"),
])
def test_bad_statistics_input_is_refused_with_a_message_naming_it(call, message):
    with pytest.raises(ConfigError, match=message):
        call()


def test_bootstrap_defaults_are_seed_0_and_10000_resamples_and_paired_difference_passes_options_on():
    values = np.random.default_rng(9).normal(size=15)
    ci = bootstrap_ci(values)
    means = values[np.random.default_rng(0).integers(0, 15, size=(10_000, 15))].mean(axis=1)  # the documented recipe
    assert (ci.low, ci.high) == (np.quantile(means, 0.025), np.quantile(means, 0.975))
    assert bootstrap_ci(values) == ci  # deterministic
    diff = paired_difference(values, np.zeros(15), confidence=0.8, resamples=300, seed=4)
    assert diff == bootstrap_ci(values, confidence=0.8, resamples=300, seed=4)
    assert bootstrap_ci([1, 2, 3]).mean == 2.0 and isinstance(bootstrap_ci([1, 2, 3]).mean, float)


def test_boolean_per_prompt_outcomes_are_counted_as_zero_one():
    """Pass/fail metrics (e.g. GenEval-style checks) arrive as booleans; they are compared as 0/1 numbers."""
    a, b = [True, True, False, True], [False, True, False, False]
    assert paired_difference(a, b, resamples=200).mean == pytest.approx(0.5)
    assert (win_rate(a, b).wins, win_rate(a, b).ties, win_rate(a, b).losses) == (2, 2, 0)
