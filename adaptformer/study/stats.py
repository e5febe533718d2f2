"""Paired comparisons of two classifiers on the same test images.

- McNemar's exact test: of the images exactly one of the two gets right, is the split
  between them further from 50/50 than chance would make it? (two-sided binomial test)
- A paired bootstrap over test images of the accuracy difference, averaged over seeds:
  the images are resampled, never the seeds' pairing, so the interval reflects how
  much the result depends on which test images were drawn.
"""
from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple

import numpy as np


def binomial_two_sided_p(k: int, n: int) -> float:
    """P(a fair-coin count as far from n/2 as k or further), exact; 1.0 when n = 0."""
    if n == 0:
        return 1.0
    k = min(k, n - k)
    log_half_n = n * math.log(0.5)
    tail = sum(math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + log_half_n)
               for i in range(k + 1))
    return min(1.0, 2.0 * tail)


def mcnemar(a_correct: np.ndarray, b_correct: np.ndarray) -> Dict[str, float]:
    """Exact McNemar test on per-image correctness (booleans, same images in the same order)."""
    a, b = np.asarray(a_correct, bool), np.asarray(b_correct, bool)
    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    return {"only_a": only_a, "only_b": only_b, "p": binomial_two_sided_p(only_a, only_a + only_b)}


def paired_bootstrap(a_correct: np.ndarray, b_correct: np.ndarray, resamples: int = 10_000,
                     seed: int = 0) -> Dict[str, float]:
    """Accuracy of A minus B: `a_correct`, `b_correct` are [seeds, images] booleans (seed i of A
    paired with seed i of B). Returns the mean difference, a 95 % percentile interval over
    resampled images, and a two-sided p: twice the smaller share of resamples on either side of 0."""
    return stratified_paired_bootstrap([(a_correct, b_correct)], resamples, seed)


def stratified_paired_bootstrap(pairs: Sequence[Tuple[np.ndarray, np.ndarray]], resamples: int = 10_000,
                                seed: int = 0) -> Dict[str, float]:
    """The mean over strata (a suite's tasks) of A's accuracy minus B's, each stratum given as
    ([seeds, images], [seeds, images]) booleans paired seed by seed. Images are resampled within
    their own stratum, so every task keeps its weight in the mean, as in VTAB-1k's mean over tasks.
    One stratum is the plain paired bootstrap (the same draws)."""
    per_stratum = []
    for a_correct, b_correct in pairs:
        a = np.atleast_2d(np.asarray(a_correct, np.float64))
        b = np.atleast_2d(np.asarray(b_correct, np.float64))
        if a.shape != b.shape:
            raise ValueError(f"both need the same seeds and images, got {a.shape} and {b.shape}")
        per_stratum.append((a - b).mean(axis=0))
    if not per_stratum:
        raise ValueError("no pairs to compare")
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for i in range(resamples):
        means[i] = np.mean([d[rng.integers(0, d.size, d.size)].mean() for d in per_stratum])
    p = 2.0 * min(np.mean(means <= 0.0), np.mean(means >= 0.0))
    return {"diff": float(np.mean([d.mean() for d in per_stratum])), "ci_low": float(np.percentile(means, 2.5)),
            "ci_high": float(np.percentile(means, 97.5)), "p": float(min(1.0, p))}
