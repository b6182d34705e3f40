"""Utility of heavy-hitter identification in simulation: F1 and NCR against the true top-k (Wang, Li, Jha TDSC
2019 define NCR; the federated heavy-hitter literature reports both)."""

from __future__ import annotations

import numpy as np

from dpkit.mechanisms._validation import check_count

__all__ = ["true_top_k", "f1_score", "ncr"]


def true_top_k(values, k: int) -> np.ndarray:
    """The k most frequent keys of ``values``, most frequent first (ties: smaller key first)."""
    k = check_count("k", k, minimum=1)
    keys, counts = np.unique(np.asarray(values), return_counts=True)
    order = np.lexsort((keys, -counts))
    return keys[order[:k]]


def f1_score(found, truth) -> float:
    """2 precision recall / (precision + recall) of the found set against the true set (0 if either is empty)."""
    found, truth = set(np.asarray(found).tolist()), set(np.asarray(truth).tolist())
    hit = len(found & truth)
    if not found or not truth or not hit:
        return 0.0
    precision, recall = hit / len(found), hit / len(truth)
    return 2 * precision * recall / (precision + recall)


def ncr(found, truth) -> float:
    """Normalized cumulative rank: the true top-k item of rank r (1 = most frequent) scores k - r + 1; NCR is the
    score of the found true items over the total score k (k + 1) / 2."""
    truth = list(np.asarray(truth).tolist())
    k = len(truth)
    if k == 0:
        return 0.0
    found = set(np.asarray(found).tolist())
    score = sum(k - r for r, v in enumerate(truth) if v in found)
    return score / (k * (k + 1) / 2)
