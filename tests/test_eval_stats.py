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


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    covered = 0
    trials = 200
    for k in range(trials):
        ci = bootstrap_ci(rng.normal(2.0, 1.0, 60), resamples=800, seed=k)
        covered += ci.low <= 2.0 <= ci.high
    assert 0.89 <= covered / trials <= 0.99


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
    with pytest.raises(ConfigError, match="paired"):
        pairwise_preference([1.0, 2.0], [1.0])
