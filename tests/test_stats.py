"""The paired statistics behind the p-values and intervals in README.md and docs/, against values
computed another way: exact binomial sums from math.comb, and the normal approximation."""
import math

import numpy as np
import pytest

from adaptformer.study.stats import binomial_two_sided_p, mcnemar, paired_bootstrap


def exact_two_sided(k: int, n: int) -> float:
    k = min(k, n - k)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


@pytest.mark.parametrize("k,n", [(0, 1), (0, 5), (1, 10), (3, 20), (10, 20), (27, 60), (5, 200), (240, 480)])
def test_binomial_p_is_the_exact_two_sided_sum(k, n):
    assert binomial_two_sided_p(k, n) == pytest.approx(exact_two_sided(k, n), rel=1e-9)
    assert binomial_two_sided_p(n - k, n) == pytest.approx(binomial_two_sided_p(k, n), rel=1e-12)  # symmetric


def test_known_values():
    assert binomial_two_sided_p(0, 0) == 1.0
    assert binomial_two_sided_p(0, 10) == pytest.approx(2 / 1024)  # ten heads or ten tails
    assert binomial_two_sided_p(1, 10) == pytest.approx(2 * 11 / 1024)


def test_mcnemar_counts_only_the_discordant_images():
    a = np.array([1, 1, 1, 0, 0, 1, 1, 0], bool)
    b = np.array([1, 0, 0, 0, 1, 1, 0, 0], bool)  # only A right: 3 images, only B right: 1
    result = mcnemar(a, b)
    assert (result["only_a"], result["only_b"]) == (3, 1)
    assert result["p"] == pytest.approx(exact_two_sided(1, 4))  # 10/16


def test_bootstrap_interval_matches_the_normal_approximation():
    rng = np.random.default_rng(0)
    n = 2000
    a = rng.random(n) < 0.70
    b = rng.random(n) < 0.65
    result = paired_bootstrap(a, b, resamples=4000, seed=1)
    d = a.astype(float) - b.astype(float)
    se = d.std(ddof=0) / math.sqrt(n)
    assert result["diff"] == pytest.approx(d.mean(), abs=1e-12)
    # percentile interval of the resampled means against mean -/+ 1.96 se (tolerance: 15 % of se,
    # the Monte Carlo error of 4000 resamples is far smaller than that)
    assert result["ci_low"] == pytest.approx(d.mean() - 1.96 * se, abs=0.15 * se)
    assert result["ci_high"] == pytest.approx(d.mean() + 1.96 * se, abs=0.15 * se)
    z = d.mean() / se
    normal_p = math.erfc(abs(z) / math.sqrt(2))
    assert result["p"] == pytest.approx(normal_p, abs=0.01)


def test_bootstrap_of_a_constant_difference_has_no_spread():
    a = np.ones((3, 50), bool)
    b = np.zeros((3, 50), bool)
    result = paired_bootstrap(a, b, resamples=200)
    assert (result["diff"], result["ci_low"], result["ci_high"], result["p"]) == (1.0, 1.0, 1.0, 0.0)
    with pytest.raises(ValueError, match="same seeds and images"):
        paired_bootstrap(np.ones((2, 5)), np.ones((3, 5)))
